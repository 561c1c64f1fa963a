"""ActiveMQ event records (spec 1.5) built from STOMP MESSAGE frames as ActiveMQ Classic 5.18 sends them."""

from __future__ import annotations

import json

import pytest

from engine.batching import encode_envelope, encode_record
from engine.events_activemq import (
    BYTES_MESSAGE,
    STANDARD_HEADERS,
    TEXT_MESSAGE,
    activemq_envelope,
    activemq_message,
    physical_name,
)

ARN = "arn:aws:mq:us-east-2:111122223333:broker:test:b-9bcfa592-423a-4942-879d-eb284b418fc8"
MESSAGE_ID = (
    "ID:b-9bcfa592-423a-4942-879d-eb284b418fc8-1.mq.us-east-2.amazonaws.com-37557-1234520418293-4:1:1:1:1"
)

#: spec 1.5's ActiveMQ example, verbatim (its long message id spliced in)
SPEC_EVENT = """{
"eventSource": "aws:mq",
"eventSourceArn": "arn:aws:mq:us-east-2:111122223333:broker:test:b-9bcfa592-423a-4942-879d-eb284b418fc8",
"messages": [
{
"messageID": "<MESSAGE_ID>",
"messageType": "jms/text-message",
"deliveryMode": 1,
"replyTo": null,
"type": null,
"expiration": "60000",
"priority": 1,
"correlationId": "myJMSCoID",
"redelivered": false,
"destination": {
"physicalName": "testQueue"
},
"data":"QUJDOkFBQUE=",
"timestamp": 1598827811958,
"brokerInTime": 1598827811958,
"brokerOutTime": 1598827811959,
"properties": {
"index": "1",
"doAlarm": "false",
"myCustomProperty": "value"
}
}
]
}""".replace("<MESSAGE_ID>", MESSAGE_ID)

KEY_ORDER = [
    "messageID",
    "messageType",
    "deliveryMode",
    "replyTo",
    "type",
    "expiration",
    "priority",
    "correlationId",
    "redelivered",
    "destination",
    "data",
    "timestamp",
    "brokerInTime",
    "brokerOutTime",
    "properties",
]


def spec_frame() -> tuple[bytes, dict[str, str]]:
    """The STOMP MESSAGE frame (headers in the order ActiveMQ writes them) behind the spec's example."""
    headers = {
        "index": "1",
        "expires": "60000",
        "correlation-id": "myJMSCoID",
        "destination": "/queue/testQueue",
        "ack": "ID:vm-42087-1795619847807-4:3",
        "subscription": "esm-0123456789abcdef",
        "doAlarm": "false",
        "priority": "1",
        "message-id": MESSAGE_ID,
        "myCustomProperty": "value",
        "timestamp": "1598827811958",
        "brokerInTime": "1598827811958",
        "brokerOutTime": "1598827811959",
    }
    return b"ABC:AAAA", headers


def test_spec_example_exactly() -> None:
    body, headers = spec_frame()
    record = activemq_message(body, headers, broker_host="127.0.0.1")
    expected = json.loads(SPEC_EVENT)["messages"][0]
    assert record == expected
    assert list(record) == KEY_ORDER == list(expected)
    assert list(record["properties"]) == ["index", "doAlarm", "myCustomProperty"]


def test_spec_example_envelope_byte_for_byte() -> None:
    body, headers = spec_frame()
    env = activemq_envelope(ARN)
    payload = encode_envelope(env.prefix, [encode_record(activemq_message(body, headers))], env.suffix)
    expected = json.loads(SPEC_EVENT)
    assert json.loads(payload) == expected
    assert payload == json.dumps(expected, separators=(",", ":")).encode()
    assert env.prefix == (b'{"eventSource":"aws:mq","eventSourceArn":"' + ARN.encode() + b'","messages":[')
    assert env.suffix == b"]}"


def test_envelope_of_an_empty_batch_and_of_two_records() -> None:
    env = activemq_envelope(ARN)
    assert json.loads(env.prefix + env.suffix) == {
        "eventSource": "aws:mq",
        "eventSourceArn": ARN,
        "messages": [],
    }
    body, headers = spec_frame()
    rec = encode_record(activemq_message(body, headers))
    assert len(json.loads(encode_envelope(env.prefix, [rec, rec], env.suffix))["messages"]) == 2


def test_envelope_escapes_the_arn() -> None:
    env = activemq_envelope('arn:aws:mq:x:1:broker:"q":b-1')
    assert json.loads(env.prefix + env.suffix)["eventSourceArn"] == 'arn:aws:mq:x:1:broker:"q":b-1'


def _frame(**extra: str) -> dict[str, str]:
    return {
        "destination": "/queue/orders",
        "message-id": "ID:host-1-2-3:1:-1:1:7",
        "subscription": "s1",
        "ack": "ID:host-1-2-4:9",
        "expires": "0",
        "priority": "4",
        "timestamp": "1700000000123",
        **extra,
    }


