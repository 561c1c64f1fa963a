"""Where a broker is and who the engine is to it: endpoints of MSK / Amazon MQ broker ARNs and the
credentials of Secrets Manager secret ARNs, from the engine config file first, else from the AWS APIs
(Amazon MQ DescribeBroker, MSK GetBootstrapBrokers, Secrets Manager GetSecretValue) on the configured
endpoint."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from engine.events import parse_arn
from engine.ports import SourceError, SourceNotFound
from pollers.aws import AwsClients

#: GetBootstrapBrokers' broker strings of TLS listeners: MSK's TLS (9094), SASL/SCRAM (9096) and IAM (9098)
#: listeners only speak TLS; BootstrapBrokerString (9092) is the plaintext one.
MSK_TLS_BROKER_STRINGS = frozenset(
    {
        "BootstrapBrokerStringTls",
        "BootstrapBrokerStringSaslScram",
        "BootstrapBrokerStringSaslIam",
        "BootstrapBrokerStringPublicTls",
        "BootstrapBrokerStringPublicSaslScram",
        "BootstrapBrokerStringPublicSaslIam",
    }
)


@dataclass(frozen=True)
class BootstrapServers:
    """An MSK cluster's bootstrap servers and whether their listener speaks TLS: the ``brokers`` entry's
    ``tls`` flag, or, from GetBootstrapBrokers, whether the string came from a TLS-only list."""

    servers: list[str]
    tls: bool


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


class BrokerDirectory:
    """``brokers``: {ARN: {"endpoints": [...]} or {"bootstrap_servers": [...]}};
    ``secrets``: {ARN: {"username": ..., "password": ...}}."""

    def __init__(
        self,
        sections: Mapping[str, Any],
        endpoint_for: Callable[[str], str | None],
    ) -> None:
        self.brokers: Mapping[str, Any] = sections.get("brokers") or {}
        self.secrets: Mapping[str, Any] = sections.get("secrets") or {}
        self._mq = AwsClients("mq", endpoint_for("mq"))
        self._msk = AwsClients("kafka", endpoint_for("kafka"))
        self._secrets = AwsClients("secretsmanager", endpoint_for("secretsmanager"))

    async def mq_endpoints(self, broker_arn: str) -> list[str]:
        configured = self.brokers.get(broker_arn)
        if configured is not None:
            endpoints = configured.get("endpoints") if isinstance(configured, Mapping) else None
            if not endpoints or not all(isinstance(e, str) for e in endpoints):
                raise SourceError(f"config: brokers.{broker_arn}.endpoints must be a list of URLs")
            return list(endpoints)
        client = await self._mq.client(parse_arn(broker_arn).region)
        broker_id = broker_arn.rsplit(":", 1)[-1]
        desc = await _call(
            "DescribeBroker", f"Broker not found: {broker_arn}", client.describe_broker(BrokerId=broker_id)
        )
        return [
            url for instance in desc.get("BrokerInstances") or [] for url in instance.get("Endpoints") or []
        ]

    async def msk_bootstrap_servers(self, cluster_arn: str, *, scram: bool, tls: bool) -> BootstrapServers:
        """The cluster's bootstrap servers for the way the mapping authenticates (GetBootstrapBrokers:
        the SASL/SCRAM, else TLS broker string when asked for, else the plaintext one)."""
        configured = self.brokers.get(cluster_arn)
        if configured is not None:
            servers = configured.get("bootstrap_servers") if isinstance(configured, Mapping) else None
            if not servers or not all(isinstance(e, str) for e in servers):
                raise SourceError(
                    f"config: brokers.{cluster_arn}.bootstrap_servers must be a list of host:port"
                )
            return BootstrapServers(list(servers), tls=bool(configured.get("tls")))
        client = await self._msk.client(parse_arn(cluster_arn).region)
        found = await _call(
            "GetBootstrapBrokers",
            f"Cluster not found: {cluster_arn}",
            client.get_bootstrap_brokers(ClusterArn=cluster_arn),
        )
        wanted = "BootstrapBrokerStringSaslScram" if scram else "BootstrapBrokerStringTls" if tls else ""
        for key in (wanted, "BootstrapBrokerString"):  # an emulator may only have the plaintext string
            text = str(found.get(key) or "") if key else ""
            if text:
                return BootstrapServers(text.split(","), tls=key in MSK_TLS_BROKER_STRINGS)
        raise SourceError(f"GetBootstrapBrokers: {cluster_arn} has no bootstrap brokers")

    async def secret(self, secret_arn: str) -> Mapping[str, Any]:
        """A secret's JSON object: the config file's ``secrets`` entry, else GetSecretValue."""
        configured = self.secrets.get(secret_arn)
        if configured is None:
            client = await self._secrets.client(parse_arn(secret_arn).region)
            try:
                value = await client.get_secret_value(SecretId=secret_arn)
            except ClientError as e:
                raise SourceError(f"GetSecretValue {secret_arn} failed: {e}") from e
            except BotoCoreError as e:
                raise SourceError(f"GetSecretValue {secret_arn} failed: {e}") from e
            try:
                configured = json.loads(value.get("SecretString") or "{}")
            except ValueError as e:
                raise SourceError(f"secret {secret_arn} is not a JSON object") from e
        if not isinstance(configured, Mapping):
            raise SourceError(f"secret {secret_arn} is not a JSON object")
        return configured

    async def credentials(self, secret_arn: str) -> Credentials:
        configured = await self.secret(secret_arn)
        if not {"username", "password"} <= set(configured):
            raise SourceError(f"secret {secret_arn} must hold username and password")
        return Credentials(str(configured["username"]), str(configured["password"]))

    async def aclose(self) -> None:
        await self._mq.aclose()
        await self._msk.aclose()
        await self._secrets.aclose()


async def _call(operation: str, not_found: str, call: Awaitable[Any]) -> Any:
    """An AWS call with its errors translated: NotFound -> SourceNotFound(not_found), others SourceError."""
    try:
        return await call
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NotFoundException", "NotFound"):
            raise SourceNotFound(not_found) from e
        raise SourceError(f"{operation} failed: {e}") from e
    except BotoCoreError as e:
        raise SourceError(f"{operation} failed: {e}") from e
