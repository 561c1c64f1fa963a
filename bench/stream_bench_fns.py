"""The stream benchmark's functions: count records and the put-to-invoke latency each record carries.

Kinesis: the record data is JSON ``{"t": epoch}`` (base64 in the event, as Lambda delivers it).
DynamoDB: the item's NewImage has ``t`` (N), the epoch seconds just before the PutItem.
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


async def handle_kinesis(event: dict[str, Any], context: Any) -> None:
    now = time.time()
    for r in event["Records"]:
        LATENCIES.append(now - json.loads(base64.b64decode(r["kinesis"]["data"]))["t"])
    COUNT[0] += len(event["Records"])


async def handle_dynamodb(event: dict[str, Any], context: Any) -> None:
    now = time.time()
    for r in event["Records"]:
        LATENCIES.append(now - float(r["dynamodb"]["NewImage"]["t"]["N"]))
    COUNT[0] += len(event["Records"])
