"""Tumbling windows (spec 4.7) on an injected clock: assignment, envelope, responses, the shard tracker."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.model import BatchingPolicy
from engine.ports import StreamRecord
from engine.windows import (
    FINAL_INVOKE_CARRIES_RECORDS,
    INITIAL_STATE,
    MAX_STATE_BYTES,
    WINDOW_ALIGNMENT,
    WINDOW_IDLE_CLOSE_S,
    Invocation,
    TumblingWindow,
    Wait,
    WindowResponse,
    WindowTracker,
    envelope_fields,
    iso_utc,
    parse_window_response,
    split_by_window,
    window_start,
)

SHARD = "shardId-000000000006"
ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream"
T0 = 1607497440  # 2020-12-09T07:04:00Z, a multiple of 120 s


def rec(seq: int, arrival: float) -> StreamRecord:
    return StreamRecord(
        record={"kinesis": {"sequenceNumber": str(seq), "approximateArrivalTimestamp": arrival}},
        sequence_number=str(seq),
        arrival_s=arrival,
        lane_key="k",
    )


def tracker(
    window_s: int = 120, batch_size: int = 100, batching_window_s: float = 0.0, now: float = T0, **kw: Any
) -> WindowTracker:
    return WindowTracker(
        shard_id=SHARD,
        stream_arn=ARN,
        window_s=window_s,
        batching=BatchingPolicy(batch_size, batching_window_s),
        now=now,
        **kw,
    )


def seqs(step: Invocation) -> list[int]:
    return [int(r.sequence_number) for r in step.records]


def invoke(t: WindowTracker, step: Invocation, fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """One successful round trip: build the event, call ``fn``, accept its state. Returns the event."""
    event: dict[str, Any] = json.loads(t.payload(step))
    response = parse_window_response(json.dumps(fn(event)).encode())
    assert response is not None
    t.accept_state(step, response)
    return event


def count_records(event: dict[str, Any]) -> dict[str, Any]:
    """A function aggregating per window: how many records it saw."""
    state = dict(event["state"])
    state["n"] = state.get("n", 0) + len(event["Records"])
    return {"state": state}


def step_at(t: WindowTracker, now: float) -> Invocation:
    step = t.next(now)
    assert isinstance(step, Invocation), step
    return step


# --- assignment -----------------------------------------------------------------------------------


def test_unverified_defaults_are_named() -> None:
    assert WINDOW_ALIGNMENT == "epoch"
    assert FINAL_INVOKE_CARRIES_RECORDS is False
    assert dict(INITIAL_STATE) == {}
    assert WINDOW_IDLE_CLOSE_S == 120
    assert MAX_STATE_BYTES == 1_048_576


def test_windows_are_aligned_to_the_epoch() -> None:
    # the spec's example: a record arriving 07:04:35 in a 120 s window 07:04:00-07:06:00
    assert window_start(1607497475.0, 120) == T0
    assert iso_utc(T0) == "2020-12-09T07:04:00Z"
    assert iso_utc(T0 + 120) == "2020-12-09T07:06:00Z"
    assert window_start(T0 + 119.999, 120) == T0
    assert window_start(T0 + 120, 120) == T0 + 120  # the end belongs to the next window
    assert window_start(61.5, 1) == 61
    assert window_start(1799.0, 900) == 900
    with pytest.raises(ValueError):
        window_start(5.0, 0)


def test_a_read_spanning_two_windows_is_split() -> None:
    read = [rec(1, T0 + 1), rec(2, T0 + 119), rec(3, T0 + 120), rec(4, T0 + 200)]
    runs = split_by_window(read, 120)
    assert [(s, [int(r.sequence_number) for r in rs]) for s, rs in runs] == [(T0, [1, 2]), (T0 + 120, [3, 4])]


def test_late_arrivals_join_the_later_window() -> None:
    read = [rec(1, T0 + 130), rec(2, T0 + 100), rec(3, T0 + 5)]
    assert [s for s, _ in split_by_window(read, 120)] == [T0 + 120]
    assert [s for s, _ in split_by_window([rec(1, T0 + 5)], 120, not_before=T0 + 240)] == [T0 + 240]


# --- envelope and response ------------------------------------------------------------------------

SPEC_EXAMPLE = """
{
    "Records": [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "1",
                "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                "approximateArrivalTimestamp": 1607497475.000
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-kinesis-role",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream"
        }
    ],
    "window": {
        "start": "2020-12-09T07:04:00Z",
        "end": "2020-12-09T07:06:00Z"
    },
    "state": {
        "1": 282,
        "2": 715
    },
    "shardId": "shardId-000000000006",
    "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream",
    "isFinalInvokeForWindow": false,
    "isWindowTerminatedEarly": false
}
"""


def key_order(value: Any) -> Any:
    """The document with every object turned into its list of (key, value) pairs: order matters."""
    if isinstance(value, dict):
        return [(k, key_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [key_order(v) for v in value]
    return value


def test_envelope_matches_the_spec_example_key_for_key_in_order() -> None:
    expected = json.loads(SPEC_EXAMPLE)
    spec_record = expected["Records"][0]
    seq = spec_record["kinesis"]["sequenceNumber"]
    record = StreamRecord(spec_record, seq, 1607497475.0, "1")

    window = TumblingWindow(start=T0, end=T0 + 120, state={"1": 282, "2": 715})
    fields = envelope_fields(window, shard_id=SHARD, stream_arn=ARN, is_final=False, terminated_early=False)
    assert key_order({"Records": [spec_record], **fields}) == key_order(expected)

    # the tracker's payload is the same document: a window restored with that state, the record fed
    saved = {"version": 1, "window": window.to_json(), "checkpoint": None, "latestWindowStart": T0}
    t = WindowTracker.restore(
        saved, shard_id=SHARD, stream_arn=ARN, window_s=120, batching=BatchingPolicy(100, 0), now=T0 + 40
    )
    t.feed([record], T0 + 40)
    step = step_at(t, T0 + 40)
    payload = t.payload(step)
    assert payload.startswith(b'{"Records":[{"kinesis":')
    assert key_order(json.loads(payload)) == key_order(expected)


def test_final_envelope_flags() -> None:
    window = TumblingWindow(start=T0, end=T0 + 120, terminated_early=True)
    fields = envelope_fields(window, shard_id=SHARD, stream_arn=ARN, is_final=True, terminated_early=True)
    assert list(fields) == [
        "window",
        "state",
        "shardId",
        "eventSourceARN",
        "isFinalInvokeForWindow",
        "isWindowTerminatedEarly",
    ]
    assert fields["isFinalInvokeForWindow"] is True and fields["isWindowTerminatedEarly"] is True
    assert fields["state"] == {}


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"null",
        b"{}",
        b"[]",
        b'""',
        b"not json",
        b'{"batchItemFailures": []}',
        b'{"State": {}}',
        b'{"state": null}',
        b'{"state": [1, 2]}',
        b'{"state": "x"}',
        b'{"errorMessage": "boom", "errorType": "Exception"}',
    ],
)
def test_a_response_without_a_state_object_is_a_failed_invocation(payload: bytes) -> None:
    assert parse_window_response(payload) is None


def test_a_response_with_state_and_batch_item_failures() -> None:
    parsed = parse_window_response(b'{"state": {"1": 282, "2": 715}, "batchItemFailures": []}')
    assert parsed is not None
    assert parsed.state == {"1": 282, "2": 715}
    assert parsed.state_bytes == len(b'{"1":282,"2":715}')
    assert not parsed.terminates_window


def big_state(size: int) -> dict[str, Any]:
    """A state whose compact JSON is exactly ``size`` bytes."""
    overhead = len(b'{"k":""}')
    return {"k": "x" * (size - overhead)}


def test_state_size_limit_is_over_one_mebibyte() -> None:
    at_limit = parse_window_response(json.dumps({"state": big_state(MAX_STATE_BYTES)}).encode())
    over = parse_window_response(json.dumps({"state": big_state(MAX_STATE_BYTES + 1)}).encode())
    assert at_limit is not None and at_limit.state_bytes == MAX_STATE_BYTES
    assert not at_limit.terminates_window
    assert over is not None and over.terminates_window


# --- the tracker ------------------------------------------------------------------------------------


def test_a_read_spanning_two_windows_makes_separate_batches_and_a_final_between() -> None:
    t = tracker()
    t.feed([rec(1, T0 + 1), rec(2, T0 + 50), rec(3, T0 + 121), rec(4, T0 + 130)], T0 + 131)
    now = T0 + 131

    first = step_at(t, now)
    assert seqs(first) == [1, 2] and not first.is_final
    assert (first.window_start, first.window_end) == (T0, T0 + 120)
    event = invoke(t, first, count_records)
    assert event["state"] == {} and event["window"] == {
        "start": "2020-12-09T07:04:00Z",
        "end": "2020-12-09T07:06:00Z",
    }
    t.settled(first, now)
    assert t.checkpoint is None  # not before the final invocation

    final = step_at(t, now)  # a record of a later window is queued: this window is over
    assert final.is_final and final.records == () and not final.terminated_early
    event = invoke(t, final, count_records)
    assert event["Records"] == [] and event["isFinalInvokeForWindow"] is True
    assert event["state"] == {"n": 2}
    t.settled(final, now)
    assert t.checkpoint == "2"

    second = step_at(t, now)
    assert seqs(second) == [3, 4] and (second.window_start, second.window_end) == (T0 + 120, T0 + 240)
    event = invoke(t, second, count_records)
    assert event["state"] == {}  # a new window starts with the initial state
    assert event["window"]["start"] == "2020-12-09T07:06:00Z"


def test_state_is_passed_between_invocations_of_the_same_window() -> None:
    t = tracker(batch_size=2)
    t.feed([rec(i, T0 + i) for i in range(1, 6)], T0 + 6)
    states = []
    for expected in ([1, 2], [3, 4], [5]):
        step = step_at(t, T0 + 6)
        assert seqs(step) == expected
        states.append(invoke(t, step, count_records)["state"])
        t.settled(step, T0 + 6)
    assert states == [{}, {"n": 2}, {"n": 4}]
    assert isinstance(t.next(T0 + 6), Wait)  # the window is not over yet


def test_bisect_halves_get_the_state_of_the_half_before() -> None:
    t = tracker()
    t.feed([rec(i, T0 + i) for i in range(1, 5)], T0 + 5)
    step = step_at(t, T0 + 5)
    first_half, second_half = step.records[:2], step.records[2:]
    event = json.loads(t.payload(step, first_half))
    assert len(event["Records"]) == 2 and event["state"] == {}
    parsed = parse_window_response(json.dumps(count_records(event)).encode())
    assert parsed is not None
    t.accept_state(step, parsed)
    event = json.loads(t.payload(step, second_half))
    assert [r["kinesis"]["sequenceNumber"] for r in event["Records"]] == ["3", "4"]
    assert event["state"] == {"n": 2}


def test_a_failed_invocation_leaves_the_state_and_is_offered_again() -> None:
    t = tracker()
    t.feed([rec(1, T0 + 1)], T0 + 2)
    step = step_at(t, T0 + 2)
    assert parse_window_response(b'{"errorMessage": "boom"}') is None  # nothing accepted
    assert t.next(T0 + 3) == step
    assert json.loads(t.payload(step))["state"] == {}


def test_final_invocation_after_the_idle_timeout() -> None:
    t = tracker()
    t.feed([rec(1, T0 + 10)], T0 + 11)
    step = step_at(t, T0 + 11)
    invoke(t, step, count_records)
    t.settled(step, T0 + 12)

    deadline = T0 + 120 + WINDOW_IDLE_CLOSE_S
    assert t.next(T0 + 12) == Wait(deadline)
    assert t.next(deadline - 0.001) == Wait(deadline)
    t.feed([], deadline - 1)  # empty reads do not postpone it
    final = step_at(t, deadline)
    assert final.is_final and final.records == ()
    assert invoke(t, final, count_records)["state"] == {"n": 1}
    t.settled(final, deadline)
    assert t.checkpoint == "1" and t.window is None and t.empty
    assert t.next(deadline + 1000) == Wait(None)


def test_idle_timeout_counts_from_the_last_feed_when_catching_up() -> None:
    # records of a window long past: reading them late must not close their window under them
    t = tracker(batch_size=1, now=T0 + 3600)
    t.feed([rec(1, T0 + 1)], T0 + 3600)
    step = step_at(t, T0 + 3600)
    invoke(t, step, count_records)
    t.settled(step, T0 + 3601)
    assert t.next(T0 + 3601) == Wait(T0 + 3600 + WINDOW_IDLE_CLOSE_S)
    t.feed([rec(2, T0 + 2)], T0 + 3700)
    assert seqs(step_at(t, T0 + 3700)) == [2]


def test_idle_close_is_configurable() -> None:
    t = tracker(idle_close_s=0.0)
    t.feed([rec(1, T0 + 1)], T0 + 2)
    step = step_at(t, T0 + 2)
    invoke(t, step, count_records)
    t.settled(step, T0 + 2)
    assert t.next(T0 + 119) == Wait(T0 + 120)
    assert step_at(t, T0 + 120).is_final


def test_end_of_shard_closes_the_window() -> None:
    t = tracker()
    t.feed([rec(1, T0 + 1), rec(2, T0 + 2)], T0 + 3, end_of_shard=True)
    step = step_at(t, T0 + 3)
    assert seqs(step) == [1, 2]
    invoke(t, step, count_records)
    t.settled(step, T0 + 3)
    final = step_at(t, T0 + 3)  # long before the window's end
    assert final.is_final and final.records == ()
    assert not t.finished
    invoke(t, final, count_records)
    t.settled(final, T0 + 3)
    assert t.finished and t.checkpoint == "2"


def test_an_empty_closed_shard_is_finished_at_once() -> None:
    t = tracker()
    t.feed([], T0, end_of_shard=True)
    assert t.finished and t.next(T0) == Wait(None)


def test_a_failed_final_invocation_stops_the_shard_until_it_succeeds() -> None:
    t = tracker()
    t.feed([rec(1, T0 + 1), rec(2, T0 + 125)], T0 + 126)
    first = step_at(t, T0 + 126)
    invoke(t, first, count_records)
    t.settled(first, T0 + 126)
    final = step_at(t, T0 + 126)
    for later in (T0 + 127, T0 + 500, T0 + 5000):  # the failure is not reported: the same final again
        assert t.next(later) == final
    assert t.checkpoint is None
    invoke(t, final, count_records)
    t.settled(final, T0 + 5000)
    assert t.checkpoint == "1"
    assert seqs(step_at(t, T0 + 5000)) == [2]


def test_a_state_over_one_megabyte_terminates_the_window_early() -> None:
    t = tracker(batch_size=1)
    t.feed([rec(1, T0 + 1), rec(2, T0 + 2), rec(3, T0 + 3)], T0 + 4)
    huge = big_state(MAX_STATE_BYTES + 1)

    step = step_at(t, T0 + 4)
    invoke(t, step, lambda event: {"state": huge})
    t.settled(step, T0 + 4)

    final = step_at(t, T0 + 4)
    assert final.is_final and final.terminated_early and final.records == ()
    event = json.loads(t.payload(final))
    assert event["isFinalInvokeForWindow"] is True and event["isWindowTerminatedEarly"] is True
    assert event["state"] == huge  # the function's aggregate reaches its final invocation
    invoke(t, final, lambda event: {"state": {}})
    t.settled(final, T0 + 4)
    assert t.checkpoint == "1"

    # the interval's remaining records start a new window, same bounds, initial state
    nxt = step_at(t, T0 + 4)
    assert seqs(nxt) == [2] and (nxt.window_start, nxt.window_end) == (T0, T0 + 120)
    event = invoke(t, nxt, count_records)
    assert event["state"] == {} and event["isWindowTerminatedEarly"] is False


def test_a_state_of_exactly_one_megabyte_keeps_the_window_open() -> None:
    t = tracker(batch_size=1)
    t.feed([rec(1, T0 + 1), rec(2, T0 + 2)], T0 + 3)
    step = step_at(t, T0 + 3)
    invoke(t, step, lambda event: {"state": big_state(MAX_STATE_BYTES)})
    t.settled(step, T0 + 3)
    following = step_at(t, T0 + 3)
    assert seqs(following) == [2] and not following.is_final


def test_batches_wait_for_the_batching_window_but_not_at_a_window_boundary() -> None:
    t = tracker(batch_size=10, batching_window_s=5.0)
    t.feed([rec(1, T0 + 1)], T0 + 1)
    assert t.next(T0 + 1) == Wait(T0 + 5)  # opened at construction (T0), not yet full
    t.feed([rec(2, T0 + 2)], T0 + 2)
    assert seqs(step_at(t, T0 + 5)) == [1, 2]
    t.feed([rec(3, T0 + 121)], T0 + 3)  # a later window's record: this batch cannot grow
    assert seqs(step_at(t, T0 + 3)) == [1, 2]


def test_the_payload_cap_counts_the_window_envelope() -> None:
    t = tracker(batch_size=100)
    t.feed([rec(i, T0 + i) for i in range(1, 5)], T0 + 5)
    step = step_at(t, T0 + 5)
    t.accept_state(step, WindowResponse(state={"total": 12345}, state_bytes=15))
    two = len(t.payload(step, step.records[:2]))  # the whole event: records, window, state, flags
    for cap, expected in ((two, [1, 2]), (two - 1, [1])):
        t.batching = BatchingPolicy(100, 0.0, max_payload_bytes=cap)
        assert seqs(step_at(t, T0 + 5)) == expected


def test_given_up_records_are_covered_without_changing_the_state() -> None:
    t = tracker(batch_size=2)
    t.feed([rec(1, T0 + 1), rec(2, T0 + 2), rec(3, T0 + 3)], T0 + 4)
    step = step_at(t, T0 + 4)
    t.settled(step, T0 + 4)  # retries exhausted: nothing accepted
    assert t.window is not None and t.window.last_sequence_number == "2" and t.window.state == {}
    assert seqs(step_at(t, T0 + 4)) == [3]


def test_final_invocation_may_carry_the_last_records_when_switched_on() -> None:
    t = tracker(batch_size=2, final_carries_records=True)
    t.feed([rec(1, T0 + 1), rec(2, T0 + 2), rec(3, T0 + 3), rec(4, T0 + 200)], T0 + 201)
    step = step_at(t, T0 + 201)
    assert seqs(step) == [1, 2] and not step.is_final  # more of the window follows
    invoke(t, step, count_records)
    t.settled(step, T0 + 201)
    final = step_at(t, T0 + 201)
    assert seqs(final) == [3] and final.is_final
    assert invoke(t, final, count_records)["isFinalInvokeForWindow"] is True
    t.settled(final, T0 + 201)
    assert t.checkpoint == "3"
    assert seqs(step_at(t, T0 + 201)) == [4]


def test_stale_or_foreign_invocations_are_refused() -> None:
    t = tracker()
    t.feed([rec(1, T0 + 1), rec(2, T0 + 125)], T0 + 126)
    step = step_at(t, T0 + 126)
    t.settled(step, T0 + 126)
    with pytest.raises(ValueError):
        t.settled(step, T0 + 126)  # its records are gone
    final = step_at(t, T0 + 126)
    t.settled(final, T0 + 126)
    with pytest.raises(ValueError):
        t.payload(final)  # its window is closed


def test_a_record_read_after_its_window_closed_does_not_reopen_it() -> None:
    t = tracker()
    t.feed([rec(1, T0 + 1)], T0 + 2)
    step = step_at(t, T0 + 2)
    invoke(t, step, count_records)
    t.settled(step, T0 + 2)
    final = step_at(t, T0 + 240)
    invoke(t, final, count_records)
    t.settled(final, T0 + 240)
    t.feed([rec(2, T0 + 100)], T0 + 300)  # arrival time inside the closed window
    late = step_at(t, T0 + 300)
    assert seqs(late) == [2] and late.window_start == T0  # a new window instance, same bounds
    assert invoke(t, late, count_records)["state"] == {}


def test_re_read_records_are_dropped() -> None:
    t = tracker()
    assert t.feed([rec(1, T0 + 1), rec(2, T0 + 2)], T0 + 3) == 2
    assert t.feed([rec(1, T0 + 1), rec(2, T0 + 2), rec(3, T0 + 3)], T0 + 4) == 1


def test_window_round_trip() -> None:
    w = TumblingWindow(start=T0, end=T0 + 120, state={"a": [1, {"b": None}]}, last_sequence_number="42")
    w.terminated_early = True
    assert TumblingWindow.from_json(json.loads(json.dumps(w.to_json()))) == w
    with pytest.raises(ValueError):
        TumblingWindow.from_json({"start": 0, "end": 1, "state": []})


def test_tracker_survives_a_restart_mid_window() -> None:
    t = tracker(batch_size=2)
    t.feed([rec(10, T0 + 1), rec(11, T0 + 2), rec(12, T0 + 3)], T0 + 4)
    step = step_at(t, T0 + 4)
    invoke(t, step, count_records)
    t.settled(step, T0 + 4)
    saved = json.loads(json.dumps(t.to_json()))
    assert saved["window"]["lastSequenceNumber"] == "11" and saved["window"]["state"] == {"n": 2}

    r = WindowTracker.restore(
        saved, shard_id=SHARD, stream_arn=ARN, window_s=120, batching=BatchingPolicy(2, 0), now=T0 + 60
    )
    assert r.resume_after == "11" and r.checkpoint is None
    # the runner read from the checkpoint: records already in the state are not delivered again
    r.feed([rec(10, T0 + 1), rec(11, T0 + 2), rec(12, T0 + 3)], T0 + 60)
    nxt = step_at(r, T0 + 60)
    assert seqs(nxt) == [12]
    assert invoke(r, nxt, count_records)["state"] == {"n": 2}
    r.settled(nxt, T0 + 60)
    r.feed([rec(13, T0 + 130)], T0 + 130)
    final = step_at(r, T0 + 130)
    assert final.is_final and json.loads(r.payload(final))["state"] == {"n": 3}
    r.settled(final, T0 + 130)
    assert r.checkpoint == "12"
    again = WindowTracker.restore(
        r.to_json(), shard_id=SHARD, stream_arn=ARN, window_s=120, batching=BatchingPolicy(2, 0), now=T0 + 131
    )
    # the next window is open, nothing of it covered yet: read again after the checkpoint
    assert again.resume_after == "12" and again.window is not None and again.window.start == T0 + 120


def test_restore_refuses_unknown_versions_and_bad_window_lengths() -> None:
    with pytest.raises(ValueError):
        WindowTracker.restore(
            {"version": 99}, shard_id=SHARD, stream_arn=ARN, window_s=60, batching=BatchingPolicy(1, 0), now=0
        )
    for bad in (0, 901):
        with pytest.raises(ValueError):
            tracker(window_s=bad)


# --- properties -------------------------------------------------------------------------------------

window_lengths = st.integers(min_value=1, max_value=900)


@given(
    window_s=window_lengths,
    offsets=st.lists(st.floats(min_value=0, max_value=10_000, allow_nan=False), max_size=60),
    monotone=st.booleans(),
)
def test_split_windows_never_overlap_and_hold_every_record_once(
    window_s: int, offsets: list[float], monotone: bool
) -> None:
    arrivals = sorted(offsets) if monotone else offsets
    read = [rec(i, T0 + a) for i, a in enumerate(arrivals)]
    runs = split_by_window(read, window_s)
    starts = [s for s, _ in runs]
    assert all(b >= a + window_s for a, b in itertools.pairwise(starts))  # disjoint, increasing
    assert [r for _, rs in runs for r in rs] == read  # each record exactly once, order kept
    for start, rs in runs:
        assert start % window_s == 0 and rs
        for r in rs:
            assert r.arrival_s < start + window_s
            if monotone:
                assert start <= r.arrival_s  # in its own window
                assert window_start(r.arrival_s, window_s) == start


@settings(max_examples=150, deadline=None)
@given(
    window_s=st.integers(min_value=1, max_value=60),
    gaps=st.lists(st.floats(min_value=0, max_value=90, allow_nan=False), min_size=1, max_size=40),
    chunks=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=40),
    batch_size=st.integers(min_value=1, max_value=5),
    end_of_shard=st.booleans(),
)
def test_tracker_delivers_each_record_once_in_one_window(
    window_s: int, gaps: list[float], chunks: list[int], batch_size: int, end_of_shard: bool
) -> None:
    arrivals: list[float] = []
    at = float(T0)
    for g in gaps:
        at += g
        arrivals.append(at)
    records = [rec(i + 1, a) for i, a in enumerate(arrivals)]
    t = tracker(window_s=window_s, batch_size=batch_size, now=T0)
    now = float(T0)
    delivered: list[StreamRecord] = []
    windows: list[tuple[int, int]] = []  # in the order they closed
    seen_in_window: dict[tuple[int, int], int] = {}
    pending: Sequence[StreamRecord] = records
    chunk_sizes = iter(chunks * (len(records) + 1))

    for _ in range(10_000):
        step = t.next(now)
        if isinstance(step, Wait):
            if pending:
                n = next(chunk_sizes)
                chunk, pending = pending[:n], pending[n:]
                now = max(now, chunk[-1].arrival_s)
                t.feed(chunk, now, end_of_shard=end_of_shard and not pending)
            elif step.until is not None:
                now = step.until
            else:
                break
            continue
        key = (step.window_start, step.window_end)
        event = invoke(t, step, count_records)
        if step.is_final:
            assert event["Records"] == [] and event["state"] == {"n": seen_in_window.pop(key)}
            windows.append(key)
        else:
            assert event["state"] == ({} if key not in seen_in_window else {"n": seen_in_window[key]})
            seen_in_window[key] = seen_in_window.get(key, 0) + len(step.records)
            for r in step.records:
                assert step.window_start <= r.arrival_s < step.window_end
            delivered.extend(step.records)
        t.settled(step, now)
    else:
        pytest.fail("the tracker did not come to rest")

    assert delivered == records  # every record once, in shard order
    assert not seen_in_window and t.empty  # every window had its final invocation
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(windows))  # never overlap
    assert t.checkpoint == records[-1].sequence_number
    assert t.finished is end_of_shard
