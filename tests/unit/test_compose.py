"""compose.yaml: the engine beside LocalStack, Kafka, RabbitMQ and ActiveMQ, on the documented ports."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"

_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with every variable unset (what a fresh checkout gets)."""
    return _VAR.sub(lambda m: m.group(2) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    svcs = compose["services"]
    assert isinstance(svcs, dict)
    return svcs


def published(service: dict[str, Any]) -> dict[int, int]:
    """host port -> container port, from short ("[ip:]host:container[/proto]") or long syntax."""
    out: dict[int, int] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            out[int(entry["published"])] = int(entry["target"])
            continue
        # an unquoted 5673:5672 is a YAML 1.1 base-60 integer: ports must be strings
        assert isinstance(entry, str), f"port {entry!r} must be a quoted string"
        parts = _interpolate(entry).split("/")[0].split(":")
        assert len(parts) in (2, 3), f"port {entry!r} publishes no fixed host port"
        out[int(parts[-2])] = int(parts[-1])
    return out


def image(service: dict[str, Any]) -> str:
    return _interpolate(str(service["image"]))


def test_services_present(services: dict[str, Any]) -> None:
    assert {"engine", "localstack", "kafka", "rabbitmq", "activemq"} <= set(services)


@pytest.mark.parametrize(
    ("name", "host_port", "container_port"),
    [
        ("engine", 9001, 9001),
        ("localstack", 4566, 4566),
        ("kafka", 9092, 9092),
        ("rabbitmq", 5672, 5672),
        ("activemq", 61613, 61613),
        ("activemq", 61616, 61616),
        ("activemq", 5673, 5672),
    ],
)
def test_published_ports(services: dict[str, Any], name: str, host_port: int, container_port: int) -> None:
    assert published(services[name]).get(host_port) == container_port


def test_no_host_port_published_twice(services: dict[str, Any]) -> None:
    seen: dict[int, str] = {}
    for name, svc in services.items():
        for port in published(svc):
            assert port not in seen, f"host port {port} published by {seen[port]} and {name}"
            seen[port] = name


def test_images(services: dict[str, Any]) -> None:
    assert image(services["engine"]) == "python:3.11-slim"
    assert image(services["localstack"]).startswith("localstack/localstack:")
    assert image(services["kafka"]).startswith("apache/kafka:")
    assert image(services["rabbitmq"]) == "rabbitmq:3-management"
    assert image(services["activemq"]).startswith("apache/activemq-classic:5.")
    for name, svc in services.items():
        assert not image(svc).endswith(":"), f"{name}: image without a tag"


def test_engine_installs_and_serves_on_9001_against_localstack(services: dict[str, Any]) -> None:
    engine = services["engine"]
    command = engine["command"]
    script = command if isinstance(command, str) else " ".join(command)
    assert "pip install" in script
    serve = shlex.split(script[script.index("esm serve") :])
    assert serve[:2] == ["esm", "serve"]
    opts = dict(zip(serve[2::2], serve[3::2], strict=False))
    assert opts["--host"] == "0.0.0.0"
    assert opts["--port"] == "9001"
    assert opts["--config"] == "/config/esm.yaml"
    assert opts["--aws-endpoint-url"] == "http://localstack:4566"
    assert {"localstack", "kafka", "rabbitmq", "activemq"} <= set(engine["depends_on"])


def test_engine_mounts_the_project_and_an_existing_config(services: dict[str, Any]) -> None:
    mounts = {}
    for v in services["engine"]["volumes"]:
        src, target = _interpolate(v).split(":")[:2]
        mounts[target] = src
    assert mounts["/src"] in (".", "./")
    config_dir = ROOT / mounts["/config"]
    assert (config_dir / "esm.yaml").is_file(), f"{config_dir}/esm.yaml (the engine's --config) is missing"


def test_kafka_is_kraft_single_node(services: dict[str, Any]) -> None:
    env = services["kafka"]["environment"]
    assert set(str(env["KAFKA_PROCESS_ROLES"]).split(",")) == {"broker", "controller"}
    assert "localhost:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"


def _mounted_config(services: dict[str, Any]) -> Path:
    for v in services["engine"]["volumes"]:
        src, target = _interpolate(v).split(":")[:2]
        if target == "/config":
            return ROOT / src / "esm.yaml"
    raise AssertionError("no /config mount")


def _claimed_broker_hosts() -> set[str]:
    """The host:port list compose.yaml's header says the mounted config's broker entries name."""
    header = " ".join(
        line.lstrip("#").strip() for line in COMPOSE.read_text().splitlines() if line.startswith("#")
    )
    m = re.search(r"broker entries[^(]*in-network hosts \(([^)]*)\)", header)
    assert m, "compose.yaml's header no longer says which broker hosts the config names"
    return {h.strip() for h in m.group(1).split(",")}


def _broker_hosts(brokers: dict[str, Any]) -> set[str]:
    hosts = set()
    for entry in brokers.values():
        for server in entry.get("bootstrap_servers", []):
            hosts.add(server)
        for url in entry.get("endpoints", []):
            hosts.add(url.split("://", 1)[1].rstrip("/"))
    return hosts


def test_mounted_config_names_the_in_network_brokers_the_header_claims(services: dict[str, Any]) -> None:
    from engine.config import load_config

    config = load_config(_mounted_config(services))
    hosts = _broker_hosts(config.sections.get("brokers", {}))
    assert _claimed_broker_hosts() == {"kafka:19092", "rabbitmq:5672", "activemq:61613"}
    assert hosts == _claimed_broker_hosts()


def test_in_network_broker_hosts_are_compose_services_listening_there(services: dict[str, Any]) -> None:
    from engine.config import load_config

    brokers = load_config(_mounted_config(services)).sections.get("brokers", {})
    for host_port in _broker_hosts(brokers):
        host, port = host_port.rsplit(":", 1)
        assert host in services, f"{host_port}: no compose service {host!r}"
        svc = services[host]
        if host == "kafka":  # the listener advertised to containers of this project
            assert f"DOCKER://{host_port}" in svc["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        else:
            assert int(port) in published(svc).values(), f"{host_port}: {host} does not listen on {port}"


def test_mounted_config_functions_are_importable_in_the_container(services: dict[str, Any]) -> None:
    from engine.config import load_config

    config = load_config(_mounted_config(services))
    env = services["engine"]["environment"]
    # the container's import path: the config's folder, then PYTHONPATH (/src is the project)
    paths = [_mounted_config(services).parent]
    paths += [ROOT / p.removeprefix("/src/") for p in str(env.get("PYTHONPATH", "")).split(":") if p]
    assert config.functions
    for function in config.functions.values():
        if function.handler is None:
            continue
        module = function.handler.rpartition(".")[0].replace(".", "/") + ".py"
        assert any((p / module).is_file() for p in paths), f"{function.name}: {module} not on the import path"
