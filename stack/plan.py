"""A stack's plan: the template's mappings as CreateEventSourceMapping requests, its functions as the
engine runs them, the resources their sources need. Pure: every name and ARN comes from
stack.physical, or from `known` (what provisioning found: a table's real stream ARN)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from engine.model import function_name_part
from stack.intrinsics import Context, TemplateError, evaluate_condition, resolve, resolve_parameters
from stack.physical import KINDS, Physical, Where, function_arn, physical
from stack.template import LOCAL_CODE_BUCKET, Template

#: the tags that tell a stack's mappings from the others (CloudFormation's own aws: tags are reserved)
STACK_TAG: Final = "esm:stack"
LOGICAL_ID_TAG: Final = "esm:logical-id"

#: what `--create-resources` creates: the sources and destinations of mappings
CREATED_TYPES: Final = (
    "AWS::SQS::Queue",
    "AWS::Kinesis::Stream",
    "AWS::DynamoDB::Table",
    "AWS::SNS::Topic",
    "AWS::S3::Bucket",
)
FUNCTION_TYPE: Final = "AWS::Lambda::Function"
MAPPING_TYPE: Final = "AWS::Lambda::EventSourceMapping"
SECRET_TYPE: Final = "AWS::SecretsManager::Secret"
#: the properties stack.physical reads, besides the name
_SHAPING: Final = ("FifoQueue", "StreamSpecification")
ALIAS_TYPE: Final = "AWS::Lambda::Alias"


@dataclass(frozen=True)
class FunctionPlan:
    logical_id: str
    name: str
    runtime: str | None
    handler: str | None
    code_dir: Path | None
    #: CloudFormation's Code.ZipFile: Lambda writes it to index.py
    inline_code: str | None
    timeout: float | None
    memory_size: int | None
    environment: Mapping[str, str]
    reserved_concurrency: int | None
    role: str | None
    #: why the engine cannot run it yet; None when it can
    not_runnable: str | None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "FunctionName": self.name,
            "Runtime": self.runtime,
            "Handler": self.handler,
            "CodeUri": str(self.code_dir) if self.code_dir else None,
            "InlineCode": self.inline_code,
            "Timeout": self.timeout,
            "MemorySize": self.memory_size,
            "Environment": {"Variables": dict(self.environment)} if self.environment else None,
            "ReservedConcurrentExecutions": self.reserved_concurrency,
            "Role": self.role,
            "Runnable": self.not_runnable is None,
            "NotRunnable": self.not_runnable,
        }
        return {"Function": {k: v for k, v in body.items() if v is not None}, "LogicalId": self.logical_id}


@dataclass(frozen=True)
class MappingPlan:
    logical_id: str
    #: the CreateEventSourceMapping request, the stack's tags included
    request: Mapping[str, Any]
    #: the logical id of the template's function it invokes (None: a function outside the template)
    function: str | None

    def as_json(self) -> dict[str, Any]:
        return {"CreateEventSourceMapping": dict(self.request), "LogicalId": self.logical_id}


@dataclass(frozen=True)
class ResourcePlan:
    logical_id: str
    type: str
    physical: Physical
    properties: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        body = {
            "Type": self.type,
            "Name": self.physical.name,
            "Ref": self.physical.ref,
            "Arn": self.physical.arn,
            "Properties": dict(self.properties),
        }
        return {"Resource": {k: v for k, v in body.items() if v is not None}, "LogicalId": self.logical_id}


@dataclass(frozen=True)
class StackPlan:
    stack_name: str
    mappings: list[MappingPlan]
    functions: list[FunctionPlan]
    #: what --create-resources creates, in creation order (what others refer to first)
    resources: list[ResourcePlan]
    #: every active resource's local identity, by logical id
    physical: Mapping[str, Physical]
    #: the SecretString of each secret the template declares, by its ARN
    secrets: Mapping[str, Any] = field(default_factory=dict)

    def lines(self) -> Iterator[dict[str, Any]]:
        """`esm up --plan`'s output: the mappings, then the functions, then the resources."""
        for group in (self.mappings, self.functions, self.resources):
            for item in group:
                yield item.as_json()

    def runnable(self, mapping: MappingPlan) -> bool:
        by_id = {f.logical_id: f for f in self.functions}
        target = by_id.get(mapping.function) if mapping.function else None
        return target is None or target.not_runnable is None


