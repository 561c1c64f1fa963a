"""The security protocol a Kafka mapping connects with: MSK's SASL/SCRAM, IAM and TLS listeners (broker
strings from GetBootstrapBrokers) are TLS-only; the config file's ``brokers`` entries keep their ``tls:``
flag; self-managed brokers use TLS only for certificate entries."""

from __future__ import annotations

from typing import Any

import pytest

from engine.model import EventSourceMapping, SourceKind, State
from pollers.kafka_factory import KafkaSourceFactory, MskSourceFactory, SelfManagedKafkaSourceFactory
from pollers.resolve import MSK_TLS_BROKER_STRINGS, BrokerDirectory

CLUSTER = "arn:aws:kafka:us-east-1:123456789012:cluster/orders/5f1c8e2a-0000-4000-8000-000000000001-1"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_orders-AbCdEf"
SCRAM = {"Type": "SASL_SCRAM_512_AUTH", "URI": SECRET}
#: what GetBootstrapBrokers answers for a cluster with every listener on (MSK's ports)
ALL_LISTENERS = {
    "BootstrapBrokerString": "b-1.orders:9092,b-2.orders:9092",
    "BootstrapBrokerStringTls": "b-1.orders:9094,b-2.orders:9094",
    "BootstrapBrokerStringSaslScram": "b-1.orders:9096,b-2.orders:9096",
    "BootstrapBrokerStringSaslIam": "b-1.orders:9098,b-2.orders:9098",
}


class _FakeMsk:
    def __init__(self, answer: dict[str, str]) -> None:
        self.answer = answer

    async def client(self, region: str) -> _FakeMsk:
        return self

    async def get_bootstrap_brokers(self, ClusterArn: str) -> dict[str, str]:
        assert ClusterArn == CLUSTER
        return self.answer

    async def aclose(self) -> None:
        pass


def _mapping(access: list[dict[str, str]], kind: SourceKind = SourceKind.MSK) -> EventSourceMapping:
    params: dict[str, Any] = {"Topics": ["orders"], "StartingPosition": "TRIM_HORIZON", "BatchSize": 100}
    if kind is SourceKind.MSK:
        params["EventSourceArn"] = CLUSTER
    else:
        params["SelfManagedEventSource"] = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["127.0.0.1:9096"]}}
    if access:
        params["SourceAccessConfigurations"] = access
    return EventSourceMapping(
        uuid="00000000-0000-0000-0000-00000000000a",
        kind=kind,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        params=params,
        enabled=True,
        state=State.ENABLED,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )


def _factory(
    sections: dict[str, Any],
    msk_answer: dict[str, str] | None = None,
    kind: type[KafkaSourceFactory] = MskSourceFactory,
) -> KafkaSourceFactory:
    secrets = {SECRET: {"username": "esm", "password": "esm-secret"}}
    directory = BrokerDirectory({"secrets": secrets, **sections}, lambda service: None)
    directory._msk = _FakeMsk(msk_answer or {})  # type: ignore[assignment]
    return kind(directory)


async def _protocol(factory: KafkaSourceFactory, mapping: EventSourceMapping) -> tuple[list[str], str]:
    source, shape = await factory.open(mapping)
    return list(shape.bootstrap_servers), source.security.security_protocol


async def test_msk_scram_from_get_bootstrap_brokers_is_sasl_ssl() -> None:
    servers, protocol = await _protocol(_factory({}, ALL_LISTENERS), _mapping([SCRAM]))
    assert servers == ["b-1.orders:9096", "b-2.orders:9096"]
    assert protocol == "SASL_SSL"


@pytest.mark.parametrize(
    ("answer", "scram", "tls", "expect_tls"),
    [
        ({"BootstrapBrokerStringSaslScram": "b-1:9096"}, True, False, True),
        ({"BootstrapBrokerStringTls": "b-1:9094"}, False, True, True),
        ({"BootstrapBrokerStringTls": "b-1:9094", "BootstrapBrokerString": "b-1:9092"}, False, False, False),
        ({"BootstrapBrokerString": "b-1:9092"}, True, False, False),  # an emulator's only string
    ],
)
async def test_get_bootstrap_brokers_says_whether_the_listener_is_tls(
    answer: dict[str, str], scram: bool, tls: bool, expect_tls: bool
) -> None:
    directory = BrokerDirectory({}, lambda service: None)
    directory._msk = _FakeMsk(answer)  # type: ignore[assignment]
    resolved = await directory.msk_bootstrap_servers(CLUSTER, scram=scram, tls=tls)
    assert resolved.tls is expect_tls


def test_msk_tls_only_broker_lists() -> None:
    # MSK: TLS 9094, SASL/SCRAM 9096, IAM 9098 (and their public variants) speak only TLS
    assert {"BootstrapBrokerStringTls", "BootstrapBrokerStringSaslScram", "BootstrapBrokerStringSaslIam"} <= (
        MSK_TLS_BROKER_STRINGS
    )
    assert "BootstrapBrokerString" not in MSK_TLS_BROKER_STRINGS


async def test_msk_without_access_configuration_uses_the_plaintext_string() -> None:
    servers, protocol = await _protocol(_factory({}, ALL_LISTENERS), _mapping([]))
    assert servers == ["b-1.orders:9092", "b-2.orders:9092"]
    assert protocol == "PLAINTEXT"


async def test_msk_scram_on_an_emulator_with_only_the_plaintext_string_stays_sasl_plaintext() -> None:
    answer = {"BootstrapBrokerString": "127.0.0.1:9096"}
    assert await _protocol(_factory({}, answer), _mapping([SCRAM])) == (["127.0.0.1:9096"], "SASL_PLAINTEXT")


@pytest.mark.parametrize(
    ("entry_tls", "protocol"), [(None, "SASL_PLAINTEXT"), (False, "SASL_PLAINTEXT"), (True, "SASL_SSL")]
)
async def test_config_file_brokers_keep_their_tls_flag(entry_tls: bool | None, protocol: str) -> None:
    entry: dict[str, Any] = {"bootstrap_servers": ["127.0.0.1:9096"]}
    if entry_tls is not None:
        entry["tls"] = entry_tls
    factory = _factory({"brokers": {CLUSTER: entry}}, ALL_LISTENERS)
    assert await _protocol(factory, _mapping([SCRAM])) == (["127.0.0.1:9096"], protocol)


async def test_self_managed_scram_stays_plaintext_without_certificates() -> None:
    mapping = _mapping([{"Type": "SASL_SCRAM_256_AUTH", "URI": SECRET}], SourceKind.SELF_MANAGED_KAFKA)
    factory = _factory({}, kind=SelfManagedKafkaSourceFactory)
    assert await _protocol(factory, mapping) == (["127.0.0.1:9096"], "SASL_PLAINTEXT")
