"""The queue runner (SQS, RabbitMQ, ActiveMQ): concurrent pollers, per-message acknowledgement.

Each poller collects one batch (BatchSize / window / 6 MB), drops what the filter refuses (acknowledged at
once, as AWS deletes or acks filtered-out messages), invokes the function and settles every message:
acknowledged after success, handed back to the broker after a failure (SQS: left for the visibility
timeout to return them). The runner scales its pollers between a floor and MaximumConcurrency by backlog.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
import structlog

from engine.batching import Batch, Batcher, encode_record
from engine.events import Envelope
from engine.filtering import RecordFilter, filter_view
from engine.metrics import EngineMetrics, MappingMetrics
from engine.model import EventSourceMapping
from engine.pipeline.collect import collect
from engine.pipeline.invoking import MeteredInvoker
from engine.pipeline.journal import Journal, LastProcessingResult
from engine.pipeline.queue_batch import QueueBatches
from engine.ports import Invoker, QueueMessage, QueueSource, SourceError, SourceNotFound
from engine.sources.profile import SourceProfile
from engine.store.ports import RunnerStore
from engine.timescale import REAL_TIME, TimeScale

log = structlog.get_logger("engine.runner.queue")

#: the largest ReceiveMessage an SQS call returns; brokers use it as a prefetch step
RECEIVE_MAX = 10
LONG_POLL_S = 20.0
#: the journal's reason for a message the broker dead-lettered past its redelivery limit (ActiveMQ's
#: maximumRedeliveries, spec 7); our word, AWS names none
MAXIMUM_REDELIVERIES_EXCEEDED = "MaximumRedeliveriesExceeded"


@dataclass(frozen=True)
class QueueRunnerSettings:
    #: concurrent batches as soon as messages flow (AWS starts 5 for SQS)
    initial_pollers: int = 5
    #: pollers an empty queue keeps long-polling. AWS keeps its 5 (at least 2); locally an idle mapping
    #: holds one connection, and the first messages it receives start the other pollers at once
    idle_pollers: int = 1
    #: the first receive of the poller an idle mapping's first messages start (AWS's 5 pollers were all
    #: waiting): a short poll (no wait, SQS: on the short-call connections), so a lone message costs one
    #: quick receive, not another connection held for 20 s (1,000 waking mappings would pass ElasticMQ's
    #: 1,024-connection cap)
    wake_wait_s: float = 0.0
    #: ceiling when the mapping has no ScalingConfig.MaximumConcurrency (AWS: 1,250; locally less)
    default_max_pollers: int = 50
    #: how long a throttled or unreachable function is retried before the batch goes back (SQS: the
    #: visibility timeout, set per source)
    invoke_retry_budget_s: float = 30.0
    receive_max: int = RECEIVE_MAX
    long_poll_s: float = LONG_POLL_S
    #: the journal keeps each attempt's exact event (``esm serve --capture-payloads``)
    capture_payloads: bool = False
    #: how often the queue's depth is asked while messages flow (esm_queue_depth, the dashboard)
    depth_interval_s: float = 10.0


class QueueRunner:
    def __init__(
        self,
        mapping: EventSourceMapping,
        profile: SourceProfile,
        source: QueueSource,
        envelope: Envelope,
        invoker: Invoker,
        record_filter: RecordFilter,
        store: RunnerStore,
        settings: QueueRunnerSettings,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        metrics: MappingMetrics | None = None,
        time_scale: TimeScale = REAL_TIME,
    ) -> None:
        self.mapping = mapping
        self.metrics = metrics = metrics or EngineMetrics().mapping(mapping, profile.event_source)
        self.source = source
        self.envelope = envelope
        self.filter = record_filter
        self.settings = settings
        self.clock = clock
        self.profile = profile
        #: --time-scale: the batching window and the invoke back-off run faster
        self.policy = time_scale.batching(profile.batching(mapping))
        sleep = sleep or time_scale.sleep
        self.log = log.bind(
            mapping=mapping.uuid, source=mapping.event_source_arn, function=mapping.function_arn
        )
        self.batches = QueueBatches(
            source,
            envelope,
            MeteredInvoker(invoker, metrics),
            profile,
            Journal(
                store,
                mapping.uuid,
                observe=metrics.journaled,
                capture_payloads=settings.capture_payloads,
                keep_items=True,  # message ids have no order: first..last does not say what a batch held
            ),
            LastProcessingResult(store, mapping.uuid, shown=profile.shows_last_processing_result),
            report_batch_item_failures=profile.retry(mapping).report_batch_item_failures,
            invoke_budget_s=settings.invoke_retry_budget_s,
            clock=clock,
            sleep=sleep,
            log=self.log,
            metrics=metrics,
        )
        provisioned = profile.provisioned_pollers(mapping)
        if provisioned is not None:
            # provisioned pollers stay up while the queue is idle, as on AWS
            self.idle_pollers, self.max_pollers = provisioned
            self.burst_pollers = self.idle_pollers
        else:
            self.max_pollers = mapping.maximum_concurrency or settings.default_max_pollers
            self.burst_pollers = min(settings.initial_pollers, self.max_pollers)
            self.idle_pollers = min(settings.idle_pollers, self.burst_pollers)
        self._active = 0
        self._draining = anyio.Event()
        #: the long polls waiting now, abandoned by drain (SQS: what one was handed comes back after the
        #: visibility timeout; a broker gets back what it pushed when the transport closes)
        self._receives: set[anyio.CancelScope] = set()
        # a broker pushes into one buffer: batches are cut one at a time, in order, and only the
        # invocations run concurrently (SQS pollers each receive for themselves)
        self._cut_lock = anyio.Lock() if profile.one_push_buffer else None
        self._tg: anyio.abc.TaskGroup | None = None
        #: messages received so far (the depth watcher asks only when some came since it last asked)
        self._received = 0

    def drain(self, *, abandon_waits: bool = False) -> None:
        """Stop receiving; batches in flight finish. A long poll still waiting goes on until it answers
        (what it receives is processed before the runner stops) unless the engine stops: abandoned, a poll
        the queue has already handed messages would leave them invisible until their visibility timeout,
        which a mapping's update or disable must not cost."""
        self._draining.set()
        if abandon_waits:
            for receive in self._receives:
                receive.cancel()

    async def run(self, ready: Callable[[], None] = lambda: None) -> None:
        self.log.info(
            "queue_runner_started",
            pollers=self.idle_pollers,
            burst_pollers=self.burst_pollers,
            max_pollers=self.max_pollers,
        )
        try:
            async with self.source, anyio.create_task_group() as tg:
                self._tg = tg
                for _ in range(self.idle_pollers):
                    self._spawn()
                tg.start_soon(self._watch_depth, name=f"esm-depth-{self.mapping.uuid}")
                ready()
        finally:
            self.log.info("queue_runner_stopped")

    async def _watch_depth(self) -> None:
        """The queue's depth every depth_interval_s while messages flow or some were left waiting; an
        idle mapping asks nothing, a broker that does not say (ActiveMQ) is not asked again."""
        seen, depth = 0, 0
        while not self._draining.is_set():
            with anyio.move_on_after(self.settings.depth_interval_s):
                await self._draining.wait()
            if self._draining.is_set() or (self._received == seen and depth == 0):
                continue
            seen = self._received
            try:
                got = await self.source.depth()
            except (SourceError, SourceNotFound) as e:
                self.log.debug("queue_depth_failed", error=str(e))
                continue
            if got is None:
                return
            depth = got
            self.metrics.queue_depth(depth)

    def _spawn(self, first_wait_s: float | None = None) -> None:
        assert self._tg is not None
        self._active += 1
        self._tg.start_soon(self._poller, first_wait_s, name=f"esm-poller-{self.mapping.uuid}-{self._active}")

    async def _poller(self, first_wait_s: float | None) -> None:
        carry: list[tuple[QueueMessage, bytes]] = []
        wait_s = self.settings.long_poll_s if first_wait_s is None else first_wait_s
        try:
            while not self._draining.is_set():
                started = self.clock()
                if self._cut_lock is None:
                    batch, carry, backlog = await self._collect(carry, wait_s)
                else:
                    async with self._cut_lock:
                        batch, carry, backlog = await self._collect(carry, wait_s)
                wait_s = self.settings.long_poll_s
                if not batch.items:
                    if not carry and self._active > self.idle_pollers:
                        return  # idle: scale down
                    continue
                while backlog and self._active < self.burst_pollers:
                    self._spawn()  # a backlog gets AWS's first concurrent batches at once
                if self._active < self.burst_pollers:
                    # messages, and fewer pollers than AWS keeps waiting: one more looks briefly (the start
                    # of a burst gets its concurrent batches within a round trip or two; on an idle queue
                    # it is gone after one short poll)
                    self._spawn(self.settings.wake_wait_s)
                invoke_s = await self.batches.process(batch)
                # another poller helps only when the function, not the queue's round trips, is the bottleneck
                function_bound = invoke_s >= (self.clock() - started) / 2
                if backlog and function_bound and self._active < self.max_pollers:
                    self._spawn()
        finally:
            self._active -= 1

    async def _collect(
        self, carry: list[tuple[QueueMessage, bytes]], wait_s: float
    ) -> tuple[Batch[QueueMessage], list[tuple[QueueMessage, bytes]], bool]:
        """One batch, its first receive waiting up to ``wait_s``; returns it, what did not fit, and whether
        the queue showed a backlog."""
        batcher: Batcher[QueueMessage] = Batcher(
            self.policy,
            envelope_bytes=self.envelope.overhead,
            now=self.clock(),
            open_on_first_record=self.profile.window_opens_at_first_record,
        )
        feed = _PollerFeed(self, wait_s)
        got = await collect(batcher, feed, carry, self.clock)
        return got.batch, got.carry, got.overflowed or feed.backlog

    async def _admit(self, received: Sequence[QueueMessage]) -> list[tuple[QueueMessage, bytes]]:
        """Encode what the filter lets through; acknowledge what it refuses."""
        kept: list[tuple[QueueMessage, bytes]] = []
        dropped: list[QueueMessage] = []
        for msg in received:
            if self.filter.is_empty or self._matches(msg):
                kept.append((msg, encode_record(msg.record)))
            else:
                dropped.append(msg)
        if dropped:
            await self.batches.filtered_out(dropped)
        return kept

    def _matches(self, msg: QueueMessage) -> bool:
        view = filter_view(self.profile.filters, msg.record)
        return view is not None and self.filter.matches(view)


