"""Endurance (issue 13, target 5): a steady load across an SQS, a Kinesis and a Kafka mapping for
``--minutes``, with ``--error-rate`` of the invocations failing, so retries, bisects, redrives and
on-failure destinations run the whole time. A producer per source: Kinesis gets ``--kinesis-rate`` (over
KINESIS_SHARDS shards: kinesis-mock's PutRecords and GetRecords slow down as a shard fills, to seconds per
call past about 10,000 records), SQS and Kafka share the rest of ``--rate``.

The engine runs in a process of its own (endurance_engine.py), driven over the Lambda API like any user's;
its function writes what it processed to a file, so the engine's RSS is its own.
The ledger: every record carries an id; the function logs the ids it processed successfully; at the end,
what went to a destination is read back (the SQS queue's redrive DLQ holds the messages themselves; the
Kinesis and Kafka failure records name shard and sequence range, or partition and offsets, mapped back
to ids through what the producers were told). lost = sent - processed - sent to a destination: 0, or the
row names the first missing ids. Sampled every ``SAMPLE_S``: the engine's RSS and asyncio task count (it
prints them), the store's size on disk; after a warm-up of a fifth of the run, the RSS slope (least
squares, MB per 10 minutes) and the task count's range.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from aiobotocore.session import get_session
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from .row import Row, fmt

HERE = Path(__file__).resolve()
REGION = "us-east-1"
FUNCTION = "endurance"
SAMPLE_S = 10.0
#: many small shards: kinesis-mock's PutRecords and GetRecords slow down as a shard fills
KINESIS_SHARDS = 32
KAFKA_PARTITIONS = 4
SQS_VISIBILITY_S = 5  # not below the function timeout (AWS refuses the mapping)
#: receives before ElasticMQ moves a failing message to the queue's DLQ (its redrive policy)
SQS_MAX_RECEIVES = 3


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass
class Ledger:
    """What the producers sent, by id, and where each sent record sits."""

    sent: set[str] = field(default_factory=set)
    #: Kinesis (shard, sequence number) -> id; Kafka (partition, offset) -> id
    kinesis: dict[tuple[str, int], str] = field(default_factory=dict)
    kafka: dict[tuple[int, int], str] = field(default_factory=dict)
    to_destination: set[str] = field(default_factory=set)


@dataclass
class Sample:
    t: float
    rss_mib: float
    tasks: int
    store_mib: float
    sent: int
    processed: int


class Load:
    """The three sources, their producers and the engine's mappings of them."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.sqs_endpoint = _env("ESM_TEST_ELASTICMQ", "http://127.0.0.1:9324")
        self.kinesis_endpoint = _env("ESM_TEST_KINESIS", "http://127.0.0.1:4568")
        self.bootstrap = _env("ESM_TEST_KAFKA", "127.0.0.1:9092")
        self.queue = f"endurance-{run}"
        self.failures = f"endurance-failures-{run}"
        self.stream = f"endurance-{run}"
        self.topic = f"endurance-{run}"
        self.ledger = Ledger()
        self.n = 0
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Load:
        session = get_session()
        creds = {"region_name": REGION, "aws_access_key_id": "test", "aws_secret_access_key": "test"}
        self.sqs = await self._stack.enter_async_context(
            session.create_client("sqs", endpoint_url=self.sqs_endpoint, **creds)
        )
        self.kinesis = await self._stack.enter_async_context(
            session.create_client("kinesis", endpoint_url=self.kinesis_endpoint, **creds)
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await self.producer.start()
        self._stack.push_async_callback(self.producer.stop)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def create(self) -> dict[str, str]:
        """The sources; returns their ARNs (queue, dlq, failures, stream)."""
        dlq_url = (await self.sqs.create_queue(QueueName=f"{self.queue}-dlq"))["QueueUrl"]
        dlq_arn = await self._arn(dlq_url)
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(SQS_MAX_RECEIVES)})
        attrs = {"VisibilityTimeout": str(SQS_VISIBILITY_S), "RedrivePolicy": redrive}
        self.queue_url = (await self.sqs.create_queue(QueueName=self.queue, Attributes=attrs))["QueueUrl"]
        self.dlq_url = dlq_url
        self.failures_url = (await self.sqs.create_queue(QueueName=self.failures))["QueueUrl"]
        await self.kinesis.create_stream(StreamName=self.stream, ShardCount=KINESIS_SHARDS)
        with anyio.fail_after(60):
            while True:
                desc = await self.kinesis.describe_stream_summary(StreamName=self.stream)
                if desc["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                    break
                await anyio.sleep(0.2)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic, KAFKA_PARTITIONS, 1)])
        finally:
            await admin.close()
        return {
            "queue": await self._arn(self.queue_url),
            "failures": await self._arn(self.failures_url),
            "stream": desc["StreamDescriptionSummary"]["StreamARN"],
        }

    async def _arn(self, url: str) -> str:
        attrs = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    async def delete(self) -> None:
        with contextlib.suppress(Exception):
            for url in (self.queue_url, self.dlq_url, self.failures_url):
                await self.sqs.delete_queue(QueueUrl=url)
        with contextlib.suppress(Exception):
            await self.kinesis.delete_stream(StreamName=self.stream, EnforceConsumerDeletion=True)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        with contextlib.suppress(Exception):
            await admin.start()
            await admin.delete_topics([self.topic])
        with contextlib.suppress(Exception):
            await admin.close()

    def _body(self, source: str) -> tuple[str, bytes]:
        self.n += 1
        rid = f"{source}-{self.n}"
        self.ledger.sent.add(rid)
        return rid, json.dumps({"id": rid, "t": time.time()}).encode()

    async def put_sqs(self, count: int) -> None:
        # the batches of a second go at once: one after another they took most of it under load
        async with anyio.create_task_group() as tg:
            for start in range(0, count, 10):
                entries = []
                for i in range(min(10, count - start)):
                    _, body = self._body("sqs")
                    entries.append({"Id": str(i), "MessageBody": body.decode()})
                tg.start_soon(
                    functools.partial(self.sqs.send_message_batch, QueueUrl=self.queue_url, Entries=entries)
                )

    async def put_kinesis(self, count: int) -> None:
        for start in range(0, count, 500):
            batch = [self._body("kinesis") for _ in range(min(500, count - start))]
            records = [{"Data": body, "PartitionKey": rid} for rid, body in batch]
            resp = await self.kinesis.put_records(StreamName=self.stream, Records=records)
            for (rid, _), result in zip(batch, resp["Records"], strict=True):
                if "SequenceNumber" not in result:  # throttled: it was never written
                    self.ledger.sent.discard(rid)
                    continue
                self.ledger.kinesis[(result["ShardId"], int(result["SequenceNumber"]))] = rid

    async def put_kafka(self, count: int) -> None:
        futures = []
        for _ in range(count):
            rid, body = self._body("kafka")
            futures.append((rid, await self.producer.send(self.topic, body, key=rid.encode())))
        for rid, fut in futures:
            meta = await fut
            self.ledger.kafka[(meta.partition, meta.offset)] = rid

    async def drain_destinations(self) -> None:
        """What reached a destination, by id: the SQS DLQ's messages, the failure records of the others."""
        for url in (self.dlq_url, self.failures_url):
            while True:
                got = await self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                messages = got.get("Messages", [])
                if not messages:
                    break
                for m in messages:
                    self._account(json.loads(m["Body"]))
                await self.sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ],
                )

    def _account(self, doc: dict[str, Any]) -> None:
        led = self.ledger
        if "id" in doc:  # a message the queue's redrive policy moved
            led.to_destination.add(doc["id"])
        elif "KinesisBatchInfo" in doc:
            info = doc["KinesisBatchInfo"]
            low, high = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
            shard_id = info["shardId"]
            led.to_destination |= {
                rid for (shard, seq), rid in led.kinesis.items() if shard == shard_id and low <= seq <= high
            }
        elif "KafkaBatchInfo" in doc:
            for key, info in doc["KafkaBatchInfo"]["recordsInfo"].items():
                partition = int(key.rsplit("-", 1)[1])
                low, high = int(info["firstRecordOffset"]), int(info["lastRecordOffset"])
                led.to_destination |= {
                    rid for (p, off), rid in led.kafka.items() if p == partition and low <= off <= high
                }


