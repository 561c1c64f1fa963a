"""ActiveMQ Classic transport over STOMP 1.2 (stompman's connection and frames).

One STOMP connection per source, opened by the first ``receive``; one ``client-individual`` subscription
at a time with ``activemq.prefetchSize`` = ``prefetch``. A reader task turns MESSAGE frames into
:class:`QueueMessage` records and pushes them into an anyio memory stream; ``receive`` takes from it,
``ack`` sends one ACK per message. The reader also sends and watches STOMP heartbeats (10 s; a broker
silent for 30 s counts as lost). The QueueSource protocol has no entry point that could host a task group,
so the reader is an asyncio task owned by the source (named ``activemq-reader-<queue>``), cancelled and
joined by ``aclose``; anything it hits ends up in ``receive``: SourceError for the connection, the
exception itself for a bug.

Why not ``stompman.Client``: it reconnects and resubscribes on its own and then silently drops the ACKs
of messages received before (the engine must hear of a lost connection: SourceError, runner restart);
it loses the broker's ERROR text when the login is refused; and its internal TaskGroup cancels the task
that entered it when the connection cannot be restored. The lower layers (``Connection``, frames,
``dump_frame``) are used as they are; stompman's byte-by-byte ``FrameParser`` and ACK encoding are
replaced by :class:`StompFrameParser` and :func:`encode_ack`, the consumer's CPU ceiling. Measured with
20,000 persistent 200-byte messages, receive(100) + ack per batch, on a loaded 2-core machine: 2,600/s
with stompman's parser, 4,000-4,500/s with these (``stompman.Client`` itself: 3,550/s there).

Failure and redelivery (ActiveMQ Classic 5.18, measured):
* A STOMP NACK is a poison ack: the message goes to ``ActiveMQ.DLQ`` at once, without redelivery.
* A message comes back, with ``redelivered:true``, only when the consumer holding it unacknowledged goes
  away (UNSUBSCRIBE or DISCONNECT). The broker then applies no ``maximumRedeliveries`` at all over STOMP
  (a message was delivered ten times without reaching the DLQ) and frames carry no delivery count: in
  ActiveMQ Classic the redelivery policy is enforced by the JMS client, which poison-acks a message whose
  redelivery counter exceeds ``maximumRedeliveries`` (6 by default, the policy AWS uses).

So ``release`` plays the JMS client's part:
* it counts failures per message id (:class:`RedeliveryLedger`, kept per broker and queue for the life of
  the process, so a restarted runner keeps the count; an engine restart starts it again);
* a message failing for the 7th time (1 delivery + 6 redeliveries) is NACKed: the broker moves it to its
  dead-letter queue (``ActiveMQ.DLQ`` by default, or whatever the broker's deadLetterStrategy says);
  ``reject`` (a message that can never succeed, e.g. over 6 MB) NACKs at once, the same way;
* the others go back by retiring the subscription that holds them: it stops handing out messages at once,
  a fresh subscription takes over, and the old one is unsubscribed as soon as every other message
  delivered through it has been acked or released. Batches in flight on the same subscription therefore
  finish normally (their ACKs count, they are not redelivered); a failed message comes back at most one
  in-flight batch later. Messages the broker had prefetched into the retired subscription but that never
  reached the function go back too; the broker flags them ``redelivered``, and the record says
  ``redelivered: false`` for them, as a JMS client that never delivered them would.
* A lost connection, and ``aclose``, hand back every unacknowledged message of the connection, in-flight
  ones included: they are redelivered (``redelivered: true``) and may be processed twice: at-least-once.
  ACKs for messages of a lost connection raise SourceError (the broker redelivers them).

Persistence is the producer's business: a STOMP SEND is non-persistent unless it says ``persistent:true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from stompman.connection import Connection
from stompman.frames import (
    AnyClientFrame,
    AnyServerFrame,
    ConnectedFrame,
    ConnectFrame,
    DisconnectFrame,
    ErrorFrame,
    HeartbeatFrame,
    MessageFrame,
    ReceiptFrame,
    SubscribeFrame,
    UnsubscribeFrame,
)
from stompman.serde import NEWLINE, dump_frame, make_frame_from_parts

from engine.events_activemq import activemq_message
from engine.ports import QueueMessage, SourceError, Transport

log = structlog.get_logger("pollers.activemq")

PLAIN_SCHEMES = frozenset({"stomp", "stomp+nio", "tcp"})
SSL_SCHEMES = frozenset({"stomp+ssl", "stomp+nio+ssl", "ssl"})
DEFAULT_PORT = 61613
DEFAULT_SSL_PORT = 61614
#: ActiveMQ's default RedeliveryPolicy, the one AWS applies (custom policies are not supported there)
DEFAULT_MAX_REDELIVERIES = 6
STOMP_VERSION = "1.2"
_READ_CHUNK = 1024 * 1024


def parse_endpoint(endpoint: str) -> tuple[str, int, bool]:
    """``stomp://h:p`` / ``stomp+ssl://h:p`` (or a bare ``h:p``) -> (host, port, tls)."""
    raw = endpoint.strip()
    parts = urlsplit(raw if "://" in raw else f"stomp://{raw}")
    scheme = parts.scheme.lower()
    if scheme not in PLAIN_SCHEMES | SSL_SCHEMES:
        raise ValueError(
            f"not a STOMP endpoint: {endpoint!r} (expected stomp://host:port or stomp+ssl://...)"
        )
    tls = scheme in SSL_SCHEMES
    if not parts.hostname:
        raise ValueError(f"no host in STOMP endpoint {endpoint!r}")
    return parts.hostname, parts.port or (DEFAULT_SSL_PORT if tls else DEFAULT_PORT), tls


