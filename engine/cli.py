"""The `esm` command: serve the engine, list mappings, functions and the invocation journal."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from engine.config import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    AwsConfig,
    AwsSettings,
    ConfigError,
    EngineConfig,
    load_config,
    merge_aws,
    parse_endpoints,
)
from engine.ports import FunctionNotFound, InvokeError, InvokeResult
from engine.store.ports import JournalEntry

DESCRIPTION = """\
A local AWS Lambda event-source-mapping engine. `esm serve` runs the Lambda event-source-mapping API
(CreateEventSourceMapping and its siblings) on HOST:PORT, keeps mappings and checkpoints in a SQLite
store under --data-dir, and polls every enabled mapping's source, invoking the functions your config
file declares. Drive it with boto3 or `aws lambda ... --endpoint-url http://HOST:PORT`.
"""

EPILOG = """\
examples:
  esm serve --config esm.yaml --aws-endpoint-url http://127.0.0.1:4566   # beside LocalStack
  esm serve --embedded-aws --config examples/demo/esm.yaml               # moto in-process
  esm mappings --data-dir .data
  esm journal --mapping 6f1c... --limit 20
  esm journal show 42                  # one row, with its payload (esm serve --capture-payloads)
  esm replay 42 --config esm.yaml      # invoke the function again with exactly that payload
  esm trace 49680912102150703313808912886669824156803665023683526658
  esm up template.yaml --embedded-aws --create-resources   # a SAM app's functions and mappings
  esm up --plan template.yaml --parameter-overrides Env=dev
  esm soak --source sqs --rate 200 --duration 30m --function orders --config esm.yaml --embedded-aws
