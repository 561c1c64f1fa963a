"""Per-source views (spec 2.2, 2.3): how each source's records meet a filter.

A record is turned once into a FilterView, the JSON object every filter of the mapping reads: the data
field decoded (base64 where the source encodes it) and parsed, dotted keys expanded where the payload and
the user-named fields have them, and the data's format noted. What a format mismatch does to a data
clause (evaluate it, ignore it, or drop the record) is each source's policy, applied by RecordFilter.
The sources' FilterSource constants (SQS, KINESIS, DYNAMODB, KAFKA, MQ) close the file; each source's
profile (engine/sources/) names one.
"""

from __future__ import annotations

import binascii
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from engine.filtering.values import MISSING, STRICT_JSON, expand, undot


class DataFormat(enum.IntEnum):
    """What the data key of a record turned out to be (spec 2.3)."""

    JSON = 0  # parsed JSON value
    TEXT = 1  # UTF-8 text that is not JSON (SQS, Kafka, MQ)
    INVALID = 2  # Kinesis data that is not JSON
    BINARY = 3  # Kafka / MQ bytes that are not UTF-8
    ABSENT = 4  # no data in the record (e.g. a Kafka tombstone)


class FilterView(dict[str, Any]):
    """The JSON object a record is matched against, plus the format of its data key."""

    __slots__ = ("data_format",)

    def __init__(self, fields: Mapping[str, Any], data_format: DataFormat) -> None:
        super().__init__(fields)
        self.data_format = data_format


# --- data-clause policy (spec 2.3) --------------------------------------------------------------------

#: What RecordFilter does with a filter's data clause on a record of one DataFormat: evaluate it, pass
#: (ignore the clause), or drop the record.
EVAL, PASS, DROP = 0, 1, 2
#: (object-clause action, leaf-clause action), each indexed by DataFormat, per source family.
Policy = tuple[tuple[int, ...], tuple[int, ...]]
# SQS drops on a body-format mismatch.
_SQS_POLICY: Final[Policy] = ((EVAL, DROP, DROP, DROP, EVAL), (DROP, EVAL, DROP, DROP, EVAL))
# Kinesis / DynamoDB: a non-JSON record with an object clause is dropped (leaf clauses never compile).
_STREAM_POLICY: Final[Policy] = ((EVAL, DROP, DROP, DROP, EVAL), (DROP, DROP, DROP, DROP, EVAL))
# Kafka / MQ ignore the data clause on a mismatch and on non-UTF-8 data.
_BROKER_POLICY: Final[Policy] = ((EVAL, PASS, PASS, PASS, EVAL), (PASS, EVAL, PASS, PASS, EVAL))


@dataclass(frozen=True)
class FilterSource:
    """How one source's records meet a filter (spec 2.2, 2.3): the field that holds the data, what a
    data-format mismatch does, where users choose field names, and how the view is built. Each source's
    profile names one of the constants below."""

    #: in error messages ("'data' of a kinesis record ...")
    name: str
    data_key: str
    #: per data format: evaluate, drop or ignore the data clause (objects, leaves)
    mismatch: Policy
    #: where a record holds names users choose (attribute, header, property names) that may contain
    #: dots; every other field has AWS's fixed names. DynamoDB item maps nest: searched all the way down
    user_keyed: tuple[tuple[str, ...], ...]
    #: the data field takes object patterns only (its records' data must be JSON: the streams)
    object_data_only: bool
    view: Callable[[Mapping[str, Any], FilterSource], FilterView | None]


# --- views --------------------------------------------------------------------------------------------

# A "." inside a JSON string that is an object key: only then does a parsed payload need its dotted keys
# expanded. A false positive only costs the expansion pass. The plain form is exact for text without
# backslashes; with escapes, a key may hide its dot behind \u002e or be followed by an escaped quote.
_DOTTED_KEY = re.compile(r'\.[^"]*"\s*:')
_DOTTED_KEY_ESCAPED = re.compile(r'(?:\.|\\u002[eE])[^"\\]*(?:\\.[^"\\]*)*"\s*:')


def filter_view(source: FilterSource, record: Mapping[str, Any]) -> FilterView | None:
    """The object a record is matched against (spec 2.2), built once and shared by all filters.

    ``record`` is the record exactly as the function receives it (spec section 1). Returns None when the
    record does not have that source's shape (no ``body`` string, no ``kinesis`` / ``dynamodb`` object).
    """
    if not isinstance(record, Mapping):
        return None
    return source.view(record, source)


