"""Kinesis Data Streams transport through aiobotocore: shards, shard iterators, GetRecords.

A transport only: it lists shards and reads records on request; when to poll, how to batch, retry and
checkpoint is the engine's business (no loops or sleeps here). Any endpoint works (kinesis-mock,
LocalStack, AWS). Streams are addressed by name (the ARN's ``stream/<name>`` part), which also works
against emulators whose account id differs from the ARN's.

The iterator reader (:class:`IteratorShardReader`) and the clients holder are shared with
``pollers/dynamodb.py``: DynamoDB Streams has the same GetShardIterator / GetRecords shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from engine.events import parse_arn
from engine.model import EventSourceMapping
from engine.ports import (
    ShardInfo,
    ShardRead,
    ShardReader,
    SourceDescription,
    SourceError,
    SourceNotFound,
    SourceThrottled,
    StartPosition,
    StreamRecord,
    StreamSource,
    Transport,
)
from engine.stream_events import epoch_seconds, kinesis_lane_key, kinesis_record
from pollers.aws import AwsClients

log = structlog.get_logger("pollers.kinesis")

#: GetRecords' Limit ceiling (Kinesis API)
KINESIS_MAX_LIMIT = 10_000
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
    }
)
START_KINDS = frozenset({"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "AFTER_SEQUENCE_NUMBER"})
#: the role Lambda would show when the engine was not told the function's execution role
DEFAULT_ROLE_NAME = "esm-local"


def stream_not_found(arn: str) -> SourceNotFound:
    """The AWS text for a missing Kinesis or DynamoDB stream (spec 8.4 step 10)."""
    return SourceNotFound(f"Stream not found: {arn}")


def error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def translate(e: ClientError | BotoCoreError, operation: str, stream_arn: str) -> Exception:
    """An SDK error at the boundary -> SourceThrottled, SourceNotFound or SourceError."""
    if isinstance(e, ClientError):
        code = error_code(e)
        if code in THROTTLING_CODES:
            return SourceThrottled(f"{operation} throttled ({code}) on {stream_arn}")
        if code == "ResourceNotFoundException":
            return stream_not_found(stream_arn)
    return SourceError(f"{operation} failed on {stream_arn}: {e}")


def default_identity_arn(mapping: EventSourceMapping) -> str:
    """The invokeIdentityArn when the caller has no execution role: the function account's
    ``role/esm-local`` (the function registry's default role)."""
    try:
        account = parse_arn(mapping.function_arn).account
    except ValueError:
        account = "000000000000"
    return f"arn:aws:iam::{account}:role/{DEFAULT_ROLE_NAME}"


# --- the iterator reader shared with DynamoDB Streams ---------------------------------------------------


class ExpiredIterator(Exception):
    """GetRecords refused the iterator as expired (internal: the reader renews it)."""


class TrimmedData(Exception):
    """The iterator's position is older than the stream's retention (DynamoDB's
    TrimmedDataAccessException; internal: the reader moves to TRIM_HORIZON, those records are gone)."""


class ShardGone(Exception):
    """The stream exists but the shard does not (trimmed past retention; internal: end of shard)."""


class StreamApi(Transport):
    """What :class:`IteratorShardReader` needs of a stream service. Implementations raise ExpiredIterator,
    TrimmedData, ShardGone, SourceThrottled, SourceNotFound or SourceError, nothing else."""

    #: GetRecords' Limit ceiling
    max_limit: int = 1000

    async def shard_iterator(self, shard_id: str, start: StartPosition) -> str | None:
        """GetShardIterator; None when the (closed) shard has nothing more at that position."""
        raise NotImplementedError

    async def get_records(self, iterator: str, limit: int) -> Mapping[str, Any]:
        raise NotImplementedError

    def stream_record(self, shard_id: str, raw: Mapping[str, Any]) -> StreamRecord:
        raise NotImplementedError


class IteratorShardReader(Transport):
    """Reads one shard in order through GetShardIterator / GetRecords (implements ShardReader).

    Every ``read`` returns the records after the last one returned. An expired iterator is renewed
    AFTER_SEQUENCE_NUMBER the last record returned (the start position if none yet); when the read is
    throttled or fails, the iterator is kept, so the next ``read`` repeats from the same place.
    """

    def __init__(self, api: StreamApi, shard_id: str, start: StartPosition) -> None:
        self.api = api
        self.shard_id = shard_id
        self.start = start
        self._iterator: str | None = None
        self._last_sequence: str | None = None
        self._ended = False

    @property
    def last_sequence_number(self) -> str | None:
        """The sequence number of the last record returned."""
        return self._last_sequence

    def _resume_position(self) -> StartPosition:
        if self._last_sequence is not None:
            return StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=self._last_sequence)
        return self.start

    async def _renew(self) -> None:
        """A fresh iterator at the resume position (TRIM_HORIZON when that position was trimmed)."""
        position = self._resume_position()
        try:
            try:
                iterator = await self.api.shard_iterator(self.shard_id, position)
            except TrimmedData:
                log.warning(
                    "shard_position_trimmed",
                    shard_id=self.shard_id,
                    position=position.kind,
                    sequence_number=position.sequence_number,
                )
                iterator = await self.api.shard_iterator(self.shard_id, StartPosition("TRIM_HORIZON"))
        except ShardGone:
            log.warning("shard_gone", shard_id=self.shard_id)
            iterator = None
        self._iterator = iterator
        self._ended = iterator is None

    async def open(self) -> IteratorShardReader:
        """Takes the first iterator now, so that LATEST means the moment the shard was opened."""
        await self._renew()
        return self

    async def read(self, limit: int) -> ShardRead:
        if self._ended:
            return ShardRead(records=[], end_of_shard=True)
        if self._iterator is None:
            await self._renew()
            if self._iterator is None:
                return ShardRead(records=[], end_of_shard=True)
        count = max(1, min(limit, self.api.max_limit))
        try:
            resp = await self.api.get_records(self._iterator, count)
        except (ExpiredIterator, TrimmedData) as e:
            log.info("shard_iterator_renewed", shard_id=self.shard_id, reason=type(e).__name__)
            self._iterator = None
            await self._renew()
            if self._iterator is None:
                return ShardRead(records=[], end_of_shard=True)
            try:
                resp = await self.api.get_records(self._iterator, count)
            except (ExpiredIterator, TrimmedData) as again:
                self._iterator = None
                raise SourceError(f"GetRecords refused a fresh iterator on {self.shard_id}") from again
        records = [self.api.stream_record(self.shard_id, raw) for raw in resp.get("Records") or ()]
        if records:
            self._last_sequence = records[-1].sequence_number
        next_iterator = resp.get("NextShardIterator")
        self._iterator = next_iterator
        self._ended = next_iterator is None
        behind = resp.get("MillisBehindLatest")
        return ShardRead(
            records=records,
            end_of_shard=self._ended,
            millis_behind_latest=int(behind) if behind is not None else None,
        )

    async def aclose(self) -> None:
        """Nothing to release: the clients belong to the engine."""


