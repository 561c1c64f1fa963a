"""SQS end to end against real SQS endpoints (ElasticMQ and moto's server): polling, batching, event
shape, deletes, partial failures, filters, FIFO order, MaximumConcurrency, enable/disable, update, delete,
restart."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import anyio
import boto3
import pytest

from engine.model import EventSourceMapping, SourceKind, State
from pollers.aws import AwsClients
from pollers.sqs import SqsQueue
from tests.integration.conftest import RunningEngine, esm_test_fns, functions_config, wait_for
from tests.services import MOTO_ACCOUNT


def _sqs(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")


def _queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _redriven_queue(sqs: Any, name: str) -> tuple[str, str, str]:
    """A queue whose messages go to a dead-letter queue after 2 receives, visible again after 1 s:
    (its URL, its ARN, the DLQ's URL)."""
    dlq_url, dlq_arn = _queue(sqs, f"{name}-dlq")
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    url, arn = _queue(sqs, name, VisibilityTimeout="1", RedrivePolicy=redrive)
    return url, arn, dlq_url


def _send(sqs: Any, url: str, bodies: list[str], **extra: Any) -> list[str]:
    ids = []
    for i in range(0, len(bodies), 10):
        entries = [{"Id": str(j), "MessageBody": b, **extra} for j, b in enumerate(bodies[i : i + 10])]
        resp = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not resp.get("Failed"), resp
        ids += [e["MessageId"] for e in sorted(resp["Successful"], key=lambda e: int(e["Id"]))]
    return ids


def _queue_empty(sqs: Any, url: str) -> bool:
    a = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return a["ApproximateNumberOfMessages"] == "0" and a["ApproximateNumberOfMessagesNotVisible"] == "0"


def _map(eng: RunningEngine, arn: str, function: str = "fn-ok", **params: Any) -> str:
    resp = eng.lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, **params)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 202
    eng.wait_state(resp["UUID"], "Enabled")
    return str(resp["UUID"])


# --- core cases, on both endpoints -------------------------------------------------------------------


