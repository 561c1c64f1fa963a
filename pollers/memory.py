"""An in-memory queue for unit tests of the queue runner's policy: receive, ack, release and reject are
recorded, released messages come back at once with their attempt count raised (a visibility timeout of
zero), rejected ones are kept aside as a dead-letter queue would."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio

from engine.ports import QueueMessage


class MemoryQueue:
    def __init__(self, bodies: Sequence[str] = ()) -> None:
        self._ready: deque[QueueMessage] = deque()
        self._seq = 0
        self.acked: list[str] = []
        self.released: list[str] = []
        #: (item id, reason) of the messages rejected, in order: the dead-letter queue
        self.rejected: list[tuple[str, str]] = []
        self.receives = 0
        self._arrived = anyio.Event()
        for body in bodies:
            self.put(body)

    def put(self, body: str, attempt: int = 1, item_id: str | None = None) -> str:
        self._seq += 1
        item_id = item_id or f"m{self._seq}"
        record: dict[str, Any] = {
            "messageId": item_id,
            "body": body,
            "attributes": {"ApproximateReceiveCount": str(attempt)},
        }
        self._ready.append(
            QueueMessage(record=record, item_id=item_id, handle=item_id, extra={"attempt": attempt})
        )
        self._arrived.set()
        return item_id

    async def receive(self, max_messages: int, wait_s: float) -> Sequence[QueueMessage]:
        self.receives += 1
        if not self._ready:
            with anyio.move_on_after(wait_s):
                await self._arrived.wait()
            self._arrived = anyio.Event()
        out: list[QueueMessage] = []
        while self._ready and len(out) < max_messages:
            out.append(self._ready.popleft())
        return out

    async def ack(self, messages: Sequence[QueueMessage]) -> None:
        self.acked += [m.item_id for m in messages]

    async def release(self, messages: Sequence[QueueMessage]) -> Sequence[QueueMessage]:
        for m in messages:
            self.released.append(m.item_id)
            self.put(m.record["body"], attempt=int(m.extra["attempt"]) + 1, item_id=m.item_id)
        return ()

    async def reject(self, messages: Sequence[QueueMessage], reason: str) -> None:
        self.rejected += [(m.item_id, reason) for m in messages]

    async def aclose(self) -> None:
        pass
