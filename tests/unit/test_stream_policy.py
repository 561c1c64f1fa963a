"""The stream retry policy (spec 4.4-4.6, 4.9) with a scripted invoker, a fake clock and an instant sleep."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.model import RetryPolicy
from engine.ports import InvokeError, InvokeResult, StreamRecord
from engine.retry import Backoff
from engine.stream_policy import (
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    Attempt,
    BatchReport,
    Discard,
    process_batch,
)

T0 = 1_000_000.0
UNHANDLED = InvokeResult(
    payload=b'{"errorMessage": "boom", "errorType": "Exception"}', function_error="Unhandled"
)
OK = InvokeResult(payload=b"null")

Outcome = InvokeResult | InvokeError
Script = Callable[[Attempt], Outcome]


def rec(seq: int, arrival: float = T0) -> StreamRecord:
    return StreamRecord(record={"seq": seq}, sequence_number=str(seq), arrival_s=arrival, lane_key="k")


def recs(n: int, arrival: float = T0) -> list[StreamRecord]:
    return [rec(i, arrival) for i in range(1, n + 1)]


def seqs(records: Sequence[StreamRecord]) -> list[int]:
    return [int(r.sequence_number) for r in records]


def partial(*failed: Any) -> InvokeResult:
    return InvokeResult(
        payload=json.dumps({"batchItemFailures": [{"itemIdentifier": f} for f in failed]}).encode()
    )


class CountingBackoff(Backoff):
    """Deterministic delays 1, 2, 3, ... so that resets are visible in the recorded sleeps."""

    def next_delay(self) -> float:
        self.attempts += 1
        return float(self.attempts)


@dataclass
class Harness:
    script: Script
    now_s: float = T0
    #: seconds each invocation takes on the fake clock
    invoke_s: float = 0.0
    calls: list[Attempt] = field(default_factory=list)
    discards: list[Discard] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    #: records in the order they settled: the discards, plus whatever the script appends
    settled: list[int] = field(default_factory=list)

    def now(self) -> float:
        return self.now_s

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self.now_s += delay

    async def invoke(self, attempt: Attempt) -> InvokeResult:
        self.calls.append(attempt)
        self.now_s += self.invoke_s
        outcome = self.script(attempt)
        if isinstance(outcome, InvokeError):
            raise outcome
        return outcome

    async def discard(self, gone: Discard) -> None:
        self.discards.append(gone)
        self.settled += seqs(gone.records)

    async def run(self, records: Sequence[StreamRecord], policy: RetryPolicy, **kw: Any) -> BatchReport:
        kw.setdefault("backoff", CountingBackoff)
        return await process_batch(
            records,
            policy=policy,
            invoke=self.invoke,
            discard=self.discard,
            now=self.now,
            sleep=self.sleep,
            **kw,
        )

    def tree(self) -> list[tuple[list[int], int, int]]:
        """Every invoke call as (sequence numbers, attempt, bisect depth)."""
        return [(seqs(c.records), c.attempt, c.bisect_depth) for c in self.calls]


def poison_result(bad: Collection[int], style: str, attempt: Attempt) -> InvokeResult:
    hit = [s for s in seqs(attempt.records) if s in bad]
    if not hit:
        return OK
    if style == "partial":
        return partial(*(str(s) for s in hit))
    if style == "invalid":
        return partial(None)
    return UNHANDLED


def poison(*bad: int, style: str = "unhandled") -> Script:
    """Fails while a poison sequence number is in the batch: an unhandled error, a partial response naming
    the poison records, or an invalid partial response."""
    return lambda attempt: poison_result(bad, style, attempt)


def always(outcome: Outcome) -> Script:
    return lambda _: outcome


# --- the observed AWS cases (spec 4.4) -----------------------------------------------------------------


async def test_observed_partial_failure_counter_carries_over_to_shrunk_batch() -> None:
    # 6 records, BatchSize 3, one always-failing record, MaximumRetryAttempts 3, ReportBatchItemFailures
    h = Harness(poison(6, style="partial"))
    policy = RetryPolicy(max_retry_attempts=3, report_batch_item_failures=True)
    records = recs(6)
    first = await h.run(records[:3], policy)
    second = await h.run(records[3:], policy)
    assert (first.invocations, first.succeeded, first.discarded) == (1, 3, [])
    assert h.tree() == [([1, 2, 3], 1, 0), ([4, 5, 6], 1, 0), ([6], 2, 0), ([6], 3, 0), ([6], 4, 0)]
    [gone] = h.discards
    assert seqs(gone.records) == [6]  # batchSize 1
    assert gone.condition == RETRY_ATTEMPTS_EXHAUSTED
    assert gone.approximate_invoke_count == 4
    assert gone.last_result is not None and gone.last_result.function_error is None  # functionError null
    assert (second.invocations, second.succeeded, second.discarded) == (4, 2, [gone])


async def test_observed_record_age_exceeded_cut_from_front_rest_invoked() -> None:
    # 1 expired + 5 fresh, BatchSize 10, MaximumRetryAttempts 0
    h = Harness(always(OK))
    records = [rec(1, T0 - 61), *(rec(i, T0 - 1) for i in range(2, 7))]
    report = await h.run(records, RetryPolicy(max_retry_attempts=0, max_record_age_s=60))
    assert h.discards == [Discard((records[0],), RECORD_AGE_EXCEEDED, 1, None)]
    assert h.tree() == [([2, 3, 4, 5, 6], 1, 0)]
    assert (report.invocations, report.succeeded, report.throttles) == (1, 5, 0)


# --- MaximumRetryAttempts ------------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1, 2, 3, 10])
async def test_max_retry_attempts_n_allows_n_plus_one_invocations(retries: int) -> None:
    h = Harness(poison(2))
    records = recs(4)
    report = await h.run(records, RetryPolicy(max_retry_attempts=retries))
    assert h.tree() == [([1, 2, 3, 4], a, 0) for a in range(1, retries + 2)]
    assert h.discards == [Discard(tuple(records), RETRY_ATTEMPTS_EXHAUSTED, retries + 1, UNHANDLED)]
    assert (report.invocations, report.succeeded) == (retries + 1, 0)


async def test_transient_error_then_success() -> None:
    results = iter([UNHANDLED, UNHANDLED, OK])
    h = Harness(lambda _: next(results))
    report = await h.run(recs(3), RetryPolicy(max_retry_attempts=2))
    assert [c.attempt for c in h.calls] == [1, 2, 3]
    assert (report.invocations, report.succeeded, report.discarded) == (3, 3, [])


async def test_infinite_retries_end_by_record_age() -> None:
    h = Harness(always(UNHANDLED), invoke_s=1.0)
    records = recs(3, arrival=T0)
    report = await h.run(
        records, RetryPolicy(max_retry_attempts=-1, max_record_age_s=60), backoff=lambda: Backoff(cap_s=5.0)
    )
    [gone] = h.discards
    assert gone.condition == RECORD_AGE_EXCEEDED
    assert gone.records == tuple(records)
    assert gone.last_result is None  # no responseContext, however often it was invoked
    assert gone.approximate_invoke_count == report.invocations == len(h.calls) > 10
    assert [c.attempt for c in h.calls] == list(range(1, len(h.calls) + 1))
    assert h.now_s - T0 > 60
    assert max(h.delays) <= 5.0
    assert report.succeeded == 0


async def test_record_age_disabled_invokes_ancient_records() -> None:
    h = Harness(always(OK))
    report = await h.run([rec(1, 0.0)], RetryPolicy(max_record_age_s=-1))
    assert (report.invocations, report.succeeded, h.discards) == (1, 1, [])


async def test_record_age_is_strictly_older_than() -> None:
    h = Harness(always(OK))
    await h.run([rec(1, T0 - 60), rec(2, T0 - 60.001)], RetryPolicy(max_record_age_s=60))
    # the first record is exactly 60 s old: not expired, and it shields the expired one behind it
    assert h.tree() == [([1, 2], 1, 0)]
    assert h.discards == []


async def test_record_age_cut_keeps_counter_and_counts_invocations() -> None:
    # 1 expires after two failed attempts; the remainder carries the counter on and the
    # RecordAgeExceeded discard reports the invocations so far
    h = Harness(poison(3), invoke_s=10.0)
    records = [rec(1, T0 - 40), rec(2, T0), rec(3, T0)]
    report = await h.run(records, RetryPolicy(max_retry_attempts=3, max_record_age_s=60))
    # invoke at T0 (+10), sleep 1 -> T0+11: record 1 is 51 s old; invoke (+10), sleep 2 -> T0+23: 63 s
    assert h.tree() == [([1, 2, 3], 1, 0), ([1, 2, 3], 2, 0), ([2, 3], 3, 0), ([2, 3], 4, 0)]
    assert h.discards[0] == Discard((records[0],), RECORD_AGE_EXCEEDED, 2, None)
    assert h.discards[1] == Discard(tuple(records[1:]), RETRY_ATTEMPTS_EXHAUSTED, 4, UNHANDLED)
    assert report.succeeded == 0


# --- errors before invocation (throttles) ---------------------------------------------------------------


async def test_throttles_are_not_counted() -> None:
    outcomes: list[Outcome] = [InvokeError("Rate exceeded", throttled=True)] * 5 + [UNHANDLED] * 10
    it = iter(outcomes)
    h = Harness(lambda _: next(it))
    report = await h.run(recs(2), RetryPolicy(max_retry_attempts=1))
    assert [c.attempt for c in h.calls] == [1, 1, 1, 1, 1, 1, 2]
    assert (report.throttles, report.invocations) == (5, 2)
    [gone] = h.discards
    assert gone.approximate_invoke_count == 2
    assert h.delays == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # after each throttle and before the counted retry


async def test_throttled_until_success() -> None:
    outcomes: list[Outcome] = [InvokeError("unreachable")] * 3 + [OK]
    it = iter(outcomes)
    h = Harness(lambda _: next(it))
    report = await h.run(recs(2), RetryPolicy(max_retry_attempts=0))
    assert (report.throttles, report.invocations, report.succeeded, report.discarded) == (3, 1, 2, [])


async def test_record_age_cut_while_throttled() -> None:
    # the function is throttled; records expire one by one as the back-off advances the clock
    throttle = InvokeError("Rate exceeded", throttled=True)
    h = Harness(lambda a: throttle if len(a.records) > 2 else OK)
    records = [rec(1, T0 - 59), rec(2, T0 - 58), rec(3, T0 - 50), rec(4, T0 - 50)]
    report = await h.run(records, RetryPolicy(max_retry_attempts=0, max_record_age_s=60))
    # throttled at T0 (sleep 1), T0+1: 1 is 60 s old, throttled (sleep 2), T0+3: 1 and 2 expired
    assert h.tree() == [([1, 2, 3, 4], 1, 0), ([1, 2, 3, 4], 1, 0), ([3, 4], 1, 0)]
    assert h.discards == [Discard(tuple(records[:2]), RECORD_AGE_EXCEEDED, 1, None)]
    assert (report.throttles, report.invocations, report.succeeded) == (2, 1, 2)


async def test_whole_batch_expires_while_throttled() -> None:
    h = Harness(always(InvokeError("Rate exceeded", throttled=True)))
    records = recs(3, arrival=T0 - 55)
    report = await h.run(records, RetryPolicy(max_record_age_s=60))
    assert h.discards == [Discard(tuple(records), RECORD_AGE_EXCEEDED, 1, None)]
    assert report.invocations == 0 and report.throttles == len(h.calls) == 3  # sleeps 1 + 2 + 3 > 5


# --- ReportBatchItemFailures (spec 4.5) -----------------------------------------------------------------

SUCCESS_FORMS = [
    b"",
    b'""',
    b"[]",
    b"{}",
    b"null",
    b'{"batchItemFailures": []}',
    b'{"batchItemFailures": null}',
]
INVALID_FORMS = [
    json.dumps({"batchItemFailures": [{"itemIdentifier": ""}]}).encode(),
    json.dumps({"batchItemFailures": [{"itemIdentifier": None}]}).encode(),
    json.dumps({"batchItemFailures": [{"foo": 123}]}).encode(),
    json.dumps({"batchItemFailures": [{"foo": None}]}).encode(),
    json.dumps({"batchItemFailures": [{"itemIdentifier": 123}]}).encode(),
    json.dumps({"batchItemFailures": [{"itemIdentifier": "999"}]}).encode(),  # not in the batch
    json.dumps({"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": ""}]}).encode(),
    json.dumps({"batchItemFailures": "2"}).encode(),
    b"not json",
]


@pytest.mark.parametrize("payload", SUCCESS_FORMS)
async def test_partial_response_success_forms(payload: bytes) -> None:
    h = Harness(always(InvokeResult(payload=payload)))
    report = await h.run(recs(3), RetryPolicy(max_retry_attempts=0, report_batch_item_failures=True))
    assert (report.invocations, report.succeeded, report.discarded) == (1, 3, [])


@pytest.mark.parametrize("bisect", [False, True])
@pytest.mark.parametrize("payload", INVALID_FORMS)
async def test_invalid_partial_response_fails_whole_batch_counted_not_bisected(
    payload: bytes, bisect: bool
) -> None:
    result = InvokeResult(payload=payload)
    h = Harness(always(result))
    records = recs(3)
    policy = RetryPolicy(max_retry_attempts=1, report_batch_item_failures=True, bisect_on_error=bisect)
    report = await h.run(records, policy)
    assert h.tree() == [([1, 2, 3], 1, 0), ([1, 2, 3], 2, 0)]
    assert h.discards == [Discard(tuple(records), RETRY_ATTEMPTS_EXHAUSTED, 2, result)]
    assert report.succeeded == 0


@pytest.mark.parametrize("payload", SUCCESS_FORMS + INVALID_FORMS + [partial("2").payload])
async def test_without_report_batch_item_failures_any_body_is_success(payload: bytes) -> None:
    h = Harness(always(InvokeResult(payload=payload)))
    report = await h.run(recs(3), RetryPolicy(max_retry_attempts=0))
    assert (report.invocations, report.succeeded, report.discarded) == (1, 3, [])


async def test_function_error_with_report_batch_item_failures_is_whole_batch_failure() -> None:
    # an unhandled error whose body happens to look like a partial response is still a function error
    result = InvokeResult(payload=partial("3").payload, function_error="Unhandled")
    h = Harness(always(result))
    records = recs(3)
    await h.run(records, RetryPolicy(max_retry_attempts=0, report_batch_item_failures=True))
    assert h.discards == [Discard(tuple(records), RETRY_ATTEMPTS_EXHAUSTED, 1, result)]


async def test_partial_response_lowest_failed_wins_and_later_records_are_redelivered() -> None:
    results = iter([partial("5", "3", "4"), OK])
    h = Harness(lambda _: next(results))
    report = await h.run(recs(6), RetryPolicy(max_retry_attempts=1, report_batch_item_failures=True))
    assert h.tree() == [([1, 2, 3, 4, 5, 6], 1, 0), ([3, 4, 5, 6], 2, 0)]
    assert (report.invocations, report.succeeded, report.discarded) == (2, 6, [])


async def test_partial_response_naming_first_record_retries_whole_batch_counted() -> None:
    result = partial("1")
    h = Harness(always(result))
    records = recs(3)
    await h.run(records, RetryPolicy(max_retry_attempts=1, report_batch_item_failures=True))
    assert h.tree() == [([1, 2, 3], 1, 0), ([1, 2, 3], 2, 0)]
    assert h.discards == [Discard(tuple(records), RETRY_ATTEMPTS_EXHAUSTED, 2, result)]


async def test_partial_response_naming_record_of_the_larger_batch_is_invalid() -> None:
    # after shrinking to [3, 4], an itemIdentifier of 1 is not in the batch: whole (shrunk) batch fails
    results = iter([partial("3"), partial("1"), OK])
    h = Harness(lambda _: next(results))
    report = await h.run(recs(4), RetryPolicy(max_retry_attempts=2, report_batch_item_failures=True))
    assert h.tree() == [([1, 2, 3, 4], 1, 0), ([3, 4], 2, 0), ([3, 4], 3, 0)]
    assert (report.succeeded, report.discarded) == (4, [])


async def test_partial_response_shrinks_repeatedly_counter_carries_over() -> None:
    results = iter([partial("2"), partial("4"), partial("5"), partial("5")])
    h = Harness(lambda _: next(results))
    records = recs(6)
    report = await h.run(records, RetryPolicy(max_retry_attempts=3, report_batch_item_failures=True))
    assert h.tree() == [
        ([1, 2, 3, 4, 5, 6], 1, 0),
        ([2, 3, 4, 5, 6], 2, 0),
        ([4, 5, 6], 3, 0),
        ([5, 6], 4, 0),
    ]
    assert h.discards == [Discard(tuple(records[4:]), RETRY_ATTEMPTS_EXHAUSTED, 4, partial("5"))]
    assert report.succeeded == 4


async def test_custom_item_identifiers() -> None:
    # e.g. Kafka: offsets as integers
    results = iter([partial(12), OK])
    h = Harness(lambda _: next(results))
    records = [rec(i) for i in (10, 11, 12, 13)]
    report = await h.run(
        records,
        RetryPolicy(max_retry_attempts=1, report_batch_item_failures=True),
        item_id=lambda r: int(r.sequence_number),
        identify=lambda v: v if isinstance(v, int) else None,
    )
    assert h.tree() == [([10, 11, 12, 13], 1, 0), ([12, 13], 2, 0)]
    assert report.succeeded == 4


# --- BisectBatchOnFunctionError (spec 4.6) --------------------------------------------------------------


async def test_bisect_isolates_poison_record_invocation_tree() -> None:
    h = Harness(poison(5))
    records = recs(8)
    report = await h.run(records, RetryPolicy(max_retry_attempts=2, bisect_on_error=True))
    assert h.tree() == [
        ([1, 2, 3, 4, 5, 6, 7, 8], 1, 0),
        ([1, 2, 3, 4], 1, 1),
        ([5, 6, 7, 8], 1, 1),
        ([5, 6], 1, 2),
        ([5], 1, 3),
        ([5], 2, 3),
        ([5], 3, 3),
        ([6], 1, 3),
        ([7, 8], 1, 2),
    ]
    # invoked with [1..8], [5..8], [5, 6] and three times alone
    assert h.discards == [Discard((records[4],), RETRY_ATTEMPTS_EXHAUSTED, 6, UNHANDLED)]
    assert (report.invocations, report.succeeded) == (9, 7)
    succeeded = [s for c in h.calls for s in seqs(c.records) if 5 not in seqs(c.records)]
    assert succeeded == [1, 2, 3, 4, 6, 7, 8]  # each exactly once, in order


async def test_bisect_odd_lengths_and_retries_zero() -> None:
    h = Harness(poison(3))
    records = recs(5)
    await h.run(records, RetryPolicy(max_retry_attempts=0, bisect_on_error=True))
    assert h.tree() == [
        ([1, 2, 3, 4, 5], 1, 0),
        ([1, 2], 1, 1),
        ([3, 4, 5], 1, 1),
        ([3], 1, 2),
        ([4, 5], 1, 2),
    ]
    assert h.discards == [Discard((records[2],), RETRY_ATTEMPTS_EXHAUSTED, 3, UNHANDLED)]


async def test_bisect_two_poison_records() -> None:
    h = Harness(poison(1, 4))
    records = recs(4)
    report = await h.run(records, RetryPolicy(max_retry_attempts=1, bisect_on_error=True))
    assert [seqs(d.records) for d in h.discards] == [[1], [4]]
    assert [d.approximate_invoke_count for d in h.discards] == [4, 4]
    assert report.succeeded == 2


async def test_bisect_off_discards_whole_batch() -> None:
    h = Harness(poison(5))
    records = recs(8)
    report = await h.run(records, RetryPolicy(max_retry_attempts=2, bisect_on_error=False))
    assert h.tree() == [(list(range(1, 9)), a, 0) for a in (1, 2, 3)]
    assert h.discards == [Discard(tuple(records), RETRY_ATTEMPTS_EXHAUSTED, 3, UNHANDLED)]
    assert (report.invocations, report.succeeded) == (3, 0)


async def test_bisect_single_record_counts() -> None:
    h = Harness(poison(1))
    records = recs(1)
    await h.run(records, RetryPolicy(max_retry_attempts=1, bisect_on_error=True))
    assert h.tree() == [([1], 1, 0), ([1], 2, 0)]
    assert h.discards == [Discard(tuple(records), RETRY_ATTEMPTS_EXHAUSTED, 2, UNHANDLED)]


async def test_bisect_halves_inherit_counter() -> None:
    # two counted failures of a partial response, then a function error: the halves start at attempt 3
    results = iter([partial("2"), partial("2"), UNHANDLED, OK, OK])
    h = Harness(lambda _: next(results))
    policy = RetryPolicy(max_retry_attempts=5, bisect_on_error=True, report_batch_item_failures=True)
    report = await h.run(recs(5), policy)
    assert h.tree() == [
        ([1, 2, 3, 4, 5], 1, 0),
        ([2, 3, 4, 5], 2, 0),
        ([2, 3, 4, 5], 3, 0),
        ([2, 3], 3, 1),
        ([4, 5], 3, 1),
    ]
    assert report.succeeded == 5


async def test_partial_response_with_bisect_shrinks_instead_of_splitting() -> None:
    h = Harness(poison(3, style="partial"))
    records = recs(6)
    policy = RetryPolicy(max_retry_attempts=2, bisect_on_error=True, report_batch_item_failures=True)
    report = await h.run(records, policy)
    assert h.tree() == [([1, 2, 3, 4, 5, 6], 1, 0), ([3, 4, 5, 6], 2, 0), ([3, 4, 5, 6], 3, 0)]
    [gone] = h.discards
    assert (seqs(gone.records), gone.approximate_invoke_count) == ([3, 4, 5, 6], 3)
    assert report.succeeded == 2


async def test_function_error_with_partial_responses_and_bisect_splits() -> None:
    h = Harness(poison(3))
    records = recs(4)
    policy = RetryPolicy(max_retry_attempts=0, bisect_on_error=True, report_batch_item_failures=True)
    report = await h.run(records, policy)
    assert h.tree() == [([1, 2, 3, 4], 1, 0), ([1, 2], 1, 1), ([3, 4], 1, 1), ([3], 1, 2), ([4], 1, 2)]
    assert [seqs(d.records) for d in h.discards] == [[3]]
    assert report.succeeded == 3


async def test_bisect_forever_ends_by_record_age() -> None:
    h = Harness(poison(2), now_s=T0 + 30, invoke_s=1.0)
    records = [rec(1, T0), rec(2, T0), rec(3, T0 + 29), rec(4, T0 + 29)]
    report = await h.run(
        records,
        RetryPolicy(max_retry_attempts=-1, max_record_age_s=60, bisect_on_error=True),
        backoff=lambda: Backoff(rng=random.Random(1)),
    )
    assert [(seqs(d.records), d.condition) for d in h.discards] == [([2], RECORD_AGE_EXCEEDED)]
    assert h.discards[0].approximate_invoke_count == report.invocations - 2  # [1] and [3, 4] never had it
    assert report.succeeded == 3


# --- back-off --------------------------------------------------------------------------------------------


async def test_backoff_between_retries_and_reset_after_success_and_discard() -> None:
    h = Harness(poison(2, 3))
    await h.run(recs(4), RetryPolicy(max_retry_attempts=1, bisect_on_error=True))
    assert h.tree() == [
        ([1, 2, 3, 4], 1, 0),  # fails, split: sleep 1
        ([1, 2], 1, 1),  # fails, split: sleep 2
        ([1], 1, 2),  # ok: reset
        ([2], 1, 2),  # fails: sleep 1
        ([2], 2, 2),  # discarded: reset
        ([3, 4], 1, 1),  # fails, split: sleep 1
        ([3], 1, 2),  # fails: sleep 2
        ([3], 2, 2),  # discarded: reset
        ([4], 1, 2),
    ]
    assert h.delays == [1.0, 2.0, 1.0, 1.0, 2.0]


async def test_default_backoff_grows_to_a_cap() -> None:
    h = Harness(always(UNHANDLED))
    await h.run(recs(1), RetryPolicy(max_retry_attempts=20), backoff=lambda: Backoff(rng=random.Random(7)))
    assert len(h.delays) == 20
    assert h.delays[0] <= 0.1 < h.delays[5]
    assert all(d <= 10.0 for d in h.delays) and h.delays[-1] >= 5.0


# --- completeness, exceptions, cancellation --------------------------------------------------------------


async def test_empty_batch() -> None:
    h = Harness(always(OK))
    report = await h.run([], RetryPolicy())
    assert report == BatchReport() and h.calls == []


async def test_cancellation_during_invoke_propagates() -> None:
    entered = anyio.Event()

    async def hang(_: Attempt) -> InvokeResult:
        entered.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    h = Harness(always(OK))
    finished = False
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            nonlocal finished
            await process_batch(
                recs(3), policy=RetryPolicy(), invoke=hang, discard=h.discard, now=h.now, sleep=h.sleep
            )
            finished = True

        tg.start_soon(run)
        await entered.wait()
        tg.cancel_scope.cancel()
    assert not finished and h.discards == [] and h.delays == []


async def test_cancellation_during_backoff_propagates() -> None:
    h = Harness(always(InvokeError("throttled", throttled=True)))
    with anyio.move_on_after(0.05) as scope:
        await process_batch(
            recs(2),
            policy=RetryPolicy(),
            invoke=h.invoke,
            discard=h.discard,
            now=h.now,
            sleep=anyio.sleep,  # a real sleep of 1 s
            backoff=CountingBackoff,
        )
    assert scope.cancelled_caught
    assert len(h.calls) == 1 and h.discards == []


async def test_cancelled_error_raised_by_invoke_is_not_a_throttle() -> None:
    cancelled = anyio.get_cancelled_exc_class()

    async def invoke(_: Attempt) -> InvokeResult:
        raise cancelled()

    h = Harness(always(OK))
    with pytest.raises(cancelled):
        await process_batch(
            recs(1), policy=RetryPolicy(), invoke=invoke, discard=h.discard, now=h.now, sleep=h.sleep
        )
    assert h.delays == []


async def test_other_exceptions_propagate() -> None:
    def broken(_: Attempt) -> Outcome:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        await Harness(broken).run(recs(2), RetryPolicy())

    async def failing_discard(_: Discard) -> None:
        raise OSError("destination down")

    h = Harness(always(UNHANDLED))
    with pytest.raises(OSError, match="destination down"):
        await process_batch(
            recs(2),
            policy=RetryPolicy(max_retry_attempts=0),
            invoke=h.invoke,
            discard=failing_discard,
            now=h.now,
            sleep=h.sleep,
        )


@dataclass
class Oracle:
    """The invoker of the property test: throttles as drawn, fails while a poison record is in the batch,
    and logs, from the function's side, which records an invocation settled as succeeded."""

    poison: frozenset[int]
    style: str
    rbif: bool
    throttles: list[bool]
    settled: list[int]

    def __call__(self, attempt: Attempt) -> Outcome:
        if self.throttles and self.throttles.pop():
            return InvokeError("throttled", throttled=True)
        batch = seqs(attempt.records)
        hit = [i for i, s in enumerate(batch) if s in self.poison]
        outcome = poison_result(self.poison, self.style, attempt)
        if not hit or (outcome.function_error is None and not self.rbif):
            self.settled += batch  # success (without ReportBatchItemFailures the body is ignored)
        elif outcome.function_error is None and self.style == "partial":
            self.settled += batch[: hit[0]]  # done up to the lowest failed record
        return outcome


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 14),
    data=st.data(),
    retries=st.integers(-1, 3),
    bisect=st.booleans(),
    rbif=st.booleans(),
    style=st.sampled_from(["unhandled", "partial", "invalid"]),
    age=st.sampled_from([-1, 60]),
    throttles=st.lists(st.booleans(), max_size=10),
)
def test_every_record_settles_exactly_once_in_order(
    n: int,
    data: st.DataObject,
    retries: int,
    bisect: bool,
    rbif: bool,
    style: str,
    age: int,
    throttles: list[bool],
) -> None:
    if retries == -1:
        age = 60  # otherwise a poison record is retried forever
    bad = frozenset(data.draw(st.sets(st.integers(1, n)), label="poison"))
    gaps = data.draw(st.lists(st.floats(0, 30), min_size=n, max_size=n), label="arrival gaps")
    arrivals: list[float] = []
    t = T0 - 90
    for gap in gaps:
        t += gap
        arrivals.append(t)
    records = [rec(i, a) for i, a in zip(range(1, n + 1), arrivals, strict=True)]
    h = Harness(always(OK), invoke_s=1.0)
    h.script = Oracle(bad, style, rbif, throttles, h.settled)
    policy = RetryPolicy(retries, age, bisect, rbif)

    async def main() -> BatchReport:
        return await h.run(records, policy, backoff=lambda: Backoff(rng=random.Random(0)))

    report = anyio.run(main)

    # every record settles exactly once (succeeded or in one discard), in the order of the batch
    assert h.settled == list(range(1, n + 1))
    assert report.succeeded + sum(len(d.records) for d in h.discards) == n
    assert report.discarded == h.discards

    # each invocation is a contiguous run of the batch; attempts stay within the quota
    for call in h.calls:
        got = seqs(call.records)
        assert got == list(range(got[0], got[0] + len(got)))
        if retries >= 0:
            assert call.attempt <= retries + 1
    assert report.invocations + report.throttles == len(h.calls)

    failing = bad if style == "unhandled" or rbif else frozenset()
    for gone in h.discards:
        assert gone.records
        if gone.condition == RECORD_AGE_EXCEEDED:
            assert gone.last_result is None and gone.approximate_invoke_count >= 1
        else:
            assert gone.condition == RETRY_ATTEMPTS_EXHAUSTED
            assert gone.last_result is not None
            assert any(s in failing for s in seqs(gone.records))
            if bisect:
                assert gone.approximate_invoke_count >= retries + 1
            else:
                assert gone.approximate_invoke_count == retries + 1
    if age == -1:
        assert all(d.condition == RETRY_ATTEMPTS_EXHAUSTED for d in h.discards)
        if bisect and style == "unhandled":
            # bisect isolates exactly the poison records, one per discard
            assert [seqs(d.records) for d in h.discards] == [[s] for s in sorted(bad)]
        if not failing:
            assert h.discards == [] and report.succeeded == n