@dataclass
class EngineProcess:
    port: int
    samples: list[Sample]
    proc: anyio.abc.Process


@contextlib.asynccontextmanager
async def engine_process(
    data: Path, load: Load, ledger: Path, error_rate: float
) -> AsyncIterator[EngineProcess]:
    """The engine in its own process; its stats lines become samples until it stops (SIGINT)."""
    here = HERE
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(here.parents[2]), str(here.parents[1])]),
        "ESM_ENDURANCE_LEDGER": str(ledger),
        "ESM_ENDURANCE_ERROR_RATE": str(error_rate),
        "ESM_ENDURANCE_SAMPLE_S": str(SAMPLE_S),
    }
    cmd = [sys.executable, str(here.parent / "endurance_engine.py"), str(data), load.sqs_endpoint]
    proc = await anyio.open_process([*cmd, load.kinesis_endpoint], env=env, stderr=None)
    assert proc.stdout is not None
    lines = _lines(proc.stdout)
    with anyio.fail_after(60):
        first = json.loads(await lines.__anext__())
    running = EngineProcess(int(first["port"]), [], proc)
    t0 = time.monotonic()
    async with anyio.create_task_group() as tg:

        async def read_samples() -> None:
            async for line in lines:
                doc = json.loads(line)
                running.samples.append(
                    Sample(
                        t=time.monotonic() - t0,
                        rss_mib=float(doc["rss_mib"]),
                        tasks=int(doc["tasks"]),
                        store_mib=_dir_mib(data),
                        sent=len(load.ledger.sent),
                        processed=_count_lines(ledger),
                    )
                )
                s = running.samples[-1]
                print(
                    f"  t={s.t:6.0f}s rss={s.rss_mib:6.1f}MiB tasks={s.tasks} store={s.store_mib:5.1f}MiB "
                    f"sent={s.sent} processed={s.processed}",
                    file=sys.stderr,
                    flush=True,
                )

        tg.start_soon(read_samples)
        try:
            yield running
        finally:
            proc.send_signal(signal.SIGINT)
            with anyio.move_on_after(30):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
            tg.cancel_scope.cancel()


