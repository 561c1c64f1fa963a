"""The ledger, pure: what became of each record, duplicates and their causes, the order check, the
journal's rows mapped back to records, pending and lost at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from soak.ledger import Ledger, percentile, settle_counts


@dataclass
class Row:
    """A journal row as engine.store.ports.JournalEntry has it (the fields the ledger reads)."""

    outcome: str
    scope: str = "shardId-0"
    items: list[str] | None = None
    first_item: str | None = None
    last_item: str | None = None
    batch_size: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


def _shard(ledger: Ledger, n: int, shard: str = "shardId-0", t: float = 100.0) -> list[str]:
    keys = []
    for seq in range(1, n + 1):
        key = f"{shard}:{seq * 10}"
        ledger.sent(key, seq=seq, mapping="m", put_t=t, group=shard, position=seq * 10, scope=shard)
        keys.append(key)
    return keys


def _call(ledger: Ledger, keys: list[str], t: float, outcome: str = "ok", **more: Any) -> None:
    ledger.invocation({"t0": t, "t1": t + 0.01, "k": keys, "o": outcome, **more})


def test_retries_are_not_duplicates_but_a_success_delivered_again_is() -> None:
    led = Ledger()
    keys = _shard(led, 3)
    _call(led, keys, 101.0, "error")
    _call(led, keys, 102.0)
    assert (led.retries, led.duplicates, led.errors) == (1, 0, 1)
    led.fault(103.0, "engine_kill")
    _call(led, keys[2:], 104.0)  # after the SIGKILL: the last record's checkpoint had not been written
    assert led.duplicates == 1
    assert dict(led.duplicate_causes) == {"engine SIGKILL before the checkpoint or delete": 1}
    _call(led, keys[2:], 105.0)  # its last success was after the SIGKILL
    assert (
        led.duplicate_causes["at-least-once redelivery (visibility timeout, rebalance or retry of the batch)"]
        == 1
    )
    assert led.latencies_ms == [1000.0, 1000.0, 1000.0]  # from the put to the first invocation
    iv = led.take()
    assert (iv.invocations, iv.first_invoked, iv.duplicates) == (4, 3, 2)
    assert led.take().invocations == 0


def test_a_partial_batch_response_succeeds_only_the_records_it_does_not_name() -> None:
    led = Ledger()
    keys = _shard(led, 3)
    _call(led, keys, 101.0, "partial", x=[keys[1]])
    assert [led.records[k].successes for k in keys] == [1, 0, 1]
    assert led.unaccounted() == [keys[1]]


def test_a_record_first_invoked_after_a_later_one_of_its_shard_is_an_order_violation() -> None:
    led = Ledger()
    a = _shard(led, 3, "shardId-0")
    b = _shard(led, 2, "shardId-1")
    _call(led, [a[0], b[1]], 101.0)
    _call(led, [a[2]], 102.0)
    _call(led, [b[0], a[1]], 103.0)  # both came after a later record of their shard
    assert led.order_violations["m"] == 2
    led2 = Ledger()
    c = _shard(led2, 2)
    _call(led2, c, 101.0, "throttle")  # never reached the function: not a first invocation
    _call(led2, c, 102.0)
    assert led2.order_violations["m"] == 0 and led2.records[c[0]].first_t == 102.0
    assert (led2.invocations, led2.throttles, led2.retries) == (1, 1, 0)


def test_records_the_producer_has_not_registered_yet_wait_then_count_as_foreign() -> None:
    led = Ledger()
    _call(led, ["q:1"], 101.0)
    assert led.invocations == 0
    led.sent("q:1", seq=1, mapping="m", put_t=100.0, group=None, position=1, scope=None)
    led.retry()
    assert led.invocations == 1 and led.records["q:1"].successes == 1
    _call(led, ["q:1", "other:9"], 102.0)
    led.retry(final=True)
    assert led.foreign == 1 and led.records["q:1"].successes == 2


def test_journal_rows_map_to_records_by_list_by_range_and_by_item_id() -> None:
    led = Ledger()
    keys = _shard(led, 5)
    led.journal_rows(
        [
            (
                Row(
                    "destination_sent", first_item="20", last_item="40", batch_size=3, detail={"reason": "R"}
                ),
                "m",
            ),
            (Row("filtered_out", items=["50"], batch_size=1), "m"),
            (
                Row(
                    "discarded", items=["10"], batch_size=1, detail={"reason": "age", "destination": "arn:q"}
                ),
                "m",
            ),
        ]
    )
    assert [led.records[k].end for k in keys] == [
        None,
        "to_destination",
        "to_destination",
        "to_destination",
        "filtered_out",
    ]
    assert dict(led.destination_reasons) == {"R": 3}
    led.journal_rows([(Row("discarded", items=["10"], batch_size=1, detail={"reason": "age"}), "m")])
    assert led.records[keys[0]].end == "discarded"
    # DynamoDB: puts do not say where a record went; the tap's item ids do
    led.sent("pk/1", seq=9, mapping="d", put_t=1.0, group=None, position=9, scope=None)
    _call(led, ["pk/1"], 2.0, "error", i=["777"])
    led.journal_rows(
        [(Row("destination_sent", first_item="777", last_item="777", detail={"reason": "R"}), "d")]
    )
    assert led.records["pk/1"].end == "to_destination"


def test_at_the_end_unaccounted_records_are_pending_while_the_source_holds_them_else_lost() -> None:
    led = Ledger()
    keys = _shard(led, 6)
    _call(led, keys[:2], 101.0)
    led.journal_rows([(Row("filtered_out", scope="queue", batch_size=1), "m")])  # ids the soak cannot map
    pending, lost = settle_counts(led, "m", pending_by_source=2)
    assert led.records[keys[2]].end == "filtered_out"  # by the journal's count
    assert (pending, lost) == (keys[4:], [keys[3]])
    assert led.by_mapping("m")["filtered_out"] == 1


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
