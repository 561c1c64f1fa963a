"""The Kafka transport (pollers/kafka.py) against a real broker (Apache Kafka KRaft from
scripts/services.sh), beyond the StreamSource contract it passes (tests/contract/: identity, starting
positions, order, limits): record shape and per-partition order, committed offsets shared by a consumer
group, partitions split between two members, SCRAM credentials right and wrong.

Each test uses its own topic and group names (created with the admin client).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from engine.events_kafka import parse_partition_key
from engine.ports import ShardReader, SourceAccessDenied, SourceError, StartPosition, StreamRecord
from pollers.kafka import KafkaSource, StartingPosition
from pollers.kafka_connection import KafkaSecurity
from tests.contract.admin import KafkaAdmin, kafka_bootstrap, new_group
from tests.services import KAFKA_SCRAM, KAFKA_SCRAM_PASSWORD, KAFKA_SCRAM_USER, setting

pytestmark = pytest.mark.service("kafka")

TRIM = StartPosition("TRIM_HORIZON")
LATEST = StartPosition("LATEST")


@pytest.fixture
async def kafka() -> AsyncIterator[KafkaAdmin]:
    async with KafkaAdmin() as admin:
        yield admin


@pytest.fixture
async def sources() -> AsyncIterator[list[KafkaSource]]:
    """Sources made through ``make_source`` are closed after the test."""
    made: list[KafkaSource] = []
    yield made
    for source in made:
        await source.aclose()


def make_source(
    made: list[KafkaSource],
    topic: str,
    group: str | None = None,
    *,
    starting_position: StartingPosition = "TRIM_HORIZON",
    **kwargs: Any,
) -> KafkaSource:
    kwargs.setdefault("bootstrap_servers", [kafka_bootstrap()])
    source = KafkaSource(
        topic=topic,
        group_id=group or new_group(),
        starting_position=starting_position,
        fetch_wait_s=0.2,
        **kwargs,
    )
    made.append(source)
    return source


async def open_all(source: KafkaSource, start: StartPosition = TRIM) -> dict[str, ShardReader]:
    shards = await source.list_shards()
    return {s.shard_id: await source.open_shard(s.shard_id, start) for s in shards}


async def read_until(
    readers: dict[str, ShardReader], count: int, *, timeout_s: float = 30, limit: int = 100
) -> dict[str, list[StreamRecord]]:
    """Reads every reader in turn until ``count`` records in all (or the deadline)."""
    got: dict[str, list[StreamRecord]] = {shard: [] for shard in readers}
    deadline = time.monotonic() + timeout_s
    while sum(map(len, got.values())) < count and time.monotonic() < deadline:
        for shard, reader in readers.items():
            got[shard] += (await reader.read(limit)).records
    return got


async def read_quiet(readers: dict[str, ShardReader], rounds: int = 3) -> list[StreamRecord]:
    """Whatever the readers return over a few empty-ish rounds (to show that nothing comes)."""
    out: list[StreamRecord] = []
    for _ in range(rounds):
        for reader in readers.values():
            out += (await reader.read(100)).records
    return out


def offsets(records: Sequence[StreamRecord]) -> list[int]:
    return [int(r.sequence_number) for r in records]


# --- tests --------------------------------------------------------------------------------------------


async def test_partitions_in_order_with_the_record_shape(
    kafka: KafkaAdmin, sources: list[KafkaSource]
) -> None:
    topic = await kafka.create_topic(partitions=4)
    keys = [f"key-{i}".encode() for i in range(20)]
    total = 1000
    futures = [
        await kafka.producer.send(topic, f"{i}".encode(), key=keys[i % 20], headers=[("h", "ë".encode())])
        for i in range(total)
    ]
    await asyncio.gather(*futures)
    source = make_source(sources, topic)
    readers = await open_all(source)
    assert sorted(readers) == [f"{topic}-{p}" for p in range(4)]
    got = await read_until(readers, total)
    assert sum(map(len, got.values())) == total
    per_key: dict[str, list[int]] = {}
    for shard, records in got.items():
        _, partition = parse_partition_key(shard)
        # every partition from offset 0, contiguous, in order, each record once
        assert offsets(records) == list(range(len(records)))
        for rec in records:
            r = rec.record
            assert r["topic"] == topic and r["partition"] == partition
            assert r["offset"] == int(rec.sequence_number)
            assert r["timestampType"] == "CREATE_TIME"
            assert r["headers"] == [{"h": [-61, -85]}]
            assert rec.lane_key == r["key"]
            assert abs(rec.arrival_s - r["timestamp"] / 1000) < 1e-6
            assert abs(rec.arrival_s - time.time()) < 120
            per_key.setdefault(r["key"], []).append(int(base64.b64decode(r["value"])))
    assert len(per_key) == 20
    for key, values in per_key.items():  # one key, one partition: produce order kept
        assert values == sorted(values), key
    assert sorted(v for vs in per_key.values() for v in vs) == list(range(total))
    assert await read_quiet(readers, rounds=1) == []


async def test_null_key_and_lane_key(kafka: KafkaAdmin, sources: list[KafkaSource]) -> None:
    topic = await kafka.create_topic()
    await kafka.produce(topic, [b"no key"])
    readers = await open_all(make_source(sources, topic))
    (records,) = (await read_until(readers, 1)).values()
    assert records[0].record["key"] is None
    assert records[0].record["headers"] == []
    assert records[0].lane_key == ""


async def test_commit_then_the_group_resumes_after_it(kafka: KafkaAdmin, sources: list[KafkaSource]) -> None:
    topic = await kafka.create_topic(partitions=2)
    group = new_group()
    await kafka.produce(topic, [b"a%d" % i for i in range(10)], partition=0)
    await kafka.produce(topic, [b"b%d" % i for i in range(10)], partition=1)
    first = make_source(sources, topic, group)
    readers = await open_all(first)
    got = await read_until(readers, 20)
    assert [len(rs) for rs in got.values()] == [10, 10]
    await first.commit(f"{topic}-0", "6")  # offsets 0..6 finished
    await first.commit(f"{topic}-1", "9")  # all finished
    await first.aclose()

    await kafka.produce(topic, [b"b10"], partition=1)
    # a LATEST start position is ignored: the group has committed offsets (spec 6.2)
    second = make_source(sources, topic, group, starting_position="LATEST")
    readers = await open_all(second, LATEST)
    got = await read_until(readers, 4)
    assert offsets(got[f"{topic}-0"]) == [7, 8, 9]
    assert offsets(got[f"{topic}-1"]) == [10]
    assert await read_quiet(readers, rounds=1) == []


async def test_after_sequence_number_overrides_the_committed_offset(
    kafka: KafkaAdmin, sources: list[KafkaSource]
) -> None:
    topic = await kafka.create_topic()
    await kafka.produce(topic, [b"%d" % i for i in range(8)])
    source = make_source(sources, topic)
    await source.list_shards()
    await source.commit(f"{topic}-0", "1")
    reader = await source.open_shard(
        f"{topic}-0", StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number="4")
    )
    got = await read_until({"p": reader}, 3)
    assert offsets(got["p"]) == [5, 6, 7]


async def test_two_members_split_the_partitions(kafka: KafkaAdmin, sources: list[KafkaSource]) -> None:
    topic = await kafka.create_topic(partitions=4)
    group = new_group()
    everything = {f"{topic}-{p}" for p in range(4)}
    a = make_source(sources, topic, group)
    a_readers = await open_all(a)
    assert set(a_readers) == everything
    await kafka.produce(topic, [b"before-%d" % i for i in range(40)])
    before = await read_until(a_readers, 40)
    assert sum(map(len, before.values())) == 40

    b = make_source(sources, topic, group)
    b_join = asyncio.ensure_future(b.list_shards())
    # the first member rejoins in the background while it keeps polling
    deadline = time.monotonic() + 60
    a_shards: set[str] = set()
    while time.monotonic() < deadline:
        for reader in a_readers.values():
            await reader.read(10)
        a_shards = {s.shard_id for s in await a.list_shards()}
        if b_join.done() and 0 < len(a_shards) < 4:
            break
    b_shards = {s.shard_id for s in await b_join}
    a_shards = {s.shard_id for s in await a.list_shards()}
    assert a_shards and b_shards
    assert a_shards.isdisjoint(b_shards)
    assert a_shards | b_shards == everything

    # a's readers of partitions it lost are at their end; those it kept continue without repeats
    for shard, reader in a_readers.items():
        read = await reader.read(10)
        if shard in b_shards:
            assert read.released and not read.records
        else:
            assert not read.released and not read.records
    await kafka.produce(topic, [b"after-%d" % i for i in range(40)])
    kept = {shard: r for shard, r in a_readers.items() if shard in a_shards}
    b_readers = await open_all(b)  # nothing committed: b starts its partitions from the beginning
    assert set(b_readers) == b_shards
    replayed = sum(len(before[shard]) for shard in b_shards)
    combined = {f"a:{s}": r for s, r in kept.items()} | {f"b:{s}": r for s, r in b_readers.items()}
    got = await read_until(combined, 40 + replayed)
    assert await read_quiet(combined, rounds=1) == []
    for name, records in got.items():
        member, shard = name.split(":", 1)
        if member == "a":  # continued exactly after what it had returned before
            first = len(before[shard])
            assert offsets(records) == list(range(first, first + len(records)))
            assert all(base64.b64decode(r.record["value"]).startswith(b"after") for r in records)
        else:  # nothing committed: from the beginning
            assert offsets(records) == list(range(len(records)))
    assert sum(map(len, got.values())) == 40 + replayed


@pytest.mark.parametrize("mechanism", ["SASL_SCRAM_512", "SASL_SCRAM_256"])
async def test_scram_credentials(mechanism: Any, kafka: KafkaAdmin, sources: list[KafkaSource]) -> None:
    topic = await kafka.create_topic()
    await kafka.produce(topic, [b"secret-%d" % i for i in range(3)])
    security = KafkaSecurity(
        sasl=mechanism, username=setting(KAFKA_SCRAM_USER), password=setting(KAFKA_SCRAM_PASSWORD)
    )
    source = make_source(sources, topic, bootstrap_servers=[setting(KAFKA_SCRAM)], security=security)
    assert await source.identity()
    readers = await open_all(source)
    got = await read_until(readers, 3)
    assert offsets(got[f"{topic}-0"]) == [0, 1, 2]


async def test_wrong_scram_password_is_access_denied(kafka: KafkaAdmin, sources: list[KafkaSource]) -> None:
    topic = await kafka.create_topic()
    security = KafkaSecurity(sasl="SASL_SCRAM_512", username=setting(KAFKA_SCRAM_USER), password="wrong")
    source = make_source(sources, topic, bootstrap_servers=[setting(KAFKA_SCRAM)], security=security)
    with pytest.raises(SourceAccessDenied, match="SASL authentication failed") as caught:
        await source.list_shards()
    assert caught.value.reason == "EVENT_SOURCE_AUTHN_ERROR"
    assert "wrong" not in str(caught.value)
    assert "SCRAM-SHA-512" in str(caught.value)


async def test_unreachable_broker_is_a_source_error(sources: list[KafkaSource]) -> None:
    source = make_source(
        sources,
        "nothing",
        bootstrap_servers=["127.0.0.1:1"],
        consumer_options={"request_timeout_ms": 2000, "retry_backoff_ms": 100},
    )
    with pytest.raises(SourceError, match="cannot connect"):
        await source.identity()


async def test_identity_is_the_cluster_id(kafka: KafkaAdmin, sources: list[KafkaSource]) -> None:
    topic = await kafka.create_topic()
    cluster = (await kafka.admin.describe_cluster())["cluster_id"]
    assert await make_source(sources, topic).identity() == cluster
