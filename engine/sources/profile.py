"""What a source profile is: the facts that differ between source kinds, and the policies a mapping's
parameters give under them. Pure: no I/O; the runners read their profile, they never ask for the kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.filtering import FilterSource
from engine.model import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    BatchingPolicy,
    EventSourceMapping,
    RetryPolicy,
    SourceKind,
    StreamPolicy,
)
from engine.ports import SourceDescription

#: ProvisionedPollerConfig's MaximumPollers when the user sets none (the API model's documentation)
DEFAULT_MAX_POLLERS = 200


def same_source_arn(m: EventSourceMapping, other: EventSourceMapping) -> bool:
    return other.event_source_arn is not None and other.event_source_arn == m.event_source_arn


def on_failure_destination(m: EventSourceMapping) -> str | None:
    """DestinationConfig.OnFailure.Destination, None without one."""
    return ((m.params.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination") or None


def update_or_delete(existing: EventSourceMapping) -> str:
    return f"Please update or delete the existing mapping with UUID {existing.uuid}"


def arn_duplicate_text(m: EventSourceMapping, existing: EventSourceMapping) -> str:
    return (
        f'The event source arn (" {m.event_source_arn} ") and function (" {m.function_name} ") provided '
        f"mapping already exists. {update_or_delete(existing)}"
    )


def no_source_rule(description: SourceDescription, function_timeout_s: float) -> None:
    """Nothing in the source's description is refused."""


def no_params_rule(params: Mapping[str, Any]) -> None:
    """No rule of the source's own on its parameters."""


def batch_size_range(maximum: int) -> str:
    return f"Maximum batch size must be between 1 and {maximum} inclusive"


