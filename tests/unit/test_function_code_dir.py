"""Functions with their own code folder (code_dir, a SAM function's CodeUri) and reserved concurrency."""

from __future__ import annotations

import json
import sys
import textwrap
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from engine.config import EngineConfig, FunctionConfig, InvokeTarget, load_config
from engine.invoke.registry import FunctionRegistry, ReservedConcurrency
from engine.ports import InvokeError, Invoker


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [*sys.path])


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return folder


def _unique(prefix: str) -> str:
    """A module name no other test imports (sys.modules outlives a test)."""
    return f"{prefix}_{uuid.uuid4().hex}"


def _registry(tmp_path: Path, *functions: FunctionConfig) -> FunctionRegistry:
    config = EngineConfig(base_dir=tmp_path, functions={f.name: f for f in functions})
    return FunctionRegistry(config, region="us-east-1", account_id="123456789012")


async def _call(registry: FunctionRegistry, name: str, event: Any = None) -> Any:
    invoker = await registry.resolve(name)
    result = await invoker.invoke(json.dumps({} if event is None else event).encode())
    return json.loads(result.payload)


# --- code_dir: isolated handler modules -----------------------------------------------------------


async def test_same_handler_path_in_two_code_dirs_is_two_modules(tmp_path: Path) -> None:
    for name in ("hello", "orders"):
        _write(tmp_path / "src" / name, {"app.py": f"def handler(event, context):\n    return {name!r}\n"})
    (tmp_path / "esm.yaml").write_text(
        "functions:\n"
        "  hello: {handler: app.handler, code_dir: src/hello}\n"
        "  orders: {handler: app.handler, code_dir: src/orders}\n"
    )
    config = load_config(tmp_path / "esm.yaml")
    registry = FunctionRegistry(config, region="us-east-1", account_id="123456789012")
    assert await _call(registry, "hello") == "hello"
    assert await _call(registry, "orders") == "orders"
    assert await _call(registry, "hello") == "hello"  # the second load did not replace the first


async def test_sibling_import_beside_the_handler(tmp_path: Path) -> None:
    helper = _unique("helper")
    code = _write(
        tmp_path / "fn",
        {
            f"{helper}.py": "GREETING = 'from the sibling'\n",
            "app.py": f"import {helper}\n\ndef handler(event, context):\n    return {helper}.GREETING\n",
        },
    )
    registry = _registry(tmp_path, FunctionConfig(name="f", handler="app.handler", code_dir=code))
    assert await _call(registry, "f") == "from the sibling"


async def test_dotted_handler_inside_a_package(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _write(
            tmp_path / name,
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": f"NAME = {name!r}\n",
                "pkg/sub/mod.py": (
                    "from . import NAME\n\ndef handler(event, context):\n    return [NAME, event]\n"
                ),
            },
        )
    registry = _registry(
        tmp_path,
        FunctionConfig(name="a", handler="pkg.sub.mod.handler", code_dir=tmp_path / "a"),
        FunctionConfig(name="b", handler="pkg.sub.mod.handler", code_dir=tmp_path / "b"),
    )
    assert await _call(registry, "a", {"k": 1}) == ["a", {"k": 1}]
    assert await _call(registry, "b", {"k": 2}) == ["b", {"k": 2}]


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        (
            {},
            "app.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'app'",
        ),
        (
            {"pkg/__init__.py": ""},
            "pkg.mod.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'pkg.mod': No module named 'pkg.mod'",
        ),
        (
            {"app.py": "x = 1\n"},
            "app.handler",
            "Runtime.HandlerNotFound",
            "Handler 'handler' missing on module 'app'",
        ),
        (
            {"app.py": "def handler(event, context)\n"},
            "app.handler",
            "Runtime.UserCodeSyntaxError",
            "Syntax error",
        ),
    ],
)
async def test_load_errors_keep_lambdas_types_and_the_users_module_name(
    tmp_path: Path, files: dict[str, str], handler: str, error_type: str, message: str
) -> None:
    code = _write(tmp_path / "fn", files)
    registry = _registry(tmp_path, FunctionConfig(name="f", handler=handler, code_dir=code))
    invoker = await registry.resolve("f")
    result = await invoker.invoke(b"{}")
    body = json.loads(result.payload)
    assert result.function_error == "Unhandled"
    assert body["errorType"] == error_type
    assert body["errorMessage"].startswith(message)
    assert "_esm_code_" not in body["errorMessage"]


