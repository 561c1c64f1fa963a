"""The endurance run's engine, in a process of its own: ``endurance_engine.py DATA_DIR SQS_URL KINESIS_URL``.

Serves the Lambda API on a free port (printed first: ``{"port": N}``), runs bench/scale/endurance_fns.py
as the function ``endurance``, and prints a JSON line every ``ESM_ENDURANCE_SAMPLE_S`` seconds (10) with
its asyncio task count and RSS. Stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import anyio
import psutil

from engine.app import Engine, EngineSettings
from engine.config import EngineConfig, FunctionConfig
from engine.logging import configure

BENCH = Path(__file__).resolve().parents[1]


async def main(data: Path, sqs: str, kinesis: str) -> None:
    config = EngineConfig(
        base_dir=BENCH,
        functions={
            "endurance": FunctionConfig(name="endurance", handler="scale.endurance_fns.handle", timeout=5)
        },
    )
    engine = Engine(
        EngineSettings(
            port=0,
            data_dir=data,
            endpoints={"sqs": sqs, "kinesis": kinesis},
            kafka_discovery_interval_s=1.0,
            drain_timeout_s=5.0,
        ),
        config,
    )
    proc = psutil.Process()
    every = float(os.environ.get("ESM_ENDURANCE_SAMPLE_S", "10"))

    async def report() -> None:
        while True:
            rss = proc.memory_info().rss / (1024 * 1024)
            line = {"t": time.time(), "tasks": len(asyncio.all_tasks()), "rss_mib": round(rss, 2)}
            print(json.dumps(line), flush=True)
            await anyio.sleep(every)

    async with anyio.create_task_group() as tg:
        port = await tg.start(engine.serve)
        print(json.dumps({"port": port}), flush=True)
        tg.start_soon(report)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                tg.cancel_scope.cancel()  # the engine drains its runners, then stops
                break


if __name__ == "__main__":
    configure("warning", json_lines=True)
    anyio.run(main, Path(sys.argv[1]), sys.argv[2], sys.argv[3])
