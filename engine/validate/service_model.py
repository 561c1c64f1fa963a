"""The Lambda API's service model (botocore's bundled copy) as a validator of request bodies: members,
JSON types, ranges, lengths, patterns and enums, reported as AWS's Coral service words them. Knows
nothing of sources: the rules that differ per source are in their profiles (engine/sources/)."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.loaders import create_loader

from engine.errors import SerializationException, ValidationException

NOT_NULL = "Member must not be null"
_COMPOUND = frozenset({"structure", "list", "map"})
_INT_BITS = {"integer": 32, "long": 64}
_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
}
_JSON_TYPE_NAMES = {"structure": "object", "map": "object", "list": "array", "long": "integer"}

#: Enum value orders as AWS prints them, where they differ from the model's (spec 8.4 #5, observed).
_OBSERVED_ENUM_ORDER: dict[str, tuple[str, ...]] = {
    "EventSourcePosition": ("LATEST", "AT_TIMESTAMP", "TRIM_HORIZON"),
}


@functools.cache
def model() -> dict[str, Any]:
    loaded: dict[str, Any] = create_loader().load_service_model("lambda", "service-2")
    return loaded


def model_shape(name: str) -> dict[str, Any]:
    shape: dict[str, Any] = model()["shapes"][name]
    return shape


def input_shape(operation: str) -> str:
    """The name of an operation's input shape."""
    name: str = model()["operations"][operation]["input"]["shape"]
    return name


def input_member(operation: str, member: str) -> dict[str, Any]:
    found: dict[str, Any] = model_shape(input_shape(operation))["members"][member]
    return found


def _body_members(shape: Mapping[str, Any]) -> dict[str, Any]:
    """Members carried in the JSON body (the path member UUID is not)."""
    return {name: m for name, m in shape["members"].items() if "location" not in m}


def inspect_body(shape_name: str, body: Any) -> Inspection:
    inspection = Inspection()
    inspection.member(shape_name, body, "", "")
    inspection.raise_unknown()
    return inspection


class Inspection:
    """One walk over a body. A JSON type mismatch raises at once (the body cannot be read); unknown
    members and constraint violations are collected, since AWS reports all violations together.

    ``coral`` is the member path AWS prints (``scalingConfig.maximumConcurrency``, ``topics``,
    ``sourceAccessConfigurations.1.member.type``); ``wire`` is the body path the caller wrote.
    """

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.violations: list[str] = []

    def raise_unknown(self) -> None:
        if self.unknown:
            raise ValidationException("; ".join(self.unknown))

    def raise_violations(self) -> None:
        if self.violations:
            raise ValidationException(coral_message(self.violations))

    def member(self, shape_name: str, value: Any, coral: str, wire: str) -> None:
        if value is None:
            self.violations.append(violation(None, coral, NOT_NULL))
            return
        shape = model_shape(shape_name)
        shape_type = shape["type"]
        if shape_type == "structure":
            self._structure(shape, value, coral, wire)
        elif shape_type == "list":
            self._list(shape, value, coral, wire)
        elif shape_type == "map":
            self._map(shape, value, coral, wire)
        else:
            self.violations += [violation(value, coral, c) for c in _scalar(shape_name, value, wire)]

    def _structure(self, shape: Mapping[str, Any], value: Any, coral: str, wire: str) -> None:
        _expect(value, dict, "structure", wire)
        members = _body_members(shape)
        for name in value:
            if name not in members:
                self.unknown.append(
                    f'Unknown parameter in {wire or "input"}: "{name}", must be one of: {", ".join(members)}'
                )
        required = set(shape.get("required", ()))
        for name, member in members.items():
            # JSON null reads as "not set", as for an omitted member
            if value.get(name) is not None or name in required:
                self.member(member["shape"], value.get(name), _join(coral, camel(name)), _join(wire, name))

    def _list(self, shape: Mapping[str, Any], value: Any, coral: str, wire: str) -> None:
        _expect(value, list, "list", wire)
        self.violations += [violation(value, coral, c) for c in _bounds(shape, len(value), "length")]
        item_shape = shape["member"]["shape"]
        if model_shape(item_shape)["type"] in _COMPOUND:
            for i, item in enumerate(value):
                self.member(item_shape, item, f"{coral}.{i + 1}.member", f"{wire}[{i}]")
            return
        # scalar items are reported on the list itself, as Coral does
        problems = (c for i, item in enumerate(value) for c in _item(item_shape, item, f"{wire}[{i}]"))
        self._aggregate(value, coral, "Member must satisfy constraint", problems)

    def _map(self, shape: Mapping[str, Any], value: Any, coral: str, wire: str) -> None:
        _expect(value, dict, "map", wire)
        self.violations += [violation(value, coral, c) for c in _bounds(shape, len(value), "length")]
        key_problems = (c for key in value for c in _scalar(shape["key"]["shape"], key, wire))
        self._aggregate(value, coral, "Map keys must satisfy constraint", key_problems)
        value_shape = shape["value"]["shape"]
        if model_shape(value_shape)["type"] in _COMPOUND:
            for key, item in value.items():
                self.member(value_shape, item, f"{coral}.{key}", f"{wire}.{key}")
            return
        problems = (c for key, item in value.items() for c in _item(value_shape, item, f"{wire}.{key}"))
        self._aggregate(value, coral, "Map value must satisfy constraint", problems)

    def _aggregate(self, value: Any, coral: str, label: str, problems: Iterable[str]) -> None:
        """One violation for all the scalar items of a list or map, as Coral reports them."""
        unique = list(dict.fromkeys(problems))
        if unique:
            self.violations.append(violation(value, coral, f"{label}: [{', '.join(unique)}]"))


