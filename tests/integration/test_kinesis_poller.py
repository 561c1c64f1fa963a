"""The Kinesis transport (pollers/kinesis.py) against kinesis-mock, beyond the StreamSource contract it
passes (tests/contract/: identity, start positions, order, limits, a split's end of shard): record shape,
merges, missing streams, iterator expiry and throttling.

kinesis-mock never expires an iterator within a test's lifetime (300 s) and never throttles: expiry is
produced by handing the reader a genuinely aged iterator (kinesis-mock's own format re-encrypted with an
issue time 301 s in the past, so the service itself answers ExpiredIteratorException), throttling by a
client proxy that injects the SDK error.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from engine.model import EventSourceMapping, SourceKind
from engine.ports import (
    ShardInfo,
    SourceError,
    SourceNotFound,
    SourceThrottled,
    StartPosition,
    StreamRecord,
)
from pollers.aws import AwsClients
from pollers.kinesis import IteratorShardReader, KinesisSourceFactory, KinesisStream
from tests.contract.admin import KinesisAdmin
from tests.contract.admin import mapping_for as admin_mapping_for
from tests.integration.faults import FaultyClients
from tests.services import endpoint_for

pytestmark = pytest.mark.service("kinesis")

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/stream-fn-role"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:stream-fn"


# --- helpers ------------------------------------------------------------------------------------------


async def read_all(reader: IteratorShardReader, expected: int, limit: int = 100) -> list[StreamRecord]:
    """Reads until ``expected`` records came (or the shard ended); a few empty reads are tolerated."""
    out: list[StreamRecord] = []
    for _ in range(50):
        batch = await reader.read(limit)
        assert len(batch.records) <= limit
        out += batch.records
        if len(out) >= expected or batch.end_of_shard:
            break
    return out


# kinesis-mock 0.6.2's shard iterator: base64(8-byte header + AES-256-CBC(
#   "<issue time ms, 14 digits>/<stream>/<shard>/<sequence number>/<37 zeros>")), key and IV fixed in its
# source (kinesis.mock.models.ShardIterator); GetRecords answers ExpiredIteratorException after 300 s.
_KM_KEY = bytes.fromhex("1133a5a833666b49abf28c8ba302930f0b2fb240dccd43cf4dfbc0ca91f17751")
_KM_IV = bytes.fromhex("7bf139dbabbea2d9995d6fcae1dff7da")


def aged_iterator(iterator: str, age_s: float = 301.0) -> str:
    """The same kinesis-mock iterator, issued ``age_s`` seconds ago."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    raw = base64.b64decode(iterator)
    header, body = raw[:8], raw[8:]
    decryptor = Cipher(algorithms.AES(_KM_KEY), modes.CBC(_KM_IV)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    plain = unpadder.update(decryptor.update(body) + decryptor.finalize()) + unpadder.finalize()
    fields = plain.decode().split("/")
    assert len(fields) == 5, "not a kinesis-mock 0.6 iterator"
    fields[0] = str(int((time.time() - age_s) * 1000)).zfill(14)
    padder = padding.PKCS7(128).padder()
    padded = padder.update("/".join(fields).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_KM_KEY), modes.CBC(_KM_IV)).encryptor()
    return base64.b64encode(header + encryptor.update(padded) + encryptor.finalize()).decode()


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def kinesis_endpoint() -> str:
    return endpoint_for("kinesis")


@pytest.fixture
def admin(kinesis_endpoint: str) -> Iterator[KinesisAdmin]:
    a = KinesisAdmin(kinesis_endpoint)
    yield a
    a.cleanup()


@pytest.fixture
async def clients(kinesis_endpoint: str) -> AsyncIterator[AwsClients]:
    c = AwsClients("kinesis", kinesis_endpoint)
    yield c
    await c.aclose()


@pytest.fixture
def factory(clients: AwsClients) -> KinesisSourceFactory:
    return KinesisSourceFactory(clients)


def mapping_for(arn: str) -> EventSourceMapping:
    return admin_mapping_for(SourceKind.KINESIS, arn, function_arn=FUNCTION_ARN)


def open_stream(factory: KinesisSourceFactory, arn: str) -> KinesisStream:
    return factory.open_stream(mapping_for(arn), invoke_identity_arn=ROLE)


# --- tests --------------------------------------------------------------------------------------------


