"""GET /metrics after a known run, every count checked against the journal (engine.metrics says how each
AWS metric is read): SQS on ElasticMQ (partial batch responses, a filter, a redrive DLQ), Kinesis on
kinesis-mock (bisect, retries exhausted, an on-failure destination), Kafka (offset lag)."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from engine.store.ports import JournalEntry
from tests.integration.conftest import RunningEngine, esm_test_fns, wait_for
from tests.integration.test_kafka import create, create_topic, produce, self_managed
from tests.integration.test_sqs import _map, _queue, _redriven_queue, _send, _sqs

REGION = "us-east-1"
INVOKED = {"invoked", "success", "partial_failure", "function_error", "invalid_response"}
ATTEMPTS = INVOKED  # journal rows of invocations that reached the function


def scrape(eng: RunningEngine, uuid: str) -> dict[str, float]:
    """The mapping's samples by name (a histogram's _count and _sum included)."""
    with urllib.request.urlopen(f"{eng.url}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=")  # the text format
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("mapping_uuid") == uuid and "le" not in s.labels:
                out[s.name] = s.value
    return out


def labels_of(eng: RunningEngine, uuid: str) -> set[tuple[str, str]]:
    with urllib.request.urlopen(f"{eng.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.labels["function_name"], s.labels["event_source"])
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("mapping_uuid") == uuid
    }


def journal(eng: RunningEngine, uuid: str) -> list[JournalEntry]:
    return list(eng.engine.store.journal(uuid, 100_000))


def sized(rows: list[JournalEntry], outcomes: set[str]) -> int:
    return sum(e.batch_size for e in rows if e.outcome in outcomes)


def test_sqs_counts_match_the_journal(sqs_endpoint: str, start_engine: Any, unique_name: Any) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn, dlq_url = _redriven_queue(sqs, unique_name("metrics"))
    eng = start_engine(sqs_endpoint)
    uuid = _map(
        eng,
        arn,
        "fn-partial",
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": [{"anything-but": ["skip"]}]})}]},
        MetricsConfig={"Metrics": ["EventCount"]},
    )
    bodies = [f"m{i}" for i in range(20)] + [f"m{i} FAIL" for i in range(6)] + ["skip"] * 4
    _send(sqs, url, bodies)
    # the 6 failing messages come back once (receive count 2), then ElasticMQ moves them to the DLQ
    moved: list[Any] = []

    def dead_lettered() -> bool:
        moved.extend(sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", []))
        return len(moved) == 6

    wait_for(dead_lettered, timeout=30)
    wait_for(lambda: scrape(eng, uuid).get("esm_deleted_events_total") == 24)  # 20 done, 4 filtered out

    rows = journal(eng, uuid)
    got = scrape(eng, uuid)
    attempts = [e for e in rows if e.outcome in ATTEMPTS]
    failed_items = sum(len(e.detail.get("failed", ())) for e in rows if e.outcome == "partial_failure")
    assert failed_items == 12  # the 6 failing messages, twice each
    assert got["esm_filtered_out_events_total"] == 4
    assert got["esm_polled_events_total"] == 4 + sized(rows, INVOKED) == 4 + 20 + 12
    assert got["esm_invoked_events_total"] == sized(rows, INVOKED)
    assert got["esm_failed_invoke_events_total"] == failed_items
    assert got["esm_deleted_events_total"] == 4 + sized(rows, INVOKED) - failed_items
    assert got["esm_invocations_total"] == len(attempts) == len(esm_test_fns.calls_for(arn))
    assert got["esm_errors_total"] == sum(1 for e in rows if e.outcome == "function_error") == 0
    assert got["esm_throttles_total"] == 0
    assert got["esm_duration_seconds_count"] == len(attempts)
    assert got["esm_duration_seconds_sum"] > 0
    assert got["esm_concurrent_executions"] == 0
    # nothing of a stream's here, and no destination
    assert "esm_dropped_events_total" not in got and "esm_iterator_age_milliseconds" not in got
    assert labels_of(eng, uuid) == {("fn-partial", "sqs")}


def test_without_event_count_only_the_function_side_is_emitted(
    sqs_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("metrics-off"))
    eng = start_engine(sqs_endpoint)
    uuid = _map(eng, arn, "fn-ok", BatchSize=10)
    _send(sqs, url, [f"m{i}" for i in range(5)])
    wait_for(lambda: len(esm_test_fns.records_for(arn)) == 5)
    wait_for(lambda: scrape(eng, uuid).get("esm_invocations_total", 0) >= 1)
    got = scrape(eng, uuid)
    assert got["esm_invocations_total"] == len(esm_test_fns.calls_for(arn))
    assert not [name for name in got if name.endswith("_events_total")], got
    # a deleted mapping's series go with it
    eng.lambda_client.delete_event_source_mapping(UUID=uuid)
    wait_for(lambda: not scrape(eng, uuid), timeout=15)


def test_kinesis_counts_match_the_journal(
    poisoned: Any,
) -> None:
    with poisoned(
        MaximumRetryAttempts=1,
        MetricsConfig={"Metrics": ["EventCount"]},
    ) as run:
        eng, uuid = run.eng, run.uuid
        # every record reached the function (POISON in failing batches only)
        wait_for(lambda: {esm_test_fns._data(r) for r in esm_test_fns.records_for(run.arn)} == set(run.data))
        rows = journal(eng, uuid)
        got = scrape(eng, uuid)
        outcomes = Counter(e.outcome for e in rows)
        assert outcomes["discarded"] == 1 and outcomes["destination_sent"] == 1
        assert got["esm_polled_events_total"] == len(run.data)  # each record read once
        assert got["esm_invoked_events_total"] == sized(rows, INVOKED)
        assert got["esm_failed_invoke_events_total"] == sized(rows, {"function_error"})
        assert got["esm_dropped_events_total"] == sized(rows, {"discarded"}) == 1
        delivered = got["esm_on_failure_destination_delivered_events_total"]
        assert delivered == sized(rows, {"destination_sent"}) == 1
        assert got["esm_invocations_total"] == sum(outcomes[o] for o in ATTEMPTS)
        assert got["esm_errors_total"] == outcomes["function_error"] >= 2  # the batch, then halves
        assert got["esm_duration_seconds_count"] == got["esm_invocations_total"]
        assert got["esm_iterator_age_milliseconds"] >= 0
        assert "esm_deleted_events_total" not in got and "esm_filtered_out_events_total" not in got
        assert labels_of(eng, uuid) == {("fn-stream_poison", "kinesis")}
        messages = run.sqs.receive_message(QueueUrl=run.dlq_url).get("Messages", [])
        [failure] = [json.loads(m["Body"]) for m in messages]
        assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"


def test_kafka_offset_lag_falls_to_zero_and_counts_match_the_journal(
    start_engine: Any, unique_name: Any, bootstrap: str
) -> None:
    topic = create_topic(bootstrap, unique_name("metrics"), partitions=2)
    n = 600
    produce(bootstrap, topic, [(None, f"v{i}".encode(), i % 2) for i in range(n)])
    eng = start_engine(None)
    # 0.2 s a batch of 10: the backlog drains over seconds, the lag is seen on its way down
    m = create(
        eng,
        self_managed(
            bootstrap,
            topic,
            "fn-kafka_slow",
            BatchSize=10,
            MaximumBatchingWindowInSeconds=0,
            MetricsConfig={"Metrics": ["EventCount"]},
        ),
    )
    uuid = m["UUID"]
    lags: list[float] = []

    def drained() -> bool:
        lag = scrape(eng, uuid).get("esm_offset_lag")
        if lag is not None:
            lags.append(lag)
        return len(esm_test_fns.kafka_records(topic)) >= n and lag == 0

    wait_for(drained, timeout=60, interval=0.2)
    assert max(lags) > 0  # behind while draining: records of both partitions not yet read
    rows = journal(eng, uuid)
    got = scrape(eng, uuid)
    assert got["esm_polled_events_total"] == n
    assert got["esm_invoked_events_total"] == sized(rows, INVOKED) == n
    assert got["esm_invocations_total"] == len(esm_test_fns.kafka_calls(topic))
    assert got["esm_errors_total"] == 0 and "esm_failed_invoke_events_total" not in got
    assert labels_of(eng, uuid) == {("fn-kafka_slow", "kafka")}
