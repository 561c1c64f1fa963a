"""Real services for tests: where they listen, whether they are up, unique resource names.

The services are started by ``scripts/services.sh start NAME`` (``scripts/test`` starts the ones the
suite needs and exports their endpoints as ``ESM_TEST_*`` variables; the defaults below match the
script's ports). A test needing a service calls :func:`require_service` (or uses a fixture of
``tests/conftest.py``, or the ``@pytest.mark.service("NAME")`` marker): when the port does not accept
connections the test is skipped with a hint, or, under ``CI=true``, fails.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from pathlib import Path
from typing import NamedTuple, NoReturn
from urllib.parse import urlsplit

import pytest

ELASTICMQ_ACCOUNT = "000000000000"
MOTO_ACCOUNT = "123456789012"


class ServiceInfo(NamedTuple):
    env: str  # environment variable holding the endpoint
    default: str  # endpoint when the variable is unset (scripts/services.sh's port)


# name (as scripts/services.sh knows it) -> main endpoint
SERVICES: dict[str, ServiceInfo] = {
    "elasticmq": ServiceInfo("ESM_TEST_SQS_ENDPOINT", "http://127.0.0.1:9324"),
    "moto": ServiceInfo("ESM_TEST_MOTO_ENDPOINT", "http://127.0.0.1:5000"),
    "kinesis": ServiceInfo("ESM_TEST_KINESIS_ENDPOINT", "http://127.0.0.1:4568"),
    "kafka": ServiceInfo("ESM_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
    "rabbitmq": ServiceInfo("ESM_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "activemq": ServiceInfo("ESM_TEST_ACTIVEMQ_STOMP", "127.0.0.1:61613"),
    "localstack": ServiceInfo("ESM_TEST_LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566"),
}

# further endpoints of the same services (same names as scripts/services.sh env prints)
# Kafka's SASL_PLAINTEXT listener, mechanisms SCRAM-SHA-512 and SCRAM-SHA-256
KAFKA_SCRAM = ServiceInfo("ESM_TEST_KAFKA_SCRAM_BOOTSTRAP", "127.0.0.1:9096")
KAFKA_SCRAM_USER = ServiceInfo("ESM_TEST_KAFKA_SCRAM_USER", "esm")
KAFKA_SCRAM_PASSWORD = ServiceInfo("ESM_TEST_KAFKA_SCRAM_PASSWORD", "esm-secret")
# Kafka's SSL listener (client certificates required); the CA and the client's certificate and key
KAFKA_TLS = ServiceInfo("ESM_TEST_KAFKA_TLS_BOOTSTRAP", "127.0.0.1:9094")
KAFKA_TLS_DIR = ServiceInfo(
    "ESM_TEST_KAFKA_TLS_DIR", str(Path(__file__).resolve().parent.parent / ".services" / "kafka" / "tls")
)
ACTIVEMQ_OPENWIRE = ServiceInfo("ESM_TEST_ACTIVEMQ_OPENWIRE", "127.0.0.1:61616")
ACTIVEMQ_AMQP = ServiceInfo("ESM_TEST_ACTIVEMQ_AMQP", "127.0.0.1:5673")
ACTIVEMQ_USER = ServiceInfo("ESM_TEST_ACTIVEMQ_USER", "admin")
ACTIVEMQ_PASSWORD = ServiceInfo("ESM_TEST_ACTIVEMQ_PASSWORD", "admin")

_DEFAULT_PORTS = {"http": 80, "https": 443, "amqp": 5672, "amqps": 5671, "stomp": 61613, "tcp": 0}


def setting(info: ServiceInfo) -> str:
    """The value of ``info.env``, or its default."""
    return os.environ.get(info.env) or info.default


def endpoint_for(name: str) -> str:
    """The endpoint of service ``name`` (``ESM_TEST_*`` variable, else scripts/services.sh's default)."""
    try:
        return setting(SERVICES[name])
    except KeyError:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None


def host_port(endpoint: str) -> tuple[str, int]:
    """``http://h:p/...``, ``amqp://u:pw@h:p/vhost`` or a bare ``h:p`` (first of a comma list) -> (h, p)."""
    first = endpoint.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"tcp://{first}")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    if not port:
        raise ValueError(f"no port in endpoint {endpoint!r}")
    return host, port


def is_up(endpoint: str, timeout: float = 1.0) -> bool:
    """Whether the endpoint's host:port accepts a TCP connection."""
    try:
        with socket.create_connection(host_port(endpoint), timeout=timeout):
            return True
    except OSError:
        return False


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def require_service(name: str, endpoint: str | None = None) -> str:
    """Return the endpoint of service ``name`` if its port accepts connections.

    Otherwise skip the calling test with a hint how to start the service, or, with ``CI=true``, fail it:
    in CI no test may skip because a service is missing.
    """
    ep = endpoint if endpoint is not None else endpoint_for(name)
    if is_up(ep):
        return ep
    host, port = host_port(ep)
    msg = (
        f"service {name!r} is not reachable at {ep} (nothing accepts connections on {host}:{port}); "
        f"start it with `scripts/services.sh start {name}` (or run the suite through `scripts/test`)"
    )
    skip_unless_ci(msg)


def skip_unless_ci(msg: str) -> NoReturn:
    """Skip the calling test for a missing or foreign service; with ``CI=true``, fail it."""
    if in_ci():
        pytest.fail(f"{msg} [CI=true: a missing service is a failure, not a skip]", pytrace=False)
    pytest.skip(msg)


class SqsBackend(NamedTuple):
    """An SQS endpoint the tests run against: unpacks as ``endpoint_url, account_id``."""

    endpoint_url: str
    account_id: str

    @property
    def name(self) -> str:
        return "elasticmq" if self.account_id == ELASTICMQ_ACCOUNT else "moto"

    def queue_arn(self, queue_name: str, region: str = "us-east-1") -> str:
        return f"arn:aws:sqs:{region}:{self.account_id}:{queue_name}"


SQS_ACCOUNTS = {"elasticmq": ELASTICMQ_ACCOUNT, "moto": MOTO_ACCOUNT}

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def unique_name(prefix: str = "t", suffix: str = "") -> str:
    """A resource name no other test (or earlier run: ElasticMQ cannot be reset) has used.

    Only ``[A-Za-z0-9_-]`` plus ``suffix`` (e.g. ``".fifo"``), at most 80 characters: valid as an SQS
    queue, Kinesis stream, DynamoDB table, Kafka topic, RabbitMQ or ActiveMQ queue name.
    """
    clean = _UNSAFE.sub("-", prefix).strip("-")[: 80 - 13 - len(suffix)] or "t"
    return f"{clean}-{uuid.uuid4().hex[:12]}{suffix}"
