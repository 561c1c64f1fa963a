"""Target 2 of issue 13: one mapping over many shards drains a pre-filled stream, against a raw client
reading the same shards in the same run, with every shard's order checked.

Kinesis (kinesis-mock): a stream of ``--shards`` shards is pre-filled with ``--records`` records
(PutRecords of 500, 8 senders, random partition keys; at most PREFILL_BUDGET_S, then what was put is
drained). Kafka: a topic of ``--shards`` partitions is pre-filled by kafka_bench's producer (round robin,
acks=1, sends gathered by 1,000).

Each source is drained from the start in rounds of raw, engine, engine, raw (Kinesis 1 round, Kafka 3:
the machine's speed drifts). records/s = records / (last record handled - consumer started or mapping
created), so shard listing, iterators and group joins count; the row gives each consumer's median, and
engine/raw is the median of the ratios of drains next to each other in time. The CPU time of this
process per record says where the time goes.

- raw Kinesis: stream_bench's loop, one task per shard (GetShardIterator TRIM_HORIZON, GetRecords Limit
  100 until the shard is read, the engine's 1 s poll interval after an empty read), on a client with the
  engine's 64 connections; events of the engine's shape handed to the same function.
- raw Kafka: one aiokafka consumer (own group, earliest), ``getmany(max_records=100)`` in a loop, one
  event per partition of each read, one commit per read.
- engine: one mapping, BatchSize 100, TRIM_HORIZON (Kafka: window 0), in-process async function.

Order: the function records each record's (shard, sequence number) as it is invoked and counts records
at or before the last one seen on their shard (bench/scale/shards_fns.py); after a drain, any record
beyond the expected count is a duplicate.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import stream_bench
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from anyio.abc import TaskGroup
from botocore.exceptions import ClientError
from kafka_bench import FUNCTION as KAFKA_FUNCTION
from kafka_bench import KafkaOps
from kafka_bench import via_engine as kafka_via_engine
from stream_bench import KinesisOps, Source

from engine.app import Engine, EngineSettings
from engine.config import EngineConfig, FunctionConfig
from engine.runner.stream import StreamRunnerSettings
from scale import shards_fns as fns
from scale.row import Row, fmt

BENCH_DIR = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
KINESIS_FUNCTION = "scale-kinesis"
#: PutRecords' ceiling
PUT_BATCH = 500
PUT_SENDERS = 8
#: pre-filling kinesis-mock stops here; what was put is drained (said in the row)
PREFILL_BUDGET_S = 300.0
KINESIS_POLL_S = 1.0
#: the engine's pool for short calls (pollers.aws.AwsClients): the raw client gets as many connections
POOL = 64
DRAIN_TIMEOUT_S = 900.0
#: rounds of raw/engine/engine/raw drains: a Kinesis drain takes tens of seconds, a Kafka one a few
KINESIS_ROUNDS = 1
KAFKA_ROUNDS = 3
GOAL_RATIO = 0.90
HOW = "2 shared cores (other sessions working); in-process async function"

Stopper = Callable[[], Awaitable[None]]
#: starts a consumer (its tasks in the drain's task group) and gives the way to stop it
Start = Callable[[TaskGroup], Awaitable[Stopper]]


def aws_credentials() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")


@contextlib.asynccontextmanager
async def running_engine(functions: dict[str, str], **settings: Any) -> AsyncIterator[Engine]:
    """An engine serving in this process (data in a temporary directory) with in-process ``functions``
    (name -> handler, imported from bench/)."""
    with tempfile.TemporaryDirectory() as data:
        config = EngineConfig(
            base_dir=BENCH_DIR,
            functions={n: FunctionConfig(name=n, handler=h, timeout=30) for n, h in functions.items()},
        )
        engine = Engine(EngineSettings(port=0, data_dir=Path(data), drain_timeout_s=2.0, **settings), config)
        async with anyio.create_task_group() as tg:
            await tg.start(engine.serve)
            try:
                yield engine
            finally:
                tg.cancel_scope.cancel()


async def wait_for(source: str, n: int, timeout: float) -> bool:
    """Until the functions have seen ``n`` records of ``source``; False if not within ``timeout``."""
    with anyio.move_on_after(timeout):
        while fns.COUNT[source] < n:
            await anyio.sleep(0.005)
        return True
    return False


@dataclass(frozen=True)
class Drained:
    """One consumer's drain of ``n`` records."""

    rps: float
    #: records at or before the last one seen on their shard
    violations: int
    handled: int
    #: this process's CPU time per record (both the consumer and the function run here)
    cpu_us: float


async def drain(source: str, start: Start, n: int) -> Drained:
    fns.reset()
    async with anyio.create_task_group() as tg:
        t0, cpu0 = time.monotonic(), time.process_time()
        stop = await start(tg)
        try:
            drained = await wait_for(source, n, DRAIN_TIMEOUT_S)
            elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
            await anyio.sleep(0.5)  # a duplicate right after the last record would show here
        finally:
            await stop()
    rate = n / elapsed if drained else float("nan")
    return Drained(rate, fns.VIOLATIONS[0], fns.COUNT[source], cpu / n * 1e6)


