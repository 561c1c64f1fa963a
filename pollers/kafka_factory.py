"""Kafka mappings (Amazon MSK and self-managed Apache Kafka) -> a :class:`KafkaSource` and its event shape.

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.model import EventSourceMapping, SourceKind
from engine.ports import SourceDescription, SourceError
from engine.stream_shapes import KafkaShape
from pollers.kafka import KafkaSecurity, KafkaSource, SaslMechanism, StartingPosition
from pollers.resolve import BootstrapServers, BrokerDirectory

_SASL: Mapping[str, SaslMechanism] = {
    "SASL_SCRAM_256_AUTH": "SASL_SCRAM_256",
    "SASL_SCRAM_512_AUTH": "SASL_SCRAM_512",
    "BASIC_AUTH": "PLAIN",
}
_CONFIG_KEY = {
    SourceKind.MSK: "AmazonManagedKafkaEventSourceConfig",
    SourceKind.SELF_MANAGED_KAFKA: "SelfManagedKafkaEventSourceConfig",
}


def _access(mapping: EventSourceMapping) -> dict[str, str]:
    return {
        str(e.get("Type")): str(e.get("URI"))
        for e in mapping.params.get("SourceAccessConfigurations") or []
        if e.get("Type") and e.get("URI")
    }


def consumer_group_id(mapping: EventSourceMapping) -> str:
    """The mapping's ConsumerGroupId, its UUID unless set at create (spec 6.2)."""
    config = mapping.params.get(_CONFIG_KEY[mapping.kind]) or {}
    return str(config.get("ConsumerGroupId") or mapping.uuid)


class KafkaSourceFactory:
    def __init__(self, directory: BrokerDirectory, pem_dir: Path | None = None) -> None:
        self.directory = directory
        #: where PEMs from secrets are written for the TLS context (files only, mode 0600)
        self.pem_dir = pem_dir

    async def bootstrap_servers(self, mapping: EventSourceMapping) -> BootstrapServers:
        """The servers, and whether their listener speaks TLS (self-managed: only by certificate entries)."""
        if mapping.kind is SourceKind.SELF_MANAGED_KAFKA:
            sme = mapping.params.get("SelfManagedEventSource") or {}
            servers = list((sme.get("Endpoints") or {}).get("KAFKA_BOOTSTRAP_SERVERS") or [])
            return BootstrapServers(servers, tls=False)
        arn = mapping.event_source_arn
        assert arn is not None
        access = _access(mapping)
        return await self.directory.msk_bootstrap_servers(
            arn,
            scram=any(t.startswith("SASL_SCRAM") for t in access),
            tls=self._configured_tls(mapping) or "CLIENT_CERTIFICATE_TLS_AUTH" in access,
        )

    def _configured_tls(self, mapping: EventSourceMapping) -> bool:
        entry = self.directory.brokers.get(mapping.event_source_arn or "")
        return bool(isinstance(entry, Mapping) and entry.get("tls"))

    async def describe(self, mapping: EventSourceMapping) -> SourceDescription:
        """An MSK cluster must resolve to bootstrap servers (SourceNotFound otherwise)."""
        await self.bootstrap_servers(mapping)
        return SourceDescription()

    async def security(self, mapping: EventSourceMapping, servers: BootstrapServers) -> KafkaSecurity:
        """TLS when ``servers``' listener speaks it or a certificate entry asks; SASL by the SASL entry."""
        access = _access(mapping)
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
            kwargs |= {"tls": True, "ca_file": self._pem(mapping, "ca", _field(secret, "certificate"))}
        if "CLIENT_CERTIFICATE_TLS_AUTH" in access:
            secret = await self.directory.secret(access["CLIENT_CERTIFICATE_TLS_AUTH"])
            kwargs |= {
                "tls": True,
                "cert_file": self._pem(mapping, "cert", _field(secret, "certificate")),
                "key_file": self._pem(mapping, "key", _field(secret, "privateKey")),
                "key_password": secret.get("privateKeyPassword"),
            }
        return KafkaSecurity(**kwargs)

    def _pem(self, mapping: EventSourceMapping, name: str, text: str) -> str:
        folder = self.pem_dir or Path(tempfile.gettempdir()) / "esm-kafka-pem"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{mapping.uuid}-{name}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return str(path)

    async def open(self, mapping: EventSourceMapping) -> tuple[KafkaSource, KafkaShape]:
        bootstrap = await self.bootstrap_servers(mapping)
        servers = bootstrap.servers
        topics: Sequence[str] = mapping.params.get("Topics") or []
        position: StartingPosition = mapping.params.get("StartingPosition") or "TRIM_HORIZON"
        ts = mapping.params.get("StartingPositionTimestamp")
        arn = mapping.event_source_arn if mapping.kind is SourceKind.MSK else None
        source = KafkaSource(
            servers,
            topics[0],
            consumer_group_id(mapping),
            starting_position=position,
            timestamp=float(ts) if ts is not None else None,
            security=await self.security(mapping, bootstrap),
            event_source_arn=arn,
            client_id=f"esm-{mapping.uuid}",
        )
        return source, KafkaShape(event_source_arn=arn, bootstrap_servers=servers)


def _field(secret: Mapping[str, Any], name: str) -> str:
    value = secret.get(name)
    if not isinstance(value, str) or not value:
        raise SourceError(f"the secret has no {name!r}")
    return value