def test_delivers_every_message_once_with_the_exact_event_shape(
    sqs_backend: tuple[str, str], start_engine: Any, unique_name: Any
) -> None:
    endpoint, _account = sqs_backend
    sqs = _sqs(endpoint)
    url, arn = _queue(sqs, unique_name("shape"))
    eng = start_engine(endpoint)
    _map(eng, arn, BatchSize=10)
    bodies = [f"message {i}" for i in range(25)]
    ids = _send(
        sqs,
        url,
        bodies[:1],
        MessageAttributes={
            "Author": {"DataType": "String", "StringValue": "John Grisham"},
            "WeeksOn": {"DataType": "Number", "StringValue": "6"},
        },
    )
    ids += _send(sqs, url, bodies[1:])
    records = wait_for(lambda: (r := esm_test_fns.records_for(arn)) and len(r) >= 25 and r)
    got = [r["messageId"] for r in records]
    if _account == MOTO_ACCOUNT:
        # moto's server can hand one message to two concurrent ReceiveMessage calls (getmoto/moto#519);
        # SQS itself is at-least-once: every message, none missing
        assert set(got) == set(ids)
    else:
        assert sorted(got) == sorted(ids)
    assert all(len(c["event"]["Records"]) <= 10 for c in esm_test_fns.calls_for(arn))
    first = next(r for r in records if r["messageId"] == ids[0])
    assert list(first)[:6] == [
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
    ]
    assert list(first)[-3:] == ["eventSource", "eventSourceARN", "awsRegion"]
    assert first["body"] == "message 0"
    assert first["md5OfBody"] == hashlib.md5(b"message 0").hexdigest()
    assert (
        first["eventSource"] == "aws:sqs"
        and first["eventSourceARN"] == arn
        and first["awsRegion"] == "us-east-1"
    )
    assert first["attributes"]["ApproximateReceiveCount"] == "1"
    assert first["attributes"]["SentTimestamp"].isdigit()
    assert all(isinstance(v, str) for v in first["attributes"].values())
    assert first["messageAttributes"]["Author"] == {
        "stringValue": "John Grisham",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert first["messageAttributes"]["WeeksOn"]["dataType"] == "Number"
    assert "md5OfMessageAttributes" in first
    other = next(r for r in records if r["messageId"] == ids[1])
    assert other["messageAttributes"] == {} and "md5OfMessageAttributes" not in other
    wait_for(lambda: _queue_empty(sqs, url))
    time.sleep(1.2)  # nothing comes back: every message was deleted
    assert len(esm_test_fns.records_for(arn)) == 25


def test_partial_batch_failure_deletes_the_rest_and_redelivers_failed_items(
    sqs_backend: tuple[str, str], start_engine: Any, unique_name: Any
) -> None:
    endpoint, _ = sqs_backend
    sqs = _sqs(endpoint)
    url, arn, dlq_url = _redriven_queue(sqs, unique_name("partial"))
    eng = start_engine(endpoint)
    _map(eng, arn, "fn-partial", BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
    ids = _send(sqs, url, ["a", "b FAIL", "c", "d"])
    # the failed item comes back after the visibility timeout (receive count 2), then goes to the DLQ
    wait_for(
        lambda: any(r["attributes"]["ApproximateReceiveCount"] == "2" for r in esm_test_fns.records_for(arn))
    )
    moved = wait_for(lambda: sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages"))
    assert [m["Body"] for m in moved] == ["b FAIL"]
    seen = [(r["body"], r["attributes"]["ApproximateReceiveCount"]) for r in esm_test_fns.records_for(arn)]
    assert sorted(seen) == [("a", "1"), ("b FAIL", "1"), ("b FAIL", "2"), ("c", "1"), ("d", "1")]
    assert {r["messageId"] for r in esm_test_fns.records_for(arn)} == set(ids)


def test_function_error_redelivers_the_whole_batch_after_the_visibility_timeout(
    sqs_backend: tuple[str, str], start_engine: Any, unique_name: Any
) -> None:
    endpoint, _ = sqs_backend
    sqs = _sqs(endpoint)
    url, arn = _queue(sqs, unique_name("boom"), VisibilityTimeout="1")
    eng = start_engine(endpoint)
    _map(eng, arn, "fn-boom", BatchSize=10)
    _send(sqs, url, ["x", "y", "z"])
    wait_for(
        lambda: (
            sum(r["attributes"]["ApproximateReceiveCount"] == "2" for r in esm_test_fns.records_for(arn)) == 3
        )
    )
    first_seen = min(c["at"] for c in esm_test_fns.calls_for(arn))
    retried = [
        c["at"]
        for c in esm_test_fns.calls_for(arn)
        if c["event"]["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    ]
    assert min(retried) - first_seen >= 0.5  # not released early: the visibility timeout brings them back
    wait_for(lambda: _queue_empty(sqs, url))
    # the journal entry of a batch is written right after its messages are deleted
    wait_for(
        lambda: {e.outcome for e in eng.engine.store.journal(limit=100)} >= {"function_error", "success"}
    )


def test_invalid_partial_response_fails_the_whole_batch(
    sqs_backend: tuple[str, str], start_engine: Any, unique_name: Any
) -> None:
    endpoint, _ = sqs_backend
    sqs = _sqs(endpoint)
    url, arn = _queue(sqs, unique_name("invalid"), VisibilityTimeout="1")
    eng = start_engine(endpoint)
    _map(eng, arn, "fn-bad_response", BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
    _send(sqs, url, ["p", "q"])
    wait_for(
        lambda: (
            sum(r["attributes"]["ApproximateReceiveCount"] == "2" for r in esm_test_fns.records_for(arn)) == 2
        )
    )
    wait_for(lambda: _queue_empty(sqs, url))


def test_filtered_out_messages_are_deleted_without_invocation(
    sqs_backend: tuple[str, str], start_engine: Any, unique_name: Any
) -> None:
    endpoint, _ = sqs_backend
    sqs = _sqs(endpoint)
    url, arn = _queue(sqs, unique_name("filter"))
    eng = start_engine(endpoint)
    _map(
        eng,
        arn,
        BatchSize=10,
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"kind": ["keep"]}})}]},
    )
    _send(
        sqs,
        url,
        [
            json.dumps({"kind": "keep", "n": 1}),
            json.dumps({"kind": "drop"}),
            "plain text",
            json.dumps({"kind": "keep", "n": 2}),
        ],
    )
    wait_for(lambda: _queue_empty(sqs, url))
    time.sleep(0.5)
    assert sorted(json.loads(r["body"])["n"] for r in esm_test_fns.records_for(arn)) == [1, 2]


