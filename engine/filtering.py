"""Event filtering (FilterCriteria): the EventBridge / event-ruler pattern language as Lambda applies it.

Spec section 2. Pure policy: stdlib only, no I/O. Patterns are compiled once (``compile_filters``); each
record is turned once into a ``FilterView`` (``filter_view``: payload decoded and parsed, dotted keys
expanded) that every filter of the mapping then reads without re-parsing.

Matching walks the compiled pattern tree against the event tree. Walking an event array element by element
gives event-ruler's array-consistent matching (spec 2.5 rule 4) for free: the fields of one pattern object
must all match inside the same array element.
"""

from __future__ import annotations

import binascii
import enum
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

__all__ = [
    "LITERAL_NUMBERS_BY_VALUE",
    "MESSAGE",
    "CompiledPattern",
    "DataFormat",
    "FilterPatternError",
    "FilterView",
    "RecordFilter",
    "compile_filters",
    "compile_pattern",
    "filter_view",
]

#: The only message AWS returns for any pattern problem (spec 2.6).
MESSAGE: Final = "Invalid filter pattern definition."
#: API model: ``Pattern`` max length.
MAX_PATTERN_LENGTH: Final = 4096
#: Nesting limit for pattern objects ($or branches count as a level). AWS publishes none; 32 is far beyond
#: any real pattern and keeps recursion bounded.
MAX_NESTING: Final = 32
#: Most wildcard NFA states that may be active at once on one field (our stand-in for event-ruler's
#: MachineComplexityEvaluator). Calibrated on AWS answers: "/Users/*/dir/dir/dir/dir/dir/doc.txt" (8) is
#: accepted, "*:*:*:*:*:event-bus/*" (13) and "*.bif", "*.tiff", "*.tif", "*.svs" on one field (12) are
#: refused "Rule is too complex". The exact AWS limit is unpublished [UNVERIFIED].
MAX_WILDCARD_COMPLEXITY: Final = 10

#: Rule 6 switch. True (default, what AWS did: the EventBridge-validated case ``number_comparison_float``
#: has pattern ``[300]`` match event ``300.0``): literal numbers compare as numbers. False (the reading of
#: the Lambda docs, "compared via their string representation"): literal numbers are equal only as
#: canonical JSON text, so ``300`` != ``300.0``.
LITERAL_NUMBERS_BY_VALUE = True

# event-ruler reserves these names inside "$or" objects; a "$or" containing one is an ordinary field name.
_RESERVED_IN_OR: Final = frozenset(
    {
        "exactly",
        "equals-ignore-case",
        "prefix",
        "suffix",
        "anything-but",
        "exists",
        "wildcard",
        "numeric",
        "cidr",
        "=",
        "<",
        "<=",
        ">",
        ">=",
        "regex",
        "not-wildcard",
        "not-equals-ignore-case",
        "date-after",
        "date-on-or-after",
        "date-before",
        "date-on-or-before",
        "in-date-range",
        "ip-address-in-range",
        "ip-address-not-in-range",
    }
)
_ANYTHING_BUT_SUBFORMS: Final = frozenset({"prefix", "suffix", "equals-ignore-case", "wildcard"})


