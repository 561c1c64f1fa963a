"""In-process Python handlers, invoked as Lambda's Python runtime does (event, context, error payloads).

The handler module is imported on the first invocation (Lambda's init), with the config folder (or the
function's own code_dir, see _isolated_package) on sys.path and the function's environment in
os.environ. Sync handlers run in a worker thread, async handlers on the event loop; either way the
function timeout is enforced and the loop never waits on user code. Handlers share the engine's
process: a timed-out sync handler's thread is abandoned, not killed, and concurrent invocations of one
function share its module state.
"""

from __future__ import annotations

import datetime
import decimal
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import math
import os
import random
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import structlog

from engine.config import FunctionConfig
from engine.ports import FunctionInfo, InvokeResult

log = structlog.get_logger(__name__)

Handler = Callable[[Any, "LambdaContext"], Any]

#: Lambda limits a function's init (the module import) to 10 s, apart from the invoke timeout.
INIT_TIMEOUT_S = 10.0

#: request ids are random, not secret: uuid4 asks the OS for every id (a system call per invocation)
_request_ids = random.Random()


def _request_id() -> str:
    return str(uuid.UUID(int=_request_ids.getrandbits(128), version=4))


class LambdaContext:
    """The context object Lambda's Python runtime passes to the handler."""

    def __init__(
        self,
        *,
        aws_request_id: str,
        function_name: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        log_group_name: str,
        log_stream_name: str,
        deadline: float,
    ) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_function_arn
        # the Python runtime reads it from AWS_LAMBDA_FUNCTION_MEMORY_SIZE: a string, not an int
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _Fault(Exception):
    """A failed invocation, carried to ``invoke`` as the error payload Lambda's runtime would send."""

    def __init__(self, error_type: str, message: str, stack_trace: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = list(stack_trace)

    @classmethod
    def from_user_code(cls, exc: Exception) -> _Fault:
        """Lambda's shape for an exception from user code; the trace starts below the frame that caught it."""
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        return cls(type(exc).__name__, str(exc), traceback.format_list(traceback.extract_tb(tb)))

    def payload(self, request_id: str) -> bytes:
        body = {
            "errorMessage": self.message,
            "errorType": self.error_type,
            "requestId": request_id,
            "stackTrace": self.stack_trace,
        }
        return json.dumps(body, ensure_ascii=False).encode()


def _exit_fault(request_id: str, exc: SystemExit) -> _Fault:
    code = exc.code
    status = code if isinstance(code, int) else 0 if code is None else 1
    message = f"RequestId: {request_id} Error: Runtime exited with error: exit status {status}"
    return _Fault("Runtime.ExitError", message)


def _timeout_fault(request_id: str, seconds: float) -> _Fault:
    message = f"RequestId: {request_id} Error: Task timed out after {seconds:.2f} seconds"
    return _Fault("Sandbox.Timedout", message)


class InProcessInvoker:
    """Invokes ``function.handler`` (``package.module.func``) in this process."""

    def __init__(self, function: FunctionConfig, info: FunctionInfo, *, base_dir: Path) -> None:
        if function.handler is None:
            raise ValueError(f"function {function.name!r} has no handler")
        self.function = function
        self.info = info
        self.base_dir = base_dir
        self._handler_path = function.handler
        self._handler: Handler | None = None
        self._package: str | None = None  # the code_dir's package, made at the first load
        self._load_lock = anyio.Lock()
        # own limiter: anyio's default (40 threads, shared with the rest of the engine) would cap the
        # function's concurrency and let slow handlers starve the engine's other worker-thread users
        self._limiter = anyio.CapacityLimiter(math.inf)
        self._log_stream = f"{datetime.datetime.now(datetime.UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"

    async def invoke(self, payload: bytes) -> InvokeResult:
        request_id = _request_id()
        started = time.monotonic()
        function_error: str | None = None
        try:
            body = await self._run(payload, request_id)
        except _Fault as fault:
            body, function_error = fault.payload(request_id), "Unhandled"
            log.info(
                "function_error",
                function=self.function.name,
                request_id=request_id,
                error_type=fault.error_type,
                error=fault.message,
            )
        duration_ms = (time.monotonic() - started) * 1000
        log.debug(
            "function_invoked",
            function=self.function.name,
            request_id=request_id,
            duration_ms=round(duration_ms, 3),
            function_error=function_error,
        )
        return InvokeResult(
            payload=body, function_error=function_error, request_id=request_id, duration_ms=duration_ms
        )

    async def _run(self, payload: bytes, request_id: str) -> bytes:
        event = _unmarshal(payload)
        handler = await self._load(request_id)
        timeout_s = self.info.timeout_s
        context = LambdaContext(
            aws_request_id=request_id,
            function_name=self.function.name,
            invoked_function_arn=self.info.function_arn,
            memory_limit_in_mb=self.function.memory_size,
            log_group_name=f"/aws/lambda/{self.function.name}",
            log_stream_name=self._log_stream,
            deadline=time.monotonic() + timeout_s,
        )
        with anyio.move_on_after(timeout_s) as scope:
            result = await self._call(handler, event, context)
        # cancel_called, not cancelled_caught: a handler that swallows the cancellation still timed out
        if scope.cancel_called:
            log.warning(
                "function_timed_out", function=self.function.name, request_id=request_id, timeout_s=timeout_s
            )
            raise _timeout_fault(request_id, timeout_s)
        return _marshal(result)

    async def _call(self, handler: Handler, event: Any, context: LambdaContext) -> Any:
        if inspect.iscoroutinefunction(handler):
            return await _settle(handler(event, context), context)
        result = await anyio.to_thread.run_sync(
            _call_sync, handler, event, context, abandon_on_cancel=True, limiter=self._limiter
        )
        if inspect.isawaitable(result):  # an object with an async __call__, or a decorated async handler
            return await _settle(result, context)
        return result

    async def _load(self, request_id: str) -> Handler:
        if self._handler is not None:
            return self._handler
        async with self._load_lock:
            if self._handler is None:
                code_dir = self.function.code_dir
                if code_dir is None:
                    if str(self.base_dir) not in sys.path:
                        sys.path.insert(0, str(self.base_dir))
                else:
                    if self._package is None:
                        self._package = _isolated_package(self.function.name, code_dir)
                    # first on the path while it loads: siblings no function imported yet come from here
                    if str(code_dir) in sys.path:
                        sys.path.remove(str(code_dir))
                    sys.path.insert(0, str(code_dir))
                os.environ.update(self.function.environment)
                with anyio.move_on_after(INIT_TIMEOUT_S) as scope:
                    handler = await anyio.to_thread.run_sync(
                        _import_handler,
                        self._handler_path,
                        request_id,
                        self._package,
                        abandon_on_cancel=True,
                        limiter=self._limiter,
                    )
                if scope.cancel_called:
                    raise _timeout_fault(request_id, INIT_TIMEOUT_S)
                log.info(
                    "function_loaded",
                    function=self.function.name,
                    handler=self._handler_path,
                    code_dir=None if code_dir is None else str(code_dir),
                )
                shared = []
                if code_dir is not None:
                    shared = await anyio.to_thread.run_sync(
                        _shared_siblings, code_dir, self._handler_path, limiter=self._limiter
                    )
                if shared:
                    log.warning(
                        "function_modules_shared",
                        function=self.function.name,
                        code_dir=str(code_dir),
                        modules=shared,
                        note="imported by name, these come from another folder, not from code_dir",
                    )
                self._handler = handler
            return self._handler


# Isolation of a code_dir: the handler's module (for `pkg.mod.handler`, its package `pkg` too) is loaded
# as a submodule of a package of the function's own, whose folder is the code_dir, so `app.handler` in two
# code_dirs is two modules (named `_esm_code_<function>_<id>.app`, not `app`). Not isolated: what user
# code imports by absolute name (`import utils` beside app.py, `from pkg import x` inside pkg) goes
# through the process-wide sys.modules and sys.path, so the first function to import a `utils` lends it
# to every other (warned as function_modules_shared), and an absolute import of the handler's own
# package loads a second copy of it beside the isolated one.


def _isolated_package(function_name: str, code_dir: Path) -> str:
    """Registers an empty package whose folder is ``code_dir`` under a name unique to this invoker."""
    name = f"_esm_code_{function_name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(code_dir)]
    sys.modules[name] = importlib.util.module_from_spec(spec)
    return name


def _shared_siblings(code_dir: Path, handler_path: str) -> list[str]:
    """code_dir's top-level modules that, imported by name, resolve to a module loaded from elsewhere."""
    own = handler_path.partition(".")[0]  # loaded isolated, whatever sys.modules holds under its name
    folder = code_dir.resolve()
    try:
        entries = list(folder.iterdir())
    except OSError:  # gone since the import: nothing to warn about
        return []
    shared = []
    for entry in entries:
        if entry.suffix == ".py":
            name = entry.stem
        elif (entry / "__init__.py").is_file():
            name = entry.name
        else:
            continue
        file = getattr(sys.modules.get(name), "__file__", None)
        if name != own and file is not None and not Path(file).resolve().is_relative_to(folder):
            shared.append(name)
    return sorted(shared)


def _import_handler(path: str, request_id: str, package: str | None = None) -> Handler:
    """Lambda's Python runtime's init, with its error types and messages. A failed init is not kept:
    the next invocation tries again, as Lambda starts a fresh environment. ``package``: the code_dir's
    isolated package, whose name the error messages leave out."""
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(f"{package}.{module_name}" if package else module_name)
    except ImportError as e:
        error = str(e).replace(f"{package}.", "") if package else str(e)
        raise _Fault(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}"
        ) from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        message = f"Syntax error in module '{module_name}': {e}"
        raise _Fault("Runtime.UserCodeSyntaxError", message, trace) from None
    except SystemExit as e:
        raise _exit_fault(request_id, e) from None
    except Exception as e:
        raise _Fault.from_user_code(e) from None
    handler = getattr(module, attr, None)
    if handler is None:
        raise _Fault("Runtime.HandlerNotFound", f"Handler '{attr}' missing on module '{module_name}'")
    return handler  # type: ignore[no-any-return]


