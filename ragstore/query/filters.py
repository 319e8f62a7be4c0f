"""One metadata filter language for every backend.

Grammar (JSON-able, validated up front; anything else is a :class:`~ragstore.errors.FilterError`)::

    filter   := {clause, ...}                      several clauses are ANDed
    clause   := FIELD: scalar                      equality, same as {"$eq": scalar}
              | FIELD: {OP: value, ...}            several operators on one field are ANDed
              | "$and": [filter, ...]  | "$or": [filter, ...]  | "$not": filter
    OP       := $eq $ne (scalar) | $gt $gte $lt $lte (number) | $in $nin (non-empty list of one type)

Semantics, identical on all backends (the in-memory store is the reference):

- Values compare only within their kind: strings with strings, numbers (int or float) with numbers,
  booleans with booleans. ``{"n": 1}`` does not match ``n = true``, nor ``n = "1"``.
- A comparison on a field the document does not have (or has with another kind) is false.
- ``$ne`` and ``$nin`` are the negations of ``$eq`` and ``$in``, and ``$not`` negates its whole filter, so a
  document *without* the field matches ``{"f": {"$ne": x}}`` (as in MongoDB).
- An empty filter (``None`` or ``{}``) matches everything.

Size, the same rule on every backend (``FilterLimits``; store options ``max_filter_atoms``,
``max_filter_depth``, ``max_filter_values``): at most 512 comparisons, 32 levels and 10,000 values in one
``$in``/``$nin`` list by default. Past it the filter is refused with a ``FilterError`` before any engine sees
it (a 10,000-atom ``$or`` crashed Chroma's process and exceeded SQLite's expression depth). A ``$or`` of
equalities on one field is first rewritten as one ``$in`` (same meaning), so such lists count as one
comparison and run on every engine.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeAlias, TypeVar, cast

from ..errors import FilterError, ValidationError
from ..types import MetadataValue, check_value_chars, validate_key

CmpOp: TypeAlias = Literal["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"]
SCALAR_OPS = ("$eq", "$ne")
RANGE_OPS = ("$gt", "$gte", "$lt", "$lte")
LIST_OPS = ("$in", "$nin")
LOGICAL_OPS = ("$and", "$or", "$not")
MAX_DEPTH = 32
MAX_ATOMS = 512
MAX_VALUES = 10_000
T = TypeVar("T")


@dataclass(frozen=True)
class FilterLimits:
    """How large a filter may be: comparisons, nesting depth, values in one ``$in``/``$nin`` list."""

    atoms: int = MAX_ATOMS
    depth: int = MAX_DEPTH
    values: int = MAX_VALUES


DEFAULT_LIMITS = FilterLimits()


@dataclass(frozen=True)
class Cmp:
    """``field OP value``; ``value`` is a scalar, or a tuple of scalars for ``$in``/``$nin``."""

    field: str
    op: CmpOp
    value: MetadataValue | tuple[MetadataValue, ...]


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node: TypeAlias = Cmp | And | Or | Not
Filter: TypeAlias = Mapping[str, Any]


def kind(value: object) -> str | None:
    """The comparison kind of a value: 'bool', 'number', 'str', or None for anything else."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "str"
    return None


def _scalar(value: object, op: str, field: str) -> MetadataValue:
    k = kind(value)
    if k is None:
        raise FilterError(
            f"filter value for {field!r} {op} has type {type(value).__name__}; expected str, int, float or bool"
        )
    if k == "number" and not math.isfinite(value):  # type: ignore[arg-type]
        raise FilterError(f"filter value for {field!r} {op} is not a finite number: {value!r}")
    if k == "str":
        try:
            check_value_chars(value, f"filter value for {field!r} {op}")  # type: ignore[arg-type]
        except ValidationError as exc:
            raise FilterError(f"{exc} (such values are never stored, see ragstore.types)") from None
    return value  # type: ignore[return-value]


