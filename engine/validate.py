"""Validation of CreateEventSourceMapping / UpdateEventSourceMapping request bodies (spec section 8).

Two layers, as AWS has them: the Lambda service model (botocore's bundled copy: members, types, ranges,
lengths, patterns, enums), then the source-specific rules of spec 8.4. The result is the canonical
parameter dict a mapping stores and the API returns (per-source defaults applied, removals folded in).

Order of checks on create (first failure wins): the body must be readable (JSON types ->
SerializationException; unknown members -> ValidationException), then spec 8.4 rules 1-4, then the model
constraints (rule 5 is one of them), then rules 6-7 and the remaining source rules.
"""

from __future__ import annotations

import copy
import functools
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.loaders import create_loader

from engine.errors import InvalidParameterValueException, SerializationException, ValidationException
from engine.model import EventSourceMapping, SourceKind, source_kind
from engine.senders import destination_kind, kafka_destination_topic
from engine.sources.profile import DEFAULT_MAX_POLLERS
from engine.sources.registry import profile_of

#: The API allows BatchSize 10,000 for DynamoDB today (spec 3.1); older tools (CDK) still cap it at 1,000.
DYNAMODB_LEGACY_MAX_BATCH_SIZE_ENFORCED = False
DYNAMODB_LEGACY_MAX_BATCH_SIZE = 1000
SQS_FIFO_MAX_BATCH_SIZE = 10
#: Above this an SQS standard queue needs a batching window (spec 3.1).
SQS_MAX_BATCH_SIZE_WITHOUT_WINDOW = 10
#: Observed for self-managed Kafka when StartingPosition is omitted (spec 6.1); applied to MSK too.
KAFKA_DEFAULT_STARTING_POSITION = "TRIM_HORIZON"

CREATE_OPERATION = "CreateEventSourceMapping"
UPDATE_OPERATION = "UpdateEventSourceMapping"

UNRECOGNIZED_SOURCE = "Unrecognized event source."
MISSING_ACCESS_CONFIGURATIONS = "Required 'sourceAccessConfigurations' parameter is missing."
SQS_WINDOW_REQUIRED = (
    "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"
)
FIFO_WINDOW = "Batching window is not supported for FIFO queues"
RECORD_AGE_RANGE = (
    "MaximumRecordAgeInSeconds must be either -1 (forever) or between 60 and 604800 (inclusive)"
)
TIMESTAMP_REQUIRED = "Need to specify a timestamp"
# The texts below are not known from AWS [UNVERIFIED]; they follow AWS's wording where a sibling is known.
TIMESTAMP_WITHOUT_AT_TIMESTAMP = (
    "StartingPositionTimestamp is only supported with StartingPosition AT_TIMESTAMP."
)
MISSING_BASIC_AUTH = "Required BASIC_AUTH source access configuration is missing."
SCALING_AND_PROVISIONED = (
    "ScalingConfig and ProvisionedPollerConfig cannot be used together on an SQS event source mapping."
)
CONSUMER_GROUP_IMMUTABLE = "ConsumerGroupId cannot be changed after the event source mapping is created."
VIRTUAL_HOST_IMMUTABLE = "The VIRTUAL_HOST source access configuration cannot be changed."
KAFKA_DESTINATION_SAME_TOPIC = "The Kafka on-failure destination topic must differ from the source topic."
POLLERS_ORDER = "MaximumPollers must be greater than or equal to MinimumPollers"
TOO_MANY_TAGS = "Number of tags exceeds resource tag limit."
#: What AWS answered to TagResource with no tags (LocalStack's AWS-validated snapshot).
NO_TAGS = "An error occurred and the request cannot be processed."

#: Lambda's quota of tags per resource.
MAX_TAGS_PER_RESOURCE = 50
#: (MinimumPollers, MaximumPollers) ranges per source, from the model's doc strings: its shapes allow
#: MinimumPollers 1-200 and MaximumPollers 1-10,000 for both
POLLER_RANGES = {SourceKind.SQS: ((2, 200), (2, 10_000)), SourceKind.MSK: ((1, 200), (1, 2000))}


def pollers_range(name: str, low: int, high: int) -> str:
    return f"{name} must be between {low} and {high} inclusive"


