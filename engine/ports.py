"""The engine's ports: what a source, an invoker and a store must offer. Pollers implement the sources."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self

import anyio
import anyio.abc

from engine.model import EventSourceMapping

# --- transports -----------------------------------------------------------------------------------

#: how long a transport's close may take once its runner stops (leaving a Kafka group, STOMP DISCONNECT)
CLOSE_DEADLINE_S = 5.0


class Transport:
    """A source's transport, opened with ``async with`` inside its runner's task group: what it starts it
    owns, and ``__aexit__`` ends it (shielded, with a deadline: a runner being cancelled still closes)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_DEADLINE_S):
            await self.aclose()

    async def aclose(self) -> None:
        """Release what the transport holds; idempotent."""


class TaskOwner(Transport):
    """A transport with tasks of its own (a reader, a pump, a committer): they run in the task group it
    opens on entry (``_tasks``, the same task as its runner's) and are cancelled and joined on exit."""

    #: end the tasks before the close (a committer: the close's flush is the last commit); else after
    #: it (a reader the close still needs, or that a close deadline may leave running)
    end_tasks_first: ClassVar[bool] = False
    _tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        if self._tasks is not None:
            raise RuntimeError(f"{type(self).__name__} entered twice")
        tasks = anyio.create_task_group()
        await tasks.__aenter__()
        self._tasks = tasks
        try:
            self._start(tasks)
        except BaseException as e:
            await self.__aexit__(type(e), e, e.__traceback__)
            raise
        return self

    def _start(self, tasks: anyio.abc.TaskGroup) -> None:
        """Start what runs while the transport is entered (each task named)."""

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks, self._tasks = self._tasks, None

        async def end_tasks() -> None:
            if tasks is not None:
                tasks.cancel_scope.cancel()
                # not given the body's exception: the runner's errors go on as they are, not wrapped
                await tasks.__aexit__(None, None, None)

        if self.end_tasks_first:
            try:
                await end_tasks()
            finally:
                await super().__aexit__(et, e, tb)
        else:
            try:
                await super().__aexit__(et, e, tb)
            finally:
                await end_tasks()


class Opened(Protocol):
    """What a runner opens with ``async with`` and leaves closed, whatever happened."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


# --- invocation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvokeResult:
    """The outcome of one synchronous (RequestResponse) invocation that reached the function.

    ``function_error`` is None on success, "Unhandled" for a thrown error / timeout / crash
    (and "Handled" where a runtime reports one), exactly as Lambda's X-Amz-Function-Error header.
    """

    payload: bytes
    function_error: str | None = None
    status_code: int = 200
    executed_version: str = "$LATEST"
    request_id: str = ""
    duration_ms: float = 0.0


class InvokeError(Exception):
    """The function could not be invoked (throttled, missing, service error of the invoker itself).

    AWS retries these without counting them against MaximumRetryAttempts.
    """

    def __init__(self, message: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled


@dataclass(frozen=True)
class FunctionInfo:
    function_arn: str
    timeout_s: float
    role_arn: str


class Invoker(Protocol):
    info: FunctionInfo

    async def invoke(self, payload: bytes) -> InvokeResult: ...


class FunctionResolver(Protocol):
    """Resolves a mapping's FunctionName (any of its four forms) to something that can be invoked."""

    async def resolve(self, function_ref: str) -> Invoker:
        """Raises FunctionNotFound when neither the registry nor the Lambda endpoint knows it."""
        ...


class FunctionNotFound(LookupError):
    pass


# --- runners -------------------------------------------------------------------------------------


class Runner(Protocol):
    """A mapping's runner, as the supervisor drives it."""

    async def run(self, ready: Callable[[], None]) -> None:
        """Poll until drained or cancelled; call ``ready()`` once the positions to read from are fixed."""
        ...

    def drain(self, *, abandon_waits: bool = False) -> None:
        """Stop taking new work; what is in flight finishes. ``abandon_waits`` (the engine stops): a long
        poll or read still waiting for records is given up at once instead of answered."""
        ...


# --- sources --------------------------------------------------------------------------------------


class SourceNotFound(LookupError):
    """The event source does not exist; the message is the AWS text for the source type."""


@dataclass(frozen=True)
class SourceDescription:
    """What create/update validation needs to know about the source."""

    visibility_timeout_s: int | None = None
    fifo: bool = False


@dataclass(frozen=True)
class QueueMessage:
    """One message received from a queue: the event record (as the function sees it), its id for
    partial batch responses, and the transport's handle to acknowledge it."""

    record: Mapping[str, Any]
    item_id: str
    handle: Any
    group: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class QueueSource(Opened, Protocol):
    """A queue transport (SQS, RabbitMQ, ActiveMQ): receive, acknowledge, give back."""

    async def receive(self, max_messages: int, wait_s: float) -> Sequence[QueueMessage]: ...

    async def ack(self, messages: Sequence[QueueMessage]) -> None:
        """Processing is final for these messages (success or filtered out): remove them."""
        ...

    async def release(self, messages: Sequence[QueueMessage]) -> None:
        """Processing failed: hand the messages back for redelivery as the broker does it (the broker's
        redelivery limit, where it has one, is the pipeline's: it rejects past it instead)."""
        ...

    async def reject(self, messages: Sequence[QueueMessage], reason: str) -> None:
        """Processing can never succeed (``reason``, e.g. MaximumPayloadSizeExceeded): dead-letter the
        messages as the broker does it (RabbitMQ: the queue's dead-letter exchange; ActiveMQ: its DLQ;
        SQS: the redrive policy once the visibility timeout returns them). Never deletes them."""
        ...

    async def depth(self) -> int | None:
        """Messages waiting to be delivered (SQS: ApproximateNumberOfMessages; RabbitMQ: the queue's
        ready count); None where the broker does not say (ActiveMQ over STOMP)."""
        ...


