"""What differs between the ordered sources the stream runner reads (Kinesis, DynamoDB Streams, Kafka):
the event around a batch, what names a record in a partial batch response, and the on-failure record.

Pure: the runner passes the failure time and ids in.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.destinations import (
    StreamSourceName,
    kafka_failure_record,
    kafka_topic_failure_record,
    stream_failure_record,
)
from engine.events import RECORDS_ENVELOPE, Envelope
from engine.events_kafka import kafka_envelope, parse_partition_key
from engine.ports import StreamRecord
from engine.responses import string_identifier
from engine.stream_policy import Discard


@dataclass(frozen=True)
class Failure:
    """A discard with what its failure record needs to say about where it happened."""

    discard: Discard
    shard_id: str
    function_arn: str
    #: the size of the event that held the discarded records (bytes)
    payload_size: int
    request_id: str
    now: float


class StreamShape(Protocol):
    def envelope(self, shard_id: str) -> Envelope:
        """The event around one batch of ``shard_id``'s records."""
        ...

    def item_id(self, record: StreamRecord) -> Hashable:
        """What a partial batch response's itemIdentifier names for ``record``."""
        ...

    def identify(self, value: Any) -> Hashable | None:
        """An itemIdentifier as the function wrote it -> the id, None when malformed."""
        ...

    def failure_record(self, failure: Failure) -> dict[str, Any]:
        """The SQS / SNS / S3 on-failure record."""
        ...

    def topic_messages(self, failure: Failure) -> list[tuple[bytes | None, bytes]]:
        """A ``kafka://`` destination's (key, value) messages; only a Kafka source has one."""
        ...


@dataclass(frozen=True)
class RecordsShape:
    """Kinesis and DynamoDB Streams: ``{"Records": [...]}``, itemIdentifier = sequence number (spec 4.5)."""

    source: StreamSourceName
    stream_arn: str

    def envelope(self, shard_id: str) -> Envelope:
        return RECORDS_ENVELOPE

    def item_id(self, record: StreamRecord) -> Hashable:
        return record.sequence_number

    def identify(self, value: Any) -> Hashable | None:
        return string_identifier(value)

    def failure_record(self, failure: Failure) -> dict[str, Any]:
        d = failure.discard
        return stream_failure_record(
            source=self.source,
            records=d.records,
            condition=d.condition,
            approximate_invoke_count=d.approximate_invoke_count,
            last_result=d.last_result,
            function_arn=failure.function_arn,
            shard_id=failure.shard_id,
            stream_arn=self.stream_arn,
            request_id=failure.request_id,
            now=failure.now,
        )

    def topic_messages(self, failure: Failure) -> list[tuple[bytes | None, bytes]]:
        # validation refuses a kafka:// destination for these sources: reaching here is a bug
        raise RuntimeError(f"{self.source}: a kafka:// destination needs a Kafka source")


@dataclass(frozen=True)
class KafkaShape:
    """MSK (``event_source_arn``) and self-managed Kafka (None): one partition's records per event,
    itemIdentifier ``{"partition": "<topic>-<partition>", "offset": n}`` (spec 1.4, 6.4, 6.5)."""

    event_source_arn: str | None
    bootstrap_servers: Sequence[str]

    @property
    def servers(self) -> str:
        return ",".join(self.bootstrap_servers)

    def envelope(self, shard_id: str) -> Envelope:
        topic, partition = parse_partition_key(shard_id)
        return kafka_envelope(
            event_source_arn=self.event_source_arn,
            bootstrap_servers=self.bootstrap_servers,
            topic=topic,
            partition=partition,
        )

    def item_id(self, record: StreamRecord) -> Hashable:
        r = record.record
        return (f"{r['topic']}-{r['partition']}", int(r["offset"]))

    def identify(self, value: Any) -> Hashable | None:
        if not isinstance(value, Mapping):
            return None
        partition, offset = value.get("partition"), value.get("offset")
        if not isinstance(partition, str) or isinstance(offset, bool):
            return None
        if (
            isinstance(offset, str) and offset.isascii() and offset.isdigit()
        ):  # a Java client may send the offset as text
            offset = int(offset)
        return (partition, offset) if isinstance(offset, int) else None

    def _common(self, failure: Failure) -> dict[str, Any]:
        """What both Kafka failure records say about the failure."""
        d = failure.discard
        return {
            "condition": d.condition,
            "approximate_invoke_count": d.approximate_invoke_count,
            "last_result": d.last_result,
            "function_arn": failure.function_arn,
            "event_source_arn": self.event_source_arn,
            "bootstrap_servers": self.servers,
            "request_id": failure.request_id,
            "now": failure.now,
        }

    def failure_record(self, failure: Failure) -> dict[str, Any]:
        return kafka_failure_record(
            records=[r.record for r in failure.discard.records],
            payload_size=failure.payload_size,
            **self._common(failure),
        )

    def topic_messages(self, failure: Failure) -> list[tuple[bytes | None, bytes]]:
        """A ``kafka://`` destination: one (key, value) message per discarded record, keyed by the
        record's original key (spec 6.5)."""
        common = self._common(failure)
        out: list[tuple[bytes | None, bytes]] = []
        for r in failure.discard.records:
            value = kafka_topic_failure_record(record=r.record, **common)
            key = r.record.get("key")
            out.append(
                (
                    base64.b64decode(key) if isinstance(key, str) else None,
                    json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
                )
            )
        return out
