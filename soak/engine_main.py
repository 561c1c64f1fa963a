"""The soak's engine, in a process of its own (a fault may SIGKILL it): ``python -m soak.engine_main
SPEC.json``. The engine as `esm serve` runs it, its functions wrapped by the tap. Prints
``{"port": N}`` once serving; stops cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from engine.app import Engine, EngineSettings
from engine.config import EngineConfig, load_config
from engine.logging import configure
from engine.runner.stream import StreamRunnerSettings
from soak.plan import Faults
from soak.tap import Tap


async def main(spec: dict[str, Any]) -> None:
    config = load_config(spec["config"]) if spec.get("config") else EngineConfig()
    config = dataclasses.replace(config, base_dir=Path(spec["base_dir"]))
    settings = EngineSettings(
        port=int(spec["port"]),
        data_dir=Path(spec["data_dir"]),
        aws_endpoint_url=spec.get("aws_endpoint_url"),
        endpoints=spec.get("endpoints") or {},
        region=spec.get("region", "us-east-1"),
        stream=StreamRunnerSettings(poll_interval_s=float(spec.get("kinesis_poll_interval_s", 1.0))),
        capture_payloads=bool(spec.get("capture_payloads")),
        time_scale=float(spec.get("time_scale", 1.0)),
        drain_timeout_s=float(spec.get("drain_timeout_s", 10.0)),
    )
    given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["faults"].items()}
    faults = Faults(**given)
    tap = Tap(Path(spec["tap"]), faults, int(spec.get("seed", 7)))
    engine = Engine(settings, config, wrap_invoker=tap.wrap)
    async with anyio.create_task_group() as tg:
        port = await tg.start(engine.serve)
        print(json.dumps({"port": port}), flush=True)
        tg.start_soon(_stop_on_signal, tg.cancel_scope)


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    import signal

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()  # the engine drains its runners, then stops
            return


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    configure(spec.get("log_level", "warning"), json_lines=True)
    anyio.run(main, spec)
