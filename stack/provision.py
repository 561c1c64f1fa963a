"""The resources a stack's mappings need, created on the configured AWS endpoint (`--create-resources`)
or looked up there: what exists is reused, never replaced. Each type's calls live in one function.

What comes back is each resource's real identity where it differs from the predicted one: a queue's
URL on this endpoint, a table's stream ARN (its label is the stream's creation time).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any, Final

import anyio
import structlog
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from engine.config import AwsSettings
from stack.intrinsics import TemplateError
from stack.physical import Physical
from stack.plan import ResourcePlan, as_text

log = structlog.get_logger(__name__)

#: how long a new stream or table may take to become ACTIVE
ACTIVE_TIMEOUT_S: Final = 60.0

_SQS_ATTRIBUTES: Final = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


class _Clients:
    """One client per service, on the engine's endpoints, closed with the stack."""

    def __init__(self, aws: AwsSettings, stack: AsyncExitStack) -> None:
        self.aws = aws
        self.stack = stack
        self.session: Any = get_session()  # the service is a variable: no overload to pick
        self.made: dict[str, Any] = {}

    async def get(self, service: str) -> Any:
        if service not in self.made:
            self.made[service] = await self.stack.enter_async_context(
                self.session.create_client(
                    service, endpoint_url=self.aws.endpoint_for(service), region_name=self.aws.region
                )
            )
        return self.made[service]


Step = Callable[[_Clients, ResourcePlan, bool], Awaitable[Physical]]


async def provision(resources: list[ResourcePlan], aws: AwsSettings, *, create: bool) -> dict[str, Physical]:
    """Each resource created (`create`) or looked up, in the plan's order; its identity as found.

    A resource that cannot be created is a TemplateError naming it; one merely looked up and missing
    keeps its predicted identity (the engine reports the mapping's source missing until it exists).
    """
    found: dict[str, Physical] = {}
    async with AsyncExitStack() as stack:
        clients = _Clients(aws, stack)
        for r in resources:
            try:
                found[r.logical_id] = await _STEPS[r.type](clients, r, create)
            except (ClientError, BotoCoreError) as e:
                raise TemplateError(
                    r.logical_id,
                    "",
                    f"cannot {'create' if create else 'look up'} {r.type} {r.physical.name!r}: {e}",
                ) from None
            log.info(
                "stack_resource_ready" if create else "stack_resource_found",
                logical_id=r.logical_id,
                type=r.type,
                name=r.physical.name,
            )
    return found


def _missing(e: ClientError, *codes: str) -> bool:
    return e.response.get("Error", {}).get("Code") in codes


async def _queue(clients: _Clients, r: ResourcePlan, create: bool) -> Physical:
    sqs = await clients.get("sqs")
    name = r.physical.name
    if create:
        attributes = {k: as_text(r.properties[k]) for k in _SQS_ATTRIBUTES if k in r.properties}
        try:
            url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
        except ClientError as e:
            if not _missing(e, "QueueAlreadyExists", "QueueNameExists"):
                raise
            # it exists with other attributes: the template's win, but a queue's kind cannot change
            url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
            attributes.pop("FifoQueue", None)
            if attributes:
                await sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    else:
        try:
            url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        except ClientError as e:
            if not _missing(e, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                raise
            return r.physical
    return replace(r.physical, ref=url, attributes={**r.physical.attributes, "QueueUrl": url})


async def _until_active(describe: Callable[[], Awaitable[str]], what: str, r: ResourcePlan) -> None:
    # the services offer no notification of it: polling their status is how their own waiters do it
    with anyio.move_on_after(ACTIVE_TIMEOUT_S):
        while await describe() != "ACTIVE":  # noqa: ASYNC110
            await anyio.sleep(0.2)
        return
    why = f"{what} {r.physical.name!r} is not ACTIVE after {ACTIVE_TIMEOUT_S:g} s"
    raise TemplateError(r.logical_id, "", why)


async def _stream(clients: _Clients, r: ResourcePlan, create: bool) -> Physical:
    kinesis = await clients.get("kinesis")
    name = r.physical.name

    async def status() -> str:
        summary = await kinesis.describe_stream_summary(StreamName=name)
        return str(summary["StreamDescriptionSummary"]["StreamStatus"])

    if create:
        mode = r.properties.get("StreamModeDetails")
        kwargs: dict[str, Any] = {"StreamName": name}
        if mode:
            kwargs["StreamModeDetails"] = mode
        if not mode or mode.get("StreamMode") != "ON_DEMAND":
            kwargs["ShardCount"] = int(r.properties.get("ShardCount", 1))
        try:
            await kinesis.create_stream(**kwargs)
        except ClientError as e:
            if not _missing(e, "ResourceInUseException"):
                raise
        await _until_active(status, "stream", r)
    return r.physical


async def _table(clients: _Clients, r: ResourcePlan, create: bool) -> Physical:
    dynamodb = await clients.get("dynamodb")
    name = r.physical.name
    p = r.properties
    wanted = p.get("StreamSpecification")

    async def status() -> str:
        return str((await dynamodb.describe_table(TableName=name))["Table"]["TableStatus"])

    if create:
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": p.get("AttributeDefinitions") or [],
            "KeySchema": p.get("KeySchema") or [],
            "BillingMode": p.get("BillingMode", "PROVISIONED"),
        }
        if kwargs["BillingMode"] == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = p.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if p.get(key):
                kwargs[key] = p[key]
        if wanted:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **wanted}
        try:
            await dynamodb.create_table(**kwargs)
        except ClientError as e:
            if not _missing(e, "ResourceInUseException"):
                raise
        await _until_active(status, "table", r)
    try:
        table = (await dynamodb.describe_table(TableName=name))["Table"]
    except ClientError as e:
        if create or not _missing(e, "ResourceNotFoundException"):
            raise
        return r.physical
    if create and wanted and not table.get("LatestStreamArn"):
        # a table that existed without a stream gets the one the template declares
        await dynamodb.update_table(TableName=name, StreamSpecification={"StreamEnabled": True, **wanted})
        await _until_active(status, "table", r)
        table = (await dynamodb.describe_table(TableName=name))["Table"]
    attributes = {**r.physical.attributes, "Arn": table["TableArn"]}
    if table.get("LatestStreamArn"):
        attributes["StreamArn"] = table["LatestStreamArn"]
    return replace(r.physical, attributes=attributes)


async def _topic(clients: _Clients, r: ResourcePlan, create: bool) -> Physical:
    if create:
        sns = await clients.get("sns")
        attributes = {
            k: as_text(r.properties[k])
            for k in ("FifoTopic", "ContentBasedDeduplication", "KmsMasterKeyId")
            if k in r.properties
        }
        await sns.create_topic(Name=r.physical.name, Attributes=attributes)  # returns the existing one
    return r.physical


async def _bucket(clients: _Clients, r: ResourcePlan, create: bool) -> Physical:
    if create:
        s3 = await clients.get("s3")
        kwargs: dict[str, Any] = {"Bucket": r.physical.name}
        if clients.aws.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": clients.aws.region}
        try:
            await s3.create_bucket(**kwargs)
        except ClientError as e:
            if not _missing(e, "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    return r.physical


_STEPS: Final[Mapping[str, Step]] = {
    "AWS::SQS::Queue": _queue,
    "AWS::Kinesis::Stream": _stream,
    "AWS::DynamoDB::Table": _table,
    "AWS::SNS::Topic": _topic,
    "AWS::S3::Bucket": _bucket,
}
