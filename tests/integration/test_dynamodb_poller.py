"""The DynamoDB Streams transport (pollers/dynamodb.py) against moto's server (account 123456789012):
INSERT / MODIFY / REMOVE records in order with their exact shape, start positions, identity, missing and
replaced streams. moto has one shard per stream that never closes and never expires or throttles
anything: expiry, trimming and throttling are injected as SDK errors on top of the real client."""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import boto3
import pytest
from botocore.exceptions import ClientError

from engine.model import EventSourceMapping, SourceKind, State
from engine.ports import ShardInfo, SourceNotFound, SourceThrottled, StartPosition, StreamRecord
from pollers.aws import AwsClients
from pollers.dynamodb import DynamoDbSourceFactory, DynamoDbStream
from pollers.kinesis import IteratorShardReader
from tests.integration.faults import FaultyClients

pytestmark = pytest.mark.service("moto")

REGION = "us-east-1"
ACCOUNT = "123456789012"


def mapping_for(arn: str) -> EventSourceMapping:
    return EventSourceMapping(
        uuid="00000000-0000-0000-0000-000000000002",
        kind=SourceKind.DYNAMODB,
        function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:table-fn",
        params={"EventSourceArn": arn, "StartingPosition": "TRIM_HORIZON", "BatchSize": 100},
        enabled=True,
        state=State.ENABLED,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )


async def read_all(reader: IteratorShardReader, expected: int, limit: int = 100) -> list[StreamRecord]:
    out: list[StreamRecord] = []
    for _ in range(20):
        batch = await reader.read(limit)
        assert len(batch.records) <= limit
        assert batch.millis_behind_latest is None  # a Kinesis figure only
        out += batch.records
        if len(out) >= expected or batch.end_of_shard:
            break
    return out


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def dynamodb(moto_endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
async def clients(moto_endpoint: str) -> AsyncIterator[AwsClients]:
    c = AwsClients("dynamodbstreams", moto_endpoint)
    yield c
    await c.aclose()


@pytest.fixture
def factory(clients: AwsClients) -> DynamoDbSourceFactory:
    return DynamoDbSourceFactory(clients)


@pytest.fixture
def make_table(dynamodb: Any, unique_name: Callable[..., str]) -> Iterator[Callable[..., tuple[str, str]]]:
    """``make_table(view_type="NEW_AND_OLD_IMAGES", name=None) -> (table name, stream ARN)``: a table keyed
    by pk (S) and sk (N) with a stream; deleted after the test."""
    names: set[str] = set()

    def make(view_type: str = "NEW_AND_OLD_IMAGES", name: str | None = None) -> tuple[str, str]:
        name = name or unique_name("esm-ddb")
        resp = dynamodb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
        )
        names.add(name)
        return name, str(resp["TableDescription"]["LatestStreamArn"])

    yield make
    for name in names:
        with contextlib.suppress(ClientError):
            dynamodb.delete_table(TableName=name)