def _call_sync(handler: Handler, event: Any, context: LambdaContext) -> Any:
    """Runs in the worker thread, so the error's trace starts at the handler and a SystemExit from user
    code ends the invocation, not the engine."""
    try:
        return handler(event, context)
    except SystemExit as e:
        raise _exit_fault(context.aws_request_id, e) from None
    except Exception as e:
        raise _Fault.from_user_code(e) from None


async def _settle(awaitable: Awaitable[Any], context: LambdaContext) -> Any:
    try:
        return await awaitable
    except SystemExit as e:
        raise _exit_fault(context.aws_request_id, e) from None
    except Exception as e:
        raise _Fault.from_user_code(e) from None


_DECODER = msgspec.json.Decoder()


def _unmarshal(payload: bytes) -> Any:
    """The event as the runtime decodes it: msgspec for speed (it keeps big integers exact, as json does);
    what msgspec refuses (NaN, UTF-16, ...) gets json's answer, as Lambda's json-based runtime would."""
    try:
        return _DECODER.decode(payload)
    except msgspec.DecodeError:
        pass
    try:
        return json.loads(payload)
    except ValueError as e:  # also UnicodeDecodeError
        raise _Fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}") from None


def _marshal(result: Any) -> bytes:
    """Lambda's Python runtime encoder: non-ASCII kept, NaN allowed, Decimal as a number."""
    try:
        return json.dumps(result, ensure_ascii=False, default=_encode_decimal).encode()
    except (TypeError, ValueError) as e:
        raise _Fault("Runtime.MarshalError", f"Unable to marshal response: {e}") from None


def _encode_decimal(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return math.nan
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