class FilterPatternError(ValueError):
    """A pattern AWS would refuse. ``str()`` is always AWS's text; ``reason`` says why, for logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(MESSAGE)
        self.reason = reason


class DataFormat(enum.IntEnum):
    """What the data key of a record turned out to be (spec 2.3)."""

    JSON = 0  # parsed JSON value
    TEXT = 1  # UTF-8 text that is not JSON (SQS, Kafka, MQ)
    INVALID = 2  # Kinesis data that is not JSON
    BINARY = 3  # Kafka / MQ bytes that are not UTF-8
    ABSENT = 4  # no data in the record (e.g. a Kafka tombstone)


class FilterView(dict[str, Any]):
    """The JSON object a record is matched against, plus the format of its data key."""

    __slots__ = ("data_format",)

    def __init__(self, fields: Mapping[str, Any], data_format: DataFormat) -> None:
        super().__init__(fields)
        self.data_format = data_format


class _Missing:
    __slots__ = ()


_MISSING: Final = _Missing()

# --- compiled pattern tree --------------------------------------------------------------------------
# Every pattern part compiles to a closure over an event value. The tree classes keep what RecordFilter and
# validation still need: the fields (to single out the data key per source) and absence results. A missing
# field is passed to the closures as _MISSING.

_Pred = Callable[[Any], bool]


class _Leaf:
    """One leaf array: its elements are OR-ed (rules 1, 15)."""

    __slots__ = ("exists_false", "match")

    def __init__(self, str_test: _Pred, other_test: _Pred, exists_false: bool) -> None:
        self.exists_false = exists_false

        def match_list(values: list[Any]) -> bool:
            # Any element may match; exists:false only when no element is a leaf value ([] is absent).
            found = False
            for e in values:
                t = type(e)
                if t is dict:
                    continue
                if t is list or t is _Alternatives:
                    for s in _scalars(e):
                        if str_test(s) if type(s) is str else other_test(s):
                            return True
                        found = True
                    continue
                if str_test(e) if t is str else other_test(e):
                    return True
                found = True
            return exists_false and not found

        def match(v: Any) -> bool:
            t = type(v)
            if t is str:
                return str_test(v)
            if t is list or t is _Alternatives:
                return match_list(v)
            if t is dict or v is _MISSING:  # an intermediate object is not a leaf value (rule 9)
                return exists_false
            return other_test(v)

        self.match = match


def _scalars(values: list[Any]) -> Iterator[Any]:
    """The leaf values of a nested event array; objects in it are not leaf values."""
    for e in values:
        t = type(e)
        if t is list or t is _Alternatives:
            yield from _scalars(e)
        elif t is not dict:
            yield e


class _Node:
    """A pattern object: all fields AND-ed, each ``$or`` group OR-ed (rule 14)."""

    __slots__ = ("absent", "fields", "match", "match_value", "ors")
    match: _Pred  # on a mapping
    match_value: _Pred  # on any event value

    def __init__(self, fields: tuple[_Child, ...], ors: tuple[tuple[_Node, ...], ...]) -> None:
        self.fields = fields
        self.ors = ors
        #: the result for an event where everything below is absent
        self.absent: bool = all(c.absent for c in fields) and all(any(b.absent for b in g) for g in ors)
        self.match = _object_test(
            tuple((c.key, c.match) for c in fields), tuple(tuple(b.match for b in g) for g in ors)
        )
        self.match_value = _value_test(self.match, self.absent)


class _Child:
    """A field of a pattern object: a leaf array, a nested object, or both (``"a": [..]`` and ``"a.b"``)."""

    __slots__ = ("absent", "key", "leaf", "match", "node")
    match: _Pred

    def __init__(self, key: str, leaf: _Leaf | None, node: _Node | None) -> None:
        self.key = key
        self.leaf = leaf
        self.node = node
        self.absent: bool = (leaf is None or leaf.exists_false) and (node is None or node.absent)
        if node is None:
            assert leaf is not None
            self.match = leaf.match
        elif leaf is None:
            self.match = node.match_value
        else:
            self.match = _both_test(leaf.match, node.match_value)


def _both_test(leaf: _Pred, node: _Pred) -> _Pred:
    def match(v: Any) -> bool:
        if type(v) is list and v:  # both parts must hold in the same array element (rule 4)
            return any(match(e) for e in v)
        return leaf(v) and node(v)  # _Alternatives are not array elements: each part picks its own

    return match


def _object_test(fields: tuple[tuple[str, _Pred], ...], ors: tuple[tuple[_Pred, ...], ...]) -> _Pred:
    """A test on a mapping (a parsed event object or the view itself)."""
    if not ors and len(fields) == 1:
        ((key, test),) = fields
        return lambda d: test(d.get(key, _MISSING))
    if not ors and len(fields) == 2:
        (k1, t1), (k2, t2) = fields
        return lambda d: t1(d.get(k1, _MISSING)) and t2(d.get(k2, _MISSING))

    def match(d: Mapping[str, Any]) -> bool:
        for key, test in fields:
            if not test(d.get(key, _MISSING)):
                return False
        for group in ors:
            for branch in group:
                if branch(d):
                    break
            else:
                return False
        return True

    return match


def _value_test(match_object: _Pred, absent: bool) -> _Pred:
    """A test on any event value for a pattern object: arrays are searched element by element (rule 4)."""

    def match(v: Any) -> bool:
        t = type(v)
        if t is dict:
            return match_object(v)
        if t is list or t is _Alternatives:
            containers = False
            for e in v:
                te = type(e)
                if te is dict:
                    containers = True
                    if match_object(e):
                        return True
                elif te is list or te is _Alternatives:
                    containers = True
                    if match(e):
                        return True
            if containers:
                return False
        return absent  # a scalar, [] or nothing: every field below is absent

    return match


# --- data-key policy (spec 2.3) ---------------------------------------------------------------------

_EVAL, _PASS, _DROP = 0, 1, 2
#: (object-clause action, leaf-clause action), each indexed by DataFormat, per source family.
_Policy = tuple[tuple[int, ...], tuple[int, ...]]
# SQS drops on a body-format mismatch.
_SQS_POLICY: Final[_Policy] = ((_EVAL, _DROP, _DROP, _DROP, _EVAL), (_DROP, _EVAL, _DROP, _DROP, _EVAL))
# Kinesis / DynamoDB: a non-JSON record with an object clause is dropped (leaf clauses never compile).
_STREAM_POLICY: Final[_Policy] = ((_EVAL, _DROP, _DROP, _DROP, _EVAL), (_DROP, _DROP, _DROP, _DROP, _EVAL))
# Kafka / MQ ignore the data clause on a mismatch and on non-UTF-8 data.
_BROKER_POLICY: Final[_Policy] = ((_EVAL, _PASS, _PASS, _PASS, _EVAL), (_PASS, _EVAL, _PASS, _PASS, _EVAL))


def _root_test(node: _Node, key: str, object_action: int, leaf_action: int) -> _Pred | bool:
    """A root-level object (the pattern, or a branch of a root-level $or) as a test on a FilterView whose
    data key has one given format: its data-key field is evaluated, ignored (True) or fails (False) by the
    per-source policy. Constant results come back as bools so that RecordFilter can skip them."""
    fields: list[tuple[str, _Pred]] = []
    for child in node.fields:
        if child.key != key:
            fields.append((child.key, child.match))
            continue
        for part, action in ((child.node, object_action), (child.leaf, leaf_action)):
            if part is None or action == _PASS:
                continue
            if action == _DROP:
                return False
            fields.append((key, part.match_value if isinstance(part, _Node) else part.match))
    groups: list[tuple[_Pred, ...]] = []
    for group in node.ors:
        tests: list[_Pred] = []
        for branch in group:
            test = _root_test(branch, key, object_action, leaf_action)
            if not isinstance(test, bool):
                tests.append(test)
            elif test:
                break  # an always-true branch satisfies the group
        else:
            if not tests:
                return False
            groups.append(tuple(tests))
    if not fields and not groups:
        return True
    return _object_test(tuple(fields), tuple(groups))


def _root_data_leaf(node: _Node, key: str) -> bool:
    """Whether a root-level object gives the data key plain (non-object) rules."""
    return any(c.key == key and c.leaf is not None for c in node.fields) or any(
        _root_data_leaf(b, key) for g in node.ors for b in g
    )


# --- public objects ---------------------------------------------------------------------------------


class CompiledPattern:
    """One validated pattern; ``matches`` applies it to any JSON object with plain event-ruler semantics."""

    __slots__ = ("_root", "source")

    def __init__(self, source: str, root: _Node) -> None:
        self.source = source
        self._root = root

    def matches(self, event: Mapping[str, Any]) -> bool:
        return self._root.match_value(_undot(dict(event)))

    def __repr__(self) -> str:
        return f"CompiledPattern({self.source!r})"


class RecordFilter:
    """A mapping's FilterCriteria for one source: a record passes when any filter matches."""

    __slots__ = ("_by_format", "_key", "patterns", "source")

    def __init__(self, source: FilterSource, patterns: Sequence[CompiledPattern]) -> None:
        self.source = source
        self.patterns = tuple(patterns)
        self._key = source.data_key
        # The data-key policy depends only on the view's DataFormat: resolve it now, once per format.
        objects, leaves = source.mismatch
        self._by_format = tuple(self._tests(objects[fmt], leaves[fmt]) for fmt in DataFormat)

    def _tests(self, object_action: int, leaf_action: int) -> tuple[_Pred, ...] | None:
        """The filters' tests for one data format; None when every record of that format passes."""
        if not self.patterns:
            return None
        tests = []
        for pattern in self.patterns:
            test = _root_test(pattern._root, self._key, object_action, leaf_action)
            if not isinstance(test, bool):
                tests.append(test)
            elif test:
                return None
        return tuple(tests)

    @property
    def is_empty(self) -> bool:
        return not self.patterns

    def matches(self, view: Mapping[str, Any]) -> bool:
        """OR across filters (spec 2.1); no filters match everything. Pass a ``filter_view`` result."""
        if isinstance(view, FilterView):
            fmt: int = view.data_format
        else:  # a hand-made mapping: infer the data format and expand dotted keys here
            fmt = _infer_format(view, self._key)
            view = _undot(dict(view))
        tests = self._by_format[fmt]
        if tests is None:
            return True
        for test in tests:  # noqa: SIM110 - a loop beats any() over a generator here
            if test(view):
                return True
        return False

    def __repr__(self) -> str:
        return f"RecordFilter({self.source.name}, {[p.source for p in self.patterns]!r})"


