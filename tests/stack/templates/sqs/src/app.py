"""Orders and payments consumers: report the records they could not handle."""


def handler(event, context):
    failures = [
        {"itemIdentifier": r["messageId"]} for r in event["Records"] if not r.get("body")
    ]
    return {"batchItemFailures": failures}
