"""Conformance of engine.filtering with spec section 2 (FilterCriteria).

The operator cases live in filter_cases.json: (pattern, event, expected) for every rule of spec 2.5 and
every pattern 2.6 refuses, each with its source. Most come from EventBridge-validated templates
(localstack/localstack tests/aws/services/events/event_pattern_templates/*.json5, reduced to the fields
that matter), the aws/event-ruler README and the Lambda guide; the rest from the spec text. This file adds
the switches, the limits and the per-source views of spec 2.2 / 2.3 on realistic records (spec section 1).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from engine.filtering import (
    MESSAGE,
    DataFormat,
    FilterPatternError,
    FilterView,
    compile_filters,
    compile_pattern,
    compiler,
    filter_view,
    views,
)
from engine.model import SourceKind
from engine.sources.registry import profile_of

# The conformance table: every operator and edge case of spec 2.5 / 2.6, each with its source.
CASES = json.loads((Path(__file__).parent / "filter_cases.json").read_text())
MATCH = CASES["match"]
INVALID = CASES["invalid"]


@pytest.mark.parametrize("case", MATCH, ids=[c["name"] for c in MATCH])
def test_conformance(case: dict[str, Any]) -> None:
    assert compile_pattern(json.dumps(case["pattern"])).matches(case["event"]) is case["match"]


def test_table_covers_every_rule_and_names_are_unique() -> None:
    names = [c["name"] for c in MATCH + INVALID]
    assert len(names) == len(set(names))
    rules = {int(n) for c in MATCH for n in re.findall(r"\d+", c["spec"].removeprefix("2.5"))}
    assert rules == set(range(1, 16))


def test_numbers_compared_by_value_by_default() -> None:
    # rule 6, what AWS did (EventBridge-validated number_comparison_float): 300 == 300.0
    text = '{"number": [300]}'
    assert compile_pattern(text).matches({"number": 300.0})
    assert compile_pattern('{"number": [300.0]}').matches({"number": 300})
    not_300 = '{"n": [{"anything-but": [300]}]}'
    assert not compile_pattern(not_300).matches({"n": 300.0})
    sqs_filter = compile_filters(['{"body": {"number": [300]}}'], profile_of(SourceKind.SQS).filters)
    assert sqs_filter.matches({"body": {"number": 300.0}})


def test_numbers_compared_as_text_when_switched_off() -> None:
    # rule 6, the Lambda docs' reading ("compared via their string representation"): 300 != 300.0
    text = '{"number": [300]}'
    assert not compile_pattern(text, literal_numbers_by_value=False).matches({"number": 300.0})
    assert compile_pattern(text, literal_numbers_by_value=False).matches({"number": 300})
    not_300 = '{"n": [{"anything-but": [300]}]}'
    assert compile_pattern(not_300, literal_numbers_by_value=False).matches({"n": 300.0})


def test_module_switch_is_read_at_compile_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiler, "LITERAL_NUMBERS_BY_VALUE", False)
    assert not compile_pattern('{"number": [300]}').matches({"number": 300.0})
    assert compile_pattern('{"number": [300]}', literal_numbers_by_value=True).matches({"number": 300.0})


def test_duplicate_keys_last_wins() -> None:
    # spec 2.1 [DOC 2022]
    p = compile_pattern('{"a": ["x"], "a": ["y"]}')
    assert p.matches({"a": "y"})
    assert not p.matches({"a": "x"})


def test_same_path_dotted_and_nested_last_wins() -> None:
    p = compile_pattern('{"a": {"b": ["x"]}, "a.b": ["y"]}')
    assert p.matches({"a": {"b": "y"}})
    assert not p.matches({"a": {"b": "x"}})


# --- validation (spec 2.6) ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_invalid_patterns(case: dict[str, str]) -> None:
    with pytest.raises(FilterPatternError) as info:
        compile_pattern(case["pattern"])
    assert str(info.value) == MESSAGE == "Invalid filter pattern definition."
    assert isinstance(info.value, ValueError)
    assert info.value.reason


def test_length_limit_is_4096_characters() -> None:
    pattern = '{"a": ["' + "x" * (4096 - 11) + '"]}'
    assert len(pattern) == 4096
    compile_pattern(pattern)
    with pytest.raises(FilterPatternError):
        compile_pattern(pattern.replace("x", "xy", 1))


def test_nesting_limit() -> None:
    depth = compiler.MAX_NESTING
    compile_pattern("{" + '"a": {' * (depth - 1) + '"b": [1]' + "}" * depth)
    with pytest.raises(FilterPatternError):
        compile_pattern("{" + '"a": {' * depth + '"b": [1]' + "}" * (depth + 1))
    with pytest.raises(FilterPatternError):  # deeper than Python's own JSON parser goes
        compile_pattern("[" * 2000 + "]" * 2000)


def test_pattern_must_be_a_string() -> None:
    with pytest.raises(FilterPatternError):
        compile_pattern(b'{"a": [1]}')  # type: ignore[arg-type]
    with pytest.raises(FilterPatternError):
        compile_filters([{"a": [1]}], profile_of(SourceKind.SQS).filters)  # type: ignore[list-item]
    with pytest.raises(FilterPatternError):
        compile_filters('{"a": [1]}', profile_of(SourceKind.SQS).filters)


def test_filter_count_limit() -> None:
    pattern = '{"a": [1]}'
    assert len(compile_filters([pattern] * 5, profile_of(SourceKind.SQS).filters).patterns) == 5
    with pytest.raises(FilterPatternError) as info:
        compile_filters([pattern] * 6, profile_of(SourceKind.SQS).filters)
    assert str(info.value) == MESSAGE
    compile_filters([pattern] * 10, profile_of(SourceKind.SQS).filters, max_filters=10)  # raised quota
    with pytest.raises(FilterPatternError):
        compile_filters([pattern] * 11, profile_of(SourceKind.SQS).filters, max_filters=10)


def test_valid_wildcards_are_not_too_complex() -> None:
    accepted = ["*Title*", "arn:aws:s3:::bucket/*/*.png", "*:*:*:*", "a*b*c*d", "/Users/*/dir/dir/doc.txt"]
    for text in accepted:
        compile_pattern(json.dumps({"k": [{"wildcard": text}]}))


PIPES_UNSUPPORTED = [
    '{"a": [{"anything-but": {"prefix": "us-"}}]}',
    '{"a": [{"anything-but": {"suffix": ".png"}}]}',
    '{"a": [{"anything-but": {"equals-ignore-case": "x"}}]}',
    '{"a": [{"anything-but": {"wildcard": "*/lib/*"}}]}',
]


@pytest.mark.parametrize("pattern", PIPES_UNSUPPORTED)
def test_strict_pipes_rejects_anything_but_forms(pattern: str) -> None:
    compile_pattern(pattern)
    with pytest.raises(FilterPatternError):
        compile_pattern(pattern, strict_pipes=True)
    with pytest.raises(FilterPatternError):
        compile_filters([pattern], profile_of(SourceKind.SQS).filters, strict_pipes=True)


def test_strict_pipes_keeps_everything_else() -> None:
    for pattern in [
        '{"a": [{"anything-but": ["x", "y"]}]}',
        '{"a": [{"anything-but": 5}]}',
        '{"a": [{"prefix": {"equals-ignore-case": "x"}}]}',
        '{"a": [{"wildcard": "x*"}]}',
        '{"a": [{"cidr": "10.0.0.0/8"}]}',
    ]:
        compile_pattern(pattern, strict_pipes=True)


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [
        (SourceKind.KINESIS, '{"data": ["plain"]}'),
        (SourceKind.KINESIS, '{"data": [{"prefix": "x"}]}'),
        (SourceKind.KINESIS, '{"data": [{"exists": true}]}'),
        (SourceKind.KINESIS, '{"$or": [{"partitionKey": ["1"]}, {"data": ["x"]}]}'),
        (SourceKind.DYNAMODB, '{"dynamodb": ["x"]}'),
        (SourceKind.DYNAMODB, '{"eventName": ["INSERT"], "dynamodb": [{"exists": false}]}'),
    ],
)
def test_streams_refuse_plain_rules_for_the_data_key(kind: SourceKind, pattern: str) -> None:
    # spec 2.3: "non-JSON pattern" for Kinesis data / DynamoDB dynamodb is an error at create/update
    with pytest.raises(FilterPatternError) as info:
        compile_filters([pattern], profile_of(kind).filters)
    assert str(info.value) == MESSAGE


def test_plain_rules_for_the_data_key_are_fine_elsewhere() -> None:
    compile_filters(['{"body": ["x"]}'], profile_of(SourceKind.SQS).filters)
    compile_filters(['{"value": [{"prefix": "x"}]}'], profile_of(SourceKind.MSK).filters)
    compile_filters(['{"value": ["x"]}'], profile_of(SourceKind.SELF_MANAGED_KAFKA).filters)
    compile_filters(['{"data": ["x"]}'], profile_of(SourceKind.MQ).filters)
    compile_filters(
        ['{"data": {"data": ["x"]}}'], profile_of(SourceKind.KINESIS).filters
    )  # a nested "data" is just a field


# --- per-source views (spec 1, 2.2, 2.3) ---------------------------------------------------------------


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# Records as the function receives them (spec section 1).


def sqs_record(body: str, **message_attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": message_attributes,
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "awsRegion": "us-east-2",
    }


SEQUENCE_NUMBER = "49590338271490256608559692538361571095921575989136588898"


def kinesis_record(data: bytes | str) -> dict[str, Any]:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "1",
            "sequenceNumber": SEQUENCE_NUMBER,
            "data": b64(data),
            "approximateArrivalTimestamp": 1545084650.987,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000006:{SEQUENCE_NUMBER}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "awsRegion": "us-east-2",
        "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
    }


def dynamodb_record(new_image: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-west-2",
        "dynamodb": {
            "ApproximateCreationDateTime": 1693997155.0,
            "Keys": {"Id": {"N": "101"}},
            "NewImage": new_image,
            "SequenceNumber": "111",
            "SizeBytes": 26,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": "arn:aws:dynamodb:us-west-2:111122223333:table/TestTable/stream/2015-05-11T21:21",
    }


def kafka_record(value: bytes | str | None, topic: str = "mytopic") -> dict[str, Any]:
    return {
        "topic": topic,
        "partition": 0,
        "offset": 15,
        "timestamp": 1545084650987,
        "timestampType": "CREATE_TIME",
        "key": "abcDEFghiJKLmnoPQRstuVWXyz1234==",
        "value": None if value is None else b64(value),
        "headers": [{"headerKey": [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101]}],
    }


def activemq_message(data: bytes | str) -> dict[str, Any]:
    return {
        "messageID": "ID:b-9bcfa592-423a-4942-879d-eb284b418fc8-1.mq.us-east-2.amazonaws.com-37557-1:1:1:1:1",
        "messageType": "jms/text-message",
        "deliveryMode": 1,
        "replyTo": None,
        "type": None,
        "expiration": "60000",
        "priority": 1,
        "correlationId": "myJMSCoID",
        "redelivered": False,
        "destination": {"physicalName": "testQueue"},
        "data": b64(data),
        "timestamp": 1598827811958,
        "brokerInTime": 1598827811958,
        "brokerOutTime": 1598827811959,
        "properties": {"index": "1", "doAlarm": "false", "myCustomProperty": "value"},
    }


def rabbitmq_message(data: bytes | str) -> dict[str, Any]:
    return {
        "basicProperties": {
            "contentType": "text/plain",
            "contentEncoding": None,
            "headers": {"header1": {"bytes": [118, 97, 108, 117, 101, 49]}, "numberInHeader": 10},
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
            "bodySize": 80,
        },
        "redelivered": False,
        "data": b64(data),
    }


def passes(kind: SourceKind, patterns: list[str], record: dict[str, Any]) -> bool:
    view = filter_view(profile_of(kind).filters, record)
    assert view is not None
    return compile_filters(patterns, profile_of(kind).filters).matches(view)


# SQS body table (spec 2.3): a format mismatch drops the record
SQS_TABLE = [
    ("plain string, plain rules", "Test message.", ['{"body": ["Test message."]}'], True),
    ("plain string, prefix", "Test message.", ['{"body": [{"prefix": "Test"}]}'], True),
    ("plain string, other plain rule", "Test message.", ['{"body": ["other"]}'], False),
    ("plain string, no body clause", "Test.", ['{"attributes": {"SenderId": [{"prefix": "A"}]}}'], True),
    ("plain string, object pattern drops", "Test message.", ['{"body": {"a": [{"exists": false}]}}'], False),
    ("JSON, plain rules drop", '{"a": 1}', ['{"body": [{"prefix": "{"}]}'], False),
    ("JSON scalar, plain rules drop", "42", ['{"body": [42]}'], False),
    ("JSON, no body clause", '{"a": 1}', ['{"messageId": [{"exists": true}]}'], True),
    ("JSON, object pattern", '{"RequestCode": "BBBB"}', ['{"body": {"RequestCode": ["BBBB"]}}'], True),
    ("JSON, object pattern mismatch", '{"RequestCode": "A"}', ['{"body": {"RequestCode": ["BBBB"]}}'], False),
    ("JSON array body", '[{"a": 1}, {"a": 2}]', ['{"body": {"a": [2]}}'], True),
    ("invalid JSON is a string", '{"a": 1', ['{"body": [{"prefix": "{\\"a"}]}'], True),
    ("NaN is not JSON", "NaN", ['{"body": ["NaN"]}'], True),
    ("filters are OR-ed", '{"a": 1}', ['{"body": {"a": [2]}}', '{"body": {"a": [1]}}'], True),
    ("drop in one filter, match in another", "plain", ['{"body": {"a": [1]}}', '{"body": ["plain"]}'], True),
    (
        "drop fails one $or branch",
        "x",
        ['{"$or": [{"body": {"a": [1]}}, {"awsRegion": ["us-east-2"]}]}'],
        True,
    ),
    ("metadata: eventSource", "x", ['{"eventSource": ["aws:sqs"]}'], True),
]


@pytest.mark.parametrize(
    ("body", "patterns", "expected"), [c[1:] for c in SQS_TABLE], ids=[c[0] for c in SQS_TABLE]
)
def test_sqs_body_table(body: str, patterns: list[str], expected: bool) -> None:
    assert passes(SourceKind.SQS, patterns, sqs_record(body)) is expected


def test_sqs_view() -> None:
    record = sqs_record('{"order": {"id": 7}}')
    view = filter_view(profile_of(SourceKind.SQS).filters, record)
    assert isinstance(view, FilterView)
    assert view.data_format is DataFormat.JSON
    assert view["body"] == {"order": {"id": 7}}
    assert view["messageId"] == record["messageId"]
    assert record["body"] == '{"order": {"id": 7}}'  # the record itself is untouched
    text = filter_view(profile_of(SourceKind.SQS).filters, sqs_record("Test message."))
    assert text is not None and text.data_format is DataFormat.TEXT and text["body"] == "Test message."


def test_sqs_message_attributes() -> None:
    author = {"stringValue": "John Grisham", "stringListValues": [], "binaryListValues": []}
    record = sqs_record("x", Author={**author, "dataType": "String"})
    pattern = '{"messageAttributes": {"Author": {"stringValue": ["%s"]}}}'
    assert passes(SourceKind.SQS, [pattern % "John Grisham"], record)
    assert not passes(SourceKind.SQS, [pattern % "Other"], record)


def test_sqs_dotted_attribute_names() -> None:
    record = sqs_record("x", **{"my.attr": {"stringValue": "v", "dataType": "String"}})
    assert passes(SourceKind.SQS, ['{"messageAttributes": {"my": {"attr": {"stringValue": ["v"]}}}}'], record)
    assert passes(SourceKind.SQS, ['{"messageAttributes": {"my.attr": {"stringValue": ["v"]}}}'], record)
    assert "my.attr" in record["messageAttributes"]  # expanded in the view only


def test_dotted_keys_in_a_json_body() -> None:
    nested = ['{"body": {"state": {"status": ["running"]}}}']
    assert passes(SourceKind.SQS, nested, sqs_record('{"state.status": "running"}'))
    assert passes(SourceKind.SQS, nested, sqs_record('{"state\\u002estatus": "running"}'))
    assert passes(SourceKind.SQS, ['{"body": {"a": {"b\\"c": ["v"]}}}'], sqs_record('{"a.b\\"c": "v"}'))
    assert not passes(SourceKind.SQS, nested, sqs_record('{"state": "x.y", "v": 1.5}'))


# Kinesis table (spec 2.3) and flattened fields (spec 2.2)
def test_kinesis_view_is_flattened() -> None:
    view = filter_view(profile_of(SourceKind.KINESIS).filters, kinesis_record('{"Location": "Los Angeles"}'))
    assert view is not None and view.data_format is DataFormat.JSON
    assert view == {
        "kinesisSchemaVersion": "1.0",
        "partitionKey": "1",
        "sequenceNumber": SEQUENCE_NUMBER,
        "data": {"Location": "Los Angeles"},
        "approximateArrivalTimestamp": 1545084650.987,
    }


DOCS_KINESIS_PATTERN = '{"partitionKey": ["1"], "data": {"Location": ["Los Angeles"]}}'
KINESIS_TABLE = [
    ("docs example", '{"Location": "Los Angeles"}', [DOCS_KINESIS_PATTERN], True),
    ("docs example, other city", '{"Location": "Boston"}', [DOCS_KINESIS_PATTERN], False),
    ("JSON, no data clause", '{"a": 1}', ['{"partitionKey": ["1"]}'], True),
    ("not JSON, object clause drops", "Hello, test.", ['{"data": {"a": [{"exists": false}]}}'], False),
    ("not JSON, no data clause", "Hello, this is a test.", ['{"partitionKey": ["1"]}'], True),
    ("not UTF-8, object clause drops", b"\xff\xfe\x00", ['{"data": {"a": [{"exists": false}]}}'], False),
    ("not UTF-8, no data clause", b"\xff\xfe\x00", ['{"partitionKey": ["1"]}'], True),
    ("numeric on the arrival time", "x", ['{"approximateArrivalTimestamp": [{"numeric": [">", 1]}]}'], True),
    ("the envelope is not matched", '{"a": 1}', ['{"kinesis": {"partitionKey": ["1"]}}'], False),
    ("poller fields are not matched", '{"a": 1}', ['{"eventSource": ["aws:kinesis"]}'], False),
]


@pytest.mark.parametrize(
    ("data", "patterns", "expected"), [c[1:] for c in KINESIS_TABLE], ids=[c[0] for c in KINESIS_TABLE]
)
def test_kinesis_table(data: str | bytes, patterns: list[str], expected: bool) -> None:
    assert passes(SourceKind.KINESIS, patterns, kinesis_record(data)) is expected


def test_kinesis_data_formats() -> None:
    for data in ["not json", b"\xff\xfe"]:
        view = filter_view(profile_of(SourceKind.KINESIS).filters, kinesis_record(data))
        assert view is not None and view.data_format is DataFormat.INVALID and "data" not in view


# DynamoDB (spec 2.2 "DynamoDB specifics")
DDB_IMAGE = {
    "Message": {"S": "New item!"},
    "Id": {"N": "101"},
    "presentKey": {"S": "presentValue"},
    "Organizations": {"L": [{"S": "a"}, {"S": "b"}]},
    "user.name": {"S": "ann"},
}
DYNAMODB_TABLE = [
    ("type key included", '{"NewImage": {"presentKey": {"S": ["presentValue"]}}}', True),
    ("type key omitted never matches", '{"NewImage": {"presentKey": ["presentValue"]}}', False),
    ("numbers are strings", '{"NewImage": {"Id": {"N": ["101"]}}}', True),
    ("numeric does not work on N", '{"NewImage": {"Id": {"N": [{"numeric": [">", 100]}]}}}', False),
    ("numeric on the creation time", '{"ApproximateCreationDateTime": [{"numeric": [">", 1]}]}', True),
    ("exists at a list's leaf", '{"NewImage": {"Organizations": {"L": {"S": [{"exists": true}]}}}}', True),
    ("exists on an intermediate node", '{"NewImage": {"Organizations": [{"exists": true}]}}', False),
    ("dotted attribute name", '{"NewImage": {"user.name": {"S": ["ann"]}}}', True),
]


@pytest.mark.parametrize(
    ("pattern", "expected"), [c[1:] for c in DYNAMODB_TABLE], ids=[c[0] for c in DYNAMODB_TABLE]
)
def test_dynamodb(pattern: str, expected: bool) -> None:
    assert passes(SourceKind.DYNAMODB, [f'{{"dynamodb": {pattern}}}'], dynamodb_record(DDB_IMAGE)) is expected


def test_dynamodb_record_fields() -> None:
    record = dynamodb_record(DDB_IMAGE)
    assert passes(SourceKind.DYNAMODB, ['{"eventName": ["INSERT"], "eventSource": ["aws:dynamodb"]}'], record)
    assert not passes(SourceKind.DYNAMODB, ['{"eventName": ["REMOVE"]}'], record)
    # eventSourceARN is added by the poller (spec 2.2)
    assert not passes(SourceKind.DYNAMODB, ['{"eventSourceARN": [{"exists": true}]}'], record)
    view = filter_view(profile_of(SourceKind.DYNAMODB).filters, record)
    assert view is not None and view.data_format is DataFormat.JSON and "eventSourceARN" not in view
    assert "user.name" in record["dynamodb"]["NewImage"]  # expanded in the view only


# Kafka / MQ table (spec 2.3): the data clause is ignored on a mismatch
BROKER_TABLE: list[tuple[str, bytes | str, str, bool]] = [
    ("text, plain rules", "hello", '{"VALUE": ["hello"]}', True),
    ("text, plain rules mismatch", "hello", '{"VALUE": ["bye"]}', False),
    ("text, no clause", "hello", '{"META": [{"exists": true}]}', True),
    ("text, object clause ignored", "hello", '{"VALUE": {"a": ["never"]}, "META": [{"exists": true}]}', True),
    ("JSON, object clause", '{"a": "x"}', '{"VALUE": {"a": ["x"]}}', True),
    ("JSON, object clause mismatch", '{"a": "x"}', '{"VALUE": {"a": ["y"]}}', False),
    ("JSON, plain rules ignored", '{"a": "x"}', '{"VALUE": ["never"]}', True),
    ("JSON, no clause", '{"a": "x"}', '{"META": [{"exists": true}]}', True),
    ("not UTF-8, plain rules ignored", b"\xff\xfe", '{"VALUE": ["never"]}', True),
    ("not UTF-8, object clause ignored", b"\xff\xfe", '{"VALUE": {"a": ["never"]}}', True),
    ("not UTF-8, other fields count", b"\xff\xfe", '{"VALUE": ["x"], "META": [{"exists": false}]}', False),
]
BROKER_IDS = [c[0] for c in BROKER_TABLE]


@pytest.mark.parametrize(("value", "pattern", "expected"), [c[1:] for c in BROKER_TABLE], ids=BROKER_IDS)
@pytest.mark.parametrize("kind", [SourceKind.MSK, SourceKind.SELF_MANAGED_KAFKA])
def test_kafka_table(kind: SourceKind, value: bytes | str, pattern: str, expected: bool) -> None:
    pattern = pattern.replace("VALUE", "value").replace("META", "topic")
    assert passes(kind, [pattern], kafka_record(value)) is expected


@pytest.mark.parametrize(("data", "pattern", "expected"), [c[1:] for c in BROKER_TABLE], ids=BROKER_IDS)
@pytest.mark.parametrize("shape", [activemq_message, rabbitmq_message])
def test_mq_table(shape: Any, data: bytes | str, pattern: str, expected: bool) -> None:
    pattern = pattern.replace("VALUE", "data").replace("META", "redelivered")
    assert passes(SourceKind.MQ, [pattern], shape(data)) is expected


def test_kafka_metadata_and_headers() -> None:
    record = kafka_record('{"order": 1}', topic="orders")
    metadata = '{"topic": ["orders"], "partition": [0], "offset": [{"numeric": [">=", 15]}]}'
    assert passes(SourceKind.MSK, [metadata], record)
    assert passes(SourceKind.MSK, ['{"headers": {"headerKey": [104]}}'], record)  # header bytes are numbers
    assert passes(SourceKind.MSK, ['{"timestampType": ["CREATE_TIME"]}'], record)
    assert not passes(SourceKind.MSK, ['{"topic": ["other"]}'], record)


def test_kafka_tombstone_has_no_value() -> None:
    view = filter_view(profile_of(SourceKind.MSK).filters, kafka_record(None))
    assert view is not None and view.data_format is DataFormat.ABSENT and "value" not in view
    assert passes(SourceKind.MSK, ['{"value": [{"exists": false}]}'], kafka_record(None))
    assert not passes(SourceKind.MSK, ['{"value": {"a": [1]}}'], kafka_record(None))


def test_kafka_view() -> None:
    view = filter_view(
        profile_of(SourceKind.SELF_MANAGED_KAFKA).filters, kafka_record("Hello, this is a test.")
    )
    assert view is not None and view.data_format is DataFormat.TEXT
    assert view["value"] == "Hello, this is a test." and view["topic"] == "mytopic"
    binary = filter_view(profile_of(SourceKind.MSK).filters, kafka_record(b"\x80"))
    assert binary is not None and binary.data_format is DataFormat.BINARY and "value" not in binary


def test_mq_views() -> None:
    rabbit = filter_view(
        profile_of(SourceKind.MQ).filters, rabbitmq_message('{"timeout":0,"data":"CZrmf0Gw8Ov4bqLQxD4E"}')
    )
    assert rabbit is not None and rabbit["data"] == {"timeout": 0, "data": "CZrmf0Gw8Ov4bqLQxD4E"}
    both = '{"data": {"timeout": [0]}, "basicProperties": {"priority": [34]}}'
    assert passes(SourceKind.MQ, [both], rabbitmq_message('{"timeout":0}'))
    assert passes(SourceKind.MQ, ['{"properties": {"myCustomProperty": ["value"]}}'], activemq_message("x"))
    assert passes(SourceKind.MQ, ['{"destination": {"physicalName": ["testQueue"]}}'], activemq_message("x"))


def test_mq_dotted_header_names() -> None:
    message = rabbitmq_message("x")
    message["basicProperties"]["headers"]["x.retry"] = 3
    assert passes(SourceKind.MQ, ['{"basicProperties": {"headers": {"x": {"retry": [3]}}}}'], message)
    assert "x.retry" in message["basicProperties"]["headers"]


@pytest.mark.parametrize(
    ("kind", "record"),
    [
        (SourceKind.SQS, {"messageId": "1"}),
        (SourceKind.SQS, {"body": 5}),
        (SourceKind.KINESIS, {"eventSource": "aws:kinesis"}),
        (SourceKind.DYNAMODB, {"eventName": "INSERT"}),
        (SourceKind.MSK, "not a record"),
    ],
)
def test_malformed_records_have_no_view(kind: SourceKind, record: Any) -> None:
    assert filter_view(profile_of(kind).filters, record) is None


def test_empty_filter_matches_everything() -> None:
    rf = compile_filters([], profile_of(SourceKind.SQS).filters)
    assert rf.is_empty
    view = filter_view(profile_of(SourceKind.SQS).filters, sqs_record("x"))
    assert view is not None and rf.matches(view)
    assert not compile_filters(['{"body": ["x"]}'], profile_of(SourceKind.SQS).filters).is_empty


def test_matches_accepts_a_plain_mapping() -> None:
    rf = compile_filters(
        ['{"body": {"a": {"b": [1]}}}', '{"body": ["text"]}'], profile_of(SourceKind.SQS).filters
    )
    assert rf.matches({"body": {"a.b": 1}})
    assert rf.matches({"body": "text"})
    assert not rf.matches({"body": {"a": 1}})
    assert not rf.matches({"body": ["text"]})  # a JSON array body: plain rules drop


def test_one_view_serves_every_filter_without_reparsing(monkeypatch: pytest.MonkeyPatch) -> None:
    view = filter_view(profile_of(SourceKind.SQS).filters, sqs_record('{"a": 1}'))
    assert view is not None
    misses = compile_filters(
        [f'{{"body": {{"a": [{n}]}}}}' for n in range(2, 7)], profile_of(SourceKind.SQS).filters
    )
    hit = compile_filters(['{"body": {"a": [1]}}'], profile_of(SourceKind.SQS).filters)
    monkeypatch.setattr(views, "STRICT_JSON", None)  # any parse now fails loudly
    assert not misses.matches(view)
    assert hit.matches(view)


def test_reprs() -> None:
    assert "orders" in repr(compile_pattern('{"topic": ["orders"]}'))
    assert "kafka" in repr(compile_filters(['{"topic": ["orders"]}'], profile_of(SourceKind.MSK).filters))


def test_matching_never_changes_the_event() -> None:
    event = {"a": {"c": 2}, "a.b": 1, "x": [{"y.z": 1}], "n": 5, "n.m": 6}
    snapshot = json.dumps(event)
    pattern = compile_pattern('{"a": {"b": [1], "c": [2]}, "x": {"y": {"z": [1]}}, "n": {"m": [6]}}')
    assert pattern.matches(event)
    assert compile_filters(['{"a": {"b": [1]}}'], profile_of(SourceKind.MSK).filters).matches(event)
    assert json.dumps(event) == snapshot