def _infer_format(view: Mapping[str, Any], key: str) -> DataFormat:
    v = view.get(key, _MISSING)
    if v is _MISSING or v is None:
        return DataFormat.ABSENT
    if isinstance(v, str):
        return DataFormat.TEXT
    if isinstance(v, bytes | bytearray):
        return DataFormat.BINARY
    return DataFormat.JSON


# --- compilation ------------------------------------------------------------------------------------


def compile_pattern(
    pattern: str, *, strict_pipes: bool = False, literal_numbers_by_value: bool | None = None
) -> CompiledPattern:
    """Validate and compile one ``Pattern`` string; raises FilterPatternError.

    ``strict_pipes`` refuses the four anything-but sub-forms EventBridge Pipes does not support (spec 2.5).
    ``literal_numbers_by_value`` overrides the module switch LITERAL_NUMBERS_BY_VALUE (rule 6).
    """
    if not isinstance(pattern, str):
        raise FilterPatternError("pattern is not a string")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise FilterPatternError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    try:
        doc = _JSON.decode(pattern)
    except (ValueError, RecursionError) as e:
        raise FilterPatternError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise FilterPatternError("Filter is not an object")
    by_value = LITERAL_NUMBERS_BY_VALUE if literal_numbers_by_value is None else literal_numbers_by_value
    return CompiledPattern(pattern, _Compiler(strict_pipes, by_value).node(doc, 1))


def compile_filters(
    patterns: Sequence[str],
    source: FilterSource,
    *,
    max_filters: int = 5,
    strict_pipes: bool = False,
    literal_numbers_by_value: bool | None = None,
) -> RecordFilter:
    """Validate a mapping's filter patterns for one source (spec 2.1, 2.3, 2.6)."""
    if isinstance(patterns, str):
        raise FilterPatternError("patterns must be a sequence of strings")
    if len(patterns) > max_filters:
        raise FilterPatternError(f"more than {max_filters} filters")
    by_value = literal_numbers_by_value
    compiled = [
        compile_pattern(p, strict_pipes=strict_pipes, literal_numbers_by_value=by_value) for p in patterns
    ]
    if source.object_data_only:
        key = source.data_key
        for c in compiled:
            if _root_data_leaf(c._root, key):
                raise FilterPatternError(f"{key!r} of a {source.name} record needs an object pattern")
    return RecordFilter(source, compiled)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Python's json accepts NaN and Infinity; JSON (and AWS's parser) does not. One decoder: json.loads with