# --- ElasticMQ only: batching, FIFO, concurrency, lifecycle ----------------------------------------


def test_batch_size_above_ten_with_a_window_collects_several_receives(
    sqs_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("window"))
    _send(sqs, url, [f"m{i}" for i in range(60)])
    eng = start_engine(sqs_endpoint)
    _map(eng, arn, BatchSize=50, MaximumBatchingWindowInSeconds=1, ScalingConfig={"MaximumConcurrency": 2})
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 60)
    sizes = [len(c["event"]["Records"]) for c in esm_test_fns.calls_for(arn)]
    assert max(sizes) > 10 and all(s <= 50 for s in sizes)


def test_payload_cap_splits_batches_at_6mb(sqs_endpoint: str, start_engine: Any, unique_name: Any) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("cap"), MaximumMessageSize="262144")
    for i in range(30):  # a SendMessageBatch carries 256 KiB at most: one call each
        sqs.send_message(QueueUrl=url, MessageBody=f"{i:04d}" + "x" * 250_000)
    eng = start_engine(sqs_endpoint)
    _map(eng, arn, BatchSize=100, MaximumBatchingWindowInSeconds=2, ScalingConfig={"MaximumConcurrency": 2})
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 30, timeout=30)
    calls = esm_test_fns.calls_for(arn)
    sizes = [len(json.dumps(c["event"], separators=(",", ":"))) for c in calls]
    assert len(calls) >= 2 and max(sizes) <= 6_291_456
    assert max(len(c["event"]["Records"]) for c in calls) >= 20  # a near-full 6 MB batch, not tiny ones


def test_fifo_keeps_order_per_message_group(sqs_endpoint: str, start_engine: Any, unique_name: Any) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("order") + ".fifo", FifoQueue="true", ContentBasedDeduplication="true")
    for i in range(30):
        for g in ("g1", "g2", "g3"):
            sqs.send_message(QueueUrl=url, MessageBody=f"{g}:{i}", MessageGroupId=g)
    eng = start_engine(sqs_endpoint)
    _map(eng, arn, BatchSize=10)
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 90)
    records = esm_test_fns.records_for(arn)
    for g in ("g1", "g2", "g3"):
        seq = [int(r["body"].split(":")[1]) for r in records if r["attributes"]["MessageGroupId"] == g]
        assert seq == list(range(30)), g
    assert records[0]["attributes"]["MessageDeduplicationId"] and records[0]["attributes"]["SequenceNumber"]


def test_maximum_concurrency_bounds_concurrent_batches(
    sqs_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("conc"))
    _send(sqs, url, [f"m{i}" for i in range(60)])
    eng = start_engine(sqs_endpoint)
    _map(eng, arn, "fn-slow", BatchSize=2, ScalingConfig={"MaximumConcurrency": 3})
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 60, timeout=30)
    assert esm_test_fns.MAX_IN_FLIGHT[arn] == 3


def test_disable_pauses_update_applies_live_and_delete_stops(
    sqs_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("life"))
    eng = start_engine(sqs_endpoint)
    uuid = _map(eng, arn, BatchSize=10)
    resp = eng.lambda_client.update_event_source_mapping(UUID=uuid, Enabled=False)
    assert resp["State"] == "Disabling"
    eng.wait_state(uuid, "Disabled")
    _send(sqs, url, ["while disabled"])
    time.sleep(1.5)
    assert esm_test_fns.records_for(arn) == []
    resp = eng.lambda_client.update_event_source_mapping(UUID=uuid, Enabled=True)
    assert resp["State"] == "Enabling"
    eng.wait_state(uuid, "Enabled")
    wait_for(lambda: len(esm_test_fns.records_for(arn)) == 1)
    # a live update: another function and batch size, applied without restarting the engine
    resp = eng.lambda_client.update_event_source_mapping(UUID=uuid, FunctionName="fn-partial", BatchSize=5)
    assert resp["State"] == "Updating" and resp["BatchSize"] == 5
    eng.wait_state(uuid, "Enabled")
    _send(sqs, url, ["after update"])
    wait_for(lambda: any(c["function"] == "fn-partial" for c in esm_test_fns.calls_for(arn)))
    resp = eng.lambda_client.delete_event_source_mapping(UUID=uuid)
    assert resp["State"] == "Deleting"
    wait_for(
        lambda: not eng.lambda_client.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]
    )
    _send(sqs, url, ["after delete"])
    time.sleep(1.5)
    assert "after delete" not in [r["body"] for r in esm_test_fns.records_for(arn)]