async def test_records_of_a_multi_shard_stream_in_order_with_their_shards_sequence_numbers(
    admin: KinesisAdmin, factory: KinesisSourceFactory
) -> None:
    name, arn = admin.create(shards=3)
    put_log: dict[str, list[tuple[str, bytes, str]]] = {}
    before = time.time()
    for i in range(12):
        data = f"record {i}".encode() + b"\x00\xff"
        shard, seq = admin.put(name, data, key=f"key-{i}")
        put_log.setdefault(shard, []).append((seq, data, f"key-{i}"))
    assert len(put_log) >= 2, "the keys should spread over several shards"

    stream = open_stream(factory, arn)
    assert float(await stream.identity()) > 0  # StreamCreationTimestamp
    shards = await stream.list_shards()
    assert [s.shard_id for s in shards] == [f"shardId-00000000000{i}" for i in range(3)]
    assert all(s == ShardInfo(s.shard_id) for s in shards)  # open, no parents

    for shard_id, expected in put_log.items():
        reader = await stream.open_shard(shard_id, StartPosition("TRIM_HORIZON"))
        got: list[StreamRecord] = []
        for _ in range(20):
            batch = await reader.read(3)
            assert len(batch.records) <= 3
            assert not batch.end_of_shard
            assert isinstance(batch.millis_behind_latest, int)
            got += batch.records
            if len(got) >= len(expected):
                break
        assert [r.sequence_number for r in got] == [seq for seq, _, _ in expected]
        assert [int(r.sequence_number) for r in got] == sorted(int(r.sequence_number) for r in got)
        for rec, (seq, data, key) in zip(got, expected, strict=True):
            arrival = rec.record["kinesis"]["approximateArrivalTimestamp"]
            assert rec.record == {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key,
                    "sequenceNumber": seq,
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{seq}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": ROLE,
                "awsRegion": REGION,
                "eventSourceARN": arn,
            }
            assert rec.arrival_s == arrival
            assert before - 5 < arrival < time.time() + 5
            assert round(arrival, 3) == arrival
            assert rec.lane_key == key
        # nothing more: an empty read of an open shard, not its end
        tail = await reader.read(100)
        assert tail.records == [] and not tail.end_of_shard
        await reader.aclose()


async def test_a_merge_names_both_parents_and_closes_them(
    admin: KinesisAdmin, factory: KinesisSourceFactory
) -> None:
    """(A split and reading its closed parent to the end are the contract's: tests/contract/.)"""
    name, arn = admin.create()
    parent = "shardId-000000000000"
    admin.client.split_shard(StreamName=name, ShardToSplit=parent, NewStartingHashKey=str(2**127))
    admin.wait_active(name)
    stream = open_stream(factory, arn)
    children = sorted(s.shard_id for s in await stream.list_shards() if s.shard_id != parent)
    assert len(children) == 2

    admin.client.merge_shards(StreamName=name, ShardToMerge=children[0], AdjacentShardToMerge=children[1])
    admin.wait_active(name)
    shards = {s.shard_id: s for s in await stream.list_shards()}
    merged = [s for s in shards.values() if len(s.parent_ids) == 2]
    assert len(merged) == 1
    assert merged[0].parent_ids == (children[0], children[1]) and not merged[0].closed
    assert shards[children[0]].closed and shards[children[1]].closed


async def test_update_shard_count_reports_parents_and_children(
    admin: KinesisAdmin, factory: KinesisSourceFactory
) -> None:
    name, arn = admin.create()
    admin.client.update_shard_count(StreamName=name, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    admin.wait_active(name)
    shards = await open_stream(factory, arn).list_shards()
    closed = [s for s in shards if s.closed]
    open_ = [s for s in shards if not s.closed]
    assert [s.shard_id for s in closed] == ["shardId-000000000000"]
    assert len(open_) == 2
    assert all("shardId-000000000000" in s.parent_ids for s in open_)


async def test_a_missing_stream_is_source_not_found(factory: KinesisSourceFactory, unique_name: Any) -> None:
    arn = f"arn:aws:kinesis:{REGION}:000000000000:stream/{unique_name('missing')}"
    mapping = mapping_for(arn)
    with pytest.raises(SourceNotFound) as e:
        await factory.describe(mapping)
    assert str(e.value) == f"Stream not found: {arn}"
    stream = factory.open_stream(mapping)
    with pytest.raises(SourceNotFound, match=r"^Stream not found: "):
        await stream.list_shards()
    with pytest.raises(SourceNotFound, match=r"^Stream not found: "):
        await stream.identity()
    with pytest.raises(SourceNotFound, match=r"^Stream not found: "):
        await stream.open_shard("shardId-000000000000", StartPosition("TRIM_HORIZON"))


async def test_describe_an_existing_stream_and_a_malformed_arn(
    factory: KinesisSourceFactory, admin: KinesisAdmin
) -> None:
    _, arn = admin.create()
    await factory.describe(mapping_for(arn))
    with pytest.raises(SourceNotFound, match=re.escape("Stream not found: arn:aws:kinesis:us-east-1:1:nope")):
        await factory.describe(mapping_for("arn:aws:kinesis:us-east-1:1:nope"))


async def test_a_shard_that_does_not_exist_in_an_existing_stream_is_ended(
    factory: KinesisSourceFactory, admin: KinesisAdmin
) -> None:
    """Resharding leaves a shard past the retention period listed nowhere: treated as finished."""
    _, arn = admin.create()
    reader = await open_stream(factory, arn).open_shard("shardId-000000000042", StartPosition("TRIM_HORIZON"))
    read = await reader.read(10)
    assert read.records == [] and read.end_of_shard


async def test_an_expired_iterator_is_renewed_after_the_last_record_returned(
    admin: KinesisAdmin, factory: KinesisSourceFactory
) -> None:
    name, arn = admin.create()
    seqs = [admin.put(name, f"r{i}".encode(), "k")[1] for i in range(5)]
    reader = await open_stream(factory, arn).open_shard("shardId-000000000000", StartPosition("TRIM_HORIZON"))
    first = await reader.read(2)
    assert [r.sequence_number for r in first.records] == seqs[:2]

    assert reader._iterator is not None
    expired = aged_iterator(reader._iterator)
    with pytest.raises(ClientError, match="ExpiredIteratorException"):  # the service itself refuses it
        admin.client.get_records(ShardIterator=expired)
    reader._iterator = expired

    rest = await read_all(reader, 3)
    assert [r.sequence_number for r in rest] == seqs[2:]  # no gap, no duplicate
    assert reader._iterator != expired


async def test_an_iterator_expired_before_any_record_is_renewed_at_the_start_position(
    admin: KinesisAdmin, factory: KinesisSourceFactory
) -> None:
    name, arn = admin.create()
    seqs = [admin.put(name, f"r{i}".encode(), "k")[1] for i in range(3)]
    stream = open_stream(factory, arn)
    reader = await stream.open_shard(
        "shardId-000000000000", StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=seqs[0])
    )
    assert reader._iterator is not None
    reader._iterator = aged_iterator(reader._iterator)
    got = await read_all(reader, 2)
    assert [r.sequence_number for r in got] == seqs[1:]


