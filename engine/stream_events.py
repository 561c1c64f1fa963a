"""Event records of the ordered streams (spec 1.1 Kinesis, 1.2 DynamoDB Streams), byte for byte as AWS
delivers them, built from what a GetRecords response carries. Pure functions: no I/O, no clock.

The inputs are records as the low-level SDK client returns them (botocore/aiobotocore): binary values
(Kinesis ``Data``, DynamoDB ``B``/``BS``) arrive as ``bytes`` and timestamps as ``datetime``. Values
already in their wire form (base64 strings, epoch numbers) are accepted too and kept unchanged.

Key order is the one AWS uses; ``json.dumps`` keeps it (dicts preserve insertion order).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

KINESIS_EVENT_SOURCE = "aws:kinesis"
DYNAMODB_EVENT_SOURCE = "aws:dynamodb"

#: the members of a DynamoDB stream record's ``dynamodb`` object, in AWS's order (alphabetical)
_DYNAMODB_MEMBERS = (
    "ApproximateCreationDateTime",
    "Keys",
    "NewImage",
    "OldImage",
    "SequenceNumber",
    "SizeBytes",
    "StreamViewType",
)
#: which images each StreamViewType carries (a record never has more than its view type allows)
_IMAGES = {
    "KEYS_ONLY": frozenset(),
    "NEW_IMAGE": frozenset({"NewImage"}),
    "OLD_IMAGE": frozenset({"OldImage"}),
    "NEW_AND_OLD_IMAGES": frozenset({"NewImage", "OldImage"}),
}


def epoch_seconds(value: datetime | float | int | str) -> float:
    """A timestamp as epoch seconds with (at most) millisecond fraction, the form Lambda events carry.

    Accepts what an SDK returns (``datetime``, aware or naive UTC), an epoch number, or its string.
    """
    if isinstance(value, datetime):
        seconds = value.timestamp()
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        try:
            seconds = float(value)
        except ValueError:
            seconds = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return round(seconds, 3)


def _base64(value: Any) -> Any:
    """bytes -> base64 text; anything else (already base64 text from the wire) unchanged."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


# --- Kinesis (spec 1.1) ---------------------------------------------------------------------------


def kinesis_record(
    raw: Mapping[str, Any],
    *,
    shard_id: str,
    stream_arn: str,
    region: str,
    invoke_identity_arn: str,
) -> dict[str, Any]:
    """One Kinesis event record from a GetRecords record.

    ``data`` is the base64 of the record's bytes exactly as put (never re-serialised);
    ``approximateArrivalTimestamp`` epoch seconds with millisecond fraction; ``eventID`` is
    ``<shardId>:<sequenceNumber>``; ``invokeIdentityArn`` the function's execution role.
    """
    sequence_number = str(raw["SequenceNumber"])
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": raw["PartitionKey"],
            "sequenceNumber": sequence_number,
            "data": _base64(raw["Data"]),
            "approximateArrivalTimestamp": epoch_seconds(raw["ApproximateArrivalTimestamp"]),
        },
        "eventSource": KINESIS_EVENT_SOURCE,
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": invoke_identity_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


def kinesis_lane_key(raw: Mapping[str, Any]) -> str:
    """The ParallelizationFactor lane key of a Kinesis record: its partition key."""
    return str(raw["PartitionKey"])


# --- DynamoDB Streams (spec 1.2) --------------------------------------------------------------------


def dynamodb_value(value: Any) -> Any:
    """A DynamoDB-JSON attribute value (or a map of them) as the wire carries it: ``B`` and ``BS``
    members base64 text (the low-level client decodes them to bytes), ``M``/``L`` converted inside;
    everything else (``S``, ``N``, ``SS``, ``NS``, ``BOOL``, ``NULL``) unchanged. Returns new objects."""
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for type_key, inner in value.items():
        if type_key == "B":
            out[type_key] = _base64(inner)
        elif type_key == "BS":
            out[type_key] = [_base64(v) for v in inner]
        elif type_key == "M":
            out[type_key] = dynamodb_item(inner)
        elif type_key == "L":
            out[type_key] = [dynamodb_value(v) for v in inner]
        elif isinstance(inner, list):
            out[type_key] = list(inner)
        else:
            out[type_key] = inner
    return out


def dynamodb_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item (attribute name -> attribute value) in wire form, attribute order kept."""
    return {name: dynamodb_value(v) for name, v in item.items()}


def _user_identity(identity: Mapping[str, Any]) -> dict[str, Any]:
    # the Streams API says Type/PrincipalId; the Lambda event says type/principalId (spec 1.2)
    out: dict[str, Any] = {}
    for upper, lower in (("Type", "type"), ("PrincipalId", "principalId")):
        if upper in identity:
            out[lower] = identity[upper]
        elif lower in identity:
            out[lower] = identity[lower]
    return out


def dynamodb_record(raw: Mapping[str, Any], *, stream_arn: str, region: str) -> dict[str, Any]:
    """One DynamoDB Streams event record from a GetRecords record.

    Order as AWS delivers it: eventID, eventName, eventVersion, eventSource, awsRegion, dynamodb
    {ApproximateCreationDateTime (epoch seconds), Keys, NewImage, OldImage, SequenceNumber, SizeBytes,
    StreamViewType}, userIdentity (TTL deletions only), eventSourceARN. ``eventVersion`` and
    ``awsRegion`` are the stream record's own (``region`` when the record has none).
    """
    src: Mapping[str, Any] = raw.get("dynamodb") or {}
    allowed_images = _IMAGES.get(str(src.get("StreamViewType")), frozenset({"NewImage", "OldImage"}))
    body: dict[str, Any] = {}
    for member in _DYNAMODB_MEMBERS:
        if member not in src:
            continue
        value = src[member]
        if member == "ApproximateCreationDateTime":
            body[member] = epoch_seconds(value)
        elif member == "Keys":
            body[member] = dynamodb_item(value)
        elif member in ("NewImage", "OldImage"):
            if member in allowed_images:
                body[member] = dynamodb_item(value)
        elif member == "SequenceNumber":
            body[member] = str(value)
        else:
            body[member] = value
    record: dict[str, Any] = {
        "eventID": raw.get("eventID"),
        "eventName": raw.get("eventName"),
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": DYNAMODB_EVENT_SOURCE,
        "awsRegion": raw.get("awsRegion") or region,
        "dynamodb": body,
    }
    if raw.get("userIdentity"):
        record["userIdentity"] = _user_identity(raw["userIdentity"])
    record["eventSourceARN"] = stream_arn
    return record


def dynamodb_lane_key(keys: Mapping[str, Any]) -> str:
    """The ParallelizationFactor lane key of a DynamoDB record: the item's key attributes (partition
    and sort key) as canonical JSON (sorted names, no spaces, binary values base64), so that every
    change to one item lands in the same lane in order."""
    return json.dumps(dynamodb_item(keys), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
