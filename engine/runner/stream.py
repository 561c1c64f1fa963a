"""The stream runner (Kinesis, DynamoDB Streams, Kafka): ordered shards, lanes, contiguous checkpoints.

One task per shard (a Kafka partition is a shard), started once its parents are finished; within a shard,
ParallelizationFactor lanes (records of one partition key always in one lane, in order). Each lane batches
(BatchSize / window / 6 MB), runs the shared retry policy (engine.stream_policy) and hands what it gives
up on to the on-failure destination. The shard's checkpoint only moves over a contiguous run of finished
records (engine.checkpoints) and is written after a batch's outcome is final: to the store, tied to the
stream's identity so that a re-created stream is not read from a stale position, or, for a source that
keeps positions itself (Kafka's committed offsets), to the source.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.batching import Batcher, encode_record
from engine.checkpoints import ContiguousCheckpoint, lane_of
from engine.events import Envelope
from engine.filtering import RecordFilter, filter_view
from engine.metrics import EngineMetrics, MappingMetrics
from engine.model import EventSourceMapping
from engine.pipeline.checkpoints import CheckpointSink, ShardPositions, ShardState, SourcePositions
from engine.pipeline.collect import collect
from engine.pipeline.failures import Discards, failure_sink
from engine.pipeline.invoking import JournaledInvoker, MeteredInvoker
from engine.pipeline.journal import Journal, LastProcessingResult
from engine.pipeline.stream_batch import StreamBatches
from engine.ports import (
    Invoker,
    ShardInfo,
    ShardRead,
    ShardReader,
    SourceCommits,
    SourceThrottled,
    StartPosition,
    StreamRecord,
    StreamSource,
    TopicProducer,
)
from engine.retry import Backoff
from engine.senders import DestinationSender
from engine.sources.profile import SourceProfile
from engine.store.ports import RunnerStore
from engine.stream_shapes import StreamShape
from engine.timescale import REAL_TIME, TimeScale
from engine.windows import Invocation, WindowTracker

log = structlog.get_logger("engine.runner.stream")

#: how long a stopping runner waits for its last journal rows to be written
JOURNAL_FLUSH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class StreamRunnerSettings:
    #: AWS polls a Kinesis shard about once a second, a DynamoDB shard four times a second
    poll_interval_s: float = 1.0
    #: how often new shards (reshard, table change) are looked for
    discovery_interval_s: float = 10.0
    #: journal rows are written at most this long after their batch (one hop per batch is a fifth of a
    #: busy consumer's CPU); an idle shard and the runner's stop write what is left
    journal_write_behind_s: float = 0.1
    #: the journal keeps each attempt's exact event and each destination record (``--capture-payloads``)
    capture_payloads: bool = False


class StreamRunner:
    def __init__(
        self,
        mapping: EventSourceMapping,
        profile: SourceProfile,
        source: StreamSource,
        invoker: Invoker,
        record_filter: RecordFilter,
        store: RunnerStore,
        destinations: DestinationSender,
        settings: StreamRunnerSettings,
        shape: StreamShape,
        *,
        commits: SourceCommits | None = None,
        producer: TopicProducer | None = None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        metrics: MappingMetrics | None = None,
        time_scale: TimeScale = REAL_TIME,
    ) -> None:
        self.mapping = mapping
        self.metrics = metrics = metrics or EngineMetrics().mapping(mapping, profile.event_source)
        self.source = source
        self.shape = shape
        self.filter = record_filter
        self.settings = settings
        self.now = now
        #: --time-scale: back-offs, windows and record age run faster; arrival times are read on its clock
        self.time = time_scale
        self.sleep = sleep = sleep or time_scale.sleep
        self.profile = profile
        self.policy = time_scale.batching(profile.batching(mapping))
        self.stream = profile.stream(mapping)
        self.window_s = self.stream.window_s
        self.lanes = self.stream.lanes
        self.stream_arn = mapping.event_source_arn or ""
        self._draining = anyio.Event()
        #: the shard reads waiting now, abandoned by drain (nothing is lost: no checkpoint moves)
        self._reads: set[anyio.CancelScope] = set()
        self._started: set[str] = set()
        self._opened: dict[str, anyio.Event] = {}
        self._finished: set[str] = set()
        #: shards another consumer took over while their records were queued here (Kafka rebalance)
        self._released: set[str] = set()
        self._envelopes: dict[str, Envelope] = {}
        self.log = log.bind(mapping=mapping.uuid, source=self.stream_arn, function=mapping.function_arn)
        self.positions = ShardPositions(store, mapping.uuid)
        #: a source that keeps the positions itself (Kafka) is the checkpoint sink; else the store
        checkpoints: CheckpointSink = SourcePositions(commits) if commits is not None else self.positions
        #: set: LATEST and AT_TIMESTAMP are the source's to resume from (its own positions)
        self.source_keeps_positions = commits is not None
        self.journal = journal = Journal(
            store,
            mapping.uuid,
            write_behind_s=settings.journal_write_behind_s,
            observe=metrics.journaled,
            capture_payloads=settings.capture_payloads,
        )
        invoker = MeteredInvoker(invoker, metrics)
        self.batches = StreamBatches(
            JournaledInvoker(invoker, journal, LastProcessingResult(store, mapping.uuid)),
            Discards(
                failure_sink(self.stream.on_failure, shape, destinations, producer),
                journal,
                function_arn=invoker.info.function_arn,
                now=now,
                sleep=sleep,
                log=self.log,
            ),
            checkpoints,
            profile.retry(mapping),
            shape,
            max_payload_bytes=self.policy.max_payload_bytes,
            now=now,
            sleep=sleep,
            log=self.log,
            metrics=metrics,
        )

    def drain(self, *, abandon_waits: bool = False) -> None:
        """Stop reading; batches in flight finish. A read waiting for records is abandoned either way:
        nothing is lost, no checkpoint moves past what was not processed."""
        self._draining.set()
        for read in self._reads:
            read.cancel()

    # --- shards ---------------------------------------------------------------------------------------

    async def run(self, ready: Callable[[], None] = lambda: None) -> None:
        try:
            async with self.source, anyio.create_task_group() as tg:
                identity = await self.source.identity()
                replaced = await self.positions.adopt_identity(identity)
                if replaced is not None:
                    self.log.warning("stream_recreated", previous=replaced, current=identity)
                self._finished = set((await self.positions.load()).finished)
                self.log.info("stream_runner_started", lanes=self.lanes, finished_shards=len(self._finished))
                first_round = True
                while not self._draining.is_set():
                    shards = await self.source.list_shards()
                    self._start_ready_shards(tg, shards)
                    if first_round:  # ready once every startable shard has its iterator
                        first_round = False
                        for opened in list(self._opened.values()):
                            await opened.wait()
                        ready()
                    with anyio.move_on_after(self.settings.discovery_interval_s):
                        await self._draining.wait()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(JOURNAL_FLUSH_TIMEOUT_S):
                await self.journal.flush()  # the rows still queued (write-behind)
            self.log.info("stream_runner_stopped")

    def _start_ready_shards(self, tg: anyio.abc.TaskGroup, shards: Sequence[ShardInfo]) -> None:
        known = {s.shard_id for s in shards}
        for shard in shards:
            if shard.shard_id in self._started or shard.shard_id in self._finished:
                continue
            # a parent that has aged out of the stream no longer blocks its children
            if all(p in self._finished or p not in known for p in shard.parent_ids):
                self._started.add(shard.shard_id)
                self._opened[shard.shard_id] = anyio.Event()
                tg.start_soon(self._run_shard, shard, name=f"esm-shard-{self.mapping.uuid}-{shard.shard_id}")

    async def _start_position(self, shard: ShardInfo, state: ShardState) -> StartPosition:
        kind, ts = self.stream.starting_position, self.stream.starting_timestamp
        if self.source_keeps_positions:  # the source resumes from its own positions, else starts here
            return StartPosition(kind, timestamp=ts)
        checkpoint = state.positions.get(shard.shard_id)
        if checkpoint is not None:
            return StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=checkpoint)
        if shard.parent_ids and any(p in self._finished for p in shard.parent_ids):
            return StartPosition("TRIM_HORIZON")  # a child continues where its parents ended
        if kind == "LATEST" and self.profile.pins_latest:
            # LATEST is fixed the first time: a restart before the first checkpoint resumes from then
            fixed = state.latest_pins.get(shard.shard_id)
            if fixed is not None:
                return StartPosition("AT_TIMESTAMP", timestamp=fixed)
            await self.positions.pin_latest(shard.shard_id, self.now())
        return StartPosition(kind, timestamp=ts)

    async def _run_shard(self, shard: ShardInfo) -> None:
        """Read the shard into its mode (lanes, or tumbling windows) until it ends or the runner drains."""
        shard_log = self.log.bind(shard=shard.shard_id)
        state = await self.positions.load()
        start = await self._start_position(shard, state)
        mode: _Lanes | _Windows
        if self.window_s:
            mode = _Windows(self, shard, self._window_tracker(shard, state))
            if mode.windows.resume_after is not None:  # records already folded into the open window
                start = StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=mode.windows.resume_after)
        else:
            mode = _Lanes(self, shard)
        self._released.discard(shard.shard_id)
        reader = await self.source.open_shard(shard.shard_id, start)
        async with reader, anyio.create_task_group() as tg:
            self._opened[shard.shard_id].set()
            mode.start(tg)
            try:
                ended = await self._read(shard, reader, mode, shard_log)
            finally:
                mode.close()  # what the mode holds is finished, then it stops
        if shard.shard_id in self._released:
            # another consumer owns it now; if it is assigned back, it is opened again from the source
            self._started.discard(shard.shard_id)
            shard_log.info("shard_released")
        elif mode.finished(ended):
            await self.positions.finish(shard.shard_id)
            self._finished.add(shard.shard_id)
            shard_log.info("shard_finished")

    async def _read(
        self, shard: ShardInfo, reader: ShardReader, mode: _Lanes | _Windows, shard_log: Any
    ) -> bool:
        """Hand the shard's reads to its mode until the shard ends (True) or the runner drains (False)."""
        backoff = Backoff(base_s=0.2, cap_s=5.0)
        while not self._draining.is_set():
            read = await self._read_or_back_off(reader, backoff, shard_log)
            if read is None:
                continue
            self.metrics.polled(len(read.records))
            if self.time.scaled_time:
                for rec in read.records:
                    rec.arrival_s = self.time.scaled(rec.arrival_s)
            if read.lag is not None:
                self.metrics.offset_lag(shard.shard_id, read.lag)
            await mode.take(read)
            if read.released:
                self._released.add(shard.shard_id)  # what the mode still holds is the new owner's
                return False
            if read.end_of_shard:
                return True
            if not read.records and not read.millis_behind_latest:
                await self.journal.flush()  # idle: what the write-behind holds goes now
                with anyio.move_on_after(self.settings.poll_interval_s):
                    await self._draining.wait()
        return False

    def _window_tracker(self, shard: ShardInfo, state: ShardState) -> WindowTracker:
        kw: dict[str, Any] = {
            "shard_id": shard.shard_id,
            "stream_arn": self.stream_arn,
            "window_s": self.window_s,
            "batching": self.policy,
            "now": self.now(),
        }
        saved = state.windows.get(shard.shard_id)
        return WindowTracker.restore(saved, **kw) if saved else WindowTracker(**kw)

    async def _read_or_back_off(
        self, reader: ShardReader, backoff: Backoff, shard_log: Any
    ) -> ShardRead | None:
        """One read of up to BatchSize records; None after a throttle, once backed off (nothing lost), and
        when the runner drains."""
        if self._draining.is_set():
            return None
        read: ShardRead | None = None
        with anyio.CancelScope() as scope:
            self._reads.add(scope)
            try:
                read = await reader.read(min(self.policy.batch_size, 10_000))
            except SourceThrottled as e:
                delay = backoff.next_delay()
                shard_log.warning("shard_read_throttled", error=str(e), retry_in_s=round(delay, 2))
                await self.sleep(delay)
                return None
            finally:
                self._reads.discard(scope)
        if read is not None:
            backoff.reset()
        return read

    def _matches(self, rec: StreamRecord) -> bool:
        view = filter_view(self.profile.filters, rec.record)
        return view is not None and self.filter.matches(view)

    def _envelope(self, shard_id: str) -> Envelope:
        envelope = self._envelopes.get(shard_id)
        if envelope is None:
            envelope = self._envelopes[shard_id] = self.shape.envelope(shard_id)
        return envelope


