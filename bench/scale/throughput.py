"""Throughput rows (issue 13, target 4): each source's engine ÷ raw client ratio, from its own benchmark.

The source benchmarks (bench/sqs_bench.py, stream_bench.py for Kinesis and DynamoDB Streams,
kafka_bench.py, mq_bench.py for RabbitMQ and ActiveMQ) run one after another as subprocesses of this
tree, with the services' env of scripts/services.sh; their tables are read with bench/compare.py's parser,
so a row here is exactly the ratio the benchmark printed (the median of its per-run ratios, raw and engine
drained in the same run). Defaults, except where one run would take more than ~3 minutes:
stream_bench.py and mq_bench.py run with ``--repeat 2`` (medians of 2 runs, not 3).

Which engine row is the source's figure (the others are in the row's note):
Kafka BatchSize 100 at window 0 (the issue's row), SQS BatchSize 10 (a default mapping; ratio against the
best raw row, as the SQS table prints it), Kinesis and DynamoDB BatchSize 100, RabbitMQ and ActiveMQ
BatchSize 100 with the benchmark's 1 s window.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import anyio
from compare import SOURCES, Table, parse_markdown, services_env

from scale.row import Row, fmt

BENCH = Path(__file__).resolve().parents[1]

GOAL = 0.90
#: benchmark -> its extra arguments (smaller than the defaults only where a run takes over ~3 minutes)
RUNS: dict[str, list[str]] = {
    "sqs": [],
    "stream": ["--repeat", "2"],
    "kafka": [],
    "mq": ["--repeat", "2"],
}
#: (benchmark, source in its table, the engine row that is the source's figure, the row's title)
FIGURES = [
    ("sqs", "SQS", "engine BatchSize 10", "SQS (ElasticMQ), BatchSize 10"),
    ("stream", "Kinesis", "engine BatchSize 100", "Kinesis (kinesis-mock), BatchSize 100"),
    ("stream", "DynamoDB Streams", "engine BatchSize 100", "DynamoDB Streams (moto), BatchSize 100"),
    ("kafka", "Kafka", "engine BatchSize 100, window 0", "Kafka, BatchSize 100, window 0, no-op function"),
    ("mq", "RabbitMQ", "engine BatchSize 100, window 1 s", "RabbitMQ, BatchSize 100, window 1 s"),
    ("mq", "ActiveMQ", "engine BatchSize 100, window 1 s", "ActiveMQ, BatchSize 100, window 1 s"),
]


async def run_bench(name: str) -> tuple[Table, str]:
    """One benchmark's parsed table and how it ran (seconds, exit status)."""
    env = os.environ | services_env() | {"PYTHONPATH": str(BENCH.parent)}
    started = time.monotonic()
    done = await anyio.run_process(
        [sys.executable, str(BENCH / f"{name}_bench.py"), *RUNS[name]], env=env, check=False
    )
    how = f"{name}_bench.py {' '.join(RUNS[name]) or '(defaults)'}: {time.monotonic() - started:.0f} s"
    if done.returncode:
        errors = [
            line.strip(" |") for line in done.stderr.decode(errors="replace").splitlines() if "Error" in line
        ]
        return {}, f"{how}, exit {done.returncode}: {errors[-1] if errors else 'see its stderr'}"
    return parse_markdown(done.stdout.decode(), SOURCES.get(name, name)), how


def _figure(table: Table, source: str, consumer: str) -> dict[str, float]:
    row = table.get((source, consumer), {})
    return {metric: statistics.median(values) for metric, values in row.items() if values}


async def rows(args: argparse.Namespace) -> list[Row]:
    out: list[Row] = []
    tables: dict[str, tuple[Table, str]] = {}
    for name in RUNS:
        tables[name] = await run_bench(name)
        print(f"#   throughput: {tables[name][1]}", file=sys.stderr, flush=True)
    for name, source, consumer, title in FIGURES:
        table, how = tables[name]
        got = _figure(table, source, consumer)
        ratio = got.get("ratio", float("nan"))
        others = [
            f"{c.removeprefix('engine ')} {r['ratio'][0]:.2f}"
            for (s, c), r in table.items()
            if s == source and c != consumer and not c.startswith("raw") and r.get("ratio")
        ]
        raw = next((_figure(table, s, c) for s, c in table if s == source and c.startswith("raw")), {})
        cpu = f", {fmt(got['cpu_us'], 'µs CPU/rec', 0)}" if "cpu_us" in got else ""
        raw_cpu = f", {fmt(raw['cpu_us'], 'µs CPU/rec', 0)}" if "cpu_us" in raw else ""
        out.append(
            Row(
                what=f"throughput: {title}, engine ÷ raw",
                engine=f"{fmt(ratio, digits=2)} ({fmt(got.get('rps', float('nan')), 'rec/s', 0)}{cpu})",
                goal=f">= {GOAL:.2f}",
                met=None if ratio != ratio else ratio >= GOAL,
                raw=fmt(got.get("raw_rps", float("nan")), "rec/s", 0) + raw_cpu,
                note="; ".join([how, *(["other engine rows: " + ", ".join(others)] if others else [])]),
            )
        )
    return out
