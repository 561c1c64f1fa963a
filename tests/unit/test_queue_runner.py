"""The queue runner's policy on an in-memory queue and a scripted invoker: what is acknowledged, what goes
back, how throttles are retried, how filters and the payload cap act."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio
import pytest

from engine.events import RECORDS_ENVELOPE
from engine.filtering import compile_filters
from engine.metrics import values
from engine.model import EventSourceMapping, SourceKind, State
from engine.ports import InvokeError, InvokeResult
from engine.runner.queue import QueueRunner, QueueRunnerSettings
from engine.sources.registry import profile_of
from engine.store.sqlite import SqliteStore
from pollers.memory import MemoryQueue
from tests.unit.fakes import ScriptedInvoker, ok

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _mapping(**params: Any) -> EventSourceMapping:
    return EventSourceMapping(
        uuid="u1",
        kind=SourceKind.SQS,
        function_arn=ScriptedInvoker.info.function_arn,
        params={
            "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q",
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 0,
            **params,
        },
        enabled=True,
        state=State.ENABLED,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )


async def _run(
    mapping: EventSourceMapping,
    queue: MemoryQueue,
    invoker: ScriptedInvoker,
    until: Callable[[], bool],
    **settings: Any,
) -> SqliteStore:
    store = SqliteStore(":memory:")
    runner = QueueRunner(
        mapping,
        profile_of(mapping.kind),
        queue,
        RECORDS_ENVELOPE,
        invoker,
        compile_filters(mapping.filter_patterns, profile_of(mapping.kind).filters),
        store,
        QueueRunnerSettings(initial_pollers=1, long_poll_s=0.05, **settings),
    )
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            while not until():
                await anyio.sleep(0.005)
            tg.cancel_scope.cancel()
    return store


async def test_success_acknowledges_every_message_in_batches() -> None:
    q = MemoryQueue([f"b{i}" for i in range(25)])
    inv = ScriptedInvoker(ok)
    store = await _run(_mapping(), q, inv, lambda: len(q.acked) == 25)
    assert [len(e["Records"]) for e in inv.events] == [10, 10, 5]
    assert q.released == []
    assert [e.outcome for e in store.journal("u1")] == ["success"] * 3


async def test_function_error_releases_the_whole_batch() -> None:
    q = MemoryQueue(["a", "b"])
    inv = ScriptedInvoker(
        lambda e: (
            InvokeResult(b'{"errorMessage":"x"}', function_error="Unhandled")
            if e["Records"][0]["attributes"]["ApproximateReceiveCount"] == "1"
            else ok(e)
        )
    )
    store = await _run(_mapping(), q, inv, lambda: len(q.acked) == 2)
    assert q.released == ["m1", "m2"]
    assert [e.outcome for e in store.journal("u1")] == ["function_error", "success"]
    assert [e.attempt for e in store.journal("u1")] == [1, 2]


async def test_partial_failure_acks_the_rest_and_releases_the_reported() -> None:
    q = MemoryQueue(["a", "b", "c"])
    inv = ScriptedInvoker(
        lambda e: InvokeResult(
            json.dumps(
                {"batchItemFailures": [{"itemIdentifier": "m2"}] if len(e["Records"]) == 3 else []}
            ).encode()
        )
    )
    await _run(_mapping(FunctionResponseTypes=["ReportBatchItemFailures"]), q, inv, lambda: len(q.acked) == 3)
    assert q.acked == ["m1", "m3", "m2"] and q.released == ["m2"]


async def test_without_report_batch_item_failures_the_body_is_ignored() -> None:
    q = MemoryQueue(["a"])
    inv = ScriptedInvoker(lambda e: InvokeResult(b'{"batchItemFailures": [{"itemIdentifier": "m1"}]}'))
    await _run(_mapping(), q, inv, lambda: len(q.acked) == 1)
    assert q.released == []


async def test_invalid_partial_response_releases_everything() -> None:
    q = MemoryQueue(["a", "b"])
    calls = [0]

    def script(e: dict[str, Any]) -> InvokeResult:
        calls[0] += 1
        return InvokeResult(b'{"batchItemFailures": [{"itemIdentifier": ""}]}' if calls[0] == 1 else b"")

    await _run(
        _mapping(FunctionResponseTypes=["ReportBatchItemFailures"]),
        q,
        ScriptedInvoker(script),
        lambda: len(q.acked) == 2,
    )
    assert q.released == ["m1", "m2"]


async def test_throttles_are_retried_without_releasing() -> None:
    q = MemoryQueue(["a"])
    calls = [0]

    def script(e: dict[str, Any]) -> InvokeResult | InvokeError:
        calls[0] += 1
        return InvokeError("Rate exceeded", throttled=True) if calls[0] < 3 else ok(e)

    await _run(_mapping(), q, ScriptedInvoker(script), lambda: q.acked == ["m1"])
    assert calls[0] == 3 and q.released == []


async def test_an_unreachable_function_gives_the_batch_back_when_the_budget_ends() -> None:
    q = MemoryQueue(["a"])
    inv = ScriptedInvoker(lambda e: InvokeError("connection refused"))
    store = await _run(_mapping(), q, inv, lambda: bool(q.released), invoke_retry_budget_s=0.3)
    assert q.acked == [] and q.released[0] == "m1"
    assert next(iter(store.journal("u1"))).outcome == "invoke_error"


async def test_filtered_out_messages_are_acknowledged_without_invocation() -> None:
    q = MemoryQueue([json.dumps({"k": "keep"}), json.dumps({"k": "drop"}), "plain"])
    inv = ScriptedInvoker(ok)
    pattern = json.dumps({"body": {"k": ["keep"]}})
    await _run(
        _mapping(FilterCriteria={"Filters": [{"Pattern": pattern}]}), q, inv, lambda: len(q.acked) == 3
    )
    assert [r["body"] for e in inv.events for r in e["Records"]] == [json.dumps({"k": "keep"})]


async def test_payload_cap_carries_the_overflow_into_the_next_batch() -> None:
    q = MemoryQueue(["x" * 3_200_000, "y" * 3_200_000, "z" * 10])
    inv = ScriptedInvoker(ok)
    await _run(_mapping(), q, inv, lambda: len(q.acked) == 3)
    assert [[r["body"][0] for r in e["Records"]] for e in inv.events] == [["x"], ["y", "z"]]


async def test_window_collects_several_receives_up_to_batch_size() -> None:
    q = MemoryQueue([f"b{i}" for i in range(35)])
    inv = ScriptedInvoker(ok)
    await _run(_mapping(BatchSize=30, MaximumBatchingWindowInSeconds=1), q, inv, lambda: len(q.acked) == 35)
    assert len(inv.events[0]["Records"]) == 30


async def test_a_message_alone_over_6_mb_is_rejected_never_acknowledged_and_journaled() -> None:
    q = MemoryQueue(["x" * 6_300_000, "fine"])
    inv = ScriptedInvoker(ok)
    store = await _run(_mapping(), q, inv, lambda: q.acked == ["m2"] and bool(q.rejected))
    assert q.rejected == [("m1", "MaximumPayloadSizeExceeded")]
    assert [r["body"] for e in inv.events for r in e["Records"]] == ["fine"]
    discarded, invoked = store.journal("u1")
    assert (discarded.outcome, discarded.first_item, discarded.batch_size) == ("discarded", "m1", 1)
    assert discarded.detail["reason"] == "MaximumPayloadSizeExceeded"
    assert discarded.detail["bytes"] > 6_291_456
    assert invoked.outcome == "success"


class CountingQueue(MemoryQueue):
    """Counts the receives waiting at once: each is a held connection on a real queue."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = self.max_waiting = 0

    async def receive(self, max_messages: int, wait_s: float) -> Any:
        self.waiting += 1
        self.max_waiting = max(self.max_waiting, self.waiting)
        try:
            return await super().receive(max_messages, wait_s)
        finally:
            self.waiting -= 1