def _encoded(records: Sequence[StreamRecord]) -> list[tuple[StreamRecord, bytes]]:
    return [(r, r.encoded or encode_record(r.record)) for r in records]


class _LaneFeed:
    """A lane's share of its shard's reads, as the reader hands them over (bounded: backpressure)."""

    idle_wait_s = math.inf  # a lane waits for its shard
    reopens_idle_window = False

    def __init__(self, recv: MemoryObjectReceiveStream[list[StreamRecord]]) -> None:
        self.recv = recv
        self.closed = False

    def stopped(self) -> bool:
        return self.closed

    async def take(self, room: int, wait_s: float) -> Sequence[tuple[StreamRecord, bytes]] | None:
        with anyio.move_on_after(wait_s) if wait_s < math.inf else contextlib.nullcontext():
            try:
                return _encoded(await self.recv.receive())
            except anyio.EndOfStream:
                self.closed = True
                return []
        return None

    def take_ready(self, room: int) -> Sequence[tuple[StreamRecord, bytes]]:
        ready: list[tuple[StreamRecord, bytes]] = []
        while len(ready) < room:
            try:
                ready += _encoded(self.recv.receive_nowait())
            except anyio.WouldBlock:
                break
            except anyio.EndOfStream:
                self.closed = True
                break
        return ready

    async def too_large(self, item: StreamRecord, encoded: bytes) -> bool:
        return False  # alone, as its own batch: the pipeline sends it to the on-failure destination