# options would build a new one per call.
_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant)


class _Draft:
    """A pattern object while dotted keys are merged: ``{"a.b": ..}`` and ``{"a": {"b": ..}}`` coincide."""

    __slots__ = ("children", "leaf", "ors")

    def __init__(self) -> None:
        self.leaf: list[Any] | None = None
        self.children: dict[str, _Draft] = {}
        self.ors: list[tuple[list[dict[str, Any]], int]] = []  # (branches, depth of the $or's object)


def _is_or_group(value: Any) -> bool:
    """event-ruler reads "$or" as OR only for an array of >= 2 objects without reserved names (rule 14)."""
    return (
        isinstance(value, list)
        and len(value) >= 2
        and all(isinstance(b, dict) for b in value)
        and not any(_has_reserved(b) for b in value)
    )


def _has_reserved(obj: dict[str, Any]) -> bool:
    for k, v in obj.items():
        if k == "$or" and isinstance(v, list):
            if any(isinstance(b, dict) and _has_reserved(b) for b in v):
                return True
        elif k in _RESERVED_IN_OR or (isinstance(v, dict) and _has_reserved(v)):
            return True
    return False


class _Compiler:
    __slots__ = ("by_value", "strict_pipes")

    def __init__(self, strict_pipes: bool, by_value: bool) -> None:
        self.strict_pipes = strict_pipes
        self.by_value = by_value

    def node(self, obj: dict[str, Any], depth: int) -> _Node:
        draft = _Draft()
        self._merge(draft, obj, depth)
        return self._build(draft)

    def _merge(self, draft: _Draft, obj: dict[str, Any], depth: int) -> None:
        if not obj:
            raise FilterPatternError("Empty objects are not allowed")
        if depth > MAX_NESTING:
            raise FilterPatternError(f"pattern nested deeper than {MAX_NESTING} levels")
        for key, value in obj.items():
            if key == "$or" and _is_or_group(value):
                draft.ors.append((value, depth))
                continue
            target = draft
            for segment in key.split("."):  # event-ruler joins path names with "." (rule 3)
                target = target.children.setdefault(segment, _Draft())
            if isinstance(value, dict):
                self._merge(target, value, depth + 1)
            elif isinstance(value, list):
                if not value:
                    raise FilterPatternError("Empty arrays are not allowed")
                target.leaf = value  # a repeated path: the last one wins, as for duplicate keys
            else:
                raise FilterPatternError(f"{key!r} must be an object or an array")

    def _build(self, draft: _Draft) -> _Node:
        fields = []
        for key, sub in draft.children.items():
            leaf = self._leaf(sub.leaf) if sub.leaf is not None else None
            node = self._build(sub) if (sub.children or sub.ors) else None
            fields.append(_Child(key, leaf, node))
        ors = tuple(tuple(self.node(branch, depth + 1) for branch in group) for group, depth in draft.ors)
        return _Node(tuple(fields), ors)

    def _leaf(self, values: list[Any]) -> _Leaf:
        b = _LeafBuilder(self.by_value)
        for v in values:
            if isinstance(v, dict):
                self._operator(b, v)
            elif isinstance(v, list):
                raise FilterPatternError("Match value must be String, number, true, false, or null")
            else:
                b.exact(v)
        _check_complexity(b.wildcards)
        return b.build()

    def _operator(self, b: _LeafBuilder, op: dict[str, Any]) -> None:
        if len(op) != 1:
            raise FilterPatternError("an operator object needs exactly one key")
        ((name, arg),) = op.items()
        if name == "prefix":
            b.prefix(_string_or_ignore_case(arg, "prefix"))
        elif name == "suffix":
            b.suffix(_string_or_ignore_case(arg, "suffix"))
        elif name == "equals-ignore-case":
            b.ignore_case.add(_string(arg, name).lower())
        elif name == "wildcard":
            b.wildcard(_string(arg, name))
        elif name == "anything-but":
            self._anything_but(b, arg)
        elif name == "numeric":
            b.num_preds.append(_numeric(arg))
        elif name == "exists":
            if not isinstance(arg, bool):
                raise FilterPatternError("exists match pattern must be either true or false.")
            b.exists(arg)
        elif name == "cidr":
            b.cidr(_string(arg, name))
        else:
            raise FilterPatternError(f"Unrecognized match type {name}")

    def _anything_but(self, b: _LeafBuilder, arg: Any) -> None:
        if isinstance(arg, dict):
            if len(arg) != 1:
                raise FilterPatternError("anything-but object needs exactly one key")
            ((form, value),) = arg.items()
            if form not in _ANYTHING_BUT_SUBFORMS:
                raise FilterPatternError(f"Unsupported anything-but pattern: {form}")
            if self.strict_pipes:
                raise FilterPatternError(f"anything-but {form}: not supported by Pipes (strict mode)")
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(s, str) for s in values):
                raise FilterPatternError(f"anything-but {form} needs a string or a list of strings")
            b.anything_but_form(form, values)
            return
        values = arg if isinstance(arg, list) else [arg]
        if values and all(isinstance(s, str) for s in values):
            b.anything_but_strings(values)
        elif values and all(_is_number(n) for n in values):
            b.anything_but_numbers(values)
        else:
            raise FilterPatternError("Value of anything-but must be an array or single string/number value.")


