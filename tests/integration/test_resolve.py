"""Broker endpoints and credentials from the AWS APIs when the config file does not name them:
Amazon MQ DescribeBroker and Secrets Manager GetSecretValue on the real moto server."""

from __future__ import annotations

import json
from typing import Any

import anyio
import boto3
import pytest

from engine.ports import SourceError
from pollers.resolve import BrokerDirectory, Credentials


def _directory(moto_endpoint: str, sections: dict[str, Any] | None = None) -> BrokerDirectory:
    return BrokerDirectory(sections or {}, lambda service: moto_endpoint)


def test_secrets_from_secrets_manager_and_from_the_config_file(moto_endpoint: str, unique_name: Any) -> None:
    sm = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    arn = sm.create_secret(
        Name=unique_name("mq-secret"), SecretString=json.dumps({"username": "app", "password": "s3cret"})
    )["ARN"]
    bad = sm.create_secret(Name=unique_name("bad-secret"), SecretString="not json")["ARN"]
    local = "arn:aws:secretsmanager:us-east-1:123456789012:secret:local-AbCdEf"

    async def main() -> None:
        d = _directory(moto_endpoint, {"secrets": {local: {"username": "u", "password": "p"}}})
        try:
            assert await d.credentials(arn) == Credentials("app", "s3cret")
            assert await d.credentials(local) == Credentials("u", "p")
            with pytest.raises(SourceError, match="not a JSON object"):
                await d.credentials(bad)
            with pytest.raises(SourceError, match="GetSecretValue"):
                await d.credentials(arn + "-missing")
        finally:
            await d.aclose()

    anyio.run(main)


def test_broker_endpoints_from_describe_broker_and_from_the_config_file(
    moto_endpoint: str, unique_name: Any
) -> None:
    mq = boto3.client("mq", endpoint_url=moto_endpoint, region_name="us-east-1")
    broker = mq.create_broker(
        BrokerName=unique_name("rabbit"),
        EngineType="RABBITMQ",
        EngineVersion="3.10.20",
        HostInstanceType="mq.t3.micro",
        DeploymentMode="SINGLE_INSTANCE",
        PubliclyAccessible=False,
        AutoMinorVersionUpgrade=True,
        Users=[{"Username": "admin", "Password": "adminadminadmin"}],
    )
    local = "arn:aws:mq:us-east-1:123456789012:broker:local:b-0000"

    async def main() -> None:
        d = _directory(moto_endpoint, {"brokers": {local: {"endpoints": ["amqp://127.0.0.1:5672"]}}})
        try:
            assert await d.mq_endpoints(local) == ["amqp://127.0.0.1:5672"]
            endpoints = await d.mq_endpoints(broker["BrokerArn"])
            assert endpoints and all(isinstance(e, str) for e in endpoints)
        finally:
            await d.aclose()

    anyio.run(main)
