"""Where a broker is and who the engine is to it: endpoints of MSK / Amazon MQ broker ARNs and the
credentials of Secrets Manager secret ARNs, from the engine config file first, else from the AWS APIs
(Amazon MQ DescribeBroker, Secrets Manager GetSecretValue) on the configured endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from engine.events import parse_arn
from engine.ports import SourceError, SourceNotFound
from pollers.aws import AwsClients


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
        try:
            desc = await client.describe_broker(BrokerId=broker_id)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NotFoundException", "NotFound"):
                raise SourceNotFound(f"Broker not found: {broker_arn}") from e
            raise SourceError(f"DescribeBroker failed: {e}") from e
        except BotoCoreError as e:
            raise SourceError(f"DescribeBroker failed: {e}") from e
        return [
            url for instance in desc.get("BrokerInstances") or [] for url in instance.get("Endpoints") or []
        ]

    async def credentials(self, secret_arn: str) -> Credentials:
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
                raise SourceError(f"secret {secret_arn} is not JSON with username and password") from e
        if not isinstance(configured, Mapping) or not {"username", "password"} <= set(configured):
            raise SourceError(f"secret {secret_arn} must hold username and password")
        return Credentials(str(configured["username"]), str(configured["password"]))

    async def aclose(self) -> None:
        await self._mq.aclose()
        await self._secrets.aclose()
