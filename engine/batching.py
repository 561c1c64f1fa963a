"""Batching policy: when a batch is flushed (BatchSize, batching window, 6 MB payload cap).

Pure policy: no I/O, the clock is passed in. Records are JSON-encoded once, when they join a batch;
the invocation payload is assembled from those bytes, so the size the batcher counts is the size sent.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from engine.model import BatchingPolicy

T = TypeVar("T")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# json.dumps builds an encoder per call; at thousands of records a second one C encoder serves them all
_c_make_encoder: Callable[..., Callable[[Any, int], tuple[str, ...]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_C_ENCODE = (
    _c_make_encoder(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    if _c_make_encoder is not None
    else None
)


def encode_record(record: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as ``json.dumps(record, separators=(",", ":"), ensure_ascii=False)``."""
    if _C_ENCODE is None:
        return _ENCODER.encode(record).encode()
    return "".join(_C_ENCODE(record, 0)).encode()


def encode_envelope(prefix: bytes, encoded_records: Sequence[bytes], suffix: bytes) -> bytes:
    """``prefix`` + records joined by commas + ``suffix``; e.g. b'{"Records":[' ... b']}'."""
    return prefix + b",".join(encoded_records) + suffix


class Admission(enum.Enum):
    ADDED = "added"
    #: the record would push the payload past the cap: flush first, the record opens the next batch
    WOULD_EXCEED = "would_exceed"
    #: the record alone exceeds the cap: it can never be delivered (Kafka: MaximumPayloadSizeExceeded)
    TOO_LARGE = "too_large"


@dataclass
class Batch(Generic[T]):
    """Items with their encoded records, in arrival order."""

    items: list[T] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    payload_bytes: int = 0

    def __len__(self) -> int:
        return len(self.items)


class Batcher(Generic[T]):
    """Collects one batch. ``envelope_bytes`` is the size of the event around the records.

    The window opens at ``opened_at`` (queues and streams: when collection starts, i.e. after the previous
    invocation completed; Kafka/MQ: when the first record arrives, see ``open_on_first_record``).
    """

    def __init__(
        self,
        policy: BatchingPolicy,
        *,
        envelope_bytes: int,
        now: float,
        open_on_first_record: bool = False,
    ) -> None:
        self.policy = policy
        self.batch: Batch[T] = Batch(payload_bytes=envelope_bytes)
        self._open_on_first = open_on_first_record
        self.opened_at: float | None = None if open_on_first_record else now

    def offer(self, item: T, encoded: bytes, now: float) -> Admission:
        """One record, whatever BatchSize says (the caller checks ``full``)."""
        if self.admit(((item, encoded),), now, limit=1):
            return Admission.ADDED
        return Admission.WOULD_EXCEED if self.batch.items else Admission.TOO_LARGE

    def admit(self, records: Sequence[tuple[T, bytes]], now: float, *, limit: int | None = None) -> int:
        """Adds records from the start of ``records`` while BatchSize (or ``limit``) and the payload cap
        allow; returns how many. The first record refused is over the cap (``full`` says otherwise): alone
        if the batch is still empty (TOO_LARGE), else it opens the next batch."""
        b = self.batch
        items, encodeds, cap = b.items, b.encoded, self.policy.max_payload_bytes
        size, added = b.payload_bytes, 0
        room = self.room if limit is None else limit
        for item, encoded in records:  # the per-record loop of every batch: locals only
            if added == room:
                break
            grown = size + len(encoded) + (1 if items else 0)  # the comma between records
            if grown > cap:
                break
            items.append(item)
            encodeds.append(encoded)
            size, added = grown, added + 1
        b.payload_bytes = size
        if added and self.opened_at is None:
            self.opened_at = now
        return added

    @property
    def full(self) -> bool:
        return len(self.batch) >= self.policy.batch_size

    @property
    def room(self) -> int:
        return max(0, self.policy.batch_size - len(self.batch))

    def deadline(self) -> float | None:
        """When the window closes (None: not opened yet)."""
        if self.opened_at is None:
            return None
        return self.opened_at + self.policy.window_s

    def remaining(self, now: float) -> float:
        d = self.deadline()
        return self.policy.window_s if d is None else max(0.0, d - now)

    def should_flush(self, now: float) -> bool:
        if self.full:
            return True
        if not self.batch.items:
            return False
        return self.remaining(now) <= 0
