"""The RabbitMQ transport (pollers/rabbitmq.py) against a real broker (RabbitMQ 3.10 from
scripts/services.sh), beyond the QueueSource contract it passes (tests/contract/: ack, release, reject,
waiting, closing): record shape and order, multiple acks, prefetch, quorum-queue delivery limit, virtual
hosts, refused credentials, missing queues, and a broker restart that loses no message.

Each test uses its own queue names; the second virtual host ``esm-test`` is created with rabbitmqctl
(``scripts/services.sh rabbitmqctl add_vhost``, idempotent on 3.10).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiormq.abc import DeliveredMessage

from engine.batching import encode_envelope, encode_record
from engine.ports import QueueMessage, SourceError, SourceNotFound
from pollers.rabbitmq import RabbitMqQueue, parse_rabbitmq_endpoint
from tests.contract.admin import RabbitAdmin, open_rabbit_admin, rabbitmq_url
from tests.services import is_up, skip_unless_ci

pytestmark = pytest.mark.service("rabbitmq")

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "scripts" / "services.sh"
ARN = "arn:aws:mq:us-east-1:123456789012:broker:local:b-00000000-0000-0000-0000-000000000001"
VHOST = "esm-test"


# --- helpers ------------------------------------------------------------------------------------------


def services(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVICES), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
async def broker() -> AsyncIterator[RabbitAdmin]:
    b = await open_rabbit_admin()
    try:
        yield b
    finally:
        await b.aclose()


@pytest.fixture(scope="session")
def test_vhost() -> str:
    """The second virtual host, with permissions for the default user."""
    for args in (("add_vhost", VHOST), ("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")):
        done = services("rabbitmqctl", *args, timeout=60)
        if done.returncode != 0:
            skip_unless_ci(
                f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}"
            )
    return VHOST


@pytest.fixture
def qname(unique_name: Callable[..., str], request: pytest.FixtureRequest) -> str:
    return str(unique_name(f"rmq-{request.node.name}"))


def source(queue: str, **kwargs: Any) -> RabbitMqQueue:
    kwargs.setdefault("prefetch", 100)
    kwargs.setdefault("broker_arn", ARN)
    return RabbitMqQueue(rabbitmq_url(), queue, **kwargs)


async def receive_n(
    q: RabbitMqQueue, n: int, within_s: float = 10.0, max_messages: int = 10
) -> list[QueueMessage]:
    out: list[QueueMessage] = []
    with anyio.fail_after(within_s):
        while len(out) < n:
            out += await q.receive(min(max_messages, n - len(out)), 1.0)
    return out


def bodies(messages: Sequence[QueueMessage]) -> list[bytes]:
    return [base64.b64decode(m.record["data"]) for m in messages]


async def assert_nothing_more(q: RabbitMqQueue, wait_s: float = 0.3) -> None:
    assert await q.receive(10, wait_s) == []


# --- tests --------------------------------------------------------------------------------------------


def test_parse_endpoint() -> None:
    assert parse_rabbitmq_endpoint("amqp://guest:guest@127.0.0.1:5672/") == ("127.0.0.1", 5672, False)
    assert parse_rabbitmq_endpoint("amqps://b-1.mq.us-east-1.amazonaws.com:5671") == (
        "b-1.mq.us-east-1.amazonaws.com",
        5671,
        True,
    )
    assert parse_rabbitmq_endpoint("amqps://broker") == ("broker", 5671, True)
    assert parse_rabbitmq_endpoint("localhost") == ("localhost", 5672, False)
    assert parse_rabbitmq_endpoint("localhost:5673") == ("localhost", 5673, False)
    with pytest.raises(ValueError, match="not an AMQP endpoint"):
        parse_rabbitmq_endpoint("stomp://localhost:61613")
    q = RabbitMqQueue("amqp://u%40x:p%3Aw@h:1/ignored", "q", vhost="v", prefetch=100_000, broker_arn=ARN)
    assert (q.username, q.password, q.vhost, q.prefetch) == ("u@x", "p:w", "v", 65535)
    q = RabbitMqQueue("amqp://u:p@h", "q", username="other", password="secret", prefetch=0, broker_arn=ARN)
    assert (q.username, q.password, q.vhost, q.prefetch) == ("other", "secret", "/", 1)


async def test_records_in_order_exact_shape_then_ack_removes(broker: RabbitAdmin, qname: str) -> None:
    await broker.declare(qname)
    await broker.publish(
        qname,
        b'{"n":1}',
        content_type="application/json",
        content_encoding="utf-8",
        headers={"header1": "value1", "numberInHeader": 10, "nested": {"s": "x", "b": bytearray(b"\xff")}},
        priority=34,
        correlation_id="corr-1",
        reply_to="replies",
        expiration="60000",
        message_id="msg-1",
        timestamp=dt.datetime.fromtimestamp(2021, tz=dt.UTC),
        message_type="order",
        user_id="guest",  # RabbitMQ checks user-id against the connection's user
        app_id="shop",
    )
    await broker.publish(qname, b"plain two")
    await broker.publish(qname, b"\x00\xff three", delivery_mode=1)

    async with source(qname) as q:
        got = await receive_n(q, 3)
        assert bodies(got) == [b'{"n":1}', b"plain two", b"\x00\xff three"]
        assert got[0].record == {
            "basicProperties": {
                "contentType": "application/json",
                "contentEncoding": "utf-8",
                "headers": {
                    "header1": {"bytes": [118, 97, 108, 117, 101, 49]},
                    "numberInHeader": 10,
                    "nested": {"s": {"bytes": [120]}, "b": {"bytes": [255]}},
                },
                "deliveryMode": 2,
                "priority": 34,
                "correlationId": "corr-1",
                "replyTo": "replies",
                "expiration": "60000",
                "messageId": "msg-1",
                "timestamp": "Jan 1, 1970, 12:33:41 AM",
                "type": "order",
                "userId": "guest",
                "appId": "shop",
                "clusterId": None,
                "bodySize": 7,
            },
            "redelivered": False,
            "data": "eyJuIjoxfQ==",
        }
        # aiormq gives every published message a message-id (a uuid4 hex) when it has none
        generated_id = got[1].record["basicProperties"]["messageId"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated_id)
        assert got[1].record == {
            "basicProperties": {
                "contentType": None,
                "contentEncoding": None,
                "headers": None,
                "deliveryMode": 2,
                "priority": None,
                "correlationId": None,
                "replyTo": None,
                "expiration": None,
                "messageId": generated_id,
                "timestamp": None,
                "type": None,
                "userId": None,
                "appId": None,
                "clusterId": None,
                "bodySize": 9,
            },
            "redelivered": False,
            "data": "cGxhaW4gdHdv",
        }
        assert got[2].record["basicProperties"]["deliveryMode"] == 1
        assert got[2].record["data"] == "AP8gdGhyZWU="
        assert [m.item_id for m in got] == ["1", "2", "3"]
        assert all(isinstance(m.handle, DeliveredMessage) for m in got)
        assert [m.handle.delivery_tag for m in got] == [1, 2, 3]
        assert [m.extra["attempt"] for m in got] == [1, 1, 1]
        # the records drop into the envelope as valid JSON
        payload = encode_envelope(
            q.envelope.prefix, [encode_record(m.record) for m in got], q.envelope.suffix
        )
        event = json.loads(payload)
        assert event["eventSource"] == "aws:rmq"
        assert event["rmqMessagesByQueue"][f"{qname}::/"] == [m.record for m in got]

        await q.ack(got)
        await assert_nothing_more(q)
    # acknowledged for good: nothing comes back once the consumer is gone
    assert await broker.depth(qname) == 0
    async with source(qname) as q2:
        await assert_nothing_more(q2)


async def test_max_messages_prefetch_and_concurrent_receivers(broker: RabbitAdmin, qname: str) -> None:
    await broker.declare(qname)
    for i in range(20):
        await broker.publish(qname, f"m{i:02d}".encode())
    async with source(qname, prefetch=5) as q:
        first = await receive_n(q, 2, max_messages=2)
        assert len(first) == 2
        # the broker sends no more than 5 unacknowledged deliveries
        more = await q.receive(100, 0.5)
        assert len(more) <= 3
        more += await receive_n(q, 3 - len(more)) if len(more) < 3 else []
        assert await q.receive(100, 0.3) == []
        held = first + more
        assert bodies(held) == [f"m{i:02d}".encode() for i in range(5)]
        await q.ack(held)

        # several pollers receive concurrently: every message exactly once
        seen: list[bytes] = []

        async def poller() -> None:
            while True:
                got = await q.receive(3, 0.5)
                if not got:
                    return
                seen.extend(bodies(got))
                await q.ack(got)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(poller)
        assert sorted(seen) == [f"m{i:02d}".encode() for i in range(5, 20)]
    assert await broker.depth(qname) == 0


async def test_ack_uses_one_multiple_frame_for_the_lowest_tags(broker: RabbitAdmin, qname: str) -> None:
    await broker.declare(qname)
    for i in range(6):
        await broker.publish(qname, f"m{i}".encode())
    async with source(qname) as q:
        got = await receive_n(q, 6)
        await q.connect()
        channel = q._underlay
        assert channel is not None
        frames: list[tuple[str, int, bool]] = []
        real_ack, real_nack = channel.basic_ack, channel.basic_nack

        async def spy_ack(tag: int, multiple: bool = False, wait: bool = True) -> None:
            frames.append(("ack", tag, multiple))
            await real_ack(tag, multiple=multiple, wait=wait)

        async def spy_nack(tag: int, multiple: bool = False, requeue: bool = True, wait: bool = True) -> None:
            frames.append(("nack", tag, multiple))
            await real_nack(tag, multiple=multiple, requeue=requeue, wait=wait)

        channel.basic_ack = spy_ack  # type: ignore[method-assign]
        channel.basic_nack = spy_nack  # type: ignore[method-assign]
        await q.ack([got[3], got[1]])  # not the lowest: one frame each
        await q.ack([got[2], got[0]])  # now the lowest outstanding (1, 3 gone): one multiple ack
        await q.release([got[5]])  # tag 5 is still outstanding below it: single
        await q.ack([got[4]])  # the lowest alone: single frame, no multiple needed
        await q.ack([got[0]])  # settled already: ignored (a second ack would close the channel)
        assert frames == [
            ("ack", 2, False),
            ("ack", 4, False),
            ("ack", 3, True),
            ("nack", 6, False),
            ("ack", 5, False),
        ]
        again = await receive_n(q, 1)
        assert bodies(again) == [b"m5"] and again[0].record["redelivered"] is True
        await q.ack(again)
        await assert_nothing_more(q)
    assert await broker.depth(qname) == 0


async def test_quorum_queue_delivery_limit_dead_letters(broker: RabbitAdmin, qname: str) -> None:
    dlq = await broker.declare(f"{qname}-dlq")
    await broker.declare(
        qname,
        **{
            "x-queue-type": "quorum",
            "x-delivery-limit": 2,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    await broker.publish(qname, b"poison")
    await broker.publish(qname, b"fine")
    async with source(qname) as q:
        got = await receive_n(q, 2)
        assert bodies(got) == [b"poison", b"fine"]
        await q.ack([got[1]])
        attempts = []
        poison = got[:1]
        for _ in range(2):  # x-delivery-limit 2: two redeliveries, then the broker gives up on it
            attempts.append(poison[0].extra["attempt"])
            await q.release(poison)
            poison = await receive_n(q, 1)
            assert bodies(poison) == [b"poison"]
            assert poison[0].record["redelivered"] is True
        attempts.append(poison[0].extra["attempt"])
        assert attempts == [1, 2, 3]
        # quorum queues count the returns in a header the function sees
        assert poison[0].record["basicProperties"]["headers"]["x-delivery-count"] == 2
        await q.release(poison)
        await assert_nothing_more(q, 0.5)
    with anyio.fail_after(10):
        while not (dead := await broker.get_all(dlq)):
            await anyio.sleep(0.05)
    assert dead == [b"poison"]
    assert await broker.depth(qname) == 0


async def test_vhost_selects_the_queue(broker: RabbitAdmin, qname: str, test_vhost: str) -> None:
    other = await open_rabbit_admin(test_vhost)
    try:
        await broker.declare(qname)
        await other.declare(qname)
        await broker.publish(qname, b"default vhost")
        await other.publish(qname, b"second vhost")
        async with source(qname, vhost=test_vhost) as q:
            got = await receive_n(q, 1)
            assert bodies(got) == [b"second vhost"]
            assert q.envelope.prefix.endswith(f'"{qname}::{test_vhost}":['.encode())
            await q.ack(got)
            await assert_nothing_more(q)
        async with source(qname) as q:
            got = await receive_n(q, 1)
            assert bodies(got) == [b"default vhost"]
            assert q.envelope.prefix.endswith(f'"{qname}::/":['.encode())
            await q.ack(got)
        # a queue that exists only in the other vhost is missing here
        await other.declare(f"{qname}-only")
        with pytest.raises(SourceNotFound):
            await source(f"{qname}-only").connect()
    finally:
        await other.channel.queue_delete(qname)
        await other.channel.queue_delete(f"{qname}-only")
        await other.connection.close()


async def test_wrong_password_is_a_source_error(broker: RabbitAdmin, qname: str) -> None:
    await broker.declare(qname)
    q = source(qname, username="guest", password="wrong")
    with pytest.raises(SourceError, match="authentication failed for user 'guest' on vhost '/'"):
        await q.connect()
    # receive connects on first use and reports the same
    with pytest.raises(SourceError, match="authentication failed for user 'nobody' on vhost '/'"):
        await source(qname, username="nobody", password="x").receive(10, 0.1)
    await q.aclose()


async def test_unknown_vhost_and_unreachable_broker_are_source_errors(qname: str) -> None:
    with pytest.raises(SourceError, match="refused access to vhost 'no-such-vhost' for user 'guest'"):
        await source(qname, vhost="no-such-vhost").connect()
    host, _port, _tls = parse_rabbitmq_endpoint(rabbitmq_url())
    dead = RabbitMqQueue(f"amqp://{host}:1", qname, prefetch=10, broker_arn=ARN, connect_timeout_s=3)
    with pytest.raises(SourceError, match="cannot connect to RabbitMQ"):
        await dead.receive(10, 0.1)


async def test_missing_queue_is_source_not_found(broker: RabbitAdmin, qname: str) -> None:
    q = source(qname)
    with pytest.raises(SourceNotFound, match=f"queue '{qname}' on vhost '/'"):
        await q.connect()
    # not sticky: once the queue exists the same source connects
    await broker.declare(qname)
    await broker.publish(qname, b"now")
    async with q:
        got = await receive_n(q, 1)
        assert bodies(got) == [b"now"]
        await q.ack(got)
        # deleting the queue under the consumer: the broker cancels it, receive reports the queue gone
        await broker.channel.queue_delete(qname)
        with anyio.fail_after(5), pytest.raises(SourceNotFound, match="was deleted"):
            while True:
                await q.receive(10, 1.0)


async def test_aclose_is_idempotent_and_final(broker: RabbitAdmin, qname: str) -> None:
    """(What a close gives back is the contract's: tests/contract/test_queue_contract.py.)"""
    await broker.declare(qname)
    await broker.publish(qname, b"m0")
    q = source(qname)
    await q.ack(await receive_n(q, 1))
    await q.aclose()
    await q.aclose()  # idempotent
    with pytest.raises(SourceError, match="closed"):
        await q.receive(10, 0.1)


def _broker_is_ours() -> bool:
    status = services("status", "rabbitmq", timeout=30).stdout
    return "running pid" in status


async def test_broker_restart_raises_source_error_and_loses_nothing(broker: RabbitAdmin, qname: str) -> None:
    if not _broker_is_ours():
        skip_unless_ci("the broker was not started by scripts/services.sh: this test cannot restart it")
    await broker.declare(qname)
    quorum = await broker.declare(f"{qname}-qq", **{"x-queue-type": "quorum"})
    for i in range(5):
        await broker.publish(qname, f"c{i}".encode())
        await broker.publish(quorum, f"q{i}".encode())
    await broker.connection.close()

    q = source(qname)
    qq = source(quorum)
    got = await receive_n(q, 5)
    got_q = await receive_n(qq, 5)
    await q.ack(got[:2])  # c0, c1 are done; c2..c4 and every quorum message stay unacknowledged
    restarted = False
    try:
        stop = await anyio.to_thread.run_sync(lambda: services("stop", "rabbitmq"))
        assert stop.returncode == 0, stop.stderr
        with anyio.fail_after(15), pytest.raises(SourceError):
            while True:
                await q.receive(10, 1.0)
        with pytest.raises(SourceError):
            await q.ack(got[2:])  # the channel is gone: nothing can be settled
        with anyio.fail_after(15), pytest.raises(SourceError):
            while True:
                await qq.receive(10, 1.0)
        await q.aclose()
        await qq.aclose()

        start = await anyio.to_thread.run_sync(lambda: services("start", "rabbitmq"))
        restarted = True
        assert start.returncode == 0, start.stderr
        assert is_up(rabbitmq_url())

        # a new source (as the supervisor builds one) receives every unacknowledged message again
        async with source(qname) as q2, source(quorum) as qq2:
            again = await receive_n(q2, 3, within_s=30)
            again_q = await receive_n(qq2, 5, within_s=30)
            assert bodies(again) == [b"c2", b"c3", b"c4"]
            assert sorted(bodies(again_q)) == [f"q{i}".encode() for i in range(5)]
            assert all(m.record["redelivered"] for m in again + again_q)
            await q2.ack(again)
            await qq2.ack(again_q)
            await assert_nothing_more(q2)
            await assert_nothing_more(qq2)
        assert got_q  # received before the restart, never acknowledged, not lost
    finally:
        if not restarted:
            await anyio.to_thread.run_sync(lambda: services("start", "rabbitmq"))
    after = await open_rabbit_admin()
    try:
        assert await after.depth(qname) == 0
        assert await after.depth(quorum) == 0
    finally:
        await after.connection.close()