def test_mappings_and_states_survive_a_restart(
    sqs_endpoint: str, start_engine: Any, unique_name: Any, tmp_path: Any
) -> None:
    sqs = _sqs(sqs_endpoint)
    # a long poll cut short by the stop may still take messages at the broker: they come back after the
    # visibility timeout, as on AWS, so keep it short here
    url, arn = _queue(sqs, unique_name("restart"), VisibilityTimeout="2")
    url2, arn2 = _queue(sqs, unique_name("restart-off"))
    data = tmp_path / "persist"
    first = start_engine(sqs_endpoint, data_dir=data)
    uuid = _map(first, arn, BatchSize=7, FilterCriteria={"Filters": [{"Pattern": '{"body": ["go"]}'}]})
    off = first.lambda_client.create_event_source_mapping(
        EventSourceArn=arn2, FunctionName="fn-ok", Enabled=False
    )
    assert off["State"] == "Disabled"
    first.stop()
    _send(sqs, url, ["go", "skip"])
    _send(sqs, url2, ["stays"])
    second = start_engine(sqs_endpoint, data_dir=data)
    got = second.wait_state(uuid, "Enabled")
    assert got["BatchSize"] == 7 and got["FilterCriteria"]["Filters"][0]["Pattern"] == '{"body": ["go"]}'
    assert second.lambda_client.get_event_source_mapping(UUID=off["UUID"])["State"] == "Disabled"
    wait_for(lambda: [r["body"] for r in esm_test_fns.records_for(arn)] == ["go"])
    wait_for(lambda: _queue_empty(sqs, url))
    assert esm_test_fns.records_for(arn2) == []


def test_visibility_timeout_shorter_than_function_timeout_is_refused(
    sqs_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    sqs = _sqs(sqs_endpoint)
    _url, arn = _queue(sqs, unique_name("vt"), VisibilityTimeout="2")
    eng = start_engine(sqs_endpoint, config=functions_config(timeout_s=5))
    with pytest.raises(eng.lambda_client.exceptions.InvalidParameterValueException) as e:
        eng.lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName="fn-ok")
    assert e.value.response["Error"]["Message"] == (
        "Queue visibility timeout: 2 seconds is less than Function timeout: 5 seconds"
    )


def test_reject_never_deletes_the_message(sqs_endpoint: str, unique_name: Any) -> None:
    """A message that can never succeed is left to the queue: back after its visibility timeout, so the
    redrive policy can move it to the dead-letter queue."""
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("reject"), VisibilityTimeout="1")
    [message_id] = _send(sqs, url, ["never"])
    mapping = EventSourceMapping(
        uuid="reject",
        kind=SourceKind.SQS,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        params={"EventSourceArn": arn},
        enabled=True,
        state=State.ENABLED,
        state_transition_reason="USER_INITIATED",
        last_modified=0.0,
    )

    async def receive_and_reject() -> None:
        clients = AwsClients("sqs", sqs_endpoint)
        try:
            queue = SqsQueue(clients, mapping)
            [msg] = await queue.receive(10, 5.0)
            await queue.reject([msg], "MaximumPayloadSizeExceeded")
        finally:
            await clients.aclose()

    anyio.run(receive_and_reject)
    [again] = wait_for(
        lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, AttributeNames=["All"]).get("Messages")
    )
    assert again["MessageId"] == message_id and again["Attributes"]["ApproximateReceiveCount"] == "2"
