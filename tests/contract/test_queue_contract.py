"""The QueueSource contract (engine/ports.py), passed by every queue transport against its real service:
SQS (ElasticMQ, moto), RabbitMQ, ActiveMQ, and the in-memory queue the unit tests use.

Each case opens the transport with ``async with``, as its runner does, and checks the service side through
the service's own client (tests/contract/harness.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import pytest

from engine.ports import QueueMessage, QueueSource
from tests.contract.harness import REJECT_REASON, QueueHarness


async def collect(
    q: QueueSource, n: int, *, within_s: float = 15.0, max_messages: int = 10
) -> list[QueueMessage]:
    """Receives until ``n`` messages came (each receive honouring ``max_messages``)."""
    got: list[QueueMessage] = []
    with anyio.fail_after(within_s):
        while len(got) < n:
            batch = await q.receive(min(max_messages, n - len(got)), 1.0)
            assert len(batch) <= min(max_messages, n - len(got))
            got += batch
    return got


async def assert_nothing_more(q: QueueSource, wait_s: float = 0.5) -> None:
    assert await q.receive(10, wait_s) == []


def bodies(h: QueueHarness, messages: Sequence[QueueMessage]) -> list[bytes]:
    got = [h.body(m) for m in messages]
    return got if h.ordered else sorted(got)


async def test_a_sent_message_is_received_with_its_record_and_item_id(queue_transport: QueueHarness) -> None:
    h = queue_transport
    queue = await h.create()
    sent = [b"one", b"two", b"three"]
    ids = await h.send(queue, sent)
    async with await h.open(queue) as q:
        got = await collect(q, 3)
        assert bodies(h, got) == (sent if h.ordered else sorted(sent))
        assert len({m.item_id for m in got}) == 3 and all(m.item_id for m in got)
        known = {h.body(m): m.item_id for m in got}
        for body, item_id in zip(sent, ids, strict=True):
            if item_id is not None:  # the sender learned it: the record carries the same
                assert known[body] == item_id
        assert [m.extra["attempt"] for m in got] == [1, 1, 1]
        assert not any(h.redelivered(m) for m in got)
        assert all(m.group is None for m in got)  # no group unless the queue has them
        await q.ack(got)


async def test_ack_removes_messages_for_good(queue_transport: QueueHarness) -> None:
    h = queue_transport
    queue = await h.create()
    await h.send(queue, [b"a", b"b", b"c"])
    async with await h.open(queue) as q:
        got = await collect(q, 3)
        await q.ack(got)
        await assert_nothing_more(q, 0.5 + h.redelivery_s)
    # nothing comes back once the consumer is gone either
    async with await h.open(queue) as fresh:
        await assert_nothing_more(fresh, 1.5 + h.redelivery_s)


async def test_release_makes_messages_come_back(queue_transport: QueueHarness) -> None:
    h = queue_transport
    queue = await h.create()
    await h.send(queue, [b"a", b"b"])
    async with await h.open(queue) as q:
        got = await collect(q, 2)
        assert not any(h.redelivered(m) for m in got)
        await q.release(got)  # back for redelivery, never dead-lettered by the transport
        again = await collect(q, 2)
        assert bodies(h, again) == bodies(h, got)  # queues that keep order requeue in place
        assert all(h.redelivered(m) for m in again)
        assert [m.extra["attempt"] for m in again] == [2, 2]
        by_body = {h.body(m): m for m in got}
        if h.item_id_survives_redelivery:
            assert {m.item_id for m in again} == {m.item_id for m in got}
        else:
            assert {m.item_id for m in again}.isdisjoint({m.item_id for m in got})
        for m in again:
            assert h.kept(m) == h.kept(by_body[h.body(m)])
        await q.ack(again)
        await assert_nothing_more(q, 1.0 + h.redelivery_s)


async def test_reject_dead_letters_and_never_deletes(queue_transport: QueueHarness) -> None:
    h = queue_transport
    queue = await h.create()
    await h.send(queue, [b"never", b"fine"])
    async with await h.open(queue) as q:
        got = await collect(q, 2)
        (never,) = [m for m in got if h.body(m) == b"never"]
        (fine,) = [m for m in got if h.body(m) == b"fine"]
        await q.reject([never], REJECT_REASON)
        await q.ack([fine])
        if not h.dead_letters_in_place:
            await assert_nothing_more(q, 1.0)  # not requeued
    dead = await h.dead_letters(queue, expect=1)
    assert [body for _, body in dead] == [b"never"]
    assert all(item_id in (None, never.item_id) for item_id, _ in dead)


async def test_receive_honours_max_messages(queue_transport: QueueHarness) -> None:
    h = queue_transport
    queue = await h.create()
    sent = [f"m{i}".encode() for i in range(5)]
    await h.send(queue, sent)
    async with await h.open(queue) as q:
        first = await collect(q, 1, max_messages=2)  # waits for the first, then takes what is there
        got = first + await collect(q, 4, max_messages=2)
        assert bodies(h, got) == sent
        await q.ack(got)


async def test_receive_returns_empty_after_wait_s_when_idle_and_wakes_on_a_message(
    queue_transport: QueueHarness,
) -> None:
    h = queue_transport
    queue = await h.create()
    async with await h.open(queue) as q:
        started = time.monotonic()
        assert await q.receive(10, 1.0) == []
        assert 0.9 <= time.monotonic() - started < 2.0
        started = time.monotonic()
        assert await q.receive(10, 0) == []
        assert time.monotonic() - started < 1.0

        async def send_later() -> None:
            await anyio.sleep(0.3)
            await h.send(queue, [b"late"])

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_later)
            started = time.monotonic()
            got = await q.receive(10, 10.0)
            elapsed = time.monotonic() - started
        assert [h.body(m) for m in got] == [b"late"]
        assert elapsed < 2.0  # woken by the message, not by the 10 s wait
        await q.ack(got)


async def test_message_groups_keep_their_order(queue_transport: QueueHarness) -> None:
    h = queue_transport
    if h.no_groups:
        pytest.skip(h.no_groups)
    queue = await h.create(fifo=True)
    for i in range(3):
        for group in ("a", "b"):
            await h.send(queue, [f"{group}{i}".encode()], group=group)
    async with await h.open(queue) as q:
        got: list[QueueMessage] = []
        with anyio.fail_after(15):
            while len(got) < 6:
                batch = await q.receive(10, 1.0)
                got += batch
                await q.ack(batch)  # a group's next message is handed out once these are done
    for group in ("a", "b"):
        mine = [m for m in got if m.group == group]
        assert [h.body(m) for m in mine] == [f"{group}{i}".encode() for i in range(3)]


async def test_closing_returns_unacked_messages(queue_transport: QueueHarness) -> None:
    h = queue_transport
    queue = await h.create()
    await h.send(queue, [b"m0", b"m1", b"m2"])
    async with await h.open(queue) as q:
        got = await collect(q, 3)
        done = [m for m in got if h.body(m) == b"m0"]
        await q.ack(done)
    async with await h.open(queue) as q2:
        again = await collect(q2, 2, within_s=15 + h.redelivery_s)
        assert bodies(h, again) == [b"m1", b"m2"]
        assert all(h.redelivered(m) for m in again)
        await q2.ack(again)
        await assert_nothing_more(q2, 0.5 + h.redelivery_s)
