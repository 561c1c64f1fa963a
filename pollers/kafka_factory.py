"""Kafka mappings (Amazon MSK and self-managed Apache Kafka) -> a :class:`KafkaSource` and its event shape.

One factory per source kind, both on one base: :class:`MskSourceFactory` and
:class:`SelfManagedKafkaSourceFactory` differ only in where the cluster is, which request member holds the
ConsumerGroupId, and whether records carry the cluster's ARN. The composition root gives each kind its own.

Bootstrap servers: self-managed from ``SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS``; MSK from
the config file's ``brokers`` section ({ARN: {"bootstrap_servers": [...]}}), else MSK GetBootstrapBrokers.
SourceAccessConfigurations (spec 6.1): the SASL entries name a secret with ``username`` / ``password``
(BASIC_AUTH is SASL/PLAIN); CLIENT_CERTIFICATE_TLS_AUTH a secret with ``certificate`` (PEM chain),
``privateKey`` and optionally ``privateKeyPassword``; SERVER_ROOT_CA_CERTIFICATE a secret with
``certificate`` (PEM). Secrets come from the config file's ``secrets`` section, else Secrets Manager.

TLS is used when a certificate entry is given, the ``brokers`` entry says ``"tls": true``, or the broker
string came from GetBootstrapBrokers' TLS, SASL/SCRAM or IAM list (MSK's listeners there are TLS-only, so
SASL/SCRAM is SASL_SSL). SASL on a configured entry without ``tls`` runs over plaintext, as local brokers
do, and so does GetBootstrapBrokers' plaintext string (an emulator's only one).
VPC_SUBNET / VPC_SECURITY_GROUP have nothing to do locally.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from engine.model import EventSourceMapping
from engine.ports import SourceDescription, SourceError
from engine.stream_shapes import KafkaShape
from pollers.kafka import KafkaSource, StartingPosition
from pollers.kafka_connection import KafkaSecurity, SaslMechanism
from pollers.resolve import BootstrapServers, BrokerDirectory

_SASL: Mapping[str, SaslMechanism] = {
    "SASL_SCRAM_256_AUTH": "SASL_SCRAM_256",
    "SASL_SCRAM_512_AUTH": "SASL_SCRAM_512",
    "BASIC_AUTH": "PLAIN",
}


@dataclass(frozen=True)
class KafkaRequest:
    """What the factories read of a Kafka mapping's request parameters, parsed once."""

    uuid: str
    #: Topics (one, validated at create)
    topics: tuple[str, ...]
    starting_position: StartingPosition
    timestamp: float | None
    group_id: str
    #: SourceAccessConfigurations: Type -> URI
    access: Mapping[str, str] = field(default_factory=dict)
    #: MSK: the cluster ARN
    cluster_arn: str | None = None
    #: self-managed: SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS
    endpoints: tuple[str, ...] = ()

    @classmethod
    def parse(cls, mapping: EventSourceMapping, group_config: str) -> KafkaRequest:
        """``group_config``: the request member holding ConsumerGroupId (the mapping's UUID without one,
        spec 6.2)."""
        params = mapping.params
        ts = params.get("StartingPositionTimestamp")
        endpoints = ((params.get("SelfManagedEventSource") or {}).get("Endpoints") or {}).get(
            "KAFKA_BOOTSTRAP_SERVERS"
        )
        return cls(
            uuid=mapping.uuid,
            topics=tuple(params.get("Topics") or ()),
            starting_position=params.get("StartingPosition") or "TRIM_HORIZON",
            timestamp=float(ts) if ts is not None else None,
            group_id=str((params.get(group_config) or {}).get("ConsumerGroupId") or mapping.uuid),
            access={
                str(e.get("Type")): str(e.get("URI"))
                for e in params.get("SourceAccessConfigurations") or []
                if e.get("Type") and e.get("URI")
            },
            cluster_arn=mapping.event_source_arn,
            endpoints=tuple(endpoints or ()),
        )


