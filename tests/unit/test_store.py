"""The SQLite store: mappings, checkpoints and the journal survive reopening the file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engine.model import EventSourceMapping, SourceKind, State
from engine.store.ports import JournalEntry
from engine.store.sqlite import MIGRATIONS, SqliteStore


def _mapping(uuid: str) -> EventSourceMapping:
    return EventSourceMapping(
        uuid=uuid,
        kind=SourceKind.SQS,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        params={"EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q", "BatchSize": 10},
        enabled=True,
        state=State.CREATING,
        state_transition_reason="USER_INITIATED",
        last_modified=1.5,
    )


def test_roundtrip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    a = store.insert_mapping(_mapping("a"))
    b = store.insert_mapping(_mapping("b"))
    assert (a.seq, b.seq) == (1, 2)
    store.save_mapping(a.with_state(State.ENABLED))
    store.put_checkpoint("a", "shardId-0", "100")
    store.put_checkpoint("a", "shardId-0", "200")
    store.append_journal(JournalEntry("a", "queue", "m1", "m9", 9, 1, 0, "success", 3.5, {"x": 1}))
    store.close()

    again = SqliteStore(path)
    got = again.get_mapping("a")
    assert got is not None and got.state is State.ENABLED and got.params["BatchSize"] == 10
    assert [m.uuid for m in again.list_mappings()] == ["a", "b"]
    assert again.checkpoints("a") == {"shardId-0": "200"}
    [entry] = list(again.journal("a"))
    assert (entry.outcome, entry.batch_size, entry.detail) == ("success", 9, {"x": 1})
    again.delete_mapping("a")
    assert again.get_mapping("a") is None and again.checkpoints("a") == {}
    assert again._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_tags_are_kept_per_mapping_and_removed_with_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    store.insert_mapping(_mapping("a"))
    store.insert_mapping(_mapping("b"))
    store.put_tags("a", {"team": "orders", "env": "dev"})
    store.put_tags("b", {"team": "billing"})
    store.put_tags("a", {"env": "prod"})  # a key already set takes the new value
    assert store.tags("a") == {"env": "prod", "team": "orders"}
    store.remove_tags("a", ["env", "absent"])
    assert store.tags("a") == {"team": "orders"}
    store.delete_mapping("a")
    assert store.tags("a") == {} and store.tags("b") == {"team": "billing"}


def _entry(uuid: str, at: float, n: int = 0) -> JournalEntry:
    return JournalEntry(uuid, "queue", f"m{n}", f"m{n}", 1, 1, 0, "success", 1.0, {}, at=at)


def test_queued_journal_rows_are_written_in_one_flush_and_read_after_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    store.insert_mapping(_mapping("a"))
    for n in range(3):
        store.queue_journal(_entry("a", 100.0 + n, n))
    # a reader sees what is queued: it flushes first
    assert [e.first_item for e in store.journal("a")] == ["m0", "m1", "m2"]
    assert store.flush_journal() == 0  # nothing left
    store.queue_journal(_entry("a", 104.0, 4))
    store.queue_journal(_entry("a", 105.0, 5))
    assert store.flush_journal() == 2


def test_journal_retention_by_rows_per_mapping_by_age_and_with_the_mapping(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    for uuid in ("a", "b", "c"):
        store.insert_mapping(_mapping(uuid))
    for n in range(10):
        store.queue_journal(_entry("a", 1000.0 + n, n))
        store.queue_journal(_entry("b", 1000.0 + n, n))
    store.queue_journal(_entry("c", 10.0))  # old
    store.queue_journal(_entry("gone", 1000.0))  # a mapping deleted before its rows went with it
    pruned = store.prune_journal(max_rows_per_mapping=4, max_age_s=500, now=1100.0)
    assert pruned == 6 + 6 + 1
    assert [e.first_item for e in store.journal("a")] == ["m6", "m7", "m8", "m9"]  # the newest stay
    assert [e.first_item for e in store.journal("b")] == ["m6", "m7", "m8", "m9"]
    assert store.journal("c") == []
    assert len(store.journal("gone")) == 1  # orphans go only when asked (a scan, once at start)
    assert store.prune_journal(max_rows_per_mapping=4, max_age_s=500, now=1100.0, orphans=True) == 1
    store.delete_mapping("a")
    assert store.journal("a") == [] and len(store.journal("b")) == 4


def test_captured_payloads_past_the_budget_lose_their_bytes_newest_kept(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    store.insert_mapping(_mapping("a"))
    for n in range(5):
        store.queue_journal(replace(_entry("a", 1000.0 + n, n), payload=b"x" * 100))
    store.prune_journal(max_rows_per_mapping=10, max_age_s=500, now=1010.0, max_payload_bytes=250)
    rows = store.journal("a")
    assert len(rows) == 5  # every row stays
    kept = [store.journal_entry(e.id).payload is not None for e in rows]  # type: ignore[union-attr]
    assert kept == [False, False, False, True, True]  # the two newest fit in 250 bytes