_SERVER_COMMANDS = frozenset({b"CONNECTED", b"MESSAGE", b"RECEIPT", b"ERROR"})
_UNESCAPE = {b"n": b"\n", b"c": b":", b"\\": b"\\", b"r": b"\r"}
_ESCAPED = re.compile(rb"\\(.)", re.DOTALL)


def _header_text(raw: bytes, escaped: bool) -> str:
    if escaped and b"\\" in raw:
        raw = _ESCAPED.sub(lambda m: _UNESCAPE.get(m.group(1), m.group(1)), raw)
    return raw.decode("utf-8", "replace")


class StompFrameParser:
    """Server frames (STOMP 1.2) from a byte stream, as stompman's frame objects.

    stompman's ``FrameParser`` walks the stream byte by byte in Python (about 150 µs for a 200-byte
    MESSAGE, 0.2 s per MiB of body): the ceiling of a consumer. This one splits on the blank line and the
    NUL (or ``content-length``) with bytes methods, for the same frames. End-of-lines between frames are
    heartbeats; the first of repeated headers wins; CONNECTED headers are not escaped (STOMP 1.2).
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[AnyServerFrame]:
        buf = self._buf
        buf += chunk
        frames: list[AnyServerFrame] = []
        pos, n = 0, len(buf)
        while pos < n:
            first = buf[pos]
            if first == 0x0A:  # \n
                frames.append(HeartbeatFrame())
                pos += 1
                continue
            if first == 0x0D:  # \r\n
                if pos + 1 >= n:
                    break
                if buf[pos + 1] == 0x0A:
                    frames.append(HeartbeatFrame())
                    pos += 2
                    continue
            lf = buf.find(b"\n\n", pos)
            crlf = buf.find(b"\n\r\n", pos)
            if lf < 0 and crlf < 0:
                break
            if crlf >= 0 and (lf < 0 or crlf < lf):
                head_end, body_start = crlf, crlf + 3
            else:
                head_end, body_start = lf, lf + 2
            lines = bytes(buf[pos:head_end]).split(b"\n")
            command = lines[0].rstrip(b"\r")
            if command not in _SERVER_COMMANDS:
                raise ValueError(f"not a STOMP server frame: {command[:40]!r}")
            escaped = command != b"CONNECTED"
            headers: dict[str, str] = {}
            for line in lines[1:]:
                key, sep, value = line.rstrip(b"\r").partition(b":")
                if sep:
                    headers.setdefault(_header_text(key, escaped), _header_text(value, escaped))
            length = headers.get("content-length")
            if length is not None and length.isdigit():
                end = body_start + int(length)
                if end >= n:
                    break
                if buf[end] != 0:
                    raise ValueError(f"STOMP {command.decode()} frame: no NUL after content-length {length}")
            else:
                end = buf.find(b"\x00", body_start)
                if end < 0:
                    break
            body = bytes(buf[body_start:end])
            frames.append(
                cast(AnyServerFrame, make_frame_from_parts(command=command, headers=headers, body=body))
            )
            pos = end + 1
        del buf[:pos]
        return frames


def _escape(value: str) -> bytes:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c").replace("\r", "").encode()


def encode_ack(command: bytes, ack_id: str, subscription: str) -> bytes:
    """An ACK or NACK frame, as ``dump_frame`` writes it, without its per-character escaping loop."""
    return b"%s\nid:%s\nsubscription:%s\n\n\x00" % (command, _escape(ack_id), _escape(subscription))


class RedeliveryLedger:
    """What this process knows about the messages of one queue, across connections and sources.

    ``failures``: failed deliveries per message id (the redelivery counter STOMP frames do not carry);
    ``reached``: ids handed to the function at least once; ``unseen``: ids that went back to the broker
    without reaching the function (prefetched into a retired subscription). Acked and dead-lettered ids
    are forgotten; each map keeps at most ``capacity`` ids (oldest dropped).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self.failures: OrderedDict[str, int] = OrderedDict()
        self.reached: OrderedDict[str, None] = OrderedDict()
        self.unseen: OrderedDict[str, None] = OrderedDict()

    def _put(self, d: OrderedDict[str, Any], key: str, value: Any) -> None:
        d[key] = value
        d.move_to_end(key)
        if len(d) > self.capacity:
            d.popitem(last=False)

    def redelivered(self, message_id: str, broker_flag: bool) -> bool:
        """The broker's flag, unless the message never reached the function before."""
        return broker_flag and (message_id in self.reached or message_id not in self.unseen)

    def attempt(self, message_id: str) -> int:
        return self.failures.get(message_id, 0) + 1

    def handed_out(self, message_id: str) -> None:
        self._put(self.reached, message_id, None)

    def went_back_unseen(self, message_id: str) -> None:
        if message_id not in self.reached:
            self._put(self.unseen, message_id, None)

    def failed(self, message_id: str) -> int:
        """Count one failed delivery; returns the failures so far."""
        n = self.failures.get(message_id, 0) + 1
        self._put(self.failures, message_id, n)
        return n

    def forget(self, message_id: str) -> None:
        self.failures.pop(message_id, None)
        self.reached.pop(message_id, None)
        self.unseen.pop(message_id, None)


