"""engine.journey: where a record ended, from its journal rows."""

from __future__ import annotations

from typing import Any

import pytest

from engine.journey import journey_end
from engine.pipeline.journal import ITEMS_LISTED_MAX, Journal
from engine.store.ports import JournalEntry
from engine.store.sqlite import SqliteStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


@pytest.mark.anyio
async def test_a_row_lists_at_most_a_thousand_items() -> None:
    store = SqliteStore(":memory:")
    journal = Journal(store, "m", keep_items=True)
    await journal.write("queue", [f"id-{i}" for i in range(3)], attempt=1, outcome="success")
    many_ids = [f"id-{i}" for i in range(ITEMS_LISTED_MAX + 1)]
    await journal.write("queue", many_ids, attempt=1, outcome="success")
    few, many = store.journal("m")
    assert few.items == ["id-0", "id-1", "id-2"]
    assert many.items is None and (many.first_item, many.batch_size) == ("id-0", ITEMS_LISTED_MAX + 1)
