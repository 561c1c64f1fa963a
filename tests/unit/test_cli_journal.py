"""`esm journal` shows discards and on-failure destination deliveries beside the invocation attempts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.store.ports import DESTINATION_FAILED, DESTINATION_SENT, DISCARDED, JournalEntry
from engine.store.sqlite import SqliteStore

DLQ = "arn:aws:sqs:us-east-1:123456789012:dlq"


def _entry(outcome: str, detail: dict[str, object]) -> JournalEntry:
    return JournalEntry("6f1c0000", "shardId-0", "101", "101", 1, 3, 0, outcome, 0.0, detail)


def test_discards_and_deliveries_are_listed_with_their_detail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteStore(tmp_path / "esm.sqlite3")
    reason = {"reason": "RetryAttemptsExhausted", "destination": DLQ}
    store.append_journal(_entry("function_error", {}))
    store.append_journal(_entry(DISCARDED, reason))
    store.append_journal(_entry(DESTINATION_FAILED, {**reason, "error": "SendMessage failed"}))
    store.append_journal(_entry(DESTINATION_SENT, reason))
    store.close()

    main(["journal", "--data-dir", str(tmp_path)])
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[-2:] == ["ITEMS", "DETAIL"]
    outcomes = ["function_error", DISCARDED, DESTINATION_FAILED, DESTINATION_SENT]
    assert [f"  {o}  " in r for r, o in zip(rows, outcomes, strict=True)] == [True] * 4
    assert rows[0].endswith("101..101")
    assert rows[1].endswith(f"101..101  reason=RetryAttemptsExhausted destination={DLQ}")
    assert rows[2].endswith(f"destination={DLQ} error=SendMessage failed")

    main(["journal", "--data-dir", str(tmp_path), "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert [e["outcome"] for e in listed][1:] == [DISCARDED, DESTINATION_FAILED, DESTINATION_SENT]
    assert listed[1]["detail"] == reason