def _parse_ops(field: str, spec: Mapping[str, Any]) -> Node:
    if not spec:
        raise FilterError(f"empty operator object for field {field!r}")
    nodes: list[Node] = []
    for op, value in spec.items():
        if op in SCALAR_OPS:
            nodes.append(Cmp(field, cast(CmpOp, op), _scalar(value, op, field)))
        elif op in RANGE_OPS:
            if kind(value) != "number":
                raise FilterError(f"{op} on {field!r} needs a number, got {value!r}")
            nodes.append(Cmp(field, cast(CmpOp, op), _scalar(value, op, field)))
        elif op in LIST_OPS:
            if not isinstance(value, list | tuple) or not value:
                raise FilterError(f"{op} on {field!r} needs a non-empty list, got {value!r}")
            items = tuple(_scalar(v, op, field) for v in value)
            if len({kind(v) for v in items}) != 1:
                raise FilterError(f"{op} on {field!r} mixes value types: {value!r}")
            nodes.append(Cmp(field, cast(CmpOp, op), items))
        else:
            raise FilterError(f"unknown filter operator {op!r} on field {field!r}")
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _parse(spec: object, depth: int, limits: FilterLimits = DEFAULT_LIMITS) -> Node:
    if depth > limits.depth:
        raise FilterError(f"filter nested deeper than {limits.depth} levels (store option max_filter_depth)")
    if not isinstance(spec, Mapping) or not spec:
        raise FilterError(f"a filter must be a non-empty object, got {spec!r}")
    nodes: list[Node] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list | tuple) or not value:
                raise FilterError(f"{key} needs a non-empty list of filters")
            children = tuple(_parse(v, depth + 1, limits) for v in value)
            nodes.append(And(children) if key == "$and" else _any_of(children))
        elif key == "$not":
            nodes.append(Not(_parse(value, depth + 1, limits)))
        elif isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r}")
        else:
            try:
                validate_key(key, "filter field")
            except ValidationError as exc:
                raise FilterError(str(exc)) from None
            if isinstance(value, Mapping):
                nodes.append(_parse_ops(key, value))
            else:
                nodes.append(Cmp(key, "$eq", _scalar(value, "$eq", key)))
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _any_of(children: tuple[Node, ...]) -> Node:
    """``Or`` with its equalities and ``$in`` lists on one field (values of one kind) merged into one ``$in``:
    the same documents match, and engines take one long list where they fail on thousands of ``OR`` terms."""
    groups: dict[tuple[str, str | None], list[MetadataValue]] = {}
    rest: list[Node] = []
    for child in children:
        if isinstance(child, Cmp) and child.op in ("$eq", "$in"):
            values = child.value if isinstance(child.value, tuple) else (child.value,)
            groups.setdefault((child.field, kind(values[0])), []).extend(values)
        else:
            rest.append(child)
    merged: list[Node] = []
    for (field, _k), listed in groups.items():
        unique = tuple(dict.fromkeys(listed))
        merged.append(Cmp(field, "$eq", unique[0]) if len(unique) == 1 else Cmp(field, "$in", unique))
    out = (*merged, *rest)
    return out[0] if len(out) == 1 else Or(out)


def _size(node: Node, limits: FilterLimits) -> int:
    """Comparisons in the tree; a list over ``limits.values`` is refused on the way."""
    if isinstance(node, And | Or):
        return sum(_size(c, limits) for c in node.children)
    if isinstance(node, Not):
        return _size(node.child, limits)
    if isinstance(node.value, tuple) and len(node.value) > limits.values:
        raise FilterError(
            f"{node.op} on {node.field!r} lists {len(node.value)} values; at most {limits.values} "
            "(store option max_filter_values)"
        )
    return 1