every option of `serve` can also be set by an environment variable (shown in its help).
"""


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def _data_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(_env("ESM_DATA_DIR", ".data") or ".data"),
        help="where the SQLite store lives [ESM_DATA_DIR] (.data)",
    )


def _config_and_aws_options(p: argparse.ArgumentParser) -> None:
    """--config and the AWS options, as `esm serve` and `esm replay` take them."""
    p.add_argument(
        "--config",
        type=Path,
        default=_env("ESM_CONFIG"),
        help="engine config file, YAML or JSON: functions, brokers, secrets [ESM_CONFIG]",
    )
    # The four AWS options default to None: engine.config.merge_aws applies the one precedence, command
    # line > environment (the ESM_* variable in brackets) > config file's aws section > default.
    p.add_argument(
        "--aws-endpoint-url",
        help="endpoint of every AWS API the engine calls: SQS, Lambda Invoke, ... "
        "(LocalStack, moto, ElasticMQ; default: AWS itself) [ESM_AWS_ENDPOINT_URL; file: aws.endpoint_url]",
    )
    p.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="SERVICE=URL",
        help="endpoint of one AWS service, over --aws-endpoint-url; repeatable, e.g. "
        "--endpoint sqs=http://127.0.0.1:9324 --endpoint lambda=http://127.0.0.1:4566 "
        "[ESM_ENDPOINTS=sqs=URL,lambda=URL]",
    )
    p.add_argument(
        "--region",
        help="region of the function ARNs the API returns "
        f"[ESM_REGION; file: aws.region; AWS_DEFAULT_REGION] ({DEFAULT_REGION})",
    )
    p.add_argument(
        "--account-id",
        help=f"account of the function ARNs the API returns [ESM_ACCOUNT_ID; file: aws.account_id] "
        f"({DEFAULT_ACCOUNT_ID})",
    )


def _serve_options(p: argparse.ArgumentParser) -> None:
    """The options of `esm serve`, which `esm up` takes too."""
    p.add_argument(
        "--host", default=_env("ESM_HOST", "127.0.0.1"), help="bind address [ESM_HOST] (127.0.0.1)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(_env("ESM_PORT", "9001") or 9001),
        help="API port [ESM_PORT] (9001; 0 picks a free port)",
    )
    _data_dir_option(p)
    _config_and_aws_options(p)
    p.add_argument(
        "--embedded-aws",
        action="store_true",
        default=_env("ESM_EMBEDDED_AWS") == "1",
        help="start moto's server in-process and use it as the AWS endpoint, in place of "
        "--aws-endpoint-url [ESM_EMBEDDED_AWS=1]",
    )
    p.add_argument(
        "--embedded-aws-port",
        type=int,
        default=int(_env("ESM_EMBEDDED_AWS_PORT", "4566") or 4566),
        help="port of the embedded AWS emulator [ESM_EMBEDDED_AWS_PORT] (4566)",
    )
    p.add_argument(
        "--kinesis-poll-interval",
        type=float,
        default=float(_env("ESM_KINESIS_POLL_INTERVAL", "1.0") or 1.0),
        help="seconds between reads of an idle Kinesis shard (AWS: about 1) [ESM_KINESIS_POLL_INTERVAL]",
    )
    p.add_argument(
        "--dynamodb-poll-interval",
        type=float,
        default=float(_env("ESM_DYNAMODB_POLL_INTERVAL", "0.25") or 0.25),
        help="seconds between reads of an idle DynamoDB shard (AWS: 0.25) [ESM_DYNAMODB_POLL_INTERVAL]",
    )
    p.add_argument(
        "--capture-payloads",
        action="store_true",
        default=_env("ESM_CAPTURE_PAYLOADS") == "1",
        help="the journal keeps the exact event of every attempt and every destination record, within "
        "its retention (`esm journal show`, `esm replay`); a function's capture_payloads in the config "
        "file does it for that function alone [ESM_CAPTURE_PAYLOADS=1]",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=float(_env("ESM_TIME_SCALE", "1") or 1),
        metavar="N",
        help="run what the engine times N times faster: retry back-off, MaximumRecordAgeInSeconds (a "
        "record's age is read on the scaled clock: 3600 s expire after 60 s at N = 60), batching windows, "
        "tumbling windows and their 2-minute idle close. What the source service times stays real: SQS "
        "visibility timeouts, long polls, poll intervals, broker redelivery [ESM_TIME_SCALE] (1)",
    )
    p.add_argument("--log-level", default=_env("ESM_LOG_LEVEL", "info"), help="[ESM_LOG_LEVEL] (info)")
    p.add_argument(
        "--log-format",
        choices=("json", "console"),
        default=_env("ESM_LOG_FORMAT", "json"),
        help="[ESM_LOG_FORMAT] (json)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="esm",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="serve the Lambda ESM API and run every enabled mapping")
    _serve_options(s)

    u = sub.add_parser(
        "up",
        help="serve as `serve` does and apply a SAM / CloudFormation template's functions and mappings",
        description="Serve the engine (every option of `esm serve`) and apply TEMPLATE: its Python "
        "functions run from their CodeUri, its event source mappings are created, updated and deleted "
        "as the stack NAME's (tagged esm:stack); other mappings are left alone.",
    )
    u.add_argument("template", type=Path, metavar="TEMPLATE", help="a SAM or CloudFormation template")
    u.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters (also SAM's ParameterKey=K,ParameterValue=V)",
    )
    u.add_argument("--stack-name", help="the stack's name (default: the template's folder name)")
    u.add_argument(
        "--create-resources",
        action="store_true",
        help="create on the AWS endpoint the queues, streams, tables, topics and buckets the template "
        "declares, named STACK-LOGICALID unless it names them; what exists is reused",
    )
    u.add_argument(
        "--plan",
        action="store_true",
        help="create nothing, serve nothing: print each mapping's CreateEventSourceMapping request, then "
        "the functions, then the resources, one JSON object per line",
    )
    _serve_options(u)

    m = sub.add_parser("mappings", help="list the mappings in the store")
    _data_dir_option(m)
    m.add_argument("--json", action="store_true", help="print the stored mappings as JSON")

    f = sub.add_parser("functions", help="list the functions the config file declares")
    f.add_argument("--config", type=Path, default=_env("ESM_CONFIG"))

    j = sub.add_parser(
        "journal",
        help="list invocation attempts, discards and destination deliveries (outcome, attempt, size, "
        "detail); `esm journal show ID`: one row with its captured payload",
    )
    j.add_argument("action", nargs="?", choices=("show",), help="show one row (by its ID)")
    j.add_argument(
        "entry_id", nargs="?", type=int, metavar="ID", help="the row's ID (the listing's first column)"
    )
    _data_dir_option(j)
    j.add_argument("--mapping", help="only this mapping's UUID")
    j.add_argument("--limit", type=int, default=50)
    j.add_argument("--json", action="store_true")

    t = sub.add_parser(
        "trace",
        help="one record's journey: every batch it was in, each attempt and bisect half, and its end",
    )
    t.add_argument("record", metavar="RECORD", help="a sequence number, a Kafka offset or a message id")
    t.add_argument("--mapping", help="only this mapping's UUID")
    t.add_argument("--shard", help="only this shard or partition (e.g. shardId-000000000000, orders-0)")
    _data_dir_option(t)
    t.add_argument("--json", action="store_true")

    r = sub.add_parser(
        "replay",
        help="invoke a function with exactly the payload a journal row captured and print its response",
    )
    r.add_argument("entry_id", type=int, metavar="ID", help="a journal row with a payload (esm journal)")
    r.add_argument("--function", help="another function of the config file (default: the mapping's)")
    _data_dir_option(r)
    _config_and_aws_options(r)

    from soak.cli import add_parser as add_soak  # the soak is a client of the engine, beside it

    add_soak(sub)
    return p


def load_or_exit(path: Path | None) -> EngineConfig:
    """The config file (none: an empty config); its mistakes end the command with their message."""
    if path is None:
        return EngineConfig()
    try:
        return load_config(path)
    except ConfigError as e:
        raise SystemExit(f"esm: {e}") from None


def _serve(args: argparse.Namespace) -> None:
    from engine.logging import configure

    configure(args.log_level, json_lines=args.log_format == "json")
    run_engine(args, load_or_exit(args.config))


#: `esm up`'s hooks: the config to run once the AWS endpoint is known; what to do once serving
Prepare = Callable[[AwsSettings], Awaitable[EngineConfig]]
Started = Callable[[int, AwsSettings], Awaitable[None]]


def run_engine(
    args: argparse.Namespace,
    config: EngineConfig,
    *,
    prepare: Prepare | None = None,
    started: Started | None = None,
) -> None:
    """The engine as `esm serve`'s options say, until SIGINT/SIGTERM. `prepare` returns the config to
    run once the AWS endpoint is known (the embedded one started); `started` runs once it serves."""
    from engine.app import Engine, EngineSettings
    from engine.embedded import EmbeddedAws
    from engine.runner.stream import StreamRunnerSettings

    if not args.time_scale > 0:
        raise SystemExit(f"esm: --time-scale must be a positive number, not {args.time_scale:g}")
    aws = aws_settings(args, config)  # fails early on a malformed --endpoint / ESM_ENDPOINTS
    embedded = None
    if args.embedded_aws:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        embedded = EmbeddedAws(port=args.embedded_aws_port, data_dir=args.data_dir)
        embedded.start()
        aws = aws_settings(args, config, embedded_endpoint_url=embedded.endpoint_url)
    settings = EngineSettings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        aws_endpoint_url=aws.endpoint_url,
        endpoints=aws.endpoints,
        region=aws.region,
        account_id=aws.account_id,
        stream=StreamRunnerSettings(poll_interval_s=args.kinesis_poll_interval),
        dynamodb_poll_interval_s=args.dynamodb_poll_interval,
        capture_payloads=args.capture_payloads,
        time_scale=args.time_scale,
    )

    async def main() -> None:
        running = await prepare(aws) if prepare else config
        on_start = (lambda port: started(port, aws)) if started else None
        await Engine(settings, running).serve_until_signal(on_start)

    try:
        anyio.run(main)
    finally:
        if embedded:
            embedded.stop()


def _up(args: argparse.Namespace) -> None:
    from stack.cli import up

    up(args)


def aws_settings(
    args: argparse.Namespace,
    config: EngineConfig,
    *,
    environ: Mapping[str, str] | None = None,
    embedded_endpoint_url: str | None = None,
) -> AwsSettings:
    """The AWS settings of `esm serve`, merged by engine.config.merge_aws (command line > ESM_* > file);
    the embedded emulator, when started, is the command line's endpoint of every service."""
    try:
        command_line = AwsConfig(
            endpoint_url=embedded_endpoint_url or args.aws_endpoint_url,
            region=args.region,
            account_id=args.account_id,
            endpoints=parse_endpoints(args.endpoint or []),
        )
        return merge_aws(command_line, config.aws, environ)
    except ValueError as e:
        raise SystemExit(f"esm: {e}") from None


