"""Collecting one batch (spec 3): BatchSize, the batching window, the 6 MB payload, for every runner.

A runner's :class:`Feed` says where records come from: a queue poller receives from its broker (a long
poll, filtered and encoded as it arrives), a stream lane receives its shard reader's reads. The rules of
a batch are the same for both and live only here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from engine.batching import Batch, Batcher

T = TypeVar("T")


class Feed(Protocol[T]):
    #: how long to wait for a first record (a queue: its long poll; a lane: until its shard has more)
    idle_wait_s: float
    #: a window that closed while nothing came reopens with the first record, so a burst batches
    reopens_idle_window: bool

    def stopped(self) -> bool:
        """No more records will be taken: the batch goes with what it has."""
        ...

    async def take(self, room: int, wait_s: float) -> Sequence[tuple[T, bytes]] | None:
        """Up to ``room`` records (with their encoding) within ``wait_s``; None when none arrived in time,
        possibly empty when some arrived and none was kept (filtered out)."""
        ...

    def take_ready(self, room: int) -> Sequence[tuple[T, bytes]]:
        """Records already waiting, without waiting (a window of 0 still takes what is queued)."""
        ...

    async def too_large(self, item: T, encoded: bytes) -> bool:
        """A record alone over the payload limit: True when the feed settled it (a queue dead-letters
        it); False to send it alone, as its own batch, for the pipeline to discard."""
        ...


@dataclass
class Collected(Generic[T]):
    batch: Batch[T]
    #: what did not fit, the start of the next batch
    carry: list[tuple[T, bytes]] = field(default_factory=list)
    #: the batch was cut by the payload limit while records were waiting
    overflowed: bool = False


async def collect(
    batcher: Batcher[T],
    feed: Feed[T],
    carry: Sequence[tuple[T, bytes]],
    clock: Callable[[], float],
) -> Collected[T]:
    """One batch: until BatchSize, the window closes, the payload limit, or the feed stops."""
    pending = list(carry)
    while True:
        now = clock()
        while pending:
            added = batcher.admit(pending, now)
            if added == len(pending):
                break
            rest = pending[added:]
            if batcher.full:
                return Collected(batcher.batch, rest)
            if batcher.batch.items:  # the next record would push the payload past the cap
                return Collected(batcher.batch, rest, overflowed=True)
            item, encoded = rest[0]  # alone over the cap
            if not await feed.too_large(item, encoded):
                return Collected(Batch([item], [encoded]), rest[1:])
            pending = rest[1:]
        pending = []
        if batcher.should_flush(clock()) or feed.stopped():
            return Collected(batcher.batch)
        if batcher.batch.items and batcher.policy.window_s == 0:
            # no window: what is already waiting joins, then the batch goes
            pending = list(feed.take_ready(batcher.room))
            if not pending:
                return Collected(batcher.batch)
            continue
        wait = feed.idle_wait_s
        if batcher.batch.items:
            wait = min(wait, batcher.remaining(clock()))
        taken = await feed.take(batcher.room, wait)
        if taken is None:
            if not batcher.batch.items:
                return Collected(batcher.batch)
            continue
        if feed.reopens_idle_window and not batcher.batch.items and batcher.remaining(clock()) <= 0:
            batcher.opened_at = clock()
        pending = list(taken)