def check_size(node: Node | None, limits: FilterLimits = DEFAULT_LIMITS) -> Node | None:
    """Refuse a tree over the size limits (see the module docstring), naming the limit and how to raise it."""
    if node is not None:
        atoms = _size(node, limits)
        if atoms > limits.atoms:
            raise FilterError(
                f"filter has {atoms} comparisons; at most {limits.atoms} (store option max_filter_atoms). "
                "A list of one field's values is one comparison: {field: {'$in': [...]}}"
            )
    return node


def parse_filter(spec: Filter | Node | None, limits: FilterLimits = DEFAULT_LIMITS) -> Node | None:
    """Validate a filter (grammar and size) and return its tree; ``None`` means "match everything"."""
    if spec is None or isinstance(spec, Cmp | And | Or | Not):
        return check_size(spec, limits)
    if isinstance(spec, Mapping) and not spec:
        return None
    return check_size(_parse(spec, 0, limits), limits)


def _same_kind_equal(have: object, want: object) -> bool:
    return kind(have) is not None and kind(have) == kind(want) and have == want


def matches(node: Node | None, metadata: Mapping[str, Any]) -> bool:
    """Evaluate a filter on one metadata dict: the reference semantics every adapter must reproduce."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(c, metadata) for c in node.children)
    if isinstance(node, Or):
        return any(matches(c, metadata) for c in node.children)
    if isinstance(node, Not):
        return not matches(node.child, metadata)
    present = node.field in metadata
    have = metadata.get(node.field)
    op = node.op
    if op == "$eq":
        return present and _same_kind_equal(have, node.value)
    if op == "$ne":
        return not (present and _same_kind_equal(have, node.value))
    if op in ("$in", "$nin"):
        assert isinstance(node.value, tuple)
        hit = present and any(_same_kind_equal(have, v) for v in node.value)
        return hit if op == "$in" else not hit
    if not present or kind(have) != "number":
        return False
    a, b = float(have), float(node.value)  # type: ignore[arg-type]
    return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]


_NEGATED: dict[str, CmpOp] = {"$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in"}


def push_not(node: Node, negate: bool = False) -> Node:
    """Negation normal form: ``Not`` only directly above a range comparison, never above And/Or.

    ``$eq``/``$ne`` and ``$in``/``$nin`` swap; De Morgan handles And/Or. A negated range stays wrapped in
    ``Not`` because "not greater than" also holds for a missing or non-number field, which ``$lte`` alone
    would miss; each engine decides how to express that.
    """
    if isinstance(node, Not):
        return push_not(node.child, not negate)
    if isinstance(node, And | Or):
        children = tuple(push_not(c, negate) for c in node.children)
        flip = isinstance(node, And) == negate  # And under negation becomes Or, and vice versa
        return Or(children) if flip else And(children)
    if not negate:
        return node
    if node.op in _NEGATED:
        return Cmp(node.field, _NEGATED[node.op], node.value)
    return Not(node)


#: the one operator table: a range operator's symbol (SQL, Milvus) and its flip under negation
RANGE_SYMBOL: dict[str, str] = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
RANGE_FLIP: dict[str, str] = {"$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt"}


def range_groups(
    children: tuple[Node, ...], eligible: Callable[[str], bool] = lambda field: True
) -> tuple[dict[str, list[Cmp]], list[Node]]:
    """Under ``$and``: the range bounds of each ``eligible`` field that has two or more (to compile as one
    range), and every other child."""
    bounds: dict[str, list[Cmp]] = {}
    rest: list[Node] = []
    for child in children:
        if isinstance(child, Cmp) and child.op in RANGE_SYMBOL and eligible(child.field):
            bounds.setdefault(child.field, []).append(child)
        else:
            rest.append(child)
    for field in [f for f, cmps in bounds.items() if len(cmps) == 1]:
        rest.extend(bounds.pop(field))
    return bounds, rest


class FilterCompiler(ABC, Generic[T]):
    """A fold of the filter tree into an engine's native filter.

    The tree walk (``$and``/``$or``/``$not``, ``$ne``/``$nin`` as negations) lives here once; an engine
    writes only its atoms: ``all_of``, ``any_of``, ``negate``, ``eq``, ``range`` and, when it has a native
    one, ``is_in`` (default: an ``any_of`` of ``eq``). Every atom must be two-valued (false, never unknown,
    on a missing field or a value of another kind) so ``negate`` keeps ragstore's semantics.
    """

    #: compile several bounds on one field under ``$and`` with ``range_all`` (one engine condition): an engine
    #: that estimates each half-open bound alone (Qdrant) reads half the points twice for ``u >= x AND u < y``
    merges_ranges: bool = False

    def compile(self, node: Node) -> T:
        if isinstance(node, And):
            if self.merges_ranges:
                return self._all_merged(node.children)
            return self.all_of([self.compile(c) for c in node.children])
        if isinstance(node, Or):
            return self.any_of([self.compile(c) for c in node.children])
        if isinstance(node, Not):
            return self.negate(self.compile(node.child), node.child)
        return self.comparison(node)

    def comparison(self, node: Cmp) -> T:
        op, field, value = node.op, node.field, node.value
        if op in LIST_OPS:
            assert isinstance(value, tuple)
            atom = self.is_in(field, value)
            return atom if op == "$in" else self.negate(atom, Cmp(field, "$in", value))
        assert not isinstance(value, tuple)
        if op in SCALAR_OPS:
            atom = self.eq(field, value)
            return atom if op == "$eq" else self.negate(atom, Cmp(field, "$eq", value))
        return self.range(field, op, value)

    def _all_merged(self, children: tuple[Node, ...]) -> T:
        bounds, rest = range_groups(children)
        parts: list[T] = []
        for field, cmps in bounds.items():
            if len({c.op for c in cmps}) == len(cmps):  # distinct bounds: one condition
                parts.append(self.range_all(field, [(c.op, c.value) for c in cmps]))  # type: ignore[misc]
            else:
                rest.extend(cmps)
        return self.all_of([*parts, *(self.compile(c) for c in rest)])

    def range_all(self, field: str, bounds: list[tuple[str, MetadataValue]]) -> T:
        """Every bound on ``field`` at once (distinct operators); only called when ``merges_ranges``."""
        return self.all_of([self.range(field, op, value) for op, value in bounds])

    @abstractmethod
    def all_of(self, parts: list[T]) -> T: ...

    @abstractmethod
    def any_of(self, parts: list[T]) -> T: ...

    @abstractmethod
    def negate(self, part: T, node: Node) -> T:
        """``part`` is the compiled ``node``; engines that rewrite negations may look at the node."""

    @abstractmethod
    def eq(self, field: str, value: MetadataValue) -> T: ...

    @abstractmethod
    def range(self, field: str, op: str, value: MetadataValue) -> T:
        """``op`` is one of ``RANGE_SYMBOL``'s keys; ``value`` is a number."""

    def is_in(self, field: str, values: tuple[MetadataValue, ...]) -> T:
        """Values are non-empty and all of one kind."""
        return self.any_of([self.eq(field, v) for v in values])


def to_dict(node: Node | None) -> dict[str, Any]:
    """Serialise a tree back to the JSON grammar (for logs, configs and subprocesses)."""
    if node is None:
        return {}
    if isinstance(node, And):
        return {"$and": [to_dict(c) for c in node.children]}
    if isinstance(node, Or):
        return {"$or": [to_dict(c) for c in node.children]}
    if isinstance(node, Not):
        return {"$not": to_dict(node.child)}
    value = list(node.value) if isinstance(node.value, tuple) else node.value
    return {node.field: {node.op: value}}


__all__ = [
    "RANGE_FLIP",
    "RANGE_SYMBOL",
    "And",
    "Cmp",
    "Filter",
    "FilterCompiler",
    "FilterLimits",
    "Node",
    "Not",
    "Or",
    "check_size",
    "kind",
    "matches",
    "parse_filter",
    "push_not",
    "range_groups",
    "to_dict",
]
