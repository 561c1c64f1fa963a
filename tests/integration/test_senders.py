"""Destination senders against moto's server: SQS, SNS (to an SQS subscription) and S3 receive the exact
failure record; missing destinations raise DestinationError."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import boto3
import pytest

from engine.destinations import RETRY_ATTEMPTS_EXHAUSTED, s3_key, stream_failure_record, with_payload
from engine.ports import InvokeResult, StreamRecord
from engine.senders import DestinationError, DestinationSender
from tests.services import MOTO_ACCOUNT

REGION = "us-east-1"


def _record(n: int = 2) -> dict[str, Any]:
    return stream_failure_record(
        source="kinesis",
        records=[
            StreamRecord(record={}, sequence_number=str(100 + i), arrival_s=1573692004.835 + i, lane_key="k")
            for i in range(n)
        ],
        condition=RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=3,
        last_result=InvokeResult(payload=b"{}", function_error="Unhandled"),
        function_arn=f"arn:aws:lambda:{REGION}:{MOTO_ACCOUNT}:function:f",
        shard_id="shardId-000000000001",
        stream_arn=f"arn:aws:kinesis:{REGION}:{MOTO_ACCOUNT}:stream/s",
        request_id="c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        now=1573692006.021,
    )


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return str(url), str(arn)


def _receive_one(sqs: Any, url: str) -> dict[str, Any]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages")
    assert messages and len(messages) == 1, messages
    return dict(messages[0])


@pytest.fixture
async def sender(moto_endpoint: str) -> AsyncIterator[DestinationSender]:
    s = DestinationSender(lambda service: moto_endpoint, region=REGION)
    yield s
    await s.aclose()


async def test_sqs_receives_the_exact_json(
    sender: DestinationSender, moto_endpoint: str, unique_name: Callable[..., str]
) -> None:
    sqs = _client("sqs", moto_endpoint)
    url, arn = _queue(sqs, unique_name("dest-sqs"))
    assert arn == f"arn:aws:sqs:{REGION}:{MOTO_ACCOUNT}:{arn.rsplit(':', 1)[1]}"
    record = _record()
    await sender.send(arn, record)
    await sender.send(arn, _record(1))  # the queue URL is cached; a second send still arrives
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2)["Messages"]
    bodies = sorted(
        (json.loads(m["Body"]) for m in messages), key=lambda r: -r["KinesisBatchInfo"]["batchSize"]
    )
    assert bodies == [record, _record(1)]
    # key order survives the trip
    assert list(bodies[0]) == list(record)
    assert list(bodies[0]["KinesisBatchInfo"]) == list(record["KinesisBatchInfo"])


async def test_sns_delivers_the_record_as_the_envelope_message(
    sender: DestinationSender, moto_endpoint: str, unique_name: Callable[..., str]
) -> None:
    sqs, sns = _client("sqs", moto_endpoint), _client("sns", moto_endpoint)
    url, queue_arn = _queue(sqs, unique_name("dest-sns-sub"))
    topic_arn = sns.create_topic(Name=unique_name("dest-sns"))["TopicArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "false"},
    )
    record = _record()
    await sender.send(topic_arn, record)
    envelope = json.loads(_receive_one(sqs, url)["Body"])
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == topic_arn
    assert isinstance(envelope["Message"], str)
    assert json.loads(envelope["Message"]) == record


async def test_sns_drops_the_payload_above_256_kb(
    sender: DestinationSender, moto_endpoint: str, unique_name: Callable[..., str]
) -> None:
    sqs, sns = _client("sqs", moto_endpoint), _client("sns", moto_endpoint)
    url, queue_arn = _queue(sqs, unique_name("dest-sns-big-sub"))
    topic_arn = sns.create_topic(Name=unique_name("dest-sns-big"))["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    big = with_payload(_record(), {"Records": [{"kinesis": {"data": "A" * 300_000}}]})
    await sender.send(topic_arn, big)
    message = json.loads(json.loads(_receive_one(sqs, url)["Body"])["Message"])
    assert message == _record()


async def test_s3_object_at_the_key(
    sender: DestinationSender, moto_endpoint: str, unique_name: Callable[..., str]
) -> None:
    s3 = _client("s3", moto_endpoint)
    bucket = unique_name("dest-s3").lower()
    s3.create_bucket(Bucket=bucket)
    event = {"Records": [{"kinesis": {"data": "SGVsbG8=", "sequenceNumber": "100"}}]}
    record = with_payload(_record(), event)
    key = s3_key("a1b2c3d4-0000-1111-2222-333344445555", "shardId-000000000001", 1573692006.021, "r-uuid")
    await sender.send(f"arn:aws:s3:::{bucket}", record, s3_key=key)
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == [
        "aws/lambda/a1b2c3d4-0000-1111-2222-333344445555/shardId-000000000001/2019/11/14/"
        "2019-11-14T00.40.06-r-uuid"
    ]
    stored = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored == record
    assert json.loads(stored["payload"]) == event


async def test_s3_without_a_key_is_a_programming_error(sender: DestinationSender) -> None:
    with pytest.raises(ValueError, match="object key"):
        await sender.send("arn:aws:s3:::some-bucket", _record())


async def test_missing_queue_is_a_destination_error(
    sender: DestinationSender, unique_name: Callable[..., str]
) -> None:
    arn = f"arn:aws:sqs:{REGION}:{MOTO_ACCOUNT}:{unique_name('missing')}"
    with pytest.raises(DestinationError) as info:
        await sender.send(arn, _record())
    assert info.value.destination == arn
    assert "GetQueueUrl" in str(info.value) and arn in str(info.value)
    assert info.value.code in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


async def test_deleted_queue_is_looked_up_again(
    sender: DestinationSender, moto_endpoint: str, unique_name: Callable[..., str]
) -> None:
    sqs = _client("sqs", moto_endpoint)
    name = unique_name("dest-recreated")
    url, arn = _queue(sqs, name)
    await sender.send(arn, _record())
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(DestinationError):
        await sender.send(arn, _record())
    url, _ = _queue(sqs, name)
    await sender.send(arn, _record(1))
    assert json.loads(_receive_one(sqs, url)["Body"]) == _record(1)


async def test_missing_topic_and_bucket_are_destination_errors(
    sender: DestinationSender, unique_name: Callable[..., str]
) -> None:
    topic = f"arn:aws:sns:{REGION}:{MOTO_ACCOUNT}:{unique_name('missing')}"
    with pytest.raises(DestinationError, match="Publish"):
        await sender.send(topic, _record())
    bucket = f"arn:aws:s3:::{unique_name('missing').lower()}"
    with pytest.raises(DestinationError, match="PutObject") as info:
        await sender.send(bucket, _record(), s3_key="k")
    assert info.value.code == "NoSuchBucket"


async def test_invalid_and_kafka_destinations_are_destination_errors(sender: DestinationSender) -> None:
    with pytest.raises(DestinationError, match="not a valid on-failure destination"):
        await sender.send("arn:aws:lambda:us-east-1:123456789012:function:f", _record())
    with pytest.raises(DestinationError, match="Kafka"):
        await sender.send("kafka://failed", _record())


async def test_unreachable_endpoint_is_a_destination_error() -> None:
    sender = DestinationSender(lambda service: "http://127.0.0.1:9", connect_timeout_s=1.0)
    try:
        with pytest.raises(DestinationError, match="GetQueueUrl"):
            await sender.send(f"arn:aws:sqs:{REGION}:{MOTO_ACCOUNT}:q", _record())
    finally:
        await sender.aclose()


async def test_per_service_endpoints_and_close(moto_endpoint: str, unique_name: Callable[..., str]) -> None:
    asked: list[str] = []

    def endpoint_for(service: str) -> str | None:
        asked.append(service)
        return moto_endpoint if service == "sqs" else "http://127.0.0.1:9"

    sqs = _client("sqs", moto_endpoint)
    url, arn = _queue(sqs, unique_name("dest-endpoints"))
    sender = DestinationSender(endpoint_for)
    await sender.send(arn, _record())
    await sender.aclose()
    assert asked == ["sqs"]
    assert json.loads(_receive_one(sqs, url)["Body"]) == _record()
    with pytest.raises(RuntimeError, match="closed"):
        await sender.send(arn, _record())
