"""A load's shape and its records, pure: the rate at time t, and record bodies and keys from a template,
a JSONL file or a generator function. The clock and the random source are arguments."""

from __future__ import annotations

import importlib
import itertools
import json
import random
import re
import string
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class PlanError(ValueError):
    """A soak plan (or the one-line form's options) that cannot run: says where and why."""


# --- rates ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """Records per second over time: ``constant`` (rate), ``ramp`` (start -> end over ``over_s``, then
    end), ``bursts`` (base, and peak for ``length_s`` every ``every_s``), ``schedule`` (steps: from each
    ``(at_s, rate)`` to the next)."""

    kind: str
    rate: float = 0.0
    start: float = 0.0
    end: float = 0.0
    over_s: float = 0.0
    base: float = 0.0
    peak: float = 0.0
    every_s: float = 0.0
    length_s: float = 0.0
    steps: tuple[tuple[float, float], ...] = ()

    def at(self, t: float) -> float:
        if self.kind == "constant":
            return self.rate
        if self.kind == "ramp":
            if self.over_s <= 0 or t >= self.over_s:
                return self.end
            return self.start + (self.end - self.start) * max(t, 0.0) / self.over_s
        if self.kind == "bursts":
            return self.peak if (t % self.every_s) < self.length_s else self.base
        current = 0.0
        for at_s, rate in self.steps:
            if t >= at_s:
                current = rate
        return current

    @property
    def peak_rate(self) -> float:
        return max(self.rate, self.start, self.end, self.base, self.peak, *(r for _, r in self.steps))

    def describe(self) -> str:
        if self.kind == "constant":
            return f"{self.rate:g} rec/s"
        if self.kind == "ramp":
            return f"ramp {self.start:g} -> {self.end:g} rec/s over {self.over_s:g} s"
        if self.kind == "bursts":
            return f"{self.base:g} rec/s, {self.peak:g} for {self.length_s:g} s every {self.every_s:g} s"
        return "schedule " + ", ".join(f"{r:g} rec/s from {a:g} s" for a, r in self.steps)


def parse_rate(value: Any, where: str) -> Rate:
    """``200``; ``{ramp: {from, to, over}}``; ``{bursts: {base, peak, every, length}}``;
    ``{schedule: [{at, rate}, ...]}``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Rate("constant", rate=_non_negative(value, where))
    if isinstance(value, Mapping) and len(value) == 1:
        ((kind, spec),) = value.items()
        if kind == "ramp" and isinstance(spec, Mapping):
            return Rate(
                "ramp",
                start=_non_negative(spec.get("from", 0), f"{where}.ramp.from"),
                end=_non_negative(_required(spec, "to", f"{where}.ramp"), f"{where}.ramp.to"),
                over_s=duration_s(_required(spec, "over", f"{where}.ramp"), f"{where}.ramp.over"),
            )
        if kind == "bursts" and isinstance(spec, Mapping):
            every = duration_s(_required(spec, "every", f"{where}.bursts"), f"{where}.bursts.every")
            length = duration_s(spec.get("length", "1s"), f"{where}.bursts.length")
            if not 0 < length < every:
                raise PlanError(f"{where}.bursts: length must be above 0 and below every")
            return Rate(
                "bursts",
                base=_non_negative(spec.get("base", 0), f"{where}.bursts.base"),
                peak=_non_negative(_required(spec, "peak", f"{where}.bursts"), f"{where}.bursts.peak"),
                every_s=every,
                length_s=length,
            )
        if kind == "schedule" and isinstance(spec, Sequence) and spec:
            steps = []
            for i, step in enumerate(spec):
                if not isinstance(step, Mapping):
                    raise PlanError(f"{where}.schedule[{i}]: expected {{at: DURATION, rate: N}}")
                at = duration_s(_required(step, "at", f"{where}.schedule[{i}]"), f"{where}.schedule[{i}].at")
                steps.append((at, _non_negative(step.get("rate"), f"{where}.schedule[{i}].rate")))
            if [a for a, _ in steps] != sorted(a for a, _ in steps):
                raise PlanError(f"{where}.schedule: steps must be in time order")
            return Rate("schedule", steps=tuple(steps))
    raise PlanError(
        f"{where}: expected records per second (200) or one of {{ramp: ...}}, {{bursts: ...}}, "
        f"{{schedule: [...]}}, not {value!r}"
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration_s(value: Any, where: str) -> float:
    """``30m``, ``90s``, ``1.5h``, ``250ms`` or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    m = _DURATION.match(str(value)) if isinstance(value, str) else None
    if m is None:
        raise PlanError(f"{where}: expected a duration such as 30m, 90s, 1.5h or 250ms, not {value!r}")
    return float(m[1]) * _UNITS[m[2] or "s"]


def _non_negative(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise PlanError(f"{where}: expected a number >= 0, not {value!r}")
    return float(value)


def _required(spec: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in spec:
        raise PlanError(f"{where}: {key} is required")
    return spec[key]


# --- records ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One record to produce: its body (JSON, or the bytes a JSONL line / a generator gave) and its
    partition key / message group."""

    body: bytes
    key: str
    doc: Any  # the body as data (for filters and DynamoDB items); None when it is not JSON


_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)(?::([^}]*))?\s*\}\}")
_LETTERS = string.ascii_letters + string.digits


