"""Amazon MSK and self-managed Apache Kafka: an ordered stream source whose partitions are shards. The
consumer group keeps the positions; the window opens at the first record; MaximumRetryAttempts -1 with an
on-failure destination is capped at 10; a kafka:// destination is a topic of the same cluster (spec 6)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from engine.model import EventSourceMapping, SourceKind
from engine.ports import SourceCommits, SourceDescription, StreamSource, TopicProducer
from engine.runner.stream import StreamRunner
from engine.sources.kit import RunnerKit
from engine.sources.profile import SourceProfile
from engine.stream_shapes import KafkaShape

#: spec 6.4: "infinite" retries with an on-failure destination are capped
MAX_RETRIES_WITH_DESTINATION = 10

MSK = SourceProfile(
    SourceKind.MSK,
    default_window_s=0.5,
    window_opens_at_first_record=True,
    retry_cap_with_destination=MAX_RETRIES_WITH_DESTINATION,
    provisioned_min_pollers=1,
)
SELF_MANAGED = replace(MSK, kind=SourceKind.SELF_MANAGED_KAFKA)
_PROFILES = {p.kind: p for p in (MSK, SELF_MANAGED)}


class KafkaConsumer(StreamSource, SourceCommits, TopicProducer, Protocol):
    """One consumer-group member: reads partitions, commits offsets, produces to kafka:// destinations."""


class KafkaTransports(Protocol):
    async def describe(self, mapping: EventSourceMapping) -> SourceDescription: ...

    async def open(self, mapping: EventSourceMapping) -> tuple[KafkaConsumer, KafkaShape]: ...


@dataclass(frozen=True)
class KafkaRunners:
    transports: KafkaTransports
    #: a rebalance's new partitions are picked up this often (reads wait on the broker: no poll interval)
    discovery_interval_s: float = 1.0

    async def describe(self, m: EventSourceMapping) -> SourceDescription:
        return await self.transports.describe(m)

    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> StreamRunner:
        consumer, shape = await self.transports.open(m)
        settings = replace(kit.stream, poll_interval_s=0.0, discovery_interval_s=self.discovery_interval_s)
        return StreamRunner(
            m,
            _PROFILES[m.kind],
            consumer,
            kit.invoker,
            kit.record_filter,
            kit.store,
            kit.destinations,
            settings,
            shape,
            commits=consumer,
            producer=consumer,
            now=kit.now,
        )
