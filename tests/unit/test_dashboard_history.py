"""engine.api.dashboard: the history's rates, idle mappings keeping no samples, and a batch's tree."""

from __future__ import annotations

from engine.api.dashboard import History, batch_root, batch_tree
from engine.metrics import EngineMetrics
from engine.model import EventSourceMapping, SourceKind, State
from engine.store.ports import JournalEntry

M = EventSourceMapping(
    uuid="u1",
    kind=SourceKind.KINESIS,
    function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
    params={"EventSourceArn": "arn:aws:kinesis:us-east-1:000000000000:stream/s"},
    enabled=True,
    state=State.ENABLED,
    state_transition_reason="User action",
    last_modified=0.0,
)


def entry(outcome: str, size: int, first: int, last: int, depth: int = 0, i: int = 0) -> JournalEntry:
    return JournalEntry("u1", "shard", str(first), str(last), size, 1, depth, outcome, 1.0, {}, id=i)


def test_rates_and_idle_mappings() -> None:
    metrics, clock = EngineMetrics(), [0.0]
    mm = metrics.mapping(M, "kinesis")
    history = History(metrics, sample_s=5.0, clock=lambda: clock[0])
    history.sample()
    for t in (5.0, 10.0):
        clock[0] = t
        mm.journaled(entry("invoked", 50, 1, 50))
        mm.invoked(0.01, function_error=False)
        history.sample()
    s = history.series("u1")
    assert s["t"] == [5.0, 10.0] and s["records_per_s"] == [10.0, 10.0]
    for t in (15.0, 20.0, 25.0):  # idle: no new sample is kept
        clock[0] = t
        history.sample()
    assert len(history._samples["u1"]) == 3
    assert history.series("u1")["records_per_s"] == [10.0, 10.0, 0.0]  # falls to zero while idle
    clock[0] = 30.0
    mm.journaled(entry("function_error", 25, 51, 75))
    mm.invoked(0.01, function_error=True)
    history.sample()
    s = history.series("u1")
    # the wake-up's rate covers its last interval (25 -> 30 s), not the idle stretch before it
    assert s["t"][-2:] == [25.0, 30.0] and s["records_per_s"][-1] == 5.0 and s["failed_per_s"][-1] == 5.0
    assert s["errors_per_s"][-1] == 0.2 and s["lag"][-1] is None
    metrics.forget("u1")
    history.sample()
    assert history.series("u1")["t"] == []


def test_the_tree_of_a_bisected_batch() -> None:
    rows = [
        entry("invoked", 4, 1, 4, i=1),  # the batch before
        entry("function_error", 8, 5, 12, i=2),
        entry("function_error", 4, 5, 8, 1, i=3),
        entry("invoked", 2, 5, 6, 2, i=4),
        entry("function_error", 2, 7, 8, 2, i=5),
        entry("discarded", 2, 7, 8, i=6),
        entry("invoked", 4, 9, 12, 1, i=7),
        entry("invoked", 8, 13, 20, i=8),  # the batch after
    ]
    for at in range(1, 7):  # from any of its rows, the batch's first
        assert batch_root(rows, at) == 1
    assert batch_root(rows, 0) == 0 and batch_root(rows, 7) == 7
    assert [e.id for e in batch_tree(rows[1:])] == [2, 3, 4, 5, 6, 7]