# --- Kinesis ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KinesisArn:
    """A Kinesis EventSourceArn, parsed once: the stream it reads and, for an enhanced fan-out consumer ARN
    (``arn:aws:kinesis:REGION:ACCOUNT:stream/NAME/consumer/...``), the consumer that reads it. An EFO
    consumer's records name the stream (spec 1.1)."""

    stream_arn: str
    name: str
    region: str
    consumer_arn: str | None = None

    @classmethod
    def parse(cls, arn: str) -> KinesisArn:
        parts = parse_arn(arn)
        segments = parts.resource.split("/")
        if parts.service != "kinesis" or len(segments) < 2 or segments[0] != "stream" or not segments[1]:
            raise ValueError(f"not a Kinesis stream ARN: {arn!r}")
        name = segments[1]
        stream_arn = f"arn:{parts.partition}:kinesis:{parts.region}:{parts.account}:stream/{name}"
        consumer_arn = arn if segments[2:3] == ["consumer"] else None
        return cls(stream_arn, name, parts.region, consumer_arn)


class StreamSourceFactory:
    """What the Kinesis and DynamoDB Streams factories share: the existence check."""

    def open_stream(
        self, mapping: EventSourceMapping, *, invoke_identity_arn: str | None = None
    ) -> StreamSource:
        raise NotImplementedError

    async def describe(self, mapping: EventSourceMapping) -> SourceDescription:
        """Raises SourceNotFound ``Stream not found: <arn>`` when the stream does not exist."""
        arn = mapping.event_source_arn
        assert arn is not None
        try:
            stream = self.open_stream(mapping)
        except ValueError:
            raise stream_not_found(arn) from None
        await stream.identity()
        return SourceDescription()


class KinesisSourceFactory(StreamSourceFactory):
    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def open_stream(
        self, mapping: EventSourceMapping, *, invoke_identity_arn: str | None = None
    ) -> KinesisStream:
        """``invoke_identity_arn``: the function's execution role (records' invokeIdentityArn)."""
        arn = mapping.event_source_arn
        assert arn is not None
        return KinesisStream(self.clients, arn, invoke_identity_arn or default_identity_arn(mapping))