def test_text_message_as_activemq_sends_it() -> None:
    """ActiveMQ writes a TextMessage without content-length."""
    record = activemq_message(b'{"a": 1}', _frame(persistent="true"))
    assert record["messageType"] == TEXT_MESSAGE == "jms/text-message"
    assert record["data"] == "eyJhIjogMX0="


def test_bytes_message_carries_content_length() -> None:
    body = bytes([0, 1, 2, 255])
    record = activemq_message(body, _frame(**{"content-length": "4"}))
    assert record["messageType"] == BYTES_MESSAGE == "jms/bytes-message"
    assert record["data"] == "AAEC/w=="
    assert "content-length" not in record["properties"]


def test_header_fields() -> None:
    record = activemq_message(
        b"x",
        _frame(
            persistent="true",
            redelivered="true",
            expires="1700000060123",
            priority="9",
            **{"reply-to": "/queue/replies", "correlation-id": "c-1", "type": "OrderCreated"},
        ),
    )
    assert record["deliveryMode"] == 2
    assert record["redelivered"] is True
    assert record["expiration"] == "1700000060123"
    assert record["priority"] == 9
    assert record["replyTo"] == {"physicalName": "replies"}
    assert record["correlationId"] == "c-1"
    assert record["type"] == "OrderCreated"
    assert record["destination"] == {"physicalName": "orders"}
    assert record["timestamp"] == record["brokerInTime"] == record["brokerOutTime"] == 1700000000123


def test_defaults_of_a_bare_frame() -> None:
    record = activemq_message(b"", {"destination": "/queue/q", "message-id": "ID:1", "subscription": "s"})
    assert record == {
        "messageID": "ID:1",
        "messageType": "jms/text-message",
        "deliveryMode": 1,
        "replyTo": None,
        "type": None,
        "expiration": None,
        "priority": 4,
        "correlationId": None,
        "redelivered": False,
        "destination": {"physicalName": "q"},
        "data": "",
        "timestamp": 0,
        "brokerInTime": 0,
        "brokerOutTime": 0,
        "properties": {},
    }


def test_no_expiry_is_null() -> None:
    assert activemq_message(b"x", _frame())["expiration"] is None
    assert activemq_message(b"x", {k: v for k, v in _frame().items() if k != "expires"})["expiration"] is None


def test_redelivered_override() -> None:
    assert activemq_message(b"x", _frame(redelivered="true"), redelivered=False)["redelivered"] is False
    assert activemq_message(b"x", _frame(), redelivered=True)["redelivered"] is True


def test_properties_keep_custom_headers_only_as_strings_in_frame_order() -> None:
    standard = {h: "std" for h in STANDARD_HEADERS}
    standard.update(_frame())
    headers = {"zeta": "1", **standard, "alpha": "true", "n": "42", "with:colon": "a\nb"}
    record = activemq_message(b"x", headers)
    assert record["properties"] == {"zeta": "1", "alpha": "true", "n": "42", "with:colon": "a\nb"}
    assert list(record["properties"]) == ["zeta", "alpha", "n", "with:colon"]


@pytest.mark.parametrize(
    "header",
    [
        "destination",
        "message-id",
        "subscription",
        "ack",
        "content-length",
        "content-type",
        "correlation-id",
        "expires",
        "persistent",
        "priority",
        "redelivered",
        "reply-to",
        "timestamp",
        "type",
        "JMSXUserID",
        "original-destination",
        "brokerInTime",
        "brokerOutTime",
    ],
)
def test_standard_header_is_not_a_property(header: str) -> None:
    assert header not in activemq_message(b"x", _frame(**{header: "v"}))["properties"]


def test_properties_of_a_dead_lettered_message() -> None:
    """What ActiveMQ adds when it moves a message to ActiveMQ.DLQ: the destination is a field, the
    original expiration a real property."""
    record = activemq_message(
        b"x",
        _frame(
            destination="/queue/ActiveMQ.DLQ",
            originalExpiration="0",
            **{"original-destination": "/queue/orders"},
        ),
    )
    assert record["destination"] == {"physicalName": "ActiveMQ.DLQ"}
    assert record["properties"] == {"originalExpiration": "0"}


def test_connection_id_when_known_follows_data() -> None:
    record = activemq_message(b"x", _frame(), connection_id="ID:conn-1")
    keys = list(record)
    assert record["connectionId"] == "ID:conn-1"
    assert keys.index("connectionId") == keys.index("data") + 1
    assert "connectionId" not in activemq_message(b"x", _frame())


@pytest.mark.parametrize(
    ("dest", "name"),
    [
        ("/queue/orders", "orders"),
        ("/queue/a/b", "a/b"),
        ("/topic/VirtualTopic.x", "VirtualTopic.x"),
        ("/temp-queue/t1", "t1"),
        ("plain", "plain"),
    ],
)
def test_physical_name(dest: str, name: str) -> None:
    assert physical_name(dest) == name
