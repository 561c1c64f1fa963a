"""Amazon Kinesis Data Streams: an ordered stream source. LATEST is fixed at the first start; records
carry the function's execution role as invokeIdentityArn (spec 1.1, 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.model import EventSourceMapping, SourceKind
from engine.ports import SourceDescription, StreamSource
from engine.runner.stream import StreamRunner
from engine.sources.kit import RunnerKit
from engine.sources.profile import SourceProfile
from engine.stream_shapes import RecordsShape

PROFILE = SourceProfile(SourceKind.KINESIS, pins_latest=True, user_initiated_reason="User action")


class KinesisTransports(Protocol):
    async def describe(self, mapping: EventSourceMapping) -> SourceDescription: ...

    def open_stream(
        self, mapping: EventSourceMapping, *, invoke_identity_arn: str | None = None
    ) -> StreamSource: ...


@dataclass(frozen=True)
class KinesisRunners:
    transports: KinesisTransports

    async def describe(self, m: EventSourceMapping) -> SourceDescription:
        return await self.transports.describe(m)

    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> StreamRunner:
        stream = self.transports.open_stream(m, invoke_identity_arn=kit.invoker.info.role_arn)
        shape = RecordsShape("kinesis", m.event_source_arn or "")
        return StreamRunner(
            m,
            PROFILE,
            stream,
            kit.invoker,
            kit.record_filter,
            kit.store,
            kit.destinations,
            kit.stream,
            shape,
            now=kit.now,
        )
