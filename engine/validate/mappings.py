"""Validation of CreateEventSourceMapping / UpdateEventSourceMapping request bodies (spec section 8).

Two layers, as AWS has them: the Lambda service model (service_model.py), then the source rules of spec
8.4. This module holds AWS's order of checks and the rules every source shares; what a source accepts,
its defaults and its own rules are in its profile (engine/sources/). The result is the canonical
parameter dict a mapping stores and the API returns (the source's defaults applied, removals folded in).

Order of checks on create (first failure wins): the body must be readable (JSON types ->
SerializationException; unknown members -> ValidationException), then spec 8.4 rules 1-4, then the model
constraints (rule 5 is one of them), then rules 6-7 and the remaining source rules.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidParameterValueException
from engine.model import EventSourceMapping, SourceKind, source_kind
from engine.senders import destination_kind, kafka_destination_topic
from engine.sources.profile import DEFAULT_MAX_POLLERS, STREAM_PARAMS, SourceProfile
from engine.sources.registry import profile_of
from engine.validate.service_model import (
    NOT_NULL,
    camel,
    coral_message,
    epoch_seconds,
    input_shape,
    inspect_body,
    violation,
)
from engine.validate.tags import check_tags

CREATE_OPERATION = "CreateEventSourceMapping"
UPDATE_OPERATION = "UpdateEventSourceMapping"

UNRECOGNIZED_SOURCE = "Unrecognized event source."
MISSING_ACCESS_CONFIGURATIONS = "Required 'sourceAccessConfigurations' parameter is missing."
RECORD_AGE_RANGE = (
    "MaximumRecordAgeInSeconds must be either -1 (forever) or between 60 and 604800 (inclusive)"
)
TIMESTAMP_REQUIRED = "Need to specify a timestamp"
# The texts below are not known from AWS [UNVERIFIED]; they follow AWS's wording where a sibling is known.
TIMESTAMP_WITHOUT_AT_TIMESTAMP = (
    "StartingPositionTimestamp is only supported with StartingPosition AT_TIMESTAMP."
)
CONSUMER_GROUP_IMMUTABLE = "ConsumerGroupId cannot be changed after the event source mapping is created."
KAFKA_DESTINATION_SAME_TOPIC = "The Kafka on-failure destination topic must differ from the source topic."
POLLERS_ORDER = "MaximumPollers must be greater than or equal to MinimumPollers"

#: Members only some sources take (spec 8.4's applicability table): each profile's ``accepted_params``
#: says which; every source takes the others.
SOURCE_SPECIFIC_PARAMS = STREAM_PARAMS | {
    "SelfManagedEventSource",
    "ScalingConfig",
    "ProvisionedPollerConfig",
    "Topics",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "Queues",
    "SourceAccessConfigurations",
    "LoggingConfig",
    "DocumentDBEventSourceConfig",  # no profile takes it: DocumentDB sources are not recognised here
}
#: Metrics only some sources offer (the model's doc string: "Amazon MSK and self-managed Apache Kafka");
#: each profile's ``accepted_metrics`` says which.
SOURCE_SPECIFIC_METRICS = frozenset({"ErrorCount", "KafkaMetrics"})

#: Request members that are not EventSourceMappingConfiguration parameters.
_NOT_PARAMS = frozenset({"FunctionName", "Enabled", "Tags"})


def unsupported_parameter(name: str) -> str:
    return f"Unsupported {name} parameter for given event source mapping type."


def unsupported_starting_position(arn: str) -> str:
    return f"Unsupported starting position for arn type: {arn}"


def unsupported_destination(destination: str) -> str:
    return f"Unsupported destination {destination} for given event source mapping type."


def unsupported_access_type(access_type: str) -> str:
    return f"Unsupported SourceAccessConfigurations type {access_type} for given event source mapping type."


def missing_access_type(access_type: str) -> str:
    return f"Required {access_type} source access configuration is missing."


def access_type_immutable(access_type: str) -> str:
    return f"The {access_type} source access configuration cannot be changed."


def unsupported_metric(metric: str) -> str:
    return f"Unsupported metric {metric} for given event source mapping type."


def pollers_range(name: str, low: int, high: int) -> str:
    return f"{name} must be between {low} and {high} inclusive"


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
    pending = inspect_body(input_shape(CREATE_OPERATION), body)
    kind = source_kind(body)
    if kind is None:
        raise InvalidParameterValueException(UNRECOGNIZED_SOURCE)
    profile = profile_of(kind)
    if profile.access_required_first and not body.get("SourceAccessConfigurations"):
        raise InvalidParameterValueException(MISSING_ACCESS_CONFIGURATIONS)
    _check_no_on_success(body)
    missing = [name for name in profile.required_params if body.get(name) is None]
    if missing:
        # Observed as InvalidParameterValueException in the Coral format plus a full stop (spec 8.4 #4).
        raise InvalidParameterValueException(
            coral_message([violation(None, camel(name), NOT_NULL) for name in missing]) + "."
        )
    pending.raise_violations()
    _check_accepted(profile, body)

    params = copy.deepcopy(dict(profile.default_params))
    if profile.consumer_group_member is not None:
        params[profile.consumer_group_member] = {"ConsumerGroupId": new_uuid}
    for name, value in body.items():
        if name not in _NOT_PARAMS and value is not None:
            _store(profile, params, name, value)
    _check_source_rules(profile, params)
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
    pending = inspect_body(input_shape(UPDATE_OPERATION), body)
    _check_no_on_success(body)
    pending.raise_violations()
    profile = profile_of(current.kind)
    _check_accepted(profile, body)

    params: dict[str, Any] = copy.deepcopy(dict(current.params))
    for name, value in body.items():
        if name in _NOT_PARAMS or value is None:
            continue
        if name == profile.consumer_group_member:
            _check_consumer_group(params.get(name) or {}, value)
        _store(profile, params, name, value)
    if body.get("SourceAccessConfigurations") is not None:
        _keep_create_only_access(profile, current.params.get("SourceAccessConfigurations") or [], params)
    _check_source_rules(profile, params)
    return UpdateRequest(function_name=body.get("FunctionName"), enabled=body.get("Enabled"), params=params)


def model_shape_names() -> dict[str, str]:
    """The model's input shape per operation validated here."""
    return {op: input_shape(op) for op in (CREATE_OPERATION, UPDATE_OPERATION)}


