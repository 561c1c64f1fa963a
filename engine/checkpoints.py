"""Shard checkpoints as the Kinesis Client Library keeps them: only after success, only contiguous.

Records enter in shard order; lanes finish them in any order across lanes. The checkpoint is the highest
sequence number below which every record is finished (processed, filtered out or sent to the on-failure
destination), so a restart never skips an unfinished record. Pure policy.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable


class ContiguousCheckpoint:
    def __init__(self) -> None:
        self._pending: deque[str] = deque()
        self._done: set[str] = set()
        self.position: str | None = None

    def __len__(self) -> int:
        """Records read and not yet checkpointed (the backpressure measure)."""
        return len(self._pending)

    def extend(self, sequence_numbers: Iterable[str]) -> None:
        self._pending.extend(sequence_numbers)

    def finish(self, sequence_numbers: list[str] | tuple[str, ...]) -> str | None:
        """Mark records finished; returns the new checkpoint when it moved, else None."""
        self._done.update(sequence_numbers)
        moved = False
        while self._pending and self._pending[0] in self._done:
            self.position = self._pending.popleft()
            self._done.discard(self.position)
            moved = True
        return self.position if moved else None


def lane_of(lane_key: str, lanes: int) -> int:
    """A stable lane for a partition key: the same key always lands in the same lane, in order."""
    if lanes <= 1:
        return 0
    return zlib.crc32(lane_key.encode()) % lanes
