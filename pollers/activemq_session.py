"""One STOMP connection to ActiveMQ Classic: connect and handshake, subscriptions, receipts, the reader.

:func:`open_session` connects (stompman's ``Connection``), negotiates STOMP 1.2 and heartbeats, starts
the session's reader in the task group it is given (the transport's) and subscribes. The reader turns
MESSAGE frames into :class:`QueueMessage` records in an anyio memory stream (the session's ``inbox``),
sends and watches STOMP heartbeats (10 s; a broker silent for 30 s counts as lost) and completes
receipts. Whatever ends the connection is kept as the session's ``failure``, for the transport to
raise: SourceError for the connection, the exception itself for a bug. Subscriptions are
``client-individual`` with ``activemq.prefetchSize``; which one hands out messages is the transport's
business (:class:`SubState`).
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import cast

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from stompman.connection import Connection
from stompman.frames import (
    AnyClientFrame,
    ConnectedFrame,
    ConnectFrame,
    DisconnectFrame,
    ErrorFrame,
    MessageFrame,
    ReceiptFrame,
    SubscribeFrame,
    UnsubscribeFrame,
)
from stompman.serde import NEWLINE, dump_frame
from structlog.typing import FilteringBoundLogger

from engine.events_activemq import activemq_message
from engine.ports import QueueMessage, SourceError
from pollers.activemq_ledger import RedeliveryLedger
from pollers.stomp import STOMP_VERSION, StompFrameParser, client_frame

_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StompSettings:
    """Where a session connects, as whom, and what it subscribes to."""

    host: str
    port: int
    tls: bool
    destination: str  # /queue/<name>
    username: str | None
    password: str | None
    prefetch: int
    connect_timeout_s: float
    receipt_timeout_s: float
    heartbeat_ms: int

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


class SubState(Enum):
    ACTIVE = "active"  # hands out messages
    RETIRING = "retiring"  # holds released messages; unsubscribed once nothing it delivered is in flight
    RETIRED = "retired"  # UNSUBSCRIBE sent


class Subscription:
    def __init__(self) -> None:
        self.id = f"esm-{uuid.uuid4().hex[:16]}"
        self.state = SubState.ACTIVE
        #: messages handed to the runner and not yet acked or released
        self.outstanding = 0


@dataclass(frozen=True, eq=False)
class Delivery:
    """``QueueMessage.handle``: where the message was delivered and the id its ACK/NACK names."""

    session: Session
    subscription: Subscription
    ack_id: str


@dataclass
class _Pending:
    event: anyio.Event
    error: ErrorFrame | None = None


async def open_session(
    settings: StompSettings,
    ledger: RedeliveryLedger,
    log: FilteringBoundLogger,
    tg: anyio.abc.TaskGroup,
    reader_name: str,
    close_timeout_s: float,
) -> Session:
    """Connect, handshake, start the reader in ``tg`` and subscribe; SourceError when any of it fails."""
    where = settings.where
    try:
        conn = await Connection.connect(
            host=settings.host,
            port=settings.port,
            timeout=max(1, math.ceil(settings.connect_timeout_s)),
            read_max_chunk_size=_READ_CHUNK,
            ssl=True if settings.tls else None,
        )
    except OSError as e:
        raise SourceError(f"cannot connect to ActiveMQ at {where}: {e!r}") from e
    if conn is None:
        raise SourceError(
            f"cannot connect to ActiveMQ at {where}: connection refused, unresolvable host or "
            f"no answer within {settings.connect_timeout_s}s"
        )
    try:
        parser, server_hb = await _handshake(settings, conn)
        send_every, silent_after = _heartbeats(settings.heartbeat_ms, server_hb)
        session = Session(settings, ledger, log, conn, parser, send_every, silent_after)
        tg.start_soon(session.run, name=reader_name)
    except BaseException:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await conn.close()
        raise
    try:
        await session.ensure_active()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await session.close(close_timeout_s)
        raise
    return session


async def _handshake(settings: StompSettings, conn: Connection) -> tuple[StompFrameParser, tuple[int, int]]:
    """CONNECT, then the parser that read CONNECTED and the broker's heart-beat header."""
    where = settings.where
    headers = {
        "accept-version": STOMP_VERSION,
        "host": settings.host,
        "heart-beat": f"{settings.heartbeat_ms},{settings.heartbeat_ms}",
    }
    if settings.username is not None:
        headers["login"] = settings.username
    if settings.password is not None:
        headers["passcode"] = settings.password
    parser = StompFrameParser()
    try:
        conn.writer.write(dump_frame(client_frame(ConnectFrame, **headers)))
        with anyio.fail_after(settings.connect_timeout_s):
            await conn.writer.drain()
            while True:
                chunk = await conn.reader.read(_READ_CHUNK)
                if not chunk:
                    raise SourceError(f"ActiveMQ at {where} closed the connection during the STOMP handshake")
                for frame in parser.feed(chunk):
                    if isinstance(frame, ErrorFrame):
                        text = frame.headers.get("message") or frame.body.decode("utf-8", "replace")
                        raise SourceError(
                            f"ActiveMQ at {where} refused the connection of user "
                            f"{settings.username!r}: {text.strip()}"
                        )
                    if isinstance(frame, ConnectedFrame):
                        version = frame.headers.get("version", "1.0")
                        if version != STOMP_VERSION:
                            raise SourceError(
                                f"ActiveMQ at {where} speaks STOMP {version}, not {STOMP_VERSION}"
                            )
                        sx, _, sy = frame.headers.get("heart-beat", "0,0").partition(",")
                        return parser, (int(sx or 0), int(sy or 0))
    except TimeoutError as e:
        raise SourceError(
            f"ActiveMQ at {where} did not answer the STOMP CONNECT within {settings.connect_timeout_s}s"
        ) from e
    except (OSError, RuntimeError, ValueError) as e:
        raise SourceError(f"STOMP handshake with ActiveMQ at {where} failed: {e!r}") from e