_LEDGERS: dict[tuple[str, int, str], RedeliveryLedger] = {}


def ledger_for(host: str, port: int, queue: str) -> RedeliveryLedger:
    return _LEDGERS.setdefault((host, port, queue), RedeliveryLedger())


class _SubState(Enum):
    ACTIVE = "active"  # hands out messages
    RETIRING = "retiring"  # holds released messages; unsubscribed once nothing it delivered is in flight
    RETIRED = "retired"  # UNSUBSCRIBE sent


class _Subscription:
    def __init__(self) -> None:
        self.id = f"esm-{uuid.uuid4().hex[:16]}"
        self.state = _SubState.ACTIVE
        #: messages handed to the runner and not yet acked or released
        self.outstanding = 0


@dataclass(frozen=True, eq=False)
class Delivery:
    """``QueueMessage.handle``: where the message was delivered and the id its ACK/NACK names."""

    session: _Session
    subscription: _Subscription
    ack_id: str


@dataclass
class _Pending:
    event: anyio.Event
    error: ErrorFrame | None = None


def _frame(kind: Callable[..., AnyClientFrame], **headers: str) -> AnyClientFrame:
    # stompman types headers as TypedDicts without optional extras such as ``receipt``
    return kind(headers=cast(Any, headers))


class _Session:
    """One STOMP connection: its reader task, subscriptions, receipts and inbox."""

    def __init__(
        self,
        owner: ActiveMqQueue,
        conn: Connection,
        parser: StompFrameParser,
        send_every_s: float | None,
        silent_after_s: float | None,
    ) -> None:
        self.owner = owner
        self.conn = conn
        self.parser = parser
        self.send_every_s = send_every_s
        self.silent_after_s = silent_after_s
        self.subs: dict[str, _Subscription] = {}
        self.active: _Subscription | None = None
        self.rotate_lock = anyio.Lock()
        self.receipts: dict[str, _Pending] = {}
        self.failure: BaseException | None = None
        self.closing = False
        self.closed = False
        self.outbox: MemoryObjectSendStream[QueueMessage]
        self.inbox: MemoryObjectReceiveStream[QueueMessage]
        self.outbox, self.inbox = anyio.create_memory_object_stream[QueueMessage](math.inf)
        self.task: asyncio.Task[None] | None = None

    # --- state ------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.failure is None and not self.closed

    def error(self) -> Exception:
        f = self.failure
        if f is None:
            return SourceError(f"the connection to ActiveMQ at {self.owner.where} is closed")
        if isinstance(f, SourceError):
            return SourceError(str(f))
        return RuntimeError(f"the ActiveMQ reader for {self.owner.where} crashed: {f!r}")

    def fail(self, failure: BaseException) -> None:
        """The connection is unusable: wake every waiter and close the socket."""
        if self.failure is None and not self.closed:
            if self.closing:  # the broker ends the connection after DISCONNECT: expected
                self.closed = True
            else:
                self.failure = failure
                self.owner.log.warning("connection_lost", error=str(failure))
        for pending in self.receipts.values():
            pending.event.set()
        self.outbox.close()
        self.conn.writer.close()

    # --- writing ----------------------------------------------------------------------------------

    def _lost(self, e: BaseException) -> SourceError:
        err = SourceError(
            f"connection to ActiveMQ at {self.owner.where} lost: {e!r}; "
            "its unacknowledged messages go back to the queue"
        )
        self.fail(err)
        return err

    async def write(self, frames: Iterable[AnyClientFrame], raw: bytes = b"") -> None:
        if not self.usable:
            raise self.error()
        data = b"".join(dump_frame(f) for f in frames) + raw
        if not data:
            return
        try:
            self.conn.writer.write(data)
            await self.conn.writer.drain()
        except (OSError, RuntimeError) as e:
            raise self._lost(e) from e

    async def request(self, make: Callable[[str], AnyClientFrame], what: str) -> None:
        """Send a frame with a receipt and wait for it (or the ERROR naming it)."""
        receipt = f"r-{uuid.uuid4().hex}"
        pending = _Pending(anyio.Event())
        self.receipts[receipt] = pending
        try:
            await self.write([make(receipt)])
            with anyio.move_on_after(self.owner.receipt_timeout_s) as scope:
                await pending.event.wait()
        finally:
            self.receipts.pop(receipt, None)
        if pending.error is not None:
            message = pending.error.headers.get("message", "")
            raise SourceError(f"ActiveMQ at {self.owner.where} refused to {what}: {message}")
        if scope.cancelled_caught:
            err = SourceError(
                f"ActiveMQ at {self.owner.where} did not confirm {what} within "
                f"{self.owner.receipt_timeout_s}s"
            )
            self.fail(err)
            raise err
        if not self.usable:
            raise self.error()

    # --- subscriptions ----------------------------------------------------------------------------

    async def subscribe(self) -> _Subscription:
        sub = _Subscription()
        self.subs[sub.id] = sub  # before SUBSCRIBE: the first MESSAGE may come before the RECEIPT
        o = self.owner
        await self.request(
            lambda r: _frame(
                SubscribeFrame,
                id=sub.id,
                destination=o.destination,
                ack="client-individual",
                receipt=r,
                **{"activemq.prefetchSize": str(o.prefetch)},
            ),
            f"subscribe to {o.destination}",
        )
        o.log.debug("subscribed", subscription=sub.id, prefetch=o.prefetch)
        return sub

    async def retire(self, sub: _Subscription) -> None:
        """UNSUBSCRIBE: the broker requeues what the subscription holds unacknowledged."""
        if sub.state is _SubState.RETIRED:
            return
        sub.state = _SubState.RETIRED
        await self.request(lambda r: _frame(UnsubscribeFrame, id=sub.id, receipt=r), f"unsubscribe {sub.id}")
        self.subs.pop(sub.id, None)
        self.owner.log.debug("subscription_retired", subscription=sub.id)

    async def settle(self, subs: Iterable[_Subscription]) -> None:
        """Retire the retiring subscriptions nothing is in flight for."""
        for sub in subs:
            if sub.state is _SubState.RETIRING and sub.outstanding <= 0:
                await self.retire(sub)

    async def ensure_active(self) -> None:
        async with self.rotate_lock:
            if self.active is None or self.active.state is not _SubState.ACTIVE:
                self.active = await self.subscribe()

    # --- reading ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """The reader task: frames in, heartbeats out, until the connection ends."""
        loop_time = anyio.current_time
        last_read = last_write = loop_time()
        tick = min(t for t in (self.send_every_s, self.silent_after_s, math.inf) if t is not None)
        reader = self.conn.reader
        try:
            while True:
                chunk: bytes | None = None
                with anyio.move_on_after(tick):
                    chunk = await reader.read(_READ_CHUNK)
                now = loop_time()
                if chunk is not None:
                    if not chunk:
                        raise self._lost(ConnectionResetError("connection closed by the broker"))
                    last_read = now
                    try:
                        frames = self.parser.feed(chunk)
                    except ValueError as e:  # not STOMP: the peer is not (or no longer) a broker
                        raise self._lost(e) from e
                    for frame in frames:
                        self._on_frame(frame)
                        if not self.usable:
                            return
                if self.silent_after_s is not None and now - last_read > self.silent_after_s:
                    raise self._lost(TimeoutError(f"no data nor heartbeat for {self.silent_after_s:.0f}s"))
                if self.send_every_s is not None and now - last_write >= self.send_every_s:
                    await self.write([], NEWLINE)
                    last_write = now
        except SourceError:
            pass
        except (OSError, RuntimeError) as e:
            self._lost(e)
        except Exception as e:  # a bug: surfaced by receive() as such, not as a SourceError
            self.owner.log.exception("reader_crashed")
            self.fail(e)
        finally:
            if self.usable:  # cancelled by aclose
                self.closed = True
                self.fail(SourceError("closed"))

    def _on_frame(self, frame: object) -> None:
        if isinstance(frame, MessageFrame):
            self._on_message(frame)
        elif isinstance(frame, ReceiptFrame):
            pending = self.receipts.get(frame.headers["receipt-id"])
            if pending is not None:
                pending.event.set()
        elif isinstance(frame, ErrorFrame):
            pending = self.receipts.get(frame.headers.get("receipt-id", ""))
            if pending is not None:
                pending.error = frame
                pending.event.set()
            else:
                self._lost(ConnectionAbortedError(f"ERROR frame: {frame.headers.get('message', '')}"))
        # heartbeats and anything else: nothing to do

    def _on_message(self, frame: MessageFrame) -> None:
        headers = frame.headers
        message_id = headers["message-id"]
        ledger = self.owner.ledger
        sub = self.subs.get(headers.get("subscription", ""))
        if sub is None or sub.state is not _SubState.ACTIVE:
            # the broker gets it back when that subscription ends
            ledger.went_back_unseen(message_id)
            return
        record = activemq_message(
            frame.body,
            cast(dict[str, str], headers),
            broker_host=self.owner.host,
            redelivered=ledger.redelivered(message_id, headers.get("redelivered") == "true"),
        )
        msg = QueueMessage(
            record=record,
            item_id=message_id,
            handle=Delivery(self, sub, headers.get("ack") or message_id),
            extra={"attempt": ledger.attempt(message_id)},
        )
        self.outbox.send_nowait(msg)

    # --- closing ----------------------------------------------------------------------------------

    async def close(self, timeout_s: float) -> None:
        """DISCONNECT (the broker requeues everything unacknowledged), then end the reader; at most
        ``timeout_s`` in all."""
        with anyio.move_on_after(timeout_s * 0.8):
            if self.usable:
                self.closing = True
                with contextlib.suppress(SourceError):
                    await self.request(lambda r: _frame(DisconnectFrame, receipt=r), "disconnect")
        if self.usable:
            self.closed = True
            self.fail(SourceError("closed"))  # closes the socket and the inbox
        # what the reader had buffered never reached the function
        try:
            while True:
                msg = self.inbox.receive_nowait()
                self.owner.ledger.went_back_unseen(msg.item_id)
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        self.inbox.close()
        task = self.task
        if task is not None:
            task.cancel()
            with anyio.move_on_after(timeout_s * 0.2):
                await asyncio.wait([task])