class _Lanes:
    """ParallelizationFactor lanes (records of one partition key always in one lane, in order), each
    batching its share of the shard; the checkpoint moves over a contiguous run of finished records."""

    def __init__(self, runner: StreamRunner, shard: ShardInfo) -> None:
        self.runner = runner
        self.shard = shard
        self.tracker = ContiguousCheckpoint()
        self.sends: list[MemoryObjectSendStream[list[StreamRecord]]] = []

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        for i in range(self.runner.lanes):
            # bounded: a slow function holds the reader back instead of filling memory; each item is one
            # read's records for the lane: a batch without a window is one read
            send, recv = anyio.create_memory_object_stream[list[StreamRecord]](2)
            self.sends.append(send)
            tg.start_soon(self._lane, i, recv, name=f"esm-lane-{self.shard.shard_id}-{i}")

    async def take(self, read: ShardRead) -> None:
        r, shard_id = self.runner, self.shard.shard_id
        dropped: list[str] = []
        per_lane: list[list[StreamRecord]] = [[] for _ in self.sends]
        self.tracker.extend(rec.sequence_number for rec in read.records)
        if r.filter.is_empty and r.lanes == 1:
            per_lane[0] = list(read.records)
        else:
            for rec in read.records:
                if r.filter.is_empty or r._matches(rec):
                    per_lane[lane_of(rec.lane_key, r.lanes)].append(rec)
                else:
                    dropped.append(rec.sequence_number)
        for lane, recs in zip(self.sends, per_lane, strict=True):
            if recs:
                await lane.send(recs)
        if dropped:  # filtered-out records advance the checkpoint too
            await r.batches.filtered_out(shard_id, dropped)
            await r.batches.checkpoint(shard_id, self.tracker.finish(dropped))

    def close(self) -> None:
        for send in self.sends:
            send.close()

    def finished(self, ended: bool) -> bool:
        return ended and len(self.tracker) == 0

    async def _lane(self, index: int, recv: MemoryObjectReceiveStream[list[StreamRecord]]) -> None:
        r, shard_id = self.runner, self.shard.shard_id
        scope = shard_id if r.lanes == 1 else f"{shard_id}/lane-{index}"
        envelope = r._envelope(shard_id)
        feed = _LaneFeed(recv)
        carry: list[tuple[StreamRecord, bytes]] = []
        async with recv:
            while carry or not feed.closed:
                # the window opens as the profile says (spec 3.2)
                batcher: Batcher[StreamRecord] = Batcher(
                    r.policy,
                    envelope_bytes=envelope.overhead,
                    now=anyio.current_time(),
                    open_on_first_record=r.profile.window_opens_at_first_record,
                )
                got = await collect(batcher, feed, carry, anyio.current_time)
                carry = got.carry
                if shard_id in r._released:
                    continue  # the new owner reads these from the last committed position
                if got.batch.items:
                    batch = list(zip(got.batch.items, got.batch.encoded, strict=True))
                    await r.batches.process(shard_id, scope, batch, envelope, self.tracker)


