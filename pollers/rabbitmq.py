"""RabbitMQ transport through aio-pika (AMQP 0-9-1): one connection, one channel, one consumer.

The broker pushes up to ``prefetch`` unacknowledged deliveries (``basic.qos``) into an in-memory stream;
``receive`` waits for the first and takes whatever else is already buffered. ``ack`` acknowledges (one
``multiple`` ack when the messages are exactly the lowest outstanding delivery tags), ``release`` nacks
with requeue, so the broker redelivers them with ``redelivered=True`` (a quorum queue's
``x-delivery-limit`` and the queue's dead-letter exchange apply as configured on the broker), ``reject``
nacks without requeue, so the queue's dead-letter exchange applies at once.

No reconnection here: when the connection or channel is lost, ``receive``/``ack``/``release`` raise
SourceError and the engine's supervisor restarts the runner with back-off; the broker requeues every
unacknowledged delivery of the lost channel (redelivered). A queue that does not exist raises
SourceNotFound; refused credentials raise SourceError naming the user and the virtual host.
"""

from __future__ import annotations

import asyncio  # aio-pika/aiormq are asyncio-based: a channel reports its closing as an asyncio future
import contextlib
import math
from collections.abc import Mapping, Sequence
from functools import partial
from itertools import islice
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
import aiormq.exceptions as amqp_errors
import anyio
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec

from engine.events import Envelope
from engine.events_rabbitmq import DEFAULT_VHOST, rabbitmq_envelope, rabbitmq_message
from engine.ports import QueueMessage, SourceError, SourceNotFound, Transport

log = structlog.get_logger("pollers.rabbitmq")

