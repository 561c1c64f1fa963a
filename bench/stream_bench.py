"""Stream benchmark (Kinesis, DynamoDB Streams): the engine against a raw aiobotocore GetRecords loop on
the same emulator, same run.

    .venv/bin/python bench/stream_bench.py [--records 5000] [--repeat 3]

Throughput: per run, a fresh stream (Kinesis: 4 shards, PutRecords of 100, 4 writers) or table
(BatchWriteItem of 25, one writer) is pre-filled with N records; every consumer of that section then
drains it from TRIM_HORIZON --drains times (a new mapping or raw loop each time, order rotated per run:
the same data for all), and the stream/table is deleted. records/s = N / (last record handled - consumer
created), so mapping creation, shard listing and iterators count. Latency: records are put one by one at
a steady rate on a fresh stream/table (deleted after) while the consumer runs; put-to-invoke = handler
entry time - time before the put. Memory: peak RSS growth of this process during each phase. An untimed
warm-up pass per row comes first (client creation, botocore models, handler import). Never a timed
assertion: it prints a table; each metric is the median of its samples (records/s: repeat x drains,
latency: one per run).

The raw loop is the ceiling: per shard, GetShardIterator TRIM_HORIZON, then GetRecords(Limit=100) in a
loop, each non-empty read handed to the same handler as an event of the same shape (dicts built as the
engine builds them, without the engine's JSON round trip), sleeping the poll interval after an empty
read. Both use the same poll intervals (engine defaults: Kinesis 1.0 s, DynamoDB 0.25 s, as AWS).

Services: kinesis-mock on :4568 and moto on :5000 (scripts/services.sh start kinesis moto). Never moto's
Kinesis (it loses records under concurrent PutRecords); kinesis-mock's PutRecords slows as a shard
fills, hence several shards and a moderate N.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from aiobotocore.session import get_session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import stream_bench_fns as fns
from common import RssPeak, Samples, delete_mapping, latency_ms, medians, wait_count

from engine.app import Engine, EngineSettings
from engine.config import EngineConfig, FunctionConfig
from engine.logging import configure
from engine.runner.stream import StreamRunnerSettings

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/esm-local"
BATCH = 100

Handler = Callable[[dict[str, Any], Any], Awaitable[None]]
Stopper = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Source:
    name: str  # stream or table name
    arn: str  # the stream ARN a mapping reads


class KinesisOps:
    """kinesis-mock: a stream of ``shards`` shards, data JSON {"t": epoch}, random partition keys."""

    label = "Kinesis"
    key = "kinesis"
    max_senders = 64
    function = "kinesis-bench"

    def __init__(self, client: Any, shards: int) -> None:
        self.handler: Handler = fns.handle_kinesis
        self.k = client
        self.shards = shards

    async def create(self) -> Source:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        await self.k.create_stream(StreamName=name, ShardCount=self.shards)
        with anyio.fail_after(60):
            while True:
                s = (await self.k.describe_stream_summary(StreamName=name))["StreamDescriptionSummary"]
                if s["StreamStatus"] == "ACTIVE":
                    return Source(name, s["StreamARN"])
                await anyio.sleep(0.05)

    async def delete(self, src: Source) -> None:
        await self.k.delete_stream(StreamName=src.name, EnforceConsumerDeletion=True)

    async def put_many(self, src: Source, count: int) -> None:
        records = [
            {"Data": json.dumps({"t": time.time()}).encode(), "PartitionKey": uuid.uuid4().hex}
            for _ in range(count)
        ]
        while records:  # kinesis-mock does not throttle, but a partial failure must not lose records
            resp = await self.k.put_records(StreamName=src.name, Records=records)
            if not resp.get("FailedRecordCount"):
                return
            records = [r for r, res in zip(records, resp["Records"], strict=True) if res.get("ErrorCode")]

    async def put_one(self, src: Source) -> None:
        data = json.dumps({"t": time.time()}).encode()
        await self.k.put_record(StreamName=src.name, Data=data, PartitionKey=uuid.uuid4().hex)

    async def shard_ids(self, src: Source) -> list[str]:
        return [s["ShardId"] for s in (await self.k.list_shards(StreamName=src.name))["Shards"]]

    async def iterator(self, src: Source, shard_id: str) -> str:
        resp = await self.k.get_shard_iterator(
            StreamName=src.name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )
        return str(resp["ShardIterator"])

    async def get_records(self, iterator: str) -> dict[str, Any]:
        resp: dict[str, Any] = await self.k.get_records(ShardIterator=iterator, Limit=BATCH)
        return resp

    @staticmethod
    def event_record(src: Source, shard_id: str, raw: dict[str, Any]) -> dict[str, Any]:
        seq = raw["SequenceNumber"]
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": raw["PartitionKey"],
                "sequenceNumber": seq,
                "data": base64.b64encode(raw["Data"]).decode("ascii"),
                "approximateArrivalTimestamp": round(raw["ApproximateArrivalTimestamp"].timestamp(), 3),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{seq}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": ROLE_ARN,
            "awsRegion": REGION,
            "eventSourceARN": src.arn,
        }


class DynamoDbOps:
    """moto: a table with a NEW_AND_OLD_IMAGES stream (moto: always one shard), items {pk, t (N)}."""

    label = "DynamoDB Streams"
    key = "dynamodb"
    #: moto numbers stream records len(items) + start without a lock: concurrent writes can give two
    #: records one sequence number, and a read ending on such a pair re-reads a record (seen: 5001/5000)
    max_senders = 1
    function = "dynamodb-bench"

    def __init__(self, ddb: Any, streams: Any) -> None:
        self.handler: Handler = fns.handle_dynamodb
        self.d = ddb
        self.s = streams

    async def create(self) -> Source:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        resp = await self.d.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        with anyio.fail_after(60):
            while True:
                table = (await self.d.describe_table(TableName=name))["Table"]
                if table["TableStatus"] == "ACTIVE":
                    return Source(name, resp["TableDescription"]["LatestStreamArn"])
                await anyio.sleep(0.05)

    async def delete(self, src: Source) -> None:
        await self.d.delete_table(TableName=src.name)

    @staticmethod
    def _item() -> dict[str, Any]:
        return {"pk": {"S": uuid.uuid4().hex}, "t": {"N": repr(time.time())}}

    async def put_many(self, src: Source, count: int) -> None:
        for i in range(0, count, 25):
            requests: Any = {
                src.name: [{"PutRequest": {"Item": self._item()}} for _ in range(min(25, count - i))]
            }
            while requests:
                requests = (await self.d.batch_write_item(RequestItems=requests)).get("UnprocessedItems")

    async def put_one(self, src: Source) -> None:
        await self.d.put_item(TableName=src.name, Item=self._item())

    async def shard_ids(self, src: Source) -> list[str]:
        return [
            s["ShardId"]
            for s in (await self.s.describe_stream(StreamArn=src.arn))["StreamDescription"]["Shards"]
        ]

    async def iterator(self, src: Source, shard_id: str) -> str:
        resp = await self.s.get_shard_iterator(
            StreamArn=src.arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )
        return str(resp["ShardIterator"])

    async def get_records(self, iterator: str) -> dict[str, Any]:
        resp: dict[str, Any] = await self.s.get_records(ShardIterator=iterator, Limit=BATCH)
        return resp

    @staticmethod
    def event_record(src: Source, shard_id: str, raw: dict[str, Any]) -> dict[str, Any]:
        body = dict(raw["dynamodb"])
        body["ApproximateCreationDateTime"] = round(body["ApproximateCreationDateTime"].timestamp(), 3)
        return {
            "eventID": raw["eventID"],
            "eventName": raw["eventName"],
            "eventVersion": raw.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": raw.get("awsRegion") or REGION,
            "dynamodb": body,
            "eventSourceARN": src.arn,
        }


Ops = KinesisOps | DynamoDbOps
Consumer = Callable[[Source], Awaitable[Stopper]]


# --- producers --------------------------------------------------------------------------------------


async def prefill(ops: Ops, src: Source, n: int, senders: int) -> None:
    chunk = 100 if isinstance(ops, KinesisOps) else 25
    senders = min(senders, ops.max_senders)
    per_sender = max(chunk, -(-n // senders // chunk) * chunk)

    async def sender(start: int, stop: int) -> None:
        for i in range(start, stop, chunk):
            await ops.put_many(src, min(chunk, stop - i))

    async with anyio.create_task_group() as tg:
        for s in range(0, n, per_sender):
            tg.start_soon(sender, s, min(n, s + per_sender))


async def steady_put(ops: Ops, src: Source, rate: float, seconds: float) -> int:
    sent = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        await ops.put_one(src)
        sent += 1
        await anyio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
    return sent


# --- consumers --------------------------------------------------------------------------------------


def raw_loop(ops: Ops, poll_s: float) -> Consumer:
    async def shard_loop(src: Source, shard_id: str, stop: anyio.Event) -> None:
        iterator: str | None = await ops.iterator(src, shard_id)
        while iterator and not stop.is_set():
            resp = await ops.get_records(iterator)
            iterator = resp.get("NextShardIterator")
            records = resp.get("Records") or []
            if records:
                await ops.handler({"Records": [ops.event_record(src, shard_id, r) for r in records]}, None)
            else:
                with anyio.move_on_after(poll_s):
                    await stop.wait()

    async def start(src: Source) -> Stopper:
        stop = anyio.Event()
        cm = anyio.create_task_group()
        tg = await cm.__aenter__()
        for shard_id in await ops.shard_ids(src):
            tg.start_soon(shard_loop, src, shard_id, stop)

        async def stopper() -> None:
            stop.set()
            await cm.__aexit__(None, None, None)

        return stopper

    return start


def via_engine(engine: Engine, ops: Ops, **extra: Any) -> Consumer:
    async def start(src: Source) -> Stopper:
        params: dict[str, Any] = {
            "EventSourceArn": src.arn,
            "FunctionName": ops.function,
            "BatchSize": BATCH,
            "StartingPosition": "TRIM_HORIZON",
            **extra,
        }
        m = await engine.plane.create(params)

        async def stopper() -> None:
            await delete_mapping(engine, m.uuid)

        return stopper

    return start


# --- measurement ------------------------------------------------------------------------------------


async def warm_up(ops: Ops, consumer: Consumer) -> None:
    """One untimed pass (clients, botocore models, handler import) so that no row pays for first use."""
    src = await ops.create()
    await prefill(ops, src, 10, 1)
    fns.reset()
    stop = await consumer(src)
    await wait_count(fns.COUNT, 10, timeout=60)
    await stop()
    await ops.delete(src)


async def drain_once(consumer: Consumer, src: Source, n: int) -> tuple[float, float]:
    """(records/s, peak RSS growth MiB) of one consumer draining ``src`` from TRIM_HORIZON."""
    fns.reset()
    mem = RssPeak()
    async with anyio.create_task_group() as tg:
        tg.start_soon(mem.sample)
        t0 = time.monotonic()
        stop = await consumer(src)
        await wait_count(fns.COUNT, n, timeout=600)
        elapsed = time.monotonic() - t0
        await stop()
        tg.cancel_scope.cancel()
    if fns.COUNT[0] != n:
        print(f"  warning: drain delivered {fns.COUNT[0]} of {n} records", file=sys.stderr)
    return n / elapsed, mem.peak - mem.start


async def throughput(
    ops: Ops, consumers: list[tuple[str, Consumer]], args: argparse.Namespace, run: int
) -> dict[str, Samples]:
    """One fresh stream/table pre-filled with N records; every consumer drains it from TRIM_HORIZON
    (``--drains`` times each, in an order rotated per run), then it is deleted. Identical data for all."""
    src = await ops.create()
    try:
        await prefill(ops, src, args.records, args.senders)
        out: dict[str, Samples] = {name: {"rps": [], "rss": []} for name, _ in consumers}
        k = run % len(consumers)
        for _ in range(args.drains):
            for name, consumer in consumers[k:] + consumers[:k]:
                rps, rss = await drain_once(consumer, src, args.records)
                out[name]["rps"].append(rps)
                out[name]["rss"].append(rss)
        return out
    finally:
        await ops.delete(src)


async def latency(ops: Ops, consumer: Consumer, args: argparse.Namespace) -> Samples:
    """A steady trickle on a fresh stream/table while ``consumer`` runs."""
    src = await ops.create()
    try:
        fns.reset()
        mem = RssPeak()
        async with anyio.create_task_group() as tg:
            tg.start_soon(mem.sample)
            stop = await consumer(src)
            await anyio.sleep(args.warmup)  # shards listed, iterators taken, first (empty) reads done
            sent = await steady_put(ops, src, args.rate, args.seconds)
            await wait_count(fns.COUNT, sent, timeout=60)
            await stop()
            tg.cancel_scope.cancel()
    finally:
        await ops.delete(src)
    if fns.COUNT[0] != sent:
        print(f"  warning: latency phase delivered {fns.COUNT[0]} of {sent} records", file=sys.stderr)
    return latency_ms(fns.LATENCIES) | {"rss_lat": [mem.peak - mem.start]}


async def main(args: argparse.Namespace) -> None:
    configure("warning")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    session = get_session()
    started = time.monotonic()
    async with (
        session.create_client("kinesis", region_name=REGION, endpoint_url=args.kinesis_endpoint) as kinesis,
        session.create_client("dynamodb", region_name=REGION, endpoint_url=args.moto_endpoint) as ddb,
        session.create_client("dynamodbstreams", region_name=REGION, endpoint_url=args.moto_endpoint) as ddbs,
    ):
        kops = KinesisOps(kinesis, args.shards)
        dops = DynamoDbOps(ddb, ddbs)
        with tempfile.TemporaryDirectory() as data:
            config = EngineConfig(
                base_dir=Path(__file__).parent,
                functions={
                    kops.function: FunctionConfig(
                        name=kops.function, handler="stream_bench_fns.handle_kinesis", timeout=30
                    ),
                    dops.function: FunctionConfig(
                        name=dops.function, handler="stream_bench_fns.handle_dynamodb", timeout=30
                    ),
                },
            )
            engine = Engine(
                EngineSettings(
                    port=0,
                    data_dir=Path(data),
                    endpoints={"kinesis": args.kinesis_endpoint, "dynamodbstreams": args.moto_endpoint},
                    stream=StreamRunnerSettings(poll_interval_s=args.kinesis_poll, discovery_interval_s=10.0),
                    dynamodb_poll_interval_s=args.dynamodb_poll,
                    drain_timeout_s=2.0,
                ),
                config,
            )
            async with anyio.create_task_group() as etg:
                await etg.start(engine.serve)
                plan: list[tuple[Ops, str, Consumer]] = [
                    (kops, f"raw GetRecords loop ({args.shards} shards)", raw_loop(kops, args.kinesis_poll)),
                    (kops, "engine BatchSize 100", via_engine(engine, kops)),
                    (
                        kops,
                        "engine BatchSize 100, ParallelizationFactor 4",
                        via_engine(engine, kops, ParallelizationFactor=4),
                    ),
                    (dops, "raw GetRecords loop (per shard)", raw_loop(dops, args.dynamodb_poll)),
                    (dops, "engine BatchSize 100", via_engine(engine, dops)),
                ]
                plan = [step for step in plan if step[0].key in args.sources]
                for ops, _, consumer in plan:
                    await warm_up(ops, consumer)
                results: dict[tuple[str, str], Samples] = {}
                sections = {ops.label: ops for ops, _, _ in plan}
                for run in range(args.repeat):
                    for label, ops in sections.items():
                        consumers = [(name, c) for o, name, c in plan if o is ops]
                        tp = await throughput(ops, consumers, args, run)
                        for name, consumer in consumers:
                            samples = results.setdefault((label, name), {})
                            for key, values in (tp[name] | await latency(ops, consumer, args)).items():
                                samples.setdefault(key, []).extend(values)
                            print(
                                f"  run {run + 1}/{args.repeat} {label} / {name}: "
                                f"{', '.join(f'{v:.0f}' for v in tp[name]['rps'])} rec/s, p50/p95/p99 "
                                f"{'/'.join(f'{samples[p][-1]:.0f}' for p in ('p50', 'p95', 'p99'))} ms",
                                file=sys.stderr,
                            )
                etg.cancel_scope.cancel()

    polls = {kops.label: args.kinesis_poll, dops.label: args.dynamodb_poll}
    print(
        f"\nStreams: {args.records} records pre-filled, drained {args.drains}x per run from TRIM_HORIZON "
        f"(Kinesis: kinesis-mock {args.kinesis_endpoint}, {args.shards} shards; DynamoDB Streams: moto "
        f"{args.moto_endpoint}, 1 shard); latency: one put at a time at {args.rate:g}/s "
        f"for {args.seconds:g} s; "
        f"async in-process handler; BatchSize/Limit 100; medians over {args.repeat} runs; "
        f"{time.monotonic() - started:.0f} s in all\n"
    )
    print(
        f"| {'consumer':46} | {'poll s':>6} | {'records/s':>9} | {'engine/raw':>10} | {'p50 ms':>7} | "
        f"{'p95 ms':>7} | {'p99 ms':>7} | {'ΔRSS drain MiB':>14} | {'ΔRSS latency MiB':>16} |"
    )
    print(
        f"|{'-' * 48}|{'-' * 7}:|{'-' * 10}:|{'-' * 11}:|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|"
        f"{'-' * 15}:|{'-' * 17}:|"
    )
    for label in dict.fromkeys(lab for lab, _ in results):
        rows = {name: medians(samples) for (lab, name), samples in results.items() if lab == label}
        raw_rps = next(r["rps"] for name, r in rows.items() if name.startswith("raw"))
        print(
            f"| {'**' + label + '**':46} | {'':6} | {'':9} | {'':10} | {'':7} | {'':7} | {'':7} | {'':14} | "
            f"{'':16} |"
        )
        for name, r in rows.items():
            print(
                f"| {name:46} | {polls[label]:6.2f} | {r['rps']:9.0f} | {r['rps'] / raw_rps:10.2f} | "
                f"{r['p50']:7.1f} | {r['p95']:7.1f} | {r['p99']:7.1f} | {r['rss']:14.1f} | "
                f"{r['rss_lat']:16.1f} |"
            )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--kinesis-endpoint", default=os.environ.get("ESM_TEST_KINESIS_ENDPOINT", "http://127.0.0.1:4568")
    )
    p.add_argument(
        "--moto-endpoint", default=os.environ.get("ESM_TEST_MOTO_ENDPOINT", "http://127.0.0.1:5000")
    )
    p.add_argument("--records", type=int, default=5000, help="records pre-filled for the throughput phase")
    p.add_argument("--shards", type=int, default=4, help="Kinesis shards")
    p.add_argument(
        "--senders",
        type=int,
        default=4,
        help="concurrent Kinesis pre-fill senders (DynamoDB: one, see DynamoDbOps)",
    )
    p.add_argument(
        "--drains", type=int, default=2, help="drains of the pre-filled stream per consumer and run"
    )
    p.add_argument("--rate", type=float, default=50.0, help="puts/s in the latency phase")
    p.add_argument("--seconds", type=float, default=5.0, help="length of the latency phase")
    p.add_argument("--warmup", type=float, default=1.0, help="consumer runs this long before the first put")
    p.add_argument("--kinesis-poll", type=float, default=1.0, help="poll interval on an empty Kinesis read")
    p.add_argument(
        "--dynamodb-poll", type=float, default=0.25, help="poll interval on an empty DynamoDB read"
    )
    p.add_argument(
        "--sources",
        type=lambda v: v.split(","),
        default=["kinesis", "dynamodb"],
        help="comma-separated subset of kinesis,dynamodb",
    )
    p.add_argument("--repeat", type=int, default=3, help="run the whole plan this many times (median)")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, p.parse_args())