class _Windows:
    """Tumbling windows (spec 4.7): the shard is one lane folding its reads into windows, invoking each
    step as the window's clock says; the checkpoint follows the windows' state, saved with it."""

    def __init__(self, runner: StreamRunner, shard: ShardInfo, windows: WindowTracker) -> None:
        self.runner = runner
        self.shard = shard
        self.windows = windows
        # bounded: a slow function holds the reader back
        self.send, self.recv = anyio.create_memory_object_stream[ShardRead](2)

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        tg.start_soon(self._lane, name=f"esm-windows-{self.shard.shard_id}")

    async def take(self, read: ShardRead) -> None:
        await self.send.send(read)

    def close(self) -> None:
        self.send.close()

    def finished(self, ended: bool) -> bool:
        return self.windows.finished

    async def _lane(self) -> None:
        r, windows, shard_id = self.runner, self.windows, self.shard.shard_id
        closed = False
        async with self.recv:
            while not windows.finished:
                step = windows.next(r.now())
                if isinstance(step, Invocation):
                    await r.batches.process_window(shard_id, windows, step)
                    windows.settled(step, r.now())
                    await r.batches.checkpoint(shard_id, windows.checkpoint)
                    await r.positions.save_window(shard_id, windows.to_json())
                    continue
                if closed:
                    return  # drained: the open window's state is saved, its records read again from there
                wait_s = math.inf if step.until is None else r.time.real(max(0.0, step.until - r.now()))
                with anyio.move_on_after(wait_s):
                    try:
                        read = await self.recv.receive()
                    except anyio.EndOfStream:
                        closed = True
                        continue
                    matched = [rec for rec in read.records if r.filter.is_empty or r._matches(rec)]
                    if len(matched) < len(read.records):
                        kept = {rec.sequence_number for rec in matched}
                        dropped = [
                            rec.sequence_number for rec in read.records if rec.sequence_number not in kept
                        ]
                        await r.batches.filtered_out(shard_id, dropped)
                    windows.feed(matched, r.now(), end_of_shard=read.end_of_shard)
                    if read.records and not matched and windows.empty:
                        await r.batches.checkpoint(shard_id, read.records[-1].sequence_number)
