"""Metrics in the Prometheus text format (``GET /metrics``), per mapping, with AWS's names and units.

The event counts (``MetricsConfig: {Metrics: [EventCount]}``) exist for a mapping only when it turns them
on, as on AWS; the function-side metrics always. Most counts are read off the journal as its rows are
written (:meth:`MappingMetrics.journaled`): an invocation, a filter's refusal, a discard and a destination
delivery count exactly as the journal shows them. What the journal does not hold (polls, deletes,
throttles retried within a budget, concurrency, iterator age, offset lag) is counted where it happens.

Our reading of AWS's definitions (their metric docs name the counts, not every edge):
- PolledEventCount: records read from the source (a long poll's messages, a shard read's records);
- FilteredOutEventCount: records the FilterCriteria refused;
- InvokedEventCount: records in an invocation attempt that reached the function (each retry again);
- FailedInvokeEventCount: records of an attempt that failed: a function error, an invalid response, the
  items a partial batch response reported, a throttled or unreachable function;
- DroppedEventCount: records given up on (expired, retries exhausted, too large, past a broker's
  redelivery limit);
- DeletedEventCount: queue messages acknowledged (deleted from SQS, acked on a broker) after success or
  because the filter refused them;
- OnFailureDestinationDeliveredEventCount: records whose failure record the destination took.
OffsetLag is the mapping's total over its partitions (records behind the partitions' ends); IteratorAge
the age of the last record of the latest invocation, in milliseconds; ``esm_queue_depth`` (ours: AWS's
is the queue service's ApproximateNumberOfMessagesVisible) the messages a queue holds, asked every 10 s
while messages flow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from engine.model import EventSourceMapping
from engine.pipeline.invoking import INVOKE_ERROR, INVOKED
from engine.pipeline.verdict import FUNCTION_ERROR, INVALID_RESPONSE, PARTIAL_FAILURE, SUCCESS
from engine.store.ports import DESTINATION_SENT, DISCARDED, FILTERED_OUT, JournalEntry

LABELS = ("mapping_uuid", "function_name", "event_source")
#: journal outcomes of an attempt that reached the function
INVOKED_OUTCOMES = frozenset({INVOKED, SUCCESS, PARTIAL_FAILURE, FUNCTION_ERROR, INVALID_RESPONSE})
FAILED_OUTCOMES = frozenset({FUNCTION_ERROR, INVALID_RESPONSE, INVOKE_ERROR})
#: Lambda's duration buckets are the function's; these cover in-process microseconds to a 15-minute timeout
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class EngineMetrics:
    """The engine's registry (its own, not the process-global one: two engines in a test never mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, LABELS, registry=r)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, LABELS, registry=r)

        self.invocations = counter("esm_invocations", "Invocations (Lambda's Invocations)")
        self.errors = counter("esm_errors", "Invocations that returned a function error (Errors)")
        self.throttles = counter("esm_throttles", "Invocations refused as throttled (Throttles)")
        self.duration = Histogram(
            "esm_duration_seconds",
            "Time the function spent on an invocation (Duration)",
            LABELS,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.concurrent = gauge("esm_concurrent_executions", "Invocations running now (ConcurrentExecutions)")
        self.iterator_age = gauge(
            "esm_iterator_age_milliseconds", "Age of the last record of the latest invocation (IteratorAge)"
        )
        self.queue_depth = gauge(
            "esm_queue_depth",
            "Messages waiting in the queue (SQS ApproximateNumberOfMessages, a broker's ready)",
        )
        self.offset_lag = gauge(
            "esm_offset_lag", "Records behind the end of the mapping's partitions (OffsetLag)"
        )
        self.polled = counter("esm_polled_events", "Records read from the source (PolledEventCount)")
        self.filtered_out = counter(
            "esm_filtered_out_events", "Records the filter criteria refused (FilteredOutEventCount)"
        )
        self.invoked = counter("esm_invoked_events", "Records in invocation attempts (InvokedEventCount)")
        self.failed_invoke = counter(
            "esm_failed_invoke_events", "Records of failed invocation attempts (FailedInvokeEventCount)"
        )
        self.dropped = counter("esm_dropped_events", "Records given up on (DroppedEventCount)")
        self.deleted = counter(
            "esm_deleted_events", "Queue messages deleted or acknowledged (DeletedEventCount)"
        )
        self.destination_delivered = counter(
            "esm_on_failure_destination_delivered_events",
            "Records sent to the on-failure destination (OnFailureDestinationDeliveredEventCount)",
        )
        self._function_side = (
            self.invocations,
            self.errors,
            self.throttles,
            self.duration,
            self.concurrent,
            self.iterator_age,
            self.offset_lag,
            self.queue_depth,
        )
        self._event_counts = (
            self.polled,
            self.filtered_out,
            self.invoked,
            self.failed_invoke,
            self.dropped,
            self.deleted,
            self.destination_delivered,
        )
        self._labels: dict[str, tuple[str, str, str]] = {}
        #: per mapping, what the dashboard shows whatever MetricsConfig says, read without collecting the
        #: registry (a thousand mappings' series every few seconds would cost a core's percent)
        self.tallies: dict[str, Tally] = {}

    def mapping(self, m: EventSourceMapping, event_source: str) -> MappingMetrics:
        """The mapping's metrics (its counts go on across restarts and updates of its runner)."""
        labels = (m.uuid, m.function_name, event_source)
        previous = self._labels.get(m.uuid)
        if previous is not None and previous != labels:  # an update changed the function
            self.forget(m.uuid)
        self._labels[m.uuid] = labels
        tally = self.tallies.setdefault(m.uuid, Tally())
        return MappingMetrics(self, labels, event_counts="EventCount" in m.metrics, tally=tally)

    def forget(self, uuid: str) -> None:
        """A deleted mapping's series go with it."""
        labels = self._labels.pop(uuid, None)
        self.tallies.pop(uuid, None)
        if labels is None:
            return
        for family in (*self._function_side, *self._event_counts):
            with contextlib.suppress(KeyError):  # never emitted
                family.remove(*labels)


@dataclass
class Tally:
    """A mapping's running totals as plain numbers: records invoked and records of failed attempts,
    invocations, function errors, and its lag (iterator age ms, offset lag or queue depth; None yet)."""

    records: int = 0
    failed: int = 0
    invocations: int = 0
    errors: int = 0
    lag: float | None = None

    def values(self) -> tuple[int, int, int, int, float | None]:
        return (self.records, self.failed, self.invocations, self.errors, self.lag)


class MappingMetrics:
    def __init__(
        self,
        metrics: EngineMetrics,
        labels: tuple[str, str, str],
        *,
        event_counts: bool,
        tally: Tally | None = None,
    ) -> None:
        self._m = metrics
        self.tally = tally if tally is not None else Tally()
        self._labels = labels
        self.event_counts = event_counts
        self._invocations = metrics.invocations.labels(*labels)
        self._errors = metrics.errors.labels(*labels)
        self._throttles = metrics.throttles.labels(*labels)
        self._duration = metrics.duration.labels(*labels)
        self._concurrent = metrics.concurrent.labels(*labels)
        self._lags: dict[str, int] = {}

    def _count(self, family: Counter, n: int) -> None:
        if self.event_counts and n:
            family.labels(*self._labels).inc(n)

    # --- function side ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def invocation(self) -> Iterator[None]:
        self._concurrent.inc()
        try:
            yield
        finally:
            self._concurrent.dec()

    def invoked(self, duration_s: float, *, function_error: bool) -> None:
        self._invocations.inc()
        self._duration.observe(duration_s)
        self.tally.invocations += 1
        if function_error:
            self._errors.inc()
            self.tally.errors += 1

    def throttled(self) -> None:
        self._throttles.inc()

    def iterator_age(self, age_ms: float) -> None:
        self.tally.lag = max(0.0, age_ms)
        self._m.iterator_age.labels(*self._labels).set(self.tally.lag)

    def queue_depth(self, depth: int) -> None:
        self.tally.lag = depth
        self._m.queue_depth.labels(*self._labels).set(depth)

    def offset_lag(self, partition: str, lag: int) -> None:
        self._lags[partition] = lag
        self.tally.lag = sum(self._lags.values())
        self._m.offset_lag.labels(*self._labels).set(self.tally.lag)

    # --- event counts (MetricsConfig EventCount) --------------------------------------------------

    def polled(self, n: int) -> None:
        self._count(self._m.polled, n)

    def deleted(self, n: int) -> None:
        self._count(self._m.deleted, n)

    def journaled(self, e: JournalEntry) -> None:
        """Counts read off a journal row as it is written."""
        if e.outcome in INVOKED_OUTCOMES:
            self._count(self._m.invoked, e.batch_size)
            self.tally.records += e.batch_size
        if e.outcome in FAILED_OUTCOMES:
            self._count(self._m.failed_invoke, e.batch_size)
            self.tally.failed += e.batch_size
        elif e.outcome == PARTIAL_FAILURE:
            self._count(self._m.failed_invoke, len(e.detail.get("failed") or ()))
        elif e.outcome == DISCARDED:
            self._count(self._m.dropped, e.batch_size)
        elif e.outcome == DESTINATION_SENT:
            self._count(self._m.destination_delivered, e.batch_size)
        elif e.outcome == FILTERED_OUT:
            self._count(self._m.filtered_out, e.batch_size)


def values(metrics: EngineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample now, keyed by (name, sorted labels): what tests and the dashboard read."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
