"""Amazon Kinesis Data Streams: an ordered stream source. LATEST is fixed at the first start; records
carry the function's execution role as invokeIdentityArn (spec 1.1, 4)."""

from __future__ import annotations

from dataclasses import dataclass

from engine import filtering
from engine.model import EventSourceMapping, SourceKind
from engine.runner.stream import StreamRunner
from engine.sources.kit import BoundRunners, RunnerKit, StreamTransports, stream_runner
from engine.sources.profile import STREAM_DEFAULTS, STREAM_PARAMS, SourceProfile
from engine.stream_shapes import RecordsShape

PROFILE = SourceProfile(
    SourceKind.KINESIS,
    filtering.KINESIS,
    "kinesis",
    pins_latest=True,
    user_initiated_reason="User action",
    accepted_params=STREAM_PARAMS,
    required_params=("StartingPosition",),
    default_params=STREAM_DEFAULTS,
    starting_positions=frozenset({"LATEST", "TRIM_HORIZON", "AT_TIMESTAMP"}),
)


@dataclass(frozen=True)
class KinesisRunners(BoundRunners[StreamTransports]):
    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> StreamRunner:
        stream = self.transports.open_stream(m, invoke_identity_arn=kit.invoker.info.role_arn)
        shape = RecordsShape("kinesis", m.event_source_arn or "")
        return stream_runner(m, PROFILE, stream, shape, kit, kit.stream)
