"""LambdaApiInvoker and the registry's Lambda endpoint, against moto's server (which cannot run code
without Docker) and a small fake Lambda endpoint speaking the Invoke wire protocol (for the answers
moto cannot give: success, throttling, a function error, a runtime interface emulator's missing API)."""

from __future__ import annotations

import io
import json
import socket
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiobotocore.session import get_session
from aiohttp import web

from engine.config import EngineConfig, FunctionConfig, InvokeTarget
from engine.invoke.lambda_api import LambdaApiInvoker
from engine.invoke.registry import FunctionRegistry
from engine.ports import FunctionInfo, FunctionNotFound, InvokeError
from tests.services import endpoint_for, require_service

MOTO = endpoint_for("moto")
REGION = "us-east-1"
#: for invokers opened without GetFunction
INFO = FunctionInfo(function_arn="arn:aws:lambda:us-east-1:123456789012:function:f", timeout_s=3, role_arn="")
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # emulators accept any signature; never reach for the developer's own credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="module")
def moto() -> str:
    return require_service("moto", MOTO)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _open(name: str, endpoint_url: str) -> LambdaApiInvoker:
    return await LambdaApiInvoker.open(name, endpoint_url=endpoint_url, region=REGION, info=INFO)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lambda_function.py", "def handler(event, context):\n    return event\n")
    return buf.getvalue()


@pytest.fixture
async def moto_function(moto: str) -> AsyncIterator[dict[str, Any]]:
    """A function created on moto with Timeout 42 (and its IAM role, which moto requires)."""
    name = f"esm-test-{uuid.uuid4().hex[:12]}"
    session = get_session()
    async with (
        session.create_client("iam", endpoint_url=moto, region_name=REGION) as iam,
        session.create_client("lambda", endpoint_url=moto, region_name=REGION) as lam,
    ):
        role = await iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))
        created = await lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler="lambda_function.handler",
            Code={"ZipFile": _zip()},
            Timeout=42,
        )
        yield dict(created)
        await lam.delete_function(FunctionName=name)
        await iam.delete_role(RoleName=name)


# --- moto -----------------------------------------------------------------------------------------


@pytest.mark.service("moto")
async def test_function_info_from_get_function(moto: str, moto_function: dict[str, Any]) -> None:
    name = moto_function["FunctionName"]
    async with await LambdaApiInvoker.open(name, endpoint_url=moto, region=REGION) as invoker:
        expected = FunctionInfo(
            function_arn=moto_function["FunctionArn"], timeout_s=42.0, role_arn=moto_function["Role"]
        )
        assert invoker.info == expected
        assert await invoker.get_function_info(moto_function["FunctionArn"]) == expected


@pytest.mark.service("moto")
async def test_missing_function_is_function_not_found(moto: str) -> None:
    with pytest.raises(FunctionNotFound, match="Function not found"):
        await LambdaApiInvoker.open(f"esm-missing-{uuid.uuid4().hex[:8]}", endpoint_url=moto, region=REGION)


@pytest.mark.service("moto")
async def test_invoke_on_moto_reaches_the_api(moto: str, moto_function: dict[str, Any]) -> None:
    async with await LambdaApiInvoker.open(moto_function["FunctionName"], endpoint_url=moto) as invoker:
        result = await invoker.invoke(b'{"a": 1}')
    assert result.status_code == 200
    assert result.request_id
    # moto without Docker answers with a function error ("error running docker"); with Docker, the echo
    assert result.function_error is not None or json.loads(result.payload) == {"a": 1}


@pytest.mark.service("moto")
async def test_invoking_a_missing_function_is_invoke_error(moto: str) -> None:
    name = f"esm-missing-{uuid.uuid4().hex[:8]}"
    async with await _open(name, moto) as invoker:
        with pytest.raises(InvokeError, match="ResourceNotFoundException") as err:
            await invoker.invoke(b"{}")
    assert not err.value.throttled


@pytest.mark.service("moto")
async def test_registry_resolves_unknown_names_on_the_lambda_endpoint(
    moto: str, moto_function: dict[str, Any]
) -> None:
    name = moto_function["FunctionName"]
    registry = FunctionRegistry(EngineConfig(), lambda_endpoint_url=moto, region=REGION)
    try:
        invoker = await registry.resolve(name)
        assert isinstance(invoker, LambdaApiInvoker)
        assert invoker.info.timeout_s == 42.0
        assert invoker.info.function_arn == moto_function["FunctionArn"]
        # the partial ARN names the same function (sent as a full ARN: moto fails on partial ones)
        partial = await registry.resolve(f"123456789012:function:{name}")
        assert partial.info.function_arn == moto_function["FunctionArn"]
        assert await registry.resolve(moto_function["FunctionArn"]) is not None
        with pytest.raises(FunctionNotFound):
            await registry.resolve(f"esm-missing-{uuid.uuid4().hex[:8]}")
    finally:
        await registry.aclose()


