"""esm serve --time-scale N on kinesis-mock: a record's age is read on the scaled clock."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3

from tests.integration.conftest import wait_for
from tests.integration.test_kinesis import _put, _stream
from tests.integration.test_sqs import _queue, _sqs

REGION = "us-east-1"


def test_an_hour_of_record_age_expires_in_half_a_minute_at_120(
    kinesis_endpoint: str, sqs_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_endpoint, region_name=REGION)
    name = unique_name("timescale")
    arn = _stream(kinesis, name)
    try:
        sqs = _sqs(sqs_endpoint)
        dlq_url, dlq_arn = _queue(sqs, unique_name("timescale-onfailure"))
        [seq] = _put(kinesis, name, [("k", "POISON")])
        eng = start_engine(None, endpoints={"kinesis": kinesis_endpoint, "sqs": sqs_endpoint}, time_scale=120)
        started = time.monotonic()
        eng.lambda_client.create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName="fn-stream_poison",
            StartingPosition="TRIM_HORIZON",
            MaximumRecordAgeInSeconds=3600,
            MaximumRetryAttempts=-1,
            DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
        )
        got: list[dict[str, Any]] = []

        def delivered() -> bool:
            for m in sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages", []):
                got.append(json.loads(m["Body"]))
            return bool(got)

        wait_for(delivered, timeout=60)
        took = time.monotonic() - started
        [failure] = got
        assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
        assert failure["KinesisBatchInfo"]["startSequenceNumber"] == seq
        # 3,600 s of age at 120 times real time: 30 s, give or take a back-off (an hour would be 3,600 s)
        assert 25 <= took <= 60, took
        assert failure["requestContext"]["approximateInvokeCount"] > 1  # retried meanwhile, on back-off
    finally:
        kinesis.delete_stream(StreamName=name)
