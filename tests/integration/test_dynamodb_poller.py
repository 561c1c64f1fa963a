"""The DynamoDB Streams transport (pollers/dynamodb.py) against moto's server (account 123456789012),
beyond the StreamSource contract it passes (tests/contract/: identity, start positions, order, limits):
INSERT / MODIFY / REMOVE records in order with their exact shape, KEYS_ONLY, missing and deleted streams.
moto has one shard per stream that never closes and never expires or throttles anything: expiry, trimming
and throttling are injected as SDK errors on top of the real client."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from engine.model import EventSourceMapping, SourceKind
from engine.ports import ShardInfo, SourceNotFound, SourceThrottled, StartPosition, StreamRecord
from pollers.aws import AwsClients
from pollers.dynamodb import DynamoDbSourceFactory, DynamoDbStream
from pollers.kinesis import IteratorShardReader
from tests.contract.admin import DynamoAdmin, item_key
from tests.contract.admin import mapping_for as admin_mapping_for
from tests.integration.faults import FaultyClients

pytestmark = pytest.mark.service("moto")

REGION = "us-east-1"
ACCOUNT = "123456789012"


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


def mapping_for(arn: str) -> EventSourceMapping:
    return admin_mapping_for(
        SourceKind.DYNAMODB, arn, function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:table-fn"
    )


@pytest.fixture
def admin(moto_endpoint: str) -> Iterator[DynamoAdmin]:
    a = DynamoAdmin(moto_endpoint)
    yield a
    a.cleanup()


@pytest.fixture
def dynamodb(admin: DynamoAdmin) -> Any:
    return admin.client


@pytest.fixture
async def clients(moto_endpoint: str) -> AsyncIterator[AwsClients]:
    c = AwsClients("dynamodbstreams", moto_endpoint)
    yield c
    await c.aclose()


@pytest.fixture
def factory(clients: AwsClients) -> DynamoDbSourceFactory:
    return DynamoDbSourceFactory(clients)


@pytest.fixture
def make_table(admin: DynamoAdmin) -> Callable[..., tuple[str, str]]:
    """``make_table(view_type="NEW_AND_OLD_IMAGES", name=None) -> (table name, stream ARN)``"""
    return admin.create_table


key = item_key


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


async def test_keys_only_records_have_no_images(
    dynamodb: Any, factory: DynamoDbSourceFactory, make_table: Any
) -> None:
    """(Start positions, limits and AT_TIMESTAMP's refusal are the contract's: tests/contract/.)"""
    table, arn = make_table("KEYS_ONLY")
    for i in range(1, 3):
        dynamodb.put_item(TableName=table, Item={**key("a", i), "x": {"S": "y"}})
    stream = factory.open_stream(mapping_for(arn))
    reader = await stream.open_shard(await only_shard(stream), StartPosition("TRIM_HORIZON"))
    got = await read_all(reader, 2)
    assert [r.record["dynamodb"]["Keys"]["sk"]["N"] for r in got] == ["1", "2"]
    assert all("NewImage" not in r.record["dynamodb"] for r in got)  # KEYS_ONLY


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


async def test_a_deleted_tables_stream_is_not_found(
    dynamodb: Any, factory: DynamoDbSourceFactory, make_table: Any
) -> None:
    """(That a re-created table's stream has a new identity, and the old ARN's is gone, is the
    contract's: tests/contract/.)"""
    table, old_arn = make_table()
    await factory.describe(mapping_for(old_arn))
    dynamodb.delete_table(TableName=table)
    with pytest.raises(SourceNotFound):
        await factory.describe(mapping_for(old_arn))


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