async def _lines(stream: anyio.abc.ByteReceiveStream) -> AsyncIterator[str]:
    buffered = b""
    async for chunk in stream:
        buffered += chunk
        *complete, buffered = buffered.split(b"\n")
        for line in complete:
            if line.strip():
                yield line.decode()


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def _dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / (1024 * 1024)


def slope_mib_per_10min(samples: list[Sample]) -> float:
    if len(samples) < 3:
        return float("nan")
    ts = [s.t for s in samples]
    ys = [s.rss_mib for s in samples]
    t_mean, y_mean = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - t_mean) ** 2 for t in ts)
    if var == 0:
        return float("nan")
    return sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True)) / var * 600


async def rows(args: argparse.Namespace) -> list[Row]:
    run = uuid.uuid4().hex[:8]
    duration_s = args.minutes * 60
    rates = _rates(args)
    async with Load(run) as load:
        arns = await load.create()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                data, ledger = Path(tmp) / "data", Path(tmp) / "ledger.txt"
                async with engine_process(data, load, ledger, args.error_rate) as engine:
                    await _map(engine.port, load, arns)
                    # a producer per source: one slow service (kinesis-mock as its shards fill) holds back
                    # only its own records
                    async with anyio.create_task_group() as tg:
                        for put, rate in (
                            (load.put_sqs, rates["sqs"]),
                            (load.put_kinesis, rates["kinesis"]),
                            (load.put_kafka, rates["kafka"]),
                        ):
                            tg.start_soon(_produce, put, rate, duration_s)
                    # the tail: retries, redrives (visibility timeouts), destinations
                    behind, tail_started = len(load.ledger.sent) - _count_lines(ledger), time.monotonic()
                    await _settle(load, ledger)
                    tail_s = time.monotonic() - tail_started
                    samples = list(engine.samples)
                store_mib = _dir_mib(data)
                processed = _read_ledger(ledger)
        finally:
            await load.delete()
    return [
        *_rows(args, load.ledger, samples, store_mib, processed),
        Row(
            "endurance: behind when the load stopped",
            f"{behind:,} records",
            "",
            None,
            note=f"caught up {tail_s:.0f} s later (retries, redrives and destinations included)",
        ),
    ]