class Fields:
    """The generated fields of a template: ``{{seq}}`` (the record's number in its load, from 1),
    ``{{uuid}}``, ``{{now}}`` (epoch ms), ``{{iso}}`` (UTC), ``{{int:A:B}}``, ``{{float:A:B}}``,
    ``{{choice:a|b|c}}``, ``{{pad:N}}`` (N random letters: sizes), ``{{field:NAME}}`` (a field of the
    body, in the key template). A string that is one placeholder alone takes its type (numbers stay
    numbers)."""

    def __init__(self, rng: random.Random, clock: Callable[[], float]) -> None:
        self.rng = rng
        self.clock = clock

    def value(self, name: str, arg: str | None, seq: int, doc: Any, where: str) -> Any:
        if name == "seq":
            return seq
        if name == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if name == "now":
            return int(self.clock() * 1000)
        if name == "iso":
            return datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")
        if name in ("int", "float") and arg:
            low, _, high = arg.partition(":")
            try:
                if name == "int":
                    return self.rng.randint(int(low), int(high))
                return round(self.rng.uniform(float(low), float(high)), 2)
            except ValueError:
                pass
        if name == "choice" and arg:
            return self.rng.choice(arg.split("|"))
        if name == "pad" and arg and arg.isdigit():
            return "".join(self.rng.choices(_LETTERS, k=int(arg)))
        if name == "field" and arg:
            if isinstance(doc, Mapping) and arg in doc:
                return doc[arg]
            raise PlanError(f"{where}: {{{{field:{arg}}}}}: the record has no field {arg!r}")
        raise PlanError(
            f"{where}: unknown placeholder {{{{{name}{':' + arg if arg else ''}}}}} (known: seq, uuid, now, "
            "iso, int:A:B, float:A:B, choice:a|b, pad:N, field:NAME)"
        )

    def render(self, template: Any, seq: int, doc: Any, where: str) -> Any:
        if isinstance(template, str):
            whole = _PLACEHOLDER.fullmatch(template.strip())
            if whole:
                return self.value(whole[1], whole[2], seq, doc, where)
            return _PLACEHOLDER.sub(lambda m: str(self.value(m[1], m[2], seq, doc, where)), template)
        if isinstance(template, Mapping):
            return {k: self.render(v, seq, doc, where) for k, v in template.items()}
        if isinstance(template, list):
            return [self.render(v, seq, doc, where) for v in template]
        return template


#: the one-line form's records: an order, its customer the partition key / message group
DEFAULT_TEMPLATE: dict[str, Any] = {
    "orderId": "{{uuid}}",
    "seq": "{{seq}}",
    "at": "{{iso}}",
    "customer": "{{choice:alice|bob|carol|dave|erin|frank|grace|heidi}}",
    "amount": "{{float:1:500}}",
    "note": "{{pad:64}}",
}
DEFAULT_KEY = "{{field:customer}}"


@dataclass(frozen=True)
class Records:
    """Where a load's records come from: exactly one of ``template``, ``jsonl`` or ``generator``
    (``module:function``, called with no argument, yielding dicts, strings or bytes); ``key`` renders the
    partition key / message group (placeholders, ``{{field:NAME}}`` of the body)."""

    template: Any = None
    jsonl: Path | None = None
    generator: str | None = None
    key: str = DEFAULT_KEY
    #: a JSONL file replayed from the top when the load needs more records than it has
    loop: bool = False

    def stream(self, rng: random.Random, clock: Callable[[], float], where: str) -> Iterator[Record]:
        fields = Fields(rng, clock)
        if self.jsonl is not None:
            source: Iterator[Any] = self._lines(where)
        elif self.generator is not None:
            source = iter(_import(self.generator, where)())
        else:
            template = DEFAULT_TEMPLATE if self.template is None else self.template
            source = (fields.render(template, seq, None, where) for seq in itertools.count(1))
        for seq, item in enumerate(source, start=1):
            yield self._record(item, fields, seq, where)

    def _lines(self, where: str) -> Iterator[Any]:
        assert self.jsonl is not None
        while True:
            with self.jsonl.open(encoding="utf-8") as f:
                for n, line in enumerate(f, start=1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except ValueError as e:
                            raise PlanError(f"{where}: {self.jsonl} line {n}: not JSON ({e})") from None
            if not self.loop:
                return

    def _record(self, item: Any, fields: Fields, seq: int, where: str) -> Record:
        if isinstance(item, bytes):
            body, doc = item, _json_or_none(item)
        elif isinstance(item, str):
            body, doc = item.encode(), _json_or_none(item.encode())
        else:
            body, doc = json.dumps(item, separators=(",", ":")).encode(), item
        key = fields.render(self.key, seq, doc, f"{where}.key")
        return Record(body=body, key=str(key), doc=doc)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _import(path: str, where: str) -> Callable[[], Any]:
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise PlanError(
            f"{where}: generator {path!r} cannot be imported: {e} (sys.path: {sys.path[0]})"
        ) from None
    if not callable(fn):
        raise PlanError(f"{where}: generator {path!r} is not a function")
    return fn  # type: ignore[no-any-return]
