"""Kafka end to end against the real broker (self-managed and MSK via the config file): per-partition order
on thousands of records, the exact event, committed offsets, poison records with bisect, partial batch
responses, retry exhaustion to a Kafka topic and to SQS, filters, restart mid-stream, two engines sharing a
consumer group, SASL/SCRAM right and wrong."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic  # type: ignore[import-untyped]
from structlog.testing import capture_logs

from engine.store.sqlite import SqliteStore
from tests.integration.conftest import RunningEngine, esm_test_fns, functions_config, wait_for
from tests.services import (
    KAFKA_SCRAM,
    KAFKA_SCRAM_PASSWORD,
    KAFKA_SCRAM_USER,
    KAFKA_TLS,
    KAFKA_TLS_DIR,
    require_service,
    setting,
)

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[2]
MSK_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/local/5f1c8e2a-0000-4000-8000-000000000001-1"
SCRAM_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_esm-AbCdEf"
WRONG_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_wrong-AbCdEf"


# --- broker helpers (the tests are synchronous: the engine runs in its own thread) -------------------


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> str:
    async def go() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(go())
    return name


def produce(bootstrap: str, topic: str, items: Sequence[tuple[bytes | None, bytes, int | None]]) -> None:
    """(key, value, partition) messages, acknowledged by the broker, in order per partition."""

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            futures = [await producer.send(topic, value=v, key=k, partition=p) for k, v, p in items]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(go())


def consume_all(bootstrap: str, topic: str, count: int, timeout_s: float = 30) -> list[Any]:
    async def go() -> list[Any]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        got: list[Any] = []
        try:
            async with asyncio.timeout(timeout_s):
                while len(got) < count:
                    batch = await consumer.getmany(timeout_ms=500)
                    got += [m for ms in batch.values() for m in ms]
        finally:
            await consumer.stop()
        return got

    return asyncio.run(go())


def committed(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offsets by partition."""

    async def go() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items()}

    return asyncio.run(go())


def sqs_queue(endpoint: str, name: str) -> tuple[Any, str, str]:
    """An on-failure destination queue: (client, URL, ARN)."""
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn


def self_managed(bootstrap: str, topic: str, function: str, **extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": function,
        "Topics": [topic],
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
        "SourceAccessConfigurations": [{"Type": "VPC_SUBNET", "URI": "subnet:subnet-0123"}],
        "StartingPosition": "TRIM_HORIZON",
        **extra,
    }


def create(engine: RunningEngine, body: dict[str, Any]) -> dict[str, Any]:
    m = engine.lambda_client.create_event_source_mapping(**body)
    return engine.wait_state(m["UUID"], "Enabled", timeout=60)


def value(r: dict[str, Any]) -> str:
    return base64.b64decode(r["value"]).decode()


