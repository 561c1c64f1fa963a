"""SQS benchmark: the engine against a raw aiobotocore receive/delete loop on the same broker, same run.

    .venv/bin/python bench/sqs_bench.py [--messages 10000] [--endpoint http://127.0.0.1:9324]

Throughput: a queue pre-filled with N messages is drained (records/s). Latency: messages are sent one by one
at a steady rate while the consumer runs; put-to-invoke = handler entry time - time before SendMessage.
Memory: peak RSS growth of this process during each phase. Never a timed assertion: it prints a table.
Use ElasticMQ (moto's SQS slows down as a backlog grows).
"""

from __future__ import annotations

import argparse
import contextlib
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

import anyio
from aiobotocore.session import get_session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fns
from common import RssPeak, delete_mapping, pct, wait_count

from engine.app import Engine, EngineSettings
from engine.config import EngineConfig, FunctionConfig
from engine.logging import configure

REGION = "us-east-1"


async def make_queue(sqs: Any, name: str) -> tuple[str, str]:
    url = (await sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30"}))["QueueUrl"]
    attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, attrs["Attributes"]["QueueArn"]


async def prefill(sqs: Any, url: str, n: int, size: int) -> None:
    pad = "x" * max(0, size - 40)

    async def sender(start: int, stop: int) -> None:
        for i in range(start, stop, 10):
            entries = [
                {"Id": str(j), "MessageBody": json.dumps({"t": time.time(), "p": pad})}
                for j in range(min(10, stop - i))
            ]
            await sqs.send_message_batch(QueueUrl=url, Entries=entries)

    step = max(10, (n // 10) // 10 * 10)
    async with anyio.create_task_group() as tg:
        for s in range(0, n, step):
            tg.start_soon(sender, s, min(n, s + step))


async def steady_send(sqs: Any, url: str, rate: float, seconds: float) -> int:
    sent = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        await sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"t": time.time()}))
        sent += 1
        next_at = t0 + sent / rate
        await anyio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


async def raw_consumer(sqs: Any, url: str, stop: anyio.Event) -> None:
    """The ceiling: receive up to 10 with long polling, hand the batch to the handler, delete the batch."""
    while not stop.is_set():
        resp = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        msgs = resp.get("Messages") or []
        if not msgs:
            continue
        await bench_fns.handle({"Records": [{"body": m["Body"]} for m in msgs]}, None)
        await sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
        )


Consumer = Callable[[str, str], Awaitable[Callable[[], Awaitable[None]]]]


async def measure(
    name: str, sqs: Any, start_consumer: Consumer, n: int, rate: float, seconds: float, size: int
) -> dict[str, Any]:
    # throughput: drain a backlog of n
    url, arn = await make_queue(sqs, f"bench-tp-{uuid.uuid4().hex[:8]}")
    await prefill(sqs, url, n, size)
    bench_fns.reset()
    mem = RssPeak()
    async with anyio.create_task_group() as tg:
        tg.start_soon(mem.sample)
        t0 = time.monotonic()
        stop = await start_consumer(url, arn)
        await wait_count(bench_fns.COUNT, n, timeout=600)
        elapsed = time.monotonic() - t0
        await stop()
        tg.cancel_scope.cancel()
    await sqs.delete_queue(QueueUrl=url)  # ElasticMQ slows down as dead queues pile up in its heap
    # latency: a steady trickle on a fresh queue
    url, arn = await make_queue(sqs, f"bench-lat-{uuid.uuid4().hex[:8]}")
    bench_fns.reset()
    stop = await start_consumer(url, arn)
    await anyio.sleep(1.0)  # pollers are up and long-polling
    sent = await steady_send(sqs, url, rate, seconds)
    await wait_count(bench_fns.COUNT, sent, timeout=60)
    await stop()
    await sqs.delete_queue(QueueUrl=url)
    lat = [x * 1000 for x in bench_fns.LATENCIES]
    return {
        "name": name,
        "n": n,
        "rps": n / elapsed,
        "p50": pct(lat, 50),
        "p95": pct(lat, 95),
        "p99": pct(lat, 99),
        "mean": statistics.fmean(lat) if lat else float("nan"),
        "rss": mem.peak - mem.start,
    }


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput: its numbers stay consistent with each other."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


