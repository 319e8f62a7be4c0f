"""The filter grammar itself: parsing errors and reference semantics, independent of any store."""

from __future__ import annotations

import pytest

from ragstore.errors import FilterError
from ragstore.query.filters import And, Cmp, Not, Or, matches, parse_filter, to_dict


def test_empty_filter_matches_everything() -> None:
    assert parse_filter(None) is None
    assert parse_filter({}) is None
    assert matches(None, {"a": 1})


def test_parse_builds_tree() -> None:
    node = parse_filter({"a": 1, "b": {"$gt": 2, "$lt": 5}, "$or": [{"c": "x"}, {"$not": {"d": True}}]})
    assert node == And(
        (
            Cmp("a", "$eq", 1),
            And((Cmp("b", "$gt", 2), Cmp("b", "$lt", 5))),
            Or((Cmp("c", "$eq", "x"), Not(Cmp("d", "$eq", True)))),
        )
    )


def test_round_trip_through_dict() -> None:
    spec = {"$and": [{"a": {"$in": [1, 2]}}, {"$not": {"b": {"$ne": "x"}}}]}
    node = parse_filter(spec)
    assert parse_filter(to_dict(node)) == node


@pytest.mark.parametrize(
    ("spec", "meta", "expected"),
    [
        ({"a": 1}, {"a": 1}, True),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": True}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": "1"}, {"a": 1}, False),
        ({"a": {"$ne": 1}}, {}, True),
        ({"a": {"$ne": 1}}, {"a": "1"}, True),
        ({"a": {"$gt": 0}}, {}, False),
        ({"a": {"$gt": 0}}, {"a": "5"}, False),
        ({"a": {"$gt": 0}}, {"a": True}, False),
        ({"a": {"$gte": 2.5}}, {"a": 2.5}, True),
        ({"a": {"$in": ["x", "y"]}}, {"a": "y"}, True),
        ({"a": {"$in": [1]}}, {"a": True}, False),
        ({"a": {"$nin": ["x"]}}, {}, True),
        ({"$not": {"a": {"$lt": 3}}}, {}, True),
        ({"$or": [{"a": 1}, {"b": 2}]}, {"b": 2}, True),
        ({"$and": [{"a": 1}, {"b": 2}]}, {"b": 2}, False),
    ],
)
def test_reference_semantics(spec: dict, meta: dict, expected: bool) -> None:
    assert matches(parse_filter(spec), meta) is expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"a": {"$regex": "x"}}, "unknown filter operator '\\$regex'"),
        ({"$nor": []}, "unknown filter operator '\\$nor'"),
        ({"a": None}, "has type NoneType"),
        ({"a": {"$in": []}}, "non-empty list"),
        ({"a": {"$in": [1, "x"]}}, "mixes value types"),
        ({"a": {"$gt": "3"}}, "needs a number"),
        ({"a": {}}, "empty operator object"),
        ({"a b": 1}, "invalid filter field"),
        ({"$and": []}, "non-empty list"),
    ],
)
def test_errors_name_the_problem(spec: dict, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filter(spec)


def test_depth_limit() -> None:
    spec: dict = {"a": 1}
    for _ in range(40):
        spec = {"$not": spec}
    with pytest.raises(FilterError, match="deeper"):
        parse_filter(spec)


def test_push_not_keeps_meaning() -> None:
    """Negation normal form gives the same result as the original tree on every metadata shape."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ragstore.query.filters import push_not
    from ragstore.testing.strategies import filters

    metas = st.dictionaries(
        st.sampled_from(["i", "x", "tag", "flag", "opt", "num_or_str"]),
        st.one_of(
            st.integers(-5, 65), st.floats(-3, 3), st.booleans(), st.sampled_from(["odd", "even", "10", "alpha"])
        ),
    )

    def nots_only_above_ranges(node: object) -> bool:
        if isinstance(node, Not):
            return isinstance(node.child, Cmp) and node.child.op in ("$gt", "$gte", "$lt", "$lte")
        if isinstance(node, And | Or):
            return all(nots_only_above_ranges(c) for c in node.children)
        return True

    @settings(max_examples=300, deadline=None)
    @given(filters(), metas)
    def check(spec: dict, meta: dict) -> None:
        node = parse_filter(spec)
        assert node is not None
        nnf = push_not(node)
        assert nots_only_above_ranges(nnf)
        assert matches(nnf, meta) == matches(node, meta)

    check()


def test_a_compiler_that_merges_ranges_gets_each_fields_bounds_at_once() -> None:
    """Engines that estimate each half-open bound alone (Qdrant) get ``u >= x AND u < y`` as one condition;
    repeated operators on a field stay separate atoms, and other compilers see the tree unchanged."""
    from ragstore.query.filters import FilterCompiler, parse_filter

    class Text(FilterCompiler[str]):
        def all_of(self, parts: list[str]) -> str:
            return "(" + " & ".join(parts) + ")"

        def any_of(self, parts: list[str]) -> str:
            return "(" + " | ".join(parts) + ")"

        def negate(self, part: str, node: object) -> str:
            return "!" + part

        def eq(self, field: str, value: object) -> str:
            return f"{field}={value}"

        def range(self, field: str, op: str, value: object) -> str:
            return f"{field}{op}{value}"

    class Merging(Text):
        merges_ranges = True

        def range_all(self, field: str, bounds: list[tuple[str, object]]) -> str:
            return field + "[" + ",".join(f"{op}{v}" for op, v in bounds) + "]"

    node = parse_filter({"u": {"$gte": 1, "$lt": 5}, "t": "a"})
    assert Text().compile(node) == "((u$gte1 & u$lt5) & t=a)"
    assert Merging().compile(node) == "((u[$gte1,$lt5]) & t=a)"
    twice = parse_filter({"$and": [{"u": {"$gt": 1}}, {"u": {"$gt": 2}}]})
    assert Merging().compile(twice) == "(u$gt1 & u$gt2)"
