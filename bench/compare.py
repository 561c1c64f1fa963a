"""Runs the benchmark set against one code tree and prints one summary table; compares two result folders.

    .venv/bin/python bench/compare.py run --tree /work/bench-before --out bench/results/issue12-before
    .venv/bin/python bench/compare.py run --tree . --out bench/results/issue12-after
    .venv/bin/python bench/compare.py summary bench/results/issue12-before [bench/results/issue12-after]

run: each benchmark of --only (default: all) runs --runs times with its defaults, one after another, as
TREE/bench/NAME_bench.py with TREE first on PYTHONPATH (so a git worktree of an older commit measures that
commit's engine with this venv; refused unless `import engine` loads TREE's) and the services' env of
scripts/services.sh. Every raw stdout / stderr goes to OUT/NAME.N.txt / .stderr. Run again, it skips
the runs that exited 0 and redoes the others (keeping a failed one as NAME.N.failedK.*).

summary: parses those tables; one row per consumer, each cell the median over the runs found (stream,
kafka and mq already print medians of their own --repeat runs). raw rec/s is the section's raw client (for
SQS the best raw row, as its table's ratio); engine/raw is the ratio the benchmark printed; ΔRSS is the
larger of the row's RSS growths (drain, latency). filter rows: ours against event-ruler instead of a raw
client. With a second folder, each figure is shown before → after with the change of rec/s and ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCHES = ["sqs", "stream", "kafka", "mq", "filter"]
# the source of a table without '**Section**' rows
SOURCES = {"sqs": "SQS", "kafka": "Kafka"}
HERE = Path(__file__).resolve().parent

# (source, consumer) -> metric -> one value per run
Table = dict[tuple[str, str], dict[str, list[float]]]


def services_env() -> dict[str, str]:
    out = subprocess.run(
        [str(HERE.parent / "scripts" / "services.sh"), "env"], check=True, capture_output=True, text=True
    ).stdout
    return dict(re.findall(r"^export (\w+)=(.*)$", out, re.MULTILINE))


def run(args: argparse.Namespace) -> None:
    tree = Path(args.tree).resolve()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = os.environ | services_env() | {"PYTHONPATH": str(tree)}
    loaded = subprocess.run(
        [sys.executable, "-c", "import engine; print(engine.__file__)"],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(loaded).is_relative_to(tree):
        sys.exit(f"import engine loads {loaded}, not {tree}'s: use a venv of that tree")
    commit = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    for n in range(1, args.runs + 1):
        for name in args.only:
            stem = out / f"{name}.{n}"
            done = Path(f"{stem}.txt")
            if done.exists() and "\n# exit 0 after" in done.read_text():
                continue  # a rerun fills only the holes (a run broken by a broker restart, say)
            if done.exists():  # a failed run's output is kept beside, not overwritten
                failed = len(list(out.glob(f"{name}.{n}.failed*.txt"))) + 1
                for suffix in ("txt", "stderr"):
                    Path(f"{stem}.{suffix}").rename(f"{stem}.failed{failed}.{suffix}")
            started = time.monotonic()
            with open(f"{stem}.txt", "w") as stdout, open(f"{stem}.stderr", "w") as stderr:
                stdout.write(f"# tree: {tree} @ {commit}; engine: {loaded}\n")
                stdout.write(f"# started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; {_load()}\n")
                stdout.flush()
                rc = subprocess.run(
                    [sys.executable, f"bench/{name}_bench.py"],
                    cwd=tree,
                    env=env,
                    stdout=stdout,
                    stderr=stderr,
                ).returncode
                stdout.write(f"# exit {rc} after {time.monotonic() - started:.0f} s; {_load()}\n")
            print(
                f"{name} run {n}/{args.runs}: exit {rc}, {time.monotonic() - started:.0f} s", file=sys.stderr
            )
    print_summary([out])


def _load() -> str:
    return "load: " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _number(cell: str) -> float | None:
    """The largest number in a cell ('3.0 / 0.0' -> 3.0; '—' -> None)."""
    values = [float(v.replace(",", "")) for v in re.findall(r"-?[\d,]*\.?\d+", cell)]
    return max(values) if values else None


_COLUMNS = {
    "records/s": "rps",
    "vs best raw": "ratio",
    "engine/raw": "ratio",
    "CPU µs/rec": "cpu_us",
    "p50 ms": "p50",
    "p99 ms": "p99",
}


def parse_markdown(text: str, source: str) -> Table:
    """A benchmark's markdown table: '**Section**' rows name the source of the rows below them."""
    table: Table = {}
    header: list[str] = []
    for line in text.splitlines():
        if not line.startswith("|") or line.startswith("|-"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "consumer":
            header = cells
            continue
        if cells[0].startswith("**"):
            source = cells[0].strip("*")
            continue
        row: dict[str, list[float]] = {}
        for title, cell in zip(header, cells, strict=True):
            key = _COLUMNS.get(title, "rss" if "RSS" in title else None)
            value = _number(cell)
            if key and value is not None:
                row[key] = [max(value, *row[key])] if key == "rss" and key in row else [value]
        table[(source, cells[0])] = row
    raws = [(k, r["rps"][0]) for k, r in table.items() if k[1].startswith("raw") and "rps" in r]
    for (src, consumer), row in table.items():
        best = max((rps for (s, _), rps in raws if s == src), default=None)
        if best is not None and "rps" in row and not consumer.startswith("raw"):
            row["raw_rps"] = [best]
    return table


_FILTER_ROW = re.compile(r"^(\S.*?)\s{2,}(\d+)\s+([\d,]+)\s+[\d,]+\s+[\d,]+\s+\d+\s+(.*)$")


def parse_filter(text: str) -> Table:
    table: Table = {}
    for line in text.splitlines():
        m = _FILTER_ROW.match(line)
        if not m:
            continue
        case, filters, ours, rest = m.groups()
        row = {"rps": [float(ours.replace(",", ""))]}
        theirs = re.match(r"([\d,]+)\s+[\d,]+\s+([\d.]+)x", rest)
        if theirs:
            row["raw_rps"] = [float(theirs[1].replace(",", ""))]
            row["ratio"] = [float(theirs[2])]
        table[("filter", f"{case} ×{filters}")] = row
    return table


def load(folder: Path) -> tuple[Table, dict[str, int]]:
    """Every run's rows merged (values per run), and how many runs of each benchmark were found."""
    merged: Table = {}
    runs: dict[str, int] = {}
    for name in BENCHES:
        for path in sorted(folder.glob(f"{name}.*.txt")):
            text = path.read_text()
            rows = parse_filter(text) if name == "filter" else parse_markdown(text, SOURCES.get(name, name))
            if not rows:
                continue
            runs[name] = runs.get(name, 0) + 1
            for key, row in rows.items():
                for metric, values in row.items():
                    merged.setdefault(key, {}).setdefault(metric, []).extend(values)
    return merged, runs


_SHOWN = [
    ("rps", "rec/s", "{:.0f}"),
    ("raw_rps", "raw rec/s", "{:.0f}"),
    ("ratio", "engine/raw", "{:.2f}"),
    ("p50", "p50 ms", "{:.1f}"),
    ("p99", "p99 ms", "{:.1f}"),
    ("cpu_us", "CPU µs/rec", "{:.0f}"),
    ("rss", "ΔRSS MiB", "{:.1f}"),
]


def _cell(row: dict[str, list[float]] | None, metric: str, fmt: str) -> str:
    values = (row or {}).get(metric)
    return fmt.format(statistics.median(values)) if values else "—"


def print_summary(folders: list[Path]) -> None:
    tables = [load(folder) for folder in folders]
    for folder, (_, runs) in zip(folders, tables, strict=True):
        print(f"{folder}: " + ", ".join(f"{name} ×{n}" for name, n in runs.items()))
    keys = list(dict.fromkeys(key for table, _ in tables for key in table))
    titles = ["source", "consumer"] + [title for _, title, _ in _SHOWN]
    if len(tables) == 2:
        titles += ["Δ rec/s", "Δ ratio"]
    lines = [titles]
    for key in keys:
        rows = [table.get(key) for table, _ in tables]
        cells = [" → ".join(_cell(row, metric, fmt) for row in rows) for metric, _, fmt in _SHOWN]
        if len(rows) == 2:
            cells += [_change(rows, "rps"), _change(rows, "ratio")]
        lines.append([*key, *cells])
    widths = [max(len(line[i]) for line in lines) for i in range(len(titles))]
    for n, line in enumerate(lines):
        print(
            "| "
            + " | ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
            + " |"
        )
        if n == 0:
            print(
                "|"
                + "|".join("-" * (w + 2) if i < 2 else "-" * (w + 1) + ":" for i, w in enumerate(widths))
                + "|"
            )


def _change(rows: list[dict[str, list[float]] | None], metric: str) -> str:
    before, after = ((row or {}).get(metric) for row in rows)
    if not before or not after:
        return "—"
    return f"{statistics.median(after) / statistics.median(before) - 1:+.0%}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the benchmarks against a tree, then print its summary")
    r.add_argument("--tree", default=str(HERE.parent), help="the code tree to measure (default: this one)")
    r.add_argument("--out", required=True, help="folder for the raw outputs")
    r.add_argument("--runs", type=int, default=3, help="invocations of each benchmark")
    r.add_argument("--only", type=lambda v: v.split(","), default=BENCHES, help=",".join(BENCHES))
    s = sub.add_parser("summary", help="summarize one result folder, or two side by side (before, after)")
    s.add_argument("folders", nargs="+", type=Path)
    args = p.parse_args()
    if args.command == "run":
        run(args)
    else:
        if len(args.folders) > 2:
            p.error("at most two folders: before and after")
        print_summary(args.folders)


if __name__ == "__main__":
    main()
