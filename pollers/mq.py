"""Amazon MQ mappings: the broker ARN resolves to endpoints (config file or DescribeBroker), the engine
type follows the endpoint's scheme (amqp/amqps: RabbitMQ; stomp/stomp+ssl: ActiveMQ), BASIC_AUTH to
credentials (config file or Secrets Manager), VIRTUAL_HOST selects the RabbitMQ virtual host.

The factory keeps ActiveMQ's redelivery ledgers (the delivery counts STOMP does not carry), one per
broker endpoint and queue, for as long as it lives: a source re-created for a restarted runner goes on
counting where the last one stopped."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from engine.events import Envelope
from engine.events_activemq import activemq_envelope
from engine.events_rabbitmq import rabbitmq_envelope
from engine.model import EventSourceMapping
from engine.ports import QueueSource, SourceDescription, SourceError, SourceNotFound
from engine.sources.mq import prefetch_count
from pollers.activemq import ActiveMqQueue, parse_endpoint, queue_name
from pollers.activemq_ledger import RedeliveryLedger
from pollers.rabbitmq import RabbitMqQueue
from pollers.resolve import BrokerDirectory

RABBITMQ_SCHEMES = ("amqp", "amqps")
ACTIVEMQ_SCHEMES = ("stomp", "stomp+ssl", "stomp+nio", "stomp+nio+ssl")


@dataclass(frozen=True)
class MqTarget:
    engine: str  # "RabbitMQ" | "ActiveMQ"
    endpoint: str
    queue: str
    vhost: str
    secret_arn: str | None


def _access(mapping: EventSourceMapping, kind: str) -> str | None:
    for entry in mapping.params.get("SourceAccessConfigurations") or []:
        if entry.get("Type") == kind:
            return str(entry.get("URI"))
    return None


class MqSourceFactory:
    def __init__(self, directory: BrokerDirectory) -> None:
        self.directory = directory
        self._ledgers: dict[tuple[str, int, str], RedeliveryLedger] = {}

    def ledger(self, endpoint: str, queue: str) -> RedeliveryLedger:
        """The redelivery ledger of this queue on this broker, created on first use."""
        host, port, _tls = parse_endpoint(endpoint)
        key = (host, port, queue_name(queue))
        ledger = self._ledgers.get(key)
        if ledger is None:
            ledger = self._ledgers[key] = RedeliveryLedger()
        return ledger

    async def target(self, mapping: EventSourceMapping) -> MqTarget:
        arn = mapping.event_source_arn
        assert arn is not None
        endpoints = await self.directory.mq_endpoints(arn)
        for endpoint in endpoints:
            scheme = urlsplit(endpoint).scheme.lower()
            if scheme in RABBITMQ_SCHEMES or scheme in ACTIVEMQ_SCHEMES:
                return MqTarget(
                    engine="RabbitMQ" if scheme in RABBITMQ_SCHEMES else "ActiveMQ",
                    endpoint=endpoint,
                    queue=str((mapping.params.get("Queues") or [""])[0]),
                    vhost=_access(mapping, "VIRTUAL_HOST") or "/",
                    secret_arn=_access(mapping, "BASIC_AUTH"),
                )
        if not endpoints:
            raise SourceNotFound(f"Broker not found: {arn}")
        raise SourceError(f"no AMQP 0-9-1 or STOMP endpoint among {endpoints} of {arn}")

    async def describe(self, mapping: EventSourceMapping) -> SourceDescription:
        await self.target(mapping)
        return SourceDescription()

    async def open(self, mapping: EventSourceMapping) -> tuple[QueueSource, Envelope, MqTarget]:
        t = await self.target(mapping)
        creds = await self.directory.credentials(t.secret_arn) if t.secret_arn else None
        arn = mapping.event_source_arn or ""
        prefetch = prefetch_count(mapping)
        user, password = (creds.username, creds.password) if creds else (None, None)
        if t.engine == "RabbitMQ":
            source: QueueSource = RabbitMqQueue(
                t.endpoint,
                t.queue,
                vhost=t.vhost,
                username=user,
                password=password,
                prefetch=prefetch,
                broker_arn=arn,
            )
            return source, rabbitmq_envelope(arn, t.queue, t.vhost), t
        source = ActiveMqQueue(
            t.endpoint,
            t.queue,
            username=user,
            password=password,
            prefetch=prefetch,
            broker_arn=arn,
            ledger=self.ledger(t.endpoint, t.queue),
        )
        return source, activemq_envelope(arn), t
