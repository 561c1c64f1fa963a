"""The embedded default store: SQLite in WAL mode holding mappings, checkpoints and the invocation journal.

Every call is serialized on one lock, so the runners' frequent writes (journal, checkpoints, window state)
can run on a worker thread (:meth:`SqliteStore.offload`) while the control plane's calls, which are small
and indexed, run on the event loop thread. A restart reads everything back.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
import anyio.to_thread

from engine.model import EventSourceMapping, SourceKind, State
from engine.store.ports import JournalEntry

# Each entry migrates the schema from version i to i+1; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE mappings (
        uuid TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        function_arn TEXT NOT NULL,
        params TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        state TEXT NOT NULL,
        state_transition_reason TEXT NOT NULL,
        last_modified REAL NOT NULL,
        last_processing_result TEXT,
        extra TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE checkpoints (
        mapping_uuid TEXT NOT NULL,
        scope TEXT NOT NULL,
        position TEXT NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (mapping_uuid, scope)
    );
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mapping_uuid TEXT NOT NULL,
        at REAL NOT NULL,
        scope TEXT NOT NULL,
        first_item TEXT,
        last_item TEXT,
        batch_size INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        bisect_depth INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        duration_ms REAL NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX journal_by_mapping ON journal (mapping_uuid, id);
    """,
    # tags of a mapping's ARN (TagResource / ListTags), removed with the mapping
    """
    CREATE TABLE tags (
        mapping_uuid TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (mapping_uuid, key)
    );
    """,
    # the journal's retention by age (prune_journal)
    """
    CREATE INDEX journal_by_time ON journal (at);
    """,
    # payload capture: the exact bytes of an attempt's event or of a destination record; the item ids of
    # a queue batch (message ids have no order, a first..last range does not say what was in it)
    """
    ALTER TABLE journal ADD COLUMN payload BLOB;
    ALTER TABLE journal ADD COLUMN items TEXT;
    """,
)


P = ParamSpec("P")
R = TypeVar("R")


