"""Batching policy (spec 3.2): BatchSize, window and the 6 MB cap, on an injected clock."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from engine.batching import Admission, Batcher, encode_envelope, encode_record
from engine.events import RECORDS_ENVELOPE
from engine.model import BatchingPolicy


def _batcher(
    batch_size: int = 3, window_s: float = 0.0, cap: int = 10_000, now: float = 0.0, first: bool = False
) -> Batcher[int]:
    return Batcher(
        BatchingPolicy(batch_size, window_s, cap),
        envelope_bytes=RECORDS_ENVELOPE.overhead,
        now=now,
        open_on_first_record=first,
    )


def test_flushes_at_batch_size() -> None:
    b = _batcher(batch_size=2, window_s=10)
    assert b.offer(1, b"{}", 0.0) is Admission.ADDED
    assert not b.should_flush(0.0)
    assert b.offer(2, b"{}", 0.0) is Admission.ADDED
    assert b.full and b.should_flush(0.0)


def test_flushes_when_window_elapses_with_records() -> None:
    b = _batcher(batch_size=100, window_s=5, now=10.0)
    b.offer(1, b"{}", 11.0)
    assert not b.should_flush(14.9)
    assert b.should_flush(15.0)
    assert b.remaining(13.0) == 2.0


def test_empty_batch_never_flushes() -> None:
    b = _batcher(window_s=1, now=0.0)
    assert not b.should_flush(100.0)


def test_window_opens_on_first_record_for_kafka_and_mq() -> None:
    b = _batcher(batch_size=100, window_s=0.5, now=0.0, first=True)
    assert b.deadline() is None
    b.offer(1, b"{}", 7.0)
    assert b.deadline() == 7.5
    assert not b.should_flush(7.4) and b.should_flush(7.5)


def test_payload_cap_counts_envelope_and_commas_exactly() -> None:
    records = [encode_record({"n": i, "pad": "x" * 20}) for i in range(5)]
    exact = len(encode_envelope(RECORDS_ENVELOPE.prefix, records[:3], RECORDS_ENVELOPE.suffix))
    b = _batcher(batch_size=10, cap=exact)
    for i in range(3):
        assert b.offer(i, records[i], 0.0) is Admission.ADDED
    assert b.batch.payload_bytes == exact
    assert b.offer(3, records[3], 0.0) is Admission.WOULD_EXCEED
    assert len(b.batch) == 3
    payload = encode_envelope(RECORDS_ENVELOPE.prefix, b.batch.encoded, RECORDS_ENVELOPE.suffix)
    assert len(payload) == exact
    assert [r["n"] for r in json.loads(payload)["Records"]] == [0, 1, 2]


def test_single_record_over_cap_is_too_large() -> None:
    b = _batcher(cap=50)
    assert b.offer(1, b"x" * 100, 0.0) is Admission.TOO_LARGE
    assert len(b.batch) == 0


def test_room() -> None:
    b = _batcher(batch_size=3)
    b.offer(1, b"{}", 0.0)
    assert b.room == 2


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _json, max_size=6))
def test_encode_record_is_compact_utf8_json_dumps(record: dict[str, object]) -> None:
    assert encode_record(record) == json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
