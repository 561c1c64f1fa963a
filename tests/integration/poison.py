"""A poison batch on kinesis-mock, mapped and run to its end: what the metrics, capture, trace and
dashboard tests look at."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3

from tests.integration.conftest import RunningEngine, wait_for
from tests.integration.test_kinesis import _put, _stream
from tests.integration.test_sqs import _queue, _sqs

REGION = "us-east-1"
#: a batch of 16 with one poison record (index 7): bisect halves it down to the record alone
BATCH = [f"r{i}" for i in range(7)] + ["POISON"] + [f"s{i}" for i in range(8)]


@dataclass
class PoisonRun:
    eng: RunningEngine
    uuid: str
    arn: str
    data: Sequence[str]
    seqs: list[str]
    sqs: Any
    dlq_url: str
    dlq_arn: str
    #: seconds from the mapping's creation to the failure record's delivery
    took_s: float


@contextmanager
def poisoned_stream(
    kinesis_endpoint: str,
    sqs_endpoint: str,
    start_engine: Any,
    unique_name: Any,
    *,
    data: Sequence[str] = BATCH,
    engine: dict[str, Any] | None = None,
    timeout_s: float = 30.0,
    **params: Any,
) -> Iterator[PoisonRun]:
    """A one-shard stream holding ``data``, mapped to fn-stream_poison (TRIM_HORIZON, BatchSize 16,
    bisect, no retry, an SQS on-failure destination; ``params`` override), yielded once the poison
    record's failure record was delivered; the stream is deleted after."""
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_endpoint, region_name=REGION)
    name = unique_name("poison")
    arn = _stream(kinesis, name)
    try:
        sqs = _sqs(sqs_endpoint)
        dlq_url, dlq_arn = _queue(sqs, unique_name("poison-onfailure"))
        seqs = _put(kinesis, name, [("k", d) for d in data])
        eng = start_engine(
            None, endpoints={"kinesis": kinesis_endpoint, "sqs": sqs_endpoint}, **(engine or {})
        )
        started = time.monotonic()
        uuid = eng.lambda_client.create_event_source_mapping(
            **{
                "EventSourceArn": arn,
                "FunctionName": "fn-stream_poison",
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 16,
                "BisectBatchOnFunctionError": True,
                "MaximumRetryAttempts": 0,
                "DestinationConfig": {"OnFailure": {"Destination": dlq_arn}},
                **params,
            }
        )["UUID"]
        store = eng.engine.store
        wait_for(
            lambda: any(e.outcome == "destination_sent" for e in store.journal(uuid, 1000)), timeout=timeout_s
        )
        took_s = time.monotonic() - started
        yield PoisonRun(eng, uuid, arn, data, seqs, sqs, dlq_url, dlq_arn, took_s)
    finally:
        kinesis.delete_stream(StreamName=name)
