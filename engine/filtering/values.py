"""JSON values as the matcher reads them: AWS's strict JSON, event keys with dots expanded into nested
objects (rule 3), and the markers for a missing field and for several values at one path.

Both sides use it: the compiler parses patterns with STRICT_JSON, the views parse payloads with it and
expand dotted keys, and the compiled pattern tree tests event values for MISSING and Alternatives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final


class _Missing:
    __slots__ = ()


#: A field the event does not have (a ``None`` value is JSON null).
MISSING: Final = _Missing()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Python's json accepts NaN and Infinity; JSON (and AWS's parser) does not. One decoder: json.loads with
# options would build a new one per call.
STRICT_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant)


def undot(value: Any) -> Any:
    """``value`` with every key ``"a.b"`` expanded to ``{"a": {"b": ..}}`` (rule 3); unchanged if none."""
    t = type(value)
    members: Iterable[tuple[Any, Any]]
    if t is dict:
        if "." in "".join(value):
            return expand(value)
        members = value.items()
    elif t is list:
        members = enumerate(value)
    else:
        return value
    copy: Any = None  # a copy of the dict or list, made at the first member that changes
    for k, v in members:
        tv = type(v)
        if tv is dict or tv is list:
            nv = undot(v)
            if nv is not v:
                if copy is None:
                    copy = t(value)
                copy[k] = nv
    return value if copy is None else copy


class Alternatives(list[Any]):
    """Several values at one path of an event that had both ``"a"`` and ``"a.b"`` keys: event-ruler sees two
    fields there, so unlike an event array they are not elements that array consistency would separate."""

    __slots__ = ()


def expand(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with its dotted keys written as nested objects: where two keys reach one path, objects
    merge and other values stand side by side as Alternatives."""
    out: dict[str, Any] = {}
    owned = {id(out)}  # dicts made here; any other dict is the caller's and is copied before a write

    def own(d: dict[str, Any]) -> dict[str, Any]:
        if id(d) in owned:
            return d
        copy = dict(d)
        owned.add(id(copy))
        return copy

    def merge(a: Any, b: Any) -> Any:
        if type(a) is dict and type(b) is dict:
            merged = dict(a)
            owned.add(id(merged))
            for k, v in b.items():
                merged[k] = merge(merged[k], v) if k in merged else v
            return merged
        alternatives = Alternatives(a if type(a) is Alternatives else [a])
        alternatives.append(b)
        return alternatives

    for key, v in obj.items():
        *parents, last = key.split(".")
        target = out
        for seg in parents:
            nxt = target.get(seg, MISSING)
            if type(nxt) is dict:
                target[seg] = nxt = own(nxt)
            elif type(nxt) is Alternatives:  # write into its object member, or add one
                alternatives: list[Any] = nxt
                index = next((i for i, x in enumerate(alternatives) if type(x) is dict), None)
                if index is None:
                    alternatives.append({})
                    index = len(alternatives) - 1
                nxt = alternatives[index] = own(alternatives[index])
            else:
                holder = own({})
                target[seg] = holder if nxt is MISSING else merge(nxt, holder)
                nxt = holder
            target = nxt
        v = undot(v)
        target[last] = merge(target[last], v) if last in target else v
    return out
