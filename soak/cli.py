"""`esm soak PLAN.yaml`, or the one-line form: `esm soak --source sqs --rate 200 --duration 30m
--function orders`. A live view while it runs, the report when it ends; the exit status says whether
the run passed (0), crossed a --fail-on threshold or lost a record (1), or could not run (2)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any, NoReturn

import anyio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from soak.load import PlanError
from soak.plan import (
    SOURCES,
    SoakPlan,
    fail_on_options,
    fault_options,
    load_plan,
    parse_plan,
)
from soak.report import render_summary_line
from soak.run import Soak

EPILOG = """\
examples:
  esm soak --source sqs --rate 200 --duration 30m --function orders --config esm.yaml --embedded-aws
  esm soak --source kafka --rate 500 --duration 10m --function orders --config esm.yaml \\
      --fault error=0.05 --fault engine-kill@2m --fail-on p99=2s --fail-on order
  esm soak plan.yaml --report soak-report
faults: error=RATE timeout=RATE throttle=RATE latency=DURATION@RATE poison@TIME engine-kill@TIME
        broker-restart@TIME (with --broker-restart-command, or the embedded emulator)
fail-on: p99=MS|DURATION error-rate=RATE lag=RECORDS lag=DURATION (iterator age) order duplicates
         pending; a lost record always fails the run
"""

DEFAULT_BROKERS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
    "activemq": "stomp://admin:admin@127.0.0.1:61613",
}


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "soak",
        help="run a load against real mappings and the function for minutes or hours; write a report",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument(
        "plan", nargs="?", type=Path, metavar="PLAN.yaml", help="the soak plan (or the one-line form)"
    )
    s.add_argument("--source", choices=SOURCES, help="one-line form: the source kind (created for the run)")
    s.add_argument("--rate", type=float, help="one-line form: records per second (200)")
    s.add_argument("--duration", help="one-line form: how long the load runs (30m, 90s, 1h)")
    s.add_argument(
        "--function", help="one-line form: FunctionName (a function of --config, or at the Lambda endpoint)"
    )
    s.add_argument("--batch-size", type=int, help="one-line form: BatchSize (default: AWS's for the source)")
    s.add_argument(
        "--shards", type=int, default=4, help="one-line form: Kinesis shards / Kafka partitions (4)"
    )
    s.add_argument("--template", type=Path, help="one-line form: a JSON record template (default: an order)")
    s.add_argument(
        "--key", help="one-line form: the partition key / message group template ({{field:customer}})"
    )
    s.add_argument("--config", type=Path, help="the engine's config file (functions, brokers, secrets)")
    s.add_argument("--embedded-aws", action="store_true", help="start moto in-process as the AWS endpoint")
    s.add_argument("--aws-endpoint-url", help="the AWS endpoint of the sources and the engine")
    s.add_argument(
        "--endpoint", action="append", default=[], metavar="SERVICE=URL", help="one service's endpoint"
    )
    s.add_argument("--kafka-bootstrap", default=os.environ.get("ESM_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    s.add_argument(
        "--broker-url", help="RabbitMQ amqp://USER:PASS@HOST:PORT/ or ActiveMQ stomp://USER:PASS@HOST:PORT"
    )
    s.add_argument("--fault", action="append", default=[], help="a fault (see below); repeatable")
    s.add_argument(
        "--broker-restart-command", help="how broker-restart@TIME restarts the broker (a shell command)"
    )
    s.add_argument("--fail-on", action="append", default=[], help="a threshold (see below); repeatable")
    s.add_argument("--report", type=Path, help="the report's folder (soak-report)")
    s.add_argument(
        "--time-scale", type=float, help="the engine's timers N times faster (esm serve --time-scale)"
    )
    s.add_argument("--drain", help="after the load, wait this long without progress before the verdict (60s)")
    s.add_argument(
        "--keep-sources", action="store_true", help="leave the queues, streams and topics it created"
    )
    s.add_argument("--no-live", action="store_true", help="no live view: a line per interval on stderr")


def run(args: argparse.Namespace) -> None:
    try:
        plan = build_plan(args)
    except PlanError as e:
        _cannot_run(e)
    console = Console(stderr=True)
    live = sys.stderr.isatty() and not args.no_live
    try:
        result = anyio.run(_run, plan, console, live)
    except* PlanError as group:
        _cannot_run(group.exceptions[0])
    console.print(render_summary_line(result))
    console.print(f"report: {plan.report_dir / 'report.html'}")
    if result.failures:
        for line in result.failures:
            console.print(f"[red]fail-on:[/red] {line}")
        raise SystemExit(1)


def _cannot_run(e: BaseException) -> NoReturn:
    """A plan that cannot run: its error, exit status 2 (1 is a run that failed its checks)."""
    print(f"esm soak: {e}", file=sys.stderr)
    raise SystemExit(2)


async def _run(plan: SoakPlan, console: Console, live: bool) -> Any:
    soak = Soak(
        plan, on_sample=None if live else lambda s: console.print(_line(s), highlight=False, soft_wrap=True)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(_signals, soak, console)
        if live:
            with Live(_View(soak), console=console, refresh_per_second=2, transient=False):
                result = await soak()
        else:
            result = await soak()
        tg.cancel_scope.cancel()
    return result


async def _signals(soak: Soak, console: Console) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if not soak.controls.stop_load.is_set():
                soak.controls.stopped_early = True
                soak.controls.stop_load.set()
                console.print("stopping the load; draining (Ctrl-C again: skip the drain)")
            else:
                soak.controls.skip_drain.set()
                console.print("skipping the drain; writing the report")


def _line(soak: Soak) -> str:
    s = soak.samples[-1]
    p99 = f"{s.latency_p99_ms:,.0f} ms" if s.latency_p99_ms is not None else "-"
    return (
        f"t={s.t:7.1f}s sent={s.sent:,} invoked={s.invoked:,} in_flight={len(soak.ledger.unaccounted()):,} "
        f"errors={s.errors} retries={s.retries} p99={p99} rss={s.engine_rss_mib or 0:.0f}MiB"
    )


class _View:
    """The live view: per mapping and in total, refreshed twice a second from the soak's state."""

    def __init__(self, soak: Soak) -> None:
        self.soak = soak

    def __rich__(self) -> Group:
        soak = self.soak
        led = soak.ledger
        table = Table(title=f"esm soak {soak.run}", expand=False)
        for col in (
            "mapping",
            "source",
            "sent",
            "invoked",
            "in flight",
            "errors",
            "retries",
            "dest.",
            "dup.",
        ):
            table.add_column(col, justify="left" if col in ("mapping", "source") else "right")
        for p in soak.producers:
            c = led.by_mapping(p.spec.name)
            table.add_row(
                p.spec.name,
                p.spec.source.kind,
                f"{c['sent']:,}",
                f"{c['invoked']:,}",
                f"{len(led.unaccounted(p.spec.name)):,}",
                f"{c['errors']:,}",
                f"{c['retries']:,}",
                _lag(soak.metrics.get(p.uuid, {})),
                f"{c['to_destination']:,}",
                f"{c['duplicates']:,}",
            )
        s = soak.samples[-1] if soak.samples else None
        total = plan_left(soak.plan, soak.elapsed, soak.load_ended_at)
        lines = [
            f"elapsed {soak.elapsed:,.0f} s · {total}",
            f"invocations {led.invocations:,} · errors {led.errors:,} · retries {led.retries:,} · "
            f"duplicates {led.duplicates:,}",
        ]
        if s is not None:
            lag = " · ".join(
                f"{name} {v:,.0f}"
                for name, v in (
                    ("iterator age ms", s.iterator_age_ms),
                    ("offset lag", s.offset_lag),
                    ("queue depth", s.queue_depth),
                )
                if v is not None
            )
            p99 = f"{s.latency_p99_ms:,.0f} ms" if s.latency_p99_ms is not None else "-"
            lines.append(
                f"sent {s.sent_per_s:,.0f}/s · invoked {s.invoked_per_s:,.0f}/s · put-to-invoke p99 {p99} · "
                f"concurrency {s.concurrency} · engine {s.engine_rss_mib or 0:.0f} MiB "
                f"{s.engine_cpu_pct or 0:.0f}% CPU" + (f" · {lag}" if lag else "")
            )
        for f in soak.faults[-3:]:
            lines.append(f"fault at {f.t:.0f} s: {f.kind} {f.detail}")
        return Group(table, Text("\n".join(lines)))


