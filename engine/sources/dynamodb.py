"""Amazon DynamoDB Streams: an ordered stream source, each shard polled four times a second (spec 1.2, 4,
9)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from engine.model import EventSourceMapping, SourceKind
from engine.ports import SourceDescription, StreamSource
from engine.runner.stream import StreamRunner
from engine.sources.kit import RunnerKit
from engine.sources.profile import SourceProfile
from engine.stream_shapes import RecordsShape

PROFILE = SourceProfile(SourceKind.DYNAMODB, user_initiated_reason="User action")


class DynamoDbTransports(Protocol):
    async def describe(self, mapping: EventSourceMapping) -> SourceDescription: ...

    def open_stream(
        self, mapping: EventSourceMapping, *, invoke_identity_arn: str | None = None
    ) -> StreamSource: ...


@dataclass(frozen=True)
class DynamoDbRunners:
    transports: DynamoDbTransports
    #: DynamoDB Streams: four times a second
    poll_interval_s: float = 0.25

    async def describe(self, m: EventSourceMapping) -> SourceDescription:
        return await self.transports.describe(m)

    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> StreamRunner:
        stream = self.transports.open_stream(m)
        settings = replace(kit.stream, poll_interval_s=self.poll_interval_s)
        shape = RecordsShape("dynamodb", m.event_source_arn or "")
        return StreamRunner(
            m,
            PROFILE,
            stream,
            kit.invoker,
            kit.record_filter,
            kit.store,
            kit.destinations,
            settings,
            shape,
            now=kit.now,
        )
