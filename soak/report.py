"""A soak's report folder: report.html for a reader (self-contained: CSS inline, charts as PNG data URIs, no
script, no external URL, so it opens offline and survives being mailed), summary.json for a machine, and
CSVs for a spreadsheet or a diff between runs."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from itertools import pairwise
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter
from matplotlib.transforms import blended_transform_factory

from soak.model import FaultEvent, MappingReport, Sample, SoakResult

#: summary.json's keys in the order a reader asks about them; any others follow in their own order
SUMMARY_ORDER = (
    "sent",
    "invoked",
    "duplicates",
    "lost",
    "pending",
    "filtered_out",
    "to_destination",
    "order_violations",
    "latency_ms",
    "duration_s",
)
#: counts that break a promise AWS makes (duplicates don't: delivery is at least once), red when not zero
BAD_WHEN_NONZERO = frozenset({"lost", "order_violations"})

FAULT_COLOUR = "#6e4ea8"


def write_report(result: SoakResult, directory: Path) -> None:
    """Writes summary.json, the CSVs, missing.txt (when records were lost) and report.html into
    ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n", encoding="utf-8")
    names = [f.name for f in fields(Sample)]
    _write_csv(directory / "timeseries.csv", names, ([getattr(s, n) for n in names] for s in result.samples))
    _write_csv(directory / "duplicates.csv", ["cause", "records"], result.duplicate_causes.items())
    _write_csv(directory / "destinations.csv", ["reason", "records"], result.destination_reasons.items())
    _write_csv(
        directory / "faults.csv", ["t", "kind", "detail"], ((f.t, f.kind, f.detail) for f in result.faults)
    )
    columns = [f.name for f in fields(MappingReport)]
    _write_csv(
        directory / "mappings.csv",
        columns,
        ([_mapping_cell(m, c) for c in columns] for m in result.mappings),
    )
    missing = directory / "missing.txt"
    if result.missing:
        missing.write_text("".join(f"{i}\n" for i in result.missing), encoding="utf-8")
    else:
        # a missing.txt left by an earlier run in this folder would say records were lost
        missing.unlink(missing_ok=True)
    (directory / "report.html").write_text(render_html(result), encoding="utf-8")


def render_summary_line(result: SoakResult) -> str:
    """One line for the terminal: sent, invoked, duplicates, lost, p99 and the verdict."""
    s = result.summary
    verdict = "PASS" if _passed(result) else "FAIL"
    if result.failures:
        verdict += (
            f" ({len(result.failures)} --fail-on check{'s' if len(result.failures) > 1 else ''} failed)"
        )
    return (
        f"sent {_fmt(s.get('sent'))}  invoked {_fmt(s.get('invoked'))}  dup {_fmt(s.get('duplicates'))}  "
        f"lost {_fmt(s.get('lost'))}  p99 {_fmt((s.get('latency_ms') or {}).get('p99'))} ms  {verdict}"
    )


def render_html(result: SoakResult) -> str:
    """report.html's text."""
    passed = _passed(result)
    duration = _duration_s(result)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Soak report: {'PASS' if passed else 'FAIL'}</title>",
        f"<style>{CSS}</style></head><body><main>",
        _header(result, passed, duration),
        '<div class="row">',
        _section("Summary", _key_values(_summary_rows(result.summary))),
        _section("Ledger", f'<p class="ledger">{_e(result.verdict)}</p>'),
        "</div>",
        _section("Mappings", _mappings_table(result.mappings)),
        _section("Charts", "".join(_img(c) for c in _charts(result, duration))),
        _section(
            "Duplicates by cause",
            _table(["cause", "records"], [[_e(k), _num(v)] for k, v in result.duplicate_causes.items()]),
        ),
        _section(
            "Destination deliveries by reason",
            _table(["reason", "records"], [[_e(k), _num(v)] for k, v in result.destination_reasons.items()]),
        ),
        _section(
            "Faults",
            _table(
                ["t (s)", "at", "kind", "detail"],
                [[_num(f.t), _e(_clock(f.t)), _e(f.kind), _e(f.detail)] for f in result.faults],
            ),
        ),
        _section("AWS cost estimate (a month of this traffic)", _cost(result.cost)),
        _section("Plan", f"<pre>{_e(result.plan_text)}</pre>" if result.plan_text else _none()),
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


