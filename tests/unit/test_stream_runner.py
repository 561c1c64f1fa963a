"""The stream runner's behaviour on an in-memory Kinesis stream (pollers.memory.MemoryStream), an in-memory
store, a scripted invoker, a recording destination sender and an injected clock: ordering per shard and per
partition key, contiguous checkpoints, bisect, retries, record age, partial batch responses, filters, splits,
throttles and restarts.

The clock: ``now`` and ``sleep`` (retry and throttle back-off) are the fake :class:`Clock`; its sleep
advances the time and yields, so nothing waits for real. The poll and discovery intervals are a few ms of
real time (the runner waits for them on anyio directly).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from engine.checkpoints import lane_of
from engine.destinations import iso_millis
from engine.filtering import compile_filters
from engine.model import EventSourceMapping, SourceKind, State
from engine.pipeline.checkpoints import SHARD_END
from engine.ports import InvokeResult, SourceThrottled, StartPosition, StreamRecord
from engine.runner.stream import StreamRunner, StreamRunnerSettings
from engine.senders import DestinationError
from engine.sources.registry import profile_of
from engine.store.ports import JournalEntry
from engine.store.sqlite import SqliteStore
from engine.stream_shapes import RecordsShape
from engine.timescale import TimeScale
from pollers.memory import MemoryStream
from tests.unit.fakes import ScriptedInvoker, ok

pytestmark = pytest.mark.anyio

STREAM_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/memory"
DLQ = "arn:aws:sqs:us-east-1:000000000000:dlq"
T0 = 1_700_000_000.0
UUID = "u1"
SHARD = "shardId-000000000000"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    """The runner's ``now`` and ``sleep``: sleeping moves the time on at once (and yields)."""

    def __init__(self, t: float = T0) -> None:
        self.t = t
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        await anyio.lowlevel.checkpoint()


