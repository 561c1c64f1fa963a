"""The dashboard: a page on the engine's own port (no second server; its assets are served from here, so it
works without internet access) and the JSON it polls every two seconds.

- ``GET /dashboard``: the page; ``/dashboard/static/...``: its script, style and uPlot (vendored);
- ``GET /dashboard/api/mappings``: every mapping, its state, LastProcessingResult, StateTransitionReason
  and counts;
- ``GET /dashboard/api/mappings/{uuid}/series``: the last hour, a sample every SAMPLE_S: records/s, failed
  records/s, errors/s and lag (IteratorAge in ms for streams, OffsetLag in records for Kafka);
- ``GET /dashboard/api/mappings/{uuid}/journal``: its newest journal rows;
- ``GET /dashboard/api/journal/{id}/tree``: the attempt tree of the batch that row belongs to: each retry,
  each bisect half, partial-failure retries, the discard and the destination delivery, with timings.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
from aiohttp import web

from engine.metrics import INVOKED_OUTCOMES, EngineMetrics, Tally
from engine.model import EventSourceMapping
from engine.pipeline.invoking import INVOKE_ERROR
from engine.store.ports import JournalEntry, JournalReader, MappingStore, RunnerStore

STATIC = Path(__file__).parent / "static"
ASSETS = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
    "vendor/uplot/uPlot.iife.min.js": "application/javascript",
    "vendor/uplot/uPlot.min.css": "text/css",
}
SAMPLE_S = 5.0
HISTORY_S = 3600.0
#: the most rows one batch's tree reads (a poison record retried for hours)
TREE_ROWS = 5000
ATTEMPTS = INVOKED_OUTCOMES | {INVOKE_ERROR}


#: one sample of a mapping: records invoked, records of failed attempts, invocations, function errors,
#: lag (None for a queue)
Values = tuple[int, int, int, int, float | None]


class History:
    """Per mapping, a sample every SAMPLE_S over the last hour, from the engine's metrics. An idle
    mapping keeps no new samples (its values did not change): a thousand idle mappings cost next to
    nothing; when it wakes, its last values are stamped at the last sample time first, so the rate
    covers the last interval only."""

    def __init__(
        self,
        metrics: EngineMetrics,
        *,
        sample_s: float = SAMPLE_S,
        span_s: float = HISTORY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.sample_s = sample_s
        self.span_s = span_s
        self.clock = clock
        self._keep = max(2, math.ceil(span_s / sample_s) + 1)
        self._samples: dict[str, deque[tuple[float, Values]]] = {}
        #: per idle mapping, the last sample time its values were seen unchanged
        self._unchanged_at: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            self.sample()
            await anyio.sleep(self.sample_s)

    def sample(self) -> None:
        now = self.clock()
        for uuid, tally in list(self.metrics.tallies.items()):
            now_values = tally.values()
            ring = self._samples.setdefault(uuid, deque(maxlen=self._keep))
            if ring and ring[-1][1] == now_values:
                self._unchanged_at[uuid] = now
                continue
            unchanged_at = self._unchanged_at.pop(uuid, None)
            if ring and unchanged_at is not None:
                ring.append((unchanged_at, ring[-1][1]))
            ring.append((now, now_values))
        for uuid in set(self._samples) - set(self.metrics.tallies):
            del self._samples[uuid]  # deleted mappings
            self._unchanged_at.pop(uuid, None)

    def series(self, uuid: str) -> dict[str, Any]:
        """Rates between consecutive samples of the last hour, stamped at the later one."""
        ring = list(self._samples.get(uuid, ()))
        if ring and uuid in self._unchanged_at:
            ring.append((self._unchanged_at[uuid], ring[-1][1]))  # idle since: rates fall to zero
        since = self.clock() - self.span_s
        out: dict[str, list[Any]] = {"t": [], "records_per_s": [], "failed_per_s": [], "errors_per_s": []}
        out["lag"] = []
        for (ta, a), (tb, b) in itertools.pairwise(ring):
            if tb < since:
                continue
            dt = max(tb - ta, 1e-9)
            out["t"].append(round(tb, 3))
            out["records_per_s"].append(round(max(0, b[0] - a[0]) / dt, 3))
            out["failed_per_s"].append(round(max(0, b[1] - a[1]) / dt, 3))
            out["errors_per_s"].append(round(max(0.0, b[3] - a[3]) / dt, 3))
            out["lag"].append(b[4])
        return {"sample_s": self.sample_s, **out}


def _source(m: EventSourceMapping) -> str:
    servers = (m.params.get("SelfManagedEventSource") or {}).get("Endpoints", {})
    return m.event_source_arn or ",".join(servers.get("KAFKA_BOOTSTRAP_SERVERS", []))


def _row(e: JournalEntry) -> dict[str, Any]:
    out = asdict(e)
    out.pop("payload", None)
    out["captured"] = e.payload is not None
    return out


class Dashboard:
    def __init__(
        self,
        store: MappingStore,
        runner_store: RunnerStore,
        journal_reader: JournalReader,
        metrics: EngineMetrics,
        history: History,
    ) -> None:
        self.store = store
        #: the journal's reads go through the runners' worker thread, off the event loop
        self.runner_store = runner_store
        self.journal_reader = journal_reader
        self.metrics = metrics
        self.history = history

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/dashboard", self.page)
        app.router.add_get("/dashboard/", self.page)
        app.router.add_get("/dashboard/static/{name:.+}", self.asset)
        app.router.add_get("/dashboard/api/mappings", self.mappings)
        app.router.add_get("/dashboard/api/mappings/{uuid}/series", self.series)
        app.router.add_get("/dashboard/api/mappings/{uuid}/journal", self.journal)
        app.router.add_get("/dashboard/api/journal/{id:\\d+}/tree", self.tree)

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ASSETS:  # a fixed list: no path leaves the static folder
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name, headers={"Content-Type": ASSETS[name]})

    async def mappings(self, request: web.Request) -> web.Response:
        items = self.store.list_mappings()
        out = []
        for m in items:
            tally = self.metrics.tallies.get(m.uuid) or Tally()
            out.append(
                {
                    "uuid": m.uuid,
                    "state": m.state.value,
                    "state_transition_reason": m.state_transition_reason,
                    "last_processing_result": m.last_processing_result,
                    "function": m.function_name,
                    "source": _source(m),
                    "kind": m.kind.value,
                    "batch_size": m.params.get("BatchSize"),
                    "records": tally.records,
                    "failed_records": tally.failed,
                    "invocations": tally.invocations,
                    "errors": tally.errors,
                }
            )
        return web.json_response({"now": time.time(), "mappings": out})

    async def series(self, request: web.Request) -> web.Response:
        return web.json_response(self.history.series(request.match_info["uuid"]))

    async def journal(self, request: web.Request) -> web.Response:
        limit = min(int(request.query.get("limit", "50")), 500)
        s = self.runner_store
        rows = await s.offload(self.journal_reader.journal, request.match_info["uuid"], limit)
        return web.json_response({"rows": [_row(e) for e in reversed(rows)]})

    async def tree(self, request: web.Request) -> web.Response:
        s = self.runner_store
        entry_id = int(request.match_info["id"])
        rows, at = await s.offload(self.journal_reader.journal_near, entry_id, TREE_ROWS)
        if at < 0:
            raise web.HTTPNotFound(text=f"no journal row {entry_id}")
        root = batch_root(rows, at)
        return web.json_response({"root": rows[root].id, "rows": [_row(e) for e in batch_tree(rows[root:])]})


def _number(s: str | None) -> int | None:
    return int(s) if s is not None and s.isdigit() else None


def batch_root(rows: Sequence[JournalEntry], at: int) -> int:
    """The index of the first row of the batch ``rows[at]`` belongs to (rows of one scope, oldest first).
    Walking back over invocations: one whose first..last holds the batch found so far is its parent or
    an earlier try; a top-level one wholly before it is the previous batch's. A queue row is a batch of
    its own."""
    e = rows[at]
    low, high = _number(e.first_item), _number(e.last_item)
    if e.items is not None or low is None or high is None:
        return at
    root = at
    for i in range(at - 1, -1, -1):
        first, last = _number(rows[i].first_item), _number(rows[i].last_item)
        if first is None or last is None or rows[i].outcome not in ATTEMPTS:
            continue  # a discard or a delivery: the batch's invocations say where it starts
        if first <= low and high <= last:
            root, low, high = i, first, last
        elif last < low and rows[i].bisect_depth == 0:
            break
    return root


def batch_tree(rows: Sequence[JournalEntry]) -> list[JournalEntry]:
    """From a batch's first row and the rows of its scope after it (oldest first): the rows of that batch,
    whatever became of it. A stream batch's are those within its first..last (a retry, a bisect half, a
    partial-failure retry, a discard, a destination delivery) until a batch beyond it starts; a queue
    batch's are those holding one of its messages (a redelivery comes in a later batch)."""
    root, rest = rows[0], rows[1:]
    if root.items is not None:
        held = set(root.items)
        return [root, *(e for e in rest if e.items is not None and held.intersection(e.items))]
    low, high = _number(root.first_item), _number(root.last_item)
    if low is None or high is None:
        return [root]
    tree = [root]
    for e in rest:
        first, last = _number(e.first_item), _number(e.last_item)
        if first is None or last is None:
            continue  # a window's final invocation carries no records
        if first > high:
            break  # the next batch: this one is over
        if low <= first and last <= high:
            tree.append(e)
    return tree
