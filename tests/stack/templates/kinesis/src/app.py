"""Log each record's source and succeed."""


def handler(event, context):
    for record in event.get("Records", []):
        print(record.get("eventSource"), record.get("eventID"))
    return {"batchItemFailures": []}
