"""Records given up on (spec 4.8): journaled, then delivered to the mapping's on-failure destination.

A :class:`FailureSink` makes one delivery attempt: :class:`AwsDestination` (SQS, SNS, S3) or
:class:`KafkaTopic` (``kafka://`` on a Kafka source). :class:`Discards` is the one place that journals a
discard and retries its delivery until it lands: a record is never dropped because a destination is down.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import structlog

from engine.destinations import s3_key, with_payload
from engine.pipeline.journal import Journal
from engine.ports import TopicProducer
from engine.retry import Backoff
from engine.senders import (
    DestinationError,
    DestinationSender,
    destination_kind,
    encode_record,
    kafka_destination_topic,
)
from engine.store.ports import DESTINATION_FAILED, DESTINATION_SENT, DISCARDED
from engine.stream_policy import Discard
from engine.stream_shapes import Failure, StreamShape


class FailureSink(Protocol):
    @property
    def destination(self) -> str: ...

    async def send(self, failure: Failure, event_payload: bytes, mapping_uuid: str) -> bytes:
        """One delivery attempt; returns what was delivered (the failure record's bytes, a topic's
        message values one per line); raises DestinationError when it does not land."""
        ...


@dataclass(frozen=True)
class AwsDestination:
    destination: str
    shape: StreamShape
    sender: DestinationSender

    async def send(self, failure: Failure, event_payload: bytes, mapping_uuid: str) -> bytes:
        record = self.shape.failure_record(failure)
        key = None
        if destination_kind(self.destination) == "s3":  # S3 keeps the event itself too
            record = with_payload(record, event_payload)
            key = s3_key(mapping_uuid, failure.shard_id, failure.now, str(uuidlib.uuid4()))
        await self.sender.send(self.destination, record, s3_key=key)
        return encode_record(record).encode()


@dataclass(frozen=True)
class KafkaTopic:
    destination: str
    shape: StreamShape
    producer: TopicProducer

    async def send(self, failure: Failure, event_payload: bytes, mapping_uuid: str) -> bytes:
        messages = self.shape.topic_messages(failure)
        await self.producer.produce(kafka_destination_topic(self.destination), messages)
        return b"\n".join(value for _, value in messages)


def failure_sink(
    destination: str | None,
    shape: StreamShape,
    sender: DestinationSender,
    producer: TopicProducer | None,
) -> FailureSink | None:
    """The sink of a mapping's DestinationConfig.OnFailure, None without one."""
    if not destination:
        return None
    if destination_kind(destination) == "kafka":
        if producer is None:
            raise RuntimeError(f"{destination}: a kafka:// destination needs a Kafka source")
        return KafkaTopic(destination, shape, producer)
    return AwsDestination(destination, shape, sender)


class Discards:
    """Journals every discard and delivers its failure record, retrying until the destination takes it."""

    def __init__(
        self,
        sink: FailureSink | None,
        journal: Journal,
        *,
        function_arn: str,
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        log: Any = None,
    ) -> None:
        self.sink = sink
        self.journal = journal
        self.function_arn = function_arn
        self.now = now
        self.sleep = sleep
        self.log = log if log is not None else structlog.get_logger("engine.pipeline.failures")

    @property
    def destination(self) -> str | None:
        return self.sink.destination if self.sink is not None else None

    async def discard(self, shard_id: str, scope: str, d: Discard, event_payload: bytes) -> None:
        self.log.warning(
            "records_discarded",
            shard=shard_id,
            condition=d.condition,
            count=len(d.records),
            first=d.records[0].sequence_number,
            last=d.records[-1].sequence_number,
            invoke_count=d.approximate_invoke_count,
            destination=self.destination,
        )
        # the journal's view of the discard: the records given up on, after how many invocations
        items = [r.sequence_number for r in d.records]
        attempt = d.approximate_invoke_count
        discarded = {"reason": d.condition, "destination": self.destination}
        await self.journal.write(
            scope, items, attempt=attempt, outcome=DISCARDED, detail=discarded, payload=event_payload
        )
        if self.sink is None:
            return
        failure = Failure(
            discard=d,
            shard_id=shard_id,
            function_arn=self.function_arn,
            payload_size=len(event_payload),
            request_id=str(uuidlib.uuid4()),
            now=self.now(),
        )
        backoff = Backoff(base_s=0.5, cap_s=30.0)
        sent = {"destination": self.sink.destination, "reason": d.condition}
        while True:  # the shard waits: a record is never dropped because a destination is down
            started = anyio.current_time()
            try:
                delivered = await self.sink.send(failure, event_payload, self.journal.mapping_uuid)
            except DestinationError as e:
                delay = backoff.next_delay()
                await self.journal.write(
                    scope,
                    items,
                    attempt=attempt,
                    outcome=DESTINATION_FAILED,
                    duration_ms=_ms_since(started),
                    detail={**sent, "error": str(e)},
                )
                self.log.error(
                    "destination_failed",
                    destination=self.sink.destination,
                    error=str(e),
                    retry_in_s=round(delay, 2),
                )
                await self.sleep(delay)
                continue
            self.log.info("failure_record_sent", destination=self.sink.destination, condition=d.condition)
            await self.journal.write(
                scope,
                items,
                attempt=attempt,
                outcome=DESTINATION_SENT,
                duration_ms=_ms_since(started),
                detail=sent,
                payload=delivered,
            )
            return


def _ms_since(started: float) -> float:
    return (anyio.current_time() - started) * 1000
