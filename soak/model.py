"""What a soak measured, as the report reads it: samples over time, the ledger's verdict, the faults'
timeline. Plain data: the runner fills it, soak.report renders it, tests compare it with the journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """One interval of the run (``t`` = its end, seconds since the load started). Counts are of the
    interval; ``sent`` and ``invoked`` are cumulative; None: nothing to measure in the interval."""

    t: float
    sent: int = 0
    invoked: int = 0  # distinct records invoked at least once, so far
    sent_per_s: float = 0.0
    invoked_per_s: float = 0.0  # records first invoked in the interval, per second
    latency_p50_ms: float | None = None  # put-to-invoke of records first invoked in the interval
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    duration_p50_ms: float | None = None  # function duration of the interval's invocations
    duration_p99_ms: float | None = None
    invocations: int = 0
    errors: int = 0  # function errors (injected or the function's own), timeouts included
    timeouts: int = 0
    throttles: int = 0
    retries: int = 0  # invocations holding a record invoked before
    bisects: int = 0  # invocation attempts of a bisected half (journal bisect depth > 0)
    to_destination: int = 0  # records delivered to an on-failure destination / DLQ
    filtered_out: int = 0
    duplicates: int = 0  # records delivered again after an invocation that succeeded with them
    iterator_age_ms: float | None = None  # max over the mappings (Kinesis, DynamoDB)
    offset_lag: float | None = None  # sum over the mappings (Kafka)
    queue_depth: float | None = None  # sum over the mappings (SQS, MQ)
    concurrency: int = 0  # most invocations running at once in the interval
    engine_rss_mib: float | None = None
    engine_cpu_pct: float | None = None  # of one core
    function_busy_pct: float | None = None  # sum of invocation durations / interval, in % of one core


@dataclass(frozen=True)
class FaultEvent:
    """A fault the soak caused, at ``t`` seconds (engine_kill, engine_restart, broker_restart, poison)."""

    t: float
    kind: str
    detail: str = ""


@dataclass
class MappingReport:
    """One mapping of the run, as the report's table shows it."""

    name: str
    source: str  # sqs, kinesis, dynamodb, kafka, rabbitmq, activemq
    uuid: str
    event_source: str  # ARN, or topic / queue with its endpoint
    params: dict[str, Any]
    sent: int = 0
    invoked: int = 0
    duplicates: int = 0
    lost: int = 0
    pending: int = 0
    filtered_out: int = 0
    to_destination: int = 0
    order_violations: int = 0
    latency_p50_ms: float | None = None  # put to first invocation, this mapping's records
    latency_p99_ms: float | None = None
    ordering: str = ""  # what was checked: "per shard", "per partition", "per message group", "not promised"


@dataclass
class SoakResult:
    """Everything a soak's report is made of."""

    summary: dict[str, Any]  # summary.json
    samples: list[Sample]
    mappings: list[MappingReport]
    faults: list[FaultEvent]
    duplicate_causes: dict[str, int]  # cause -> records
    destination_reasons: dict[str, int]  # reason -> records
    cost: dict[str, Any]  # soak.cost.estimate's result
    verdict: str  # the ledger's verdict, one line ("PASS: ..." / "FAIL: ...")
    failures: list[str] = field(default_factory=list)  # --fail-on thresholds crossed, one line each
    missing: list[str] = field(default_factory=list)  # lost record ids (the first 1,000)
    plan_text: str = ""  # the plan, as YAML
    time_scale: float = 1.0
