"""CloudFormation intrinsic functions, resolved in a parsed template fragment as CloudFormation would.

Pure: every value comes from a `Context` the caller builds (parameters, pseudo parameters, what each
resource's Ref and Fn::GetAtt return); nothing is looked up in AWS.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final


class TemplateError(ValueError):
    """A construct the engine cannot run: names the resource (logical id), the property path and why."""

    def __init__(self, resource: str | None, path: str, why: str) -> None:
        self.resource = resource
        self.path = path
        self.why = why
        where = ".".join(part for part in (f"Resources.{resource}" if resource else "", path) if part)
        super().__init__(f"{where}: {why}" if where else why)


@dataclass(frozen=True)
class Context:
    """What the template's names stand for: the values Ref, Fn::GetAtt and Fn::Sub substitute."""

    parameters: Mapping[str, Any] = field(default_factory=dict)
    pseudo: Mapping[str, Any] = field(default_factory=dict)
    refs: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    conditions: Mapping[str, Any] = field(default_factory=dict)
    mappings: Mapping[str, Any] = field(default_factory=dict)
    # each condition is evaluated once per context, however many resources and Fn::Ifs name it
    _evaluated: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)


class _NoValue:
    """What `Ref: AWS::NoValue` resolves to until the dict or list holding it drops it."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


_REMOVED: Final = _NoValue()

_UNSUPPORTED: Final = {
    "Fn::ImportValue": "cross-stack exports do not exist locally",
    "Fn::Transform": "macros run only in CloudFormation",
    "Fn::Cidr": "VPC address blocks mean nothing to the engine",
}

_PLACEHOLDER: Final = re.compile(r"\$\{([^}]*)\}")
#: `{{resolve:ssm:...}}`, `{{resolve:secretsmanager:...}}`: values CloudFormation looks up at deploy time
_DYNAMIC_REFERENCE: Final = re.compile(r"\{\{resolve:([a-z-]+):")
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def resolve(value: Any, ctx: Context, *, resource: str | None = None, path: str = "") -> Any:
    """`value` with every intrinsic function resolved; an `AWS::NoValue` key or list element is dropped.

    `AWS::NoValue` as the whole value resolves to None (the property is absent).
    """
    result = _Resolver(ctx, resource).value(value, path)
    return None if result is _REMOVED else result


def evaluate_condition(name: str, ctx: Context, *, resource: str | None = None, path: str = "") -> bool:
    """The Conditions entry `name`, evaluated once per context; `resource` and `path` say who names it."""
    return _evaluate(name, ctx, resource, path, ())


def resolve_parameters(declared: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """Each declared parameter's value (its override, else its Default), typed as its Type says."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(
            None,
            "Parameters",
            f"override {', '.join(map(repr, unknown))} names no parameter of the template "
            f"(parameters: {_names(declared)})",
        )
    return {
        name: _parameter(name, spec, overrides.get(name), f"Parameters.{name}")
        for name, spec in declared.items()
    }


def _parameter(name: str, spec: Any, override: str | None, path: str) -> Any:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("Type"), str):
        raise TemplateError(None, path, "a parameter needs a Type")
    kind: str = spec["Type"]
    if kind.startswith("AWS::SSM::Parameter::") and override is None:
        # CloudFormation reads the value from Parameter Store; an override stands for that value here
        raise TemplateError(
            None,
            path,
            f"parameter {name!r} is read from SSM Parameter Store, which the engine does not read: "
            f"give its value with --parameter-overrides {name}=VALUE",
        )
    raw = override if override is not None else spec.get("Default")
    if raw is None:
        raise TemplateError(None, path, f"no value for parameter {name!r}: it has no Default and no override")
    text = _scalar_text(raw)
    if text is None:
        raise TemplateError(None, path, f"the value of parameter {name!r} is {_describe(raw)}, not a string")
    # list types take comma-separated members, each space-trimmed (as CloudFormation does)
    listed = kind == "CommaDelimitedList" or kind.startswith("List<")
    members = [member.strip() for member in text.split(",")] if listed else [text]
    allowed = spec.get("AllowedValues")
    if allowed is not None:
        choices = [_scalar_text(choice) for choice in allowed]
        for member in members:
            if member not in choices:
                raise TemplateError(
                    None, path, f"{member!r} is not one of AllowedValues: {', '.join(map(str, choices))}"
                )
    if kind in ("Number", "List<Number>"):
        numbers = [_number(member, path) for member in members]
        return numbers if listed else numbers[0]
    if listed:
        return members
    if kind == "String" or kind.startswith("AWS::"):
        return text
    raise TemplateError(None, path, f"unknown parameter Type {kind!r}")