class KafkaSourceFactory(ABC):
    """What both kinds share: security from the access configurations, PEM files, the source itself."""

    #: the request member holding ConsumerGroupId
    group_config: ClassVar[str]

    def __init__(self, directory: BrokerDirectory, pem_dir: Path | None = None) -> None:
        self.directory = directory
        #: where PEMs from secrets are written for the TLS context (files only, mode 0600)
        self.pem_dir = pem_dir

    @abstractmethod
    async def bootstrap_servers(self, request: KafkaRequest) -> BootstrapServers:
        """The servers, and whether their listener speaks TLS."""

    @abstractmethod
    def event_source_arn(self, request: KafkaRequest) -> str | None:
        """What records' ``eventSourceArn`` and the envelope say (None: self-managed)."""

    def request(self, mapping: EventSourceMapping) -> KafkaRequest:
        return KafkaRequest.parse(mapping, self.group_config)

    async def describe(self, mapping: EventSourceMapping) -> SourceDescription:
        """An MSK cluster must resolve to bootstrap servers (SourceNotFound otherwise)."""
        await self.bootstrap_servers(self.request(mapping))
        return SourceDescription()

    async def security(self, request: KafkaRequest, servers: BootstrapServers) -> KafkaSecurity:
        """TLS when ``servers``' listener speaks it or a certificate entry asks; SASL by the SASL entry."""
        access = request.access
        sasl = [(kind, uri) for kind, uri in access.items() if kind in _SASL]
        if len(sasl) > 1:
            raise SourceError(f"more than one SASL mechanism configured: {[k for k, _ in sasl]}")
        kwargs: dict[str, Any] = {"tls": servers.tls}
        if sasl:
            kind, uri = sasl[0]
            creds = await self.directory.credentials(uri)
            kwargs |= {"sasl": _SASL[kind], "username": creds.username, "password": creds.password}
        if "SERVER_ROOT_CA_CERTIFICATE" in access:
            secret = await self.directory.secret(access["SERVER_ROOT_CA_CERTIFICATE"])
            kwargs |= {"tls": True, "ca_file": self._pem(request, "ca", _field(secret, "certificate"))}
        if "CLIENT_CERTIFICATE_TLS_AUTH" in access:
            secret = await self.directory.secret(access["CLIENT_CERTIFICATE_TLS_AUTH"])
            kwargs |= {
                "tls": True,
                "cert_file": self._pem(request, "cert", _field(secret, "certificate")),
                "key_file": self._pem(request, "key", _field(secret, "privateKey")),
                "key_password": secret.get("privateKeyPassword"),
            }
        return KafkaSecurity(**kwargs)

    def _pem(self, request: KafkaRequest, name: str, text: str) -> str:
        folder = self.pem_dir or Path(tempfile.gettempdir()) / "esm-kafka-pem"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{request.uuid}-{name}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return str(path)

    async def open(self, mapping: EventSourceMapping) -> tuple[KafkaSource, KafkaShape]:
        request = self.request(mapping)
        bootstrap = await self.bootstrap_servers(request)
        arn = self.event_source_arn(request)
        source = KafkaSource(
            bootstrap.servers,
            request.topics[0],
            request.group_id,
            starting_position=request.starting_position,
            timestamp=request.timestamp,
            security=await self.security(request, bootstrap),
            event_source_arn=arn,
            client_id=f"esm-{request.uuid}",
        )
        return source, KafkaShape(event_source_arn=arn, bootstrap_servers=bootstrap.servers)


class MskSourceFactory(KafkaSourceFactory):
    """Amazon MSK: the cluster is its ARN, found in the config's ``brokers`` or by GetBootstrapBrokers."""

    group_config = "AmazonManagedKafkaEventSourceConfig"

    async def bootstrap_servers(self, request: KafkaRequest) -> BootstrapServers:
        arn = request.cluster_arn
        assert arn is not None  # validated at create: an MSK mapping has its EventSourceArn
        entry = self.directory.brokers.get(arn)
        configured_tls = bool(isinstance(entry, Mapping) and entry.get("tls"))
        return await self.directory.msk_bootstrap_servers(
            arn,
            scram=any(t.startswith("SASL_SCRAM") for t in request.access),
            tls=configured_tls or "CLIENT_CERTIFICATE_TLS_AUTH" in request.access,
        )

    def event_source_arn(self, request: KafkaRequest) -> str | None:
        return request.cluster_arn


class SelfManagedKafkaSourceFactory(KafkaSourceFactory):
    """Self-managed Apache Kafka: the request names the servers; TLS only by certificate entries."""

    group_config = "SelfManagedKafkaEventSourceConfig"

    async def bootstrap_servers(self, request: KafkaRequest) -> BootstrapServers:
        return BootstrapServers(list(request.endpoints), tls=False)

    def event_source_arn(self, request: KafkaRequest) -> str | None:
        return None


def _field(secret: Mapping[str, Any], name: str) -> str:
    value = secret.get(name)
    if not isinstance(value, str) or not value:
        raise SourceError(f"the secret has no {name!r}")
    return value