def _read_ledger(path: Path) -> tuple[Counter[str], list[float]]:
    """Successful processings per id, and their put-to-invoke latencies (seconds)."""
    counts: Counter[str] = Counter()
    latencies: list[float] = []
    if path.exists():
        with path.open() as f:
            for line in f:
                rid, lat = line.split()
                counts[rid] += 1
                latencies.append(float(lat))
    return counts, latencies


def _rates(args: argparse.Namespace) -> dict[str, float]:
    """Records/s per source: Kinesis gets --kinesis-rate, SQS and Kafka share the rest of --rate."""
    kinesis = min(args.kinesis_rate, args.rate)
    return {"sqs": (args.rate - kinesis) / 2, "kinesis": kinesis, "kafka": (args.rate - kinesis) / 2}


async def _produce(put: Callable[[int], Awaitable[None]], rate: float, duration_s: float) -> None:
    """``rate`` records/s for ``duration_s``, a second's worth at a time; steady: a producer that fell
    behind does not catch up in a burst."""
    t0, sent = time.monotonic(), 0
    while rate > 0 and (elapsed := time.monotonic() - t0) < duration_s:
        due = min(int(rate * (elapsed + 1.0)) - sent, int(rate) + 1)
        await put(due)
        sent += due
        await anyio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))


async def _map(port: int, load: Load, arns: dict[str, str]) -> None:
    """The three mappings, created through the engine's Lambda API as a user would."""
    on_failure = {"OnFailure": {"Destination": arns["failures"]}}
    retries = {"MaximumRetryAttempts": 2, "BisectBatchOnFunctionError": True, "DestinationConfig": on_failure}
    creds = {"region_name": REGION, "aws_access_key_id": "test", "aws_secret_access_key": "test"}
    async with get_session().create_client("lambda", endpoint_url=f"http://127.0.0.1:{port}", **creds) as lam:
        uuids = [
            (await lam.create_event_source_mapping(**params))["UUID"]
            for params in (
                {"FunctionName": FUNCTION, "EventSourceArn": arns["queue"], "BatchSize": 10},
                {
                    "FunctionName": FUNCTION,
                    "EventSourceArn": arns["stream"],
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 100,
                    **retries,
                },
                {
                    "FunctionName": FUNCTION,
                    "Topics": [load.topic],
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 100,
                    "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [load.bootstrap]}},
                    "SourceAccessConfigurations": [{"Type": "VPC_SUBNET", "URI": "subnet:subnet-1"}],
                    "MaximumRetryAttempts": 2,
                    "DestinationConfig": on_failure,
                },
            )
        ]
        with anyio.fail_after(60):
            for u in uuids:
                while (await lam.get_event_source_mapping(UUID=u))["State"] != "Enabled":
                    await anyio.sleep(0.1)


