"""Contiguous checkpoints across lanes (KCL rule) and stable lane assignment."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from engine.checkpoints import ContiguousCheckpoint, lane_of


def test_checkpoint_moves_only_over_a_contiguous_finished_run() -> None:
    c = ContiguousCheckpoint()
    c.extend(["1", "2"])
    c.extend(["3", "4"])
    assert c.finish(["2", "3"]) is None  # "1" still unfinished
    assert c.position is None and len(c) == 4
    assert c.finish(["1"]) == "3"
    assert c.finish(["4"]) == "4"
    assert len(c) == 0


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=2**32))
def test_checkpoint_never_passes_an_unfinished_record(n: int, seed: int) -> None:
    rng = random.Random(seed)
    c = ContiguousCheckpoint()
    seqs = [str(100 + i) for i in range(n)]
    c.extend(seqs)
    order = seqs[:]
    rng.shuffle(order)
    finished: set[str] = set()
    for s in order:
        c.finish([s])
        finished.add(s)
        if c.position is not None:
            upto = seqs[: seqs.index(c.position) + 1]
            assert set(upto) <= finished
            nxt = seqs.index(c.position) + 1
            assert nxt == n or seqs[nxt] not in finished
    assert c.position == seqs[-1]


def test_lanes_are_stable_and_spread() -> None:
    keys = [f"key-{i}" for i in range(1000)]
    lanes = [lane_of(k, 4) for k in keys]
    assert lanes == [lane_of(k, 4) for k in keys]
    assert set(lanes) == {0, 1, 2, 3}
    assert all(lane_of(k, 1) == 0 for k in keys)
