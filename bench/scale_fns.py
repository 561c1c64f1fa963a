"""The scale benchmark's functions (bench/scale/idle.py): count records, the put-to-invoke latency each
carries, and how many batches of one source run at once.

Every record carries JSON ``{"t": epoch just before the put}``: an SQS body, a Kinesis record's data or a
Kafka record's value (base64 in the event, as Lambda delivers both). An SQS body may also carry
``"hold": seconds``: the batch then stays in the function that long, and the batches of its queue running
at once are counted (the burst: how soon a queue that gets 50 messages runs 5 batches concurrently).
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from typing import Any

import anyio

#: concurrent batches AWS starts at once when an SQS queue gets messages
BURST_BATCHES = 5

COUNT = [0]
LATENCIES: list[float] = []
#: per event source ARN: batches in the function now, the most at once, and when BURST_BATCHES first ran
RUNNING: Counter[str] = Counter()
PEAK: Counter[str] = Counter()
REACHED: dict[str, float] = {}


def reset() -> None:
    COUNT[0] = 0
    LATENCIES.clear()
    RUNNING.clear()
    PEAK.clear()
    REACHED.clear()


def _seen(stamps: list[float]) -> None:
    now = time.time()
    LATENCIES.extend(now - t for t in stamps)
    COUNT[0] += len(stamps)


async def handle_sqs(event: dict[str, Any], context: Any) -> None:
    bodies = [json.loads(r["body"]) for r in event["Records"]]
    _seen([b["t"] for b in bodies])
    hold = max(b.get("hold", 0.0) for b in bodies)
    if not hold:
        return
    arn = event["Records"][0]["eventSourceARN"]
    RUNNING[arn] += 1
    PEAK[arn] = max(PEAK[arn], RUNNING[arn])
    if RUNNING[arn] >= BURST_BATCHES:
        REACHED.setdefault(arn, time.time())
    try:
        await anyio.sleep(hold)
    finally:
        RUNNING[arn] -= 1


async def handle_kinesis(event: dict[str, Any], context: Any) -> None:
    _seen([json.loads(base64.b64decode(r["kinesis"]["data"]))["t"] for r in event["Records"]])


async def handle_kafka(event: dict[str, Any], context: Any) -> None:
    _seen(
        [
            json.loads(base64.b64decode(r["value"]))["t"]
            for records in event["records"].values()
            for r in records
        ]
    )
