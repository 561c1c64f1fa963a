"""The README's main job: `esm serve --embedded-aws` with the demo config, driven as the README says;
and the `esm mappings` / `esm functions` / `esm journal` commands on what it left in the store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import boto3

from tests.integration.conftest import wait_for
from tests.integration.engine_process import ROOT, free_port, serve_demo


def _esm(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_readme_demo_pipeline_on_the_embedded_emulator(tmp_path: Path) -> None:
    api, aws = free_port(), free_port()
    engine, log_path = serve_demo(tmp_path, api, aws)
    try:
        sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{aws}", region_name="us-east-1")
        url = sqs.create_queue(QueueName="demo", Attributes={"VisibilityTimeout": "10"})["QueueUrl"]
        lam = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{api}", region_name="us-east-1")
        created = lam.create_event_source_mapping(
            FunctionName="demo-printer",
            EventSourceArn="arn:aws:sqs:us-east-1:123456789012:demo",
            FunctionResponseTypes=["ReportBatchItemFailures"],
        )
        assert created["State"] == "Creating"
        sqs.send_message(QueueUrl=url, MessageBody="hello")
        sqs.send_message(QueueUrl=url, MessageBody="please fail")

        def printed() -> list[dict[str, str]]:
            lines = [json.loads(x) for x in log_path.read_text().splitlines() if '"messageId"' in x]
            return lines if len(lines) >= 2 else []

        seen = wait_for(printed)
        assert sorted(x["body"] for x in seen) == ["hello", "please fail"]
        assert all(x["function"] == "demo-printer" and x["attempt"] == "1" for x in seen)

        def events() -> set[str]:
            return {json.loads(x)["event"] for x in log_path.read_text().splitlines() if '"event"' in x}

        wait_for(
            lambda: {"engine_started", "mapping_created", "mapping_started", "batch_processed"} <= events()
        )
        assert b'"POST / HTTP/1.1"' not in log_path.read_bytes()  # moto's access log stays quiet
    finally:
        engine.send_signal(signal.SIGINT)
        engine.wait(20)
    assert engine.returncode == 0

    listed = _esm("mappings", "--data-dir", str(tmp_path / "data"))
    assert created["UUID"] in listed and "arn:aws:sqs:us-east-1:123456789012:demo" in listed
    journal = json.loads(_esm("journal", "--data-dir", str(tmp_path / "data"), "--json"))
    assert {e["outcome"] for e in journal} <= {"success", "partial_failure"} and journal
    assert "partial_failure" in {e["outcome"] for e in journal}
    functions = _esm("functions", "--config", "examples/demo/esm.yaml")
    assert "demo-printer" in functions and "demo_handler.handle" in functions


def test_help_and_bad_config_are_clear(tmp_path: Path) -> None:
    helptext = _esm("serve", "--help")
    for option in ("--host", "--port", "--data-dir", "--config", "--aws-endpoint-url", "ESM_PORT"):
        assert option in helptext
    # what --time-scale scales and what stays real
    assert (
        "--time-scale N" in helptext
        and "visibility timeouts" in helptext
        and "--capture-payloads" in helptext
    )
    for command in ("journal", "trace", "replay"):
        assert command in _esm("--help")
    bad = tmp_path / "bad.yaml"
    bad.write_text("functions:\n  f:\n    timeout: 3\n")
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli", "functions", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode != 0 and str(bad) in out.stderr and "Traceback" not in out.stderr