async def test_throttling_raises_source_throttled_and_the_next_read_loses_nothing(
    admin: KinesisAdmin, kinesis_endpoint: str
) -> None:
    name, arn = admin.create()
    seqs = [admin.put(name, f"r{i}".encode(), "k")[1] for i in range(4)]
    faults: dict[str, list[str]] = {}
    clients = FaultyClients("kinesis", kinesis_endpoint, faults)
    try:
        stream = KinesisSourceFactory(clients).open_stream(mapping_for(arn), invoke_identity_arn=ROLE)
        reader = await stream.open_shard("shardId-000000000000", StartPosition("TRIM_HORIZON"))
        first = await reader.read(2)
        assert [r.sequence_number for r in first.records] == seqs[:2]
        faults["get_records"] = ["ProvisionedThroughputExceededException", "LimitExceededException"]
        for _ in range(2):
            with pytest.raises(SourceThrottled):
                await reader.read(2)
        assert isinstance(SourceThrottled("x"), SourceError)
        rest = await read_all(reader, 2)
        assert [r.sequence_number for r in rest] == seqs[2:]

        faults["list_shards"] = ["LimitExceededException"]
        with pytest.raises(SourceThrottled):
            await stream.list_shards()
        assert len(await stream.list_shards()) == 1
    finally:
        await clients.aclose()


async def test_other_sdk_errors_are_source_errors(admin: KinesisAdmin, kinesis_endpoint: str) -> None:
    _, arn = admin.create()
    no_retries = AwsClients("kinesis", kinesis_endpoint, max_attempts=0)
    try:
        stream = KinesisSourceFactory(no_retries).open_stream(mapping_for(arn))
        reader = await stream.open_shard("shardId-000000000000", StartPosition("TRIM_HORIZON"))
        reader._iterator = "bm90IGFuIGl0ZXJhdG9y"  # kinesis-mock answers 500 to an iterator it cannot decrypt
        with pytest.raises(SourceError) as e:
            await reader.read(10)
        assert not isinstance(e.value, SourceThrottled)
        assert reader._iterator == "bm90IGFuIGl0ZXJhdG9y"  # kept: the next read tries the same place
    finally:
        await no_retries.aclose()

    unreachable = AwsClients("kinesis", "http://127.0.0.1:9", max_attempts=0)
    try:
        stream = KinesisSourceFactory(unreachable).open_stream(mapping_for(arn))
        with pytest.raises(SourceError):
            await stream.list_shards()
    finally:
        await unreachable.aclose()


async def test_limit_is_capped_at_the_api_maximum(admin: KinesisAdmin, factory: KinesisSourceFactory) -> None:
    # consumer ARNs (enhanced fan-out) are read by SubscribeToShard: tests/integration/test_kinesis_efo.py
    name, arn = admin.create()
    _, seq = admin.put(name, b"x", "k")
    stream = factory.open_stream(mapping_for(arn))
    reader = await stream.open_shard("shardId-000000000000", StartPosition("TRIM_HORIZON"))
    got = await reader.read(50_000)  # GetRecords refuses Limit > 10000
    assert [r.sequence_number for r in got.records] == [seq]
    record = got.records[0].record
    assert record["eventSourceARN"] == arn
    assert record["invokeIdentityArn"] == "arn:aws:iam::123456789012:role/esm-local"  # no role given


async def test_start_positions_the_stream_cannot_take_are_programming_errors(
    factory: KinesisSourceFactory, admin: KinesisAdmin
) -> None:
    _, arn = admin.create()
    stream = open_stream(factory, arn)
    for bad in (
        StartPosition("AT_SEQUENCE_NUMBER", sequence_number="1"),
        StartPosition("AFTER_SEQUENCE_NUMBER"),
        StartPosition("AT_TIMESTAMP"),
    ):
        with pytest.raises(ValueError):
            await stream.open_shard("shardId-000000000000", bad)
