"""In-process functions the integration tests map queues to. Every call is recorded in CALLS."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

CALLS: list[dict[str, Any]] = []
_lock = threading.Lock()
_in_flight: dict[str, int] = {}
MAX_IN_FLIGHT: dict[str, int] = {}


def _record(event: dict[str, Any], context: Any) -> None:
    with _lock:
        CALLS.append({"function": context.function_name, "event": event, "at": time.time()})


def calls_for(source_arn: str) -> list[dict[str, Any]]:
    """Invocations whose records came from this source, in invocation order."""
    with _lock:
        return [
            c
            for c in CALLS
            if c["event"].get("Records") and c["event"]["Records"][0].get("eventSourceARN") == source_arn
        ]


def records_for(source_arn: str) -> list[dict[str, Any]]:
    return [r for c in calls_for(source_arn) for r in c["event"]["Records"]]


def ok(event: dict[str, Any], context: Any) -> None:
    _record(event, context)


def partial(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Reports the records whose body contains FAIL as failed items."""
    _record(event, context)
    return {
        "batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r in event["Records"] if "FAIL" in r["body"]
        ]
    }


def boom(event: dict[str, Any], context: Any) -> None:
    """Fails the first delivery of every message; later deliveries succeed."""
    _record(event, context)
    if any(r["attributes"]["ApproximateReceiveCount"] == "1" for r in event["Records"]):
        raise RuntimeError("first delivery fails")


def bad_response(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An itemIdentifier that names no message on the first delivery: the whole batch fails."""
    _record(event, context)
    if any(r["attributes"]["ApproximateReceiveCount"] == "1" for r in event["Records"]):
        return {"batchItemFailures": [{"itemIdentifier": "not-a-message-id"}]}
    return {"batchItemFailures": []}


async def slow(event: dict[str, Any], context: Any) -> None:
    """Takes 0.3 s per batch and tracks how many batches of one queue run at once."""
    import anyio

    arn = event["Records"][0]["eventSourceARN"]
    with _lock:
        _in_flight[arn] = _in_flight.get(arn, 0) + 1
        MAX_IN_FLIGHT[arn] = max(MAX_IN_FLIGHT.get(arn, 0), _in_flight[arn])
    try:
        await anyio.sleep(0.3)
        _record(event, context)
    finally:
        with _lock:
            _in_flight[arn] -= 1


# --- streams --------------------------------------------------------------------------------------------


def _data(r: dict[str, Any]) -> str:
    import base64

    return (
        base64.b64decode(r["kinesis"]["data"]).decode()
        if "kinesis" in r
        else json.dumps(r["dynamodb"]["Keys"])
    )


def stream_records_for(source_arn: str) -> list[dict[str, Any]]:
    return records_for(source_arn)


def stream_ok(event: dict[str, Any], context: Any) -> None:
    _record(event, context)


def stream_poison(event: dict[str, Any], context: Any) -> None:
    """Throws while a record whose data is POISON is in the batch."""
    _record(event, context)
    if any(_data(r) == "POISON" for r in event["Records"]):
        raise ValueError("poison record in batch")


def stream_partial(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Reports the POISON record (by sequence number) as failed."""
    _record(event, context)
    return {
        "batchItemFailures": [
            {"itemIdentifier": r["kinesis"]["sequenceNumber"]}
            for r in event["Records"]
            if _data(r) == "POISON"
        ]
    }


def window_sum(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Tumbling-window aggregate: sums the integer data of the window's records in the state."""
    with _lock:
        CALLS.append({"function": context.function_name, "event": event, "at": time.time()})
    state = dict(event.get("state") or {})
    for r in event["Records"]:
        state["sum"] = state.get("sum", 0) + int(_data(r))
        state["count"] = state.get("count", 0) + 1
    return {"state": state, "batchItemFailures": []}


def window_calls(source_arn: str) -> list[dict[str, Any]]:
    with _lock:
        return [c["event"] for c in CALLS if c["event"].get("eventSourceARN") == source_arn]


def ddb_poison(event: dict[str, Any], context: Any) -> None:
    """DynamoDB Streams: throws while a record of an item whose key attribute is "POISON" is in the batch."""
    _record(event, context)
    if any({"S": "POISON"} in r["dynamodb"]["Keys"].values() for r in event["Records"]):
        raise ValueError("poison item in batch")


# --- Amazon MQ ------------------------------------------------------------------------------------------


def _mq_messages(event: dict[str, Any]) -> list[dict[str, Any]]:
    if "rmqMessagesByQueue" in event:
        return [m for msgs in event["rmqMessagesByQueue"].values() for m in msgs]
    return list(event.get("messages") or [])


def mq_calls(broker_arn: str) -> list[dict[str, Any]]:
    with _lock:
        return [c["event"] for c in CALLS if c["event"].get("eventSourceArn") == broker_arn]


def mq_bodies(broker_arn: str) -> list[str]:
    import base64

    return [base64.b64decode(m["data"]).decode() for e in mq_calls(broker_arn) for m in _mq_messages(e)]


def mq_ok(event: dict[str, Any], context: Any) -> None:
    _record(event, context)


def mq_first_delivery_fails(event: dict[str, Any], context: Any) -> None:
    """Fails while any message of the batch is on its first delivery."""
    _record(event, context)
    if any(not m["redelivered"] for m in _mq_messages(event)):
        raise RuntimeError("first delivery fails")


def mq_fails(event: dict[str, Any], context: Any) -> None:
    """Fails every delivery (a poison message)."""
    _record(event, context)
    raise RuntimeError("always fails")


# --- Kafka ----------------------------------------------------------------------------------------------


def _kafka_records(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for rs in (event.get("records") or {}).values() for r in rs]


def _kafka_value(r: dict[str, Any]) -> str:
    import base64

    return base64.b64decode(r["value"]).decode() if r["value"] is not None else ""


def kafka_calls(topic: str) -> list[dict[str, Any]]:
    """Events whose records came from ``topic``, in invocation order."""
    with _lock:
        return [
            c["event"]
            for c in CALLS
            if "records" in c["event"] and any(r["topic"] == topic for r in _kafka_records(c["event"]))
        ]


def kafka_records(topic: str) -> list[dict[str, Any]]:
    return [r for e in kafka_calls(topic) for r in _kafka_records(e)]


def kafka_ok(event: dict[str, Any], context: Any) -> None:
    _record(event, context)


def kafka_poison(event: dict[str, Any], context: Any) -> None:
    """Throws while a record whose value is POISON is in the batch."""
    _record(event, context)
    if any(_kafka_value(r) == "POISON" for r in _kafka_records(event)):
        raise ValueError("poison record in batch")


def kafka_partial(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Reports every POISON record (by partition and offset) as failed."""
    _record(event, context)
    return {
        "batchItemFailures": [
            {"itemIdentifier": {"partition": f"{r['topic']}-{r['partition']}", "offset": r["offset"]}}
            for r in _kafka_records(event)
            if _kafka_value(r) == "POISON"
        ]
    }


async def kafka_slow(event: dict[str, Any], context: Any) -> None:
    """0.2 s per batch: a restart lands in the middle of the stream."""
    import anyio

    await anyio.sleep(0.2)
    _record(event, context)
