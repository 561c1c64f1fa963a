"""What each resource of a stack is called locally, and what its Ref and Fn::GetAtt return.

A name the template gives (QueueName, TableName, ...) is kept; otherwise it is derived from the stack
name and the logical id, as CloudFormation derives one (without its random suffix, so that a second
`esm up` finds the same resources). Pure: ARNs and URLs are built, nothing is looked up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from stack.intrinsics import TemplateError


@dataclass(frozen=True)
class Where:
    region: str
    account_id: str
    stack_name: str
    #: the SQS endpoint a queue's Ref (its URL) is built on; None: AWS's
    sqs_endpoint: str | None = None


@dataclass(frozen=True)
class Physical:
    """A resource as the template's intrinsics see it."""

    name: str
    ref: Any
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def arn(self) -> str | None:
        # a topic's ARN is its TopicArn (and its Ref)
        arn = self.attributes.get("Arn", self.attributes.get("TopicArn"))
        return arn if isinstance(arn, str) else None


@dataclass(frozen=True)
class Kind:
    """One resource type: where its name comes from, how long it may be, what its intrinsics return."""

    name_property: str | None
    max_length: int
    build: Callable[[str, Mapping[str, Any], Where], Physical]
    lower_case: bool = False


def _sqs(name: str, props: Mapping[str, Any], w: Where) -> Physical:
    if props.get("FifoQueue") in (True, "true") and not name.endswith(".fifo"):
        # the suffix counts in the queue name's 80 characters
        name = _shortened(name, 80 - len(".fifo")) + ".fifo"
    base = w.sqs_endpoint.rstrip("/") if w.sqs_endpoint else f"https://sqs.{w.region}.amazonaws.com"
    url = f"{base}/{w.account_id}/{name}"
    arn = f"arn:aws:sqs:{w.region}:{w.account_id}:{name}"
    return Physical(name, url, {"Arn": arn, "QueueName": name, "QueueUrl": url})


def _kinesis(name: str, props: Mapping[str, Any], w: Where) -> Physical:
    return Physical(name, name, {"Arn": f"arn:aws:kinesis:{w.region}:{w.account_id}:stream/{name}"})


#: a table's stream label is its creation time: until the table exists, the ARN says so
PENDING_STREAM_LABEL: Final = "created-with-the-table"


def _dynamodb(name: str, props: Mapping[str, Any], w: Where) -> Physical:
    arn = f"arn:aws:dynamodb:{w.region}:{w.account_id}:table/{name}"
    attributes = {"Arn": arn}
    if props.get("StreamSpecification"):
        attributes["StreamArn"] = f"{arn}/stream/{PENDING_STREAM_LABEL}"
    return Physical(name, name, attributes)


def _sns(name: str, props: Mapping[str, Any], w: Where) -> Physical:
    arn = f"arn:aws:sns:{w.region}:{w.account_id}:{name}"
    return Physical(name, arn, {"TopicArn": arn, "TopicName": name})


def _s3(name: str, props: Mapping[str, Any], w: Where) -> Physical:
    return Physical(
        name,
        name,
        {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{w.region}.amazonaws.com",
        },
    )


def function_arn(name: str, w: Where) -> str:
    return f"arn:aws:lambda:{w.region}:{w.account_id}:function:{name}"


def _function(name: str, props: Mapping[str, Any], w: Where) -> Physical:
    return Physical(name, name, {"Arn": function_arn(name, w)})


def _role(name: str, props: Mapping[str, Any], w: Where) -> Physical:
    return Physical(name, name, {"Arn": f"arn:aws:iam::{w.account_id}:role/{name}", "RoleId": name})


def _msk(name: str, props: Mapping[str, Any], w: Where) -> Physical:
    arn = f"arn:aws:kafka:{w.region}:{w.account_id}:cluster/{name}/esm-{w.stack_name}"
    return Physical(name, arn, {"Arn": arn})


def _mq(name: str, props: Mapping[str, Any], w: Where) -> Physical:
    broker_id = f"b-{name}"
    arn = f"arn:aws:mq:{w.region}:{w.account_id}:broker:{name}:{broker_id}"
    return Physical(name, broker_id, {"Arn": arn, "Id": broker_id})


def _secret(name: str, props: Mapping[str, Any], w: Where) -> Physical:
    arn = f"arn:aws:secretsmanager:{w.region}:{w.account_id}:secret:{name}"
    return Physical(name, arn, {"Id": arn})


KINDS: Final[dict[str, Kind]] = {
    "AWS::SQS::Queue": Kind("QueueName", 80, _sqs),
    "AWS::Kinesis::Stream": Kind("Name", 128, _kinesis),
    "AWS::DynamoDB::Table": Kind("TableName", 255, _dynamodb),
    "AWS::SNS::Topic": Kind("TopicName", 256, _sns),
    "AWS::S3::Bucket": Kind("BucketName", 63, _s3, lower_case=True),
    "AWS::Lambda::Function": Kind("FunctionName", 64, _function),
    "AWS::IAM::Role": Kind("RoleName", 64, _role),
    "AWS::MSK::Cluster": Kind("ClusterName", 64, _msk),
    "AWS::AmazonMQ::Broker": Kind("BrokerName", 50, _mq),
    "AWS::SecretsManager::Secret": Kind("Name", 512, _secret),
}

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")


def derived_name(stack_name: str, logical_id: str, max_length: int, lower_case: bool = False) -> str:
    """`{stack}-{logical id}`, cut to the type's length (the logical id's end is what tells them apart)."""
    name = _shortened(_UNSAFE.sub("-", f"{stack_name}-{logical_id}"), max_length)
    return name.lower() if lower_case else name


def _shortened(name: str, max_length: int) -> str:
    if len(name) <= max_length:
        return name
    return name[: max_length // 2] + name[-(max_length - max_length // 2) :]


def physical(logical_id: str, type_: str, name: Any, props: Mapping[str, Any], where: Where) -> Physical:
    """`logical_id`'s local identity; `name` is its name property, resolved (None when not given)."""
    kind = KINDS.get(type_)
    if kind is None:
        # a resource the engine does not run: its Ref is a name, it has no known attributes
        return Physical(logical_id, derived_name(where.stack_name, logical_id, 255))
    if name is None:
        name = derived_name(where.stack_name, logical_id, kind.max_length, kind.lower_case)
    elif not isinstance(name, str) or not name:
        raise TemplateError(logical_id, f"Properties.{kind.name_property}", f"{name!r} is not a name")
    return kind.build(name, props, where)