def _store(data_dir: Path):  # type: ignore[no-untyped-def]
    from engine.store.sqlite import SqliteStore

    path = data_dir / "esm.sqlite3"
    if not path.exists():
        raise SystemExit(f"esm: no store at {path} (run `esm serve --data-dir {data_dir}` first)")
    return SqliteStore(path)


def _ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _mappings(args: argparse.Namespace) -> None:
    items = _store(args.data_dir).list_mappings()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "UUID": m.uuid,
                        "State": m.state.value,
                        "StateTransitionReason": m.state_transition_reason,
                        "LastProcessingResult": m.last_processing_result,
                        "FunctionArn": m.function_arn,
                        **m.params,
                    }
                    for m in items
                ],
                indent=2,
            )
        )
        return
    print(
        f"{'UUID':36}  {'STATE':9}  {'SOURCE':60}  {'FUNCTION':40}  {'STATE TRANSITION REASON':36}  "
        "LAST PROCESSING RESULT"
    )
    for m in items:
        source = m.event_source_arn or ",".join(
            (m.params.get("SelfManagedEventSource") or {})
            .get("Endpoints", {})
            .get("KAFKA_BOOTSTRAP_SERVERS", [])
        )
        # a consumer Lambda stopped (e.g. a Kafka mapping's bad credentials) says why in both columns
        print(
            f"{m.uuid:36}  {m.state.value:9}  {source:60}  {m.function_name:40}  "
            f"{m.state_transition_reason:36}  {m.last_processing_result or '-'}".rstrip()
        )


