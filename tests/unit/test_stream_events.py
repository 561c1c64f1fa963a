"""Kinesis and DynamoDB Streams event records (spec 1.1, 1.2): exact shapes and key order from fixed
GetRecords records as the low-level SDK client returns them (bytes, datetimes)."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from engine.events import event_bytes
from engine.stream_events import (
    dynamodb_item,
    dynamodb_lane_key,
    dynamodb_record,
    epoch_seconds,
    kinesis_lane_key,
    kinesis_record,
)

# --- Kinesis ----------------------------------------------------------------------------------------

# spec 1.1, the documented record (with-kinesis.html)
KINESIS_SPEC_RECORD = """{
    "kinesis": {
        "kinesisSchemaVersion": "1.0",
        "partitionKey": "1",
        "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
        "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
        "approximateArrivalTimestamp": 1545084650.987
    },
    "eventSource": "aws:kinesis",
    "eventVersion": "1.0",
    "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
    "eventName": "aws:kinesis:record",
    "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
    "awsRegion": "us-east-2",
    "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
}"""

KINESIS_RAW: dict[str, Any] = {  # a GetRecords record as botocore parses it
    "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
    "ApproximateArrivalTimestamp": datetime(2018, 12, 17, 22, 10, 50, 987000, tzinfo=UTC),
    "Data": b"Hello, this is a test.",
    "PartitionKey": "1",
    "EncryptionType": "NONE",
}


def _kinesis(raw: dict[str, Any]) -> dict[str, Any]:
    return kinesis_record(
        raw,
        shard_id="shardId-000000000006",
        stream_arn="arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
        region="us-east-2",
        invoke_identity_arn="arn:aws:iam::123456789012:role/lambda-role",
    )


def test_kinesis_record_is_the_documented_record_byte_for_byte() -> None:
    expected = json.loads(KINESIS_SPEC_RECORD)
    record = _kinesis(KINESIS_RAW)
    assert record == expected
    assert event_bytes(record) == event_bytes(expected)  # same key order, same number rendering
    assert b'"approximateArrivalTimestamp":1545084650.987}' in event_bytes(record)


def test_kinesis_key_order() -> None:
    record = _kinesis(KINESIS_RAW)
    assert list(record) == [
        "kinesis",
        "eventSource",
        "eventVersion",
        "eventID",
        "eventName",
        "invokeIdentityArn",
        "awsRegion",
        "eventSourceARN",
    ]
    assert list(record["kinesis"]) == [
        "kinesisSchemaVersion",
        "partitionKey",
        "sequenceNumber",
        "data",
        "approximateArrivalTimestamp",
    ]


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\xff\xfe\x80binary", b'{"a": 1,  "b":[1,2]}', "héllo ✓".encode(), bytes(range(256))],
    ids=["empty", "binary", "json-with-spaces", "utf8", "all-bytes"],
)
def test_kinesis_data_is_base64_of_the_bytes_unchanged(data: bytes) -> None:
    record = _kinesis({**KINESIS_RAW, "Data": data})
    assert record["kinesis"]["data"] == base64.b64encode(data).decode()
    assert base64.b64decode(record["kinesis"]["data"]) == data  # never re-serialised, even JSON


def test_kinesis_data_already_base64_is_kept() -> None:
    record = _kinesis({**KINESIS_RAW, "Data": "SGVsbG8="})
    assert record["kinesis"]["data"] == "SGVsbG8="


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2018, 12, 17, 22, 10, 50, 987000, tzinfo=UTC), 1545084650.987),
        (datetime(2018, 12, 17, 23, 10, 50, 987000, tzinfo=timezone(timedelta(hours=1))), 1545084650.987),
        (datetime(2018, 12, 17, 22, 10, 50, 987654, tzinfo=UTC), 1545084650.988),
        (datetime(2018, 12, 17, 22, 10, 50, tzinfo=UTC), 1545084650.0),
        (1545084650.987, 1545084650.987),
        (1545084650, 1545084650.0),
        ("1545084650.987", 1545084650.987),
        ("2018-12-17T22:10:50.987Z", 1545084650.987),
    ],
)
def test_timestamps_become_epoch_seconds_with_millisecond_fraction(value: Any, expected: float) -> None:
    assert epoch_seconds(value) == expected
    assert isinstance(epoch_seconds(value), float)
    record = _kinesis({**KINESIS_RAW, "ApproximateArrivalTimestamp": value})
    assert record["kinesis"]["approximateArrivalTimestamp"] == expected


def test_kinesis_event_id_and_lane_key() -> None:
    record = _kinesis({**KINESIS_RAW, "SequenceNumber": "123", "PartitionKey": "user-7"})
    assert record["eventID"] == "shardId-000000000006:123"
    assert record["kinesis"]["sequenceNumber"] == "123"
    assert kinesis_lane_key({**KINESIS_RAW, "PartitionKey": "user-7"}) == "user-7"


# --- DynamoDB Streams ---------------------------------------------------------------------------------

STREAM_ARN = "arn:aws:dynamodb:us-east-1:111111111111:table/my-table/stream/2025-01-01T00:00:00.000"

# spec 1.2, the real AWS record (2025, [OBS]) with its placeholders filled in
DYNAMODB_SPEC_RECORD = """{
  "eventID": "c4ca4238a0b923820dcc509a6f75849b",
  "eventName": "INSERT",
  "eventVersion": "1.1",
  "eventSource": "aws:dynamodb",
  "awsRegion": "us-east-1",
  "dynamodb": {
    "ApproximateCreationDateTime": 1693997155.0,
    "Keys": {"my_partition_key": {"S": "hello world"}},
    "NewImage": {"binary_key": {"B": "Zm9vYmFy"}, "my_partition_key": {"S": "hello world"}},
    "SequenceNumber": "1405400000000002063282832",
    "SizeBytes": 70,
    "StreamViewType": "NEW_IMAGE"
  },
  "eventSourceARN": "STREAM_ARN"
}""".replace("STREAM_ARN", STREAM_ARN)

DYNAMODB_RAW: dict[str, Any] = {  # the same record as the low-level dynamodbstreams client returns it
    "eventID": "c4ca4238a0b923820dcc509a6f75849b",
    "eventName": "INSERT",
    "eventVersion": "1.1",
    "eventSource": "aws:dynamodb",
    "awsRegion": "us-east-1",
    "dynamodb": {
        "ApproximateCreationDateTime": datetime(2023, 9, 6, 10, 45, 55, tzinfo=UTC),
        "Keys": {"my_partition_key": {"S": "hello world"}},
        "NewImage": {"binary_key": {"B": b"foobar"}, "my_partition_key": {"S": "hello world"}},
        "SequenceNumber": "1405400000000002063282832",
        "SizeBytes": 70,
        "StreamViewType": "NEW_IMAGE",
    },
}


def test_dynamodb_record_is_the_observed_aws_record_byte_for_byte() -> None:
    expected = json.loads(DYNAMODB_SPEC_RECORD)
    record = dynamodb_record(DYNAMODB_RAW, stream_arn=STREAM_ARN, region="us-east-1")
    assert record == expected
    assert event_bytes(record) == event_bytes(expected)
    assert b'"ApproximateCreationDateTime":1693997155.0,' in event_bytes(record)


def test_dynamodb_documented_example_content() -> None:
    """spec 1.2's documentation example (an older eventVersion, no creation time): same content."""
    raw = {
        "eventID": "1",
        "eventVersion": "1.0",
        "dynamodb": {
            "Keys": {"Id": {"N": "101"}},
            "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "SequenceNumber": "111",
            "SizeBytes": 26,
        },
        "awsRegion": "us-west-2",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
    }
    arn = "arn:aws:dynamodb:us-west-2:111122223333:table/TestTable/stream/2015-05-11T21:21:33.291"
    record = dynamodb_record(raw, stream_arn=arn, region="us-west-2")
    assert record == {
        "eventID": "1",
        "eventName": "INSERT",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-west-2",
        "dynamodb": {
            "Keys": {"Id": {"N": "101"}},
            "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
            "SequenceNumber": "111",
            "SizeBytes": 26,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": arn,
    }
    assert list(record["dynamodb"]["NewImage"]) == ["Message", "Id"]  # attribute order kept


def _modify_raw(view_type: str = "NEW_AND_OLD_IMAGES") -> dict[str, Any]:
    new = {
        "pk": {"S": "a"},
        "sk": {"B": b"\x00\x01"},
        "blob": {"B": b"\xff\xfe"},
        "blobs": {"BS": [b"\x01", b"\x02\x03"]},
        "nested": {
            "M": {
                "inner": {"B": b"foobar"},
                "list": {"L": [{"B": b"x"}, {"N": "1.5"}, {"BOOL": True}, {"NULL": True}, {"BS": [b"y"]}]},
            }
        },
        "n": {"N": "10"},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2"]},
    }
    return {
        "eventID": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            "Keys": {"pk": {"S": "a"}, "sk": {"B": b"\x00\x01"}},
            "NewImage": new,
            "OldImage": {"pk": {"S": "a"}, "sk": {"B": b"\x00\x01"}, "blob": {"B": b"old"}},
            "SequenceNumber": "300000000000000499659",
            "SizeBytes": 120,
            "StreamViewType": view_type,
        },
    }