def by_partition(records: list[dict[str, Any]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for r in records:
        out[r["partition"]].append(r["offset"])
    return out


# --- tests ------------------------------------------------------------------------------------------


def test_thousands_of_records_in_partition_order_with_the_exact_event(
    start_engine: Callable[..., RunningEngine], unique_name: Callable[..., str], bootstrap: str
) -> None:
    topic = create_topic(bootstrap, unique_name("orders"), partitions=4)
    n = 4000
    produce(
        bootstrap,
        topic,
        [(f"k{i % 13}".encode(), f"v{i}".encode(), None) for i in range(n)],
    )
    engine = start_engine(None)
    m = create(engine, self_managed(bootstrap, topic, "fn-kafka_ok", BatchSize=100))
    assert m["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == m["UUID"]
    wait_for(lambda: len(esm_test_fns.kafka_records(topic)) >= n, timeout=90)

    events = esm_test_fns.kafka_calls(topic)
    for e in events:
        assert list(e) == ["eventSource", "bootstrapServers", "records"]  # self-managed: no ARN
        assert e["eventSource"] == "SelfManagedKafka"
        assert e["bootstrapServers"] == bootstrap
        assert len(e["records"]) == 1  # one partition per event
        ((key, records),) = e["records"].items()
        assert 1 <= len(records) <= 100
        assert key == f"{topic}-{records[0]['partition']}"
    records = esm_test_fns.kafka_records(topic)
    assert len(records) == n  # each exactly once
    for partition, offsets in by_partition(records).items():
        assert offsets == list(range(len(offsets))), f"partition {partition} out of order or with gaps"
    assert sorted(value(r) for r in records) == sorted(f"v{i}" for i in range(n))
    first = records[0]
    assert list(first) == [
        "topic", "partition", "offset", "timestamp", "timestampType", "key", "value", "headers"
    ]  # fmt: skip
    assert first["timestampType"] == "CREATE_TIME" and first["headers"] == []
    assert base64.b64decode(first["key"]).decode().startswith("k")
    # offsets are committed to the group once the batches are done
    ends = {p: len(o) for p, o in by_partition(records).items()}
    wait_for(lambda: committed(bootstrap, m["UUID"]) == ends, timeout=15)


def test_msk_cluster_from_the_config_file(
    start_engine: Callable[..., RunningEngine], unique_name: Callable[..., str], bootstrap: str
) -> None:
    topic = create_topic(bootstrap, unique_name("msk"))
    produce(bootstrap, topic, [(None, b"hello", None)])
    config = functions_config(sections={"brokers": {MSK_ARN: {"bootstrap_servers": [bootstrap]}}})
    engine = start_engine(None, config=config)
    m = create(
        engine,
        {
            "FunctionName": "fn-kafka_ok",
            "EventSourceArn": MSK_ARN,
            "Topics": [topic],
            "StartingPosition": "TRIM_HORIZON",
            "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": f"{topic}-group"},
        },
    )
    assert m["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == f"{topic}-group"
    (event,) = wait_for(lambda: esm_test_fns.kafka_calls(topic))
    assert list(event) == ["eventSource", "eventSourceArn", "bootstrapServers", "records"]
    assert event["eventSource"] == "aws:kafka" and event["eventSourceArn"] == MSK_ARN
    (record,) = event["records"][f"{topic}-0"]
    assert record["key"] is None and value(record) == "hello"
    wait_for(lambda: committed(bootstrap, f"{topic}-group") == {0: 1})


def test_poison_record_is_isolated_by_bisect_and_sent_to_sqs(
    start_engine: Callable[..., RunningEngine],
    unique_name: Callable[..., str],
    bootstrap: str,
    sqs_endpoint: str,
) -> None:
    sqs, dlq_url, dlq_arn = sqs_queue(sqs_endpoint, unique_name("kafka-dlq"))
    topic = create_topic(bootstrap, unique_name("poison"))
    values = [f"r{i}" for i in range(40)]
    values[23] = "POISON"
    produce(bootstrap, topic, [(None, v.encode(), None) for v in values])
    engine = start_engine(None, endpoints={"sqs": sqs_endpoint})
    m = create(
        engine,
        self_managed(
            bootstrap,
            topic,
            "fn-kafka_poison",
            BatchSize=40,
            MaximumBatchingWindowInSeconds=1,
            MaximumRetryAttempts=1,
            BisectBatchOnFunctionError=True,
            DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
        ),
    )
    msgs = wait_for(
        lambda: sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages"), timeout=60
    )
    failure = json.loads(msgs[0]["Body"])
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["responseContext"]["functionError"] == "Unhandled"
    info = failure["KafkaBatchInfo"]
    assert info["batchSize"] == 1 and info["eventSourceArn"] is None and info["bootstrapServers"] == bootstrap
    assert info["recordsInfo"] == {
        f"{topic}-0": {
            "firstRecordOffset": "23",
            "lastRecordOffset": "23",
            "firstRecordTimestamp": info["recordsInfo"][f"{topic}-0"]["firstRecordTimestamp"],
            "lastRecordTimestamp": info["recordsInfo"][f"{topic}-0"]["lastRecordTimestamp"],
        }
    }
    # every other record succeeded in some invocation without the poison, and the group moved past all
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: 40}, timeout=30)
    succeeded = {
        value(r)
        for e in esm_test_fns.kafka_calls(topic)
        if "POISON" not in [value(r) for rs in e["records"].values() for r in rs]
        for rs in e["records"].values()
        for r in rs
    }
    assert succeeded == set(values) - {"POISON"}


def test_retry_exhaustion_to_a_kafka_topic_destination(
    start_engine: Callable[..., RunningEngine], unique_name: Callable[..., str], bootstrap: str
) -> None:
    topic = create_topic(bootstrap, unique_name("src"))
    dlq_topic = create_topic(bootstrap, unique_name("failed"))
    produce(bootstrap, topic, [(b"a", b"ok-1", None), (b"b", b"POISON", None), (None, b"ok-2", None)])
    engine = start_engine(None)
    create(
        engine,
        self_managed(
            bootstrap,
            topic,
            "fn-kafka_poison",
            BatchSize=10,
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": f"kafka://{dlq_topic}"}},
        ),
    )
    # no bisect: the whole batch fails twice and every record goes to the topic, one message each
    got = consume_all(bootstrap, dlq_topic, 3, timeout_s=60)
    assert [m.key for m in got] == [b"a", b"b", None]
    docs = [json.loads(m.value) for m in got]
    assert [d["requestContext"]["condition"] for d in docs] == ["RetriesExhausted"] * 3
    assert [d["requestContext"]["approximateInvokeCount"] for d in docs] == [2, 2, 2]
    assert [d["KafkaBatchInfo"]["recordInfo"]["offset"] for d in docs] == ["0", "1", "2"]
    assert all(d["KafkaBatchInfo"]["batchSize"] == 1 for d in docs)
    payload = docs[1]["payload"]
    assert payload["eventSource"] == "SelfManagedKafka" and payload["bootstrapServers"] == bootstrap
    # journaled once the producer has its acknowledgement, maybe just after the consumer saw the messages
    sent = wait_for(
        lambda: [e for e in engine.engine.store.journal(limit=100) if e.outcome == "destination_sent"]
    )
    assert [(e.first_item, e.last_item, e.attempt) for e in sent] == [("0", "2", 2)]
    assert sent[0].detail == {"destination": f"kafka://{dlq_topic}", "reason": "RetryAttemptsExhausted"}
    (record,) = payload["records"][f"{topic}-0"]
    assert value(record) == "POISON" and record["offset"] == 1


def test_partial_batch_response_retries_from_the_failed_offset(
    start_engine: Callable[..., RunningEngine], unique_name: Callable[..., str], bootstrap: str
) -> None:
    topic = create_topic(bootstrap, unique_name("partial"))
    values = ["a", "b", "POISON", "c"]
    produce(bootstrap, topic, [(None, v.encode(), None) for v in values])
    engine = start_engine(None)
    m = create(
        engine,
        self_managed(
            bootstrap,
            topic,
            "fn-kafka_partial",
            BatchSize=10,
            MaximumBatchingWindowInSeconds=1,
            MaximumRetryAttempts=2,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        ),
    )
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: 4}, timeout=30)
    invoked = [
        [value(r) for rs in e["records"].values() for r in rs] for e in esm_test_fns.kafka_calls(topic)
    ]
    # the first invocation has all four; each retry starts at the reported offset (AWS: 1 + 2 retries)
    assert invoked == [values, ["POISON", "c"], ["POISON", "c"]]


