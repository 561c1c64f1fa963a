"""`esm soak` end to end: short soaks (seconds, not hours) on real services with faults on, each checking
the ledger (nothing lost), the ordering check and the report's figures against the engine's journal;
the one-line form through the real command; report.html rendered in headless Chromium."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from playwright.sync_api import Browser

from engine.metrics import INVOKED_OUTCOMES
from engine.pipeline.verdict import FUNCTION_ERROR
from engine.store.ports import DESTINATION_SENT, JournalEntry
from engine.store.sqlite import SqliteStore
from soak.model import SoakResult
from soak.plan import parse_plan
from soak.run import Soak
from tests.services import endpoint_for, require_service

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "soak"


def _soak(
    tmp_path: Path,
    mapping: dict[str, Any],
    source: dict[str, Any],
    load: dict[str, Any],
    *,
    engine: dict[str, Any] | None = None,
    failure_queue: bool = False,
    **top: Any,
) -> SoakResult:
    """A soak of one mapping of the example's orders function, in this process."""
    one = {"name": "orders", "mapping": {"FunctionName": "orders", **mapping}, "source": source, "load": load}
    raw = {
        "report": str(tmp_path / "report"),
        "drain": "20s",
        "sample": "1s",
        "engine": {"config": str(EXAMPLE / "esm.yaml"), **(engine or {})},
        "mappings": [{**one, "failure_queue": failure_queue}],
        **top,
    }
    plan = parse_plan(raw, base_dir=tmp_path, text=json.dumps(raw))
    return anyio.run(Soak(plan))


def _journal(tmp_path: Path, uuid: str) -> list[JournalEntry]:
    store = SqliteStore(tmp_path / "report" / "engine-data" / "esm.sqlite3")
    try:
        return store.journal(uuid, 1_000_000)
    finally:
        store.close()


def _accounted(result: SoakResult) -> None:
    """The ledger's promise: every record sent ended somewhere, none lost; summary.json as written."""
    s = result.summary
    assert s["lost"] == 0, result.missing[:20]
    assert s["sent"] > 0
    assert (
        s["succeeded"] + s["filtered_out"] + s["to_destination"] + s["discarded"] + s["pending"] == s["sent"]
    )
    assert result.verdict.startswith("PASS")


def _check_against_journal(tmp_path: Path, result: SoakResult) -> list[JournalEntry]:
    """The report's invocation and error counts are the journal's (one row per invocation attempt)."""
    uuid = result.mappings[0].uuid
    rows = _journal(tmp_path, uuid)
    invoked = [r for r in rows if r.outcome in INVOKED_OUTCOMES]
    assert result.summary["invocations"] == len(invoked)
    assert result.summary["errors"] == sum(1 for r in rows if r.outcome == FUNCTION_ERROR)
    written = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert written == json.loads(json.dumps(result.summary))
    return rows


def test_sqs_on_the_embedded_emulator_with_errors_and_a_poison_record(tmp_path: Path) -> None:
    result = _soak(
        tmp_path,
        {"BatchSize": 10},
        {"kind": "sqs", "name": "soak-sqs", "attributes": {"VisibilityTimeout": "5"}},
        {"rate": 80, "duration": "6s"},
        engine={"embedded_aws": True},
        faults={"function": {"errors": 0.1, "throttles": 0.05}, "poison": ["2s"]},
    )
    _accounted(result)
    s = result.summary
    assert s["errors"] > 0 and s["retries"] > 0 and s["throttles"] > 0
    # the poison record (and what shared its batches) reached the queue's DLQ after 3 receives
    assert s["to_destination"] >= 1
    assert set(result.destination_reasons) == {"maxReceiveCount (the queue's redrive policy)"}
    assert result.mappings[0].ordering.startswith("not promised")
    _check_against_journal(tmp_path, result)
    assert [f.kind for f in result.faults] == ["poison"]


def _kinesis_endpoints() -> dict[str, str]:
    kinesis = require_service("kinesis", endpoint_for("kinesis"))
    sqs = require_service("elasticmq", endpoint_for("elasticmq"))
    return {"kinesis": kinesis, "sqs": sqs}


def test_kinesis_with_bisect_a_poison_record_and_an_on_failure_queue(
    tmp_path: Path, unique_name: Any
) -> None:
    result = _soak(
        tmp_path,
        {
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 50,
            "MaximumRetryAttempts": 1,
            "BisectBatchOnFunctionError": True,
        },
        {"kind": "kinesis", "name": unique_name("soak"), "shards": 2},
        {"rate": 100, "duration": "6s"},
        engine={"endpoints": _kinesis_endpoints(), "kinesis_poll_interval": 0.2, "time_scale": 10},
        failure_queue=True,
        faults={"function": {"errors": 0.05}, "poison": ["2s"]},
        fail_on={"order": True},
    )
    _accounted(result)
    s = result.summary
    assert s["order_violations"] == 0 and result.mappings[0].ordering == "per shard"
    assert s["to_destination"] >= 1  # the poison record, alone after bisecting
    rows = _check_against_journal(tmp_path, result)
    # what the report says went to the destination is what the journal's deliveries name
    delivered = sum(r.batch_size for r in rows if r.outcome == DESTINATION_SENT)
    assert s["to_destination"] == delivered
    assert any(r.bisect_depth > 0 for r in rows) and sum(x.bisects for x in result.samples) > 0
    # the retries' back-off ran ten times faster, and the report says so
    assert result.summary["time_scale"] == 10
    assert "10\u00d7 faster" in (tmp_path / "report" / "report.html").read_text()


