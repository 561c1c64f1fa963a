"""On-failure destination senders: SQS SendMessage, SNS Publish, S3 PutObject, through aiobotocore.

The records come from engine.destinations. One engine-wide endpoint with per-service overrides decides
where each client talks to (LocalStack, moto, ElasticMQ, AWS); credentials come from the usual chain.
Every SDK failure becomes a :class:`DestinationError`; cancellation is never caught.
``kafka://<topic>`` destinations are produced by the Kafka transport, not here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from engine.events import parse_arn

DestinationKind = Literal["sqs", "sns", "s3", "kafka"]

#: SNS's message size limit; above it Lambda drops the record's "payload" part (spec 4.8)
SNS_MAX_MESSAGE_BYTES = 256 * 1024

KAFKA_SCHEME = "kafka://"

_MISSING_QUEUE_CODES = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}


class DestinationError(Exception):
    """The failure record could not be delivered (destination missing, access denied, endpoint down,
    message refused). The caller decides whether to retry; the message says what and where."""

    def __init__(self, message: str, *, destination: str, code: str | None = None) -> None:
        super().__init__(message)
        self.destination = destination
        self.code = code


def destination_kind(destination: str) -> DestinationKind | None:
    """What an OnFailure ``Destination`` names: an SQS queue, SNS topic, S3 bucket ARN or a
    ``kafka://<topic>``; None for anything else (malformed, or a service that cannot be a destination)."""
    if destination.startswith(KAFKA_SCHEME):
        return "kafka" if destination[len(KAFKA_SCHEME) :] else None
    try:
        arn = parse_arn(destination)
    except ValueError:
        return None
    if not arn.partition or not arn.resource:
        return None
    if arn.service in ("sqs", "sns"):
        if not arn.region or not arn.account or ":" in arn.resource or "/" in arn.resource:
            return None
        return "sqs" if arn.service == "sqs" else "sns"
    if arn.service == "s3":
        if arn.region or arn.account or "/" in arn.resource:
            return None
        return "s3"
    return None


def kafka_destination_topic(destination: str) -> str:
    """``kafka://failed-records`` -> ``failed-records``."""
    if destination_kind(destination) != "kafka":
        raise ValueError(f"not a Kafka destination: {destination!r}")
    return destination[len(KAFKA_SCHEME) :]


def encode_record(record: Mapping[str, Any]) -> str:
    """The JSON text of a failure record as it is sent (compact, UTF-8)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def sns_message(record: Mapping[str, Any]) -> str:
    """The SNS ``Message``: the record's JSON, without ``payload`` when it would exceed 256 KB."""
    text = encode_record(record)
    if "payload" in record and len(text.encode()) > SNS_MAX_MESSAGE_BYTES:
        text = encode_record({k: v for k, v in record.items() if k != "payload"})
    return text


