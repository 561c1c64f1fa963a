"""engine.journey: where a record ended, from its journal rows."""

from __future__ import annotations

from typing import Any

from engine.journey import journey_end
from engine.store.ports import JournalEntry


def row(outcome: str, attempt: int = 1, **detail: Any) -> JournalEntry:
    return JournalEntry("m", "shard", "1", "9", 9, attempt, 0, outcome, 1.0, detail)


def test_ends() -> None:
    assert journey_end("5", []).startswith("not in the journal")
    assert journey_end("5", [row("filtered_out")]).startswith("filtered out")
    assert journey_end("5", [row("invoked")]) == "invoked: succeeded on attempt 1"
    assert journey_end("5", [row("function_error"), row("function_error", 2)]) == (
        "pending: attempt 2 ended in function_error, to be retried"
    )
    assert journey_end("5", [row("partial_failure", failed=["5"])]).startswith("pending: reported failed")
    assert journey_end("5", [row("partial_failure", failed=["6"])]) == "invoked: succeeded on attempt 1"
    expired = row("discarded", reason="RecordAgeExceeded", destination=None)
    assert journey_end("5", [row("function_error"), expired]) == (
        "expired (RecordAgeExceeded), no on-failure destination: dropped"
    )
    waiting = [
        row("discarded", reason="RetryAttemptsExhausted", destination="arn:q"),
        row("destination_failed", destination="arn:q"),
        row("destination_failed", destination="arn:q"),
    ]
    assert journey_end("5", waiting) == (
        "discarded (RetryAttemptsExhausted); delivery to arn:q still pending after 2 failed tries"
    )