def _view(fields: Mapping[str, Any], source: FilterSource, value: Any, fmt: DataFormat) -> FilterView:
    """``fields`` with the data key set to its decoded ``value`` (left out when MISSING)."""
    view = FilterView(fields, fmt)
    if value is MISSING:
        view.pop(source.data_key, None)
    else:
        view[source.data_key] = value
    for name, *rest in source.user_keyed:
        if name in view:
            view[name] = _expand_names(view[name], rest)
    return view


def _expand_names(value: Any, path: list[str]) -> Any:
    """``value`` with the dotted names at ``path`` (in a dict, or a list of dicts) expanded; a copy only
    where something changes."""
    if path:
        name, *rest = path
        if type(value) is not dict or name not in value:
            return value
        part = value[name]
        new = _expand_names(part, rest)
        return value if new is part else {**value, name: new}
    if type(value) is dict:
        return expand(value) if "." in "".join(value) else value
    if type(value) is list and any(type(e) is dict and "." in "".join(e) for e in value):
        return [expand(e) if type(e) is dict else e for e in value]
    return value


def _decoded_view(
    fields: Mapping[str, Any],
    source: FilterSource,
    *,
    text_format: DataFormat,
    binary_format: DataFormat,
) -> FilterView:
    encoded = fields.get(source.data_key)
    if not isinstance(encoded, str):
        return _view(fields, source, MISSING, DataFormat.ABSENT)
    try:
        text = binascii.a2b_base64(encoded).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return _view(fields, source, MISSING, binary_format)
    value = _parse_json(text)
    if value is MISSING:
        return _view(fields, source, text if text_format is DataFormat.TEXT else MISSING, text_format)
    return _view(fields, source, value, DataFormat.JSON)


def _parse_json(text: str) -> Any:
    """The JSON value of ``text`` with dotted keys expanded, or MISSING when it is not JSON."""
    try:
        value = STRICT_JSON.decode(text)
    except (ValueError, RecursionError):
        return MISSING
    dotted = _DOTTED_KEY_ESCAPED if "\\" in text else _DOTTED_KEY
    if dotted.search(text) is not None:
        value = undot(value)
    return value


# --- the sources --------------------------------------------------------------------------------------


def _sqs_view(record: Mapping[str, Any], source: FilterSource) -> FilterView | None:
    body = record.get("body")
    if not isinstance(body, str):
        return None
    value = _parse_json(body)
    if value is MISSING:
        return _view(record, source, body, DataFormat.TEXT)
    return _view(record, source, value, DataFormat.JSON)


def _kinesis_view(record: Mapping[str, Any], source: FilterSource) -> FilterView | None:
    kinesis = record.get("kinesis")  # its fields are matched flattened, without the envelope
    if not isinstance(kinesis, Mapping):
        return None
    invalid = DataFormat.INVALID  # for Kinesis anything but JSON is just "not JSON"
    return _decoded_view(kinesis, source, text_format=invalid, binary_format=invalid)


def _dynamodb_view(record: Mapping[str, Any], source: FilterSource) -> FilterView | None:
    if not isinstance(record.get("dynamodb"), Mapping):
        return None
    view = _view(record, source, undot(record["dynamodb"]), DataFormat.JSON)
    # eventSourceARN is added by the poller; the other fields come from the Streams API (spec 2.2).
    view.pop("eventSourceARN", None)
    return view


def _broker_view(record: Mapping[str, Any], source: FilterSource) -> FilterView | None:
    """Kafka's ``value``, MQ's ``data``: base64, matched as JSON, else as text (spec 2.3)."""
    return _decoded_view(record, source, text_format=DataFormat.TEXT, binary_format=DataFormat.BINARY)


SQS = FilterSource("sqs", "body", _SQS_POLICY, (("messageAttributes",),), False, _sqs_view)
KINESIS = FilterSource("kinesis", "data", _STREAM_POLICY, (), True, _kinesis_view)
DYNAMODB = FilterSource("dynamodb", "dynamodb", _STREAM_POLICY, (), True, _dynamodb_view)
KAFKA = FilterSource("kafka", "value", _BROKER_POLICY, (("headers",),), False, _broker_view)
MQ = FilterSource(
    "mq", "data", _BROKER_POLICY, (("properties",), ("basicProperties", "headers")), False, _broker_view
)
