"""`esm up TEMPLATE`: serve the engine and apply a SAM / CloudFormation template's functions and mappings.

Exit status: 2 for a template the engine cannot run (the error names the resource, the property and
why), 0 when stopped by SIGINT/SIGTERM after serving.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import structlog

from engine.cli import aws_settings, load_or_exit, run_engine
from engine.config import AwsSettings, EngineConfig, FunctionConfig
from stack.apply import apply
from stack.intrinsics import TemplateError
from stack.physical import Physical, Where
from stack.plan import FunctionPlan, StackPlan, build_plan
from stack.provision import provision
from stack.template import Template, expand, lint

log = structlog.get_logger(__name__)

ACTIONS = ("created", "updated", "replaced", "deleted", "unchanged")
_STACK_NAME = re.compile(r"^[A-Za-z][-A-Za-z0-9]{0,127}$")


def up(args: argparse.Namespace) -> None:
    from engine.logging import configure

    configure(args.log_level, json_lines=args.log_format == "json")
    try:
        _up(args)
    except TemplateError as e:
        raise SystemExit(_failure(args.template, str(e))) from None


def _failure(template: Path, why: str) -> int:
    print(f"esm up: {template}: {why}", file=sys.stderr)
    return 2


def _up(args: argparse.Namespace) -> None:
    config = load_or_exit(args.config)
    stack_name = stack_name_of(args)
    overrides = parameter_overrides(args.parameter_overrides)
    aws = aws_settings(args, config)
    template = expand(
        args.template,
        region=aws.region,
        account_id=aws.account_id,
        stack_name=stack_name,
        overrides=overrides,
    )
    where = Where(aws.region, aws.account_id, stack_name, aws.endpoint_for("sqs"))
    plan = build_plan(template, where, overrides)
    _lint(template, plan, aws.region)
    if args.plan:
        for line in plan.lines():
            print(json.dumps(line, default=str))
        return

    async def prepare(running: AwsSettings) -> EngineConfig:
        nonlocal plan
        where = Where(running.region, running.account_id, stack_name, running.endpoint_for("sqs"))
        plan = build_plan(template, where, overrides)
        if args.create_resources or running.endpoint_url:
            known = await provision(plan.resources, running, create=args.create_resources)
            plan = build_plan(template, where, overrides, known)
        return engine_config(config, plan, args.data_dir / "stacks" / stack_name)

    async def started(port: int, running: AwsSettings) -> None:
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        for f in plan.functions:
            if f.not_runnable:
                log.warning("stack_function_not_runnable", function=f.name, why=f.not_runnable)
                print(f"esm up: {f.logical_id} ({f.name}) is not runnable: {f.not_runnable}", flush=True)
        url = f"http://{host}:{port}"
        print(f"esm up: {stack_name}: serving the Lambda API on {url}", flush=True)
        done = await apply(plan, endpoint_url=url, region=running.region)
        counts = []
        for action in ACTIONS:
            for logical_id in getattr(done, action):
                uuid = done.uuids.get(logical_id, "")
                print(f"esm up: {stack_name}: {action} {logical_id} {uuid}".rstrip(), flush=True)
            counts.append(f"{len(getattr(done, action))} {action}")
        print(f"esm up: {stack_name}: applied ({', '.join(counts)})", flush=True)

    try:
        run_engine(args, config, prepare=prepare, started=started)
    except* TemplateError as group:
        raise SystemExit(_failure(args.template, str(group.exceptions[0]))) from None


def stack_name_of(args: argparse.Namespace) -> str:
    name = args.stack_name or re.sub(r"[^-A-Za-z0-9]", "-", args.template.resolve().parent.name)
    if not _STACK_NAME.match(name):
        why = f"stack name {name!r}: a letter, then letters, digits and hyphens (at most 128)"
        why += "; give one with --stack-name"
        raise TemplateError(None, "", why)
    return name


def parameter_overrides(given: list[str]) -> dict[str, str]:
    """`Key=Value` pairs, or SAM's `ParameterKey=Key,ParameterValue=Value`."""
    found: dict[str, str] = {}
    for pair in given:
        sam = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", pair)
        key, sep, value = (sam.group(1), "=", sam.group(2)) if sam else pair.partition("=")
        if not sep or not key:
            raise TemplateError(None, "", f"--parameter-overrides: {pair!r} is not KEY=VALUE")
        found[key] = value
    return found


def _lint(template: Template, plan: StackPlan, region: str) -> None:
    ran = {m.logical_id for m in plan.mappings} | {f.logical_id for f in plan.functions}
    ran |= {r.logical_id for r in plan.resources}
    errors = lint(template.data, region=region, logical_ids=ran)
    if errors:
        raise TemplateError(None, "", "cfn-lint: " + "; ".join(errors))


def engine_config(base: EngineConfig, plan: StackPlan, code_home: Path) -> EngineConfig:
    """`base` (the --config file) with the stack's runnable functions and its secrets; a `brokers` or
    `secrets` entry keyed by a logical id of the template names that resource's ARN."""
    functions = dict(base.functions)
    for f in plan.functions:
        if f.not_runnable:
            continue
        if f.name in functions:
            raise TemplateError(
                f.logical_id, "", f"function {f.name!r} is declared by the template and by --config too"
            )
        functions[f.name] = _function_config(f, code_home)
    sections = dict(base.sections)
    for section in ("brokers", "secrets"):
        entries = sections.get(section)
        if isinstance(entries, Mapping):
            sections[section] = {_arn_of(key, plan.physical): value for key, value in entries.items()}
    if plan.secrets:
        sections["secrets"] = {**plan.secrets, **(sections.get("secrets") or {})}
    return dataclasses.replace(base, functions=functions, sections=sections)


def _arn_of(key: str, identities: Mapping[str, Physical]) -> str:
    found = identities.get(key)
    if found is None:
        return key
    return found.arn or str(found.ref)


def _function_config(f: FunctionPlan, code_home: Path) -> FunctionConfig:
    code_dir = f.code_dir
    if f.inline_code is not None:
        # CloudFormation's Code.ZipFile becomes index.py, as Lambda writes it
        code_dir = code_home / f.logical_id
        code_dir.mkdir(parents=True, exist_ok=True)
        (code_dir / "index.py").write_text(f.inline_code, encoding="utf-8")
    if not f.handler:
        raise TemplateError(f.logical_id, "Properties.Handler", "a Python function needs a Handler")
    try:
        return FunctionConfig(
            name=f.name,
            handler=f.handler,
            code_dir=code_dir,
            timeout=f.timeout,
            memory_size=f.memory_size if f.memory_size is not None else 128,
            environment=dict(f.environment),
            role=f.role,
            reserved_concurrency=f.reserved_concurrency,
        )
    except ValueError as e:
        raise TemplateError(f.logical_id, "", str(e)) from None
