"""Amazon MSK and self-managed Apache Kafka: an ordered stream source whose partitions are shards. The
consumer group keeps the positions; the window opens at the first record; MaximumRetryAttempts -1 with an
on-failure destination is capped at 10; a kafka:// destination is a topic of the same cluster (spec 6)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from engine import filtering
from engine.model import EventSourceMapping, SourceKind
from engine.ports import SourceCommits, StreamSource, TopicProducer
from engine.runner.stream import StreamRunner
from engine.sources.kit import BoundRunners, Described, RunnerKit, stream_runner
from engine.sources.profile import SourceProfile, same_source_arn, update_or_delete
from engine.stream_shapes import KafkaShape

#: spec 6.4: "infinite" retries with an on-failure destination are capped
MAX_RETRIES_WITH_DESTINATION = 10


def bootstrap_servers(m: EventSourceMapping) -> list[str]:
    sme = m.params.get("SelfManagedEventSource") or {}
    return list((sme.get("Endpoints") or {}).get("KAFKA_BOOTSTRAP_SERVERS") or [])


def _same_topics(m: EventSourceMapping, other: EventSourceMapping) -> bool:
    return bool(set(m.params.get("Topics") or []) & set(other.params.get("Topics") or []))


def _msk_duplicates(m: EventSourceMapping, other: EventSourceMapping) -> bool:
    """A topic of the same cluster (its ARN) already mapped to the function."""
    if other.kind is not m.kind:
        return same_source_arn(m, other)
    return _same_topics(m, other) and m.event_source_arn == other.event_source_arn


def _self_managed_duplicates(m: EventSourceMapping, other: EventSourceMapping) -> bool:
    """A topic of a cluster sharing a bootstrap server already mapped to the function."""
    if other.kind is not m.kind:
        return same_source_arn(m, other)
    return _same_topics(m, other) and bool(set(bootstrap_servers(m)) & set(bootstrap_servers(other)))


def _self_managed_duplicate_text(m: EventSourceMapping, existing: EventSourceMapping) -> str:
    return (
        f'An event source mapping with event source ("{",".join(bootstrap_servers(m))}"), function '
        f'("{m.function_arn}"), topics ("{",".join(m.params.get("Topics") or [])}") '
        f"already exists. {update_or_delete(existing)}"
    )


#: the request members both Kafka sources accept beyond what every source does (spec 8.4's table)
_KAFKA_PARAMS = frozenset(
    {
        "StartingPosition",
        "StartingPositionTimestamp",
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
        "BisectBatchOnFunctionError",
        "DestinationConfig",
        "FunctionResponseTypes",
        "ProvisionedPollerConfig",
        "Topics",
        "SourceAccessConfigurations",
        "LoggingConfig",
    }
)
MSK_CONFIG = "AmazonManagedKafkaEventSourceConfig"
SELF_MANAGED_CONFIG = "SelfManagedKafkaEventSourceConfig"
#: Observed for self-managed Kafka when StartingPosition is omitted (spec 6.1); applied to MSK too.
DEFAULT_STARTING_POSITION = "TRIM_HORIZON"

MSK = SourceProfile(
    SourceKind.MSK,
    filtering.KAFKA,
    "kafka",
    default_window_s=0.5,
    window_opens_at_first_record=True,
    retry_cap_with_destination=MAX_RETRIES_WITH_DESTINATION,
    provisioned_min_pollers=1,
    duplicates=_msk_duplicates,
    accepted_params=_KAFKA_PARAMS | {"EventSourceArn", MSK_CONFIG},
    required_params=("Topics",),
    # no MaximumBatchingWindowInSeconds until one is set: the 500 ms default has no integer form
    default_params={"BatchSize": 100, "StartingPosition": DEFAULT_STARTING_POSITION},
    starting_positions=frozenset({"LATEST", "TRIM_HORIZON", "AT_TIMESTAMP"}),
    consumer_group_member=MSK_CONFIG,
    access_types=frozenset(
        {"SASL_SCRAM_512_AUTH", "CLIENT_CERTIFICATE_TLS_AUTH", "VPC_SUBNET", "VPC_SECURITY_GROUP"}
    ),
    destinations=frozenset({"sqs", "sns", "s3", "kafka"}),
    poller_ranges=((1, 200), (1, 2000)),
    accepted_metrics=frozenset({"ErrorCount", "KafkaMetrics"}),
)
SELF_MANAGED = replace(
    MSK,
    kind=SourceKind.SELF_MANAGED_KAFKA,
    duplicates=_self_managed_duplicates,
    duplicate_text=_self_managed_duplicate_text,
    accepted_params=_KAFKA_PARAMS | {"SelfManagedEventSource", SELF_MANAGED_CONFIG},
    consumer_group_member=SELF_MANAGED_CONFIG,
    access_types=frozenset(
        {
            "BASIC_AUTH",
            "SASL_SCRAM_256_AUTH",
            "SASL_SCRAM_512_AUTH",
            "CLIENT_CERTIFICATE_TLS_AUTH",
            "SERVER_ROOT_CA_CERTIFICATE",
            "VPC_SUBNET",
            "VPC_SECURITY_GROUP",
        }
    ),
    # its source is reached through its access configurations: without them it is refused first
    access_required=True,
    access_required_first=True,
)
_PROFILES = {p.kind: p for p in (MSK, SELF_MANAGED)}


class KafkaConsumer(StreamSource, SourceCommits, TopicProducer, Protocol):
    """One consumer-group member: reads partitions, commits offsets, produces to kafka:// destinations."""


class KafkaTransports(Described, Protocol):
    async def open(self, mapping: EventSourceMapping) -> tuple[KafkaConsumer, KafkaShape]: ...


@dataclass(frozen=True)
class KafkaRunners(BoundRunners[KafkaTransports]):
    #: a rebalance's new partitions are picked up this often (reads wait on the broker: no poll interval)
    discovery_interval_s: float = 1.0

    async def build(self, m: EventSourceMapping, kit: RunnerKit) -> StreamRunner:
        consumer, shape = await self.transports.open(m)
        settings = replace(kit.stream, poll_interval_s=0.0, discovery_interval_s=self.discovery_interval_s)
        return stream_runner(
            m, _PROFILES[m.kind], consumer, shape, kit, settings, commits=consumer, producer=consumer
        )