def _number(text: str, path: str) -> int | float:
    # decimal notation only: Python's int() and float() would also take 1_000, nan and inf
    if not _NUMBER.fullmatch(text.strip()):
        raise TemplateError(None, path, f"{text!r} is not a Number")
    try:
        return int(text)
    except ValueError:
        return float(text)


def _evaluate(name: str, ctx: Context, resource: str | None, path: str, open_: tuple[str, ...]) -> bool:
    if name in ctx._evaluated:
        return ctx._evaluated[name]
    if name not in ctx.conditions:
        raise TemplateError(
            resource, path, f"unknown condition {name!r} (conditions: {_names(ctx.conditions)})"
        )
    if name in open_:
        raise TemplateError(resource, path, f"circular condition reference: {' -> '.join((*open_, name))}")
    where = f"Conditions.{name}"
    result = _Resolver(ctx, None, (*open_, name)).value(ctx.conditions[name], where)
    if not isinstance(result, bool):
        raise TemplateError(None, where, f"condition {name!r} is {_describe(result)}, not true or false")
    ctx._evaluated[name] = result
    return result


@dataclass(frozen=True)
class _Resolver:
    ctx: Context
    resource: str | None
    # the conditions being evaluated, outermost first: non-empty only inside the Conditions section
    open_conditions: tuple[str, ...] = ()

    def fail(self, path: str, why: str) -> TemplateError:
        return TemplateError(self.resource, path, why)

    def value(self, value: Any, path: str) -> Any:
        if isinstance(value, Mapping):
            return self.mapping(value, path)
        if isinstance(value, list):
            items = (self.value(item, f"{path}[{i}]") for i, item in enumerate(value))
            return [item for item in items if item is not _REMOVED]
        if isinstance(value, str) and (found := _DYNAMIC_REFERENCE.search(value)):
            reference = "{{resolve:" + found.group(1) + ":...}}"
            raise self.fail(path, f"dynamic reference {reference} is not supported (no AWS lookups)")
        return value

    def mapping(self, value: Mapping[Any, Any], path: str) -> Any:
        for key in value:
            if key in _UNSUPPORTED:
                raise self.fail(path, f"{key} is not supported ({_UNSUPPORTED[key]})")
        if len(value) == 1:
            ((key, arg),) = value.items()
            function = _FUNCTIONS.get(key)
            if function is not None:
                return function(self, arg, path)
            # `Condition` is a function only inside a condition: elsewhere it may be a property's name
            if key == "Condition" and self.open_conditions and isinstance(arg, str):
                return self.condition(arg, path)
            if isinstance(key, str) and key.startswith("Fn::"):
                raise self.fail(path, f"{key} is not supported by the engine")
        resolved = (
            (key, self.value(item, f"{path}.{key}" if path else str(key))) for key, item in value.items()
        )
        return {key: item for key, item in resolved if item is not _REMOVED}

    def condition(self, name: str, path: str) -> bool:
        return _evaluate(name, self.ctx, self.resource, path, self.open_conditions)

    def args(self, function: str, arg: Any, count: int, shape: str, path: str) -> list[Any]:
        if not isinstance(arg, list) or len(arg) != count:
            raise self.fail(path, f"{function} takes {shape}, got {arg!r}")
        return arg

    def text(self, value: Any, path: str, what: str) -> str:
        text = _scalar_text(value)
        if text is None:
            raise self.fail(path, f"{what}: {_describe(value)} is not a string or a number")
        return text

    def boolean(self, value: Any, path: str, what: str) -> bool:
        result = self.value(value, path)
        if not isinstance(result, bool):
            raise self.fail(path, f"{what}: {_describe(result)} is not a condition")
        return result

    def lookup(self, name: str, path: str, what: str) -> Any:
        ctx = self.ctx
        if name == "AWS::NoValue":
            return _REMOVED
        if name in ctx.parameters:
            return ctx.parameters[name]
        if name.startswith("AWS::"):
            if name in ctx.pseudo:
                return ctx.pseudo[name]
            raise self.fail(path, f"{what}: no such pseudo parameter (known: {_names(ctx.pseudo)})")
        if name in ctx.refs:
            return ctx.refs[name]
        raise self.fail(
            path,
            f"{what}: {name!r} is neither a parameter nor a resource "
            f"(parameters: {_names(ctx.parameters)}; resources: {_names(ctx.refs)})",
        )

    def attribute(self, name: str, attribute: str, path: str, what: str) -> Any:
        known = self.ctx.attributes.get(name)
        if known is None:
            raise self.fail(
                path,
                f"{what}: no attributes are known for {name!r} "
                f"(resources with attributes: {_names(self.ctx.attributes)})",
            )
        if attribute not in known:
            raise self.fail(path, f"{what}: {name!r} has no attribute {attribute!r} (known: {_names(known)})")
        return known[attribute]

    def ref(self, arg: Any, path: str) -> Any:
        if not isinstance(arg, str):
            raise self.fail(path, f"Ref takes a parameter or resource name, got {arg!r}")
        return self.lookup(arg, path, f"Ref to {arg!r}")

    def get_att(self, arg: Any, path: str) -> Any:
        if isinstance(arg, str) and "." in arg:
            name, attribute = arg.split(".", 1)
        elif isinstance(arg, list) and len(arg) == 2:
            # the attribute name may itself be a Ref to a parameter
            name, attribute = arg[0], self.value(arg[1], path)
        else:
            raise self.fail(
                path, f"Fn::GetAtt takes [resource, attribute] or 'resource.attribute', got {arg!r}"
            )
        if not isinstance(name, str) or not isinstance(attribute, str):
            raise self.fail(path, f"Fn::GetAtt takes names, got {arg!r}")
        return self.attribute(name, attribute, path, f"Fn::GetAtt {name}.{attribute}")

    def sub(self, arg: Any, path: str) -> str:
        if isinstance(arg, str):
            template, variables = arg, {}
        elif (
            isinstance(arg, list)
            and len(arg) == 2
            and isinstance(arg[0], str)
            and isinstance(arg[1], Mapping)
        ):
            template = arg[0]
            variables = {name: self.value(item, path) for name, item in arg[1].items()}
        else:
            raise self.fail(path, f"Fn::Sub takes a string or [string, {{variables}}], got {arg!r}")

        def substitute(match: re.Match[str]) -> str:
            body = match.group(1)
            if body.startswith("!"):
                return "${" + body[1:] + "}"
            name = body.strip()
            what = f"Fn::Sub ${{{name}}}"
            if name in variables:
                found = variables[name]
            elif "." in name:
                resource, attribute = name.split(".", 1)
                found = self.attribute(resource, attribute, path, what)
            else:
                found = self.lookup(name, path, what)
            return self.text(found, path, what)

        return _PLACEHOLDER.sub(substitute, template)

    def join(self, arg: Any, path: str) -> str:
        delimiter, items = self.args("Fn::Join", arg, 2, "[delimiter, [values]]", path)
        items = self.value(items, path)
        if not isinstance(delimiter, str) or not isinstance(items, list):
            raise self.fail(path, f"Fn::Join takes [delimiter, [values]], got {arg!r}")
        return delimiter.join(self.text(item, path, "Fn::Join") for item in items)

    def select(self, arg: Any, path: str) -> Any:
        index, items = (
            self.value(part, path) for part in self.args("Fn::Select", arg, 2, "[index, [values]]", path)
        )
        if isinstance(index, str) and index.isdecimal():
            index = int(index)
        if not isinstance(index, int) or isinstance(index, bool):
            raise self.fail(path, f"Fn::Select: {index!r} is not an index")
        if not isinstance(items, list):
            raise self.fail(path, f"Fn::Select: {_describe(items)} is not a list")
        if not 0 <= index < len(items):
            raise self.fail(path, f"Fn::Select: index {index} is out of range for a list of {len(items)}")
        return items[index]

    def split(self, arg: Any, path: str) -> list[str]:
        delimiter, source = self.args("Fn::Split", arg, 2, "[delimiter, string]", path)
        if not isinstance(delimiter, str) or not delimiter:
            raise self.fail(path, f"Fn::Split: the delimiter must be a non-empty string, got {delimiter!r}")
        return self.text(self.value(source, path), path, "Fn::Split").split(delimiter)

    def if_(self, arg: Any, path: str) -> Any:
        name, when_true, when_false = self.args(
            "Fn::If", arg, 3, "[condition, value if true, value if false]", path
        )
        if not isinstance(name, str):
            raise self.fail(path, f"Fn::If takes a condition's name, got {name!r}")
        # only the branch taken is resolved: the other may name what the condition leaves out
        return self.value(when_true if self.condition(name, path) else when_false, path)

    def equals(self, arg: Any, path: str) -> bool:
        left, right = (
            self.value(part, path) for part in self.args("Fn::Equals", arg, 2, "[value, value]", path)
        )
        return bool(_comparable(left) == _comparable(right))

    def not_(self, arg: Any, path: str) -> bool:
        (operand,) = self.args("Fn::Not", arg, 1, "[condition]", path)
        return not self.boolean(operand, path, "Fn::Not")

    def and_(self, arg: Any, path: str) -> bool:
        return all(self.boolean(operand, path, "Fn::And") for operand in self.operands("Fn::And", arg, path))

    def or_(self, arg: Any, path: str) -> bool:
        return any(self.boolean(operand, path, "Fn::Or") for operand in self.operands("Fn::Or", arg, path))

    def operands(self, function: str, arg: Any, path: str) -> list[Any]:
        if not isinstance(arg, list) or not 2 <= len(arg) <= 10:
            raise self.fail(path, f"{function} takes a list of 2 to 10 conditions, got {arg!r}")
        return arg

    def find_in_map(self, arg: Any, path: str) -> Any:
        if not isinstance(arg, list) or len(arg) not in (3, 4):
            raise self.fail(path, f"Fn::FindInMap takes [map, top-level key, second-level key], got {arg!r}")
        keys = [self.text(self.value(part, path), path, "Fn::FindInMap") for part in arg[:3]]
        what = f"Fn::FindInMap [{', '.join(keys)}]"
        # a fourth argument {DefaultValue: ...} (AWS::LanguageExtensions) answers for a missing key
        default = arg[3] if len(arg) == 4 else None
        if default is not None and not (isinstance(default, Mapping) and "DefaultValue" in default):
            raise self.fail(path, f"{what}: the fourth argument must be {{DefaultValue: value}}")
        found: Any = self.ctx.mappings
        for depth, key in enumerate(keys):
            entries = _by_text(found) if isinstance(found, Mapping) else {}
            if key not in entries:
                # the default answers for a missing key, not for a missing mapping
                if depth and default is not None:
                    return self.value(default["DefaultValue"], path)
                where = ".".join(("Mappings", *keys[:depth]))
                raise self.fail(path, f"{what}: {where} has no {key!r} (keys: {_names(entries)})")
            found = entries[key]
        return found

    def base64(self, arg: Any, path: str) -> str:
        text = self.text(self.value(arg, path), path, "Fn::Base64")
        return base64.b64encode(text.encode()).decode("ascii")

    def get_azs(self, arg: Any, path: str) -> list[str]:
        region = self.value(arg, path) or self.ctx.pseudo.get("AWS::Region")
        if not isinstance(region, str) or not region:
            raise self.fail(path, f"Fn::GetAZs: no region (got {arg!r} and no AWS::Region)")
        return [region + zone for zone in "abc"]

    def to_json_string(self, arg: Any, path: str) -> str:
        resolved = self.value(arg, path)
        if resolved is _REMOVED:
            raise self.fail(path, "Fn::ToJsonString: AWS::NoValue has no JSON form")
        # YAML reads an unquoted 2012-10-17 as a date: CloudFormation reads it as text
        return json.dumps(resolved, separators=(",", ":"), default=str)


