"""On-failure destination records (spec 4.8, 6.5): exact shapes, key order, precision, S3 payload and key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.destinations import (
    MAXIMUM_PAYLOAD_SIZE_EXCEEDED,
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    iso_millis,
    iso_seconds,
    kafka_event,
    kafka_failure_record,
    kafka_topic_failure_record,
    s3_key,
    stream_failure_record,
    with_payload,
)
from engine.ports import InvokeResult, StreamRecord
from engine.senders import destination_kind, kafka_destination_topic, sns_message

FUNCTION_ARN = "arn:aws:lambda:us-east-2:123456789012:function:myfunction"
KINESIS_ARN = "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"
DDB_ARN = "arn:aws:dynamodb:us-east-2:123456789012:table/mytable/stream/2019-11-14T00:04:06.388"
MSK_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/my-cluster/abc123"
BOOTSTRAP = "b-1.mycluster.abc123.kafka.us-east-1.amazonaws.com:9098"

TOP_KEYS = ["requestContext", "responseContext", "version", "timestamp"]
REQUEST_KEYS = ["requestId", "functionArn", "condition", "approximateInvokeCount"]
RESPONSE_KEYS = ["statusCode", "executedVersion", "functionError"]
BATCH_KEYS = [
    "shardId",
    "startSequenceNumber",
    "endSequenceNumber",
    "approximateArrivalOfFirstRecord",
    "approximateArrivalOfLastRecord",
    "batchSize",
    "streamArn",
]


def epoch(text: str) -> float:
    """``2019-11-14T00:38:04.835`` (UTC) -> epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def rec(seq: str, arrival: float) -> StreamRecord:
    return StreamRecord(record={"seq": seq}, sequence_number=seq, arrival_s=arrival, lane_key="k")


UNHANDLED = InvokeResult(payload=b'{"errorMessage":"boom"}', function_error="Unhandled")
PARTIAL = InvokeResult(payload=b'{"batchItemFailures":[{"itemIdentifier":"2"}]}')


def kinesis(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "source": "kinesis",
        "records": [
            rec("49601189658422359378836298521827638475320189012309704722", epoch("2019-11-14T00:38:04.835")),
            rec("49601189658422359378836298521827638475320189012309704800", epoch("2019-11-14T00:38:05.100")),
            rec("49601189658422359378836298522902373528957594348623495186", epoch("2019-11-14T00:38:05.580")),
        ],
        "condition": RETRY_ATTEMPTS_EXHAUSTED,
        "approximate_invoke_count": 1,
        "last_result": UNHANDLED,
        "function_arn": FUNCTION_ARN,
        "shard_id": "shardId-000000000001",
        "stream_arn": KINESIS_ARN,
        "request_id": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        "now": epoch("2019-11-14T00:38:06.021"),
    }
    args.update(kw)
    return stream_failure_record(**args)


# --- streams ----------------------------------------------------------------------------------------


def test_kinesis_record_is_the_documented_json_in_the_documented_order() -> None:
    record = kinesis()
    assert record == {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
            "functionArn": FUNCTION_ARN,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
            "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 3,
            "streamArn": KINESIS_ARN,
        },
    }
    assert list(record) == [*TOP_KEYS, "KinesisBatchInfo"]
    assert list(record["requestContext"]) == REQUEST_KEYS
    assert list(record["responseContext"]) == RESPONSE_KEYS
    assert list(record["KinesisBatchInfo"]) == BATCH_KEYS
    # it survives a JSON round trip unchanged (nothing that only Python can hold)
    assert json.loads(json.dumps(record)) == record


