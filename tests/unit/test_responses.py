"""Partial batch responses (spec 4.5 / 5.2): every success, partial and invalid form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.responses import ResponseKind, parse_batch_item_failures

IDS = {"a", "b", "c"}


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b'""',
        b"[]",
        b"{}",
        b"null",
        b'{"batchItemFailures": []}',
        b'{"batchItemFailures": null}',
        b"  \n",
        b'{"other": 1}',
        b'"ok"',
        b"42",
    ],
)
def test_success_forms(payload: bytes) -> None:
    assert parse_batch_item_failures(payload, IDS).kind is ResponseKind.SUCCESS


@pytest.mark.parametrize(
    "doc",
    [
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"foo": "notvalid"}]},
        {"batchItemFailures": [{"foo": None}]},
        {"batchItemFailures": [{"itemIdentifier": 123}]},
        {"batchItemFailures": [{"itemIdentifier": "zzz"}]},
        {"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "nope"}]},
        {"batchItemFailures": "a"},
        {"batchItemFailures": ["a"]},
    ],
)
def test_whole_batch_failure_forms(doc: Any) -> None:
    assert parse_batch_item_failures(json.dumps(doc).encode(), IDS).kind is ResponseKind.INVALID


def test_not_json_is_whole_batch_failure() -> None:
    parsed = parse_batch_item_failures(b"{not json", IDS)
    assert parsed.kind is ResponseKind.INVALID
    assert "not JSON" in parsed.reason


def test_partial_keeps_order_and_dedupes() -> None:
    doc = {"batchItemFailures": [{"itemIdentifier": "c"}, {"itemIdentifier": "a"}, {"itemIdentifier": "c"}]}
    parsed = parse_batch_item_failures(json.dumps(doc).encode(), IDS)
    assert parsed.kind is ResponseKind.PARTIAL
    assert parsed.failed == ("c", "a")


def test_custom_identifier_for_kafka_shapes() -> None:
    def ident(v: Any) -> Any:
        if isinstance(v, dict) and isinstance(v.get("partition"), str) and isinstance(v.get("offset"), int):
            return (v["partition"], v["offset"])
        return None

    ids = {("t-0", 5), ("t-1", 9)}
    ok = {"batchItemFailures": [{"itemIdentifier": {"partition": "t-1", "offset": 9}}]}
    assert parse_batch_item_failures(json.dumps(ok).encode(), ids, ident).failed == (("t-1", 9),)
    bad = {"batchItemFailures": [{"itemIdentifier": {"partition": "t-1", "offset": 10}}]}
    assert parse_batch_item_failures(json.dumps(bad).encode(), ids, ident).kind is ResponseKind.INVALID
