"""In-process Python handlers as Lambda's Python runtime runs them, and the registry's resolution of them."""

from __future__ import annotations

import importlib
import json
import re
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import engine.invoke.python as python_invoker
from engine.config import AwsConfig, EngineConfig, FunctionConfig, InvokeTarget
from engine.invoke.python import InProcessInvoker
from engine.invoke.registry import FunctionRegistry
from engine.ports import FunctionInfo, FunctionNotFound, InvokeResult

HANDLERS = Path(__file__).resolve().parents[1] / "fixtures" / "handlers"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:f"
ROLE = "arn:aws:iam::123456789012:role/esm-local"


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [*sys.path])


def _invoker(
    handler: str,
    *,
    timeout: float = 3.0,
    memory_size: int = 128,
    environment: dict[str, str] | None = None,
    base_dir: Path = HANDLERS,
) -> InProcessInvoker:
    function = FunctionConfig(
        name="f", handler=handler, timeout=timeout, memory_size=memory_size, environment=environment or {}
    )
    info = FunctionInfo(function_arn=ARN, timeout_s=timeout, role_arn=ROLE)
    return InProcessInvoker(function, info, base_dir=base_dir)


async def _invoke(invoker: InProcessInvoker, event: Any = None) -> tuple[Any, InvokeResult]:
    result = await invoker.invoke(json.dumps({} if event is None else event).encode())
    return json.loads(result.payload), result


def _module(tmp_path: Path, source: str) -> str:
    """Writes a uniquely named module into tmp_path; returns its name (sys.modules outlives a test)."""
    name = f"tmp_handler_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return name


# --- results --------------------------------------------------------------------------------------


async def test_sync_handler() -> None:
    body, result = await _invoke(_invoker("sample_handlers.echo"), {"a": 1})
    assert body == {"event": {"a": 1}, "request_id": result.request_id}
    assert result.function_error is None
    assert (result.status_code, result.executed_version) == (200, "$LATEST")
    assert uuid.UUID(result.request_id).version == 4
    assert result.duration_ms > 0


async def test_async_handler() -> None:
    body, result = await _invoke(_invoker("sample_handlers.async_echo"), [1, 2])
    assert body == {"event": [1, 2], "async": True}
    assert result.function_error is None


async def test_object_with_async_call() -> None:
    body, _ = await _invoke(_invoker("sample_handlers.class_based"), {"x": 1})
    assert body == {"class_based": {"x": 1}}


@pytest.mark.parametrize(
    ("handler", "payload"),
    [
        ("sample_handlers.returns_none", b"null"),
        ("sample_handlers.returns_text", '"héllo"'.encode()),
        ("sample_handlers.returns_decimal", b'{"int": 7, "float": 1.5}'),
    ],
)
async def test_return_values_serialised_as_lambda_does(handler: str, payload: bytes) -> None:
    result = await _invoker(handler).invoke(b"{}")
    assert (result.payload, result.function_error) == (payload, None)


async def test_each_invocation_has_its_own_request_id() -> None:
    invoker = _invoker("sample_handlers.echo")
    results: list[InvokeResult] = []

    async def one() -> None:
        results.append(await invoker.invoke(b"{}"))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert len({r.request_id for r in results}) == 20
    assert all(r.function_error is None for r in results)


# --- function errors ------------------------------------------------------------------------------


async def test_exception_is_unhandled_error_with_lambda_shape() -> None:
    body, result = await _invoke(_invoker("sample_handlers.fail"), {"why": "bad record"})
    assert result.function_error == "Unhandled"
    assert result.status_code == 200
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert body["errorMessage"] == "boom: bad record"
    assert body["errorType"] == "ValueError"
    assert body["requestId"] == result.request_id
    # the trace starts in the user's code, as the runtime strips its own frames
    assert "sample_handlers.py" in body["stackTrace"][0]
    assert ", in fail\n" in body["stackTrace"][0]
    assert not any("engine/invoke" in line for line in body["stackTrace"])


async def test_async_exception() -> None:
    body, result = await _invoke(_invoker("sample_handlers.async_fail"))
    assert result.function_error == "Unhandled"
    assert (body["errorType"], body["errorMessage"]) == ("KeyError", "'missing'")
    assert ", in async_fail\n" in body["stackTrace"][0]


async def test_handlers_own_timeout_error_is_not_a_function_timeout() -> None:
    body, _ = await _invoke(_invoker("sample_handlers.raises_timeout_error"))
    assert (body["errorType"], body["errorMessage"]) == ("TimeoutError", "upstream timed out")


async def test_sys_exit_fails_the_invocation_not_the_engine() -> None:
    body, result = await _invoke(_invoker("sample_handlers.exits"))
    assert result.function_error == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"] == (
        f"RequestId: {result.request_id} Error: Runtime exited with error: exit status 3"
    )


