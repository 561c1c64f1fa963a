"""The benchmark's function: counts records and the put-to-invoke latency carried in each body."""

from __future__ import annotations

import json
import time
from typing import Any

COUNT = [0]
LATENCIES: list[float] = []


def reset() -> None:
    COUNT[0] = 0
    LATENCIES.clear()


async def handle(event: dict[str, Any], context: Any) -> None:
    now = time.time()
    for r in event["Records"]:
        LATENCIES.append(now - json.loads(r["body"])["t"])
    COUNT[0] += len(event["Records"])