_FUNCTIONS: Final[dict[str, Callable[[_Resolver, Any, str], Any]]] = {
    "Ref": _Resolver.ref,
    "Fn::GetAtt": _Resolver.get_att,
    "Fn::Sub": _Resolver.sub,
    "Fn::Join": _Resolver.join,
    "Fn::Select": _Resolver.select,
    "Fn::Split": _Resolver.split,
    "Fn::If": _Resolver.if_,
    "Fn::Equals": _Resolver.equals,
    "Fn::Not": _Resolver.not_,
    "Fn::And": _Resolver.and_,
    "Fn::Or": _Resolver.or_,
    "Fn::FindInMap": _Resolver.find_in_map,
    "Fn::Base64": _Resolver.base64,
    "Fn::GetAZs": _Resolver.get_azs,
    "Fn::ToJsonString": _Resolver.to_json_string,
}


def _scalar_text(value: Any) -> str | None:
    """A scalar as CloudFormation reads it (YAML's true, 10 and 2012-10-17 are text there); else None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return None


def _comparable(value: Any) -> Any:
    """Fn::Equals compares text, as CloudFormation does: `!Equals [!Ref Size, 10]` holds for 10 and "10"."""
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    text = _scalar_text(value)
    return value if text is None else text


def _by_text(entries: Mapping[Any, Any]) -> dict[str, Any]:
    # YAML may have read a mapping's key as a number or a date; Fn::FindInMap's keys are text
    return {_scalar_text(key) or str(key): item for key, item in entries.items()}


def _describe(value: Any) -> str:
    if value is _REMOVED:
        return "AWS::NoValue"
    if isinstance(value, list):
        return f"a list {value!r}"
    if isinstance(value, Mapping):
        return f"an object {dict(value)!r}"
    if value is None:
        return "null"
    return repr(value)


def _names(entries: Iterable[Any]) -> str:
    return ", ".join(sorted(map(str, entries))) or "none"
