"""What happened to a mapping's batches, written the same way by every runner, off the event loop: the
journal (one row per invocation attempt, discard or destination delivery) and LastProcessingResult."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.store.ports import JournalEntry, RunnerStore

#: a row lists its items up to this many (a batch of 10,000 message ids would be 380 KB a row); past it,
#: first..last stand for them
ITEMS_LISTED_MAX = 1000

OK = "OK"
FUNCTION_FAILED = "PROBLEM: Function call failed"


class Journal:
    """``write_behind_s`` > 0: a row is queued and written with the next flush, at most that long after
    (the store's readers flush first, so they see it at once); the owner flushes when it goes idle and
    when it stops. A flush is a hop to the store's worker thread: once per batch, that hop costs a stream
    consumer about a fifth of its CPU (the GIL changes hands with each one)."""

    def __init__(
        self,
        store: RunnerStore,
        mapping_uuid: str,
        *,
        write_behind_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[JournalEntry], None] = lambda entry: None,
        capture_payloads: bool = False,
        keep_items: bool = False,
    ) -> None:
        self.store = store
        #: sees every row as it is written (the mapping's metrics count off it)
        self.observe = observe
        #: rows keep the exact payload they were given (``esm journal show``, ``esm replay``)
        self.capture_payloads = capture_payloads
        #: rows keep every item id (a queue's: unordered), for ``esm trace``
        self.keep_items = keep_items
        self.mapping_uuid = mapping_uuid
        self.write_behind_s = write_behind_s
        self.clock = clock
        self._flushed_at = -float("inf")
        #: rows of this journal queued since its last flush
        self._pending = False

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
        payload: bytes | None = None,
        list_items: bool = False,
    ) -> None:
        """One row for the items (in order; none for a tumbling window's final invocation); ``payload``
        is kept when the journal captures payloads; ``list_items``: the row keeps every item (they are
        not a contiguous run: first..last would not say which)."""
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
            items=list(items) if (self.keep_items or list_items) and len(items) <= ITEMS_LISTED_MAX else None,
            payload=payload if self.capture_payloads else None,
        )
        self.observe(entry)
        # rows queued while a flush waits for the worker go with it: one transaction for many lanes
        self.store.queue_journal(entry)
        self._pending = True
        if self.clock() - self._flushed_at >= self.write_behind_s:
            await self.flush()

    async def flush(self) -> None:
        """Write the rows queued so far (every mapping's: one transaction), if this journal has any."""
        if self._pending:
            self._pending = False
            self._flushed_at = self.clock()
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