def _is_number(v: Any) -> bool:
    return type(v) is int or (type(v) is float and v - v == 0)  # finite; bool is not a number here


def _string(arg: Any, name: str) -> str:
    if not isinstance(arg, str):
        raise FilterPatternError(f"{name} match pattern must be a string")
    return arg


def _string_or_ignore_case(arg: Any, name: str) -> tuple[str, bool]:
    if isinstance(arg, dict):
        if len(arg) != 1 or "equals-ignore-case" not in arg:
            raise FilterPatternError(f"Unsupported {name} pattern")
        return _string(arg["equals-ignore-case"], "equals-ignore-case"), True
    return _string(arg, name), False


# One closure per comparison form: a chained comparison is much cheaper than calls to operator functions.
_SINGLE_BOUND: Final[Mapping[str, Callable[[Any], _Pred]]] = {
    "=": lambda n: lambda v: v == n,
    "<": lambda n: lambda v: v < n,
    "<=": lambda n: lambda v: v <= n,
    ">": lambda n: lambda v: v > n,
    ">=": lambda n: lambda v: v >= n,
}
_RANGE: Final[Mapping[tuple[str, str], Callable[[Any, Any], _Pred]]] = {
    (">", "<"): lambda lo, hi: lambda v: lo < v < hi,
    (">", "<="): lambda lo, hi: lambda v: lo < v <= hi,
    (">=", "<"): lambda lo, hi: lambda v: lo <= v < hi,
    (">=", "<="): lambda lo, hi: lambda v: lo <= v <= hi,
}


def _numeric(arg: Any) -> _Pred:
    """``[op, n]`` or ``[">"|">=", low, "<"|"<=", high]`` with low < high (rule 7)."""
    if not isinstance(arg, list) or not arg or not isinstance(arg[0], str):
        raise FilterPatternError("Value of numeric must be an array starting with an operator")
    op = arg[0]
    if len(arg) < 2 or not _is_number(arg[1]):
        raise FilterPatternError(f"Value of {op} must be numeric")
    if len(arg) == 2 and op in _SINGLE_BOUND:
        return _SINGLE_BOUND[op](arg[1])
    if len(arg) == 4 and (op, arg[2]) in _RANGE and _is_number(arg[3]):
        if not arg[1] < arg[3]:
            raise FilterPatternError("Bottom must be less than top")
        return _RANGE[op, arg[2]](arg[1], arg[3])
    raise FilterPatternError(f"Bad numeric expression: {arg!r}")


