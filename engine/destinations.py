"""On-failure destination records (spec 4.8 streams, 6.5 Kafka), byte for byte. Pure builders.

Nothing here does I/O or reads the clock: the failure time (``now``, epoch seconds) and any random id are
passed in. Sending is engine.senders' job. Key order of every dict is the order AWS prints.

Time formats: Kinesis and Kafka times carry milliseconds (``2019-11-14T00:38:06.021Z``), DynamoDB arrival
times are second precision (``2019-11-14T00:13:19Z``); the record's own ``timestamp`` always has
milliseconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from engine.ports import InvokeResult, StreamRecord

RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
#: Kafka only: a record larger than the 6 MB invocation payload (spec 6.3)
MAXIMUM_PAYLOAD_SIZE_EXCEEDED = "MaximumPayloadSizeExceeded"

#: Conditions of failures that happen without an invocation (the records were never invoked, or the
#: last invocation does not describe them): streams omit ``responseContext`` for these [OBS].
_NOT_INVOKED = frozenset({RECORD_AGE_EXCEEDED, MAXIMUM_PAYLOAD_SIZE_EXCEEDED})

#: The Kafka-topic destination example of the docs prints ``RetriesExhausted`` where the SQS/SNS/S3
#: example prints ``RetryAttemptsExhausted``; which one AWS really writes is [UNVERIFIED] (spec 6.5), so
#: the documented string is kept per destination type. Callers pass the generic condition.
KAFKA_TOPIC_CONDITIONS: Mapping[str, str] = {RETRY_ATTEMPTS_EXHAUSTED: "RetriesExhausted"}

FAILURE_RECORD_VERSION = "1.0"

StreamSourceName = Literal["kinesis", "dynamodb"]

_BATCH_INFO_KEY: Mapping[str, str] = {"kinesis": "KinesisBatchInfo", "dynamodb": "DDBStreamBatchInfo"}


# --- time formats -----------------------------------------------------------------------------------


def iso_millis(t: float) -> str:
    """Epoch seconds -> ``2019-11-14T00:38:06.021Z`` (UTC, rounded to the nearest millisecond, so that a
    Kinesis ``approximateArrivalTimestamp`` such as 1573692004.835 prints as .835)."""
    seconds, millis = divmod(round(t * 1000), 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def iso_seconds(t: float) -> str:
    """Epoch seconds -> ``2019-11-14T00:13:19Z`` (UTC, truncated to the second)."""
    return f"{datetime.fromtimestamp(math.floor(t), UTC):%Y-%m-%dT%H:%M:%S}Z"


# --- shared parts -----------------------------------------------------------------------------------


def _request_context(
    request_id: str, function_arn: str, condition: str, approximate_invoke_count: int
) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "functionArn": function_arn,
        "condition": condition,
        "approximateInvokeCount": approximate_invoke_count,
    }


def _response_context(result: InvokeResult) -> dict[str, Any]:
    return {
        "statusCode": result.status_code,
        "executedVersion": result.executed_version,
        # "Unhandled" after a thrown error; null when the records failed through a partial batch response
        "functionError": result.function_error,
    }


def _head(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    approximate_invoke_count: int,
    last_result: InvokeResult | None,
    now: float,
    no_response_context: Literal["absent", "null"],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "requestContext": _request_context(request_id, function_arn, condition, approximate_invoke_count)
    }
    if condition in _NOT_INVOKED:
        if no_response_context == "null":
            out["responseContext"] = None
    elif last_result is None:
        raise ValueError(f"a {condition} failure record needs the last invocation's result")
    else:
        out["responseContext"] = _response_context(last_result)
    out["version"] = FAILURE_RECORD_VERSION
    out["timestamp"] = iso_millis(now)
    return out


# --- streams (spec 4.8) -----------------------------------------------------------------------------


def stream_failure_record(
    *,
    source: StreamSourceName,
    records: Sequence[StreamRecord],
    condition: str,
    approximate_invoke_count: int,
    last_result: InvokeResult | None,
    function_arn: str,
    shard_id: str,
    stream_arn: str,
    request_id: str,
    now: float,
) -> dict[str, Any]:
    """The SQS/SNS record for ``records``, the discarded (remaining) records of a batch, in order.

    ``responseContext`` is absent for ``RecordAgeExceeded``; otherwise it describes ``last_result`` (required
    then). ``now`` is the failure time. Sequence numbers and arrival times are those of the first and last
    discarded record; ``batchSize`` is how many were discarded.
    """
    if not records:
        raise ValueError("a failure record describes at least one record")
    if source not in _BATCH_INFO_KEY:
        raise ValueError(f"not a stream source: {source!r}")
    arrival = iso_millis if source == "kinesis" else iso_seconds
    first, last = records[0], records[-1]
    out = _head(
        request_id=request_id,
        function_arn=function_arn,
        condition=condition,
        approximate_invoke_count=approximate_invoke_count,
        last_result=last_result,
        now=now,
        no_response_context="absent",
    )
    out[_BATCH_INFO_KEY[source]] = {
        "shardId": shard_id,
        "startSequenceNumber": first.sequence_number,
        "endSequenceNumber": last.sequence_number,
        "approximateArrivalOfFirstRecord": arrival(first.arrival_s),
        "approximateArrivalOfLastRecord": arrival(last.arrival_s),
        "batchSize": len(records),
        "streamArn": stream_arn,
    }
    return out


def with_payload(record: Mapping[str, Any], event: Mapping[str, Any] | bytes | str) -> dict[str, Any]:
    """The S3 form of a failure record: the same JSON plus ``"payload"``, the original invocation event as
    an escaped JSON *string*. Pass the invocation payload itself (bytes or str) to keep it byte for byte;
    a dict is serialised compactly."""
    if isinstance(event, bytes):
        text = event.decode()
    elif isinstance(event, str):
        text = event
    else:
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return {**record, "payload": text}


def s3_key(mapping_uuid: str, shard_id: str, now: float, random_uuid: str) -> str:
    """``aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>`` (UTC)."""
    t = datetime.fromtimestamp(math.floor(now), UTC)
    return f"aws/lambda/{mapping_uuid}/{shard_id}/{t:%Y/%m/%d}/{t:%Y-%m-%dT%H.%M.%S}-{random_uuid}"


# --- Kafka (spec 6.5) -------------------------------------------------------------------------------
# A Kafka record is given in its event form (spec 1.4): topic, partition, offset, timestamp (epoch ms),
# timestampType, key, value, headers.


def kafka_partition_key(record: Mapping[str, Any]) -> str:
    """``"<topic>-<partition>"``, the key of the event's ``records`` object."""
    return f"{record['topic']}-{record['partition']}"


