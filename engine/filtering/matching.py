"""The matching engine: compiled patterns as closures over event values, and RecordFilter, a mapping's
filters applied to one source's records.

Matching walks the compiled pattern tree against the event tree. Walking an event array element by element
gives event-ruler's array-consistent matching (spec 2.5 rule 4) for free: the fields of one pattern object
must all match inside the same array element. The compiler (compiler.py) builds the tree; the views
(views.py) build what it reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from engine.filtering.values import MISSING, Alternatives, undot
from engine.filtering.views import DROP, PASS, DataFormat, FilterSource, FilterView

# --- compiled pattern tree ----------------------------------------------------------------------------
# Every pattern part compiles to a closure over an event value. The tree classes keep what RecordFilter and
# validation still need: the fields (to single out the data key per source) and absence results. A missing
# field is passed to the closures as MISSING.

Pred = Callable[[Any], bool]


class Leaf:
    """One leaf array: its elements are OR-ed (rules 1, 15)."""

    __slots__ = ("exists_false", "match")

    def __init__(self, str_test: Pred, other_test: Pred, exists_false: bool) -> None:
        self.exists_false = exists_false

        def match_list(values: list[Any]) -> bool:
            # Any element may match; exists:false only when no element is a leaf value ([] is absent).
            found = False
            for e in values:
                t = type(e)
                if t is dict:
                    continue
                if t is list or t is Alternatives:
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
            if t is list or t is Alternatives:
                return match_list(v)
            if t is dict or v is MISSING:  # an intermediate object is not a leaf value (rule 9)
                return exists_false
            return other_test(v)

        self.match = match


def _scalars(values: list[Any]) -> Iterator[Any]:
    """The leaf values of a nested event array; objects in it are not leaf values."""
    for e in values:
        t = type(e)
        if t is list or t is Alternatives:
            yield from _scalars(e)
        elif t is not dict:
            yield e


class Node:
    """A pattern object: all fields AND-ed, each ``$or`` group OR-ed (rule 14)."""

    __slots__ = ("absent", "fields", "match", "match_value", "ors")
    match: Pred  # on a mapping
    match_value: Pred  # on any event value

    def __init__(self, fields: tuple[Child, ...], ors: tuple[tuple[Node, ...], ...]) -> None:
        self.fields = fields
        self.ors = ors
        #: the result for an event where everything below is absent
        self.absent: bool = all(c.absent for c in fields) and all(any(b.absent for b in g) for g in ors)
        self.match = _object_test(
            tuple((c.key, c.match) for c in fields), tuple(tuple(b.match for b in g) for g in ors)
        )
        self.match_value = _value_test(self.match, self.absent)


class Child:
    """A field of a pattern object: a leaf array, a nested object, or both (``"a": [..]`` and ``"a.b"``)."""

    __slots__ = ("absent", "key", "leaf", "match", "node")
    match: Pred

    def __init__(self, key: str, leaf: Leaf | None, node: Node | None) -> None:
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


def _both_test(leaf: Pred, node: Pred) -> Pred:
    def match(v: Any) -> bool:
        if type(v) is list and v:  # both parts must hold in the same array element (rule 4)
            return any(match(e) for e in v)
        return leaf(v) and node(v)  # Alternatives are not array elements: each part picks its own

    return match


def _object_test(fields: tuple[tuple[str, Pred], ...], ors: tuple[tuple[Pred, ...], ...]) -> Pred:
    """A test on a mapping (a parsed event object or the view itself)."""
    if not ors and len(fields) == 1:
        ((key, test),) = fields
        return lambda d: test(d.get(key, MISSING))
    if not ors and len(fields) == 2:
        (k1, t1), (k2, t2) = fields
        return lambda d: t1(d.get(k1, MISSING)) and t2(d.get(k2, MISSING))

    def match(d: Mapping[str, Any]) -> bool:
        for key, test in fields:
            if not test(d.get(key, MISSING)):
                return False
        for group in ors:
            for branch in group:
                if branch(d):
                    break
            else:
                return False
        return True

    return match


def _value_test(match_object: Pred, absent: bool) -> Pred:
    """A test on any event value for a pattern object: arrays are searched element by element (rule 4)."""

    def match(v: Any) -> bool:
        t = type(v)
        if t is dict:
            return match_object(v)
        if t is list or t is Alternatives:
            containers = False
            for e in v:
                te = type(e)
                if te is dict:
                    containers = True
                    if match_object(e):
                        return True
                elif te is list or te is Alternatives:
                    containers = True
                    if match(e):
                        return True
            if containers:
                return False
        return absent  # a scalar, [] or nothing: every field below is absent

    return match


class CompiledPattern:
    """One validated pattern; ``matches`` applies it to any JSON object with plain event-ruler semantics."""

    __slots__ = ("root", "source")

    def __init__(self, source: str, root: Node) -> None:
        self.source = source
        self.root = root

    def matches(self, event: Mapping[str, Any]) -> bool:
        return self.root.match_value(undot(dict(event)))

    def __repr__(self) -> str:
        return f"CompiledPattern({self.source!r})"


# --- a mapping's filters on one source's records ------------------------------------------------------


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

    def _tests(self, object_action: int, leaf_action: int) -> tuple[Pred, ...] | None:
        """The filters' tests for one data format; None when every record of that format passes."""
        if not self.patterns:
            return None
        tests = []
        for pattern in self.patterns:
            test = _root_test(pattern.root, self._key, object_action, leaf_action)
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
            view = undot(dict(view))
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
    v = view.get(key, MISSING)
    if v is MISSING or v is None:
        return DataFormat.ABSENT
    if isinstance(v, str):
        return DataFormat.TEXT
    if isinstance(v, bytes | bytearray):
        return DataFormat.BINARY
    return DataFormat.JSON


def _root_test(node: Node, key: str, object_action: int, leaf_action: int) -> Pred | bool:
    """A root-level object (the pattern, or a branch of a root-level $or) as a test on a FilterView whose
    data key has one given format: its data-key field is evaluated, ignored (True) or fails (False) by the
    per-source policy. Constant results come back as bools so that RecordFilter can skip them."""
    fields: list[tuple[str, Pred]] = []
    for child in node.fields:
        if child.key != key:
            fields.append((child.key, child.match))
            continue
        for part, action in ((child.node, object_action), (child.leaf, leaf_action)):
            if part is None or action == PASS:
                continue
            if action == DROP:
                return False
            fields.append((key, part.match_value if isinstance(part, Node) else part.match))
    groups: list[tuple[Pred, ...]] = []
    for group in node.ors:
        tests: list[Pred] = []
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
