"""RabbitMQ event payload (spec 1.5): ``rmqMessagesByQueue`` entries and the envelope around them. Pure.

AWS's poller is Java: the record is a Gson rendering of the RabbitMQ Java client's ``BasicProperties``.
Hence the shapes reproduced here: AMQP long strings (``LongString``) appear as ``{"bytes": [...]}``,
numbers plain, absent properties ``null``, and ``timestamp`` (a ``java.util.Date``) in Gson's default
format, ``DateFormat.MEDIUM`` for en-US in UTC: ``"Jan 1, 1970, 12:33:41 AM"``.

``properties`` uses the AMQP 0-9-1 names as pamqp spells them (``content_type``, ``delivery_mode``,
``message_type`` or ``type``, ``cluster_id``, ...); a missing key means the property is absent.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
from collections.abc import Mapping
from typing import Any

from engine.events import Envelope

DEFAULT_VHOST = "/"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def java_medium_datetime(value: _dt.datetime | float) -> str:
    """Java's ``DateFormat.getDateTimeInstance(MEDIUM, MEDIUM, Locale.US)`` in UTC (``MMM d, y, h:mm:ss a``).

    ``value`` is a datetime (naive means UTC) or epoch seconds.
    """
    if isinstance(value, _dt.datetime):
        dt = value.replace(tzinfo=_dt.UTC) if value.tzinfo is None else value.astimezone(_dt.UTC)
    else:
        dt = _dt.datetime.fromtimestamp(value, tz=_dt.UTC)
    hour12 = dt.hour % 12 or 12
    half = "AM" if dt.hour < 12 else "PM"
    return f"{_MONTHS[dt.month - 1]} {dt.day}, {dt.year}, {hour12}:{dt.minute:02d}:{dt.second:02d} {half}"


def _byte_list(raw: bytes | bytearray | memoryview) -> dict[str, list[int]]:
    return {"bytes": list(bytes(raw))}


def header_value(value: Any) -> Any:
    """One AMQP field-table value as Gson renders the Java client's decoded value."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _byte_list(value.encode())
    if isinstance(value, bytes | bytearray | memoryview):
        return _byte_list(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, _dt.datetime):
        return java_medium_datetime(value)
    if isinstance(value, Mapping):
        return {str(k): header_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [header_value(v) for v in value]
    return _byte_list(str(value).encode())


def _shortstr(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def rabbitmq_message(body: bytes, properties: Mapping[str, Any], *, redelivered: bool) -> dict[str, Any]:
    """One entry of ``rmqMessagesByQueue["<queue>::<vhost>"]`` (spec 1.5)."""
    headers = properties.get("headers")
    timestamp = properties.get("timestamp")
    msg_type = properties.get("message_type", properties.get("type"))
    # cluster-id is deprecated and must be empty: pamqp reports an absent one as ""
    cluster_id = _shortstr(properties.get("cluster_id")) or None
    return {
        "basicProperties": {
            "contentType": _shortstr(properties.get("content_type")),
            "contentEncoding": _shortstr(properties.get("content_encoding")),
            "headers": None if headers is None else {str(k): header_value(v) for k, v in headers.items()},
            "deliveryMode": _optional_int(properties.get("delivery_mode")),
            "priority": _optional_int(properties.get("priority")),
            "correlationId": _shortstr(properties.get("correlation_id")),
            "replyTo": _shortstr(properties.get("reply_to")),
            "expiration": _shortstr(properties.get("expiration")),
            "messageId": _shortstr(properties.get("message_id")),
            "timestamp": None if timestamp is None else java_medium_datetime(timestamp),
            "type": _shortstr(msg_type),
            "userId": _shortstr(properties.get("user_id")),
            "appId": _shortstr(properties.get("app_id")),
            "clusterId": cluster_id,
            "bodySize": len(body),
        },
        "redelivered": bool(redelivered),
        "data": base64.b64encode(body).decode("ascii"),
    }


def rabbitmq_queue_key(queue: str, vhost: str = DEFAULT_VHOST) -> str:
    return f"{queue}::{vhost or DEFAULT_VHOST}"


def rabbitmq_envelope(broker_arn: str, queue: str, vhost: str = DEFAULT_VHOST) -> Envelope:
    """``{"eventSource":"aws:rmq","eventSourceArn":ARN,"rmqMessagesByQueue":{"<queue>::<vhost>":[`` ...
    ``]}}``: the records of one batch go between, joined by commas."""

    def enc(s: str) -> str:
        return json.dumps(s, ensure_ascii=False)

    prefix = (
        f'{{"eventSource":"aws:rmq","eventSourceArn":{enc(broker_arn)},'
        f'"rmqMessagesByQueue":{{{enc(rabbitmq_queue_key(queue, vhost))}:['
    )
    return Envelope(prefix.encode(), b"]}}")
