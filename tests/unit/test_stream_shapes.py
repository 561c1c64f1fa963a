"""Stream shapes (engine/stream_shapes.py): the event around a batch, item identifiers and on-failure records
of Kinesis / DynamoDB Streams and Kafka; the Kafka retry cap (engine/model.py) and partition keys."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from engine.batching import encode_envelope, encode_record
from engine.destinations import (
    MAXIMUM_PAYLOAD_SIZE_EXCEEDED,
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    StreamSourceName,
    stream_failure_record,
)
from engine.events import RECORDS_ENVELOPE
from engine.events_kafka import kafka_record, parse_partition_key
from engine.model import EventSourceMapping, RetryPolicy, SourceKind, State
from engine.ports import InvokeResult, StreamRecord
from engine.sources.kafka import MAX_RETRIES_WITH_DESTINATION
from engine.stream_policy import Attempt, BatchReport, Discard, process_batch
from engine.stream_shapes import Failure, KafkaShape, RecordsShape
from tests.unit.fakes import retry_of

MSK_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/my-cluster/abc123"
KINESIS_ARN = "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"
DDB_ARN = "arn:aws:dynamodb:us-east-2:123456789012:table/mytable/stream/2019-11-14T00:04:06.388"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:f"
SERVERS = ["b-1.example:9092", "b-2.example:9092"]
REQUEST_ID = "e4b46cbf-b738-xmpl-8880-a18cdf61200e"
#: 2019-11-14T00:38:04.835Z in epoch milliseconds
TS_MS = 1573691884835
NOW = 1573691886.021  # 2019-11-14T00:38:06.021Z

UNHANDLED = InvokeResult(payload=b'{"errorMessage":"boom"}', function_error="Unhandled")
OK = InvokeResult(payload=b"null")

MSK = KafkaShape(event_source_arn=MSK_ARN, bootstrap_servers=SERVERS)
SELF_MANAGED = KafkaShape(event_source_arn=None, bootstrap_servers=SERVERS)


def kafka_rec(
    offset: int, *, topic: str = "t", partition: int = 0, key: bytes | None = b"k", ts_ms: int = TS_MS
) -> StreamRecord:
    record = kafka_record(topic, partition, offset, ts_ms, 0, key, b"value", [("h", b"v")])
    return StreamRecord(
        record=record,
        sequence_number=str(offset),
        arrival_s=ts_ms / 1000,
        lane_key=(key or b"").decode(errors="replace"),
    )


def failure(
    records: Sequence[StreamRecord],
    condition: str = RETRY_ATTEMPTS_EXHAUSTED,
    *,
    count: int = 2,
    last: InvokeResult | None = UNHANDLED,
    shard_id: str = "t-0",
    payload_size: int = 1234,
) -> Failure:
    return Failure(
        discard=Discard(tuple(records), condition, count, last),
        shard_id=shard_id,
        function_arn=FUNCTION_ARN,
        payload_size=payload_size,
        request_id=REQUEST_ID,
        now=NOW,
    )


# --- KafkaShape.envelope ----------------------------------------------------------------------------------


def test_msk_envelope_bytes_and_event() -> None:
    envelope = MSK.envelope("my-topic-3")
    assert envelope.prefix == (
        b'{"eventSource":"aws:kafka","eventSourceArn":"' + MSK_ARN.encode() + b'",'
        b'"bootstrapServers":"b-1.example:9092,b-2.example:9092","records":{"my-topic-3":['
    )
    assert envelope.suffix == b"]}}"
    records = [kafka_rec(o, topic="my-topic", partition=3).record for o in (7, 8)]
    event = json.loads(encode_envelope(envelope.prefix, [encode_record(r) for r in records], envelope.suffix))
    assert event == {
        "eventSource": "aws:kafka",
        "eventSourceArn": MSK_ARN,
        "bootstrapServers": "b-1.example:9092,b-2.example:9092",
        "records": {"my-topic-3": records},
    }
    assert list(event) == ["eventSource", "eventSourceArn", "bootstrapServers", "records"]


def test_self_managed_envelope_bytes_and_event() -> None:
    envelope = SELF_MANAGED.envelope("orders-0")
    assert envelope.prefix == (
        b'{"eventSource":"SelfManagedKafka",'
        b'"bootstrapServers":"b-1.example:9092,b-2.example:9092","records":{"orders-0":['
    )
    assert envelope.suffix == b"]}}"
    records = [kafka_rec(o, topic="orders").record for o in range(3)]
    event = json.loads(encode_envelope(envelope.prefix, [encode_record(r) for r in records], envelope.suffix))
    assert event == {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "b-1.example:9092,b-2.example:9092",
        "records": {"orders-0": records},
    }
    assert "eventSourceArn" not in event


def test_kafka_envelope_of_an_empty_batch_is_valid_json() -> None:
    envelope = MSK.envelope("t-0")
    assert json.loads(encode_envelope(envelope.prefix, [], envelope.suffix))["records"] == {"t-0": []}


@pytest.mark.parametrize("shard_id", ["topic", "t-x", "-1"])
def test_kafka_envelope_refuses_a_shard_id_that_is_not_a_partition_key(shard_id: str) -> None:
    with pytest.raises(ValueError):
        MSK.envelope(shard_id)


def test_servers_are_comma_joined() -> None:
    assert MSK.servers == "b-1.example:9092,b-2.example:9092"
    assert KafkaShape(event_source_arn=None, bootstrap_servers=("only:9092",)).servers == "only:9092"


# --- KafkaShape.item_id / identify ------------------------------------------------------------------------


def test_kafka_item_id_is_topic_partition_and_offset() -> None:
    assert MSK.item_id(kafka_rec(5, topic="my-topic", partition=12)) == ("my-topic-12", 5)
    assert MSK.item_id(kafka_rec(0)) == ("t-0", 0)


def test_kafka_item_id_matches_what_identify_reads() -> None:
    record = kafka_rec(42, topic="orders", partition=3)
    assert MSK.identify({"partition": "orders-3", "offset": 42}) == MSK.item_id(record)
    assert MSK.identify({"partition": "orders-3", "offset": "42"}) == MSK.item_id(record)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"partition": "t-0", "offset": 5}, ("t-0", 5)),
        ({"partition": "t-0", "offset": "5"}, ("t-0", 5)),
        ({"partition": "my-topic-12", "offset": 0}, ("my-topic-12", 0)),
        ({"partition": "t-0", "offset": "0012"}, ("t-0", 12)),
        ({"offset": 5, "partition": "t-0", "extra": "ignored"}, ("t-0", 5)),
    ],
)
def test_kafka_identify_accepts(value: Any, expected: tuple[str, int]) -> None:
    assert MSK.identify(value) == expected
    assert SELF_MANAGED.identify(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"partition": "t-0"},
        {"offset": 5},
        {},
        {"partition": "t-0", "offset": None},
        {"partition": "t-0", "offset": True},
        {"partition": "t-0", "offset": False},
        {"partition": "t-0", "offset": 5.0},
        {"partition": "t-0", "offset": "5.0"},
        {"partition": "t-0", "offset": "-1"},
        {"partition": "t-0", "offset": " 5"},
        {"partition": "t-0", "offset": ""},
        {"partition": "t-0", "offset": "five"},
        {"partition": "t-0", "offset": [5]},
        # a digit to str.isdigit() that int() cannot read: malformed, not a crash
        {"partition": "t-0", "offset": "\u00b2"},
        {"partition": 0, "offset": 5},
        {"partition": None, "offset": 5},
        {"partition": ["t-0"], "offset": 5},
        "t-0",
        "5",
        5,
        None,
        ["t-0", 5],
        ("t-0", 5),
    ],
)
def test_kafka_identify_rejects(value: Any) -> None:
    assert MSK.identify(value) is None


# --- KafkaShape.failure_record ----------------------------------------------------------------------------


def test_kafka_failure_record_for_msk() -> None:
    records = [kafka_rec(2, ts_ms=TS_MS), kafka_rec(3, ts_ms=TS_MS + 745)]
    record = MSK.failure_record(failure(records, count=2, payload_size=987))
    assert record == {
        "requestContext": {
            "requestId": REQUEST_ID,
            "functionArn": FUNCTION_ARN,
            "condition": RETRY_ATTEMPTS_EXHAUSTED,
            "approximateInvokeCount": 2,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KafkaBatchInfo": {
            "batchSize": 2,
            "eventSourceArn": MSK_ARN,
            "bootstrapServers": "b-1.example:9092,b-2.example:9092",
            "payloadSize": 987,
            "recordsInfo": {
                "t-0": {
                    "firstRecordOffset": "2",
                    "lastRecordOffset": "3",
                    "firstRecordTimestamp": "2019-11-14T00:38:04.835Z",
                    "lastRecordTimestamp": "2019-11-14T00:38:05.580Z",
                }
            },
        },
    }


def test_kafka_failure_record_for_self_managed_has_a_null_arn() -> None:
    record = SELF_MANAGED.failure_record(failure([kafka_rec(9)], count=1, payload_size=55))
    info = record["KafkaBatchInfo"]
    assert info["eventSourceArn"] is None
    assert info["payloadSize"] == 55
    assert info["batchSize"] == 1
    assert info["recordsInfo"]["t-0"]["firstRecordOffset"] == "9"
    assert info["recordsInfo"]["t-0"]["lastRecordOffset"] == "9"


def test_kafka_failure_record_payload_size_is_the_given_one_not_recomputed() -> None:
    records = [kafka_rec(1)]
    small = MSK.failure_record(failure(records, payload_size=1))
    large = MSK.failure_record(failure(records, payload_size=6_291_457))
    assert small["KafkaBatchInfo"]["payloadSize"] == 1
    assert large["KafkaBatchInfo"]["payloadSize"] == 6_291_457


def test_kafka_failure_record_maximum_payload_size_exceeded_has_a_null_response_context() -> None:
    record = MSK.failure_record(failure([kafka_rec(4)], MAXIMUM_PAYLOAD_SIZE_EXCEEDED, count=0, last=None))
    assert record["requestContext"]["condition"] == MAXIMUM_PAYLOAD_SIZE_EXCEEDED
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" in record
    assert record["responseContext"] is None


def test_kafka_failure_record_record_age_exceeded_passes_the_condition_through() -> None:
    record = MSK.failure_record(failure([kafka_rec(4)], RECORD_AGE_EXCEEDED, count=1, last=None))
    assert record["requestContext"]["condition"] == RECORD_AGE_EXCEEDED
    assert "responseContext" not in record


def test_kafka_failure_record_after_a_partial_batch_response_has_a_null_function_error() -> None:
    last = InvokeResult(payload=b'{"batchItemFailures":[]}', executed_version="7")
    record = MSK.failure_record(failure([kafka_rec(1)], last=last))
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "7", "functionError": None}


# --- KafkaShape.topic_messages ----------------------------------------------------------------------------


def test_topic_messages_one_per_record_keyed_by_the_original_key() -> None:
    records = [
        kafka_rec(2, key=b"k-two", ts_ms=TS_MS),
        kafka_rec(3, key=None, ts_ms=TS_MS + 1),
        kafka_rec(4, key=b"\xff\x00binary", ts_ms=TS_MS + 2),
    ]
    messages = MSK.topic_messages(failure(records, count=3))
    assert [key for key, _ in messages] == [b"k-two", None, b"\xff\x00binary"]
    values = [json.loads(value) for _, value in messages]
    assert [v["KafkaBatchInfo"]["recordInfo"]["offset"] for v in values] == ["2", "3", "4"]
    for record, value in zip(records, values, strict=True):
        assert value["requestContext"] == {
            "requestId": REQUEST_ID,
            "functionArn": FUNCTION_ARN,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        }
        assert value["responseContext"] == {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        }
        info = value["KafkaBatchInfo"]
        assert info["batchSize"] == 1
        assert info["eventSourceArn"] == MSK_ARN
        assert info["bootstrapServers"] == "b-1.example:9092,b-2.example:9092"
        assert "recordsInfo" not in info
        assert value["payload"] == {
            "bootstrapServers": "b-1.example:9092,b-2.example:9092",
            "eventSource": "aws:kafka",
            "eventSourceArn": MSK_ARN,
            "records": {"t-0": [dict(record.record)]},
        }
    assert values[0]["KafkaBatchInfo"]["recordInfo"] == {
        "offset": "2",
        "timestamp": "2019-11-14T00:38:04.835Z",
    }


def test_topic_messages_key_is_the_base64_decoded_event_key() -> None:
    raw = bytes(range(256))
    (message,) = MSK.topic_messages(failure([kafka_rec(0, key=raw)]))
    assert message[0] == raw
    assert base64.b64encode(message[0]).decode() == kafka_rec(0, key=raw).record["key"]


def test_topic_messages_empty_key_is_empty_not_null() -> None:
    (message,) = MSK.topic_messages(failure([kafka_rec(0, key=b"")]))
    assert message[0] == b""


def test_topic_messages_value_is_compact_utf8_json() -> None:
    (message,) = MSK.topic_messages(failure([kafka_rec(0, topic="tópico")], shard_id="tópico-0"))
    value = message[1]
    assert isinstance(value, bytes)
    text = value.decode("utf-8")
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    assert "tópico-0" in text  # not \u-escaped


def test_topic_messages_self_managed_payload_has_no_arn() -> None:
    (message,) = SELF_MANAGED.topic_messages(failure([kafka_rec(6)]))
    value = json.loads(message[1])
    assert value["KafkaBatchInfo"]["eventSourceArn"] is None
    assert value["payload"]["eventSource"] == "SelfManagedKafka"
    assert "eventSourceArn" not in value["payload"]


@pytest.mark.parametrize(
    ("condition", "last", "written", "response_context"),
    [
        (RETRY_ATTEMPTS_EXHAUSTED, UNHANDLED, "RetriesExhausted", "present"),
        (RECORD_AGE_EXCEEDED, None, RECORD_AGE_EXCEEDED, "absent"),
        (MAXIMUM_PAYLOAD_SIZE_EXCEEDED, None, MAXIMUM_PAYLOAD_SIZE_EXCEEDED, "null"),
    ],
)
def test_topic_messages_conditions(
    condition: str, last: InvokeResult | None, written: str, response_context: str
) -> None:
    (message,) = MSK.topic_messages(failure([kafka_rec(1)], condition, count=1, last=last))
    value = json.loads(message[1])
    assert value["requestContext"]["condition"] == written
    if response_context == "absent":
        assert "responseContext" not in value
    elif response_context == "null":
        assert value["responseContext"] is None
    else:
        assert value["responseContext"]["functionError"] == "Unhandled"


# --- RecordsShape (Kinesis, DynamoDB Streams) -------------------------------------------------------------


def stream_rec(seq: str, arrival: float) -> StreamRecord:
    return StreamRecord(record={"seq": seq}, sequence_number=seq, arrival_s=arrival, lane_key="pk")


@pytest.mark.parametrize(("source", "arn"), [("kinesis", KINESIS_ARN), ("dynamodb", DDB_ARN)])
def test_records_shape_envelope(source: StreamSourceName, arn: str) -> None:
    shape = RecordsShape(source=source, stream_arn=arn)
    envelope = shape.envelope("shardId-000000000000")
    assert envelope == RECORDS_ENVELOPE
    assert envelope.prefix == b'{"Records":['
    assert envelope.suffix == b"]}"
    records: list[dict[str, Any]] = [{"a": 1}, {"b": "two"}]
    body = encode_envelope(envelope.prefix, [encode_record(r) for r in records], envelope.suffix)
    assert json.loads(body) == {"Records": records}


@pytest.mark.parametrize(("source", "arn"), [("kinesis", KINESIS_ARN), ("dynamodb", DDB_ARN)])
def test_records_shape_item_ids_are_sequence_numbers(source: StreamSourceName, arn: str) -> None:
    shape = RecordsShape(source=source, stream_arn=arn)
    seq = "49590338271490256608559692538361571095921575989136588898"
    assert shape.item_id(stream_rec(seq, NOW)) == seq
    assert shape.identify(seq) == seq
    assert shape.identify(shape.item_id(stream_rec("7", NOW))) == "7"
    for bad in ("", None, 7, {"partition": "t-0", "offset": 7}, ["7"]):
        assert shape.identify(bad) is None


@pytest.mark.parametrize(
    ("source", "arn", "batch_key"),
    [("kinesis", KINESIS_ARN, "KinesisBatchInfo"), ("dynamodb", DDB_ARN, "DDBStreamBatchInfo")],
)
@pytest.mark.parametrize(
    ("condition", "last"),
    [(RETRY_ATTEMPTS_EXHAUSTED, UNHANDLED), (RECORD_AGE_EXCEEDED, None)],
)
def test_records_shape_failure_record_is_the_stream_failure_record(
    source: StreamSourceName, arn: str, batch_key: str, condition: str, last: InvokeResult | None
) -> None:
    shape = RecordsShape(source=source, stream_arn=arn)
    records = [stream_rec("100", 1573692004.835), stream_rec("101", 1573692005.5)]
    f = failure(records, condition, count=3, last=last, shard_id="shardId-000000000001")
    record = shape.failure_record(f)
    assert record == stream_failure_record(
        source=source,
        records=records,
        condition=condition,
        approximate_invoke_count=3,
        last_result=last,
        function_arn=FUNCTION_ARN,
        shard_id="shardId-000000000001",
        stream_arn=arn,
        request_id=REQUEST_ID,
        now=NOW,
    )
    info = record[batch_key]
    assert info["shardId"] == "shardId-000000000001"
    assert info["streamArn"] == arn
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == ("100", "101")
    assert info["batchSize"] == 2
    assert "KafkaBatchInfo" not in record


# --- process_batch with the Kafka shape -------------------------------------------------------------------


def kafka_partial(*failed: Any) -> InvokeResult:
    return InvokeResult(
        payload=json.dumps({"batchItemFailures": [{"itemIdentifier": f} for f in failed]}).encode()
    )


async def run_kafka(
    script: Callable[[Attempt], InvokeResult], records: Sequence[StreamRecord], retries: int = 1
) -> tuple[BatchReport, list[list[int]], list[Discard]]:
    calls: list[list[int]] = []
    discards: list[Discard] = []

    async def invoke(attempt: Attempt) -> InvokeResult:
        calls.append([int(r.record["offset"]) for r in attempt.records])
        return script(attempt)

    async def discard(gone: Discard) -> None:
        discards.append(gone)

    async def sleep(_: float) -> None:
        return None

    report = await process_batch(
        records,
        policy=RetryPolicy(max_retry_attempts=retries, report_batch_item_failures=True),
        invoke=invoke,
        discard=discard,
        now=lambda: NOW,
        sleep=sleep,
        item_id=MSK.item_id,
        identify=MSK.identify,
    )
    return report, calls, discards


def offsets(records: Sequence[StreamRecord]) -> list[int]:
    return [int(r.record["offset"]) for r in records]


@pytest.mark.parametrize("offset", [2, "2"])
async def test_kafka_partial_response_retries_from_the_failed_offset(offset: int | str) -> None:
    results = iter([kafka_partial({"partition": "t-0", "offset": offset}), OK])
    records = [kafka_rec(o) for o in range(4)]
    report, calls, discards = await run_kafka(lambda _: next(results), records)
    assert calls == [[0, 1, 2, 3], [2, 3]]
    assert discards == []
    assert report.succeeded == 4
    assert report.invocations == 2


async def test_kafka_partial_response_exhausts_the_remainder_only() -> None:
    failed = kafka_partial({"partition": "t-0", "offset": 2})
    records = [kafka_rec(o) for o in range(4)]
    report, calls, discards = await run_kafka(lambda _: failed, records, retries=1)
    assert calls == [[0, 1, 2, 3], [2, 3]]
    assert len(discards) == 1
    assert offsets(discards[0].records) == [2, 3]
    assert discards[0].condition == RETRY_ATTEMPTS_EXHAUSTED
    assert discards[0].approximate_invoke_count == 2
    assert discards[0].last_result == failed
    assert report.succeeded == 2


async def test_kafka_partial_response_lowest_failed_offset_wins() -> None:
    results = iter([kafka_partial({"partition": "t-0", "offset": 3}, {"partition": "t-0", "offset": 1}), OK])
    records = [kafka_rec(o) for o in range(4)]
    report, calls, _ = await run_kafka(lambda _: next(results), records)
    assert calls == [[0, 1, 2, 3], [1, 2, 3]]
    assert report.succeeded == 4


@pytest.mark.parametrize(
    "identifier",
    [
        {"partition": "t-1", "offset": 2},  # unknown partition
        {"partition": "t-0", "offset": 9},  # unknown offset
        {"partition": "other-0", "offset": 2},
        "2",  # a sequence number is not a Kafka identifier
        {"partition": "t-0", "offset": True},
        {"partition": "t-0"},
        {"partition": "t-0", "offset": "\u00b2"},  # isdigit() but not an int() literal
    ],
)
async def test_kafka_unknown_or_malformed_identifier_fails_the_whole_batch(identifier: Any) -> None:
    failed = kafka_partial(identifier)
    records = [kafka_rec(o) for o in range(4)]
    report, calls, discards = await run_kafka(lambda _: failed, records, retries=1)
    assert calls == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert len(discards) == 1
    assert offsets(discards[0].records) == [0, 1, 2, 3]
    assert discards[0].condition == RETRY_ATTEMPTS_EXHAUSTED
    assert report.succeeded == 0


# --- the retry policy of a Kafka profile: the cap (spec 6.4) ---------------------------------------------


def esm(kind: SourceKind, **params: Any) -> EventSourceMapping:
    base: dict[str, Any] = {"BatchSize": 100}
    if kind is not SourceKind.SELF_MANAGED_KAFKA:
        base["EventSourceArn"] = {
            SourceKind.MSK: MSK_ARN,
            SourceKind.KINESIS: KINESIS_ARN,
            SourceKind.DYNAMODB: DDB_ARN,
        }[kind]
    return EventSourceMapping(
        uuid="u1",
        kind=kind,
        function_arn=FUNCTION_ARN,
        params={**base, **params},
        enabled=True,
        state=State.ENABLED,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )


def on_failure(destination: str) -> dict[str, Any]:
    return {"DestinationConfig": {"OnFailure": {"Destination": destination}}}


KAFKA_KINDS = [SourceKind.MSK, SourceKind.SELF_MANAGED_KAFKA]
DESTINATIONS = [
    "arn:aws:sqs:us-east-1:123456789012:dlq",
    "arn:aws:sns:us-east-1:123456789012:topic",
    "arn:aws:s3:::bucket",
    "kafka://failures",
]


def test_kafka_cap_constant() -> None:
    assert MAX_RETRIES_WITH_DESTINATION == 10


@pytest.mark.parametrize("kind", KAFKA_KINDS)
@pytest.mark.parametrize("destination", DESTINATIONS)
def test_kafka_infinite_retries_with_a_destination_are_capped(kind: SourceKind, destination: str) -> None:
    assert retry_of(esm(kind, MaximumRetryAttempts=-1, **on_failure(destination))).max_retry_attempts == 10


@pytest.mark.parametrize("kind", KAFKA_KINDS)
def test_kafka_default_retries_with_a_destination_are_capped(kind: SourceKind) -> None:
    # Kafka's canonical params have no MaximumRetryAttempts until the user sets one
    mapping = esm(kind, **on_failure("kafka://failures"))
    assert "MaximumRetryAttempts" not in mapping.params
    assert retry_of(mapping).max_retry_attempts == MAX_RETRIES_WITH_DESTINATION


@pytest.mark.parametrize("kind", KAFKA_KINDS)
@pytest.mark.parametrize("retries", [0, 1, 3, 10, 10000])
def test_kafka_explicit_retries_are_kept(kind: SourceKind, retries: int) -> None:
    capped = retry_of(esm(kind, MaximumRetryAttempts=retries, **on_failure("kafka://f")))
    assert capped.max_retry_attempts == retries
    assert retry_of(esm(kind, MaximumRetryAttempts=retries)).max_retry_attempts == retries


@pytest.mark.parametrize("kind", KAFKA_KINDS)
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"DestinationConfig": {"OnFailure": {}}},
        {"DestinationConfig": {"OnFailure": {"Destination": ""}}},
        {"DestinationConfig": {"OnFailure": {"Destination": None}}},
        {"DestinationConfig": {}},
        {"DestinationConfig": None},
    ],
)
def test_kafka_without_a_destination_retries_forever(kind: SourceKind, extra: dict[str, Any]) -> None:
    assert retry_of(esm(kind, MaximumRetryAttempts=-1, **extra)).max_retry_attempts == -1
    assert retry_of(esm(kind, **extra)).max_retry_attempts == -1


@pytest.mark.parametrize("kind", [SourceKind.KINESIS, SourceKind.DYNAMODB])
def test_streams_with_a_destination_keep_infinite_retries(kind: SourceKind) -> None:
    mapping = esm(kind, MaximumRetryAttempts=-1, **on_failure(DESTINATIONS[0]))
    assert retry_of(mapping).max_retry_attempts == -1


def test_retry_policy_other_fields_survive_the_cap() -> None:
    mapping = esm(
        SourceKind.MSK,
        MaximumRetryAttempts=-1,
        MaximumRecordAgeInSeconds=3600,
        BisectBatchOnFunctionError=True,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        **on_failure("kafka://f"),
    )
    assert retry_of(mapping) == RetryPolicy(
        max_retry_attempts=10,
        max_record_age_s=3600,
        bisect_on_error=True,
        report_batch_item_failures=True,
    )


# --- parse_partition_key ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("my-topic-12", ("my-topic", 12)),
        ("t-0", ("t", 0)),
        ("a-b-c-3", ("a-b-c", 3)),
        ("orders.v1_x-007", ("orders.v1_x", 7)),
    ],
)
def test_parse_partition_key(key: str, expected: tuple[str, int]) -> None:
    assert parse_partition_key(key) == expected


@pytest.mark.parametrize("key", ["topic", "-1", "t-x", "t-", "", "t-1.5", "t- 1"])
def test_parse_partition_key_errors(key: str) -> None:
    with pytest.raises(ValueError, match="not a Kafka partition key"):
        parse_partition_key(key)