class SourceFactory(Protocol):
    async def describe(self, mapping: EventSourceMapping) -> SourceDescription:
        """Raises SourceNotFound with the AWS message when the source does not exist."""
        ...

    def open_queue(self, mapping: EventSourceMapping) -> QueueSource: ...


class SourceError(Exception):
    """A temporary failure of the source (broker or endpoint unreachable, throttled):
    the supervisor restarts the mapping's runner with back-off. Pollers translate their SDK errors into
    this at their boundary; any other exception from a runner is a bug and crashes the engine."""


class ConsumerStopped(SourceError):
    """Retrying cannot help until the mapping (or its secret) changes, so its consumer stops (spec 6.6).
    ``reason`` is the StateTransitionReason code that says why."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


#: StateTransitionReason of a mapping whose configuration cannot run (AWS's code, spec 6.6)
ESM_CONFIG_NOT_VALID = "ESM_CONFIG_NOT_VALID"


class SourceAccessDenied(ConsumerStopped):
    """The source refused the mapping's credentials or permissions: EVENT_SOURCE_AUTHN_ERROR or
    EVENT_SOURCE_AUTHZ_ERROR."""


# --- ordered streams (Kinesis, DynamoDB Streams, Kafka) ----------------------------------------------


@dataclass(frozen=True)
class ShardInfo:
    shard_id: str
    #: ParentShardId and AdjacentParentShardId: a child is read only after its parents are finished
    parent_ids: tuple[str, ...] = ()
    #: the shard has an EndingSequenceNumber: once read to its end it is finished
    closed: bool = False


@dataclass(frozen=True)
class StartPosition:
    """Where a shard reader starts: TRIM_HORIZON, LATEST, AT_TIMESTAMP (``timestamp``, epoch seconds) or
    AFTER_SEQUENCE_NUMBER (``sequence_number``: resume after a checkpoint)."""

    kind: str
    sequence_number: str | None = None
    timestamp: float | None = None


# slots, not frozen: built once per record on the hottest path, where a frozen __init__ costs twice as much
@dataclass(slots=True)
class StreamRecord:
    """One record of a shard: the event record as the function receives it, its sequence number
    (decimal string; compare as int), when it arrived (epoch seconds: Kinesis approximateArrivalTimestamp,
    DynamoDB ApproximateCreationDateTime) and the key that picks its lane (Kinesis partition key,
    DynamoDB item keys)."""

    record: Mapping[str, Any]
    sequence_number: str
    arrival_s: float
    lane_key: str
    #: ``record`` as compact UTF-8 JSON when the transport built it already (it is then not encoded again)
    encoded: bytes | None = None


@dataclass(frozen=True)
class ShardRead:
    records: Sequence[StreamRecord]
    #: the shard is closed and every record of it has been returned
    end_of_shard: bool = False
    #: the shard now belongs to another consumer (a Kafka partition revoked by a rebalance): stop reading
    #: it without marking it finished; it may come back
    released: bool = False
    millis_behind_latest: int | None = None
    #: records between this read and the shard's end (Kafka: the partition's high watermark); None when
    #: the source does not say
    lag: int | None = None


class SourceThrottled(SourceError):
    """ProvisionedThroughputExceeded / LimitExceeded: back off and read again, nothing is lost."""


class ShardReader(Opened, Protocol):
    async def read(self, limit: int) -> ShardRead:
        """The next records after the last one returned (renewing an expired iterator from there)."""
        ...


class SourceCommits(Protocol):
    """A source that keeps the read positions itself (Kafka: the consumer group's committed offsets)
    instead of the engine's store."""

    async def commit(self, shard_id: str, sequence_number: str) -> None:
        """Every record of the shard up to ``sequence_number`` is finished."""
        ...


class TopicProducer(Protocol):
    """Produces failure records to a ``kafka://<topic>`` on-failure destination."""

    async def produce(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Sends (key, value) messages; raises engine.senders.DestinationError when it cannot."""
        ...


class StreamSource(Opened, Protocol):
    async def identity(self) -> str:
        """What distinguishes this stream from one deleted and re-created under the same name
        (Kinesis StreamCreationTimestamp, DynamoDB stream label)."""
        ...

    async def list_shards(self) -> Sequence[ShardInfo]: ...

    async def open_shard(self, shard_id: str, start: StartPosition) -> ShardReader:
        """A reader of one shard from ``start``, to be entered with ``async with``."""
        ...
