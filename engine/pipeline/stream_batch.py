"""A stream batch (Kinesis, DynamoDB Streams, Kafka) from invocation to checkpoint.

engine.stream_policy drives the retries (bisect, partial responses, record age); this module gives it the
journaled invocation, the discards (journal, then the on-failure destination) and the checkpoint, which
moves as each run of the batch's records is final. A tumbling window's invocations go through the same
policy, its final invocation (no records) included: windows are a mode of this pipeline, not a loop of
their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from engine.batching import encode_envelope
from engine.checkpoints import ContiguousCheckpoint
from engine.destinations import MAXIMUM_PAYLOAD_SIZE_EXCEEDED, RETRY_ATTEMPTS_EXHAUSTED
from engine.events import Envelope
from engine.metrics import MappingMetrics
from engine.model import RetryPolicy
from engine.pipeline.checkpoints import CheckpointSink
from engine.pipeline.failures import Discards
from engine.pipeline.invoking import JournaledInvoker
from engine.ports import InvokeResult, StreamRecord
from engine.responses import ResponseKind, parse_batch_item_failures
from engine.store.ports import DISCARDED, FILTERED_OUT
from engine.stream_policy import Attempt, Discard, process_batch
from engine.stream_shapes import StreamShape
from engine.windows import Invocation, WindowTracker, parse_window_response


class StreamBatches:
    def __init__(
        self,
        invoker: JournaledInvoker,
        discards: Discards,
        checkpoints: CheckpointSink,
        retry: RetryPolicy,
        shape: StreamShape,
        *,
        max_payload_bytes: int,
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        log: Any,
        metrics: MappingMetrics,
    ) -> None:
        self.invoker = invoker
        self.metrics = metrics
        self.discards = discards
        self.checkpoints = checkpoints
        self.retry = retry
        self.shape = shape
        self.max_payload_bytes = max_payload_bytes
        self.now = now
        self.sleep = sleep
        self.log = log

    async def filtered_out(self, shard_id: str, items: Sequence[str]) -> None:
        """Records the filter refused: journaled, listed (they are not a contiguous run)."""
        await self.invoker.journal.write(shard_id, items, attempt=0, outcome=FILTERED_OUT, list_items=True)

    async def checkpoint(self, shard_id: str, position: str | None) -> None:
        if position is not None:
            await self.checkpoints.commit(shard_id, position)

    async def process(
        self,
        shard_id: str,
        scope: str,
        batch: Sequence[tuple[StreamRecord, bytes]],
        envelope: Envelope,
        tracker: ContiguousCheckpoint,
    ) -> None:
        """Drive one lane's batch to the end; the checkpoint moves as each run of its records is final."""
        records = [r for r, _ in batch]
        whole = [e for _, e in batch]
        encoded: dict[str, bytes] = {}

        def payload(recs: Sequence[StreamRecord]) -> bytes:
            if len(recs) == len(records):  # the whole batch (most batches only ever invoke that)
                return encode_envelope(envelope.prefix, whole, envelope.suffix)
            if not encoded:
                encoded.update((r.sequence_number, e) for r, e in batch)
            return encode_envelope(
                envelope.prefix, [encoded[r.sequence_number] for r in recs], envelope.suffix
            )

        async def settled(recs: Sequence[StreamRecord]) -> None:
            await self.checkpoint(shard_id, tracker.finish([r.sequence_number for r in recs]))

        if len(batch) == 1 and envelope.overhead + len(batch[0][1]) > self.max_payload_bytes:
            # alone over the invocation limit: never invoked, straight to the destination (spec 6.3)
            too_large = Discard(tuple(records), MAXIMUM_PAYLOAD_SIZE_EXCEEDED, 0, None)
            await self.discards.discard(shard_id, scope, too_large, payload(records))
            await settled(records)
            return

        async def invoke(attempt: Attempt) -> InvokeResult:
            return await self._invoke(scope, attempt, payload(attempt.records))

        async def discard(d: Discard) -> None:
            await self.discards.discard(shard_id, scope, d, payload(d.records))

        await process_batch(
            records,
            policy=self.retry,
            invoke=invoke,
            discard=discard,
            now=self.now,
            sleep=self.sleep,
            item_id=self.shape.item_id,
            identify=self.shape.identify,
            settled=settled,
        )

    async def process_window(self, shard_id: str, windows: WindowTracker, step: Invocation) -> None:
        """One step of a tumbling window under the retry policy; the function must answer with a ``state``.
        The final invocation carries no records: only its function errors count, and when they exhaust
        the retries the window's final state never reached the function (journaled as a discard)."""

        async def invoke(attempt: Attempt) -> InvokeResult:
            result = await self._invoke(shard_id, attempt, windows.payload(step, attempt.records))
            response = parse_window_response(result.payload)
            if result.function_error is None and response is None:
                return replace(result, function_error="Unhandled")  # no state: a failed invocation
            if result.function_error is None and response is not None:
                valid = {r.sequence_number for r in attempt.records}
                if parse_batch_item_failures(result.payload, valid).kind is not ResponseKind.INVALID:
                    windows.accept_state(step, response)
            return result

        async def discard(d: Discard) -> None:
            if d.records:
                await self.discards.discard(shard_id, shard_id, d, windows.payload(step, d.records))
                return
            self.log.error(
                "window_final_invoke_abandoned", shard=shard_id, attempts=d.approximate_invoke_count
            )
            detail = {"reason": RETRY_ATTEMPTS_EXHAUSTED, "final_window_invocation": True}
            await self.invoker.journal.write(
                shard_id, [], attempt=d.approximate_invoke_count, outcome=DISCARDED, detail=detail
            )

        final = not step.records
        await process_batch(
            list(step.records),
            # the final invocation carries no records to report, and no age
            policy=replace(self.retry, report_batch_item_failures=False) if final else self.retry,
            invoke=invoke,
            discard=discard,
            now=self.now,
            sleep=self.sleep,
            invoke_empty=final,
        )

    async def _invoke(self, scope: str, attempt: Attempt, payload: bytes) -> InvokeResult:
        items = [r.sequence_number for r in attempt.records]
        if attempt.records:  # IteratorAge: the last record's, as the invocation starts
            self.metrics.iterator_age((self.now() - attempt.records[-1].arrival_s) * 1000)
        return await self.invoker.invoke(
            scope, items, payload, attempt=attempt.attempt, bisect_depth=attempt.bisect_depth
        )