def test_filters_invoke_matching_records_and_commit_the_rest(
    start_engine: Callable[..., RunningEngine], unique_name: Callable[..., str], bootstrap: str
) -> None:
    topic = create_topic(bootstrap, unique_name("filtered"))
    values = [json.dumps({"kind": "order" if i % 3 == 0 else "ping", "n": i}) for i in range(30)]
    values.append("not json")
    produce(bootstrap, topic, [(None, v.encode(), None) for v in values])
    engine = start_engine(None)
    m = create(
        engine,
        self_managed(
            bootstrap,
            topic,
            "fn-kafka_ok",
            FilterCriteria={"Filters": [{"Pattern": json.dumps({"value": {"kind": ["order"]}})}]},
        ),
    )
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: 31}, timeout=30)
    got = [value(r) for r in esm_test_fns.kafka_records(topic)]
    # Kafka ignores a JSON clause for a value that is not JSON (spec 2.3): "not json" matches
    assert got == [v for i, v in enumerate(values[:30]) if i % 3 == 0] + ["not json"]


def test_restart_mid_stream_loses_nothing(
    start_engine: Callable[..., RunningEngine],
    unique_name: Callable[..., str],
    bootstrap: str,
    tmp_path: Path,
) -> None:
    topic = create_topic(bootstrap, unique_name("restart"), partitions=2)
    n = 600
    produce(bootstrap, topic, [(None, str(i).encode(), i % 2) for i in range(n)])
    data = tmp_path / "engine-data"
    first = start_engine(None, data_dir=data)
    m = create(first, self_managed(bootstrap, topic, "fn-kafka_slow", BatchSize=20))
    wait_for(lambda: len(esm_test_fns.kafka_records(topic)) >= 100, timeout=60)
    first.stop()
    seen_before = len(esm_test_fns.kafka_records(topic))
    assert seen_before < n, "the restart must land mid-stream"
    second = start_engine(None, data_dir=data)
    second.wait_state(m["UUID"], "Enabled", timeout=60)
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: n // 2, 1: n // 2}, timeout=120)
    records = esm_test_fns.kafka_records(topic)
    assert {int(value(r)) for r in records} == set(range(n))
    # at-least-once: only what was in flight at the stop may repeat, and order holds per partition
    assert len(records) - n <= 2 * 20
    for partition, offsets in by_partition(records).items():
        deduped = list(dict.fromkeys(offsets))
        assert deduped == sorted(deduped), partition


