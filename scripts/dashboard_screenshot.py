"""The README's dashboard picture: a Kinesis mapping with a poison record (bisect, retries exhausted, an SQS
on-failure destination) and an SQS mapping with partial batch failures, fed for --seconds, then a
screenshot of the dashboard in Debian's headless Chromium, the poison batch's attempt tree open.

    scripts/services.sh start elasticmq kinesis && eval "$(scripts/services.sh env)"
    .venv/bin/python scripts/dashboard_screenshot.py docs/dashboard.png [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio.from_thread
import boto3
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration" / "functions")]

from engine.app import Engine, EngineSettings  # noqa: E402
from engine.runner.stream import StreamRunnerSettings  # noqa: E402
from tests.integration.conftest import functions_config  # noqa: E402
from tests.integration.test_dashboard import CHROMIUM_ARGS  # noqa: E402

REGION = "us-east-1"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    sqs_ep = os.environ.get("ESM_TEST_SQS_ENDPOINT", "http://127.0.0.1:9324")
    kin_ep = os.environ.get("ESM_TEST_KINESIS_ENDPOINT", "http://127.0.0.1:4568")
    sqs = boto3.client("sqs", endpoint_url=sqs_ep, region_name=REGION)
    kinesis = boto3.client("kinesis", endpoint_url=kin_ep, region_name=REGION)
    run = uuid.uuid4().hex[:6]
    stream = f"orders-{run}"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    while (
        kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        != "ACTIVE"
    ):
        time.sleep(0.1)
    stream_arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    dlq = sqs.create_queue(QueueName=f"orders-failed-{run}")["QueueUrl"]

    def arn_of(url: str) -> str:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        return str(attributes["QueueArn"])

    dlq_arn = arn_of(dlq)
    queue = sqs.create_queue(QueueName=f"payments-{run}", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    with tempfile.TemporaryDirectory() as data:
        settings = EngineSettings(
            port=0,
            data_dir=Path(data),
            endpoints={"sqs": sqs_ep, "kinesis": kin_ep},
            stream=StreamRunnerSettings(poll_interval_s=0.5),
        )
        engine = Engine(settings, functions_config(timeout_s=3.0))
        engine.history.sample_s = 2.0  # more points for a minute's picture
        with anyio.from_thread.start_blocking_portal() as portal:
            future, port = portal.start_task(engine.serve)
            lam = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION)
            lam.create_event_source_mapping(
                EventSourceArn=queue_arn,
                FunctionName="fn-partial",
                BatchSize=10,
                FunctionResponseTypes=["ReportBatchItemFailures"],
            )
            lam.create_event_source_mapping(
                EventSourceArn=stream_arn,
                FunctionName="fn-stream_poison",
                StartingPosition="TRIM_HORIZON",
                BatchSize=16,
                BisectBatchOnFunctionError=True,
                MaximumRetryAttempts=1,
                DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
            )
            started, n = time.monotonic(), 0
            while time.monotonic() - started < args.seconds:
                burst = 20 + int(15 * abs(((time.monotonic() - started) % 20) - 10) / 10)
                records = [
                    {"Data": f"order-{n + i}".encode(), "PartitionKey": f"k{i % 7}"} for i in range(burst)
                ]
                if n // burst % 9 == 4:
                    records[burst // 2]["Data"] = b"POISON"
                kinesis.put_records(StreamName=stream, Records=records)
                bodies = [f"payment-{n + i}" + (" FAIL" if (n + i) % 23 == 0 else "") for i in range(10)]
                sqs.send_message_batch(
                    QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
                )
                n += burst
                time.sleep(1.0)
            time.sleep(3)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1366, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/dashboard")
                page.locator("#mappings tbody tr", has_text="fn-stream_poison").click()
                page.wait_for_timeout(2500)
                page.locator("#invocations tbody tr", has_text="function_error").last.click()
                page.wait_for_timeout(1500)
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=args.out, full_page=True)
                browser.close()
            future.cancel()
    kinesis.delete_stream(StreamName=stream)
    for url in (dlq, queue):
        sqs.delete_queue(QueueUrl=url)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
