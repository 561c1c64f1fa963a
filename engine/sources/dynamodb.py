"""Amazon DynamoDB Streams: an ordered stream source, each shard polled four times a second (spec 1.2, 4,
9)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine import filtering
from engine.errors import InvalidParameterValueException
from engine.model import EventSourceMapping, SourceKind
from engine.runner.stream import StreamRunner
from engine.sources.kit import BoundRunners, RunnerKit, StreamTransports, stream_runner
from engine.sources.profile import STREAM_DEFAULTS, STREAM_PARAMS, SourceProfile, batch_size_range
from engine.stream_shapes import RecordsShape

#: The API allows BatchSize 10,000 for DynamoDB today (spec 3.1); older tools (CDK) still cap it at 1,000.
LEGACY_MAX_BATCH_SIZE_ENFORCED = False
LEGACY_MAX_BATCH_SIZE = 1000


def _check_params(params: Mapping[str, Any]) -> None:
    if LEGACY_MAX_BATCH_SIZE_ENFORCED and params["BatchSize"] > LEGACY_MAX_BATCH_SIZE:
        raise InvalidParameterValueException(batch_size_range(LEGACY_MAX_BATCH_SIZE))


PROFILE = SourceProfile(
    SourceKind.DYNAMODB,
    filtering.DYNAMODB,
    "dynamodb",
    user_initiated_reason="User action",
    accepted_params=STREAM_PARAMS,
    required_params=("StartingPosition",),
    default_params=STREAM_DEFAULTS,
    starting_positions=frozenset({"LATEST", "TRIM_HORIZON"}),  # no AT_TIMESTAMP (spec 8.4 #6)
    check_params=_check_params,
)


@dataclass(frozen=True)
class DynamoDbRunners(BoundRunners[StreamTransports]):
    #: DynamoDB Streams: four times a second
    poll_interval_s: float = 0.25

    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> StreamRunner:
        stream = self.transports.open_stream(m)
        settings = replace(kit.stream, poll_interval_s=self.poll_interval_s)
        shape = RecordsShape("dynamodb", m.event_source_arn or "")
        return stream_runner(m, PROFILE, stream, shape, kit, settings)