def _functions(args: argparse.Namespace) -> None:
    config = load_or_exit(args.config)
    print(f"{'NAME':30}  {'KIND':8}  TARGET")
    for name, fn in sorted(config.functions.items()):
        kind, target = fn.describe()
        print(f"{name:30}  {kind:8}  {target}")


def _entry_json(e: JournalEntry) -> dict[str, Any]:
    out = dataclasses.asdict(e)
    payload = out.pop("payload")
    if payload is not None:  # the exact bytes: as text when they are UTF-8 (events and records are JSON)
        try:
            out["payload"] = payload.decode()
        except UnicodeDecodeError:
            out["payload_base64"] = base64.b64encode(payload).decode()
    return out


def _journal(args: argparse.Namespace) -> None:
    store = _store(args.data_dir)
    if args.action == "show":
        if args.entry_id is None:
            raise SystemExit("esm: journal show needs a row ID (the first column of `esm journal`)")
        _journal_show(store.journal_entry(args.entry_id), args)
        return
    entries = list(store.journal(args.mapping, args.limit))
    if args.json:
        print(json.dumps([_entry_json(e) for e in entries], indent=2, default=str))
        return
    print(
        f"{'ID':>8}  {'AT':24}  {'MAPPING':8}  {'SCOPE':24}  {'ATTEMPT':>7}  {'DEPTH':>5}  {'SIZE':>5}  "
        f"{'OUTCOME':18}  {'MS':>8}  ITEMS  DETAIL"
    )
    for e in entries:
        # items indented by bisect depth: a poison record's bisect tree reads top to bottom
        items = "  " * e.bisect_depth + (f"{e.first_item}..{e.last_item}" if e.first_item else "(no records)")
        # why a record was discarded, where its failure record went, what a delivery failed on
        detail = " ".join(f"{k}={v}" for k, v in e.detail.items())
        print(
            f"{e.id:>8}  {_ts(e.at):24}  {e.mapping_uuid[:8]:8}  {e.scope[:24]:24}  {e.attempt:>7}  "
            f"{e.bisect_depth:>5}  {e.batch_size:>5}  {e.outcome:18}  {e.duration_ms:>8.1f}  {items}  "
            f"{detail[:200]}".rstrip()
        )


def _journal_show(e: JournalEntry | None, args: argparse.Namespace) -> None:
    if e is None:
        raise SystemExit(f"esm: no journal row {args.entry_id} (gone with the journal's retention?)")
    if args.json:
        print(json.dumps(_entry_json(e), indent=2, default=str))
        return
    items = ", ".join(e.items) if e.items else f"{e.first_item}..{e.last_item}"
    for label, value in (
        ("id", e.id),
        ("at", _ts(e.at)),
        ("mapping", e.mapping_uuid),
        ("scope", e.scope),
        ("outcome", e.outcome),
        ("attempt", e.attempt),
        ("bisect depth", e.bisect_depth),
        ("size", e.batch_size),
        ("items", items),
        ("duration ms", round(e.duration_ms, 3)),
        ("detail", json.dumps(e.detail)),
    ):
        print(f"{label + ':':14}{value}")
    if e.payload is None:
        print("payload:      (not captured: esm serve --capture-payloads, or capture_payloads in the config)")
        return
    print(f"payload:      {len(e.payload)} bytes")
    print(_pretty(e.payload))