class RecordingSender:
    """What the runner uses of engine.senders.DestinationSender; the first ``failures`` sends raise."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[str, dict[str, Any], str | None]] = []

    async def send(
        self, destination_arn: str, record: Mapping[str, Any], *, s3_key: str | None = None
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise DestinationError("destination down (scripted)", destination=destination_arn)
        self.sent.append((destination_arn, dict(record), s3_key))


def data_of(record: Mapping[str, Any]) -> str:
    return base64.b64decode(record["kinesis"]["data"]).decode()


def seqs(event: Mapping[str, Any]) -> list[str]:
    return [r["kinesis"]["sequenceNumber"] for r in event["Records"]]


def batches(inv: ScriptedInvoker) -> list[list[str]]:
    """The sequence numbers of each invocation, in invocation order."""
    return [seqs(e) for e in inv.events]


def fails_on(poison: str) -> Callable[[dict[str, Any]], InvokeResult]:
    """A function that throws whenever its batch holds a record whose data is ``poison``."""

    def script(event: dict[str, Any]) -> InvokeResult:
        if any(data_of(r) == poison for r in event["Records"]):
            return InvokeResult(b'{"errorMessage":"poison"}', function_error="Unhandled")
        return InvokeResult(b"null")

    return script


def rows(store: SqliteStore) -> list[tuple[str, str | None, str | None, int, int]]:
    """The journal as (outcome, first, last, attempt, bisect depth)."""
    return [(e.outcome, e.first_item, e.last_item, e.attempt, e.bisect_depth) for e in store.journal(UUID)]


def journal(store: SqliteStore) -> list[JournalEntry]:
    return list(store.journal(UUID))


def _mapping(**params: Any) -> EventSourceMapping:
    return EventSourceMapping(
        uuid=UUID,
        kind=SourceKind.KINESIS,
        function_arn=ScriptedInvoker.info.function_arn,
        params={
            "EventSourceArn": STREAM_ARN,
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 0,
            "StartingPosition": "TRIM_HORIZON",
            **params,
        },
        enabled=True,
        state=State.ENABLED,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )


def on_failure(**params: Any) -> dict[str, Any]:
    return {"DestinationConfig": {"OnFailure": {"Destination": DLQ}}, **params}


def _runner(
    mapping: EventSourceMapping,
    stream: MemoryStream,
    invoker: ScriptedInvoker,
    store: SqliteStore,
    clock: Clock,
    sender: RecordingSender | None = None,
) -> StreamRunner:
    return StreamRunner(
        mapping,
        profile_of(mapping.kind),
        stream,
        invoker,
        compile_filters(mapping.filter_patterns, profile_of(mapping.kind).filters),
        store,
        sender or RecordingSender(),  # type: ignore[arg-type]  # the runner only calls send()
        StreamRunnerSettings(poll_interval_s=0.002, discovery_interval_s=0.01),
        RecordsShape("kinesis", STREAM_ARN),
        now=clock.now,
        sleep=clock.sleep,
    )


@asynccontextmanager
async def running(runner: StreamRunner, *, drain: bool = True) -> AsyncIterator[None]:
    """Run ``runner`` (its shards opened) for the body; then drain it and wait for it to stop, or, with
    ``drain=False``, cancel it (an engine killed mid-batch)."""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            ready = anyio.Event()
            tg.start_soon(runner.run, ready.set)
            await ready.wait()
            try:
                yield
            except BaseException:
                tg.cancel_scope.cancel()
                raise
            if drain:
                runner.drain()
            else:
                tg.cancel_scope.cancel()


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(3):
        while not condition():
            await anyio.sleep(0.002)


def checkpoint(store: SqliteStore, shard_id: str = SHARD) -> str | None:
    return store.checkpoints(UUID).get(shard_id)


# --- the fake itself ----------------------------------------------------------------------------------


async def test_memory_stream_start_positions_end_of_shard_and_throttles() -> None:
    clock = Clock()
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    r1 = stream.put("k", b"one", arrival_s=T0)
    r2 = stream.put("k", "two", arrival_s=T0 + 1)
    r3 = stream.put("k", "three", arrival_s=T0 + 2)
    assert r1.record == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "k",
            "sequenceNumber": "1",
            "data": base64.b64encode(b"one").decode(),
            "approximateArrivalTimestamp": T0,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{SHARD}:1",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": stream.invoke_identity_arn,
        "awsRegion": "us-east-1",
        "eventSourceARN": STREAM_ARN,
    }
    assert (r1.lane_key, r1.arrival_s) == ("k", T0)

    reader = await stream.open_shard(SHARD, StartPosition("TRIM_HORIZON"))
    assert (await reader.read(2)).records == [r1, r2]
    tail = await reader.read(10)
    assert tail.records == [r3] and not tail.end_of_shard
    at = await stream.open_shard(SHARD, StartPosition("AT_TIMESTAMP", timestamp=T0 + 1))
    assert (await at.read(10)).records == [r2, r3]
    after = await stream.open_shard(SHARD, StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number="1"))
    assert (await after.read(10)).records == [r2, r3]
    latest = await stream.open_shard(SHARD, StartPosition("LATEST"))
    assert (await latest.read(10)).records == []
    r4 = stream.put("k", "four")
    assert r4.arrival_s == T0  # arrival defaults to the stream's clock
    assert (await latest.read(10)).records == [r4]

    stream.throttle(SHARD)
    with pytest.raises(SourceThrottled):
        await latest.read(10)
    assert stream.throttled == [SHARD]

    children = stream.split(SHARD)
    assert [(s.shard_id, s.parent_ids, s.closed) for s in await stream.list_shards()] == [
        (SHARD, (), True),
        (children[0], (SHARD,), False),
        (children[1], (SHARD,), False),
    ]
    ended = await reader.read(10)
    assert ended.records == [r4] and ended.end_of_shard  # what was left, then the end
    assert (await latest.read(10)).end_of_shard
    with pytest.raises(ValueError):
        stream.put("k", "x", shard_id=SHARD)


# --- ordering -----------------------------------------------------------------------------------------


async def test_each_shard_is_invoked_in_order_in_batches_of_its_own_records() -> None:
    clock, store, inv = Clock(), SqliteStore(":memory:"), ScriptedInvoker(ok)
    stream = MemoryStream(STREAM_ARN, shards=2, now=clock.now)
    shards = [SHARD, "shardId-000000000001"]
    put: dict[str, list[StreamRecord]] = {s: [] for s in shards}
    for i in range(24):
        shard = shards[i % 2]
        put[shard].append(stream.put(f"k{i % 5}", f"d{i}", shard_id=shard))
    runner = _runner(_mapping(BatchSize=5), stream, inv, store, clock)
    async with running(runner):
        await until(lambda: all(checkpoint(store, s) == put[s][-1].sequence_number for s in shards))

    for shard in shards:
        events = [e for e in inv.events if e["Records"][0]["eventID"].startswith(shard + ":")]
        assert all(r["eventID"].startswith(shard + ":") for e in events for r in e["Records"])
        assert [len(e["Records"]) for e in events] == [5, 5, 2]
        assert [r for e in events for r in e["Records"]] == [dict(r.record) for r in put[shard]]
    assert {(e.scope, e.outcome) for e in journal(store)} == {(s, "invoked") for s in shards}


class InFlightInvoker(ScriptedInvoker):
    """Each invocation takes a few ms; records how many ran at once and whether a partition key was ever
    in two invocations at once."""

    def __init__(self) -> None:
        super().__init__(ok)
        self.running = self.max_running = 0
        self.in_flight: set[str] = set()
        self.overlaps: list[str] = []

    async def invoke(self, payload: bytes) -> InvokeResult:
        keys = {r["kinesis"]["partitionKey"] for r in json.loads(payload)["Records"]}
        self.overlaps += sorted(keys & self.in_flight)
        self.in_flight |= keys
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await anyio.sleep(0.003)
            return await super().invoke(payload)
        finally:
            self.running -= 1
            self.in_flight -= keys


async def test_parallelization_factor_keeps_each_partition_key_in_order_in_its_own_lane() -> None:
    clock, store, inv = Clock(), SqliteStore(":memory:"), InFlightInvoker()
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    keys = [f"key-{i}" for i in range(8)]
    assert len({lane_of(k, 4) for k in keys}) >= 3  # the keys spread over the lanes
    put = [stream.put(keys[i % 8], f"d{i}") for i in range(40)]
    runner = _runner(_mapping(BatchSize=3, ParallelizationFactor=4), stream, inv, store, clock)
    async with running(runner):
        await until(lambda: checkpoint(store) == "40")

    invoked = [r for e in inv.events for r in e["Records"]]
    assert sorted(int(r["kinesis"]["sequenceNumber"]) for r in invoked) == list(range(1, 41))  # each once
    for key in keys:
        in_order = [dict(r.record) for r in put if r.lane_key == key]
        assert [r for r in invoked if r["kinesis"]["partitionKey"] == key] == in_order
    assert inv.overlaps == []  # a key is never in two invocations at once
    assert inv.max_running > 1  # lanes run concurrently
    for entry in journal(store):  # each batch holds records of its lane only
        batch = next(e for e in inv.events if seqs(e)[0] == entry.first_item)
        lanes = {lane_of(r["kinesis"]["partitionKey"], 4) for r in batch["Records"]}
        assert lanes == {int(entry.scope.rsplit("-", 1)[1])}
        assert entry.scope.startswith(f"{SHARD}/lane-")


# --- checkpoints --------------------------------------------------------------------------------------


class GatedInvoker(ScriptedInvoker):
    """Holds every invocation holding one of ``gated`` (sequence numbers) until ``gate`` is set."""

    def __init__(self, gated: set[str], script: Callable[[dict[str, Any]], InvokeResult] = ok) -> None:
        super().__init__(script)
        self.gated = gated
        self.gate = anyio.Event()
        self.held = 0

    async def invoke(self, payload: bytes) -> InvokeResult:
        if self.gated & set(seqs(json.loads(payload))):
            self.held += 1
            await self.gate.wait()
        return await super().invoke(payload)


def keys_in_two_lanes(lanes: int) -> tuple[str, str]:
    a = "a"
    b = next(f"b{i}" for i in range(100) if lane_of(f"b{i}", lanes) != lane_of(a, lanes))
    return a, b


async def test_the_checkpoint_moves_only_over_contiguous_finished_records() -> None:
    clock, store = Clock(), SqliteStore(":memory:")
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    a, b = keys_in_two_lanes(2)
    b0 = stream.put(b, "b0")
    a1 = stream.put(a, "a1")  # held in lane A
    stream.put(b, "b1")
    b2 = stream.put(b, "b2")
    inv = GatedInvoker({a1.sequence_number})
    runner = _runner(_mapping(ParallelizationFactor=2), stream, inv, store, clock)
    async with running(runner):
        await until(lambda: inv.held == 1 and any(b2.sequence_number in s for s in batches(inv)))
        await until(lambda: checkpoint(store) == b0.sequence_number)
        await anyio.sleep(0.02)
        # lane B finished b1 and b2, but a1 before them is not finished: the checkpoint stays at b0
        assert checkpoint(store) == b0.sequence_number
        inv.gate.set()
        await until(lambda: checkpoint(store) == b2.sequence_number)
    assert batches(inv) == [["1", "3", "4"], ["2"]]


# --- failures -----------------------------------------------------------------------------------------


async def test_a_poison_record_is_bisected_out_and_sent_to_the_destination() -> None:
    clock, store, sender = Clock(), SqliteStore(":memory:"), RecordingSender()
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    recs = [stream.put("k", d, arrival_s=T0 - 10 + i) for i, d in enumerate(["ok1", "ok2", "poison", "ok4"])]
    inv = ScriptedInvoker(fails_on("poison"))
    mapping = _mapping(**on_failure(BisectBatchOnFunctionError=True, MaximumRetryAttempts=1))
    async with running(_runner(mapping, stream, inv, store, clock, sender)):
        await until(lambda: checkpoint(store) == "4")

    assert batches(inv) == [["1", "2", "3", "4"], ["1", "2"], ["3", "4"], ["3"], ["3"], ["4"]]
    assert rows(store) == [
        ("function_error", "1", "4", 1, 0),
        ("invoked", "1", "2", 1, 1),
        ("function_error", "3", "4", 1, 1),
        ("function_error", "3", "3", 1, 2),
        ("function_error", "3", "3", 2, 2),
        ("discarded", "3", "3", 4, 0),  # attempt = approximateInvokeCount of the discard
        ("destination_sent", "3", "3", 4, 0),
        ("invoked", "4", "4", 1, 2),
    ]
    discarded = journal(store)[5]
    assert discarded.detail == {"reason": "RetryAttemptsExhausted", "destination": DLQ}
    assert [(arn, key) for arn, _, key in sender.sent] == [(DLQ, None)]
    record = sender.sent[0][1]
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 4
    assert record["requestContext"]["functionArn"] == inv.info.function_arn
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["KinesisBatchInfo"] == {
        "shardId": SHARD,
        "startSequenceNumber": "3",
        "endSequenceNumber": "3",
        "approximateArrivalOfFirstRecord": iso_millis(recs[2].arrival_s),
        "approximateArrivalOfLastRecord": iso_millis(recs[2].arrival_s),
        "batchSize": 1,
        "streamArn": STREAM_ARN,
    }
    assert record["timestamp"] == iso_millis(clock.t)  # the failure time is the injected clock's


async def test_retry_exhaustion_discards_the_batch_and_the_shard_moves_on() -> None:
    clock, store, sender = Clock(), SqliteStore(":memory:"), RecordingSender()
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    for d in ["ok1", "poison", "ok3"]:
        stream.put("k", d)
    inv = ScriptedInvoker(fails_on("poison"))
    mapping = _mapping(**on_failure(BatchSize=2, MaximumRetryAttempts=2))
    async with running(_runner(mapping, stream, inv, store, clock, sender)):
        await until(lambda: checkpoint(store) == "3")

    assert batches(inv) == [["1", "2"]] * 3 + [["3"]]  # MaximumRetryAttempts 2: three invocations
    assert rows(store) == [
        ("function_error", "1", "2", 1, 0),
        ("function_error", "1", "2", 2, 0),
        ("function_error", "1", "2", 3, 0),
        ("discarded", "1", "2", 3, 0),
        ("destination_sent", "1", "2", 3, 0),
        ("invoked", "3", "3", 1, 0),
    ]
    assert len(clock.slept) == 2  # a back-off before each retry, none after the discard
    record = sender.sent[0][1]
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert (record["KinesisBatchInfo"]["startSequenceNumber"], record["KinesisBatchInfo"]["batchSize"]) == (
        "1",
        2,
    )


async def test_a_failing_destination_blocks_the_shard_until_the_record_is_delivered() -> None:
    clock, store, sender = Clock(), SqliteStore(":memory:"), RecordingSender(failures=2)
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    stream.put("k", "poison")
    stream.put("k", "ok2")
    inv = ScriptedInvoker(fails_on("poison"))
    mapping = _mapping(**on_failure(BatchSize=1, MaximumRetryAttempts=0))
    async with running(_runner(mapping, stream, inv, store, clock, sender)):
        await until(lambda: checkpoint(store) == "2")

    assert [r[0] for r in rows(store)] == [
        "function_error",
        "discarded",
        "destination_failed",
        "destination_failed",
        "destination_sent",
        "invoked",  # record 2 only once the failure record of 1 is delivered
    ]
    assert len(sender.sent) == 1
    assert len(clock.slept) == 2  # the destination's back-off, on the injected clock


async def test_an_expired_record_is_never_invoked_and_goes_to_the_destination() -> None:
    clock, store, sender = Clock(), SqliteStore(":memory:"), RecordingSender()
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    old = stream.put("k", "old", arrival_s=T0 - 61)
    stream.put("k", "fresh", arrival_s=T0 - 59)
    inv = ScriptedInvoker(ok)
    mapping = _mapping(**on_failure(MaximumRecordAgeInSeconds=60))
    async with running(_runner(mapping, stream, inv, store, clock, sender)):
        await until(lambda: checkpoint(store) == "2")

    assert batches(inv) == [["2"]]
    assert rows(store) == [
        ("discarded", "1", "1", 1, 0),
        ("destination_sent", "1", "1", 1, 0),
        ("invoked", "2", "2", 1, 0),
    ]
    record = sender.sent[0][1]
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert "responseContext" not in record
    assert record["KinesisBatchInfo"]["approximateArrivalOfFirstRecord"] == iso_millis(old.arrival_s)


async def test_a_record_that_ages_out_while_retried_is_discarded_as_expired() -> None:
    clock, store, sender = Clock(), SqliteStore(":memory:"), RecordingSender()
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    stream.put("k", "poison")
    stream.put("k", "ok2", arrival_s=T0 + 60)  # still young when the first is given up on
    failing = fails_on("poison")

    def slow(event: dict[str, Any]) -> InvokeResult:
        clock.t += 25  # each invocation takes 25 s of the injected clock
        return failing(event)

    inv = ScriptedInvoker(slow)
    mapping = _mapping(**on_failure(BatchSize=1, MaximumRecordAgeInSeconds=60))  # retries: unlimited
    async with running(_runner(mapping, stream, inv, store, clock, sender)):
        await until(lambda: checkpoint(store) == "2")

    # invoked at ages 0, ~25 and ~50 s; older than 60 s before the fourth
    assert batches(inv) == [["1"]] * 3 + [["2"]]
    assert [r[0] for r in rows(store)] == ["function_error"] * 3 + [
        "discarded",
        "destination_sent",
        "invoked",
    ]
    record = sender.sent[0][1]
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert "responseContext" not in record


def partial(failed: list[str], then: Callable[[dict[str, Any]], InvokeResult] = ok) -> Any:
    """First invocation: report ``failed`` as batchItemFailures; every later one: ``then``."""
    calls = [0]

    def script(event: dict[str, Any]) -> InvokeResult:
        calls[0] += 1
        if calls[0] > 1:
            return then(event)
        return InvokeResult(
            json.dumps({"batchItemFailures": [{"itemIdentifier": s} for s in failed]}).encode()
        )

    return script


async def test_report_batch_item_failures_retries_from_the_lowest_failed_record() -> None:
    clock, store = Clock(), SqliteStore(":memory:")
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    for i in range(5):
        stream.put("k", f"d{i}")
    inv = ScriptedInvoker(partial(["4", "2"]))
    mapping = _mapping(FunctionResponseTypes=["ReportBatchItemFailures"])
    async with running(_runner(mapping, stream, inv, store, clock)):
        await until(lambda: checkpoint(store) == "5")

    assert batches(inv) == [["1", "2", "3", "4", "5"], ["2", "3", "4", "5"]]
    # the journal does not tell a partial failure from a success: both are "invoked"
    assert rows(store) == [("invoked", "1", "5", 1, 0), ("invoked", "2", "5", 2, 0)]


async def test_a_partial_failure_retried_to_exhaustion_reports_a_null_function_error() -> None:
    clock, store, sender = Clock(), SqliteStore(":memory:"), RecordingSender()
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    for i in range(3):
        stream.put("k", f"d{i}")
    inv = ScriptedInvoker(partial(["2"]))
    mapping = _mapping(
        **on_failure(FunctionResponseTypes=["ReportBatchItemFailures"], MaximumRetryAttempts=0)
    )
    async with running(_runner(mapping, stream, inv, store, clock, sender)):
        await until(lambda: checkpoint(store) == "3")

    assert batches(inv) == [["1", "2", "3"]]
    record = sender.sent[0][1]
    assert record["responseContext"]["functionError"] is None
    assert (record["KinesisBatchInfo"]["startSequenceNumber"], record["KinesisBatchInfo"]["batchSize"]) == (
        "2",
        2,
    )


async def test_a_partial_failure_checkpoints_before_the_lowest_failed_record_while_it_is_retried() -> None:
    clock, store = Clock(), SqliteStore(":memory:")
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    for i in range(5):
        stream.put("k", f"d{i}")
    inv = ScriptedInvoker(partial(["3"], then=fails_on("d2")))  # the remainder keeps failing
    mapping = _mapping(FunctionResponseTypes=["ReportBatchItemFailures"])
    async with running(_runner(mapping, stream, inv, store, clock), drain=False):
        await until(lambda: len(inv.events) >= 3)
        while_retried = checkpoint(store)
    assert batches(inv)[1:3] == [["3", "4", "5"]] * 2
    assert while_retried == "2"  # the records before the lowest failed one are final (spec 4.5)


# --- filters, splits, throttles -----------------------------------------------------------------------


async def test_filtered_out_records_advance_the_checkpoint_without_an_invocation() -> None:
    clock, store, inv = Clock(), SqliteStore(":memory:"), ScriptedInvoker(ok)
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    drop, keep = json.dumps({"k": "drop"}), json.dumps({"k": "keep"})
    stream.put("p", drop)
    stream.put("p", "not json")
    pattern = json.dumps({"data": {"k": ["keep"]}})
    mapping = _mapping(FilterCriteria={"Filters": [{"Pattern": pattern}]})
    async with running(_runner(mapping, stream, inv, store, clock)):
        await until(lambda: checkpoint(store) == "2")
        assert inv.events == []
        kept = stream.put("p", keep)
        stream.put("p", drop)
        await until(lambda: checkpoint(store) == "4")

    assert [r for e in inv.events for r in e["Records"]] == [dict(kept.record)]
    # each read's refused records are journaled, listed (a read's, as it is read: before its batch's row)
    assert sorted(rows(store), key=lambda r: r[1]) == [
        ("filtered_out", "1", "2", 0, 0),
        ("invoked", "3", "3", 1, 0),
        ("filtered_out", "4", "4", 0, 0),
    ]
    assert [e.items for e in store.journal() if e.outcome == "filtered_out"] == [["1", "2"], ["4"]]


async def test_children_of_a_split_shard_are_read_only_after_the_parent_is_finished() -> None:
    clock, store = Clock(), SqliteStore(":memory:")
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    inv = GatedInvoker({"1"})
    runner = _runner(_mapping(StartingPosition="LATEST"), stream, inv, store, clock)
    async with running(runner):
        stream.put("k", "p1")
        stream.put("k", "p2")
        await until(lambda: inv.held == 1)
        left, right = stream.split(SHARD)
        stream.put("k", "c1", shard_id=left)
        stream.put("k", "c2", shard_id=right)
        await anyio.sleep(0.05)  # several discovery rounds
        assert [shard for shard, _ in stream.opened] == [SHARD]
        assert inv.events == []
        inv.gate.set()
        await until(lambda: checkpoint(store, left) == "3" and checkpoint(store, right) == "4")

    assert checkpoint(store) == SHARD_END
    assert stream.opened[0] == (SHARD, StartPosition("LATEST"))
    # a child starts at its beginning, whatever the mapping's StartingPosition
    assert sorted(stream.opened[1:]) == [
        (left, StartPosition("TRIM_HORIZON")),
        (right, StartPosition("TRIM_HORIZON")),
    ]
    assert batches(inv)[0] == ["1", "2"]
    assert sorted(batches(inv)[1:]) == [["3"], ["4"]]


async def test_a_throttled_read_is_backed_off_on_the_clock_and_loses_nothing() -> None:
    clock, store, inv = Clock(), SqliteStore(":memory:"), ScriptedInvoker(ok)
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    for i in range(12):
        stream.put("k", f"d{i}")
    stream.throttle()
    stream.throttle()
    async with running(_runner(_mapping(BatchSize=5), stream, inv, store, clock)):
        await until(lambda: checkpoint(store) == "12")
        assert stream.throttled == [SHARD, SHARD]
        assert 0.1 <= clock.slept[0] <= 0.2 and 0.2 <= clock.slept[1] <= 0.4  # Backoff(0.2, cap 5)
        stream.throttle(SHARD)
        stream.put("k", "d12")
        await until(lambda: checkpoint(store) == "13")

    assert stream.throttled == [SHARD] * 3
    assert len(clock.slept) == 3 and clock.slept[2] <= 0.2  # reset by the successful reads
    assert batches(inv) == [
        [str(i) for i in range(1, 6)],
        [str(i) for i in range(6, 11)],
        ["11", "12"],
        ["13"],
    ]


# --- restarts -----------------------------------------------------------------------------------------


async def test_a_second_runner_resumes_after_the_stored_checkpoint() -> None:
    clock, store = Clock(), SqliteStore(":memory:")
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    for d in ["ok1", "ok2", "poison", "ok4"]:
        stream.put("k", d)
    first = ScriptedInvoker(fails_on("poison"))  # retried for ever: the engine is killed meanwhile
    mapping = _mapping(BatchSize=2)
    async with running(_runner(mapping, stream, first, store, clock), drain=False):
        await until(lambda: len(first.events) >= 3)
    assert checkpoint(store) == "2"
    assert batches(first)[:3] == [["1", "2"], ["3", "4"], ["3", "4"]]

    stream.put("k", "ok5")
    second = ScriptedInvoker(ok)
    async with running(_runner(mapping, stream, second, store, clock)):
        await until(lambda: checkpoint(store) == "5")
    assert stream.opened[-1] == (SHARD, StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number="2"))
    assert batches(second) == [["3", "4"], ["5"]]  # the unfinished batch again, nothing finished again


async def test_latest_is_fixed_at_the_first_start_so_a_restart_misses_nothing() -> None:
    clock, store = Clock(), SqliteStore(":memory:")
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    stream.put("k", "before", arrival_s=T0 - 5)
    mapping = _mapping(StartingPosition="LATEST")
    async with running(_runner(mapping, stream, ScriptedInvoker(ok), store, clock)):
        pass  # stopped before any record arrived: no checkpoint
    assert checkpoint(store) is None
    clock.t += 10
    stream.put("k", "while-stopped")

    inv = ScriptedInvoker(ok)
    async with running(_runner(mapping, stream, inv, store, clock)):
        await until(lambda: checkpoint(store) == "2")
    assert stream.opened == [
        (SHARD, StartPosition("LATEST")),
        (SHARD, StartPosition("AT_TIMESTAMP", timestamp=T0)),
    ]
    assert batches(inv) == [["2"]]


# --- tumbling windows: a mode of the same shard loop ------------------------------------------------


def window_sum(event: dict[str, Any]) -> InvokeResult:
    """Counts the window's records in its state."""
    count = int(event["state"].get("count", 0)) + len(event["Records"])
    return InvokeResult(json.dumps({"state": {"count": count}}).encode())


