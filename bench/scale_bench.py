"""Scale and endurance: one engine process at a real pipeline's scale, a table per run (issue 13).

    .venv/bin/python bench/scale_bench.py [--rows idle,shards,memory,throughput,endurance] [--minutes 5]
        [--sqs-mappings 1000] [--kinesis-shards 200] [--kafka-partitions 100] [--records 100000]
        [--kafka-backlog 1000000] [--sqs-backlog 200000] [--rate 500]

Each row: the engine's figure, the issue's goal, and the raw client's figure where one exists (same
services, same run). The machine is shared and noisy: rows that can be repeated print medians. Never a
timed assertion: it prints the table and exits 0 (a missed goal is a row marked "missed").
The services come from scripts/services.sh (ElasticMQ, kinesis-mock, Kafka; `scripts/services.sh env`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table
from scale.row import Row

from engine.logging import configure

ROWS = ("idle", "shards", "memory", "throughput", "endurance")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default=",".join(ROWS), help=f"which rows, comma-separated ({','.join(ROWS)})")
    p.add_argument("--sqs-mappings", type=int, default=1000, help="idle: SQS mappings on empty queues")
    p.add_argument("--kinesis-shards", type=int, default=200, help="idle: Kinesis shards")
    p.add_argument("--kafka-partitions", type=int, default=100, help="idle: Kafka partitions")
    p.add_argument("--idle-seconds", type=float, default=60.0, help="idle: how long CPU is measured")
    p.add_argument("--shards", type=int, default=64, help="shards: shards / partitions of the drain")
    p.add_argument("--records", type=int, default=100_000, help="shards: records drained")
    p.add_argument("--kafka-backlog", type=int, default=1_000_000, help="memory: Kafka backlog")
    p.add_argument("--sqs-backlog", type=int, default=200_000, help="memory: SQS backlog")
    p.add_argument("--minutes", type=float, default=60.0, help="endurance: how long the load runs")
    p.add_argument("--rate", type=float, default=500.0, help="endurance: records per second, all sources")
    p.add_argument(
        "--kinesis-rate",
        type=float,
        default=50.0,
        help="endurance: Kinesis's share of --rate (kinesis-mock slows as shards fill); SQS, Kafka: the rest",
    )
    p.add_argument("--error-rate", type=float, default=0.05, help="endurance: share of failing invocations")
    p.add_argument("--out", type=Path, help="also write the table (and each row's raw figures) here")
    return p.parse_args(argv)


async def main(args: argparse.Namespace) -> list[Row]:
    chosen = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(chosen) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows: {', '.join(unknown)} (known: {', '.join(ROWS)})")
    rows: list[Row] = []
    for name in chosen:
        started = time.monotonic()
        module = importlib.import_module(f"scale.{name}")
        got: list[Row] = await module.rows(args)
        rows += got
        print(f"# {name}: {len(got)} rows in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


HEADERS = ["row", "engine", "goal", "", "raw client", "how"]


def table(rows: list[Row]) -> str:
    verdict = {True: "met", False: "missed", None: ""}
    cells = [[r.what, r.engine, r.goal, verdict[r.met], r.raw, r.note] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(HEADERS)]
    return markdown_table(list(zip(HEADERS, widths, strict=True)), cells)


if __name__ == "__main__":
    arguments = parse_args()
    configure("warning", json_lines=False)
    result = anyio.run(main, arguments)
    text = table(result)
    print(text)
    if arguments.out:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(text + "\n")
