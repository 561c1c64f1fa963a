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

import json
import math
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
import anyio.abc
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.batching import Admission, Batcher, encode_envelope, encode_record
from engine.checkpoints import ContiguousCheckpoint, lane_of
from engine.destinations import (
    MAXIMUM_PAYLOAD_SIZE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    s3_key,
    with_payload,
)
from engine.events import Envelope
from engine.filtering import RecordFilter, filter_view
from engine.model import EventSourceMapping
from engine.ports import (
    InvokeError,
    Invoker,
    InvokeResult,
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
from engine.responses import ResponseKind, parse_batch_item_failures
from engine.retry import Backoff
from engine.runner.status import LastProcessingResult
from engine.senders import DestinationError, DestinationSender, destination_kind, kafka_destination_topic
from engine.sources.profile import SourceProfile
from engine.store.sqlite import (
    DESTINATION_FAILED,
    DESTINATION_SENT,
    DISCARDED,
    JournalEntry,
    SqliteStore,
)
from engine.stream_policy import Attempt, Discard, process_batch
from engine.stream_shapes import Failure, StreamShape
from engine.windows import Invocation, WindowTracker, parse_window_response

log = structlog.get_logger("engine.runner.stream")

SHARD_END = "SHARD_END"
IDENTITY_SCOPE = "stream-identity"


@dataclass(frozen=True)
class StreamRunnerSettings:
    #: AWS polls a Kinesis shard about once a second, a DynamoDB shard four times a second
    poll_interval_s: float = 1.0
    #: how often new shards (reshard, table change) are looked for
    discovery_interval_s: float = 10.0


class StreamRunner:
    def __init__(
        self,
        mapping: EventSourceMapping,
        profile: SourceProfile,
        source: StreamSource,
        invoker: Invoker,
        record_filter: RecordFilter,
        store: SqliteStore,
        destinations: DestinationSender,
        settings: StreamRunnerSettings,
        shape: StreamShape,
        *,
        commits: SourceCommits | None = None,
        producer: TopicProducer | None = None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.mapping = mapping
        self.source = source
        self.shape = shape
        #: set: the source keeps the positions (Kafka), the store only the stream identity
        self.commits = commits
        self.producer = producer
        self.invoker = invoker
        self.filter = record_filter
        self.store = store
        self.destinations = destinations
        self.settings = settings
        self.now = now
        self.sleep = sleep
        self.profile = profile
        self.policy = profile.batching(mapping)
        self.retry = profile.retry(mapping)
        self.window_s = int(mapping.params.get("TumblingWindowInSeconds", 0))
        # window state is per shard: a windowed shard is one lane
        self.lanes = 1 if self.window_s else int(mapping.params.get("ParallelizationFactor", 1))
        self.destination = ((mapping.params.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        self.stream_arn = mapping.event_source_arn or ""
        self._draining = anyio.Event()
        self._started: set[str] = set()
        self._opened: dict[str, anyio.Event] = {}
        self._finished: set[str] = set()
        #: shards another consumer took over while their records were queued here (Kafka rebalance)
        self._released: set[str] = set()
        self.last_result = LastProcessingResult(store, mapping.uuid)
        self._envelopes: dict[str, Envelope] = {}
        self.log = log.bind(mapping=mapping.uuid, source=self.stream_arn, function=mapping.function_arn)

    def drain(self) -> None:
        self._draining.set()

    # --- shards ---------------------------------------------------------------------------------------

    async def run(self, ready: Callable[[], None] = lambda: None) -> None:
        try:
            async with self.source, anyio.create_task_group() as tg:
                await self._check_identity()
                checkpoints = self.store.checkpoints(self.mapping.uuid)
                self._finished = {scope for scope, pos in checkpoints.items() if pos == SHARD_END}
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
            self.log.info("stream_runner_stopped")

    async def _check_identity(self) -> None:
        identity = await self.source.identity()
        stored = self.store.checkpoints(self.mapping.uuid).get(IDENTITY_SCOPE)
        if stored is not None and stored != identity:
            # deleted and re-created under the same name: the old positions mean nothing here
            self.log.warning("stream_recreated", previous=stored, current=identity)
            self.store.clear_checkpoints(self.mapping.uuid)
        self.store.put_checkpoint(self.mapping.uuid, IDENTITY_SCOPE, identity)

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

    def _start_position(self, shard: ShardInfo) -> StartPosition:
        kind = str(self.mapping.params.get("StartingPosition", "LATEST"))
        ts = self.mapping.params.get("StartingPositionTimestamp")
        if self.commits is not None:  # the source resumes from its own positions, else starts here
            return StartPosition(kind, timestamp=float(ts) if ts is not None else None)
        checkpoint = self.store.checkpoints(self.mapping.uuid).get(shard.shard_id)
        if checkpoint is not None:
            return StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=checkpoint)
        if shard.parent_ids and any(p in self._finished for p in shard.parent_ids):
            return StartPosition("TRIM_HORIZON")  # a child continues where its parents ended
        if kind == "LATEST" and self.profile.pins_latest:
            # LATEST is fixed the first time: a restart before the first checkpoint resumes from then
            key = f"latest-at:{shard.shard_id}"
            fixed = self.store.checkpoints(self.mapping.uuid).get(key)
            if fixed is not None:
                return StartPosition("AT_TIMESTAMP", timestamp=float(fixed))
            self.store.put_checkpoint(self.mapping.uuid, key, repr(self.now()))
        return StartPosition(kind, timestamp=float(ts) if ts is not None else None)

    async def _run_shard(self, shard: ShardInfo) -> None:
        if self.window_s:
            await self._run_windowed_shard(shard)
            return
        shard_log = self.log.bind(shard=shard.shard_id)
        tracker = ContiguousCheckpoint()
        self._released.discard(shard.shard_id)
        reader = await self.source.open_shard(shard.shard_id, self._start_position(shard))
        async with reader, anyio.create_task_group() as tg:
            self._opened[shard.shard_id].set()
            sends: list[MemoryObjectSendStream[list[StreamRecord]]] = []
            for i in range(self.lanes):
                # bounded: a slow function holds the reader back instead of filling memory
                # each item is one read's records for the lane: a batch without a window is one read
                send, recv = anyio.create_memory_object_stream[list[StreamRecord]](2)
                sends.append(send)
                tg.start_soon(self._lane, shard, i, recv, tracker, name=f"esm-lane-{shard.shard_id}-{i}")
            try:
                ended = await self._read(shard, reader, sends, tracker, shard_log)
            finally:
                for send in sends:
                    send.close()  # lanes finish what they hold, then stop
        if shard.shard_id in self._released:
            # another consumer owns it now; if it is assigned back, it is opened again from the source
            self._started.discard(shard.shard_id)
            shard_log.info("shard_released")
        elif ended and len(tracker) == 0:
            self.store.put_checkpoint(self.mapping.uuid, shard.shard_id, SHARD_END)
            self._finished.add(shard.shard_id)
            shard_log.info("shard_finished")

    async def _read(
        self,
        shard: ShardInfo,
        reader: ShardReader,
        lanes: list[MemoryObjectSendStream[list[StreamRecord]]],
        tracker: ContiguousCheckpoint,
        shard_log: Any,
    ) -> bool:
        """Read the shard into its lanes until it ends (True) or the runner drains (False)."""
        backoff = Backoff(base_s=0.2, cap_s=5.0)
        while not self._draining.is_set():
            read = await self._read_or_back_off(reader, backoff, shard_log)
            if read is None:
                continue
            dropped: list[str] = []
            per_lane: list[list[StreamRecord]] = [[] for _ in lanes]
            tracker.extend(rec.sequence_number for rec in read.records)
            if self.filter.is_empty and self.lanes == 1:
                per_lane[0] = list(read.records)
            else:
                for rec in read.records:
                    if self.filter.is_empty or self._matches(rec):
                        per_lane[lane_of(rec.lane_key, self.lanes)].append(rec)
                    else:
                        dropped.append(rec.sequence_number)
            for lane, recs in zip(lanes, per_lane, strict=True):
                if recs:
                    await lane.send(recs)
            if dropped:  # filtered-out records advance the checkpoint too
                await self._checkpoint(shard.shard_id, tracker.finish(dropped))
            if read.released:
                self._released.add(shard.shard_id)  # lanes leave what they still hold to the new owner
                return False
            if read.end_of_shard:
                return True
            if not read.records and not read.millis_behind_latest:
                with anyio.move_on_after(self.settings.poll_interval_s):
                    await self._draining.wait()
        return False

    # --- tumbling windows (spec 4.7) --------------------------------------------------------------------

    async def _run_windowed_shard(self, shard: ShardInfo) -> None:
        shard_log = self.log.bind(shard=shard.shard_id)
        scope = f"window:{shard.shard_id}"
        saved = self.store.checkpoints(self.mapping.uuid).get(scope)
        kw: dict[str, Any] = {
            "shard_id": shard.shard_id,
            "stream_arn": self.stream_arn,
            "window_s": self.window_s,
            "batching": self.policy,
            "now": self.now(),
        }
        windows = WindowTracker.restore(json.loads(saved), **kw) if saved else WindowTracker(**kw)
        start = self._start_position(shard)
        if windows.resume_after is not None:  # records already folded into the open window's state
            start = StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=windows.resume_after)
        reader = await self.source.open_shard(shard.shard_id, start)
        self._opened[shard.shard_id].set()
        backoff = Backoff(base_s=0.2, cap_s=5.0)
        async with reader:
            while not windows.finished:
                step = windows.next(self.now())
                if isinstance(step, Invocation):
                    await self._invoke_window(shard, windows, step)
                    windows.settled(step, self.now())
                    await self._checkpoint(shard.shard_id, windows.checkpoint)
                    self.store.put_checkpoint(self.mapping.uuid, scope, json.dumps(windows.to_json()))
                    continue
                if self._draining.is_set():
                    return
                read = await self._read_or_back_off(reader, backoff, shard_log)
                if read is None:
                    continue
                matched = [r for r in read.records if self.filter.is_empty or self._matches(r)]
                windows.feed(matched, self.now(), end_of_shard=read.end_of_shard)
                if read.records and not matched and windows.empty:
                    await self._checkpoint(shard.shard_id, read.records[-1].sequence_number)
                if not read.records and not read.end_of_shard:
                    wait = self.settings.poll_interval_s
                    if step.until is not None:
                        wait = min(wait, max(0.0, step.until - self.now()))
                    with anyio.move_on_after(wait):
                        await self._draining.wait()
        self.store.put_checkpoint(self.mapping.uuid, shard.shard_id, SHARD_END)
        self._finished.add(shard.shard_id)
        shard_log.info("shard_finished")

    async def _invoke_window(self, shard: ShardInfo, windows: WindowTracker, step: Invocation) -> None:
        """One step of a window under the retry policy; the function must answer with a ``state``."""

        async def invoke(attempt: Attempt) -> InvokeResult:
            result = await self._invoke_journaled(
                shard.shard_id, attempt, windows.payload(step, attempt.records)
            )
            response = parse_window_response(result.payload)
            if result.function_error is None and response is None:
                return replace(result, function_error="Unhandled")  # no state: a failed invocation
            if result.function_error is None and response is not None:
                valid = {r.sequence_number for r in attempt.records}
                if parse_batch_item_failures(result.payload, valid).kind is not ResponseKind.INVALID:
                    windows.accept_state(step, response)
            return result

        if step.records:

            async def discard(d: Discard) -> None:
                await self._send_failure(shard, shard.shard_id, d, windows.payload(step, d.records))

            await process_batch(
                list(step.records),
                policy=self.retry,
                invoke=invoke,
                discard=discard,
                now=self.now,
                sleep=self.sleep,
            )
            return
        # the final invocation carries no records: retried here under the same policy
        backoff = Backoff()
        failures = 0
        while True:
            try:
                result = await invoke(Attempt(records=(), attempt=failures + 1, bisect_depth=0))
            except InvokeError:
                await self.sleep(backoff.next_delay())
                continue
            if result.function_error is None:
                return
            failures += 1
            if 0 <= self.retry.max_retry_attempts < failures:
                self.log.error("window_final_invoke_abandoned", shard=shard.shard_id, attempts=failures)
                # no records, but the window's final state never reached the function
                abandoned = Attempt(records=(), attempt=failures, bisect_depth=0)
                detail = {"reason": RETRY_ATTEMPTS_EXHAUSTED, "final_window_invocation": True}
                self._journal(shard.shard_id, abandoned, DISCARDED, 0.0, detail)
                return
            await self.sleep(backoff.next_delay())

    async def _read_or_back_off(
        self, reader: ShardReader, backoff: Backoff, shard_log: Any
    ) -> ShardRead | None:
        """One read of up to BatchSize records; None after a throttle, once backed off (nothing lost)."""
        try:
            read = await reader.read(min(self.policy.batch_size, 10_000))
        except SourceThrottled as e:
            delay = backoff.next_delay()
            shard_log.warning("shard_read_throttled", error=str(e), retry_in_s=round(delay, 2))
            await self.sleep(delay)
            return None
        backoff.reset()
        return read

    def _matches(self, rec: StreamRecord) -> bool:
        view = filter_view(self.profile.filters, rec.record)
        return view is not None and self.filter.matches(view)

    async def _checkpoint(self, shard_id: str, position: str | None) -> None:
        if position is None:
            return
        if self.commits is not None:
            await self.commits.commit(shard_id, position)
        else:
            self.store.put_checkpoint(self.mapping.uuid, shard_id, position)

    # --- lanes ----------------------------------------------------------------------------------------

    async def _lane(
        self,
        shard: ShardInfo,
        index: int,
        recv: MemoryObjectReceiveStream[list[StreamRecord]],
        tracker: ContiguousCheckpoint,
    ) -> None:
        carry: list[tuple[StreamRecord, bytes]] = []
        closed = False
        async with recv:
            while carry or not closed:
                batch, carry, closed = await self._collect(shard, recv, carry, closed)
                if shard.shard_id in self._released:
                    continue  # the new owner reads these from the last committed position
                if batch:
                    await self._process(shard, index, batch, tracker)

    async def _collect(
        self,
        shard: ShardInfo,
        recv: MemoryObjectReceiveStream[list[StreamRecord]],
        carry: list[tuple[StreamRecord, bytes]],
        closed: bool,
    ) -> tuple[list[tuple[StreamRecord, bytes]], list[tuple[StreamRecord, bytes]], bool]:
        """One batch of a lane: (records with their encoding, what did not fit, whether input ended).

        The window opens as the shape says (spec 3.2).
        """
        batcher: Batcher[tuple[StreamRecord, bytes]] = Batcher(
            self.policy,
            envelope_bytes=self._envelope(shard.shard_id).overhead,
            now=anyio.current_time(),
            open_on_first_record=self.profile.window_opens_at_first_record,
        )
        pending = carry
        while True:
            now = anyio.current_time()
            for i, item in enumerate(pending):
                if batcher.full:
                    return batcher.batch.items, pending[i:], closed
                verdict = batcher.offer(item, item[1], now)
                if verdict is Admission.TOO_LARGE:  # alone over 6 MB: it goes alone (the invoke will say)
                    return [item], pending[i + 1 :], closed
                if verdict is Admission.WOULD_EXCEED:
                    return batcher.batch.items, pending[i:], closed
            pending = []
            if batcher.full or closed:
                return batcher.batch.items, [], closed
            if batcher.batch.items and batcher.should_flush(anyio.current_time()):
                return batcher.batch.items, [], closed
            if batcher.batch.items and self.policy.window_s == 0:
                # no window: what is already queued joins, then the batch goes
                while len(pending) < batcher.room:
                    try:
                        recs = recv.receive_nowait()
                    except anyio.WouldBlock:
                        break
                    except anyio.EndOfStream:
                        closed = True
                        break
                    pending += [(r, r.encoded or encode_record(r.record)) for r in recs]
                if not pending:
                    return batcher.batch.items, [], closed
                continue
            wait = batcher.remaining(anyio.current_time()) if batcher.batch.items else math.inf
            with anyio.move_on_after(wait):
                try:
                    recs = await recv.receive()
                    pending += [(r, r.encoded or encode_record(r.record)) for r in recs]
                except anyio.EndOfStream:
                    closed = True

    def _envelope(self, shard_id: str) -> Envelope:
        envelope = self._envelopes.get(shard_id)
        if envelope is None:
            envelope = self._envelopes[shard_id] = self.shape.envelope(shard_id)
        return envelope

    async def _process(
        self,
        shard: ShardInfo,
        lane: int,
        batch: list[tuple[StreamRecord, bytes]],
        tracker: ContiguousCheckpoint,
    ) -> None:
        """Drive one batch to the end; the checkpoint moves as each run of its records is final."""
        scope = shard.shard_id if self.lanes == 1 else f"{shard.shard_id}/lane-{lane}"
        records = [r for r, _ in batch]
        encoded = {r.sequence_number: e for r, e in batch}
        envelope = self._envelope(shard.shard_id)

        def payload(recs: Sequence[StreamRecord]) -> bytes:
            return encode_envelope(
                envelope.prefix, [encoded[r.sequence_number] for r in recs], envelope.suffix
            )

        async def settled(recs: Sequence[StreamRecord]) -> None:
            await self._checkpoint(shard.shard_id, tracker.finish([r.sequence_number for r in recs]))

        if len(batch) == 1 and envelope.overhead + len(batch[0][1]) > self.policy.max_payload_bytes:
            # alone over the invocation limit: never invoked, straight to the destination (spec 6.3)
            too_large = Discard(tuple(records), MAXIMUM_PAYLOAD_SIZE_EXCEEDED, 0, None)
            await self._send_failure(shard, scope, too_large, payload(records))
            await settled(records)
            return

        async def invoke(attempt: Attempt) -> InvokeResult:
            return await self._invoke_journaled(scope, attempt, payload(attempt.records))

        async def discard(d: Discard) -> None:
            await self._send_failure(shard, scope, d, payload(d.records))

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

    async def _invoke_journaled(self, scope: str, attempt: Attempt, payload: bytes) -> InvokeResult:
        try:
            result = await self.invoker.invoke(payload)
        except InvokeError as e:
            self._journal(scope, attempt, "invoke_error", 0.0, {"error": str(e)})
            raise
        self._journal(
            scope, attempt, "function_error" if result.function_error else "invoked", result.duration_ms, {}
        )
        self.last_result.report(function_failed=result.function_error is not None)
        return result

    async def _send_failure(self, shard: ShardInfo, scope: str, d: Discard, event_payload: bytes) -> None:
        """Journal the discard, then deliver its failure record to the on-failure destination (if any),
        journaling every delivery attempt."""
        self.log.warning(
            "records_discarded",
            shard=shard.shard_id,
            condition=d.condition,
            count=len(d.records),
            first=d.records[0].sequence_number,
            last=d.records[-1].sequence_number,
            invoke_count=d.approximate_invoke_count,
            destination=self.destination,
        )
        # the journal's view of the discard: the records given up on, after how many invocations
        given_up = Attempt(records=d.records, attempt=d.approximate_invoke_count, bisect_depth=0)
        discarded = {"reason": d.condition, "destination": self.destination}
        self._journal(scope, given_up, DISCARDED, 0.0, discarded)
        if not self.destination:
            return
        now = self.now()
        failure = Failure(
            discard=d,
            shard_id=shard.shard_id,
            function_arn=self.invoker.info.function_arn,
            payload_size=len(event_payload),
            request_id=str(uuidlib.uuid4()),
            now=now,
        )
        send: Callable[[], Awaitable[None]]
        if destination_kind(self.destination) == "kafka":
            if self.producer is None:
                raise RuntimeError(f"{self.destination}: a kafka:// destination needs a Kafka source")
            producer, topic = self.producer, kafka_destination_topic(self.destination)
            messages = self.shape.topic_messages(failure)

            async def send() -> None:
                await producer.produce(topic, messages)
        else:
            record = self.shape.failure_record(failure)
            key = None
            if destination_kind(self.destination) == "s3":
                record = with_payload(record, event_payload)
                key = s3_key(self.mapping.uuid, shard.shard_id, now, str(uuidlib.uuid4()))
            destination = self.destination

            async def send() -> None:
                await self.destinations.send(destination, record, s3_key=key)

        backoff = Backoff(base_s=0.5, cap_s=30.0)
        sent = {"destination": self.destination, "reason": d.condition}
        while True:  # the shard waits: a record is never dropped because a destination is down
            started = anyio.current_time()
            try:
                await send()
                self.log.info("failure_record_sent", destination=self.destination, condition=d.condition)
                self._journal(scope, given_up, DESTINATION_SENT, _ms_since(started), sent)
                return
            except DestinationError as e:
                delay = backoff.next_delay()
                self._journal(
                    scope, given_up, DESTINATION_FAILED, _ms_since(started), {**sent, "error": str(e)}
                )
                self.log.error(
                    "destination_failed",
                    destination=self.destination,
                    error=str(e),
                    retry_in_s=round(delay, 2),
                )
                await self.sleep(delay)

    def _journal(
        self, scope: str, attempt: Attempt, outcome: str, duration_ms: float, detail: dict[str, Any]
    ) -> None:
        self.store.append_journal(
            JournalEntry(
                mapping_uuid=self.mapping.uuid,
                scope=scope,
                # a window's final invocation carries no records
                first_item=attempt.records[0].sequence_number if attempt.records else None,
                last_item=attempt.records[-1].sequence_number if attempt.records else None,
                batch_size=len(attempt.records),
                attempt=attempt.attempt,
                bisect_depth=attempt.bisect_depth,
                outcome=outcome,
                duration_ms=duration_ms,
                detail=detail,
            )
        )


def _ms_since(started: float) -> float:
    return (anyio.current_time() - started) * 1000