def test_dynamodb_binary_values_are_base64_everywhere() -> None:
    raw = _modify_raw()
    before = copy.deepcopy(raw)
    record = dynamodb_record(raw, stream_arn=STREAM_ARN, region="eu-west-1")
    assert raw == before  # the input is not modified
    body = record["dynamodb"]
    assert body["Keys"] == {"pk": {"S": "a"}, "sk": {"B": "AAE="}}
    new = body["NewImage"]
    assert new["blob"] == {"B": "//4="}
    assert new["blobs"] == {"BS": ["AQ==", "AgM="]}
    assert new["nested"] == {
        "M": {
            "inner": {"B": "Zm9vYmFy"},
            "list": {"L": [{"B": "eA=="}, {"N": "1.5"}, {"BOOL": True}, {"NULL": True}, {"BS": ["eQ=="]}]},
        }
    }
    assert new["n"] == {"N": "10"} and new["ss"] == {"SS": ["a", "b"]} and new["ns"] == {"NS": ["1", "2"]}
    assert body["OldImage"]["blob"] == {"B": "b2xk"}
    json.dumps(record)  # nothing left that JSON cannot carry


def test_dynamodb_key_order_with_both_images() -> None:
    record = dynamodb_record(_modify_raw(), stream_arn=STREAM_ARN, region="eu-west-1")
    assert list(record) == [
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "dynamodb",
        "eventSourceARN",
    ]
    assert list(record["dynamodb"]) == [
        "ApproximateCreationDateTime",
        "Keys",
        "NewImage",
        "OldImage",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    ]
    assert record["dynamodb"]["ApproximateCreationDateTime"] == 1735787045.678
    assert record["awsRegion"] == "eu-west-1"
    assert record["eventSourceARN"] == STREAM_ARN


