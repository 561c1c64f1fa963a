"""The ActiveMQ transport (pollers/activemq.py) against a real ActiveMQ Classic 5.18 broker over STOMP,
beyond the QueueSource contract it passes (tests/contract/: ack, release, reject, waiting, closing).

Broker behaviour these tests pin down (see the module docstring of pollers/activemq.py):
* a message left unacknowledged comes back with ``redelivered:true`` once its subscription ends;
* the broker applies no redelivery limit over STOMP by itself: the source counts failures (the next
  delivery's ``attempt``), and a NACK (``reject``, what the queue runner does past the MQ profile's
  ``max_redeliveries``) poison-acks a message, which moves it to ``ActiveMQ.DLQ``;
* messages in flight on the same subscription are not redelivered by a release; a lost or closed
  connection hands back everything it held unacknowledged.
"""

from __future__ import annotations

import base64
import contextlib
import random
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.abc
import anyio.to_thread
import pytest
import stompman

from engine.ports import QueueMessage, SourceError
from engine.sources.mq import BROKER_PROFILES
from pollers.activemq import ActiveMqQueue, parse_endpoint
from pollers.activemq_ledger import RedeliveryLedger
from pollers.stomp import StompFrameParser, encode_ack
from tests.contract.admin import (
    activemq_credentials,
    activemq_dead_letters,
    stomp_endpoint,
    stomp_publish,
)
from tests.services import endpoint_for, is_up

ROOT = Path(__file__).parents[2]
ARN = "arn:aws:mq:us-east-1:123456789012:broker:esm-test:b-0f2c0a41-6e0d-4f39-9b53-6a1f1c0d7e55"
KEY_ORDER = [
    "messageID",
    "messageType",
    "deliveryMode",
    "replyTo",
    "type",
    "expiration",
    "priority",
    "correlationId",
    "redelivered",
    "destination",
    "data",
    "timestamp",
    "brokerInTime",
    "brokerOutTime",
    "properties",
]

needs_broker = pytest.mark.service("activemq")


SourceFactory = Callable[..., ActiveMqQueue]


@pytest.fixture
def open_source() -> SourceFactory:
    """``async with open_source(queue, **overrides) as src``: an ActiveMqQueue (its own ledger unless
    one is given), closed when the block ends."""

    def make(queue: str, *, endpoint: str | None = None, **overrides: Any) -> ActiveMqQueue:
        user, password = activemq_credentials()
        kwargs: dict[str, Any] = {
            "username": user,
            "password": password,
            "prefetch": 10,
            "broker_arn": ARN,
            "ledger": RedeliveryLedger(),
            **overrides,
        }
        return ActiveMqQueue(endpoint or stomp_endpoint(), queue, **kwargs)

    return make


async def collect(src: ActiveMqQueue, n: int, within: float = 10.0) -> list[QueueMessage]:
    got: list[QueueMessage] = []
    with anyio.move_on_after(within):
        while len(got) < n:
            got += await src.receive(n - len(got), 1.0)
    return got


async def fail(src: ActiveMqQueue, messages: Sequence[QueueMessage], max_redeliveries: int) -> None:
    """Settle failed messages as the queue runner does (engine/pipeline/queue_batch.py ``_release``): past the
    redelivery limit rejected (the broker's DLQ), the others released for redelivery."""
    spent = [m for m in messages if m.extra["attempt"] > max_redeliveries]
    if spent:
        await src.reject(spent, "MaximumRedeliveriesExceeded")
    back = [m for m in messages if m not in spent]
    if back:
        await src.release(back)  # the transport itself never dead-letters


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


# --- pure -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("stomp://127.0.0.1:61613", ("127.0.0.1", 61613, False)),
        ("stomp+ssl://b-1.mq.us-east-1.amazonaws.com:61614", ("b-1.mq.us-east-1.amazonaws.com", 61614, True)),
        ("stomp+ssl://broker", ("broker", 61614, True)),
        ("stomp+nio://broker", ("broker", 61613, False)),
        ("localhost:1234", ("localhost", 1234, False)),
    ],
)
def test_parse_endpoint(endpoint: str, expected: tuple[str, int, bool]) -> None:
    assert parse_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["amqp://host:5672", "stomp://:61613"])
