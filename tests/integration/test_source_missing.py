"""A mapping whose source is deleted says so where a user looks, once, and recovers when it is back
(issue 11, item 2): StateTransitionReason (SQS mappings show no LastProcessingResult), `esm mappings`,
one log event instead of one per retry."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from structlog.testing import capture_logs

from engine.cli import main as esm
from engine.supervisor import SOURCE_MISSING_REASON
from pollers.sqs import NON_EXISTENT_QUEUE
from tests.integration.conftest import esm_test_fns, wait_for
from tests.services import endpoint_for, require_service


def test_a_deleted_queue_is_reported_once_and_the_mapping_recovers_when_it_is_back(
    start_engine: Any, unique_name: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = require_service("elasticmq", endpoint_for("elasticmq"))
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    name = unique_name("gone")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    eng = start_engine(endpoint)
    uuid = eng.lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName="fn-ok")["UUID"]
    eng.wait_state(uuid, "Enabled")

    with capture_logs() as logs:
        sqs.delete_queue(QueueUrl=url)
        missing = wait_for(
            lambda: (
                (m := eng.lambda_client.get_event_source_mapping(UUID=uuid))["StateTransitionReason"]
                == SOURCE_MISSING_REASON
                and m
            ),
            timeout=30,
        )
        time.sleep(3)  # the runner keeps retrying meanwhile (back-off from 0.5 s)
    assert missing["State"] == "Enabled"
    assert "LastProcessingResult" not in missing  # as on AWS for SQS
    mine = [e for e in logs if e.get("mapping") == uuid]
    assert [e["event"] for e in mine].count("mapping_source_missing") == 1
    assert [e["event"] for e in mine].count("mapping_restart_scheduled") >= 3  # it did retry

    esm(["mappings", "--data-dir", str(eng.engine.settings.data_dir)])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(uuid))
    assert NON_EXISTENT_QUEUE in row

    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="back")
    wait_for(lambda: esm_test_fns.records_for(arn), timeout=30)
    back = eng.lambda_client.get_event_source_mapping(UUID=uuid)
    assert back["StateTransitionReason"] == "USER_INITIATED"