def test_two_engines_share_one_consumer_group(
    start_engine: Callable[..., RunningEngine],
    unique_name: Callable[..., str],
    bootstrap: str,
    tmp_path: Path,
) -> None:
    topic = create_topic(bootstrap, unique_name("shared"), partitions=4)
    group = f"{topic}-group"
    body = self_managed(
        bootstrap,
        topic,
        "fn-kafka_slow",
        BatchSize=20,
        SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": group},
    )
    n = 1600
    produce(bootstrap, topic, [(f"k{i}".encode(), str(i).encode(), i % 4) for i in range(n)])
    a = start_engine(None, data_dir=tmp_path / "a")
    ma = create(a, body)
    wait_for(lambda: len(esm_test_fns.kafka_records(topic)) >= 200, timeout=60)
    # a second engine joins mid-stream: the group rebalances the partitions between the two
    b = start_engine(None, data_dir=tmp_path / "b")
    mb = create(b, body)
    assert ma["UUID"] != mb["UUID"]
    assert len(esm_test_fns.kafka_records(topic)) < n, "the second engine must join mid-stream"
    wait_for(lambda: committed(bootstrap, group) == {p: n // 4 for p in range(4)}, timeout=120)
    records = esm_test_fns.kafka_records(topic)
    assert {int(value(r)) for r in records} == set(range(n))
    # at-least-once across the hand-over: at most what was in flight (one batch per partition) repeats
    assert len(records) - n <= 4 * 20
    for partition, offsets in by_partition(records).items():
        deduped = list(dict.fromkeys(offsets))
        assert deduped == sorted(deduped), partition
    # each engine invoked for some partitions; together all of them
    partitions_a, partitions_b = _partitions_of(a, topic), _partitions_of(b, topic)
    assert partitions_a and partitions_b, (partitions_a, partitions_b)
    assert partitions_a | partitions_b == {f"{topic}-{p}" for p in range(4)}


def _partitions_of(engine: RunningEngine, topic: str) -> set[str]:
    """The partitions an engine invoked its function for, from its journal (its own SQLite file)."""
    store = SqliteStore(engine.engine.settings.store_path)
    try:
        return {e.scope for e in store.journal(limit=100_000) if e.scope.startswith(topic)}
    finally:
        store.close()


@pytest.mark.parametrize("mechanism", ["SASL_SCRAM_512_AUTH", "SASL_SCRAM_256_AUTH"])
def test_scram_right_and_wrong(
    start_engine: Callable[..., RunningEngine],
    unique_name: Callable[..., str],
    bootstrap: str,
    mechanism: str,
) -> None:
    scram = require_service("kafka", setting(KAFKA_SCRAM))
    user, password = setting(KAFKA_SCRAM_USER), setting(KAFKA_SCRAM_PASSWORD)
    topic = create_topic(bootstrap, unique_name("scram"))
    produce(bootstrap, topic, [(None, b"secret-ok", None)])
    secrets = {
        SCRAM_SECRET: {"username": user, "password": password},
        WRONG_SECRET: {"username": user, "password": "not-the-password"},
    }
    engine = start_engine(None, config=functions_config(sections={"secrets": secrets}))

    def body(secret: str) -> dict[str, Any]:
        return {
            **self_managed(scram, topic, "fn-kafka_ok"),
            "SourceAccessConfigurations": [{"Type": mechanism, "URI": secret}],
        }

    with capture_logs() as logs:
        wrong = engine.lambda_client.create_event_source_mapping(**body(WRONG_SECRET))
        stopped = wait_for(
            lambda: (
                (m := engine.lambda_client.get_event_source_mapping(UUID=wrong["UUID"]))[
                    "StateTransitionReason"
                ]
                == "EVENT_SOURCE_AUTHN_ERROR"
                and m
            ),
            timeout=60,
        )
        time.sleep(2)  # a restart loop would start the consumer again within this
    assert stopped["LastProcessingResult"].startswith("PROBLEM: ")
    assert "SASL authentication failed" in stopped["LastProcessingResult"]
    assert "not-the-password" not in stopped["LastProcessingResult"]
    assert stopped["State"] == "Enabled"
    assert not esm_test_fns.kafka_calls(topic)
    # the consumer stopped: started once, stopped once, no restart loop flooding the log
    mine = [e for e in logs if e.get("mapping") == wrong["UUID"]]
    assert [e["event"] for e in mine if e["event"].startswith("mapping_")].count("mapping_started") == 1
    assert [e["event"] for e in mine].count("mapping_consumer_stopped") == 1
    # `esm mappings` shows it stopped, and why
    listed = subprocess.run(
        [sys.executable, "-m", "engine.cli", "mappings", "--data-dir", str(engine.engine.settings.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    [line] = [x for x in listed.splitlines() if x.startswith(wrong["UUID"])]
    assert "EVENT_SOURCE_AUTHN_ERROR" in line and "PROBLEM: " in line and "not-the-password" not in line

    # the user fixes the secret: an update starts the consumer again
    engine.lambda_client.update_event_source_mapping(
        UUID=wrong["UUID"],
        SourceAccessConfigurations=[{"Type": mechanism, "URI": SCRAM_SECRET}],
    )
    (event,) = wait_for(lambda: esm_test_fns.kafka_calls(topic), timeout=60)
    assert event["bootstrapServers"] == scram
    assert value(event["records"][f"{topic}-0"][0]) == "secret-ok"
    fixed = engine.lambda_client.get_event_source_mapping(UUID=wrong["UUID"])
    assert fixed["StateTransitionReason"] == "USER_INITIATED"


def test_a_record_over_6_mb_goes_to_the_destination_uninvoked(
    start_engine: Callable[..., RunningEngine],
    unique_name: Callable[..., str],
    bootstrap: str,
    sqs_endpoint: str,
) -> None:
    sqs, dlq_url, dlq_arn = sqs_queue(sqs_endpoint, unique_name("kafka-big"))
    topic = unique_name("big")
    big = b"x" * 5_000_000  # 6.7 MB once base64-encoded in the event

    async def setup() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": str(8 * 1024 * 1024)})]
            )
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 1024 * 1024)
        await producer.start()
        try:
            for v in (b"before", big, b"after"):
                await producer.send_and_wait(topic, v)
        finally:
            await producer.stop()

    asyncio.run(setup())
    engine = start_engine(None, endpoints={"sqs": sqs_endpoint})
    m = create(
        engine,
        self_managed(
            bootstrap, topic, "fn-kafka_ok", DestinationConfig={"OnFailure": {"Destination": dlq_arn}}
        ),
    )
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: 3}, timeout=60)
    assert [value(r) for r in esm_test_fns.kafka_records(topic)] == ["before", "after"]
    (msg,) = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1)["Messages"]
    failure = json.loads(msg["Body"])
    assert failure["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
    assert failure["responseContext"] is None
    info = failure["KafkaBatchInfo"]
    assert info["batchSize"] == 1 and info["payloadSize"] > 6 * 1024 * 1024
    assert info["recordsInfo"][f"{topic}-0"]["firstRecordOffset"] == "1"
    # the journal shows the discard and the delivery, not only the invocations
    given_up = [
        (e.outcome, e.first_item, e.attempt, e.detail)
        for e in engine.engine.store.journal(m["UUID"], 100)
        if e.outcome != "invoked"
    ]
    reason = {"reason": "MaximumPayloadSizeExceeded", "destination": dlq_arn}
    assert given_up == [("discarded", "1", 0, reason), ("destination_sent", "1", 0, reason)]


def test_mutual_tls_with_the_server_ca_and_a_client_certificate(
    start_engine: Callable[..., RunningEngine], unique_name: Callable[..., str], bootstrap: str
) -> None:
    tls = require_service("kafka", setting(KAFKA_TLS))
    pem = Path(setting(KAFKA_TLS_DIR))
    topic = create_topic(bootstrap, unique_name("mtls"))
    produce(bootstrap, topic, [(b"k", b"over-tls", None)])
    ca_secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-ca-AbCdEf"
    client_secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-client-AbCdEf"
    secrets = {
        ca_secret: {"certificate": (pem / "ca.pem").read_text()},
        client_secret: {
            "certificate": (pem / "client.crt").read_text(),
            "privateKey": (pem / "client.key").read_text(),
        },
    }
    engine = start_engine(None, config=functions_config(sections={"secrets": secrets}))
    m = create(
        engine,
        {
            **self_managed(tls, topic, "fn-kafka_ok"),
            "SourceAccessConfigurations": [
                {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": ca_secret},
                {"Type": "CLIENT_CERTIFICATE_TLS_AUTH", "URI": client_secret},
            ],
        },
    )
    (event,) = wait_for(lambda: esm_test_fns.kafka_calls(topic), timeout=60)
    assert event["bootstrapServers"] == tls
    assert value(event["records"][f"{topic}-0"][0]) == "over-tls"
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: 1})
    # the PEMs written for the TLS context are the owner's alone
    written = list((engine.engine.settings.data_dir / "pem").iterdir())
    assert written and all(p.stat().st_mode & 0o077 == 0 for p in written)


