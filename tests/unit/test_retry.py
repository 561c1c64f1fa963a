"""engine.retry.Backoff: exponential back-off with equal jitter, within its bounds."""

from __future__ import annotations

import random

import pytest

from engine.retry import Backoff


class _Extreme(random.Random):
    """Draws the low or the high end of every uniform range."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def _ceilings(b: Backoff, n: int) -> list[float]:
    return [min(b.cap_s, b.base_s * b.factor**i) for i in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_each_delay_is_between_half_and_all_of_its_ceiling(seed: int) -> None:
    backoff = Backoff(base_s=0.1, cap_s=10.0, rng=random.Random(seed))
    for ceiling in _ceilings(backoff, 30):
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling


def test_bounds_are_reached_equal_jitter_not_full() -> None:
    low = Backoff(base_s=0.1, cap_s=10.0, rng=_Extreme(high=False))
    high = Backoff(base_s=0.1, cap_s=10.0, rng=_Extreme(high=True))
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    assert [low.next_delay() for _ in ceilings] == pytest.approx([c / 2 for c in ceilings])
    assert [high.next_delay() for _ in ceilings] == pytest.approx(ceilings)


def test_reset_starts_from_the_base_again() -> None:
    backoff = Backoff(base_s=0.5, cap_s=60.0, rng=_Extreme(high=True))
    assert [backoff.next_delay() for _ in range(3)] == pytest.approx([0.5, 1.0, 2.0])
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.5)