def kafka_event(
    records: Sequence[Mapping[str, Any]], *, event_source_arn: str | None, bootstrap_servers: str
) -> dict[str, Any]:
    """The invocation event holding ``records`` (spec 1.4): MSK with an ARN, self-managed without."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        grouped.setdefault(kafka_partition_key(r), []).append(r)
    event: dict[str, Any] = {"eventSource": "aws:kafka" if event_source_arn else "SelfManagedKafka"}
    if event_source_arn:
        event["eventSourceArn"] = event_source_arn
    event["bootstrapServers"] = bootstrap_servers
    event["records"] = grouped
    return event


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _kafka_batch_head(
    batch_size: int, event_source_arn: str | None, bootstrap_servers: str, payload_size: int
) -> dict[str, Any]:
    return {
        "batchSize": batch_size,
        # self-managed Kafka has no ARN: the field is kept, null [UNVERIFIED]
        "eventSourceArn": event_source_arn,
        "bootstrapServers": bootstrap_servers,
        "payloadSize": payload_size,
    }


def kafka_failure_record(
    *,
    records: Sequence[Mapping[str, Any]],
    condition: str,
    approximate_invoke_count: int,
    last_result: InvokeResult | None,
    function_arn: str,
    event_source_arn: str | None,
    bootstrap_servers: str,
    request_id: str,
    now: float,
    payload_size: int | None = None,
) -> dict[str, Any]:
    """The SQS/SNS/S3 record of a failed Kafka batch (spec 6.5), ``recordsInfo`` per ``"<topic>-<partition>"``
    in order of first appearance (first/last = first and last given record of that partition).

    ``responseContext`` is null for ``MaximumPayloadSizeExceeded`` (as the docs annotate) and absent for
    ``RecordAgeExceeded`` (as streams do; [UNVERIFIED] for Kafka). ``payload_size`` is the invocation
    event's size in bytes; by default the compact JSON size of the event holding ``records``. Add the S3
    ``payload`` with :func:`with_payload`.
    """
    if not records:
        raise ValueError("a failure record describes at least one record")
    if payload_size is None:
        event = kafka_event(records, event_source_arn=event_source_arn, bootstrap_servers=bootstrap_servers)
        payload_size = _json_size(event)
    out = _head(
        request_id=request_id,
        function_arn=function_arn,
        condition=condition,
        approximate_invoke_count=approximate_invoke_count,
        last_result=last_result,
        now=now,
        no_response_context="null" if condition == MAXIMUM_PAYLOAD_SIZE_EXCEEDED else "absent",
    )
    partitions: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        partitions.setdefault(kafka_partition_key(r), []).append(r)
    info = _kafka_batch_head(len(records), event_source_arn, bootstrap_servers, payload_size)
    info["recordsInfo"] = {
        key: {
            "firstRecordOffset": str(rs[0]["offset"]),
            "lastRecordOffset": str(rs[-1]["offset"]),
            "firstRecordTimestamp": iso_millis(rs[0]["timestamp"] / 1000),
            "lastRecordTimestamp": iso_millis(rs[-1]["timestamp"] / 1000),
        }
        for key, rs in partitions.items()
    }
    out["KafkaBatchInfo"] = info
    return out


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted_keys(v) for v in value]
    return value


def kafka_topic_failure_record(
    *,
    record: Mapping[str, Any],
    condition: str,
    approximate_invoke_count: int,
    last_result: InvokeResult | None,
    function_arn: str,
    event_source_arn: str | None,
    bootstrap_servers: str,
    request_id: str,
    now: float,
    payload_size: int | None = None,
) -> dict[str, Any]:
    """The message value for a ``kafka://<topic>`` destination: one per failed record (spec 6.5).

    ``condition`` is the generic one; it is written as :data:`KAFKA_TOPIC_CONDITIONS` documents for this
    destination type (``RetryAttemptsExhausted`` -> ``RetriesExhausted``). ``recordInfo`` is singular and
    ``payload`` is an *object*: the one-record event, keys sorted as the docs print it. ``payload_size``
    defaults to the compact JSON size of that one-record event. The produced message's key is the
    record's original key (round-robin when it has none): the producer's concern.
    """
    payload = _sorted_keys(
        kafka_event([record], event_source_arn=event_source_arn, bootstrap_servers=bootstrap_servers)
    )
    if payload_size is None:
        payload_size = _json_size(payload)
    topic_condition = KAFKA_TOPIC_CONDITIONS.get(condition, condition)
    out = _head(
        request_id=request_id,
        function_arn=function_arn,
        condition=topic_condition,
        approximate_invoke_count=approximate_invoke_count,
        last_result=last_result,
        now=now,
        no_response_context="null" if condition == MAXIMUM_PAYLOAD_SIZE_EXCEEDED else "absent",
    )
    info = _kafka_batch_head(1, event_source_arn, bootstrap_servers, payload_size)
    info["recordInfo"] = {
        "offset": str(record["offset"]),
        "timestamp": iso_millis(record["timestamp"] / 1000),
    }
    out["KafkaBatchInfo"] = info
    out["payload"] = payload
    return out