def test_kafka_survives_an_engine_sigkill_in_order(tmp_path: Path, unique_name: Any, bootstrap: str) -> None:
    result = _soak(
        tmp_path,
        {
            "Topics": [unique_name("soak")],
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 50,
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
            "SourceAccessConfigurations": [{"Type": "VPC_SUBNET", "URI": "subnet:subnet-1"}],
        },
        {"kind": "kafka", "shards": 3},
        {"rate": 150, "duration": "8s"},
        faults={"function": {"errors": 0.05}, "engine_kill": ["3s"]},
        fail_on={"order": True},
    )
    _accounted(result)
    s = result.summary
    assert s["order_violations"] == 0 and result.mappings[0].ordering == "per partition"
    assert [f.kind for f in result.faults] == ["engine_kill", "engine_restart"]
    # what was invoked but not committed before the SIGKILL comes again: a duplicate, with its cause
    assert set(result.duplicate_causes) <= {"engine SIGKILL before the checkpoint or delete"}
    assert s["duplicates"] == sum(result.duplicate_causes.values())


def test_rabbitmq_survives_a_broker_restart(tmp_path: Path, unique_name: Any) -> None:
    url = require_service("rabbitmq", endpoint_for("rabbitmq"))
    services = ROOT / "scripts" / "services.sh"
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:soak-AbCdEf"
    restart = f"sh -c '{services} stop rabbitmq && {services} start rabbitmq'"
    result = _soak(
        tmp_path,
        {
            "EventSourceArn": "arn:aws:mq:us-east-1:123456789012:broker:soak:b-1",
            "Queues": [unique_name("soak")],
            "BatchSize": 20,
            "MaximumBatchingWindowInSeconds": 1,
            "SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": secret}],
        },
        {"kind": "rabbitmq", "broker_url": url},
        {"rate": 40, "duration": "15s"},
        faults={"function": {"errors": 0.05}, "broker_restart": {"at": ["3s"], "command": restart}},
        drain="40s",
    )
    _accounted(result)
    assert [f.kind for f in result.faults] == ["broker_restart"]
    assert "exit 0" in result.faults[0].detail
    # what the producer could not publish while the broker was down went once it was back
    assert result.summary["refused_by_source"] == 0 and result.summary["sent"] > 400
    _check_against_journal(tmp_path, result)


def _one_line(*options: str) -> list[str]:
    """`esm soak`'s one-line form on SQS, the embedded emulator and the example's function."""
    command = [sys.executable, "-m", "engine.cli", "soak", "--source", "sqs", "--function", "orders"]
    return [*command, "--config", str(EXAMPLE / "esm.yaml"), "--embedded-aws", *options]


def test_the_one_line_form_gates_on_its_thresholds_and_its_report_renders(
    tmp_path: Path, browser: Browser
) -> None:
    report = tmp_path / "report"
    options = ["--fault", "error=0.1", "--fail-on", "p99=0.001ms", "--report", str(report), "--drain", "20s"]
    done = subprocess.run(
        _one_line("--rate", "40", "--duration", "4s", *options),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "put-to-invoke p99" in done.stderr
    summary = json.loads((report / "summary.json").read_text())
    for key in (
        "sent",
        "invoked",
        "duplicates",
        "lost",
        "filtered_out",
        "to_destination",
        "order_violations",
    ):
        assert isinstance(summary[key], int), key
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"} and summary["duration_s"] > 0
    assert summary["lost"] == 0 and summary["sent"] > 100
    assert (report / "timeseries.csv").read_text().count("\n") >= 4
    page = browser.new_page()
    try:
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url))
        page.goto((report / "report.html").as_uri())
        charts = page.locator("img.chart")
        assert charts.count() >= 6
        for i in range(charts.count()):
            chart = charts.nth(i)
            name = chart.get_attribute("alt")
            loaded = chart.evaluate("img => img.complete && img.naturalWidth > 0")
            assert loaded, name
            if name and "lag" not in name.lower():  # no lag gauge on a queue this short: queue depth may be 0
                assert int(chart.get_attribute("data-points") or 0) > 0, name
        assert "FAIL" in page.locator("header").inner_text()
        assert not outside, outside
    finally:
        page.close()


def test_ctrl_c_stops_the_load_drains_and_still_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "report"
    command = _one_line("--rate", "50", "--duration", "5m", "--report", str(report))
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (report / "invocations.jsonl").exists():  # the load is running
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "stopping the load; draining" in err
    summary = json.loads((report / "summary.json").read_text())
    assert summary["stopped_early"] is True and summary["duration_s"] < 60
    assert summary["lost"] == 0 and summary["sent"] > 0 and summary["pending"] == 0
    assert (report / "report.html").exists()