@pytest.mark.parametrize(
    ("view_type", "images"),
    [
        ("KEYS_ONLY", []),
        ("NEW_IMAGE", ["NewImage"]),
        ("OLD_IMAGE", ["OldImage"]),
        ("NEW_AND_OLD_IMAGES", ["NewImage", "OldImage"]),
    ],
)
def test_dynamodb_images_follow_the_stream_view_type(view_type: str, images: list[str]) -> None:
    record = dynamodb_record(_modify_raw(view_type), stream_arn=STREAM_ARN, region="eu-west-1")
    assert [k for k in record["dynamodb"] if k.endswith("Image")] == images
    assert record["dynamodb"]["StreamViewType"] == view_type


def test_dynamodb_ttl_deletion_carries_user_identity_in_lower_case_before_the_arn() -> None:
    raw = _modify_raw("OLD_IMAGE")
    raw["eventName"] = "REMOVE"
    raw["userIdentity"] = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
    record = dynamodb_record(raw, stream_arn=STREAM_ARN, region="eu-west-1")
    assert record["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    assert list(record["userIdentity"]) == ["type", "principalId"]
    assert list(record)[-2:] == ["userIdentity", "eventSourceARN"]


def test_dynamodb_region_falls_back_to_the_streams_and_version_is_passed_through() -> None:
    raw = {k: v for k, v in _modify_raw().items() if k != "awsRegion"}
    raw["eventVersion"] = "1.0"
    record = dynamodb_record(raw, stream_arn=STREAM_ARN, region="ap-south-1")
    assert record["awsRegion"] == "ap-south-1"
    assert record["eventVersion"] == "1.0"


def test_dynamodb_already_encoded_binary_is_kept() -> None:
    assert dynamodb_item({"b": {"B": "Zm9v"}, "bs": {"BS": ["YQ=="]}}) == {
        "b": {"B": "Zm9v"},
        "bs": {"BS": ["YQ=="]},
    }


def test_dynamodb_lane_key_is_the_items_keys_as_canonical_json() -> None:
    a = dynamodb_lane_key({"pk": {"S": "user-1"}, "sk": {"N": "5"}})
    b = dynamodb_lane_key({"sk": {"N": "5"}, "pk": {"S": "user-1"}})
    assert a == b == '{"pk":{"S":"user-1"},"sk":{"N":"5"}}'
    assert dynamodb_lane_key({"pk": {"S": "user-1"}, "sk": {"N": "6"}}) != a  # item level, sort key too
    assert dynamodb_lane_key({"id": {"B": b"\x00\xff"}}) == '{"id":{"B":"AP8="}}'
    assert dynamodb_lane_key({"id": {"S": "é"}}) == '{"id":{"S":"é"}}'