def legacy(start: Callable[[Any], Awaitable[Stopper]], src: Any) -> Start:
    """A stream_bench / kafka_bench consumer (it owns its tasks) as a Start."""

    async def started(tg: TaskGroup) -> Stopper:
        return await start(src)

    return started


async def abba(source: str, raw: Start, engine: Start, n: int, rounds: int) -> list[tuple[str, Drained]]:
    """Drains in the order raw, engine, engine, raw, ``rounds`` times: (consumer, drain) in that order."""
    return [
        (name, await drain(source, raw if name == "raw" else engine, n))
        for name in ("raw", "engine", "engine", "raw") * rounds
    ]


def result_rows(label: str, n: int, drains: list[tuple[str, Drained]], how: str) -> list[Row]:
    runs: dict[str, list[Drained]] = {"raw": [], "engine": []}
    for name, d in drains:
        runs[name].append(d)

    def median(name: str, what: str) -> float:
        return statistics.median(getattr(d, what) for d in runs[name])

    def order(name: str) -> tuple[int, int]:
        """(violations, duplicates) over its drains."""
        return sum(d.violations for d in runs[name]), sum(max(0, d.handled - n) for d in runs[name])

    engine, raw = median("engine", "rps"), median("raw", "rps")
    # each engine drain against the raw drain next to it in time (the machine's speed drifts)
    pairs = [
        (a if a_name == "engine" else b).rps / (b if a_name == "engine" else a).rps
        for (a_name, a), (_, b) in zip(drains[::2], drains[1::2], strict=True)
    ]
    ratio = statistics.median(pairs)
    each = " / ".join(f"{d.rps:,.0f}" for _, d in drains)
    (ev, ed), (rv, rd) = order("engine"), order("raw")
    missing = [n - d.handled for name in ("engine", "raw") for d in runs[name] if d.handled < n]
    return [
        Row(
            f"shards: {label}, throughput",
            f"{fmt(engine, 'rec/s', 0)} ({fmt(ratio, 'x raw', 2)})",
            f">= {GOAL_RATIO:.2f} x raw",
            ratio >= GOAL_RATIO,
            fmt(raw, "rec/s", 0),
            f"{n:,} records; medians of {len(runs['raw'])} drains each, in the order raw/engine/engine/raw: "
            f"{each} rec/s; engine/raw: median of the drains next to each other in time "
            f"({', '.join(f'{p:.2f}' for p in pairs)}); CPU of this process per record: engine "
            f"{median('engine', 'cpu_us'):,.0f} us, raw {median('raw', 'cpu_us'):,.0f} us; {how}",
        ),
        Row(
            f"shards: {label}, order",
            f"{ev} violations, {ed} duplicates",
            "0 violations",
            ev == 0 and ed == 0 and not missing,
            f"{rv} violations, {rd} duplicates",
            f"every record's (shard, sequence) checked as invoked, {len(runs['engine'])} drains each"
            + (f"; records missing in a drain: {missing}" if missing else ""),
        ),
    ]


# --- Kinesis -----------------------------------------------------------------------------------------


async def create_stream(ops: KinesisOps, wanted: int) -> tuple[Source, int]:
    """A stream of ``wanted`` shards, or of half as many while kinesis-mock's shard limit refuses it."""
    shards = wanted
    while True:
        ops.shards = shards
        try:
            return await ops.create(), shards
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "LimitExceededException" or shards == 1:
                raise
            shards //= 2


async def fill_until(
    put: Callable[[int], Awaitable[None]], n: int, chunk: int, senders: int, budget_s: float
) -> tuple[int, float]:
    """``put(count)`` chunks of up to ``chunk`` from ``senders`` concurrent senders until ``n`` are put or
    ``budget_s`` is spent (no new chunk starts after it): (records put, seconds)."""
    put_count = [0]
    claimed = [0]
    t0 = time.monotonic()
    deadline = t0 + budget_s

    async def sender() -> None:
        while claimed[0] < n and time.monotonic() < deadline:
            count = min(chunk, n - claimed[0])
            claimed[0] += count
            await put(count)
            put_count[0] += count

    async with anyio.create_task_group() as tg:
        for i in range(senders):
            tg.start_soon(sender, name=f"prefill sender {i}")
    return put_count[0], time.monotonic() - t0


