"""DynamoDB Streams end to end against moto's server (DynamoDB + DynamoDB Streams, account 123456789012):
INSERT / MODIFY / REMOVE in order with the exact record shape (spec 1.2), TRIM_HORIZON and LATEST,
FilterCriteria on eventName with the checkpoint moving past filtered records across a restart, retry
exhaustion of a poison item to an SQS destination (DDBStreamBatchInfo, spec 4.8), and the create-time
errors of a DynamoDB source (AT_TIMESTAMP, missing stream). moto has one shard per stream."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from tests.integration.conftest import RunningEngine, esm_test_fns, wait_for

pytestmark = pytest.mark.service("moto")

REGION = "us-east-1"
ACCOUNT = "123456789012"

RECORD_KEYS = [
    "eventID",
    "eventName",
    "eventVersion",
    "eventSource",
    "awsRegion",
    "dynamodb",
    "eventSourceARN",
]
ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def ddb(moto_endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def streams(moto_endpoint: str) -> Any:
    return boto3.client("dynamodbstreams", endpoint_url=moto_endpoint, region_name=REGION)


def _table(ddb: Any, name: str, view: str = "NEW_AND_OLD_IMAGES") -> str:
    """A table keyed by the string ``pk`` with a stream; returns the stream ARN."""
    resp = ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )
    arn = str(resp["TableDescription"]["LatestStreamArn"])
    assert arn.startswith(f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}/stream/")
    return arn


def _put(ddb: Any, table: str, pk: str, **attrs: Any) -> None:
    ddb.put_item(TableName=table, Item={"pk": {"S": pk}, **attrs})


def _raw_records(streams: Any, arn: str) -> list[dict[str, Any]]:
    """Every record of the stream as the Streams API returns it (what the engine must translate)."""
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    return list(streams.get_records(ShardIterator=it["ShardIterator"], Limit=1000)["Records"])


def _engine(
    start_engine: Any, moto_endpoint: str, sqs_endpoint: str | None = None, **kw: Any
) -> RunningEngine:
    endpoints = {"dynamodbstreams": moto_endpoint, "dynamodb": moto_endpoint}
    if sqs_endpoint:
        endpoints["sqs"] = sqs_endpoint
    eng: RunningEngine = start_engine(None, endpoints=endpoints, **kw)
    return eng


def _map(eng: RunningEngine, arn: str, function: str, **params: Any) -> str:
    params.setdefault("StartingPosition", "TRIM_HORIZON")
    resp = eng.lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, **params)
    assert resp["EventSourceArn"] == arn and resp["StartingPosition"] == params["StartingPosition"]
    eng.wait_state(resp["UUID"], "Enabled")
    return str(resp["UUID"])


def wait_until(predicate: Any, timeout: float) -> Any:
    """Like wait_for, without failing: the predicate's last value after at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def _pk(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["Keys"]["pk"]["S"])


def _names(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["eventName"], _pk(r)) for r in records]


