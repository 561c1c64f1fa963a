"""Kill the engine with SIGKILL in the middle of a run and start it again: no message is lost; at most
the batches in flight are delivered again (at-least-once, as on AWS)."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import boto3

from tests.integration.conftest import wait_for
from tests.integration.engine_process import free_port, serve

HANDLER = """
import os, time

def record(event, context):
    with open(os.environ["ESM_CRASH_OUT"], "a") as f:
        for r in event["Records"]:
            f.write(r["body"] + "\\n")
    time.sleep(0.2)
"""


def test_sigkill_mid_batch_loses_nothing(tmp_path: Path, sqs_endpoint: str, unique_name: Any) -> None:
    out = tmp_path / "seen.txt"
    (tmp_path / "crash_fns.py").write_text(textwrap.dedent(HANDLER))
    (tmp_path / "esm.yaml").write_text(
        textwrap.dedent(f"""
        functions:
          crash-recorder:
            handler: crash_fns.record
            timeout: 2
            environment: {{ESM_CRASH_OUT: "{out}"}}
    """)
    )
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName=unique_name("crash"), Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bodies = {f"msg-{i}" for i in range(40)}
    for i in range(0, 40, 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": f"msg-{i + j}"} for j in range(10)]
        )
    port = free_port()
    engine = serve(tmp_path, port, f"sqs={sqs_endpoint}")
    lam = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    try:
        uuid = lam.create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName="crash-recorder",
            BatchSize=5,
            ScalingConfig={"MaximumConcurrency": 2},
        )["UUID"]
        wait_for(lambda: out.exists() and len(out.read_text().split()) >= 5)
        os.kill(engine.pid, signal.SIGKILL)  # mid-batch: the handler sleeps 0.2 s per batch
        engine.wait(10)
        seen_before = set(out.read_text().split())
        assert seen_before < bodies  # the crash really happened before the end

        engine = serve(tmp_path, port, f"sqs={sqs_endpoint}")
        assert lam.get_event_source_mapping(UUID=uuid)["State"] in ("Enabled", "Creating")
        wait_for(lambda: set(out.read_text().split()) == bodies, timeout=30)

        def drained() -> bool:
            a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            return (
                a["ApproximateNumberOfMessages"] == "0" and a["ApproximateNumberOfMessagesNotVisible"] == "0"
            )

        wait_for(drained, timeout=30)
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(15)
        except subprocess.TimeoutExpired:
            engine.kill()
    # graceful stop on SIGTERM
    assert engine.returncode == 0
