"""RabbitMQ event shapes (engine/events_rabbitmq.py) against spec 1.5."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from typing import Any

import pytest

from engine.batching import encode_envelope, encode_record
from engine.events_rabbitmq import (
    header_value,
    java_medium_datetime,
    rabbitmq_envelope,
    rabbitmq_message,
    rabbitmq_queue_key,
)

ARN = "arn:aws:mq:us-west-2:111122223333:broker:pizzaBroker:b-9bcfa592-423a-4942-879d-eb284b418fc8"
BODY = b'{"timeout":0,"data":"CZrmf0Gw8Ov4bqLQxD4E"}'

# spec 1.5's RabbitMQ example, one record; its bodySize (80) does not match its own data (43 bytes):
# bodySize is the length of the body, so the expectation uses 43
SPEC_EVENT: dict[str, Any] = {
    "eventSource": "aws:rmq",
    "eventSourceArn": ARN,
    "rmqMessagesByQueue": {
        "pizzaQueue::/": [
            {
                "basicProperties": {
                    "contentType": "text/plain",
                    "contentEncoding": None,
                    "headers": {
                        "header1": {"bytes": [118, 97, 108, 117, 101, 49]},
                        "header2": {"bytes": [118, 97, 108, 117, 101, 50]},
                        "numberInHeader": 10,
                    },
                    "deliveryMode": 1,
                    "priority": 34,
                    "correlationId": None,
                    "replyTo": None,
                    "expiration": "60000",
                    "messageId": None,
                    "timestamp": "Jan 1, 1970, 12:33:41 AM",
                    "type": None,
                    "userId": "AIDACKCEVSQ6C2EXAMPLE",
                    "appId": None,
                    "clusterId": None,
                    "bodySize": len(BODY),
                },
                "redelivered": False,
                "data": "eyJ0aW1lb3V0IjowLCJkYXRhIjoiQ1pybWYwR3c4T3Y0YnFMUXhENEUifQ==",
            }
        ]
    },
}

# the spec example's properties as pamqp decodes them from the wire (absent properties missing/None,
# an absent cluster-id as "")
SPEC_PROPERTIES: dict[str, Any] = {
    "content_type": "text/plain",
    "content_encoding": None,
    "headers": {"header1": "value1", "header2": "value2", "numberInHeader": 10},
    "delivery_mode": 1,
    "priority": 34,
    "correlation_id": None,
    "reply_to": None,
    "expiration": "60000",
    "message_id": None,
    "timestamp": dt.datetime(1970, 1, 1, 0, 33, 41, tzinfo=dt.UTC),
    "message_type": None,
    "user_id": "AIDACKCEVSQ6C2EXAMPLE",
    "app_id": None,
    "cluster_id": "",
}


def test_spec_example_record_exactly() -> None:
    record = rabbitmq_message(BODY, SPEC_PROPERTIES, redelivered=False)
    assert record == SPEC_EVENT["rmqMessagesByQueue"]["pizzaQueue::/"][0]
    # key order as AWS sends it
    assert list(record) == ["basicProperties", "redelivered", "data"]
    assert list(record["basicProperties"]) == list(
        SPEC_EVENT["rmqMessagesByQueue"]["pizzaQueue::/"][0]["basicProperties"]
    )


def test_spec_example_event_bytes() -> None:
    record = rabbitmq_message(BODY, SPEC_PROPERTIES, redelivered=False)
    env = rabbitmq_envelope(ARN, "pizzaQueue")
    payload = encode_envelope(env.prefix, [encode_record(record)], env.suffix)
    assert json.loads(payload) == SPEC_EVENT
    assert payload.startswith(b'{"eventSource":"aws:rmq","eventSourceArn":"arn:aws:mq:us-west-2:')
    assert env.overhead == len(env.prefix) + len(env.suffix)


def test_absent_properties_are_null() -> None:
    record = rabbitmq_message(b"", {}, redelivered=True)
    props = record["basicProperties"]
    assert props == {
        "contentType": None,
        "contentEncoding": None,
        "headers": None,
        "deliveryMode": None,
        "priority": None,
        "correlationId": None,
        "replyTo": None,
        "expiration": None,
        "messageId": None,
        "timestamp": None,
        "type": None,
        "userId": None,
        "appId": None,
        "clusterId": None,
        "bodySize": 0,
    }
    assert record["redelivered"] is True
    assert record["data"] == ""


def test_present_properties_and_type_aliases() -> None:
    props = {
        "content_type": "application/json",
        "content_encoding": "gzip",
        "headers": {},
        "delivery_mode": 2,
        "priority": 0,
        "correlation_id": "",
        "reply_to": "replies",
        "expiration": "1500",
        "message_id": "m-1",
        "timestamp": 1_700_000_000,
        "type": "order.created",
        "user_id": "guest",
        "app_id": "shop",
        "cluster_id": "c1",
    }
    bp = rabbitmq_message(b"x", props, redelivered=False)["basicProperties"]
    assert bp["contentEncoding"] == "gzip"
    assert bp["headers"] == {}
    assert (bp["deliveryMode"], bp["priority"]) == (2, 0)
    assert bp["correlationId"] == ""  # present but empty stays a string
    assert bp["timestamp"] == "Nov 14, 2023, 10:13:20 PM"
    assert bp["type"] == "order.created"
    assert bp["clusterId"] == "c1"
    # pamqp's name wins over the alias
    assert (
        rabbitmq_message(b"", {"message_type": "a", "type": "b"}, redelivered=False)["basicProperties"][
            "type"
        ]
        == "a"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(1970, 1, 1, 0, 33, 41, tzinfo=dt.UTC), "Jan 1, 1970, 12:33:41 AM"),
        (dt.datetime(1970, 1, 1, 0, 33, 41), "Jan 1, 1970, 12:33:41 AM"),  # naive = UTC
        (dt.datetime(2024, 12, 9, 12, 5, 7, tzinfo=dt.UTC), "Dec 9, 2024, 12:05:07 PM"),
        (dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=dt.UTC), "Feb 29, 2024, 11:59:59 PM"),
        (
            dt.datetime(2024, 7, 4, 9, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "Jul 4, 2024, 7:00:00 AM",
        ),
        (2021, "Jan 1, 1970, 12:33:41 AM"),
        (43_200.0, "Jan 1, 1970, 12:00:00 PM"),
    ],
)
def test_timestamp_java_medium_format(value: dt.datetime | float, expected: str) -> None:
    assert java_medium_datetime(value) == expected


def test_header_values() -> None:
    assert header_value("value1") == {"bytes": [118, 97, 108, 117, 101, 49]}
    assert header_value("é") == {"bytes": [0xC3, 0xA9]}  # UTF-8, unsigned
    assert header_value(b"\xff\x00") == {"bytes": [255, 0]}
    assert header_value(bytearray(b"\x80")) == {"bytes": [128]}
    assert header_value(10) == 10
    assert header_value(-3) == -3
    assert header_value(1.5) == 1.5
    assert header_value(True) is True
    assert header_value(None) is None
    assert header_value(decimal.Decimal("12")) == 12
    assert header_value(decimal.Decimal("1.25")) == 1.25
    assert header_value(dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) == "Jan 1, 1970, 12:00:00 AM"
    nested = {"outer": {"s": "a", "n": 1, "deeper": {"b": b"\x01"}}, "list": [1, "b", [b"\x02"]]}
    assert header_value(nested) == {
        "outer": {"s": {"bytes": [97]}, "n": 1, "deeper": {"b": {"bytes": [1]}}},
        "list": [1, {"bytes": [98]}, [{"bytes": [2]}]],
    }


def test_data_is_base64_of_body() -> None:
    body = bytes(range(256)) * 3
    record = rabbitmq_message(body, {}, redelivered=False)
    assert base64.b64decode(record["data"]) == body
    assert record["basicProperties"]["bodySize"] == len(body)
    # non-UTF-8 bodies and empty ones too
    assert rabbitmq_message(b"\xff\xfe", {}, redelivered=False)["data"] == "//4="


def test_queue_key_and_vhosts() -> None:
    assert rabbitmq_queue_key("q") == "q::/"
    assert rabbitmq_queue_key("q", "") == "q::/"
    assert rabbitmq_queue_key("orders", "shop") == "orders::shop"
    env = rabbitmq_envelope(ARN, "orders", "shop")
    assert json.loads(env.prefix + env.suffix)["rmqMessagesByQueue"] == {"orders::shop": []}


@pytest.mark.parametrize("count", [0, 1, 2, 5])
def test_envelope_is_valid_json_with_records_joined_by_commas(count: int) -> None:
    records = [
        rabbitmq_message(
            f'{{"n":{i},"text":"quote \\" and ünïcode"}}'.encode(),
            {"headers": {"i": i, "s": f"h{i}"}, "delivery_mode": 2},
            redelivered=i % 2 == 1,
        )
        for i in range(count)
    ]
    # a queue and vhost name that need escaping
    env = rabbitmq_envelope(ARN, 'we"ird\\queue', "v/h")
    payload = encode_envelope(env.prefix, [encode_record(r) for r in records], env.suffix)
    event = json.loads(payload)
    assert list(event) == ["eventSource", "eventSourceArn", "rmqMessagesByQueue"]
    assert event["eventSource"] == "aws:rmq"
    assert event["eventSourceArn"] == ARN
    assert event["rmqMessagesByQueue"] == {'we"ird\\queue::v/h': records}