async def _settle(load: Load, ledger: Path, quiet_s: float = 30.0, limit_s: float = 1800.0) -> None:
    """Until every sent record is processed or at a destination, or nothing moved for ``quiet_s`` (plus
    the time a failing SQS message needs to reach its DLQ): a backlog still draining is waited for."""
    deadline = time.monotonic() + limit_s
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        await load.drain_destinations()
        processed = set(_read_ledger(ledger)[0])
        accounted = len(load.ledger.sent & (processed | load.ledger.to_destination))
        if accounted == len(load.ledger.sent):
            return
        if accounted != last:
            last, last_change = accounted, time.monotonic()
        elif time.monotonic() - last_change > quiet_s + SQS_VISIBILITY_S * SQS_MAX_RECEIVES:
            return
        await anyio.sleep(2.0)


def _rows(
    args: argparse.Namespace,
    led: Ledger,
    samples: list[Sample],
    store_mib: float,
    ledger: tuple[Counter[str], list[float]],
) -> list[Row]:
    counts, latencies = ledger
    processed = set(counts)
    lost = sorted(led.sent - processed - led.to_destination)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    warm = [s for s in samples if s.t >= samples[-1].t / 5] if samples else []
    tasks = [s.tasks for s in warm]
    slope = slope_mib_per_10min(warm)
    lat = sorted(x * 1000 for x in latencies)
    rates = _rates(args)
    how = (
        f"{args.minutes:g} min, {args.rate:g} rec/s (SQS {rates['sqs']:g}, Kinesis {rates['kinesis']:g} over "
        f"{KINESIS_SHARDS} shards, Kafka {rates['kafka']:g}), {args.error_rate:.0%} errors"
    )
    seconds = args.minutes * 60
    achieved = {src: sum(1 for rid in led.sent if rid.startswith(src + "-")) / seconds for src in rates}
    rss = [s.rss_mib for s in warm]
    peak_store = max((s.store_mib for s in samples), default=store_mib)
    span = f"{fmt(min(rss, default=float('nan')))}-{fmt(max(rss, default=float('nan')))} MiB"
    return [
        Row(
            "endurance: load sent",
            fmt(sum(achieved.values()), "rec/s", 0),
            f"{args.rate:g} rec/s",
            sum(achieved.values()) >= 0.95 * args.rate,
            note="; ".join(f"{src} {fmt(v, digits=0)} of {rates[src]:g}" for src, v in achieved.items()),
        ),
        Row(
            "endurance: RSS slope after warm-up",
            fmt(slope, "MB / 10 min", 2),
            "< 1 MB / 10 min",
            None if slope != slope else slope < 1.0,
            note=f"{how}; RSS {span}",
        ),
        Row(
            "endurance: asyncio tasks after warm-up",
            f"{min(tasks, default=0)}-{max(tasks, default=0)}",
            "flat",
            bool(tasks) and max(tasks) - min(tasks) <= 10,
            note="min-max of the samples (every 10 s)",
        ),
        Row(
            "endurance: store on disk",
            fmt(peak_store, "MiB"),
            "bounded (journal retention)",
            peak_store < 1024,
            note=f"peak of the data dir (SQLite + WAL) while running; {fmt(store_mib, 'MiB')} once stopped",
        ),
        Row(
            "endurance: records lost",
            str(len(lost)),
            "0",
            not lost,
            note=(
                f"sent {len(led.sent):,}; processed {len(processed):,}; to a destination "
                f"{len(led.to_destination - processed):,}; processed twice or more {duplicates:,}"
                + (f"; first missing: {', '.join(lost[:5])}" if lost else "")
            ),
        ),
        Row(
            "endurance: put-to-invoke p50 / p99",
            f"{fmt(_pct(lat, 50), 'ms', 0)} / {fmt(_pct(lat, 99), 'ms', 0)}",
            "",
            None,
            note="successful invocations; Kinesis polls each shard once a second",
        ),
    ]


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]