@pytest.mark.service("moto")
async def test_configured_invoke_target_takes_timeout_and_role_from_get_function(
    moto: str, moto_function: dict[str, Any]
) -> None:
    target = InvokeTarget(moto_function["FunctionName"], moto)
    config = EngineConfig(
        functions={
            "local-name": FunctionConfig(name="local-name", invoke=target),
            "pinned": FunctionConfig(
                name="pinned", invoke=target, timeout=5, role="arn:aws:iam::123456789012:role/mine"
            ),
        }
    )
    registry = FunctionRegistry(config, region=REGION, account_id="123456789012")
    try:
        remote = await registry.resolve("local-name")
        assert remote.info == FunctionInfo(
            function_arn="arn:aws:lambda:us-east-1:123456789012:function:local-name",
            timeout_s=42.0,
            role_arn=moto_function["Role"],
        )
        pinned = await registry.resolve("pinned")
        assert (pinned.info.timeout_s, pinned.info.role_arn) == (5.0, "arn:aws:iam::123456789012:role/mine")
    finally:
        await registry.aclose()


# --- a fake Lambda endpoint -----------------------------------------------------------------------


async def _invocations(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = await request.read()
    headers = {"x-amzn-RequestId": "req-1", "X-Amz-Executed-Version": "7"}
    if name == "throttled":
        error = {
            "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
            "Type": "User",
            "message": "Rate Exceeded.",
        }
        headers["x-amzn-ErrorType"] = "TooManyRequestsException"
        return web.json_response(error, status=429, headers=headers)
    if name == "broken":
        headers["x-amzn-ErrorType"] = "ServiceException"
        return web.json_response({"Message": "internal"}, status=500, headers=headers)
    if name == "unhandled":
        error = {"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}
        return web.json_response(error, headers={**headers, "X-Amz-Function-Error": "Unhandled"})
    return web.Response(body=body, content_type="application/json", headers=headers)


async def _no_get_function(request: web.Request) -> web.Response:
    # what the runtime interface emulator of a function container answers: it implements only Invoke
    return web.Response(status=404, text="404 page not found")


@pytest.fixture
async def fake_lambda() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/2015-03-31/functions/{name}/invocations", _invocations)
    app.router.add_get("/2015-03-31/functions/{name}", _no_get_function)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _closed_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_successful_invoke(fake_lambda: str) -> None:
    async with await _open("echo", fake_lambda) as invoker:
        result = await invoker.invoke(b'{"a": 1}')
    assert (result.payload, result.function_error, result.status_code) == (b'{"a": 1}', None, 200)
    assert (result.executed_version, result.request_id) == ("7", "req-1")
    assert result.duration_ms > 0


async def test_function_error_header(fake_lambda: str) -> None:
    async with await _open("unhandled", fake_lambda) as invoker:
        result = await invoker.invoke(b"{}")
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorType"] == "ValueError"


@pytest.mark.parametrize(("name", "throttled"), [("throttled", True), ("broken", False)])
async def test_throttles_and_service_errors(fake_lambda: str, name: str, throttled: bool) -> None:
    async with await _open(name, fake_lambda) as invoker:
        with pytest.raises(InvokeError) as err:
            await invoker.invoke(b"{}")
    assert err.value.throttled is throttled
    assert ("TooManyRequestsException" if throttled else "ServiceException") in str(err.value)


async def test_runtime_interface_emulator_target_keeps_configured_values(fake_lambda: str) -> None:
    config = EngineConfig(
        functions={
            "rie": FunctionConfig(name="rie", invoke=InvokeTarget("function", fake_lambda), timeout=30)
        }
    )
    registry = FunctionRegistry(config, region=REGION, account_id="123456789012")
    try:
        invoker = await registry.resolve("rie")
        assert invoker.info == FunctionInfo(
            function_arn="arn:aws:lambda:us-east-1:123456789012:function:rie",
            timeout_s=30.0,
            role_arn="arn:aws:iam::123456789012:role/esm-local",
        )
        assert (await invoker.invoke(b'{"b": 2}')).payload == b'{"b": 2}'
    finally:
        await registry.aclose()


# --- no endpoint at all ---------------------------------------------------------------------------


@pytest.fixture
def closed_endpoint() -> Iterator[str]:
    yield f"http://127.0.0.1:{_closed_port()}"


async def test_unreachable_endpoint_is_invoke_error(closed_endpoint: str) -> None:
    async with await _open("f", closed_endpoint) as invoker:
        with pytest.raises(InvokeError, match="EndpointConnectionError") as err:
            await invoker.invoke(b"{}")
    assert not err.value.throttled
    with pytest.raises(InvokeError):
        await LambdaApiInvoker.open("f", endpoint_url=closed_endpoint, region=REGION)
