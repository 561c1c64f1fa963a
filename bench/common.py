"""What every benchmark here shares: percentiles, peak RSS sampling, removing an engine mapping."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

import anyio

from engine.errors import ResourceInUseException

if TYPE_CHECKING:
    from engine.app import Engine


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssPeak:
    """Samples RSS every 50 ms while a phase runs."""

    def __init__(self) -> None:
        self.start = rss_mib()
        self.peak = self.start

    async def sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mib())
            await anyio.sleep(0.05)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def delete_mapping(engine: Engine, uuid: str) -> None:
    """Delete through the control plane (retrying while it is still Creating) and wait until it is gone."""
    with anyio.fail_after(30):
        while True:
            try:
                engine.plane.delete(uuid)
                break
            except ResourceInUseException:
                await anyio.sleep(0.02)
        while engine.store.get_mapping(uuid) is not None:
            await anyio.sleep(0.01)


Samples = dict[str, list[float]]


def medians(samples: Samples) -> dict[str, float]:
    return {key: statistics.median(values) for key, values in samples.items()}


def latency_ms(latencies_s: list[float]) -> Samples:
    """p50 / p95 / p99 of put-to-invoke latencies (seconds in, milliseconds out)."""
    lat = [x * 1000 for x in latencies_s]
    return {"p50": [pct(lat, 50)], "p95": [pct(lat, 95)], "p99": [pct(lat, 99)]}


async def wait_count(count: list[int], n: int, timeout: float, poll_s: float = 0.005) -> None:
    """Until a benchmark function's record counter reaches ``n``."""
    with anyio.fail_after(timeout):
        while count[0] < n:
            await anyio.sleep(poll_s)


def markdown_table(columns: list[tuple[str, int]], rows: list[list[str]]) -> str:
    """A table with the first column left-aligned and the others right-aligned to the given widths."""

    def line(cells: list[str]) -> str:
        first, *rest = cells
        padded = [f"{first:{columns[0][1]}}"] + [
            f"{c:>{w}}" for c, (_, w) in zip(rest, columns[1:], strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, (_, w) in enumerate(columns))
        + "|"
    )
    return "\n".join([line([title for title, _ in columns]), rule, *(line(r) for r in rows)])
