"""Target 1 of issue 13: what idle mappings cost one engine process, and how soon they wake up.

SQS (ElasticMQ): --sqs-mappings empty queues, one enabled mapping each (the defaults: BatchSize 10, no
window), all in one engine. "Settled" = every mapping Enabled and a probe message per queue invoked (every
poller up, the function loaded). Then, in this order:

- CPU: the engine's CPU seconds over --idle-seconds of wall clock (this process: the engine runs in it and
  the benchmark only sleeps meanwhile), as % of one core, in all and per mapping;
- connections: this process's established TCP connections to the endpoint's port, counted just before
  and just after that window (outside it: psutil's count costs CPU), the benchmark's own clients closed;
- first message after idle: one message to each queue at once; put-to-invoke = handler entry - wall clock
  just before that message's send; p50 / p99 / max over the N;
- the Lambda API while the N mappings run: API_CALLS GetEventSourceMapping (random mappings) and as many
  ListEventSourceMappings (first page: 100 mappings) over HTTP on the engine's port, one at a time, from an
  aiohttp client on the engine's event loop (its own cost is in the figure);
- the burst: BURST_MESSAGES messages to one idle queue at once (SendMessageBatch of 10, concurrently) and
  how long from the first send until BURST_BATCHES of its batches run in the function at once (each batch
  held BURST_HOLD_S there), on BURST_QUEUES queues one after another; median and worst.

Kinesis (kinesis-mock): --kinesis-shards shards in streams of up to SHARDS_PER_STREAM, one mapping per
stream (TRIM_HORIZON, BatchSize 100, no window; the engine polls a shard once a second, as AWS). kinesis-mock
allows 200 open shards per account (all regions): when other runs hold some, the phase takes what is
left and says so in its rows. Kafka: one topic of --kafka-partitions partitions, one self-managed
mapping (TRIM_HORIZON, BatchSize 100, the default 500 ms window, which a lone record waits out). For
both: the same probe (one record per shard / partition), CPU window, connections, then one record to every
shard / partition at once.

Messages and records are put from a worker process (anyio.to_process): the producer's CPU is not the
engine's and does not hold the engine's event loop or GIL. Sizes come from bench/scale_bench.py's
arguments (the issue's by default); the engine runs with its default settings and a temporary store.
Everything created (mappings, queues, streams, topic) is deleted at the end of its phase.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

import aiohttp
import anyio
import anyio.to_process
import scale_fns as fns
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from common import delete_mapping, pct, wait_count

from engine.api.app import BASE
from engine.app import Engine, EngineSettings
from engine.config import EngineConfig, FunctionConfig
from engine.model import State
from scale.row import ProcessMeter, Row, fmt

BENCH_DIR = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
#: kinesis-mock's SHARD_LIMIT (scripts/services.sh), for the whole account: shared with whatever else runs
KINESIS_SHARD_LIMIT = 200
SHARDS_PER_STREAM = 50
BURST_QUEUES = 5
BURST_MESSAGES = 50
BURST_BATCHES = fns.BURST_BATCHES
BURST_HOLD_S = 3.0
API_CALLS = 200
#: the engine with no mapping is measured over at most this long (a reference for the other rows)
BASELINE_S = 20.0
#: after the probe, before the window: deletes and first long polls of the probe settle
SETTLE_S = 5.0
#: mappings created at once through the control plane (each checks its source first)
CREATE_AT_ONCE = 10
#: producer requests in flight at once (worker process) and admin calls of the benchmark
SENDERS = 50
CLEANUP_S = 300.0
HOW = "2-core VM shared with other sessions' tests"

FUNCTIONS = {"scale-sqs": "handle_sqs", "scale-kinesis": "handle_kinesis", "scale-kafka": "handle_kafka"}

T = TypeVar("T")


async def rows(args: argparse.Namespace) -> list[Row]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    sqs_endpoint = os.environ.get("ESM_TEST_SQS_ENDPOINT", "http://127.0.0.1:9324")
    kinesis_endpoint = os.environ.get("ESM_TEST_KINESIS_ENDPOINT", "http://127.0.0.1:4568")
    bootstrap = os.environ.get("ESM_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    config = EngineConfig(
        base_dir=BENCH_DIR,
        functions={
            name: FunctionConfig(name=name, handler=f"scale_fns.{handler}", timeout=30)
            for name, handler in FUNCTIONS.items()
        },
    )
    meter = ProcessMeter()
    out: list[Row] = []
    with tempfile.TemporaryDirectory() as data:
        settings = EngineSettings(
            port=0,
            data_dir=Path(data),
            endpoints={"sqs": sqs_endpoint, "kinesis": kinesis_endpoint},
            drain_timeout_s=2.0,
        )
        engine = Engine(settings, config)
        calls = Calls(engine)
        async with anyio.create_task_group() as tg:
            await tg.start(engine.serve)
            out.append(await _baseline(meter, min(args.idle_seconds, BASELINE_S)))
            phases = [
                ("SQS", args.sqs_mappings, _sqs, sqs_endpoint),
                ("Kinesis", args.kinesis_shards, _kinesis, kinesis_endpoint),
                ("Kafka", args.kafka_partitions, _kafka, bootstrap),
            ]
            for name, size, phase, endpoint in phases:
                if size <= 0:
                    continue
                try:
                    out += await phase(engine, meter, calls, endpoint, args)
                except Exception as e:  # one phase's failure must not lose the others' rows
                    traceback.print_exc()
                    out.append(
                        Row(f"idle: {name} phase failed", type(e).__name__, "", False, note=str(e)[:200])
                    )
            tg.cancel_scope.cancel()
    return out


# --- measurements -----------------------------------------------------------------------------------


class Calls:
    """The requests the engine's SQS and Kinesis clients make, by operation (botocore's after-call event
    on the sessions they are created from): what the pollers do while idle."""

    def __init__(self, engine: Engine) -> None:
        self.counts: Counter[str] = Counter()
        for clients in (engine.sqs.clients, engine.kinesis.clients):
            clients.session.register("after-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1


@dataclass(frozen=True)
class Idle:
    seconds: float
    cpu_pct: float
    #: established connections to the service's port just before and just after the window
    before: int
    after: int
    rss_mib: float
    #: the engine's requests per second over the window, by operation
    rates: dict[str, float]


async def _idle(meter: ProcessMeter, calls: Calls, port: int, seconds: float) -> Idle:
    before = meter.connections_to(port)
    counts0 = calls.counts.copy()
    cpu0, t0 = meter.cpu_s(), time.monotonic()
    await anyio.sleep(seconds)
    cpu, wall = meter.cpu_s() - cpu0, time.monotonic() - t0
    rates = {op: k / wall for op, k in (calls.counts - counts0).items()}
    return Idle(wall, cpu / wall * 100, before, meter.connections_to(port), meter.rss_mib(), rates)


async def _baseline(meter: ProcessMeter, seconds: float) -> Row:
    cpu0, t0 = meter.cpu_s(), time.monotonic()
    await anyio.sleep(seconds)
    cpu_pct = (meter.cpu_s() - cpu0) / (time.monotonic() - t0) * 100
    return Row(
        "idle: the engine with no mapping, CPU",
        f"{fmt(cpu_pct, '%', 2)} of a core",
        "",
        None,
        note=f"over {seconds:g} s (API server, supervisor, journal retention); the reference; {HOW}",
    )


def _idle_rows(label: str, unit: str, n: int, service: str, port: int, idle: Idle, probe: str) -> list[Row]:
    per = idle.cpu_pct / n
    requests = "".join(f"; {op} {rate:.1f}/s" for op, rate in sorted(idle.rates.items()))
    if idle.rates:  # what one request costs, if requests are all the idle engine does
        requests += f" ({idle.cpu_pct * 10 / sum(idle.rates.values()):.1f} ms CPU each)"
    return [
        Row(
            f"idle: {label}, engine CPU",
            f"{fmt(idle.cpu_pct, '%', 2)} of a core ({fmt(per, '%', 4)} per {unit})",
            "<= 5 % of one core",
            idle.cpu_pct <= 5.0,
            note=(
                f"CPU s / wall s over {idle.seconds:.0f} s after {probe}{requests}; "
                f"RSS {idle.rss_mib:.0f} MiB; {HOW}"
            ),
        ),
        Row(
            f"idle: {label}, connections to {service}",
            f"{max(idle.before, idle.after):,}",
            "<= 100",
            max(idle.before, idle.after) <= 100,
            note=(
                f"established TCP to :{port}, {idle.before:,} before / {idle.after:,} after the window "
                "(the benchmark's own clients closed)"
            ),
        ),
    ]


def _latency_row(what: str, goal_s: float, goal: str, sent_s: float, note: str) -> Row:
    lat = [x * 1000 for x in fns.LATENCIES]
    p99 = pct(lat, 99)
    return Row(
        what,
        f"p99 {fmt(p99, 'ms', 0)} (p50 {fmt(pct(lat, 50), digits=0)}, max {fmt(max(lat), digits=0)})",
        goal,
        p99 <= goal_s * 1000,
        note=f"{len(lat):,} records put at once from a worker process in {sent_s:.2f} s; {note}",
    )


async def _each(items: Iterable[T], call: Callable[[T], Awaitable[Any]], at_once: int) -> None:
    """``call`` on every item, at most ``at_once`` running."""
    limiter = anyio.CapacityLimiter(at_once)

    async def one(item: T) -> None:
        async with limiter:
            await call(item)

    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(one, item)


async def _create_mappings(engine: Engine, requests: Sequence[dict[str, Any]]) -> float:
    """Through the control plane, CREATE_AT_ONCE at a time; seconds until every mapping is Enabled."""
    started = time.monotonic()
    await _each(requests, engine.plane.create, CREATE_AT_ONCE)
    with anyio.fail_after(max(60.0, len(requests) * 0.2)):
        while True:
            mappings = engine.store.list_mappings()
            off = [m for m in mappings if m.state is State.DISABLED]
            if off:
                raise RuntimeError(f"mapping {off[0].uuid} stopped: {off[0].state_transition_reason}")
            if sum(m.state is State.ENABLED for m in mappings) >= len(requests):
                return time.monotonic() - started
            await anyio.sleep(0.2)


async def _delete_mappings(engine: Engine) -> None:
    """Every mapping of this (private) engine, including one whose create failed half-way."""
    uuids = [m.uuid for m in engine.store.list_mappings()]
    await _each(uuids, lambda u: delete_mapping(engine, u), SENDERS)


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _setup_row(label: str, n: int, seconds: float) -> Row:
    return Row(
        f"setup: {label}, created and Enabled",
        f"{seconds:.1f} s",
        "",
        None,
        note=f"{n:,} CreateEventSourceMapping through the control plane, {CREATE_AT_ONCE} at a time",
    )


# --- SQS --------------------------------------------------------------------------------------------


async def _sqs(
    engine: Engine, meter: ProcessMeter, calls: Calls, endpoint: str, args: argparse.Namespace
) -> list[Row]:
    n = args.sqs_mappings
    port = urlparse(endpoint).port or 80
    label = f"{n:,} SQS mappings (ElasticMQ)"
    run = uuid.uuid4().hex[:8]
    queues: dict[str, str] = {}  # url -> arn
    out: list[Row] = []
    try:
        async with _aws("sqs", endpoint, REGION) as sqs:

            async def make(i: int) -> None:
                url = (await sqs.create_queue(QueueName=f"scale-idle-{run}-{i}"))["QueueUrl"]
                attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
                queues[url] = attrs["Attributes"]["QueueArn"]

            await _each(range(n), make, SENDERS)
        urls = list(queues)
        requests = [{"EventSourceArn": arn, "FunctionName": "scale-sqs"} for arn in queues.values()]
        out.append(_setup_row(label, n, await _create_mappings(engine, requests)))

        fns.reset()
        await anyio.to_process.run_sync(put_sqs, endpoint, urls, 1, 0.0)
        await wait_count(fns.COUNT, n, timeout=120)
        await anyio.sleep(SETTLE_S)
        idle = await _idle(meter, calls, port, args.idle_seconds)
        out += _idle_rows(label, "mapping", n, "ElasticMQ", port, idle, "a probe message per queue invoked")

        fns.reset()
        started, finished = await anyio.to_process.run_sync(put_sqs, endpoint, urls, 1, 0.0)
        await wait_count(fns.COUNT, n, timeout=120)
        out.append(
            _latency_row(
                f"idle: {label}, first message after idle",
                1.0,
                "p99 <= 1 s",
                finished - started,
                "one to each queue",
            )
        )
        out += await _api_rows(engine, n)
        out.append(await _burst(endpoint, urls[:BURST_QUEUES], queues))
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_S):
            await _delete_mappings(engine)
            async with _aws("sqs", endpoint, REGION) as sqs:
                await _each(queues, lambda url: sqs.delete_queue(QueueUrl=url), SENDERS)
    return out


async def _api_rows(engine: Engine, n: int) -> list[Row]:
    uuids = [m.uuid for m in engine.store.list_mappings()]
    pick = random.Random(13)
    base = f"http://127.0.0.1:{engine.port}{BASE}"
    timings: dict[str, list[float]] = {"GetEventSourceMapping": [], "ListEventSourceMappings": []}
    async with aiohttp.ClientSession() as http:
        for name, url in (
            ("GetEventSourceMapping", lambda: f"{base}/{pick.choice(uuids)}"),
            ("ListEventSourceMappings", lambda: base),
        ):
            for _ in range(API_CALLS):
                target = url()
                t0 = time.perf_counter()
                async with http.get(target) as resp:
                    await resp.read()
                    resp.raise_for_status()
                timings[name].append((time.perf_counter() - t0) * 1000)
    return [
        Row(
            f"API while {n:,} SQS mappings run: {name}",
            f"p99 {fmt(pct(ms, 99), 'ms')} (p50 {fmt(pct(ms, 50))})",
            "p99 <= 100 ms",
            pct(ms, 99) <= 100,
            note=(
                f"{API_CALLS} calls one at a time over HTTP on the engine's port (aiohttp on the engine's "
                f"event loop){'; first page: 100 mappings' if name.startswith('List') else ''}"
            ),
        )
        for name, ms in timings.items()
    ]


async def _burst(endpoint: str, urls: list[str], arns: dict[str, str]) -> Row:
    """BURST_MESSAGES to one idle queue at once: seconds until BURST_BATCHES of its batches run together."""
    took: list[float] = []
    peaks: list[int] = []
    for url in urls:
        fns.reset()
        started, _ = await anyio.to_process.run_sync(put_sqs, endpoint, [url], BURST_MESSAGES, BURST_HOLD_S)
        await wait_count(fns.COUNT, BURST_MESSAGES, timeout=120)
        arn = arns[url]
        with anyio.fail_after(BURST_HOLD_S * BURST_MESSAGES):
            while fns.RUNNING[arn]:
                await anyio.sleep(0.05)
        peaks.append(fns.PEAK[arn])
        if arn in fns.REACHED:
            took.append(fns.REACHED[arn] - started)
    reached = len(took) == len(urls)
    median = statistics.median(took) if took else float("nan")
    figure = f"median {fmt(median, 's', 2)}, worst {fmt(max(took), digits=2)}" if took else "never"
    if not reached:
        figure += f"; reached on {len(took)} of {len(urls)} queues"
    figure += f" (peak {max(peaks)} at once)"
    return Row(
        f"burst: {BURST_MESSAGES} messages to one idle queue, {BURST_BATCHES} concurrent batches",
        figure,
        "within 1 s",
        reached and median <= 1.0,
        note=(
            f"{len(urls)} of the idle queues one after another, {BURST_MESSAGES // 10} SendMessageBatch "
            f"of 10 at once; each batch held {BURST_HOLD_S:g} s in the function (a figure near it: the other "
            "batches waited for the first to return); from the first send"
        ),
    )


def put_sqs(endpoint: str, urls: list[str], per_queue: int, hold_s: float) -> tuple[float, float]:
    """(worker process) ``per_queue`` messages to each queue, all at once (SendMessageBatch of up to 10,
    SENDERS in flight); returns the wall clock before the first send and after the last."""
    return anyio.run(_put_sqs, endpoint, urls, per_queue, hold_s)


async def _put_sqs(endpoint: str, urls: list[str], per_queue: int, hold_s: float) -> tuple[float, float]:
    async with _aws("sqs", endpoint, REGION) as sqs:

        async def send(job: tuple[str, int]) -> None:
            url, count = job
            extra = {"hold": hold_s} if hold_s else {}
            entries = [
                {"Id": str(i), "MessageBody": json.dumps({"t": time.time(), **extra})} for i in range(count)
            ]
            await sqs.send_message_batch(QueueUrl=url, Entries=entries)

        jobs = [(url, min(10, per_queue - i)) for url in urls for i in range(0, per_queue, 10)]
        started = time.time()
        await _each(jobs, send, SENDERS)
        return started, time.time()


def _aws(service: Literal["sqs", "kinesis"], endpoint: str, region: str) -> Any:
    config = AioConfig(max_pool_connections=SENDERS)
    return get_session().create_client(service, region_name=region, endpoint_url=endpoint, config=config)


# --- Kinesis ----------------------------------------------------------------------------------------


async def _kinesis(
    engine: Engine, meter: ProcessMeter, calls: Calls, endpoint: str, args: argparse.Namespace
) -> list[Row]:
    port = urlparse(endpoint).port or 80
    created: list[str] = []
    targets: list[tuple[str, str]] = []  # (stream, a hash key of one of its shards)
    out: list[Row] = []
    try:
        async with _aws("kinesis", endpoint, REGION) as kinesis:
            held = (await kinesis.describe_limits())["OpenShardCount"]
            n = min(args.kinesis_shards, KINESIS_SHARD_LIMIT - held)
            if n <= 0:
                raise RuntimeError(
                    f"kinesis-mock: other runs hold {held} of its {KINESIS_SHARD_LIMIT} shards"
                )
            arns: list[str] = []
            for start in range(0, n, SHARDS_PER_STREAM):
                name = f"scale-idle-{uuid.uuid4().hex[:8]}"
                await kinesis.create_stream(StreamName=name, ShardCount=min(SHARDS_PER_STREAM, n - start))
                created.append(name)
                arns.append(await _active(kinesis, name))
                paginator = kinesis.get_paginator("list_shards")
                async for page in paginator.paginate(StreamName=name):
                    targets += [(name, s["HashKeyRange"]["StartingHashKey"]) for s in page["Shards"]]
        label = f"{n:,} Kinesis shards (kinesis-mock, {_count(len(created), 'stream')})"
        if n < args.kinesis_shards:
            label += f" of {args.kinesis_shards:,} asked (other runs held {held} of kinesis-mock's 200)"
        requests = [
            {
                "EventSourceArn": arn,
                "FunctionName": "scale-kinesis",
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 100,
            }
            for arn in arns
        ]
        enabled_s = await _create_mappings(engine, requests)
        out.append(
            _setup_row(f"{_count(len(arns), 'Kinesis mapping')} over {n:,} shards", len(arns), enabled_s)
        )

        fns.reset()
        await anyio.to_process.run_sync(put_kinesis, endpoint, targets)
        await wait_count(fns.COUNT, n, timeout=120)
        await anyio.sleep(SETTLE_S)
        idle = await _idle(meter, calls, port, args.idle_seconds)
        out += _idle_rows(label, "shard", n, "kinesis-mock", port, idle, "a probe record per shard invoked")

        fns.reset()
        started, finished = await anyio.to_process.run_sync(put_kinesis, endpoint, targets)
        await wait_count(fns.COUNT, n, timeout=120)
        out.append(
            _latency_row(
                f"idle: {label}, first record after idle",
                1.0,
                "p99 <= 1 s (one poll interval)",
                finished - started,
                "one to each shard (ExplicitHashKey)",
            )
        )
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_S):
            await _delete_mappings(engine)
            async with _aws("kinesis", endpoint, REGION) as kinesis:
                for name in created:
                    await kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    return out


async def _active(kinesis: Any, name: str) -> str:
    """The stream's ARN once it is ACTIVE."""
    with anyio.fail_after(60):
        while True:
            s = (await kinesis.describe_stream_summary(StreamName=name))["StreamDescriptionSummary"]
            if s["StreamStatus"] == "ACTIVE":
                return str(s["StreamARN"])
            await anyio.sleep(0.1)


