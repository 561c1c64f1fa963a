"""The retry policy of one ordered stream batch (Kinesis, DynamoDB Streams, Kafka): spec 4.4-4.6, 4.9.

Pure policy: no I/O and no clock of its own. :func:`process_batch` takes one batch read from one shard lane
and drives it to the end — every record either succeeds or is given up on in exactly one :class:`Discard` —
through injected callables (invoke, discard, now, sleep). Records are never reordered: they settle (succeed
or are discarded) in the order of the batch.

Vocabulary. A *lineage* is the batch and everything derived from it for retrying: the shrunk remainder
after a partial batch response, the halves of a bisect. Each (sub)batch carries

* ``attempts``: the retry counter of spec 4.4 (counted failures). MaximumRetryAttempts N allows N+1
  counted invocations; when the counter exceeds N the current (sub)batch is discarded.
* ``invocations``: how many times the function has been invoked with these records (including the
  invocations of the ancestors they were part of). This is what the failure record calls
  ``approximateInvokeCount``.

Choices where the spec says [UNVERIFIED] (spec 4.4, 4.6, 11), each the spec's recommended model:

* Bisect counter arithmetic: a split is not counted; both halves inherit the parent's counter and
  invocation count; a failing batch of one record counts an attempt; a (sub)batch whose counter exceeds
  MaximumRetryAttempts is discarded and processing continues with the next sub-batch.
* The halves are processed sequentially, the first one to the end before the second starts. The first
  half is ``batch[:len // 2]`` (the smaller one when the length is odd).
* ``approximate_invoke_count`` counts invocations that reached the function with these records, ancestors
  included (a record bisected twice and then retried to exhaustion with N=3 reports 2 + 4 = 6); without
  bisect it equals the counter (N+1, as observed). InvokeErrors (throttles, unreachable function) are not
  invocations. ``RecordAgeExceeded`` discards report ``max(1, invocations)`` (observed: 1 for a record never
  invoked).
* An invalid partial-batch response (with ReportBatchItemFailures) fails the whole (sub)batch and counts
  an attempt, but is not bisected, even with BisectBatchOnFunctionError on (the 4.9 model: bisect follows a
  function error only). A partial response is never bisected either: the batch shrinks to the lowest
  failed record onward, counted.
* Any ``function_error`` ("Unhandled", "Handled") is a function error.
* A retry re-invokes exactly the records of the failed (sub)batch; it never grows to later records.
* Record age: ``now() - arrival_s > MaximumRecordAgeInSeconds`` (strictly older), checked before every
  invocation including each retry after an InvokeError; only the leading run of expired records is cut (a
  fresh record shields the expired ones behind it until it settles).
* Back-off (AWS publishes no timings): one :class:`~engine.retry.Backoff` per call, shared by InvokeErrors and
  function errors; a delay is slept after every InvokeError and after every failed invocation that is
  retried (counted retries and bisect splits alike), never after a discard. The back-off is reset when a
  (sub)batch settles: after a success and after a discard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.model import RetryPolicy
from engine.pipeline.verdict import FUNCTION_ERROR, PARTIAL_FAILURE, classify
from engine.ports import InvokeError, InvokeResult, StreamRecord
from engine.responses import string_identifier
from engine.retry import Backoff

RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


@dataclass(frozen=True)
class Discard:
    """Records given up on, for the on-failure destination (spec 4.8)."""

    #: the remaining records given up on, in order
    records: tuple[StreamRecord, ...]
    #: "RetryAttemptsExhausted" | "RecordAgeExceeded"
    condition: str
    approximate_invoke_count: int
    #: the source of ``responseContext``; None for RecordAgeExceeded (no responseContext)
    last_result: InvokeResult | None


@dataclass(frozen=True)
class Attempt:
    """What ``invoke`` is asked to send, with what the journal needs to know about it."""

    records: tuple[StreamRecord, ...]
    #: 1 for the first invocation of the lineage, +1 per counted retry (halves inherit the counter)
    attempt: int
    #: 0 for the batch as read, +1 per bisect split
    bisect_depth: int


@dataclass
class BatchReport:
    """What happened to one batch: for LastProcessingResult, logs and tests."""

    #: invocations that reached the function (returned an InvokeResult)
    invocations: int = 0
    #: records that succeeded
    succeeded: int = 0
    discarded: list[Discard] = field(default_factory=list)
    #: invoke calls that raised InvokeError (throttled, unreachable): not counted as attempts
    throttles: int = 0


def sequence_number(record: StreamRecord) -> Hashable:
    """The itemIdentifier of a stream record: its sequence number."""
    return record.sequence_number


@dataclass
class _Lineage:
    records: tuple[StreamRecord, ...]
    attempts: int
    invocations: int
    depth: int


async def process_batch(
    records: Sequence[StreamRecord],
    *,
    policy: RetryPolicy,
    invoke: Callable[[Attempt], Awaitable[InvokeResult]],
    discard: Callable[[Discard], Awaitable[None]],
    now: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    backoff: Callable[[], Backoff] = Backoff,
    item_id: Callable[[StreamRecord], Hashable] = sequence_number,
    identify: Callable[[Any], Hashable | None] = string_identifier,
    settled: Callable[[tuple[StreamRecord, ...]], Awaitable[None]] | None = None,
    invoke_empty: bool = False,
) -> BatchReport:
    """Process one batch of one shard lane to the end (spec 4.9) and say what happened.

    ``invoke`` may raise :class:`~engine.ports.InvokeError` (throttled, function unreachable): the same
    records are tried again after a back-off, without counting an attempt, until they succeed or expire.
    ``discard`` receives every give-up, in record order, before processing continues. ``settled``
    receives every run of records as soon as it is final (succeeded, or discarded after ``discard``), so
    the checkpoint can move before the rest of the batch settles: a partial batch response checkpoints
    at its lowest failed record (spec 4.5). With ``invoke_empty``, an empty batch is one invocation under
    the same policy (given up on with an empty Discard). Returns only when every record has either
    succeeded or been discarded exactly once. Any other exception, cancellation included, propagates
    untouched.
    """
    report = BatchReport()
    delays = backoff()
    max_retries = policy.max_retry_attempts
    max_age = policy.max_record_age_s
    # the work list, last item next: halves are pushed second-then-first
    # an empty batch is invoked only when asked (a tumbling window's final invocation carries no records)
    pending = [_Lineage(tuple(records), 0, 0, 0)] if records or invoke_empty else []

    async def settle(records: tuple[StreamRecord, ...]) -> None:
        if settled is not None and records:
            await settled(records)

    async def succeed(records: tuple[StreamRecord, ...]) -> None:
        report.succeeded += len(records)
        await settle(records)

    async def give_up(
        records: tuple[StreamRecord, ...], condition: str, count: int, last: InvokeResult | None
    ) -> None:
        gone = Discard(records, condition, count, last)
        report.discarded.append(gone)
        await discard(gone)
        await settle(records)

    while pending:
        lineage = pending.pop()
        batch = lineage.records
        while True:
            if max_age >= 0:
                t = now()
                cut = 0
                while cut < len(batch) and t - batch[cut].arrival_s > max_age:
                    cut += 1
                if cut:
                    await give_up(batch[:cut], RECORD_AGE_EXCEEDED, max(1, lineage.invocations), None)
                    batch = batch[cut:]
                    if not batch:
                        delays.reset()
                        break
            try:
                result = await invoke(Attempt(batch, lineage.attempts + 1, lineage.depth))
            except InvokeError:
                report.throttles += 1
                await sleep(delays.next_delay())
                continue
            report.invocations += 1
            lineage.invocations += 1
            verdict = classify(
                result,
                (item_id(r) for r in batch),  # read only when the response is more than a success
                report_batch_item_failures=policy.report_batch_item_failures,
                identify=identify,
            )
            if verdict.ok:
                await succeed(batch)
                delays.reset()
                break
            if verdict.outcome == PARTIAL_FAILURE:
                lowest = next(i for i, r in enumerate(batch) if item_id(r) in verdict.failed)
                await succeed(batch[:lowest])
                batch = batch[lowest:]
            elif verdict.outcome == FUNCTION_ERROR and policy.bisect_on_error and len(batch) > 1:
                mid = len(batch) // 2
                for half in (batch[mid:], batch[:mid]):
                    pending.append(_Lineage(half, lineage.attempts, lineage.invocations, lineage.depth + 1))
                await sleep(delays.next_delay())
                break
            lineage.attempts += 1
            if max_retries >= 0 and lineage.attempts > max_retries:
                await give_up(batch, RETRY_ATTEMPTS_EXHAUSTED, lineage.invocations, result)
                delays.reset()
                break
            await sleep(delays.next_delay())
    return report
