"""The function-side metrics every invocation feeds (engine.pipeline.invoking.MeteredInvoker)."""

from __future__ import annotations

import anyio
import pytest

from engine.metrics import EngineMetrics, values
from engine.model import EventSourceMapping, SourceKind, State
from engine.pipeline.invoking import MeteredInvoker
from engine.ports import InvokeError, InvokeResult
from tests.unit.fakes import ScriptedInvoker

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


M = EventSourceMapping(
    uuid="u1",
    kind=SourceKind.SQS,
    function_arn=ScriptedInvoker.info.function_arn,
    params={"EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q"},
    enabled=True,
    state=State.ENABLED,
    state_transition_reason="USER_INITIATED",
    last_modified=0.0,
)


class Gate:
    """Invocations wait until released; a throttle on the first, a function error on the second."""

    info = ScriptedInvoker.info

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.calls = 0

    async def invoke(self, payload: bytes) -> InvokeResult:
        self.calls += 1
        call = self.calls
        if call == 1:
            raise InvokeError("Rate Exceeded.", throttled=True)
        await self.release.wait()
        error = "Unhandled" if call == 2 else None
        return InvokeResult(payload=b"null", function_error=error, request_id="r", duration_ms=250.0)


def sample(metrics: EngineMetrics, name: str) -> float:
    return next(
        v for (n, labels), v in values(metrics).items() if n == name and ("mapping_uuid", "u1") in labels
    )


async def test_throttles_errors_duration_and_concurrency() -> None:
    metrics = EngineMetrics()
    gate = Gate()
    invoker = MeteredInvoker(gate, metrics.mapping(M, "sqs"))
    with pytest.raises(InvokeError):
        await invoker.invoke(b"{}")
    assert sample(metrics, "esm_throttles_total") == 1
    assert sample(metrics, "esm_invocations_total") == 0  # a throttled invocation never ran
    async with anyio.create_task_group() as tg:
        tg.start_soon(invoker.invoke, b"{}")
        tg.start_soon(invoker.invoke, b"{}")
        await anyio.wait_all_tasks_blocked()
        assert sample(metrics, "esm_concurrent_executions") == 2
        gate.release.set()
    assert sample(metrics, "esm_concurrent_executions") == 0
    assert sample(metrics, "esm_invocations_total") == 2
    assert sample(metrics, "esm_errors_total") == 1
    assert sample(metrics, "esm_duration_seconds_count") == 2
    assert sample(metrics, "esm_duration_seconds_sum") == 0.5