def key(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


async def only_shard(stream: DynamoDbStream) -> str:
    shards = await stream.list_shards()
    assert len(shards) == 1
    return shards[0].shard_id


# --- tests --------------------------------------------------------------------------------------------


async def test_insert_modify_remove_in_order_with_the_exact_record_shape(
    dynamodb: Any, factory: DynamoDbSourceFactory, make_table: Any
) -> None:
    table, arn = make_table()
    item = {
        **key("user-1", 7),
        "name": {"S": "Ada"},
        "blob": {"B": b"\x00\xff\xfe"},
        "blobs": {"BS": [b"\x01", b"\x02\x03"]},
        "nested": {"M": {"inner": {"B": b"foobar"}, "list": {"L": [{"N": "1.5"}, {"BOOL": True}]}}},
    }
    before = time.time()
    dynamodb.put_item(TableName=table, Item=item)
    dynamodb.update_item(
        TableName=table,
        Key=key("user-1", 7),
        UpdateExpression="SET #n = :n",
        ExpressionAttributeNames={"#n": "name"},
        ExpressionAttributeValues={":n": {"S": "Grace"}},
    )
    dynamodb.delete_item(TableName=table, Key=key("user-1", 7))

    stream = factory.open_stream(mapping_for(arn))
    reader = await stream.open_shard(await only_shard(stream), StartPosition("TRIM_HORIZON"))
    got = await read_all(reader, 3)
    assert [r.record["eventName"] for r in got] == ["INSERT", "MODIFY", "REMOVE"]
    seqs = [int(r.sequence_number) for r in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3

    wire_item = {
        **key("user-1", 7),
        "name": {"S": "Ada"},
        "blob": {"B": base64.b64encode(b"\x00\xff\xfe").decode()},
        "blobs": {"BS": ["AQ==", "AgM="]},
        "nested": {"M": {"inner": {"B": "Zm9vYmFy"}, "list": {"L": [{"N": "1.5"}, {"BOOL": True}]}}},
    }
    modified = {**wire_item, "name": {"S": "Grace"}}
    images = [
        {"NewImage": wire_item},
        {"NewImage": modified, "OldImage": wire_item},
        {"OldImage": modified},
    ]
    for rec, name, imgs in zip(got, ["INSERT", "MODIFY", "REMOVE"], images, strict=True):
        body = rec.record["dynamodb"]
        assert re.fullmatch(r"[0-9a-f]{32}", rec.record["eventID"])
        assert isinstance(body["ApproximateCreationDateTime"], float)
        assert before - 5 < body["ApproximateCreationDateTime"] < time.time() + 5
        assert isinstance(body["SizeBytes"], int) and body["SizeBytes"] > 0
        assert rec.record == {
            "eventID": rec.record["eventID"],
            "eventName": name,
            "eventVersion": "1.0",  # moto's; AWS sends "1.1": passed through as the stream says
            "eventSource": "aws:dynamodb",
            "awsRegion": REGION,
            "dynamodb": {
                "ApproximateCreationDateTime": body["ApproximateCreationDateTime"],
                "Keys": key("user-1", 7),
                **imgs,
                "SequenceNumber": rec.sequence_number,
                "SizeBytes": body["SizeBytes"],
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "eventSourceARN": arn,
        }
        assert list(rec.record) == [
            "eventID",
            "eventName",
            "eventVersion",
            "eventSource",
            "awsRegion",
            "dynamodb",
            "eventSourceARN",
        ]
        expected_order = ["ApproximateCreationDateTime", "Keys", "NewImage", "OldImage"]
        expected_order = [k for k in expected_order if k in body] + [
            "SequenceNumber",
            "SizeBytes",
            "StreamViewType",
        ]
        assert list(body) == expected_order
        assert rec.arrival_s == body["ApproximateCreationDateTime"]
        assert rec.lane_key == '{"pk":{"S":"user-1"},"sk":{"N":"7"}}'

    tail = await reader.read(100)
    assert tail.records == [] and not tail.end_of_shard  # moto's shard never closes


async def test_identity_and_shards(factory: DynamoDbSourceFactory, make_table: Any) -> None:
    _, arn = make_table()
    await factory.describe(mapping_for(arn))
    stream = factory.open_stream(mapping_for(arn))
    assert await stream.identity() == arn.rsplit("/stream/", 1)[1]
    shards = await stream.list_shards()
    assert len(shards) == 1 and shards[0] == ShardInfo(shards[0].shard_id)


async def test_latest_after_sequence_number_and_limit(
    dynamodb: Any, factory: DynamoDbSourceFactory, make_table: Any
) -> None:
    table, arn = make_table("KEYS_ONLY")
    stream = factory.open_stream(mapping_for(arn))
    shard = await only_shard(stream)
    dynamodb.put_item(TableName=table, Item=key("a", 0))
    latest = await stream.open_shard(shard, StartPosition("LATEST"))
    for i in range(1, 6):
        dynamodb.put_item(TableName=table, Item={**key("a", i), "x": {"S": "y"}})

    got = await read_all(latest, 5, limit=2)
    assert [r.record["dynamodb"]["Keys"]["sk"]["N"] for r in got] == ["1", "2", "3", "4", "5"]
    assert all("NewImage" not in r.record["dynamodb"] for r in got)  # KEYS_ONLY
    assert latest.last_sequence_number == got[-1].sequence_number

    after = await stream.open_shard(
        shard, StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=got[2].sequence_number)
    )
    rest = await read_all(after, 2, limit=5000)  # Limit is capped at DynamoDB's 1000
    assert [r.sequence_number for r in rest] == [r.sequence_number for r in got[3:]]

    with pytest.raises(ValueError):
        await stream.open_shard(shard, StartPosition("AT_TIMESTAMP", timestamp=time.time()))


async def test_a_missing_stream_is_source_not_found(factory: DynamoDbSourceFactory, unique_name: Any) -> None:
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{unique_name('missing')}/stream/2026-01-01T00:00:00.000"
    with pytest.raises(SourceNotFound) as e:
        await factory.describe(mapping_for(arn))
    assert str(e.value) == f"Stream not found: {arn}"
    stream = factory.open_stream(mapping_for(arn))
    for call in (stream.identity, stream.list_shards):
        with pytest.raises(SourceNotFound, match=f"^{re.escape(f'Stream not found: {arn}')}$"):
            await call()
    with pytest.raises(SourceNotFound):
        await factory.describe(mapping_for(f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/no-stream"))


async def test_a_recreated_table_has_a_new_stream_and_the_old_arn_is_gone(
    dynamodb: Any, factory: DynamoDbSourceFactory, make_table: Any
) -> None:
    table, old_arn = make_table()
    old_identity = await factory.open_stream(mapping_for(old_arn)).identity()
    dynamodb.delete_table(TableName=table)
    with pytest.raises(SourceNotFound):
        await factory.describe(mapping_for(old_arn))
    await anyio.sleep(0.002)  # a new label needs a new timestamp
    _, new_arn = make_table(name=table)
    assert new_arn != old_arn
    # moto answers DescribeStream for the table's current stream whatever label the ARN names
    with pytest.raises(SourceNotFound):
        await factory.open_stream(mapping_for(old_arn)).identity()
    new_identity = await factory.open_stream(mapping_for(new_arn)).identity()
    assert new_identity != old_identity


async def test_expired_iterator_trimmed_position_and_throttling(
    dynamodb: Any, moto_endpoint: str, make_table: Any
) -> None:
    table, arn = make_table("KEYS_ONLY")
    for i in range(4):
        dynamodb.put_item(TableName=table, Item=key("k", i))
    faults: dict[str, list[str]] = {}
    clients = FaultyClients("dynamodbstreams", moto_endpoint, faults)
    try:
        stream = DynamoDbSourceFactory(clients).open_stream(mapping_for(arn))
        shard = await only_shard(stream)
        reader = await stream.open_shard(shard, StartPosition("TRIM_HORIZON"))
        first = await reader.read(2)
        assert [r.record["dynamodb"]["Keys"]["sk"]["N"] for r in first.records] == ["0", "1"]

        faults["get_records"] = ["LimitExceededException"]
        with pytest.raises(SourceThrottled):
            await reader.read(2)
        faults["get_records"] = ["ExpiredIteratorException"]  # renewed after the last record returned
        second = await reader.read(2)
        assert [r.record["dynamodb"]["Keys"]["sk"]["N"] for r in second.records] == ["2", "3"]

        # a checkpoint older than the stream's retention: start again at the trim horizon
        faults["get_shard_iterator"] = ["TrimmedDataAccessException"]
        trimmed = await stream.open_shard(
            shard, StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=second.records[0].sequence_number)
        )
        again = await read_all(trimmed, 4)
        assert [r.record["dynamodb"]["Keys"]["sk"]["N"] for r in again] == ["0", "1", "2", "3"]
    finally:
        await clients.aclose()
