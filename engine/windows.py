"""Tumbling windows for stream mappings (spec 4.7): window assignment, the event envelope, the
``TimeWindowEventResponse``, and a per-shard :class:`WindowTracker` that says what to invoke next.

Pure policy: no I/O, no clock of its own (``now`` is always passed in, epoch seconds).

Intended call sequence (one tracker per shard; ParallelizationFactor must be 1 with windows)::

    tracker = WindowTracker(shard_id=..., stream_arn=..., window_s=..., batching=..., now=now())
    # or, after a restart: WindowTracker.restore(store.load(...), shard_id=..., ..., now=now())
    # and read the shard after tracker.resume_after (records already folded into the state are skipped)
    while not tracker.finished:
        step = tracker.next(now())
        if isinstance(step, Wait):
            read = await reader.read(...)           # at the latest at step.until, even if nothing new
            tracker.feed(matching(read.records), now(), end_of_shard=read.end_of_shard)
            continue
        # step is an Invocation: a batch of one window, or the window's final invocation.
        # Run it through the usual retry policy (retries, bisect, partial failures, record age). For every
        # attempt, with the records that attempt carries (a bisect half, a partial-failure remainder):
        payload = tracker.payload(step, attempt_records)       # built with the *current* state
        result = await invoker.invoke(payload)
        response = parse_window_response(result.payload)       # None: no "state" -> a failed invocation
        if response is not None and <the attempt succeeded, fully or partially>:
            tracker.accept_state(step, response)                # the next attempt / batch gets this state
        # ...once every record of the step has succeeded or been given up on (for a final invocation:
        # once it succeeded, or its retries are exhausted):
        tracker.settled(step, now())
        store.save(shard, checkpoint=tracker.checkpoint, window=tracker.to_json())

A final invocation (``step.is_final``) with ``Records: []`` cannot go through a batch processor that skips
empty batches: the runner invokes it itself, under the same retry policy. Until it settles the shard
stops (``next`` returns it again and again).

Checkpoints. Records of an open window are folded into its state but not checkpointed: ``checkpoint``
moves past a window's records only when its final invocation settled (spec 4.7). The open window itself
(state + last sequence number covered) is persisted with :meth:`WindowTracker.to_json`, so a restart
resumes the window instead of re-reading it: ``resume_after`` is where to read from, and ``feed`` drops
records at or below what the tracker already covered, so reading from ``checkpoint`` is safe too.
Records the filter drops are simply not fed; while ``empty`` (no window open, nothing queued) the runner
may checkpoint at its own last read position.

Rules and choices. From the spec: windows are fixed and non-overlapping, assigned from the record's
arrival time; the event adds ``window``, ``state``, ``shardId``, ``eventSourceARN``,
``isFinalInvokeForWindow``, ``isWindowTerminatedEarly`` after ``Records``; a response without ``state`` is
a failed invocation; a state over 1 MB terminates the window early; after a window's end Lambda waits up
to 2 minutes for new records; a closed shard closes its window (child shards get new trackers, hence
fresh windows). [UNVERIFIED] choices, each behind a named default or stated here:

* ``WINDOW_ALIGNMENT = "epoch"``: window starts are multiples of the window length since the epoch.
* ``FINAL_INVOKE_CARRIES_RECORDS = False``: the final invocation has ``Records: []``. With True, the last
  batch of a window that is known to be over is flagged final instead (an empty final invocation only
  when no record of the window is left).
* ``INITIAL_STATE = {}``: a new window starts with an empty state.
* ``WINDOW_IDLE_CLOSE_S = 120``: a window with no record of a later window in sight is over once
  ``now >= max(window end, time the last record was fed) + 120 s`` (measured from the last feed too, so a
  consumer catching up on old records does not close windows under their own records).
* Windows never reopen: a record whose arrival time falls before the latest window (arrival timestamps
  out of order, or read after its window was closed) belongs to the latest window's interval.
* Early termination: the final invocation carries the oversized state the function returned (nothing
  of the aggregate is lost); the interval's remaining records start a new window with the same bounds and
  the initial state. Attempts already under way within the step keep the oversized state.
* A partial-batch response (valid ``state`` plus ``batchItemFailures``) updates the state; the retried
  remainder is invoked with it. The runner decides what counts as an accepted response.
* The final invocation must return ``state`` as well (else it failed); its state is dropped. A final
  invocation given up on (retries exhausted) drops the window and its state all the same.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from engine.batching import Admission, Batcher, encode_envelope, encode_record
from engine.model import BatchingPolicy
from engine.ports import StreamRecord

#: [UNVERIFIED] window boundaries are multiples of the window length since 1970-01-01T00:00:00Z
WINDOW_ALIGNMENT: Final = "epoch"
#: spec 4.7: "waits up to 2 minutes" after a window's end for new records before closing it
WINDOW_IDLE_CLOSE_S: Final = 120.0
#: [UNVERIFIED] the final invocation carries ``Records: []``
FINAL_INVOKE_CARRIES_RECORDS: Final = False
#: [UNVERIFIED] the state a new window starts with (read-only: copy it)
INITIAL_STATE: Final[Mapping[str, Any]] = MappingProxyType({})
#: spec 4.7: a state larger than 1 MB terminates the window early
MAX_STATE_BYTES: Final = 1_048_576
MIN_WINDOW_S: Final = 1
MAX_WINDOW_S: Final = 900

_RECORDS_PREFIX: Final = b'{"Records":['
_SERIAL_VERSION: Final = 1


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _seq(sequence_number: str) -> int:
    return int(sequence_number)


# --- window assignment ------------------------------------------------------------------------------


def window_start(arrival_s: float, window_s: int) -> int:
    """The start (epoch seconds) of the window a record arriving at ``arrival_s`` belongs to."""
    if window_s < MIN_WINDOW_S:
        raise ValueError(f"window length must be at least {MIN_WINDOW_S} s, got {window_s}")
    return math.floor(arrival_s / window_s) * window_s


def iso_utc(epoch_s: float) -> str:
    """``2020-12-09T07:04:00Z``: the window bounds' format (whole seconds, UTC, ``Z``)."""
    return datetime.fromtimestamp(math.floor(epoch_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_by_window(
    records: Iterable[StreamRecord], window_s: int, *, not_before: int | None = None
) -> list[tuple[int, list[StreamRecord]]]:
    """Cut records (in shard order) into runs of one window each: ``[(window_start, records), ...]``.

    A batch never mixes windows. Starts strictly increase: a record whose arrival time falls before the
    previous run's window (or before ``not_before``, the start of the window already open) joins that
    later window instead: windows never reopen [UNVERIFIED].
    """
    runs: list[tuple[int, list[StreamRecord]]] = []
    floor = not_before
    for rec in records:
        start = window_start(rec.arrival_s, window_s)
        if floor is not None and start < floor:
            start = floor
        if runs and runs[-1][0] == start:
            runs[-1][1].append(rec)
        else:
            runs.append((start, [rec]))
        floor = start
    return runs


# --- the window and its envelope ----------------------------------------------------------------------


@dataclass
class TumblingWindow:
    """One window of one shard, as persisted between invocations and across restarts."""

    start: int
    end: int
    state: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(dict(INITIAL_STATE)))
    #: the last record folded into ``state`` (or given up on) in this window; None: none yet
    last_sequence_number: str | None = None
    #: the function returned a state over 1 MB: the next invocation is the final one
    terminated_early: bool = False

    def contains(self, arrival_s: float) -> bool:
        return self.start <= arrival_s < self.end

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "state": self.state,
            "lastSequenceNumber": self.last_sequence_number,
            "terminatedEarly": self.terminated_early,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TumblingWindow:
        state = data["state"]
        if not isinstance(state, dict):
            raise ValueError("window state must be a JSON object")
        last = data.get("lastSequenceNumber")
        return cls(
            start=int(data["start"]),
            end=int(data["end"]),
            state=state,
            last_sequence_number=None if last is None else str(last),
            terminated_early=bool(data.get("terminatedEarly", False)),
        )


def envelope_fields(
    window: TumblingWindow, *, shard_id: str, stream_arn: str, is_final: bool, terminated_early: bool
) -> dict[str, Any]:
    """The keys spec 4.7 adds to the event, in the spec's order; ``Records`` goes before them."""
    return {
        "window": {"start": iso_utc(window.start), "end": iso_utc(window.end)},
        "state": window.state,
        "shardId": shard_id,
        "eventSourceARN": stream_arn,
        "isFinalInvokeForWindow": is_final,
        "isWindowTerminatedEarly": terminated_early,
    }


def envelope_bytes(fields: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """``(prefix, suffix)`` around the comma-joined records: ``{"Records":[`` ... ``],"window":...}``."""
    return _RECORDS_PREFIX, b"]," + _json_bytes(fields)[1:]


# --- the function's response ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowResponse:
    """A usable ``TimeWindowEventResponse``. Its ``batchItemFailures`` (if any) are read from the same
    payload by :func:`engine.responses.parse_batch_item_failures`."""

    state: dict[str, Any]
    #: the state's serialized size (compact JSON, UTF-8)
    state_bytes: int

    @property
    def terminates_window(self) -> bool:
        return self.state_bytes > MAX_STATE_BYTES


def parse_window_response(payload: bytes) -> WindowResponse | None:
    """The response's state, or None when the invocation must count as failed: not JSON, not an
    object, no ``state`` property, or a ``state`` that is not a JSON object (spec 4.4, 4.7)."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    state = doc.get("state")
    if not isinstance(state, dict):
        return None
    return WindowResponse(state=state, state_bytes=len(_json_bytes(state)))


# --- the tracker -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """Invoke these records of one window (or the window's final invocation) with its envelope."""

    window_start: int
    window_end: int
    records: tuple[StreamRecord, ...]
    is_final: bool
    #: ``isWindowTerminatedEarly`` of the event (only ever true on a final invocation)
    terminated_early: bool
    _encoded: Mapping[str, bytes] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Wait:
    """Nothing to invoke now. Feed new records, and call ``next`` again at ``until`` at the latest
    (None: only new records or the end of the shard can change anything)."""

    until: float | None


@dataclass
class _Queued:
    start: int
    record: StreamRecord
    encoded: bytes


class WindowTracker:
    """Decides, for one shard, which batch of which window to invoke next and when a window is over.

    A window is over when a record of a later window is queued, when the shard ended and all its records
    were fed, when its state outgrew 1 MB, or at ``max(end, last feed with records) + idle_close_s``.
    Its queued records are invoked first (batches never mix windows, and a batch of a window that is over
    goes without waiting for the batching window), then the final invocation.
    """

    def __init__(
        self,
        *,
        shard_id: str,
        stream_arn: str,
        window_s: int,
        batching: BatchingPolicy,
        now: float,
        idle_close_s: float = WINDOW_IDLE_CLOSE_S,
        final_carries_records: bool = FINAL_INVOKE_CARRIES_RECORDS,
    ) -> None:
        if not MIN_WINDOW_S <= window_s <= MAX_WINDOW_S:
            raise ValueError(
                f"TumblingWindowInSeconds must be {MIN_WINDOW_S}..{MAX_WINDOW_S}, got {window_s}"
            )
        self.shard_id = shard_id
        self.stream_arn = stream_arn
        self.window_s = window_s
        self.batching = batching
        self.idle_close_s = idle_close_s
        self.final_carries_records = final_carries_records
        self.window: TumblingWindow | None = None
        #: the sequence number the shard's checkpoint may move to (every window up to it is final)
        self.checkpoint: str | None = None
        self._queue: list[_Queued] = []
        #: start of the latest window (open or closed): windows never go back
        self._floor: int | None = None
        #: highest sequence number queued or covered: ``feed`` drops anything at or below it
        self._high: int | None = None
        self._last_record_at = now
        #: when the batching window (MaximumBatchingWindowInSeconds) opened: after the last settle
        self._collect_since = now
        self._shard_ended = False

    # -- persistence --

    def to_json(self) -> dict[str, Any]:
        """What survives a restart: the open window (state, coverage, early termination), the checkpoint
        and the latest window start. Queued records are not kept: they are read again."""
        return {
            "version": _SERIAL_VERSION,
            "window": None if self.window is None else self.window.to_json(),
            "checkpoint": self.checkpoint,
            "latestWindowStart": self._floor,
        }

    @classmethod
    def restore(
        cls,
        data: Mapping[str, Any],
        *,
        shard_id: str,
        stream_arn: str,
        window_s: int,
        batching: BatchingPolicy,
        now: float,
        idle_close_s: float = WINDOW_IDLE_CLOSE_S,
        final_carries_records: bool = FINAL_INVOKE_CARRIES_RECORDS,
    ) -> WindowTracker:
        if data.get("version") != _SERIAL_VERSION:
            raise ValueError(f"unknown window tracker version {data.get('version')!r}")
        tracker = cls(
            shard_id=shard_id,
            stream_arn=stream_arn,
            window_s=window_s,
            batching=batching,
            now=now,
            idle_close_s=idle_close_s,
            final_carries_records=final_carries_records,
        )
        raw_window = data.get("window")
        tracker.window = None if raw_window is None else TumblingWindow.from_json(raw_window)
        checkpoint = data.get("checkpoint")
        tracker.checkpoint = None if checkpoint is None else str(checkpoint)
        floor = data.get("latestWindowStart")
        tracker._floor = None if floor is None else int(floor)
        marks = [tracker.checkpoint]
        if tracker.window is not None:
            marks.append(tracker.window.last_sequence_number)
            start = tracker.window.start
            tracker._floor = start if tracker._floor is None else max(tracker._floor, start)
        known = [_seq(m) for m in marks if m is not None]
        tracker._high = max(known) if known else None
        return tracker

    # -- state of the shard --

    @property
    def resume_after(self) -> str | None:
        """Read the shard after this sequence number on a restart (None: from the mapping's start)."""
        if self.window is not None and self.window.last_sequence_number is not None:
            return self.window.last_sequence_number
        return self.checkpoint

    @property
    def empty(self) -> bool:
        """No window open and no record queued."""
        return self.window is None and not self._queue

    @property
    def finished(self) -> bool:
        """The shard ended and its last window's final invocation settled."""
        return self._shard_ended and self.empty

    def close_deadline(self) -> float | None:
        """When the open window is over for want of new records (None: no window open)."""
        if self.window is None:
            return None
        return max(float(self.window.end), self._last_record_at) + self.idle_close_s

    # -- input --

    def feed(self, records: Iterable[StreamRecord], now: float, *, end_of_shard: bool = False) -> int:
        """Queue records read from the shard, in shard order; returns how many were new.

        Records at or below what the tracker already queued or covered are dropped (a re-read).
        ``end_of_shard``: the shard is closed and every record of it has been fed.
        """
        added = 0
        for rec in records:
            seq = _seq(rec.sequence_number)
            if self._high is not None and seq <= self._high:
                continue
            start = window_start(rec.arrival_s, self.window_s)
            floor = self._queue[-1].start if self._queue else self._floor
            if floor is not None and start < floor:
                start = floor
            self._queue.append(_Queued(start, rec, encode_record(rec.record)))
            self._high = seq
            added += 1
        if added:
            self._last_record_at = now
        if end_of_shard:
            self._shard_ended = True
        self._open_next()
        return added

    # -- decisions --

    def next(self, now: float) -> Invocation | Wait:
        """What to do now. Pure: calling it again without settling returns the same invocation."""
        w = self.window
        if w is None:  # nothing queued (an open window always follows queued records)
            return Wait(None)
        if w.terminated_early:
            return self._final(w, ())
        in_window = 0
        while in_window < len(self._queue) and self._queue[in_window].start == w.start:
            in_window += 1
        deadline = self.close_deadline()
        assert deadline is not None
        over = in_window < len(self._queue) or self._shard_ended or now >= deadline
        if in_window == 0:
            return self._final(w, ()) if over else Wait(deadline)

        fields = self._fields(w, is_final=False)
        prefix, suffix = envelope_bytes(fields)
        batcher: Batcher[_Queued] = Batcher(
            self.batching, envelope_bytes=len(prefix) + len(suffix), now=self._collect_since
        )
        taken: list[_Queued] = []
        for item in self._queue[:in_window]:
            if batcher.full:
                break
            verdict = batcher.offer(item, item.encoded, now)
            if verdict is Admission.TOO_LARGE:  # alone over the cap: it goes alone (the invoke will say)
                taken = [item]
                break
            if verdict is Admission.WOULD_EXCEED:
                break
            taken.append(item)
        rest_of_window = len(taken) == in_window
        if over and rest_of_window and self.final_carries_records:
            return self._final(w, taken)
        if over or not rest_of_window or batcher.should_flush(now):
            return self._invocation(w, taken, is_final=False)
        batch_deadline = batcher.deadline()
        return Wait(deadline if batch_deadline is None else min(batch_deadline, deadline))

    def payload(self, step: Invocation, records: Sequence[StreamRecord] | None = None) -> bytes:
        """The event for ``step`` (or for ``records``, a part of it: a bisect half, a retried remainder),
        built with the window's current state."""
        w = self._current(step)
        chosen = step.records if records is None else records
        encoded = [step._encoded.get(r.sequence_number) or encode_record(r.record) for r in chosen]
        prefix, suffix = envelope_bytes(self._fields(w, is_final=step.is_final))
        return encode_envelope(prefix, encoded, suffix)

    # -- outcomes --

    def accept_state(self, step: Invocation, response: WindowResponse) -> None:
        """An invocation of ``step`` succeeded (fully, or partially with ReportBatchItemFailures): its state
        is the window's state from now on. A state over 1 MB terminates the window early."""
        w = self._current(step)
        w.state = response.state
        if response.terminates_window:
            w.terminated_early = True

    def settled(self, step: Invocation, now: float) -> None:
        """Every record of ``step`` succeeded or was given up on; for a final invocation: it succeeded or
        its retries are exhausted. The window then closes, its state is dropped and ``checkpoint`` moves
        past its records."""
        w = self._current(step)
        n = len(step.records)
        head = [(q.start, q.record.sequence_number) for q in self._queue[:n]]
        if head != [(w.start, r.sequence_number) for r in step.records]:
            raise ValueError("the invocation's records are not the head of the window's queue")
        del self._queue[:n]
        if step.records:
            w.last_sequence_number = step.records[-1].sequence_number
        self._collect_since = now
        if step.is_final:
            if w.last_sequence_number is not None:
                self.checkpoint = w.last_sequence_number
            self._floor = w.start
            self.window = None
            self._open_next()

    # -- internals --

    def _open_next(self) -> None:
        if self.window is None and self._queue:
            start = self._queue[0].start
            self.window = TumblingWindow(start=start, end=start + self.window_s)
            self._floor = start

    def _current(self, step: Invocation) -> TumblingWindow:
        w = self.window
        if w is None or (w.start, w.end) != (step.window_start, step.window_end):
            raise ValueError("the invocation does not belong to the open window")
        return w

    def _fields(self, w: TumblingWindow, *, is_final: bool) -> dict[str, Any]:
        return envelope_fields(
            w,
            shard_id=self.shard_id,
            stream_arn=self.stream_arn,
            is_final=is_final,
            terminated_early=is_final and w.terminated_early,
        )

    def _final(self, w: TumblingWindow, items: Sequence[_Queued]) -> Invocation:
        return self._invocation(w, items, is_final=True)

    def _invocation(self, w: TumblingWindow, items: Sequence[_Queued], *, is_final: bool) -> Invocation:
        return Invocation(
            window_start=w.start,
            window_end=w.end,
            records=tuple(q.record for q in items),
            is_final=is_final,
            terminated_early=is_final and w.terminated_early,
            _encoded={q.record.sequence_number: q.encoded for q in items},
        )
