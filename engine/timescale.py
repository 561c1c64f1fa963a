"""``esm serve --time-scale N``: what the engine times runs N times faster.

Scaled: retry back-off, MaximumRecordAgeInSeconds, batching windows, tumbling windows and their 2-minute
idle close. The engine's wall clock runs N times faster from its start (``now``), and a record's arrival
time is read on that clock (``scaled``): a record's age is N times its real age, so a 6-hour
MaximumRecordAgeInSeconds expires after 6 minutes at N = 60. Timestamps the engine writes (failure
records, tumbling windows' bounds) are on the scaled clock too. What a source service times stays real:
visibility timeouts, long polls, poll intervals, broker redelivery.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import anyio

from engine.model import BatchingPolicy


@dataclass(frozen=True)
class TimeScale:
    factor: float = 1.0
    #: the wall clock when the scaled clock started (they agree at that instant)
    origin: float = field(default_factory=time.time)
    wall: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise ValueError(f"a time scale is a positive factor, got {self.factor}")

    @property
    def scaled_time(self) -> bool:
        return self.factor != 1.0

    def now(self) -> float:
        """The engine's wall clock."""
        return self.scaled(self.wall())

    def scaled(self, wall_s: float) -> float:
        """A real wall-clock time on the engine's clock (a record's arrival)."""
        return wall_s if self.factor == 1.0 else self.origin + (wall_s - self.origin) * self.factor

    def real(self, seconds: float) -> float:
        """How long ``seconds`` of the engine's clock last."""
        return seconds / self.factor

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds / self.factor)

    def batching(self, policy: BatchingPolicy) -> BatchingPolicy:
        """The batching window, in real seconds."""
        return policy if self.factor == 1.0 else replace(policy, window_s=policy.window_s / self.factor)


REAL_TIME = TimeScale()
