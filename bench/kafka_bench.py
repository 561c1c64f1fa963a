"""Kafka benchmark (self-managed Apache Kafka): the engine against a raw aiokafka consumer on the same
broker, same topic layout, same run.

    .venv/bin/python bench/kafka_bench.py [--records 100000] [--partitions 4] [--repeat 3]

Raw client loop (the ceiling): one ``AIOKafkaConsumer`` in a consumer group of its own (auto-commit off,
``auto_offset_reset`` earliest), ``getmany(timeout_ms=500, max_records=100)`` in a loop; the handler is
called once per partition of each read with an event of the self-managed Kafka shape (base64 ``value`` per
record, but only what the handler reads; the engine builds the whole record and JSON-encodes the event),
then one ``commit()`` covers the read (skipped after an empty read: no offset moved).

Engine: in-process async handler; self-managed Kafka mappings (TRIM_HORIZON, group id = the mapping's
UUID) of BatchSize 100 with MaximumBatchingWindowInSeconds 0, of BatchSize 100 with Kafka's default window
(500 ms, opened at a batch's first record; throughput only) and of BatchSize 1 with window 0 (latency
only: the engine's own put-to-invoke). The engine runs one consumer per mapping and one reader per
assigned partition (``getmany`` of that partition), invokes once per partition batch and commits offset + 1
of each finished batch to the group.

Throughput: per row, a fresh topic of --partitions partitions is pre-filled with N records of ~--size bytes
(round robin over the partitions, acks=1, sends gathered in chunks of 1000) and drained from the start:
records/s = N / (last record handled - consumer started or mapping created), so joining the group, the
assignment and the first fetches count (the engine's ~0.1 s against the raw consumer's ~0.03 s: the
default 100,000 records keep that from deciding the ratio of what is a long-running consumer). With a
window, a partition's last batch waits it out unless it is full: keep N / --partitions a multiple of 100
(as the defaults do), or the 500 ms row pays that tail.
Latency: records are produced one at a time (each send awaited) at --rate for --seconds on a fresh topic
while the consumer runs (started --warmup earlier); put-to-invoke = handler entry - wall clock just before
the send (carried in the value). A window opens at the first record, so it bounds a trickle's latency:
the window 0 rows judge the engine's own delay. Memory: peak RSS growth of this process during each phase
(drain / latency), from the level left by the pre-fill. An untimed warm-up pass per row comes first. Each
metric is the median over --repeat runs; engine/raw is the median of the per-run ratios (raw and engine
drained in the same run, minutes apart at most, on a machine whose speed drifts); the order of the rows
rotates per run. CPU: this process's CPU time during the drain per record (the consumers are CPU-bound
here; on a shared 2-core VM the same work runs at visibly different speeds from one minute to the next,
so the CPU cost per record is the steadier comparison). Never a timed assertion: it prints a table.

Service: Kafka PLAINTEXT on :9092 (scripts/services.sh start kafka). Each phase's topic is deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kafka_bench_fns as fns
from common import RssPeak, Samples, delete_mapping, latency_ms, markdown_table, medians, wait_count

from engine.app import Engine, EngineSettings
from engine.config import EngineConfig, FunctionConfig
from engine.logging import configure

RAW_MAX_RECORDS = 100
PREFILL_CHUNK = 1000
FUNCTION = "kafka-bench"

Stopper = Callable[[], Awaitable[None]]
Consumer = Callable[[str], Awaitable[Stopper]]


def value(size: int) -> bytes:
    """JSON {"t": now, "p": padding} of about ``size`` bytes."""
    return json.dumps({"t": time.time(), "p": "x" * max(0, size - 32)}).encode()


# --- broker -----------------------------------------------------------------------------------------


class KafkaOps:
    """Topics of ``partitions`` partitions (replication 1), records spread round robin over them. Each
    topic has a producer of its own, stopped before the topic is deleted (a client that still knows a
    deleted topic logs an error at every metadata refresh)."""

    def __init__(self, bootstrap: str, partitions: int, size: int) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.size = size
        self._admin: Any = None
        self._producers: dict[str, Any] = {}

    async def open(self) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self._admin.start()

    async def aclose(self) -> None:
        await self._admin.close()

    def topic_name(self) -> str:
        return f"bench-{uuid.uuid4().hex[:10]}"

    async def create(self, topic: str) -> None:
        await self._admin.create_topics(
            [NewTopic(topic, num_partitions=self.partitions, replication_factor=1)]
        )
        with anyio.fail_after(30):  # every partition has its leader: no NotLeaderForPartition on first use
            while True:
                (described,) = await self._admin.describe_topics([topic])
                parts = described["partitions"]
                if (
                    not described["error_code"]
                    and len(parts) == self.partitions
                    and all(q["error_code"] == 0 and q["leader"] >= 0 for q in parts)
                ):
                    break
                await anyio.sleep(0.02)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks=1)
        await producer.start()
        await producer.partitions_for(topic)  # its metadata, before any timed send
        self._producers[topic] = producer

    async def delete(self, topic: str) -> None:
        producer = self._producers.pop(topic, None)
        if producer is not None:
            await producer.stop()
        try:
            await self._admin.delete_topics([topic])
        except KafkaError as e:
            print(f"  warning: topic {topic} not deleted: {e!r}", file=sys.stderr)

    async def prefill(self, topic: str, n: int) -> None:
        producer = self._producers[topic]
        for i in range(0, n, PREFILL_CHUNK):
            # send() queues the record and gives the future of its ack: a chunk goes out in few requests
            acks = [
                await producer.send(topic, value(self.size), partition=j % self.partitions)
                for j in range(i, min(n, i + PREFILL_CHUNK))
            ]
            await asyncio.gather(*acks)
        await producer.flush()

    async def put_one(self, topic: str, i: int) -> None:
        await self._producers[topic].send_and_wait(topic, value(self.size), partition=i % self.partitions)


def raw_loop(bootstrap: str) -> Consumer:
    async def start(topic: str) -> Stopper:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"bench-raw-{uuid.uuid4().hex[:10]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()

        async def loop() -> None:
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=RAW_MAX_RECORDS)
                for tp, messages in fetched.items():
                    records = [{"value": base64.b64encode(m.value).decode("ascii")} for m in messages]
                    event = {
                        "eventSource": "SelfManagedKafka",
                        "bootstrapServers": bootstrap,
                        "records": {f"{tp.topic}-{tp.partition}": records},
                    }
                    await fns.handle(event, None)
                if fetched:
                    await consumer.commit()

        task = asyncio.ensure_future(loop())

        async def stopper() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()

        return stopper

    return start


def via_engine(engine: Engine, bootstrap: str, batch_size: int, window: float | None) -> Consumer:
    async def start(topic: str) -> Stopper:
        params: dict[str, Any] = {
            "FunctionName": FUNCTION,
            "Topics": [topic],
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": batch_size,
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
            # required for self-managed Kafka; nothing to do locally
            "SourceAccessConfigurations": [{"Type": "VPC_SUBNET", "URI": "subnet:subnet-1"}],
        }
        if window is not None:
            params["MaximumBatchingWindowInSeconds"] = window
        m = await engine.plane.create(params)

        async def stopper() -> None:
            await delete_mapping(engine, m.uuid)

        return stopper

    return start


# --- measurement ------------------------------------------------------------------------------------


async def warm_up(ops: KafkaOps, consumer: Consumer) -> None:
    """One untimed pass (connections, group join, handler import) so that no row pays for first use."""
    topic = ops.topic_name()
    await ops.create(topic)
    try:
        await ops.prefill(topic, 10)
        fns.reset()
        stop = await consumer(topic)
        await wait_count(fns.COUNT, 10, timeout=60, poll_s=0.002)
        await stop()
    finally:
        await ops.delete(topic)


async def throughput(ops: KafkaOps, consumer: Consumer, n: int) -> Samples:
    topic = ops.topic_name()
    await ops.create(topic)
    try:
        await ops.prefill(topic, n)
        fns.reset()
        mem = RssPeak()
        async with anyio.create_task_group() as tg:
            tg.start_soon(mem.sample)
            t0, cpu0 = time.monotonic(), time.process_time()
            stop = await consumer(topic)
            await wait_count(fns.COUNT, n, timeout=600, poll_s=0.002)
            elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
            await stop()
            tg.cancel_scope.cancel()
    finally:
        await ops.delete(topic)
    if fns.COUNT[0] != n:
        print(f"  warning: drain delivered {fns.COUNT[0]} of {n} records", file=sys.stderr)
    return {"rps": [n / elapsed], "cpu_us": [cpu / n * 1e6], "rss": [mem.peak - mem.start]}


async def latency(ops: KafkaOps, consumer: Consumer, args: argparse.Namespace) -> Samples:
    topic = ops.topic_name()
    await ops.create(topic)
    try:
        fns.reset()
        mem = RssPeak()
        async with anyio.create_task_group() as tg:
            tg.start_soon(mem.sample)
            stop = await consumer(topic)
            await anyio.sleep(args.warmup)  # group joined, partitions assigned, first (empty) fetches
            sent = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.seconds:
                await ops.put_one(topic, sent)
                sent += 1
                await anyio.sleep(max(0.0, t0 + sent / args.rate - time.monotonic()))
            await wait_count(fns.COUNT, sent, timeout=60, poll_s=0.002)
            await stop()
            tg.cancel_scope.cancel()
    finally:
        await ops.delete(topic)
    if fns.COUNT[0] != sent:
        print(f"  warning: latency phase delivered {fns.COUNT[0]} of {sent} records", file=sys.stderr)
    return latency_ms(fns.LATENCIES) | {"rss_lat": [mem.peak - mem.start]}


async def main(args: argparse.Namespace) -> None:
    configure("warning")
    # a partition just created can refuse the first produce (NotLeaderForPartition) though the metadata
    # names its leader: the producer retries it; only the benchmark's producer logs there
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.ERROR)
    started = time.monotonic()
    ops = KafkaOps(args.bootstrap, args.partitions, args.size)
    with tempfile.TemporaryDirectory() as data:
        config = EngineConfig(
            base_dir=Path(__file__).parent,
            functions={FUNCTION: FunctionConfig(name=FUNCTION, handler="kafka_bench_fns.handle", timeout=30)},
        )
        engine = Engine(
            EngineSettings(port=0, data_dir=Path(data), kafka_discovery_interval_s=1.0, drain_timeout_s=2.0),
            config,
        )
        results: dict[str, Samples] = {}
        async with anyio.create_task_group() as etg:
            await etg.start(engine.serve)
            await ops.open()
            # (row key, name, consumer, measure throughput, measure latency)
            plan: list[tuple[str, str, Consumer, bool, bool]] = [
                (
                    "raw",
                    f"raw aiokafka getmany loop (max_records {RAW_MAX_RECORDS})",
                    raw_loop(args.bootstrap),
                    True,
                    True,
                ),
                (
                    "b100w0",
                    "engine BatchSize 100, window 0",
                    via_engine(engine, args.bootstrap, 100, 0),
                    True,
                    True,
                ),
                (
                    "b100",
                    "engine BatchSize 100, default window (500 ms)",
                    via_engine(engine, args.bootstrap, 100, None),
                    True,
                    False,
                ),
                (
                    "b1",
                    "engine BatchSize 1, window 0 (latency only)",
                    via_engine(engine, args.bootstrap, 1, 0),
                    False,
                    True,
                ),
            ]
            plan = [step for step in plan if step[0] in args.rows]
            for _, _, consumer, _, _ in plan:
                await warm_up(ops, consumer)
            for run in range(args.repeat):
                k = run % len(plan) if plan else 0
                for _, name, consumer, with_tp, with_lat in plan[k:] + plan[:k]:
                    got = await throughput(ops, consumer, args.records) if with_tp else {}
                    if with_lat:
                        got |= await latency(ops, consumer, args)
                    samples = results.setdefault(name, {})
                    for key, values in got.items():
                        samples.setdefault(key, []).extend(values)
                    rps = f"{got['rps'][0]:.0f} rec/s ({got['cpu_us'][0]:.0f} µs CPU/rec)" if with_tp else ""
                    lat = (
                        f"p50/p95/p99 {'/'.join(f'{got[p][0]:.1f}' for p in ('p50', 'p95', 'p99'))} ms"
                        if with_lat
                        else ""
                    )
                    print(
                        f"  run {run + 1}/{args.repeat} {name}: {', '.join(s for s in (rps, lat) if s)}",
                        file=sys.stderr,
                    )
            await ops.aclose()
            etg.cancel_scope.cancel()

    print(
        f"\nKafka ({args.bootstrap}): {args.records} records of ~{args.size} B over {args.partitions} "
        f"partitions pre-filled and drained from the start; latency: one send at a time at {args.rate:g}/s "
        f"for {args.seconds:g} s; async in-process handler; peak RSS growth: drain / latency phase; "
        f"medians over {args.repeat} runs; {time.monotonic() - started:.0f} s in all\n"
    )
    columns = [
        ("consumer", 46),
        ("records/s", 9),
        ("engine/raw", 10),
        ("CPU µs/rec", 10),
        ("p50 ms", 7),
        ("p95 ms", 7),
        ("p99 ms", 7),
        ("peak RSS growth MiB", 19),
    ]

    rows: list[list[str]] = []
    raw = next((s["rps"] for name, s in results.items() if name.startswith("raw") and "rps" in s), None)
    for name, samples in results.items():
        r = medians(samples)
        if "rps" in r:
            # the ratio of each run (engine and raw drained minutes apart at most), then the median
            ratio = (
                statistics.median(e / b for e, b in zip(samples["rps"], raw, strict=True))
                if raw is not None and not name.startswith("raw")
                else None
            )
            tp = [f"{r['rps']:.0f}", "—" if ratio is None else f"{ratio:.2f}", f"{r['cpu_us']:.0f}"]
        else:
            tp = ["—", "—", "—"]
        percentiles = [f"{r[p]:.1f}" for p in ("p50", "p95", "p99")] if "p50" in r else ["—"] * 3
        rss = " / ".join(f"{r[k]:.1f}" if k in r else "—" for k in ("rss", "rss_lat"))
        rows.append([name, *tp, *percentiles, rss])
    print(markdown_table(columns, rows))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default=os.environ.get("ESM_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    p.add_argument("--records", type=int, default=100_000, help="records pre-filled for the throughput phase")
    p.add_argument("--partitions", type=int, default=4, help="partitions of every topic")
    p.add_argument("--size", type=int, default=100, help="approximate record value size in bytes")
    p.add_argument("--rate", type=float, default=200.0, help="sends/s in the latency phase")
    p.add_argument("--seconds", type=float, default=5.0, help="length of the latency phase")
    p.add_argument("--warmup", type=float, default=2.0, help="consumer runs this long before the first send")
    p.add_argument(
        "--rows",
        type=lambda v: v.split(","),
        default=["raw", "b100w0", "b100", "b1"],
        help="raw,b100w0,b100,b1",
    )
    p.add_argument("--repeat", type=int, default=3, help="run the whole plan this many times (median)")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, p.parse_args())
