"""Suite-wide fixtures: AWS defaults and the real services (see tests/services.py).

Kept to services on purpose; fixtures of one area live in that area's conftest.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

# `tests.services` must import whatever way pytest was started (`pytest`, `python -m pytest`, an IDE)
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.services import (  # noqa: E402
    SQS_ACCOUNTS,
    SqsBackend,
    endpoint_for,
    require_service,
)
from tests.services import unique_name as _unique_name  # noqa: E402

AWS_DEFAULTS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no 1 s instance-metadata probe when credentials are looked up
}


def pytest_configure(config: pytest.Config) -> None:
    # also in force at collection time (clients built at import); values already set are kept
    for key, value in AWS_DEFAULTS.items():
        os.environ.setdefault(key, value)


@pytest.fixture(scope="session", autouse=True)
def aws_env() -> Iterator[dict[str, str]]:
    """AWS credentials and region for the emulators: test/test/us-east-1 unless already set."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in AWS_DEFAULTS.items():
            if not os.environ.get(key):
                mp.setenv(key, value)
        yield {key: os.environ[key] for key in AWS_DEFAULTS}


@pytest.fixture(autouse=True)
def _structlog_config() -> Iterator[None]:
    """A test that runs the CLI sets logging up for the whole process; the next test gets the
    defaults back (its loggers would otherwise filter the debug events it captures)."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.service("kafka", ...)``: require each named service before the test runs."""
    for mark in item.iter_markers("service"):
        for name in mark.args:
            require_service(name)


@pytest.fixture
def sqs_endpoint() -> str:
    """ElasticMQ's SQS endpoint (account 000000000000)."""
    return require_service("elasticmq", endpoint_for("elasticmq"))


@pytest.fixture
def bootstrap() -> str:
    """The Kafka broker's bootstrap server (PLAINTEXT)."""
    return require_service("kafka", endpoint_for("kafka"))


@pytest.fixture
def moto_endpoint() -> str:
    """moto server's endpoint (SQS, SNS, S3, DynamoDB Streams, ...; account 123456789012)."""
    return require_service("moto", endpoint_for("moto"))


@pytest.fixture(params=sorted(SQS_ACCOUNTS), ids=str)
def sqs_backend(request: pytest.FixtureRequest) -> SqsBackend:
    """Each SQS implementation in turn: ``endpoint_url, account_id = sqs_backend``."""
    name: str = request.param
    return SqsBackend(require_service(name, endpoint_for(name)), SQS_ACCOUNTS[name])


@pytest.fixture
def unique_name() -> Callable[..., str]:
    """``unique_name(prefix, suffix="")``: a resource name no other test or earlier run has used."""
    return _unique_name


@pytest.fixture
def kinesis_endpoint() -> str:
    """kinesis-mock's endpoint (account 000000000000)."""
    return require_service("kinesis", endpoint_for("kinesis"))