def _check_no_on_success(body: Mapping[str, Any]) -> None:
    if (body.get("DestinationConfig") or {}).get("OnSuccess") is not None:
        raise InvalidParameterValueException(unsupported_parameter("DestinationConfig"))


def _check_accepted(profile: SourceProfile, body: Mapping[str, Any]) -> None:
    for name, value in body.items():
        if value is not None and name in SOURCE_SPECIFIC_PARAMS and name not in profile.accepted_params:
            raise InvalidParameterValueException(unsupported_parameter(name))


def _check_source_rules(profile: SourceProfile, params: Mapping[str, Any]) -> None:
    """Rules on the merged parameters, so an update is judged by what the mapping would become."""
    position = params.get("StartingPosition")
    if position is not None and position not in profile.starting_positions:
        raise InvalidParameterValueException(
            unsupported_starting_position(params.get("EventSourceArn") or "")
        )
    profile.check_params(params)
    has_timestamp = "StartingPositionTimestamp" in params
    if position == "AT_TIMESTAMP" and not has_timestamp:
        raise InvalidParameterValueException(TIMESTAMP_REQUIRED)
    if has_timestamp and position != "AT_TIMESTAMP":
        raise InvalidParameterValueException(TIMESTAMP_WITHOUT_AT_TIMESTAMP)
    if 0 <= params.get("MaximumRecordAgeInSeconds", -1) < 60:
        raise InvalidParameterValueException(RECORD_AGE_RANGE)
    _check_access(profile, params.get("SourceAccessConfigurations"))
    _check_destination(profile, params)
    if params.get("ProvisionedPollerConfig"):
        _check_pollers(profile, params["ProvisionedPollerConfig"])
    for metric in (params.get("MetricsConfig") or {}).get("Metrics") or []:
        if metric in SOURCE_SPECIFIC_METRICS and metric not in profile.accepted_metrics:
            raise InvalidParameterValueException(unsupported_metric(metric))


