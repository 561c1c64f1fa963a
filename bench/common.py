"""What every benchmark here shares: percentiles, peak RSS sampling, removing an engine mapping."""

from __future__ import annotations

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
