"""SQS transport through aiobotocore: receive (long polling), delete, and nothing on failure.

AWS leaves a failed message invisible until its visibility timeout ends, so ``release`` does nothing.
Any endpoint works (ElasticMQ, moto, LocalStack, AWS); the queue URL comes from GetQueueUrl.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from engine.events import RECORDS_ENVELOPE, Envelope, parse_arn, sqs_record
from engine.model import EventSourceMapping
from engine.ports import QueueMessage, SourceDescription, SourceError, SourceNotFound, Transport
from pollers.aws import AwsClients

log = structlog.get_logger("pollers.sqs")

NON_EXISTENT_QUEUE = (
    "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. "
    "SQS Error Message: The specified queue does not exist."
)
_MISSING_QUEUE_CODES = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}


def _is_missing_queue(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code", "") in _MISSING_QUEUE_CODES


@dataclass(frozen=True)
class QueueArn:
    """``arn:aws:sqs:REGION:ACCOUNT:NAME``, parsed once."""

    arn: str
    name: str
    account: str
    region: str

    @classmethod
    def parse(cls, arn: str) -> QueueArn:
        parts = parse_arn(arn)
        return cls(arn, parts.resource, parts.account, parts.region)


async def queue_url(client: Any, queue: QueueArn) -> str:
    try:
        resp = await client.get_queue_url(QueueName=queue.name, QueueOwnerAWSAccountId=queue.account)
    except ClientError as e:
        if _is_missing_queue(e):
            raise SourceNotFound(NON_EXISTENT_QUEUE) from e
        raise SourceError(f"GetQueueUrl failed: {e}") from e
    except BotoCoreError as e:
        raise SourceError(f"GetQueueUrl failed: {e}") from e
    return str(resp["QueueUrl"])


class SqsSourceFactory:
    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    async def describe(self, mapping: EventSourceMapping) -> SourceDescription:
        arn = mapping.event_source_arn
        assert arn is not None
        queue = QueueArn.parse(arn)
        client = await self.clients.client(queue.region)
        url = await queue_url(client, queue)
        try:
            attrs = (await client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
        except (ClientError, BotoCoreError) as e:
            raise SourceError(f"GetQueueAttributes failed: {e}") from e
        return SourceDescription(
            visibility_timeout_s=int(attrs.get("VisibilityTimeout", 30)),
            fifo=attrs.get("FifoQueue", "false") == "true" or arn.endswith(".fifo"),
        )

    def envelope(self, mapping: EventSourceMapping) -> Envelope:
        return RECORDS_ENVELOPE

    def open_queue(self, mapping: EventSourceMapping) -> SqsQueue:
        return SqsQueue(self.clients, mapping)


class SqsQueue(Transport):
    def __init__(self, clients: AwsClients, mapping: EventSourceMapping) -> None:
        arn = mapping.event_source_arn
        assert arn is not None
        self.arn = arn
        self.queue = QueueArn.parse(arn)
        self.clients = clients
        self._url: str | None = None

    async def _client_and_url(self) -> tuple[Any, str]:
        client = await self.clients.client(self.queue.region)
        if self._url is None:
            self._url = await queue_url(client, self.queue)
        return client, self._url

    async def receive(self, max_messages: int, wait_s: float) -> Sequence[QueueMessage]:
        calls, url = await self._client_and_url()
        # a long poll holds its connection: never in the pool the deletes use
        client = await self.clients.waiting_client(self.queue.region) if wait_s > 0 else calls
        try:
            resp = await client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=max(1, min(10, max_messages)),
                # whole seconds only: round up so a batching window is never cut short
                WaitTimeSeconds=max(0, min(20, math.ceil(wait_s))),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except ClientError as e:
            if _is_missing_queue(e):
                self._url = None
                raise SourceNotFound(NON_EXISTENT_QUEUE) from e
            raise SourceError(f"ReceiveMessage failed: {e}") from e
        except BotoCoreError as e:
            raise SourceError(f"ReceiveMessage failed: {e}") from e
        out = []
        for m in resp.get("Messages") or []:
            record = sqs_record(m, self.arn)
            attrs = record["attributes"]
            out.append(
                QueueMessage(
                    record=record,
                    item_id=record["messageId"],
                    handle=m["ReceiptHandle"],
                    group=attrs.get("MessageGroupId"),
                    extra={"attempt": int(attrs.get("ApproximateReceiveCount", "1"))},
                )
            )
        return out

    async def depth(self) -> int | None:
        client, url = await self._client_and_url()
        try:
            resp = await client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )
        except (ClientError, BotoCoreError) as e:
            raise SourceError(f"GetQueueAttributes failed: {e}") from e
        return int(resp["Attributes"]["ApproximateNumberOfMessages"])

    async def ack(self, messages: Sequence[QueueMessage]) -> None:
        client, url = await self._client_and_url()
        chunks = [messages[i : i + 10] for i in range(0, len(messages), 10)]

        async def delete(chunk: Sequence[QueueMessage]) -> None:
            entries = [{"Id": str(i), "ReceiptHandle": m.handle} for i, m in enumerate(chunk)]
            try:
                resp = await client.delete_message_batch(QueueUrl=url, Entries=entries)
            except (ClientError, BotoCoreError) as e:
                raise SourceError(f"DeleteMessageBatch failed: {e}") from e
            for failure in resp.get("Failed") or []:
                # an expired receipt handle: the message is visible again and will be delivered again
                log.warning(
                    "delete_failed",
                    queue=self.arn,
                    code=failure.get("Code"),
                    message_id=chunk[int(failure["Id"])].item_id,
                )

        if len(chunks) == 1:
            await delete(chunks[0])
            return
        async with anyio.create_task_group() as tg:
            for chunk in chunks:
                tg.start_soon(delete, chunk)

    async def release(self, messages: Sequence[QueueMessage]) -> None:
        """Nothing: the messages come back when their visibility timeout ends, as on AWS (the redrive
        policy's moves happen in the queue, out of our sight)."""

    async def aclose(self) -> None:
        """The clients belong to the engine."""

    async def reject(self, messages: Sequence[QueueMessage], reason: str) -> None:
        """Nothing, never a delete: the messages come back after their visibility timeout, and the queue's
        redrive policy moves them to its dead-letter queue after maxReceiveCount receives."""