class SlowInvoker(ScriptedInvoker):
    """Each invocation takes 50 ms; records the most that ran at once."""

    def __init__(self) -> None:
        super().__init__(ok)
        self.running = self.max_running = 0

    async def invoke(self, payload: bytes) -> InvokeResult:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await anyio.sleep(0.05)
            return replace(await super().invoke(payload), duration_ms=50.0)
        finally:
            self.running -= 1


@dataclass
class Scaling:
    idle_waiting: int  # receives held at once while the queue was empty
    active_after: int  # pollers left once the backlog was gone


async def _scaling_run(mapping: EventSourceMapping, q: CountingQueue, inv: SlowInvoker) -> Scaling:
    runner = QueueRunner(
        mapping,
        profile_of(mapping.kind),
        q,
        RECORDS_ENVELOPE,
        inv,
        compile_filters([], profile_of(mapping.kind).filters),
        SqliteStore(":memory:"),
        QueueRunnerSettings(long_poll_s=0.05),
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await anyio.sleep(0.3)  # idle: several long polls come back empty
            idle_waiting = q.max_waiting
            for i in range(200):
                q.put(f"b{i}")
            while len(q.acked) < 200:
                await anyio.sleep(0.01)
            await anyio.sleep(0.3)  # idle again: the extra pollers leave
            scaling = Scaling(idle_waiting, runner._active)
            tg.cancel_scope.cancel()
    return scaling


async def test_an_idle_mapping_holds_one_long_poll_and_a_backlog_gets_five_batches_at_once() -> None:
    q, inv = CountingQueue(), SlowInvoker()
    scaling = await _scaling_run(_mapping(), q, inv)
    assert scaling.idle_waiting == 1
    assert inv.max_running >= 5  # AWS's first burst of concurrent batches
    assert scaling.active_after == 1


async def test_provisioned_pollers_stay_up_while_idle_and_cap_the_concurrency() -> None:
    q, inv = CountingQueue(), SlowInvoker()
    mapping = _mapping(ProvisionedPollerConfig={"MinimumPollers": 3, "MaximumPollers": 4})
    scaling = await _scaling_run(mapping, q, inv)
    assert scaling.idle_waiting == 3
    assert inv.max_running == 4
    assert scaling.active_after == 3


def _plain_runner(q: MemoryQueue, inv: ScriptedInvoker, settings: QueueRunnerSettings) -> QueueRunner:
    """An SQS mapping of BatchSize 10, no filter, on an in-memory store."""
    sqs = profile_of(SourceKind.SQS)
    return QueueRunner(
        _mapping(),
        sqs,
        q,
        RECORDS_ENVELOPE,
        inv,
        compile_filters([], sqs.filters),
        SqliteStore(":memory:"),
        settings,
    )


async def test_messages_trickling_into_an_idle_queue_get_five_batches_before_the_first_returns() -> None:
    """Each receive gets one message (none comes back full: no backlog seen), as a burst starts; AWS's five
    waiting pollers would each take one. The lone idle poller starts one more, with a short first wait,
    and each that finds a message starts the next."""
    q, inv = CountingQueue(), SlowInvoker()
    runner = _plain_runner(q, inv, QueueRunnerSettings(long_poll_s=1.0, wake_wait_s=0.2))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await anyio.sleep(0.05)
            assert q.max_waiting == 1  # idle: one long poll
            for i in range(5):
                q.put(f"b{i}")
                await anyio.sleep(0.005)  # a tenth of an invocation
            assert inv.max_running == 5  # before the first batch returned
            while len(q.acked) < 5:
                await anyio.sleep(0.01)
            await anyio.sleep(1.5)  # the extra pollers' long polls come back empty: they leave
            assert runner._active == 1
            tg.cancel_scope.cancel()


async def test_the_depth_is_asked_while_messages_flow_and_never_while_idle() -> None:
    class Counted(MemoryQueue):
        asked = 0

        async def depth(self) -> int | None:
            Counted.asked += 1
            return await super().depth()

    q, inv = Counted(), SlowInvoker()
    runner = _plain_runner(q, inv, QueueRunnerSettings(long_poll_s=0.05, depth_interval_s=0.05))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await anyio.sleep(0.3)
            assert Counted.asked == 0  # idle: nothing asked
            for i in range(100):
                q.put(f"b{i}")
            await anyio.sleep(0.15)
            assert Counted.asked >= 1
            while len(q.acked) < 100:
                await anyio.sleep(0.01)
            await anyio.sleep(0.3)  # a last look finds the queue empty, then no more asks
            asked = Counted.asked
            await anyio.sleep(0.3)
            assert Counted.asked == asked
            [depth] = [v for (name, _), v in values(runner.metrics._m).items() if name == "esm_queue_depth"]
            assert depth == 0
            tg.cancel_scope.cancel()
