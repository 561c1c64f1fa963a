"""Target 3 of issue 13: the peak RSS of this process (the engine runs in it) while a Kafka and an SQS
backlog drain together, at the full backlog and at a tenth of it.

Three drains in one engine: a tenth, the full backlog, a tenth again (what the process's history adds,
the backlog aside). Each: a topic of KAFKA_PARTITIONS partitions gets its share of ``--kafka-backlog``
records of ~100 B (aiokafka, acks=1, 4 concurrent senders) and an ElasticMQ queue its share of
``--sqs-backlog`` messages of ~200 B (SendMessageBatch, 40 concurrent senders), both at once and before
any mapping exists (at most PRODUCE_BUDGET_S: what was produced then is the backlog, said in the row),
from a worker process (anyio.to_process), so that this process's RSS holds none of the producers' memory.
The baseline is this process's RSS after that, freed memory handed back (gc, malloc_trim). Then one
Kafka mapping (BatchSize 100, window 0)
and one SQS mapping (BatchSize 10) with no-op in-process functions drain both; RSS (ProcessMeter.rss_mib)
is sampled every 100 ms from the creation of the mappings to the last record. Each source's drain time
runs from the mappings' creation to its last record.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import gc
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.to_process
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from common import delete_mapping
from kafka_bench import FUNCTION as KAFKA_FUNCTION
from kafka_bench import KafkaOps
from kafka_bench import via_engine as kafka_via_engine
from sqs_bench import make_queue
from sqs_bench import prefill as sqs_prefill

from engine.app import Engine
from scale import shards_fns as fns
from scale.row import ProcessMeter, Row, fmt
from scale.shards import REGION, aws_credentials, fill_until, quiet_producer, running_engine, wait_for

SQS_FUNCTION = "scale-sqs-noop"
KAFKA_PARTITIONS = 8
KAFKA_SENDERS = 4
KAFKA_CHUNK = 10_000
#: sqs_bench.prefill sends from 10 senders per chunk: four chunks at once, on as many connections
SQS_SENDERS = 4
SQS_CHUNK = 10_000
SQS_SIZE = 200
PRODUCE_BUDGET_S = 600.0
DRAIN_TIMEOUT_S = 1800.0
SAMPLE_S = 0.1
GOAL_MIB = 250e6 / 2**20
GROWTH_GOAL = 0.10


class _KafkaOps(KafkaOps):
    async def start_producer(self, topic: str) -> None:
        """A producer for a topic another process created (the worker that produces the backlog)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks=1)
        await producer.start()
        await producer.partitions_for(topic)
        self._producers[topic] = producer

    async def stop_producer(self, topic: str) -> None:
        """Close the topic's producer (delete() then only deletes the topic)."""
        await self._producers.pop(topic).stop()


