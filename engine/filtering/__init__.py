"""Event filtering (FilterCriteria): the EventBridge / event-ruler pattern language as Lambda applies it.

Spec section 2. Pure policy: stdlib only, no I/O. Patterns are compiled once (``compile_filters``); each
record is turned once into a ``FilterView`` (``filter_view``: payload decoded and parsed, dotted keys
expanded) that every filter of the mapping then reads without re-parsing.

- compiler.py: patterns parsed and validated as AWS does (its limits, the rule 6 switch), compiled
  into the matching tree; errors.py: FilterPatternError and AWS's one message.
- wildcard.py: the wildcard operator's syntax, matcher and complexity limit.
- matching.py: the compiled pattern tree and RecordFilter, a mapping's filters on one source's records.
- views.py: what each source's records look like to a filter, the FilterSource constants at the end.
- values.py: JSON as AWS reads it and dotted keys expanded, for patterns and events alike.

This module is the package's interface: what the rest of the engine uses.
"""

from engine.filtering.compiler import compile_filters, compile_pattern
from engine.filtering.errors import MESSAGE, FilterPatternError
from engine.filtering.matching import CompiledPattern, RecordFilter
from engine.filtering.views import (
    DYNAMODB,
    KAFKA,
    KINESIS,
    MQ,
    SQS,
    DataFormat,
    FilterSource,
    FilterView,
    filter_view,
)

__all__ = [
    "DYNAMODB",
    "KAFKA",
    "KINESIS",
    "MESSAGE",
    "MQ",
    "SQS",
    "CompiledPattern",
    "DataFormat",
    "FilterPatternError",
    "FilterSource",
    "FilterView",
    "RecordFilter",
    "compile_filters",
    "compile_pattern",
    "filter_view",
]