def test_dynamodb_record_uses_ddb_batch_info_and_second_precision_arrivals() -> None:
    record = stream_failure_record(
        source="dynamodb",
        records=[rec("800000000003126276362", epoch("2019-11-14T00:13:19.000"))],
        condition=RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=1,
        last_result=UNHANDLED,
        function_arn=FUNCTION_ARN,
        shard_id="shardId-00000001573689847184-864758bb",
        stream_arn=DDB_ARN,
        request_id="316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
        now=epoch("2019-11-14T00:13:49.717"),
    )
    assert list(record) == [*TOP_KEYS, "DDBStreamBatchInfo"]
    assert record["timestamp"] == "2019-11-14T00:13:49.717Z"  # the record's own time keeps milliseconds
    assert record["DDBStreamBatchInfo"] == {
        "shardId": "shardId-00000001573689847184-864758bb",
        "startSequenceNumber": "800000000003126276362",
        "endSequenceNumber": "800000000003126276362",
        "approximateArrivalOfFirstRecord": "2019-11-14T00:13:19Z",
        "approximateArrivalOfLastRecord": "2019-11-14T00:13:19Z",
        "batchSize": 1,
        "streamArn": DDB_ARN,
    }
    assert list(record["DDBStreamBatchInfo"]) == BATCH_KEYS


def test_dynamodb_arrivals_are_truncated_not_rounded() -> None:
    record = stream_failure_record(
        source="dynamodb",
        records=[rec("1", epoch("2019-11-14T00:13:19.999")), rec("2", epoch("2019-11-14T00:13:20.400"))],
        condition=RECORD_AGE_EXCEEDED,
        approximate_invoke_count=0,
        last_result=None,
        function_arn=FUNCTION_ARN,
        shard_id="s",
        stream_arn=DDB_ARN,
        request_id="r",
        now=0.0,
    )
    info = record["DDBStreamBatchInfo"]
    assert info["approximateArrivalOfFirstRecord"] == "2019-11-14T00:13:19Z"
    assert info["approximateArrivalOfLastRecord"] == "2019-11-14T00:13:20Z"
    assert record["timestamp"] == "1970-01-01T00:00:00.000Z"


def test_record_age_exceeded_has_no_response_context() -> None:
    record = kinesis(condition=RECORD_AGE_EXCEEDED, last_result=None, approximate_invoke_count=0)
    assert list(record) == ["requestContext", "version", "timestamp", "KinesisBatchInfo"]
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    # records that expired while being retried: still no responseContext, whatever the last result was
    assert "responseContext" not in kinesis(condition=RECORD_AGE_EXCEEDED, last_result=UNHANDLED)


def test_function_error_is_null_after_partial_batch_exhaustion() -> None:
    record = kinesis(last_result=PARTIAL, approximate_invoke_count=3)
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": None,
    }
    assert '"functionError": null' in json.dumps(record)
    assert record["requestContext"]["approximateInvokeCount"] == 3


def test_response_context_reports_the_last_result_as_given() -> None:
    result = InvokeResult(payload=b"", function_error="Unhandled", status_code=200, executed_version="7")
    assert kinesis(last_result=result)["responseContext"]["executedVersion"] == "7"


def test_batch_info_describes_the_discarded_records_only() -> None:
    full = kinesis()["KinesisBatchInfo"]
    records = [
        rec("100", epoch("2019-11-14T00:38:04.835")),
        rec("200", epoch("2019-11-14T00:38:05.100")),
        rec("300", epoch("2019-11-14T00:38:05.580")),
    ]
    tail = kinesis(records=records[1:])["KinesisBatchInfo"]
    assert tail["batchSize"] == 2 and full["batchSize"] == 3
    assert tail["startSequenceNumber"] == "200"
    assert tail["endSequenceNumber"] == "300"
    assert tail["approximateArrivalOfFirstRecord"] == "2019-11-14T00:38:05.100Z"
    assert tail["approximateArrivalOfLastRecord"] == "2019-11-14T00:38:05.580Z"
    one = kinesis(records=records[:1])["KinesisBatchInfo"]
    assert one["startSequenceNumber"] == one["endSequenceNumber"] == "100"
    assert one["approximateArrivalOfFirstRecord"] == one["approximateArrivalOfLastRecord"]


def test_retry_exhaustion_without_a_result_and_empty_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="last invocation"):
        kinesis(last_result=None)
    with pytest.raises(ValueError, match="at least one record"):
        kinesis(records=[])