class _LeafBuilder:
    """Sorts a leaf's elements into one test for string values and one for the other JSON scalars."""

    def __init__(self, by_value: bool) -> None:
        self.by_value = by_value
        self.exists_false = False
        self.strings: set[str] = set()
        self.ignore_case: set[str] = set()  # lower-cased equals-ignore-case values
        self.prefixes: list[str] = []
        self.suffixes: list[str] = []
        self.prefixes_ic: list[str] = []
        self.suffixes_ic: list[str] = []
        self.str_preds: list[Callable[[str], bool]] = []
        self.numbers: list[Any] = []
        self.num_preds: list[_Pred] = []
        self.literals: set[bool | None] = set()  # true, false, null
        self.other_preds: list[_Pred] = []  # anything-but numbers
        self.str_always = False  # every present string matches (exists:true, anything-but numbers)
        self.other_always = False  # every present non-string matches (exists:true, anything-but strings)
        self.wildcards: list[list[str]] = []

    def exact(self, v: Any) -> None:
        if isinstance(v, str):
            self.strings.add(v)
        elif v is None or isinstance(v, bool):
            self.literals.add(v)
        elif _is_number(v):
            self.numbers.append(v)
        else:
            raise FilterPatternError("numbers must be finite")

    def exists(self, present: bool) -> None:
        if present:
            self.str_always = self.other_always = True
        else:
            self.exists_false = True

    def prefix(self, arg: tuple[str, bool]) -> None:
        text, ignore_case = arg
        (self.prefixes_ic if ignore_case else self.prefixes).append(text.lower() if ignore_case else text)

    def suffix(self, arg: tuple[str, bool]) -> None:
        text, ignore_case = arg
        (self.suffixes_ic if ignore_case else self.suffixes).append(text.lower() if ignore_case else text)

    def wildcard(self, text: str) -> None:
        pieces = _wildcard_pieces(text)
        self.wildcards.append(pieces)
        self.str_preds.append(_wildcard_matcher(pieces))

    def cidr(self, text: str) -> None:
        ip, sep, bits = text.partition("/")
        if not sep or "/" in bits:
            raise FilterPatternError("Malformed CIDR, one '/' required")
        if not bits.isdigit():
            raise FilterPatternError("Malformed CIDR, mask bits must be an integer")
        try:
            net = ipaddress.ip_network(f"{ip}/{int(bits)}", strict=False)
        except ValueError:
            raise FilterPatternError(f"Nonstandard IP address: {ip}") from None
        version, low, high = net.version, int(net.network_address), int(net.broadcast_address)

        def in_block(v: str) -> bool:
            addr = _ip(v)
            return addr is not None and addr[0] == version and low <= addr[1] <= high

        self.str_preds.append(in_block)

    # anything-but needs the field present; a present value of the other type always satisfies it (rule 10)

    def anything_but_strings(self, values: list[str]) -> None:
        excluded = frozenset(values)
        self.str_preds.append(lambda v: v not in excluded)
        self.other_always = True

    def anything_but_numbers(self, values: list[Any]) -> None:
        is_excluded = _number_set(values, self.by_value)
        self.other_preds.append(lambda v: not is_excluded(v))
        self.str_always = True

    def anything_but_form(self, form: str, values: list[str]) -> None:
        hit: Callable[[str], bool]
        if form == "prefix" or form == "suffix":
            if "" in values:
                raise FilterPatternError("Null prefix/suffix not allowed")
            affixes = tuple(values)
            hit = (lambda v: v.startswith(affixes)) if form == "prefix" else (lambda v: v.endswith(affixes))
        elif form == "equals-ignore-case":
            lowered = frozenset(s.lower() for s in values)
            hit = lambda v: v.lower() in lowered  # noqa: E731
        else:
            pieces = [_wildcard_pieces(s) for s in values]
            self.wildcards.extend(pieces)
            matchers = tuple(_wildcard_matcher(p) for p in pieces)
            hit = lambda v: any(m(v) for m in matchers)  # noqa: E731
        self.str_preds.append(lambda v: not hit(v))
        self.other_always = True

    def build(self) -> _Leaf:
        return _Leaf(self._str_test(), self._other_test(), self.exists_false)

    def _str_test(self) -> _Pred:
        if self.str_always:
            return _always
        strs = frozenset(self.strings)
        preds = list(self.str_preds)
        if self.prefixes:
            prefixes = tuple(self.prefixes)
            preds.append(lambda v: v.startswith(prefixes))
        if self.suffixes:
            suffixes = tuple(self.suffixes)
            preds.append(lambda v: v.endswith(suffixes))
        if self.ignore_case or self.prefixes_ic or self.suffixes_ic:
            eic, pic, sic = frozenset(self.ignore_case), tuple(self.prefixes_ic), tuple(self.suffixes_ic)
            preds.append(lambda v: (low := v.lower()) in eic or low.startswith(pic) or low.endswith(sic))
        if not preds:
            return strs.__contains__  # the common leaf: a list of exact strings
        if len(preds) == 1 and not strs:
            return preds[0]
        tests = tuple(preds)
        return lambda v: v in strs or any(p(v) for p in tests)

    def _other_test(self) -> _Pred:
        if self.other_always:
            return _always
        tests: list[_Pred] = list(self.other_preds)
        if self.numbers:
            tests.append(_number_set(self.numbers, self.by_value))
        if self.num_preds:  # JSON numbers only: bool is its own type here (rule 7)
            if len(self.num_preds) == 1:
                (bound,) = self.num_preds
                tests.append(lambda v: (type(v) is int or type(v) is float) and bound(v))
            else:
                bounds = tuple(self.num_preds)
                tests.append(lambda v: (type(v) is int or type(v) is float) and any(b(v) for b in bounds))
        if self.literals:
            literals = frozenset(self.literals)
            tests.append(lambda v: (v is None or type(v) is bool) and v in literals)  # 1 is not true
        if not tests:
            return _never
        if len(tests) == 1:
            return tests[0]
        checks = tuple(tests)
        return lambda v: any(t(v) for t in checks)


def _always(v: Any) -> bool:
    return True


def _never(v: Any) -> bool:
    return False


def _number_set(values: list[Any], by_value: bool) -> Callable[[Any], bool]:
    """Membership of an event number in pattern numbers: by value, or as canonical JSON text (rule 6)."""
    if by_value:
        nums = frozenset(values)
        return lambda v: (type(v) is int or type(v) is float) and v in nums
    ints = frozenset(v for v in values if type(v) is int)
    floats = frozenset(v for v in values if type(v) is float)
    return lambda v: (type(v) is int and v in ints) or (type(v) is float and v in floats)


@lru_cache(maxsize=4096)
def _ip(text: str) -> tuple[int, int] | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return addr.version, int(addr)


# --- wildcard (rule 12) -----------------------------------------------------------------------------


def _wildcard_pieces(text: str) -> list[str]:
    """The literal pieces between stars; ``\\*`` is a star, ``\\\\`` a backslash, nothing else escapes."""
    pieces: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "*":
            if i + 1 < n and text[i + 1] == "*":
                raise FilterPatternError(f"Consecutive wildcard characters at pos {i}")
            pieces.append("".join(buf))
            buf = []
        elif c == "\\":
            if i + 1 < n and text[i + 1] in "*\\":
                buf.append(text[i + 1])
                i += 1
            else:
                raise FilterPatternError(f"Invalid escape character at pos {i}")
        else:
            buf.append(c)
        i += 1
    pieces.append("".join(buf))
    return pieces


def _wildcard_matcher(pieces: list[str]) -> Callable[[str], bool]:
    if len(pieces) == 1:
        whole = pieces[0]
        return lambda v: v == whole
    head, tail = pieces[0], pieces[-1]
    if len(pieces) == 2:
        size = len(head) + len(tail)
        return lambda v: len(v) >= size and v.startswith(head) and v.endswith(tail)
    if len(pieces) == 3 and not head and not tail:
        middle = pieces[1]
        return lambda v: middle in v
    regex = re.compile(".*".join(re.escape(p) for p in pieces), re.DOTALL)
    return lambda v: regex.fullmatch(v) is not None