def windows_seen(inv: ScriptedInvoker) -> list[tuple[str, list[str], dict[str, Any], bool]]:
    """Each invocation as (window start, its records' data, the state it was given, is it final)."""
    return [
        (e["window"]["start"], [data_of(r) for r in e["Records"]], e["state"], e["isFinalInvokeForWindow"])
        for e in inv.events
    ]


async def test_tumbling_windows_fold_each_window_then_end_it_with_a_final_invocation() -> None:
    clock, store, inv = Clock(T0 + 0.5), SqliteStore(":memory:"), ScriptedInvoker(window_sum)
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    first = [stream.put("k", f"a{i}", arrival_s=T0 + 0.1 * i) for i in range(3)]
    second = [stream.put("k", f"b{i}", arrival_s=T0 + 1.2 + 0.1 * i) for i in range(2)]
    runner = _runner(_mapping(TumblingWindowInSeconds=1, BatchSize=10), stream, inv, store, clock)
    async with running(runner):
        # the first window is over (a later record is queued behind it): its final invocation ends it
        await until(lambda: checkpoint(store) == first[-1].sequence_number)
        assert [(d, s, f) for _, d, s, f in windows_seen(inv)[:2]] == [
            (["a0", "a1", "a2"], {}, False),
            ([], {"count": 3}, True),
        ]
        await until(lambda: len(inv.events) == 3)
        assert checkpoint(store) == first[-1].sequence_number  # the second window is still open
        clock.t = T0 + 1000  # the second window closes by its clock (idle: no later record in sight)
        await until(lambda: checkpoint(store) == second[-1].sequence_number)
    seen = windows_seen(inv)
    assert [(d, s, f) for _, d, s, f in seen[2:]] == [(["b0", "b1"], {}, False), ([], {"count": 2}, True)]
    assert seen[0][0] != seen[2][0]  # two windows
    assert [e.outcome for e in journal(store)] == ["invoked"] * 4


