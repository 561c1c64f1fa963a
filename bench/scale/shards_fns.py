"""The functions of bench/scale/shards.py and bench/scale/memory.py: count records per source and check,
as each record arrives, that its shard or partition delivers in sequence order.

Order: every record's (shard, sequence number) is compared with the last one seen on its shard (Kinesis:
``eventID`` is ``<shardId>:<sequenceNumber>``; Kafka: ``<topic>-<partition>`` and ``offset``). A record at
or before the last one (out of order, or delivered twice) is a violation. The raw clients' loops build
events of the same shape and call the same functions.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

#: records handed to the functions, by source ("kinesis", "kafka", "sqs")
COUNT: Counter[str] = Counter()
#: records at or before the last sequence number already seen on their shard / partition
VIOLATIONS = [0]
_LAST: dict[str, int] = {}


def reset() -> None:
    COUNT.clear()
    VIOLATIONS[0] = 0
    _LAST.clear()


def _in_order(shard: str, sequence: int) -> None:
    last = _LAST.get(shard)
    if last is not None and sequence <= last:
        VIOLATIONS[0] += 1
    else:
        _LAST[shard] = sequence


async def kinesis_ordered(event: dict[str, Any], context: Any) -> None:
    for r in event["Records"]:
        _in_order(r["eventID"].partition(":")[0], int(r["kinesis"]["sequenceNumber"]))
    COUNT["kinesis"] += len(event["Records"])


async def kafka_ordered(event: dict[str, Any], context: Any) -> None:
    for partition, records in event["records"].items():
        for r in records:
            _in_order(partition, r["offset"])
        COUNT["kafka"] += len(records)


async def kafka_noop(event: dict[str, Any], context: Any) -> None:
    COUNT["kafka"] += sum(len(records) for records in event["records"].values())


async def sqs_noop(event: dict[str, Any], context: Any) -> None:
    COUNT["sqs"] += len(event["Records"])