class _PollerFeed:
    """A poller's receives: long polls of up to 10 messages, filtered and encoded as they arrive."""

    reopens_idle_window = True

    def __init__(self, runner: QueueRunner, idle_wait_s: float) -> None:
        self.runner = runner
        self.idle_wait_s = idle_wait_s
        #: a receive came back full: more is waiting
        self.backlog = False

    def stopped(self) -> bool:
        return self.runner._draining.is_set()

    async def take(self, room: int, wait_s: float) -> Sequence[tuple[QueueMessage, bytes]] | None:
        if self.stopped():
            return None
        want = min(self.runner.settings.receive_max, room)
        with anyio.CancelScope() as receive:
            self.runner._receives.add(receive)
            try:
                received = await self.runner.source.receive(want, wait_s)
            finally:
                self.runner._receives.discard(receive)
        if receive.cancelled_caught or not received:
            return None
        self.runner.metrics.polled(len(received))
        self.runner._received += len(received)
        self.backlog = self.backlog or len(received) >= want
        return await self.runner._admit(received)

    def take_ready(self, room: int) -> Sequence[tuple[QueueMessage, bytes]]:
        return ()  # a receive is a round trip: a batch without a window goes as received

    async def too_large(self, item: QueueMessage, encoded: bytes) -> bool:
        await self.runner.batches.too_large(item, len(encoded))  # never invocable: dead-lettered
        return True