def test_time_formats() -> None:
    assert iso_millis(epoch("2019-11-14T00:38:06.021")) == "2019-11-14T00:38:06.021Z"
    assert iso_millis(1573692006.0) == "2019-11-14T00:40:06.000Z"
    assert iso_millis(1573692006.9996) == "2019-11-14T00:40:07.000Z"
    assert iso_seconds(1573692006.9996) == "2019-11-14T00:40:06Z"
    # Kinesis approximateArrivalTimestamp values as the event carries them (seconds with 3 decimals)
    for ms in range(0, 1000, 7):
        assert iso_millis(1545084650 + ms / 1000).endswith(f".{ms:03d}Z")


# --- S3 ---------------------------------------------------------------------------------------------


def test_s3_payload_is_the_event_as_an_escaped_json_string() -> None:
    event = {
        "Records": [{"kinesis": {"data": "SGVsbG8=", "sequenceNumber": "1"}, "eventSource": "aws:kinesis"}]
    }
    record = kinesis()
    s3 = with_payload(record, event)
    assert list(s3) == [*list(record), "payload"]
    assert isinstance(s3["payload"], str)
    assert json.loads(s3["payload"]) == event
    assert '"payload": "{\\"Records\\":' in json.dumps(s3)  # escaped inside the object's JSON
    assert "payload" not in record  # the SQS/SNS form is left alone
    # the invocation payload itself is kept byte for byte
    raw = b'{"Records": [ {"a": "\xc3\xab"} ]}'
    assert with_payload(record, raw)["payload"] == raw.decode()
    assert with_payload(record, raw.decode())["payload"] == raw.decode()


def test_s3_key_layout() -> None:
    key = s3_key(
        "a1b2c3d4-0000-1111-2222-333344445555",
        "shardId-000000000001",
        epoch("2019-11-04T00:38:06.999"),
        "0f8fad5b-d9cb-469f-a165-70867728950e",
    )
    assert key == (
        "aws/lambda/a1b2c3d4-0000-1111-2222-333344445555/shardId-000000000001/2019/11/04/"
        "2019-11-04T00.38.06-0f8fad5b-d9cb-469f-a165-70867728950e"
    )


# --- Kafka ------------------------------------------------------------------------------------------


def kafka_rec(partition: int, offset: int, ts_ms: int, key: str | None = "dGVzdC1rZXk=") -> dict[str, Any]:
    return {
        "topic": "Topic",
        "partition": partition,
        "offset": offset,
        "timestamp": ts_ms,
        "timestampType": "CREATE_TIME",
        "key": key,
        "value": "dGVzdC12YWx1ZQ==",
        "headers": [{"h": [104, -61, -85]}],
    }


T0 = int(epoch("2019-11-14T00:38:04.835") * 1000)


def test_kafka_failure_record_groups_records_info_per_topic_partition() -> None:
    records = [
        kafka_rec(0, 15, T0),
        kafka_rec(1, 7, T0 + 100),
        kafka_rec(0, 16, T0 + 745),
        kafka_rec(1, 9, T0 + 800),
    ]
    record = kafka_failure_record(
        records=records,
        condition=RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=1,
        last_result=UNHANDLED,
        function_arn=FUNCTION_ARN,
        event_source_arn=MSK_ARN,
        bootstrap_servers=BOOTSTRAP,
        request_id="316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
        now=epoch("2019-11-14T00:38:06.021"),
        payload_size=2039086,
    )
    assert list(record) == [*TOP_KEYS, "KafkaBatchInfo"]
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    info = record["KafkaBatchInfo"]
    assert list(info) == ["batchSize", "eventSourceArn", "bootstrapServers", "payloadSize", "recordsInfo"]
    assert info["batchSize"] == 4
    assert info["eventSourceArn"] == MSK_ARN
    assert info["bootstrapServers"] == BOOTSTRAP
    assert info["payloadSize"] == 2039086
    assert info["recordsInfo"] == {
        "Topic-0": {
            "firstRecordOffset": "15",
            "lastRecordOffset": "16",
            "firstRecordTimestamp": "2019-11-14T00:38:04.835Z",
            "lastRecordTimestamp": "2019-11-14T00:38:05.580Z",
        },
        "Topic-1": {
            "firstRecordOffset": "7",
            "lastRecordOffset": "9",
            "firstRecordTimestamp": "2019-11-14T00:38:04.935Z",
            "lastRecordTimestamp": "2019-11-14T00:38:05.635Z",
        },
    }
    assert list(info["recordsInfo"]) == ["Topic-0", "Topic-1"]
    assert list(info["recordsInfo"]["Topic-0"]) == [
        "firstRecordOffset",
        "lastRecordOffset",
        "firstRecordTimestamp",
        "lastRecordTimestamp",
    ]