def _serialized(method: Callable[Concatenate[SqliteStore, P], R]) -> Callable[Concatenate[SqliteStore, P], R]:
    """One call at a time on the connection, whichever thread makes it (a transaction never interleaves)."""

    @functools.wraps(method)
    def call(self: SqliteStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            return method(self, *args, **kwargs)

    return call


class SqliteStore:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        #: journal rows waiting for the next flush, and the lock of that list alone
        self._queued: list[tuple[Any, ...]] = []
        self._queued_lock = threading.Lock()
        #: one worker thread at a time, so the runners' writes keep their order (made in the event loop)
        self._worker: anyio.CapacityLimiter | None = None
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()
        #: the control plane's reads (Get, List, tags) on a connection of their own: in WAL they never
        #: wait for the runners' writes (a journal flush, a checkpoint of the WAL) on the event loop
        self._reads, self._read_lock = self._db, self._lock
        if self.path != ":memory:":  # an in-memory database is one connection's alone
            self._reads = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._reads.row_factory = sqlite3.Row
            self._reads.execute("PRAGMA busy_timeout=5000")
            self._read_lock = threading.RLock()

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.execute("BEGIN")
            try:
                for statement in filter(str.strip, script.split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={target}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    async def offload(self, call: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run one of this store's calls on the worker thread, off the event loop."""
        if self._worker is None:
            self._worker = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs), limiter=self._worker)

    @_serialized
    def close(self) -> None:
        with self._read_lock:
            self._reads.close()
        self._db.close()

    # --- mappings ---------------------------------------------------------------------------------

    @_serialized
    def insert_mapping(self, m: EventSourceMapping) -> EventSourceMapping:
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM mappings").fetchone()
        m = replace(m, seq=int(row[0]))
        self._db.execute(
            f"INSERT INTO mappings ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)})",
            _columns(m),
        )
        return m

    @_serialized
    def save_mapping(self, m: EventSourceMapping) -> None:
        assignments = ", ".join(f"{c}=:{c}" for c in _COLUMNS if c not in ("uuid", "seq", "kind"))
        self._db.execute(f"UPDATE mappings SET {assignments} WHERE uuid=:uuid", _columns(m))

    @_serialized
    def set_last_processing_result(self, uuid: str, result: str) -> None:
        self._db.execute("UPDATE mappings SET last_processing_result=? WHERE uuid=?", (result, uuid))

    @_serialized
    def set_stopped_reason(self, uuid: str, reason: str, result: str | None) -> None:
        """Lambda stopped the mapping's consumer: StateTransitionReason and LastProcessingResult say why
        (``result`` None: no result since)."""
        self._db.execute(
            "UPDATE mappings SET state_transition_reason=?, last_processing_result=? WHERE uuid=?",
            (reason, result, uuid),
        )

    def get_mapping(self, uuid: str) -> EventSourceMapping | None:
        with self._read_lock:
            row = self._reads.execute("SELECT * FROM mappings WHERE uuid=?", (uuid,)).fetchone()
        return _mapping(row) if row else None

    def list_mappings(
        self,
        *,
        after_seq: int = 0,
        event_source_arn: str | None = None,
        function_arn: Callable[[str], bool] | None = None,
        limit: int | None = None,
    ) -> list[EventSourceMapping]:
        sql = "SELECT * FROM mappings WHERE seq > ?"
        args: list[Any] = [after_seq]
        if event_source_arn is not None:
            sql += " AND json_extract(params, '$.EventSourceArn') = ?"
            args.append(event_source_arn)
        out: list[EventSourceMapping] = []
        with self._read_lock:
            rows = self._reads.execute(sql + " ORDER BY seq", args)
            try:
                for r in rows:
                    if limit is not None and len(out) >= limit:
                        break
                    if function_arn is None or function_arn(r["function_arn"]):
                        out.append(_mapping(r))
            finally:
                rows.close()  # a page stops early: its read transaction ends here, not at collection
        return out

    @_serialized
    def delete_mapping(self, uuid: str) -> None:
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM mappings WHERE uuid=?", (uuid,))
        self._db.execute("DELETE FROM checkpoints WHERE mapping_uuid=?", (uuid,))
        self._db.execute("DELETE FROM tags WHERE mapping_uuid=?", (uuid,))
        self._db.execute("DELETE FROM journal WHERE mapping_uuid=?", (uuid,))
        self._db.execute("COMMIT")

    # --- tags -------------------------------------------------------------------------------------

    def tags(self, mapping_uuid: str) -> dict[str, str]:
        with self._read_lock:
            rows = self._reads.execute(
                "SELECT key, value FROM tags WHERE mapping_uuid=? ORDER BY key", (mapping_uuid,)
            )
            return {r["key"]: r["value"] for r in rows}

    @_serialized
    def put_tags(self, mapping_uuid: str, tags: Mapping[str, str]) -> None:
        """Add tags, replacing the values of keys the mapping already has."""
        self._db.executemany(
            "INSERT INTO tags VALUES (?,?,?)"
            " ON CONFLICT (mapping_uuid, key) DO UPDATE SET value=excluded.value",
            [(mapping_uuid, k, v) for k, v in tags.items()],
        )

    @_serialized
    def remove_tags(self, mapping_uuid: str, keys: Iterable[str]) -> None:
        self._db.executemany(
            "DELETE FROM tags WHERE mapping_uuid=? AND key=?", [(mapping_uuid, k) for k in keys]
        )

    # --- checkpoints ------------------------------------------------------------------------------

    @_serialized
    def put_checkpoint(self, mapping_uuid: str, scope: str, position: str) -> None:
        self._db.execute(
            "INSERT INTO checkpoints VALUES (?,?,?,?) ON CONFLICT (mapping_uuid, scope)"
            " DO UPDATE SET position=excluded.position, updated=excluded.updated",
            (mapping_uuid, scope, position, time.time()),
        )

    @_serialized
    def clear_checkpoints(self, mapping_uuid: str) -> None:
        self._db.execute("DELETE FROM checkpoints WHERE mapping_uuid=?", (mapping_uuid,))

    @_serialized
    def checkpoints(self, mapping_uuid: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT scope, position FROM checkpoints WHERE mapping_uuid=?", (mapping_uuid,)
        )
        return {r["scope"]: r["position"] for r in rows}

    # --- invocation journal -----------------------------------------------------------------------

    def queue_journal(self, e: JournalEntry) -> None:
        """Queue a row for the next :meth:`flush_journal` (any thread; rows keep their order)."""
        row = (
            e.mapping_uuid,
            e.at or time.time(),
            e.scope,
            e.first_item,
            e.last_item,
            e.batch_size,
            e.attempt,
            e.bisect_depth,
            e.outcome,
            e.duration_ms,
            json.dumps(e.detail),
            e.payload,
            None if e.items is None else json.dumps(e.items),
        )
        with self._queued_lock:
            self._queued.append(row)

    @_serialized
    def flush_journal(self) -> int:
        """Write every queued row in one transaction (many lanes' rows at once under load); returns how
        many were written."""
        with self._queued_lock:
            rows, self._queued = self._queued, []
        if rows:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO journal (mapping_uuid, at, scope, first_item, last_item, batch_size,"
                    " attempt, bisect_depth, outcome, duration_ms, detail, payload, items)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def append_journal(self, e: JournalEntry) -> None:
        self.queue_journal(e)
        self.flush_journal()

    @_serialized
    def prune_journal(
        self,
        *,
        max_rows_per_mapping: int,
        max_age_s: float,
        now: float,
        orphans: bool = False,
        max_payload_bytes: int | None = None,
    ) -> int:
        """Retention: rows older than ``max_age_s`` and a mapping's rows beyond its newest
        ``max_rows_per_mapping`` go (with ``orphans``, rows of mappings that no longer exist too).
        Returns how many went."""
        self.flush_journal()
        before = self._db.total_changes
        self._db.execute("BEGIN")
        try:
            self._db.execute("DELETE FROM journal WHERE at < ?", (now - max_age_s,))
            for (uuid,) in self._db.execute("SELECT uuid FROM mappings").fetchall():
                cut = self._db.execute(
                    "SELECT id FROM journal WHERE mapping_uuid=? ORDER BY id DESC LIMIT 1 OFFSET ?",
                    (uuid, max_rows_per_mapping),
                ).fetchone()
                if cut is not None:
                    self._db.execute("DELETE FROM journal WHERE mapping_uuid=? AND id <= ?", (uuid, cut[0]))
            if orphans:  # rows of mappings deleted before their rows went with them (a scan: at start)
                self._db.execute("DELETE FROM journal WHERE mapping_uuid NOT IN (SELECT uuid FROM mappings)")
            if max_payload_bytes is not None:
                self._drop_payloads_past(max_payload_bytes)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return self._db.total_changes - before

    def _drop_payloads_past(self, budget: int) -> None:
        """Captured payloads past ``budget`` bytes, newest kept, lose their bytes (their rows stay)."""
        kept, cut = 0, None
        sized = self._db.execute(
            "SELECT id, length(payload) FROM journal WHERE payload IS NOT NULL ORDER BY id DESC"
        )
        for entry_id, size in sized:
            kept += size
            if kept > budget:
                cut = entry_id
                break
        sized.close()
        if cut is not None:
            self._db.execute(
                "UPDATE journal SET payload = NULL WHERE payload IS NOT NULL AND id <= ?", (cut,)
            )

    @_serialized
    def journal(
        self, mapping_uuid: str | None = None, limit: int = 100, *, after_id: int = 0
    ) -> list[JournalEntry]:
        """The newest ``limit`` rows (of one mapping, newer than ``after_id``), oldest first; without their
        payloads (:meth:`journal_entry` has them)."""
        self.flush_journal()
        sql = f"SELECT {_JOURNAL_LISTED} FROM journal WHERE id > ?"
        args: tuple[Any, ...] = (after_id,)
        if mapping_uuid:
            sql += " AND mapping_uuid=?"
            args = (*args, mapping_uuid)
        sql += " ORDER BY id DESC LIMIT ?"
        return [_journal_entry(r) for r in reversed(self._db.execute(sql, (*args, limit)).fetchall())]

    @_serialized
    def trace(
        self, item: str, *, mapping_uuid: str | None = None, scope: str | None = None
    ) -> list[JournalEntry]:
        """Every row whose batch held ``item``, oldest first: listed among a row's items (a queue's
        message ids, filtered-out records), or within its first..last (a shard's sequence numbers and a
        partition's offsets: decimals, compared as numbers by length, then digits)."""
        self.flush_journal()
        escaped = item.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where = "items LIKE ? ESCAPE '\\'"
        args: list[Any] = [f'%"{escaped}"%']
        if item.isdigit():
            n = len(item)
            where = (
                f"({where} OR (items IS NULL AND first_item IS NOT NULL"
                " AND (length(first_item) < ? OR (length(first_item) = ? AND first_item <= ?))"
                " AND (length(last_item) > ? OR (length(last_item) = ? AND last_item >= ?))))"
            )
            args += [n, n, item, n, n, item]
        if mapping_uuid:
            where += " AND mapping_uuid = ?"
            args.append(mapping_uuid)
        if scope:
            where += " AND scope = ?"
            args.append(scope)
        rows = self._db.execute(f"SELECT {_JOURNAL_LISTED} FROM journal WHERE {where} ORDER BY id", args)
        return [_journal_entry(r) for r in rows.fetchall()]

    @_serialized
    def journal_near(self, entry_id: int, limit: int) -> tuple[list[JournalEntry], int]:
        """The rows of a row's mapping and scope around it, oldest first (``limit`` each side, without
        payloads), and its index among them; ([], -1) when there is no such row."""
        self.flush_journal()
        r = self._db.execute(f"SELECT {_JOURNAL_LISTED} FROM journal WHERE id=?", (entry_id,)).fetchone()
        if r is None:
            return [], -1
        key = (r["mapping_uuid"], r["scope"])
        where = f"SELECT {_JOURNAL_LISTED} FROM journal WHERE mapping_uuid=? AND scope=? AND id"
        before = self._db.execute(f"{where} < ? ORDER BY id DESC LIMIT ?", (*key, entry_id, limit)).fetchall()
        after = self._db.execute(f"{where} > ? ORDER BY id LIMIT ?", (*key, entry_id, limit)).fetchall()
        rows = [*reversed(before), r, *after]
        return [_journal_entry(x) for x in rows], len(before)

    @_serialized
    def journal_entry(self, entry_id: int) -> JournalEntry | None:
        """One row with its captured payload, if any."""
        self.flush_journal()
        row = self._db.execute(f"SELECT {_JOURNAL_LISTED}, payload FROM journal WHERE id=?", (entry_id,))
        r = row.fetchone()
        return None if r is None else _journal_entry(r, payload=r["payload"])


#: a listing's columns: the payloads stay on disk
_JOURNAL_LISTED = (
    "id, mapping_uuid, at, scope, first_item, last_item, batch_size, attempt, bisect_depth, outcome,"
    " duration_ms, detail, items"
)


def _journal_entry(r: sqlite3.Row, *, payload: bytes | None = None) -> JournalEntry:
    return JournalEntry(
        mapping_uuid=r["mapping_uuid"],
        scope=r["scope"],
        first_item=r["first_item"],
        last_item=r["last_item"],
        batch_size=r["batch_size"],
        attempt=r["attempt"],
        bisect_depth=r["bisect_depth"],
        outcome=r["outcome"],
        duration_ms=r["duration_ms"],
        detail=json.loads(r["detail"]),
        at=r["at"],
        id=r["id"],
        items=None if r["items"] is None else json.loads(r["items"]),
        payload=payload,
    )


_COLUMNS = (
    "uuid",
    "seq",
    "kind",
    "function_arn",
    "params",
    "enabled",
    "state",
    "state_transition_reason",
    "last_modified",
    "last_processing_result",
    "extra",
)


def _columns(m: EventSourceMapping) -> dict[str, Any]:
    return {
        "uuid": m.uuid,
        "seq": m.seq,
        "kind": m.kind.value,
        "function_arn": m.function_arn,
        "params": json.dumps(m.params),
        "enabled": int(m.enabled),
        "state": m.state.value,
        "state_transition_reason": m.state_transition_reason,
        "last_modified": m.last_modified,
        "last_processing_result": m.last_processing_result,
        "extra": json.dumps(m.extra),
    }


def _mapping(r: sqlite3.Row) -> EventSourceMapping:
    return EventSourceMapping(
        uuid=r["uuid"],
        kind=SourceKind(r["kind"]),
        function_arn=r["function_arn"],
        params=json.loads(r["params"]),
        enabled=bool(r["enabled"]),
        state=State(r["state"]),
        state_transition_reason=r["state_transition_reason"],
        last_modified=r["last_modified"],
        last_processing_result=r["last_processing_result"],
        seq=r["seq"],
        extra=json.loads(r["extra"]),
    )
