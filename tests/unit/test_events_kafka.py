"""Kafka event shapes (engine/events_kafka.py) against spec 1.4."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.batching import encode_envelope, encode_record
from engine.events_kafka import (
    KafkaRecords,
    kafka_envelope,
    kafka_record,
    partition_key,
    signed_bytes,
    timestamp_type_name,
)

ARN = "arn:aws:kafka:sa-east-1:123456789012:cluster/vpc-2priv-2pub/751d2973-a626-431c-9d4e-d7975eb44dd7-2"
SERVERS = [
    "b-2.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092",
    "b-1.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092",
]
# the spec example's key is not valid base64 of anything shorter; these are the bytes it decodes to
SPEC_KEY = base64.b64decode("abcDEFghiJKLmnoPQRstuVWXyz1234==")
SPEC_RECORD: dict[str, Any] = {
    "topic": "mytopic",
    "partition": 0,
    "offset": 15,
    "timestamp": 1545084650987,
    "timestampType": "CREATE_TIME",
    "key": base64.b64encode(SPEC_KEY).decode(),
    "value": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
    "headers": [{"headerKey": [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101]}],
}


def spec_record() -> dict[str, Any]:
    return kafka_record(
        "mytopic",
        0,
        15,
        1545084650987,
        0,
        SPEC_KEY,
        b"Hello, this is a test.",
        [("headerKey", b"headerValue")],
    )


def test_record_is_the_spec_example() -> None:
    record = spec_record()
    assert record == SPEC_RECORD
    assert list(record) == [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestampType",
        "key",
        "value",
        "headers",
    ]
    assert base64.b64decode(record["value"]) == b"Hello, this is a test."


def test_header_values_are_signed_java_bytes() -> None:
    record = kafka_record("t", 0, 0, 1, 0, b"k", b"v", [("name", "ë".encode())])
    assert record["headers"] == [{"name": [-61, -85]}]
    assert signed_bytes(bytes([0, 1, 127, 128, 255])) == [0, 1, 127, -128, -1]


def test_headers_keep_order_and_duplicates_and_none_is_empty() -> None:
    record = kafka_record("t", 0, 0, 1, 0, None, b"v", [("a", b"1"), ("b", b""), ("a", b"2")])
    assert record["headers"] == [{"a": [49]}, {"b": []}, {"a": [50]}]
    assert kafka_record("t", 0, 0, 1, 0, None, b"v", [])["headers"] == []


def test_null_key_and_tombstone_value_are_null() -> None:
    record = kafka_record("t", 3, 7, 1, 1, None, None, [])
    assert record["key"] is None
    assert record["value"] is None
    assert json.loads(encode_record(record))["key"] is None


def test_timestamp_types() -> None:
    assert timestamp_type_name(0) == "CREATE_TIME"
    assert timestamp_type_name(1) == "LOG_APPEND_TIME"
    assert timestamp_type_name("LOG_APPEND_TIME") == "LOG_APPEND_TIME"
    assert kafka_record("t", 0, 0, 1, 1, None, b"", [])["timestampType"] == "LOG_APPEND_TIME"
    with pytest.raises(ValueError):
        timestamp_type_name(5)
    with pytest.raises(ValueError):
        timestamp_type_name("NO_TIMESTAMP_TYPE")


def test_partition_key() -> None:
    assert partition_key("my-topic", 12) == "my-topic-12"


def test_msk_envelope_is_the_spec_event() -> None:
    envelope = kafka_envelope(event_source_arn=ARN, bootstrap_servers=SERVERS, topic="mytopic", partition=0)
    body = encode_envelope(envelope.prefix, [encode_record(spec_record())], envelope.suffix)
    event = json.loads(body)
    assert event == {
        "eventSource": "aws:kafka",
        "eventSourceArn": ARN,
        "bootstrapServers": ",".join(SERVERS),
        "records": {"mytopic-0": [SPEC_RECORD]},
    }
    assert list(event) == ["eventSource", "eventSourceArn", "bootstrapServers", "records"]
    assert envelope.overhead == len(envelope.prefix) + len(envelope.suffix)


def test_self_managed_envelope_has_no_arn() -> None:
    envelope = kafka_envelope(
        event_source_arn=None, bootstrap_servers=["localhost:9092"], topic="orders", partition=2
    )
    records = [
        encode_record(kafka_record("orders", 2, offset, 1000 + offset, 0, None, b"x", []))
        for offset in range(3)
    ]
    event = json.loads(encode_envelope(envelope.prefix, records, envelope.suffix))
    assert list(event) == ["eventSource", "bootstrapServers", "records"]
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == "localhost:9092"
    assert [r["offset"] for r in event["records"]["orders-2"]] == [0, 1, 2]


def test_envelope_escapes_names() -> None:
    envelope = kafka_envelope(event_source_arn=None, bootstrap_servers=["h:1"], topic='we"ird', partition=0)
    event = json.loads(encode_envelope(envelope.prefix, [], envelope.suffix))
    assert event["records"] == {'we"ird-0': []}


@given(
    topic=st.text(min_size=1, max_size=20),
    partition=st.integers(0, 10_000),
    offset=st.integers(0, 2**63 - 1),
    timestamp=st.integers(-1, 2**48),
    timestamp_type=st.sampled_from([0, 1]),
    key=st.none() | st.binary(max_size=40),
    value=st.none() | st.binary(max_size=200),
    headers=st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=10)), max_size=4),
)
def test_direct_encoding_is_the_json_of_the_record(
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    timestamp_type: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes | None]],
) -> None:
    record, encoded = KafkaRecords(topic, partition).build(
        offset, timestamp, timestamp_type, key, value, headers
    )
    assert record == kafka_record(topic, partition, offset, timestamp, timestamp_type, key, value, headers)
    assert encoded == encode_record(record)
