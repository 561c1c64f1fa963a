"""Reading a function's response: partial batch responses (ReportBatchItemFailures).

Pure policy. One parser serves every source; the source says what an itemIdentifier is.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from typing import Any


class ResponseKind(enum.Enum):
    SUCCESS = "success"
    PARTIAL = "partial"
    #: the whole batch failed: the response names no valid item, or is malformed
    INVALID = "invalid"


@dataclass(frozen=True)
class BatchItemFailures:
    kind: ResponseKind
    failed: tuple[Hashable, ...] = ()
    reason: str = ""


SUCCESS = BatchItemFailures(ResponseKind.SUCCESS)


def string_identifier(value: Any) -> Hashable | None:
    """SQS messageId / stream sequence number: a non-empty string."""
    return value if isinstance(value, str) and value else None


def parse_batch_item_failures(
    payload: bytes,
    valid_ids: Collection[Hashable],
    identify: Callable[[Any], Hashable | None] = string_identifier,
) -> BatchItemFailures:
    """Classify a response body as AWS does (spec 4.5 / 5.2).

    Success: empty body, ``""``, ``[]``, ``{}``, ``null``, a null or empty ``batchItemFailures``; any other
    JSON that is not an object carries no failures either. Whole-batch failure: a body that is not JSON,
    a ``batchItemFailures`` that is not a list, an entry without a valid ``itemIdentifier`` or naming an
    item that is not in the batch.
    """
    if not payload.strip():
        return SUCCESS
    try:
        doc = json.loads(payload)
    except ValueError:
        return BatchItemFailures(ResponseKind.INVALID, reason="response is not JSON")
    if not isinstance(doc, dict):
        return SUCCESS
    entries = doc.get("batchItemFailures")
    if entries is None or entries == []:
        return SUCCESS
    if not isinstance(entries, list):
        return BatchItemFailures(ResponseKind.INVALID, reason="batchItemFailures is not a list")
    failed: dict[Hashable, None] = {}
    for entry in entries:
        ident = identify(entry.get("itemIdentifier")) if isinstance(entry, dict) else None
        if ident is None:
            return BatchItemFailures(ResponseKind.INVALID, reason=f"invalid itemIdentifier in {entry!r}")
        if ident not in valid_ids:
            return BatchItemFailures(ResponseKind.INVALID, reason=f"unknown itemIdentifier {ident!r}")
        failed[ident] = None
    return BatchItemFailures(ResponseKind.PARTIAL, tuple(failed))
