"""A soak plan: mappings as CreateEventSourceMapping takes them, a load per mapping, faults, thresholds.
Read from PLAN.yaml, or built from the one-line form's options; every mistake is a PlanError naming
where it is."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from soak.load import PlanError, Rate, Records, duration_s, parse_rate

SOURCES = ("sqs", "kinesis", "dynamodb", "kafka", "rabbitmq", "activemq")


@dataclass(frozen=True)
class SourceSpec:
    """How the soak reaches a mapping's source, and what it creates when ``create`` (and deletes after):
    an SQS queue (with a redrive DLQ after ``max_receives``), a Kinesis stream or a Kafka topic of
    ``shards`` shards / partitions, a DynamoDB table with its stream, a RabbitMQ or ActiveMQ queue."""

    kind: str
    name: str
    create: bool = True
    shards: int = 4
    attributes: Mapping[str, str] = field(default_factory=dict)
    fifo: bool = False
    dlq: bool = True
    max_receives: int = 3
    #: Kafka bootstrap servers (host:port,...); MQ broker URL (amqp://user:pass@host:port/vhost,
    #: stomp://user:pass@host:port)
    bootstrap: str | None = None
    broker_url: str | None = None


@dataclass(frozen=True)
class LoadSpec:
    rate: Rate
    duration_s: float | None = None
    count: int | None = None
    records: Records = field(default_factory=Records)


@dataclass(frozen=True)
class MappingSpec:
    """One mapping: ``params`` exactly as CreateEventSourceMapping takes them (EventSourceArn filled in
    once the source exists, when the plan leaves it out); ``failure_queue``: an SQS queue the soak
    creates as the on-failure destination (the one-line form's streams and Kafka)."""

    name: str
    source: SourceSpec
    params: Mapping[str, Any]
    load: LoadSpec
    failure_queue: bool = False


@dataclass(frozen=True)
class Faults:
    """Wrapped around the function (each invocation draws): errors, timeouts, throttles, added latency;
    and at moments: a poison record to every mapping, the engine SIGKILLed and restarted, the broker or
    emulator restarted (``broker_restart_command``, or the embedded emulator in-process)."""

    errors: float = 0.0
    timeouts: float = 0.0
    throttles: float = 0.0
    latency_rate: float = 0.0
    latency_ms: float = 0.0
    poison_at: tuple[float, ...] = ()
    engine_kill_at: tuple[float, ...] = ()
    broker_restart_at: tuple[float, ...] = ()
    broker_restart_command: str | None = None

    @property
    def wraps_function(self) -> bool:
        return bool(self.errors or self.timeouts or self.throttles or self.latency_rate or self.poison_at)


@dataclass(frozen=True)
class FailOn:
    """--fail-on: the thresholds that make `esm soak` exit non-zero. A lost record always does."""

    p99_ms: float | None = None
    error_rate: float | None = None
    lag_records: float | None = None  # OffsetLag + queue depth
    iterator_age_ms: float | None = None
    order: bool = False
    duplicates: bool = False
    pending: bool = False

    def describe(self) -> list[str]:
        out = []
        if self.p99_ms is not None:
            out.append(f"put-to-invoke p99 > {self.p99_ms:g} ms")
        if self.error_rate is not None:
            out.append(f"error rate > {self.error_rate:g}")
        if self.lag_records is not None:
            out.append(f"lag > {self.lag_records:g} records")
        if self.iterator_age_ms is not None:
            out.append(f"iterator age > {self.iterator_age_ms:g} ms")
        if self.order:
            out.append("any order violation")
        if self.duplicates:
            out.append("any duplicate")
        if self.pending:
            out.append("any record still pending at the end")
        return ["any lost record", *out]


@dataclass(frozen=True)
class EngineSpec:
    """How the soak runs the engine (as `esm serve` would): config file, AWS endpoints, time scale."""

    config: Path | None = None
    embedded_aws: bool = False
    aws_endpoint_url: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    time_scale: float = 1.0
    capture_payloads: bool = False
    kinesis_poll_interval_s: float = 1.0


@dataclass(frozen=True)
class SoakPlan:
    mappings: tuple[MappingSpec, ...]
    engine: EngineSpec = field(default_factory=EngineSpec)
    faults: Faults = field(default_factory=Faults)
    fail_on: FailOn = field(default_factory=FailOn)
    report_dir: Path = Path("soak-report")
    #: after the load: until every record is accounted for, or this long without progress
    drain_s: float = 60.0
    #: the report's interval (0: a tenth of a second per minute of the run, 1 s to 30 s)
    sample_s: float = 0.0
    prices: Mapping[str, float] = field(default_factory=dict)
    seed: int = 7
    #: leave the queues, streams, tables and topics the soak created (to look at a DLQ after)
    keep_sources: bool = False
    text: str = ""

    @property
    def duration_s(self) -> float:
        """The longest load's duration (a count-bound load: its count at its peak rate, a guess)."""
        return max(
            (
                m.load.duration_s or (m.load.count or 0) / max(m.load.rate.peak_rate, 1e-9)
                for m in self.mappings
            ),
            default=0.0,
        )

    def interval_s(self) -> float:
        if self.sample_s > 0:
            return self.sample_s
        return min(30.0, max(1.0, self.duration_s / 600))


# --- the plan file ----------------------------------------------------------------------------------


def load_plan(path: Path, overrides: Mapping[str, Any] | None = None) -> SoakPlan:
    """PLAN.yaml; ``overrides`` (from the command line) win over the file's top-level keys."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except OSError as e:
        raise PlanError(f"{path}: cannot read the plan: {e}") from None
    except yaml.YAMLError as e:
        raise PlanError(f"{path}: not YAML: {e}") from None
    if not isinstance(raw, Mapping):
        raise PlanError(f"{path}: a plan is a mapping with at least `mappings:`")
    merged = {**raw, **(overrides or {})}
    if overrides and "engine" in overrides:  # the command line's engine options over the file's
        merged["engine"] = {**(raw.get("engine") or {}), **overrides["engine"]}
    return parse_plan(merged, base_dir=path.resolve().parent, text=text)


_TOP = {
    "mappings", "engine", "faults", "fail_on", "report", "drain", "sample", "prices", "seed", "duration",
    "function", "keep_sources",
}  # fmt: skip


def parse_plan(raw: Mapping[str, Any], *, base_dir: Path, text: str = "") -> SoakPlan:
    unknown = set(raw) - _TOP
    if unknown:
        raise PlanError(f"unknown top-level key(s) {sorted(unknown)} (known: {sorted(_TOP)})")
    mappings = raw.get("mappings")
    if not isinstance(mappings, Sequence) or isinstance(mappings, str) or not mappings:
        raise PlanError("mappings: a list of at least one mapping is required")
    default_duration = raw.get("duration")
    default_function = raw.get("function")
    specs = tuple(
        _mapping(m, i, base_dir, default_duration, default_function) for i, m in enumerate(mappings)
    )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise PlanError(f"mappings: names must differ ({names})")
    return SoakPlan(
        mappings=specs,
        engine=_engine(raw.get("engine") or {}, base_dir),
        faults=parse_faults(raw.get("faults") or {}),
        fail_on=parse_fail_on(raw.get("fail_on") or {}),
        report_dir=Path(str(raw.get("report", "soak-report"))),
        drain_s=duration_s(raw.get("drain", 60), "drain"),
        sample_s=duration_s(raw.get("sample", 0), "sample"),
        prices=dict(raw.get("prices") or {}),
        seed=int(raw.get("seed", 7)),
        keep_sources=bool(raw.get("keep_sources", False)),
        text=text,
    )


def _mapping(raw: Any, i: int, base_dir: Path, duration: Any, function: Any) -> MappingSpec:
    where = f"mappings[{i}]"
    if not isinstance(raw, Mapping):
        raise PlanError(f"{where}: expected {{name, mapping, load}}")
    params = dict(raw.get("mapping") or {})
    if function is not None:
        params.setdefault("FunctionName", function)
    if "FunctionName" not in params:
        raise PlanError(f"{where}.mapping: FunctionName is required (or a top-level function:)")
    source = _source(raw.get("source") or {}, params, where)
    load = _load(raw.get("load"), f"{where}.load", base_dir, duration)
    name = str(raw.get("name") or f"{source.kind}-{i}")
    failure_queue = bool(raw.get("failure_queue", False))
    return MappingSpec(name=name, source=source, params=params, load=load, failure_queue=failure_queue)


def source_kind(params: Mapping[str, Any]) -> str | None:
    """The source kind CreateEventSourceMapping's parameters name (MQ: None, the broker engine decides)."""
    arn = str(params.get("EventSourceArn") or "")
    if params.get("SelfManagedEventSource") or ":kafka:" in arn:
        return "kafka"
    for kind, marker in (("sqs", ":sqs:"), ("kinesis", ":kinesis:"), ("dynamodb", ":dynamodb:")):
        if marker in arn:
            return kind
    return None


def _source(raw: Mapping[str, Any], params: Mapping[str, Any], where: str) -> SourceSpec:
    kind = raw.get("kind") or source_kind(params)
    if kind not in SOURCES:
        raise PlanError(
            f"{where}.source.kind: one of {', '.join(SOURCES)} (an Amazon MQ broker ARN names no engine), "
            f"not {kind!r}"
        )
    arn = str(params.get("EventSourceArn") or "")
    name = raw.get("name") or _name_from(kind, arn, params)
    if not name:
        raise PlanError(
            f"{where}: name the source (source.name) or give its EventSourceArn / Topics / Queues"
        )
    bootstrap = raw.get("bootstrap")
    if kind == "kafka" and bootstrap is None:
        servers = (
            (params.get("SelfManagedEventSource") or {}).get("Endpoints", {}).get("KAFKA_BOOTSTRAP_SERVERS")
        )
        bootstrap = ",".join(servers) if servers else None
    return SourceSpec(
        kind=kind,
        name=str(name),
        create=bool(raw.get("create", True)),
        shards=int(raw.get("shards", raw.get("partitions", 4))),
        attributes={str(k): str(v) for k, v in (raw.get("attributes") or {}).items()},
        fifo=bool(raw.get("fifo", str(name).endswith(".fifo"))),
        dlq=bool(raw.get("dlq", True)),
        max_receives=int(raw.get("max_receives", 3)),
        bootstrap=bootstrap,
        broker_url=raw.get("broker_url"),
    )


def _name_from(kind: str, arn: str, params: Mapping[str, Any]) -> str | None:
    if kind == "kafka":
        topics = params.get("Topics") or []
        return str(topics[0]) if topics else None
    if kind in ("rabbitmq", "activemq"):
        queues = params.get("Queues") or []
        return str(queues[0]) if queues else None
    if kind == "sqs" and arn:
        return arn.rsplit(":", 1)[1]
    m = re.search(r":(?:stream|table)/([^/]+)", arn)
    return m[1] if m else None


def _load(raw: Any, where: str, base_dir: Path, duration: Any) -> LoadSpec:
    if not isinstance(raw, Mapping) or "rate" not in raw:
        raise PlanError(f"{where}: a load needs a rate (and a duration or a count)")
    records = raw.get("records") or {}
    if not isinstance(records, Mapping):
        raise PlanError(f"{where}.records: expected {{template | jsonl | generator, key}}")
    given = [k for k in ("template", "jsonl", "generator") if k in records]
    if len(given) > 1:
        raise PlanError(f"{where}.records: one of template, jsonl or generator, not {given}")
    jsonl = records.get("jsonl")
    count = raw.get("count")
    dur = raw.get("duration", duration if count is None else None)
    if dur is None and count is None:
        raise PlanError(f"{where}: a duration or a count is required")
    spec = Records(
        template=records.get("template"),
        jsonl=(base_dir / str(jsonl)) if jsonl else None,
        generator=records.get("generator"),
        key=str(records.get("key", "{{field:customer}}" if not given else "{{seq}}")),
        loop=bool(records.get("loop", False)),
    )
    if spec.jsonl is not None and not spec.jsonl.is_file():
        raise PlanError(f"{where}.records.jsonl: no file {spec.jsonl}")
    return LoadSpec(
        rate=parse_rate(raw["rate"], f"{where}.rate"),
        duration_s=duration_s(dur, f"{where}.duration") if dur is not None else None,
        count=int(count) if count is not None else None,
        records=spec,
    )


def _engine(raw: Mapping[str, Any], base_dir: Path) -> EngineSpec:
    config = raw.get("config")
    return EngineSpec(
        config=(base_dir / str(config)) if config else None,
        embedded_aws=bool(raw.get("embedded_aws", False)),
        aws_endpoint_url=raw.get("aws_endpoint_url"),
        endpoints=dict(raw.get("endpoints") or {}),
        region=str(raw.get("region", "us-east-1")),
        time_scale=float(raw.get("time_scale", 1.0)),
        capture_payloads=bool(raw.get("capture_payloads", False)),
        kinesis_poll_interval_s=float(raw.get("kinesis_poll_interval", 1.0)),
    )


def _times(value: Any, where: str) -> tuple[float, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(sorted(duration_s(v, where) for v in items))


def _milliseconds(value: Any, where: str) -> float:
    """A bare number is milliseconds (p99=500); a duration says its unit (p99=2s)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return duration_s(value, where) * 1000


def _rate(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or not 0 <= value <= 1:
        raise PlanError(f"{where}: a share of invocations between 0 and 1, not {value!r}")
    return float(value)


def parse_faults(raw: Mapping[str, Any]) -> Faults:
    function = raw.get("function") or {}
    latency = function.get("latency") or {}
    restart = raw.get("broker_restart") or {}
    if not isinstance(restart, Mapping):
        restart = {"at": restart}
    return Faults(
        errors=_rate(function.get("errors", 0), "faults.function.errors"),
        timeouts=_rate(function.get("timeouts", 0), "faults.function.timeouts"),
        throttles=_rate(function.get("throttles", 0), "faults.function.throttles"),
        latency_rate=_rate(latency.get("rate", 0), "faults.function.latency.rate"),
        latency_ms=duration_s(latency.get("added", 0), "faults.function.latency.added") * 1000,
        poison_at=_times(raw.get("poison"), "faults.poison"),
        engine_kill_at=_times(raw.get("engine_kill"), "faults.engine_kill"),
        broker_restart_at=_times(restart.get("at"), "faults.broker_restart.at"),
        broker_restart_command=restart.get("command"),
    )


def parse_fail_on(raw: Mapping[str, Any]) -> FailOn:
    lag = raw.get("lag")
    age = raw.get("iterator_age")
    if isinstance(lag, str):  # a duration: IteratorAge
        age, lag = lag, None
    return FailOn(
        p99_ms=_milliseconds(raw["p99"], "fail_on.p99") if "p99" in raw else None,
        error_rate=_rate(raw["error_rate"], "fail_on.error_rate") if "error_rate" in raw else None,
        lag_records=float(lag) if lag is not None else None,
        iterator_age_ms=duration_s(age, "fail_on.iterator_age") * 1000 if age is not None else None,
        order=bool(raw.get("order", False)),
        duplicates=bool(raw.get("duplicates", False)),
        pending=bool(raw.get("pending", False)),
    )


# --- the one-line form ------------------------------------------------------------------------------


def fault_options(values: Sequence[str]) -> dict[str, Any]:
    """``--fault`` values as the plan's ``faults`` section: error=0.05, timeout=0.01, throttle=0.01,
    latency=200ms@0.1, poison@30s, engine-kill@2m, broker-restart@5m."""
    out: dict[str, Any] = {"function": {}}
    for v in values:
        name, sep, arg = re.split(r"([=@])", v, maxsplit=1) if re.search(r"[=@]", v) else (v, "", "")
        name = name.strip().lower()
        if sep == "=" and name in ("error", "errors", "timeout", "timeouts", "throttle", "throttles"):
            out["function"][name.rstrip("s") + "s"] = _float(arg, f"--fault {v}")
        elif sep == "=" and name == "latency":
            added, _, rate = arg.partition("@")
            out["function"]["latency"] = {"added": added, "rate": _float(rate or "1", f"--fault {v}")}
        elif sep == "@" and name in ("poison", "engine-kill", "broker-restart"):
            key = {"poison": "poison", "engine-kill": "engine_kill", "broker-restart": "broker_restart"}[name]
            if key == "broker_restart":
                out.setdefault(key, {"at": []})["at"].append(arg)
            else:
                out.setdefault(key, []).append(arg)
        else:
            raise PlanError(
                f"--fault {v}: expected error=RATE, timeout=RATE, throttle=RATE, latency=DURATION@RATE, "
                "poison@TIME, engine-kill@TIME or broker-restart@TIME"
            )
    return out


def fail_on_options(values: Sequence[str]) -> dict[str, Any]:
    """``--fail-on`` values as the plan's ``fail_on`` section: p99=500ms, error-rate=0.05, lag=1000
    (records) or lag=30s (iterator age), order, duplicates, pending, loss (always on)."""
    out: dict[str, Any] = {}
    for v in values:
        name, _, arg = v.partition("=")
        name = name.strip().lower().replace("-", "_")
        if name in ("order", "duplicates", "pending") and not arg:
            out[name] = True
        elif name == "loss" and not arg:
            pass  # always on
        elif name in ("p99", "error_rate", "lag") and arg:
            out[name] = _float(arg, f"--fail-on {v}") if name == "error_rate" else _number_or_text(arg)
        else:
            raise PlanError(
                f"--fail-on {v}: expected p99=DURATION, error-rate=RATE, lag=RECORDS or lag=DURATION, "
                "order, duplicates, pending or loss"
            )
    return out


def _float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise PlanError(f"{where}: {text!r} is not a number") from None


def _number_or_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text