async def test_not_serialisable_result_is_marshal_error() -> None:
    body, result = await _invoke(_invoker("sample_handlers.not_serialisable"))
    assert result.function_error == "Unhandled"
    assert body["errorType"] == "Runtime.MarshalError"
    assert body["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"


async def test_payload_that_is_not_json() -> None:
    result = await _invoker("sample_handlers.echo").invoke(b"{not json")
    body = json.loads(result.payload)
    assert result.function_error == "Unhandled"
    assert body["errorType"] == "Runtime.UnmarshalError"
    assert body["errorMessage"].startswith("Unable to unmarshal input: ")


# --- timeouts and cancellation --------------------------------------------------------------------


async def test_sync_handler_timeout_abandons_the_thread() -> None:
    invoker = _invoker("sample_handlers.sleep", timeout=0.2)
    await _invoke(invoker, {"seconds": 0})  # load the module, so the fixture's event is reachable
    woke_up = sys.modules["sample_handlers"].woke_up
    woke_up.clear()
    started = time.monotonic()
    body, result = await _invoke(invoker, {"seconds": 1.0})
    assert time.monotonic() - started < 0.9
    assert result.function_error == "Unhandled"
    assert body == {
        "errorMessage": f"RequestId: {result.request_id} Error: Task timed out after 0.20 seconds",
        "errorType": "Sandbox.Timedout",
        "requestId": result.request_id,
        "stackTrace": [],
    }
    assert 200 <= result.duration_ms < 900
    # the abandoned thread runs to its end in the background
    assert await anyio.to_thread.run_sync(woke_up.wait, 5)


async def test_async_handler_timeout() -> None:
    body, result = await _invoke(_invoker("sample_handlers.async_sleep", timeout=0.1), {"seconds": 5})
    assert result.function_error == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert body["errorMessage"].endswith("Task timed out after 0.10 seconds")


async def test_handler_that_swallows_cancellation_still_times_out() -> None:
    body, _ = await _invoke(_invoker("sample_handlers.swallows_cancellation", timeout=0.1), {"seconds": 5})
    assert body["errorType"] == "Sandbox.Timedout"


@pytest.mark.parametrize("handler", ["sample_handlers.sleep", "sample_handlers.async_sleep"])
async def test_callers_cancellation_propagates(handler: str) -> None:
    invoker = _invoker(handler, timeout=30)
    await _invoke(invoker, {"seconds": 0})
    started = time.monotonic()
    with anyio.move_on_after(0.1) as scope:
        await invoker.invoke(b'{"seconds": 1}')
        pytest.fail("invoke returned although its caller was cancelled")
    assert scope.cancelled_caught
    assert time.monotonic() - started < 0.9


async def test_sync_handler_does_not_block_the_event_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        _, result = await _invoke(_invoker("sample_handlers.sleep"), {"seconds": 0.3})
        tg.cancel_scope.cancel()
    assert result.function_error is None
    assert ticks >= 10


async def test_remaining_time_and_context() -> None:
    body, result = await _invoke(_invoker("sample_handlers.context_info", timeout=2, memory_size=256))
    assert body["aws_request_id"] == result.request_id
    assert body["function_name"] == "f"
    assert body["function_version"] == "$LATEST"
    assert body["invoked_function_arn"] == ARN
    assert body["memory_limit_in_mb"] == "256"  # a string, as in Lambda's Python runtime
    assert body["log_group_name"] == "/aws/lambda/f"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", body["log_stream_name"])
    assert 1000 < body["remaining_ms"] <= 2000


# --- loading --------------------------------------------------------------------------------------


async def test_environment_is_set_when_the_function_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ESM_FIXTURE_GREETING", "ESM_FIXTURE_IMPORT_GREETING"):
        monkeypatch.setenv(name, "before")  # monkeypatch restores (removes) them afterwards
    env = {"ESM_FIXTURE_GREETING": "hello", "ESM_FIXTURE_IMPORT_GREETING": "at import"}
    body, _ = await _invoke(_invoker("sample_handlers.context_info", environment=env))
    assert body["greeting"] == "hello"
    body, _ = await _invoke(_invoker("sample_env_at_import.handler", environment=env))
    assert body == {"greeting_at_import": "at import"}


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        (
            "no_such_module_xyz.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'no_such_module_xyz': No module named 'no_such_module_xyz'",
        ),
        (
            "sample_handlers.nope",
            "Runtime.HandlerNotFound",
            "Handler 'nope' missing on module 'sample_handlers'",
        ),
        ("sample_broken_import.handler", "RuntimeError", "cannot connect to the database at import time"),
        ("sample_handlers.not_callable", "TypeError", "'int' object is not callable"),
    ],
)
async def test_load_errors_are_failed_invocations(handler: str, error_type: str, message: str) -> None:
    body, result = await _invoke(_invoker(handler))
    assert result.function_error == "Unhandled"
    assert (body["errorType"], body["errorMessage"]) == (error_type, message)


