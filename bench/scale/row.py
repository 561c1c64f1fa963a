"""One row of the scale benchmark's table, and the process figures every row measures."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import psutil


@dataclass
class Row:
    #: what is measured, e.g. "idle: 1,000 SQS mappings (ElasticMQ), CPU"
    what: str
    #: the engine's figure, formatted with its unit ("3.1 % of a core")
    engine: str
    #: the issue's target ("<= 5 % of one core")
    goal: str
    #: whether the engine's figure meets the goal (None: no goal, informative)
    met: bool | None
    #: the raw client's figure in the same run, where one exists
    raw: str = ""
    #: anything a reader needs to read the figure (sizes, endpoint, how measured)
    note: str = ""


def fmt(value: float, unit: str = "", digits: int = 1) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}{(' ' + unit) if unit else ''}"


class ProcessMeter:
    """CPU seconds, RSS and TCP connections of this process (the engine runs in it)."""

    def __init__(self) -> None:
        self.proc = psutil.Process(os.getpid())

    def cpu_s(self) -> float:
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def rss_mib(self) -> float:
        return float(self.proc.memory_info().rss) / (1024 * 1024)

    def connections_to(self, port: int) -> int:
        """Established TCP connections of this process to ``port`` (any host)."""
        return sum(
            1
            for c in self.proc.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        )
