"""The engine's ports: what a source, an invoker and a store must offer. Pollers implement the sources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.model import EventSourceMapping

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


class QueueSource(Protocol):
    """A queue transport (SQS, RabbitMQ, ActiveMQ): receive, acknowledge, give back."""

    async def receive(self, max_messages: int, wait_s: float) -> Sequence[QueueMessage]: ...

    async def ack(self, messages: Sequence[QueueMessage]) -> None:
        """Processing is final for these messages (success or filtered out): remove them."""
        ...

    async def release(self, messages: Sequence[QueueMessage]) -> None:
        """Processing failed: hand the messages back for redelivery as the broker does it."""
        ...

    async def aclose(self) -> None: ...


class SourceFactory(Protocol):
    async def describe(self, mapping: EventSourceMapping) -> SourceDescription:
        """Raises SourceNotFound with the AWS message when the source does not exist."""
        ...

    def open_queue(self, mapping: EventSourceMapping) -> QueueSource: ...


class SourceError(Exception):
    """A temporary failure of the source (broker or endpoint unreachable, throttled, auth refused):
    the supervisor restarts the mapping's runner with back-off. Pollers translate their SDK errors into
    this at their boundary; any other exception from a runner is a bug and crashes the engine."""