AMQP_PORT = 5672
AMQPS_PORT = 5671
#: basic.qos prefetch-count is a short (the engine passes BatchSize, up to 10,000)
MAX_PREFETCH = 65535
_PROPERTY_NAMES = tuple(spec.Basic.Properties.__slots__)
# what aiormq/aio-pika raise when the broker or the network fails (asyncio's TimeoutError is the builtin)
_AMQP_FAILURES: tuple[type[BaseException], ...] = (
    amqp_errors.AMQPError,
    amqp_errors.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def parse_rabbitmq_endpoint(url: str) -> tuple[str, int, bool]:
    """``amqp://[user:pw@]host[:port][/vhost]``, ``amqps://...`` or a bare ``host[:port]``: (host, port, tls).

    The default port is 5672 (amqp) or 5671 (amqps, Amazon MQ's endpoint form).
    """
    text = url.strip()
    parts = urlsplit(text if "://" in text else f"amqp://{text}")
    scheme = parts.scheme.lower()
    if scheme not in ("amqp", "amqps"):
        raise ValueError(f"not an AMQP endpoint: {url!r} (expected amqp://host:port or amqps://host:port)")
    tls = scheme == "amqps"
    if not parts.hostname:
        raise ValueError(f"no host in AMQP endpoint {url!r}")
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad port in AMQP endpoint {url!r}") from e
    return parts.hostname, port or (AMQPS_PORT if tls else AMQP_PORT), tls


def _url_credentials(url: str) -> tuple[str | None, str | None]:
    text = url.strip()
    parts = urlsplit(text if "://" in text else f"amqp://{text}")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


def _properties(delivered: DeliveredMessage) -> dict[str, Any]:
    props = delivered.header.properties
    return {name: getattr(props, name, None) for name in _PROPERTY_NAMES}


def _attempt(headers: Mapping[str, Any] | None, redelivered: bool) -> int:
    """Quorum queues count deliveries in ``x-delivery-count`` (returns so far); classic queues only say
    whether the message was delivered before."""
    count = (headers or {}).get("x-delivery-count")
    if isinstance(count, int) and not isinstance(count, bool):
        return count + 1
    return 2 if redelivered else 1


class RabbitMqQueue(Transport):
    """A QueueSource over one RabbitMQ queue. Connects on first use (or ``connect()`` /
    ``async with``); not reusable after ``aclose()`` or a lost connection: open a new one."""

    def __init__(
        self,
        url: str,
        queue: str,
        *,
        vhost: str = DEFAULT_VHOST,
        username: str | None = None,
        password: str | None = None,
        prefetch: int = 100,
        broker_arn: str = "",
        connect_timeout_s: float = 10.0,
        close_timeout_s: float = 5.0,
    ) -> None:
        self.host, self.port, self.tls = parse_rabbitmq_endpoint(url)
        url_user, url_password = _url_credentials(url)
        self.username = username if username is not None else (url_user or "guest")
        self.password = password if password is not None else (url_password or "guest")
        self.queue = queue
        self.vhost = vhost or DEFAULT_VHOST
        self.prefetch = max(1, min(MAX_PREFETCH, int(prefetch)))
        self.broker_arn = broker_arn
        self.connect_timeout_s = connect_timeout_s
        self.close_timeout_s = close_timeout_s
        self.envelope: Envelope = rabbitmq_envelope(broker_arn, queue, self.vhost)
        self._send, self._recv = anyio.create_memory_object_stream[DeliveredMessage](math.inf)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        #: queue statistics (depth) ask on this channel
        self._stats: AbstractChannel | None = None
        self._underlay: aiormq.abc.AbstractChannel | None = None
        self._open_lock = anyio.Lock()
        self._settle_lock = anyio.Lock()
        #: delivered, not yet acked or nacked; insertion order = ascending delivery tag
        self._unsettled: dict[int, None] = {}
        self._failure: SourceError | SourceNotFound | None = None
        self._closed = False
        #: bumped per connection attempt: callbacks of an abandoned connection are ignored
        self._generation = 0
        self.log = log.bind(broker=f"{self.host}:{self.port}", vhost=self.vhost, queue=queue)

    @property
    def where(self) -> str:
        return f"queue {self.queue!r} on vhost {self.vhost!r} at {'amqps' if self.tls else 'amqp'}://{self.host}:{self.port}"

    # --- lifecycle ------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def connect(self) -> None:
        """Open the connection, the channel (basic.qos) and the consumer; idempotent.

        Raises SourceNotFound when the queue does not exist, SourceError otherwise (unreachable broker,
        refused credentials, unknown or forbidden virtual host)."""
        self._check()
        if self._underlay is not None:
            return
        async with self._open_lock:
            if self._underlay is not None:
                return
            self._generation += 1
            try:
                await self._open(self._generation)
            except BaseException:
                # leave the object as it was before: connect() may be tried again
                self._generation += 1
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.close_timeout_s):
                    await self._close_connection()
                self._failure = None
                self._unsettled.clear()
                self._send, self._recv = anyio.create_memory_object_stream[DeliveredMessage](math.inf)
                raise

    async def _open(self, gen: int) -> None:
        try:
            self._connection = await aio_pika.connect(
                host=self.host,
                port=self.port,
                login=self.username,
                password=self.password,
                virtualhost=self.vhost,
                ssl=self.tls,
                timeout=self.connect_timeout_s,
                client_properties={"connection_name": f"esm {self.queue}::{self.vhost}"},
            )
        except amqp_errors.ProbableAuthenticationError as e:
            raise SourceError(
                f"RabbitMQ authentication failed for user {self.username!r} on vhost {self.vhost!r} "
                f"at {self.host}:{self.port}: {_reason(e)}"
            ) from e
        except amqp_errors.AuthenticationError as e:
            raise SourceError(
                f"RabbitMQ authentication failed for user {self.username!r} on vhost {self.vhost!r} "
                f"at {self.host}:{self.port}: no common SASL mechanism ({_reason(e)})"
            ) from e
        except (amqp_errors.InvalidFrameError, amqp_errors.ConnectionNotAllowed) as e:
            # connection.open refused: RabbitMQ answers connection.close 530 NOT_ALLOWED for a vhost that
            # does not exist or that the user has no permission on (aiormq reports it as an odd frame)
            raise SourceError(
                f"RabbitMQ refused access to vhost {self.vhost!r} for user {self.username!r} at "
                f"{self.host}:{self.port} (the vhost does not exist or the user has no permissions on it)"
            ) from e
        except _AMQP_FAILURES as e:
            raise SourceError(f"cannot connect to RabbitMQ at {self.host}:{self.port}: {_reason(e)}") from e
        self._connection.close_callbacks.add(partial(self._on_connection_closed, gen))
        try:
            self._channel = await self._connection.channel(publisher_confirms=False)
            await self._channel.set_qos(prefetch_count=self.prefetch)
            underlay = await self._channel.get_underlay_channel()
            underlay.closing.add_done_callback(partial(self._on_channel_closed, gen))
            underlay.on_consumer_cancel_callbacks.add(partial(self._on_consumer_cancelled, gen))
            await underlay.basic_consume(self.queue, self._on_delivery, no_ack=False)
        except amqp_errors.ChannelNotFoundEntity as e:
            raise SourceNotFound(f"RabbitMQ {self.where} does not exist") from e
        except amqp_errors.ChannelAccessRefused as e:
            raise SourceError(
                f"RabbitMQ user {self.username!r} may not read {self.where}: {_reason(e)}"
            ) from e
        except _AMQP_FAILURES as e:
            raise SourceError(f"RabbitMQ consume on {self.where} failed: {_reason(e)}") from e
        self._underlay = underlay
        self.log.info("rabbitmq_consumer_started", prefetch=self.prefetch)

    async def depth(self) -> int | None:
        """The queue's ready messages: a passive declare (the queue is neither created nor changed) on a
        channel of its own, so that a refusal never closes the consumer's."""
        connection = self._connection
        if connection is None:
            return None
        try:
            if self._stats is None or self._stats.is_closed:
                self._stats = await connection.channel(publisher_confirms=False)
            declared = await self._stats.declare_queue(self.queue, passive=True)
        except _AMQP_FAILURES as e:
            raise SourceError(f"RabbitMQ queue {self.where}: {_reason(e)}") from e
        count = declared.declaration_result.message_count
        return None if count is None else int(count)

    async def aclose(self) -> None:
        """Close channel and connection (shielded, bounded): unacknowledged deliveries return to the queue."""
        self._closed = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.close_timeout_s):
            await self._close_connection()
        self._send.close()

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._underlay = self._stats = None
        if connection is None:
            return
        try:
            await connection.close()
        except Exception as e:  # the broker is gone already: nothing left to release
            self.log.debug("rabbitmq_close_failed", error=_reason(e))

    # --- broker callbacks -----------------------------------------------------------------------------

    async def _on_delivery(self, delivered: DeliveredMessage) -> None:
        # aiormq runs one task per delivery, started in delivery order; nothing here awaits, so the
        # stream receives them in order
        tag = delivered.delivery_tag
        if tag is None:
            return
        self._unsettled[tag] = None
        # when closing, the broker requeues it with the channel
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait(delivered)

    def _fail(self, gen: int, error: SourceError | SourceNotFound) -> None:
        if gen != self._generation:
            return  # a connection given up already (failed connect)
        if self._failure is None and not self._closed:
            self._failure = error
            if self._underlay is not None:  # a failing connect() reports its own error
                self.log.warning("rabbitmq_source_lost", error=str(error))
        self._send.close()  # wakes every waiting receive

    def _on_channel_closed(self, gen: int, closing: asyncio.Future[Any]) -> None:
        # a done callback of aiormq's asyncio future, run by the event loop
        exc = None if closing.cancelled() else closing.exception()
        self._fail(gen, SourceError(f"RabbitMQ channel for {self.where} closed: {_reason(exc)}"))

    def _on_connection_closed(self, gen: int, _sender: object, exc: BaseException | None = None) -> None:
        self._fail(gen, SourceError(f"RabbitMQ connection for {self.where} lost: {_reason(exc)}"))

    def _on_consumer_cancelled(self, gen: int, _frame: object) -> None:
        # the broker cancels the consumer when the queue is deleted
        self._fail(
            gen, SourceNotFound(f"RabbitMQ {self.where} was deleted (consumer cancelled by the broker)")
        )

    def _check(self) -> None:
        if self._failure is not None:
            # a fresh exception each time: re-raising one instance grows its traceback
            raise type(self._failure)(str(self._failure))
        if self._closed:
            raise SourceError(f"RabbitMQ source for {self.where} is closed")

    # --- QueueSource ----------------------------------------------------------------------------------

    async def receive(self, max_messages: int, wait_s: float) -> Sequence[QueueMessage]:
        """Up to ``max_messages`` deliveries: waits up to ``wait_s`` for the first, then takes what is
        already buffered."""
        await self.connect()
        delivered: list[DeliveredMessage] = []
        if max_messages < 1:
            return []
        try:
            try:
                delivered.append(self._recv.receive_nowait())
            except anyio.WouldBlock:
                if wait_s > 0:
                    with anyio.move_on_after(wait_s):
                        delivered.append(await self._recv.receive())
            while delivered and len(delivered) < max_messages:
                try:
                    delivered.append(self._recv.receive_nowait())
                except anyio.WouldBlock:
                    break
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        # deliveries of a lost channel can no longer be settled; the broker gives them out again
        self._check()
        return [self._message(d) for d in delivered]

    def _message(self, delivered: DeliveredMessage) -> QueueMessage:
        # the handle is aiormq's DeliveredMessage (delivery tag, body, properties, channel) rather than
        # aio-pika's IncomingMessage: building one of those costs about 57 us a message here, half
        # the raw per-message budget of an aio-pika consumer (5,850/s); wrap with
        # aio_pika.IncomingMessage(handle) if its API is wanted
        props = _properties(delivered)
        tag = delivered.delivery_tag
        redelivered = bool(getattr(delivered.delivery, "redelivered", False))
        return QueueMessage(
            record=rabbitmq_message(delivered.body, props, redelivered=redelivered),
            item_id=str(tag),
            handle=delivered,
            extra={"attempt": _attempt(props.get("headers"), redelivered), "delivery_tag": tag},
        )

    async def ack(self, messages: Sequence[QueueMessage]) -> None:
        await self._settle(messages, requeue=None)

    async def release(self, messages: Sequence[QueueMessage]) -> None:
        """basic.nack with requeue: redelivered with ``redelivered=True`` (quorum queues count it toward
        ``x-delivery-limit``; past it the broker dead-letters or drops the message, out of our sight)."""
        await self._settle(messages, requeue=True)

    async def reject(self, messages: Sequence[QueueMessage], reason: str) -> None:
        """basic.nack without requeue: the queue's dead-letter exchange gets them (``x-death`` says
        ``rejected``); a queue without one drops them, as RabbitMQ does."""
        await self._settle(messages, requeue=False)
        self.log.debug("rejected", count=len(messages), reason=reason)

    async def _settle(self, messages: Sequence[QueueMessage], *, requeue: bool | None) -> None:
        """``requeue``: None acks, True nacks for redelivery, False nacks for dead-lettering."""
        if not messages:
            return
        self._check()
        channel = self._underlay
        if channel is None:
            raise SourceError(f"RabbitMQ source for {self.where} is not connected")
        verb = "ack" if requeue is None else "nack" if requeue else "reject"
        async with self._settle_lock:
            tags = sorted({int(m.handle.delivery_tag) for m in messages})
            unknown = [t for t in tags if t not in self._unsettled]
            if unknown:
                # settling a tag twice would make the broker close the channel (PRECONDITION_FAILED)
                self.log.warning(
                    "rabbitmq_settle_unknown_tags", op=verb, tags=unknown[:10], count=len(unknown)
                )
                tags = [t for t in tags if t in self._unsettled]
                if not tags:
                    return
            # one frame when the messages are exactly the lowest outstanding tags
            lowest = list(islice(self._unsettled, len(tags)))
            frames: list[tuple[int, bool]] = (
                [(tags[-1], True)] if len(tags) > 1 and lowest == tags else [(t, False) for t in tags]
            )
            for t in tags:
                del self._unsettled[t]
            try:
                for i, (tag, multiple) in enumerate(frames):
                    last = i == len(frames) - 1  # frames are written in order: wait for the last one only
                    if requeue is None:
                        await channel.basic_ack(tag, multiple=multiple, wait=last)
                    else:
                        await channel.basic_nack(tag, multiple=multiple, requeue=requeue, wait=last)
            except _AMQP_FAILURES as e:
                self._check()
                raise SourceError(f"RabbitMQ {verb} on {self.where} failed: {_reason(e)}") from e


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    if isinstance(exc, amqp_errors.AMQPError) and exc.args:
        return " ".join(str(a) for a in exc.args)
    return str(exc) or type(exc).__name__
