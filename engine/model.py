"""What a mapping is: its source kind, state and parameters, and the policy types its source's profile
derives from them (engine.sources)."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

#: AWS's 6 MB invocation payload cap; whether AWS counts 6,291,456 or 6,000,000 bytes is unverified.
DEFAULT_MAX_PAYLOAD_BYTES = 6_291_456


class SourceKind(enum.StrEnum):
    SQS = "sqs"
    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"
    MSK = "kafka"
    SELF_MANAGED_KAFKA = "self-managed-kafka"
    MQ = "mq"


_ARN_SERVICE = re.compile(r"^arn:[^:]+:([^:]+):")


def source_kind(params: Mapping[str, Any]) -> SourceKind | None:
    """The source kind of a CreateEventSourceMapping request, or None when it names no known source."""
    if params.get("SelfManagedEventSource"):
        return SourceKind.SELF_MANAGED_KAFKA
    arn = params.get("EventSourceArn")
    if not isinstance(arn, str):
        return None
    m = _ARN_SERVICE.match(arn)
    service = m.group(1) if m else ""
    if service == "dynamodb" and "/stream/" in arn:
        return SourceKind.DYNAMODB
    return {
        "sqs": SourceKind.SQS,
        "kinesis": SourceKind.KINESIS,
        "kafka": SourceKind.MSK,
        "mq": SourceKind.MQ,
    }.get(service)


class State(enum.StrEnum):
    CREATING = "Creating"
    ENABLING = "Enabling"
    ENABLED = "Enabled"
    DISABLING = "Disabling"
    DISABLED = "Disabled"
    UPDATING = "Updating"
    DELETING = "Deleting"

    @property
    def is_transitional(self) -> bool:
        return self not in (State.ENABLED, State.DISABLED)


@dataclass(frozen=True)
class BatchingPolicy:
    batch_size: int
    window_s: float
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES


@dataclass(frozen=True)
class StreamPolicy:
    """How an ordered source is read: where it starts, how a shard is spread, where give-ups go."""

    starting_position: str = "LATEST"
    #: StartingPositionTimestamp (epoch seconds) for AT_TIMESTAMP
    starting_timestamp: float | None = None
    #: ParallelizationFactor: lanes per shard (a windowed shard is one lane: its state is per shard)
    lanes: int = 1
    #: TumblingWindowInSeconds, 0 without windows
    window_s: int = 0
    #: DestinationConfig.OnFailure.Destination
    on_failure: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_retry_attempts: int = -1
    max_record_age_s: int = -1
    bisect_on_error: bool = False
    report_batch_item_failures: bool = False


@dataclass(frozen=True)
class EventSourceMapping:
    """One mapping as stored: the API parameters (canonical, defaults applied) plus engine-owned fields.

    ``params`` holds the EventSourceMappingConfiguration members the user controls (BatchSize,
    FilterCriteria, ...) exactly as the API returns them; everything else is derived or engine-owned.
    """

    uuid: str
    kind: SourceKind
    function_arn: str
    params: Mapping[str, Any]
    enabled: bool
    state: State
    state_transition_reason: str
    last_modified: float
    last_processing_result: str | None = None
    seq: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def event_source_arn(self) -> str | None:
        arn = self.params.get("EventSourceArn")
        return arn if isinstance(arn, str) else None

    @property
    def function_name(self) -> str:
        """The function's name part: ``arn:...:function:NAME[:qualifier]`` -> NAME."""
        return function_name_part(self.function_arn)

    @property
    def metrics(self) -> list[str]:
        """MetricsConfig's Metrics (EventCount, and Kafka's ErrorCount, KafkaMetrics)."""
        return list((self.params.get("MetricsConfig") or {}).get("Metrics") or [])

    @property
    def filter_patterns(self) -> list[str]:
        fc = self.params.get("FilterCriteria") or {}
        return [f["Pattern"] for f in fc.get("Filters") or [] if "Pattern" in f]

    @property
    def maximum_concurrency(self) -> int | None:
        sc = self.params.get("ScalingConfig") or {}
        mc = sc.get("MaximumConcurrency")
        return int(mc) if mc is not None else None

    def with_state(self, state: State, **changes: Any) -> EventSourceMapping:
        return replace(self, state=state, **changes)


def function_name_part(function_ref: str) -> str:
    """Name part of a FunctionName in any of its four forms (name, name:qualifier, partial ARN, ARN)."""
    parts = function_ref.split(":")
    if function_ref.startswith("arn:"):
        return parts[6]
    if len(parts) >= 3:  # ACCOUNT:function:NAME[:qualifier]
        return parts[2]
    return parts[0]
