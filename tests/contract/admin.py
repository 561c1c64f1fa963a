"""What tests do to the real services besides the transport under test: create and delete queues, streams,
tables and topics, send and put, look into dead-letter queues. One copy, shared by the contract suite
(tests/contract/) and the per-source tests (tests/integration/test_*_poller.py).

Every call here goes through the services' own clients (boto3, aio-pika, stompman, aiokafka), never
through pollers/: a transport is never checked with itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import anyio
import boto3
import stompman
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from botocore.exceptions import ClientError
from pamqp import commands as spec

from engine.model import EventSourceMapping, SourceKind, State
from tests.services import ACTIVEMQ_PASSWORD, ACTIVEMQ_USER, endpoint_for, host_port, setting, unique_name

REGION = "us-east-1"


def mapping_for(
    kind: SourceKind,
    arn: str | None = None,
    *,
    function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:contract-fn",
    mapping_uuid: str = "00000000-0000-0000-0000-000000000001",
    **params: Any,
) -> EventSourceMapping:
    """An enabled mapping of ``kind`` as the store holds it: ``params`` are the API's (BatchSize 100,
    StartingPosition TRIM_HORIZON unless given)."""
    params = {"BatchSize": 100, **params}
    if arn is not None:
        params["EventSourceArn"] = arn
    if kind is not SourceKind.SQS and kind is not SourceKind.MQ:
        params.setdefault("StartingPosition", "TRIM_HORIZON")
    return EventSourceMapping(
        uuid=mapping_uuid,
        kind=kind,
        function_arn=function_arn,
        params=params,
        enabled=True,
        state=State.ENABLED,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(interval)


# --- SQS ---------------------------------------------------------------------------------------------


class SqsAdmin:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.client: Any = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)

    def create_queue(self, name: str, **attributes: str) -> tuple[str, str]:
        """-> (queue URL, queue ARN)"""
        url = str(self.client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
        attrs = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        return url, str(attrs["QueueArn"])

    def send(self, url: str, bodies: Sequence[str], **extra: Any) -> list[str]:
        """The bodies in order, ten per SendMessageBatch; -> their MessageIds."""
        ids: list[str] = []
        for i in range(0, len(bodies), 10):
            entries = [{"Id": str(j), "MessageBody": b, **extra} for j, b in enumerate(bodies[i : i + 10])]
            resp = self.client.send_message_batch(QueueUrl=url, Entries=entries)
            assert not resp.get("Failed"), resp
            ids += [e["MessageId"] for e in sorted(resp["Successful"], key=lambda e: int(e["Id"]))]
        return ids

    def receive(self, url: str, wait_s: int = 0) -> list[dict[str, Any]]:
        """A receive that deletes nothing (the messages stay in the queue, invisible for a while)."""
        resp = self.client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s, AttributeNames=["All"]
        )
        return list(resp.get("Messages") or [])


# --- RabbitMQ ----------------------------------------------------------------------------------------


def rabbitmq_url() -> str:
    return endpoint_for("rabbitmq")


class RabbitAdmin:
    """An admin connection: declares queues, publishes, counts, drains; ``aclose`` deletes the queues."""

    def __init__(self, connection: AbstractConnection, channel: AbstractChannel) -> None:
        self.connection = connection
        self.channel = channel
        self.declared: list[str] = []

    async def declare(self, name: str, **arguments: Any) -> str:
        await self.channel.declare_queue(name, durable=True, arguments=arguments or None)
        self.declared.append(name)
        return name

    async def publish(self, queue: str, body: bytes, **properties: Any) -> None:
        """A persistent message; ``properties`` as pamqp's Basic.Properties (absent = not sent)."""
        properties.setdefault("delivery_mode", 2)
        underlay = await self.channel.get_underlay_channel()
        await underlay.basic_publish(
            body, exchange="", routing_key=queue, properties=spec.Basic.Properties(**properties)
        )

    async def depth(self, queue: str) -> int:
        """Ready messages (not counting deliveries still unacknowledged)."""
        declared = await self.channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count

    async def get_all(self, queue: str) -> list[bytes]:
        q = await self.channel.get_queue(queue, ensure=False)
        out = []
        while (m := await q.get(no_ack=True, fail=False, timeout=5)) is not None:
            out.append(m.body)
        return out

    async def wait_for(self, queue: str, within_s: float = 10.0) -> list[bytes]:
        """What arrives in ``queue`` (a dead-letter queue) within ``within_s``: the first non-empty drain."""
        with anyio.fail_after(within_s):
            while not (got := await self.get_all(queue)):
                await anyio.sleep(0.05)
        return got

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await self.connection.close()
            if self.declared:  # the test's queues go (a fresh connection: the test may have closed its own)
                cleanup = await open_rabbit_admin()
                for name in self.declared:
                    await cleanup.channel.queue_delete(name)
                await cleanup.connection.close()


async def open_rabbit_admin(vhost: str = "/") -> RabbitAdmin:
    # aio_pika.connect ignores ``virtualhost=`` when given a URL: pass the parts
    parts = urlsplit(rabbitmq_url())
    connection = await aio_pika.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5672,
        ssl=parts.scheme == "amqps",
        login=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        virtualhost=vhost,
        timeout=10,
    )
    return RabbitAdmin(connection, await connection.channel())


# --- ActiveMQ ----------------------------------------------------------------------------------------


def stomp_endpoint() -> str:
    return f"stomp://{endpoint_for('activemq')}"


def activemq_credentials() -> tuple[str, str]:
    return setting(ACTIVEMQ_USER), setting(ACTIVEMQ_PASSWORD)