def test_insert_modify_remove_in_order_with_exact_shape(
    ddb: Any, streams: Any, moto_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    table = unique_name("ddb-shape")
    arn = _table(ddb, table)
    before = time.time()
    blob = b"\x00\x01binary\xff"
    _put(
        ddb,
        table,
        "item-1",
        n={"N": "42"},
        b={"B": blob},
        flag={"BOOL": True},
        tags={"SS": ["x"]},
        nested={"M": {"list": {"L": [{"S": "a"}, {"N": "1.5"}, {"NULL": True}]}}},
    )
    ddb.update_item(
        TableName=table,
        Key={"pk": {"S": "item-1"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "43"}},
    )
    _put(ddb, table, "item-2", n={"N": "7"})
    ddb.delete_item(TableName=table, Key={"pk": {"S": "item-1"}})
    after = time.time()
    raw = _raw_records(streams, arn)
    assert [r["eventName"] for r in raw] == ["INSERT", "MODIFY", "INSERT", "REMOVE"]

    eng = _engine(start_engine, moto_endpoint)
    uuid = _map(eng, arn, "fn-stream_ok", BatchSize=10)
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 4)
    time.sleep(0.5)  # nothing more comes
    records = esm_test_fns.records_for(arn)
    assert _names(records) == [
        ("INSERT", "item-1"),
        ("MODIFY", "item-1"),
        ("INSERT", "item-2"),
        ("REMOVE", "item-1"),
    ]
    assert len(esm_test_fns.calls_for(arn)) == 1  # all four were there: one batch
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4

    expected_members = {
        "INSERT": ["ApproximateCreationDateTime", "Keys", "NewImage", "SequenceNumber", "SizeBytes"],
        "MODIFY": [
            "ApproximateCreationDateTime",
            "Keys",
            "NewImage",
            "OldImage",
            "SequenceNumber",
            "SizeBytes",
        ],
        "REMOVE": ["ApproximateCreationDateTime", "Keys", "OldImage", "SequenceNumber", "SizeBytes"],
    }
    for record, source in zip(records, raw, strict=True):
        assert list(record) == RECORD_KEYS
        body = record["dynamodb"]
        assert list(body) == [*expected_members[record["eventName"]], "StreamViewType"]
        assert record["eventID"] == source["eventID"] and isinstance(record["eventID"], str)
        assert record["eventVersion"] == source["eventVersion"]
        assert record["eventSource"] == "aws:dynamodb"
        assert record["awsRegion"] == REGION
        assert record["eventSourceARN"] == arn
        assert body["SequenceNumber"] == source["dynamodb"]["SequenceNumber"]
        assert isinstance(body["SequenceNumber"], str)
        assert body["SizeBytes"] == source["dynamodb"]["SizeBytes"] and isinstance(body["SizeBytes"], int)
        assert body["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        created = body["ApproximateCreationDateTime"]
        assert isinstance(created, float)  # epoch seconds as a JSON number
        assert created == round(source["dynamodb"]["ApproximateCreationDateTime"].timestamp(), 3)
        assert before - 1 <= created <= after + 1
        assert body["Keys"] == {"pk": {"S": _pk(record)}}

    item_1 = {
        "pk": {"S": "item-1"},
        "n": {"N": "42"},
        "b": {"B": base64.b64encode(blob).decode()},  # binary as base64 text, like the wire
        "flag": {"BOOL": True},
        "tags": {"SS": ["x"]},
        "nested": {"M": {"list": {"L": [{"S": "a"}, {"N": "1.5"}, {"NULL": True}]}}},
    }
    item_1_modified = {**item_1, "n": {"N": "43"}}
    insert, modify, insert_2, remove = (r["dynamodb"] for r in records)
    assert insert["NewImage"] == item_1
    assert (modify["OldImage"], modify["NewImage"]) == (item_1, item_1_modified)
    assert insert_2["NewImage"] == {"pk": {"S": "item-2"}, "n": {"N": "7"}}
    assert remove["OldImage"] == item_1_modified

    wait_for(lambda: eng.lambda_client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK")
    # later changes arrive in order too, in later batches
    ddb.update_item(
        TableName=table,
        Key={"pk": {"S": "item-2"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "8"}},
    )
    ddb.delete_item(TableName=table, Key={"pk": {"S": "item-2"}})
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 6)
    assert _names(esm_test_fns.records_for(arn))[4:] == [("MODIFY", "item-2"), ("REMOVE", "item-2")]


@pytest.mark.parametrize("view", ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE"])
def test_stream_view_type_decides_the_images(
    view: str, ddb: Any, moto_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    table = unique_name("ddb-view")
    arn = _table(ddb, table, view=view)
    _put(ddb, table, "k", v={"N": "1"})
    _put(ddb, table, "k", v={"N": "2"})
    ddb.delete_item(TableName=table, Key={"pk": {"S": "k"}})
    eng = _engine(start_engine, moto_endpoint)
    _map(eng, arn, "fn-stream_ok")
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 3)
    images = {
        "KEYS_ONLY": [[], [], []],
        "NEW_IMAGE": [["NewImage"], ["NewImage"], []],
        "OLD_IMAGE": [[], ["OldImage"], ["OldImage"]],
    }[view]
    records = esm_test_fns.records_for(arn)
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    for record, present in zip(records, images, strict=True):
        body = record["dynamodb"]
        assert body["StreamViewType"] == view
        assert [k for k in body if k in ("NewImage", "OldImage")] == present
    if view == "NEW_IMAGE":
        assert records[1]["dynamodb"]["NewImage"] == {"pk": {"S": "k"}, "v": {"N": "2"}}
    if view == "OLD_IMAGE":
        assert records[2]["dynamodb"]["OldImage"] == {"pk": {"S": "k"}, "v": {"N": "2"}}


def test_latest_skips_changes_made_before_the_mapping(
    ddb: Any, moto_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    table = unique_name("ddb-latest")
    arn = _table(ddb, table)
    for i in range(3):
        _put(ddb, table, f"before-{i}")
    _put(ddb, table, "before-0", v={"N": "1"})  # a MODIFY before the mapping, too
    eng = _engine(start_engine, moto_endpoint)
    _map(eng, arn, "fn-stream_ok", StartingPosition="LATEST")
    # The engine reports Enabled before its shard reader has taken its LATEST position (see
    # test_latest_delivers_changes_made_right_after_enabled): write probes until one arrives.
    probes: list[str] = []

    def probe_arrived() -> bool:
        probes.append(f"probe-{len(probes)}")
        _put(ddb, table, probes[-1])
        return bool(wait_until(lambda: esm_test_fns.records_for(arn), 0.5))

    wait_for(probe_arrived, timeout=20, interval=0)
    for i in range(3):
        _put(ddb, table, f"after-{i}")
    _put(ddb, table, "before-1", v={"N": "2"})  # a change after Enabled to an item from before
    wait_for(lambda: ("MODIFY", "before-1") in _names(esm_test_fns.records_for(arn)))
    time.sleep(0.5)  # nothing more comes
    delivered = _names(esm_test_fns.records_for(arn))
    arrived_probes = [pk for name, pk in delivered if pk.startswith("probe-")]
    assert arrived_probes and arrived_probes == probes[-len(arrived_probes) :]  # from one point on, all
    assert [d for d in delivered if not d[1].startswith("probe-")] == [
        ("INSERT", "after-0"),
        ("INSERT", "after-1"),
        ("INSERT", "after-2"),
        ("MODIFY", "before-1"),
    ]


def test_latest_delivers_changes_made_right_after_enabled(
    ddb: Any, moto_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    table = unique_name("ddb-latest-now")
    arn = _table(ddb, table)
    _put(ddb, table, "before")
    eng = _engine(start_engine, moto_endpoint)
    _map(eng, arn, "fn-stream_ok", StartingPosition="LATEST")
    for i in range(3):
        _put(ddb, table, f"after-{i}")
    assert wait_until(lambda: len(esm_test_fns.records_for(arn)) >= 3, 5.0)
    assert _names(esm_test_fns.records_for(arn)) == [("INSERT", f"after-{i}") for i in range(3)]


def test_filter_on_event_name_delivers_only_inserts_and_checkpoints_past_the_rest(
    ddb: Any, moto_endpoint: str, start_engine: Any, unique_name: Any, tmp_path: Any
) -> None:
    table = unique_name("ddb-filter")
    arn = _table(ddb, table)
    _put(ddb, table, "a")  # INSERT
    _put(ddb, table, "a", v={"N": "1"})  # MODIFY
    _put(ddb, table, "b")  # INSERT
    ddb.delete_item(TableName=table, Key={"pk": {"S": "a"}})  # REMOVE
    _put(ddb, table, "c")  # INSERT
    _put(ddb, table, "c", v={"N": "2"})  # MODIFY
    ddb.delete_item(TableName=table, Key={"pk": {"S": "b"}})  # REMOVE: the stream ends on filtered records
    data = tmp_path / "persist"
    eng = _engine(start_engine, moto_endpoint, data_dir=data)
    uuid = _map(
        eng,
        arn,
        "fn-stream_ok",
        BatchSize=2,  # the filtered records sit between and after the batches
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"eventName": ["INSERT"]})}]},
    )
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 3)
    records = esm_test_fns.records_for(arn)
    assert _names(records) == [("INSERT", "a"), ("INSERT", "b"), ("INSERT", "c")]

    # the checkpoint reaches the last record of the stream, a filtered-out REMOVE
    last_seq = max(_all_sequence_numbers(moto_endpoint, arn), key=int)

    def checkpointed_to_end() -> bool:
        shards = {k: v for k, v in eng.engine.store.checkpoints(uuid).items() if k.startswith("shardId-")}
        return list(shards.values()) == [last_seq]

    wait_for(checkpointed_to_end, timeout=10)
    time.sleep(0.5)
    assert len(esm_test_fns.records_for(arn)) == 3
    eng.stop()

    again = _engine(start_engine, moto_endpoint, data_dir=data)
    again.wait_state(uuid, "Enabled")
    time.sleep(1.5)  # a restarted mapping that re-read the shard would have delivered by now
    assert len(esm_test_fns.records_for(arn)) == 3  # nothing delivered again
    ddb.update_item(
        TableName=table,
        Key={"pk": {"S": "c"}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"N": "3"}},
    )  # filtered out
    _put(ddb, table, "d")  # delivered: the restarted engine is reading
    wait_for(lambda: len(esm_test_fns.records_for(arn)) >= 4)
    time.sleep(0.5)
    assert _names(esm_test_fns.records_for(arn)) == [
        ("INSERT", "a"),
        ("INSERT", "b"),
        ("INSERT", "c"),
        ("INSERT", "d"),
    ]


