"""In-memory sources for unit tests of the runners' policy. No I/O.

:class:`MemoryQueue`: receive, ack, release and reject are recorded, released messages come back at once
with their attempt count raised (a visibility timeout of zero), rejected ones are kept aside as a
dead-letter queue would; closing gives back what was received and not settled, as a broker does.

:class:`MemoryStream`: a Kinesis-like stream (implements StreamSource): shards with parents, closed by a
split, records shaped as Kinesis delivers them (engine.stream_events.kinesis_record), every start position,
and throttles injected one read at a time.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from engine.ports import (
    QueueMessage,
    ShardInfo,
    ShardRead,
    SourceThrottled,
    StartPosition,
    StreamRecord,
    Transport,
)
from engine.stream_events import kinesis_lane_key, kinesis_record


class MemoryQueue(Transport):
    def __init__(self, bodies: Sequence[str] = ()) -> None:
        self._ready: deque[QueueMessage] = deque()
        self._seq = 0
        self.acked: list[str] = []
        self.released: list[str] = []
        #: (item id, reason) of the messages rejected, in order: the dead-letter queue
        self.rejected: list[tuple[str, str]] = []
        self.receives = 0
        #: received and not yet acked, released or rejected, by item id
        self._held: dict[str, QueueMessage] = {}
        self._arrived = anyio.Event()
        for body in bodies:
            self.put(body)

    def put(self, body: str, attempt: int = 1, item_id: str | None = None) -> str:
        self._seq += 1
        item_id = item_id or f"m{self._seq}"
        record: dict[str, Any] = {
            "messageId": item_id,
            "body": body,
            "attributes": {"ApproximateReceiveCount": str(attempt)},
        }
        self._ready.append(
            QueueMessage(record=record, item_id=item_id, handle=item_id, extra={"attempt": attempt})
        )
        self._arrived.set()
        return item_id

    async def receive(self, max_messages: int, wait_s: float) -> Sequence[QueueMessage]:
        self.receives += 1
        with anyio.move_on_after(wait_s):
            while not self._ready:  # as a long poll: woken with nothing left (another took it), wait on
                arrived = self._arrived
                await arrived.wait()
                if self._arrived is arrived:
                    self._arrived = anyio.Event()
        out: list[QueueMessage] = []
        while self._ready and len(out) < max_messages:
            out.append(self._ready.popleft())
        self._held.update((m.item_id, m) for m in out)
        return out

    async def depth(self) -> int | None:
        return len(self._ready)

    async def ack(self, messages: Sequence[QueueMessage]) -> None:
        self._settle(messages)
        self.acked += [m.item_id for m in messages]

    async def release(self, messages: Sequence[QueueMessage]) -> None:
        for m in self._settle(messages):
            self.released.append(m.item_id)
            self._redeliver(m)

    async def reject(self, messages: Sequence[QueueMessage], reason: str) -> None:
        self._settle(messages)
        self.rejected += [(m.item_id, reason) for m in messages]

    async def aclose(self) -> None:
        for m in self._settle(list(self._held.values())):
            self._redeliver(m)

    def _settle(self, messages: Sequence[QueueMessage]) -> Sequence[QueueMessage]:
        for m in messages:
            self._held.pop(m.item_id, None)
        return messages

    def _redeliver(self, m: QueueMessage) -> None:
        self.put(m.record["body"], attempt=int(m.extra["attempt"]) + 1, item_id=m.item_id)


# --- streams ----------------------------------------------------------------------------------------


@dataclass
class _Shard:
    shard_id: str
    parent_ids: tuple[str, ...]
    closed: bool = False
    records: list[StreamRecord] = field(default_factory=list)

    def info(self) -> ShardInfo:
        return ShardInfo(shard_id=self.shard_id, parent_ids=self.parent_ids, closed=self.closed)


class MemoryStream(Transport):
    """An in-memory Kinesis stream (implements StreamSource).

    Sequence numbers are ``"1"``, ``"2"``, ... across the whole stream (decimal strings of growing length,
    compared as int as the port says). ``put`` without a shard picks one of the open shards by the partition
    key's CRC-32 (not Kinesis's MD5 hash ranges: only "the same key, the same shard" is kept). A split closes
    the shard: its readers then return what is left, then ``end_of_shard``.
    """

    def __init__(
        self,
        arn: str = "arn:aws:kinesis:us-east-1:000000000000:stream/memory",
        *,
        shards: int = 1,
        now: Callable[[], float] = time.time,
        invoke_identity_arn: str = "arn:aws:iam::000000000000:role/memory",
    ) -> None:
        self.arn = arn
        self.region = arn.split(":")[3]
        self.now = now
        self.invoke_identity_arn = invoke_identity_arn
        #: what ``identity`` answers (Kinesis: StreamCreationTimestamp); change it to "re-create" the stream
        self.created = "1700000000.000"
        self._shards: dict[str, _Shard] = {}
        self._seq = 0
        #: throttles still to raise, in order: a shard id, or None for the next read of any shard
        self._throttles: list[str | None] = []
        #: (shard id, start position) of every open_shard, in order
        self.opened: list[tuple[str, StartPosition]] = []
        #: the shard id of every read that raised SourceThrottled, in order
        self.throttled: list[str] = []
        self.closes = 0
        for _ in range(shards):
            self.add_shard()

    # test helpers

    def add_shard(self, parent_ids: Sequence[str] = ()) -> str:
        shard_id = f"shardId-{len(self._shards):012d}"
        self._shards[shard_id] = _Shard(shard_id, tuple(parent_ids))
        return shard_id

    def put(
        self,
        partition_key: str,
        data: bytes | str,
        *,
        arrival_s: float | None = None,
        shard_id: str | None = None,
    ) -> StreamRecord:
        """Append one record (``data`` as put: str is UTF-8) arrived at ``arrival_s`` (default: now)."""
        if shard_id is None:
            open_ids = [s.shard_id for s in self._shards.values() if not s.closed]
            if not open_ids:
                raise ValueError("every shard is closed")
            shard_id = open_ids[zlib.crc32(partition_key.encode()) % len(open_ids)]
        shard = self._shards[shard_id]
        if shard.closed:
            raise ValueError(f"{shard_id} is closed")
        self._seq += 1
        sequence_number = str(self._seq)
        raw = {
            "SequenceNumber": sequence_number,
            "PartitionKey": partition_key,
            "Data": data.encode() if isinstance(data, str) else data,
            "ApproximateArrivalTimestamp": self.now() if arrival_s is None else arrival_s,
        }
        record = kinesis_record(
            raw,
            shard_id=shard_id,
            stream_arn=self.arn,
            region=self.region,
            invoke_identity_arn=self.invoke_identity_arn,
        )
        rec = StreamRecord(
            record=record,
            sequence_number=sequence_number,
            arrival_s=record["kinesis"]["approximateArrivalTimestamp"],
            lane_key=kinesis_lane_key(raw),
        )
        shard.records.append(rec)
        return rec

    def split(self, shard_id: str, children: int = 2) -> tuple[str, ...]:
        """Close ``shard_id`` and add ``children`` open shards whose parent it is."""
        shard = self._shards[shard_id]
        if shard.closed:
            raise ValueError(f"{shard_id} is closed already")
        shard.closed = True
        return tuple(self.add_shard((shard_id,)) for _ in range(children))

    def throttle(self, shard_id: str | None = None) -> None:
        """The next read of ``shard_id`` (of any shard when None) raises SourceThrottled, once."""
        self._throttles.append(shard_id)

    def records(self, shard_id: str) -> list[StreamRecord]:
        return list(self._shards[shard_id].records)

    # StreamSource

    async def identity(self) -> str:
        return self.created

    async def list_shards(self) -> Sequence[ShardInfo]:
        return [s.info() for s in self._shards.values()]

    async def open_shard(self, shard_id: str, start: StartPosition) -> MemoryShardReader:
        records = self._shards[shard_id].records
        if start.kind == "TRIM_HORIZON":
            position = 0
        elif start.kind == "LATEST":
            position = len(records)
        elif start.kind == "AT_TIMESTAMP" and start.timestamp is not None:
            ts = start.timestamp
            position = next((i for i, r in enumerate(records) if r.arrival_s >= ts), len(records))
        elif start.kind == "AFTER_SEQUENCE_NUMBER" and start.sequence_number:
            after = int(start.sequence_number)
            position = next(
                (i for i, r in enumerate(records) if int(r.sequence_number) > after), len(records)
            )
        else:
            raise ValueError(f"unsupported start position {start!r}")
        self.opened.append((shard_id, start))
        return MemoryShardReader(self, self._shards[shard_id], position)

    async def aclose(self) -> None:
        self.closes += 1

    def _take_throttle(self, shard_id: str) -> None:
        for i, target in enumerate(self._throttles):
            if target is None or target == shard_id:
                del self._throttles[i]
                self.throttled.append(shard_id)
                raise SourceThrottled(f"ProvisionedThroughputExceededException on {shard_id} (injected)")


class MemoryShardReader(Transport):
    """Reads one shard of a :class:`MemoryStream` in order (implements ShardReader)."""

    def __init__(self, stream: MemoryStream, shard: _Shard, position: int) -> None:
        self._stream = stream
        self._shard = shard
        self._position = position
        self.closed = False

    async def read(self, limit: int) -> ShardRead:
        await anyio.lowlevel.checkpoint()  # a read is an await point, as on a real transport
        self._stream._take_throttle(self._shard.shard_id)
        records = self._shard.records[self._position : self._position + max(1, limit)]
        self._position += len(records)
        ended = self._shard.closed and self._position == len(self._shard.records)
        return ShardRead(records=records, end_of_shard=ended)

    async def aclose(self) -> None:
        self.closed = True


if TYPE_CHECKING:  # the ports these classes implement (checked by mypy, never run)
    from engine.ports import QueueSource, ShardReader, StreamSource

    def _implements(
        queue: MemoryQueue, stream: MemoryStream, reader: MemoryShardReader
    ) -> tuple[QueueSource, StreamSource, ShardReader]:
        return queue, stream, reader