def test_latest_is_fixed_when_first_resolved_so_a_restart_does_not_skip(
    start_engine: Callable[..., RunningEngine],
    unique_name: Callable[..., str],
    bootstrap: str,
    tmp_path: Path,
) -> None:
    topic = create_topic(bootstrap, unique_name("latest"))
    produce(bootstrap, topic, [(None, b"before-create", None)])
    data = tmp_path / "engine-data"
    first = start_engine(None, data_dir=data)
    m = create(first, self_managed(bootstrap, topic, "fn-kafka_ok", StartingPosition="LATEST"))
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: 1})  # LATEST resolved to offset 1 and kept
    first.stop()
    produce(bootstrap, topic, [(None, b"while-stopped", None)])
    second = start_engine(None, data_dir=data)
    second.wait_state(m["UUID"], "Enabled", timeout=60)
    produce(bootstrap, topic, [(None, b"after-restart", None)])
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: 3}, timeout=30)
    assert [value(r) for r in esm_test_fns.kafka_records(topic)] == ["while-stopped", "after-restart"]


def test_records_older_than_maximum_record_age_go_to_the_destination(
    start_engine: Callable[..., RunningEngine],
    unique_name: Callable[..., str],
    bootstrap: str,
    sqs_endpoint: str,
) -> None:
    sqs, dlq_url, dlq_arn = sqs_queue(sqs_endpoint, unique_name("kafka-age"))
    topic = create_topic(bootstrap, unique_name("aged"))
    produce(bootstrap, topic, [(None, f"old-{i}".encode(), None) for i in range(3)])
    # the engine's clock runs an hour ahead: every record is older than 60 s when it is read
    engine = start_engine(None, endpoints={"sqs": sqs_endpoint}, clock=lambda: time.time() + 3600)
    m = create(
        engine,
        self_managed(
            bootstrap,
            topic,
            "fn-kafka_ok",
            MaximumBatchingWindowInSeconds=1,
            MaximumRecordAgeInSeconds=60,
            DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
        ),
    )
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: 3}, timeout=30)
    (msg,) = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1)["Messages"]
    failure = json.loads(msg["Body"])
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert "responseContext" not in failure
    assert failure["KafkaBatchInfo"]["batchSize"] == 3
    info = failure["KafkaBatchInfo"]["recordsInfo"][f"{topic}-0"]
    assert (info["firstRecordOffset"], info["lastRecordOffset"]) == ("0", "2")
    assert not esm_test_fns.kafka_calls(topic)


