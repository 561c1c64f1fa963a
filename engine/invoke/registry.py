"""Resolves a mapping's FunctionName to an invoker: the functions of the config file first (by name part),
then, for names the file does not know, the Lambda Invoke API on the engine's Lambda endpoint."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio
import structlog
from aiobotocore.session import AioSession, get_session

from engine.config import AwsConfig, EngineConfig, FunctionConfig, merge_aws
from engine.invoke.lambda_api import LambdaApiInvoker, default_region
from engine.invoke.python import InProcessInvoker
from engine.ports import FunctionInfo, FunctionNotFound, InvokeError, Invoker, InvokeResult

log = structlog.get_logger(__name__)

#: name, name:qualifier, ACCOUNT:function:name[:qualifier], arn:PARTITION:lambda:REGION:ACCOUNT:function:...
_FUNCTION_REF = re.compile(
    r"^(?:arn:[^:]+:lambda:(?P<region>[^:]+):(?P<arn_account>\d{12}):function:|(?P<account>\d{12}):function:)?"
    r"(?P<name>[A-Za-z0-9_-]+)(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]+))?$"
)


@dataclass(frozen=True)
class _Ref:
    """A FunctionName in any of its four forms, taken apart (``name`` as engine.model.function_name_part)."""

    given: str
    name: str
    qualifier: str | None
    account: str | None  # partial and full ARNs
    region: str | None  # full ARNs

    @property
    def is_arn(self) -> bool:
        return self.given.startswith("arn:")


def _parse(ref: str) -> _Ref:
    m = _FUNCTION_REF.match(ref)
    if m is None:
        raise FunctionNotFound(f"Function not found: {ref}")
    return _Ref(ref, m["name"], m["qualifier"], m["arn_account"] or m["account"], m["region"])


class WrappedInvoker:
    """An invoker around another (implements Invoker): the function's info is the inner one's."""

    def __init__(self, inner: Invoker) -> None:
        self.inner = inner

    @property
    def info(self) -> FunctionInfo:
        return self.inner.info

    @info.setter
    def info(self, value: FunctionInfo) -> None:
        self.inner.info = value

    async def invoke(self, payload: bytes) -> InvokeResult:
        return await self.inner.invoke(payload)


class ReservedConcurrency(WrappedInvoker):
    """Lambda's reserved concurrency around a configured function's invoker (implements Invoker): at
    most ``limit`` invocations at once, whichever mappings make them; with 0 every one is throttled.

    Past the limit an invocation waits for a slot instead of being throttled as Lambda would: the
    mapping would only back off and retry the same batch, so waiting delivers the same events without
    the back-off's idle time.
    """

    def __init__(self, function_name: str, inner: Invoker, limit: int) -> None:
        super().__init__(inner)
        self.function_name = function_name
        self.limit = limit
        self._slots = anyio.Semaphore(limit) if limit else None

    async def invoke(self, payload: bytes) -> InvokeResult:
        if self._slots is None:
            # what Invoke answers a function whose ReservedConcurrentExecutions is 0 (lambda_api's form)
            raise InvokeError(
                f"Invoke {self.function_name}: TooManyRequestsException: Rate Exceeded.", throttled=True
            )
        if self._slots.value == 0:
            log.debug("function_concurrency_full", function=self.function_name, reserved=self.limit)
        async with self._slots:
            return await self.inner.invoke(payload)


class FunctionRegistry:
    """The engine's FunctionResolver, one invoker per function, kept until ``aclose()``.

    Region, account and Lambda endpoint: the arguments (the engine's settings, already merged by
    engine.config.merge_aws: command line > ESM_* environment > config file) win; an argument left None
    falls back, by the same merge, to the config file's ``aws`` section, then the AWS chain (region)
    and the built-in account. A function's own ``invoke.endpoint_url`` / ``region`` beat all of them.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        lambda_endpoint_url: str | None = None,
        region: str | None = None,
        account_id: str | None = None,
        session: AioSession | None = None,
        wrap: Callable[[str, Invoker], Invoker] | None = None,
    ) -> None:
        self.config = config
        #: wraps every invoker as it is created (`esm soak`'s tap and faults), by function name
        self.wrap = wrap
        self._session = session or get_session()
        given = AwsConfig(endpoint_url=lambda_endpoint_url, region=region, account_id=account_id)
        # the environment is in the arguments already; no region anywhere: the AWS chain's
        aws = merge_aws(given, config.aws, {}, default_region=default_region(self._session))
        self.endpoint_url = aws.endpoint_url
        self.region = aws.region
        self.account_id = aws.account_id
        self._invokers: dict[str, Invoker] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._stack = AsyncExitStack()

    def function_arn(self, function_ref: str) -> str:
        """The FunctionArn the Lambda API returns for ``function_ref``: a full ARN as given, otherwise
        built from the engine's region and account (a partial ARN's own account), qualifier kept."""
        ref = _parse(function_ref)
        if ref.is_arn:
            return ref.given
        arn = f"arn:aws:lambda:{self.region}:{ref.account or self.account_id}:function:{ref.name}"
        return f"{arn}:{ref.qualifier}" if ref.qualifier else arn

    def list_functions(self) -> list[FunctionConfig]:
        """The functions of the config file, by name (for `esm functions`)."""
        return [self.config.functions[name] for name in sorted(self.config.functions)]

    async def resolve(self, function_ref: str) -> Invoker:
        """The invoker of ``function_ref``. Raises FunctionNotFound when neither the config file nor the
        Lambda endpoint knows the function, InvokeError when the endpoint cannot be reached (not cached:
        the next call tries again)."""
        ref = _parse(function_ref)
        # a configured function has no versions: every qualifier is the same code
        key = ref.name if ref.name in self.config.functions else self.function_arn(function_ref)
        if key not in self._invokers:
            async with self._locks.setdefault(key, anyio.Lock()):
                if key not in self._invokers:
                    invoker = await self._create(ref)
                    self._invokers[key] = self.wrap(ref.name, invoker) if self.wrap else invoker
        return self._invokers[key]

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._invokers.clear()

    # --- building invokers ---------------------------------------------------------------------------

    def _default_role(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/esm-local"

    async def _create(self, ref: _Ref) -> Invoker:
        function = self.config.functions.get(ref.name)
        if function is not None:
            # unqualified, as AWS's on-failure records show requestContext.functionArn
            info = FunctionInfo(
                function_arn=self.function_arn(ref.name),
                timeout_s=function.timeout_s,
                role_arn=function.role or self._default_role(),
            )
            invoker: Invoker
            if function.handler is not None:
                log.info("function_resolved", function=ref.name, kind="python", handler=function.handler)
                invoker = InProcessInvoker(function, info, base_dir=self.config.base_dir)
            else:
                invoker = await self._open_target(function, info)
            if function.reserved_concurrency is None:
                return invoker
            return ReservedConcurrency(function.name, invoker, function.reserved_concurrency)
        if self.endpoint_url is None:
            raise FunctionNotFound(f"Function not found: {self.function_arn(ref.given)}")
        # a partial ARN becomes a full one: Invoke accepts it everywhere (moto fails on partial ARNs)
        remote_name = ref.given if ref.is_arn or ref.account is None else self.function_arn(ref.given)
        invoker = await LambdaApiInvoker.open(
            remote_name,
            endpoint_url=self.endpoint_url,
            region=ref.region or self.region,
            session=self._session,
        )
        self._stack.push_async_callback(invoker.aclose)
        log.info(
            "function_resolved",
            function=ref.name,
            kind="lambda_api",
            endpoint_url=self.endpoint_url,
            function_arn=invoker.info.function_arn,
        )
        return invoker

    async def _open_target(self, function: FunctionConfig, info: FunctionInfo) -> LambdaApiInvoker:
        assert function.invoke is not None
        target = function.invoke
        endpoint_url = target.endpoint_url or self.endpoint_url
        invoker = await LambdaApiInvoker.open(
            target.function_name,
            endpoint_url=endpoint_url,
            region=target.region or self.region,
            info=info,
            session=self._session,
        )
        try:
            if function.timeout is None or function.role is None:
                invoker.info = await self._remote_info(invoker, function, info)
        except BaseException:
            await invoker.aclose()
            raise
        self._stack.push_async_callback(invoker.aclose)
        log.info(
            "function_resolved",
            function=function.name,
            kind="lambda_api",
            endpoint_url=endpoint_url,
            target=target.function_name,
        )
        return invoker

    async def _remote_info(
        self, invoker: LambdaApiInvoker, function: FunctionConfig, info: FunctionInfo
    ) -> FunctionInfo:
        """Timeout and role the file leaves out, from GetFunction; the file's values and the defaults
        when the endpoint cannot tell (a runtime interface emulator only implements Invoke)."""
        try:
            remote = await invoker.get_function_info(invoker.function_name)
        except InvokeError as e:
            log.warning(
                "function_info_unavailable",
                function=function.name,
                error=str(e),
                timeout_s=info.timeout_s,
                role=info.role_arn,
            )
            return info
        return FunctionInfo(
            function_arn=info.function_arn,
            timeout_s=function.timeout if function.timeout is not None else remote.timeout_s,
            role_arn=function.role or remote.role_arn or info.role_arn,
        )
