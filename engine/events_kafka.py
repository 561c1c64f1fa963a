"""Kafka event payload (spec 1.4): one record of ``records["<topic>-<partition>"]`` and the envelope
around one partition's records. Pure.

AWS's poller is Java: header values are Java ``byte[]`` rendered by Gson, i.e. JSON arrays of SIGNED bytes
(-128..127); ``key`` and ``value`` are base64 of the raw bytes; ``timestamp`` is epoch milliseconds and
``timestampType`` the Kafka enum name. The same record shape is used by MSK (``aws:kafka``) and self-managed
Kafka (``SelfManagedKafka``, no ``eventSourceArn`` at the top level).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any

from engine.events import Envelope

MSK_EVENT_SOURCE = "aws:kafka"
SELF_MANAGED_EVENT_SOURCE = "SelfManagedKafka"
#: Kafka's TimestampType enum by the wire value (0 = CreateTime, 1 = LogAppendTime)
TIMESTAMP_TYPES = {0: "CREATE_TIME", 1: "LOG_APPEND_TIME"}


def partition_key(topic: str, partition: int) -> str:
    """The key of ``records`` and the engine's shard id for a partition: ``<topic>-<partition>``."""
    return f"{topic}-{partition}"


def parse_partition_key(key: str) -> tuple[str, int]:
    """``<topic>-<partition>`` -> (topic, partition); topics may contain ``-``."""
    topic, sep, partition = key.rpartition("-")
    if not sep or not topic or not (partition.isascii() and partition.isdigit()):
        raise ValueError(f"not a Kafka partition key (<topic>-<partition>): {key!r}")
    return topic, int(partition)


def signed_bytes(raw: bytes) -> list[int]:
    """Java's ``byte[]`` as Gson writes it: each byte as a signed value -128..127."""
    return [b - 256 if b > 127 else b for b in raw]


def timestamp_type_name(timestamp_type: int | str) -> str:
    """0/1 (the wire value aiokafka reports) or an already named type -> CREATE_TIME / LOG_APPEND_TIME."""
    if isinstance(timestamp_type, str):
        if timestamp_type not in TIMESTAMP_TYPES.values():
            raise ValueError(f"unknown Kafka timestampType {timestamp_type!r}")
        return timestamp_type
    try:
        return TIMESTAMP_TYPES[timestamp_type]
    except KeyError:
        raise ValueError(f"unknown Kafka timestampType {timestamp_type!r}") from None


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else binascii.b2a_base64(raw, newline=False).decode("ascii")


#: a JSON string literal as json.dumps(..., ensure_ascii=False) writes it (the C function, no encoder)
_json_string: Callable[[str], str] = json.encoder.encode_basestring


class KafkaRecords:
    """Builds one partition's records as the function sees them (spec 1.4), keys in the order of the AWS
    example: as a dict, and at once as the compact UTF-8 JSON ``json.dumps`` would give (formatted
    directly, the topic's part once per partition: the one encoding on a Kafka consumer's per-record path).

    A null key (and a null value: a tombstone) is sent as ``null``; a null header value as ``[]``.
    """

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self._head = f'{{"topic":{_json_string(topic)},"partition":{partition},"offset":'

    def build(
        self,
        offset: int,
        timestamp_ms: int,
        timestamp_type: int | str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> tuple[dict[str, Any], bytes]:
        type_name = timestamp_type_name(timestamp_type)
        key_b64, value_b64 = _b64(key), _b64(value)
        header_values = [(name, signed_bytes(raw or b"")) for name, raw in headers] if headers else []
        record = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": offset,
            "timestamp": timestamp_ms,
            "timestampType": type_name,
            "key": key_b64,
            "value": value_b64,
            "headers": [{name: raw} for name, raw in header_values],
        }
        header_json = (
            ",".join(f"{{{_json_string(name)}:[{','.join(map(str, raw))}]}}" for name, raw in header_values)
            if header_values
            else ""
        )
        encoded = (
            f'{self._head}{offset},"timestamp":{timestamp_ms},"timestampType":"{type_name}",'
            f'"key":{"null" if key_b64 is None else f"{chr(34)}{key_b64}{chr(34)}"},'
            f'"value":{"null" if value_b64 is None else f"{chr(34)}{value_b64}{chr(34)}"},'
            f'"headers":[{header_json}]}}'
        ).encode()
        return record, encoded


def kafka_record(
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    timestamp_type: int | str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
) -> dict[str, Any]:
    """One record as the function sees it (see KafkaRecords)."""
    return KafkaRecords(topic, partition).build(offset, timestamp_ms, timestamp_type, key, value, headers)[0]


def kafka_envelope(
    *, event_source_arn: str | None, bootstrap_servers: Sequence[str], topic: str, partition: int
) -> Envelope:
    """The event around one partition's records (joined by commas in between):

    MSK (``event_source_arn`` given): ``{"eventSource":"aws:kafka","eventSourceArn":ARN,
    "bootstrapServers":"a,b","records":{"<topic>-<partition>":[`` ... ``]}}``;
    self-managed (None): ``{"eventSource":"SelfManagedKafka","bootstrapServers":...,"records":{...}}``.
    """

    def enc(s: str) -> str:
        return json.dumps(s, ensure_ascii=False)

    servers = enc(",".join(bootstrap_servers))
    records_key = enc(partition_key(topic, partition))
    if event_source_arn is not None:
        head = f'{{"eventSource":{enc(MSK_EVENT_SOURCE)},"eventSourceArn":{enc(event_source_arn)},'
    else:
        head = f'{{"eventSource":{enc(SELF_MANAGED_EVENT_SOURCE)},'
    prefix = f'{head}"bootstrapServers":{servers},"records":{{{records_key}:['
    return Envelope(prefix.encode(), b"]}}")
