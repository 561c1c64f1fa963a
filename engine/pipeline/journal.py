"""What happened to a mapping's batches, written the same way by every runner, off the event loop: the
journal (one row per invocation attempt, discard or destination delivery) and LastProcessingResult."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.store.ports import JournalEntry, RunnerStore

OK = "OK"
FUNCTION_FAILED = "PROBLEM: Function call failed"


class Journal:
    def __init__(self, store: RunnerStore, mapping_uuid: str) -> None:
        self.store = store
        self.mapping_uuid = mapping_uuid

    async def write(
        self,
        scope: str,
        items: Sequence[str],
        *,
        attempt: int,
        outcome: str,
        duration_ms: float = 0.0,
        bisect_depth: int = 0,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """One row for the items (in order; none for a tumbling window's final invocation)."""
        entry = JournalEntry(
            mapping_uuid=self.mapping_uuid,
            scope=scope,
            first_item=items[0] if items else None,
            last_item=items[-1] if items else None,
            batch_size=len(items),
            attempt=attempt,
            bisect_depth=bisect_depth,
            outcome=outcome,
            duration_ms=duration_ms,
            detail=detail or {},
        )
        # rows queued while a flush waits for the worker go with it: one transaction for many lanes
        self.store.queue_journal(entry)
        await self.store.offload(self.store.flush_journal)


class LastProcessingResult:
    """Writes the mapping's LastProcessingResult when it changes, not once per invocation; a source whose
    mappings show none (SQS) writes nothing."""

    def __init__(self, store: RunnerStore, mapping_uuid: str, *, shown: bool = True) -> None:
        self.store = store
        self.mapping_uuid = mapping_uuid
        self.shown = shown
        self._written: str | None = None

    async def report(self, *, function_failed: bool) -> None:
        text = FUNCTION_FAILED if function_failed else OK
        if self.shown and text != self._written:
            self._written = text
            await self.store.offload(self.store.set_last_processing_result, self.mapping_uuid, text)
