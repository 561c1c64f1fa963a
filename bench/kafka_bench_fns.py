"""The Kafka benchmark's functions: count records and the put-to-invoke latency each record carries.

Each record value is JSON ``{"t": epoch before the send, "p": padding}``, base64 in ``value`` as Lambda
delivers Kafka records; an event holds one partition's records under ``records["<topic>-<partition>"]``.
The raw aiokafka loop builds events of the same shape.
"""

from __future__ import annotations

import base64
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
    for records in event["records"].values():
        for r in records:
            LATENCIES.append(now - json.loads(base64.b64decode(r["value"]))["t"])
        COUNT[0] += len(records)
