"""The Kinesis transport (pollers/kinesis.py) against kinesis-mock: shards, start positions, record
shape and order, resharding, identity, missing streams, iterator expiry and throttling.

kinesis-mock never expires an iterator within a test's lifetime (300 s) and never throttles: expiry is
produced by handing the reader a genuinely aged iterator (kinesis-mock's own format re-encrypted with an
issue time 301 s in the past, so the service itself answers ExpiredIteratorException), throttling by a
client proxy that injects the SDK error.
"""

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
from tests.integration.faults import FaultyClients
from tests.services import endpoint_for

pytestmark = pytest.mark.service("kinesis")

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/stream-fn-role"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:stream-fn"


# --- helpers ------------------------------------------------------------------------------------------


def mapping_for(arn: str, function_arn: str = FUNCTION_ARN) -> EventSourceMapping:
    return EventSourceMapping(
        uuid="00000000-0000-0000-0000-000000000001",
        kind=SourceKind.KINESIS,
        function_arn=function_arn,
        params={"EventSourceArn": arn, "StartingPosition": "TRIM_HORIZON", "BatchSize": 100},
        enabled=True,
        state=State.ENABLED,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )


def wait_active(kinesis: Any, name: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        summary: dict[str, Any] = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return summary
        assert time.monotonic() < deadline, f"stream {name} not ACTIVE within {timeout}s"
        time.sleep(0.05)


def wait_deleted(kinesis: Any, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            kinesis.describe_stream_summary(StreamName=name)
        except kinesis.exceptions.ResourceNotFoundException:
            return
        assert time.monotonic() < deadline, f"stream {name} not deleted within {timeout}s"
        time.sleep(0.05)


def put_spaced(kinesis: Any, name: str, count: int, gap_s: float = 0.03) -> None:
    """``count`` records with distinct arrival milliseconds."""
    for i in range(count):
        put(kinesis, name, f"r{i}".encode(), "k")
        time.sleep(gap_s)


def put(kinesis: Any, name: str, data: bytes, key: str) -> tuple[str, str]:
    """-> (shard id, sequence number)"""
    resp = kinesis.put_record(StreamName=name, Data=data, PartitionKey=key)
    return str(resp["ShardId"]), str(resp["SequenceNumber"])


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
def kinesis(kinesis_endpoint: str) -> Any:
    return boto3.client("kinesis", endpoint_url=kinesis_endpoint, region_name=REGION)


@pytest.fixture
async def clients(kinesis_endpoint: str) -> AsyncIterator[AwsClients]:
    c = AwsClients("kinesis", kinesis_endpoint)
    yield c
    await c.aclose()


@pytest.fixture
def factory(clients: AwsClients) -> KinesisSourceFactory:
    return KinesisSourceFactory(clients)


@pytest.fixture
def make_stream(kinesis: Any, unique_name: Callable[..., str]) -> Iterator[Callable[..., tuple[str, str]]]:
    """``make_stream(shards=1) -> (name, arn)``; deleted after the test."""
    names: list[str] = []

    def make(shards: int = 1) -> tuple[str, str]:
        name = unique_name("esm-kin")
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        names.append(name)
        return name, str(wait_active(kinesis, name)["StreamARN"])

    yield make
    for name in names:
        with contextlib.suppress(ClientError):
            kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


def open_stream(factory: KinesisSourceFactory, arn: str) -> KinesisStream:
    return factory.open_stream(mapping_for(arn), invoke_identity_arn=ROLE)


# --- tests --------------------------------------------------------------------------------------------


async def test_records_of_a_multi_shard_stream_in_order_with_their_shards_sequence_numbers(
    kinesis: Any, factory: KinesisSourceFactory, make_stream: Any
) -> None:
    name, arn = make_stream(shards=3)
    put_log: dict[str, list[tuple[str, bytes, str]]] = {}
    before = time.time()
    for i in range(12):
        data = f"record {i}".encode() + b"\x00\xff"
        shard, seq = put(kinesis, name, data, key=f"key-{i}")
        put_log.setdefault(shard, []).append((seq, data, f"key-{i}"))
    assert len(put_log) >= 2, "the keys should spread over several shards"

    stream = open_stream(factory, arn)
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


async def test_latest_reads_only_what_was_put_after_the_shard_was_opened(
    kinesis: Any, factory: KinesisSourceFactory, make_stream: Any
) -> None:
    name, arn = make_stream()
    put(kinesis, name, b"before", "k")
    reader = await open_stream(factory, arn).open_shard("shardId-000000000000", StartPosition("LATEST"))
    _, seq = put(kinesis, name, b"after", "k")
    got = await read_all(reader, 1)
    assert [(r.sequence_number, r.record["kinesis"]["data"]) for r in got] == [
        (seq, base64.b64encode(b"after").decode())
    ]


async def test_at_timestamp_starts_at_the_first_record_that_arrived_then(
    kinesis: Any, factory: KinesisSourceFactory, make_stream: Any
) -> None:
    name, arn = make_stream()
    put_spaced(kinesis, name, 4)
    stream = open_stream(factory, arn)
    everything = await read_all(
        await stream.open_shard("shardId-000000000000", StartPosition("TRIM_HORIZON")), 4
    )
    assert len(everything) == 4
    pivot = everything[2]
    reader = await stream.open_shard(
        "shardId-000000000000", StartPosition("AT_TIMESTAMP", timestamp=pivot.arrival_s)
    )
    got = await read_all(reader, 2)
    assert [r.sequence_number for r in got] == [r.sequence_number for r in everything[2:]]
    # a (past) timestamp after every record: nothing yet, then what comes next (Kinesis refuses a
    # timestamp in the future)
    await anyio.sleep(0.3)
    late = await stream.open_shard(
        "shardId-000000000000", StartPosition("AT_TIMESTAMP", timestamp=everything[-1].arrival_s + 0.1)
    )
    assert (await late.read(100)).records == []
    _, seq = put(kinesis, name, b"late", "k")
    assert [r.sequence_number for r in await read_all(late, 1)] == [seq]


async def test_after_sequence_number_resumes_after_a_checkpoint(
    kinesis: Any, factory: KinesisSourceFactory, make_stream: Any
) -> None:
    name, arn = make_stream()
    seqs = [put(kinesis, name, f"r{i}".encode(), "k")[1] for i in range(5)]
    reader = await open_stream(factory, arn).open_shard(
        "shardId-000000000000", StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=seqs[1])
    )
    got = await read_all(reader, 3)
    assert [r.sequence_number for r in got] == seqs[2:]
    assert reader.last_sequence_number == seqs[-1]


async def test_split_closes_the_parent_and_names_it_in_the_children_merge_names_both(
    kinesis: Any, factory: KinesisSourceFactory, make_stream: Any
) -> None:
    name, arn = make_stream()
    parent = "shardId-000000000000"
    seqs = [put(kinesis, name, f"r{i}".encode(), f"k{i}")[1] for i in range(3)]
    kinesis.split_shard(StreamName=name, ShardToSplit=parent, NewStartingHashKey=str(2**127))
    wait_active(kinesis, name)

    stream = open_stream(factory, arn)
    shards = {s.shard_id: s for s in await stream.list_shards()}
    assert shards[parent] == ShardInfo(parent, parent_ids=(), closed=True)
    children = sorted(s for s in shards if s != parent)
    assert len(children) == 2
    for child in children:
        assert shards[child] == ShardInfo(child, parent_ids=(parent,), closed=False)

    # the drained parent reports its end (in the read that returns its last records, or the next one)
    reader = await stream.open_shard(parent, StartPosition("TRIM_HORIZON"))
    got = await read_all(reader, 3)
    assert [r.sequence_number for r in got] == seqs
    end = await reader.read(100)
    assert end.records == [] and end.end_of_shard
    again = await reader.read(100)  # stays ended, no further calls needed
    assert again.records == [] and again.end_of_shard

    # a parent opened after its last record also ends at once
    after_last = await stream.open_shard(
        parent, StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=seqs[-1])
    )
    ended = await read_all(after_last, 1)
    assert ended == []

    kinesis.merge_shards(StreamName=name, ShardToMerge=children[0], AdjacentShardToMerge=children[1])
    wait_active(kinesis, name)
    shards = {s.shard_id: s for s in await stream.list_shards()}
    merged = [s for s in shards.values() if len(s.parent_ids) == 2]
    assert len(merged) == 1
    assert merged[0].parent_ids == (children[0], children[1]) and not merged[0].closed
    assert shards[children[0]].closed and shards[children[1]].closed