async def main(args: argparse.Namespace) -> None:
    configure("warning")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    session = get_session()
    results = []
    async with session.create_client("sqs", region_name=REGION, endpoint_url=args.endpoint) as sqs:

        def raw(loops: int) -> Consumer:
            async def start(url: str, arn: str) -> Callable[[], Awaitable[None]]:
                stop = anyio.Event()
                cm = anyio.create_task_group()
                tg = await cm.__aenter__()
                for _ in range(loops):
                    tg.start_soon(raw_consumer, sqs, url, stop)

                async def stopper() -> None:
                    stop.set()
                    await cm.__aexit__(None, None, None)

                return stopper

            return start

        with tempfile.TemporaryDirectory() as data:
            config = EngineConfig(
                base_dir=Path(__file__).parent,
                functions={"bench": FunctionConfig(name="bench", handler="bench_fns.handle", timeout=30)},
            )
            engine = Engine(
                EngineSettings(
                    port=0, data_dir=Path(data), endpoints={"sqs": args.endpoint}, drain_timeout_s=2.0
                ),
                config,
            )
            async with anyio.create_task_group() as etg:
                await etg.start(engine.serve)

                def via_engine(batch_size: int, window: int, concurrency: int | None = None) -> Consumer:
                    async def start(url: str, arn: str) -> Callable[[], Awaitable[None]]:
                        params: dict[str, Any] = {
                            "EventSourceArn": arn,
                            "FunctionName": "bench",
                            "BatchSize": batch_size,
                        }
                        if window:
                            params["MaximumBatchingWindowInSeconds"] = window
                        if concurrency:
                            params["ScalingConfig"] = {"MaximumConcurrency": concurrency}
                        m = await engine.plane.create(params)

                        async def stopper() -> None:
                            await delete_mapping(engine, m.uuid)

                        return stopper

                    return start

                plan: list[tuple[str, Consumer]] = [
                    ("raw loop ×1 (10/receive)", raw(1)),
                    (f"raw loops ×{args.raw_loops}", raw(args.raw_loops)),
                    ("engine BatchSize 10", via_engine(10, 0)),
                    ("engine BatchSize 10, MaxConcurrency 5", via_engine(10, 0, 5)),
                    ("engine BatchSize 100, window 1 s", via_engine(100, 1)),
                ]
                for name, consumer in plan * args.repeat:
                    results.append(
                        await measure(name, sqs, consumer, args.messages, args.rate, args.seconds, args.size)
                    )
                    print(f"  done: {name}", file=sys.stderr)
                etg.cancel_scope.cancel()

    if args.repeat > 1:
        results = [_median_of([r for r in results if r["name"] == name]) for name, _ in plan]
    best_raw = max(r["rps"] for r in results if r["name"].startswith("raw"))
    print(
        f"\nSQS on {args.endpoint}: {args.messages} messages of ~{args.size} B drained; latency at "
        f"{args.rate:g} msg/s for {args.seconds:g} s; async in-process handler; "
        f"median of {args.repeat} runs\n"
    )
    print(
        f"| {'consumer':34} | {'records/s':>9} | {'vs best raw':>11} | {'p50 ms':>7} | {'p95 ms':>7} | "
        f"{'p99 ms':>7} | {'peak ΔRSS MiB':>13} |"
    )
    print(f"|{'-' * 36}|{'-' * 10}:|{'-' * 12}:|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 14}:|")
    for r in results:
        print(
            f"| {r['name']:34} | {r['rps']:9.0f} | {r['rps'] / best_raw:11.2f} | {r['p50']:7.1f} | "
            f"{r['p95']:7.1f} | {r['p99']:7.1f} | {r['rss']:13.1f} |"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", default=os.environ.get("ESM_TEST_SQS_ENDPOINT", "http://127.0.0.1:9324"))
    p.add_argument("--messages", type=int, default=10000)
    p.add_argument("--size", type=int, default=200, help="approximate message body size in bytes")
    p.add_argument("--rate", type=float, default=100.0, help="messages/s for the latency phase")
    p.add_argument("--seconds", type=float, default=5.0, help="length of the latency phase")
    p.add_argument("--repeat", type=int, default=1, help="run the whole plan this many times (noise check)")
    p.add_argument("--raw-loops", type=int, default=5, help="concurrent raw loops in the second raw row")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, p.parse_args())
