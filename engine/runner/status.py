"""A mapping's LastProcessingResult as its runner reports it after each invocation."""

from __future__ import annotations

from engine.store.sqlite import SqliteStore

OK = "OK"
FUNCTION_FAILED = "PROBLEM: Function call failed"


class LastProcessingResult:
    """Writes the mapping's LastProcessingResult when it changes, not once per invocation."""

    def __init__(self, store: SqliteStore, mapping_uuid: str) -> None:
        self.store = store
        self.mapping_uuid = mapping_uuid
        self._written: str | None = None

    def report(self, *, function_failed: bool) -> None:
        text = FUNCTION_FAILED if function_failed else OK
        if text != self._written:
            self.store.set_last_processing_result(self.mapping_uuid, text)
            self._written = text