def _heartbeats(ours: int, server: tuple[int, int]) -> tuple[float | None, float | None]:
    """(how often we send, how long the broker may stay silent) in seconds, per STOMP 1.2."""
    server_sends, server_wants = server
    send_every = max(ours, server_wants) / 1000 / 2 if ours and server_wants else None
    silent_after = max(ours, server_sends) / 1000 * 3 if ours and server_sends else None
    return send_every, silent_after


class Session:
    """One STOMP connection: its reader, subscriptions, receipts and inbox."""

    def __init__(
        self,
        settings: StompSettings,
        ledger: RedeliveryLedger,
        log: FilteringBoundLogger,
        conn: Connection,
        parser: StompFrameParser,
        send_every_s: float | None,
        silent_after_s: float | None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.log = log
        self.conn = conn
        self.parser = parser
        self.send_every_s = send_every_s
        self.silent_after_s = silent_after_s
        self.subs: dict[str, Subscription] = {}
        self.active: Subscription | None = None
        self.rotate_lock = anyio.Lock()
        self.receipts: dict[str, _Pending] = {}
        self.failure: BaseException | None = None
        self.closing = False
        self.closed = False
        self.outbox: MemoryObjectSendStream[QueueMessage]
        self.inbox: MemoryObjectReceiveStream[QueueMessage]
        self.outbox, self.inbox = anyio.create_memory_object_stream[QueueMessage](math.inf)
        #: the reader's scope: ``close`` ends it, the task group that runs it joins it
        self.reader_scope = anyio.CancelScope()

    # --- state ------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.failure is None and not self.closed

    def error(self) -> Exception:
        f = self.failure
        if f is None:
            return SourceError(f"the connection to ActiveMQ at {self.settings.where} is closed")
        if isinstance(f, SourceError):
            return SourceError(str(f))
        return RuntimeError(f"the ActiveMQ reader for {self.settings.where} crashed: {f!r}")

    def fail(self, failure: BaseException) -> None:
        """The connection is unusable: wake every waiter and close the socket."""
        if self.failure is None and not self.closed:
            if self.closing:  # the broker ends the connection after DISCONNECT: expected
                self.closed = True
            else:
                self.failure = failure
                self.log.warning("connection_lost", error=str(failure))
        for pending in self.receipts.values():
            pending.event.set()
        self.outbox.close()
        self.conn.writer.close()

    # --- writing ----------------------------------------------------------------------------------

    def _lost(self, e: BaseException) -> SourceError:
        err = SourceError(
            f"connection to ActiveMQ at {self.settings.where} lost: {e!r}; "
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
        where, timeout_s = self.settings.where, self.settings.receipt_timeout_s
        receipt = f"r-{uuid.uuid4().hex}"
        pending = _Pending(anyio.Event())
        self.receipts[receipt] = pending
        try:
            await self.write([make(receipt)])
            with anyio.move_on_after(timeout_s) as scope:
                await pending.event.wait()
        finally:
            self.receipts.pop(receipt, None)
        if pending.error is not None:
            message = pending.error.headers.get("message", "")
            raise SourceError(f"ActiveMQ at {where} refused to {what}: {message}")
        if scope.cancelled_caught:
            err = SourceError(f"ActiveMQ at {where} did not confirm {what} within {timeout_s}s")
            self.fail(err)
            raise err
        if not self.usable:
            raise self.error()

    # --- subscriptions ----------------------------------------------------------------------------

    async def subscribe(self) -> Subscription:
        sub = Subscription()
        self.subs[sub.id] = sub  # before SUBSCRIBE: the first MESSAGE may come before the RECEIPT
        destination, prefetch = self.settings.destination, self.settings.prefetch
        await self.request(
            lambda r: client_frame(
                SubscribeFrame,
                id=sub.id,
                destination=destination,
                ack="client-individual",
                receipt=r,
                **{"activemq.prefetchSize": str(prefetch)},
            ),
            f"subscribe to {destination}",
        )
        self.log.debug("subscribed", subscription=sub.id, prefetch=prefetch)
        return sub

    async def retire(self, sub: Subscription) -> None:
        """UNSUBSCRIBE: the broker requeues what the subscription holds unacknowledged."""
        if sub.state is SubState.RETIRED:
            return
        sub.state = SubState.RETIRED
        await self.request(
            lambda r: client_frame(UnsubscribeFrame, id=sub.id, receipt=r), f"unsubscribe {sub.id}"
        )
        self.subs.pop(sub.id, None)
        self.log.debug("subscription_retired", subscription=sub.id)

    async def settle(self, subs: Iterable[Subscription]) -> None:
        """Retire the retiring subscriptions nothing is in flight for."""
        for sub in subs:
            if sub.state is SubState.RETIRING and sub.outstanding <= 0:
                await self.retire(sub)

    async def ensure_active(self) -> None:
        async with self.rotate_lock:
            if self.active is None or self.active.state is not SubState.ACTIVE:
                self.active = await self.subscribe()

    # --- reading ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """The reader: frames in, heartbeats out, until the connection ends or ``close`` ends it."""
        with self.reader_scope:
            try:
                await self._read()
            except SourceError:
                pass
            except (OSError, RuntimeError) as e:
                self._lost(e)
            except Exception as e:  # a bug: surfaced by receive() as such, not as a SourceError
                self.log.exception("reader_crashed")
                self.fail(e)
            finally:
                if self.usable:  # ended by close
                    self.closed = True
                    self.fail(SourceError("closed"))

    async def _read(self) -> None:
        clock = anyio.current_time
        last_read = last_write = clock()
        tick = min(t for t in (self.send_every_s, self.silent_after_s, math.inf) if t is not None)
        reader = self.conn.reader
        while True:
            chunk: bytes | None = None
            with anyio.move_on_after(tick):
                chunk = await reader.read(_READ_CHUNK)
            now = clock()
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
        ledger = self.ledger
        sub = self.subs.get(headers.get("subscription", ""))
        if sub is None or sub.state is not SubState.ACTIVE:
            # the broker gets it back when that subscription ends
            ledger.went_back_unseen(message_id)
            return
        record = activemq_message(
            frame.body,
            cast(dict[str, str], headers),
            broker_host=self.settings.host,
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
        """DISCONNECT (the broker requeues everything unacknowledged) within ``timeout_s``, then end the
        reader (its task group joins it)."""
        with anyio.move_on_after(timeout_s):
            if self.usable:
                self.closing = True
                with contextlib.suppress(SourceError):
                    await self.request(lambda r: client_frame(DisconnectFrame, receipt=r), "disconnect")
        if self.usable:
            self.closed = True
            self.fail(SourceError("closed"))  # closes the socket and the inbox
        # what the reader had buffered never reached the function
        try:
            while True:
                msg = self.inbox.receive_nowait()
                self.ledger.went_back_unseen(msg.item_id)
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        self.inbox.close()
        self.reader_scope.cancel()