#: the source-specific request members Kinesis and DynamoDB Streams accept (spec 8.4's table)
STREAM_PARAMS = frozenset(
    {
        "EventSourceArn",
        "StartingPosition",
        "StartingPositionTimestamp",
        "ParallelizationFactor",
        "TumblingWindowInSeconds",
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
        "BisectBatchOnFunctionError",
        "DestinationConfig",
        "FunctionResponseTypes",
    }
)
#: what the API shows for a Kinesis or DynamoDB mapping created with nothing but the required members
STREAM_DEFAULTS: Mapping[str, Any] = {
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


@dataclass(frozen=True)
class SourceProfile:
    kind: SourceKind
    #: how its records meet a filter: the data field, format mismatches, the view (spec 2.2, 2.3)
    filters: FilterSource
    #: the ``event_source`` label of its metrics (engine.metrics): sqs, kinesis, dynamodb, kafka,
    #: rabbitmq, activemq
    event_source: str
    #: MaximumBatchingWindowInSeconds when the user sets none (spec 3.1)
    default_window_s: float = 0.0
    #: the batching window opens at a batch's first record, else when collection starts (spec 3.2)
    window_opens_at_first_record: bool = False
    #: MaximumRetryAttempts -1 (forever) with an on-failure destination is capped at this (Kafka, 6.4)
    retry_cap_with_destination: int | None = None
    #: ProvisionedPollerConfig's MinimumPollers when the user sets none; None: not accepted
    provisioned_min_pollers: int | None = None
    #: the API returns LastProcessingResult (AWS leaves it out for SQS)
    shows_last_processing_result: bool = True
    #: LATEST is fixed at the first start, so a restart before the first checkpoint does not skip
    #: what arrived meanwhile (Kinesis here; Kafka commits its LATEST offset to the group)
    pins_latest: bool = False
    #: a broker pushes into one buffer: batches are cut one at a time, in order (Amazon MQ)
    one_push_buffer: bool = False
    #: failed deliveries a broker allows before it dead-letters a message (ActiveMQ's maximumRedeliveries,
    #: spec 7); the pipeline rejects the message instead of releasing it once its attempt is past this
    max_redeliveries: int | None = None
    #: StateTransitionReason after a user's change: AWS words it per source (spec 8.2)
    user_initiated_reason: str = "USER_INITIATED"
    #: another mapping of the same function reads what this one reads: ResourceConflictException (8.5)
    duplicates: Callable[[EventSourceMapping, EventSourceMapping], bool] = same_source_arn
    #: the text of that conflict, as AWS words it for the source
    duplicate_text: Callable[[EventSourceMapping, EventSourceMapping], str] = arn_duplicate_text
    #: a create-time rule on the source's description (raises InvalidParameterValueException)
    check_source: Callable[[SourceDescription, float], None] = no_source_rule

    # What Create/UpdateEventSourceMapping accept for it and store (spec 8.2, 8.4); the order of the
    # checks and the rules every source shares are in engine/validate/mappings.py.
    #: the source-specific request members it accepts (validate.mappings.SOURCE_SPECIFIC_PARAMS); any
    #: other of those is refused as "Unsupported <member> parameter"
    accepted_params: frozenset[str] = frozenset({"EventSourceArn"})
    #: members a create cannot do without once the source is known (spec 8.4 #4)
    required_params: tuple[str, ...] = ()
    #: the parameters a mapping created with nothing but the required members shows (spec 8.2); a
    #: removed DestinationConfig returns to its entry here
    default_params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: the StartingPosition values it takes; another is "Unsupported starting position" (spec 8.4 #6)
    starting_positions: frozenset[str] = frozenset()
    #: its own rules on the merged parameters, judged after the starting position and before the
    #: shared rules (timestamp, record age, access, destination, pollers, metrics)
    check_params: Callable[[Mapping[str, Any]], None] = no_params_rule
    #: the member holding its ConsumerGroupId (Kafka): the mapping's UUID by default, fixed after create
    consumer_group_member: str | None = None
    #: the SourceAccessConfigurations types it accepts
    access_types: frozenset[str] = frozenset()
    #: it needs at least one SourceAccessConfigurations entry...
    access_required: bool = False
    #: ...and a create without one is refused right after the source is recognised (spec 8.4 #2)
    access_required_first: bool = False
    #: access types it cannot do without
    required_access_types: tuple[str, ...] = ()
    #: access types fixed at create: an update may repeat them or leave them out, not change them
    create_only_access_types: tuple[str, ...] = ()
    #: the on-failure destinations it sends to (as engine.senders.destination_kind names them)
    destinations: frozenset[str] = frozenset({"sqs", "sns", "s3"})
    #: the (low, high) ranges of ProvisionedPollerConfig's MinimumPollers and MaximumPollers, from the
    #: model's doc strings; its shapes allow 1-200 and 1-10,000
    poller_ranges: tuple[tuple[int, int], tuple[int, int]] = ((1, 200), (1, 10_000))
    #: the source-specific metrics it offers (validate.mappings.SOURCE_SPECIFIC_METRICS)
    accepted_metrics: frozenset[str] = frozenset()

    def batching(self, m: EventSourceMapping) -> BatchingPolicy:
        window = m.params.get("MaximumBatchingWindowInSeconds")
        return BatchingPolicy(
            batch_size=int(m.params["BatchSize"]),
            window_s=float(self.default_window_s if window is None else window),
            max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES,
        )

    def retry(self, m: EventSourceMapping) -> RetryPolicy:
        p = m.params
        max_retry_attempts = int(p.get("MaximumRetryAttempts", -1))
        destination = on_failure_destination(m)
        if self.retry_cap_with_destination is not None and max_retry_attempts < 0 and destination:
            max_retry_attempts = self.retry_cap_with_destination
        return RetryPolicy(
            max_retry_attempts=max_retry_attempts,
            max_record_age_s=int(p.get("MaximumRecordAgeInSeconds", -1)),
            bisect_on_error=bool(p.get("BisectBatchOnFunctionError", False)),
            report_batch_item_failures="ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or []),
        )

    def stream(self, m: EventSourceMapping) -> StreamPolicy:
        p = m.params
        window_s = int(p.get("TumblingWindowInSeconds", 0))
        ts = p.get("StartingPositionTimestamp")
        return StreamPolicy(
            starting_position=str(p.get("StartingPosition", "LATEST")),
            starting_timestamp=float(ts) if ts is not None else None,
            lanes=1 if window_s else int(p.get("ParallelizationFactor", 1)),
            window_s=window_s,
            on_failure=on_failure_destination(m),
        )

    def provisioned_pollers(self, m: EventSourceMapping) -> tuple[int, int] | None:
        """ProvisionedPollerConfig as (MinimumPollers, MaximumPollers), None in on-demand mode."""
        pc = m.params.get("ProvisionedPollerConfig")
        if not pc or self.provisioned_min_pollers is None:
            return None
        low = int(pc.get("MinimumPollers", self.provisioned_min_pollers))
        return low, int(pc.get("MaximumPollers", DEFAULT_MAX_POLLERS))  # validated: not below low
