"""What the engine asks of its store, by who asks: the control plane and the supervisor keep mappings
(:class:`MappingStore`), the runners' pipeline writes journal rows, checkpoint rows and
LastProcessingResult (:class:`RunnerStore`). Calls are blocking; the pipeline runs them through
``offload``, off the event loop. engine/store/sqlite.py is the embedded implementation."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from engine.model import EventSourceMapping

P = ParamSpec("P")
R = TypeVar("R")

#: records given up on without being invoked successfully; ``detail["reason"]`` says why (the failure
#: condition: MaximumPayloadSizeExceeded, RetryAttemptsExhausted, RecordAgeExceeded)
DISCARDED = "discarded"
#: one attempt to deliver a failure record to the on-failure destination (``detail["destination"]``)
DESTINATION_SENT = "destination_sent"
DESTINATION_FAILED = "destination_failed"
#: records the FilterCriteria refused (acknowledged, or passed by the checkpoint); the row lists them
FILTERED_OUT = "filtered_out"


@dataclass(frozen=True)
class JournalEntry:
    """One line of the journal: an invocation attempt (outcome success, partial_failure, function_error,
    invalid_response, invoke_error, invoked), a discard or an on-failure destination delivery."""

    mapping_uuid: str
    scope: str
    first_item: str | None
    last_item: str | None
    batch_size: int
    attempt: int
    bisect_depth: int
    outcome: str
    duration_ms: float
    detail: Mapping[str, Any]
    at: float = 0.0
    id: int = 0
    #: every item of the batch, when first..last does not say (a queue's message ids have no order)
    items: Sequence[str] | None = None
    #: the exact bytes of the attempt's event, or of the destination record (payload capture)
    payload: bytes | None = None


class MappingStore(Protocol):
    def insert_mapping(self, m: EventSourceMapping) -> EventSourceMapping: ...

    def save_mapping(self, m: EventSourceMapping) -> None: ...

    def get_mapping(self, uuid: str) -> EventSourceMapping | None: ...

    def list_mappings(
        self,
        *,
        after_seq: int = 0,
        event_source_arn: str | None = None,
        function_arn: Callable[[str], bool] | None = None,
        limit: int | None = None,
    ) -> list[EventSourceMapping]:
        """In creation order: those created after ``after_seq``, of that source, whose function ARN
        ``function_arn`` accepts, at most ``limit`` (a page decodes only its own mappings)."""
        ...

    def delete_mapping(self, uuid: str) -> None:
        """The mapping and every row that belongs to it (checkpoints, tags)."""
        ...

    def set_last_processing_result(self, uuid: str, result: str) -> None: ...

    def set_stopped_reason(self, uuid: str, reason: str, result: str | None) -> None: ...

    def tags(self, mapping_uuid: str) -> dict[str, str]: ...

    def put_tags(self, mapping_uuid: str, tags: Mapping[str, str]) -> None: ...

    def remove_tags(self, mapping_uuid: str, keys: Iterable[str]) -> None: ...


class RunnerStore(Protocol):
    async def offload(self, call: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run one of the store's calls off the event loop, in the order they were asked for."""
        ...

    def queue_journal(self, e: JournalEntry) -> None:
        """Queue a journal row (any thread, no I/O); ``flush_journal`` writes the queue in one go."""
        ...

    def flush_journal(self) -> int: ...

    def checkpoints(self, mapping_uuid: str) -> dict[str, str]:
        """Every checkpoint row of the mapping, by scope (only engine.pipeline.checkpoints reads them)."""
        ...

    def put_checkpoint(self, mapping_uuid: str, scope: str, position: str) -> None: ...

    def clear_checkpoints(self, mapping_uuid: str) -> None: ...

    def set_last_processing_result(self, uuid: str, result: str) -> None: ...


class JournalReader(Protocol):
    """What the dashboard reads of the journal (blocking: through RunnerStore.offload)."""

    def journal(self, mapping_uuid: str | None = None, limit: int = 100) -> list[JournalEntry]: ...

    def journal_near(self, entry_id: int, limit: int) -> tuple[list[JournalEntry], int]: ...


class Store(MappingStore, RunnerStore, Protocol):
    """The whole store, as the composition root opens it."""

    def prune_journal(
        self,
        *,
        max_rows_per_mapping: int,
        max_age_s: float,
        now: float,
        orphans: bool = False,
        max_payload_bytes: int | None = None,
    ) -> int: ...

    def close(self) -> None: ...