def _item(shape_name: str, value: Any, wire: str) -> list[str]:
    return [NOT_NULL] if value is None else _scalar(shape_name, value, wire)


def _scalar(shape_name: str, value: Any, wire: str) -> list[str]:
    """Check a scalar's JSON type (raising) and return the constraints it fails."""
    shape = model_shape(shape_name)
    shape_type = shape["type"]
    if shape_type == "timestamp":
        epoch_seconds(value, wire)
        return []
    _expect(value, _SCALAR_TYPES[shape_type], shape_type, wire)
    problems: list[str] = []
    if shape_type in _INT_BITS:
        limit = 2 ** (_INT_BITS[shape_type] - 1)
        if not -limit <= value < limit:
            bits = _INT_BITS[shape_type]
            raise SerializationException(
                f"Invalid value for {_where(wire)}: {value} does not fit in a {bits}-bit integer."
            )
        problems += _bounds(shape, value, "value")
    if shape_type == "string":
        if "enum" in shape and value not in shape["enum"]:
            problems.append(_enum_constraint(shape_name, shape["enum"]))
        problems += _bounds(shape, len(value), "length")
        if "pattern" in shape and not java_pattern(shape["pattern"]).fullmatch(value):
            problems.append(f"Member must satisfy regular expression pattern: {shape['pattern']}")
    return problems


def _bounds(shape: Mapping[str, Any], measured: int, noun: str) -> list[str]:
    problems = []
    if "min" in shape and measured < shape["min"]:
        problems.append(f"Member must have {noun} greater than or equal to {shape['min']}")
    if "max" in shape and measured > shape["max"]:
        problems.append(f"Member must have {noun} less than or equal to {shape['max']}")
    return problems


def _enum_constraint(shape_name: str, values: list[str]) -> str:
    observed = _OBSERVED_ENUM_ORDER.get(shape_name)
    order = observed if observed is not None and set(observed) == set(values) else values
    return f"Member must satisfy enum value set: [{', '.join(order)}]"


def _expect(value: Any, types: type | tuple[type, ...], model_type: str, wire: str) -> None:
    # bool is an int in Python but not in JSON
    if not isinstance(value, types) or (isinstance(value, bool) and model_type != "boolean"):
        expected = _JSON_TYPE_NAMES.get(model_type, model_type)
        raise SerializationException(
            f"Invalid type for {_where(wire)}: expected {expected}, got {_json_type(value)}."
        )


def epoch_seconds(value: Any, wire: str) -> float:
    """A model timestamp: epoch seconds (what boto3 sends) or an ISO 8601 string (UTC when unzoned)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise SerializationException(
        f"Invalid value for {_where(wire)}: expected a timestamp (epoch seconds or ISO 8601), "
        f"got {_json_type(value)} {_java_string(value)!r}."
    )


def _where(wire: str) -> str:
    return f"member '{wire}'" if wire else "the request body"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def coral_message(violations: list[str]) -> str:
    count = len(violations)
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} detected: {'; '.join(violations)}"


def violation(value: Any, coral: str, constraint: str) -> str:
    shown = "null" if value is None else f"'{_java_string(value)}'"
    return f"Value {shown} at '{coral}' failed to satisfy constraint: {constraint}"


def _java_string(value: Any) -> str:
    """Render a value as the Java service prints it in messages (``[a, b]``, ``{k=v}``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_java_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_string(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value)


def camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- Java regular expressions -------------------------------------------------------------------------

_UNICODE_PROPERTY = re.compile(r"\\p\{([A-Z][a-z]?)\}")


@functools.cache
def java_pattern(java: str) -> re.Pattern[str]:
    """Compile a model pattern. Java's syntax is Python's here except Unicode property classes
    (``\\p{L}``), which Python's re lacks: they become explicit code point ranges."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(java):
        prop = _UNICODE_PROPERTY.match(java, i)
        if prop:
            ranges = _category_ranges(prop.group(1))
            out.append(ranges if in_class else f"[{ranges}]")
            i = prop.end()
            continue
        step = 2 if java[i] == "\\" else 1
        if java[i] == "[":
            in_class = True
        elif java[i] == "]":
            in_class = False
        out.append(java[i : i + step])
        i += step
    return re.compile("".join(out))


@functools.cache
def _category_ranges(category: str) -> str:
    """Character-class body for the code points of a Unicode category (``L``) or subcategory (``Lu``)."""
    # Every category name is an upper-case then a lower-case letter, so matches cannot straddle two names.
    names = _all_categories()
    run = re.compile(f"(?:{category}[a-z]{{{2 - len(category)}}})+")
    return "".join(f"\\U{m.start() // 2:08x}-\\U{m.end() // 2 - 1:08x}" for m in run.finditer(names))


@functools.cache
def _all_categories() -> str:
    return "".join(map(unicodedata.category, map(chr, range(sys.maxunicode + 1))))
