"""Functions reached through the Lambda Invoke API on any endpoint (LocalStack, moto, a container's runtime
interface emulator, AWS), with one aiobotocore client per invoker.

Failures before the function ran (throttling, missing function, service or connection errors) are
InvokeError, which AWS retries without counting; a function error is an InvokeResult with
``function_error`` set from the X-Amz-Function-Error header.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp
import anyio
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from engine.ports import FunctionInfo, FunctionNotFound, InvokeError, InvokeResult

if TYPE_CHECKING:
    from types_aiobotocore_lambda import LambdaClient

log = structlog.get_logger(__name__)

#: Error codes that mean "throttled": Lambda's own, and the generic AWS throttling codes (and HTTP 429).
THROTTLE_CODES = frozenset(
    {
        "TooManyRequestsException",
        "EC2ThrottledException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
    }
)

#: A synchronous invoke lasts up to the function timeout (Lambda's maximum is 900 s): wait longer than that.
READ_TIMEOUT_S = 960
CLOSE_TIMEOUT_S = 5
#: Concurrent invocations per function (botocore's default pool of 10 would queue them).
MAX_CONNECTIONS = 100
#: When neither the caller nor the AWS chain names a region (local endpoints ignore it anyway).
DEFAULT_REGION = "us-east-1"


def default_region(session: AioSession) -> str:
    """The AWS chain's region (AWS_REGION, AWS_DEFAULT_REGION, the profile), else DEFAULT_REGION."""
    region = session.get_config_variable("region")
    return region if isinstance(region, str) and region else DEFAULT_REGION


def _client_config() -> AioConfig:
    # No SDK retries: a retried Invoke may run the function twice, and throttles must reach the engine,
    # whose retry policy (not counted against MaximumRetryAttempts) is AWS's.
    return AioConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=READ_TIMEOUT_S,
        connect_timeout=10,
        max_pool_connections=MAX_CONNECTIONS,
    )


def _error(operation: str, function_name: str, e: Exception) -> InvokeError:
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        throttled = code in THROTTLE_CODES or status == 429
        message = f"{operation} {function_name}: {code}: {err.get('Message', '')}"
    else:
        throttled = False
        message = f"{operation} {function_name}: {type(e).__name__}: {e}"
    # debug: the caller (runner, control plane) reports the failure it decides about
    log.debug(
        "lambda_api_error", operation=operation, function=function_name, error=message, throttled=throttled
    )
    return InvokeError(message, throttled=throttled)


class LambdaApiInvoker:
    """Invokes ``function_name`` (any FunctionName form Invoke accepts) with RequestResponse.

    Create it with ``await LambdaApiInvoker.open(...)``; close it with ``aclose()`` or ``async with``.
    """

    def __init__(
        self, function_name: str, info: FunctionInfo, client: LambdaClient, stack: AsyncExitStack
    ) -> None:
        self.function_name = function_name
        self.info = info
        self._client = client
        self._stack = stack

    @classmethod
    async def open(
        cls,
        function_name: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        info: FunctionInfo | None = None,
        session: AioSession | None = None,
    ) -> LambdaApiInvoker:
        """Opens the client and, unless ``info`` is given, reads the function's FunctionInfo through
        GetFunction (FunctionNotFound when the endpoint does not know it, InvokeError when unreachable)."""
        session = session or get_session()
        region = region or default_region(session)
        stack = AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                session.create_client(
                    "lambda", region_name=region, endpoint_url=endpoint_url, config=_client_config()
                )
            )
            invoker = cls(function_name, info or await _function_info(client, function_name), client, stack)
        except BaseException:
            with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await stack.aclose()
            raise
        log.info(
            "lambda_api_invoker_opened", function=function_name, endpoint_url=endpoint_url, region=region
        )
        return invoker

    async def get_function_info(self, function_name: str) -> FunctionInfo:
        """FunctionArn, Timeout and Role of ``function_name`` through GetFunction."""
        return await _function_info(self._client, function_name)

    async def invoke(self, payload: bytes) -> InvokeResult:
        started = time.monotonic()
        try:
            resp = await self._client.invoke(
                FunctionName=self.function_name, InvocationType="RequestResponse", Payload=payload
            )
            async with resp["Payload"] as stream:
                body = await stream.read()
        except (ClientError, BotoCoreError, aiohttp.ClientError) as e:
            raise _error("Invoke", self.function_name, e) from e
        return InvokeResult(
            payload=body,
            function_error=resp.get("FunctionError"),
            status_code=resp["StatusCode"],
            executed_version=resp.get("ExecutedVersion", "$LATEST"),
            request_id=resp["ResponseMetadata"].get("RequestId", ""),
            duration_ms=(time.monotonic() - started) * 1000,
        )

    async def aclose(self) -> None:
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            await self._stack.aclose()

    async def __aenter__(self) -> LambdaApiInvoker:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def _function_info(client: LambdaClient, function_name: str) -> FunctionInfo:
    try:
        resp = await client.get_function(FunctionName=function_name)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            message = e.response.get("Error", {}).get("Message") or f"Function not found: {function_name}"
            raise FunctionNotFound(message) from None
        raise _error("GetFunction", function_name, e) from e
    except (BotoCoreError, aiohttp.ClientError) as e:
        raise _error("GetFunction", function_name, e) from e
    config = resp["Configuration"]
    return FunctionInfo(
        function_arn=config["FunctionArn"],
        timeout_s=float(config.get("Timeout", 3)),
        role_arn=config.get("Role", ""),
    )
