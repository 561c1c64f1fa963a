"""Kinesis enhanced fan-out: a shard reader over SubscribeToShard (aiobotocore event streams).

A mapping whose EventSourceArn is a stream consumer ARN
(``arn:aws:kinesis:REGION:ACCOUNT:stream/NAME/consumer/CONSUMER:TIMESTAMP``) reads its shards through
SubscribeToShard: the service pushes SubscribeToShardEvents (Records, ContinuationSequenceNumber,
MillisBehindLatest, ChildShards) over one HTTP response for up to 5 minutes (spec 9). Records name the
stream, not the consumer, as eventSourceARN (spec 1.1): they are built by :class:`KinesisStream`.

One task per subscription (the *pump*, ``kinesis-efo-<shard>``) moves events from the HTTP response into
a small bounded buffer; when the buffer is full the pump stops reading the response (backpressure through
TCP). The pumps run in the reader's own task group, open from ``async with reader`` to its exit.
``read`` hands out what the subscription pushed so far. When a subscription ends (its 5 minutes are up,
or it failed), the next ``read`` subscribes again AFTER_SEQUENCE_NUMBER the last record returned (or the
last continuation sequence number once every record before it was returned).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from engine.ports import ShardRead, SourceError, SourceThrottled, StartPosition, StreamRecord, TaskOwner
from pollers.kinesis import KinesisStream, check_start, error_code, translate

log = structlog.get_logger("pollers.kinesis_efo")

#: SubscribeToShard refuses a second subscription of the same consumer and shard (ResourceInUse) or more
#: than one call per second (LimitExceeded): back off and subscribe again
SUBSCRIBE_THROTTLING_CODES = frozenset({"ResourceInUseException", "LimitExceededException"})


def translate_subscribe(e: ClientError | BotoCoreError, operation: str, consumer_arn: str) -> Exception:
    """ResourceInUse / LimitExceeded -> SourceThrottled; the rest as :func:`pollers.kinesis.translate`."""
    if isinstance(e, ClientError) and error_code(e) in SUBSCRIBE_THROTTLING_CODES:
        return SourceThrottled(f"{operation} throttled ({error_code(e)}) on {consumer_arn}")
    return translate(e, operation, consumer_arn)


@dataclass
class _Event:
    """One SubscribeToShardEvent, its records already built."""

    records: deque[StreamRecord]
    continuation: str | None
    millis_behind_latest: int | None
    child_shards: bool


@dataclass(frozen=True)
class _Ended:
    """The subscription's response ended (normally after 5 minutes) or failed (``error``)."""

    error: Exception | None = None


@dataclass(frozen=True)
class _Pump:
    """One subscription's pump task: what the reader cancels it with and reads its events from."""

    buffer: MemoryObjectReceiveStream[_Event | _Ended]
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)


def _close_events(events: Any) -> None:
    """Releases a subscription's HTTP response (an aiobotocore event stream; its close is synchronous)."""
    with contextlib.suppress(Exception):  # the connection may be broken already
        events.close()