#: Metrics the model's doc string names "(Amazon MSK and self-managed Apache Kafka)".
KAFKA_ONLY_METRICS = frozenset({"ErrorCount", "KafkaMetrics"})

TAG_RESOURCE, UNTAG_RESOURCE = "TagResource", "UntagResource"


def unsupported_destination(destination: str) -> str:
    return f"Unsupported destination {destination} for given event source mapping type."


def unsupported_parameter(name: str) -> str:
    return f"Unsupported {name} parameter for given event source mapping type."


def batch_size_range(maximum: int) -> str:
    return f"Maximum batch size must be between 1 and {maximum} inclusive"


def unsupported_access_type(access_type: str) -> str:
    return f"Unsupported SourceAccessConfigurations type {access_type} for given event source mapping type."


def unsupported_metric(metric: str) -> str:
    return f"Unsupported metric {metric} for given event source mapping type."


def unsupported_tagging_resource(resource: str) -> str:
    """Observed (hashicorp/terraform-provider-aws#39849): AWS's answer to an ARN it cannot tag."""
    return f"Unsupported resource type for tagging or invalid arn: {resource}"


def reserved_tag_key(key: str) -> str:
    return f"Tag keys starting with 'aws:' are reserved for AWS use: {key}"


@dataclass(frozen=True)
class CreateRequest:
    kind: SourceKind
    function_name: str
    enabled: bool
    params: dict[str, Any]
    #: Tags belong to the ESM's ARN (ListTags), not to EventSourceMappingConfiguration.
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateRequest:
    function_name: str | None
    enabled: bool | None
    #: The full new canonical params (current ones with the update applied).
    params: dict[str, Any]


def validate_create(body: Mapping[str, Any], *, new_uuid: str) -> CreateRequest:
    """Validate a CreateEventSourceMapping body; ``new_uuid`` is the default Kafka ConsumerGroupId."""
    pending = _inspect(model_shape_names()[CREATE_OPERATION], body)
    kind = source_kind(body)
    if kind is None:
        raise InvalidParameterValueException(UNRECOGNIZED_SOURCE)
    if kind is SourceKind.SELF_MANAGED_KAFKA and not body.get("SourceAccessConfigurations"):
        raise InvalidParameterValueException(MISSING_ACCESS_CONFIGURATIONS)
    _check_no_on_success(body)
    missing = [name for name in _REQUIRED_FOR[kind] if body.get(name) is None]
    if missing:
        # Observed as InvalidParameterValueException in the Coral format plus a full stop (spec 8.4 #4).
        raise InvalidParameterValueException(
            _coral_message([_violation(None, _camel(name), _NOT_NULL) for name in missing]) + "."
        )
    pending.raise_violations()
    _check_applicable(kind, body)

    params = copy.deepcopy(_DEFAULTS[kind])
    if kind.is_kafka:
        params[_KAFKA_CONFIG[kind]] = {"ConsumerGroupId": new_uuid}
    for name, value in body.items():
        if name not in _NOT_PARAMS and value is not None:
            _store(kind, params, name, value)
    _check_source_rules(kind, params)
    tags = dict(body.get("Tags") or {})
    check_tags(tags)
    return CreateRequest(
        kind=kind,
        function_name=body["FunctionName"],
        enabled=body.get("Enabled") is not False,
        params=params,
        tags=tags,
    )


def validate_update(current: EventSourceMapping, body: Mapping[str, Any]) -> UpdateRequest:
    """Validate an UpdateEventSourceMapping body against the mapping it changes.

    Create-only members (EventSourceArn, StartingPosition, Topics, Queues, ...) are not in the model's
    update shape, so they are refused as unknown members.
    """
    pending = _inspect(model_shape_names()[UPDATE_OPERATION], body)
    _check_no_on_success(body)
    pending.raise_violations()
    kind = current.kind
    _check_applicable(kind, body)

    params: dict[str, Any] = copy.deepcopy(dict(current.params))
    for name, value in body.items():
        if name in _NOT_PARAMS or value is None:
            continue
        if name in _KAFKA_CONFIG.values():
            _check_consumer_group(params.get(name) or {}, value)
        _store(kind, params, name, value)
    if kind is SourceKind.MQ and body.get("SourceAccessConfigurations") is not None:
        _keep_virtual_host(current.params.get("SourceAccessConfigurations") or [], params)
    _check_source_rules(kind, params)
    return UpdateRequest(function_name=body.get("FunctionName"), enabled=body.get("Enabled"), params=params)