def _give_back() -> None:
    """Free what the producers left and hand it back to the OS, so the baseline is the engine's."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        ctypes.CDLL(libc).malloc_trim(0)


@dataclass
class Drain:
    #: per source ("kafka", "sqs"): records asked for and produced
    asked: dict[str, int]
    produced: dict[str, int]
    produce_s: float
    rss_base: float
    peak: float
    peak_at_s: float
    #: per source: records drained, and seconds to the last one (None: not within DRAIN_TIMEOUT_S)
    drained: dict[str, int]
    seconds: dict[str, float | None]

    def rate(self, source: str) -> str:
        n, s = self.produced[source], self.seconds[source]
        if s is None:
            return f"{self.drained[source]:,} of {n:,} in {DRAIN_TIMEOUT_S:.0f} s"
        return f"{fmt(n / s, 'rec/s', 0)} ({s:,.1f} s)"


async def backlog(
    engine: Engine, meter: ProcessMeter, kafka_n: int, sqs_n: int, bootstrap: str, sqs_endpoint: str
) -> Drain:
    session = get_session()
    ops = _KafkaOps(bootstrap, KAFKA_PARTITIONS, size=100)
    await ops.open()
    topic = ops.topic_name()
    async with session.create_client("sqs", region_name=REGION, endpoint_url=sqs_endpoint) as admin:
        url, arn = await make_queue(admin, f"scale-memory-{uuid.uuid4().hex[:8]}")
        try:
            await ops.create(topic)
            await ops.stop_producer(topic)  # the worker process produces
            try:
                drain = await _produce_and_drain(
                    engine, meter, ops, topic, (sqs_endpoint, url, arn), kafka_n, sqs_n
                )
            finally:
                await ops.delete(topic)
        finally:
            await admin.delete_queue(QueueUrl=url)
            await ops.aclose()
    return drain


def produce(
    bootstrap: str, topic: str, sqs_endpoint: str, url: str, kafka_n: int, sqs_n: int
) -> dict[str, int]:
    """In a worker process: both backlogs at once; returns how many of each were produced."""
    aws_credentials()
    quiet_producer()
    return anyio.run(_produce, bootstrap, topic, sqs_endpoint, url, kafka_n, sqs_n)


async def _produce(
    bootstrap: str, topic: str, sqs_endpoint: str, url: str, kafka_n: int, sqs_n: int
) -> dict[str, int]:
    produced: dict[str, int] = {}
    ops = _KafkaOps(bootstrap, KAFKA_PARTITIONS, size=100)
    await ops.open()
    await ops.start_producer(topic)
    config = AioConfig(max_pool_connections=SQS_SENDERS * 10)
    try:
        async with get_session().create_client(
            "sqs", region_name=REGION, endpoint_url=sqs_endpoint, config=config
        ) as sqs:

            async def kafka() -> None:
                produced["kafka"], _ = await fill_until(
                    lambda count: ops.prefill(topic, count),
                    kafka_n,
                    KAFKA_CHUNK,
                    KAFKA_SENDERS,
                    PRODUCE_BUDGET_S,
                )

            async def sqs_fill() -> None:
                produced["sqs"], _ = await fill_until(
                    lambda count: sqs_prefill(sqs, url, count, SQS_SIZE),
                    sqs_n,
                    SQS_CHUNK,
                    SQS_SENDERS,
                    PRODUCE_BUDGET_S,
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(kafka, name="kafka backlog")
                tg.start_soon(sqs_fill, name="sqs backlog")
            await ops.stop_producer(topic)
    finally:
        await ops.aclose()
    return produced


async def _produce_and_drain(
    engine: Engine,
    meter: ProcessMeter,
    ops: _KafkaOps,
    topic: str,
    queue: tuple[str, str, str],
    kafka_n: int,
    sqs_n: int,
) -> Drain:
    """Produce both backlogs (endpoint, url and ARN of the queue), then drain them with two mappings."""
    endpoint, url, arn = queue
    t0 = time.monotonic()
    produced = await anyio.to_process.run_sync(
        produce, ops.bootstrap, topic, endpoint, url, kafka_n, sqs_n, cancellable=True
    )
    produce_s = time.monotonic() - t0
    _give_back()
    rss_base = meter.rss_mib()

    fns.reset()
    peak = [rss_base, 0.0]
    done: dict[str, float | None] = {}
    start = time.monotonic()

    async def sample() -> None:
        while True:
            rss = meter.rss_mib()
            if rss > peak[0]:
                peak[:] = [rss, time.monotonic() - start]
            await anyio.sleep(SAMPLE_S)

    async def until(source: str, n: int) -> None:
        drained = await wait_for(source, n, DRAIN_TIMEOUT_S)
        done[source] = time.monotonic() - start if drained else None

    stops: list[Callable[[], Awaitable[None]]] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample, name="rss sampler")
            stops.append(await kafka_via_engine(engine, ops.bootstrap, 100, 0)(topic))
            m = await engine.plane.create(
                {"EventSourceArn": arn, "FunctionName": SQS_FUNCTION, "BatchSize": 10}
            )
            stops.append(functools.partial(delete_mapping, engine, m.uuid))
            async with anyio.create_task_group() as waits:
                waits.start_soon(until, "kafka", produced["kafka"], name="kafka drained")
                waits.start_soon(until, "sqs", produced["sqs"], name="sqs drained")
            tg.cancel_scope.cancel()  # the sampler
    finally:
        for stop in stops:
            await stop()
    return Drain(
        {"kafka": kafka_n, "sqs": sqs_n},
        produced,
        produce_s,
        rss_base,
        peak[0],
        peak[1],
        dict(fns.COUNT),
        done,
    )


def result_rows(small: Drain, big: Drain, again: Drain, bootstrap: str, sqs_endpoint: str) -> list[Row]:
    growth = big.peak / small.peak - 1
    cut = [
        f"{source} {big.produced[source]:,} of {big.asked[source]:,} produced within {PRODUCE_BUDGET_S:.0f} s"
        for source in ("kafka", "sqs")
        if big.produced[source] < big.asked[source]
    ]

    def phases(d: Drain) -> str:
        return (
            f"produced in {d.produce_s:,.0f} s by a worker process; baseline {d.rss_base:.0f} MiB "
            f"(gc + malloc_trim), peak +{d.peak - d.rss_base:.0f} MiB "
            f"{d.peak_at_s:.0f} s into the drain"
        )

    how = (
        f"Kafka {bootstrap} ({KAFKA_PARTITIONS} partitions, ~100 B, BatchSize 100, window 0) and ElasticMQ "
        f"{sqs_endpoint} (~{SQS_SIZE} B, BatchSize 10) drained together by no-op in-process functions; "
        f"RSS of this process every {SAMPLE_S * 1000:.0f} ms; 2 shared cores (other sessions working)"
    )
    return [
        Row(
            f"memory: peak RSS, {big.produced['kafka']:,} Kafka + {big.produced['sqs']:,} SQS backlog",
            fmt(big.peak, "MiB", 0),
            f"< 250 MB ({GOAL_MIB:.0f} MiB)",
            big.peak < GOAL_MIB,
            "",
            "; ".join([phases(big), *cut, how]),
        ),
        Row(
            f"memory: peak RSS, 1/10 backlog ({small.produced['kafka']:,} + {small.produced['sqs']:,})",
            f"{fmt(small.peak, 'MiB', 0)} (full: {growth:+.1%})",
            f"full within {GROWTH_GOAL:.0%}",
            growth <= GROWTH_GOAL,
            "",
            f"run before the full backlog: {phases(small)}; run again after it (what the process's history "
            f"adds, backlog aside): peak {again.peak:.0f} MiB, {phases(again)}",
        ),
        Row(
            f"memory: Kafka drain of {big.produced['kafka']:,}",
            big.rate("kafka"),
            "",
            None,
            "",
            f"1/10: {small.rate('kafka')} and {again.rate('kafka')}; from the mappings' creation to the "
            "last record, SQS draining too",
        ),
        Row(
            f"memory: SQS drain of {big.produced['sqs']:,}",
            big.rate("sqs"),
            "",
            None,
            "",
            f"1/10: {small.rate('sqs')} and {again.rate('sqs')}; from the mappings' creation to the "
            "last record, Kafka draining too",
        ),
    ]


async def rows(args: argparse.Namespace) -> list[Row]:
    aws_credentials()
    quiet_producer()
    sqs_endpoint = os.environ.get("ESM_TEST_SQS_ENDPOINT", "http://127.0.0.1:9324")
    bootstrap = os.environ.get("ESM_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    meter = ProcessMeter()
    functions = {KAFKA_FUNCTION: "scale.shards_fns.kafka_noop", SQS_FUNCTION: "scale.shards_fns.sqs_noop"}
    async with running_engine(
        functions, endpoints={"sqs": sqs_endpoint}, kafka_discovery_interval_s=1.0
    ) as engine:
        tenth = (args.kafka_backlog // 10, args.sqs_backlog // 10)
        drains = [
            await backlog(engine, meter, kafka_n, sqs_n, bootstrap, sqs_endpoint)
            for kafka_n, sqs_n in (tenth, (args.kafka_backlog, args.sqs_backlog), tenth)
        ]
    return result_rows(*drains, bootstrap, sqs_endpoint)