async def test_update_shard_count_reports_parents_and_children(
    kinesis: Any, factory: KinesisSourceFactory, make_stream: Any
) -> None:
    name, arn = make_stream()
    kinesis.update_shard_count(StreamName=name, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    wait_active(kinesis, name)
    shards = await open_stream(factory, arn).list_shards()
    closed = [s for s in shards if s.closed]
    open_ = [s for s in shards if not s.closed]
    assert [s.shard_id for s in closed] == ["shardId-000000000000"]
    assert len(open_) == 2
    assert all("shardId-000000000000" in s.parent_ids for s in open_)


async def test_identity_changes_when_the_stream_is_deleted_and_recreated(
    kinesis: Any, factory: KinesisSourceFactory, make_stream: Any
) -> None:
    name, arn = make_stream()
    stream = open_stream(factory, arn)
    first = await stream.identity()
    assert first == await stream.identity()
    assert float(first) > 0
    kinesis.delete_stream(StreamName=name)
    wait_deleted(kinesis, name)
    with pytest.raises(SourceNotFound, match=f"^{re.escape(f'Stream not found: {arn}')}$"):
        await stream.identity()
    await anyio.sleep(0.01)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    wait_active(kinesis, name)
    second = await stream.identity()
    assert second != first


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
    factory: KinesisSourceFactory, make_stream: Any
) -> None:
    _, arn = make_stream()
    await factory.describe(mapping_for(arn))
    with pytest.raises(SourceNotFound, match=re.escape("Stream not found: arn:aws:kinesis:us-east-1:1:nope")):
        await factory.describe(mapping_for("arn:aws:kinesis:us-east-1:1:nope"))


