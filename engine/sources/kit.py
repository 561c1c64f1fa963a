"""How a source kind's runner is built: the parts every runner shares, and the builder each kind's module
offers, bound by the composition root to that kind's transports (engine/ never imports pollers/)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from engine.filtering import RecordFilter
from engine.metrics import EngineMetrics
from engine.model import EventSourceMapping
from engine.ports import (
    Invoker,
    Runner,
    SourceCommits,
    SourceDescription,
    StreamSource,
    TopicProducer,
)
from engine.runner.queue import QueueRunnerSettings
from engine.runner.stream import StreamRunner, StreamRunnerSettings
from engine.senders import DestinationSender
from engine.sources.profile import SourceProfile
from engine.store.ports import RunnerStore
from engine.stream_shapes import StreamShape
from engine.timescale import REAL_TIME, TimeScale


@dataclass(frozen=True)
class RunnerKit:
    """What every runner is built with, whatever its source."""

    invoker: Invoker
    record_filter: RecordFilter
    store: RunnerStore
    destinations: DestinationSender
    queue: QueueRunnerSettings
    stream: StreamRunnerSettings
    #: wall clock for record age and destination timestamps
    now: Callable[[], float]
    metrics: EngineMetrics
    time_scale: TimeScale = REAL_TIME


class Runners(Protocol):
    """A source kind's runner builder, bound to that kind's transports by the composition root."""

    async def describe(self, m: EventSourceMapping) -> SourceDescription:
        """What the create-time checks need; SourceNotFound with AWS's text when the source is missing."""
        ...

    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> Runner: ...


class Described(Protocol):
    async def describe(self, mapping: EventSourceMapping) -> SourceDescription: ...


class StreamTransports(Described, Protocol):
    """Kinesis and DynamoDB Streams: a stream opened per mapping (``invoke_identity_arn``: the
    function's execution role, which Kinesis records carry)."""

    def open_stream(
        self, mapping: EventSourceMapping, *, invoke_identity_arn: str | None = None
    ) -> StreamSource: ...


T = TypeVar("T", bound=Described)


@dataclass(frozen=True)
class BoundRunners(Generic[T]):
    """A kind's runner builder bound to its transports, whose ``describe`` answers the create-time checks."""

    transports: T

    async def describe(self, m: EventSourceMapping) -> SourceDescription:
        return await self.transports.describe(m)


def stream_runner(
    m: EventSourceMapping,
    profile: SourceProfile,
    source: StreamSource,
    shape: StreamShape,
    kit: RunnerKit,
    settings: StreamRunnerSettings,
    *,
    commits: SourceCommits | None = None,
    producer: TopicProducer | None = None,
) -> StreamRunner:
    return StreamRunner(
        m,
        profile,
        source,
        kit.invoker,
        kit.record_filter,
        kit.store,
        kit.destinations,
        settings,
        shape,
        commits=commits,
        producer=producer,
        metrics=kit.metrics.mapping(m, profile.event_source),
        now=kit.now,
        time_scale=kit.time_scale,
    )
