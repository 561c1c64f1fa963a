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
  (``AFTER_SEQUENCE_NUMBER`` = the last finished offset) seeks to offset + 1. LATEST is fixed when the shard
  is opened.
* Offsets are committed only through :meth:`KafkaSource.commit` (offset + 1 of the last finished record),
  which the engine calls once a batch's outcome is final.
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

SDK errors become :class:`SourceError` at this boundary; refused credentials say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.conn import create_conn  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    CommitFailedError,
    GroupAuthorizationFailedError,
    IllegalStateError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context  # type: ignore[import-untyped]

from engine.events_kafka import encode_kafka_record, kafka_record, parse_partition_key, partition_key
from engine.ports import (
    ShardInfo,
    ShardRead,
    SourceAccessDenied,
    SourceError,
    StartPosition,
    StreamRecord,
    Transport,
)
from engine.senders import KAFKA_SCHEME, DestinationError

log = structlog.get_logger("pollers.kafka")

StartingPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]
STARTING_POSITIONS: frozenset[str] = frozenset({"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"})
SaslMechanism = Literal["SASL_SCRAM_256", "SASL_SCRAM_512", "PLAIN"]
_SASL_NAMES: dict[str, str] = {
    "SASL_SCRAM_256": "SCRAM-SHA-256",
    "SASL_SCRAM_512": "SCRAM-SHA-512",
    "PLAIN": "PLAIN",
}
_AUTH_ERRORS: tuple[type[BaseException], ...] = (
    AuthenticationFailedError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
_DENIED_ERRORS: tuple[type[BaseException], ...] = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)
#: StateTransitionReason codes of a stopped consumer (spec 6.6)
AUTHN_ERROR = "EVENT_SOURCE_AUTHN_ERROR"
AUTHZ_ERROR = "EVENT_SOURCE_AUTHZ_ERROR"
#: how often the topic's partitions are looked up again
METADATA_MAX_AGE_MS = 5_000
#: the deadline of ``aclose`` (leaving the group included)
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class KafkaSecurity:
    """How to reach the cluster (SourceAccessConfigurations, spec 6.1).

    ``sasl``: SASL_SCRAM_256_AUTH / SASL_SCRAM_512_AUTH / BASIC_AUTH (PLAIN) with ``username`` and
    ``password``; ``tls``: TLS to the brokers (``ca_file``: SERVER_ROOT_CA_CERTIFICATE; ``cert_file`` +
    ``key_file``: CLIENT_CERTIFICATE_TLS_AUTH). SASL without TLS is SASL_PLAINTEXT (local brokers).
    """

    sasl: SaslMechanism | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None

    def __post_init__(self) -> None:
        if self.sasl is not None:
            if self.sasl not in _SASL_NAMES:
                raise ValueError(f"unsupported SASL mechanism {self.sasl!r}")
            if not self.username or self.password is None:
                raise ValueError(f"{self.sasl} needs a username and a password")

    @property
    def security_protocol(self) -> str:
        if self.sasl is not None:
            return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        return "SSL" if self.tls else "PLAINTEXT"

    def describe(self) -> str:
        """For messages: the protocol, mechanism and user, never the password."""
        if self.sasl is None:
            return self.security_protocol
        return f"{self.security_protocol} {_SASL_NAMES[self.sasl]} as user {self.username!r}"

    def client_kwargs(self) -> dict[str, Any]:
        """The aiokafka keyword arguments (consumer, admin client and connection alike)."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl is not None:
            kwargs |= {
                "sasl_mechanism": _SASL_NAMES[self.sasl],
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.tls:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.ca_file,
                certfile=self.cert_file,
                keyfile=self.key_file,
                password=self.key_password,
            )
            kwargs["ssl_context"] = context
        return kwargs


def _split_server(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep:
        return server, 9092
    return host.strip("[]"), int(port)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards the group's rebalance callbacks to the source."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Collection[Any]) -> None:
        self.source._on_revoked(revoked)
        try:  # still ours: what is finished is not handed over again
            await self.source._flush_commits()
        except SourceError as e:
            self.source.log.warning("kafka_commit_before_rebalance_failed", error=str(e))

    async def on_partitions_assigned(self, assigned: Collection[Any]) -> None:
        self.source._on_assigned(assigned)


class KafkaSource(Transport):
    """One topic read as one member of a consumer group (implements StreamSource, see the module doc).

    ``event_source_arn``: the MSK cluster ARN (records' envelope ``aws:kafka``) or None (self-managed).
    ``fetch_wait_s`` is how long one ``read`` waits for records of its partition before returning none.
    """

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
        self._consumer: Any = None
        self._start_lock = asyncio.Lock()
        self._closed = False
        #: set while the assignment is stable (cleared from revocation until the next assignment)
        self._stable = asyncio.Event()
        self._assigned_once = asyncio.Event()
        self._assignment: frozenset[Any] = frozenset()
        self._readers: dict[Any, KafkaPartitionReader] = {}
        self._identity: str | None = None
        self._producer: Any = None
        #: offsets finished since the last commit request, by partition (committed in the background)
        self._pending_commits: dict[Any, int] = {}
        self._commit_wanted = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._commit_failure: SourceError | None = None
        self.log = log.bind(topic=topic, group_id=group_id, bootstrap=",".join(self.bootstrap_servers))

    # --- lifecycle ------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"Kafka {','.join(self.bootstrap_servers)} topic {self.topic!r} group {self.group_id!r}"

    async def _started(self) -> Any:
        """The consumer, started and subscribed on first use."""
        if self._closed:
            raise SourceError(f"{self._where()}: the source is closed")
        if self._consumer is not None:
            return self._consumer
        async with self._start_lock:
            if self._consumer is not None:
                return self._consumer
            options: dict[str, Any] = {
                "bootstrap_servers": self.bootstrap_servers,
                "group_id": self.group_id,
                "client_id": self.client_id,
                "enable_auto_commit": False,
                "auto_offset_reset": "latest" if self.starting_position == "LATEST" else "earliest",
                # a topic created (or grown) after the mapping is seen within seconds, not aiokafka's 5 min
                "metadata_max_age_ms": METADATA_MAX_AGE_MS,
                **self.security.client_kwargs(),
                **self.consumer_options,
            }
            consumer = AIOKafkaConsumer(**options)
            try:
                await consumer.start()
                consumer.subscribe([self.topic], listener=_Listener(self))
            except BaseException as e:
                with contextlib.suppress(Exception):
                    await asyncio.shield(consumer.stop())
                if isinstance(e, KafkaError):
                    raise await self._start_error(e) from e
                raise
            self._consumer = consumer
            self.log.info("kafka_consumer_started", security=self.security.describe())
            return consumer

    async def _start_error(self, e: BaseException) -> SourceError:
        """The bootstrap failure, with the broker's reason when it refused the credentials (aiokafka only
        logs that and reports "Unable to bootstrap"): one diagnostic connection finds it out."""
        if isinstance(e, _AUTH_ERRORS):
            return self._auth_error(e)
        if self.security.sasl is not None:
            host, port = _split_server(self.bootstrap_servers[0])
            try:
                conn = await asyncio.wait_for(
                    create_conn(host, port, client_id=self.client_id, **self.security.client_kwargs()), 15
                )
            except _AUTH_ERRORS as auth:
                return self._auth_error(auth)
            except (KafkaError, OSError, TimeoutError):
                pass  # unreachable as well: the original error says it
            else:
                conn.close()
        return SourceError(f"{self._where()}: cannot connect ({self.security.describe()}): {e}")

    def _auth_error(self, e: BaseException) -> SourceError:
        return SourceAccessDenied(
            f"{self._where()}: SASL authentication failed ({self.security.describe()}): the broker refused "
            f"the credentials: {e}",
            reason=AUTHN_ERROR,
        )

    def _translate(self, e: KafkaError, operation: str) -> SourceError:
        if isinstance(e, _AUTH_ERRORS):
            return self._auth_error(e)
        if isinstance(e, _DENIED_ERRORS):
            return SourceAccessDenied(f"{self._where()}: {operation} not authorized: {e}", reason=AUTHZ_ERROR)
        return SourceError(f"{self._where()}: {operation} failed: {e}")

    async def aclose(self) -> None:
        """Leaves the group and stops the consumer (shielded from cancellation, at most CLOSE_TIMEOUT_S)."""
        self._closed = True
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(producer.stop()), CLOSE_TIMEOUT_S)
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
        with contextlib.suppress(SourceError, TimeoutError):  # what finished last is not redelivered
            await asyncio.wait_for(self._flush_commits(), CLOSE_TIMEOUT_S)
        consumer, self._consumer = self._consumer, None
        for reader in self._readers.values():
            reader._revoked = True
        self._readers.clear()
        self._stable.set()  # wake readers waiting for a rebalance: they end
        if consumer is None:
            return
        stopping = asyncio.ensure_future(consumer.stop())
        try:
            await asyncio.wait_for(asyncio.shield(stopping), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self.log.warning("kafka_consumer_stop_timeout", timeout_s=CLOSE_TIMEOUT_S)
        except (KafkaError, OSError) as e:
            self.log.warning("kafka_consumer_stop_failed", error=str(e))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(stopping), CLOSE_TIMEOUT_S)
            raise
        self.log.info("kafka_consumer_stopped")

    # --- rebalance listener ---------------------------------------------------------------------------

    def _on_revoked(self, revoked: Collection[Any]) -> None:
        self._stable.clear()
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
        if self._stable.is_set():
            return True
        try:
            await asyncio.wait_for(self._stable.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # --- StreamSource ---------------------------------------------------------------------------------

    async def identity(self) -> str:
        """The cluster id (what distinguishes this cluster from one re-created at the same address); the
        bootstrap servers and topic when the broker does not report one."""
        if self._identity is not None:
            return self._identity
        await self._started()
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            **self.security.client_kwargs(),
        )
        cluster_id: str | None = None
        try:
            await admin.start()
            try:
                described = await admin.describe_cluster()
                cluster_id = described.get("cluster_id") or None
            finally:
                await asyncio.shield(admin.close())
        except KafkaError as e:
            raise self._translate(e, "DescribeCluster") from e
        self._identity = cluster_id or f"{','.join(self.bootstrap_servers)}/{self.topic}"
        return self._identity

    async def list_shards(self) -> Sequence[ShardInfo]:
        """The partitions the group assigns to this member now (the first call waits, up to
        ``rebalance_wait_s``, for the first assignment)."""
        consumer = await self._started()
        if not self._assigned_once.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._keepalive_until_assigned(consumer), self.rebalance_wait_s)
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
            raise self._translate(e, "Poll") from e

    async def _keepalive_until_assigned(self, consumer: Any) -> None:
        while not self._assigned_once.is_set():
            await self._keepalive(consumer)
            with contextlib.suppress(TimeoutError):  # back as soon as the assignment arrives
                await asyncio.wait_for(self._assigned_once.wait(), 0.1)

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
            raise self._translate(e, "Seek") from e
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
            await consumer.seek_to_end(tp)
        else:
            ts = start.timestamp if start.kind == "AT_TIMESTAMP" else self.timestamp
            if ts is None:
                raise ValueError("AT_TIMESTAMP needs a timestamp")
            found = await consumer.offsets_for_times({tp: int(ts * 1000)})
            at = found.get(tp)
            if at is None:  # nothing at or after the timestamp yet
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, int(at.offset))
        return True

    async def commit(self, shard_id: str, sequence_number: str) -> None:
        """Every record of the partition up to ``sequence_number`` is finished: offset + 1 is committed
        in the background, the partitions and batches finished meanwhile in one OffsetCommit request (and
        before a rebalance or close). Raises the SourceError a background commit met.

        A partition no longer assigned to this member is not committed (its new owner resumes from the
        last committed offset: at-least-once); a commit refused by a rebalance in progress likewise (a
        later commit covers it)."""
        if self._commit_failure is not None:
            raise self._commit_failure
        topic, partition = parse_partition_key(shard_id)
        await self._started()
        tp = TopicPartition(topic, partition)
        offset = int(sequence_number) + 1
        if tp not in self._assignment:
            self.log.warning("kafka_commit_skipped_not_assigned", shard=shard_id, offset=offset)
            return
        self._pending_commits[tp] = offset
        self._commit_wanted.set()
        if self._committer is None:
            self._committer = asyncio.create_task(
                self._commit_loop(), name=f"esm-kafka-commit-{self.group_id}"
            )

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            try:
                await self._flush_commits()
            except SourceError as e:
                self._commit_failure = e  # the next commit() raises it: the runner restarts
                return

    async def _flush_commits(self) -> None:
        offsets = {tp: o for tp, o in self._pending_commits.items() if tp in self._assignment}
        self._pending_commits.clear()
        consumer = self._consumer
        if not offsets or consumer is None:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as e:
            self.log.warning(
                "kafka_commit_skipped_rebalance",
                shards=sorted(partition_key(tp.topic, tp.partition) for tp in offsets),
                error=str(e),
            )
        except KafkaError as e:
            raise self._translate(e, "Commit") from e

    async def produce(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        """A ``kafka://<topic>`` on-failure destination on the same cluster (implements TopicProducer):
        each (key, value) is sent with acks from all in-sync replicas; a keyless message goes to any
        partition."""
        destination = f"{KAFKA_SCHEME}{topic}"
        try:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    acks="all",
                    enable_idempotence=True,
                    **self.security.client_kwargs(),
                )
                await producer.start()
                self._producer = producer
            sent = [await self._producer.send(topic, value=value, key=key) for key, value in messages]
            await asyncio.gather(*sent)
        except KafkaError as e:
            raise DestinationError(f"{destination}: produce failed: {e}", destination=destination) from e

    def stream_record(self, message: Any) -> StreamRecord:
        headers: Sequence[tuple[str, bytes | None]] = list(message.headers or ())
        record = kafka_record(
            message.topic,
            message.partition,
            message.offset,
            message.timestamp,
            message.timestamp_type,
            message.key,
            message.value,
            headers,
        )
        return StreamRecord(
            record=record,
            sequence_number=str(message.offset),
            arrival_s=message.timestamp / 1000,
            lane_key=record["key"] or "",
            encoded=encode_kafka_record(record),
        )


class KafkaPartitionReader(Transport):
    """Reads one partition in offset order (implements ShardReader); see KafkaSource for rebalances."""

    def __init__(self, source: KafkaSource, tp: Any, shard_id: str) -> None:
        self.source = source
        self.tp = tp
        self.shard_id = shard_id
        #: the offset after the last record returned (where a re-assignment continues)
        self.next_offset: int | None = None
        self._revoked = False

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
            raise source._translate(e, f"Fetch {self.shard_id}") from e
        if self._revoked:  # revoked while fetching: those records belong to the new owner
            return ShardRead(records=[], released=True)
        messages = fetched.get(self.tp) or []
        if self.next_offset is not None:
            messages = [m for m in messages if m.offset >= self.next_offset]
        records = [source.stream_record(m) for m in messages]
        if messages:
            self.next_offset = messages[-1].offset + 1
        return ShardRead(records=records)

    async def aclose(self) -> None:
        """Nothing to release: the consumer belongs to the source; the partition stays assigned."""
        if self.source._readers.get(self.tp) is self:
            del self.source._readers[self.tp]


if TYPE_CHECKING:  # the ports these classes implement (checked by mypy, never run)
    from engine.ports import ShardReader, StreamSource

    def _implements(source: KafkaSource, reader: KafkaPartitionReader) -> tuple[StreamSource, ShardReader]:
        return source, reader
