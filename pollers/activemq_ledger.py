"""The ActiveMQ redelivery ledger: the delivery counts STOMP frames do not carry.

Over STOMP, ActiveMQ Classic says only whether a message was delivered before (``redelivered:true``),
not how often; its JMS client keeps that count. The ledger keeps it for the engine, per message id, so
that ``QueueMessage.extra["attempt"]`` is right and the queue runner can apply the redelivery limit.
It is pure bookkeeping: the transport reports deliveries and settlements, the ledger counts. The MQ
transport factory (pollers/mq.py) keeps one per broker and queue, so a re-created source (a restarted
runner) keeps the counts; an engine restart starts them again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class RedeliveryLedger:
    """What this process knows about the messages of one queue, across connections and sources.

    ``failures``: failed deliveries per message id (the redelivery counter STOMP frames do not carry);
    ``reached``: ids handed to the function at least once; ``unseen``: ids that went back to the broker
    without reaching the function (prefetched into a retired subscription). Acked and dead-lettered ids
    are forgotten; each map keeps at most ``capacity`` ids (oldest dropped).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self.failures: OrderedDict[str, int] = OrderedDict()
        self.reached: OrderedDict[str, None] = OrderedDict()
        self.unseen: OrderedDict[str, None] = OrderedDict()

    def _put(self, d: OrderedDict[str, Any], key: str, value: Any) -> None:
        d[key] = value
        d.move_to_end(key)
        if len(d) > self.capacity:
            d.popitem(last=False)

    def redelivered(self, message_id: str, broker_flag: bool) -> bool:
        """The broker's flag, unless the message never reached the function before."""
        return broker_flag and (message_id in self.reached or message_id not in self.unseen)

    def attempt(self, message_id: str) -> int:
        return self.failures.get(message_id, 0) + 1

    def handed_out(self, message_id: str) -> None:
        self._put(self.reached, message_id, None)

    def went_back_unseen(self, message_id: str) -> None:
        if message_id not in self.reached:
            self._put(self.unseen, message_id, None)

    def failed(self, message_id: str) -> int:
        """Count one failed delivery; returns the failures so far."""
        n = self.failures.get(message_id, 0) + 1
        self._put(self.failures, message_id, n)
        return n

    def forget(self, message_id: str) -> None:
        self.failures.pop(message_id, None)
        self.reached.pop(message_id, None)
        self.unseen.pop(message_id, None)