class SubscribeShardReader(TaskOwner):
    """Reads one shard of a stream through an enhanced fan-out consumer (implements ShardReader).

    ``open`` subscribes (so that LATEST means the moment the shard was opened, and a consumer the service
    does not know fails there); the subscription's events are pumped once the reader is entered.
    """

    def __init__(
        self,
        stream: KinesisStream,
        consumer_arn: str,
        shard_id: str,
        start: StartPosition,
        *,
        first_event_wait_s: float = 1.0,
        max_buffered_events: int = 4,
        close_timeout_s: float = 5.0,
    ) -> None:
        check_start(start, at_timestamp=True)
        self.stream = stream
        self.consumer_arn = consumer_arn
        self.shard_id = shard_id
        self.start = start
        #: how long ``read`` waits for an event when nothing is buffered
        self.first_event_wait_s = first_event_wait_s
        self.max_buffered_events = max(1, max_buffered_events)
        self.close_timeout_s = close_timeout_s
        self._subscribed: Any = None  # a subscription made by ``open``, pumped once the reader is entered
        self._pump: _Pump | None = None
        self._current: _Event | None = None  # the event being handed out (records left in it)
        self._last_sequence: str | None = None  # of the last record returned
        self._continuation: str | None = None  # last continuation whose records were all returned
        self._ended = False
        self._closed = False
        self.subscriptions = 0  # how many SubscribeToShard calls succeeded (for tests and logs)

    @property
    def last_sequence_number(self) -> str | None:
        """The sequence number of the last record returned."""
        return self._last_sequence

    def _resume_position(self) -> StartPosition:
        after = self._continuation or self._last_sequence
        if self._continuation and self._last_sequence and int(self._last_sequence) > int(self._continuation):
            after = self._last_sequence
        if after is not None:
            return StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=after)
        return self.start

    def _starting_position(self, position: StartPosition) -> dict[str, Any]:
        starting: dict[str, Any] = {"Type": position.kind}
        if position.kind == "AFTER_SEQUENCE_NUMBER":
            starting["SequenceNumber"] = position.sequence_number
        elif position.kind == "AT_TIMESTAMP":
            assert position.timestamp is not None
            starting["Timestamp"] = datetime.fromtimestamp(position.timestamp, tz=UTC)
        return starting

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> SubscribeShardReader:
        """Subscribes now, so that LATEST means the moment the shard was opened."""
        self._subscribed = await self._subscribe()
        return self

    def _start(self, tasks: TaskGroup) -> None:
        subscribed, self._subscribed = self._subscribed, None
        if subscribed is not None:
            self._start_pump(subscribed)

    async def aclose(self) -> None:
        """Cancels the subscription (waiting at most ``close_timeout_s`` for its connection to close)."""
        self._closed = True
        subscribed, self._subscribed = self._subscribed, None
        if subscribed is not None:  # opened, never entered
            _close_events(subscribed)
        await self._drop_subscription()

    # --- the subscription -------------------------------------------------------------------------------

    async def _subscribe(self) -> Any:
        """SubscribeToShard at the resume position; its event stream."""
        position = self._resume_position()
        # a subscription holds its connection for up to 5 minutes
        client = await self.stream.clients.waiting_client(self.stream.region)
        try:
            resp = await client.subscribe_to_shard(
                ConsumerARN=self.consumer_arn,
                ShardId=self.shard_id,
                StartingPosition=self._starting_position(position),
            )
        except (ClientError, BotoCoreError) as e:
            raise translate_subscribe(e, "SubscribeToShard", self.consumer_arn) from e
        except ResponseParserError as e:  # an endpoint without SubscribeToShard (no event stream)
            raise SourceError(f"SubscribeToShard failed on {self.consumer_arn}: {e}") from e
        self.subscriptions += 1
        log.debug(
            "shard_subscribed",
            shard_id=self.shard_id,
            consumer_arn=self.consumer_arn,
            position=position.kind,
            sequence_number=position.sequence_number,
        )
        return resp["EventStream"]

    def _start_pump(self, events: Any) -> None:
        assert self._tasks is not None  # the pumps' owner, open while the reader is entered
        send, receive = anyio.create_memory_object_stream[_Event | _Ended](self.max_buffered_events)
        pump = self._pump = _Pump(receive)
        self._tasks.start_soon(self._run_pump, events, send, pump, name=f"kinesis-efo-{self.shard_id}")

    async def _run_pump(
        self, events: Any, send: MemoryObjectSendStream[_Event | _Ended], pump: _Pump
    ) -> None:
        try:
            with pump.scope, send:
                end = _Ended()
                try:
                    async for event in events:
                        payload = event.get("SubscribeToShardEvent")
                        if payload is not None:
                            await send.send(self._event(payload))
                except (ClientError, BotoCoreError) as e:
                    end = _Ended(translate_subscribe(e, "SubscribeToShard", self.consumer_arn))
                except Exception as e:  # aiohttp's connection errors and the like: the subscription is lost
                    end = _Ended(SourceError(f"SubscribeToShard failed on {self.consumer_arn}: {e!r}"))
                finally:
                    _close_events(events)
                await send.send(end)
        finally:
            pump.done.set()

    def _event(self, payload: Mapping[str, Any]) -> _Event:
        records = deque(self.stream.stream_record(self.shard_id, raw) for raw in payload.get("Records") or ())
        behind = payload.get("MillisBehindLatest")
        continuation = payload.get("ContinuationSequenceNumber")
        return _Event(
            records=records,
            # LocalStack sends "0" before any record (its placeholder, not a sequence number): ignore it
            continuation=str(continuation) if continuation and str(continuation) != "0" else None,
            millis_behind_latest=int(behind) if behind is not None else None,
            child_shards=bool(payload.get("ChildShards")),
        )

    async def _drop_subscription(self) -> None:
        pump, self._pump = self._pump, None
        if pump is None:
            return
        pump.scope.cancel()
        # wait until its connection is closed: the consumer may subscribe to this shard only once at a time
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.close_timeout_s):
            await pump.done.wait()
        pump.buffer.close()

    # --- reading ----------------------------------------------------------------------------------------

    async def _next_item(self, wait_s: float) -> _Event | _Ended | None:
        """The next event of the subscription (None when none came within ``wait_s``)."""
        if self._pump is None:
            self._start_pump(await self._subscribe())
        assert self._pump is not None
        buffer = self._pump.buffer
        if wait_s <= 0:
            try:
                return buffer.receive_nowait()
            except anyio.WouldBlock:
                return None
        with anyio.move_on_after(wait_s):
            return await buffer.receive()
        return None

    def _finish_event(self, event: _Event) -> None:
        """Every record of ``event`` was returned."""
        if event.continuation is not None:
            self._continuation = event.continuation
        if event.child_shards:
            self._ended = True  # the shard is closed and read to its end

    async def read(self, limit: int) -> ShardRead:
        if self._closed:
            raise SourceError(f"reader of {self.shard_id} is closed")
        if self._tasks is None:
            raise RuntimeError(f"reader of {self.shard_id} read before it was entered (async with)")
        limit = max(1, limit)
        out: list[StreamRecord] = []
        behind: int | None = None
        while len(out) < limit and not self._ended:
            event = self._current
            if event is None:
                item = await self._next_item(0 if out else self.first_event_wait_s)
                if item is None:
                    break
                if isinstance(item, _Ended):
                    # the subscription's 5 minutes are up (or it failed): the next read subscribes again
                    await self._drop_subscription()
                    if item.error is not None and not out:
                        raise item.error
                    break
                event = self._current = item
            while event.records and len(out) < limit:
                out.append(event.records.popleft())
            behind = event.millis_behind_latest
            if not event.records:
                self._current = None
                self._finish_event(event)
        if out:
            self._last_sequence = out[-1].sequence_number
        return ShardRead(
            records=out,
            end_of_shard=self._ended,
            millis_behind_latest=behind,
        )


if TYPE_CHECKING:  # the port this class implements (checked by mypy, never run)
    from engine.ports import ShardReader

    def _implements(reader: SubscribeShardReader) -> ShardReader:
        return reader