async def test_a_final_window_invocation_that_keeps_failing_is_journaled_as_abandoned() -> None:
    def fails_when_final(event: dict[str, Any]) -> InvokeResult:
        if event["isFinalInvokeForWindow"]:
            return InvokeResult(b'{"errorMessage":"boom"}', function_error="Unhandled")
        return window_sum(event)

    clock, store, inv = Clock(T0 + 1000), SqliteStore(":memory:"), ScriptedInvoker(fails_when_final)
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    last = [stream.put("k", f"a{i}", arrival_s=T0 + 0.1 * i) for i in range(2)][-1]
    mapping = _mapping(TumblingWindowInSeconds=1, MaximumRetryAttempts=1)
    async with running(_runner(mapping, stream, inv, store, clock)):
        await until(lambda: len(inv.events) == 1)
        clock.t += 1000  # the window closes (idle: no later record in sight)
        await until(lambda: checkpoint(store) == last.sequence_number)
    assert [f for _, _, _, f in windows_seen(inv)] == [False, True, True]  # the final, retried once
    assert rows(store)[-1] == ("discarded", None, None, 2, 0)
    assert journal(store)[-1].detail == {"reason": "RetryAttemptsExhausted", "final_window_invocation": True}
    assert clock.slept  # the retry waited out a back-off on the injected clock