def _check_complexity(patterns: list[list[str]]) -> None:
    """Refuse a field whose wildcards could keep more than MAX_WILDCARD_COMPLEXITY NFA states alive."""
    starred = [list(p) for p in {tuple(p) for p in patterns if len(p) > 1}]  # a repeated pattern counts once
    if starred and _wildcard_complexity(starred) > MAX_WILDCARD_COMPLEXITY:
        raise FilterPatternError(
            "Rule is too complex - try using fewer wildcard characters or fewer "
            "repeating character sequences after a wildcard character"
        )


def _wildcard_complexity(patterns: list[list[str]]) -> int:
    """The most NFA states the patterns can have active at once while reading one value (quotes included,
    as event-ruler reads values), over the subset construction on the characters they use plus one
    stand-in for all others. Stops early once past the limit."""
    nfas: list[list[str | None]] = []  # None is a star: it loops on any character
    for pieces in patterns:
        tokens: list[str | None] = ['"']
        for i, piece in enumerate(pieces):
            if i:
                tokens.append(None)
            tokens.extend(piece)
        tokens.append('"')
        nfas.append(tokens)
    alphabet = {c for t in nfas for c in t if c is not None} | {"\x00"}

    def close(tokens: list[str | None], states: set[int]) -> frozenset[int]:
        out, todo = set(states), list(states)
        while todo:
            s = todo.pop()
            if s < len(tokens) and tokens[s] is None and s + 1 not in out:
                out.add(s + 1)
                todo.append(s + 1)
        return frozenset(out)

    def step(tokens: list[str | None], states: frozenset[int], ch: str) -> frozenset[int]:
        ok = [s for s in states if s < len(tokens) and tokens[s] in (None, ch)]
        return close(tokens, {s if tokens[s] is None else s + 1 for s in ok})

    start = tuple(close(t, {0}) for t in nfas)
    seen, todo, worst = {start}, [start], 0
    while todo:
        current = todo.pop()
        for ch in alphabet:
            nxt = tuple(step(t, states, ch) for t, states in zip(nfas, current, strict=True))
            worst = max(worst, sum(len(s) for s in nxt))
            if worst > MAX_WILDCARD_COMPLEXITY:
                return worst
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return worst


# --- per-source views (spec 2.2, 2.3) ---------------------------------------------------------------

# A "." inside a JSON string that is an object key: only then does a parsed payload need its dotted keys
# expanded. A false positive only costs the expansion pass. The plain form is exact for text without
# backslashes; with escapes, a key may hide its dot behind \u002e or be followed by an escaped quote.
_DOTTED_KEY = re.compile(r'\.[^"]*"\s*:')
_DOTTED_KEY_ESCAPED = re.compile(r'(?:\.|\\u002[eE])[^"\\]*(?:\\.[^"\\]*)*"\s*:')


def filter_view(source: FilterSource, record: Mapping[str, Any]) -> FilterView | None:
    """The object a record is matched against (spec 2.2), built once and shared by all filters.

    ``record`` is the record exactly as the function receives it (spec section 1). Returns None when the
    record does not have that source's shape (no ``body`` string, no ``kinesis`` / ``dynamodb`` object).
    """
    if not isinstance(record, Mapping):
        return None
    return source.view(record, source)


def _sqs_view(record: Mapping[str, Any], source: FilterSource) -> FilterView | None:
    body = record.get("body")
    if not isinstance(body, str):
        return None
    value = _parse_json(body)
    if value is _MISSING:
        return _view(record, source, body, DataFormat.TEXT)
    return _view(record, source, value, DataFormat.JSON)


def _kinesis_view(record: Mapping[str, Any], source: FilterSource) -> FilterView | None:
    kinesis = record.get("kinesis")  # its fields are matched flattened, without the envelope
    if not isinstance(kinesis, Mapping):
        return None
    invalid = DataFormat.INVALID  # for Kinesis anything but JSON is just "not JSON"
    return _decoded_view(kinesis, source, text_format=invalid, binary_format=invalid)


def _dynamodb_view(record: Mapping[str, Any], source: FilterSource) -> FilterView | None:
    if not isinstance(record.get("dynamodb"), Mapping):
        return None
    view = _view(record, source, _undot(record["dynamodb"]), DataFormat.JSON)
    # eventSourceARN is added by the poller; the other fields come from the Streams API (spec 2.2).
    view.pop("eventSourceARN", None)
    return view


def _broker_view(record: Mapping[str, Any], source: FilterSource) -> FilterView | None:
    """Kafka's ``value``, MQ's ``data``: base64, matched as JSON, else as text (spec 2.3)."""
    return _decoded_view(record, source, text_format=DataFormat.TEXT, binary_format=DataFormat.BINARY)