async def test_same_named_siblings_are_shared_and_warned(tmp_path: Path) -> None:
    """The documented limit of the isolation: modules imported by name are one per process."""
    utils = _unique("utils")
    for name in ("first", "second"):
        _write(
            tmp_path / name,
            {
                f"{utils}.py": f"WHO = {name!r}\n",
                "app.py": f"import {utils}\n\ndef handler(event, context):\n    return {utils}.WHO\n",
            },
        )
    registry = _registry(
        tmp_path,
        FunctionConfig(name="first", handler="app.handler", code_dir=tmp_path / "first"),
        FunctionConfig(name="second", handler="app.handler", code_dir=tmp_path / "second"),
    )
    assert await _call(registry, "first") == "first"
    with capture_logs() as logs:
        assert await _call(registry, "second") == "first"
    warnings = [e for e in logs if e["event"] == "function_modules_shared"]
    assert [(w["function"], w["modules"]) for w in warnings] == [("second", [utils])]


async def test_without_code_dir_the_handler_is_imported_by_name_from_base_dir(tmp_path: Path) -> None:
    name = _unique("plain")
    _write(tmp_path, {f"{name}.py": "def handler(event, context):\n    return __name__\n"})
    registry = _registry(tmp_path, FunctionConfig(name="f", handler=f"{name}.handler"))
    assert await _call(registry, "f") == name
    assert sys.path[0] == str(tmp_path)


# --- reserved concurrency -------------------------------------------------------------------------


@pytest.fixture
def gate() -> Iterator[types.ModuleType]:
    """State the test and the handler share: the handler imports it by name from sys.modules."""
    module = types.ModuleType(_unique("gate"))
    module.running = 0  # type: ignore[attr-defined]
    module.peak = 0  # type: ignore[attr-defined]
    module.calls = 0  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def _gated_handler(tmp_path: Path, gate: types.ModuleType) -> Path:
    gate.release = anyio.Event()  # type: ignore[attr-defined]
    return _write(
        tmp_path / "gated",
        {
            "app.py": f"""
            import {gate.__name__} as gate

            async def handler(event, context):
                gate.calls += 1
                gate.running += 1
                gate.peak = max(gate.peak, gate.running)
                await gate.release.wait()
                gate.running -= 1
                return event
            """
        },
    )


async def _yield_until(predicate: Any) -> None:
    with anyio.fail_after(5):
        while not predicate():
            await anyio.lowlevel.checkpoint()


async def test_reserved_concurrency_caps_concurrent_invocations(
    tmp_path: Path, gate: types.ModuleType
) -> None:
    code = _gated_handler(tmp_path, gate)
    registry = _registry(
        tmp_path, FunctionConfig(name="f", handler="app.handler", code_dir=code, reserved_concurrency=2)
    )
    results: list[Any] = []

    async def invoke(invoker: Invoker, i: int) -> None:
        results.append(json.loads((await invoker.invoke(json.dumps(i).encode())).payload))

    async with anyio.create_task_group() as tg:
        for i in range(6):
            # two references to one function, as two mappings would name it: one cap for both
            tg.start_soon(invoke, await registry.resolve("f" if i % 2 else "f:live"), i)
        await _yield_until(lambda: gate.running == 2)
        for _ in range(100):  # every other invocation gets its turns to run, and must not get in
            await anyio.lowlevel.checkpoint()
        assert (gate.running, gate.calls) == (2, 2)
        gate.release.set()
    assert sorted(results) == list(range(6))
    assert (gate.peak, gate.calls, gate.running) == (2, 6, 0)


async def test_reserved_concurrency_zero_throttles_every_invocation(
    tmp_path: Path, gate: types.ModuleType
) -> None:
    code = _gated_handler(tmp_path, gate)
    registry = _registry(
        tmp_path, FunctionConfig(name="f", handler="app.handler", code_dir=code, reserved_concurrency=0)
    )
    invoker = await registry.resolve("f")
    with pytest.raises(InvokeError) as info:
        await invoker.invoke(b"{}")
    assert info.value.throttled
    assert "TooManyRequestsException" in str(info.value)
    assert gate.calls == 0


async def test_reserved_concurrency_wraps_invoke_targets_too(tmp_path: Path) -> None:
    remote = FunctionConfig(
        name="remote",
        invoke=InvokeTarget("r", endpoint_url="http://127.0.0.1:9"),
        timeout=3,
        role="arn:aws:iam::123456789012:role/r",
        reserved_concurrency=0,
    )
    registry = _registry(tmp_path, remote)
    invoker = await registry.resolve("remote")
    assert isinstance(invoker, ReservedConcurrency)
    assert invoker.info.function_arn == "arn:aws:lambda:us-east-1:123456789012:function:remote"
    with pytest.raises(InvokeError) as info:
        await invoker.invoke(b"{}")  # refused before the unreachable endpoint is tried
    assert info.value.throttled
    await registry.aclose()
