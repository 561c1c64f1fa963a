"""Amazon SQS (standard and FIFO): a queue source. Failed messages are left to the visibility timeout and
the queue's redrive policy; SQS mappings show no LastProcessingResult (spec 5)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from engine import filtering
from engine.errors import InvalidParameterValueException
from engine.events import Envelope
from engine.model import EventSourceMapping, SourceKind
from engine.ports import QueueSource, SourceDescription
from engine.runner.queue import QueueRunner
from engine.sources.kit import BoundRunners, Described, RunnerKit
from engine.sources.profile import SourceProfile, update_or_delete


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


PROFILE = SourceProfile(
    SourceKind.SQS,
    filtering.SQS,
    shows_last_processing_result=False,
    provisioned_min_pollers=2,
    duplicate_text=_duplicate_text,
    check_source=_check_visibility_timeout,
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
        )
