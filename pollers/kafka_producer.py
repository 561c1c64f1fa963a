"""The ``kafka://<topic>`` on-failure destination: failure records produced to a topic of the mapping's own
cluster (spec 6.3), through one aiokafka producer started on first use."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from engine.senders import KAFKA_SCHEME, DestinationError
from pollers.kafka_connection import CLOSE_TIMEOUT_S, KafkaConnection


class KafkaTopicProducer:
    """Implements engine.ports.TopicProducer; owned (and closed) by the mapping's KafkaSource."""

    def __init__(self, connection: KafkaConnection) -> None:
        self.connection = connection
        self._producer: Any = None
        self._start_lock = anyio.Lock()

    async def produce(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Each (key, value) is sent with acks from all in-sync replicas; a keyless message goes to any
        partition. Raises DestinationError when the cluster refuses or cannot be reached."""
        destination = f"{KAFKA_SCHEME}{topic}"
        try:
            producer = await self._started()
            sent = [await producer.send(topic, value=value, key=key) for key, value in messages]
            for delivery in sent:  # queued together above, so they go in few requests
                await delivery
        except KafkaError as e:
            raise DestinationError(f"{destination}: produce failed: {e}", destination=destination) from e

    async def _started(self) -> Any:
        async with self._start_lock:  # lanes fail concurrently: one producer for all of them
            if self._producer is None:
                producer = AIOKafkaProducer(
                    acks="all", enable_idempotence=True, **self.connection.client_kwargs()
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def aclose(self) -> None:
        """Stops the producer (shielded, at most CLOSE_TIMEOUT_S); idempotent."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(CLOSE_TIMEOUT_S),
            contextlib.suppress(KafkaError, OSError),
        ):
            await producer.stop()


if TYPE_CHECKING:  # the port this class implements (checked by mypy, never run)
    from engine.ports import TopicProducer

    def _implements(producer: KafkaTopicProducer) -> TopicProducer:
        return producer