def test_kafka_payload_size_defaults_to_the_event_size_and_s3_adds_the_payload_string() -> None:
    records = [kafka_rec(0, 15, T0)]
    record = kafka_failure_record(
        records=records,
        condition=RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=2,
        last_result=PARTIAL,
        function_arn=FUNCTION_ARN,
        event_source_arn=MSK_ARN,
        bootstrap_servers=BOOTSTRAP,
        request_id="r",
        now=0.0,
    )
    event = kafka_event(records, event_source_arn=MSK_ARN, bootstrap_servers=BOOTSTRAP)
    assert list(event) == ["eventSource", "eventSourceArn", "bootstrapServers", "records"]
    assert event["records"] == {"Topic-0": records}
    compact = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    assert record["KafkaBatchInfo"]["payloadSize"] == len(compact)
    assert record["responseContext"]["functionError"] is None
    s3 = with_payload(record, compact)
    assert json.loads(s3["payload"]) == event


def test_kafka_maximum_payload_size_exceeded_has_a_null_response_context() -> None:
    record = kafka_failure_record(
        records=[kafka_rec(0, 1, T0)],
        condition=MAXIMUM_PAYLOAD_SIZE_EXCEEDED,
        approximate_invoke_count=0,
        last_result=None,
        function_arn=FUNCTION_ARN,
        event_source_arn=MSK_ARN,
        bootstrap_servers=BOOTSTRAP,
        request_id="r",
        now=0.0,
    )
    assert list(record) == [*TOP_KEYS, "KafkaBatchInfo"]
    assert record["responseContext"] is None
    assert record["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"


def test_kafka_record_age_exceeded_has_no_response_context() -> None:
    record = kafka_failure_record(
        records=[kafka_rec(0, 1, T0)],
        condition=RECORD_AGE_EXCEEDED,
        approximate_invoke_count=1,
        last_result=None,
        function_arn=FUNCTION_ARN,
        event_source_arn=MSK_ARN,
        bootstrap_servers=BOOTSTRAP,
        request_id="r",
        now=0.0,
    )
    assert "responseContext" not in record


def test_self_managed_kafka_has_a_null_arn_in_batch_info_and_no_arn_in_the_event() -> None:
    records = [kafka_rec(0, 1, T0)]
    record = kafka_failure_record(
        records=records,
        condition=RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=1,
        last_result=UNHANDLED,
        function_arn=FUNCTION_ARN,
        event_source_arn=None,
        bootstrap_servers="127.0.0.1:9092",
        request_id="r",
        now=0.0,
    )
    assert record["KafkaBatchInfo"]["eventSourceArn"] is None
    event = kafka_event(records, event_source_arn=None, bootstrap_servers="127.0.0.1:9092")
    assert event == {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "127.0.0.1:9092",
        "records": {"Topic-0": records},
    }


def test_kafka_topic_record_is_the_documented_json() -> None:
    source = {
        "topic": "my-topic",
        "partition": 0,
        "offset": 100,
        "timestamp": 1749116692330,
        "timestampType": "CREATE_TIME",
        "key": "dGVzdC1rZXk=",
        "value": "dGVzdC12YWx1ZQ==",
        "headers": [],
    }
    record = kafka_topic_failure_record(
        record=source,
        condition=RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=3,
        last_result=UNHANDLED,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:my-function:$LATEST",
        event_source_arn=MSK_ARN,
        bootstrap_servers=BOOTSTRAP,
        request_id="e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        now=epoch("2019-11-14T18:16:05.568"),
        payload_size=1162,
    )
    expected = {
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:my-function:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2019-11-14T18:16:05.568Z",
        "KafkaBatchInfo": {
            "batchSize": 1,
            "eventSourceArn": MSK_ARN,
            "bootstrapServers": BOOTSTRAP,
            "payloadSize": 1162,
            "recordInfo": {"offset": "100", "timestamp": "2025-06-05T09:44:52.330Z"},
        },
        "payload": {
            "bootstrapServers": BOOTSTRAP,
            "eventSource": "aws:kafka",
            "eventSourceArn": MSK_ARN,
            "records": {
                "my-topic-0": [
                    {
                        "headers": [],
                        "key": "dGVzdC1rZXk=",
                        "offset": 100,
                        "partition": 0,
                        "timestamp": 1749116692330,
                        "timestampType": "CREATE_TIME",
                        "topic": "my-topic",
                        "value": "dGVzdC12YWx1ZQ==",
                    }
                ]
            },
        },
    }
    assert record == expected
    # the order of every level as the docs print it (payload keys sorted, as in the example)
    assert json.dumps(record) == json.dumps(expected)
    assert isinstance(record["payload"], dict)


def test_kafka_topic_record_default_payload_size_and_other_conditions() -> None:
    common: dict[str, Any] = {
        "approximate_invoke_count": 1,
        "function_arn": FUNCTION_ARN,
        "event_source_arn": MSK_ARN,
        "bootstrap_servers": BOOTSTRAP,
        "request_id": "r",
        "now": 0.0,
    }
    record = kafka_topic_failure_record(
        record=kafka_rec(2, 5, T0), condition=RETRY_ATTEMPTS_EXHAUSTED, last_result=UNHANDLED, **common
    )
    size = len(json.dumps(record["payload"], separators=(",", ":"), ensure_ascii=False).encode())
    assert record["KafkaBatchInfo"]["payloadSize"] == size
    assert list(record["payload"]["records"]) == ["Topic-2"]
    too_big = kafka_topic_failure_record(
        record=kafka_rec(2, 5, T0), condition=MAXIMUM_PAYLOAD_SIZE_EXCEEDED, last_result=None, **common
    )
    assert too_big["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
    assert too_big["responseContext"] is None


# --- destination kinds and the SNS size rule (engine.senders, pure parts) ----------------------------


@pytest.mark.parametrize(
    ("destination", "kind"),
    [
        ("arn:aws:sqs:us-east-1:123456789012:failures", "sqs"),
        ("arn:aws-cn:sqs:cn-north-1:123456789012:failures", "sqs"),
        ("arn:aws:sns:us-east-1:123456789012:failures", "sns"),
        ("arn:aws:s3:::my-bucket", "s3"),
        ("kafka://failed-records-topic", "kafka"),
        ("kafka://", None),
        ("arn:aws:s3:::my-bucket/prefix", None),
        ("arn:aws:s3:us-east-1:123456789012:my-bucket", None),
        ("arn:aws:sqs:us-east-1::failures", None),
        ("arn:aws:sqs:us-east-1:123456789012:", None),
        ("arn:aws:lambda:us-east-1:123456789012:function:f", None),
        ("arn:aws:kinesis:us-east-1:123456789012:stream/s", None),
        ("https://sqs.us-east-1.amazonaws.com/123456789012/failures", None),
        ("", None),
    ],
)
def test_destination_kind(destination: str, kind: str | None) -> None:
    assert destination_kind(destination) == kind


def test_kafka_destination_topic() -> None:
    assert kafka_destination_topic("kafka://failed-records") == "failed-records"
    with pytest.raises(ValueError):
        kafka_destination_topic("arn:aws:sqs:us-east-1:123456789012:q")


def test_sns_message_drops_the_payload_only_above_256_kb() -> None:
    small = with_payload(kinesis(), {"Records": [{"data": "x" * 1000}]})
    assert json.loads(sns_message(small)) == small
    big = with_payload(kinesis(), {"Records": [{"data": "x" * 300_000}]})
    message = json.loads(sns_message(big))
    assert "payload" not in message
    assert message == kinesis()
