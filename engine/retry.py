"""Retry policy pieces shared by every source. Pure policy."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

#: the default jitter source: seeding a Random from the OS costs tens of µs, and a stream batch makes a
#: Backoff each time (it is used only after a failure)
_RNG = random.Random()


@dataclass
class Backoff:
    """Exponential back-off with equal jitter and a cap (AWS documents no exact timings).

    Attempt n (from 0) waits uniformly between half and all of ``min(cap_s, base_s * factor**n)``: never
    less than half the ceiling, so a failing function is not retried in a tight loop, and a long run of
    failures waits at least ``cap_s / 2`` between attempts (not full jitter, which could draw 0).
    """

    base_s: float = 0.1
    cap_s: float = 10.0
    factor: float = 2.0
    attempts: int = 0
    rng: random.Random = field(default=_RNG)

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * self.factor**self.attempts)
        self.attempts += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempts = 0
