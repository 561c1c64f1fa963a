"""The soak's pure parts: rates, record templates, the plan file and the one-line form's options."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from soak.load import PlanError, Records, duration_s, parse_rate
from soak.plan import fail_on_options, fault_options, parse_plan


def test_rates_over_time() -> None:
    assert parse_rate(200, "r").at(123.0) == 200
    ramp = parse_rate({"ramp": {"from": 10, "to": 110, "over": "100s"}}, "r")
    assert [ramp.at(t) for t in (0, 50, 100, 500)] == [10, 60, 110, 110]
    bursts = parse_rate({"bursts": {"base": 5, "peak": 500, "every": "1m", "length": "5s"}}, "r")
    assert [bursts.at(t) for t in (0, 4.9, 5, 59, 60, 61)] == [500, 500, 5, 5, 500, 500]
    steps = parse_rate(
        {"schedule": [{"at": 0, "rate": 10}, {"at": "2m", "rate": 0}, {"at": "3m", "rate": 40}]}, "r"
    )
    assert [steps.at(t) for t in (0, 119, 120, 179, 180)] == [10, 10, 0, 0, 40]
    assert steps.peak_rate == 40


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "a number >= 0"),
        ({"ramp": {"from": 1}}, "to is required"),
        ({"bursts": {"peak": 9, "every": "5s", "length": "6s"}}, "length must be above 0 and below every"),
        ({"schedule": [{"at": "2m", "rate": 1}, {"at": "1m", "rate": 2}]}, "time order"),
        ("fast", "expected records per second"),
    ],
)
def test_a_bad_rate_says_where_and_why(value: Any, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_rate(value, "mappings[0].load.rate")


def test_durations() -> None:
    assert [duration_s(v, "d") for v in ("30m", "90s", "1.5h", "250ms", 12)] == [1800, 90, 5400, 0.25, 12]
    with pytest.raises(PlanError, match="expected a duration"):
        duration_s("soon", "d")


def _take(records: Records, n: int) -> list[Any]:
    stream = records.stream(random.Random(1), lambda: 1_700_000_000.0, "where")
    return [next(stream) for _ in range(n)]


def test_a_template_generates_typed_fields_and_the_key_follows_a_field() -> None:
    template = {
        "id": "{{uuid}}",
        "n": "{{seq}}",
        "at": "{{now}}",
        "when": "{{iso}}",
        "qty": "{{int:1:3}}",
        "who": "{{choice:a|b}}",
        "pad": "{{pad:16}}",
        "label": "order-{{seq}}",
        "nested": [{"price": "{{float:1:2}}"}],
    }
    out = _take(Records(template=template, key="{{field:who}}"), 3)
    docs = [json.loads(r.body) for r in out]
    assert [d["n"] for d in docs] == [1, 2, 3] and [d["label"] for d in docs] == [
        "order-1",
        "order-2",
        "order-3",
    ]
    assert all(d["at"] == 1_700_000_000_000 and d["when"].startswith("2023-11-14T22:13:20") for d in docs)
    assert all(1 <= d["qty"] <= 3 and d["who"] in "ab" and len(d["pad"]) == 16 for d in docs)
    assert all(1 <= d["nested"][0]["price"] <= 2 for d in docs)
    assert [r.key for r in out] == [d["who"] for d in docs]
    assert len({d["id"] for d in docs}) == 3


def test_a_jsonl_file_replays_and_loops(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_text('{"c": "x", "v": 1}\n\n{"c": "y", "v": 2}\n')
    once = list(Records(jsonl=path, key="{{field:c}}").stream(random.Random(1), lambda: 0.0, "w"))
    assert [(r.key, r.doc["v"]) for r in once] == [("x", 1), ("y", 2)]
    looped = _take(Records(jsonl=path, key="{{field:c}}", loop=True), 5)
    assert [r.doc["v"] for r in looped] == [1, 2, 1, 2, 1]


def test_a_generator_function_yields_records() -> None:
    records = _take(Records(generator="tests.unit.test_soak_plan:_orders", key="k-{{seq}}"), 2)
    assert [r.body for r in records] == [b"raw-0", b'{"n":1}'] and [r.key for r in records] == ["k-1", "k-2"]


def _orders() -> Any:
    yield b"raw-0"
    yield {"n": 1}


def test_unknown_placeholders_and_missing_fields_are_named() -> None:
    with pytest.raises(PlanError, match=r"unknown placeholder \{\{nope\}\}"):
        _take(Records(template={"a": "{{nope}}"}), 1)
    with pytest.raises(PlanError, match="no field 'customer'"):
        _take(Records(template={"a": 1}, key="{{field:customer}}"), 1)


def _plan(**over: Any) -> dict[str, Any]:
    mapping = {
        "name": "q",
        "mapping": {"FunctionName": "orders", "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:orders"},
        "load": {"rate": 10, "duration": "1m"},
    }
    return {"mappings": [{**mapping, **over}]}


def test_a_plan_reads_its_source_from_the_mapping(tmp_path: Path) -> None:
    plan = parse_plan(_plan(), base_dir=tmp_path)
    m = plan.mappings[0]
    assert (m.source.kind, m.source.name, m.source.dlq) == ("sqs", "orders", True)
    assert plan.duration_s == 60 and plan.interval_s() == 1.0
    kafka = _plan(
        mapping={
            "FunctionName": "f",
            "Topics": ["t"],
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["h:1", "h:2"]}},
        }
    )
    k = parse_plan(kafka, base_dir=tmp_path).mappings[0].source
    assert (k.kind, k.name, k.bootstrap) == ("kafka", "t", "h:1,h:2")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "mappings: a list"),
        ({"mappings": [], "extra": 1}, "unknown top-level key"),
        (_plan(mapping={"EventSourceArn": "arn:aws:sqs:us-east-1:1:q"}), "FunctionName is required"),
        (
            _plan(mapping={"FunctionName": "f", "EventSourceArn": "arn:aws:mq:us-east-1:1:broker:b"}),
            "source.kind",
        ),
        (_plan(load={"rate": 1}), "a duration or a count"),
        (_plan(load={"rate": 1, "count": 5, "records": {"template": {}, "jsonl": "x"}}), "one of template"),
    ],
)
def test_a_bad_plan_says_where_and_why(tmp_path: Path, raw: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_plan(raw, base_dir=tmp_path)


def test_fault_and_fail_on_options() -> None:
    faults = fault_options(
        [
            "error=0.05",
            "timeout=0.01",
            "throttle=0.02",
            "latency=200ms@0.1",
            "poison@30s",
            "engine-kill@2m",
            "broker-restart@5m",
        ]
    )
    assert faults == {
        "function": {
            "errors": 0.05,
            "timeouts": 0.01,
            "throttles": 0.02,
            "latency": {"added": "200ms", "rate": 0.1},
        },
        "poison": ["30s"],
        "engine_kill": ["2m"],
        "broker_restart": {"at": ["5m"]},
    }
    plan = parse_plan({**_plan(), "faults": faults}, base_dir=Path("."))
    f = plan.faults
    assert (f.latency_ms, f.poison_at, f.engine_kill_at, f.broker_restart_at) == (200, (30,), (120,), (300,))
    fail = fail_on_options(["p99=500", "error-rate=0.1", "lag=1000", "order", "pending", "loss"])
    parsed = parse_plan({**_plan(), "fail_on": fail}, base_dir=Path(".")).fail_on
    assert (parsed.p99_ms, parsed.error_rate, parsed.lag_records, parsed.order, parsed.pending) == (
        500,
        0.1,
        1000,
        True,
        True,
    )
    age = parse_plan(
        {**_plan(), "fail_on": fail_on_options(["lag=30s", "p99=2s"])}, base_dir=Path(".")
    ).fail_on
    assert (age.iterator_age_ms, age.lag_records, age.p99_ms) == (30_000, None, 2000)
    for bad in (["explode@1s"], ["error"]):
        with pytest.raises(PlanError, match="--fault"):
            fault_options(bad)
    with pytest.raises(PlanError, match="--fail-on"):
        fail_on_options(["p99"])


def test_a_plan_that_cannot_run_exits_2_with_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    plan = tmp_path / "plan.yaml"
    plan.write_text("mappings: [{mapping: {FunctionName: f}, load: {rate: 1, duration: 1x}}]\n")
    with pytest.raises(SystemExit) as exited:
        main(["soak", str(plan)])
    assert exited.value.code == 2
    assert "mappings[0].source.kind" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["soak", "--source", "sqs", "--rate", "5"])
    assert exited.value.code == 2
    assert "missing: --duration, --function" in capsys.readouterr().err
