"""Request validation: the Lambda model's constraints, the source rules of spec 8.4, canonical params."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.errors import (
    InvalidParameterValueException,
    LambdaError,
    SerializationException,
    ValidationException,
)
from engine.model import EventSourceMapping, SourceKind, State
from engine.sources import dynamodb, sqs
from engine.sources.registry import PROFILES
from engine.validate import mappings, service_model, tags
from engine.validate.mappings import (
    CreateRequest,
    UpdateRequest,
    model_shape_names,
    validate_create,
    validate_update,
)
from engine.validate.tags import tagged_mapping_uuid, validate_tag_resource, validate_untag_keys
from tests.unit.fakes import retry_of

UUID = "6f1c1b9e-3d1c-4c47-9a55-0d1b3f1f0a11"
ACCOUNT = "123456789012"
SQS_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders"
FIFO_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders.fifo"
KINESIS_ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/clicks"
DDB_ARN = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/t/stream/2024-01-01T00:00:00.000"
MSK_ARN = f"arn:aws:kafka:us-east-1:{ACCOUNT}:cluster/c/0b9f-1"
MQ_ARN = f"arn:aws:mq:us-east-1:{ACCOUNT}:broker:b:b-1234"
SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:creds"
DLQ_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq"
BASIC_AUTH = {"Type": "BASIC_AUTH", "URI": SECRET}
BOOTSTRAP = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["kafka:9092"]}}

BASES: dict[str, dict[str, Any]] = {
    "sqs": {"FunctionName": "f", "EventSourceArn": SQS_ARN},
    "fifo": {"FunctionName": "f", "EventSourceArn": FIFO_ARN},
    "kinesis": {"FunctionName": "f", "EventSourceArn": KINESIS_ARN, "StartingPosition": "LATEST"},
    "dynamodb": {"FunctionName": "f", "EventSourceArn": DDB_ARN, "StartingPosition": "TRIM_HORIZON"},
    "msk": {"FunctionName": "f", "EventSourceArn": MSK_ARN, "Topics": ["topic"]},
    "smk": {
        "FunctionName": "f",
        "SelfManagedEventSource": BOOTSTRAP,
        "Topics": ["topic"],
        "SourceAccessConfigurations": [BASIC_AUTH],
    },
    "mq": {
        "FunctionName": "f",
        "EventSourceArn": MQ_ARN,
        "Queues": ["q"],
        "SourceAccessConfigurations": [BASIC_AUTH],
    },
}
KIND_OF = {
    "sqs": SourceKind.SQS,
    "fifo": SourceKind.SQS,
    "kinesis": SourceKind.KINESIS,
    "dynamodb": SourceKind.DYNAMODB,
    "msk": SourceKind.MSK,
    "smk": SourceKind.SELF_MANAGED_KAFKA,
    "mq": SourceKind.MQ,
}
SOURCES = ["sqs", "kinesis", "dynamodb", "msk", "smk", "mq"]


def body(source: str, **members: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASES[source])
    out.update(members)
    return out


def create(source: str, **members: Any) -> CreateRequest:
    return validate_create(body(source, **members), new_uuid=UUID)


def mapping(source: str, **members: Any) -> EventSourceMapping:
    req = create(source, **members)
    return EventSourceMapping(
        uuid=UUID,
        kind=req.kind,
        function_arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f",
        params=req.params,
        enabled=True,
        state=State.ENABLED,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )


def update(source: str, changes: dict[str, Any], **created: Any) -> UpdateRequest:
    return validate_update(mapping(source, **created), changes)


def error_of(fn: Any, *args: Any, **kwargs: Any) -> LambdaError:
    with pytest.raises(LambdaError) as info:
        fn(*args, **kwargs)
    return info.value


def coral(*violations: str) -> str:
    noun = "error" if len(violations) == 1 else "errors"
    return f"{len(violations)} validation {noun} detected: " + "; ".join(violations)


def at(value: str | None, member: str, constraint: str) -> str:
    shown = "null" if value is None else f"'{value}'"
    return f"Value {shown} at '{member}' failed to satisfy constraint: {constraint}"


def shape_pattern(shape: str) -> str:
    pattern: str = service_model.model_shape(shape)["pattern"]
    return pattern


GE = "Member must have value greater than or equal to {}"
LE = "Member must have value less than or equal to {}"
LEN_GE = "Member must have length greater than or equal to {}"
LEN_LE = "Member must have length less than or equal to {}"
NOT_NULL = "Member must not be null"
POSITIONS = "Member must satisfy enum value set: [LATEST, AT_TIMESTAMP, TRIM_HORIZON]"
MISSING_BASIC_AUTH = "Required BASIC_AUTH source access configuration is missing."


# --- ranges from the model: every edge ----------------------------------------------------------------

RANGE_CASES = [
    # (source, member, value, coral path, broken constraint or None when accepted)
    ("kinesis", "BatchSize", 0, "batchSize", GE.format(1)),
    ("kinesis", "BatchSize", 1, "batchSize", None),
    ("kinesis", "BatchSize", 10000, "batchSize", None),
    ("kinesis", "BatchSize", 10001, "batchSize", LE.format(10000)),
    ("kinesis", "MaximumBatchingWindowInSeconds", -1, "maximumBatchingWindowInSeconds", GE.format(0)),
    ("kinesis", "MaximumBatchingWindowInSeconds", 0, "maximumBatchingWindowInSeconds", None),
    ("kinesis", "MaximumBatchingWindowInSeconds", 300, "maximumBatchingWindowInSeconds", None),
    ("kinesis", "MaximumBatchingWindowInSeconds", 301, "maximumBatchingWindowInSeconds", LE.format(300)),
    ("kinesis", "MaximumRecordAgeInSeconds", -2, "maximumRecordAgeInSeconds", GE.format(-1)),
    ("kinesis", "MaximumRecordAgeInSeconds", -1, "maximumRecordAgeInSeconds", None),
    ("kinesis", "MaximumRecordAgeInSeconds", 60, "maximumRecordAgeInSeconds", None),
    ("kinesis", "MaximumRecordAgeInSeconds", 604800, "maximumRecordAgeInSeconds", None),
    ("kinesis", "MaximumRecordAgeInSeconds", 604801, "maximumRecordAgeInSeconds", LE.format(604800)),
    ("kinesis", "MaximumRetryAttempts", -2, "maximumRetryAttempts", GE.format(-1)),
    ("kinesis", "MaximumRetryAttempts", -1, "maximumRetryAttempts", None),
    ("kinesis", "MaximumRetryAttempts", 10000, "maximumRetryAttempts", None),
    ("kinesis", "MaximumRetryAttempts", 10001, "maximumRetryAttempts", LE.format(10000)),
    ("kinesis", "ParallelizationFactor", 0, "parallelizationFactor", GE.format(1)),
    ("kinesis", "ParallelizationFactor", 1, "parallelizationFactor", None),
    ("kinesis", "ParallelizationFactor", 10, "parallelizationFactor", None),
    ("kinesis", "ParallelizationFactor", 11, "parallelizationFactor", LE.format(10)),
    ("kinesis", "TumblingWindowInSeconds", -1, "tumblingWindowInSeconds", GE.format(0)),
    ("kinesis", "TumblingWindowInSeconds", 0, "tumblingWindowInSeconds", None),
    ("kinesis", "TumblingWindowInSeconds", 900, "tumblingWindowInSeconds", None),
    ("kinesis", "TumblingWindowInSeconds", 901, "tumblingWindowInSeconds", LE.format(900)),
    ("sqs", "ScalingConfig", {"MaximumConcurrency": 1}, "scalingConfig.maximumConcurrency", GE.format(2)),
    ("sqs", "ScalingConfig", {"MaximumConcurrency": 2}, "scalingConfig.maximumConcurrency", None),
    ("sqs", "ScalingConfig", {"MaximumConcurrency": 1000}, "scalingConfig.maximumConcurrency", None),
    (
        "sqs",
        "ScalingConfig",
        {"MaximumConcurrency": 1001},
        "scalingConfig.maximumConcurrency",
        LE.format(1000),
    ),
]


@pytest.mark.parametrize(("source", "member", "value", "path", "broken"), RANGE_CASES)
def test_model_ranges(source: str, member: str, value: Any, path: str, broken: str | None) -> None:
    if broken is None:
        assert create(source, **{member: value}).params[member] == value
        return
    shown = value["MaximumConcurrency"] if isinstance(value, dict) else value
    err = error_of(create, source, **{member: value})
    assert type(err) is ValidationException
    assert err.message == coral(at(str(shown), path, broken))


@pytest.mark.parametrize("age", [0, 59])
def test_record_age_below_a_minute_is_refused_with_aws_text(age: int) -> None:
    for source in ("kinesis", "dynamodb", "msk"):
        err = error_of(create, source, MaximumRecordAgeInSeconds=age)
        assert type(err) is InvalidParameterValueException
        assert err.message == (
            "MaximumRecordAgeInSeconds must be either -1 (forever) or between 60 and 604800 (inclusive)"
        )


def test_several_violations_are_reported_together_in_model_order() -> None:
    err = error_of(create, "kinesis", ParallelizationFactor=11, BatchSize=0)
    assert type(err) is ValidationException
    assert err.message == (
        "2 validation errors detected: "
        "Value '0' at 'batchSize' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1; "
        "Value '11' at 'parallelizationFactor' failed to satisfy constraint: "
        "Member must have value less than or equal to 10"
    )


# --- strings: FunctionName, ARNs, enums ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "my-function",
        "my-function:prod",
        "my-function:1",
        "my-function:$LATEST",
        f"{ACCOUNT}:function:my-function",
        f"{ACCOUNT}:function:my-function:prod",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:my-function",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:my-function:7",
        "a" * 256,
    ],
)
def test_function_name_formats_accepted(name: str) -> None:
    req = create("sqs", FunctionName=name)
    assert req.function_name == name
    assert "FunctionName" not in req.params


@pytest.mark.parametrize(
    ("name", "broken"),
    [
        ("my function", ["pattern"]),
        ("f:bad!qualifier", ["pattern"]),
        (f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders", ["pattern"]),
        ("a" * 257, [LEN_LE.format(256)]),
        ("", [LEN_GE.format(1), "pattern"]),
    ],
)
def test_function_name_invalid(name: str, broken: list[str]) -> None:
    pattern = "Member must satisfy regular expression pattern: " + shape_pattern("NamespacedFunctionName")
    constraints = [pattern if b == "pattern" else b for b in broken]
    err = error_of(create, "sqs", FunctionName=name)
    assert type(err) is ValidationException
    assert err.message == coral(*(at(name, "functionName", c) for c in constraints))


def test_function_name_is_required() -> None:
    err = error_of(validate_create, {"EventSourceArn": SQS_ARN}, new_uuid=UUID)
    assert type(err) is ValidationException
    assert err.message == coral(at(None, "functionName", NOT_NULL))


def test_event_source_arn_pattern() -> None:
    bad = "arn:aws:sqs:us-east-1:1234:orders"  # the account must have 12 digits
    err = error_of(create, "sqs", EventSourceArn=bad)
    assert type(err) is ValidationException
    assert err.message == coral(
        at(bad, "eventSourceArn", "Member must satisfy regular expression pattern: " + shape_pattern("Arn"))
    )


def test_starting_position_enum_uses_aws_text_and_order() -> None:
    err = error_of(create, "kinesis", StartingPosition="invalid")
    assert type(err) is ValidationException
    assert err.message == (
        "1 validation error detected: Value 'invalid' at 'startingPosition' failed to satisfy constraint: "
        "Member must satisfy enum value set: [LATEST, AT_TIMESTAMP, TRIM_HORIZON]"
    )


@pytest.mark.parametrize("position", ["LATEST", "TRIM_HORIZON"])
def test_starting_position_enum_accepted(position: str) -> None:
    assert create("kinesis", StartingPosition=position).params["StartingPosition"] == position


@pytest.mark.parametrize(
    ("types", "message"),
    [
        (["ReportBatchItemFailures"], None),
        ([], None),
        (
            ["ReportEverything"],
            at(
                "[ReportEverything]",
                "functionResponseTypes",
                "Member must satisfy constraint: "
                "[Member must satisfy enum value set: [ReportBatchItemFailures]]",
            ),
        ),
        (
            ["ReportBatchItemFailures", "ReportBatchItemFailures"],
            at(
                "[ReportBatchItemFailures, ReportBatchItemFailures]",
                "functionResponseTypes",
                LEN_LE.format(1),
            ),
        ),
    ],
)
def test_function_response_types(types: list[str], message: str | None) -> None:
    if message is None:
        assert create("sqs", FunctionResponseTypes=types).params["FunctionResponseTypes"] == types
        return
    err = error_of(create, "sqs", FunctionResponseTypes=types)
    assert type(err) is ValidationException
    assert err.message == coral(message)


# --- list sizes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "member", "value", "message"),
    [
        ("smk", "Topics", [], at("[]", "topics", LEN_GE.format(1))),
        ("smk", "Topics", ["topic"], None),
        ("smk", "Topics", ["a1", "b1"], at("[a1, b1]", "topics", LEN_LE.format(1))),
        ("msk", "Topics", ["a1", "b1"], at("[a1, b1]", "topics", LEN_LE.format(1))),
        ("mq", "Queues", [], at("[]", "queues", LEN_GE.format(1))),
        ("mq", "Queues", ["q"], None),
        ("mq", "Queues", ["q1", "q2"], at("[q1, q2]", "queues", LEN_LE.format(1))),
    ],
)
def test_topics_and_queues_take_exactly_one(
    source: str, member: str, value: list[str], message: str | None
) -> None:
    if message is None:
        assert create(source, **{member: value}).params[member] == value
        return
    err = error_of(create, source, **{member: value})
    assert type(err) is ValidationException
    assert err.message == coral(message)


def test_topic_pattern_is_reported_on_the_list() -> None:
    err = error_of(create, "smk", Topics=[".hidden"])
    pattern = "Member must satisfy regular expression pattern: " + shape_pattern("Topic")
    assert err.message == coral(at("[.hidden]", "topics", f"Member must satisfy constraint: [{pattern}]"))


@pytest.mark.parametrize("count", [1, 22, 23])
def test_source_access_configurations_accepted_up_to_the_model_maximum(count: int) -> None:
    subnets = [{"Type": "VPC_SUBNET", "URI": f"subnet:subnet-{i}"} for i in range(count - 1)]
    req = create("smk", SourceAccessConfigurations=[BASIC_AUTH, *subnets])
    assert len(req.params["SourceAccessConfigurations"]) == count


def test_source_access_configurations_over_the_model_maximum() -> None:
    entries = [BASIC_AUTH] * 24
    err = error_of(create, "smk", SourceAccessConfigurations=entries)
    assert type(err) is ValidationException
    assert err.message.startswith("1 validation error detected: Value '[{Type=BASIC_AUTH, URI=")
    assert err.message.endswith(
        "at 'sourceAccessConfigurations' failed to satisfy constraint: " + LEN_LE.format(23)
    )


def test_nested_structure_paths_in_lists() -> None:
    err = error_of(create, "smk", SourceAccessConfigurations=[BASIC_AUTH, {"Type": "NOPE", "URI": SECRET}])
    assert type(err) is ValidationException
    assert err.message.startswith(
        "1 validation error detected: Value 'NOPE' at 'sourceAccessConfigurations.2.member.type' failed to "
        "satisfy constraint: Member must satisfy enum value set: [BASIC_AUTH, VPC_SUBNET, "
    )


def test_map_keys_and_values() -> None:
    endpoints = {"KAFKA_BOOTSTRAP_SERVERS": ["bad host"], "OTHER": ["kafka:9092"]}
    err = error_of(create, "smk", SelfManagedEventSource={"Endpoints": endpoints})
    endpoint = "Member must satisfy regular expression pattern: " + shape_pattern("Endpoint")
    assert err.message == coral(
        at(
            "{KAFKA_BOOTSTRAP_SERVERS=[bad host], OTHER=[kafka:9092]}",
            "selfManagedEventSource.endpoints",
            "Map keys must satisfy constraint: "
            "[Member must satisfy enum value set: [KAFKA_BOOTSTRAP_SERVERS]]",
        ),
        at(
            "[bad host]",
            "selfManagedEventSource.endpoints.KAFKA_BOOTSTRAP_SERVERS",
            f"Member must satisfy constraint: [{endpoint}]",
        ),
    )


def test_tags_use_java_unicode_classes() -> None:
    assert create("sqs", Tags={"équipe": "données 1", "team": "a"}).tags == {
        "équipe": "données 1",
        "team": "a",
    }
    err = error_of(create, "sqs", Tags={"bad!": "v"})
    pattern = "Member must satisfy regular expression pattern: " + shape_pattern("TagKey")
    assert err.message == coral(at("{bad!=v}", "tags", f"Map keys must satisfy constraint: [{pattern}]"))
    err = error_of(create, "sqs", Tags={"k": "x" * 257})
    assert err.message == coral(
        at("{k=" + "x" * 257 + "}", "tags", f"Map value must satisfy constraint: [{LEN_LE.format(256)}]")
    )


# --- readable bodies: JSON types and unknown members ------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"BatchSize": "10"}, "Invalid type for member 'BatchSize': expected integer, got string."),
        ({"BatchSize": True}, "Invalid type for member 'BatchSize': expected integer, got boolean."),
        ({"BatchSize": 1.5}, "Invalid type for member 'BatchSize': expected integer, got number."),
        (
            {"BatchSize": 2**31},
            "Invalid value for member 'BatchSize': 2147483648 does not fit in a 32-bit integer.",
        ),
        ({"Enabled": "yes"}, "Invalid type for member 'Enabled': expected boolean, got string."),
        ({"FunctionName": 7}, "Invalid type for member 'FunctionName': expected string, got number."),
        (
            {"FunctionResponseTypes": "ReportBatchItemFailures"},
            "Invalid type for member 'FunctionResponseTypes': expected array, got string.",
        ),
        ({"ScalingConfig": [2]}, "Invalid type for member 'ScalingConfig': expected object, got array."),
        (
            {"ScalingConfig": {"MaximumConcurrency": "5"}},
            "Invalid type for member 'ScalingConfig.MaximumConcurrency': expected integer, got string.",
        ),
        (
            {"FilterCriteria": {"Filters": [{"Pattern": {"a": [1]}}]}},
            "Invalid type for member 'FilterCriteria.Filters[0].Pattern': expected string, got object.",
        ),
    ],
)
def test_wrong_json_types_are_serialization_errors(members: dict[str, Any], message: str) -> None:
    err = error_of(create, "sqs", **members)
    assert type(err) is SerializationException
    assert err.message == message


def test_body_must_be_an_object() -> None:
    err = error_of(validate_create, [], new_uuid=UUID)
    assert type(err) is SerializationException
    assert err.message == "Invalid type for the request body: expected object, got array."


def test_type_errors_come_before_everything_else() -> None:
    err = error_of(validate_create, {"BatchSize": "x"}, new_uuid=UUID)
    assert type(err) is SerializationException


def test_unknown_members_are_refused() -> None:
    err = error_of(create, "sqs", Foo=1)
    assert type(err) is ValidationException
    assert err.message.startswith(
        'Unknown parameter in input: "Foo", must be one of: EventSourceArn, FunctionName,'
    )
    err = error_of(create, "sqs", ScalingConfig={"MaximumConcurrency": 2, "Max": 3})
    assert err.message == 'Unknown parameter in ScalingConfig: "Max", must be one of: MaximumConcurrency'


def test_unknown_member_wins_over_unrecognized_source() -> None:
    # a misspelt EventSourceArn must not read as a missing one
    err = error_of(validate_create, {"FunctionName": "f", "EventSourceARN": SQS_ARN}, new_uuid=UUID)
    assert type(err) is ValidationException
    assert err.message.startswith('Unknown parameter in input: "EventSourceARN"')


def test_json_null_means_not_set() -> None:
    assert create("sqs", BatchSize=None).params["BatchSize"] == 10


@pytest.mark.parametrize(
    ("value", "epoch"),
    [
        (1704067200, 1704067200.0),
        (1704067200.5, 1704067200.5),
        ("2024-01-01T00:00:00Z", 1704067200.0),
        ("2024-01-01T01:00:00+01:00", 1704067200.0),
        ("2024-01-01T00:00:00", 1704067200.0),
    ],
)
def test_starting_position_timestamp_stored_as_epoch_seconds(value: Any, epoch: float) -> None:
    req = create("kinesis", StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=value)
    assert req.params["StartingPositionTimestamp"] == epoch
    assert isinstance(req.params["StartingPositionTimestamp"], float)


def test_unreadable_timestamp() -> None:
    err = error_of(create, "kinesis", StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp="yesterday")
    assert type(err) is SerializationException
    assert err.message == (
        "Invalid value for member 'StartingPositionTimestamp': "
        "expected a timestamp (epoch seconds or ISO 8601), "
        "got string 'yesterday'."
    )


# --- spec 8.4: the source rules, in AWS's order -------------------------------------------------------------


@pytest.mark.parametrize(
    "members",
    [
        {"FunctionName": "f"},
        {"FunctionName": "f", "EventSourceArn": "not-an-arn"},
        {"FunctionName": "f", "EventSourceArn": "arn:aws:s3:::bucket"},
        {"FunctionName": "f", "EventSourceArn": f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/t"},
        {"FunctionName": "f", "EventSourceArn": f"arn:aws:rds:us-east-1:{ACCOUNT}:cluster:docdb"},
        # rule 1 comes before the model's constraints
        {"FunctionName": "f", "BatchSize": 0, "StartingPosition": "invalid"},
    ],
)
def test_rule1_unrecognized_event_source(members: dict[str, Any]) -> None:
    err = error_of(validate_create, members, new_uuid=UUID)
    assert type(err) is InvalidParameterValueException
    assert err.message == "Unrecognized event source."


@pytest.mark.parametrize("access", [None, []])
def test_rule2_self_managed_kafka_needs_access_configurations(access: list[Any] | None) -> None:
    members = body("smk", DestinationConfig={"OnSuccess": {"Destination": DLQ_ARN}})
    members["SourceAccessConfigurations"] = access
    err = error_of(validate_create, members, new_uuid=UUID)
    assert type(err) is InvalidParameterValueException
    assert err.message == "Required 'sourceAccessConfigurations' parameter is missing."


@pytest.mark.parametrize("source", SOURCES)
def test_rule3_on_success_destination_is_unsupported(source: str) -> None:
    members = body(source, DestinationConfig={"OnSuccess": {"Destination": DLQ_ARN}})
    members.pop("StartingPosition", None)  # rule 3 precedes rule 4
    err = error_of(validate_create, members, new_uuid=UUID)
    assert type(err) is InvalidParameterValueException
    assert err.message == "Unsupported DestinationConfig parameter for given event source mapping type."


@pytest.mark.parametrize(
    ("source", "member", "path"),
    [
        ("kinesis", "StartingPosition", "startingPosition"),
        ("dynamodb", "StartingPosition", "startingPosition"),
        ("msk", "Topics", "topics"),
        ("smk", "Topics", "topics"),
        ("mq", "Queues", "queues"),
    ],
)
def test_rule4_missing_member_for_the_source(source: str, member: str, path: str) -> None:
    members = body(source, BatchSize=0)  # rule 4 precedes the model's constraints
    del members[member]
    err = error_of(validate_create, members, new_uuid=UUID)
    assert type(err) is InvalidParameterValueException
    assert err.message == (
        f"1 validation error detected: Value null at '{path}' failed to satisfy constraint: "
        "Member must not be null."
    )


@pytest.mark.parametrize("source", ["msk", "smk"])
def test_kafka_starting_position_defaults_to_trim_horizon(source: str) -> None:
    assert create(source).params["StartingPosition"] == "TRIM_HORIZON"
    assert create(source, StartingPosition="LATEST").params["StartingPosition"] == "LATEST"


def test_rule6_at_timestamp_is_refused_on_dynamodb() -> None:
    err = error_of(create, "dynamodb", StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=1704067200)
    assert type(err) is InvalidParameterValueException
    assert err.message == f"Unsupported starting position for arn type: {DDB_ARN}"


@pytest.mark.parametrize("source", ["kinesis", "msk", "smk"])
def test_at_timestamp_accepted_for_kinesis_and_kafka(source: str) -> None:
    req = create(source, StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=1704067200)
    assert req.params["StartingPosition"] == "AT_TIMESTAMP"
    assert req.params["StartingPositionTimestamp"] == 1704067200.0


@pytest.mark.parametrize("source", ["kinesis", "smk"])
def test_at_timestamp_needs_a_timestamp(source: str) -> None:
    err = error_of(create, source, StartingPosition="AT_TIMESTAMP")
    assert type(err) is InvalidParameterValueException
    assert err.message == "Need to specify a timestamp"


def test_timestamp_without_at_timestamp() -> None:
    err = error_of(create, "kinesis", StartingPositionTimestamp=1704067200)
    assert type(err) is InvalidParameterValueException
    assert err.message == mappings.TIMESTAMP_WITHOUT_AT_TIMESTAMP


@pytest.mark.parametrize("source", ["sqs", "mq"])
@pytest.mark.parametrize("position", ["LATEST", "AT_TIMESTAMP"])
def test_starting_position_not_allowed_for_queues(source: str, position: str) -> None:
    err = error_of(create, source, StartingPosition=position)
    assert type(err) is InvalidParameterValueException
    assert err.message == "Unsupported StartingPosition parameter for given event source mapping type."


SQS_BATCH_CASES = [
    # (source, BatchSize, window, message or None)
    ("sqs", 10, None, None),
    ("sqs", 11, None, sqs.WINDOW_REQUIRED),
    ("sqs", 11, 0, sqs.WINDOW_REQUIRED),
    ("sqs", 11, 1, None),
    ("sqs", 10000, 300, None),
    ("kinesis", 100, 0, None),  # the API doc claims the rule for streams too; AWS does not apply it
    ("dynamodb", 10000, 0, None),
    ("fifo", 10, 0, None),
    ("fifo", 10, 1, "Batching window is not supported for FIFO queues"),
    ("fifo", 11, None, "Maximum batch size must be between 1 and 10 inclusive"),
    ("fifo", 11, 0, "Maximum batch size must be between 1 and 10 inclusive"),
]


@pytest.mark.parametrize(("source", "batch_size", "window", "message"), SQS_BATCH_CASES)
def test_rule7_and_fifo_batching(
    source: str, batch_size: int, window: int | None, message: str | None
) -> None:
    members: dict[str, Any] = {"BatchSize": batch_size}
    if window is not None:
        members["MaximumBatchingWindowInSeconds"] = window
    if message is None:
        assert create(source, **members).params["BatchSize"] == batch_size
        return
    err = error_of(create, source, **members)
    assert type(err) is InvalidParameterValueException
    assert err.message == message


def test_sqs_batch_rule_text() -> None:
    assert sqs.WINDOW_REQUIRED == (
        "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"
    )


@pytest.mark.parametrize(
    ("enforced", "batch_size", "message"),
    [
        (False, 1000, None),
        (False, 1001, None),
        (False, 10000, None),
        (True, 1000, None),
        (True, 1001, "Maximum batch size must be between 1 and 1000 inclusive"),
    ],
)
def test_dynamodb_legacy_batch_cap_switch(
    monkeypatch: pytest.MonkeyPatch, enforced: bool, batch_size: int, message: str | None
) -> None:
    assert dynamodb.LEGACY_MAX_BATCH_SIZE_ENFORCED is False  # the default follows the API (10,000)
    monkeypatch.setattr(dynamodb, "LEGACY_MAX_BATCH_SIZE_ENFORCED", enforced)
    if message is None:
        assert create("dynamodb", BatchSize=batch_size).params["BatchSize"] == batch_size
        assert create("kinesis", BatchSize=10000).params["BatchSize"] == 10000
        return
    err = error_of(create, "dynamodb", BatchSize=batch_size)
    assert type(err) is InvalidParameterValueException
    assert err.message == message
    assert create("kinesis", BatchSize=batch_size).params["BatchSize"] == batch_size


# --- parameter applicability (spec 8.4 table) ---------------------------------------------------------------


def test_profiles_accept_only_source_specific_members() -> None:
    # any other member every source accepts: listing it in a profile would read as a restriction
    for profile in PROFILES.values():
        assert profile.accepted_params <= mappings.SOURCE_SPECIFIC_PARAMS, profile.kind
        assert profile.accepted_metrics <= mappings.SOURCE_SPECIFIC_METRICS, profile.kind


STREAMS = {"kinesis", "dynamodb"}
KAFKA = {"msk", "smk"}
APPLICABILITY: list[tuple[str, Any, set[str]]] = [
    ("ParallelizationFactor", 2, STREAMS),
    ("TumblingWindowInSeconds", 60, STREAMS),
    ("MaximumRetryAttempts", 3, STREAMS | KAFKA),
    ("MaximumRecordAgeInSeconds", 3600, STREAMS | KAFKA),
    ("BisectBatchOnFunctionError", True, STREAMS | KAFKA),
    ("DestinationConfig", {"OnFailure": {"Destination": DLQ_ARN}}, STREAMS | KAFKA),
    ("FunctionResponseTypes", ["ReportBatchItemFailures"], STREAMS | {"sqs"} | KAFKA),
    ("ScalingConfig", {"MaximumConcurrency": 5}, {"sqs"}),
    ("ProvisionedPollerConfig", {"MinimumPollers": 2, "MaximumPollers": 10}, {"sqs"} | KAFKA),
    ("Topics", ["topic"], KAFKA),
    ("AmazonManagedKafkaEventSourceConfig", {"ConsumerGroupId": "group-1"}, {"msk"}),
    ("SelfManagedKafkaEventSourceConfig", {"ConsumerGroupId": "group-1"}, {"smk"}),
    ("Queues", ["q"], {"mq"}),
    ("SourceAccessConfigurations", [BASIC_AUTH], KAFKA | {"mq"}),
    ("LoggingConfig", {"SystemLogLevel": "INFO"}, KAFKA),
    ("StartingPosition", "TRIM_HORIZON", STREAMS | KAFKA),
    ("EventSourceArn", MSK_ARN, set(SOURCES) - {"smk"}),
    ("DocumentDBEventSourceConfig", {"DatabaseName": "db"}, set()),
    ("MaximumBatchingWindowInSeconds", 5, set(SOURCES)),
    ("FilterCriteria", {"Filters": [{"Pattern": '{"a": [1]}'}]}, set(SOURCES)),
    ("KMSKeyArn", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k", set(SOURCES)),
    ("MetricsConfig", {"Metrics": ["EventCount"]}, set(SOURCES)),
]
UNSUPPORTED = [(m, v, s) for m, v, ok in APPLICABILITY for s in SOURCES if s not in ok]
# SourceAccessConfigurations and EventSourceArn values depend on the source: positive cases are elsewhere.
SUPPORTED = [
    (m, v, s)
    for m, v, ok in APPLICABILITY
    for s in sorted(ok)
    if m not in ("SourceAccessConfigurations", "EventSourceArn")
]


@pytest.mark.parametrize(("member", "value", "source"), UNSUPPORTED)
def test_unsupported_parameter_for_source(member: str, value: Any, source: str) -> None:
    err = error_of(create, source, **{member: value})
    assert type(err) is InvalidParameterValueException
    assert err.message == f"Unsupported {member} parameter for given event source mapping type."


@pytest.mark.parametrize(("member", "value", "source"), SUPPORTED)
def test_supported_parameter_for_source(member: str, value: Any, source: str) -> None:
    create(source, **{member: value})


def test_self_managed_event_source_makes_the_mapping_self_managed_kafka() -> None:
    # with both, the mapping is self-managed Kafka and the ARN is the member that does not belong
    err = error_of(create, "smk", EventSourceArn=SQS_ARN)
    assert type(err) is InvalidParameterValueException
    assert err.message == "Unsupported EventSourceArn parameter for given event source mapping type."


# --- source access configurations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "entries", "message"),
    [
        (
            "smk",
            [
                {"Type": "VPC_SUBNET", "URI": "subnet:subnet-1"},
                {"Type": "VPC_SECURITY_GROUP", "URI": "security_group:sg-1"},
            ],
            None,
        ),
        ("smk", [{"Type": "SASL_SCRAM_256_AUTH", "URI": SECRET}], None),
        (
            "smk",
            [
                {"Type": "CLIENT_CERTIFICATE_TLS_AUTH", "URI": SECRET},
                {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": SECRET},
            ],
            None,
        ),
        ("smk", [{"Type": "VIRTUAL_HOST", "URI": "/"}], mappings.unsupported_access_type("VIRTUAL_HOST")),
        ("msk", [{"Type": "SASL_SCRAM_512_AUTH", "URI": SECRET}], None),
        ("msk", [{"Type": "VPC_SUBNET", "URI": "subnet:subnet-1"}], None),
        ("msk", [BASIC_AUTH], mappings.unsupported_access_type("BASIC_AUTH")),
        ("msk", [{"Type": "IAM_AUTH", "URI": SECRET}], mappings.unsupported_access_type("IAM_AUTH")),
        ("mq", [BASIC_AUTH, {"Type": "VIRTUAL_HOST", "URI": "/vhost"}], None),
        (
            "mq",
            [{"Type": "VIRTUAL_HOST", "URI": "/vhost"}],
            MISSING_BASIC_AUTH,
        ),
        ("mq", [], "Required 'sourceAccessConfigurations' parameter is missing."),
        (
            "mq",
            [{"Type": "SASL_SCRAM_512_AUTH", "URI": SECRET}],
            mappings.unsupported_access_type("SASL_SCRAM_512_AUTH"),
        ),
    ],
)
def test_source_access_types(source: str, entries: list[dict[str, str]], message: str | None) -> None:
    if message is None:
        assert (
            create(source, SourceAccessConfigurations=entries).params["SourceAccessConfigurations"] == entries
        )
        return
    err = error_of(create, source, SourceAccessConfigurations=entries)
    assert type(err) is InvalidParameterValueException
    assert err.message == message


def test_mq_without_access_configurations() -> None:
    members = body("mq")
    del members["SourceAccessConfigurations"]
    err = error_of(validate_create, members, new_uuid=UUID)
    assert err.message == "Required 'sourceAccessConfigurations' parameter is missing."


def test_msk_without_access_configurations_is_iam() -> None:
    assert "SourceAccessConfigurations" not in create("msk").params


def test_scaling_config_and_provisioned_pollers_are_exclusive_on_sqs() -> None:
    err = error_of(
        create, "sqs", ScalingConfig={"MaximumConcurrency": 5}, ProvisionedPollerConfig={"MinimumPollers": 2}
    )
    assert type(err) is InvalidParameterValueException
    assert err.message == sqs.SCALING_AND_PROVISIONED


# --- canonical form --------------------------------------------------------------------------------------

STREAM_DEFAULTS = {
    "BatchSize": 100,
    "BisectBatchOnFunctionError": False,
    "DestinationConfig": {"OnFailure": {}},
    "FunctionResponseTypes": [],
    "MaximumBatchingWindowInSeconds": 0,
    "MaximumRecordAgeInSeconds": -1,
    "MaximumRetryAttempts": -1,
    "ParallelizationFactor": 1,
    "TumblingWindowInSeconds": 0,
}
CANONICAL = {
    "sqs": {
        "EventSourceArn": SQS_ARN,
        "BatchSize": 10,
        "MaximumBatchingWindowInSeconds": 0,
        "FunctionResponseTypes": [],
    },
    "kinesis": {**STREAM_DEFAULTS, "EventSourceArn": KINESIS_ARN, "StartingPosition": "LATEST"},
    "dynamodb": {**STREAM_DEFAULTS, "EventSourceArn": DDB_ARN, "StartingPosition": "TRIM_HORIZON"},
    "msk": {
        "EventSourceArn": MSK_ARN,
        "BatchSize": 100,
        "StartingPosition": "TRIM_HORIZON",
        "Topics": ["topic"],
        "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": UUID},
    },
    "smk": {
        "SelfManagedEventSource": BOOTSTRAP,
        "BatchSize": 100,
        "StartingPosition": "TRIM_HORIZON",
        "Topics": ["topic"],
        "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": UUID},
        "SourceAccessConfigurations": [BASIC_AUTH],
    },
    "mq": {
        "EventSourceArn": MQ_ARN,
        "BatchSize": 100,
        "Queues": ["q"],
        "SourceAccessConfigurations": [BASIC_AUTH],
    },
}


@pytest.mark.parametrize("source", SOURCES)
def test_canonical_defaults_per_source(source: str) -> None:
    req = create(source)
    assert req.kind is KIND_OF[source]
    assert req.function_name == "f"
    assert req.enabled is True
    assert req.params == CANONICAL[source]
    assert req.tags == {}


def test_enabled_and_tags_are_returned_apart_from_params() -> None:
    req = create("sqs", Enabled=False, Tags={"team": "a"})
    assert req.enabled is False
    assert req.tags == {"team": "a"}
    assert "Enabled" not in req.params
    assert "Tags" not in req.params


def test_caller_body_is_not_aliased() -> None:
    members = body("smk")
    req = validate_create(members, new_uuid=UUID)
    req.params["Topics"].append("other")
    assert members["Topics"] == ["topic"]


@pytest.mark.parametrize(
    ("source", "members", "expected"),
    [
        ("sqs", {"FilterCriteria": {"Filters": []}}, {}),
        ("sqs", {"FilterCriteria": {}}, {}),
        (
            "sqs",
            {"FilterCriteria": {"Filters": [{"Pattern": '{"a": [1]}'}]}},
            {"FilterCriteria": {"Filters": [{"Pattern": '{"a": [1]}'}]}},
        ),
        (
            "kinesis",
            {"DestinationConfig": {"OnFailure": {"Destination": ""}}},
            {"DestinationConfig": {"OnFailure": {}}},
        ),
        (
            "kinesis",
            {"DestinationConfig": {"OnFailure": {"Destination": DLQ_ARN}}},
            {"DestinationConfig": {"OnFailure": {"Destination": DLQ_ARN}}},
        ),
        ("smk", {"DestinationConfig": {"OnFailure": {"Destination": ""}}}, {}),
        (
            "smk",
            {"DestinationConfig": {"OnFailure": {"Destination": "kafka://failures"}}},
            {"DestinationConfig": {"OnFailure": {"Destination": "kafka://failures"}}},
        ),
        ("sqs", {"ScalingConfig": {}}, {}),
        ("sqs", {"KMSKeyArn": ""}, {}),
        ("smk", {"MaximumBatchingWindowInSeconds": 5}, {"MaximumBatchingWindowInSeconds": 5}),
        ("mq", {"MaximumBatchingWindowInSeconds": 0}, {"MaximumBatchingWindowInSeconds": 0}),
        (
            "msk",
            {"AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "my-group"}},
            {"AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "my-group"}},
        ),
        (
            "kinesis",
            {"MaximumRetryAttempts": 2, "BisectBatchOnFunctionError": True},
            {"MaximumRetryAttempts": 2, "BisectBatchOnFunctionError": True},
        ),
    ],
)
def test_canonical_changes(source: str, members: dict[str, Any], expected: dict[str, Any]) -> None:
    assert create(source, **members).params == {**CANONICAL[source], **expected}


# --- update ----------------------------------------------------------------------------------------------


def test_update_with_nothing_keeps_everything() -> None:
    req = update("kinesis", {})
    assert req == UpdateRequest(function_name=None, enabled=None, params=CANONICAL["kinesis"])


def test_update_merges_into_current_params() -> None:
    req = update("kinesis", {"BatchSize": 50, "Enabled": False, "FunctionName": "g:live"})
    assert req.function_name == "g:live"
    assert req.enabled is False
    assert req.params == {**CANONICAL["kinesis"], "BatchSize": 50}


def test_update_does_not_touch_the_current_mapping() -> None:
    current = mapping("sqs", FilterCriteria={"Filters": [{"Pattern": '{"a": [1]}'}]})
    before = copy.deepcopy(dict(current.params))
    validate_update(current, {"FilterCriteria": {}, "BatchSize": 5})
    assert dict(current.params) == before


@pytest.mark.parametrize(
    ("source", "member", "value"),
    [
        ("sqs", "EventSourceArn", SQS_ARN),
        ("kinesis", "StartingPosition", "LATEST"),
        ("kinesis", "StartingPositionTimestamp", 1704067200),
        ("smk", "Topics", ["topic"]),
        ("smk", "SelfManagedEventSource", BOOTSTRAP),
        ("mq", "Queues", ["q"]),
        ("sqs", "Tags", {"team": "a"}),
        ("sqs", "UUID", UUID),  # a path member, never a body member
    ],
)
def test_update_refuses_create_only_members(source: str, member: str, value: Any) -> None:
    err = error_of(update, source, {member: value})
    assert type(err) is ValidationException
    assert err.message.startswith(
        f'Unknown parameter in input: "{member}", must be one of: FunctionName, Enabled,'
    )


def test_update_model_constraints_and_applicability() -> None:
    err = error_of(update, "kinesis", {"ParallelizationFactor": 11})
    assert err.message == coral(at("11", "parallelizationFactor", LE.format(10)))
    err = error_of(update, "sqs", {"ParallelizationFactor": 2})
    assert err.message == "Unsupported ParallelizationFactor parameter for given event source mapping type."
    err = error_of(update, "sqs", {"DestinationConfig": {"OnSuccess": {"Destination": DLQ_ARN}}})
    assert err.message == "Unsupported DestinationConfig parameter for given event source mapping type."
    err = error_of(update, "kinesis", {"MaximumRecordAgeInSeconds": 30})
    assert err.message == mappings.RECORD_AGE_RANGE
    err = error_of(update, "sqs", {"BatchSize": "5"})
    assert type(err) is SerializationException


@pytest.mark.parametrize(
    ("source", "created", "changes", "message"),
    [
        ("sqs", {}, {"BatchSize": 20}, sqs.WINDOW_REQUIRED),
        ("sqs", {"MaximumBatchingWindowInSeconds": 5}, {"BatchSize": 20}, None),
        (
            "sqs",
            {"BatchSize": 20, "MaximumBatchingWindowInSeconds": 5},
            {"MaximumBatchingWindowInSeconds": 0},
            sqs.WINDOW_REQUIRED,
        ),
        ("sqs", {}, {"BatchSize": 20, "MaximumBatchingWindowInSeconds": 1}, None),
        ("fifo", {}, {"MaximumBatchingWindowInSeconds": 5}, sqs.FIFO_WINDOW),
        ("fifo", {}, {"BatchSize": 11}, "Maximum batch size must be between 1 and 10 inclusive"),
        (
            "sqs",
            {"ScalingConfig": {"MaximumConcurrency": 5}},
            {"ProvisionedPollerConfig": {"MinimumPollers": 2}},
            sqs.SCALING_AND_PROVISIONED,
        ),
        (
            "sqs",
            {"ScalingConfig": {"MaximumConcurrency": 5}},
            {"ScalingConfig": {}, "ProvisionedPollerConfig": {"MinimumPollers": 2}},
            None,
        ),
    ],
)
def test_update_judges_the_merged_parameters(
    source: str, created: dict[str, Any], changes: dict[str, Any], message: str | None
) -> None:
    if message is None:
        update(source, changes, **created)
        return
    err = error_of(update, source, changes, **created)
    assert type(err) is InvalidParameterValueException
    assert err.message == message


def test_update_removals() -> None:
    filtered = {"FilterCriteria": {"Filters": [{"Pattern": '{"a": [1]}'}]}}
    assert "FilterCriteria" not in update("sqs", {"FilterCriteria": {}}, **filtered).params
    assert "FilterCriteria" not in update("sqs", {"FilterCriteria": {"Filters": []}}, **filtered).params
    assert update("sqs", {}, **filtered).params["FilterCriteria"] == filtered["FilterCriteria"]

    with_dlq = {"DestinationConfig": {"OnFailure": {"Destination": DLQ_ARN}}}
    removed = update("kinesis", {"DestinationConfig": {"OnFailure": {"Destination": ""}}}, **with_dlq)
    assert removed.params["DestinationConfig"] == {"OnFailure": {}}
    removed = update("smk", {"DestinationConfig": {"OnFailure": {"Destination": ""}}}, **with_dlq)
    assert "DestinationConfig" not in removed.params

    capped = {"ScalingConfig": {"MaximumConcurrency": 5}}
    assert "ScalingConfig" not in update("sqs", {"ScalingConfig": {}}, **capped).params
    provisioned = {"ProvisionedPollerConfig": {"MinimumPollers": 2}}
    assert (
        "ProvisionedPollerConfig" not in update("smk", {"ProvisionedPollerConfig": {}}, **provisioned).params
    )


def test_update_consumer_group_is_create_only() -> None:
    key = "SelfManagedKafkaEventSourceConfig"
    err = error_of(update, "smk", {key: {"ConsumerGroupId": "other"}})
    assert type(err) is InvalidParameterValueException
    assert err.message == mappings.CONSUMER_GROUP_IMMUTABLE
    registry = {"SchemaRegistryURI": "https://registry:8081", "EventRecordFormat": "JSON"}
    req = update("smk", {key: {"ConsumerGroupId": UUID, "SchemaRegistryConfig": registry}})
    assert req.params[key] == {"ConsumerGroupId": UUID, "SchemaRegistryConfig": registry}


def test_update_virtual_host_is_create_only() -> None:
    vhost = {"Type": "VIRTUAL_HOST", "URI": "/a"}
    created = {"SourceAccessConfigurations": [BASIC_AUTH, vhost]}
    other_secret = {"Type": "BASIC_AUTH", "URI": SECRET + "-2"}
    kept = update("mq", {"SourceAccessConfigurations": [other_secret]}, **created)
    assert kept.params["SourceAccessConfigurations"] == [other_secret, vhost]
    same = update("mq", {"SourceAccessConfigurations": [other_secret, vhost]}, **created)
    assert same.params["SourceAccessConfigurations"] == [other_secret, vhost]
    err = error_of(
        update,
        "mq",
        {"SourceAccessConfigurations": [BASIC_AUTH, {"Type": "VIRTUAL_HOST", "URI": "/b"}]},
        **created,
    )
    assert type(err) is InvalidParameterValueException
    assert err.message == "The VIRTUAL_HOST source access configuration cannot be changed."
    err = error_of(update, "mq", {"SourceAccessConfigurations": [vhost]}, **created)
    assert err.message == MISSING_BASIC_AUTH


def test_update_self_managed_kafka_keeps_needing_access_configurations() -> None:
    err = error_of(update, "smk", {"SourceAccessConfigurations": []})
    assert err.message == "Required 'sourceAccessConfigurations' parameter is missing."


# --- the model itself ------------------------------------------------------------------------------------


def test_model_shape_names() -> None:
    assert model_shape_names() == {
        "CreateEventSourceMapping": "CreateEventSourceMappingRequest",
        "UpdateEventSourceMapping": "UpdateEventSourceMappingRequest",
    }


def test_observed_enum_order_is_the_models_set() -> None:
    # if the model's StartingPosition values change, the observed order no longer applies
    assert set(service_model.model_shape("EventSourcePosition")["enum"]) == {
        "LATEST",
        "AT_TIMESTAMP",
        "TRIM_HORIZON",
    }


# --- on-failure destinations (kafka://, malformed, SQS/SNS/S3) ---------------------------------------------

VALID_ARN_DESTINATIONS = [
    DLQ_ARN,
    f"arn:aws:sns:us-east-1:{ACCOUNT}:failures",
    "arn:aws:s3:::failure-bucket",
]
# pass the model's pattern, so only the source rules can refuse them
MALFORMED_DESTINATIONS = [
    f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f",
    f"arn:aws:sqs:us-east-1:{ACCOUNT}:q/x",
    f"arn:aws:s3:us-east-1:{ACCOUNT}:bucket",
    "arn:aws:sns:us-east-1::topic",
]


def on_failure(destination: str) -> dict[str, Any]:
    return {"DestinationConfig": {"OnFailure": {"Destination": destination}}}


@pytest.mark.parametrize("source", sorted(KAFKA))
@pytest.mark.parametrize("destination", ["kafka://x", "kafka://failed-records", "kafka://topic.dlq"])
def test_kafka_destination_accepted_for_kafka(source: str, destination: str) -> None:
    req = create(source, **on_failure(destination))
    assert req.params["DestinationConfig"] == {"OnFailure": {"Destination": destination}}
    updated = update(source, on_failure(destination))
    assert updated.params["DestinationConfig"] == {"OnFailure": {"Destination": destination}}


@pytest.mark.parametrize("source", sorted(STREAMS))
def test_kafka_destination_refused_for_streams(source: str) -> None:
    err = error_of(create, source, **on_failure("kafka://x"))
    assert type(err) is InvalidParameterValueException
    assert err.message == "Unsupported destination kafka://x for given event source mapping type."
    err = error_of(update, source, on_failure("kafka://x"))
    assert type(err) is InvalidParameterValueException
    assert err.message == "Unsupported destination kafka://x for given event source mapping type."


@pytest.mark.parametrize("source", sorted(KAFKA))
def test_kafka_destination_must_differ_from_the_source_topic(source: str) -> None:
    err = error_of(create, source, **on_failure("kafka://topic"))
    assert type(err) is InvalidParameterValueException
    assert err.message == mappings.KAFKA_DESTINATION_SAME_TOPIC
    assert err.message == "The Kafka on-failure destination topic must differ from the source topic."
    err = error_of(create, source, Topics=["orders"], **on_failure("kafka://orders"))
    assert err.message == mappings.KAFKA_DESTINATION_SAME_TOPIC
    err = error_of(update, source, on_failure("kafka://topic"))
    assert type(err) is InvalidParameterValueException
    assert err.message == mappings.KAFKA_DESTINATION_SAME_TOPIC
    # a topic whose name merely contains the source topic's is another topic
    assert create(source, **on_failure("kafka://topic-dlq")).params["DestinationConfig"] == {
        "OnFailure": {"Destination": "kafka://topic-dlq"}
    }


@pytest.mark.parametrize("source", sorted(STREAMS | KAFKA))
def test_destination_not_matching_the_model_pattern_is_refused(source: str) -> None:
    err = error_of(create, source, **on_failure("not-an-arn"))
    assert type(err) is ValidationException
    assert "destinationConfig.onFailure.destination" in err.message
    err = error_of(update, source, on_failure("not-an-arn"))
    assert type(err) is ValidationException


@pytest.mark.parametrize("source", sorted(STREAMS | KAFKA))
@pytest.mark.parametrize("destination", MALFORMED_DESTINATIONS)
def test_destination_that_names_no_sqs_sns_s3_or_topic_is_refused(source: str, destination: str) -> None:
    err = error_of(create, source, **on_failure(destination))
    assert type(err) is InvalidParameterValueException
    assert err.message == f"Unsupported destination {destination} for given event source mapping type."
    err = error_of(update, source, on_failure(destination))
    assert type(err) is InvalidParameterValueException
    assert err.message == mappings.unsupported_destination(destination)


@pytest.mark.parametrize("source", sorted(STREAMS | KAFKA))
@pytest.mark.parametrize("destination", VALID_ARN_DESTINATIONS)
def test_sqs_sns_s3_destinations_accepted(source: str, destination: str) -> None:
    req = create(source, **on_failure(destination))
    assert req.params["DestinationConfig"] == {"OnFailure": {"Destination": destination}}
    updated = update(source, on_failure(destination))
    assert updated.params["DestinationConfig"] == {"OnFailure": {"Destination": destination}}


def test_update_judges_the_destination_against_the_stored_topics() -> None:
    # the source topics are create-only; a later destination update is checked against them
    current = mapping("smk", Topics=["orders"])
    err = error_of(validate_update, current, on_failure("kafka://orders"))
    assert err.message == mappings.KAFKA_DESTINATION_SAME_TOPIC
    assert validate_update(current, on_failure("kafka://topic")).params["DestinationConfig"] == {
        "OnFailure": {"Destination": "kafka://topic"}
    }


@pytest.mark.parametrize("source", sorted(KAFKA))
def test_validated_kafka_mapping_with_a_destination_caps_infinite_retries(source: str) -> None:
    assert retry_of(mapping(source)).max_retry_attempts == -1
    assert retry_of(mapping(source, **on_failure(DLQ_ARN))).max_retry_attempts == 10
    assert retry_of(mapping(source, MaximumRetryAttempts=2, **on_failure(DLQ_ARN))).max_retry_attempts == 2
    assert retry_of(mapping("kinesis", **on_failure(DLQ_ARN))).max_retry_attempts == -1


# --- tags and the settings AWS accepts (issue 11, item 4) -----------------------------------------------

ESM_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:event-source-mapping:{UUID}"


def test_tagged_mapping_uuid_takes_mapping_arns_only() -> None:
    assert tagged_mapping_uuid(ESM_ARN) == UUID
    assert tagged_mapping_uuid(ESM_ARN.replace(UUID, UUID.upper())) == UUID  # the model allows A-F
    for resource in (
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f",  # a valid ARN the engine holds nothing for
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:code-signing-config:csc-0123456789abcdef0",
        f"arn:aws:lambda:us-east-1::event-source-mapping:{UUID}",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:event-source-mapping:not-a-uuid",
        "",
    ):
        err = error_of(tagged_mapping_uuid, resource)
        assert type(err) is InvalidParameterValueException
        assert err.message == f"Unsupported resource type for tagging or invalid arn: {resource}"


def test_tag_resource_body_is_checked_against_the_model() -> None:
    assert validate_tag_resource({"Tags": {"team": "a", "k": ""}}) == {"team": "a", "k": ""}
    err = error_of(validate_tag_resource, {})
    assert type(err) is ValidationException
    assert err.message == coral(at(None, "tags", "Member must not be null"))
    err = error_of(validate_tag_resource, {"Tags": {"k": "x" * 257}})
    assert type(err) is ValidationException
    assert err.message == coral(
        at("{k=" + "x" * 257 + "}", "tags", f"Map value must satisfy constraint: [{LEN_LE.format(256)}]")
    )
    err = error_of(validate_tag_resource, {"Tags": {"k": "v"}, "Other": 1})
    assert type(err) is ValidationException and '"Other"' in err.message
    err = error_of(validate_tag_resource, {"Tags": {}})
    assert type(err) is InvalidParameterValueException and err.message == tags.NO_TAGS


def test_untag_keys_are_required_model_tag_keys() -> None:
    assert validate_untag_keys(["a", "b"]) == ["a", "b"]
    err = error_of(validate_untag_keys, None)
    assert type(err) is ValidationException
    assert err.message == coral(at(None, "tagKeys", "Member must not be null"))
    err = error_of(validate_untag_keys, ["k" * 129])
    assert type(err) is ValidationException
    assert err.message == coral(
        at("[" + "k" * 129 + "]", "tagKeys", f"Member must satisfy constraint: [{LEN_LE.format(128)}]")
    )


def test_tag_limits() -> None:
    tags.check_tags({f"k{i}": "v" for i in range(tags.MAX_TAGS_PER_RESOURCE)})
    err = error_of(tags.check_tags, {f"k{i}": "v" for i in range(tags.MAX_TAGS_PER_RESOURCE + 1)})
    assert type(err) is InvalidParameterValueException and err.message == tags.TOO_MANY_TAGS
    err = error_of(create, "sqs", Tags={f"k{i}": "v" for i in range(51)})
    assert type(err) is InvalidParameterValueException and err.message == tags.TOO_MANY_TAGS
    err = error_of(create, "sqs", Tags={"AWS:team": "v"})
    assert type(err) is InvalidParameterValueException
    assert err.message == tags.reserved_tag_key("AWS:team")


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("metric", ["ErrorCount", "KafkaMetrics"])
def test_error_and_kafka_metrics_are_kafka_only(source: str, metric: str) -> None:
    members = {"MetricsConfig": {"Metrics": ["EventCount", metric]}}
    if source in KAFKA:
        assert create(source, **members).params["MetricsConfig"] == members["MetricsConfig"]
        return
    err = error_of(create, source, **members)
    assert type(err) is InvalidParameterValueException
    assert err.message == f"Unsupported metric {metric} for given event source mapping type."
    err = error_of(update, source, members)
    assert type(err) is InvalidParameterValueException


@pytest.mark.parametrize("source", sorted(KAFKA))
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"MinimumPollers": 1, "MaximumPollers": 2000}, None),
        ({"MinimumPollers": 200}, None),  # the default maximum, 200, is not below
        ({"MaximumPollers": 1}, None),  # nor is the default minimum, 1, above
        ({"MinimumPollers": 5, "MaximumPollers": 5, "PollerGroupName": "g"}, None),
        ({"MaximumPollers": 2001}, mappings.pollers_range("MaximumPollers", 1, 2000)),
        ({"MinimumPollers": 6, "MaximumPollers": 5}, mappings.POLLERS_ORDER),
    ],
)
def test_kafka_provisioned_pollers(source: str, config: dict[str, Any], message: str | None) -> None:
    _check_provisioned_pollers(source, config, message)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"MinimumPollers": 2, "MaximumPollers": 10_000}, None),
        ({"MinimumPollers": 200}, None),  # the default maximum, 200, is not below
        ({"MaximumPollers": 2}, None),  # nor is the default minimum, 2, above
        ({"MinimumPollers": 1}, mappings.pollers_range("MinimumPollers", 2, 200)),
        ({"MaximumPollers": 1}, mappings.pollers_range("MaximumPollers", 2, 10_000)),
        ({"MinimumPollers": 6, "MaximumPollers": 5}, mappings.POLLERS_ORDER),
    ],
)
def test_sqs_provisioned_pollers(config: dict[str, Any], message: str | None) -> None:
    _check_provisioned_pollers("sqs", config, message)


def _check_provisioned_pollers(source: str, config: dict[str, Any], message: str | None) -> None:
    if message is None:
        assert create(source, ProvisionedPollerConfig=config).params["ProvisionedPollerConfig"] == config
        return
    err = error_of(create, source, ProvisionedPollerConfig=config)
    assert type(err) is InvalidParameterValueException and err.message == message
    err = error_of(update, source, {"ProvisionedPollerConfig": config})
    assert type(err) is InvalidParameterValueException and err.message == message


def test_kafka_pollers_out_of_model_range_are_validation_errors() -> None:
    err = error_of(create, "smk", ProvisionedPollerConfig={"MinimumPollers": 201})
    assert type(err) is ValidationException
    assert err.message == coral(at("201", "provisionedPollerConfig.minimumPollers", LE.format(200)))


def test_schema_registry_config_is_validated_and_kept() -> None:
    registry = {
        "SchemaRegistryURI": f"arn:aws:glue:us-east-1:{ACCOUNT}:registry/r",
        "EventRecordFormat": "JSON",
        "AccessConfigs": [{"Type": "BASIC_AUTH", "URI": SECRET}],
        "SchemaValidationConfigs": [{"Attribute": "VALUE"}],
    }
    key = "AmazonManagedKafkaEventSourceConfig"
    assert create("msk", **{key: {"SchemaRegistryConfig": registry}}).params[key] == {
        "ConsumerGroupId": UUID,
        "SchemaRegistryConfig": registry,
    }
    avro = {**registry, "EventRecordFormat": "AVRO"}
    err = error_of(create, "msk", **{key: {"SchemaRegistryConfig": avro}})
    assert type(err) is ValidationException
    assert "amazonManagedKafkaEventSourceConfig.schemaRegistryConfig.eventRecordFormat" in err.message


def test_logging_config_is_validated_and_kept() -> None:
    assert create("smk", LoggingConfig={"SystemLogLevel": "WARN"}).params["LoggingConfig"] == {
        "SystemLogLevel": "WARN"
    }
    err = error_of(create, "smk", LoggingConfig={"SystemLogLevel": "ERROR"})
    assert type(err) is ValidationException
    assert err.message == coral(
        at("ERROR", "loggingConfig.systemLogLevel", "Member must satisfy enum value set: [DEBUG, INFO, WARN]")
    )
