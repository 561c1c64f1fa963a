"""Amazon MQ benchmark (RabbitMQ, ActiveMQ): the engine against a raw client loop on the same broker, same
queue type, same run.

    .venv/bin/python bench/mq_bench.py [--messages 10000] [--repeat 3]

Raw client loops (the ceilings of /work/shared/infra/README.md):
* RabbitMQ: aio-pika consumer on a durable classic queue, prefetch 100, deliveries buffered; the loop
  takes the first and whatever else is buffered (up to 100), calls the handler once for that batch and
  acknowledges it with one ``multiple`` ack.
* ActiveMQ: stompman subscription, ``activemq.prefetchSize`` 100, ``client-individual`` ack; the handler
  is called per message and each message is acked after it.
Both hand the handler an event of the Amazon MQ shape (base64 ``data`` per message) but build only what
the handler reads; the engine builds the whole record (properties, headers) and JSON-encodes the event.

Engine: in-process async handler, a mapping of BatchSize 100 with MaximumBatchingWindowInSeconds 1, one
of BatchSize 10 with window 1 s, and a latency-only row with BatchSize 1 (a batch of one is full at once,
so no window applies: the engine's own put-to-invoke). The engine sizes the broker prefetch to BatchSize
and runs 1 consumer for RabbitMQ, 5 concurrent batches for ActiveMQ, as AWS does.

Throughput: a fresh queue is pre-filled with N persistent messages of ~--size bytes (RabbitMQ: publisher
confirms; ActiveMQ: ``persistent:true``, the last send with a receipt), then drained: records/s =
N / (last message handled - consumer started), so connecting and subscribing count. Latency: messages are
published one at a time at --rate for --seconds on a fresh queue while the consumer runs; put-to-invoke =
handler entry - wall clock just before publishing (carried in the body). With a window, AWS (and the
engine) start it at the first message, so the window bounds a trickle's latency (BatchSize 100 at
100 msg/s: about a second); the BatchSize 1 row is the one to judge the engine's own delay by.
CPU: this process's CPU time during the drain per record, and as a share of the drain's wall time (near
100 %: the consumer is CPU-bound; well below: it waits on the broker or on round trips). Memory: peak
RSS growth of this process during each phase, from the level left by the pre-fill (prefetch bounds what a
consumer buffers). An untimed warm-up pass per row comes first. Each metric is the median over --repeat
runs; engine/raw is the median of the per-run ratios (raw and engine drained in the same run, minutes
apart at most, on a machine whose speed drifts); the order of the rows rotates per run. --profile dumps a
cProfile of each drain. Never a timed assertion: it prints a table.

Services: RabbitMQ on :5672 and ActiveMQ STOMP on :61613 (scripts/services.sh start rabbitmq activemq).
RabbitMQ queues are deleted after each phase; ActiveMQ's (STOMP cannot delete them) stay, empty.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import anyio
import stompman
from aio_pika.abc import AbstractIncomingMessage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mq_bench_fns as fns
from common import RssPeak, Samples, delete_mapping, latency_ms, markdown_table, medians, wait_count

from engine.app import Engine, EngineSettings
from engine.config import EngineConfig, FunctionConfig
from engine.logging import configure

RAW_PREFETCH = 100
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mq-bench-{engine}-AbCdEf"

Stopper = Callable[[], Awaitable[None]]
Consumer = Callable[[str], Awaitable[Stopper]]


def body(size: int) -> bytes:
    """JSON {"t": now, "p": padding} of about ``size`` bytes."""
    return json.dumps({"t": time.time(), "p": "x" * max(0, size - 32)}).encode()


# --- brokers ----------------------------------------------------------------------------------------


class RabbitOps:
    label = "RabbitMQ"
    key = "rabbitmq"
    function = "rabbitmq-bench"
    handler = "mq_bench_fns.handle_rabbitmq"

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.size = size
        self.arn = f"arn:aws:mq:us-east-1:123456789012:broker:bench-rmq:b-{uuid.uuid4()}"
        self.secret = SECRET.format(engine="rabbitmq")
        # the engine takes credentials from the secret, not from the URL
        self.endpoint = url.replace("guest:guest@", "")
        self.creds = {"username": "guest", "password": "guest"}
        self._conn: Any = None
        self._ch: Any = None

    async def open(self) -> None:
        self._conn = await aio_pika.connect(self.url)
        self._ch = await self._conn.channel(publisher_confirms=True)

    async def aclose(self) -> None:
        await self._conn.close()

    def queue_name(self) -> str:
        return f"bench-{uuid.uuid4().hex[:10]}"

    async def create(self, queue: str) -> None:
        await self._ch.declare_queue(queue, durable=True)

    async def delete(self, queue: str) -> None:
        await self._ch.queue_delete(queue)

    def _message(self) -> aio_pika.Message:
        return aio_pika.Message(body(self.size), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)

    async def prefill(self, queue: str, n: int) -> None:
        for i in range(0, n, 500):  # concurrent publishes, each confirmed by the broker
            await asyncio.gather(
                *(
                    self._ch.default_exchange.publish(self._message(), routing_key=queue)
                    for _ in range(min(500, n - i))
                )
            )

    async def put_one(self, queue: str) -> None:
        await self._ch.default_exchange.publish(self._message(), routing_key=queue)

    def raw(self) -> Consumer:
        async def start(queue: str) -> Stopper:
            conn = await aio_pika.connect(self.url)
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=RAW_PREFETCH)
            q = await ch.get_queue(queue, ensure=False)
            buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

            async def on_message(message: AbstractIncomingMessage) -> None:
                buffer.put_nowait(message)

            async def loop() -> None:
                while True:
                    batch = [await buffer.get()]
                    while len(batch) < RAW_PREFETCH and not buffer.empty():
                        batch.append(buffer.get_nowait())
                    records = [{"data": base64.b64encode(m.body).decode("ascii")} for m in batch]
                    event = {"rmqMessagesByQueue": {f"{queue}::/": records}}
                    await fns.handle_rabbitmq(event, None)
                    await batch[-1].ack(multiple=True)

            tag = await q.consume(on_message, no_ack=False)
            task = asyncio.ensure_future(loop())

            async def stopper() -> None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await q.cancel(tag)
                await conn.close()

            return stopper

        return start


class ActiveOps:
    label = "ActiveMQ"
    key = "activemq"
    function = "activemq-bench"
    handler = "mq_bench_fns.handle_activemq"

    def __init__(self, stomp: str, user: str, password: str, size: int) -> None:
        host, port = stomp.rsplit(":", 1)
        self.params = stompman.ConnectionParameters(host=host, port=int(port), login=user, passcode=password)
        self.size = size
        self.arn = f"arn:aws:mq:us-east-1:123456789012:broker:bench-amq:b-{uuid.uuid4()}"
        self.secret = SECRET.format(engine="activemq")
        self.endpoint = f"stomp://{stomp}"
        self.creds = {"username": user, "password": password}
        self._client: Any = None

    def _new_client(self) -> stompman.Client:
        return stompman.Client(servers=[self.params])

    async def open(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def queue_name(self) -> str:
        return f"bench-{uuid.uuid4().hex[:10]}"

    async def create(self, queue: str) -> None:
        # a STOMP destination comes into being with its first use; the publisher connects per phase (a
        # stompman client idle through a busy phase can miss heartbeats, and its reconnect then fails)
        self._client = self._new_client()
        await self._client.__aenter__()

    async def delete(self, queue: str) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(None, None, None)

    async def _send(self, queue: str, receipt: bool = False) -> None:
        await self._client.send(
            body(self.size),
            destination=f"/queue/{queue}",
            headers={"persistent": "true"},
            receipt_timeout=30.0 if receipt else None,
        )

    async def prefill(self, queue: str, n: int) -> None:
        for i in range(n):
            # frames of one connection are handled in order: the last one's receipt covers them all
            await self._send(queue, receipt=i == n - 1)

    async def put_one(self, queue: str) -> None:
        await self._send(queue)

    def raw(self) -> Consumer:
        async def start(queue: str) -> Stopper:
            client = self._new_client()
            await client.__aenter__()

            async def on_message(frame: Any) -> None:
                event = {"messages": [{"data": base64.b64encode(frame.body).decode("ascii")}]}
                await fns.handle_activemq(event, None)

            sub = await client.subscribe(
                f"/queue/{queue}",
                handler=on_message,
                ack="client-individual",
                headers={"activemq.prefetchSize": str(RAW_PREFETCH)},
                on_suppressed_exception=lambda e, _frame: print(f"  raw handler: {e!r}", file=sys.stderr),
            )

            async def stopper() -> None:
                await sub.unsubscribe()
                await client.__aexit__(None, None, None)

            return stopper

        return start


Ops = RabbitOps | ActiveOps


def via_engine(engine: Engine, ops: Ops, batch_size: int, window: float | None) -> Consumer:
    async def start(queue: str) -> Stopper:
        params: dict[str, Any] = {
            "EventSourceArn": ops.arn,
            "FunctionName": ops.function,
            "Queues": [queue],
            "SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": ops.secret}],
            "BatchSize": batch_size,
        }
        if window is not None:
            params["MaximumBatchingWindowInSeconds"] = window
        m = await engine.plane.create(params)

        async def stopper() -> None:
            await delete_mapping(engine, m.uuid)

        return stopper

    return start


# --- measurement ------------------------------------------------------------------------------------


async def warm_up(ops: Ops, consumer: Consumer) -> None:
    """One untimed pass (connections, handler import, first batches) so that no row pays for first use."""
    queue = ops.queue_name()
    await ops.create(queue)
    await ops.prefill(queue, 10)
    fns.reset()
    stop = await consumer(queue)
    await wait_count(fns.COUNT, 10, timeout=60, poll_s=0.002)
    await stop()
    await ops.delete(queue)


async def throughput(ops: Ops, consumer: Consumer, n: int, profile: Path | None = None) -> Samples:
    queue = ops.queue_name()
    await ops.create(queue)
    try:
        await ops.prefill(queue, n)
        fns.reset()
        mem = RssPeak()
        profiler = cProfile.Profile() if profile is not None else None
        async with anyio.create_task_group() as tg:
            tg.start_soon(mem.sample)
            if profiler:
                profiler.enable()
            t0, cpu0 = time.monotonic(), time.process_time()
            stop = await consumer(queue)
            await wait_count(fns.COUNT, n, timeout=600, poll_s=0.002)
            elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
            if profiler is not None and profile is not None:
                profiler.disable()
                profiler.dump_stats(profile)
            await stop()
            tg.cancel_scope.cancel()
    finally:
        await ops.delete(queue)
    if fns.COUNT[0] != n:
        print(f"  warning: drain delivered {fns.COUNT[0]} of {n} messages", file=sys.stderr)
    return {
        "rps": [n / elapsed],
        "cpu_us": [cpu / n * 1e6],
        "cpu_pct": [cpu / elapsed * 100],
        "rss": [mem.peak - mem.start],
    }


async def latency(ops: Ops, consumer: Consumer, args: argparse.Namespace) -> Samples:
    queue = ops.queue_name()
    await ops.create(queue)
    try:
        fns.reset()
        mem = RssPeak()
        async with anyio.create_task_group() as tg:
            tg.start_soon(mem.sample)
            stop = await consumer(queue)
            await anyio.sleep(args.warmup)  # connected and subscribed
            sent = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.seconds:
                await ops.put_one(queue)
                sent += 1
                await anyio.sleep(max(0.0, t0 + sent / args.rate - time.monotonic()))
            await wait_count(fns.COUNT, sent, timeout=60, poll_s=0.002)
            await stop()
            tg.cancel_scope.cancel()
    finally:
        await ops.delete(queue)
    if fns.COUNT[0] != sent:
        print(f"  warning: latency phase delivered {fns.COUNT[0]} of {sent} messages", file=sys.stderr)
    return latency_ms(fns.LATENCIES) | {"rss_lat": [mem.peak - mem.start]}


async def main(args: argparse.Namespace) -> None:
    configure("warning")
    started = time.monotonic()
    sections: list[Ops] = []
    if "rabbitmq" in args.brokers:
        sections.append(RabbitOps(args.rabbitmq_url, args.size))
    if "activemq" in args.brokers:
        sections.append(ActiveOps(args.activemq_stomp, args.activemq_user, args.activemq_password, args.size))
    with tempfile.TemporaryDirectory() as data:
        config = EngineConfig(
            base_dir=Path(__file__).parent,
            functions={
                ops.function: FunctionConfig(name=ops.function, handler=ops.handler, timeout=30)
                for ops in sections
            },
            sections={
                "brokers": {ops.arn: {"endpoints": [ops.endpoint]} for ops in sections},
                "secrets": {ops.secret: ops.creds for ops in sections},
            },
        )
        # a short drain: an idle MQ poller waits in a long receive, which the supervisor then cancels
        engine = Engine(EngineSettings(port=0, data_dir=Path(data), drain_timeout_s=0.5), config)
        results: dict[tuple[str, str], Samples] = {}
        async with anyio.create_task_group() as etg:
            await etg.start(engine.serve)
            for ops in sections:
                await ops.open()
            # (ops, row key, name, consumer, measure throughput)
            plan: list[tuple[Ops, str, str, Consumer, bool]] = []
            for ops in sections:
                raw_name = (
                    f"raw aio-pika, prefetch {RAW_PREFETCH}, batch ≤{RAW_PREFETCH}, multiple-ack"
                    if isinstance(ops, RabbitOps)
                    else f"raw stompman, prefetch {RAW_PREFETCH}, ack per message"
                )
                plan += [
                    (ops, "raw", raw_name, ops.raw(), True),
                    (ops, "b100", "engine BatchSize 100, window 1 s", via_engine(engine, ops, 100, 1), True),
                    (ops, "b10", "engine BatchSize 10, window 1 s", via_engine(engine, ops, 10, 1), True),
                    (ops, "b1", "engine BatchSize 1 (latency only)", via_engine(engine, ops, 1, None), False),
                ]
            plan = [step for step in plan if step[1] in args.rows]
            for ops, _, _, consumer, _ in plan:
                await warm_up(ops, consumer)
            for run in range(args.repeat):
                for ops in sections:
                    rows = [step for step in plan if step[0] is ops]
                    k = run % len(rows) if rows else 0
                    for _, key, name, consumer, with_tp in rows[k:] + rows[:k]:
                        samples = results.setdefault((ops.label, name), {})
                        profile = args.profile and Path(f"{args.profile}.{ops.key}.{key}.{run + 1}.pstats")
                        got = (
                            await throughput(ops, consumer, args.messages, profile or None) if with_tp else {}
                        )
                        got |= await latency(ops, consumer, args)
                        for key, values in got.items():
                            samples.setdefault(key, []).extend(values)
                        rps = (
                            f"{got['rps'][0]:.0f} rec/s ({got['cpu_us'][0]:.0f} µs CPU/rec), "
                            if with_tp
                            else ""
                        )
                        print(
                            f"  run {run + 1}/{args.repeat} {ops.label} / {name}: {rps}p50/p95/p99 "
                            f"{'/'.join(f'{got[p][0]:.1f}' for p in ('p50', 'p95', 'p99'))} ms",
                            file=sys.stderr,
                        )
            for ops in sections:
                await ops.aclose()
            etg.cancel_scope.cancel()

    print(
        f"\nAmazon MQ: {args.messages} persistent messages of ~{args.size} B pre-filled and drained; "
        f"latency: one publish at a time at {args.rate:g}/s for {args.seconds:g} s; async in-process "
        f"handler; medians over {args.repeat} runs; {time.monotonic() - started:.0f} s in all\n"
    )
    columns = [
        ("consumer", 52),
        ("records/s", 9),
        ("engine/raw", 10),
        ("CPU µs/rec", 10),
        ("CPU %", 5),
        ("p50 ms", 7),
        ("p95 ms", 7),
        ("p99 ms", 7),
        ("ΔRSS drain MiB", 14),
        ("ΔRSS latency MiB", 16),
    ]

    table: list[list[str]] = []
    for label in dict.fromkeys(lab for lab, _ in results):
        section = {name: samples for (lab, name), samples in results.items() if lab == label}
        raw = next((samples["rps"] for name, samples in section.items() if name.startswith("raw")), None)
        table.append([f"**{label}**"] + [""] * (len(columns) - 1))
        for name, samples in section.items():
            r = medians(samples)
            if "rps" in r:
                # the ratio of each run (engine and raw drained minutes apart at most), then the median
                ratio = (
                    statistics.median(e / b for e, b in zip(samples["rps"], raw, strict=True))
                    if raw
                    else None
                )
                tp = [
                    f"{r['rps']:.0f}",
                    "—" if ratio is None else f"{ratio:.2f}",
                    f"{r['cpu_us']:.0f}",
                    f"{r['cpu_pct']:.0f}",
                ]
                rss = f"{r['rss']:.1f}"
            else:
                tp, rss = ["—"] * 4, "—"
            table.append(
                [
                    name,
                    *tp,
                    f"{r['p50']:.1f}",
                    f"{r['p95']:.1f}",
                    f"{r['p99']:.1f}",
                    rss,
                    f"{r['rss_lat']:.1f}",
                ]
            )
    print(markdown_table(columns, table))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--rabbitmq-url",
        default=os.environ.get("ESM_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    p.add_argument("--activemq-stomp", default=os.environ.get("ESM_TEST_ACTIVEMQ_STOMP", "127.0.0.1:61613"))
    p.add_argument("--activemq-user", default=os.environ.get("ESM_TEST_ACTIVEMQ_USER", "admin"))
    p.add_argument("--activemq-password", default=os.environ.get("ESM_TEST_ACTIVEMQ_PASSWORD", "admin"))
    p.add_argument("--messages", type=int, default=10000, help="messages pre-filled for the throughput phase")
    p.add_argument("--size", type=int, default=200, help="approximate message body size in bytes")
    p.add_argument("--rate", type=float, default=100.0, help="publishes/s in the latency phase")
    p.add_argument("--seconds", type=float, default=5.0, help="length of the latency phase")
    p.add_argument(
        "--warmup", type=float, default=0.5, help="consumer runs this long before the first publish"
    )
    p.add_argument(
        "--brokers", type=lambda v: v.split(","), default=["rabbitmq", "activemq"], help="rabbitmq,activemq"
    )
    p.add_argument(
        "--rows", type=lambda v: v.split(","), default=["raw", "b100", "b10", "b1"], help="raw,b100,b10,b1"
    )
    p.add_argument("--repeat", type=int, default=3, help="run the whole plan this many times (median)")
    p.add_argument(
        "--profile",
        metavar="PREFIX",
        help="cProfile each drain (timings suffer) into PREFIX.<broker>.<row>.<run>.pstats",
    )
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, p.parse_args())
