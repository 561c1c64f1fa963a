"""The sam-app's functions: each prints what it got (the engine's log shows it) and reports failures
the way its source expects."""

import base64
import json
import os


def orders(event, context):
    failures = []
    for record in event["Records"]:
        order = json.loads(record["body"])
        if not order.get("id"):
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        print(json.dumps({"stage": os.environ["STAGE"], "order": order["id"]}))
    return {"batchItemFailures": failures}


def clicks(event, context):
    for record in event["Records"]:
        if "kinesis" in record:
            print(json.dumps({"click": json.loads(base64.b64decode(record["kinesis"]["data"]))}))
        else:
            customer = record["dynamodb"]["Keys"]["id"]["S"]
            print(json.dumps({"customer": customer, "event": record["eventName"]}))