def _check_pollers(profile: SourceProfile, config: Mapping[str, Any]) -> None:
    """Texts [UNVERIFIED]. The order is checked with the defaults applied (SQS: 2 and 200, Kafka: 1 and
    200), as the engine will run them."""
    for name, (low, high) in zip(("MinimumPollers", "MaximumPollers"), profile.poller_ranges, strict=True):
        value = config.get(name)
        if value is not None and not low <= value <= high:
            raise InvalidParameterValueException(pollers_range(name, low, high))
    low_default = profile.provisioned_min_pollers
    if config.get("MaximumPollers", DEFAULT_MAX_POLLERS) < config.get("MinimumPollers", low_default):
        raise InvalidParameterValueException(POLLERS_ORDER)


def _check_access(profile: SourceProfile, configurations: list[dict[str, Any]] | None) -> None:
    types = [c.get("Type") for c in configurations or []]
    for access_type in types:
        if access_type is not None and access_type not in profile.access_types:
            raise InvalidParameterValueException(unsupported_access_type(access_type))
    if profile.access_required and not types:
        raise InvalidParameterValueException(MISSING_ACCESS_CONFIGURATIONS)
    for required in profile.required_access_types:
        if required not in types:
            raise InvalidParameterValueException(missing_access_type(required))


def _check_destination(profile: SourceProfile, params: Mapping[str, Any]) -> None:
    destination = ((params.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    if not destination:
        return
    target = destination_kind(destination)
    if target is None or target not in profile.destinations:
        raise InvalidParameterValueException(unsupported_destination(destination))
    if target == "kafka" and kafka_destination_topic(destination) in (params.get("Topics") or []):
        raise InvalidParameterValueException(KAFKA_DESTINATION_SAME_TOPIC)


def _check_consumer_group(current: Mapping[str, Any], requested: Mapping[str, Any]) -> None:
    wanted = requested.get("ConsumerGroupId")
    if wanted is not None and wanted != current.get("ConsumerGroupId"):
        raise InvalidParameterValueException(CONSUMER_GROUP_IMMUTABLE)


def _keep_create_only_access(
    profile: SourceProfile, before: list[dict[str, Any]], params: dict[str, Any]
) -> None:
    """A create-only access type (RabbitMQ's VIRTUAL_HOST): an update may repeat it or leave it out (it
    is kept), not change it."""
    for access_type in profile.create_only_access_types:
        old = [c for c in before if c.get("Type") == access_type]
        new = [c for c in params["SourceAccessConfigurations"] if c.get("Type") == access_type]
        if new and new != old:
            raise InvalidParameterValueException(access_type_immutable(access_type))
        if not new:
            params["SourceAccessConfigurations"] = params["SourceAccessConfigurations"] + old


def _store(profile: SourceProfile, params: dict[str, Any], name: str, value: Any) -> None:
    """Set one request member in its canonical (response) form; some values mean "remove"."""
    value = _without_nulls(value)
    if name == "FilterCriteria":
        # {"Filters": []} and {} both mean no filtering; the response then has no FilterCriteria.
        _set_or_remove(params, name, value if value.get("Filters") else None)
    elif name == "DestinationConfig":
        destination = (value.get("OnFailure") or {}).get("Destination")
        if destination:
            params[name] = {"OnFailure": {"Destination": destination}}
        else:  # "" removes it: back to the source's default (streams show an empty OnFailure)
            _set_or_remove(params, name, copy.deepcopy(profile.default_params.get(name)))
    elif name in ("ScalingConfig", "ProvisionedPollerConfig", "KMSKeyArn"):
        # {} lifts the concurrency cap / returns to on-demand pollers; "" drops the customer key
        _set_or_remove(params, name, value or None)
    elif name == "StartingPositionTimestamp":
        params[name] = epoch_seconds(value, name)
    elif name == profile.consumer_group_member:
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
