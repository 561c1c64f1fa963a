"""The endurance row's function, run by the engine in its own process: fails a share of its invocations
at random (ESM_ENDURANCE_ERROR_RATE), and appends every record it processed successfully to the ledger
file (ESM_ENDURANCE_LEDGER) as ``<id> <put-to-invoke seconds>``: nothing accumulates in the engine's
memory, so its RSS is the engine's own."""

from __future__ import annotations

import base64
import json
import os
import random
import time
from typing import IO, Any

_rng = random.Random(7)
_ledger: list[IO[str]] = []


def _body(record: dict[str, Any]) -> dict[str, Any]:
    if "body" in record:  # SQS
        doc: dict[str, Any] = json.loads(record["body"])
    elif "kinesis" in record:
        doc = json.loads(base64.b64decode(record["kinesis"]["data"]))
    else:  # a Kafka record
        doc = json.loads(base64.b64decode(record["value"]))
    return doc


def _records(event: dict[str, Any]) -> list[dict[str, Any]]:
    if "Records" in event:
        records: list[dict[str, Any]] = event["Records"]
        return records
    return [r for batch in event["records"].values() for r in batch]  # Kafka: by topic-partition


async def handle(event: dict[str, Any], context: Any) -> None:
    if _rng.random() < float(os.environ.get("ESM_ENDURANCE_ERROR_RATE", "0.05")):
        raise RuntimeError("scripted failure (the endurance run's error rate)")
    if not _ledger:
        # kept open for the run; small appends, flushed per invocation
        _ledger.append(open(os.environ["ESM_ENDURANCE_LEDGER"], "a"))  # noqa: SIM115, ASYNC230
    now = time.time()
    out = _ledger[0]
    out.write("".join(f"{doc['id']} {now - doc['t']:.4f}\n" for doc in map(_body, _records(event))))
    out.flush()