@dataclass(frozen=True)
class FilterSource:
    """How one source's records meet a filter (spec 2.2, 2.3): the field that holds the data, what a
    data-format mismatch does, where users choose field names, and how the view is built. Each source's
    profile names one of the constants below."""

    #: in error messages ("'data' of a kinesis record ...")
    name: str
    data_key: str
    #: per data format: evaluate, drop or ignore the data clause (objects, leaves)
    mismatch: _Policy
    #: where a record holds names users choose (attribute, header, property names) that may contain
    #: dots; every other field has AWS's fixed names. DynamoDB item maps nest: searched all the way down
    user_keyed: tuple[tuple[str, ...], ...]
    #: the data field takes object patterns only (its records' data must be JSON: the streams)
    object_data_only: bool
    view: Callable[[Mapping[str, Any], FilterSource], FilterView | None]


SQS = FilterSource("sqs", "body", _SQS_POLICY, (("messageAttributes",),), False, _sqs_view)
KINESIS = FilterSource("kinesis", "data", _STREAM_POLICY, (), True, _kinesis_view)
DYNAMODB = FilterSource("dynamodb", "dynamodb", _STREAM_POLICY, (), True, _dynamodb_view)
KAFKA = FilterSource("kafka", "value", _BROKER_POLICY, (("headers",),), False, _broker_view)
MQ = FilterSource(
    "mq", "data", _BROKER_POLICY, (("properties",), ("basicProperties", "headers")), False, _broker_view
)


def _view(fields: Mapping[str, Any], source: FilterSource, value: Any, fmt: DataFormat) -> FilterView:
    """``fields`` with the data key set to its decoded ``value`` (left out when _MISSING)."""
    view = FilterView(fields, fmt)
    if value is _MISSING:
        view.pop(source.data_key, None)
    else:
        view[source.data_key] = value
    for name, *rest in source.user_keyed:
        if name in view:
            view[name] = _expand_names(view[name], rest)
    return view


def _expand_names(value: Any, path: list[str]) -> Any:
    """``value`` with the dotted names at ``path`` (in a dict, or a list of dicts) expanded; a copy only
    where something changes."""
    if path:
        name, *rest = path
        if type(value) is not dict or name not in value:
            return value
        part = value[name]
        new = _expand_names(part, rest)
        return value if new is part else {**value, name: new}
    if type(value) is dict:
        return _expand(value) if "." in "".join(value) else value
    if type(value) is list and any(type(e) is dict and "." in "".join(e) for e in value):
        return [_expand(e) if type(e) is dict else e for e in value]
    return value


def _decoded_view(
    fields: Mapping[str, Any],
    source: FilterSource,
    *,
    text_format: DataFormat,
    binary_format: DataFormat,
) -> FilterView:
    encoded = fields.get(source.data_key)
    if not isinstance(encoded, str):
        return _view(fields, source, _MISSING, DataFormat.ABSENT)
    try:
        text = binascii.a2b_base64(encoded).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return _view(fields, source, _MISSING, binary_format)
    value = _parse_json(text)
    if value is _MISSING:
        return _view(fields, source, text if text_format is DataFormat.TEXT else _MISSING, text_format)
    return _view(fields, source, value, DataFormat.JSON)


def _parse_json(text: str) -> Any:
    """The JSON value of ``text`` with dotted keys expanded, or _MISSING when it is not JSON."""
    try:
        value = _JSON.decode(text)
    except (ValueError, RecursionError):
        return _MISSING
    dotted = _DOTTED_KEY_ESCAPED if "\\" in text else _DOTTED_KEY
    if dotted.search(text) is not None:
        value = _undot(value)
    return value


def _undot(value: Any) -> Any:
    """``value`` with every key ``"a.b"`` expanded to ``{"a": {"b": ..}}`` (rule 3); unchanged if none."""
    t = type(value)
    if t is dict:
        if "." in "".join(value):
            return _expand(value)
        copy: dict[str, Any] | None = None
        for k, v in value.items():
            tv = type(v)
            if tv is dict or tv is list:
                nv = _undot(v)
                if nv is not v:
                    if copy is None:
                        copy = dict(value)
                    copy[k] = nv
        return value if copy is None else copy
    if t is list:
        out: list[Any] | None = None
        for i, v in enumerate(value):
            tv = type(v)
            if tv is dict or tv is list:
                nv = _undot(v)
                if nv is not v:
                    if out is None:
                        out = list(value)
                    out[i] = nv
        return value if out is None else out
    return value


class _Alternatives(list[Any]):
    """Several values at one path of an event that had both ``"a"`` and ``"a.b"`` keys: event-ruler sees two
    fields there, so unlike an event array they are not elements that array consistency would separate."""

    __slots__ = ()


def _expand(obj: dict[str, Any]) -> dict[str, Any]:
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
        alternatives = _Alternatives(a if type(a) is _Alternatives else [a])
        alternatives.append(b)
        return alternatives

    for key, v in obj.items():
        *parents, last = key.split(".")
        target = out
        for seg in parents:
            nxt = target.get(seg, _MISSING)
            if type(nxt) is dict:
                target[seg] = nxt = own(nxt)
            elif type(nxt) is _Alternatives:  # write into its object member, or add one
                alternatives: list[Any] = nxt
                index = next((i for i, x in enumerate(alternatives) if type(x) is dict), None)
                if index is None:
                    alternatives.append({})
                    index = len(alternatives) - 1
                nxt = alternatives[index] = own(alternatives[index])
            else:
                holder = own({})
                target[seg] = holder if nxt is _MISSING else merge(nxt, holder)
                nxt = holder
            target = nxt
        v = _undot(v)
        target[last] = merge(target[last], v) if last in target else v
    return out
