"""The background offset committer of a Kafka consumer-group member.

The engine reports each partition's last finished record (:meth:`OffsetCommitter.request`); the committer
commits offset + 1 to the group, the partitions and batches finished meanwhile in one OffsetCommit request.
Its task (:meth:`OffsetCommitter.run`) runs in the source's task group while the source is entered; the
source also flushes what is pending before a rebalance hands its partitions over and when it closes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import anyio
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError  # type: ignore[import-untyped]

from engine.events_kafka import partition_key
from engine.ports import SourceError
from pollers.kafka_connection import KafkaConnection


class OffsetCommitter:
    """``consumer`` gives the started aiokafka consumer (None before its start and after the close);
    ``assignment`` the partitions the group assigns to this member now."""

    def __init__(
        self,
        connection: KafkaConnection,
        consumer: Callable[[], Any],
        assignment: Callable[[], Collection[Any]],
        log: Any,
    ) -> None:
        self.connection = connection
        self._consumer = consumer
        self._assignment = assignment
        self.log = log
        #: offsets finished since the last commit, by partition
        self._pending: dict[Any, int] = {}
        #: set when there is something to commit (replaced by a fresh one once the committer wakes)
        self._wanted = anyio.Event()
        #: what a background commit met: the next request raises it (the runner restarts)
        self._failure: SourceError | None = None

    def request(self, tp: Any, offset: int) -> None:
        """Commit ``offset`` (the next one to read) for ``tp`` soon. Raises the SourceError a background
        commit met. A partition no longer assigned to this member is not committed: its new owner resumes
        from the last committed offset (at-least-once)."""
        if self._failure is not None:
            raise self._failure
        if tp not in self._assignment():
            self.log.warning(
                "kafka_commit_skipped_not_assigned",
                shard=partition_key(tp.topic, tp.partition),
                offset=offset,
            )
            return
        self._pending[tp] = offset
        self._wanted.set()

    async def run(self) -> None:
        """Commits whenever offsets are pending, until cancelled or a commit fails."""
        while True:
            await self._wanted.wait()
            self._wanted = anyio.Event()
            try:
                await self.flush()
            except SourceError as e:
                self._failure = e
                return

    async def flush(self) -> None:
        """Commits what is pending for partitions still assigned. A commit refused by a rebalance in
        progress is dropped (a later commit covers it, or the new owner resumes before it)."""
        assigned = self._assignment()
        offsets = {tp: o for tp, o in self._pending.items() if tp in assigned}
        self._pending.clear()
        consumer = self._consumer()
        if not offsets or consumer is None:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as e:
            self.log.warning(
                "kafka_commit_skipped_rebalance",
                shards=sorted(partition_key(tp.topic, tp.partition) for tp in offsets),
                error=str(e),
            )
        except KafkaError as e:
            raise self.connection.refused(e, "Commit") from e
