"""Amazon MQ (RabbitMQ, ActiveMQ): a queue source fed by a broker's push buffer. The window opens at the
first message; AWS runs at most 5 concurrent ActiveMQ and 1 RabbitMQ execution environments (spec 7)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from engine import filtering
from engine.events import Envelope
from engine.model import EventSourceMapping, SourceKind
from engine.ports import QueueSource
from engine.runner.queue import QueueRunner
from engine.sources.kit import BoundRunners, Described, RunnerKit
from engine.sources.profile import SourceProfile

PROFILE = SourceProfile(
    SourceKind.MQ,
    filtering.MQ,
    "rabbitmq",
    default_window_s=0.5,
    window_opens_at_first_record=True,
    one_push_buffer=True,
    accepted_params=frozenset({"EventSourceArn", "Queues", "SourceAccessConfigurations"}),
    required_params=("Queues",),
    # no MaximumBatchingWindowInSeconds until one is set: the 500 ms default has no integer form
    default_params={"BatchSize": 100},
    access_types=frozenset({"BASIC_AUTH", "VIRTUAL_HOST"}),
    access_required=True,
    required_access_types=("BASIC_AUTH",),
    # RabbitMQ's virtual host is where the queue lives: fixed at create (spec 8.4)
    create_only_access_types=("VIRTUAL_HOST",),
)

#: what differs between the two brokers: ActiveMQ dead-letters a message after 6 redeliveries (its
#: client's default redelivery policy, which AWS uses), RabbitMQ redelivers without limit
BROKER_PROFILES = {
    "RabbitMQ": PROFILE,
    "ActiveMQ": replace(PROFILE, event_source="activemq", max_redeliveries=6),
}
#: concurrent execution environments per mapping, by broker engine (spec 7)
CONCURRENCY = {"RabbitMQ": 1, "ActiveMQ": 5}


class MqTarget(Protocol):
    @property
    def engine(self) -> str:
        """ "RabbitMQ" or "ActiveMQ"."""
        ...


class MqTransports(Described, Protocol):
    async def open(self, mapping: EventSourceMapping) -> tuple[QueueSource, Envelope, MqTarget]: ...


@dataclass(frozen=True)
class MqRunners(BoundRunners[MqTransports]):
    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> QueueRunner:
        source, envelope, target = await self.transports.open(m)
        pollers = CONCURRENCY[target.engine]
        settings = replace(
            kit.queue,
            initial_pollers=pollers,
            idle_pollers=pollers,  # they wait on the broker's push buffer, not on a connection
            default_max_pollers=pollers,
            receive_max=PROFILE.batching(m).batch_size,  # a broker's buffer, not SQS's 10 per call
        )
        profile = BROKER_PROFILES[target.engine]
        return QueueRunner(
            m,
            profile,
            source,
            envelope,
            kit.invoker,
            kit.record_filter,
            kit.store,
            settings,
            metrics=kit.metrics.mapping(m, profile.event_source),
            time_scale=kit.time_scale,
        )


#: the largest prefetch the brokers accept (RabbitMQ's basic.qos prefetch-count is a short)
MAX_PREFETCH = 65_535


def prefetch_count(m: EventSourceMapping) -> int:
    """How many messages a broker pushes ahead of acknowledgements: twice the batch, so it refills while
    a batch is being invoked (the concurrent batches share that one push buffer), within what the
    brokers accept."""
    return min(2 * PROFILE.batching(m).batch_size, MAX_PREFETCH)
