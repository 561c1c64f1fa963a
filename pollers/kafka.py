"""Kafka transport (Amazon MSK and self-managed Apache Kafka) through aiokafka, as a StreamSource.

A transport only: when to poll, how to batch, retry and checkpoint is the engine's business. The mapping is
one consumer-group member (group id = the mapping's ConsumerGroupId, spec 6.2); its **shards are the
partitions the group currently assigns to it**, named ``<topic>-<partition>`` (the key of the event's
``records`` object, spec 1.4). Partitions have no parents and never close.

How it maps onto aiokafka:

* One ``AIOKafkaConsumer`` per source, ``enable_auto_commit=False``, subscribed to the topic with a
  rebalance listener. aiokafka's background fetcher keeps at most one fetched batch per assigned partition
  (``max_partition_fetch_bytes`` each, ``fetch_max_bytes`` per request), so memory stays bounded; each
  reader drains its own partition with ``getmany(tp, max_records=limit)``, so readers run concurrently and
  a slow partition never blocks the others.
* Starting position (spec 6.2): the group's committed offset wins; without one, the reader's start
  position (TRIM_HORIZON, LATEST, AT_TIMESTAMP via ``offsets_for_times``) applies. An engine checkpoint
  (``AFTER_SEQUENCE_NUMBER`` = the last finished offset) seeks to offset + 1.
* Offsets are committed only through :meth:`KafkaSource.commit` (offset + 1 of the last finished record),
  which the engine calls once a batch's outcome is final; they are sent in the background, and flushed
  before a rebalance hands partitions over and when the source closes.
* LATEST and AT_TIMESTAMP are pinned in the group: a partition opened there without a committed offset
  gets its start position committed at once, so a restart, or another member taking the partition over,
  resumes there and not at a later end.
* **Rebalances**: while the group rebalances, reads wait (return no records). A partition that stays
  assigned to this member keeps its reader, which continues exactly after the last record it returned (the
  listener re-seeks it there: nothing is skipped or repeated). A partition **revoked** from this member
  makes its reader return ``released=True``: it now belongs to another member, which resumes from the
  last committed offset. The runner must then stop that shard's task and NOT mark the partition finished
  for good: if the group assigns it back later, ``list_shards`` lists it again and it must be reopened (from
  the committed offset: the engine's checkpoint for it may be stale, another member may have moved on).
* Every ``list_shards`` call also polls the consumer (without taking records), so a member with no
  partitions, or whose readers are held back by the engine, is not considered idle and dropped from the
  group after ``max_poll_interval_ms``.

The source owns a task group, open while it is entered (``async with``): the background committer
(pollers/kafka_committer.py) runs there. Connection settings and error translation are in
pollers/kafka_connection.py; the ``kafka://`` destination producer, which the source owns and closes, in
pollers/kafka_producer.py.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
import structlog
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.errors import IllegalStateError, KafkaError  # type: ignore[import-untyped]

from engine.events_kafka import KafkaRecords, parse_partition_key, partition_key
from engine.ports import ShardInfo, ShardRead, SourceError, StartPosition, StreamRecord, TaskOwner, Transport
from pollers.kafka_committer import OffsetCommitter
from pollers.kafka_connection import CLOSE_TIMEOUT_S, KafkaConnection, KafkaSecurity
from pollers.kafka_producer import KafkaTopicProducer

log = structlog.get_logger("pollers.kafka")

StartingPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]
STARTING_POSITIONS: frozenset[str] = frozenset({"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"})
#: how often the topic's partitions are looked up again
METADATA_MAX_AGE_MS = 5_000
#: how long the first ``list_shards`` waits between polls for the first assignment
_ASSIGNMENT_POLL_S = 0.1


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards the group's rebalance callbacks (run in aiokafka's coordinator task) to the source."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Collection[Any]) -> None:
        self.source._on_revoked(revoked)
        try:  # still ours: what is finished is not handed over again
            await self.source._committer.flush()
        except SourceError as e:
            self.source.log.warning("kafka_commit_before_rebalance_failed", error=str(e))

    async def on_partitions_assigned(self, assigned: Collection[Any]) -> None:
        self.source._on_assigned(assigned)


class KafkaSource(TaskOwner):
    """One topic read as one member of a consumer group (implements StreamSource, see the module doc).

    ``event_source_arn``: the MSK cluster ARN (records' envelope ``aws:kafka``) or None (self-managed).
    ``fetch_wait_s`` is how long one ``read`` waits for records of its partition before returning none.
    """

    #: the committer ends first: the flush on close is the last commit
    end_tasks_first = True

    def __init__(
        self,
        bootstrap_servers: Sequence[str],
        topic: str,
        group_id: str,
        *,
        starting_position: StartingPosition = "TRIM_HORIZON",
        timestamp: float | None = None,
        security: KafkaSecurity | None = None,
        event_source_arn: str | None = None,
        fetch_wait_s: float = 0.5,
        rebalance_wait_s: float = 30.0,
        client_id: str = "esm-local",
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not bootstrap_servers:
            raise ValueError("at least one bootstrap server is needed")
        if starting_position not in STARTING_POSITIONS:
            raise ValueError(f"unsupported starting position {starting_position!r}")
        if starting_position == "AT_TIMESTAMP" and timestamp is None:
            raise ValueError("AT_TIMESTAMP needs a timestamp")
        self.bootstrap_servers = list(bootstrap_servers)
        self.topic = topic
        self.group_id = group_id
        self.starting_position: StartingPosition = starting_position
        self.timestamp = timestamp
        self.security = security or KafkaSecurity()
        self.event_source_arn = event_source_arn
        self.fetch_wait_s = fetch_wait_s
        self.rebalance_wait_s = rebalance_wait_s
        self.client_id = client_id
        self.consumer_options = dict(consumer_options or {})
        self.log = log.bind(topic=topic, group_id=group_id, bootstrap=",".join(self.bootstrap_servers))
        self.connection = KafkaConnection(
            tuple(self.bootstrap_servers),
            client_id,
            self.security,
            where=f"Kafka {','.join(self.bootstrap_servers)} topic {topic!r} group {group_id!r}",
        )
        self._consumer: Any = None
        self._start_lock = anyio.Lock()
        self._closed = False
        #: set while the assignment is stable; a revocation replaces it with an unset one until the next
        #: assignment (anyio events cannot be cleared)
        self._stable = anyio.Event()
        self._assigned_once = anyio.Event()
        self._assignment: frozenset[Any] = frozenset()
        self._readers: dict[Any, KafkaPartitionReader] = {}
        self._identity: str | None = None
        self._committer = OffsetCommitter(
            self.connection, lambda: self._consumer, lambda: self._assignment, self.log
        )
        self._producer = KafkaTopicProducer(self.connection)

    # --- lifecycle ------------------------------------------------------------------------------------

    def _start(self, tasks: anyio.abc.TaskGroup) -> None:
        tasks.start_soon(self._committer.run, name=f"esm-kafka-commit-{self.group_id}")

    async def _started(self) -> Any:
        """The consumer, started and subscribed on first use."""
        if self._closed:
            raise SourceError(f"{self.connection.where}: the source is closed")
        if self._consumer is not None:
            return self._consumer
        async with self._start_lock:
            if self._consumer is not None:
                return self._consumer
            options: dict[str, Any] = {
                **self.connection.client_kwargs(),
                "group_id": self.group_id,
                "enable_auto_commit": False,
                "auto_offset_reset": "latest" if self.starting_position == "LATEST" else "earliest",
                # a topic created (or grown) after the mapping is seen within seconds, not aiokafka's 5 min
                "metadata_max_age_ms": METADATA_MAX_AGE_MS,
                **self.consumer_options,
            }
            consumer = AIOKafkaConsumer(**options)
            try:
                await consumer.start()
                consumer.subscribe([self.topic], listener=_Listener(self))
            except BaseException as e:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_S):
                    try:
                        await consumer.stop()
                    except Exception as stop_error:  # the start's error is the one to report
                        self.log.debug("kafka_consumer_stop_failed", error=str(stop_error))
                if isinstance(e, KafkaError):
                    raise await self.connection.bootstrap_error(e) from e
                raise
            self._consumer = consumer
            self.log.info("kafka_consumer_started", security=self.security.describe())
            return consumer

    async def aclose(self) -> None:
        """Stops the producer, commits what is finished, leaves the group and stops the consumer (each
        step shielded from cancellation, at most CLOSE_TIMEOUT_S)."""
        self._closed = True
        await self._producer.aclose()
        with anyio.move_on_after(CLOSE_TIMEOUT_S):  # what finished last is not redelivered
            try:
                await self._committer.flush()
            except SourceError as e:
                self.log.warning("kafka_commit_on_close_failed", error=str(e))
        consumer, self._consumer = self._consumer, None
        for reader in self._readers.values():
            reader._revoked = True
        self._readers.clear()
        self._stable.set()  # wake readers waiting for a rebalance: they end
        if consumer is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_S) as deadline:
            try:
                await consumer.stop()
            except (KafkaError, OSError) as e:
                self.log.warning("kafka_consumer_stop_failed", error=str(e))
        if deadline.cancelled_caught:
            self.log.warning("kafka_consumer_stop_timeout", timeout_s=CLOSE_TIMEOUT_S)
        self.log.info("kafka_consumer_stopped")

    # --- rebalance listener ---------------------------------------------------------------------------

    def _on_revoked(self, revoked: Collection[Any]) -> None:
        if self._stable.is_set():  # an unset one already has waiters: they wake at the next assignment
            self._stable = anyio.Event()
        self.log.info(
            "kafka_partitions_revoked",
            partitions=sorted(partition_key(tp.topic, tp.partition) for tp in revoked),
        )

    def _on_assigned(self, assigned: Collection[Any]) -> None:
        self._assignment = frozenset(assigned)
        for tp, reader in list(self._readers.items()):
            if tp not in self._assignment:
                reader._revoked = True  # another member owns it now
                del self._readers[tp]
            elif reader.next_offset is not None:
                # aiokafka resets a re-assigned partition to the committed offset: continue after the last
                # record this reader returned instead (no repeats, no gaps)
                self._consumer_or_none_seek(tp, reader.next_offset)
        self.log.info(
            "kafka_partitions_assigned",
            partitions=sorted(partition_key(tp.topic, tp.partition) for tp in assigned),
        )
        self._assigned_once.set()
        self._stable.set()

    def _consumer_or_none_seek(self, tp: Any, offset: int) -> None:
        if self._consumer is not None:
            self._consumer.seek(tp, offset)

    async def _wait_stable(self, timeout_s: float) -> bool:
        if self._stable.is_set():  # the common case, without a cancel scope per read
            return True
        with anyio.move_on_after(timeout_s):
            await self._stable.wait()
        return self._stable.is_set()

    # --- StreamSource ---------------------------------------------------------------------------------

    async def identity(self) -> str:
        """The cluster id (what distinguishes this cluster from one re-created at the same address); the
        bootstrap servers and topic when the broker does not report one."""
        if self._identity is not None:
            return self._identity
        await self._started()
        admin = AIOKafkaAdminClient(**self.connection.client_kwargs())
        cluster_id: str | None = None
        try:
            await admin.start()
            try:
                described = await admin.describe_cluster()
                cluster_id = described.get("cluster_id") or None
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_S):
                    await admin.close()
        except KafkaError as e:
            raise self.connection.refused(e, "DescribeCluster") from e
        self._identity = cluster_id or f"{','.join(self.bootstrap_servers)}/{self.topic}"
        return self._identity

    async def list_shards(self) -> Sequence[ShardInfo]:
        """The partitions the group assigns to this member now (the first call waits, up to
        ``rebalance_wait_s``, for the first assignment)."""
        consumer = await self._started()
        if not self._assigned_once.is_set():
            with anyio.move_on_after(self.rebalance_wait_s):
                await self._keepalive_until_assigned(consumer)
        await self._keepalive(consumer)
        if not self._stable.is_set():
            return []
        return [
            ShardInfo(partition_key(tp.topic, tp.partition))
            for tp in sorted(self._assignment, key=lambda tp: (tp.topic, tp.partition))
        ]

    async def _keepalive(self, consumer: Any) -> None:
        """A poll that takes no records (it asks for a partition that does not exist): the member shows
        activity, and coordination errors surface here."""
        try:
            await consumer.getmany(TopicPartition(self.topic, -1), timeout_ms=0)
        except KafkaError as e:
            raise self.connection.refused(e, "Poll") from e

    async def _keepalive_until_assigned(self, consumer: Any) -> None:
        while not self._assigned_once.is_set():
            await self._keepalive(consumer)
            with anyio.move_on_after(_ASSIGNMENT_POLL_S):  # back as soon as the assignment arrives
                await self._assigned_once.wait()

    async def open_shard(self, shard_id: str, start: StartPosition) -> KafkaPartitionReader:
        """A reader of one partition. ``AFTER_SEQUENCE_NUMBER`` resumes after that offset; any other start
        uses the group's committed offset, or without one the start position (TRIM_HORIZON, LATEST,
        AT_TIMESTAMP; an unknown kind means the source's ``starting_position``). A partition not assigned
        to this member gives a reader that is already at its end."""
        topic, partition = parse_partition_key(shard_id)
        if topic != self.topic:
            raise ValueError(f"shard {shard_id!r} is not a partition of topic {self.topic!r}")
        consumer = await self._started()
        tp = TopicPartition(topic, partition)
        reader = KafkaPartitionReader(self, tp, shard_id)
        await self._wait_stable(self.rebalance_wait_s)
        if tp not in self._assignment or not self._stable.is_set():
            reader._revoked = True
            return reader
        try:
            moving = await self._position(consumer, tp, start)
            reader.next_offset = int(await consumer.position(tp))
            if moving:  # LATEST / AT_TIMESTAMP are fixed now: a restart resumes here, not at a later end
                await consumer.commit({tp: reader.next_offset})
        except IllegalStateError:  # revoked meanwhile
            reader._revoked = True
            return reader
        except KafkaError as e:
            raise self.connection.refused(e, "Seek") from e
        previous = self._readers.get(tp)
        if previous is not None:
            previous._revoked = True
        self._readers[tp] = reader
        self.log.info("kafka_partition_opened", shard=shard_id, start=start.kind, offset=reader.next_offset)
        return reader

    async def _position(self, consumer: Any, tp: Any, start: StartPosition) -> bool:
        """Seeks ``tp`` to where ``start`` says; True when that position moves with time (LATEST,
        AT_TIMESTAMP without a committed offset) and must be committed to stay fixed."""
        if start.kind == "AFTER_SEQUENCE_NUMBER":
            if start.sequence_number is None:
                raise ValueError("AFTER_SEQUENCE_NUMBER needs a sequence_number")
            consumer.seek(tp, int(start.sequence_number) + 1)
            return False
        committed = await consumer.committed(tp)
        if committed is not None:
            consumer.seek(tp, int(committed))
            return False
        kind = start.kind if start.kind in STARTING_POSITIONS else self.starting_position
        if kind == "TRIM_HORIZON":
            await consumer.seek_to_beginning(tp)
            return False
        if kind == "LATEST":
            consumer.seek(tp, await _end_offset(consumer, tp))
            return True
        ts = start.timestamp if start.kind == "AT_TIMESTAMP" else self.timestamp
        if ts is None:
            raise ValueError("AT_TIMESTAMP needs a timestamp")
        at = (await consumer.offsets_for_times({tp: int(ts * 1000)})).get(tp)
        # nothing at or after the timestamp yet: the end, as an explicit offset (seek_to_end resets lazily,
        # and the consumer's own auto_offset_reset could win the race to the first fetch)
        consumer.seek(tp, int(at.offset) if at is not None else await _end_offset(consumer, tp))
        return True

    async def commit(self, shard_id: str, sequence_number: str) -> None:
        """Every record of the partition up to ``sequence_number`` is finished: offset + 1 is committed
        in the background (see OffsetCommitter.request; a source never entered commits before a rebalance
        and on close only). Raises the SourceError a background commit met."""
        topic, partition = parse_partition_key(shard_id)
        await self._started()
        self._committer.request(TopicPartition(topic, partition), int(sequence_number) + 1)

    async def produce(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        """A ``kafka://<topic>`` on-failure destination on the same cluster (implements TopicProducer,
        through the producer this source owns)."""
        await self._producer.produce(topic, messages)


class KafkaPartitionReader(Transport):
    """Reads one partition in offset order (implements ShardReader); see KafkaSource for rebalances."""

    def __init__(self, source: KafkaSource, tp: Any, shard_id: str) -> None:
        self.source = source
        self.tp = tp
        self.shard_id = shard_id
        #: the offset after the last record returned (where a re-assignment continues)
        self.next_offset: int | None = None
        self._revoked = False
        self._records = KafkaRecords(tp.topic, tp.partition)

    @property
    def revoked(self) -> bool:
        return self._revoked

    async def read(self, limit: int) -> ShardRead:
        """The next records of the partition (none after ``fetch_wait_s``, or while the group
        rebalances); ``released`` once the partition was revoked from this member."""
        if self._revoked:
            return ShardRead(records=[], released=True)
        source = self.source
        consumer = await source._started()
        if not await source._wait_stable(source.fetch_wait_s):
            return ShardRead(records=[])
        if self._revoked:
            return ShardRead(records=[], released=True)
        try:
            fetched = await consumer.getmany(
                self.tp, timeout_ms=int(source.fetch_wait_s * 1000), max_records=max(1, limit)
            )
        except IllegalStateError:
            self._revoked = True
            return ShardRead(records=[], released=True)
        except KafkaError as e:
            raise source.connection.refused(e, f"Fetch {self.shard_id}") from e
        if self._revoked:  # revoked while fetching: those records belong to the new owner
            return ShardRead(records=[], released=True)
        messages = fetched.get(self.tp) or []
        if self.next_offset is not None:
            messages = [m for m in messages if m.offset >= self.next_offset]
        records = [self._stream_record(m) for m in messages]
        if messages:
            self.next_offset = messages[-1].offset + 1
        return ShardRead(records=records, lag=self._lag(consumer))

    def _lag(self, consumer: Any) -> int | None:
        """Records past what was read (the high watermark the last fetch reported), for OffsetLag."""
        end = consumer.highwater(self.tp)
        position = self.next_offset
        return None if end is None or position is None else max(0, end - position)

    def _stream_record(self, message: Any) -> StreamRecord:
        record, encoded = self._records.build(
            message.offset,
            message.timestamp,
            message.timestamp_type,
            message.key,
            message.value,
            list(message.headers or ()),
        )
        return StreamRecord(
            record=record,
            sequence_number=str(message.offset),
            arrival_s=message.timestamp / 1000,
            lane_key=record["key"] or "",
            encoded=encoded,
        )

    async def aclose(self) -> None:
        """Nothing to release: the consumer belongs to the source; the partition stays assigned."""
        if self.source._readers.get(self.tp) is self:
            del self.source._readers[self.tp]


if TYPE_CHECKING:  # the ports these classes implement (checked by mypy, never run)
    from engine.ports import ShardReader, SourceCommits, StreamSource, TopicProducer

    def _implements(
        source: KafkaSource, reader: KafkaPartitionReader
    ) -> tuple[StreamSource, SourceCommits, TopicProducer, ShardReader]:
        return source, source, source, reader


async def _end_offset(consumer: Any, tp: Any) -> int:
    """The partition's end (the offset the next record produced gets)."""
    return int((await consumer.end_offsets([tp]))[tp])