def build_plan(
    template: Template,
    where: Where,
    overrides: Mapping[str, str],
    known: Mapping[str, Physical] | None = None,
) -> StackPlan:
    """The plan of `template` as stack `where.stack_name`; `known` replaces predicted identities."""
    pseudo = {
        "AWS::Region": where.region,
        "AWS::AccountId": where.account_id,
        "AWS::StackName": where.stack_name,
        "AWS::StackId": f"arn:aws:cloudformation:{where.region}:{where.account_id}:stack/"
        f"{where.stack_name}/esm-local",
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NotificationARNs": [],
    }
    parameters = resolve_parameters(template.parameters, overrides)
    plain = Context(
        parameters=parameters, pseudo=pseudo, conditions=template.conditions, mappings=template.mappings
    )
    active = [
        r
        for r in template.resources.values()
        if r.condition is None
        or evaluate_condition(r.condition, plain, resource=r.logical_id, path="Condition")
    ]
    identities: dict[str, Physical] = {}
    for r in active:
        kind = KINDS.get(r.type)
        name = None
        if kind and kind.name_property:
            name = resolve(
                r.properties.get(kind.name_property),
                plain,
                resource=r.logical_id,
                path=f"Properties.{kind.name_property}",
            )
        # what a name and the attributes hang on (FifoQueue, StreamSpecification) may be an Fn::If
        shaping = {k: v for k, v in r.properties.items() if k in _SHAPING}
        shape = resolve(shaping, plain, resource=r.logical_id, path="Properties") or {}
        identities[r.logical_id] = (known or {}).get(r.logical_id) or physical(
            r.logical_id, r.type, name, shape, where
        )
    refs = {k: p.ref for k, p in identities.items()}
    ctx = Context(
        parameters=parameters,
        pseudo=pseudo,
        refs=refs,
        attributes={k: p.attributes for k, p in identities.items() if p.attributes},
        conditions=template.conditions,
        mappings=template.mappings,
    )
    for r in active:
        # SAM's AutoPublishAlias points a function's mappings at its alias: the Ref names the function
        if r.type == ALIAS_TYPE:
            identities[r.logical_id] = _alias(r.logical_id, r.properties, ctx, where)
            refs[r.logical_id] = identities[r.logical_id].ref

    def props(logical_id: str) -> dict[str, Any]:
        resolved = resolve(
            template.resources[logical_id].properties, ctx, resource=logical_id, path="Properties"
        )
        return dict(resolved or {})

    functions = [
        _function(r.logical_id, identities[r.logical_id], props(r.logical_id), template)
        for r in active
        if r.type == FUNCTION_TYPE
    ]
    function_ids = {f.name: f.logical_id for f in functions}
    mappings = [
        _mapping(r.logical_id, props(r.logical_id), where.stack_name, function_ids)
        for r in active
        if r.type == MAPPING_TYPE
    ]
    created = [r for r in _creation_order(active) if r.type in CREATED_TYPES]
    resources = [
        ResourcePlan(r.logical_id, r.type, identities[r.logical_id], props(r.logical_id)) for r in created
    ]
    secrets = {}
    for r in active:
        if r.type == SECRET_TYPE:
            text = props(r.logical_id).get("SecretString")
            if isinstance(text, str):
                secrets[identities[r.logical_id].ref] = _secret_value(r.logical_id, text)
    return StackPlan(where.stack_name, mappings, functions, resources, identities, secrets)


def _alias(logical_id: str, properties: Mapping[str, Any], ctx: Context, where: Where) -> Physical:
    """An alias's Ref: its function's ARN, qualified by the alias's name."""
    function, name = (
        resolve(properties.get(key), ctx, resource=logical_id, path=f"Properties.{key}")
        for key in ("FunctionName", "Name")
    )
    if not isinstance(function, str) or not isinstance(name, str):
        raise TemplateError(logical_id, "Properties", "an alias needs a FunctionName and a Name")
    if not function.startswith("arn:"):
        function = function_arn(function, where)
    return Physical(name, f"{function}:{name}")


