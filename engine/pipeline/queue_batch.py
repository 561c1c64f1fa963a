"""A queue batch (SQS, RabbitMQ, ActiveMQ) from invocation to settlement.

Invoke within the throttle budget, classify the response, acknowledge what succeeded, hand the rest back
to the broker (or, past its redelivery limit, to its dead-letter queue), journal each step. Messages that
can never be invoked (alone over the payload limit) are rejected where the broker dead-letters, never
acknowledged; messages the filter refuses are acknowledged at once, as AWS deletes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from engine.batching import Batch, encode_envelope
from engine.destinations import MAXIMUM_PAYLOAD_SIZE_EXCEEDED
from engine.events import Envelope
from engine.metrics import MappingMetrics
from engine.pipeline.invoking import INVOKE_ERROR, invoke_within
from engine.pipeline.journal import Journal, LastProcessingResult
from engine.pipeline.verdict import PARTIAL_FAILURE, classify
from engine.ports import InvokeError, Invoker, QueueMessage, QueueSource
from engine.sources.profile import SourceProfile
from engine.store.ports import DISCARDED, FILTERED_OUT

#: the journal's reason for a message dead-lettered past the broker's redelivery limit (ActiveMQ's
#: maximumRedeliveries, spec 7); our word, AWS names none
MAXIMUM_REDELIVERIES_EXCEEDED = "MaximumRedeliveriesExceeded"
SCOPE = "queue"


def attempt_of(m: QueueMessage) -> int:
    return int(m.extra.get("attempt", 1))


class QueueBatches:
    def __init__(
        self,
        source: QueueSource,
        envelope: Envelope,
        invoker: Invoker,
        profile: SourceProfile,
        journal: Journal,
        status: LastProcessingResult,
        *,
        report_batch_item_failures: bool,
        invoke_budget_s: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        log: Any,
        metrics: MappingMetrics,
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.envelope = envelope
        self.invoker = invoker
        self.max_redeliveries = profile.max_redeliveries
        self.journal = journal
        self.status = status
        self.report_batch_item_failures = report_batch_item_failures
        self.invoke_budget_s = invoke_budget_s
        self.clock = clock
        self.sleep = sleep
        self.log = log

    async def filtered_out(self, messages: Sequence[QueueMessage]) -> None:
        self.log.debug("records_filtered_out", count=len(messages))
        await self.source.ack(messages)
        self.metrics.deleted(len(messages))
        await self._journal(messages, max(attempt_of(m) for m in messages), FILTERED_OUT)

    async def too_large(self, m: QueueMessage, size: int) -> None:
        reason = MAXIMUM_PAYLOAD_SIZE_EXCEEDED
        self.log.warning("record_rejected", item=m.item_id, bytes=size, reason=reason)
        await self.source.reject([m], reason)
        await self._journal([m], attempt_of(m), DISCARDED, detail={"reason": reason, "bytes": size})

    async def process(self, batch: Batch[QueueMessage]) -> float:
        """Invoke and settle one batch; returns the seconds spent invoking."""
        payload = encode_envelope(self.envelope.prefix, batch.encoded, self.envelope.suffix)
        items = batch.items
        attempt = max(attempt_of(m) for m in items)
        result = await invoke_within(
            self.invoker,
            payload,
            budget_s=self.invoke_budget_s,
            clock=self.clock,
            sleep=self.sleep,
            log=self.log,
        )
        if isinstance(result, InvokeError):
            await self._journal(items, attempt, INVOKE_ERROR, detail={"error": str(result)}, payload=payload)
            await self._release(items)
            return 0.0
        verdict = classify(
            result, [m.item_id for m in items], report_batch_item_failures=self.report_batch_item_failures
        )
        if verdict.reason is not None:
            self.log.warning("invalid_batch_response", reason=verdict.reason)
        await self.status.report(function_failed=not verdict.ok)
        # the items a batch response reported (all of them, possibly): the journal says which. Written
        # before the acknowledgement: an invocation that happened is journaled even when the broker
        # goes away before the ack (the messages then come again, as another row)
        reported = verdict.outcome == PARTIAL_FAILURE
        await self._journal(
            items,
            attempt,
            verdict.outcome,
            duration_ms=result.duration_ms,
            detail={"failed": sorted(map(str, verdict.failed))} if reported else {},
            payload=payload,
        )
        done = [m for m in items if m.item_id not in verdict.failed]
        if done:
            await self.source.ack(done)
            self.metrics.deleted(len(done))
        if verdict.failed:
            await self._release([m for m in items if m.item_id in verdict.failed])
        self.log.info(
            "batch_processed",
            outcome=verdict.outcome,
            size=len(items),
            failed=len(verdict.failed),
            bytes=len(payload),
            duration_ms=round(result.duration_ms, 2),
        )
        return result.duration_ms / 1000

    async def _release(self, failed: Sequence[QueueMessage]) -> None:
        """Back to the broker, or past its redelivery limit to its dead-letter queue (journaled)."""
        limit = self.max_redeliveries
        spent = [m for m in failed if limit is not None and attempt_of(m) > limit]
        back = [m for m in failed if m not in spent]
        if spent:
            await self.source.reject(spent, MAXIMUM_REDELIVERIES_EXCEEDED)
        if back:
            await self.source.release(back)
        for m in spent:
            self.log.warning("record_dead_lettered", item=m.item_id, reason=MAXIMUM_REDELIVERIES_EXCEEDED)
            await self._journal(
                [m], attempt_of(m), DISCARDED, detail={"reason": MAXIMUM_REDELIVERIES_EXCEEDED}
            )

    async def _journal(
        self,
        items: Sequence[QueueMessage],
        attempt: int,
        outcome: str,
        *,
        duration_ms: float = 0.0,
        detail: dict[str, object] | None = None,
        payload: bytes | None = None,
    ) -> None:
        await self.journal.write(
            SCOPE,
            [m.item_id for m in items],
            attempt=attempt,
            outcome=outcome,
            duration_ms=duration_ms,
            detail=detail,
            payload=payload,
        )
