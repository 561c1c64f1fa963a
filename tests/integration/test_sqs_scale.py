"""Many SQS mappings in one engine, with AWS's 20 s long polls (issue 11, item 1).

Before the fix every SQS call of every mapping shared one pool of 64 connections: from about a dozen
mappings on, the long polls held every connection, deletes reached the queue after the visibility timeout
(duplicates) and the control plane's create-time checks waited behind them; the supervisor brought
mappings up one at a time.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from engine.runner.queue import QueueRunnerSettings
from tests.integration.conftest import RunningEngine, esm_test_fns, wait_for

MAPPINGS = 100
VISIBILITY_TIMEOUT_S = 5
#: a control-plane call that takes longer is a failure (AWS answers in a fraction of a second)
API_READ_TIMEOUT_S = 5


def _api(eng: RunningEngine) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=eng.url,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, read_timeout=API_READ_TIMEOUT_S, max_pool_connections=16),
    )


def test_a_hundred_mappings_deliver_each_message_exactly_once_without_waiting_on_long_polls(
    sqs_backend: tuple[str, str], start_engine: Any, unique_name: Any
) -> None:
    endpoint, _account = sqs_backend
    sqs = boto3.client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1", config=Config(max_pool_connections=16)
    )
    prefix = unique_name("scale")

    def make_queue(i: int) -> tuple[str, str]:
        url = sqs.create_queue(
            QueueName=f"{prefix}-{i}", Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT_S)}
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    with ThreadPoolExecutor(16) as pool:
        queues = list(pool.map(make_queue, range(MAPPINGS + 1)))

    # AWS's 20 s long polls: what held the shared pool
    eng = start_engine(endpoint, queue=QueueRunnerSettings())
    api = _api(eng)

    def create(arn: str) -> str:
        resp = api.create_event_source_mapping(EventSourceArn=arn, FunctionName="fn-ok", BatchSize=10)
        return str(resp["UUID"])

    # created in a burst while the earlier mappings' long polls are already held
    with ThreadPoolExecutor(8) as pool:
        uuids = list(pool.map(create, [arn for _, arn in queues]))
    burst_end = time.monotonic()
    for uuid in uuids:  # every mapping starts on its own: all Enabled within 10 s of the burst
        eng.wait_state(uuid, "Enabled", timeout=max(0.1, burst_end + 10 - time.monotonic()))

    # Get, List and Update answer while every mapping holds a long poll (a timeout raises). The updated
    # mapping gets no message: the long poll its old runner abandoned stays open at the server, which
    # can hand it a message that then returns only after the visibility timeout (README, SQS)
    updated = uuids.pop()
    updated_queue = queues.pop()
    assert api.get_event_source_mapping(UUID=updated)["State"] == "Enabled"
    page = api.list_event_source_mappings(MaxItems=100)
    rest = api.list_event_source_mappings(Marker=page["NextMarker"])["EventSourceMappings"]
    assert len(page["EventSourceMappings"]) + len(rest) == MAPPINGS + 1
    assert api.update_event_source_mapping(UUID=updated, BatchSize=5)["State"] == "Updating"
    eng.wait_state(updated, "Enabled")
    uuids.append(updated)
    time.sleep(1.0)  # every poller is inside its long poll now

    sent_at: dict[str, float] = {}

    def send(i: int) -> None:
        url, arn = queues[i]
        sent_at[arn] = time.time()
        sqs.send_message(QueueUrl=url, MessageBody=f"one message for mapping {i}")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, range(MAPPINGS)))

    wait_for(lambda: all(esm_test_fns.calls_for(arn) for _, arn in queues), timeout=30)
    # longer than the visibility timeout: an undeleted message would come back now
    time.sleep(VISIBILITY_TIMEOUT_S + 2)

    latencies = []
    for _, arn in queues:
        calls = esm_test_fns.calls_for(arn)
        assert len(calls) == 1, f"{arn}: invoked {len(calls)} times"
        assert len(calls[0]["event"]["Records"]) == 1
        latencies.append(calls[0]["at"] - sent_at[arn])
    worst = max(latencies)
    assert worst < 1.0, f"worst put-to-invoke {worst:.2f} s (mapping {latencies.index(worst)})"

    def empty(url: str) -> bool:
        a = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return a["ApproximateNumberOfMessages"] == "0" and a["ApproximateNumberOfMessagesNotVisible"] == "0"

    assert all(empty(url) for url, _ in [*queues, updated_queue])  # every delete reached the queue

    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda u: api.delete_event_source_mapping(UUID=u)["State"], uuids))
    assert set(states) == {"Deleting"}
    wait_for(lambda: not api.list_event_source_mappings()["EventSourceMappings"], timeout=30)
