"""The contract suite's transports: one harness per transport, behind the two parametrized fixtures
``queue_transport`` (QueueSource: SQS on ElasticMQ and on moto, RabbitMQ, ActiveMQ, the in-memory queue) and
``stream_transport`` (StreamSource: Kinesis on kinesis-mock, Kinesis enhanced fan-out on LocalStack,
DynamoDB Streams on moto, Kafka, the in-memory stream).

A harness makes the service side of a case (a queue, stream or topic; messages and records; a dead-letter
look-up) with the services' own clients (tests/contract/admin.py) and opens the transport the way the
engine does, through its factory (engine/app.py). What a transport cannot do is a class attribute holding
the reason, which the case names when it skips. A missing service skips, or under CI=true fails
(tests/services.require_service).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio

from engine.model import SourceKind
from engine.ports import QueueMessage, QueueSource, StartPosition, StreamRecord, StreamSource
from pollers.aws import AwsClients
from pollers.dynamodb import DynamoDbSourceFactory
from pollers.kafka_factory import SelfManagedKafkaSourceFactory
from pollers.kinesis import KinesisSourceFactory
from pollers.memory import MemoryQueue, MemoryStream
from pollers.mq import MqSourceFactory
from pollers.resolve import BrokerDirectory
from pollers.sqs import SqsSourceFactory
from tests.contract.admin import (
    DynamoAdmin,
    KafkaAdmin,
    KinesisAdmin,
    RabbitAdmin,
    SqsAdmin,
    activemq_credentials,
    activemq_dead_letters,
    item_key,
    kafka_bootstrap,
    mapping_for,
    new_uuid,
    rabbitmq_url,
    stomp_endpoint,
    stomp_publish,
)
from tests.services import SQS_ACCOUNTS, endpoint_for, require_service, unique_name

ROLE = "arn:aws:iam::123456789012:role/contract-fn-role"
MQ_ARN = "arn:aws:mq:us-east-1:123456789012:broker:contract:b-00000000-0000-0000-0000-00000000c0de"
MQ_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:contract-mq"
REJECT_REASON = "MaximumPayloadSizeExceeded"
TRIM_HORIZON = StartPosition("TRIM_HORIZON")
#: the item ids of messages sent, where the sender learns them
Ids = list[str | None]


def _no_endpoint(service: str) -> str | None:
    return None


# --- queues ------------------------------------------------------------------------------------------


class QueueHarness:
    """The service side of one queue transport."""

    name: ClassVar[str]
    #: one queue hands out its messages in the order they were sent
    ordered: ClassVar[bool] = True
    #: why this transport has no message groups (None: it has them, QueueMessage.group is set)
    no_groups: ClassVar[str | None] = None
    #: an item id names the message, not one delivery of it: a redelivery keeps it
    item_id_survives_redelivery: ClassVar[bool] = True
    #: the queue keeps a rejected message until its redrive policy moves it (SQS): it comes back first
    dead_letters_in_place: ClassVar[bool] = False
    #: how long a released or abandoned message takes to come back (SQS: the visibility timeout)
    redelivery_s: ClassVar[float] = 0.0

    async def create(self, *, fifo: bool = False) -> str:
        """A new queue (with the dead-letter target its broker uses); -> its reference for the others."""
        raise NotImplementedError

    async def send(self, queue: str, bodies: Sequence[bytes], *, group: str | None = None) -> Ids:
        """-> the item ids the messages will have, where the sender learns them."""
        raise NotImplementedError

    async def open(self, queue: str) -> QueueSource:
        """The transport, made by its factory as the engine makes it (not entered yet)."""
        raise NotImplementedError

    def body(self, message: QueueMessage) -> bytes:
        raise NotImplementedError

    def redelivered(self, message: QueueMessage) -> bool:
        """Whether the record says this is a redelivery, as the source says it."""
        raise NotImplementedError

    def kept(self, message: QueueMessage) -> Any:
        """The part of a record a redelivery keeps as it was."""
        raise NotImplementedError

    async def dead_letters(self, queue: str, expect: int) -> list[tuple[str | None, bytes]]:
        """(the item id it had, if the dead-letter place keeps it; body) of what the broker dead-lettered."""
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class SqsHarness(QueueHarness):
    ordered = False  # a standard queue promises no order
    dead_letters_in_place = True
    redelivery_s = 1.0

    def __init__(self, name: str) -> None:
        self.name = f"sqs-{name}"  # type: ignore[misc]
        self.admin = SqsAdmin(require_service(name, endpoint_for(name)))
        self.account = SQS_ACCOUNTS[name]
        self.clients = AwsClients("sqs", self.admin.endpoint)
        self.factory = SqsSourceFactory(self.clients)
        self.urls: dict[str, str] = {}  # ARN -> URL
        self.dlqs: dict[str, str] = {}  # ARN -> dead-letter queue URL

    async def create(self, *, fifo: bool = False) -> str:
        suffix = ".fifo" if fifo else ""
        fifo_attrs = {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if fifo else {}
        dlq_url, dlq_arn = self.admin.create_queue(unique_name("contract-dlq", suffix), **fifo_attrs)
        # the redrive policy moves a message on its third receive: the second shows it came back
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
        url, arn = self.admin.create_queue(
            unique_name("contract", suffix), VisibilityTimeout="1", RedrivePolicy=redrive, **fifo_attrs
        )
        self.urls[arn] = url
        self.dlqs[arn] = dlq_url
        return arn

    async def send(self, queue: str, bodies: Sequence[bytes], *, group: str | None = None) -> Ids:
        extra = {"MessageGroupId": group} if group else {}
        return list(self.admin.send(self.urls[queue], [b.decode() for b in bodies], **extra))

    async def open(self, queue: str) -> QueueSource:
        return self.factory.open_queue(mapping_for(SourceKind.SQS, queue, BatchSize=10))

    def body(self, message: QueueMessage) -> bytes:
        return str(message.record["body"]).encode()

    def redelivered(self, message: QueueMessage) -> bool:
        return int(message.record["attributes"]["ApproximateReceiveCount"]) > 1

    def kept(self, message: QueueMessage) -> Any:
        r = message.record
        return (r["messageId"], r["body"], r["md5OfBody"], r["messageAttributes"], r["eventSourceARN"])

    async def dead_letters(self, queue: str, expect: int) -> list[tuple[str | None, bytes]]:
        url, dlq = self.urls[queue], self.dlqs[queue]
        came_back: dict[str, str] = {}
        dead: list[dict[str, Any]] = []
        with anyio.fail_after(20):
            while len(dead) < expect:
                # never deleted: back after the visibility timeout (receive count 2), where the redrive
                # policy sees it; the next receive moves it to the dead-letter queue
                for m in await anyio.to_thread.run_sync(self.admin.receive, url, 1):
                    came_back.setdefault(m["MessageId"], m["Attributes"]["ApproximateReceiveCount"])
                dead += await anyio.to_thread.run_sync(self.admin.receive, dlq, 0)
        assert set(came_back.values()) == {"2"}, came_back
        assert set(came_back) == {m["MessageId"] for m in dead}
        return [(m["MessageId"], m["Body"].encode()) for m in dead]

    async def aclose(self) -> None:
        await self.clients.aclose()


class MqHarness(QueueHarness):
    """RabbitMQ and ActiveMQ through MqSourceFactory: the broker ARN resolves from the config's brokers
    section, the credentials from its secrets section."""

    def __init__(self, endpoint: str, credentials: tuple[str, str]) -> None:
        user, password = credentials
        self.directory = BrokerDirectory(
            {
                "brokers": {MQ_ARN: {"endpoints": [endpoint]}},
                "secrets": {MQ_SECRET: {"username": user, "password": password}},
            },
            _no_endpoint,
        )
        self.factory = MqSourceFactory(self.directory)

    async def open(self, queue: str) -> QueueSource:
        mapping = mapping_for(
            SourceKind.MQ,
            MQ_ARN,
            Queues=[queue],
            BatchSize=10,
            SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": MQ_SECRET}],
        )
        source, _envelope, target = await self.factory.open(mapping)
        assert target.queue == queue
        return source

    def body(self, message: QueueMessage) -> bytes:
        return base64.b64decode(message.record["data"])

    def redelivered(self, message: QueueMessage) -> bool:
        return bool(message.record["redelivered"])

    async def aclose(self) -> None:
        await self.directory.aclose()


class RabbitHarness(MqHarness):
    name = "rabbitmq"
    no_groups = "RabbitMQ queues have no message groups"
    item_id_survives_redelivery = False  # a delivery tag names one delivery on one channel

    def __init__(self, admin: RabbitAdmin) -> None:
        parts = rabbitmq_url().split("@")[-1]
        super().__init__(f"amqp://{parts}", ("guest", "guest"))
        self.admin = admin

    async def create(self, *, fifo: bool = False) -> str:
        name = unique_name("contract-rmq")
        dlq = await self.admin.declare(f"{name}-dlq")
        dead_lettering = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
        return await self.admin.declare(name, **dead_lettering)

    async def send(self, queue: str, bodies: Sequence[bytes], *, group: str | None = None) -> Ids:
        for body in bodies:
            await self.admin.publish(queue, body)
        return [None] * len(bodies)

    def kept(self, message: QueueMessage) -> Any:
        return (message.record["basicProperties"], message.record["data"])

    async def dead_letters(self, queue: str, expect: int) -> list[tuple[str | None, bytes]]:
        return [(None, body) for body in await self.admin.wait_for(f"{queue}-dlq")]

    async def aclose(self) -> None:
        await super().aclose()
        await self.admin.aclose()


class ActiveMqHarness(MqHarness):
    name = "activemq"
    no_groups = "the ActiveMQ transport sets no message group (JMSXGroupID is a property like any other)"

    def __init__(self) -> None:
        super().__init__(stomp_endpoint(), activemq_credentials())

    async def create(self, *, fifo: bool = False) -> str:
        return unique_name("contract-amq")  # ActiveMQ makes a queue at its first use

    async def send(self, queue: str, bodies: Sequence[bytes], *, group: str | None = None) -> Ids:
        # the queue's name marks its messages in the shared ActiveMQ.DLQ
        await stomp_publish(queue, bodies, headers=lambda i: {"esmTest": queue})
        return [None] * len(bodies)

    def kept(self, message: QueueMessage) -> Any:
        return {k: v for k, v in message.record.items() if k != "redelivered"}

    async def dead_letters(self, queue: str, expect: int) -> list[tuple[str | None, bytes]]:
        frames = await activemq_dead_letters(queue, expect)
        assert all(f.headers["original-destination"] == f"/queue/{queue}" for f in frames)
        return [(f.headers["message-id"], f.body) for f in frames]


class MemoryQueueHarness(QueueHarness):
    """The in-memory queue is its own broker: every open of a queue hands out the same object."""

    name = "memory"
    no_groups = "the in-memory queue has no message groups"

    def __init__(self) -> None:
        self.queues: dict[str, MemoryQueue] = {}
        self.bodies: dict[str, bytes] = {}

    async def create(self, *, fifo: bool = False) -> str:
        name = unique_name("memory")
        self.queues[name] = MemoryQueue()
        return name

    async def send(self, queue: str, bodies: Sequence[bytes], *, group: str | None = None) -> Ids:
        ids: list[str | None] = []
        for body in bodies:
            item_id = self.queues[queue].put(body.decode())
            self.bodies[item_id] = body
            ids.append(item_id)
        return ids

    async def open(self, queue: str) -> QueueSource:
        return self.queues[queue]

    def body(self, message: QueueMessage) -> bytes:
        return str(message.record["body"]).encode()

    def redelivered(self, message: QueueMessage) -> bool:
        return int(message.record["attributes"]["ApproximateReceiveCount"]) > 1

    def kept(self, message: QueueMessage) -> Any:
        return (message.record["messageId"], message.record["body"])

    async def dead_letters(self, queue: str, expect: int) -> list[tuple[str | None, bytes]]:
        rejected = self.queues[queue].rejected
        assert {reason for _, reason in rejected} <= {REJECT_REASON}
        return [(item_id, self.bodies[item_id]) for item_id, _ in rejected]


# --- streams -----------------------------------------------------------------------------------------


@dataclass
class StreamRef:
    """A stream as the harness made it: ``arn`` is what the mapping names (a consumer ARN for enhanced
    fan-out), ``stream_arn`` what records and errors name."""

    name: str
    arn: str
    stream_arn: str
    shards: int = 1
    #: the in-memory stream itself
    memory: MemoryStream | None = field(default=None, repr=False)


class StreamHarness:
    """The service side of one stream transport."""

    name: ClassVar[str]
    #: the start positions the transport takes; open_shard refuses the others with ValueError
    start_kinds: ClassVar[frozenset[str]] = frozenset(
        {"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "AFTER_SEQUENCE_NUMBER"}
    )
    #: start positions the transport takes but its service here does not honour, with the reason
    service_ignores: ClassVar[dict[str, str]] = {}
    #: most shards a new stream may have
    max_shards: ClassVar[int] = 2
    #: why the stream's identity survives a re-creation (None: it changes)
    no_recreate: ClassVar[str | None] = None
    #: why a deleted stream is not SourceNotFound (None: it is, with "Stream not found: <stream ARN>")
    no_delete: ClassVar[str | None] = None
    #: why no shard can be split (None: ``split`` closes it)
    no_split: ClassVar[str | None] = None

    async def create(self, shards: int = 1, name: str | None = None) -> StreamRef:
        raise NotImplementedError

    async def delete(self, ref: StreamRef) -> None:
        raise NotImplementedError

    async def put(self, ref: StreamRef, key: str, data: bytes) -> str:
        """One record keyed ``key`` (to the stream's first shard when it has one); -> its lane key."""
        raise NotImplementedError

    async def open(self, ref: StreamRef, start: StartPosition = TRIM_HORIZON) -> StreamSource:
        """The transport, made by its factory for a mapping whose StartingPosition is ``start``'s."""
        raise NotImplementedError

    def data(self, record: StreamRecord) -> bytes:
        raise NotImplementedError

    async def split(self, ref: StreamRef, shard_id: str) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class KinesisHarness(StreamHarness):
    name = "kinesis"

    def __init__(self, endpoint: str) -> None:
        self.admin = KinesisAdmin(endpoint)
        self.clients = AwsClients("kinesis", endpoint)
        self.factory = KinesisSourceFactory(self.clients)

    async def create(self, shards: int = 1, name: str | None = None) -> StreamRef:
        name, arn = await anyio.to_thread.run_sync(lambda: self.admin.create(shards, name))
        return StreamRef(name, arn, arn, shards)

    async def delete(self, ref: StreamRef) -> None:
        await anyio.to_thread.run_sync(self.admin.delete, ref.name)

    async def put(self, ref: StreamRef, key: str, data: bytes) -> str:
        self.admin.put(ref.name, data, key)
        return key

    async def open(self, ref: StreamRef, start: StartPosition = TRIM_HORIZON) -> StreamSource:
        return self.factory.open_stream(
            mapping_for(SourceKind.KINESIS, ref.arn, StartingPosition=start.kind), invoke_identity_arn=ROLE
        )

    def data(self, record: StreamRecord) -> bytes:
        return base64.b64decode(record.record["kinesis"]["data"])

    async def split(self, ref: StreamRef, shard_id: str) -> None:
        self.admin.client.split_shard(
            StreamName=ref.name, ShardToSplit=shard_id, NewStartingHashKey=str(2**127)
        )
        await anyio.to_thread.run_sync(self.admin.wait_active, ref.name)

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.admin.cleanup)
        await self.clients.aclose()


