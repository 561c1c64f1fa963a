"""Each source kind's part of a soak, in one profile: create (and delete) the source, produce records
with the source's own SDK, and name each record the same way on both sides: the producer, from what
the put returned; the tap, from the event the function got (``keys``). The key says where AWS
promises order (``group``): a shard, a partition, a message group, or nowhere."""

from __future__ import annotations

import base64
import contextlib
import decimal
import json
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import anyio
from aiobotocore.session import get_session

from soak.load import PlanError, Record
from soak.plan import SourceSpec


@dataclass(frozen=True)
class Put:
    """A record the source accepted: its key (as ``keys`` will name it) and its ordering group (None:
    AWS promises no order)."""

    key: str
    group: str | None
    #: where the journal names it (a shard, a topic-partition) and its place there (a sequence number,
    #: an offset, the send order of a FIFO group): the ledger's order check and first..last rows
    scope: str | None = None
    position: int = 0


@dataclass(frozen=True)
class Endpoints:
    """Where the soak's producers reach AWS: one URL per botocore service name (None: AWS itself)."""

    urls: Mapping[str, str | None]
    region: str

    def of(self, service: str) -> str | None:
        return self.urls.get(service, self.urls.get("*"))


class SoakSource:
    """One mapping's source. Subclasses: open their client in ``__aenter__``, ``create`` what the spec
    asks (returning the CreateEventSourceMapping parameters it fixes: EventSourceArn, Topics, Queues),
    ``put`` a batch once (``seqs``: the records' numbers in the run; None for a record the source
    refused: the caller puts it again), ``delete`` what they created."""

    kind: ClassVar[str]
    #: the event's eventSource values this profile reads keys from
    event_sources: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: SourceSpec, endpoints: Endpoints, run: str) -> None:
        self.spec = spec
        self.endpoints = endpoints
        self.run = run
        self.created = False
        self.stack = AsyncExitStack()

    async def __aenter__(self) -> SoakSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()

    async def create(self) -> dict[str, Any]:
        raise NotImplementedError

    async def delete(self) -> None:
        raise NotImplementedError

    async def put(self, records: Sequence[Record], seqs: Sequence[int]) -> list[Put | None]:
        raise NotImplementedError

    def ordering(self, params: Mapping[str, Any]) -> str:
        return "not promised"

    async def depth(self) -> int | None:
        """Messages the source still holds (None: the engine's metrics tell)."""
        return None

    async def dead_letters(self) -> dict[str, str]:
        """Records the source itself moved to a dead-letter queue: body -> key where the key is not
        known from the message (an SQS redrive keeps the message id). Read at the end, not consumed."""
        return {}

    @staticmethod
    def keys(event: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(key, item identifier for batchItemFailures) of every record of ``event``, in order."""
        raise NotImplementedError

    @staticmethod
    def bodies(event: Mapping[str, Any]) -> list[bytes]:
        """Every record's body as produced (for the poison check), in order."""
        raise NotImplementedError

    async def _aws(self, service: str) -> Any:
        creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
        session: Any = get_session()  # the service is a variable: no overload to pick
        client = session.create_client(
            service, endpoint_url=self.endpoints.of(service), region_name=self.endpoints.region, **creds
        )
        return await self.stack.enter_async_context(client)


class SqsSource(SoakSource):
    kind = "sqs"
    event_sources = ("aws:sqs",)

    async def __aenter__(self) -> SqsSource:
        self.sqs = await self._aws("sqs")
        return self

    async def create(self) -> dict[str, Any]:
        name = self.spec.name
        attrs = dict(self.spec.attributes)
        if self.spec.fifo:
            attrs.setdefault("FifoQueue", "true")
        if self.spec.create:
            if self.spec.dlq and "RedrivePolicy" not in attrs:
                dlq = f"{name[: -len('.fifo')]}-dlq.fifo" if self.spec.fifo else f"{name}-dlq"
                dlq_attrs = {"FifoQueue": "true"} if self.spec.fifo else {}
                dlq_url = (await self.sqs.create_queue(QueueName=dlq, Attributes=dlq_attrs))["QueueUrl"]
                redrive = {
                    "deadLetterTargetArn": await self._arn(dlq_url),
                    "maxReceiveCount": self.spec.max_receives,
                }
                attrs["RedrivePolicy"] = json.dumps(redrive)
                self.dlq_url: str | None = dlq_url
            self.url = (await self.sqs.create_queue(QueueName=name, Attributes=attrs))["QueueUrl"]
            self.created = True
        else:
            self.url = (await self.sqs.get_queue_url(QueueName=name))["QueueUrl"]
        if not hasattr(self, "dlq_url"):
            self.dlq_url = await self._redrive_target()
        return {"EventSourceArn": await self._arn(self.url)}

    async def _arn(self, url: str) -> str:
        got = await self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(got["Attributes"]["QueueArn"])

    async def _redrive_target(self) -> str | None:
        got = await self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["RedrivePolicy"])
        policy = got.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            return None
        arn = json.loads(policy)["deadLetterTargetArn"]
        return str((await self.sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1]))["QueueUrl"])

    async def delete(self) -> None:
        if self.created:
            for url in (self.url, self.dlq_url):
                if url:
                    with contextlib.suppress(Exception):
                        await self.sqs.delete_queue(QueueUrl=url)

    async def put(self, records: Sequence[Record], seqs: Sequence[int]) -> list[Put | None]:
        out: list[Put | None] = [None] * len(records)

        async def send(start: int) -> None:
            chunk = records[start : start + 10]
            entries = []
            for i, r in enumerate(chunk):
                entry: dict[str, Any] = {"Id": str(i), "MessageBody": r.body.decode()}
                if self.spec.fifo:
                    entry["MessageGroupId"] = r.key
                    entry["MessageDeduplicationId"] = f"{self.run}-{seqs[start + i]}"
                entries.append(entry)
            got = await self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
            for ok in got.get("Successful", []):
                i = int(ok["Id"])
                group = chunk[i].key if self.spec.fifo else None
                out[start + i] = Put(ok["MessageId"], group, position=seqs[start + i])

        if self.spec.fifo:  # one batch after another: a message group's order is the send order
            for start in range(0, len(records), 10):
                await send(start)
            return out
        async with anyio.create_task_group() as tg:
            for start in range(0, len(records), 10):
                tg.start_soon(send, start)
        return out

    def ordering(self, params: Mapping[str, Any]) -> str:
        return "per message group" if self.spec.fifo else "not promised (standard queue)"

    async def depth(self) -> int | None:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        got = await self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)
        return sum(int(got.get("Attributes", {}).get(n, 0)) for n in names)

    async def dead_letters(self) -> dict[str, str]:
        if not self.dlq_url:
            return {}
        seen: dict[str, str] = {}
        # received and left in place (visibility long enough to read the queue once)
        for _ in range(10_000):
            got = await self.sqs.receive_message(
                QueueUrl=self.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
            )
            messages = got.get("Messages", [])
            if not messages:
                break
            for m in messages:
                seen[m["MessageId"]] = m["Body"]
        return seen

    @staticmethod
    def keys(event: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [(r["messageId"], r["messageId"]) for r in event["Records"]]

    @staticmethod
    def bodies(event: Mapping[str, Any]) -> list[bytes]:
        return [str(r["body"]).encode() for r in event["Records"]]


class KinesisSource(SoakSource):
    kind = "kinesis"
    event_sources = ("aws:kinesis",)

    async def __aenter__(self) -> KinesisSource:
        self.kinesis = await self._aws("kinesis")
        return self

    async def create(self) -> dict[str, Any]:
        name = self.spec.name
        if self.spec.create:
            with contextlib.suppress(self.kinesis.exceptions.ResourceInUseException):
                await self.kinesis.create_stream(StreamName=name, ShardCount=self.spec.shards)
                self.created = True
        with anyio.fail_after(120):
            while True:
                desc = (await self.kinesis.describe_stream_summary(StreamName=name))[
                    "StreamDescriptionSummary"
                ]
                if desc["StreamStatus"] == "ACTIVE":
                    return {"EventSourceArn": desc["StreamARN"]}
                await anyio.sleep(0.2)

    async def delete(self) -> None:
        if self.created:
            with contextlib.suppress(Exception):
                await self.kinesis.delete_stream(StreamName=self.spec.name, EnforceConsumerDeletion=True)

    async def put(self, records: Sequence[Record], seqs: Sequence[int]) -> list[Put | None]:
        out: list[Put | None] = [None] * len(records)
        for start in range(0, len(records), 500):
            todo = range(start, min(start + 500, len(records)))
            entries = [{"Data": records[i].body, "PartitionKey": records[i].key} for i in todo]
            got = await self.kinesis.put_records(StreamName=self.spec.name, Records=entries)
            for i, result in zip(todo, got["Records"], strict=True):
                if "SequenceNumber" in result:  # else throttled: put again by the caller
                    shard = result["ShardId"]
                    group = shard if self.parallel == 1 else f"{shard}/{records[i].key}"
                    seq = int(result["SequenceNumber"])
                    out[i] = Put(f"{shard}:{seq}", group, scope=shard, position=seq)
        return out

    parallel = 1

    def ordering(self, params: Mapping[str, Any]) -> str:
        self.parallel = int(params.get("ParallelizationFactor", 1))
        return (
            "per shard" if self.parallel == 1 else "per partition key within a shard (ParallelizationFactor)"
        )

    @staticmethod
    def keys(event: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [(r["eventID"], r["kinesis"]["sequenceNumber"]) for r in event["Records"]]

    @staticmethod
    def bodies(event: Mapping[str, Any]) -> list[bytes]:
        return [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]


def _attribute(value: Any) -> dict[str, Any]:
    """JSON -> a DynamoDB AttributeValue (numbers as N, exact)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(decimal.Decimal(str(value)))}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [_attribute(v) for v in value]}
    if isinstance(value, Mapping):
        return {"M": {str(k): _attribute(v) for k, v in value.items()}}
    return {"S": str(value)}


class DynamoDbSource(SoakSource):
    """A table keyed ``pk`` (the record's key: its ordering group) and ``sk`` (the record's number), with
    a NEW_IMAGE stream; the record's fields are the item's other attributes."""

    kind = "dynamodb"
    event_sources = ("aws:dynamodb",)

    async def __aenter__(self) -> DynamoDbSource:
        self.dynamodb = await self._aws("dynamodb")
        return self

    async def create(self) -> dict[str, Any]:
        name = self.spec.name
        if self.spec.create:
            with contextlib.suppress(self.dynamodb.exceptions.ResourceInUseException):
                await self.dynamodb.create_table(
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
                    StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
                )
                self.created = True
        with anyio.fail_after(60):
            while True:
                table = (await self.dynamodb.describe_table(TableName=name))["Table"]
                if table["TableStatus"] == "ACTIVE" and table.get("LatestStreamArn"):
                    return {"EventSourceArn": table["LatestStreamArn"]}
                await anyio.sleep(0.2)

    async def delete(self) -> None:
        if self.created:
            with contextlib.suppress(Exception):
                await self.dynamodb.delete_table(TableName=self.spec.name)

    async def put(self, records: Sequence[Record], seqs: Sequence[int]) -> list[Put | None]:
        out: list[Put | None] = [None] * len(records)
        for start in range(0, len(records), 25):
            items = {}
            for i in range(start, min(start + 25, len(records))):
                r = records[i]
                fields = r.doc if isinstance(r.doc, Mapping) else {"body": r.body.decode(errors="replace")}
                item = {k: _attribute(v) for k, v in fields.items() if k not in ("pk", "sk")}
                item |= {"pk": {"S": r.key}, "sk": {"N": str(seqs[i])}}
                items[f"{r.key}/{seqs[i]}"] = (i, item)
            todo = [{"PutRequest": {"Item": item}} for _, item in items.values()]
            got = await self.dynamodb.batch_write_item(RequestItems={self.spec.name: todo})
            todo = got.get("UnprocessedItems", {}).get(self.spec.name, [])  # put again by the caller
            left = {
                f"{w['PutRequest']['Item']['pk']['S']}/{w['PutRequest']['Item']['sk']['N']}" for w in todo
            }
            for key, (i, _) in items.items():
                if key not in left:
                    out[i] = Put(key, None, position=seqs[i])
        return out

    def ordering(self, params: Mapping[str, Any]) -> str:
        return "not checked (each record is an item of its own; DynamoDB orders changes per item)"

    @staticmethod
    def keys(event: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = []
        for r in event["Records"]:
            keys = r["dynamodb"]["Keys"]
            out.append((f"{keys['pk']['S']}/{keys['sk']['N']}", r["dynamodb"]["SequenceNumber"]))
        return out

    @staticmethod
    def bodies(event: Mapping[str, Any]) -> list[bytes]:
        # the item's attributes, as the stream shows them: a poison marker in a field is in these bytes
        return [json.dumps(r["dynamodb"].get("NewImage", {})).encode() for r in event["Records"]]


class KafkaSource(SoakSource):
    kind = "kafka"
    event_sources = ("aws:kafka", "SelfManagedKafka")

    async def __aenter__(self) -> KafkaSource:
        from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

        if not self.spec.bootstrap:
            raise PlanError(f"{self.spec.name}: the Kafka source needs bootstrap servers (source.bootstrap)")
        self.producer = AIOKafkaProducer(bootstrap_servers=self.spec.bootstrap, linger_ms=5, acks="all")
        await self.producer.start()
        self.stack.push_async_callback(self.producer.stop)
        return self

    async def create(self) -> dict[str, Any]:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
        from aiokafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped]

        if self.spec.create:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.spec.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(self.spec.name, self.spec.shards, 1)])
                self.created = True
            except TopicAlreadyExistsError:
                pass
            finally:
                await admin.close()
        return {"Topics": [self.spec.name]}

    async def delete(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        if self.created:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.spec.bootstrap)
            with contextlib.suppress(Exception):
                await admin.start()
                await admin.delete_topics([self.spec.name])
            with contextlib.suppress(Exception):
                await admin.close()

    async def put(self, records: Sequence[Record], seqs: Sequence[int]) -> list[Put | None]:
        futures = [await self.producer.send(self.spec.name, r.body, key=r.key.encode()) for r in records]
        out: list[Put | None] = []
        for fut in futures:
            try:
                meta = await fut
            except Exception:
                out.append(None)
                continue
            tp = f"{meta.topic}-{meta.partition}"
            out.append(Put(f"{tp}:{meta.offset}", tp, scope=tp, position=meta.offset))
        return out

    def ordering(self, params: Mapping[str, Any]) -> str:
        return "per partition"

    @staticmethod
    def keys(event: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [
            (f"{r['topic']}-{r['partition']}:{r['offset']}", str(r["offset"]))
            for records in event["records"].values()
            for r in records
        ]

    @staticmethod
    def bodies(event: Mapping[str, Any]) -> list[bytes]:
        return [base64.b64decode(r.get("value") or "") for rs in event["records"].values() for r in rs]


def broker_credentials(url: str) -> tuple[str, str, str]:
    """amqp://user:pass@host:port/vhost, stomp://user:pass@host:port -> (endpoint without the
    credentials, user, password)."""
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise PlanError(f"broker URL {url!r}: expected SCHEME://USER:PASSWORD@HOST:PORT")
    path = parts.path if parts.scheme.startswith("amqp") else ""  # a RabbitMQ virtual host
    endpoint = f"{parts.scheme}://{parts.hostname}:{parts.port}{path}"
    return endpoint, unquote(parts.username or ""), unquote(parts.password or "")


class RabbitMqSource(SoakSource):
    """Messages carry the soak's record number as their AMQP message id."""

    kind = "rabbitmq"
    event_sources = ("aws:rmq",)

    async def __aenter__(self) -> RabbitMqSource:
        import aio_pika

        if not self.spec.broker_url:
            raise PlanError(f"{self.spec.name}: the RabbitMQ source needs source.broker_url")
        self.connection = await aio_pika.connect_robust(self.spec.broker_url)
        self.stack.push_async_callback(self.connection.close)
        self.channel = await self.connection.channel(publisher_confirms=True)
        return self

    async def create(self) -> dict[str, Any]:
        await self.channel.declare_queue(self.spec.name, durable=True)
        self.created = self.spec.create
        return {"Queues": [self.spec.name]}

    async def delete(self) -> None:
        if self.created:
            with contextlib.suppress(Exception):
                await self.channel.queue_delete(self.spec.name)

    async def put(self, records: Sequence[Record], seqs: Sequence[int]) -> list[Put | None]:
        import aio_pika

        out: list[Put | None] = []
        for i, r in enumerate(records):
            message_id = f"{self.run}-{seqs[i]}"
            message = aio_pika.Message(
                r.body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            try:
                await self.channel.default_exchange.publish(message, routing_key=self.spec.name)
            except Exception:
                break  # the broker is away: the rest are refused too, and put again by the caller
            out.append(Put(message_id, None))
        return out + [None] * (len(records) - len(out))

    @staticmethod
    def keys(event: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [
            (m["basicProperties"]["messageId"], m["basicProperties"]["messageId"])
            for messages in event["rmqMessagesByQueue"].values()
            for m in messages
        ]

    @staticmethod
    def bodies(event: Mapping[str, Any]) -> list[bytes]:
        return [base64.b64decode(m["data"]) for ms in event["rmqMessagesByQueue"].values() for m in ms]


SOAK_HEADER = "esm-soak-id"


class ActiveMqSource(SoakSource):
    """Messages carry the soak's record number in a header (a property of the event's message)."""

    kind = "activemq"
    event_sources = ("aws:mq",)

    async def __aenter__(self) -> ActiveMqSource:
        import stompman

        if not self.spec.broker_url:
            raise PlanError(f"{self.spec.name}: the ActiveMQ source needs source.broker_url")
        parts = urlsplit(self.spec.broker_url)
        server = stompman.ConnectionParameters(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 61613,
            login=unquote(parts.username or ""),
            passcode=unquote(parts.password or ""),
        )
        self.client = await self.stack.enter_async_context(stompman.Client(servers=[server]))
        return self

    async def create(self) -> dict[str, Any]:
        return {"Queues": [self.spec.name]}  # ActiveMQ creates a queue on its first message

    async def delete(self) -> None:
        return None

    async def put(self, records: Sequence[Record], seqs: Sequence[int]) -> list[Put | None]:
        out: list[Put | None] = []
        for i, r in enumerate(records):
            soak_id = f"{self.run}-{seqs[i]}"
            try:
                await self.client.send(
                    r.body,
                    destination=f"/queue/{self.spec.name}",
                    headers={"persistent": "true", SOAK_HEADER: soak_id},
                )
            except Exception:
                break  # the broker is away: the rest are refused too, and put again by the caller
            out.append(Put(soak_id, None))
        return out + [None] * (len(records) - len(out))

    @staticmethod
    def keys(event: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [(m["properties"][SOAK_HEADER], m["messageID"]) for m in event["messages"]]

    @staticmethod
    def bodies(event: Mapping[str, Any]) -> list[bytes]:
        return [base64.b64decode(m.get("data") or "") for m in event["messages"]]


PROFILES: dict[str, type[SoakSource]] = {
    cls.kind: cls
    for cls in (SqsSource, KinesisSource, DynamoDbSource, KafkaSource, RabbitMqSource, ActiveMqSource)
}


def profile_of(event: Mapping[str, Any]) -> type[SoakSource] | None:
    """The profile of an event of any kind, by the eventSource it names."""
    source = event.get("eventSource")
    if source is None:
        records = event.get("Records") or []
        source = records[0].get("eventSource") if records else None
    for cls in PROFILES.values():
        if source in cls.event_sources:
            return cls
    return None
