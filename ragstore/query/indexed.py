"""Declared (indexed) metadata fields: a store block's ``indexed: {field: type}``.

A filter on a declared field runs on the engine's own index for it (a typed SQLite side table beside FAISS,
a Qdrant payload index, a PostgreSQL expression index); undeclared fields keep working, read from each
row's metadata. Declaring a field is also a promise about its values, checked on every write so the index
never holds a value of another kind (a wrong one is refused with the document's id, nothing written):

==========  =====================================================  ===============================
type        values a document may hold under the field             filters the index serves
==========  =====================================================  ===============================
keyword     str                                                    ``$eq $ne $in $nin``
integer     int (not bool)                                         equality, lists and ranges
float       int or float (not bool)                                equality, lists and ranges
bool        bool                                                   ``$eq $ne $in $nin``
datetime    ISO-8601 str (``2024-05-01`` or ``...T12:00:00+00:00``) ``$eq $ne $in $nin``
==========  =====================================================  ===============================

A document may leave a declared field out (missing fields keep ragstore's filter semantics). Ranges over
dates need numbers: keep epoch seconds in an ``integer`` field beside the ISO string.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from typing import Literal, TypeAlias

from ..errors import ConfigError, ValidationError
from ..types import Metadata, MetadataValue
from .filters import And, Cmp, Node, Not, Or

FieldType: TypeAlias = Literal["keyword", "integer", "float", "bool", "datetime"]
FIELD_TYPES: tuple[str, ...] = ("keyword", "integer", "float", "bool", "datetime")
#: the filter-value kind each type holds (``ragstore.query.filters.kind``)
KIND_OF: dict[str, str] = {"keyword": "str", "integer": "number", "float": "number", "bool": "bool", "datetime": "str"}


def _is_datetime(value: str) -> bool:
    try:
        _dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def fits(ftype: str, value: MetadataValue) -> bool:
    """Whether ``value`` may be stored under a field declared ``ftype``."""
    if ftype == "keyword":
        return isinstance(value, str)
    if ftype == "bool":
        return isinstance(value, bool)
    if ftype == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if ftype == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str) and _is_datetime(value)


def check_indexed(declared: Mapping[str, str], ids: Iterable[str], metas: Iterable[Metadata]) -> None:
    """Refuse a batch holding a value of the wrong type under a declared field, naming the document."""
    if not declared:
        return
    for doc_id, meta in zip(ids, metas, strict=True):
        for field, ftype in declared.items():
            if field in meta and not fits(ftype, meta[field]):
                value = meta[field]
                raise ValidationError(
                    f"document {doc_id!r}: field {field!r} is declared {ftype} (store option indexed) but holds "
                    f"{type(value).__name__} {value!r}; nothing was written"
                )


def not_indexable(field: str, ftype: str, doc_id: str, value: object) -> ConfigError:
    """The error when declaring ``field`` on a filled store finds a stored value of another type."""
    return ConfigError(
        f"cannot index field {field!r} as {ftype}: document {doc_id!r} holds {type(value).__name__} {value!r} "
        "(fix or remove it, or declare another type)"
    )


def check_stored(declared: Mapping[str, str], docs: Iterable[tuple[str, Metadata]]) -> None:
    """Refuse a declaration that values already stored do not fit (``not_indexable``)."""
    for doc_id, meta in docs:
        for field, ftype in declared.items():
            if field in meta and not fits(ftype, meta[field]):
                raise not_indexable(field, ftype, doc_id, meta[field])


def fields_in(node: Node | None) -> set[str]:
    """Every metadata field a filter names."""
    if node is None:
        return set()
    if isinstance(node, And | Or):
        return set().union(*(fields_in(c) for c in node.children))
    if isinstance(node, Not):
        return fields_in(node.child)
    assert isinstance(node, Cmp)
    return {node.field}


__all__ = [
    "FIELD_TYPES",
    "KIND_OF",
    "FieldType",
    "check_indexed",
    "check_stored",
    "fields_in",
    "fits",
    "not_indexable",
]