async def test_a_drained_window_keeps_its_state_and_the_next_runner_resumes_it() -> None:
    clock, store = Clock(T0 + 0.5), SqliteStore(":memory:")
    stream = MemoryStream(STREAM_ARN, now=clock.now)
    mapping = _mapping(TumblingWindowInSeconds=10, BatchSize=2, MaximumBatchingWindowInSeconds=0)
    before = ScriptedInvoker(window_sum)
    for i in range(2):
        stream.put("k", f"a{i}", arrival_s=T0 + 0.1 * i)
    async with running(_runner(mapping, stream, before, store, clock)):
        await until(lambda: len(before.events) == 1)
    assert windows_seen(before)[0][2] == {}  # the window's first invocation
    saved = store.checkpoints(UUID)
    assert json.loads(saved[f"window:{SHARD}"])  # the open window's state is stored, no checkpoint yet
    assert SHARD not in saved

    after = ScriptedInvoker(window_sum)
    last = stream.put("k", "a2", arrival_s=T0 + 0.3)
    async with running(_runner(mapping, stream, after, store, clock)):
        await until(lambda: len(after.events) == 1)
        clock.t = T0 + 1000  # the window closes
        await until(lambda: checkpoint(store) == last.sequence_number)
    # only the new record is read again, with the state the first runner's invocation left
    assert [(d, s, f) for _, d, s, f in windows_seen(after)] == [
        (["a2"], {"count": 2}, False),
        ([], {"count": 3}, True),
    ]