def put_kinesis(endpoint: str, targets: list[tuple[str, str]]) -> tuple[float, float]:
    """(worker process) one record to each (stream, hash key), all at once; wall clock before / after."""
    return anyio.run(_put_kinesis, endpoint, targets)


async def _put_kinesis(endpoint: str, targets: list[tuple[str, str]]) -> tuple[float, float]:
    async with _aws("kinesis", endpoint, REGION) as kinesis:

        async def put(target: tuple[str, str]) -> None:
            stream, hash_key = target
            data = json.dumps({"t": time.time()}).encode()
            await kinesis.put_record(StreamName=stream, Data=data, PartitionKey="k", ExplicitHashKey=hash_key)

        started = time.time()
        await _each(targets, put, SENDERS)
        return started, time.time()


# --- Kafka ------------------------------------------------------------------------------------------


async def _kafka(
    engine: Engine, meter: ProcessMeter, calls: Calls, bootstrap: str, args: argparse.Namespace
) -> list[Row]:
    n = args.kafka_partitions
    port = int(bootstrap.rsplit(":", 1)[1])
    topic = f"scale-idle-{uuid.uuid4().hex[:8]}"
    label = f"{n:,} Kafka partitions (1 topic)"
    out: list[Row] = []
    await _kafka_admin(bootstrap, lambda admin: _create_topic(admin, topic, n))
    try:
        request = {
            "FunctionName": "scale-kafka",
            "Topics": [topic],
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
            # required for self-managed Kafka; nothing to do locally
            "SourceAccessConfigurations": [{"Type": "VPC_SUBNET", "URI": "subnet:subnet-1"}],
        }
        enabled_s = await _create_mappings(engine, [request])
        out.append(_setup_row(f"1 Kafka mapping over {n:,} partitions", 1, enabled_s))

        fns.reset()
        await anyio.to_process.run_sync(put_kafka, bootstrap, topic, n)
        await wait_count(fns.COUNT, n, timeout=120)  # the group joined, every partition assigned and read
        await anyio.sleep(SETTLE_S)
        idle = await _idle(meter, calls, port, args.idle_seconds)
        out += _idle_rows(label, "partition", n, "Kafka", port, idle, "a probe record per partition invoked")

        fns.reset()
        started, finished = await anyio.to_process.run_sync(put_kafka, bootstrap, topic, n)
        await wait_count(fns.COUNT, n, timeout=120)
        out.append(
            _latency_row(
                f"idle: {label}, first record after idle",
                1.0,
                "p99 <= 1 s",
                finished - started,
                "one to each partition; the default 500 ms batching window included",
            )
        )
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_S):
            await _delete_mappings(engine)
            await _kafka_admin(bootstrap, lambda admin: admin.delete_topics([topic]))
    return out


