"""soak.report: the report folder (summary.json, CSVs, missing.txt) and report.html, self-contained, its
charts PNGs that decode and say how many points they plot."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
from dataclasses import fields, replace
from pathlib import Path

from soak.cost import Usage, estimate
from soak.model import FaultEvent, MappingReport, Sample, SoakResult
from soak.report import render_summary_line, write_report

PNG = b"\x89PNG\r\n\x1a\n"
CHART = re.compile(
    r'<img class="chart" alt="([^"]+)" data-points="(\d+)" src="data:image/png;base64,([^"]*)">'
)


def synthetic(n: int = 48, interval_s: float = 5.0) -> SoakResult:
    """A run of ``n`` intervals at ~500 records/s: the engine killed at 40% of it and restarted 4 s later (a
    latency spike, duplicates, a gap in its RSS), a poison record at 75% (errors, retries, bisects, a
    destination delivery). No URL anywhere, so the report's must be its own."""
    kill = n * interval_s * 0.4
    poison = n * interval_s * 0.75
    samples: list[Sample] = []
    sent = invoked = 0
    for i in range(1, n + 1):
        t = i * interval_s
        down = kill < t <= kill + interval_s
        after = kill + interval_s < t <= kill + 3 * interval_s
        poisoned = poison < t <= poison + 2 * interval_s
        rate = 500 + 40 * math.sin(i / 4)
        first = 0.0 if down else rate * (1.6 if after else 1.0)
        sent += round(rate * interval_s)
        invoked = min(sent, invoked + round(first * interval_s))
        samples.append(
            Sample(
                t=t,
                sent=sent,
                invoked=invoked,
                sent_per_s=rate,
                invoked_per_s=first,
                latency_p50_ms=None if down else (2500.0 if after else 38 + 4 * math.sin(i)),
                latency_p95_ms=None if down else (9000.0 if after else 110 + 10 * math.cos(i)),
                latency_p99_ms=None if down else (14000.0 if after else 280 + 30 * math.sin(i / 2)),
                duration_p50_ms=None if down else 21 + 2 * math.sin(i),
                duration_p99_ms=None if down else 85 + 15 * math.cos(i / 3),
                invocations=0 if down else round(first * interval_s / 10),
                errors=6 if poisoned else 0,
                timeouts=1 if poisoned else 0,
                retries=(6 if poisoned else 0) + (40 if after else 0),
                bisects=4 if poisoned else 0,
                to_destination=1 if poison + interval_s < t <= poison + 2 * interval_s else 0,
                duplicates=12 if after else 0,
                iterator_age_ms=None if down else (6000.0 if after else 300 + 50 * math.sin(i)),
                queue_depth=None if down else (900.0 if after else 40 + 10 * math.cos(i)),
                concurrency=0 if down else 8 + i % 4,
                engine_rss_mib=None if down else 118 + i * 0.3,
                engine_cpu_pct=None if down else 35 + 10 * math.sin(i / 3),
                function_busy_pct=None if down else 42 + 5 * math.cos(i / 5),
            )
        )
    duration = n * interval_s
    mappings = [
        MappingReport(
            "orders-sqs",
            "sqs",
            "3f0c7e52-0d6b-4bb5-9f62-7f4b2c2f1a10",
            "arn:aws:sqs:us-east-1:000000000000:orders",
            {"BatchSize": 10, "MaximumBatchingWindowInSeconds": 1},
            sent=sent // 2,
            invoked=sent // 2,
            duplicates=24,
            ordering="not promised",
        ),
        MappingReport(
            "clicks-kinesis",
            "kinesis",
            "9a1d2c33-5e44-4f55-8a66-1b7c8d9e0f21",
            "arn:aws:kinesis:us-east-1:000000000000:stream/clicks",
            {"BatchSize": 100, "BisectBatchOnFunctionError": True, "StartingPosition": "TRIM_HORIZON"},
            sent=sent - sent // 2,
            invoked=sent - sent // 2 - 1,
            to_destination=1,
            duplicates=12,
            ordering="per shard",
        ),
    ]
    cost = estimate(
        Usage(
            duration_s=duration,
            lambda_invocations=sum(s.invocations for s in samples),
            lambda_gb_seconds=sum(s.invocations for s in samples) * 0.021 * 0.125,
            sqs_requests=sent // 2 * 3 // 10,
            kinesis_shards=2,
            kinesis_put_units=sent - sent // 2,
            kafka_mappings=1,
        )
    )
    return SoakResult(
        summary={
            "sent": sent,
            "invoked": sent - 1,
            "duplicates": 36,
            "lost": 0,
            "pending": 1,
            "filtered_out": 0,
            "to_destination": 1,
            "order_violations": 0,
            "latency_ms": {"p50": 39.2, "p95": 121.0, "p99": 2240.5},
            "duration_s": duration,
            "engine_restarts": 1,
        },
        samples=samples,
        mappings=mappings,
        faults=[
            FaultEvent(kill, "engine_kill", "SIGKILL pid 4242"),
            FaultEvent(kill + 4, "engine_restart"),
            FaultEvent(poison, "poison", "1 record in clicks-kinesis"),
        ],
        duplicate_causes={"engine killed before the checkpoint": 36},
        destination_reasons={"RetryAttemptsExhausted": 1},
        cost=cost,
        verdict="PASS: every record sent was invoked or sent to its destination; 36 twice (at least once)",
        plan_text="duration: 4m\nrate: 500/s\nmappings:\n  - orders-sqs\n  - clicks-kinesis\n",
    )