async def test_at_a_time_scale_a_tumbling_window_closes_on_the_scaled_clock() -> None:
    """A 60 s window and its 2-minute idle close take at most 180 scaled seconds: 0.3 s at 600 times."""
    scale = TimeScale(600)
    store, inv = SqliteStore(":memory:"), ScriptedInvoker(window_sum)
    stream = MemoryStream(STREAM_ARN, now=time.time)  # arrivals in real time, read on the scaled clock
    stream.put("k", "a0")
    runner = StreamRunner(
        _mapping(TumblingWindowInSeconds=60, BatchSize=10),
        profile_of(SourceKind.KINESIS),
        stream,
        inv,
        compile_filters([], profile_of(SourceKind.KINESIS).filters),
        store,
        RecordingSender(),  # type: ignore[arg-type]
        StreamRunnerSettings(poll_interval_s=0.002, discovery_interval_s=0.01),
        RecordsShape("kinesis", STREAM_ARN),
        now=scale.now,
        time_scale=scale,
    )
    started = time.monotonic()
    with anyio.fail_after(5):  # unscaled, the window would close after two to three minutes
        async with running(runner):
            await until(lambda: [f for _, _, _, f in windows_seen(inv)] == [False, True])
    assert time.monotonic() - started < 3
    [(start, _, _, _), (_, _, state, _)] = windows_seen(inv)
    assert state == {"count": 1}
    # the window's bounds are on the scaled clock: 60 s of it
    first = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
    assert first % 60 == 0
