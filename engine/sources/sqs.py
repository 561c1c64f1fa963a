"""Amazon SQS (standard and FIFO): a queue source. Failed messages are left to the visibility timeout and
the queue's redrive policy; SQS mappings show no LastProcessingResult (spec 5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from engine import filtering
from engine.errors import InvalidParameterValueException
from engine.events import Envelope
from engine.model import EventSourceMapping, SourceKind
from engine.ports import QueueSource, SourceDescription
from engine.runner.queue import QueueRunner
from engine.sources.kit import BoundRunners, Described, RunnerKit
from engine.sources.profile import SourceProfile, batch_size_range, update_or_delete

#: Above this a standard queue needs a batching window (spec 3.1).
MAX_BATCH_SIZE_WITHOUT_WINDOW = 10
FIFO_MAX_BATCH_SIZE = 10
WINDOW_REQUIRED = (
    "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"
)
FIFO_WINDOW = "Batching window is not supported for FIFO queues"
#: [UNVERIFIED] text, in AWS's wording where a sibling is known
SCALING_AND_PROVISIONED = (
    "ScalingConfig and ProvisionedPollerConfig cannot be used together on an SQS event source mapping."
)


def _duplicate_text(m: EventSourceMapping, existing: EventSourceMapping) -> str:
    return (
        f'An event source mapping with SQS arn (" {m.event_source_arn} ") and function '
        f'(" {m.function_name} ") already exists. {update_or_delete(existing)}'
    )


def _check_visibility_timeout(description: SourceDescription, function_timeout_s: float) -> None:
    vt = description.visibility_timeout_s
    if vt is not None and vt < function_timeout_s:
        t = function_timeout_s
        seconds = str(int(t)) if float(t).is_integer() else str(t)
        raise InvalidParameterValueException(
            f"Queue visibility timeout: {vt} seconds is less than Function timeout: {seconds} seconds"
        )


def _check_params(params: Mapping[str, Any]) -> None:
    """A standard queue's batch above 10 needs a window; a FIFO queue takes no window and at most 10
    (spec 3.1); scaling caps on-demand pollers, so it does not go with provisioned ones."""
    batch_size = params["BatchSize"]
    window = params.get("MaximumBatchingWindowInSeconds") or 0
    fifo = (params.get("EventSourceArn") or "").endswith(".fifo")
    if not fifo and batch_size > MAX_BATCH_SIZE_WITHOUT_WINDOW and window == 0:
        raise InvalidParameterValueException(WINDOW_REQUIRED)
    if fifo and window > 0:
        raise InvalidParameterValueException(FIFO_WINDOW)
    if fifo and batch_size > FIFO_MAX_BATCH_SIZE:
        raise InvalidParameterValueException(batch_size_range(FIFO_MAX_BATCH_SIZE))
    if params.get("ScalingConfig") and params.get("ProvisionedPollerConfig"):
        raise InvalidParameterValueException(SCALING_AND_PROVISIONED)


PROFILE = SourceProfile(
    SourceKind.SQS,
    filtering.SQS,
    "sqs",
    shows_last_processing_result=False,
    provisioned_min_pollers=2,
    duplicate_text=_duplicate_text,
    check_source=_check_visibility_timeout,
    accepted_params=frozenset(
        {"EventSourceArn", "FunctionResponseTypes", "ScalingConfig", "ProvisionedPollerConfig"}
    ),
    default_params={"BatchSize": 10, "MaximumBatchingWindowInSeconds": 0, "FunctionResponseTypes": []},
    check_params=_check_params,
    poller_ranges=((2, 200), (2, 10_000)),
)


class SqsTransports(Described, Protocol):
    def envelope(self, mapping: EventSourceMapping) -> Envelope: ...

    def open_queue(self, mapping: EventSourceMapping) -> QueueSource: ...


@dataclass(frozen=True)
class SqsRunners(BoundRunners[SqsTransports]):
    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> QueueRunner:
        desc = await self.transports.describe(m)
        settings = kit.queue
        if desc.visibility_timeout_s:
            # AWS keeps retrying a throttled batch while its messages stay invisible
            settings = replace(settings, invoke_retry_budget_s=float(desc.visibility_timeout_s))
        return QueueRunner(
            m,
            PROFILE,
            self.transports.open_queue(m),
            self.transports.envelope(m),
            kit.invoker,
            kit.record_filter,
            kit.store,
            settings,
            metrics=kit.metrics.mapping(m, PROFILE.event_source),
            time_scale=kit.time_scale,
        )