async def _kafka_admin(bootstrap: str, call: Callable[[Any], Awaitable[Any]]) -> None:
    """One admin call on a client of its own (closed before any window: its connections are not counted)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await call(admin)
    finally:
        await admin.close()


async def _create_topic(admin: Any, topic: str, partitions: int) -> None:
    await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    with anyio.fail_after(60):  # every partition has its leader: no NotLeaderForPartition on first use
        while True:
            (described,) = await admin.describe_topics([topic])
            parts = described["partitions"]
            if (
                not described["error_code"]
                and len(parts) == partitions
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in parts)
            ):
                return
            await anyio.sleep(0.05)


def put_kafka(bootstrap: str, topic: str, partitions: int) -> tuple[float, float]:
    """(worker process) one record to each partition, all at once; wall clock before / after."""
    # a partition just created can refuse a first produce that the producer then retries: not news here
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    return anyio.run(_put_kafka, bootstrap, topic, partitions)


async def _put_kafka(bootstrap: str, topic: str, partitions: int) -> tuple[float, float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1)
    await producer.start()
    try:
        await producer.partitions_for(topic)  # metadata before the first timed send
        started = time.time()
        acks = [
            await producer.send(topic, json.dumps({"t": time.time()}).encode(), partition=p)
            for p in range(partitions)
        ]
        for ack in acks:
            await ack
        return started, time.time()
    finally:
        await producer.stop()