def test_parse_endpoint_rejects(endpoint: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(endpoint)


def test_ledger() -> None:
    ledger = RedeliveryLedger(capacity=2)
    assert ledger.redelivered("a", True) and not ledger.redelivered("a", False)
    ledger.went_back_unseen("a")
    assert not ledger.redelivered("a", True)  # never reached the function
    ledger.handed_out("a")
    assert ledger.redelivered("a", True)
    assert [ledger.failed("a"), ledger.failed("a"), ledger.attempt("a")] == [1, 2, 3]
    ledger.forget("a")
    assert ledger.attempt("a") == 1 and ledger.redelivered("a", True)
    for key in "bcd":
        ledger.handed_out(key)
    assert list(ledger.reached) == ["c", "d"]


def _server_frames(rng: random.Random, count: int) -> list[Any]:
    """MESSAGE / RECEIPT / ERROR frames with awkward headers and bodies, and heartbeats between."""
    out: list[Any] = []
    for i in range(count):
        kind = rng.choice(["text", "bytes", "receipt", "error", "heartbeat"])
        if kind == "heartbeat":
            out.append(stompman.HeartbeatFrame())
        elif kind == "receipt":
            out.append(stompman.ReceiptFrame(headers={"receipt-id": f"r-{i}"}))
        elif kind == "error":
            out.append(
                stompman.ErrorFrame(headers={"message": f"bad: {i}", "receipt-id": "x:y"}, body=b"trace")
            )
        else:
            headers: dict[str, str] = {
                "destination": "/queue/q",
                "message-id": f"ID:host-{i}-1:2:-1:1:{i}",
                "subscription": "esm-1",
                "ack": f"ID:host-{i}-4:{i}",
                "custom": rng.choice(["plain", "with:colon", "back\\slash", "new\nline", "ünïcode", ""]),
            }
            if kind == "bytes":
                body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
                headers["content-length"] = str(len(body))
            else:
                body = "".join(rng.choice("ab\n:é{}") for _ in range(rng.randrange(0, 300))).encode()
            out.append(stompman.MessageFrame(headers=cast(Any, headers), body=body))
    return out


def _wire(frames: list[Any]) -> bytes:
    return b"".join(
        b"\n" if isinstance(f, stompman.HeartbeatFrame) else stompman.dump_frame(f) for f in frames
    )


@pytest.mark.parametrize("seed", range(5))
def test_frame_parser_matches_stompman_in_any_chunking(seed: int) -> None:
    rng = random.Random(seed)
    frames = _server_frames(rng, 300)
    wire = _wire(frames)
    reference = list(stompman.FrameParser().parse_frames_from_chunk(wire))
    assert reference == frames
    parser = StompFrameParser()
    parsed: list[Any] = []
    pos = 0
    while pos < len(wire):
        step = rng.choice([1, 2, 7, 64, 1000, 100_000])
        parsed += parser.feed(wire[pos : pos + step])
        pos += step
    assert parsed == frames


def test_frame_parser_crlf_heartbeats_and_unescaped_connected() -> None:
    parser = StompFrameParser()
    wire = (
        b"CONNECTED\r\nversion:1.2\r\nheart-beat:10000,10000\r\nserver:a\\b\r\n\r\n\x00\r\n\n"
        b"RECEIPT\nreceipt-id:r1\nreceipt-id:second\n\n\x00"
    )
    assert parser.feed(wire[:5]) == []
    assert parser.feed(wire[5:]) == [
        stompman.ConnectedFrame(headers={"version": "1.2", "heart-beat": "10000,10000", "server": "a\\b"}),
        stompman.HeartbeatFrame(),
        stompman.HeartbeatFrame(),
        stompman.ReceiptFrame(headers={"receipt-id": "r1"}),
    ]


def test_frame_parser_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a STOMP server frame"):
        StompFrameParser().feed(b"HELLO\n\n\x00")
    with pytest.raises(ValueError, match="no NUL after content-length"):
        StompFrameParser().feed(b"MESSAGE\ncontent-length:1\n\nab\x00")


@pytest.mark.parametrize("ack_id", ["ID:vm-42087-1795619847807-4:19", "a\\b", "line\nbreak", "plain"])
def test_encode_ack_is_dump_frame(ack_id: str) -> None:
    for command, frame_type in ((b"ACK", stompman.AckFrame), (b"NACK", stompman.NackFrame)):
        frame = frame_type(headers={"id": ack_id, "subscription": "esm-1:x"})
        assert encode_ack(command, ack_id, "esm-1:x") == stompman.dump_frame(frame)


# --- against the broker -----------------------------------------------------------------------------


@needs_broker
async def test_receives_in_order_with_exact_records(open_source: SourceFactory, unique_name: Any) -> None:
    queue = unique_name("amq-order")
    expires = str(int(time.time() * 1000) + 3_600_000)
    before = int(time.time() * 1000)
    texts = [f"message {i}".encode() for i in range(5)]
    await stomp_publish(
        queue,
        texts,
        headers=lambda i: {
            "index": str(i),
            "origin": "test",
            "correlation-id": f"corr-{i}",
            "type": "OrderCreated",
            "expires": expires,
            "reply-to": "/queue/replies",
        },
    )
    await stomp_publish(queue, [b"\x00\x01binary\xff"], headers=lambda i: {"index": "5"}, as_bytes=True)
    after = int(time.time() * 1000)

    async with open_source(queue) as src:
        got = await collect(src, 6)
        assert [m.record["data"] for m in got] == [_b64(b) for b in [*texts, b"\x00\x01binary\xff"]]
        for i, m in enumerate(got):
            rec = m.record
            assert list(rec) == KEY_ORDER
            assert m.item_id == rec["messageID"] and rec["messageID"].startswith("ID:")
            assert before <= rec["timestamp"] <= after
            text = i < 5
            assert rec == {
                "messageID": m.item_id,
                "messageType": "jms/text-message" if text else "jms/bytes-message",
                "deliveryMode": 2,
                "replyTo": {"physicalName": "replies"} if text else None,
                "type": "OrderCreated" if text else None,
                "expiration": expires if text else None,
                "priority": 4,
                "correlationId": f"corr-{i}" if text else None,
                "redelivered": False,
                "destination": {"physicalName": queue},
                "data": rec["data"],
                "timestamp": rec["timestamp"],
                "brokerInTime": rec["timestamp"],
                "brokerOutTime": rec["timestamp"],
                "properties": {"index": str(i), "origin": "test"} if text else {"index": "5"},
            }
            assert m.extra == {"attempt": 1}
        assert len({m.item_id for m in got}) == 6
        await src.ack(got)


@needs_broker
async def test_receive_waits_for_the_first_then_takes_what_is_buffered(
    open_source: SourceFactory, unique_name: Any
) -> None:
    queue = unique_name("amq-wait")
    async with open_source(queue, prefetch=50) as src:
        started = time.monotonic()
        assert await src.receive(10, 1.0) == []
        assert 0.9 <= time.monotonic() - started < 3.0

        async def later() -> None:
            await anyio.sleep(0.5)
            await stomp_publish(queue, [f"b{i}".encode() for i in range(25)])

        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            first = await src.receive(10, 10.0)
        assert 1 <= len(first) <= 10
        rest: list[QueueMessage] = []
        with anyio.fail_after(5):
            while len(first) + len(rest) < 25:
                await anyio.sleep(0.1)
                started = time.monotonic()
                rest += await src.receive(100, 0)  # no wait: only what is buffered
                assert time.monotonic() - started < 0.05
        assert len(first) + len(rest) == 25
        await src.ack([*first, *rest])


@needs_broker
async def test_release_waits_for_batches_in_flight_on_the_same_subscription(
    open_source: SourceFactory, unique_name: Any
) -> None:
    """A release does not disturb other batches: the failed message returns once they are settled, and
    a message that was only prefetched comes back with redelivered=false."""
    queue = unique_name("amq-inflight")
    await stomp_publish(queue, [b"fails", b"in flight", b"prefetched"])
    async with open_source(queue, prefetch=10) as src:
        (failing,) = await src.receive(1, 5.0)
        (in_flight,) = await src.receive(1, 5.0)
        await anyio.sleep(0.3)  # the third pushed into the subscription's prefetch
        await src.release([failing])
        assert await src.receive(10, 1.0) == []  # still held by the retiring subscription
        await src.ack([in_flight])  # the last one in flight: the old subscription ends
        back = await collect(src, 2)
        assert [m.record["data"] for m in back] == [_b64(b"fails"), _b64(b"prefetched")]
        assert [m.record["redelivered"] for m in back] == [True, False]
        assert [m.extra["attempt"] for m in back] == [2, 1]
        await src.ack(back)
        assert await src.receive(10, 1.0) == []  # "in flight" was acked: never redelivered


@needs_broker
async def test_seventh_failure_moves_the_message_to_the_dlq(
    open_source: SourceFactory, unique_name: Any
) -> None:
    queue = unique_name("amq-dlq")
    token = uuid.uuid4().hex
    await stomp_publish(queue, [b"poison"], headers=lambda i: {"esmTest": token})
    limit = BROKER_PROFILES["ActiveMQ"].max_redeliveries
    assert limit == 6
    async with open_source(queue) as src:
        message_id = None
        for attempt in range(1, 8):  # 1 delivery + maximumRedeliveries (6) redeliveries
            (msg,) = await collect(src, 1)
            message_id = message_id or msg.item_id
            assert msg.item_id == message_id
            assert msg.record["redelivered"] is (attempt > 1) and msg.extra == {"attempt": attempt}
            await fail(src, [msg], limit)
        assert await src.receive(10, 1.5) == []  # not redelivered an 8th time
        (dead,) = await activemq_dead_letters(token, expect=1)
        assert dead.headers["message-id"] == message_id
        assert dead.headers["original-destination"] == f"/queue/{queue}"
        assert dead.body == b"poison"


@needs_broker
async def test_broker_itself_sets_no_redelivery_limit_over_stomp(
    open_source: SourceFactory, unique_name: Any
) -> None:
    """Without the runner's limit, ActiveMQ keeps redelivering a released message: it enforces
    maximumRedeliveries only through its JMS client, which STOMP does not have; ``release`` itself
    never dead-letters."""
    queue = unique_name("amq-nolimit")
    token = uuid.uuid4().hex
    await stomp_publish(queue, [b"again and again"], headers=lambda i: {"esmTest": token})
    async with open_source(queue) as src:
        for _ in range(9):
            (msg,) = await collect(src, 1)
            await src.release([msg])
        (msg,) = await collect(src, 1)
        assert msg.record["redelivered"] is True and msg.extra == {"attempt": 10}
        assert await activemq_dead_letters(token, expect=0) == []
        await src.ack([msg])


@needs_broker
async def test_max_redeliveries_zero_dead_letters_at_the_first_failure(
    open_source: SourceFactory, unique_name: Any
) -> None:
    queue = unique_name("amq-dlq0")
    token = uuid.uuid4().hex
    await stomp_publish(queue, [b"x", b"y"], headers=lambda i: {"esmTest": token, "n": str(i)})
    async with open_source(queue) as src:
        got = await collect(src, 2)
        await fail(src, got[:1], max_redeliveries=0)
        await src.ack(got[1:])
        assert await src.receive(10, 1.0) == []
        dead = await activemq_dead_letters(token, expect=1)
        assert [f.headers["n"] for f in dead] == ["0"]


@needs_broker
async def test_concurrent_pollers_get_each_message_once(open_source: SourceFactory, unique_name: Any) -> None:
    queue = unique_name("amq-concurrent")
    bodies = [f"c{i}".encode() for i in range(200)]
    await stomp_publish(queue, bodies)
    async with open_source(queue, prefetch=20) as src:
        seen: list[QueueMessage] = []

        async def poller() -> None:
            while len(seen) < len(bodies):
                batch = await src.receive(10, 0.5)
                seen.extend(batch)
                await anyio.sleep(0.001 * len(batch))
                await src.ack(batch)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(poller)
        assert sorted(base64.b64decode(m.record["data"]) for m in seen) == sorted(bodies)
        assert len({m.item_id for m in seen}) == len(bodies)


@needs_broker
async def test_aclose_hands_back_what_was_not_acked(open_source: SourceFactory, unique_name: Any) -> None:
    queue = unique_name("amq-close")
    await stomp_publish(queue, [b"one", b"two", b"three"])
    ledger = RedeliveryLedger()
    async with open_source(queue, ledger=ledger) as first:
        taken = list(await first.receive(1, 5.0))
        await anyio.sleep(0.3)  # the other two pushed into the subscription's prefetch
        taken += await first.receive(1, 0)
        assert len(taken) == 2
        await first.aclose()
        with pytest.raises(SourceError):
            await first.ack(taken)
    async with open_source(queue, ledger=ledger) as second:
        back = await collect(second, 3)
        assert [base64.b64decode(m.record["data"]) for m in back] == [b"one", b"two", b"three"]
        # the third had only been prefetched: it never reached the function
        assert [m.record["redelivered"] for m in back] == [True, True, False]
        await second.ack(back)


@needs_broker
async def test_wrong_password_is_a_source_error(open_source: SourceFactory, unique_name: Any) -> None:
    async with open_source(unique_name("amq-auth"), password="not-the-password") as src:
        with pytest.raises(
            SourceError, match=r"refused the connection of user '.+': User name \[.+\] or password is invalid"
        ):
            await src.receive(1, 1.0)


async def test_unreachable_broker_is_a_source_error(open_source: SourceFactory) -> None:
    async with open_source("q", endpoint="stomp://127.0.0.1:1", connect_timeout_s=2.0) as src:
        with pytest.raises(SourceError, match=r"cannot connect to ActiveMQ at 127\.0\.0\.1:1"):
            await src.receive(1, 1.0)


@contextlib.asynccontextmanager
async def _fake_broker(serve: Callable[[Any], Any]) -> AsyncIterator[str]:
    """A TCP server running ``serve(stream)`` for each connection; yields its stomp:// endpoint."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield f"stomp://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


def _answering(reply: bytes) -> Callable[[Any], Any]:
    async def serve(stream: Any) -> None:
        async with stream:
            if reply:
                await stream.send(reply)
            await anyio.sleep(30)

    return serve


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            "STOMP handshake .* failed: .*not a STOMP",
        ),
        (b"", "did not answer the STOMP CONNECT within 1.0s"),
    ],
)
async def test_a_peer_that_is_no_stomp_broker_is_a_source_error(
    open_source: SourceFactory, reply: bytes, error: str
) -> None:
    async with (
        _fake_broker(_answering(reply)) as endpoint,
        open_source("q", endpoint=endpoint, connect_timeout_s=1.0) as src,
    ):
        with pytest.raises(SourceError, match=error):
            await src.receive(1, 1.0)


async def _connects_then_goes_silent(stream: Any) -> None:
    """CONNECTED with 1 s heartbeats, a RECEIPT for the SUBSCRIBE, then nothing at all."""
    buf = b""

    async def frame() -> bytes:
        nonlocal buf
        while b"\x00" not in buf:
            buf += await stream.receive()
        head, _, buf = buf.partition(b"\x00")
        return head

    async with stream:
        await frame()  # CONNECT
        await stream.send(b"CONNECTED\nversion:1.2\nheart-beat:1000,1000\n\n\x00")
        receipt = re.search(rb"\nreceipt:([^\n]+)", await frame())
        assert receipt is not None
        await stream.send(b"RECEIPT\nreceipt-id:" + receipt.group(1) + b"\n\n\x00")
        await anyio.sleep(30)


async def test_a_silent_broker_is_a_lost_connection(open_source: SourceFactory) -> None:
    """Heartbeats: a broker that promised them and sends nothing for 3 intervals is given up."""
    async with (
        _fake_broker(_connects_then_goes_silent) as endpoint,
        open_source("q", endpoint=endpoint, heartbeat_ms=1000) as src,
    ):
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(SourceError, match="no data nor heartbeat for 3s"):
            await src.receive(10, 8.0)
        assert 2.5 < time.monotonic() - started < 6


def _services(action: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts/services.sh"), action, "activemq"], check=True, capture_output=True, timeout=180
    )


@needs_broker
async def test_broker_restart_loses_nothing(open_source: SourceFactory, unique_name: Any) -> None:
    queue = unique_name("amq-restart")
    bodies = [f"r{i}".encode() for i in range(6)]
    await stomp_publish(queue, bodies)
    ledger = RedeliveryLedger()
    async with open_source(queue, ledger=ledger) as src:
        got = await collect(src, 6)
        assert len(got) == 6
        await src.ack(got[:2])  # these two are done; the other four are in flight
        try:
            await anyio.to_thread.run_sync(_services, "stop")
            with anyio.fail_after(30), pytest.raises(SourceError, match="lost"):
                while True:
                    await src.receive(10, 1.0)
            with pytest.raises(SourceError):
                await src.ack(got[2:])
        finally:
            await anyio.to_thread.run_sync(_services, "start")
        assert is_up(endpoint_for("activemq"))
    async with open_source(queue, ledger=ledger) as fresh:
        back = await collect(fresh, 4, within=30)
        assert sorted(base64.b64decode(m.record["data"]) for m in back) == bodies[2:]
        assert {m.item_id for m in back} == {m.item_id for m in got[2:]}
        await fresh.ack(back)
        assert await fresh.receive(10, 1.0) == []