def _error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class DestinationSender:
    """Sends failure records; owns one aiobotocore client per (service, region).

    ``endpoint_for(service)`` gives the endpoint URL of "sqs", "sns" or "s3" (None: the AWS default);
    ``region`` is used for S3, whose ARNs name no region.
    """

    def __init__(
        self,
        endpoint_for: Callable[[str], str | None],
        *,
        region: str = "us-east-1",
        session: AioSession | None = None,
        pool_size: int = 16,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        close_timeout_s: float = 5.0,
    ) -> None:
        self.endpoint_for = endpoint_for
        self.region = region
        self.session = session or get_session()
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.close_timeout_s = close_timeout_s
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}
        self._queue_urls: dict[str, str] = {}
        self._lock = anyio.Lock()
        self._closed = False

    async def _client(self, service: str, region: str) -> Any:
        async with self._lock:
            if self._closed:
                raise RuntimeError("DestinationSender is closed")
            key = (service, region)
            if key not in self._clients:
                endpoint = self.endpoint_for(service)
                extra: dict[str, Any] = {}
                if service == "s3" and endpoint:
                    # emulators listen on one host name: no bucket sub-domains
                    extra["s3"] = {"addressing_style": "path"}
                config = AioConfig(
                    max_pool_connections=self.pool_size,
                    retries={"max_attempts": 2},
                    connect_timeout=self.connect_timeout_s,
                    read_timeout=self.read_timeout_s,
                    **extra,
                )
                # typed per service literal in the stubs; the service here is a plain str
                session: Any = self.session
                ctx = session.create_client(service, region_name=region, endpoint_url=endpoint, config=config)
                self._clients[key] = await self._stack.enter_async_context(ctx)
            return self._clients[key]

    async def send(
        self, destination_arn: str, record: Mapping[str, Any], *, s3_key: str | None = None
    ) -> None:
        """Deliver ``record`` to the destination; ``s3_key`` is required for S3 buckets.

        Raises :class:`DestinationError` when the destination refuses it or cannot be reached.
        """
        kind = destination_kind(destination_arn)
        if kind is None:
            raise DestinationError(
                f"not a valid on-failure destination: {destination_arn!r}", destination=destination_arn
            )
        if kind == "kafka":
            raise DestinationError(
                f"{destination_arn}: Kafka topic destinations are produced by the Kafka source, "
                "not by the AWS destination sender",
                destination=destination_arn,
            )
        if kind == "sqs":
            await self._send_sqs(destination_arn, encode_record(record))
        elif kind == "sns":
            await self._publish_sns(destination_arn, sns_message(record))
        else:
            if not s3_key:
                raise ValueError("an S3 destination needs the object key (engine.destinations.s3_key)")
            await self._put_s3(destination_arn, s3_key, encode_record(record).encode())

    async def _call(self, destination: str, operation: str, call: Callable[[], Any]) -> Any:
        try:
            return await call()
        except ClientError as e:
            code = _error_code(e)
            raise DestinationError(
                f"{operation} to {destination} failed: {e}", destination=destination, code=code or None
            ) from e
        except BotoCoreError as e:
            raise DestinationError(
                f"{operation} to {destination} failed: {e}", destination=destination
            ) from e

    async def _queue_url(self, client: Any, queue_arn: str) -> str:
        url = self._queue_urls.get(queue_arn)
        if url is None:
            arn = parse_arn(queue_arn)
            resp = await self._call(
                queue_arn,
                "GetQueueUrl",
                lambda: client.get_queue_url(QueueName=arn.resource, QueueOwnerAWSAccountId=arn.account),
            )
            url = self._queue_urls[queue_arn] = str(resp["QueueUrl"])
        return url

    async def _send_sqs(self, queue_arn: str, body: str) -> None:
        client = await self._client("sqs", parse_arn(queue_arn).region)
        url = await self._queue_url(client, queue_arn)
        try:
            await self._call(
                queue_arn, "SendMessage", lambda: client.send_message(QueueUrl=url, MessageBody=body)
            )
        except DestinationError as e:
            if e.code in _MISSING_QUEUE_CODES:
                # deleted (and maybe re-created under a new URL): look it up again next time
                self._queue_urls.pop(queue_arn, None)
            raise

    async def _publish_sns(self, topic_arn: str, message: str) -> None:
        client = await self._client("sns", parse_arn(topic_arn).region)
        await self._call(topic_arn, "Publish", lambda: client.publish(TopicArn=topic_arn, Message=message))

    async def _put_s3(self, bucket_arn: str, key: str, body: bytes) -> None:
        client = await self._client("s3", self.region)
        bucket = parse_arn(bucket_arn).resource
        await self._call(
            bucket_arn, "PutObject", lambda: client.put_object(Bucket=bucket, Key=key, Body=body)
        )

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            self._clients.clear()
            self._queue_urls.clear()
        # shielded, with a deadline: closing must finish even while the owner is being cancelled
        with anyio.move_on_after(self.close_timeout_s, shield=True):
            await self._stack.aclose()