def stomp_client() -> stompman.Client:
    host, port = host_port(endpoint_for("activemq"))
    user, password = activemq_credentials()
    return stompman.Client(
        servers=[stompman.ConnectionParameters(host=host, port=port, login=user, passcode=password)]
    )


async def stomp_publish(
    queue: str,
    bodies: Sequence[bytes],
    *,
    headers: Callable[[int], dict[str, str]] | None = None,
    as_bytes: bool = False,
) -> None:
    """Persistent SENDs with a receipt each; text messages unless ``as_bytes`` (content-length)."""
    async with stomp_client() as client:
        for i, body in enumerate(bodies):
            await client.send(
                body,
                destination=f"/queue/{queue}",
                add_content_length=as_bytes,
                headers={"persistent": "true", **(headers(i) if headers else {})},
                receipt_timeout=5,
            )


async def activemq_dead_letters(token: str, expect: int, within: float = 5.0) -> list[stompman.MessageFrame]:
    """The messages in ActiveMQ.DLQ whose ``esmTest`` property is ``token`` (consumed)."""
    frames: list[stompman.MessageFrame] = []

    async def handler(frame: stompman.MessageFrame) -> None:
        frames.append(frame)

    async with stomp_client() as client:
        sub = await client.subscribe(
            "/queue/ActiveMQ.DLQ",
            handler,
            ack="client-individual",
            headers={"selector": f"esmTest = '{token}'"},
            on_suppressed_exception=lambda e, f: None,
            receipt_timeout=5,
        )
        with anyio.move_on_after(within):
            while len(frames) < expect:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3 if expect else 1.0)  # anything beyond what was expected
        await sub.unsubscribe()
    return frames


# --- Kinesis -----------------------------------------------------------------------------------------


class KinesisAdmin:
    """Streams on one Kinesis endpoint (kinesis-mock, LocalStack); ``cleanup`` deletes what it made."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.client: Any = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION)
        self.names: set[str] = set()

    def summary(self, name: str) -> dict[str, Any]:
        return dict(self.client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"])

    def wait_active(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        wait_until(lambda: self.summary(name)["StreamStatus"] == "ACTIVE", f"stream {name} ACTIVE", timeout)
        return self.summary(name)

    def wait_deleted(self, name: str, timeout: float = 20.0) -> None:
        def gone() -> bool:
            try:
                self.summary(name)
            except self.client.exceptions.ResourceNotFoundException:
                return True
            return False

        wait_until(gone, f"stream {name} deleted", timeout)

    def create(self, shards: int = 1, name: str | None = None) -> tuple[str, str]:
        """-> (name, ARN) of an ACTIVE stream."""
        name = name or unique_name("esm-kin")
        self.client.create_stream(StreamName=name, ShardCount=shards)
        self.names.add(name)
        return name, str(self.wait_active(name)["StreamARN"])

    def delete(self, name: str) -> None:
        self.client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
        self.wait_deleted(name)

    def put(self, name: str, data: bytes, key: str) -> tuple[str, str]:
        """-> (shard id, sequence number)"""
        resp = self.client.put_record(StreamName=name, Data=data, PartitionKey=key)
        return str(resp["ShardId"]), str(resp["SequenceNumber"])

    def register_consumer(self, stream_arn: str, name: str = "efo") -> str:
        """-> the ARN of an ACTIVE enhanced fan-out consumer."""
        arn = str(
            self.client.register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)["Consumer"][
                "ConsumerARN"
            ]
        )
        wait_until(
            lambda: (
                self.client.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"]
                == "ACTIVE"
            ),
            f"consumer {arn} ACTIVE",
            interval=0.1,
        )
        return arn

    def cleanup(self) -> None:
        for name in self.names:
            with contextlib.suppress(ClientError):
                self.client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


# --- DynamoDB ----------------------------------------------------------------------------------------


def item_key(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


class DynamoAdmin:
    """Tables with streams on one DynamoDB endpoint (moto); ``cleanup`` deletes what it made."""

    def __init__(self, endpoint: str) -> None:
        self.client: Any = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
        self.names: set[str] = set()

    def create_table(self, view_type: str = "NEW_AND_OLD_IMAGES", name: str | None = None) -> tuple[str, str]:
        """-> (table name, stream ARN) of a table keyed by pk (S) and sk (N), with a stream."""
        name = name or unique_name("esm-ddb")
        resp = self.client.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
        )
        self.names.add(name)
        return name, str(resp["TableDescription"]["LatestStreamArn"])

    def cleanup(self) -> None:
        for name in self.names:
            with contextlib.suppress(ClientError):
                self.client.delete_table(TableName=name)


# --- Kafka -------------------------------------------------------------------------------------------


def kafka_bootstrap() -> str:
    return endpoint_for("kafka")


class KafkaAdmin:
    """An admin client and a producer on the test broker (``async with``)."""

    def __init__(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap())
        self.producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap(), linger_ms=5)

    async def __aenter__(self) -> KafkaAdmin:
        await self.admin.start()
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()
        await self.admin.close()

    async def create_topic(self, partitions: int = 1) -> str:
        topic = unique_name("esm-kafka")
        await self.admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        return topic

    async def produce(
        self,
        topic: str,
        values: Sequence[bytes],
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> list[int]:
        """-> the offsets the values got."""
        futures = [
            await self.producer.send(topic, value, key=key, partition=partition, headers=headers)
            for value in values
        ]
        return [meta.offset for meta in await asyncio.gather(*futures)]


def new_group() -> str:
    return unique_name("esm-group")


def new_uuid() -> str:
    return str(uuid.uuid4())
