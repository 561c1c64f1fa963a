"""An engine running in a thread of the test process (its own event loop, a real HTTP port, a real SQLite
file), driven with boto3 exactly as a user drives it."""

from __future__ import annotations

import functools
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.from_thread
import boto3
import pytest
from botocore.config import Config
from playwright.sync_api import Browser, sync_playwright

from engine.app import Engine, EngineSettings
from engine.config import EngineConfig, FunctionConfig
from engine.runner.queue import QueueRunnerSettings
from engine.runner.stream import StreamRunnerSettings
from tests.services import skip_unless_ci

FUNCTIONS_DIR = Path(__file__).parent / "functions"
sys.path.insert(0, str(FUNCTIONS_DIR))
import esm_test_fns  # noqa: E402


def functions_config(timeout_s: float = 1.0, sections: dict[str, Any] | None = None) -> EngineConfig:
    names = (
        "ok",
        "partial",
        "boom",
        "bad_response",
        "slow",
        "stream_ok",
        "stream_poison",
        "stream_partial",
        "window_sum",
        "ddb_poison",
        "mq_ok",
        "mq_first_delivery_fails",
        "mq_fails",
        "kafka_ok",
        "kafka_poison",
        "kafka_partial",
        "kafka_slow",
    )
    return EngineConfig(
        base_dir=FUNCTIONS_DIR,
        sections=sections or {},
        functions={
            f"fn-{n}": FunctionConfig(name=f"fn-{n}", handler=f"esm_test_fns.{n}", timeout=timeout_s)
            for n in names
        },
    )


@dataclass
class RunningEngine:
    engine: Engine
    port: int
    _portal_cm: Any
    _future: Future[Any]
    lambda_client: Any = field(init=False)

    def __post_init__(self) -> None:
        self.lambda_client = boto3.client(
            "lambda",
            endpoint_url=self.url,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        crashed = self._future.done() and not self._future.cancelled() and self._future.exception()
        if not self._future.done():
            self._future.cancel()
        self._portal_cm.__exit__(None, None, None)
        if crashed:  # the engine crashed during the test: that is a bug, make it loud
            raise crashed

    def wait_state(self, uuid: str, state: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            m = self.lambda_client.get_event_source_mapping(UUID=uuid)
            if m["State"] == state:
                return dict(m)
            if time.monotonic() > deadline:
                raise AssertionError(f"mapping {uuid} is {m['State']}, not {state}")
            time.sleep(0.02)


@pytest.fixture
def start_engine(tmp_path: Path) -> Iterator[Callable[..., RunningEngine]]:
    running: list[RunningEngine] = []

    def start(
        endpoint_url: str | None,
        *,
        config: EngineConfig | None = None,
        data_dir: Path | None = None,
        account_id: str = "123456789012",
        run_supervisor: bool = True,
        endpoints: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        queue: QueueRunnerSettings | None = None,
        time_scale: float = 1.0,
    ) -> RunningEngine:
        settings = EngineSettings(
            port=0,
            data_dir=data_dir or tmp_path / "data",
            endpoints={**({"sqs": endpoint_url} if endpoint_url else {}), **(endpoints or {})},
            account_id=account_id,
            queue=queue or QueueRunnerSettings(long_poll_s=1.0),
            stream=StreamRunnerSettings(poll_interval_s=0.1, discovery_interval_s=1.0),
            drain_timeout_s=2.0,
            time_scale=time_scale,
        )
        engine = Engine(settings, config or functions_config(), clock=clock)
        cm = anyio.from_thread.start_blocking_portal()
        portal = cm.__enter__()
        future, port = portal.start_task(engine.serve, run_supervisor)
        r = RunningEngine(engine, port, cm, future)
        running.append(r)
        return r

    yield start
    for r in running:
        r.stop()


@pytest.fixture
def poisoned(
    kinesis_endpoint: str, sqs_endpoint: str, start_engine: Callable[..., RunningEngine], unique_name: Any
) -> Callable[..., Any]:
    """``with poisoned(**params) as run``: tests.integration.poison.poisoned_stream on this test's
    kinesis-mock, ElasticMQ and engine."""
    from tests.integration.poison import poisoned_stream  # it imports this module

    return functools.partial(poisoned_stream, kinesis_endpoint, sqs_endpoint, start_engine, unique_name)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


__all__ = ["RunningEngine", "esm_test_fns", "functions_config", "wait_for"]


#: the flags this machine's Chromium needs (no sandbox as root; no calls to Google's hosts)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:  # scripts/test installs it (scripts/services.sh browser)
        skip_unless_ci("no chromium on PATH: scripts/services.sh browser installs Debian's")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
