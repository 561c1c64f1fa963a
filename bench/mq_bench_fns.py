"""The MQ benchmark's functions: count messages and the put-to-invoke latency each body carries.

Each body is JSON ``{"t": epoch before publish, "p": padding}``, base64 in ``data`` as Amazon MQ events
deliver it. RabbitMQ events group messages under ``rmqMessagesByQueue``; ActiveMQ events list them under
``messages``. The raw client loops build events of the same shapes.
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


def _take(messages: list[dict[str, Any]], now: float) -> None:
    for m in messages:
        LATENCIES.append(now - json.loads(base64.b64decode(m["data"]))["t"])
    COUNT[0] += len(messages)


async def handle_rabbitmq(event: dict[str, Any], context: Any) -> None:
    now = time.time()
    for messages in event["rmqMessagesByQueue"].values():
        _take(messages, now)


async def handle_activemq(event: dict[str, Any], context: Any) -> None:
    _take(event["messages"], time.time())
