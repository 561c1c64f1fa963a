"""The soak example's function: an order processor. It reads each record (an SQS body, a DynamoDB item,
the base64 data of a Kinesis, Kafka or MQ record) and adds up the amounts, as a small real handler would."""

from __future__ import annotations

import base64
import json
import time
from typing import Any


def _records(event: dict[str, Any]) -> list[dict[str, Any]]:
    if "Records" in event:
        return list(event["Records"])
    if "records" in event:  # Kafka: by topic-partition
        return [r for batch in event["records"].values() for r in batch]
    if "rmqMessagesByQueue" in event:
        return [m for batch in event["rmqMessagesByQueue"].values() for m in batch]
    return list(event.get("messages", []))


def _order(record: dict[str, Any]) -> dict[str, Any]:
    if "dynamodb" in record:  # the item's new image: {"amount": {"N": "12.5"}, ...}
        image = record["dynamodb"].get("NewImage", {})
        return {k: next(iter(v.values())) for k, v in image.items()}
    if "body" in record:
        raw = record["body"].encode()
    elif "kinesis" in record:
        raw = base64.b64decode(record["kinesis"]["data"])
    else:
        raw = base64.b64decode(record.get("value") or record.get("data") or "")
    order: dict[str, Any] = json.loads(raw)
    return order


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    total = 0.0
    records = _records(event)
    for record in records:
        order = _order(record)
        total += float(order.get("amount", 0))
    time.sleep(0.002 * len(records) ** 0.5)  # a little work per batch: a write to a store
    return {"orders": len(records), "total": round(total, 2)}
