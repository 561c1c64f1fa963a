"""The wildcard operator (spec 2.5 rule 12): its syntax (``*`` and the two escapes), a matcher per pattern,
and the complexity limit AWS applies to the wildcards of one field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from engine.filtering.errors import FilterPatternError

#: Most wildcard NFA states that may be active at once on one field (our stand-in for event-ruler's
#: MachineComplexityEvaluator). Calibrated on AWS answers: "/Users/*/dir/dir/dir/dir/dir/doc.txt" (8) is
#: accepted, "*:*:*:*:*:event-bus/*" (13) and "*.bif", "*.tiff", "*.tif", "*.svs" on one field (12) are
#: refused "Rule is too complex". The exact AWS limit is unpublished [UNVERIFIED].
MAX_WILDCARD_COMPLEXITY: Final = 10


def wildcard_pieces(text: str) -> list[str]:
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


def wildcard_matcher(pieces: list[str]) -> Callable[[str], bool]:
    """A test of a string against the pieces: plain string operations for the common shapes, else a regex."""
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


def check_complexity(patterns: list[list[str]]) -> None:
    """Refuse a field whose wildcards could keep more than MAX_WILDCARD_COMPLEXITY NFA states alive."""
    starred = [list(p) for p in {tuple(p) for p in patterns if len(p) > 1}]  # a repeated pattern counts once
    if starred and _complexity(starred) > MAX_WILDCARD_COMPLEXITY:
        raise FilterPatternError(
            "Rule is too complex - try using fewer wildcard characters or fewer "
            "repeating character sequences after a wildcard character"
        )


def _complexity(patterns: list[list[str]]) -> int:
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