class KinesisEfoHarness(KinesisHarness):
    """Kinesis read through an enhanced fan-out consumer (SubscribeToShard): LocalStack has it."""

    name = "kinesis-efo"
    service_ignores = {
        "AT_TIMESTAMP": "LocalStack's Kinesis ignores an AT_TIMESTAMP iterator's Timestamp (it starts at "
        "the trim horizon, GetShardIterator and SubscribeToShard alike)"
    }
    no_split = (
        "LocalStack's SubscribeToShard fails on a closed shard (its event stream calls GetRecords with the "
        "null NextShardIterator and breaks off the response)"
    )

    async def create(self, shards: int = 1, name: str | None = None) -> StreamRef:
        ref = await super().create(shards, name)
        ref.arn = await anyio.to_thread.run_sync(self.admin.register_consumer, ref.stream_arn)
        return ref


class DynamoDbHarness(StreamHarness):
    name = "dynamodb"
    start_kinds = frozenset({"TRIM_HORIZON", "LATEST", "AFTER_SEQUENCE_NUMBER"})  # no AT_TIMESTAMP iterator
    max_shards = 1  # moto: one shard per stream
    no_split = "moto's DynamoDB stream has one shard that never closes"

    def __init__(self, endpoint: str) -> None:
        self.admin = DynamoAdmin(endpoint)
        self.clients = AwsClients("dynamodbstreams", endpoint)
        self.factory = DynamoDbSourceFactory(self.clients)
        self.items = 0

    async def create(self, shards: int = 1, name: str | None = None) -> StreamRef:
        assert shards == 1
        # a re-created table needs a new stream label, which is a timestamp
        await anyio.sleep(0.002)
        name, arn = self.admin.create_table("NEW_IMAGE", name)
        return StreamRef(name, arn, arn)

    async def delete(self, ref: StreamRef) -> None:
        self.admin.client.delete_table(TableName=ref.name)

    async def put(self, ref: StreamRef, key: str, data: bytes) -> str:
        self.items += 1
        keys = item_key(key, self.items)
        self.admin.client.put_item(TableName=ref.name, Item={**keys, "data": {"B": data}})
        return json.dumps(keys, sort_keys=True, separators=(",", ":"))

    async def open(self, ref: StreamRef, start: StartPosition = TRIM_HORIZON) -> StreamSource:
        mapping = mapping_for(SourceKind.DYNAMODB, ref.arn, StartingPosition=start.kind)
        return self.factory.open_stream(mapping)

    def data(self, record: StreamRecord) -> bytes:
        return base64.b64decode(record.record["dynamodb"]["NewImage"]["data"]["B"])

    async def aclose(self) -> None:
        self.admin.cleanup()
        await self.clients.aclose()


