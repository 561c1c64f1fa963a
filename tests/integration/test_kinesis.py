"""Kinesis end to end against kinesis-mock: order, shape, checkpoints across restarts, poison records with
and without bisect, partial batch responses, retry exhaustion and record age to SQS, SNS and S3,
ParallelizationFactor with per-key order. Record age runs on a scaled clock, not real minutes."""

from __future__ import annotations

import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.integration.conftest import RunningEngine, esm_test_fns, wait_for

REGION = "us-east-1"


class ScaledClock:
    """Wall time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


#: the streams a test made, deleted after it: kinesis-mock allows 200 shards per account
_made: list[str] = []


@pytest.fixture
def kinesis(kinesis_endpoint: str) -> Iterator[Any]:
    client = boto3.client("kinesis", endpoint_url=kinesis_endpoint, region_name=REGION)
    yield client
    while _made:
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):  # the test deleted it
            client.delete_stream(StreamName=_made.pop(), EnforceConsumerDeletion=True)


def _stream(kinesis: Any, name: str, shards: int = 1) -> str:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    _made.append(name)
    wait_for(
        lambda: (
            kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            == "ACTIVE"
        )
    )
    return str(kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"])


def _put(kinesis: Any, name: str, items: list[tuple[str, str]]) -> list[str]:
    seqs = []
    for i in range(0, len(items), 100):
        resp = kinesis.put_records(
            StreamName=name, Records=[{"Data": d.encode(), "PartitionKey": k} for k, d in items[i : i + 100]]
        )
        assert resp["FailedRecordCount"] == 0
        seqs += [r["SequenceNumber"] for r in resp["Records"]]
    return seqs


def _data(record: dict[str, Any]) -> str:
    import base64

    return base64.b64decode(record["kinesis"]["data"]).decode()


def _engine(
    start_engine: Any, kinesis_endpoint: str, sqs_endpoint: str, moto_endpoint: str, **kw: Any
) -> Any:
    return start_engine(
        None,
        endpoints={
            "kinesis": kinesis_endpoint,
            "sqs": sqs_endpoint,
            "sns": moto_endpoint,
            "s3": moto_endpoint,
        },
        **kw,
    )


def _map(eng: RunningEngine, arn: str, function: str, **params: Any) -> str:
    params.setdefault("StartingPosition", "TRIM_HORIZON")
    resp = eng.lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, **params)
    assert (
        resp["StateTransitionReason"] == "User action"
        and resp["LastProcessingResult"] == "No records processed"
    )
    eng.wait_state(resp["UUID"], "Enabled")
    return str(resp["UUID"])


def _dlq(sqs_endpoint: str, name: str) -> tuple[Any, str, str]:
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name=REGION)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn


def _failure_records(sqs: Any, url: str, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    def more() -> bool:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            got.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return len(got) >= count

    wait_for(more, timeout=60)
    return got


def test_order_shape_and_resume_after_restart(
    kinesis: Any,
    kinesis_endpoint: str,
    sqs_endpoint: str,
    moto_endpoint: str,
    start_engine: Any,
    unique_name: Any,
    tmp_path: Any,
) -> None:
    name = unique_name("order")
    arn = _stream(kinesis, name, shards=2)
    seqs = _put(kinesis, name, [(f"k{i % 7}", f"{i}") for i in range(60)])
    data = tmp_path / "persist"
    eng = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint, data_dir=data)
    uuid = _map(eng, arn, "fn-stream_ok", BatchSize=25)
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 60)
    records = esm_test_fns.records_for(arn)
    assert sorted(r["kinesis"]["sequenceNumber"] for r in records) == sorted(seqs)
    by_shard: dict[str, list[int]] = defaultdict(list)
    for r in records:
        by_shard[r["eventID"].split(":")[0]].append(int(r["kinesis"]["sequenceNumber"]))
    assert len(by_shard) == 2 and all(s == sorted(s) for s in by_shard.values())
    for call in esm_test_fns.calls_for(arn):  # one shard per batch
        assert len({r["eventID"].split(":")[0] for r in call["event"]["Records"]}) == 1
    first = records[0]
    assert list(first) == [
        "kinesis",
        "eventSource",
        "eventVersion",
        "eventID",
        "eventName",
        "invokeIdentityArn",
        "awsRegion",
        "eventSourceARN",
    ]
    assert list(first["kinesis"]) == [
        "kinesisSchemaVersion",
        "partitionKey",
        "sequenceNumber",
        "data",
        "approximateArrivalTimestamp",
    ]
    assert first["eventSource"] == "aws:kinesis" and first["eventSourceARN"] == arn
    assert first["eventID"] == f"{first['eventID'].split(':')[0]}:{first['kinesis']['sequenceNumber']}"
    wait_for(lambda: eng.lambda_client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK")
    time.sleep(0.5)  # the last checkpoint is written after the batch settles
    eng.stop()

    more = _put(kinesis, name, [(f"k{i}", f"late-{i}") for i in range(10)])
    again = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint, data_dir=data)
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 70)
    time.sleep(1.0)
    delivered = [r["kinesis"]["sequenceNumber"] for r in esm_test_fns.records_for(arn)]
    assert sorted(delivered) == sorted(seqs + more)  # nothing delivered twice after a clean restart
    again.stop()


@pytest.mark.parametrize("bisect", [True, False])
def test_poison_record_with_and_without_bisect_to_sqs(
    bisect: bool,
    kinesis: Any,
    kinesis_endpoint: str,
    sqs_endpoint: str,
    moto_endpoint: str,
    start_engine: Any,
    unique_name: Any,
) -> None:
    name = unique_name("poison")
    arn = _stream(kinesis, name)
    sqs, url, dlq_arn = _dlq(sqs_endpoint, unique_name("stream-dlq"))
    items = [("k", str(i)) for i in range(8)]
    items[5] = ("k", "POISON")
    seqs = _put(kinesis, name, items)
    eng = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint)
    uuid = _map(
        eng,
        arn,
        "fn-stream_poison",
        BatchSize=8,
        BisectBatchOnFunctionError=bisect,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
    )
    [failure] = _failure_records(sqs, url, 1)
    info = failure["KinesisBatchInfo"]
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert failure["requestContext"]["functionArn"].endswith(":function:fn-stream_poison")
    assert list(failure) == ["requestContext", "responseContext", "version", "timestamp", "KinesisBatchInfo"]
    assert info["streamArn"] == arn and info["shardId"].startswith("shardId-")
    if bisect:
        assert (info["batchSize"], info["startSequenceNumber"], info["endSequenceNumber"]) == (
            1,
            seqs[5],
            seqs[5],
        )

        def delivered_ok() -> list[str]:
            ok = [
                _data(r)
                for c in esm_test_fns.calls_for(arn)
                if "POISON" not in [_data(r) for r in c["event"]["Records"]]
                for r in c["event"]["Records"]
            ]
            return sorted(ok, key=int)

        # the records after the poison are invoked once its failure record is sent: wait for them
        wait_for(lambda: delivered_ok() == [str(i) for i in range(8) if i != 5], timeout=10)
        assert delivered_ok() == [str(i) for i in range(8) if i != 5]  # each exactly once
        assert max(e.bisect_depth for e in eng.engine.store.journal(uuid, 200)) >= 3
    else:
        assert (info["batchSize"], info["startSequenceNumber"], info["endSequenceNumber"]) == (
            8,
            seqs[0],
            seqs[7],
        )
        assert failure["requestContext"]["approximateInvokeCount"] == 2
    # the shard moved on: a later record is delivered
    _put(kinesis, name, [("k", "after")])
    wait_for(lambda: "after" in [_data(r) for r in esm_test_fns.records_for(arn)])


@pytest.mark.parametrize("bisect", [True, False])
def test_partial_batch_failure_retries_from_the_failed_record(
    bisect: bool,
    kinesis: Any,
    kinesis_endpoint: str,
    sqs_endpoint: str,
    moto_endpoint: str,
    start_engine: Any,
    unique_name: Any,
) -> None:
    name = unique_name("partial")
    arn = _stream(kinesis, name)
    sqs, url, dlq_arn = _dlq(sqs_endpoint, unique_name("partial-dlq"))
    items = [("k", str(i)) for i in range(6)]
    items[3] = ("k", "POISON")
    seqs = _put(kinesis, name, items)
    eng = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint)
    _map(
        eng,
        arn,
        "fn-stream_partial",
        BatchSize=6,
        BisectBatchOnFunctionError=bisect,
        MaximumRetryAttempts=2,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
    )
    [failure] = _failure_records(sqs, url, 1)
    assert failure["responseContext"]["functionError"] is None
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    info = failure["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        seqs[3],
        seqs[5],
        3,
    )
    sizes = [len(c["event"]["Records"]) for c in esm_test_fns.calls_for(arn)]
    assert sizes == [6, 3, 3]  # retried from the lowest failed sequence number, never bisected


@pytest.mark.parametrize("destination", ["sns", "s3"])
def test_retry_exhaustion_to_sns_and_s3(
    destination: str,
    kinesis: Any,
    kinesis_endpoint: str,
    sqs_endpoint: str,
    moto_endpoint: str,
    start_engine: Any,
    unique_name: Any,
) -> None:
    name = unique_name("dest")
    arn = _stream(kinesis, name)
    _put(kinesis, name, [("k", "POISON")])
    if destination == "sns":
        sns = boto3.client("sns", endpoint_url=moto_endpoint, region_name=REGION)
        msqs, murl, marn = _dlq(moto_endpoint, unique_name("sns-sub"))
        topic = sns.create_topic(Name=unique_name("topic"))["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=marn)
        target = topic
    else:
        s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
        bucket = unique_name("bucket").lower()
        s3.create_bucket(Bucket=bucket)
        target = f"arn:aws:s3:::{bucket}"
    eng = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint)
    uuid = _map(
        eng,
        arn,
        "fn-stream_poison",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": target}},
    )
    if destination == "sns":
        [envelope] = _failure_records(msqs, murl, 1)
        record = json.loads(envelope["Message"])
        assert "payload" not in record
    else:

        def objects() -> list[dict[str, Any]]:
            return s3.list_objects_v2(Bucket=bucket).get("Contents", [])

        [obj] = wait_for(objects)
        parts = obj["Key"].split("/")
        assert parts[:3] == ["aws", "lambda", uuid] and parts[3].startswith("shardId-") and len(parts) == 8
        record = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        payload = json.loads(record["payload"])  # the invocation event, as an escaped JSON string
        assert _data(payload["Records"][0]) == "POISON"
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["KinesisBatchInfo"]["batchSize"] == 1


def test_record_age_expiry_on_a_scaled_clock(
    kinesis: Any,
    kinesis_endpoint: str,
    sqs_endpoint: str,
    moto_endpoint: str,
    start_engine: Any,
    unique_name: Any,
) -> None:
    name = unique_name("age")
    arn = _stream(kinesis, name)
    sqs, url, dlq_arn = _dlq(sqs_endpoint, unique_name("age-dlq"))
    clock = ScaledClock()
    seqs = _put(kinesis, name, [("k", "POISON"), ("k", "1")])
    eng = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint, clock=clock)
    _map(
        eng,
        arn,
        "fn-stream_poison",
        MaximumRecordAgeInSeconds=60,
        MaximumRetryAttempts=-1,
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
    )
    wait_for(lambda: len(esm_test_fns.calls_for(arn)) >= 2)  # failing, retried forever
    clock.offset = 3600.0  # an hour later: both records are older than 60 s
    [failure] = _failure_records(sqs, url, 1)
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert "responseContext" not in failure
    assert failure["KinesisBatchInfo"]["batchSize"] == 2
    assert failure["KinesisBatchInfo"]["startSequenceNumber"] == seqs[0]


def test_discards_and_every_destination_delivery_are_journaled(
    kinesis: Any,
    kinesis_endpoint: str,
    sqs_endpoint: str,
    moto_endpoint: str,
    start_engine: Any,
    unique_name: Any,
) -> None:
    name = unique_name("journal")
    arn = _stream(kinesis, name)
    # the destination queue does not exist yet: the first deliveries fail, the shard waits
    sqs, _, probe_arn = _dlq(sqs_endpoint, unique_name("probe"))
    dlq_name = unique_name("late-dlq")
    dlq_arn = probe_arn.rsplit(":", 1)[0] + ":" + dlq_name
    [seq] = _put(kinesis, name, [("k", "POISON")])
    eng = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint)
    uuid = _map(
        eng,
        arn,
        "fn-stream_poison",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
    )

    def outcomes() -> list[str]:
        return [e.outcome for e in eng.engine.store.journal(uuid, 100)]

    wait_for(lambda: "destination_failed" in outcomes())
    url = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    [failure] = _failure_records(sqs, url, 1)
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    wait_for(lambda: "destination_sent" in outcomes())
    entries = list(eng.engine.store.journal(uuid, 100))
    assert [e.outcome for e in entries][:3] == ["function_error", "discarded", "destination_failed"]
    assert set(outcomes()[2:-1]) == {"destination_failed"} and outcomes()[-1] == "destination_sent"
    invoked, discarded, *deliveries = entries
    assert (discarded.first_item, discarded.last_item, discarded.batch_size) == (seq, seq, 1)
    assert discarded.attempt == 1  # approximateInvokeCount
    assert discarded.detail == {"reason": "RetryAttemptsExhausted", "destination": dlq_arn}
    for d in deliveries:
        assert (d.first_item, d.scope) == (seq, invoked.scope)
        assert d.detail["destination"] == dlq_arn and d.detail["reason"] == "RetryAttemptsExhausted"
    assert dlq_arn in deliveries[0].detail["error"]  # what failed and where
    assert "error" not in deliveries[-1].detail


def test_a_discard_without_destination_is_journaled(
    kinesis: Any,
    kinesis_endpoint: str,
    sqs_endpoint: str,
    moto_endpoint: str,
    start_engine: Any,
    unique_name: Any,
) -> None:
    name = unique_name("nodest")
    arn = _stream(kinesis, name)
    [seq, _] = _put(kinesis, name, [("k", "POISON"), ("k", "after")])
    eng = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint)
    uuid = _map(eng, arn, "fn-stream_poison", BatchSize=1, MaximumRetryAttempts=0)
    wait_for(lambda: "after" in [_data(r) for r in esm_test_fns.records_for(arn)])
    discarded = [e for e in eng.engine.store.journal(uuid, 100) if e.outcome == "discarded"]
    assert [(e.first_item, e.detail) for e in discarded] == [
        (seq, {"reason": "RetryAttemptsExhausted", "destination": None})
    ]


def test_parallelization_factor_keeps_per_key_order_on_thousands_of_records(
    kinesis: Any,
    kinesis_endpoint: str,
    sqs_endpoint: str,
    moto_endpoint: str,
    start_engine: Any,
    unique_name: Any,
) -> None:
    name = unique_name("pf")
    arn = _stream(kinesis, name, shards=2)
    items = [(f"key-{i % 40}", str(i)) for i in range(3000)]
    _put(kinesis, name, items)
    eng = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint)
    uuid = _map(eng, arn, "fn-stream_ok", BatchSize=50, ParallelizationFactor=5)
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 3000, timeout=90)
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in esm_test_fns.records_for(arn):
        per_key[r["kinesis"]["partitionKey"]].append(int(_data(r)))
    assert len(per_key) == 40
    for key, values in per_key.items():
        assert values == sorted(values), key
    assert sum(len(v) for v in per_key.values()) == 3000
    scopes = {e.scope for e in eng.engine.store.journal(uuid, 1000)}
    assert len({s.split("/")[-1] for s in scopes if "/lane-" in s}) == 5  # five lanes really ran


def test_tumbling_window_aggregates_over_several_windows(
    kinesis: Any,
    kinesis_endpoint: str,
    sqs_endpoint: str,
    moto_endpoint: str,
    start_engine: Any,
    unique_name: Any,
) -> None:
    name = unique_name("window")
    arn = _stream(kinesis, name)
    clock = ScaledClock()
    eng = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint, clock=clock)
    _map(eng, arn, "fn-window_sum", TumblingWindowInSeconds=1, BatchSize=3)
    total = 0
    for burst in range(4):  # four bursts, 1.1 s apart: at least three windows
        _put(kinesis, name, [("k", str(burst * 10 + i)) for i in range(5)])
        total += sum(burst * 10 + i for i in range(5))
        time.sleep(1.1)
    wait_for(lambda: sum(len(e["Records"]) for e in esm_test_fns.window_calls(arn)) >= 20)
    clock.offset = 600.0  # the last window closes after its idle time (2 minutes), on a scaled clock
    wait_for(
        lambda: (
            sum(
                e["state"].get("sum", 0)
                for e in esm_test_fns.window_calls(arn)
                if e["isFinalInvokeForWindow"]
            )
            == total
        )
    )
    events = esm_test_fns.window_calls(arn)
    finals = [e for e in events if e["isFinalInvokeForWindow"]]
    assert len(finals) >= 3 and all(e["Records"] == [] for e in finals)
    assert len({e["window"]["start"] for e in finals}) == len(finals)  # one final per window
    first = events[0]
    assert list(first) == [
        "Records",
        "window",
        "state",
        "shardId",
        "eventSourceARN",
        "isFinalInvokeForWindow",
        "isWindowTerminatedEarly",
    ]
    assert first["state"] == {} and first["eventSourceARN"] == arn and not first["isWindowTerminatedEarly"]
    for e in events:  # a batch never mixes windows; state carries within a window
        start = e["window"]["start"]
        assert e["window"]["end"] > start
        if not e["isFinalInvokeForWindow"]:
            assert len(e["Records"]) <= 3
    assert sum(e["state"]["count"] for e in finals) == 20


def test_reshard_processes_parents_before_children(
    kinesis: Any,
    kinesis_endpoint: str,
    sqs_endpoint: str,
    moto_endpoint: str,
    start_engine: Any,
    unique_name: Any,
) -> None:
    name = unique_name("reshard")
    arn = _stream(kinesis, name, shards=1)
    before = _put(kinesis, name, [(f"k{i}", f"before-{i}") for i in range(20)])
    eng = _engine(start_engine, kinesis_endpoint, sqs_endpoint, moto_endpoint)
    _map(eng, arn, "fn-stream_ok", BatchSize=10)
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 20)
    kinesis.update_shard_count(StreamName=name, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    wait_for(
        lambda: (
            kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            == "ACTIVE"
        )
    )
    after = _put(kinesis, name, [(f"k{i}", f"after-{i}") for i in range(40)])
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 60, timeout=60)  # children picked up while running
    records = esm_test_fns.records_for(arn)
    assert sorted(r["kinesis"]["sequenceNumber"] for r in records) == sorted(before + after)
    shards = {r["eventID"].split(":")[0] for r in records}
    assert len(shards) >= 2  # the parent and at least one child
    parent = records[0]["eventID"].split(":")[0]
    last_parent = max(i for i, r in enumerate(records) if r["eventID"].startswith(parent + ":"))
    first_child = min(i for i, r in enumerate(records) if not r["eventID"].startswith(parent + ":"))
    assert last_parent < first_child


def test_enhanced_fan_out_consumer_arn_end_to_end(start_engine: Any, unique_name: Any) -> None:
    """A mapping on a stream consumer ARN reads through SubscribeToShard (LocalStack on the host)."""
    from tests.services import endpoint_for, require_service

    endpoint = require_service("localstack", endpoint_for("localstack"))
    client = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION)
    name = unique_name("efo")
    arn = _stream(client, name)
    consumer = client.register_stream_consumer(StreamARN=arn, ConsumerName="esm")["Consumer"]["ConsumerARN"]
    wait_for(
        lambda: (
            client.describe_stream_consumer(ConsumerARN=consumer)["ConsumerDescription"]["ConsumerStatus"]
            == "ACTIVE"
        )
    )
    seqs = _put(client, name, [("k", str(i)) for i in range(15)])
    eng = start_engine(None, endpoints={"kinesis": endpoint})
    _map(eng, consumer, "fn-stream_ok", BatchSize=10)
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 15)
    records = esm_test_fns.records_for(arn)
    assert [r["kinesis"]["sequenceNumber"] for r in records] == seqs  # eventSourceARN is the stream's
