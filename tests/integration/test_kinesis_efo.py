"""Kinesis enhanced fan-out (pollers/kinesis_efo.py) against LocalStack on the host: a mapping whose
EventSourceArn is a stream consumer ARN reads its shards through SubscribeToShard (records pushed over
an aiobotocore event stream), in order, with the stream ARN as eventSourceARN, and resumes
AFTER_SEQUENCE_NUMBER when the reader is reopened or the subscription ends.

LocalStack is the only endpoint here with SubscribeToShard: ``scripts/services.sh start localstack``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

from engine.model import EventSourceMapping, SourceKind
from engine.ports import ShardRead, SourceError, SourceThrottled, StartPosition, StreamRecord
from pollers.aws import AwsClients
from pollers.kinesis import KinesisSourceFactory, KinesisStream
from pollers.kinesis_efo import SubscribeShardReader
from tests.contract.admin import KinesisAdmin
from tests.contract.admin import mapping_for as admin_mapping_for
from tests.services import require_service

pytestmark = [pytest.mark.service("localstack"), pytest.mark.timeout(120)]

REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/efo-fn-role"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:efo-fn"
SHARD = "shardId-000000000000"


def mapping_for(arn: str, start: str = "TRIM_HORIZON") -> EventSourceMapping:
    return admin_mapping_for(SourceKind.KINESIS, arn, function_arn=FUNCTION_ARN, StartingPosition=start)


def put(kinesis: Any, name: str, datas: list[bytes], key: str = "pk") -> list[str]:
    return [
        str(kinesis.put_record(StreamName=name, Data=data, PartitionKey=key)["SequenceNumber"])
        for data in datas
    ]


async def read_until(reader: SubscribeShardReader, expected: int, limit: int = 100) -> list[StreamRecord]:
    got: list[StreamRecord] = []
    deadline = time.monotonic() + 20.0
    while len(got) < expected:
        assert time.monotonic() < deadline, f"only {len(got)} of {expected} records pushed"
        read = await reader.read(limit)
        assert len(read.records) <= limit
        got += read.records
    return got


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def endpoint() -> str:
    return require_service("localstack")


@pytest.fixture
def admin(endpoint: str) -> Iterator[KinesisAdmin]:
    a = KinesisAdmin(endpoint)
    yield a
    a.cleanup()


@pytest.fixture
def kinesis(admin: KinesisAdmin) -> Any:
    return admin.client


@pytest.fixture
async def factory(endpoint: str) -> AsyncIterator[KinesisSourceFactory]:
    clients = AwsClients("kinesis", endpoint)
    yield KinesisSourceFactory(clients)
    await clients.aclose()


@pytest.fixture
def consumer(admin: KinesisAdmin, unique_name: Callable[..., str]) -> tuple[str, str, str]:
    """(stream name, stream ARN, ACTIVE consumer ARN) of a fresh one-shard stream; deleted after."""
    name, stream_arn = admin.create(1, unique_name("esm-efo"))
    return name, stream_arn, admin.register_consumer(stream_arn)


def open_stream(factory: KinesisSourceFactory, arn: str) -> KinesisStream:
    return factory.open_stream(mapping_for(arn), invoke_identity_arn=ROLE)


# --- tests --------------------------------------------------------------------------------------------


async def test_a_consumer_arn_reads_pushed_records_in_order_and_resumes_after_a_reopen(
    kinesis: Any, factory: KinesisSourceFactory, consumer: tuple[str, str, str]
) -> None:
    name, stream_arn, consumer_arn = consumer
    datas = [f"r{i}".encode() for i in range(10)]
    seqs = put(kinesis, name, datas)

    stream = open_stream(factory, consumer_arn)
    assert [s.shard_id for s in await stream.list_shards()] == [SHARD]
    reader = await stream.open_shard(SHARD, StartPosition("TRIM_HORIZON"))
    assert isinstance(reader, SubscribeShardReader)
    async with reader:
        # limit 3: the rest of a pushed event is kept for the next reads, nothing lost or repeated
        got = await read_until(reader, 10, limit=3)
    assert [r.sequence_number for r in got] == seqs
    assert [base64.b64decode(r.record["kinesis"]["data"]) for r in got] == datas
    first = got[0].record
    assert first["eventSourceARN"] == stream_arn  # the stream, not the consumer (spec 1.1)
    assert first["eventSource"] == "aws:kinesis"
    assert first["eventID"] == f"{SHARD}:{seqs[0]}"
    assert first["invokeIdentityArn"] == ROLE
    assert reader.last_sequence_number == seqs[-1]
    assert reader.subscriptions == 1

    # reopened after the checkpoint: a new subscription AFTER_SEQUENCE_NUMBER returns only what followed
    more = put(kinesis, name, [b"m0", b"m1", b"m2"])
    reopened = await stream.open_shard(
        SHARD, StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=seqs[-1])
    )
    assert isinstance(reopened, SubscribeShardReader)
    async with reopened:
        again = await read_until(reopened, 3)
        assert [r.sequence_number for r in again] == more
        empty = await reopened.read(100)  # nothing more: waits briefly for an event, returns none
        assert empty.records == [] and not empty.end_of_shard


async def test_latest_then_a_lost_subscription_resubscribes_after_the_last_record(
    kinesis: Any, factory: KinesisSourceFactory, consumer: tuple[str, str, str]
) -> None:
    name, _, consumer_arn = consumer
    put(kinesis, name, [b"before"])
    reader = await open_stream(factory, consumer_arn).open_shard(SHARD, StartPosition("LATEST"))
    assert isinstance(reader, SubscribeShardReader)
    async with reader:
        first = put(kinesis, name, [b"a0", b"a1"])
        assert [r.sequence_number for r in await read_until(reader, 2)] == first
        # the subscription ends (as it does after 5 minutes): the next read subscribes again after "a1"
        await reader._drop_subscription()
        second = put(kinesis, name, [b"b0", b"b1", b"b2"])
        await anyio.sleep(1.0)  # SubscribeToShard: at most one call per second per consumer and shard
        assert [r.sequence_number for r in await read_until(reader, 3)] == second
        assert reader.subscriptions == 2


async def test_reads_block_nothing_and_aclose_cancels_a_live_subscription(
    factory: KinesisSourceFactory, consumer: tuple[str, str, str]
) -> None:
    _, _, consumer_arn = consumer
    reader = await open_stream(factory, consumer_arn).open_shard(SHARD, StartPosition("TRIM_HORIZON"))
    assert isinstance(reader, SubscribeShardReader)
    async with reader:
        started = time.monotonic()
        read: ShardRead = await reader.read(10)
        assert read.records == [] and not read.end_of_shard
        assert time.monotonic() - started < reader.first_event_wait_s + 1.0
        assert pump_tasks() == [f"kinesis-efo-{SHARD}"]  # owned by the reader, named after its shard
        started = time.monotonic()
        await reader.aclose()
        assert time.monotonic() - started < reader.close_timeout_s
        assert reader._pump is None
    assert pump_tasks() == []
    with pytest.raises(SourceError, match="closed"):
        await reader.read(10)


def pump_tasks() -> list[str]:
    return [t.name for t in anyio.get_running_tasks() if t.name.startswith("kinesis-efo-")]


async def test_a_reader_pumps_only_once_entered(
    factory: KinesisSourceFactory, consumer: tuple[str, str, str]
) -> None:
    _, _, consumer_arn = consumer
    reader = await open_stream(factory, consumer_arn).open_shard(SHARD, StartPosition("TRIM_HORIZON"))
    assert reader.subscriptions == 1 and pump_tasks() == []  # subscribed by open_shard, nothing started
    with pytest.raises(RuntimeError, match="entered"):
        await reader.read(10)
    async with reader:
        assert pump_tasks() == [f"kinesis-efo-{SHARD}"]
    assert pump_tasks() == []


async def test_a_consumer_the_service_does_not_know_is_a_source_error(
    factory: KinesisSourceFactory, consumer: tuple[str, str, str]
) -> None:
    _, _, consumer_arn = consumer
    missing = consumer_arn.replace("/consumer/efo:", "/consumer/nobody:")
    # LocalStack answers InternalError (AWS: ResourceNotFoundException): the runner restarts with back-off
    with pytest.raises(SourceError, match="SubscribeToShard") as info:
        await open_stream(factory, missing).open_shard(SHARD, StartPosition("TRIM_HORIZON"))
    assert not isinstance(info.value, SourceThrottled)
