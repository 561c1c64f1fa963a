"""ActiveMQ event payload (spec 1.5): one ``messages`` entry per STOMP MESSAGE frame, and the envelope
around a batch. Pure.

AWS's poller consumes over OpenWire/JMS and renders each ``javax.jms.Message``; the engine consumes over
STOMP, where ActiveMQ Classic maps the same JMS message onto frame headers (``FrameTranslator.Helper``):
``message-id``, ``destination``, ``correlation-id``, ``expires``, ``priority``, ``reply-to``,
``timestamp``, ``type``, ``persistent``, ``redelivered``, ``JMSXUserID``, ``original-destination``, then
every JMS property as a string. A ``BytesMessage`` is the only kind whose frame carries
``content-length`` (ActiveMQ stores a STOMP SEND with ``content-length`` as a ``BytesMessage``, one
without as a ``TextMessage``), which is how ``messageType`` is told apart.

Choices where AWS's rendering is not documented ([UNVERIFIED] in the spec's sense):
* ``expiration``: the JMS expiration as a string; ``null`` when the message never expires (``expires``
  absent or ``0``).
* ``replyTo``: ``{"physicalName": NAME}`` like ``destination`` (AWS renders both JMS destinations the same
  way), ``null`` when unset.
* ``brokerInTime`` / ``brokerOutTime``: ActiveMQ does not put them on STOMP frames; headers of those names
  are used when present, else the JMS timestamp.
* ``connectionId`` (seen in Powertools' fixtures, absent from the Lambda guide) is emitted only when the
  caller knows it, after ``data``; STOMP does not carry it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from engine.events import Envelope

EVENT_SOURCE = "aws:mq"
TEXT_MESSAGE = "jms/text-message"
BYTES_MESSAGE = "jms/bytes-message"

#: JMS default priority, for a frame without a ``priority`` header
DEFAULT_PRIORITY = 4

_DESTINATION_PREFIXES = ("/queue/", "/topic/", "/temp-queue/", "/temp-topic/", "/remote-temp-queue/")

#: headers that are part of STOMP itself or carry a JMS header field, never a JMS property
STANDARD_HEADERS = frozenset(
    {
        # STOMP frame headers
        "destination",
        "message-id",
        "subscription",
        "ack",
        "content-length",
        "content-type",
        "receipt",
        "transaction",
        # JMS header fields as ActiveMQ's STOMP translator maps them
        "correlation-id",
        "expires",
        "persistent",
        "priority",
        "redelivered",
        "reply-to",
        "timestamp",
        "type",
        # ActiveMQ message fields, not properties
        "JMSXUserID",
        "original-destination",
        "amq-msg-type",
        "brokerInTime",
        "brokerOutTime",
    }
)


def physical_name(stomp_destination: str) -> str:
    """``/queue/orders`` -> ``orders`` (what JMS calls the destination's physical name)."""
    for prefix in _DESTINATION_PREFIXES:
        if stomp_destination.startswith(prefix):
            return stomp_destination[len(prefix) :]
    return stomp_destination


def _int(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return default


def activemq_message(
    body: bytes,
    headers: Mapping[str, str],
    *,
    broker_host: str | None = None,
    connection_id: str | None = None,
    redelivered: bool | None = None,
) -> dict[str, Any]:
    """One entry of ``messages`` (spec 1.5) from a STOMP MESSAGE frame's body and headers.

    ``redelivered`` overrides the frame's ``redelivered`` header (the poller clears it for a message
    that went back to the broker without ever reaching the function, as a JMS client would).
    ``broker_host`` names the broker the frame came from; every field of the record comes from the frame
    itself, so it is accepted for the callers' symmetry and not rendered.
    """
    del broker_host  # see the docstring: nothing in the record depends on it
    timestamp = _int(headers.get("timestamp"), 0)
    expires = headers.get("expires")
    reply_to = headers.get("reply-to")
    record: dict[str, Any] = {
        "messageID": headers.get("message-id", ""),
        "messageType": BYTES_MESSAGE if "content-length" in headers else TEXT_MESSAGE,
        "deliveryMode": 2 if headers.get("persistent") == "true" else 1,
        "replyTo": {"physicalName": physical_name(reply_to)} if reply_to else None,
        "type": headers.get("type") or None,
        "expiration": expires if expires and expires != "0" else None,
        "priority": _int(headers.get("priority"), DEFAULT_PRIORITY),
        "correlationId": headers.get("correlation-id") or None,
        "redelivered": headers.get("redelivered") == "true" if redelivered is None else redelivered,
        "destination": {"physicalName": physical_name(headers.get("destination", ""))},
        "data": base64.b64encode(body).decode("ascii"),
    }
    if connection_id is not None:
        record["connectionId"] = connection_id
    record["timestamp"] = timestamp
    record["brokerInTime"] = _int(headers.get("brokerInTime"), timestamp)
    record["brokerOutTime"] = _int(headers.get("brokerOutTime"), timestamp)
    record["properties"] = {str(k): str(v) for k, v in headers.items() if k not in STANDARD_HEADERS}
    return record


def activemq_envelope(broker_arn: str) -> Envelope:
    """``{"eventSource":"aws:mq","eventSourceArn":ARN,"messages":[`` ... ``]}``: the records of one batch
    go between, joined by commas."""
    prefix = (
        f'{{"eventSource":"{EVENT_SOURCE}","eventSourceArn":{json.dumps(broker_arn, ensure_ascii=False)},'
        '"messages":['
    )
    return Envelope(prefix.encode(), b"]}")
