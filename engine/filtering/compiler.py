"""The pattern compiler: FilterCriteria patterns (spec 2.5) validated as AWS validates them (spec 2.6) and
compiled once into the matching engine's tree, one closure per pattern part.

Every refusal raises FilterPatternError, whose text is AWS's one message; its reason says what was wrong.
compile_filters adds the per-source rules of a mapping's filters and returns its RecordFilter.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

from engine.filtering.errors import FilterPatternError
from engine.filtering.matching import Child, CompiledPattern, Leaf, Node, Pred, RecordFilter
from engine.filtering.values import STRICT_JSON
from engine.filtering.views import FilterSource
from engine.filtering.wildcard import check_complexity, wildcard_matcher, wildcard_pieces

#: Rule 6 switch. True (default, what AWS did: the EventBridge-validated case ``number_comparison_float``
#: has pattern ``[300]`` match event ``300.0``): literal numbers compare as numbers. False (the reading of
#: the Lambda docs, "compared via their string representation"): literal numbers are equal only as
#: canonical JSON text, so ``300`` != ``300.0``.
LITERAL_NUMBERS_BY_VALUE = True
#: API model: ``Pattern`` max length.
MAX_PATTERN_LENGTH: Final = 4096
#: Nesting limit for pattern objects ($or branches count as a level). AWS publishes none; 32 is far beyond
#: any real pattern and keeps recursion bounded.
MAX_NESTING: Final = 32

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
        doc = STRICT_JSON.decode(pattern)
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
            if _root_data_leaf(c.root, key):
                raise FilterPatternError(f"{key!r} of a {source.name} record needs an object pattern")
    return RecordFilter(source, compiled)


def _root_data_leaf(node: Node, key: str) -> bool:
    """Whether a root-level object gives the data key plain (non-object) rules."""
    return any(c.key == key and c.leaf is not None for c in node.fields) or any(
        _root_data_leaf(b, key) for g in node.ors for b in g
    )


# --- pattern objects ----------------------------------------------------------------------------------


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

    def node(self, obj: dict[str, Any], depth: int) -> Node:
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

    def _build(self, draft: _Draft) -> Node:
        fields = []
        for key, sub in draft.children.items():
            leaf = self._leaf(sub.leaf) if sub.leaf is not None else None
            node = self._build(sub) if (sub.children or sub.ors) else None
            fields.append(Child(key, leaf, node))
        ors = tuple(tuple(self.node(branch, depth + 1) for branch in group) for group, depth in draft.ors)
        return Node(tuple(fields), ors)

    def _leaf(self, values: list[Any]) -> Leaf:
        b = _LeafBuilder(self.by_value)
        for v in values:
            if isinstance(v, dict):
                self._operator(b, v)
            elif isinstance(v, list):
                raise FilterPatternError("Match value must be String, number, true, false, or null")
            else:
                b.exact(v)
        check_complexity(b.wildcards)
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


# --- leaf arrays: operators into tests on string and other values -------------------------------------


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
_SINGLE_BOUND: Final[Mapping[str, Callable[[Any], Pred]]] = {
    "=": lambda n: lambda v: v == n,
    "<": lambda n: lambda v: v < n,
    "<=": lambda n: lambda v: v <= n,
    ">": lambda n: lambda v: v > n,
    ">=": lambda n: lambda v: v >= n,
}
_RANGE: Final[Mapping[tuple[str, str], Callable[[Any, Any], Pred]]] = {
    (">", "<"): lambda lo, hi: lambda v: lo < v < hi,
    (">", "<="): lambda lo, hi: lambda v: lo < v <= hi,
    (">=", "<"): lambda lo, hi: lambda v: lo <= v < hi,
    (">=", "<="): lambda lo, hi: lambda v: lo <= v <= hi,
}


def _numeric(arg: Any) -> Pred:
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
        self.num_preds: list[Pred] = []
        self.literals: set[bool | None] = set()  # true, false, null
        self.other_preds: list[Pred] = []  # anything-but numbers
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
        pieces = wildcard_pieces(text)
        self.wildcards.append(pieces)
        self.str_preds.append(wildcard_matcher(pieces))

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
            pieces = [wildcard_pieces(s) for s in values]
            self.wildcards.extend(pieces)
            matchers = tuple(wildcard_matcher(p) for p in pieces)
            hit = lambda v: any(m(v) for m in matchers)  # noqa: E731
        self.str_preds.append(lambda v: not hit(v))
        self.other_always = True

    def build(self) -> Leaf:
        return Leaf(self._str_test(), self._other_test(), self.exists_false)

    def _str_test(self) -> Pred:
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

    def _other_test(self) -> Pred:
        if self.other_always:
            return _always
        tests: list[Pred] = list(self.other_preds)
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