def _pretty(payload: bytes) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:  # not JSON (a Kafka topic's messages, one per line): as it is
        return payload.decode(errors="replace")


def _trace(args: argparse.Namespace) -> None:
    from engine.journey import journey_end

    rows = _store(args.data_dir).trace(args.record, mapping_uuid=args.mapping, scope=args.shard)
    # one journey per shard or queue that held it (a Kafka offset exists in every partition)
    journeys: dict[tuple[str, str], list[JournalEntry]] = {}
    for e in rows:
        key = (e.mapping_uuid, e.scope.split("/lane-")[0])
        journeys.setdefault(key, []).append(e)
    if args.json:
        out = [
            {
                "mapping": m,
                "scope": s,
                "end": journey_end(args.record, es),
                "rows": [_entry_json(e) for e in es],
            }
            for (m, s), es in journeys.items()
        ]
        print(json.dumps(out, indent=2, default=str))
        return
    if not journeys:
        print(f"{args.record}: {journey_end(args.record, [])}")
        return
    for (mapping, scope), entries in journeys.items():
        print(f"{args.record} in {scope} (mapping {mapping}):")
        for e in entries:
            # each bisect half indented under the batch it came from
            size = f"{e.batch_size} record{'s' if e.batch_size != 1 else ''}"
            detail = " ".join(f"{k}={v}" for k, v in e.detail.items() if k != "failed")
            print(
                f"  {e.id:>8}  {_ts(e.at)}  {'  ' * e.bisect_depth}attempt {e.attempt}  {size:>12}  "
                f"{e.outcome:18}  {e.duration_ms:>8.1f} ms  {detail}".rstrip()
            )
        print(f"  end: {journey_end(args.record, entries)}")


def _replay(args: argparse.Namespace) -> None:
    """Invoke a function with a captured payload, as the engine did: step through it in a debugger."""
    from engine.invoke.registry import FunctionRegistry
    from engine.logging import configure

    configure("warning", json_lines=False)  # stdout is the function's response alone
    store = _store(args.data_dir)
    e = store.journal_entry(args.entry_id)
    if e is None:
        raise SystemExit(f"esm: no journal row {args.entry_id} (gone with the journal's retention?)")
    if e.payload is None:
        raise SystemExit(
            f"esm: journal row {e.id} has no payload (not captured: esm serve --capture-payloads, or "
            "capture_payloads in the config file)"
        )
    m = store.get_mapping(e.mapping_uuid)
    if args.function is None and m is None:
        raise SystemExit(f"esm: mapping {e.mapping_uuid} is gone: name the function with --function")
    function = args.function or (m.function_arn if m else "")
    config = load_or_exit(args.config)
    aws = aws_settings(args, config)
    registry = FunctionRegistry(
        config, lambda_endpoint_url=aws.endpoint_for("lambda"), region=aws.region, account_id=aws.account_id
    )
    payload = e.payload

    async def invoke() -> InvokeResult:
        try:
            invoker = await registry.resolve(function)
            return await invoker.invoke(payload)
        finally:
            await registry.aclose()

    try:
        result = anyio.run(invoke)
    except FunctionNotFound:
        raise SystemExit(
            f"esm: no function {function!r} in the config file or at the Lambda endpoint"
        ) from None
    except InvokeError as err:
        raise SystemExit(f"esm: the function could not be invoked: {err}") from None
    status = f"function error ({result.function_error})" if result.function_error else "ok"
    print(
        f"replayed journal row {e.id} ({e.outcome}, {len(payload)} bytes) on {function}: {status}, "
        f"{result.duration_ms:.1f} ms, request {result.request_id}",
        file=sys.stderr,
    )
    print(_pretty(result.payload) if result.payload else "null")
    if result.function_error:
        raise SystemExit(1)


def _soak(args: argparse.Namespace) -> None:
    from engine.logging import configure
    from soak.cli import run

    configure("warning", json_lines=False)
    run(args)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    commands = {
        "serve": _serve,
        "up": _up,
        "mappings": _mappings,
        "functions": _functions,
        "journal": _journal,
        "trace": _trace,
        "replay": _replay,
        "soak": _soak,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main(sys.argv[1:])
