"""ActiveMQ Classic transport over STOMP 1.2: :class:`ActiveMqQueue`, a QueueSource for one queue.

An async context manager: ``async with`` opens the task group that owns its readers. One STOMP
connection (a session, pollers/activemq_session.py) at a time, opened by the first ``receive`` and again
by the call after a lost one; one ``client-individual`` subscription at a time hands out messages, with
``activemq.prefetchSize`` = ``prefetch``. ``receive`` takes from the session's inbox, ``ack`` sends one
ACK per message (codec: pollers/stomp.py). Delivery counts live in a :class:`RedeliveryLedger`
(pollers/activemq_ledger.py), given by the transport factory so a re-created source keeps them.

Why not ``stompman.Client``: it reconnects and resubscribes on its own and then silently drops the ACKs
of messages received before (the engine must hear of a lost connection: SourceError, runner restart);
it loses the broker's ERROR text when the login is refused; and its internal TaskGroup cancels the task
that entered it when the connection cannot be restored. The lower layers (``Connection``, frames,
``dump_frame``) are used as they are.

Failure and redelivery (ActiveMQ Classic 5.18, measured):
* A STOMP NACK is a poison ack: the message goes to ``ActiveMQ.DLQ`` at once, without redelivery.
* A message comes back, with ``redelivered:true``, only when the consumer holding it unacknowledged goes
  away (UNSUBSCRIBE or DISCONNECT). The broker then applies no ``maximumRedeliveries`` at all over STOMP
  (a message was delivered ten times without reaching the DLQ) and frames carry no delivery count: in
  ActiveMQ Classic the redelivery policy is enforced by the JMS client, which poison-acks a message whose
  redelivery counter exceeds ``maximumRedeliveries`` (6 by default, the policy AWS uses).

So the engine plays the JMS client's part: the ledger counts failures per message id and each delivery
carries ``extra["attempt"]``; the queue runner applies the limit (the MQ profile's ``max_redeliveries``)
and ``reject``s a message past it. Here:
* ``reject`` NACKs: the broker moves the message to its dead-letter queue (``ActiveMQ.DLQ`` by default,
  or whatever the broker's deadLetterStrategy says);
* ``release`` counts a failure and hands the message back by retiring the subscription that holds it:
  it stops handing out messages at once, a fresh subscription takes over, and the old one is
  unsubscribed as soon as every other message delivered through it has been acked or released. Batches
  in flight on the same subscription therefore finish normally (their ACKs count, they are not
  redelivered); a failed message comes back at most one in-flight batch later. Messages the broker had
  prefetched into the retired subscription but that never reached the function go back too; the broker
  flags them ``redelivered``, and the record says ``redelivered: false`` for them, as a JMS client that
  never delivered them would.
* A lost connection, and closing, hand back every unacknowledged message of the connection, in-flight
  ones included: they are redelivered (``redelivered: true``) and may be processed twice: at-least-once.
  ACKs for messages of a lost connection raise SourceError (the broker redelivers them).

Persistence is the producer's business: a STOMP SEND is non-persistent unless it says ``persistent:true``.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import anyio
import anyio.abc
import structlog

from engine.ports import QueueMessage, SourceError, TaskOwner
from pollers.activemq_ledger import RedeliveryLedger
from pollers.activemq_session import Delivery, Session, StompSettings, SubState, open_session
from pollers.stomp import encode_ack

log = structlog.get_logger("pollers.activemq")

PLAIN_SCHEMES = frozenset({"stomp", "stomp+nio", "tcp"})
SSL_SCHEMES = frozenset({"stomp+ssl", "stomp+nio+ssl", "ssl"})
DEFAULT_PORT = 61613
DEFAULT_SSL_PORT = 61614


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


def queue_name(queue: str) -> str:
    """The queue's name without STOMP's ``/queue/`` prefix (mappings may give either)."""
    return queue.removeprefix("/queue/")


class ActiveMqQueue(TaskOwner):
    """A :class:`engine.ports.QueueSource` for one ActiveMQ Classic queue over STOMP; use it inside
    ``async with`` (its readers run in the task group that opens).

    ``endpoint``: ``stomp://host:port`` or ``stomp+ssl://host:port``; ``prefetch``: the most messages the
    broker pushes ahead of acknowledgements (``activemq.prefetchSize``); ``ledger``: the delivery counts
    of this broker's queue (a fresh one when None). See the module docstring for what ``release`` does.
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
        connect_timeout_s: float = 5.0,
        receipt_timeout_s: float = 10.0,
        heartbeat_ms: int = 10_000,
        close_timeout_s: float = 5.0,
        ledger: RedeliveryLedger | None = None,
    ) -> None:
        host, port, tls = parse_endpoint(endpoint)
        self.endpoint = endpoint
        self.queue = queue_name(queue)
        self.broker_arn = broker_arn
        self.settings = StompSettings(
            host=host,
            port=port,
            tls=tls,
            destination=f"/queue/{self.queue}",
            username=username,
            password=password,
            prefetch=max(1, int(prefetch)),
            connect_timeout_s=connect_timeout_s,
            receipt_timeout_s=receipt_timeout_s,
            heartbeat_ms=heartbeat_ms,
        )
        self.close_timeout_s = close_timeout_s
        self.where = self.settings.where
        self.ledger = ledger if ledger is not None else RedeliveryLedger()
        self.log = log.bind(broker=broker_arn, endpoint=self.where, queue=self.queue)
        self._session: Session | None = None
        #: sessions whose connection was lost: ``aclose`` returns what their readers had buffered
        self._lost: list[Session] = []
        self._open_lock = anyio.Lock()
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------------------

    def _start(self, tasks: anyio.abc.TaskGroup) -> None:
        if self._closed:  # readers start with the first session, in ``tasks``
            raise RuntimeError(f"the ActiveMQ source for {self.queue} at {self.where} was opened before")

    async def aclose(self) -> None:
        """Disconnect (unacknowledged messages go back to the queue) and end the readers; idempotent."""
        self._closed = True
        sessions = [*self._lost, *([self._session] if self._session is not None else [])]
        self._session, self._lost = None, []
        with anyio.CancelScope(shield=True):
            for s in sessions:
                await s.close(self.close_timeout_s)
        if sessions:
            self.log.info("closed")

    # --- connection -------------------------------------------------------------------------------

    async def _live(self) -> Session:
        if self._closed:
            raise SourceError(
                f"the ActiveMQ source for {self.settings.destination} at {self.where} is closed"
            )
        s = self._session
        if s is not None and not s.usable:
            # report the loss once; the next call connects again
            self._forget(s)
            raise s.error()
        if s is not None:
            return s
        async with self._open_lock:
            if self._session is None:
                if self._tasks is None:
                    raise RuntimeError("enter the ActiveMqQueue (async with) first: it owns the readers")
                self._session = await open_session(
                    self.settings,
                    self.ledger,
                    self.log,
                    self._tasks,
                    f"activemq-reader-{self.queue}",
                    self.close_timeout_s,
                )
                self.log.info("connected", prefetch=self.settings.prefetch, tls=self.settings.tls)
            return self._session

    def _forget(self, s: Session) -> None:
        if self._session is s:
            self._session = None
            self._lost.append(s)

    # --- QueueSource ------------------------------------------------------------------------------

    def _take(self, msg: QueueMessage) -> bool:
        """Hand a message to the runner, unless its subscription is retiring (it goes back unseen)."""
        d: Delivery = msg.handle
        if not d.session.usable or d.subscription.state is not SubState.ACTIVE:
            self.ledger.went_back_unseen(msg.item_id)
            return False
        d.subscription.outstanding += 1
        self.ledger.handed_out(msg.item_id)
        return True

    def _take_buffered(self, s: Session, limit: int) -> list[QueueMessage]:
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
    def _by_session(messages: Sequence[QueueMessage]) -> dict[Session, list[QueueMessage]]:
        groups: dict[Session, list[QueueMessage]] = {}
        for m in messages:
            groups.setdefault(m.handle.session, []).append(m)
        return groups

    def _unsettled(self, items: list[QueueMessage]) -> list[QueueMessage]:
        """Drop messages settled before (their subscription is gone): ACK/NACK for them would be an
        ERROR frame that costs the connection."""
        out = [m for m in items if m.handle.subscription.state is not SubState.RETIRED]
        if len(out) < len(items):
            self.log.warning("already_settled", count=len(items) - len(out))
        return out

    async def depth(self) -> int | None:
        return None  # STOMP has no queue statistics

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

    async def release(self, messages: Sequence[QueueMessage]) -> None:
        """Failed: counted (the next delivery's ``attempt``) and handed back to the broker for redelivery.
        Never dead-letters: the redelivery limit is the queue runner's, which rejects past it."""
        for s, group in self._by_session(messages).items():
            items = self._unsettled(group)
            for m in items:
                self.ledger.failed(m.item_id)
            if not s.usable:
                # the lost connection already handed them back
                self.log.info("release_on_lost_connection", count=len(items))
                continue
            for m in items:
                sub = m.handle.subscription
                sub.outstanding -= 1
                if sub.state is SubState.ACTIVE:
                    sub.state = SubState.RETIRING
            # retire first where possible, so the released messages are the next ones delivered
            await s.settle({m.handle.subscription for m in items})
            if items:
                await s.ensure_active()
                self.log.debug("released", count=len(items))

    async def reject(self, messages: Sequence[QueueMessage], reason: str) -> None:
        """Can never succeed (or past the redelivery limit): a NACK, a poison ack, so the broker moves
        the messages to its dead-letter queue at once."""
        for s, group in self._by_session(messages).items():
            items = self._unsettled(group)
            if not s.usable:
                # the lost connection handed them back: they are rejected again when they return
                self.log.info("reject_on_lost_connection", count=len(items))
                continue
            nacks = []
            for m in items:
                d: Delivery = m.handle
                nacks.append(encode_ack(b"NACK", d.ack_id, d.subscription.id))
                d.subscription.outstanding -= 1
                self.ledger.forget(m.item_id)
                self.log.warning("message_dead_lettered", message_id=m.item_id, reason=reason)
            await s.write([], b"".join(nacks))
            await s.settle({m.handle.subscription for m in items})
