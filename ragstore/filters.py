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
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeAlias, TypeVar, cast

from .errors import FilterError, ValidationError
from .types import MetadataValue, check_value_chars, validate_key

CmpOp: TypeAlias = Literal["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"]
SCALAR_OPS = ("$eq", "$ne")
RANGE_OPS = ("$gt", "$gte", "$lt", "$lte")
LIST_OPS = ("$in", "$nin")
LOGICAL_OPS = ("$and", "$or", "$not")
MAX_DEPTH = 32
T = TypeVar("T")


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


def _parse(spec: object, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise FilterError(f"filter nested deeper than {MAX_DEPTH} levels")
    if not isinstance(spec, Mapping) or not spec:
        raise FilterError(f"a filter must be a non-empty object, got {spec!r}")
    nodes: list[Node] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list | tuple) or not value:
                raise FilterError(f"{key} needs a non-empty list of filters")
            children = tuple(_parse(v, depth + 1) for v in value)
            nodes.append(And(children) if key == "$and" else Or(children))
        elif key == "$not":
            nodes.append(Not(_parse(value, depth + 1)))
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


def parse_filter(spec: Filter | Node | None) -> Node | None:
    """Validate a filter and return its tree; ``None`` means "match everything"."""
    if spec is None or isinstance(spec, Cmp | And | Or | Not):
        return spec
    if isinstance(spec, Mapping) and not spec:
        return None
    return _parse(spec, 0)


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


class FilterCompiler(ABC, Generic[T]):
    """A fold of the filter tree into an engine's native filter.

    The tree walk (``$and``/``$or``/``$not``, ``$ne``/``$nin`` as negations) lives here once; an engine
    writes only its atoms: ``all_of``, ``any_of``, ``negate``, ``eq``, ``range`` and, when it has a native
    one, ``is_in`` (default: an ``any_of`` of ``eq``). Every atom must be two-valued (false, never unknown,
    on a missing field or a value of another kind) so ``negate`` keeps ragstore's semantics.
    """

    def compile(self, node: Node) -> T:
        if isinstance(node, And):
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
    "Node",
    "Not",
    "Or",
    "kind",
    "matches",
    "parse_filter",
    "push_not",
    "to_dict",
]