async def test_syntax_error_then_fixed_module_loads(tmp_path: Path) -> None:
    name = _module(tmp_path, "def handler(event, context)\n    return 1\n")
    invoker = _invoker(f"{name}.handler", base_dir=tmp_path)
    body, _ = await _invoke(invoker)
    assert body["errorType"] == "Runtime.UserCodeSyntaxError"
    assert body["errorMessage"].startswith(f"Syntax error in module '{name}': ")
    # a failed init is not kept: the next invocation imports again, as a fresh Lambda environment does
    (tmp_path / f"{name}.py").write_text("def handler(event, context):\n    return 'fixed'\n")
    body, result = await _invoke(invoker)
    assert (body, result.function_error) == ("fixed", None)


async def test_slow_import_has_its_own_init_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python_invoker, "INIT_TIMEOUT_S", 0.2)
    name = _module(
        tmp_path,
        """
        import time
        time.sleep(0.5)

        def handler(event, context):
            return "loaded"
    """,
    )
    invoker = _invoker(f"{name}.handler", timeout=0.1, base_dir=tmp_path)
    body, _ = await _invoke(invoker)
    assert body["errorType"] == "Sandbox.Timedout"
    assert body["errorMessage"].endswith("Task timed out after 0.20 seconds")
    with anyio.fail_after(5):  # the abandoned import runs on to its end: wait on Python's import lock
        await anyio.to_thread.run_sync(importlib.import_module, name)
    # the next invocation finds the module loaded; the function's 0.1 s are for the handler alone
    body, result = await _invoke(invoker)
    assert (body, result.function_error) == ("loaded", None)


# --- the registry, for configured in-process functions --------------------------------------------


def _registry(**kwargs: Any) -> FunctionRegistry:
    config = EngineConfig(
        base_dir=HANDLERS,
        functions={
            "f": FunctionConfig(name="f", handler="sample_handlers.echo"),
            "slow": FunctionConfig(
                name="slow",
                handler="sample_handlers.sleep",
                timeout=60,
                role="arn:aws:iam::123456789012:role/slow",
            ),
            "remote": FunctionConfig(name="remote", invoke=InvokeTarget("r")),
        },
        aws=kwargs.pop("aws", AwsConfig()),
    )
    return FunctionRegistry(config, **kwargs)


@pytest.mark.parametrize(
    "ref", ["f", "f:live", "123456789012:function:f", "arn:aws:lambda:eu-west-1:111122223333:function:f:1"]
)
async def test_registry_resolves_every_form_by_name(ref: str) -> None:
    registry = _registry()
    invoker = await registry.resolve(ref)
    assert invoker is await registry.resolve("f")
    assert isinstance(invoker, InProcessInvoker)
    assert invoker.info == FunctionInfo(function_arn=ARN, timeout_s=3.0, role_arn=ROLE)
    body = json.loads((await invoker.invoke(b'{"k": "v"}')).payload)
    assert body["event"] == {"k": "v"}
    await registry.aclose()


async def test_registry_uses_configured_timeout_role_region_and_account() -> None:
    # region and account from the file's aws section when the engine's settings leave them out
    registry = _registry(aws=AwsConfig(region="eu-west-1", account_id="000000000000"))
    invoker = await registry.resolve("slow")
    assert invoker.info == FunctionInfo(
        function_arn="arn:aws:lambda:eu-west-1:000000000000:function:slow",
        timeout_s=60.0,
        role_arn="arn:aws:iam::123456789012:role/slow",
    )


@pytest.mark.parametrize(
    ("ref", "arn"),
    [
        ("f", "arn:aws:lambda:ap-south-1:444455556666:function:f"),
        ("f:live", "arn:aws:lambda:ap-south-1:444455556666:function:f:live"),
        ("g:$LATEST", "arn:aws:lambda:ap-south-1:444455556666:function:g:$LATEST"),
        ("111122223333:function:g:7", "arn:aws:lambda:ap-south-1:111122223333:function:g:7"),
        (
            "arn:aws:lambda:eu-west-1:111122223333:function:g",
            "arn:aws:lambda:eu-west-1:111122223333:function:g",
        ),
        (
            "arn:aws-cn:lambda:cn-north-1:111122223333:function:g:a",
            "arn:aws-cn:lambda:cn-north-1:111122223333:function:g:a",
        ),
    ],
)
def test_function_arn(ref: str, arn: str) -> None:
    assert _registry(region="ap-south-1", account_id="444455556666").function_arn(ref) == arn


@pytest.mark.parametrize("ref", ["", "a:b:c", "arn:aws:lambda", "f:", "my.function", "f:1:2"])
async def test_registry_rejects_malformed_references(ref: str) -> None:
    registry = _registry()
    with pytest.raises(FunctionNotFound):
        await registry.resolve(ref)
    with pytest.raises(FunctionNotFound):
        registry.function_arn(ref)


async def test_unknown_function_without_lambda_endpoint() -> None:
    registry = _registry(region="us-east-1")
    with pytest.raises(FunctionNotFound) as info:
        await registry.resolve("g")
    assert str(info.value) == f"Function not found: {ARN[:-1]}g"


def test_list_functions_sorted_by_name() -> None:
    assert [f.name for f in _registry().list_functions()] == ["f", "remote", "slow"]
