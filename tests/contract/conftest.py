"""The contract suite's two fixtures, each parametrized over every transport of its port:
``queue_transport`` (QueueSource) and ``stream_transport`` (StreamSource). The harnesses behind them are in
tests/contract/harness.py. A missing service skips the cases of its transport, or under CI=true fails them
(tests/services.require_service)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.contract.admin import KafkaAdmin, open_rabbit_admin
from tests.contract.harness import (
    ActiveMqHarness,
    DynamoDbHarness,
    KafkaHarness,
    KinesisEfoHarness,
    KinesisHarness,
    MemoryQueueHarness,
    MemoryStreamHarness,
    QueueHarness,
    RabbitHarness,
    SqsHarness,
    StreamHarness,
)
from tests.services import require_service

QUEUE_TRANSPORTS = ["sqs-elasticmq", "sqs-moto", "rabbitmq", "activemq", "memory"]


@pytest.fixture(params=QUEUE_TRANSPORTS)
async def queue_transport(request: pytest.FixtureRequest) -> AsyncIterator[QueueHarness]:
    name: str = request.param
    harness: QueueHarness
    if name.startswith("sqs-"):
        harness = SqsHarness(name.removeprefix("sqs-"))
    elif name == "rabbitmq":
        require_service("rabbitmq")
        harness = RabbitHarness(await open_rabbit_admin())
    elif name == "activemq":
        require_service("activemq")
        harness = ActiveMqHarness()
    else:
        harness = MemoryQueueHarness()
    try:
        yield harness
    finally:
        await harness.aclose()


STREAM_TRANSPORTS = ["kinesis", "kinesis-efo", "dynamodb", "kafka", "memory"]


@pytest.fixture(params=STREAM_TRANSPORTS)
async def stream_transport(request: pytest.FixtureRequest) -> AsyncIterator[StreamHarness]:
    name: str = request.param
    harness: StreamHarness
    if name == "kinesis":
        harness = KinesisHarness(require_service("kinesis"))
    elif name == "kinesis-efo":
        harness = KinesisEfoHarness(require_service("localstack"))
    elif name == "dynamodb":
        harness = DynamoDbHarness(require_service("moto"))
    elif name == "kafka":
        require_service("kafka")
        async with KafkaAdmin() as admin:
            harness = KafkaHarness(admin)
            try:
                yield harness
            finally:
                await harness.aclose()
        return
    else:
        harness = MemoryStreamHarness()
    try:
        yield harness
    finally:
        await harness.aclose()