def _secret_value(logical_id: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise TemplateError(
            logical_id, "Properties.SecretString", "the engine reads a secret as JSON (username, password)"
        ) from None


def _function(logical_id: str, identity: Physical, p: Mapping[str, Any], template: Template) -> FunctionPlan:
    runtime = p.get("Runtime")
    code = p.get("Code") or {}
    code_dir = inline = None
    why: str | None = None
    if p.get("PackageType") == "Image":
        why = "a container image function is not runnable yet (the engine runs Python code in-process)"
    elif isinstance(code, Mapping) and code.get("S3Bucket") == LOCAL_CODE_BUCKET:
        code_dir = template.code.get(str(code.get("S3Key")))
    elif isinstance(code, Mapping) and isinstance(code.get("ZipFile"), str):
        inline = code["ZipFile"]
    else:
        why = f"its code is not local ({json.dumps(code, default=str)}): give it a CodeUri folder"
    if why is None and not (isinstance(runtime, str) and runtime.startswith("python")):
        why = f"runtime {runtime} is not runnable yet (the engine runs Python functions in-process)"
    variables = (p.get("Environment") or {}).get("Variables") or {}
    if not isinstance(variables, Mapping):
        raise TemplateError(logical_id, "Properties.Environment.Variables", "must be an object")
    return FunctionPlan(
        logical_id=logical_id,
        name=identity.name,
        runtime=runtime if isinstance(runtime, str) else None,
        handler=p.get("Handler"),
        code_dir=code_dir,
        inline_code=inline,
        timeout=_number(logical_id, "Timeout", p.get("Timeout")),
        memory_size=_integer(logical_id, "MemorySize", p.get("MemorySize")),
        environment={str(k): as_text(v) for k, v in variables.items()},
        reserved_concurrency=_integer(
            logical_id, "ReservedConcurrentExecutions", p.get("ReservedConcurrentExecutions")
        ),
        role=p.get("Role") if isinstance(p.get("Role"), str) else None,
        not_runnable=why,
    )


def _mapping(
    logical_id: str, p: dict[str, Any], stack_name: str, function_ids: Mapping[str, str]
) -> MappingPlan:
    """CloudFormation's properties as the API's request: the same names but for a few shapes."""
    if not p.get("FunctionName"):
        raise TemplateError(logical_id, "Properties.FunctionName", "a mapping needs a FunctionName")
    endpoints = (p.get("SelfManagedEventSource") or {}).get("Endpoints")
    if isinstance(endpoints, Mapping) and "KafkaBootstrapServers" in endpoints:
        # CloudFormation spells the API's KAFKA_BOOTSTRAP_SERVERS key in its own case
        rest = {k: v for k, v in endpoints.items() if k != "KafkaBootstrapServers"}
        p["SelfManagedEventSource"] = {
            **p["SelfManagedEventSource"],
            "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": endpoints["KafkaBootstrapServers"], **rest},
        }
    filters = (p.get("FilterCriteria") or {}).get("Filters")
    if isinstance(filters, list):
        # a YAML pattern is the JSON CloudFormation wants, written as YAML (as SAM users write it)
        p["FilterCriteria"] = {
            **p["FilterCriteria"],
            "Filters": [
                {**f, "Pattern": json.dumps(f["Pattern"])}
                if isinstance(f, Mapping) and isinstance(f.get("Pattern"), Mapping | list)
                else f
                for f in filters
            ],
        }
    if "KmsKeyArn" in p:
        # CloudFormation's spelling of the API's KMSKeyArn
        p["KMSKeyArn"] = p.pop("KmsKeyArn")
    tags = p.pop("Tags", None) or []
    if not isinstance(tags, list) or not all(isinstance(t, Mapping) and "Key" in t for t in tags):
        raise TemplateError(logical_id, "Properties.Tags", "Tags is a list of {Key, Value}")
    p["Tags"] = {
        **{str(t["Key"]): as_text(t.get("Value", "")) for t in tags},
        STACK_TAG: stack_name,
        LOGICAL_ID_TAG: logical_id,
    }
    function = str(p["FunctionName"])
    # a name, an ARN or a partial ARN: the template's own function is found by its name
    name = function_name_part(function)
    return MappingPlan(logical_id, p, function_ids.get(name))


def _creation_order(resources: list[Any]) -> list[Any]:
    """Resources ordered so that what one refers to (a redrive policy's queue) comes before it."""
    by_id = {r.logical_id: r for r in resources}
    ordered: list[Any] = []
    seen: set[str] = set()

    def visit(logical_id: str) -> None:
        if logical_id in seen or logical_id not in by_id:
            return
        seen.add(logical_id)
        for name in sorted(_references(by_id[logical_id].properties)):
            visit(name)
        ordered.append(by_id[logical_id])

    for r in resources:
        visit(r.logical_id)
    return ordered


def _references(value: Any) -> set[str]:
    """The resource names a property value's Ref, Fn::GetAtt and Fn::Sub name."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                target = item.split(".")[0] if isinstance(item, str) else item[0] if item else None
                if isinstance(target, str):
                    found.add(target)
            elif key == "Fn::Sub":
                text = item if isinstance(item, str) else item[0] if item else ""
                if isinstance(text, str):
                    found.update(part.split("}")[0].split(".")[0] for part in text.split("${")[1:])
            found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def as_text(value: Any) -> str:
    """A property value where AWS wants a string (tags, environment, attributes): YAML's true as
    "true", an object as its JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value if isinstance(value, str) else str(value)


def _number(logical_id: str, name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TemplateError(logical_id, f"Properties.{name}", f"{value!r} is not a number") from None
    return int(number) if number.is_integer() else number


def _integer(logical_id: str, name: str, value: Any) -> int | None:
    number = _number(logical_id, name, value)
    if number is None:
        return None
    if number != int(number):
        raise TemplateError(logical_id, f"Properties.{name}", f"{value!r} is not a whole number")
    return int(number)
