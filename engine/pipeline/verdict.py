"""What a function's response means for the batch it was given (spec 4.5, 5.3). Pure policy."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from engine.ports import InvokeResult
from engine.responses import ResponseKind, parse_batch_item_failures, string_identifier

SUCCESS = "success"
PARTIAL_FAILURE = "partial_failure"
FUNCTION_ERROR = "function_error"
INVALID_RESPONSE = "invalid_response"


@dataclass(frozen=True)
class Verdict:
    #: success | partial_failure | function_error | invalid_response (the journal's words)
    outcome: str
    #: the item identifiers that failed: none, the reported ones, or all of them
    failed: frozenset[Hashable]
    #: why a partial batch response was refused (invalid_response)
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCESS


def classify(
    result: InvokeResult,
    ids: Iterable[Hashable],
    *,
    report_batch_item_failures: bool,
    identify: Callable[[Any], Hashable | None] = string_identifier,
) -> Verdict:
    """A function error fails every item; with ReportBatchItemFailures the response names the failed ones
    (an unreadable or unknown identifier fails them all); without it, any other response is a success."""
    if result.function_error:
        return Verdict(FUNCTION_ERROR, frozenset(ids))
    if not report_batch_item_failures:
        return Verdict(SUCCESS, frozenset())
    valid = frozenset(ids)
    parsed = parse_batch_item_failures(result.payload, valid, identify)
    if parsed.kind is ResponseKind.SUCCESS:
        return Verdict(SUCCESS, frozenset())
    if parsed.kind is ResponseKind.PARTIAL:
        return Verdict(PARTIAL_FAILURE, frozenset(parsed.failed))
    return Verdict(INVALID_RESPONSE, valid, parsed.reason)