def _charts(page: str) -> list[tuple[str, int, bytes]]:
    assert page.count('<img class="chart"') == len(CHART.findall(page))  # the pattern reads every chart
    return [(alt, int(points), base64.b64decode(data)) for alt, points, data in CHART.findall(page)]


def test_the_folder(tmp_path: Path) -> None:
    result = synthetic()
    out = tmp_path / "soak" / "run-1"  # created, parents too
    write_report(result, out)
    assert {p.name for p in out.iterdir()} == {
        "summary.json",
        "timeseries.csv",
        "duplicates.csv",
        "destinations.csv",
        "faults.csv",
        "mappings.csv",
        "report.html",
    }
    assert json.loads((out / "summary.json").read_text()) == result.summary
    with (out / "timeseries.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [f.name for f in fields(Sample)]
    assert len(rows) == 1 + len(result.samples)
    down = next(i for i, s in enumerate(result.samples, 1) if s.latency_p99_ms is None)
    assert rows[down][rows[0].index("latency_p99_ms")] == ""  # None is an empty cell
    assert float(rows[-1][0]) == result.samples[-1].t
    assert (out / "duplicates.csv").read_text().splitlines() == [
        "cause,records",
        "engine killed before the checkpoint,36",
    ]
    assert (out / "destinations.csv").read_text().splitlines() == [
        "reason,records",
        "RetryAttemptsExhausted,1",
    ]
    with (out / "faults.csv").open(newline="") as f:
        assert [r["kind"] for r in csv.DictReader(f)] == ["engine_kill", "engine_restart", "poison"]
    with (out / "mappings.csv").open(newline="") as f:
        mappings = list(csv.DictReader(f))
    assert [m["name"] for m in mappings] == ["orders-sqs", "clicks-kinesis"]
    assert json.loads(mappings[1]["params"])["BisectBatchOnFunctionError"] is True


def test_missing_txt_only_when_records_were_lost(tmp_path: Path) -> None:
    lost = replace(synthetic(), missing=["clicks-kinesis/41", "orders-sqs/7"])
    write_report(lost, tmp_path)
    assert (tmp_path / "missing.txt").read_text() == "clicks-kinesis/41\norders-sqs/7\n"
    page = (tmp_path / "report.html").read_text()
    assert "2 lost record ids" in page and "orders-sqs/7" in page
    write_report(synthetic(), tmp_path)  # the same folder, a run that lost nothing
    assert not (tmp_path / "missing.txt").exists()


def test_the_page_is_self_contained_and_its_charts_decode(tmp_path: Path) -> None:
    write_report(synthetic(), tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    charts = _charts(page)
    assert len(charts) == 7
    for alt, points, png in charts:
        assert png.startswith(PNG), alt
        assert points > 0, alt  # every chart is fed here
    by_alt = {alt.split(":")[0].split(" (")[0]: points for alt, points, _ in charts}
    assert by_alt["Throughput"] == 2 * 48
    assert by_alt["Put-to-invoke latency p50, p95, p99"] == 3 * 47  # the interval the engine was down: None
    assert by_alt["Lag"] == 2 * 47  # iterator age and queue depth; no offset lag, so not drawn
    for heading in ("Summary", "Ledger", "Mappings", "Charts", "Faults", "AWS cost estimate", "Plan"):
        assert f"<h2>{heading}" in page
    assert "instance-priced" in page and "as listed on aws.amazon.com/lambda/pricing, 2026" in page
    assert "engine_restarts" in page  # a summary key beyond the known ones


def test_charts_without_data_are_drawn_empty(tmp_path: Path) -> None:
    write_report(replace(synthetic(), samples=[], faults=[]), tmp_path)
    charts = _charts((tmp_path / "report.html").read_text())
    assert len(charts) == 7
    assert all(png.startswith(PNG) and points == 0 for _, points, png in charts)


def test_time_scale_sentence_only_when_scaled(tmp_path: Path) -> None:
    sentence = "engine timers ran 60\u00d7 faster (--time-scale 60)"
    write_report(replace(synthetic(), time_scale=60.0), tmp_path)
    assert sentence in (tmp_path / "report.html").read_text()
    assert "the source services&#x27; timers were not" in (tmp_path / "report.html").read_text()
    write_report(synthetic(), tmp_path)
    assert "engine timers ran" not in (tmp_path / "report.html").read_text()


def test_fail_shows_the_failed_checks_escaped(tmp_path: Path) -> None:
    failed = replace(
        synthetic(),
        failures=["duplicates 36 > 0 (--fail-on duplicates>0)", "latency_p99_ms 2240 > 1000 <ms>"],
    )
    write_report(failed, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert '<span class="badge fail">FAIL</span>' in page and "--fail-on checks failed" in page
    assert "<li>duplicates 36 &gt; 0 (--fail-on duplicates&gt;0)</li>" in page
    assert "<li>latency_p99_ms 2240 &gt; 1000 &lt;ms&gt;</li>" in page
    write_report(synthetic(), tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert '<span class="badge pass">PASS</span>' in page and "--fail-on checks failed" not in page


def test_text_is_escaped(tmp_path: Path) -> None:
    result = synthetic()
    result.mappings[0].name = "<img src=x onerror=alert(1)>"
    write_report(result, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_summary_line() -> None:
    result = synthetic()
    sent = result.summary["sent"]
    assert render_summary_line(result) == (
        f"sent {sent:,}  invoked {sent - 1:,}  dup 36  lost 0  p99 2,240 ms  PASS"
    )
    failed = replace(result, failures=["lost 1 > 0"])
    assert render_summary_line(failed).endswith("  FAIL (1 --fail-on check failed)")
