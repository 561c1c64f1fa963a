"""The demo function: prints each SQS record it receives and reports the bodies containing "fail" as
failed items (ReportBatchItemFailures), so a retry can be watched after the visibility timeout."""

from __future__ import annotations

import json
from typing import Any


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event["Records"]:
        attempt = record["attributes"].get("ApproximateReceiveCount")
        print(json.dumps({"function": context.function_name, "messageId": record["messageId"],
                          "body": record["body"], "attempt": attempt}), flush=True)
        if "fail" in record["body"]:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
