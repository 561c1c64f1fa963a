"""The SQLite store: mappings, checkpoints and the journal survive reopening the file."""

from __future__ import annotations

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
