"""Amazon DynamoDB Streams: an ordered stream source, each shard polled four times a second (spec 1.2, 4,
9)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine import filtering
from engine.model import EventSourceMapping, SourceKind
from engine.runner.stream import StreamRunner
from engine.sources.kit import BoundRunners, RunnerKit, StreamTransports, stream_runner
from engine.sources.profile import SourceProfile
from engine.stream_shapes import RecordsShape

PROFILE = SourceProfile(SourceKind.DYNAMODB, filtering.DYNAMODB, user_initiated_reason="User action")


@dataclass(frozen=True)
class DynamoDbRunners(BoundRunners[StreamTransports]):
    #: DynamoDB Streams: four times a second
    poll_interval_s: float = 0.25

    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> StreamRunner:
        stream = self.transports.open_stream(m)
        settings = replace(kit.stream, poll_interval_s=self.poll_interval_s)
        shape = RecordsShape("dynamodb", m.event_source_arn or "")
        return stream_runner(m, PROFILE, stream, shape, kit, settings)
