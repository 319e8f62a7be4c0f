"""Namespaces (tenants): one collection, many sets of documents that never see each other.

Why one mechanism, here, below every engine: isolation is a security boundary, so it is decided once. A
namespaced store keeps each document with

- an engine id of ``<namespace>\\x1f<id>`` (the default namespace keeps the plain id): ``\\x1f`` is a character
  no caller's id may hold, so the same id in two namespaces is two documents and no id of one namespace can
  ever name a document of another;
- a reserved metadata field, ``__ns``, holding its namespace: declared as an indexed keyword field, so each
  engine keeps it the way it keeps tenants (a Milvus partition key, a Qdrant tenant index, a PostgreSQL
  column, FAISS's typed field table), and every search, read, count and delete ANDs ``__ns == namespace``
  with the caller's filter inside the engine query. A caller's filter or metadata naming ``__ns`` is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, TypeAlias

from ..errors import ValidationError
from ..types import Metadata
from .filters import And, Cmp, Node
from .indexed import fields_in

#: the metadata field that holds a document's namespace (reserved: callers may not write or filter it)
NS_FIELD = "__ns"
#: the namespace of calls that name none
DEFAULT_NAMESPACE = "default"


class _AllNamespaces:
    """Every namespace at once, raw: engine ids, ``__ns`` kept (what copies, repairs and ``info`` read).
    An object, not a name: nothing a request or a config carries can ever equal it."""

    _made = False

    def __new__(cls) -> _AllNamespaces:
        if cls._made:
            raise TypeError("use ragstore.query.namespaces.ALL_NAMESPACES")
        cls._made = True
        return super().__new__(cls)

    def __repr__(self) -> str:
        return "ALL_NAMESPACES"

    def __reduce__(self) -> str:
        return "ALL_NAMESPACES"


ALL_NAMESPACES: Final = _AllNamespaces()
#: what a ``namespace=`` argument takes: a name, ``None`` (the default namespace) or ``ALL_NAMESPACES``
Namespace: TypeAlias = "str | _AllNamespaces | None"
#: between a namespace and an id in an engine id; refused in ids (``types.check_value_chars``)
SEP = "\x1f"
MAX_NAMESPACE_LENGTH = 64
_NAME = re.compile(r"[\w.@:+=-]{1,64}")


def validate_namespace(namespace: object) -> str:
    """A namespace name: 1-64 letters (any script), digits, ``_ . @ : + = -`` -- never a quote, a space, NUL,
    a path or a character an engine would need escaped. ``None`` is the default namespace."""
    if namespace is None:
        return DEFAULT_NAMESPACE
    if not isinstance(namespace, str) or not _NAME.fullmatch(namespace):
        shown = repr(namespace)[:80]
        raise ValidationError(
            f"invalid namespace {shown}: use 1-{MAX_NAMESPACE_LENGTH} letters, digits, '_', '.', '@', ':', '+', "
            "'=' or '-'"
        )
    return namespace


def engine_id(namespace: str, doc_id: str) -> str:
    """The id the engine keeps for ``doc_id`` of ``namespace``."""
    return doc_id if namespace == DEFAULT_NAMESPACE else namespace + SEP + doc_id


def split_id(value: str) -> tuple[str, str]:
    """``(namespace, id)`` of an engine id."""
    ns, sep, rest = value.partition(SEP)
    return (ns, rest) if sep else (DEFAULT_NAMESPACE, value)


def scoped(namespace: str, node: Node | None) -> Node:
    """The caller's filter ANDed with the namespace: what the engine is asked."""
    own = Cmp(NS_FIELD, "$eq", namespace)
    return own if node is None else And((own, node))


def split_scope(node: Node | None) -> tuple[str | None, Node | None]:
    """``(namespace, the caller's filter)`` of a filter ``scoped`` made (``(None, node)`` for any other): what
    a store with a tenant index of its own looks up instead of testing every row."""
    if isinstance(node, Cmp) and node.field == NS_FIELD and node.op == "$eq" and isinstance(node.value, str):
        return node.value, None
    if isinstance(node, And) and len(node.children) == 2:
        own, rest = node.children
        if isinstance(own, Cmp) and own.field == NS_FIELD and own.op == "$eq" and isinstance(own.value, str):
            return own.value, rest
    return None, node


def refuse_reserved(node: Node | None) -> None:
    """A filter may not name the namespace field: the namespace is an argument, never a condition a caller
    could widen (``$or``, ``$ne``) past its own."""
    if node is not None and NS_FIELD in fields_in(node):
        raise ValidationError(f"a filter may not name {NS_FIELD!r}: pass namespace=... instead")


def check_metadata(metadata: Mapping[str, object], doc_id: str) -> None:
    if NS_FIELD in metadata:
        raise ValidationError(f"metadata key {NS_FIELD!r} of document {doc_id!r} is reserved for namespaces")


def strip(metadata: Metadata) -> Metadata:
    """The caller's metadata (the namespace field removed)."""
    if NS_FIELD in metadata:
        metadata = {k: v for k, v in metadata.items() if k != NS_FIELD}
    return metadata


__all__ = [
    "ALL_NAMESPACES",
    "DEFAULT_NAMESPACE",
    "NS_FIELD",
    "SEP",
    "Namespace",
    "check_metadata",
    "engine_id",
    "refuse_reserved",
    "scoped",
    "split_id",
    "split_scope",
    "strip",
    "validate_namespace",
]