# --- files ---


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Iterable[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)  # csv writes None as an empty cell


def _mapping_cell(mapping: MappingReport, column: str) -> Any:
    value = getattr(mapping, column)
    return json.dumps(value, sort_keys=True) if column == "params" else value


# --- html ---


CSS = """
body { margin: 0; background: #f6f8fa; color: #1f2328;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1060px; margin: 0 auto; padding: 20px 24px 40px; }
header, section { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 14px 20px;
  margin-top: 14px; }
header { border-left: 6px solid; }
header.pass { border-left-color: #1a7f37; }
header.fail { border-left-color: #cf222e; }
h1 { font-size: 22px; margin: 0 0 6px; display: flex; align-items: center; gap: 12px; }
h2 { font-size: 16px; margin: 2px 0 10px; }
.badge { font-size: 15px; padding: 2px 12px; border-radius: 4px; color: #fff; letter-spacing: .04em; }
.badge.pass { background: #1a7f37; }
.badge.fail { background: #cf222e; }
.meta, .note { color: #59636e; margin: 4px 0; }
.scaled { background: #fff8c5; border: 1px solid #d4a72c66; border-radius: 4px; padding: 6px 10px; }
.failures { color: #cf222e; }
.failures ul { margin: 4px 0; }
.row { display: flex; gap: 14px; align-items: flex-start; }
.row > section { flex: 1 1 0; min-width: 0; }
.row table { width: 100%; }
.ledger { font-weight: 600; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eaeef2; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
tr.total td { font-weight: 700; border-top: 2px solid #d0d7de; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bad { color: #cf222e; font-weight: 700; }
.scroll { overflow-x: auto; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
tr.mapping td { border-bottom: none; }
tr.params td { padding-top: 0; word-break: break-word; }
pre { background: #f6f8fa; padding: 10px 12px; border-radius: 6px; overflow-x: auto; margin: 4px 0; }
pre.ids { max-height: 12em; }
img.chart { display: block; width: 100%; max-width: 1000px; height: auto; margin: 6px 0 10px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{body}</section>"


def _none() -> str:
    return '<p class="note">none</p>'


def _header(result: SoakResult, passed: bool, duration: float) -> str:
    word = "PASS" if passed else "FAIL"
    cls = word.lower()
    samples = result.samples
    meta = f"ran {_clock(duration)}"
    if samples:
        meta += f", {len(samples):,} samples every {_fmt(_interval_s(samples))} s"
    meta += f", {len(result.mappings)} mapping{'s' if len(result.mappings) != 1 else ''}"
    out = [
        f'<header class="{cls}"><h1>Soak report <span class="badge {cls}">{word}</span></h1>',
        f'<p class="ledger">{_e(result.verdict)}</p>',
        f'<p class="meta">{_e(meta)}</p>',
    ]
    if result.time_scale != 1:
        n = f"{result.time_scale:g}"
        scaled = (
            f"engine timers ran {n}\u00d7 faster (--time-scale {n}): record age, windows and back-off were "
            "scaled; the source services' timers were not"
        )
        out.append(f'<p class="scaled">{_e(scaled)}</p>')
    if result.failures:
        items = "".join(f"<li>{_e(f)}</li>" for f in result.failures)
        out.append(f'<div class="failures"><strong>--fail-on checks failed:</strong><ul>{items}</ul></div>')
    if result.missing:
        lost = result.summary.get("lost")
        shown = f"{len(result.missing):,} lost record ids"
        if isinstance(lost, int) and lost > len(result.missing):
            shown += f" (the first {len(result.missing):,} of {lost:,})"
        out.append(
            f'<details open><summary class="bad">{_e(shown)}, also in missing.txt</summary>'
            f'<pre class="ids">{_e(chr(10).join(result.missing))}</pre></details>'
        )
    out.append("</header>")
    return "".join(out)


def _summary_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """summary.json's figures in SUMMARY_ORDER, then the rest; a nested figure (latency_ms) one row per
    key (latency_ms.p99); the faults and the verdict have sections of their own."""
    keys = [k for k in SUMMARY_ORDER if k in summary] + [k for k in summary if k not in SUMMARY_ORDER]
    rows: list[tuple[str, Any]] = []
    for k in keys:
        if k in ("faults", "verdict", "failed_checks"):
            continue
        value = summary[k]
        if isinstance(value, dict):
            rows += [(f"{k}.{sub}", v) for sub, v in value.items()]
        else:
            rows.append((k, value))
    return rows


def _key_values(rows: list[tuple[str, Any]]) -> str:
    if not rows:
        return _none()
    body = "".join(
        f'<tr><th class="mono">{_e(k)}</th>{_num(v, bad=k in BAD_WHEN_NONZERO)}</tr>' for k, v in rows
    )
    return f"<table>{body}</table>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], total: Sequence[str] = ()) -> str:
    """``rows``' cells are HTML already (a number cell is a whole <td>, see _num); a plain string becomes a
    <td>."""
    if not rows:
        return _none()

    def tr(cells: Sequence[str], cls: str = "") -> str:
        tds = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells)
        return f'<tr class="{cls}">{tds}</tr>' if cls else f"<tr>{tds}</tr>"

    return _framed(header, "".join(tr(r) for r in rows) + (tr(total, "total") if total else ""))


def _framed(header: Sequence[str], body: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _note(text: str, mono: bool = False) -> str:
    return f'<span class="{"mono note" if mono else "note"}">{_e(text)}</span>'


def _num(value: Any, bad: bool = False) -> str:
    cls = "num bad" if bad and isinstance(value, int | float) and value > 0 else "num"
    return f'<td class="{cls}">{_e(_fmt(value))}</td>'


def _mappings_table(mappings: list[MappingReport]) -> str:
    """A row of figures per mapping, and under it a row with its event source and parameters (too long for
    columns)."""
    if not mappings:
        return _none()
    counts = (
        "sent",
        "invoked",
        "duplicates",
        "lost",
        "pending",
        "filtered_out",
        "to_destination",
        "order_violations",
        "latency_p50_ms",
        "latency_p99_ms",
    )
    header = ["mapping", *(c.replace("_", " ") for c in counts), "ordering"]
    rows = []
    for m in mappings:
        figures = "".join(_num(getattr(m, c), bad=c in BAD_WHEN_NONZERO) for c in counts)
        name = f"<strong>{_e(m.name)}</strong><br>{_note(m.source)}"
        about = (
            f'<span class="mono">{_e(m.event_source)}</span> {_note(m.uuid, mono=True)}<br>'
            f"{_note('params')} <code>{_e(json.dumps(m.params, sort_keys=True))}</code>"
        )
        rows.append(
            f'<tr class="mapping"><td>{name}</td>{figures}<td>{_e(m.ordering)}</td></tr>'
            f'<tr class="params"><td colspan="{len(header)}">{about}</td></tr>'
        )
    return _framed(header, "".join(rows))


def _cost(cost: dict[str, Any]) -> str:
    if not cost:
        return '<p class="note">not estimated</p>'
    prices: dict[str, dict[str, Any]] = cost.get("prices", {})
    rows = []
    for line in cost.get("lines", []):
        name = line.get("price_name")
        if line["price"] is None:
            price = "instance-priced"
        else:
            price = (
                f"{_price(line['price'])} {prices[name]['unit']}" if name in prices else _price(line["price"])
            )
        rows.append(
            [
                _e(line["item"]),
                _num(line["quantity_per_month"]),
                _e(line["unit"]),
                _e(price),
                f'<td class="num">{_e(_usd(line["usd_per_month"]))}</td>',
            ]
        )
    total = ["Total", "", "", "", f'<td class="num">{_e(_usd(cost.get("total_usd_per_month")))}</td>']
    out = [_table(["item", "quantity / month", "unit", "price", "USD / month"], rows, total)]
    if prices:
        out.append("<h3>Prices used</h3>")
        out.append(
            _table(
                ["price", "USD", "unit", "source"],
                [
                    [
                        f'<span class="mono">{_e(k)}</span>',
                        f'<td class="num">{_price(p["usd"])}</td>',
                        _e(p["unit"]),
                        _e(p["note"]),
                    ]
                    for k, p in prices.items()
                ],
            )
        )
    if cost.get("assumptions"):
        out.append("<h3>Assumptions</h3><ul>")
        out.extend(f"<li>{_e(a)}</li>" for a in cost["assumptions"])
        out.append("</ul>")
    return "".join(out)


def _img(chart: _Chart) -> str:
    data = base64.b64encode(chart.png).decode("ascii")
    return (
        f'<img class="chart" alt="{_e(chart.alt)}" data-points="{chart.points}" '
        f'src="data:image/png;base64,{data}">'
    )


# --- numbers ---


def _fmt(value: Any) -> str:
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "\u2013"
        if abs(value) >= 100 or value.is_integer():
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _usd(value: float | None) -> str:
    if value is None:
        return "not estimated"
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.2g}"


def _price(usd: float) -> str:
    """0.20, 0.015, 0.0000166667: as AWS lists them, no exponent."""
    digits = f"{usd:.10f}".rstrip("0")
    return digits + "0" * max(0, 2 - len(digits.partition(".")[2]))


def _clock(seconds: float) -> str:
    """1 h 02 min 05 s, 12 min 30 s, 45 s."""
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h} h {m:02d} min {sec:02d} s"
    if m:
        return f"{m} min {sec:02d} s"
    return f"{sec} s"


def _passed(result: SoakResult) -> bool:
    return result.verdict.startswith("PASS") and not result.failures


def _duration_s(result: SoakResult) -> float:
    duration = result.summary.get("duration_s")
    if isinstance(duration, int | float):
        return float(duration)
    return result.samples[-1].t if result.samples else 0.0


def _interval_s(samples: list[Sample]) -> float:
    if len(samples) < 2:
        return samples[0].t
    return statistics.median(b.t - a.t for a, b in pairwise(samples))


# --- charts ---


@dataclass(frozen=True)
class _Chart:
    alt: str
    png: bytes
    points: int  # plotted values (None is not one)


@dataclass(frozen=True)
class _Series:
    field: str
    label: str
    right: bool = False  # on the twin axis (another unit)
    under: bool = False  # wide and pale beneath the next series, which often runs on top of it


@dataclass(frozen=True)
class _TimeAxis:
    scale: float  # seconds per unit
    label: str
    end: float  # in units


def _charts(result: SoakResult, duration: float) -> list[_Chart]:
    end = max(duration, result.samples[-1].t if result.samples else 0.0) or 1.0
    axis = (
        _TimeAxis(60.0, "minutes since the load started", end / 60)
        if end > 600
        else _TimeAxis(1.0, "seconds since the load started", end)
    )
    interval = _fmt(_interval_s(result.samples)) if result.samples else "?"

    def chart(
        title: str, alt: str, series: Sequence[_Series], left: str, right: str = "", **kw: bool
    ) -> _Chart:
        return _chart(title, alt, result.samples, result.faults, axis, series, left, right, **kw)

    return [
        chart(
            "Throughput",
            "Throughput: records sent and first invoked per second",
            [_Series("sent_per_s", "sent", under=True), _Series("invoked_per_s", "invoked")],
            "records / s",
        ),
        chart(
            "Put-to-invoke latency",
            "Put-to-invoke latency p50, p95, p99 (ms)",
            [
                _Series("latency_p50_ms", "p50"),
                _Series("latency_p95_ms", "p95"),
                _Series("latency_p99_ms", "p99"),
            ],
            "ms",
            log_when_wide=True,
        ),
        chart(
            "Function duration",
            "Function duration p50, p99 (ms)",
            [_Series("duration_p50_ms", "p50"), _Series("duration_p99_ms", "p99")],
            "ms",
            log_when_wide=True,
        ),
        chart(
            f"Per interval ({interval} s)",
            "Errors, timeouts, throttles, retries, bisects, destination deliveries, duplicates per interval",
            [
                _Series("errors", "errors"),
                _Series("timeouts", "timeouts"),
                _Series("throttles", "throttles"),
                _Series("retries", "retries"),
                _Series("bisects", "bisects"),
                _Series("to_destination", "to destination"),
                _Series("duplicates", "duplicates"),
            ],
            "records / invocations",
            counts=True,
        ),
        chart(
            "Lag",
            "Lag: iterator age (ms), offset lag and queue depth (records)",
            [
                _Series("iterator_age_ms", "iterator age (ms)"),
                _Series("offset_lag", "offset lag", right=True),
                _Series("queue_depth", "queue depth", right=True),
            ],
            "iterator age (ms)",
            "records",
        ),
        chart(
            "Concurrency",
            "Concurrency: most invocations running at once per interval",
            [_Series("concurrency", "concurrent invocations")],
            "invocations",
            counts=True,
        ),
        chart(
            "Engine and function",
            "Engine RSS (MiB), engine CPU and function busy (% of a core)",
            [
                _Series("engine_rss_mib", "engine RSS (MiB)"),
                _Series("engine_cpu_pct", "engine CPU (%)", right=True),
                _Series("function_busy_pct", "function busy (%)", right=True),
            ],
            "MiB",
            "% of a core",
        ),
    ]


def _chart(
    title: str,
    alt: str,
    samples: list[Sample],
    faults: list[FaultEvent],
    axis: _TimeAxis,
    series: Sequence[_Series],
    left_label: str,
    right_label: str = "",
    *,
    counts: bool = False,
    log_when_wide: bool = False,
) -> _Chart:
    fig = Figure(figsize=(10, 2.6), dpi=100)
    # fixed margins rather than tight_layout: every chart's time axis then spans the same pixels, so a
    # moment lines up from one chart to the next
    fig.subplots_adjust(left=0.075, right=0.925, top=0.84, bottom=0.17)
    ax = fig.add_subplot()
    x = [s.t / axis.scale for s in samples]
    drawn: list[tuple[int, _Series, list[float]]] = []
    idle: list[str] = []  # counts that stayed at zero: named, not drawn, so the others stay legible
    for i, s in enumerate(series):
        raw = [getattr(sample, s.field) for sample in samples]
        if all(v is None for v in raw):
            continue
        if counts and not any(raw):
            idle.append(s.label)
            continue
        drawn.append((i, s, [math.nan if v is None else float(v) for v in raw]))
    if counts and not drawn and idle:
        # all zero is a finding, not an absence: show the first count flat at zero
        drawn.append((0, series[0], [float(getattr(sample, series[0].field)) for sample in samples]))
    twin = ax.twinx() if any(s.right for _, s, _ in drawn) and any(not s.right for _, s, _ in drawn) else None

    def target(s: _Series) -> Axes:
        return twin if twin is not None and s.right else ax

    handles: list[Line2D] = []
    for i, s, y in drawn:
        if counts:
            # a count holds over its interval, from the sample before (the first from the load's start)
            (line,) = target(s).step(
                [0.0, *x], [y[0], *y], where="pre", color=f"C{i}", linewidth=1.3, label=s.label
            )
        else:
            width, alpha = (4.0, 0.4) if s.under else (1.3, 1.0)
            (line,) = target(s).plot(x, y, color=f"C{i}", linewidth=width, alpha=alpha, label=s.label)
            # a value between two gaps draws no line: a dot shows it
            target(s).plot(
                x, y, color=f"C{i}", linestyle="none", marker="o", markersize=2.5, markevery=_isolated(y)
            )
        handles.append(line)
    for a in (ax,) if twin is None else (ax, twin):
        _scale_y(a, [y for _, s, y in drawn if target(s) is a], log_when_wide, counts)
    if drawn:  # with a single unit on show, the left axis names it
        ax.set_ylabel(right_label if all(s.right for _, s, _ in drawn) else left_label, fontsize=8)
    if twin is not None:
        twin.set_ylabel(right_label, fontsize=8)
    ax.set_xlim(0, axis.end)
    ax.set_xlabel(axis.label, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title(title, loc="left", fontsize=10, fontweight="bold")
    ax.grid(True, color="#eaeef2", linewidth=0.8)
    ax.set_axisbelow(True)
    _draw_faults(ax, faults, axis)
    if handles:
        ax.legend(
            handles=handles,
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncol=len(handles),
            fontsize=8,
            frameon=False,
            borderaxespad=0.2,
            handlelength=1.5,
            columnspacing=1.2,
        )
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#59636e")
        ax.set_yticks([])
    if idle:
        ax.text(
            0.005,
            0.96,
            f"zero in every interval: {', '.join(idle)}",
            transform=ax.transAxes,
            va="top",
            fontsize=7,
            color="#59636e",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
        )
    ax.spines["top"].set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    points = sum(sum(1 for v in y if not math.isnan(v)) for _, _, y in drawn)
    return _Chart(alt, buf.getvalue(), points)


def _isolated(y: list[float]) -> list[int]:
    def gap(i: int) -> bool:
        return i < 0 or i >= len(y) or math.isnan(y[i])

    return [i for i in range(len(y)) if not gap(i) and gap(i - 1) and gap(i + 1)]


def _scale_y(ax: Axes, ys: list[list[float]], log_when_wide: bool, counts: bool) -> None:
    """From zero with headroom over the highest value (a flat line would sit on the frame otherwise), or log
    when asked and the values span more than two decades (a p99 spike would flatten p50 otherwise)."""
    positive = [v for y in ys for v in y if v > 0]  # NaN compares false
    if log_when_wide and positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
    elif ys:
        ax.set_ylim(0, max(positive) * 1.1 if positive else 1)
    if counts:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _compact(v)))
    ax.tick_params(labelsize=8)


def _compact(v: float) -> str:
    """Tick labels short enough for a fixed margin: 950, 1.2k, 3M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _draw_faults(ax: Axes, faults: list[FaultEvent], axis: _TimeAxis) -> None:
    """A dashed line at each fault; faults closer than 1.5% of the axis share one label, so they don't
    overprint."""
    on_axis = blended_transform_factory(ax.transData, ax.transAxes)
    groups: list[tuple[float, list[str]]] = []  # (x of the first, kinds)
    for f in sorted(faults, key=lambda f: f.t):
        x = f.t / axis.scale
        ax.axvline(x, color=FAULT_COLOUR, linestyle="--", linewidth=1.0, zorder=1)
        if groups and x - groups[-1][0] < axis.end * 0.015:
            if f.kind not in groups[-1][1]:
                groups[-1][1].append(f.kind)
        else:
            groups.append((x, [f.kind]))
    for x, kinds in groups:
        ax.text(
            x,
            0.97,
            " + ".join(kinds),
            transform=on_axis,
            rotation=90,
            ha="right",
            va="top",
            fontsize=7,
            color=FAULT_COLOUR,
            bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 0.5},
        )
