"""The StreamSource contract (engine/ports.py), passed by every stream transport against its real service:
Kinesis (kinesis-mock), Kinesis enhanced fan-out (LocalStack), DynamoDB Streams (moto), Kafka, and the
in-memory stream the unit tests use.

Each case opens shard readers with ``async with``, as the stream runner does, and puts records through the
service's own client (tests/contract/harness.py)."""

from __future__ import annotations

import re
import time

import anyio
import pytest

from engine.ports import (
    ShardInfo,
    ShardReader,
    SourceNotFound,
    SourceThrottled,
    StartPosition,
    StreamRecord,
    StreamSource,
)
from pollers.kinesis import IteratorShardReader
from tests.contract.harness import StreamHarness, StreamRef

TRIM = StartPosition("TRIM_HORIZON")
START_KINDS = ["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "AFTER_SEQUENCE_NUMBER"]


async def open_reader(stream: StreamSource, shard_id: str, start: StartPosition = TRIM) -> ShardReader:
    """``open_shard``, backing off while the service throttles (a second enhanced fan-out subscription
    within a second), as the runner does."""
    for _ in range(5):
        try:
            return await stream.open_shard(shard_id, start)
        except SourceThrottled:
            await anyio.sleep(1.0)
    return await stream.open_shard(shard_id, start)


async def read_until(reader: ShardReader, expected: int, *, limit: int = 100) -> list[StreamRecord]:
    """Reads until ``expected`` records came or the shard ended; every read honours ``limit``."""
    out: list[StreamRecord] = []
    with anyio.fail_after(30):
        while len(out) < expected:
            read = await reader.read(limit)
            assert len(read.records) <= limit
            out += read.records
            if read.end_of_shard:
                break
    return out


async def first_shard(stream: StreamSource) -> str:
    shards = await stream.list_shards()
    return shards[0].shard_id


async def put_all(h: StreamHarness, ref: StreamRef, items: list[tuple[str, bytes]]) -> list[str]:
    """-> the lane key of each record put."""
    return [await h.put(ref, key, data) for key, data in items]


async def test_identity_is_stable(stream_transport: StreamHarness) -> None:
    h = stream_transport
    ref = await h.create()
    async with await h.open(ref) as stream:
        first = await stream.identity()
        assert first and first == await stream.identity()
    async with await h.open(ref) as again:
        assert await again.identity() == first


async def test_identity_changes_when_the_stream_is_recreated(stream_transport: StreamHarness) -> None:
    h = stream_transport
    if h.no_recreate:
        pytest.skip(h.no_recreate)
    ref = await h.create()
    async with await h.open(ref) as stream:
        first = await stream.identity()
    if not h.no_delete:
        await h.delete(ref)
        async with await h.open(ref) as gone:
            message = f"^{re.escape(f'Stream not found: {ref.stream_arn}')}$"
            with pytest.raises(SourceNotFound, match=message):
                await gone.identity()
    recreated = await h.create(name=ref.name)
    async with await h.open(recreated) as stream:
        assert await stream.identity() != first


async def test_list_shards(stream_transport: StreamHarness) -> None:
    h = stream_transport
    ref = await h.create(shards=h.max_shards)
    async with await h.open(ref) as stream:
        shards = await stream.list_shards()
    assert len(shards) == h.max_shards
    assert len({s.shard_id for s in shards}) == h.max_shards
    assert all(s == ShardInfo(s.shard_id) for s in shards)  # open, no parents


async def test_records_in_order_with_sequence_numbers_arrival_times_and_lane_keys(
    stream_transport: StreamHarness,
) -> None:
    h = stream_transport
    ref = await h.create()
    items = [(f"key-{i}", f"record {i}".encode() + b"\x00\xff") for i in range(5)]
    before = time.time()
    lanes = await put_all(h, ref, items)
    after = time.time()
    async with await h.open(ref) as stream, await open_reader(stream, await first_shard(stream)) as reader:
        got = await read_until(reader, 5)
        assert [h.data(r) for r in got] == [data for _, data in items]
        assert [r.lane_key for r in got] == lanes
        seqs = [int(r.sequence_number) for r in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        for r in got:
            assert before - 5 < r.arrival_s < after + 5
        tail = await reader.read(100)  # nothing more: an empty read of an open shard, not its end
        assert tail.records == [] and not tail.end_of_shard
        if isinstance(reader, IteratorShardReader):
            assert reader.last_sequence_number == got[-1].sequence_number


@pytest.mark.parametrize("kind", START_KINDS)
async def test_start_position(stream_transport: StreamHarness, kind: str) -> None:
    h = stream_transport
    if kind in h.service_ignores:
        pytest.skip(h.service_ignores[kind])
    ref = await h.create()
    old = [(f"k{i}", f"old-{i}".encode()) for i in range(3)]
    await put_all(h, ref, old)
    await anyio.sleep(0.1)
    pivot = time.time()
    await anyio.sleep(0.1)
    mid = [(f"k{i}", f"mid-{i}".encode()) for i in range(2)]
    await put_all(h, ref, mid)

    async with await h.open(ref) as everything:
        shard = await first_shard(everything)
        async with await open_reader(everything, shard) as reader:
            all_five = await read_until(reader, 5)
    assert [h.data(r) for r in all_five] == [data for _, data in old + mid]

    start = {
        "TRIM_HORIZON": TRIM,
        "LATEST": StartPosition("LATEST"),
        "AT_TIMESTAMP": StartPosition("AT_TIMESTAMP", timestamp=pivot),
        "AFTER_SEQUENCE_NUMBER": StartPosition(
            "AFTER_SEQUENCE_NUMBER", sequence_number=all_five[1].sequence_number
        ),
    }[kind]
    expected = {
        "TRIM_HORIZON": all_five,
        "LATEST": [],
        "AT_TIMESTAMP": all_five[3:],
        "AFTER_SEQUENCE_NUMBER": all_five[2:],
    }[kind]
    async with await h.open(ref, start) as stream:
        if kind not in h.start_kinds:  # a programming error: validation refuses it first
            with pytest.raises(ValueError):
                await stream.open_shard(shard, start)
            return
        async with await open_reader(stream, shard, start) as reader:
            got = await read_until(reader, len(expected)) if expected else (await reader.read(100)).records
            assert [r.sequence_number for r in got] == [r.sequence_number for r in expected]
            # then what comes next
            new = [(f"k{i}", f"new-{i}".encode()) for i in range(2)]
            await put_all(h, ref, new)
            assert [h.data(r) for r in await read_until(reader, 2)] == [data for _, data in new]

    if kind == "AT_TIMESTAMP":
        # a (past) timestamp after every record: nothing yet, then what comes next (Kinesis refuses a
        # timestamp in the future); arrival times are whole milliseconds, rounded
        await anyio.sleep(0.1)
        later = StartPosition("AT_TIMESTAMP", timestamp=time.time())
        await anyio.sleep(0.1)
        async with await h.open(ref, later) as stream, await open_reader(stream, shard, later) as late:
            assert (await late.read(100)).records == []
            await h.put(ref, "k", b"late")
            assert [h.data(r) for r in await read_until(late, 1)] == [b"late"]


async def test_read_honours_limit(stream_transport: StreamHarness) -> None:
    h = stream_transport
    ref = await h.create()
    items = [(f"k{i}", f"r{i}".encode()) for i in range(5)]
    await put_all(h, ref, items)
    async with await h.open(ref) as stream:
        shard = await first_shard(stream)
        async with await open_reader(stream, shard) as reader:
            got = await read_until(reader, 5, limit=2)  # at most 2 a read; the rest kept for the next
        assert [h.data(r) for r in got] == [data for _, data in items]
        async with await open_reader(stream, shard) as reader:
            # a limit above the service's maximum (Kinesis 10000, DynamoDB 1000) is capped, not refused
            assert [h.data(r) for r in await read_until(reader, 5, limit=50_000)] == [d for _, d in items]


async def test_end_of_shard_after_a_split(stream_transport: StreamHarness) -> None:
    h = stream_transport
    if h.no_split:
        pytest.skip(h.no_split)
    ref = await h.create()
    items = [(f"k{i}", f"r{i}".encode()) for i in range(3)]
    await put_all(h, ref, items)
    async with await h.open(ref) as stream:
        parent = await first_shard(stream)
        await h.split(ref, parent)
        shards = {s.shard_id: s for s in await stream.list_shards()}
        assert shards[parent] == ShardInfo(parent, parent_ids=(), closed=True)
        children = sorted(s for s in shards if s != parent)
        assert len(children) == 2
        for child in children:
            assert shards[child] == ShardInfo(child, parent_ids=(parent,), closed=False)

        # the drained parent reports its end (in the read that returns its last records, or the next one)
        async with await open_reader(stream, parent) as reader:
            got = await read_until(reader, 3)
            assert [h.data(r) for r in got] == [data for _, data in items]
            with anyio.fail_after(30):
                while not (end := await reader.read(100)).end_of_shard:
                    assert end.records == []
            assert end.records == []
            again = await reader.read(100)  # stays ended
            assert again.records == [] and again.end_of_shard

        # a parent opened after its last record also ends at once
        after_last = StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number=got[-1].sequence_number)
        async with await open_reader(stream, parent, after_last) as ended:
            assert await read_until(ended, 1) == []