def _lag(metrics: dict[str, float]) -> str:
    """A mapping's lag as AWS names it: IteratorAge (streams), OffsetLag (Kafka), queue depth."""
    if "esm_iterator_age_milliseconds" in metrics:
        return f"{metrics['esm_iterator_age_milliseconds']:,.0f} ms"
    if "esm_offset_lag" in metrics:
        return f"{metrics['esm_offset_lag']:,.0f}"
    if "esm_queue_depth" in metrics:
        return f"{metrics['esm_queue_depth']:,.0f} msgs"
    return "-"


def plan_left(plan: SoakPlan, elapsed: float, load_ended_at: float | None) -> str:
    if load_ended_at is not None:
        return f"draining for {elapsed - load_ended_at:,.0f} s (Ctrl-C: skip)"
    return f"{max(0.0, plan.duration_s - elapsed):,.0f} s of load left (Ctrl-C: stop and drain)"


# --- the plan ---------------------------------------------------------------------------------------


def build_plan(args: argparse.Namespace) -> SoakPlan:
    overrides: dict[str, Any] = {}
    if args.report is not None:
        overrides["report"] = str(args.report)
    if args.drain is not None:
        overrides["drain"] = args.drain
    if args.keep_sources:
        overrides["keep_sources"] = True
    if args.fault:
        overrides["faults"] = _with_restart(fault_options(args.fault), args.broker_restart_command)
    if args.fail_on:
        overrides["fail_on"] = fail_on_options(args.fail_on)
    engine = _engine_options(args)
    if args.plan is not None:
        if args.source is not None:
            raise PlanError("give a plan file or --source (the one-line form), not both")
        return load_plan(args.plan, {**overrides, "engine": engine} if engine else overrides)
    missing = [o for o in ("source", "rate", "duration", "function") if getattr(args, o) is None]
    if missing:
        raise PlanError(
            "give a plan file, or the one-line form's --source, --rate, --duration and --function (missing: "
            + ", ".join("--" + m for m in missing)
            + ")"
        )
    raw = one_line(args, engine)
    raw.update(overrides)
    return parse_plan(raw, base_dir=Path.cwd(), text=_yaml(raw))