async def kinesis_rows(engine: Engine, args: argparse.Namespace, endpoint: str) -> list[Row]:
    config = AioConfig(max_pool_connections=POOL)
    async with get_session().create_client(
        "kinesis", region_name=REGION, endpoint_url=endpoint, config=config
    ) as client:
        ops = KinesisOps(client, args.shards)
        ops.handler = fns.kinesis_ordered
        ops.function = KINESIS_FUNCTION
        src, shards = await create_stream(ops, args.shards)
        try:
            n, fill_s = await fill_until(
                lambda count: ops.put_many(src, count), args.records, PUT_BATCH, PUT_SENDERS, PREFILL_BUDGET_S
            )
            runs = await abba(
                "kinesis",
                legacy(stream_bench.raw_loop(ops, KINESIS_POLL_S), src),
                legacy(stream_bench.via_engine(engine, ops), src),
                n,
                KINESIS_ROUNDS,
            )
        finally:
            await ops.delete(src)
    notes = [f"kinesis-mock {endpoint}, {shards} shards"]
    if shards < args.shards:
        notes.append(f"{args.shards} refused by kinesis-mock's shard limit (200 per account)")
    if n < args.records:
        notes.append(f"{n:,} of {args.records:,} records put within {PREFILL_BUDGET_S:.0f} s")
    notes.append(f"pre-fill {n / fill_s:,.0f} rec/s; BatchSize / Limit 100, poll {KINESIS_POLL_S:g} s")
    return result_rows(f"Kinesis, {shards} shards", n, runs, "; ".join([*notes, HOW]))


# --- Kafka -------------------------------------------------------------------------------------------


def raw_kafka(bootstrap: str, topic: str) -> Start:
    async def start(tg: TaskGroup) -> Stopper:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"scale-raw-{uuid.uuid4().hex[:10]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        scope = anyio.CancelScope()
        ended = anyio.Event()

        async def loop() -> None:
            try:
                with scope:
                    while True:
                        fetched = await consumer.getmany(timeout_ms=500, max_records=100)
                        for tp, messages in fetched.items():
                            records = [
                                {
                                    "topic": m.topic,
                                    "partition": m.partition,
                                    "offset": m.offset,
                                    "value": base64.b64encode(m.value).decode("ascii"),
                                }
                                for m in messages
                            ]
                            event = {
                                "eventSource": "SelfManagedKafka",
                                "records": {f"{tp.topic}-{tp.partition}": records},
                            }
                            await fns.kafka_ordered(event, None)
                        if fetched:
                            await consumer.commit()
            finally:
                ended.set()

        tg.start_soon(loop, name="raw kafka getmany loop")

        async def stopper() -> None:
            scope.cancel()
            await ended.wait()
            await consumer.stop()

        return stopper

    return start


async def kafka_rows(engine: Engine, args: argparse.Namespace, bootstrap: str) -> list[Row]:
    ops = KafkaOps(bootstrap, args.shards, size=100)
    await ops.open()
    topic = ops.topic_name()
    try:
        await ops.create(topic)
        try:
            t0 = time.monotonic()
            await ops.prefill(topic, args.records)
            fill_s = time.monotonic() - t0
            runs = await abba(
                "kafka",
                raw_kafka(bootstrap, topic),
                legacy(kafka_via_engine(engine, bootstrap, 100, 0), topic),
                args.records,
                KAFKA_ROUNDS,
            )
        finally:
            await ops.delete(topic)
    finally:
        await ops.aclose()
    how = (
        f"Kafka {bootstrap}, {args.shards} partitions, ~100 B values, pre-fill "
        f"{args.records / fill_s:,.0f} rec/s; BatchSize 100, window 0; raw getmany(max_records=100); {HOW}"
    )
    return result_rows(f"Kafka, {args.shards} partitions", args.records, runs, how)


async def failed_as_row(label: str, measured: Awaitable[list[Row]]) -> list[Row]:
    """A source whose service failed (kinesis-mock stops answering when other work saturates it) is a
    missed row saying why, and the other source is still measured."""
    try:
        return await measured
    except Exception as e:  # the table is the output: an error is one of its rows
        while isinstance(e, ExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        return [
            Row(f"shards: {label}", "failed", f">= {GOAL_RATIO:.2f} x raw, 0 violations", False, "", repr(e))
        ]


def quiet_producer() -> None:
    """A partition just created can refuse the first produce (NotLeaderForPartition) though the metadata
    names its leader: the producer retries it, and only the benchmark's producer logs there."""
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.ERROR)


async def rows(args: argparse.Namespace) -> list[Row]:
    aws_credentials()
    quiet_producer()
    kinesis = os.environ.get("ESM_TEST_KINESIS_ENDPOINT", "http://127.0.0.1:4568")
    bootstrap = os.environ.get("ESM_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    functions = {
        KINESIS_FUNCTION: "scale.shards_fns.kinesis_ordered",
        KAFKA_FUNCTION: "scale.shards_fns.kafka_ordered",
    }
    async with running_engine(
        functions,
        endpoints={"kinesis": kinesis},
        stream=StreamRunnerSettings(poll_interval_s=KINESIS_POLL_S),
        kafka_discovery_interval_s=1.0,
    ) as engine:
        return [
            *await failed_as_row(f"Kinesis, {args.shards} shards", kinesis_rows(engine, args, kinesis)),
            *await failed_as_row(f"Kafka, {args.shards} partitions", kafka_rows(engine, args, bootstrap)),
        ]