def _all_sequence_numbers(moto_endpoint: str, arn: str) -> list[str]:
    streams = boto3.client("dynamodbstreams", endpoint_url=moto_endpoint, region_name=REGION)
    return [r["dynamodb"]["SequenceNumber"] for r in _raw_records(streams, arn)]


def test_poison_item_exhausts_retries_to_an_sqs_destination(
    ddb: Any,
    streams: Any,
    moto_endpoint: str,
    sqs_endpoint: str,
    start_engine: Any,
    unique_name: Any,
) -> None:
    table = unique_name("ddb-poison")
    arn = _table(ddb, table)
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name=REGION)
    url = sqs.create_queue(QueueName=unique_name("ddb-dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    _put(ddb, table, "ok-1")
    _put(ddb, table, "POISON")
    _put(ddb, table, "ok-2")
    raw = _raw_records(streams, arn)
    eng = _engine(start_engine, moto_endpoint, sqs_endpoint)
    uuid = _map(
        eng,
        arn,
        "fn-ddb_poison",
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
    )

    got: list[dict[str, Any]] = []

    def failure_arrived() -> bool:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            got.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return bool(got)

    wait_for(failure_arrived, timeout=60)
    [failure] = got
    assert list(failure) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "DDBStreamBatchInfo",
    ]
    ctx = failure["requestContext"]
    assert list(ctx) == ["requestId", "functionArn", "condition", "approximateInvokeCount"]
    assert ctx["condition"] == "RetryAttemptsExhausted"
    assert ctx["approximateInvokeCount"] == 2  # the first invocation and one retry
    assert ctx["functionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn-ddb_poison"
    assert failure["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert failure["version"] == "1.0"
    assert ISO_MILLIS.match(failure["timestamp"]), failure["timestamp"]
    info = failure["DDBStreamBatchInfo"]
    assert list(info) == [
        "shardId",
        "startSequenceNumber",
        "endSequenceNumber",
        "approximateArrivalOfFirstRecord",
        "approximateArrivalOfLastRecord",
        "batchSize",
        "streamArn",
    ]
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert info["shardId"] == shard["ShardId"]
    assert info["streamArn"] == arn
    # without bisect the whole batch (the three records of the first read) is discarded
    assert info["batchSize"] == 3
    assert info["startSequenceNumber"] == raw[0]["dynamodb"]["SequenceNumber"]
    assert info["endSequenceNumber"] == raw[2]["dynamodb"]["SequenceNumber"]
    for key, source in (
        ("approximateArrivalOfFirstRecord", raw[0]),
        ("approximateArrivalOfLastRecord", raw[2]),
    ):
        assert ISO_SECONDS.match(info[key]), info[key]  # second precision for DynamoDB (spec 1.2, 4.8)
        created = source["dynamodb"]["ApproximateCreationDateTime"]
        assert info[key] == f"{datetime.fromtimestamp(int(created.timestamp()), UTC):%Y-%m-%dT%H:%M:%SZ}"
    calls = esm_test_fns.calls_for(arn)
    assert [[_pk(r) for r in c["event"]["Records"]] for c in calls] == [["ok-1", "POISON", "ok-2"]] * 2
    wait_for(
        lambda: (
            eng.lambda_client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"]
            == "PROBLEM: Function call failed"
        )
    )

    # the shard moved on past the discarded batch
    _put(ddb, table, "after")
    wait_for(lambda: "after" in [_pk(r) for r in esm_test_fns.records_for(arn)])
    time.sleep(0.5)
    assert [_pk(r) for r in esm_test_fns.records_for(arn)][6:] == ["after"]
    assert len(got) == 1 and not sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages")


def test_at_timestamp_is_refused_for_dynamodb(
    ddb: Any, moto_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    arn = _table(ddb, unique_name("ddb-ts"))
    eng = _engine(start_engine, moto_endpoint)
    lam = eng.lambda_client
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as e:
        lam.create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName="fn-stream_ok",
            StartingPosition="AT_TIMESTAMP",
            StartingPositionTimestamp=datetime.now(UTC),
        )
    assert e.value.response["Error"]["Message"] == f"Unsupported starting position for arn type: {arn}"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert lam.list_event_source_mappings()["EventSourceMappings"] == []


@pytest.mark.parametrize("missing", ["table", "label"])
def test_missing_stream_is_refused(
    missing: str, ddb: Any, moto_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    if missing == "table":  # no such table
        table = unique_name("ddb-none")
        arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/2026-01-01T00:00:00.000"
    else:  # the table exists, this stream of it does not (an older label)
        real = _table(ddb, unique_name("ddb-label"))
        arn = real.rsplit("/", 1)[0] + "/2020-01-01T00:00:00.000"
    eng = _engine(start_engine, moto_endpoint)
    lam = eng.lambda_client
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as e:
        lam.create_event_source_mapping(
            EventSourceArn=arn, FunctionName="fn-stream_ok", StartingPosition="TRIM_HORIZON"
        )
    assert e.value.response["Error"]["Message"] == f"Stream not found: {arn}"
    assert lam.list_event_source_mappings()["EventSourceMappings"] == []