class ActiveMqQueue(Transport):
    """A :class:`engine.ports.QueueSource` for one ActiveMQ Classic queue over STOMP.

    ``endpoint``: ``stomp://host:port`` or ``stomp+ssl://host:port``; ``prefetch``: the most messages the
    broker pushes ahead of acknowledgements (``activemq.prefetchSize``). See the module docstring for
    what ``release`` does.
    """

    def __init__(
        self,
        endpoint: str,
        queue: str,
        *,
        username: str | None,
        password: str | None,
        prefetch: int,
        broker_arn: str,
        max_redeliveries: int = DEFAULT_MAX_REDELIVERIES,
        connect_timeout_s: float = 5.0,
        receipt_timeout_s: float = 10.0,
        heartbeat_ms: int = 10_000,
        close_timeout_s: float = 5.0,
        ledger: RedeliveryLedger | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.host, self.port, self.tls = parse_endpoint(endpoint)
        self.queue = queue.removeprefix("/queue/")
        self.destination = f"/queue/{self.queue}"
        self.username = username
        self.password = password
        self.prefetch = max(1, int(prefetch))
        self.broker_arn = broker_arn
        self.max_redeliveries = max_redeliveries
        self.connect_timeout_s = connect_timeout_s
        self.receipt_timeout_s = receipt_timeout_s
        self.heartbeat_ms = heartbeat_ms
        self.close_timeout_s = close_timeout_s
        self.where = f"{self.host}:{self.port}"
        self.ledger = ledger if ledger is not None else ledger_for(self.host, self.port, self.queue)
        self.log = log.bind(broker=broker_arn, endpoint=self.where, queue=self.queue)
        self._session: _Session | None = None
        #: sessions whose connection was lost: their reader tasks are joined by aclose
        self._lost: list[_Session] = []
        self._open_lock = anyio.Lock()
        self._closed = False

    # --- connection -------------------------------------------------------------------------------

    async def _live(self) -> _Session:
        if self._closed:
            raise SourceError(f"the ActiveMQ source for {self.destination} at {self.where} is closed")
        s = self._session
        if s is not None and not s.usable:
            # report the loss once; the next call connects again
            self._forget(s)
            raise s.error()
        if s is not None:
            return s
        async with self._open_lock:
            if self._session is None:
                self._session = await self._open()
            return self._session

    async def _open(self) -> _Session:
        try:
            conn = await Connection.connect(
                host=self.host,
                port=self.port,
                timeout=max(1, math.ceil(self.connect_timeout_s)),
                read_max_chunk_size=_READ_CHUNK,
                ssl=True if self.tls else None,
            )
        except OSError as e:
            raise SourceError(f"cannot connect to ActiveMQ at {self.where}: {e!r}") from e
        if conn is None:
            raise SourceError(
                f"cannot connect to ActiveMQ at {self.where}: connection refused, unresolvable host or "
                f"no answer within {self.connect_timeout_s}s"
            )
        try:
            parser, server_hb = await self._handshake(conn)
            send_every, silent_after = self._heartbeats(server_hb)
            session = _Session(self, conn, parser, send_every, silent_after)
            session.task = asyncio.get_running_loop().create_task(
                session.run(), name=f"activemq-reader-{self.queue}"
            )
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await conn.close()
            raise
        try:
            await session.ensure_active()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await session.close(self.close_timeout_s)
            raise
        self.log.info("connected", prefetch=self.prefetch, tls=self.tls)
        return session

    async def _handshake(self, conn: Connection) -> tuple[StompFrameParser, tuple[int, int]]:
        headers = {
            "accept-version": STOMP_VERSION,
            "host": self.host,
            "heart-beat": f"{self.heartbeat_ms},{self.heartbeat_ms}",
        }
        if self.username is not None:
            headers["login"] = self.username
        if self.password is not None:
            headers["passcode"] = self.password
        parser = StompFrameParser()
        try:
            conn.writer.write(dump_frame(_frame(ConnectFrame, **headers)))
            with anyio.fail_after(self.connect_timeout_s):
                await conn.writer.drain()
                while True:
                    chunk = await conn.reader.read(_READ_CHUNK)
                    if not chunk:
                        raise SourceError(
                            f"ActiveMQ at {self.where} closed the connection during the STOMP handshake"
                        )
                    for frame in parser.feed(chunk):
                        if isinstance(frame, ErrorFrame):
                            text = frame.headers.get("message") or frame.body.decode("utf-8", "replace")
                            raise SourceError(
                                f"ActiveMQ at {self.where} refused the connection of user "
                                f"{self.username!r}: {text.strip()}"
                            )
                        if isinstance(frame, ConnectedFrame):
                            version = frame.headers.get("version", "1.0")
                            if version != STOMP_VERSION:
                                raise SourceError(
                                    f"ActiveMQ at {self.where} speaks STOMP {version}, not {STOMP_VERSION}"
                                )
                            sx, _, sy = frame.headers.get("heart-beat", "0,0").partition(",")
                            return parser, (int(sx or 0), int(sy or 0))
        except TimeoutError as e:
            raise SourceError(
                f"ActiveMQ at {self.where} did not answer the STOMP CONNECT within {self.connect_timeout_s}s"
            ) from e
        except (OSError, RuntimeError, ValueError) as e:
            raise SourceError(f"STOMP handshake with ActiveMQ at {self.where} failed: {e!r}") from e

    def _heartbeats(self, server: tuple[int, int]) -> tuple[float | None, float | None]:
        """(how often we send, how long the broker may stay silent) in seconds, per STOMP 1.2."""
        server_sends, server_wants = server
        ours = self.heartbeat_ms
        send_every = max(ours, server_wants) / 1000 / 2 if ours and server_wants else None
        silent_after = max(ours, server_sends) / 1000 * 3 if ours and server_sends else None
        return send_every, silent_after

    def _forget(self, s: _Session) -> None:
        if self._session is s:
            self._session = None
            self._lost.append(s)

    # --- QueueSource ------------------------------------------------------------------------------

    def _take(self, msg: QueueMessage) -> bool:
        """Hand a message to the runner, unless its subscription is retiring (it goes back unseen)."""
        d: Delivery = msg.handle
        if not d.session.usable or d.subscription.state is not _SubState.ACTIVE:
            self.ledger.went_back_unseen(msg.item_id)
            return False
        d.subscription.outstanding += 1
        self.ledger.handed_out(msg.item_id)
        return True

    def _take_buffered(self, s: _Session, limit: int) -> list[QueueMessage]:
        out: list[QueueMessage] = []
        while len(out) < limit:
            try:
                msg = s.inbox.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if self._take(msg):
                out.append(msg)
        return out

    async def receive(self, max_messages: int, wait_s: float) -> Sequence[QueueMessage]:
        """Up to ``max_messages``: waits up to ``wait_s`` for the first, then takes what is buffered."""
        if max_messages <= 0:
            return []
        s = await self._live()
        out = self._take_buffered(s, max_messages)
        if not out and wait_s > 0 and s.usable:
            deadline = anyio.current_time() + wait_s
            while not out:
                with anyio.move_on_after(deadline - anyio.current_time()):
                    try:
                        msg = await s.inbox.receive()
                    except (anyio.EndOfStream, anyio.ClosedResourceError):
                        break
                    if self._take(msg):
                        out.append(msg)
                if anyio.current_time() >= deadline:
                    break
            out += self._take_buffered(s, max_messages - len(out))
        if not s.usable:
            self._forget(s)
            raise s.error()
        return out

    @staticmethod
    def _by_session(messages: Sequence[QueueMessage]) -> dict[_Session, list[QueueMessage]]:
        groups: dict[_Session, list[QueueMessage]] = {}
        for m in messages:
            groups.setdefault(m.handle.session, []).append(m)
        return groups

    def _unsettled(self, items: list[QueueMessage]) -> list[QueueMessage]:
        """Drop messages settled before (their subscription is gone): ACK/NACK for them would be an
        ERROR frame that costs the connection."""
        out = [m for m in items if m.handle.subscription.state is not _SubState.RETIRED]
        if len(out) < len(items):
            self.log.warning("already_settled", count=len(items) - len(out))
        return out

    async def ack(self, messages: Sequence[QueueMessage]) -> None:
        """ACK each message; SourceError for messages whose connection was lost (they come back)."""
        lost = 0
        for s, group in self._by_session(messages).items():
            if not s.usable:
                lost += len(group)
                continue
            items = self._unsettled(group)
            frames = []
            for m in items:
                d: Delivery = m.handle
                frames.append(encode_ack(b"ACK", d.ack_id, d.subscription.id))
                d.subscription.outstanding -= 1
                self.ledger.forget(m.item_id)
            await s.write([], b"".join(frames))
            await s.settle({m.handle.subscription for m in items})
        if lost:
            raise SourceError(
                f"connection to ActiveMQ at {self.where} was lost before {lost} message(s) could be "
                "acknowledged: the broker redelivers them"
            )

    async def release(self, messages: Sequence[QueueMessage]) -> Sequence[QueueMessage]:
        """Failed: back to the broker for redelivery, or to its DLQ after ``max_redeliveries``."""
        dead_lettered: list[QueueMessage] = []
        for s, group in self._by_session(messages).items():
            items = self._unsettled(group)
            dead: list[QueueMessage] = []
            back: list[QueueMessage] = []
            for m in items:
                failures = self.ledger.failed(m.item_id)
                (dead if failures > self.max_redeliveries else back).append(m)
            if not s.usable:
                # the lost connection already handed them back; a due dead-lettering happens next time
                self.log.info("release_on_lost_connection", count=len(items))
                continue
            await self._dead_letter(s, dead, f"redelivered {self.max_redeliveries} times")
            dead_lettered += dead
            for m in items:
                m.handle.subscription.outstanding -= 1
            for m in back:
                if m.handle.subscription.state is _SubState.ACTIVE:
                    m.handle.subscription.state = _SubState.RETIRING
            # retire first where possible, so the released messages are the next ones delivered
            await s.settle({m.handle.subscription for m in items})
            if back:
                await s.ensure_active()
                self.log.debug("released", count=len(back))
        return dead_lettered

    async def reject(self, messages: Sequence[QueueMessage], reason: str) -> None:
        """Can never succeed: straight to the broker's DLQ (a NACK), as after the redelivery limit."""
        for s, group in self._by_session(messages).items():
            items = self._unsettled(group)
            if not s.usable:
                # the lost connection handed them back: they are rejected again when they return
                self.log.info("reject_on_lost_connection", count=len(items))
                continue
            await self._dead_letter(s, items, reason)
            for m in items:
                m.handle.subscription.outstanding -= 1
            await s.settle({m.handle.subscription for m in items})

    async def _dead_letter(self, s: _Session, messages: Sequence[QueueMessage], reason: str) -> None:
        """NACK: a poison ack, the broker moves the messages to its dead-letter queue at once."""
        nacks = []
        for m in messages:
            d: Delivery = m.handle
            nacks.append(encode_ack(b"NACK", d.ack_id, d.subscription.id))
            self.ledger.forget(m.item_id)
            self.log.warning("message_dead_lettered", message_id=m.item_id, reason=reason)
        await s.write([], b"".join(nacks))

    async def aclose(self) -> None:
        """Disconnect (unacknowledged messages go back to the queue); shielded, bounded in time."""
        self._closed = True
        sessions = [*self._lost, *([self._session] if self._session is not None else [])]
        self._session, self._lost = None, []
        with anyio.CancelScope(shield=True):
            for s in sessions:
                await s.close(self.close_timeout_s)
        if sessions:
            self.log.info("closed")
