"""engine.timescale: the engine's clock N times faster from its origin; durations in real seconds."""

from __future__ import annotations

import pytest

from engine.model import BatchingPolicy
from engine.timescale import TimeScale


def test_scaled_clock_and_durations() -> None:
    wall = [1000.0]
    t = TimeScale(60, origin=1000.0, wall=lambda: wall[0])
    assert t.now() == 1000.0
    wall[0] = 1001.0
    assert t.now() == 1060.0  # a real second is a scaled minute
    assert t.scaled(990.0) == 400.0  # a record that arrived 10 s before the start: 600 s before it
    assert t.now() - t.scaled(999.0) == 120.0  # its age: 2 real seconds, two scaled minutes
    assert t.real(3600) == 60.0
    policy = BatchingPolicy(batch_size=10, window_s=30.0, max_payload_bytes=6_291_456)
    assert t.batching(policy).window_s == 0.5
    one = TimeScale()
    assert not one.scaled_time and one.scaled(5.0) == 5.0 and one.batching(policy) is policy
    with pytest.raises(ValueError, match="positive"):
        TimeScale(0)
