"""Hypothesis strategies for random filter trees over the conformance data's fields."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .data import TAGS

_STRINGS = st.sampled_from([*TAGS, "odd", "even", "10", "11", "", "zzz"])
_NUMBERS = st.one_of(st.integers(-5, 65), st.floats(-3, 3, allow_nan=False).map(lambda v: round(v, 3)))
_SCALARS = st.one_of(_STRINGS, _NUMBERS, st.booleans())
_FIELDS = st.sampled_from(["i", "x", "tag", "flag", "opt", "num_or_str", "missing"])


@st.composite
def _comparison(draw: Any) -> dict[str, Any]:
    field = draw(_FIELDS)
    op = draw(st.sampled_from(["eq", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"]))
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return {field: {op: draw(_NUMBERS)}}
    if op in ("$in", "$nin"):
        base = draw(st.sampled_from([_STRINGS, _NUMBERS, st.booleans()]))
        return {field: {op: draw(st.lists(base, min_size=1, max_size=4))}}
    value = draw(_SCALARS)
    return {field: value} if op == "eq" else {field: {op: value}}


def filters(max_leaves: int = 8) -> st.SearchStrategy[dict[str, Any]]:
    """Nested $and/$or/$not trees of comparisons."""
    return st.recursive(
        _comparison(),
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda xs: {"$and": xs}),
            st.lists(children, min_size=1, max_size=3).map(lambda xs: {"$or": xs}),
            children.map(lambda x: {"$not": x}),
        ),
        max_leaves=max_leaves,
    )


#: pieces that broke or could break an engine's escaping, concatenated at random
HOSTILE_PIECES = [
    "'",
    '"',
    "\\",
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x01",
    "\x1b",
    "\x1f",
    "\x7f",
    "\u2028",
    "\ud800",
    "%",
    "_",
    "*",
    "?",
    "[",
    "]",
    "{",
    "}",
    "$",
    "`",
    ";",
    "--",
    "/*",
    "../",
    "\\u0041",
    "\\x00",
    "中文",
    "🎉",
    "é",
    " ",
    "'); DROP TABLE docs; --",
    "zzz'] or id not in ['zzz",
    '" or 1 == 1 or "',
    "null",
    "true",
    "1",
]


def hostile_strings(max_pieces: int = 8) -> st.SearchStrategy[str]:
    """Quotes, backslashes, NUL and other control characters, lone surrogates, injection attempts, any
    Unicode, and strings too long for an id: what a crafted file or a hostile user sends."""
    return st.one_of(
        st.lists(st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=3)), min_size=1, max_size=max_pieces).map(
            "".join
        ),
        st.text(min_size=1, max_size=20),
        st.integers(500, 2000).map(lambda n: "x" * n),
    )