def test_broker_restart_mid_stream_loses_nothing(
    start_engine: Callable[..., RunningEngine], unique_name: Callable[..., str], bootstrap: str
) -> None:
    topic = create_topic(bootstrap, unique_name("outage"), partitions=2)
    produce(bootstrap, topic, [(None, f"before-{i}".encode(), i % 2) for i in range(200)])
    engine = start_engine(None)
    m = create(engine, self_managed(bootstrap, topic, "fn-kafka_slow", BatchSize=10))
    wait_for(lambda: len(esm_test_fns.kafka_records(topic)) >= 40, timeout=60)
    subprocess.run(
        [str(ROOT / "scripts/services.sh"), "stop", "kafka"], check=True, capture_output=True, timeout=120
    )
    subprocess.run(
        [str(ROOT / "scripts/services.sh"), "start", "kafka"], check=True, capture_output=True, timeout=180
    )
    produce(bootstrap, topic, [(None, f"after-{i}".encode(), i % 2) for i in range(20)])
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: 110, 1: 110}, timeout=180)
    got = {value(r) for r in esm_test_fns.kafka_records(topic)}
    assert got == {f"before-{i}" for i in range(200)} | {f"after-{i}" for i in range(20)}
    wait_for(
        lambda: engine.lambda_client.get_event_source_mapping(UUID=m["UUID"])["LastProcessingResult"] == "OK"
    )


