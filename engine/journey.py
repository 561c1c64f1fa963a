"""One record's journey through the journal (``esm trace``): the rows of every batch it was in, in order,
and where it ended."""

from __future__ import annotations

from collections.abc import Sequence

from engine.pipeline.invoking import INVOKE_ERROR, INVOKED
from engine.pipeline.verdict import FUNCTION_ERROR, INVALID_RESPONSE, PARTIAL_FAILURE, SUCCESS
from engine.store.ports import DESTINATION_FAILED, DESTINATION_SENT, DISCARDED, FILTERED_OUT, JournalEntry

#: the failure condition of a record that grew too old
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


def journey_end(item: str, rows: Sequence[JournalEntry]) -> str:
    """Where the record ended, from the rows of one shard or queue that held it (oldest first)."""
    if not rows:
        return "not in the journal: not read yet, or its rows are gone with the journal's retention"
    # a filtered-out row without its list stands for a range: an invocation of the record says more
    if all(r.outcome == FILTERED_OUT for r in rows):
        return "filtered out: the FilterCriteria refused it (acknowledged, never invoked)"
    rows = [r for r in rows if r.outcome != FILTERED_OUT]
    sent = [r for r in rows if r.outcome == DESTINATION_SENT]
    discarded = [r for r in rows if r.outcome == DISCARDED]
    if discarded:
        d = discarded[-1].detail
        reason = str(d.get("reason", "?"))
        gone = "expired" if reason == RECORD_AGE_EXCEEDED else "discarded"
        where = d.get("destination")
        if sent:
            return f"{gone} ({reason}), its failure record sent to {sent[-1].detail.get('destination')}"
        if where:
            tries = sum(1 for r in rows if r.outcome == DESTINATION_FAILED)
            return f"{gone} ({reason}); delivery to {where} still pending after {tries} failed tries"
        return f"{gone} ({reason}), no on-failure destination: dropped"
    last = [
        r
        for r in rows
        if r.outcome in (INVOKED, SUCCESS, PARTIAL_FAILURE, FUNCTION_ERROR, INVALID_RESPONSE, INVOKE_ERROR)
    ][-1:]
    if not last:
        return "pending"
    r = last[0]
    if r.outcome == PARTIAL_FAILURE and item in r.detail.get("failed", ()):
        return f"pending: reported failed by attempt {r.attempt}'s batch response, back to the queue"
    if r.outcome in (INVOKED, SUCCESS, PARTIAL_FAILURE):
        return f"invoked: succeeded on attempt {r.attempt}"
    return f"pending: attempt {r.attempt} ended in {r.outcome}, to be retried"
