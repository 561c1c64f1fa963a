"""Property tests for the algebra of the filter language (spec 2.5): each operator against its definition,
and the ways patterns combine (AND of fields, OR of rules, $or, several filters)."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.filtering import compile_filters, compile_pattern
from engine.model import SourceKind
from engine.sources.registry import profile_of

# per test, not a global profile: other modules keep their own settings (no deadline: shared CI machines)
PROPERTY = settings(deadline=None, max_examples=100)

KEYS = st.sampled_from(["a", "b", "c"])
TEXT = st.text(alphabet="abAB.-*", max_size=5)
NUMBERS = st.one_of(st.integers(-20, 20), st.floats(-20, 20, allow_nan=False).map(lambda f: round(f, 2)))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=8,
)
EVENTS = st.dictionaries(KEYS, VALUES, max_size=3)
# events without arrays, where array consistency cannot tell combinations apart
PLAIN_VALUES = st.recursive(SCALARS, lambda inner: st.dictionaries(KEYS, inner, max_size=3), max_leaves=6)
PLAIN_EVENTS = st.dictionaries(KEYS, PLAIN_VALUES, max_size=3)

# Stay under the wildcard complexity limit: one pattern of at most two stars, or up to three (one per rule
# of a leaf) of at most one star between single characters.
WILDCARD = (
    st.lists(st.text(alphabet="ab.-", max_size=3), min_size=1, max_size=3)
    .map("*".join)
    .filter(lambda w: "**" not in w)
)
SMALL_WILDCARD = st.lists(st.text(alphabet="ab.-", max_size=1), min_size=1, max_size=2).map("*".join)
RULES = st.one_of(
    SCALARS.filter(lambda v: not isinstance(v, float) or v == v),
    st.builds(lambda s: {"prefix": s}, TEXT),
    st.builds(lambda s: {"suffix": s}, TEXT),
    st.builds(lambda s: {"equals-ignore-case": s}, TEXT),
    st.builds(lambda s: {"prefix": {"equals-ignore-case": s}}, TEXT),
    st.builds(lambda s: {"wildcard": s}, SMALL_WILDCARD),
    st.builds(lambda v: {"anything-but": v}, st.one_of(TEXT, NUMBERS, st.lists(TEXT, min_size=1))),
    st.builds(lambda v: {"anything-but": {"prefix": v}}, TEXT.filter(bool)),
    st.builds(lambda op, n: {"numeric": [op, n]}, st.sampled_from(["=", "<", "<=", ">", ">="]), NUMBERS),
    st.builds(lambda b: {"exists": b}, st.booleans()),
)
LEAVES = st.lists(RULES, min_size=1, max_size=3)
PATTERNS = st.recursive(
    st.dictionaries(KEYS, LEAVES, min_size=1, max_size=2),
    lambda inner: st.dictionaries(KEYS, st.one_of(LEAVES, inner), min_size=1, max_size=2),
    max_leaves=4,
)


def matches(pattern: Any, event: Any) -> bool:
    return compile_pattern(json.dumps(pattern)).matches(event)


@PROPERTY
@given(st.lists(PATTERNS, min_size=2, max_size=4), EVENTS)
def test_or_matches_when_a_branch_does(branches: list[dict[str, Any]], event: dict[str, Any]) -> None:
    assert matches({"$or": branches}, event) == any(matches(b, event) for b in branches)


@PROPERTY
@given(st.lists(PATTERNS, min_size=2, max_size=3), PATTERNS, EVENTS)
def test_or_beside_other_fields_is_a_conjunction(
    branches: list[dict[str, Any]], common: dict[str, Any], event: dict[str, Any]
) -> None:
    # rename the branch fields apart from the common ones so that neither constrains the other
    branches = [{f"or-{k}": v for k, v in b.items()} for b in branches]
    pattern = {**common, "$or": branches}
    assert matches(pattern, event) == (matches(common, event) and any(matches(b, event) for b in branches))


@PROPERTY
@given(st.lists(PATTERNS, min_size=1, max_size=5), EVENTS)
def test_filters_are_ored(patterns: list[dict[str, Any]], event: dict[str, Any]) -> None:
    record_filter = compile_filters([json.dumps(p) for p in patterns], profile_of(SourceKind.SQS).filters)
    assert record_filter.matches(event) == any(matches(p, event) for p in patterns)


@PROPERTY
@given(LEAVES, LEAVES, EVENTS)
def test_fields_are_anded(left: list[Any], right: list[Any], event: dict[str, Any]) -> None:
    both = matches({"a": left, "b": right}, event)
    assert both == (matches({"a": left}, event) and matches({"b": right}, event))


@PROPERTY
@given(LEAVES, EVENTS)
def test_rules_of_a_leaf_are_ored(rules: list[Any], event: dict[str, Any]) -> None:
    assert matches({"a": rules}, event) == any(matches({"a": [r]}, event) for r in rules)


@PROPERTY
@given(st.one_of(TEXT, st.lists(TEXT, min_size=1, max_size=3)), TEXT)
def test_anything_but_complements_exact_on_a_present_string(excluded: str | list[str], value: str) -> None:
    exact = excluded if isinstance(excluded, list) else [excluded]
    event = {"a": value}
    assert matches({"a": [{"anything-but": excluded}]}, event) == (not matches({"a": exact}, event))


@PROPERTY
@given(st.lists(NUMBERS, min_size=1, max_size=3), NUMBERS)
def test_anything_but_complements_exact_on_a_present_number(excluded: list[Any], value: Any) -> None:
    event = {"a": value}
    assert matches({"a": [{"anything-but": excluded}]}, event) == (not matches({"a": excluded}, event))


@PROPERTY
@given(VALUES)
def test_exists_false_complements_exists_true(value: Any) -> None:
    event = {"a": value}
    assert matches({"a": [{"exists": False}]}, event) == (not matches({"a": [{"exists": True}]}, event))
    assert matches({"a": [{"exists": False}]}, {})


@PROPERTY
@given(PLAIN_EVENTS)
def test_exists_complement_on_nested_paths(event: dict[str, Any]) -> None:
    absent = matches({"a": {"b": [{"exists": False}]}}, event)
    assert absent == (not matches({"a": {"b": [{"exists": True}]}}, event))


def _has_string(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_string(v) for v in value)
    return isinstance(value, str)


@PROPERTY
@given(VALUES)
def test_empty_prefix_matches_exactly_the_strings(value: Any) -> None:
    assert matches({"a": [{"prefix": ""}]}, {"a": value}) == _has_string(value)
    assert matches({"a": [{"suffix": ""}]}, {"a": value}) == _has_string(value)


@PROPERTY
@given(NUMBERS, NUMBERS, st.sampled_from([">", ">="]), st.sampled_from(["<", "<="]), SCALARS)
def test_numeric_range_is_the_conjunction_of_its_bounds(
    low: Any, high: Any, lower: str, upper: str, value: Any
) -> None:
    low, high = sorted((low, high))
    if not low < high:
        return
    event = {"a": value}
    both = matches({"a": [{"numeric": [lower, low, upper, high]}]}, event)
    assert both == (
        matches({"a": [{"numeric": [lower, low]}]}, event)
        and matches({"a": [{"numeric": [upper, high]}]}, event)
    )


@PROPERTY
@given(NUMBERS, SCALARS)
def test_numeric_matches_only_json_numbers(bound: Any, value: Any) -> None:
    hit = matches({"a": [{"numeric": [">=", bound]}]}, {"a": value})
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    assert hit == (is_number and value >= bound)


@PROPERTY
@given(st.text(alphabet="ab.-", max_size=4), st.text(alphabet="ab.-*", max_size=8))
def test_wildcard_with_trailing_star_is_prefix(prefix: str, value: str) -> None:
    event = {"a": value}
    assert matches({"a": [{"wildcard": prefix + "*"}]}, event) == matches({"a": [{"prefix": prefix}]}, event)


@PROPERTY
@given(WILDCARD, st.text(alphabet="ab.-", max_size=8))
def test_wildcard_is_a_shell_pattern(wildcard: str, value: str) -> None:
    shell = ".*".join(re.escape(piece) for piece in wildcard.split("*"))
    expected = re.fullmatch(shell, value, re.DOTALL) is not None
    assert matches({"a": [{"wildcard": wildcard}]}, {"a": value}) == expected


@PROPERTY
@given(TEXT, SCALARS)
def test_equals_ignore_case(text: str, value: Any) -> None:
    expected = isinstance(value, str) and value.lower() == text.lower()
    assert matches({"a": [{"equals-ignore-case": text}]}, {"a": value}) == expected


@PROPERTY
@given(NUMBERS, NUMBERS)
def test_literal_number_is_numeric_equality_by_default(literal: Any, value: Any) -> None:
    # rule 6: AWS compares literal numbers by value (EventBridge-validated number_comparison_float)
    by_numeric = matches({"a": [{"numeric": ["=", literal]}]}, {"a": value})
    assert matches({"a": [literal]}, {"a": value}) == by_numeric


@PROPERTY
@given(NUMBERS, NUMBERS)
def test_literal_number_as_text_is_json_text_equality(literal: Any, value: Any) -> None:
    # rule 6 switched to the Lambda docs' reading: equal only as canonical JSON text, so an integer never
    # equals a float (300 != 300.0)
    pattern = compile_pattern(json.dumps({"a": [literal]}), literal_numbers_by_value=False)
    assert pattern.matches({"a": value}) == (type(literal) is type(value) and literal == value)


@PROPERTY
@given(LEAVES, PLAIN_VALUES)
def test_dotted_keys_equal_nesting(rules: list[Any], value: Any) -> None:
    # rule 3, both ways: {"a.b": ..} in a pattern or an event is the path a -> b
    nested_event, dotted_event = {"a": {"b": value}}, {"a.b": value}
    for pattern in ({"a": {"b": rules}}, {"a.b": rules}):
        assert matches(pattern, nested_event) == matches(pattern, dotted_event)


@PROPERTY
@given(PATTERNS, st.lists(EVENTS, max_size=3))
def test_an_array_of_objects_matches_when_an_element_does(
    pattern: dict[str, Any], elements: list[dict[str, Any]]
) -> None:
    # rule 4: the whole sub-pattern must match inside one element
    assert matches({"x": pattern}, {"x": elements}) == (
        any(matches({"x": pattern}, {"x": e}) for e in elements) if elements else matches({"x": pattern}, {})
    )