def test_retry_exhaustion_to_s3_carries_the_whole_event(
    start_engine: Callable[..., RunningEngine],
    unique_name: Callable[..., str],
    bootstrap: str,
    moto_endpoint: str,
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    bucket = unique_name("kafka-failures")
    s3.create_bucket(Bucket=bucket)
    topic = create_topic(bootstrap, unique_name("to-s3"))
    produce(bootstrap, topic, [(b"k", b"POISON", None)])
    engine = start_engine(None, endpoints={"s3": moto_endpoint})
    m = create(
        engine,
        self_managed(
            bootstrap,
            topic,
            "fn-kafka_poison",
            MaximumRetryAttempts=0,
            DestinationConfig={"OnFailure": {"Destination": f"arn:aws:s3:::{bucket}"}},
        ),
    )
    keys = wait_for(lambda: [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])])
    (key,) = keys
    assert key.startswith(f"aws/lambda/{m['UUID']}/{topic}-0/")
    failure = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 1
    event = json.loads(failure["payload"])  # the invocation event, as an escaped JSON string
    assert event["eventSource"] == "SelfManagedKafka"
    assert value(event["records"][f"{topic}-0"][0]) == "POISON"
    assert failure["KafkaBatchInfo"]["payloadSize"] == len(failure["payload"].encode())


def test_partitions_added_to_the_topic_are_picked_up(
    start_engine: Callable[..., RunningEngine], unique_name: Callable[..., str], bootstrap: str
) -> None:
    topic = create_topic(bootstrap, unique_name("grows"))
    engine = start_engine(None)
    m = create(engine, self_managed(bootstrap, topic, "fn-kafka_ok"))

    async def grow() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_partitions({topic: NewPartitions(total_count=3)})
        finally:
            await admin.close()

    asyncio.run(grow())
    produce(bootstrap, topic, [(None, b"p0", 0), (None, b"p2", 2)])
    # the group sees the new partitions at the next metadata refresh (seconds) and assigns them
    wait_for(lambda: len(esm_test_fns.kafka_records(topic)) == 2, timeout=30)
    assert sorted(value(r) for r in esm_test_fns.kafka_records(topic)) == ["p0", "p2"]
    wait_for(lambda: committed(bootstrap, m["UUID"]) == {0: 1, 2: 1})