def model_shape_names() -> dict[str, str]:
    """The model's input shape per operation validated here."""
    operations = _model()["operations"]
    return {op: operations[op]["input"]["shape"] for op in (CREATE_OPERATION, UPDATE_OPERATION)}


# --- tagging (TagResource, UntagResource, ListTags on event source mapping ARNs) ----------------------


def tagged_mapping_uuid(resource: str) -> str:
    """The UUID an event source mapping ARN names. Any other ARN, valid or not, is one this engine
    cannot tag: it holds no functions or code signing configurations."""
    pattern = _shape(_input_member(TAG_RESOURCE, "Resource")["shape"])["pattern"]
    resource_type, _, resource_id = resource.split(":", 5)[-1].partition(":")
    if not _java_pattern(pattern).fullmatch(resource) or resource_type != "event-source-mapping":
        raise InvalidParameterValueException(unsupported_tagging_resource(resource))
    return resource_id.lower()


def validate_tag_resource(body: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a TagResource body (model constraints on keys and values, AWS's rules on the rest)."""
    _inspect(_input_shape(TAG_RESOURCE), body).raise_violations()
    tags = dict(body["Tags"])
    if not tags:
        raise InvalidParameterValueException(NO_TAGS)
    check_tags(tags)
    return tags


def validate_untag_keys(keys: Sequence[str] | None) -> list[str]:
    """UntagResource's ``tagKeys`` query parameters (required, each a model TagKey)."""
    member = _input_member(UNTAG_RESOURCE, "TagKeys")
    inspection = _Inspection()
    given = None if keys is None else list(keys)
    inspection.member(member["shape"], given, member["locationName"], member["locationName"])
    inspection.raise_violations()
    return given or []


def check_tags(tags: Mapping[str, str]) -> None:
    """The rules beyond the model on a resource's whole tag set (texts [UNVERIFIED])."""
    if len(tags) > MAX_TAGS_PER_RESOURCE:
        raise InvalidParameterValueException(TOO_MANY_TAGS)
    for key in tags:
        if key.lower().startswith("aws:"):
            raise InvalidParameterValueException(reserved_tag_key(key))


def _input_shape(operation: str) -> str:
    shape: str = _model()["operations"][operation]["input"]["shape"]
    return shape


def _input_member(operation: str, member: str) -> dict[str, Any]:
    found: dict[str, Any] = _shape(_input_shape(operation))["members"][member]
    return found


# --- source-specific rules (spec 8.4) ---------------------------------------------------------------

_STREAMS = frozenset({SourceKind.KINESIS, SourceKind.DYNAMODB})
_KAFKA = frozenset({SourceKind.MSK, SourceKind.SELF_MANAGED_KAFKA})
_SQS = frozenset({SourceKind.SQS})
_MQ = frozenset({SourceKind.MQ})

#: Members valid only for some source kinds (spec 8.4 applicability table); any other member is valid for all.
_APPLICABLE: dict[str, frozenset[SourceKind]] = {
    "EventSourceArn": frozenset(SourceKind) - {SourceKind.SELF_MANAGED_KAFKA},
    "SelfManagedEventSource": frozenset({SourceKind.SELF_MANAGED_KAFKA}),
    "StartingPosition": _STREAMS | _KAFKA,
    "StartingPositionTimestamp": _STREAMS | _KAFKA,
    "ParallelizationFactor": _STREAMS,
    "TumblingWindowInSeconds": _STREAMS,
    "MaximumRetryAttempts": _STREAMS | _KAFKA,
    "MaximumRecordAgeInSeconds": _STREAMS | _KAFKA,
    "BisectBatchOnFunctionError": _STREAMS | _KAFKA,
    "DestinationConfig": _STREAMS | _KAFKA,
    "FunctionResponseTypes": _STREAMS | _SQS | _KAFKA,
    "ScalingConfig": _SQS,
    "ProvisionedPollerConfig": _SQS | _KAFKA,
    "Topics": _KAFKA,
    "AmazonManagedKafkaEventSourceConfig": frozenset({SourceKind.MSK}),
    "SelfManagedKafkaEventSourceConfig": frozenset({SourceKind.SELF_MANAGED_KAFKA}),
    "Queues": _MQ,
    "SourceAccessConfigurations": _KAFKA | _MQ,
    "LoggingConfig": _KAFKA,
    "DocumentDBEventSourceConfig": frozenset(),  # DocumentDB sources are not recognised by this engine
}

#: Members a kind cannot do without once the source is known (Kafka's StartingPosition has a default).
_REQUIRED_FOR: dict[SourceKind, tuple[str, ...]] = {
    SourceKind.SQS: (),
    SourceKind.KINESIS: ("StartingPosition",),
    SourceKind.DYNAMODB: ("StartingPosition",),
    SourceKind.MSK: ("Topics",),
    SourceKind.SELF_MANAGED_KAFKA: ("Topics",),
    SourceKind.MQ: ("Queues",),
}

_ACCESS_TYPES: dict[SourceKind, frozenset[str]] = {
    SourceKind.MSK: frozenset(
        {"SASL_SCRAM_512_AUTH", "CLIENT_CERTIFICATE_TLS_AUTH", "VPC_SUBNET", "VPC_SECURITY_GROUP"}
    ),
    SourceKind.SELF_MANAGED_KAFKA: frozenset(
        {
            "BASIC_AUTH",
            "SASL_SCRAM_256_AUTH",
            "SASL_SCRAM_512_AUTH",
            "CLIENT_CERTIFICATE_TLS_AUTH",
            "SERVER_ROOT_CA_CERTIFICATE",
            "VPC_SUBNET",
            "VPC_SECURITY_GROUP",
        }
    ),
    SourceKind.MQ: frozenset({"BASIC_AUTH", "VIRTUAL_HOST"}),
}

_KAFKA_CONFIG = {
    SourceKind.MSK: "AmazonManagedKafkaEventSourceConfig",
    SourceKind.SELF_MANAGED_KAFKA: "SelfManagedKafkaEventSourceConfig",
}

_STREAM_DEFAULTS: dict[str, Any] = {
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
_KAFKA_DEFAULTS: dict[str, Any] = {"BatchSize": 100, "StartingPosition": KAFKA_DEFAULT_STARTING_POSITION}

#: What AWS returns for a mapping created with nothing but the required members (spec 8.2). Kafka and MQ
#: have no MaximumBatchingWindowInSeconds until one is set (their 500 ms default has no integer form).
_DEFAULTS: dict[SourceKind, dict[str, Any]] = {
    SourceKind.SQS: {"BatchSize": 10, "MaximumBatchingWindowInSeconds": 0, "FunctionResponseTypes": []},
    SourceKind.KINESIS: _STREAM_DEFAULTS,
    SourceKind.DYNAMODB: _STREAM_DEFAULTS,
    SourceKind.MSK: _KAFKA_DEFAULTS,
    SourceKind.SELF_MANAGED_KAFKA: _KAFKA_DEFAULTS,
    SourceKind.MQ: {"BatchSize": 100},
}

#: Request members that are not EventSourceMappingConfiguration parameters.
_NOT_PARAMS = frozenset({"FunctionName", "Enabled", "Tags"})


def _check_no_on_success(body: Mapping[str, Any]) -> None:
    if (body.get("DestinationConfig") or {}).get("OnSuccess") is not None:
        raise InvalidParameterValueException(unsupported_parameter("DestinationConfig"))


def _check_applicable(kind: SourceKind, body: Mapping[str, Any]) -> None:
    for name, value in body.items():
        if value is not None and kind not in _APPLICABLE.get(name, frozenset(SourceKind)):
            raise InvalidParameterValueException(unsupported_parameter(name))


def _check_source_rules(kind: SourceKind, params: Mapping[str, Any]) -> None:
    """Rules on the merged parameters, so an update is judged by what the mapping would become."""
    arn = params.get("EventSourceArn") or ""
    position = params.get("StartingPosition")
    if position == "AT_TIMESTAMP" and kind is SourceKind.DYNAMODB:
        raise InvalidParameterValueException(f"Unsupported starting position for arn type: {arn}")
    batch_size = params["BatchSize"]
    window = params.get("MaximumBatchingWindowInSeconds") or 0
    fifo = kind is SourceKind.SQS and arn.endswith(".fifo")
    if kind is SourceKind.SQS and not fifo and batch_size > SQS_MAX_BATCH_SIZE_WITHOUT_WINDOW and window == 0:
        raise InvalidParameterValueException(SQS_WINDOW_REQUIRED)
    if fifo and window > 0:
        raise InvalidParameterValueException(FIFO_WINDOW)
    if fifo and batch_size > SQS_FIFO_MAX_BATCH_SIZE:
        raise InvalidParameterValueException(batch_size_range(SQS_FIFO_MAX_BATCH_SIZE))
    if (
        kind is SourceKind.DYNAMODB
        and DYNAMODB_LEGACY_MAX_BATCH_SIZE_ENFORCED
        and batch_size > DYNAMODB_LEGACY_MAX_BATCH_SIZE
    ):
        raise InvalidParameterValueException(batch_size_range(DYNAMODB_LEGACY_MAX_BATCH_SIZE))
    has_timestamp = "StartingPositionTimestamp" in params
    if position == "AT_TIMESTAMP" and not has_timestamp:
        raise InvalidParameterValueException(TIMESTAMP_REQUIRED)
    if has_timestamp and position != "AT_TIMESTAMP":
        raise InvalidParameterValueException(TIMESTAMP_WITHOUT_AT_TIMESTAMP)
    if 0 <= params.get("MaximumRecordAgeInSeconds", -1) < 60:
        raise InvalidParameterValueException(RECORD_AGE_RANGE)
    _check_access(kind, params.get("SourceAccessConfigurations"))
    _check_destination(kind, params)
    if kind is SourceKind.SQS and params.get("ScalingConfig") and params.get("ProvisionedPollerConfig"):
        raise InvalidParameterValueException(SCALING_AND_PROVISIONED)
    if params.get("ProvisionedPollerConfig"):
        _check_pollers(kind, params["ProvisionedPollerConfig"])
    for metric in (params.get("MetricsConfig") or {}).get("Metrics") or []:
        if metric in KAFKA_ONLY_METRICS and not kind.is_kafka:
            raise InvalidParameterValueException(unsupported_metric(metric))


def _check_pollers(kind: SourceKind, config: Mapping[str, Any]) -> None:
    """Texts [UNVERIFIED]. The order is checked with the defaults applied (SQS: 2 and 200, Kafka: 1 and
    200), as the engine will run them."""
    ranges = POLLER_RANGES[SourceKind.SQS if kind is SourceKind.SQS else SourceKind.MSK]
    for name, (low, high) in zip(("MinimumPollers", "MaximumPollers"), ranges, strict=True):
        value = config.get(name)
        if value is not None and not low <= value <= high:
            raise InvalidParameterValueException(pollers_range(name, low, high))
    low_default = profile_of(kind).provisioned_min_pollers
    if config.get("MaximumPollers", DEFAULT_MAX_POLLERS) < config.get("MinimumPollers", low_default):
        raise InvalidParameterValueException(POLLERS_ORDER)


def _check_access(kind: SourceKind, configurations: list[dict[str, Any]] | None) -> None:
    allowed = _ACCESS_TYPES.get(kind)
    if allowed is None:
        return
    types = [c.get("Type") for c in configurations or []]
    for access_type in types:
        if access_type is not None and access_type not in allowed:
            raise InvalidParameterValueException(unsupported_access_type(access_type))
    if kind in (SourceKind.SELF_MANAGED_KAFKA, SourceKind.MQ) and not types:
        raise InvalidParameterValueException(MISSING_ACCESS_CONFIGURATIONS)
    if kind is SourceKind.MQ and "BASIC_AUTH" not in types:
        raise InvalidParameterValueException(MISSING_BASIC_AUTH)


def _check_destination(kind: SourceKind, params: Mapping[str, Any]) -> None:
    destination = ((params.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    if not destination:
        return
    target = destination_kind(destination)
    if target is None or (target == "kafka" and not kind.is_kafka):
        raise InvalidParameterValueException(unsupported_destination(destination))
    if target == "kafka" and kafka_destination_topic(destination) in (params.get("Topics") or []):
        raise InvalidParameterValueException(KAFKA_DESTINATION_SAME_TOPIC)


def _check_consumer_group(current: Mapping[str, Any], requested: Mapping[str, Any]) -> None:
    wanted = requested.get("ConsumerGroupId")
    if wanted is not None and wanted != current.get("ConsumerGroupId"):
        raise InvalidParameterValueException(CONSUMER_GROUP_IMMUTABLE)


def _keep_virtual_host(before: list[dict[str, Any]], params: dict[str, Any]) -> None:
    """VIRTUAL_HOST is create-only: an update may repeat it or leave it out (it is kept), not change it."""
    old = [c for c in before if c.get("Type") == "VIRTUAL_HOST"]
    new = [c for c in params["SourceAccessConfigurations"] if c.get("Type") == "VIRTUAL_HOST"]
    if new and new != old:
        raise InvalidParameterValueException(VIRTUAL_HOST_IMMUTABLE)
    if not new:
        params["SourceAccessConfigurations"] = params["SourceAccessConfigurations"] + old


def _store(kind: SourceKind, params: dict[str, Any], name: str, value: Any) -> None:
    """Set one request member in its canonical (response) form; some values mean "remove"."""
    value = _without_nulls(value)
    if name == "FilterCriteria":
        # {"Filters": []} and {} both mean no filtering; the response then has no FilterCriteria.
        _set_or_remove(params, name, value if value.get("Filters") else None)
    elif name == "DestinationConfig":
        destination = (value.get("OnFailure") or {}).get("Destination")
        if destination:
            params[name] = {"OnFailure": {"Destination": destination}}
        else:  # "" removes; streams still show the empty OnFailure they were created with
            _set_or_remove(params, name, {"OnFailure": {}} if kind.is_stream else None)
    elif name in ("ScalingConfig", "ProvisionedPollerConfig", "KMSKeyArn"):
        # {} lifts the concurrency cap / returns to on-demand pollers; "" drops the customer key
        _set_or_remove(params, name, value or None)
    elif name == "StartingPositionTimestamp":
        params[name] = _epoch_seconds(value, name)
    elif name in _KAFKA_CONFIG.values():
        params[name] = {**params.get(name, {}), **value}
    else:
        params[name] = value


def _set_or_remove(params: dict[str, Any], name: str, value: Any) -> None:
    if value is None:
        params.pop(name, None)
    else:
        params[name] = value


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


# --- the service model --------------------------------------------------------------------------------

_NOT_NULL = "Member must not be null"
_COMPOUND = frozenset({"structure", "list", "map"})
_INT_BITS = {"integer": 32, "long": 64}
_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
}
_JSON_TYPE_NAMES = {"structure": "object", "map": "object", "list": "array", "long": "integer"}

#: Enum value orders as AWS prints them, where they differ from the model's (spec 8.4 #5, observed).
_OBSERVED_ENUM_ORDER: dict[str, tuple[str, ...]] = {
    "EventSourcePosition": ("LATEST", "AT_TIMESTAMP", "TRIM_HORIZON"),
}


@functools.cache
def _model() -> dict[str, Any]:
    model: dict[str, Any] = create_loader().load_service_model("lambda", "service-2")
    return model


def _shape(name: str) -> dict[str, Any]:
    shape: dict[str, Any] = _model()["shapes"][name]
    return shape


def _body_members(shape: Mapping[str, Any]) -> dict[str, Any]:
    """Members carried in the JSON body (the path member UUID is not)."""
    return {name: m for name, m in shape["members"].items() if "location" not in m}


def _inspect(shape_name: str, body: Any) -> _Inspection:
    inspection = _Inspection()
    inspection.member(shape_name, body, "", "")
    inspection.raise_unknown()
    return inspection


class _Inspection:
    """One walk over a body. A JSON type mismatch raises at once (the body cannot be read); unknown
    members and constraint violations are collected, since AWS reports all violations together.

    ``coral`` is the member path AWS prints (``scalingConfig.maximumConcurrency``, ``topics``,
    ``sourceAccessConfigurations.1.member.type``); ``wire`` is the body path the caller wrote.
    """

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.violations: list[str] = []

    def raise_unknown(self) -> None:
        if self.unknown:
            raise ValidationException("; ".join(self.unknown))

    def raise_violations(self) -> None:
        if self.violations:
            raise ValidationException(_coral_message(self.violations))

    def member(self, shape_name: str, value: Any, coral: str, wire: str) -> None:
        if value is None:
            self.violations.append(_violation(None, coral, _NOT_NULL))
            return
        shape = _shape(shape_name)
        kind = shape["type"]
        if kind == "structure":
            self._structure(shape, value, coral, wire)
        elif kind == "list":
            self._list(shape, value, coral, wire)
        elif kind == "map":
            self._map(shape, value, coral, wire)
        else:
            self.violations += [_violation(value, coral, c) for c in _scalar(shape_name, value, wire)]

    def _structure(self, shape: Mapping[str, Any], value: Any, coral: str, wire: str) -> None:
        _expect(value, dict, "structure", wire)
        members = _body_members(shape)
        for name in value:
            if name not in members:
                self.unknown.append(
                    f'Unknown parameter in {wire or "input"}: "{name}", must be one of: {", ".join(members)}'
                )
        required = set(shape.get("required", ()))
        for name, member in members.items():
            # JSON null reads as "not set", as for an omitted member
            if value.get(name) is not None or name in required:
                self.member(member["shape"], value.get(name), _join(coral, _camel(name)), _join(wire, name))

    def _list(self, shape: Mapping[str, Any], value: Any, coral: str, wire: str) -> None:
        _expect(value, list, "list", wire)
        self.violations += [_violation(value, coral, c) for c in _bounds(shape, len(value), "length")]
        item_shape = shape["member"]["shape"]
        if _shape(item_shape)["type"] in _COMPOUND:
            for i, item in enumerate(value):
                self.member(item_shape, item, f"{coral}.{i + 1}.member", f"{wire}[{i}]")
            return
        # scalar items are reported on the list itself, as Coral does
        problems = (c for i, item in enumerate(value) for c in _item(item_shape, item, f"{wire}[{i}]"))
        self._aggregate(value, coral, "Member must satisfy constraint", problems)

    def _map(self, shape: Mapping[str, Any], value: Any, coral: str, wire: str) -> None:
        _expect(value, dict, "map", wire)
        self.violations += [_violation(value, coral, c) for c in _bounds(shape, len(value), "length")]
        key_problems = (c for key in value for c in _scalar(shape["key"]["shape"], key, wire))
        self._aggregate(value, coral, "Map keys must satisfy constraint", key_problems)
        value_shape = shape["value"]["shape"]
        if _shape(value_shape)["type"] in _COMPOUND:
            for key, item in value.items():
                self.member(value_shape, item, f"{coral}.{key}", f"{wire}.{key}")
            return
        problems = (c for key, item in value.items() for c in _item(value_shape, item, f"{wire}.{key}"))
        self._aggregate(value, coral, "Map value must satisfy constraint", problems)

    def _aggregate(self, value: Any, coral: str, label: str, problems: Iterable[str]) -> None:
        """One violation for all the scalar items of a list or map, as Coral reports them."""
        unique = list(dict.fromkeys(problems))
        if unique:
            self.violations.append(_violation(value, coral, f"{label}: [{', '.join(unique)}]"))


def _item(shape_name: str, value: Any, wire: str) -> list[str]:
    return [_NOT_NULL] if value is None else _scalar(shape_name, value, wire)


def _scalar(shape_name: str, value: Any, wire: str) -> list[str]:
    """Check a scalar's JSON type (raising) and return the constraints it fails."""
    shape = _shape(shape_name)
    kind = shape["type"]
    if kind == "timestamp":
        _epoch_seconds(value, wire)
        return []
    _expect(value, _SCALAR_TYPES[kind], kind, wire)
    problems: list[str] = []
    if kind in _INT_BITS:
        limit = 2 ** (_INT_BITS[kind] - 1)
        if not -limit <= value < limit:
            raise SerializationException(
                f"Invalid value for {_where(wire)}: {value} does not fit in a {_INT_BITS[kind]}-bit integer."
            )
        problems += _bounds(shape, value, "value")
    if kind == "string":
        if "enum" in shape and value not in shape["enum"]:
            problems.append(_enum_constraint(shape_name, shape["enum"]))
        problems += _bounds(shape, len(value), "length")
        if "pattern" in shape and not _java_pattern(shape["pattern"]).fullmatch(value):
            problems.append(f"Member must satisfy regular expression pattern: {shape['pattern']}")
    return problems


def _bounds(shape: Mapping[str, Any], measured: int, noun: str) -> list[str]:
    problems = []
    if "min" in shape and measured < shape["min"]:
        problems.append(f"Member must have {noun} greater than or equal to {shape['min']}")
    if "max" in shape and measured > shape["max"]:
        problems.append(f"Member must have {noun} less than or equal to {shape['max']}")
    return problems


def _enum_constraint(shape_name: str, values: list[str]) -> str:
    observed = _OBSERVED_ENUM_ORDER.get(shape_name)
    order = observed if observed is not None and set(observed) == set(values) else values
    return f"Member must satisfy enum value set: [{', '.join(order)}]"


def _expect(value: Any, types: type | tuple[type, ...], model_type: str, wire: str) -> None:
    # bool is an int in Python but not in JSON
    if not isinstance(value, types) or (isinstance(value, bool) and model_type != "boolean"):
        expected = _JSON_TYPE_NAMES.get(model_type, model_type)
        raise SerializationException(
            f"Invalid type for {_where(wire)}: expected {expected}, got {_json_type(value)}."
        )


def _epoch_seconds(value: Any, wire: str) -> float:
    """A model timestamp: epoch seconds (what boto3 sends) or an ISO 8601 string (UTC when unzoned)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise SerializationException(
        f"Invalid value for {_where(wire)}: expected a timestamp (epoch seconds or ISO 8601), "
        f"got {_json_type(value)} {_java_string(value)!r}."
    )


def _where(wire: str) -> str:
    return f"member '{wire}'" if wire else "the request body"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _coral_message(violations: list[str]) -> str:
    count = len(violations)
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} detected: {'; '.join(violations)}"


def _violation(value: Any, coral: str, constraint: str) -> str:
    shown = "null" if value is None else f"'{_java_string(value)}'"
    return f"Value {shown} at '{coral}' failed to satisfy constraint: {constraint}"


def _java_string(value: Any) -> str:
    """Render a value as the Java service prints it in messages (``[a, b]``, ``{k=v}``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_java_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_string(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value)


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- Java regular expressions -------------------------------------------------------------------------

_UNICODE_PROPERTY = re.compile(r"\\p\{([A-Z][a-z]?)\}")


@functools.cache
def _java_pattern(java: str) -> re.Pattern[str]:
    """Compile a model pattern. Java's syntax is Python's here except Unicode property classes
    (``\\p{L}``), which Python's re lacks: they become explicit code point ranges."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(java):
        prop = _UNICODE_PROPERTY.match(java, i)
        if prop:
            ranges = _category_ranges(prop.group(1))
            out.append(ranges if in_class else f"[{ranges}]")
            i = prop.end()
            continue
        step = 2 if java[i] == "\\" else 1
        if java[i] == "[":
            in_class = True
        elif java[i] == "]":
            in_class = False
        out.append(java[i : i + step])
        i += step
    return re.compile("".join(out))


@functools.cache
def _category_ranges(category: str) -> str:
    """Character-class body for the code points of a Unicode category (``L``) or subcategory (``Lu``)."""
    # Every category name is an upper-case then a lower-case letter, so matches cannot straddle two names.
    names = _all_categories()
    run = re.compile(f"(?:{category}[a-z]{{{2 - len(category)}}})+")
    return "".join(f"\\U{m.start() // 2:08x}-\\U{m.end() // 2 - 1:08x}" for m in run.finditer(names))


@functools.cache
def _all_categories() -> str:
    return "".join(map(unicodedata.category, map(chr, range(sys.maxunicode + 1))))