class KinesisStream(StreamApi):
    """One Kinesis stream (implements StreamSource)."""

    max_limit = KINESIS_MAX_LIMIT

    def __init__(self, clients: AwsClients, arn: str, invoke_identity_arn: str) -> None:
        self.clients = clients
        parsed = KinesisArn.parse(arn)
        #: the stream (records' eventSourceARN: a consumer ARN is normalised to its stream)
        self.arn, self.name, self.region = parsed.stream_arn, parsed.name, parsed.region
        #: an enhanced fan-out consumer ARN: shards are read through SubscribeToShard (pollers/kinesis_efo)
        self.consumer_arn = parsed.consumer_arn
        self.invoke_identity_arn = invoke_identity_arn

    async def _client(self) -> Any:
        return await self.clients.client(self.region)

    async def identity(self) -> str:
        """StreamCreationTimestamp (epoch seconds, ms) of the stream now under this name."""
        client = await self._client()
        try:
            resp = await client.describe_stream_summary(StreamName=self.name)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "DescribeStreamSummary", self.arn) from e
        created = resp["StreamDescriptionSummary"]["StreamCreationTimestamp"]
        return f"{epoch_seconds(created):.3f}"

    async def list_shards(self) -> Sequence[ShardInfo]:
        client = await self._client()
        shards: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamName": self.name}
        while True:
            try:
                resp = await client.list_shards(**kwargs)
            except (ClientError, BotoCoreError) as e:
                raise translate(e, "ListShards", self.arn) from e
            shards += [shard_info(s) for s in resp.get("Shards") or ()]
            token = resp.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}  # ListShards refuses StreamName together with NextToken

    async def open_shard(self, shard_id: str, start: StartPosition) -> ShardReader:
        check_start(start, at_timestamp=True)
        if self.consumer_arn is not None:
            from pollers.kinesis_efo import SubscribeShardReader  # here: kinesis_efo imports this module

            return await SubscribeShardReader(self, self.consumer_arn, shard_id, start).open()
        return await IteratorShardReader(self, shard_id, start).open()

    async def aclose(self) -> None:
        """The clients belong to the engine."""

    # StreamApi

    async def shard_iterator(self, shard_id: str, start: StartPosition) -> str | None:
        client = await self._client()
        kwargs: dict[str, Any] = {
            "StreamName": self.name,
            "ShardId": shard_id,
            "ShardIteratorType": start.kind,
        }
        if start.kind == "AFTER_SEQUENCE_NUMBER":
            kwargs["StartingSequenceNumber"] = start.sequence_number
        elif start.kind == "AT_TIMESTAMP":
            assert start.timestamp is not None
            kwargs["Timestamp"] = datetime.fromtimestamp(start.timestamp, tz=UTC)
        try:
            resp = await client.get_shard_iterator(**kwargs)
        except ClientError as e:
            if error_code(e) == "ResourceNotFoundException" and await self._exists():
                raise ShardGone(shard_id) from e
            raise translate(e, "GetShardIterator", self.arn) from e
        except BotoCoreError as e:
            raise translate(e, "GetShardIterator", self.arn) from e
        iterator = resp.get("ShardIterator")
        return str(iterator) if iterator else None

    async def _exists(self) -> bool:
        try:
            await self.identity()
        except SourceNotFound:
            return False
        return True

    async def get_records(self, iterator: str, limit: int) -> Mapping[str, Any]:
        client = await self._client()
        try:
            resp: Mapping[str, Any] = await client.get_records(ShardIterator=iterator, Limit=limit)
        except ClientError as e:
            if error_code(e) == "ExpiredIteratorException":
                raise ExpiredIterator(str(e)) from e
            raise translate(e, "GetRecords", self.arn) from e
        except BotoCoreError as e:
            raise translate(e, "GetRecords", self.arn) from e
        return resp

    def stream_record(self, shard_id: str, raw: Mapping[str, Any]) -> StreamRecord:
        record = kinesis_record(
            raw,
            shard_id=shard_id,
            stream_arn=self.arn,
            region=self.region,
            invoke_identity_arn=self.invoke_identity_arn,
        )
        return StreamRecord(
            record=record,
            sequence_number=record["kinesis"]["sequenceNumber"],
            arrival_s=record["kinesis"]["approximateArrivalTimestamp"],
            lane_key=kinesis_lane_key(raw),
        )


def shard_info(shard: Mapping[str, Any]) -> ShardInfo:
    """A ListShards / DescribeStream shard -> ShardInfo (parents in ParentShardId, AdjacentParentShardId
    order; closed when the shard has an EndingSequenceNumber)."""
    parents = tuple(str(shard[key]) for key in ("ParentShardId", "AdjacentParentShardId") if shard.get(key))
    ending = (shard.get("SequenceNumberRange") or {}).get("EndingSequenceNumber")
    return ShardInfo(shard_id=str(shard["ShardId"]), parent_ids=parents, closed=bool(ending))


def check_start(start: StartPosition, *, at_timestamp: bool) -> None:
    """A programming error (validation rejects these first) raises ValueError."""
    if start.kind not in START_KINDS or (start.kind == "AT_TIMESTAMP" and not at_timestamp):
        raise ValueError(f"unsupported start position {start.kind!r}")
    if start.kind == "AFTER_SEQUENCE_NUMBER" and not start.sequence_number:
        raise ValueError("AFTER_SEQUENCE_NUMBER needs a sequence_number")
    if start.kind == "AT_TIMESTAMP" and start.timestamp is None:
        raise ValueError("AT_TIMESTAMP needs a timestamp")


if TYPE_CHECKING:  # the ports these classes implement (checked by mypy, never run)

    def _implements(stream: KinesisStream, reader: IteratorShardReader) -> tuple[StreamSource, ShardReader]:
        return stream, reader