class KafkaHarness(StreamHarness):
    name = "kafka"
    no_recreate = "a Kafka source's identity is its cluster id: a topic deleted and re-created keeps it"
    no_delete = "a Kafka source's identity is its cluster id, which a deleted topic leaves"
    no_split = "Kafka partitions never close"

    def __init__(self, admin: KafkaAdmin) -> None:
        self.admin = admin
        self.directory = BrokerDirectory({}, _no_endpoint)
        self.factory = SelfManagedKafkaSourceFactory(self.directory)
        self.opened: list[StreamSource] = []

    async def create(self, shards: int = 1, name: str | None = None) -> StreamRef:
        topic = await self.admin.create_topic(partitions=shards)
        return StreamRef(topic, topic, topic, shards)

    async def put(self, ref: StreamRef, key: str, data: bytes) -> str:
        await self.admin.produce(ref.name, [data], key=key.encode(), partition=0)
        return base64.b64encode(key.encode()).decode()

    async def open(self, ref: StreamRef, start: StartPosition = TRIM_HORIZON) -> StreamSource:
        position = "TRIM_HORIZON" if start.kind == "AFTER_SEQUENCE_NUMBER" else start.kind
        timestamp = {"StartingPositionTimestamp": start.timestamp} if start.timestamp is not None else {}
        mapping = mapping_for(
            SourceKind.SELF_MANAGED_KAFKA,
            mapping_uuid=new_uuid(),  # its own consumer group
            Topics=[ref.name],
            StartingPosition=position,
            SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [kafka_bootstrap()]}},
            **timestamp,
        )
        source, _shape = await self.factory.open(mapping)
        return source

    def data(self, record: StreamRecord) -> bytes:
        return base64.b64decode(record.record["value"])

    async def aclose(self) -> None:
        await self.directory.aclose()


class MemoryStreamHarness(StreamHarness):
    """The in-memory stream is its own service: every open of a stream hands out the same object."""

    name = "memory"
    no_delete = "the in-memory stream cannot be deleted"

    async def create(self, shards: int = 1, name: str | None = None) -> StreamRef:
        name = name or unique_name("memory")
        arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}"
        stream = MemoryStream(arn, shards=shards, invoke_identity_arn=ROLE)
        stream.created = f"{time.time():.6f}"  # what a re-created stream changes
        return StreamRef(name, arn, arn, shards, memory=stream)

    async def put(self, ref: StreamRef, key: str, data: bytes) -> str:
        assert ref.memory is not None
        ref.memory.put(key, data, shard_id="shardId-000000000000")
        return key

    async def open(self, ref: StreamRef, start: StartPosition = TRIM_HORIZON) -> StreamSource:
        assert ref.memory is not None
        return ref.memory

    def data(self, record: StreamRecord) -> bytes:
        return base64.b64decode(record.record["kinesis"]["data"])

    async def split(self, ref: StreamRef, shard_id: str) -> None:
        assert ref.memory is not None
        ref.memory.split(shard_id)
