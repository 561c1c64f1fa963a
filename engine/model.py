"""What a mapping is: its source kind, state and the policies derived from its parameters."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

#: AWS's 6 MB invocation payload cap; whether AWS counts 6,291,456 or 6,000,000 bytes is unverified.
DEFAULT_MAX_PAYLOAD_BYTES = 6_291_456
#: Kafka: infinite retries with an on-failure destination are capped at 10 (spec 6.4)
KAFKA_MAX_RETRIES_WITH_DESTINATION = 10
#: ProvisionedPollerConfig defaults (the API model's documentation)
SQS_DEFAULT_MIN_POLLERS, KAFKA_DEFAULT_MIN_POLLERS, DEFAULT_MAX_POLLERS = 2, 1, 200


class SourceKind(enum.StrEnum):
    SQS = "sqs"
    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"
    MSK = "kafka"
    SELF_MANAGED_KAFKA = "self-managed-kafka"
    MQ = "mq"

    @property
    def is_stream(self) -> bool:
        return self in (SourceKind.KINESIS, SourceKind.DYNAMODB)

    @property
    def is_kafka(self) -> bool:
        return self in (SourceKind.MSK, SourceKind.SELF_MANAGED_KAFKA)


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
    def batching(self) -> BatchingPolicy:
        window = self.params.get("MaximumBatchingWindowInSeconds")
        if window is None:  # Kafka and MQ: 500 ms until the user sets a value
            window = 0.5 if (self.kind.is_kafka or self.kind is SourceKind.MQ) else 0
        return BatchingPolicy(batch_size=int(self.params["BatchSize"]), window_s=float(window))

    @property
    def retry(self) -> RetryPolicy:
        p = self.params
        max_retry_attempts = int(p.get("MaximumRetryAttempts", -1))
        destination = ((p.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if self.kind.is_kafka and max_retry_attempts < 0 and destination:
            max_retry_attempts = KAFKA_MAX_RETRIES_WITH_DESTINATION
        return RetryPolicy(
            max_retry_attempts=max_retry_attempts,
            max_record_age_s=int(p.get("MaximumRecordAgeInSeconds", -1)),
            bisect_on_error=bool(p.get("BisectBatchOnFunctionError", False)),
            report_batch_item_failures="ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or []),
        )

    @property
    def filter_patterns(self) -> list[str]:
        fc = self.params.get("FilterCriteria") or {}
        return [f["Pattern"] for f in fc.get("Filters") or [] if "Pattern" in f]

    @property
    def maximum_concurrency(self) -> int | None:
        sc = self.params.get("ScalingConfig") or {}
        mc = sc.get("MaximumConcurrency")
        return int(mc) if mc is not None else None

    @property
    def provisioned_pollers(self) -> tuple[int, int] | None:
        """ProvisionedPollerConfig as (MinimumPollers, MaximumPollers), None in on-demand mode."""
        pc = self.params.get("ProvisionedPollerConfig")
        if not pc:
            return None
        default_low = SQS_DEFAULT_MIN_POLLERS if self.kind is SourceKind.SQS else KAFKA_DEFAULT_MIN_POLLERS
        low = int(pc.get("MinimumPollers", default_low))
        return low, int(pc.get("MaximumPollers", DEFAULT_MAX_POLLERS))  # validated: not below low

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
