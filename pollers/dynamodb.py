"""DynamoDB Streams transport through aiobotocore: shards (DescribeStream), iterators, GetRecords.

A transport only, like pollers/kinesis.py, whose iterator reader it shares (the DynamoDB Streams API
has Kinesis' GetShardIterator / GetRecords shape). The mapping's stream ARN is used as it is; its label
(``.../stream/<label>``) is the stream's identity: a table deleted and re-created gets a new stream and
label, and the old ARN then names a stream that is gone.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from engine.events import parse_arn
from engine.model import EventSourceMapping
from engine.ports import ShardInfo, SourceNotFound, StartPosition, StreamRecord
from engine.stream_events import dynamodb_lane_key, dynamodb_record
from pollers.aws import AwsClients
from pollers.kinesis import (
    ExpiredIterator,
    IteratorShardReader,
    ShardGone,
    StreamApi,
    StreamSourceFactory,
    TrimmedData,
    check_start,
    error_code,
    shard_info,
    stream_not_found,
    translate,
)

#: GetRecords' Limit ceiling (DynamoDB Streams API)
DYNAMODB_MAX_LIMIT = 1000
#: DescribeStream's Limit ceiling (shards per page)
_DESCRIBE_PAGE = 100


@dataclass(frozen=True)
class DynamoDbStreamArn:
    """``arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL``, parsed once."""

    arn: str
    table: str
    label: str
    region: str

    @classmethod
    def parse(cls, arn: str) -> DynamoDbStreamArn:
        parts = parse_arn(arn)
        segments = parts.resource.split("/")
        if (
            parts.service != "dynamodb"
            or len(segments) != 4
            or segments[0] != "table"
            or segments[2] != "stream"
            or not segments[1]
            or not segments[3]
        ):
            raise ValueError(f"not a DynamoDB stream ARN: {arn!r}")
        return cls(arn, segments[1], segments[3], parts.region)


class DynamoDbSourceFactory(StreamSourceFactory):
    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def open_stream(
        self, mapping: EventSourceMapping, *, invoke_identity_arn: str | None = None
    ) -> DynamoDbStream:
        """``invoke_identity_arn`` is accepted for a uniform call with Kinesis' factory and unused:
        DynamoDB records carry no invokeIdentityArn."""
        arn = mapping.event_source_arn
        assert arn is not None
        return DynamoDbStream(self.clients, arn)


class DynamoDbStream(StreamApi):
    """One DynamoDB stream (implements StreamSource)."""

    max_limit = DYNAMODB_MAX_LIMIT

    def __init__(self, clients: AwsClients, arn: str) -> None:
        self.clients = clients
        parsed = DynamoDbStreamArn.parse(arn)
        self.arn, self.table, self.label, self.region = parsed.arn, parsed.table, parsed.label, parsed.region

    async def _client(self) -> Any:
        return await self.clients.client(self.region)

    async def _describe(self, **page: Any) -> Mapping[str, Any]:
        """One DescribeStream page; SourceNotFound when the stream, or the label of this ARN, is gone
        (some emulators answer for a table's current stream whatever label the ARN names)."""
        client = await self._client()
        try:
            resp = await client.describe_stream(StreamArn=self.arn, **page)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "DescribeStream", self.arn) from e
        description: Mapping[str, Any] = resp["StreamDescription"]
        label = description.get("StreamLabel")
        if label is not None and label != self.label:
            raise stream_not_found(self.arn)
        return description

    async def identity(self) -> str:
        """The stream label."""
        description = await self._describe(Limit=1)
        return str(description.get("StreamLabel") or self.label)

    async def list_shards(self) -> Sequence[ShardInfo]:
        shards: list[ShardInfo] = []
        page: dict[str, Any] = {"Limit": _DESCRIBE_PAGE}
        while True:
            description = await self._describe(**page)
            shards += [shard_info(s) for s in description.get("Shards") or ()]
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            page = {"Limit": _DESCRIBE_PAGE, "ExclusiveStartShardId": last}

    async def open_shard(self, shard_id: str, start: StartPosition) -> IteratorShardReader:
        check_start(start, at_timestamp=False)
        return await IteratorShardReader(self, shard_id, start).open()

    async def aclose(self) -> None:
        """The clients belong to the engine."""

    # StreamApi

    async def _exists(self) -> bool:
        try:
            await self.identity()
        except SourceNotFound:
            return False
        return True

    async def shard_iterator(self, shard_id: str, start: StartPosition) -> str | None:
        client = await self._client()
        kwargs: dict[str, Any] = {"StreamArn": self.arn, "ShardId": shard_id, "ShardIteratorType": start.kind}
        if start.kind == "AFTER_SEQUENCE_NUMBER":
            kwargs["SequenceNumber"] = start.sequence_number
        try:
            resp = await client.get_shard_iterator(**kwargs)
        except ClientError as e:
            code = error_code(e)
            if code == "TrimmedDataAccessException":
                raise TrimmedData(str(e)) from e
            if code == "ResourceNotFoundException" and await self._exists():
                raise ShardGone(shard_id) from e
            raise translate(e, "GetShardIterator", self.arn) from e
        except BotoCoreError as e:
            raise translate(e, "GetShardIterator", self.arn) from e
        iterator = resp.get("ShardIterator")
        return str(iterator) if iterator else None

    async def get_records(self, iterator: str, limit: int) -> Mapping[str, Any]:
        client = await self._client()
        try:
            resp: Mapping[str, Any] = await client.get_records(ShardIterator=iterator, Limit=limit)
        except ClientError as e:
            code = error_code(e)
            if code == "ExpiredIteratorException":
                raise ExpiredIterator(str(e)) from e
            if code == "TrimmedDataAccessException":
                raise TrimmedData(str(e)) from e
            raise translate(e, "GetRecords", self.arn) from e
        except BotoCoreError as e:
            raise translate(e, "GetRecords", self.arn) from e
        return resp

    def stream_record(self, shard_id: str, raw: Mapping[str, Any]) -> StreamRecord:
        record = dynamodb_record(raw, stream_arn=self.arn, region=self.region)
        body = record["dynamodb"]
        created = body.get("ApproximateCreationDateTime")
        return StreamRecord(
            record=record,
            sequence_number=str(body["SequenceNumber"]),
            # every service sets it; the wall clock only keeps a malformed record from looking ancient
            arrival_s=float(created) if created is not None else time.time(),
            lane_key=dynamodb_lane_key(body.get("Keys") or {}),
        )


if TYPE_CHECKING:  # the ports these classes implement (checked by mypy, never run)
    from engine.ports import ShardReader, StreamSource

    def _implements(stream: DynamoDbStream, reader: IteratorShardReader) -> tuple[StreamSource, ShardReader]:
        return stream, reader
