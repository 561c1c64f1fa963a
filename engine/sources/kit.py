"""How a source kind's runner is built: the parts every runner shares, and the builder each kind's module
offers, bound by the composition root to that kind's transports (engine/ never imports pollers/)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from engine.filtering import RecordFilter
from engine.model import EventSourceMapping
from engine.ports import Invoker, Runner, SourceDescription
from engine.runner.queue import QueueRunnerSettings
from engine.runner.stream import StreamRunnerSettings
from engine.senders import DestinationSender
from engine.store.sqlite import SqliteStore


@dataclass(frozen=True)
class RunnerKit:
    """What every runner is built with, whatever its source."""

    invoker: Invoker
    record_filter: RecordFilter
    store: SqliteStore
    destinations: DestinationSender
    queue: QueueRunnerSettings
    stream: StreamRunnerSettings
    #: wall clock for record age and destination timestamps
    now: Callable[[], float]


class Runners(Protocol):
    """A source kind's runner builder, bound to that kind's transports by the composition root."""

    async def describe(self, m: EventSourceMapping) -> SourceDescription:
        """What the create-time checks need; SourceNotFound with AWS's text when the source is missing."""
        ...

    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> Runner: ...