async def test_a_shard_that_does_not_exist_in_an_existing_stream_is_ended(
    factory: KinesisSourceFactory, make_stream: Any
) -> None:
    """Resharding leaves a shard past the retention period listed nowhere: treated as finished."""
    _, arn = make_stream()
    reader = await open_stream(factory, arn).open_shard("shardId-000000000042", StartPosition("TRIM_HORIZON"))
    read = await reader.read(10)
    assert read.records == [] and read.end_of_shard


async def test_an_expired_iterator_is_renewed_after_the_last_record_returned(
    kinesis: Any, factory: KinesisSourceFactory, make_stream: Any
) -> None:
    name, arn = make_stream()
    seqs = [put(kinesis, name, f"r{i}".encode(), "k")[1] for i in range(5)]
    reader = await open_stream(factory, arn).open_shard("shardId-000000000000", StartPosition("TRIM_HORIZON"))
    first = await reader.read(2)
    assert [r.sequence_number for r in first.records] == seqs[:2]

    assert reader._iterator is not None
    expired = aged_iterator(reader._iterator)
    with pytest.raises(ClientError, match="ExpiredIteratorException"):  # the service itself refuses it
        kinesis.get_records(ShardIterator=expired)
    reader._iterator = expired

    rest = await read_all(reader, 3)
    assert [r.sequence_number for r in rest] == seqs[2:]  # no gap, no duplicate
    assert reader._iterator != expired


async def test_an_iterator_expired_before_any_record_is_renewed_at_the_start_position(
    kinesis: Any, factory: KinesisSourceFactory, make_stream: Any
) -> None:
    name, arn = make_stream()
    seqs = [put(kinesis, name, f"r{i}".encode(), "k")[1] for i in range(3)]
    stream = open_stream(factory, arn)
    reader = await stream.open_shard(
        "shardId-000000000000", StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=seqs[0])
    )
    assert reader._iterator is not None
    reader._iterator = aged_iterator(reader._iterator)
    got = await read_all(reader, 2)
    assert [r.sequence_number for r in got] == seqs[1:]


async def test_throttling_raises_source_throttled_and_the_next_read_loses_nothing(
    kinesis: Any, kinesis_endpoint: str, make_stream: Any
) -> None:
    name, arn = make_stream()
    seqs = [put(kinesis, name, f"r{i}".encode(), "k")[1] for i in range(4)]
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


async def test_other_sdk_errors_are_source_errors(make_stream: Any, kinesis_endpoint: str) -> None:
    _, arn = make_stream()
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


async def test_limit_is_capped_at_the_api_maximum(
    kinesis: Any, factory: KinesisSourceFactory, make_stream: Any
) -> None:
    # consumer ARNs (enhanced fan-out) are read by SubscribeToShard: tests/integration/test_kinesis_efo.py
    name, arn = make_stream()
    _, seq = put(kinesis, name, b"x", "k")
    stream = factory.open_stream(mapping_for(arn))
    reader = await stream.open_shard("shardId-000000000000", StartPosition("TRIM_HORIZON"))
    got = await reader.read(50_000)  # GetRecords refuses Limit > 10000
    assert [r.sequence_number for r in got.records] == [seq]
    record = got.records[0].record
    assert record["eventSourceARN"] == arn
    assert record["invokeIdentityArn"] == "arn:aws:iam::123456789012:role/esm-local"  # no role given


async def test_start_positions_the_stream_cannot_take_are_programming_errors(
    factory: KinesisSourceFactory, make_stream: Any
) -> None:
    _, arn = make_stream()
    stream = open_stream(factory, arn)
    for bad in (
        StartPosition("AT_SEQUENCE_NUMBER", sequence_number="1"),
        StartPosition("AFTER_SEQUENCE_NUMBER"),
        StartPosition("AT_TIMESTAMP"),
    ):
        with pytest.raises(ValueError):
            await stream.open_shard("shardId-000000000000", bad)
