"""The ledger: every record produced, and what became of it. Pure: fed the producers' puts, the tap's
invocation lines, the journal's destination and filter rows and the faults' times; it answers per
interval (for the time series) and at the end (the verdict: lost is 0, or the missing ids).

A record ends as one of: invoked (successfully, at least once), filtered out, at a destination (or
discarded without one: AWS drops it, the journal says why), pending (the source still holds it when the
soak stops), or lost. A duplicate is a record delivered again after an invocation that succeeded with
it; its cause is the fault in between (engine restart, broker restart), else the source's at-least-once
redelivery. Order: a record first invoked after a later record of its group (shard, partition, message
group) was first invoked is an order violation.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Entry:
    """One record: where it went and when."""

    seq: int
    mapping: str
    put_t: float
    group: str | None
    position: int
    poison: bool = False
    first_t: float | None = None
    invocations: int = 0
    successes: int = 0
    last_success_t: float | None = None
    end: str | None = None  # filtered_out / to_destination / discarded
    reason: str = ""


@dataclass
class Interval:
    """What the ledger saw since the last ``take()``."""

    invocations: int = 0
    errors: int = 0
    timeouts: int = 0
    throttles: int = 0
    retries: int = 0
    duplicates: int = 0
    first_invoked: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    durations_ms: list[float] = field(default_factory=list)
    busy_s: float = 0.0
    concurrency: int = 0
    to_destination: int = 0
    filtered_out: int = 0


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank on sorted ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


class Ledger:
    def __init__(self) -> None:
        self.records: dict[str, Entry] = {}
        #: per scope (shard / topic-partition): sorted (position, key), for the journal's first..last rows
        self._by_scope: dict[str, list[tuple[int, str]]] = defaultdict(list)
        #: item ids the tap saw, to the record keys (a DynamoDB sequence number -> pk/sk)
        self._item_keys: dict[str, str] = {}
        self._max_position: dict[str, int] = {}
        self._unmatched: list[dict[str, Any]] = []
        self.fault_times: list[tuple[float, str]] = []
        self.interval = Interval()
        self.order_violations: Counter[str] = Counter()
        self.duplicate_causes: Counter[str] = Counter()
        self.destination_reasons: Counter[str] = Counter()
        self.foreign = 0  # invoked records this soak did not produce
        self.invocations = 0  # that reached the function
        self.throttles = 0
        self.errors = 0
        self.retries = 0
        self.duplicates = 0
        self.latencies_ms: list[float] = []
        self.latencies_by: defaultdict[str, list[float]] = defaultdict(list)  # per mapping
        self.durations_ms: list[float] = []
        #: seconds of invocations per function (GB-seconds at its memory)
        self.seconds_by_function: defaultdict[str, float] = defaultdict(float)
        self.filtered_count: Counter[str] = Counter()  # per mapping, by the journal's counts
        self.errors_by: Counter[str] = Counter()  # per mapping
        self.retries_by: Counter[str] = Counter()

    # --- feeding -------------------------------------------------------------------------------------

    def sent(
        self,
        key: str,
        *,
        seq: int,
        mapping: str,
        put_t: float,
        group: str | None,
        position: int,
        scope: str | None,
        poison: bool = False,
    ) -> None:
        self.records[key] = Entry(seq, mapping, put_t, group, position, poison)
        if scope is not None:
            bisect.insort(self._by_scope[scope], (position, key))

    def fault(self, t: float, kind: str) -> None:
        self.fault_times.append((t, kind))

    def invocation(self, line: Mapping[str, Any]) -> None:
        """One tap line; one whose records the producers have not registered yet waits for ``retry()``."""
        keys: list[str] = line.get("k") or []
        if any(k not in self.records for k in keys):
            self._unmatched.append(dict(line))
            return
        self._apply(line)

    def retry(self, final: bool = False) -> None:
        """Tap lines held back for records not yet registered; at the end, what is still unknown is
        foreign (another run's records in a reused source)."""
        waiting, self._unmatched = self._unmatched, []
        for line in waiting:
            keys = line.get("k") or []
            if all(k in self.records for k in keys):
                self._apply(line)
            elif final:
                known = [k for k in keys if k in self.records]
                self.foreign += len(keys) - len(known)
                self._apply({**line, "k": known})
            else:
                self._unmatched.append(line)

    def _apply(self, line: Mapping[str, Any]) -> None:
        iv = self.interval
        outcome = line.get("o", "ok")
        t0, t1 = float(line["t0"]), float(line.get("t1", line["t0"]))
        keys: list[str] = line.get("k") or []
        failed = set(line.get("x") or ())
        for item, key in zip(line.get("i") or (), keys, strict=False):
            self._item_keys[item] = key
        if outcome == "cancelled":  # the engine stopped mid-invocation; the record comes again
            return
        mapping = self.records[keys[0]].mapping if keys else ""
        if outcome in ("throttle", "invoke_error"):
            # never reached the function: not an invocation (as Lambda's Invocations metric counts)
            self.throttles += outcome == "throttle"
            iv.throttles += outcome == "throttle"
            self.errors_by[mapping] += outcome == "invoke_error"
            return
        self.invocations += 1
        iv.invocations += 1
        iv.concurrency = max(iv.concurrency, int(line.get("c", 0)) + 1)
        ms = (t1 - t0) * 1000
        self.durations_ms.append(ms)
        iv.durations_ms.append(ms)
        iv.busy_s += t1 - t0
        self.seconds_by_function[str(line.get("f", ""))] += t1 - t0
        if outcome in ("error", "timeout"):
            self.errors += 1
            self.errors_by[mapping] += 1
            iv.errors += 1
            iv.timeouts += outcome == "timeout"
        retried = False
        for key in keys:
            e = self.records[key]
            e.invocations += 1
            retried = retried or e.invocations > 1
            if e.first_t is None:
                e.first_t = t0
                latency = (t0 - e.put_t) * 1000
                self.latencies_ms.append(latency)
                self.latencies_by[e.mapping].append(latency)
                iv.latencies_ms.append(latency)
                iv.first_invoked += 1
                self._check_order(key, e)
            if outcome in ("ok", "partial") and key not in failed:
                if e.successes:
                    self.duplicates += 1
                    iv.duplicates += 1
                    self.duplicate_causes[self._cause(e.last_success_t or t0, t0)] += 1
                e.successes += 1
                e.last_success_t = t1
        if retried:
            self.retries += 1
            self.retries_by[mapping] += 1
            iv.retries += 1

    def _check_order(self, key: str, e: Entry) -> None:
        if e.group is None:
            return
        top = self._max_position.get(e.group)
        if top is not None and e.position < top:
            self.order_violations[e.mapping] += 1
        else:
            self._max_position[e.group] = e.position

    def _cause(self, since: float, at: float) -> str:
        between = [kind for t, kind in self.fault_times if since <= t <= at]
        if "engine_kill" in between:
            return "engine SIGKILL before the checkpoint or delete"
        if "broker_restart" in between:
            return "broker restart (redelivered)"
        return "at-least-once redelivery (visibility timeout, rebalance or retry of the batch)"

    def journal_rows(self, rows: Iterable[Any]) -> None:
        """Destination deliveries, discards without a destination, filtered-out records: the journal
        rows (engine.store.ports.JournalEntry) of the soak's mappings, each once, with ``mapping`` the
        soak's name for the row's mapping set as ``row.soak_mapping``."""
        for row, mapping in rows:
            outcome = row.outcome
            if outcome not in ("destination_sent", "discarded", "filtered_out"):
                continue
            if outcome == "discarded" and row.detail.get("destination"):
                continue  # its destination_sent row follows
            keys = self._row_keys(row)
            if outcome == "filtered_out" and not keys:
                self.filtered_count[mapping] += row.batch_size  # ids the soak cannot map (MQ)
                continue
            end = {"destination_sent": "to_destination", "discarded": "discarded"}.get(
                outcome, "filtered_out"
            )
            reason = str(row.detail.get("reason", "")) if outcome != "filtered_out" else ""
            self.mark(keys, end, reason)

    def mark(self, keys: Iterable[str], end: str, reason: str = "") -> None:
        for key in keys:
            e = self.records.get(key)
            if e is None or e.end is not None:
                continue
            e.end, e.reason = end, reason
            if end == "to_destination":
                self.destination_reasons[reason] += 1
                self.interval.to_destination += 1
            elif end == "filtered_out":
                self.interval.filtered_out += 1

    def _row_keys(self, row: Any) -> list[str]:
        scope = str(row.scope).split("/lane-")[0]
        if row.items is not None:
            out = []
            for item in row.items:
                for candidate in (f"{scope}:{item}", item, self._item_keys.get(item)):
                    if candidate in self.records:
                        out.append(candidate)
                        break
            return out
        if row.first_item is None:
            return []
        low, high = int(row.first_item), int(row.last_item)
        entries = self._by_scope.get(scope, [])
        start = bisect.bisect_left(entries, (low, ""))
        stop = bisect.bisect_right(entries, (high, "\uffff"))
        if stop > start:
            return [k for _, k in entries[start:stop]]
        # a source whose puts do not say where a record went (DynamoDB): the item ids the tap saw;
        # a stream's sequence numbers grow across its shards, so the range needs no shard
        return [k for item, k in self._item_keys.items() if item.isdigit() and low <= int(item) <= high]

    def take(self) -> Interval:
        iv, self.interval = self.interval, Interval()
        return iv

    # --- the verdict ---------------------------------------------------------------------------------

    def unaccounted(self, mapping: str | None = None) -> list[str]:
        return [
            k
            for k, e in self.records.items()
            if (mapping is None or e.mapping == mapping) and not e.successes and e.end is None
        ]

    def by_mapping(self, mapping: str) -> dict[str, int]:
        es = [e for e in self.records.values() if e.mapping == mapping]
        return {
            "sent": len(es),
            "invoked": sum(1 for e in es if e.first_t is not None),
            "duplicates": sum(max(0, e.successes - 1) for e in es),
            "filtered_out": sum(1 for e in es if e.end == "filtered_out" and not e.successes),
            "to_destination": sum(1 for e in es if e.end == "to_destination" and not e.successes),
            "discarded": sum(1 for e in es if e.end == "discarded" and not e.successes),
            "order_violations": self.order_violations[mapping],
            "errors": self.errors_by[mapping],
            "retries": self.retries_by[mapping],
        }


def settle_counts(ledger: Ledger, mapping: str, pending_by_source: int) -> tuple[list[str], list[str]]:
    """The mapping's unaccounted records split into (pending, lost): filtered out by the journal's count
    first (sources whose ids the journal does not share), then what the source still holds
    (``pending_by_source``: its depth / lag), oldest last; the rest is lost."""
    left = sorted(ledger.unaccounted(mapping), key=lambda k: ledger.records[k].seq)
    by_count = min(ledger.filtered_count[mapping], len(left))
    if by_count:
        ledger.mark(left[:by_count], "filtered_out", "by the journal's count")
        left = left[by_count:]
    pending = left[len(left) - min(pending_by_source, len(left)) :] if pending_by_source else []
    lost = left[: len(left) - len(pending)]
    return pending, lost