def _yaml(raw: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(raw, sort_keys=False))


def _with_restart(faults: dict[str, Any], command: str | None) -> dict[str, Any]:
    if command:
        faults.setdefault("broker_restart", {"at": []})["command"] = command
    return faults


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.config is not None:
        out["config"] = str(args.config.resolve())
    if args.embedded_aws:
        out["embedded_aws"] = True
    if args.aws_endpoint_url:
        out["aws_endpoint_url"] = args.aws_endpoint_url
    if args.endpoint:
        try:
            out["endpoints"] = dict(e.split("=", 1) for e in args.endpoint)
        except ValueError:
            raise PlanError(f"--endpoint: expected SERVICE=URL, not {args.endpoint}") from None
    if args.time_scale is not None:
        if not args.time_scale > 0:
            raise PlanError(f"--time-scale must be a positive number, not {args.time_scale:g}")
        out["time_scale"] = args.time_scale
    return out


def _function_timeout(config: Path | None, function: str) -> float:
    from engine.config import ConfigError, load_config

    if config is None:
        return 3.0
    try:
        fn = load_config(config).functions.get(function)
    except ConfigError as e:
        raise PlanError(str(e)) from None
    return fn.timeout_s if fn is not None else 3.0


def one_line(args: argparse.Namespace, engine: dict[str, Any]) -> dict[str, Any]:
    """The one-line form as a plan: a source of the run's own, AWS's defaults for its mapping, with what
    a soak wants on top (streams and Kafka: 3 retries, bisect, an on-failure SQS queue; SQS: a DLQ
    after 3 receives), so a poison record ends somewhere the ledger can see."""
    kind = args.source
    run = uuid.uuid4().hex[:8]
    name = f"soak-{run}"
    has_aws = bool(engine.get("embedded_aws") or engine.get("aws_endpoint_url") or engine.get("endpoints"))
    region = "us-east-1"
    params: dict[str, Any] = {"FunctionName": args.function}
    source: dict[str, Any] = {"kind": kind, "name": name, "shards": args.shards}
    failure_queue = False
    if kind == "sqs":
        params["BatchSize"] = 10
        timeout = _function_timeout(args.config, args.function)
        # AWS refuses a queue whose visibility timeout is below the function's timeout
        source["attributes"] = {"VisibilityTimeout": str(max(5, int(timeout + 0.999)))}
    elif kind in ("kinesis", "dynamodb"):
        params |= {
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "MaximumRetryAttempts": 3,
            "BisectBatchOnFunctionError": True,
        }
        failure_queue = has_aws
    elif kind == "kafka":
        params |= {
            "Topics": [name],
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "SelfManagedEventSource": {
                "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": args.kafka_bootstrap.split(",")}
            },
            "SourceAccessConfigurations": [{"Type": "VPC_SUBNET", "URI": "subnet:subnet-soak"}],
            "MaximumRetryAttempts": 3,
        }
        source["bootstrap"] = args.kafka_bootstrap
        failure_queue = has_aws
    else:  # an Amazon MQ broker of the soak's making: its endpoint and credentials go into the config
        broker = f"arn:aws:mq:{region}:000000000000:broker:soak-{run}:b-{uuid.uuid4()}"
        secret = f"arn:aws:secretsmanager:{region}:000000000000:secret:soak-{run}-AbCdEf"
        params |= {
            "EventSourceArn": broker,
            "Queues": [name],
            "BatchSize": 100,
            "SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": secret}],
        }
        source["broker_url"] = args.broker_url or DEFAULT_BROKERS[kind]
    if args.batch_size is not None:
        params["BatchSize"] = args.batch_size
    records: dict[str, Any] = {}
    if args.template is not None:
        import json

        try:
            records["template"] = json.loads(args.template.read_text())
        except (OSError, ValueError) as e:
            raise PlanError(f"--template {args.template}: {e}") from None
    if args.key is not None:
        records["key"] = args.key
    mapping: dict[str, Any] = {
        "name": f"{args.function}-{kind}",
        "mapping": params,
        "source": source,
        "load": {"rate": args.rate, "duration": args.duration, "records": records},
    }
    if failure_queue:
        mapping["failure_queue"] = True
    return {"mappings": [mapping], "engine": engine}
