"""The one ``VectorStore`` interface every backend implements.

Public methods here validate input and normalise vectors, then call the backend's ``_``-prefixed hooks.
Doing validation once, in the base class, is what makes every backend refuse the same bad input with the
same error, before anything is written.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, ClassVar, Literal, Self

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from .._locks import RWLock
from .._plock import acquire as lock_folder
from .._plock import release as unlock_folder
from ..errors import (
    BackendUnavailableError,
    ConfigError,
    DimensionMismatchError,
    EngineError,
    RagstoreError,
    UnsupportedFeatureError,
    ValidationError,
    describe_problems,
)
from ..query.filters import MAX_ATOMS, MAX_DEPTH, MAX_VALUES, Filter, FilterLimits, Node, parse_filter, to_dict
from ..query.indexed import FieldType, check_indexed, fields_in
from ..query.namespaces import (
    ALL_NAMESPACES,
    DEFAULT_NAMESPACE,
    NS_FIELD,
    Namespace,
    check_metadata,
    engine_id,
    refuse_reserved,
    scoped,
    split_id,
    strip,
    validate_namespace,
)
from ..types import (
    Document,
    Hit,
    Metadata,
    Metric,
    Ranked,
    check_text_chars,
    validate_id,
    validate_key,
    validate_metadata,
)

DEFAULT_BATCH_SIZE = 512
#: the largest k a search takes, on every backend (Milvus' own limit); read everything with ``get()``
MAX_K = 16_384
#: SQLite (FAISS's sidecar, the lexical index) refuses expression trees deeper than 1,000; ragstore's
#: compiled atoms stay under it up to here (measured: 700 atoms passed, 1,000 failed)
SQLITE_MAX_FILTER_ATOMS = 900
#: a vector whose length is within this of 1 counts as normalised for the cosine metric (float32 rounding of a
#: normalised row of a few thousand dimensions stays well under it; the cosine it changes moves by < 1e-6)
UNIT_SLACK = 1e-6
#: the collection's BM25 settings live in the store block and may change on an open store (scored at query time)
LEXICAL_TUNABLE = ("bm25_k1", "bm25_b")


@dataclass(frozen=True)
class ScanPage:
    """One page of a full read (documents with their vectors); ``cursor`` resumes the read after it."""

    documents: list[Document]
    cursor: str


#: the cursor of a read that has nothing left (an engine whose own cursor names the next page, not the last)
SCAN_END = "\x00end"


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; calls outside these raise ``UnsupportedFeatureError``."""

    persistent: bool = True
    delete_by_filter: bool = True
    get_by_filter: bool = True
    exact: bool = True  # False for approximate indexes (HNSW, IVF): results may differ from exact search
    #: an acknowledged write is on disk when ``upsert``/``delete`` return (False: only after ``flush``/``close``)
    durable_writes: bool = True
    #: a BM25 index of the texts is kept beside the vectors (a collection with ``lexical: true``)
    lexical: bool = False
    hybrid: bool = False


def _no_parent_refs(value: str) -> str:
    if ".." in value:
        raise ValueError("a collection name may not contain '..'")
    return value


#: a collection name an engine may turn into a folder: never a path (adapters add the engine's own pattern)
CollectionName = Annotated[str, AfterValidator(_no_parent_refs)]


class StoreOptions(BaseModel):
    """Options every store accepts; backends extend this with their own. A store receives its validated
    options object (``store.options``) and reads every setting from it, so no adapter re-declares them.

    The class variables say where a store lives, which is what ``sibling`` needs to place a second store
    beside it (bench scratch stores, the multilingual index, fine-tuning rebuilds) without ever touching
    the first one's collection.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: option keys naming a server; when one is set the store lives there
    remote_keys: ClassVar[tuple[str, ...]] = ()
    #: option key naming a collection/table on the engine (``None``: the engine holds one per path)
    name_key: ClassVar[str | None] = None
    #: the ``path`` holds a server shared by many collections (pgvector's embedded PostgreSQL)
    shared_path: ClassVar[bool] = False

    metric: Literal["cosine", "dot", "l2"] = "cosine"
    dim: int | None = Field(default=None, gt=0, description="fixed at the first upsert when not given")
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, gt=0)
    lexical: bool = Field(
        default=False,
        description="the collection keeps a BM25 index of the texts beside the vectors (lexical and hybrid search)",
    )
    bm25_k1: float = Field(default=1.2, gt=0, le=10, description="BM25 term-frequency saturation")
    bm25_b: float = Field(default=0.75, ge=0, le=1, description="BM25 document-length normalisation")
    lexical_leg: Literal["auto", "native", "sidecar"] = Field(
        default="auto",
        description="where the BM25 leg lives: auto (in the engine where ragstore has a native leg for it, "
        "else the sidecar), native (in the engine, or a clear error), sidecar (a local SQLite file)",
    )
    lexical_path: str | None = Field(
        default=None,
        description="folder for the collection's local files: lexical index, write journal (default: "
        "'<path>.lexical' beside an embedded store; required on a server for a lexical index)",
    )
    #: comparisons the engine's filter language is known to take in one filter (None: no limit found up to
    #: 10,000); ``max_filter_atoms`` may not be set above it
    engine_max_filter_atoms: ClassVar[int | None] = None
    max_filter_atoms: int = Field(default=MAX_ATOMS, gt=0, description="comparisons in one filter (see filters)")
    max_filter_depth: int = Field(default=MAX_DEPTH, gt=0, le=256, description="nesting levels in one filter")
    max_filter_values: int = Field(default=MAX_VALUES, gt=0, le=100_000, description="values in one $in/$nin")
    indexed: dict[str, FieldType] = Field(
        default_factory=dict,
        description="metadata fields the engine indexes, with their type (keyword, integer, float, bool, "
        "datetime): values are checked on write, filters on them use the index (ragstore.query.indexed)",
    )
    namespaces: bool = Field(
        default=False,
        description="the collection keeps documents in namespaces (tenants): every call may name one, ids are "
        "unique per namespace, and no call reads or changes another's (fixed when the collection is made)",
    )
    exact_filter_limit: int = Field(
        default=20_000,
        ge=0,
        description="a filter matching at most this many documents is answered by an exact search over them "
        "(pre-filter); more, by the engine's filtered ANN search (widened where the engine allows)",
    )

    @field_validator("indexed")
    @classmethod
    def _indexed_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            try:
                validate_key(key, "indexed field")
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _engine_takes_the_filter_size(self) -> Self:
        limits = [type(self).engine_max_filter_atoms, SQLITE_MAX_FILTER_ATOMS if self.lexical else None]
        ceiling = min((c for c in limits if c is not None), default=None)
        if ceiling is not None and self.max_filter_atoms > ceiling:
            raise ValueError(
                f"max_filter_atoms {self.max_filter_atoms} is more than this engine takes in one filter ({ceiling})"
            )
        return self

    @property
    def filter_limits(self) -> FilterLimits:
        return FilterLimits(self.max_filter_atoms, self.max_filter_depth, self.max_filter_values)

    @property
    def remote(self) -> bool:
        return any(getattr(self, key, None) for key in self.remote_keys)

    def _renamed(self, tag: str) -> Self:
        assert self.name_key is not None
        base = str(getattr(self, self.name_key))
        return self._with(**{self.name_key: f"{base}_{re.sub(r'[^a-z0-9_]', '_', tag.lower())}"})

    def _with(self, **changes: Any) -> Self:
        try:  # re-validated: a derived name must still satisfy the engine's rules
            return type(self).model_validate({**self.model_dump(), **changes})
        except PydanticValidationError as exc:
            raise ConfigError("cannot place a second store: " + describe_problems(exc)) from None

    def sibling(self, tag: str) -> Self:
        """Options for a second store beside this one: on a server (or a shared embedded server) another
        collection named ``<name>_<tag>``; embedded, the folder ``<path>-<tag>``; in RAM, another RAM store."""
        path = getattr(self, "path", None)
        if self.name_key is not None and (self.remote or (self.shared_path and path)):
            return self._renamed(tag)
        if self.remote:
            raise ConfigError(f"cannot place a second store beside {type(self).__name__} on a server: no collection")
        return self._with(path=f"{path}-{tag}") if path else self._with()

    def scratch(self, folder: str | os.PathLike[str], tag: str) -> Self:
        """A throw-away store for measurements: on a server, a sibling collection (never the configured
        one); embedded, ``folder``."""
        if self.remote:
            return self.sibling(tag)
        return self._with(path=os.fspath(folder)) if "path" in type(self).model_fields else self._with()


def as_query_vector(vector: Any) -> np.ndarray:
    """Turn a query into a finite 1-D float32 array or raise ``ValidationError``."""
    try:
        q = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"query vector is not numeric: {exc}") from None
    if q.ndim == 2 and q.shape[0] == 1:
        q = q[0]
    if q.ndim != 1 or q.size == 0:
        raise ValidationError(f"query vector must be 1-D and non-empty, got shape {q.shape}")
    if not np.isfinite(q).all():
        raise ValidationError("query vector contains NaN or infinite values")
    return q


class VectorStore(ABC):
    """A collection of documents with vectors, searchable by similarity and filterable by metadata.

    Scores are higher-is-better on every backend: cosine similarity in [-1, 1] for ``metric="cosine"``
    (the default), the inner product for ``"dot"``, and minus the Euclidean distance for ``"l2"``.
    """

    #: Registry name ("faiss", "memory", ...), for messages and ``info``.
    name: ClassVar[str] = "store"
    #: The pydantic model a config block is validated against.
    Options: ClassVar[type[StoreOptions]] = StoreOptions
    #: Metrics this backend implements.
    metrics: ClassVar[tuple[str, ...]] = ("cosine", "dot", "l2")
    #: The engine cannot share an embedded ``path`` between processes: the base class holds an inter-process
    #: lock on it while the store is open, so a second process gets a clear error, never a corrupted folder.
    one_process_per_path: ClassVar[bool] = False
    #: ... and one opener in that process too: an opener keeps the collection in its own memory (or holds the
    #: engine's write-ahead log), so a second store object on the folder would keep a diverging copy
    one_opener_per_path: ClassVar[bool] = False
    #: Options that may change on an open store without rebuilding it (search-time knobs such as ``ef_search``).
    tunable: ClassVar[tuple[str, ...]] = ()
    #: How the engine keeps the BM25 leg itself, in words (``None``: it cannot; a collection keeps a sidecar
    #: index). A native leg is written in the same engine transaction as the vectors, so every process and
    #: every app server in front of the engine sees one index and nothing local can drift from it.
    native_lexical: ClassVar[str | None] = None

    #: the validated options this store was opened with (adapters narrow the type)
    options: StoreOptions

    def __init__(self, options: StoreOptions | Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Open the store from its options object, a mapping, or keyword arguments (validated here, once);
        adopt the existing collection when there is one (dimension and metric checked), else create it
        when the dimension is known."""
        self.options = self.parse_options(options, kwargs)
        opts = self.options
        if opts.metric not in self.metrics:
            raise UnsupportedFeatureError(
                f"{self.name} does not support metric {opts.metric!r}; it supports {', '.join(self.metrics)}"
            )
        self.metric: Metric = opts.metric
        if opts.lexical_leg == "native" and self.native_lexical is None:
            raise ConfigError(
                f"{self.name} has no native lexical leg (lexical_leg: native); use lexical_leg: auto or sidecar"
            )
        self._dim: int | None = opts.dim
        self.batch_size = opts.batch_size
        self._closed = False
        #: searches share it, writes and close take it alone (see ``ragstore._locks``)
        self._lock = RWLock()
        self._path_lock: str | None = None
        self._manifest_text: str | None = None
        self._lexical_planned = False
        path = getattr(opts, "path", None)
        if self.one_process_per_path and path and not opts.remote:
            self._path_lock = lock_folder(path, f"{self.name} store", one_opener=self.one_opener_per_path)
        try:
            self._connect()
        except BaseException:
            self._unlock_path()
            raise
        try:
            with self._engine("open the collection"):
                self._adopt_or_create()
        except BaseException:
            with suppress(Exception):
                self._abandon()
            self._unlock_path()
            self._closed = True
            raise

    @classmethod
    def parse_options(cls, options: StoreOptions | Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> Any:
        """``cls.Options`` from an options object, a mapping or keyword arguments; a ``ConfigError`` names
        every bad key."""
        if options is not None and kwargs:
            raise ConfigError(f"{cls.name}: give an options object or keyword arguments, not both")
        if isinstance(options, cls.Options):
            return options.model_copy()  # the store's own: tuning it never changes the caller's config
        raw = options.model_dump() if isinstance(options, BaseModel) else dict(options or kwargs)
        raw = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in raw.items()}
        try:
            return cls.Options.model_validate(raw)
        except PydanticValidationError as exc:
            raise ConfigError(describe_problems(exc, "store")) from None

    def _adopt_or_create(self) -> None:
        stored = self._stored()
        if stored is None:
            if self._dim is not None:
                self._init_dim(self._dim)
                self._declare_indexed()
                self._mark_namespaces()
            return
        dim, metric = stored
        if metric is not None and metric != self.metric:
            raise BackendUnavailableError(
                f"{self.name} store {self._describe()} was built with metric {metric!r}, the config says "
                f"{self.metric!r}: use the stored metric, or another path/collection"
            )
        if self._dim is not None and self._dim != dim:
            raise DimensionMismatchError(dim, self._dim, "configured dim")
        self._dim = dim
        self._adopt(dim)
        self._adopt_namespaces()
        self._declare_indexed()

    @contextmanager
    def _engine(self, doing: str) -> Iterator[None]:
        """Whatever the engine raises while ``doing`` becomes an ``EngineError`` (ragstore's own errors pass)."""
        try:
            yield
        except RagstoreError:
            raise
        except Exception as exc:
            raise EngineError(f"{self.name} failed to {doing}: {type(exc).__name__}: {exc}") from exc

    # ----------------------------------------------------------------- identity and manifest
    def location(self) -> str:
        """Where this collection lives, as one string that differs between any two collections (engine,
        server or folder, collection name); secrets in server addresses are hashed, never shown."""
        opts = self.options
        parts = [self.name]
        for key in opts.remote_keys:
            value = getattr(opts, key, None)
            if value:
                parts.append(f"{key}#" + hashlib.sha256(str(value).encode()).hexdigest()[:16])
        path = getattr(opts, "path", None)
        if path and not opts.remote:
            parts.append(os.path.realpath(os.path.expanduser(str(path))))
        if opts.name_key is not None:
            parts.append(str(getattr(opts, opts.name_key)))
        if len(parts) == 1:
            parts.append(f"ram@{os.getpid()}:{id(self)}")
        return "|".join(parts)

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest kept with this collection in the engine (None: none yet, or no collection)."""
        self._check_open()
        if self._dim is None:
            return None
        with self._lock.read(), self._engine("read the collection manifest"):
            text = self._read_manifest()
        if not text:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Keep ``manifest`` with the collection (a table row, a collection property, a file in its folder);
        only once the collection exists."""
        self._check_open()
        if self._dim is None:
            raise ValidationError("the collection does not exist yet: write a document first")
        if self.options.namespaces:
            manifest = {**manifest, "namespaces": True}
        text = json.dumps(manifest, ensure_ascii=False, sort_keys=True)
        with self._lock.write(), self._engine("write the collection manifest"):
            self._check_open()
            self._write_manifest(text)

    def _read_manifest(self) -> str | None:
        return self._manifest_text

    # ----------------------------------------------------------------- namespaces
    @property
    def declared(self) -> dict[str, FieldType]:
        """The fields the engine indexes: the configured ``indexed`` ones and, in a namespaced collection, the
        namespace field (a keyword; engines with a tenant index of their own give it that)."""
        if self.options.namespaces:
            return {**self.options.indexed, NS_FIELD: "keyword"}
        return self.options.indexed

    def _stored_manifest(self) -> dict[str, Any]:
        text = self._read_manifest()
        try:
            value = json.loads(text) if text else {}
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    def _mark_namespaces(self) -> None:
        """Record in the collection that it keeps namespaces, so every later opener scopes its calls too."""
        if not self.options.namespaces:
            return
        manifest = self._stored_manifest()
        if not manifest.get("namespaces"):
            self._write_manifest(json.dumps({**manifest, "namespaces": True}, ensure_ascii=False, sort_keys=True))

    def _adopt_namespaces(self) -> None:
        """A collection made with namespaces is opened with them, whatever the config says (an opener without
        them would read every tenant's documents); one made without cannot gain them in place."""
        made_with = bool(self._stored_manifest().get("namespaces"))
        if made_with and not self.options.namespaces:
            self.options.namespaces = True
        elif self.options.namespaces and not made_with:
            raise ConfigError(
                f"{self.name} collection {self._describe()} was made without namespaces: copy it into a new "
                "collection made with namespaces: true (ragstore copy), or open it without them"
            )

    def _scope(self, namespace: Namespace) -> str | None:
        """The namespace a call is scoped to; ``None``: the whole collection as the engine keeps it (a
        collection without namespaces, or ``ALL_NAMESPACES``)."""
        if namespace is ALL_NAMESPACES:
            return None
        name = validate_namespace(namespace)
        if not self.options.namespaces:
            if name != DEFAULT_NAMESPACE:
                raise UnsupportedFeatureError(
                    f"{self.name} collection keeps no namespaces (namespace {name!r}): make it with namespaces: "
                    "true, or copy it into one that has them (ragstore copy)"
                )
            return None
        return name

    def _scoped(self, namespace: Namespace, scope: str | None, node: Node | None) -> Node | None:
        """The engine's filter: the caller's ANDed with the namespace. Only a whole-collection call
        (``ALL_NAMESPACES``, never a name a request could carry) may name the namespace field itself."""
        if namespace is not ALL_NAMESPACES:
            refuse_reserved(node)
        return node if scope is None else scoped(scope, node)

    def _checked_ids(self, namespace: Namespace, ids: Sequence[str] | str) -> list[str]:
        """Ids checked as every store checks them; a whole-collection call's are engine ids."""
        if namespace is ALL_NAMESPACES and self.options.namespaces:
            out = []
            for value in _as_id_list(ids):
                if not isinstance(value, str):
                    validate_id(value)
                space, doc_id = split_id(value)
                out.append(engine_id(validate_namespace(space), validate_id(doc_id)))
            return list(dict.fromkeys(out))
        return list(dict.fromkeys(validate_id(i) for i in _as_id_list(ids)))

    def _engine_ids(self, scope: str | None, ids: list[str]) -> list[str]:
        return ids if scope is None else [engine_id(scope, i) for i in ids]

    def _own(self, scope: str | None, hits: list[Any]) -> list[Any]:
        """Hits or documents of a scoped call, with the caller's ids and metadata; one of another namespace
        (an engine that ignored the filter) is an error, never a result."""
        if scope is None:
            return hits
        for hit in hits:  # engines hand back fresh metadata dicts: the namespace field is taken out in place
            space, hit.id = split_id(hit.id)
            if space != scope or hit.metadata.pop(NS_FIELD, scope) != scope:
                raise EngineError(f"{self.name} returned a document of another namespace: its filter was not applied")
        return hits

    def _own_ids(self, scope: str | None, ids: list[str]) -> list[str]:
        if scope is None:
            return ids
        out = []
        for value in ids:
            space, doc_id = split_id(value)
            if space != scope:
                raise EngineError(f"{self.name} returned a document of another namespace: its filter was not applied")
            out.append(doc_id)
        return out

    # what a collection's derived indexes (BM25, routes) need: they keep the engine's ids and namespace field
    def scoped_filter(
        self, filter: Filter | Node | None, namespace: Namespace = None
    ) -> tuple[str | None, Node | None]:
        """``(scope, engine filter)`` of a call in ``namespace`` (scope ``None``: the whole collection)."""
        scope = self._scope(namespace)
        return scope, self._scoped(namespace, scope, self._parse_filter(filter))

    def owned(self, scope: str | None, hits: list[Any]) -> list[Any]:
        """Hits of an index that keeps engine ids, as the caller of ``scope`` sees them."""
        return self._own(scope, hits)

    def owned_ranked(self, scope: str | None, ranked: Ranked) -> Ranked:
        return ranked if scope is None else Ranked(self._own_ids(scope, list(ranked.ids)), ranked.scores)

    def engine_documents(self, docs: list[Document], namespace: Namespace = None) -> list[Document]:
        """``docs`` (already written here) as the engine keeps them: what a derived index writes."""
        scope = self._scope(namespace)
        if scope is None:
            return docs
        return [
            Document(text=d.text, id=engine_id(scope, d.id), metadata={**d.metadata, NS_FIELD: scope}, vector=d.vector)
            for d in docs
        ]

    def engine_ids(self, ids: Sequence[str] | str, namespace: Namespace = None) -> list[str]:
        return self._engine_ids(self._scope(namespace), self._checked_ids(namespace, ids))

    def namespaces(self) -> dict[str, int]:
        """Each namespace that holds documents, with how many (a collection without namespaces: its one)."""
        self._check_open()
        self._catch_up()
        if self._dim is None:
            return {}
        with self._lock.read(), self._engine("count the namespaces"):
            self._check_open()
            namespaced = self.options.namespaces
            found = self._namespace_counts() if namespaced else {DEFAULT_NAMESPACE: self._count(None)}
        return {k: v for k, v in sorted(found.items()) if v}

    def _namespace_counts(self) -> dict[str, int]:
        """Default: every id read and split; engines that can group by the field override it."""
        counts: dict[str, int] = {}
        for value in self._all_ids():
            space = split_id(value)[0]
            counts[space] = counts.get(space, 0) + 1
        return counts

    def _write_manifest(self, text: str) -> None:
        """Default: kept in RAM with the store (engines override to keep it in the collection)."""
        self._manifest_text = text

    # ----------------------------------------------------------------- properties
    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities()

    def _capabilities(self) -> Capabilities:
        return Capabilities()

    @property
    def dim(self) -> int | None:
        """Vector length; ``None`` until the first upsert when not configured."""
        return self._dim

    # ----------------------------------------------------------------- public API
    def upsert(
        self, documents: Iterable[Document], batch_size: int | None = None, *, namespace: Namespace = None
    ) -> list[str]:
        """Insert or replace documents by id (in ``namespace``); the whole input is validated before anything
        is written. Returns the ids as the caller gave them."""
        self._check_open()
        self._catch_up()
        scope = self._scope(namespace)
        docs = list(documents)
        if not docs:
            return []
        spaces: list[str] | None = None
        if self.options.namespaces:
            spaces, docs = _unscope(docs) if scope is None else ([scope] * len(docs), docs)
        ids, vectors, texts, metas = self._prepare(docs, spaces)
        check_indexed(self.declared, ids, metas)
        self._check_batch(ids, texts, metas)
        step = batch_size or self.batch_size
        with self._lock.write(), self._engine("write"):
            self._check_open()
            created = self._dim is None
            self._ensure_dim(vectors.shape[1])
            if created and self._lexical_planned and self._lexical_state() != "ready":
                self._lexical_build()  # the leg exists before the first document, so none is written twice
            for start in range(0, len(ids), step):
                end = start + step
                self._upsert(ids[start:end], vectors[start:end], texts[start:end], metas[start:end])
        if created:
            self._mark_namespaces()
        return self._own_ids(scope, ids)

    def search(
        self,
        vector: Any,
        k: int = 10,
        filter: Filter | Node | None = None,
        *,
        fields: bool = True,
        namespace: Namespace = None,
    ) -> list[Hit]:
        """The ``k`` most similar documents of ``namespace`` that match ``filter``, best first.
        ``fields=False``: ids and scores only (text ``""``, metadata ``{}``) where the engine can skip reading
        them -- a fused query reads 50 candidates per leg and keeps k, then ``hydrate`` fills the winners."""
        scope = self._scope(namespace)
        found = self._query(vector, k, filter, namespace, scope)
        if found is None:
            return []
        q, node = found
        with self._lock.read(), self._engine("search"):
            self._check_open()
            hits = self._search(q, int(k), node) if fields else self._search_bare(q, int(k), node)
        return _scaled(self._own(scope, sorted(hits, key=_rank)[: int(k)]), self.metric)

    def search_scores(
        self, vector: Any, k: int = 10, filter: Filter | Node | None = None, *, namespace: Namespace = None
    ) -> Ranked:
        """``search(fields=False)`` as arrays (the same documents and scores): a fused query's dense leg."""
        scope = self._scope(namespace)
        found = self._query(vector, k, filter, namespace, scope)
        if found is None:
            return Ranked([], np.zeros(0))
        q, node = found
        with self._lock.read(), self._engine("search"):
            self._check_open()
            ranked = self._search_scores(q, int(k), node)
        return self.owned_ranked(scope, ranked)

    def _query(
        self, vector: Any, k: int, filter: Filter | Node | None, namespace: Namespace = None, scope: str | None = None
    ) -> tuple[np.ndarray, Node | None] | None:
        """A search's checked inputs: the query vector (unit length for cosine) and the filter's tree (with
        the namespace); None when nothing is stored yet."""
        self._check_open()
        self._catch_up()
        _check_k(k)
        q = as_query_vector(vector)
        node = self._scoped(namespace, scope, self._parse_filter(filter))
        if self._dim is None:
            return None
        if q.shape[0] != self._dim:
            raise DimensionMismatchError(self._dim, int(q.shape[0]), "query vector")
        if self.metric == "cosine":
            norm = float(np.sqrt(q @ q))
            if norm == 0.0:
                raise ValidationError("query vector has zero length; cosine similarity is undefined")
            q = q / norm
        return q, node

    def _search_bare(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        """``_search`` without reading texts and metadata; engines that can skip them override this."""
        return self._search(vector, k, node)

    def _search_scores(self, vector: np.ndarray, k: int, node: Node | None) -> Ranked:
        """``_search_bare`` as arrays; the engines whose search takes microseconds override it."""
        return Ranked.of(sorted(self._search_bare(vector, k, node), key=_rank)[:k])

    def hydrate(self, hits: list[Hit], *, namespace: Namespace = None) -> list[Hit]:
        """Fill the texts and metadata of ``hits`` (from a ``fields=False`` search of ``namespace``) from this
        store, in place; a hit whose document is gone meanwhile is dropped."""
        scope = self._scope(namespace)
        todo = [h for h in hits if not h.text]
        if not todo:
            return hits
        with self._lock.read(), self._engine("read"):
            self._check_open()
            found = self._fields(self._engine_ids(scope, list(dict.fromkeys(h.id for h in todo))))
        out = []
        for hit in hits:
            if not hit.text:
                key = hit.id if scope is None else engine_id(scope, hit.id)
                if key not in found:
                    continue
                hit.text, meta = found[key]
                hit.metadata = meta if scope is None else strip(meta)
            out.append(hit)
        return out

    # ----------------------------------------------------------------- declared fields and the plan
    def explain(
        self, filter: Filter | Node | None = None, k: int = 10, *, namespace: Namespace = None
    ) -> dict[str, Any]:
        """How a search with ``filter`` would run, without running it: which fields the engine's indexes
        serve, which are read from each row, and the plan (pre-filter: exact search over the matching
        documents; filtered ANN: the engine's index walked with the filter, widened where it allows)."""
        self._check_open()
        self._catch_up()
        _check_k(k)
        node = self._scoped(namespace, self._scope(namespace), self._parse_filter(filter))
        fields = fields_in(node)
        declared = self.declared
        plan: dict[str, Any] = {
            "store": self.name,
            "filter": to_dict(node),
            "k": int(k),
            "indexed": sorted(f for f in fields if f in declared and self.indexes_fields),
            "scanned": sorted(f for f in fields if f not in declared or not self.indexes_fields),
        }
        if self._dim is None:
            return {**plan, "strategy": "empty", "detail": "nothing stored yet"}
        with self._lock.read(), self._engine("plan a search"):
            self._check_open()
            plan.update(self._plan(node, int(k)))
        return plan

    def choose_plan(self, matching: int, exact: bool) -> str:
        """The one rule every engine plans by: an exact index, or a filter matching at most
        ``exact_filter_limit`` documents, is answered exactly over the matches (pre-filter); a wider one by
        the engine's filtered ANN search."""
        if exact:
            return "exact"
        return "prefilter" if matching <= self.options.exact_filter_limit else "filtered_ann"

    def _plan(self, node: Node | None, k: int) -> dict[str, Any]:
        """Engine hook for ``explain``: at least ``strategy`` and ``detail``."""
        if node is None:
            return {"strategy": "ann", "detail": f"{self.name}'s own search, no filter"}
        return {"strategy": "engine", "detail": f"{self.name} plans the filtered search itself"}

    #: the engine builds an index for declared fields (False: declared fields are only type-checked)
    indexes_fields: ClassVar[bool] = False
    #: declaring a field checks the values already stored (a wrong one refuses it with a ``ConfigError``)
    checks_stored_types: ClassVar[bool] = False

    def _declare_indexed(self) -> None:  # noqa: B027 - optional hook
        """Build (or adopt) the engine's index for each field of ``options.indexed``, backfilling what is
        stored; called once the collection exists (open, first write, clear). Must be idempotent."""

    # ----------------------------------------------------------------- the native lexical leg
    @property
    def lexical_native(self) -> bool:
        """Whether a collection keeps this store's BM25 leg in the engine (``lexical_leg``), not in a sidecar:
        never on an engine without one, nor on a collection made before its engine's leg existed."""
        if self.native_lexical is None or self.options.lexical_leg == "sidecar":
            return False
        if self._closed:
            return False
        if self.options.lexical_leg == "auto" and not self._native_preferred():
            return False
        with self._engine("look at the collection"):
            possible = self._native_possible()
        if not possible and self.options.lexical_leg == "native":
            raise UnsupportedFeatureError(
                f"{self.name} collection {self._describe()} has no room for a native lexical leg (made by an older "
                "ragstore, or on a server without the feature): copy it into a new collection (ragstore copy), or "
                "use lexical_leg: sidecar"
            )
        return possible

    def lexical_variant(self) -> dict[str, float]:
        """How the native leg's BM25 departs from the reference (empty: exactly Lucene's, to 1e-9):
        ``avglen`` -- the average document length it was built with, where the reference uses today's;
        ``rel_tol`` -- the relative precision of its scores (an engine scoring in float32)."""
        return {}

    def _native_possible(self) -> bool:
        """Whether this collection can hold the native leg (False: made before the engine's leg existed)."""
        return True

    def _native_preferred(self) -> bool:
        """Whether ``lexical_leg: auto`` picks the native leg here: an engine's embedded mode that one process
        holds anyway gains nothing from it, and may score slower or less exactly than the sidecar."""
        return True

    def plan_lexical(self) -> None:
        """Build the native leg with the collection, at its first write (a collection that keeps one asks this
        of a store that has no collection yet)."""
        self._lexical_planned = True

    def lexical_built(self) -> bool:
        """Whether the engine holds this collection's native BM25 leg now (by any process), with the current
        analyzer: every writer then keeps it in step in the same transaction as the vectors."""
        self._check_open()
        if not self.lexical_native or self._dim is None:
            return False
        with self._lock.read(), self._engine("look for the lexical leg"):
            return self._lexical_state() == "ready"

    def build_lexical(self, *, rebuild: bool = False) -> int:
        """Create the native BM25 leg and fill it from the stored texts (with a progress bar), unless it is
        already there with the current analyzer; returns how many documents were indexed. Writers in other
        processes wait for it, then write their terms too."""
        self._check_open()
        if not self.lexical_native:
            raise UnsupportedFeatureError(f"{self.name} keeps no lexical leg in its engine (lexical_leg)")
        if self._dim is None:
            return 0
        with self._lock.write(), self._engine("build the lexical leg"):
            self._check_open()
            if not rebuild and self._lexical_state() == "ready":
                return 0
            return self._lexical_build()

    def search_terms(
        self,
        terms: Sequence[str],
        k: int,
        filter: Filter | Node | None = None,
        *,
        fields: bool = True,
        namespace: Namespace = None,
    ) -> list[Hit]:
        """The ``k`` best documents of ``namespace`` by BM25 over analysed ``terms`` that match ``filter``,
        scored in the engine (ties by id); the leg must be built (``build_lexical``)."""
        self._check_open()
        self._catch_up()
        _check_k(k)
        scope = self._scope(namespace)
        node = self._scoped(namespace, scope, self._parse_filter(filter))
        wanted = list(dict.fromkeys(str(t) for t in terms))
        if self._dim is None or not wanted:
            return []
        with self._lock.read(), self._engine("search the lexical leg"):
            self._check_open()
            hits = self._lexical_search(wanted, int(k), node, fields)
        return self._own(scope, sorted(hits, key=_rank)[: int(k)])

    def _lexical_state(self) -> str:
        """``"ready"`` (built with the current analyzer), ``"stale"`` (another analyzer) or ``"none"``."""
        return "none"

    def _lexical_build(self) -> int:
        raise UnsupportedFeatureError(f"{self.name} keeps no lexical leg in its engine")

    def _lexical_search(self, terms: list[str], k: int, node: Node | None, fields: bool) -> list[Hit]:
        raise UnsupportedFeatureError(f"{self.name} keeps no lexical leg in its engine")

    def _fields(self, ids: list[str]) -> dict[str, tuple[str, Metadata]]:
        """Text and metadata by id; engines that can read them without the vectors override this."""
        return {d.id: (d.text, dict(d.metadata)) for d in self._get(ids)}

    def search_batch(
        self,
        vectors: Any,
        k: int = 10,
        filter: Filter | Node | None = None,
        *,
        fields: bool = True,
        namespace: Namespace = None,
    ) -> list[list[Hit]]:
        """``search`` for many query vectors; engines with a batch call answer them in one round trip."""
        self._check_open()
        self._catch_up()
        _check_k(k)
        scope = self._scope(namespace)
        rows = [as_query_vector(v) for v in vectors]
        node = self._scoped(namespace, scope, self._parse_filter(filter))
        if self._dim is None or not rows:
            return [[] for _ in rows]
        for q in rows:
            if q.shape[0] != self._dim:
                raise DimensionMismatchError(self._dim, int(q.shape[0]), "query vector")
        matrix = np.stack(rows)
        if self.metric == "cosine":
            norms = np.sqrt((matrix * matrix).sum(axis=1))
            if (norms == 0).any():
                raise ValidationError("a query vector has zero length; cosine similarity is undefined")
            matrix = matrix / norms[:, None]
        with self._lock.read(), self._engine("search"):
            self._check_open()
            matrix = np.ascontiguousarray(matrix, dtype=np.float32)
            bare = not fields and type(self)._search_bare is not VectorStore._search_bare
            out = (
                [self._search_bare(q, int(k), node) for q in matrix]
                if bare
                else self._search_batch(matrix, int(k), node)
            )
        return [_scaled(self._own(scope, sorted(hits, key=_rank)[: int(k)]), self.metric) for hits in out]

    def _search_batch(self, matrix: np.ndarray, k: int, node: Node | None) -> list[list[Hit]]:
        """One query at a time unless the backend overrides this with its engine's batch call."""
        return [self._search(q, k, node) for q in matrix]

    def get(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | Node | None = None,
        limit: int | None = None,
        namespace: Namespace = None,
    ) -> list[Document]:
        """Documents of ``namespace`` by id (in the order asked, missing ids left out) or all that match
        ``filter``."""
        self._check_open()
        self._catch_up()
        scope = self._scope(namespace)
        if ids is not None:
            if filter is not None:
                raise ValidationError("get() takes ids or a filter, not both")
            wanted = self._checked_ids(namespace, ids)
            if not wanted or self._dim is None:  # nothing was ever stored: no collection to ask
                return []
            with self._lock.read(), self._engine("read"):
                self._check_open()
                found = {d.id: d for d in self._own(scope, self._get(self._engine_ids(scope, wanted)))}
            return [found[i] for i in wanted if i in found]
        node = self._scoped(namespace, scope, self._parse_filter(filter))
        if node is not None and not self.capabilities.get_by_filter:
            raise UnsupportedFeatureError(f"{self.name} cannot get documents by filter")
        if limit is not None and (isinstance(limit, bool) or limit <= 0):
            raise ValidationError(f"limit must be a positive integer, got {limit!r}")
        if self._dim is None:
            return []
        with self._lock.read(), self._engine("read"):
            self._check_open()
            return self._own(scope, self._get_where(node, limit))

    def scan(
        self, batch_size: int = 1000, cursor: str | None = None, *, namespace: Namespace = None
    ) -> Iterator[ScanPage]:
        """Every document with its vector, page by page, in an order every process sees the same way, so a
        reader stopped after any page (a copy killed mid-way) resumes from that page's ``cursor``. Each page is
        read under the store's read lock; a document written during a scan is seen when its page is read later."""
        self._check_open()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValidationError(f"batch_size must be a positive integer, got {batch_size!r}")
        if cursor is not None and not isinstance(cursor, str):
            raise ValidationError(f"cursor must be a string from an earlier scan, got {type(cursor).__name__}")
        self._catch_up()
        scope = self._scope(namespace)
        if self._dim is None or cursor == SCAN_END:
            return
        pages = self._scan(cursor, batch_size)
        while True:
            with self._lock.read(), self._engine("read a page of documents"):
                self._check_open()
                item = next(pages, None)
            if item is None:
                return
            docs, after = item
            if scope is not None:  # a page of the whole collection, this namespace's part of it
                docs = self._own(scope, [d for d in docs if split_id(d.id)[0] == scope])
            yield ScanPage(docs, after)
            if after == SCAN_END:
                return

    def _scan(self, cursor: str | None, limit: int) -> Iterator[tuple[list[Document], str]]:
        """Default: every id, sorted (code-point order), read back ``limit`` at a time; the cursor is the last
        id read. Engines with a key order of their own override this with a keyset read."""
        ids = sorted(self._all_ids())
        start = bisect.bisect_right(ids, cursor) if cursor is not None else 0
        for s in range(start, len(ids), limit):
            chunk = ids[s : s + limit]
            found = {d.id: d for d in self._get(chunk)}
            yield [found[i] for i in chunk if i in found], chunk[-1]

    def _all_ids(self) -> list[str]:
        return [d.id for d in self._get_where(None, None)]

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | Node | None = None,
        namespace: Namespace = None,
    ) -> int:
        """Delete by ids or by filter, in ``namespace``; returns how many documents were removed (unknown ids
        are ignored)."""
        self._check_open()
        self._catch_up()
        scope = self._scope(namespace)
        if ids is not None and filter is not None:
            raise ValidationError("delete() takes ids or a filter, not both")
        if ids is not None:
            wanted = self._checked_ids(namespace, ids)
            if not wanted or self._dim is None:
                return 0
            with self._lock.write(), self._engine("delete"):
                self._check_open()
                return self._delete_ids(self._engine_ids(scope, wanted))
        user = self._parse_filter(filter)
        node = self._scoped(namespace, scope, user)
        if user is None or node is None:
            raise ValidationError("delete() needs ids or a non-empty filter; use clear() to remove everything")
        if not self.capabilities.delete_by_filter:
            raise UnsupportedFeatureError(f"{self.name} cannot delete by filter")
        if self._dim is None:
            return 0
        with self._lock.write(), self._engine("delete"):
            self._check_open()
            return self._delete_where(node)

    def count(self, filter: Filter | Node | None = None, *, namespace: Namespace = None) -> int:
        """Number of documents of ``namespace``, optionally only those matching ``filter``."""
        self._check_open()
        self._catch_up()
        node = self._scoped(namespace, self._scope(namespace), self._parse_filter(filter))
        if self._dim is None:
            return 0
        with self._lock.read(), self._engine("count"):
            self._check_open()
            return self._count(node)

    def clear(self, *, namespace: Namespace = None) -> None:
        """Remove every document of ``namespace`` (``ALL_NAMESPACES``: of the collection); the dimension stays
        fixed."""
        self._check_open()
        scope = self._scope(namespace)
        with self._lock.write(), self._engine("clear"):
            self._check_open()
            if self._dim is None:
                return
            if scope is not None:
                self._delete_where(scoped(scope, None))
                return
            manifest = self._read_manifest() if self.options.namespaces else None
            self._clear()
            if manifest and self._read_manifest() != manifest:
                self._write_manifest(manifest)  # the record that the collection keeps namespaces survives
            self._mark_namespaces()

    def drop(self) -> None:
        """Delete the collection itself (table, index, files); the store stays open, empty and dimensionless,
        so the next upsert may use another dimension (e.g. after switching embedding models)."""
        with self._lock.write(), self._engine("drop the collection"):
            self._check_open()
            if self._dim is not None:
                self._drop()
            self._dim = None
            self._manifest_text = None

    def storage_bytes(self) -> int | None:
        """Bytes this store occupies on disk (None for RAM-only or remote stores), for size comparisons."""
        path = getattr(self, "path", None)
        if path is None:
            return None
        root = Path(path)
        if root.is_file():
            return root.stat().st_size
        if not root.is_dir():
            return None
        return sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink())

    def tune(self, **settings: Any) -> None:
        """Change search-time options on an open store (e.g. an ``ef_search`` sweep over one built index).

        Each value is checked against the option's declared type and bounds; options that are fixed when the
        index is built raise ``UnsupportedFeatureError`` naming the ones that can change.
        """
        self._check_open()
        trial = self.options.model_copy()
        tunable = (*self.tunable, *LEXICAL_TUNABLE)
        for name, value in settings.items():
            if name not in tunable:
                can = ", ".join(tunable)
                raise UnsupportedFeatureError(
                    f"{self.name} cannot change {name!r} on an open store (tunable: {can}); build a new store"
                )
            try:
                setattr(trial, name, value)  # validated against the option's declared type and bounds
            except PydanticValidationError as exc:
                raise ValidationError(f"{self.name} option {name}={value!r}: {exc.errors()[0]['msg']}") from None
        with self._lock.write(), self._engine("change search settings"):
            self._check_open()
            for name in settings:
                self._tune(name, getattr(trial, name))

    def _tune(self, name: str, value: Any) -> None:
        """Apply one validated search-time option; backends that must tell the engine override this."""
        setattr(self.options, name, value)

    def describe(self) -> dict[str, Any]:
        """Where and how this store keeps its data (for ``info`` and logs); never secrets."""
        with self._lock.read(), self._engine("describe itself"):
            self._check_open()
            return self._describe()

    def flush(self) -> None:
        """Make every write durable now (engines that buffer or keep an index file), without closing."""
        self._check_open()
        self._catch_up()
        with self._lock.write(), self._engine("flush"):
            self._check_open()
            self._flush()

    def close(self) -> None:
        """Flush and release the engine; further calls raise ``BackendUnavailableError``."""
        with self._lock.write():
            if not self._closed:
                self._closed = True
                try:
                    with self._engine("close"):
                        self._close()
                finally:
                    self._unlock_path()

    def _unlock_path(self) -> None:
        if self._path_lock is not None:
            unlock_folder(self._path_lock)
            self._path_lock = None

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- backend hooks
    def _connect(self) -> None:  # noqa: B027 - optional hook
        """Open the engine (client, connection, folder) from ``self.options``; errors here should be
        ``BackendUnavailableError`` naming the place. Called once, before any collection is touched."""

    def _stored(self) -> tuple[int, str | None] | None:
        """``(dim, metric)`` of the collection already there (metric ``None`` when the engine does not record
        it), or ``None`` when there is none yet."""
        return None

    def _adopt(self, dim: int) -> None:  # noqa: B027 - optional hook
        """Attach to the existing collection found by ``_stored`` (load it, open its index)."""

    def _describe(self) -> dict[str, Any]:
        return {}

    def _parse_filter(self, filter: Filter | Node | None) -> Node | None:
        """The filter's tree, checked against this store's size limits (``max_filter_*`` options)."""
        return parse_filter(filter, self.options.filter_limits)

    def _changed_elsewhere(self) -> bool:
        """Whether another process changed the collection since this store last looked (cheap; called
        before every call). Engines whose server keeps one view for everyone never need it."""
        return False

    def _refresh(self) -> None:  # noqa: B027 - optional hook
        """Bring this process's view (in-memory index, dimension) up to what another process wrote."""

    def _catch_up(self) -> None:
        with self._engine("look for other processes' writes"):
            changed = self._changed_elsewhere()
        if changed:
            with self._lock.write(), self._engine("catch up with another process's writes"):
                self._check_open()
                if self._changed_elsewhere():
                    self._refresh()
        if self._dim is None:  # opened empty: another process (another app server) may have created it since
            with self._lock.write(), self._engine("look for a collection made by another process"):
                self._check_open()
                if self._dim is None and self._stored() is not None:
                    self._adopt_or_create()

    def _abandon(self) -> None:
        """Release the engine after a refused open (wrong metric or dimension) *without writing anything*:
        the collection belongs to someone else's settings. Default: ``_close``; stores that write on close
        override it."""
        self._close()

    def _flush(self) -> None:  # noqa: B027 - optional hook
        """Make writes durable; default: the engine already did."""

    @abstractmethod
    def _init_dim(self, dim: int) -> None:
        """Create the collection/index for ``dim`` (called once, at the first upsert of a new store)."""

    @abstractmethod
    def _upsert(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Metadata]) -> None: ...

    @abstractmethod
    def _search(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]: ...

    @abstractmethod
    def _get(self, ids: list[str]) -> list[Document]: ...

    @abstractmethod
    def _get_where(self, node: Node | None, limit: int | None) -> list[Document]: ...

    @abstractmethod
    def _delete_ids(self, ids: list[str]) -> int: ...

    @abstractmethod
    def _delete_where(self, node: Node) -> int: ...

    @abstractmethod
    def _count(self, node: Node | None) -> int: ...

    def _clear(self) -> None:
        """Default: drop the collection and create it again with the same dimension."""
        dim = self._dim
        assert dim is not None  # the base class only clears a store that has a collection
        self._drop()
        self._init_dim(dim)
        self._declare_indexed()

    @abstractmethod
    def _drop(self) -> None:
        """Remove the collection; called only when one exists."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; default does nothing."""

    def _check_batch(self, ids: list[str], texts: list[str], metadatas: list[Metadata]) -> None:  # noqa: B027
        """Engine-specific limits, checked for the whole input before anything is written."""

    # ----------------------------------------------------------------- helpers
    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailableError(f"{self.name} store is closed")

    def _ensure_dim(self, dim: int) -> None:
        if self._dim is None:
            self._init_dim(dim)
            self._dim = dim
            self._declare_indexed()
        elif dim != self._dim:
            raise DimensionMismatchError(self._dim, dim)

    def _prepare(
        self, docs: list[Document], spaces: list[str] | None = None
    ) -> tuple[list[str], np.ndarray, list[str], list[Metadata]]:
        """Checked engine inputs: engine ids (namespaced when ``spaces`` names each document's namespace),
        float32 rows (unit length for cosine), texts and metadata (with the namespace field)."""
        ids: list[str] = []
        texts: list[str] = []
        metas: list[Metadata] = []
        raw: list[Any] = []
        seen: set[str] = set()
        for pos, doc in enumerate(docs):
            doc_id, meta = check_document(doc, pos)
            if spaces is not None:
                meta[NS_FIELD] = spaces[pos]
                doc_id = engine_id(spaces[pos], doc_id)
            if doc_id in seen:
                raise ValidationError(f"duplicate id {split_id(doc_id)[1]!r} in one upsert batch")
            seen.add(doc_id)
            if doc.vector is None:
                raise ValidationError(f"document {split_id(doc_id)[1]!r} has no vector; embed it first")
            ids.append(doc_id)
            texts.append(doc.text)
            metas.append(meta)
            raw.append(doc.vector)
        try:  # one numpy pass for the common case; the per-row pass below only names the culprit
            matrix = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError):
            matrix = None
        if matrix is None or matrix.ndim != 2 or matrix.shape[1] == 0:
            _explain_bad_vectors(ids, raw)
            raise ValidationError("vectors are not a list of equal-length numeric arrays")  # pragma: no cover
        if self._dim is not None and matrix.shape[1] != self._dim:
            raise DimensionMismatchError(self._dim, matrix.shape[1])
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            raise ValidationError(f"vector of document {ids[int(np.argmin(finite))]!r} contains NaN or infinite values")
        if self.metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
            zero = np.flatnonzero(norms == 0.0)
            if zero.size:
                raise ValidationError(f"vector of document {ids[zero[0]]!r} has zero length (cosine metric)")
            # rows already unit length (to float32 rounding) are stored as given: normalising is not idempotent
            # in float32, and a copy or an import must store the very bits it read
            off = np.abs(norms - 1.0) > UNIT_SLACK
            if off.all():
                matrix = matrix / norms[:, None]
            elif off.any():
                matrix = matrix.copy()
                matrix[off] /= norms[off, None]
        return ids, np.ascontiguousarray(matrix, dtype=np.float32), texts, metas

    def score_from_distance(self, distance: float) -> float:
        """Convert an engine distance for this store's metric into a higher-is-better score."""
        if self.metric == "l2":
            return -math.sqrt(max(distance, 0.0))
        return float(distance)


def check_document(doc: Any, pos: int = 0) -> tuple[str, Metadata]:
    """(id, metadata copy) of a document whose id, text and metadata every backend accepts; otherwise a
    ``ValidationError`` naming the problem. ``upsert`` runs it on every document; callers that write in
    batches (ingest) run it on the whole input first, so a bad item refuses the input before any write."""
    if not isinstance(doc, Document):
        raise ValidationError(f"item {pos} is a {type(doc).__name__}, expected ragstore.Document")
    doc_id = validate_id(doc.id)
    if not isinstance(doc.text, str) or not doc.text.strip():
        raise ValidationError(f"document {doc_id!r} has empty text")
    check_text_chars(doc.text, f"text of document {doc_id!r}")
    meta = validate_metadata(doc.metadata, doc_id)
    check_metadata(meta, doc_id)
    return doc_id, meta


def _unscope(docs: list[Document]) -> tuple[list[str], list[Document]]:
    """Documents as a whole-collection read gave them (engine ids, the namespace field): each one's namespace,
    and the document as its namespace's callers see it -- so a copy of every namespace writes each one back
    into its own."""
    spaces: list[str] = []
    out: list[Document] = []
    for pos, doc in enumerate(docs):
        if not isinstance(doc, Document) or not isinstance(doc.id, str):
            check_document(doc, pos)  # raises the usual error
        space, doc_id = split_id(doc.id)
        space = validate_namespace(space)
        meta = dict(doc.metadata or {})
        if meta.get(NS_FIELD, space) != space:
            raise ValidationError(f"document {doc_id!r}: its id names namespace {space!r}, its {NS_FIELD} another")
        meta.pop(NS_FIELD, None)
        spaces.append(space)
        out.append(Document(text=doc.text, id=doc_id, metadata=meta, vector=doc.vector))
    return spaces, out


def _check_k(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
        raise ValidationError(f"k must be a positive integer, got {k!r}")
    if k > MAX_K:  # refused before any engine allocates k results
        raise ValidationError(f"k must be at most {MAX_K}, got {k}; use get(filter=...) to read every document")


def _scaled(hits: list[Hit], scale: str) -> list[Hit]:
    for hit in hits:
        hit.scale = scale
    return hits


def _rank(hit: Hit) -> tuple[float, str]:
    """Best first; equal scores by id, so every backend returns ties in the same order."""
    return (-hit.score, hit.id)


def _explain_bad_vectors(ids: list[str], raw: list[Any]) -> None:
    """Raise the precise error for the first vector that is not a non-empty 1-D numeric array of the batch's length."""
    first: int | None = None
    for doc_id, value in zip(ids, raw, strict=True):
        try:
            vec = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValidationError(f"vector of document {doc_id!r} is not numeric") from None
        if vec.ndim != 1 or vec.size == 0:
            raise ValidationError(f"vector of document {doc_id!r} must be 1-D, got shape {vec.shape}")
        if first is None:
            first = vec.shape[0]
        elif vec.shape[0] != first:
            raise DimensionMismatchError(first, vec.shape[0], f"vector of document {doc_id!r}")


def _as_id_list(ids: Sequence[str] | str) -> list[str]:
    if isinstance(ids, str):
        return [ids]
    return list(ids)


__all__ = [
    "MAX_K",
    "SCAN_END",
    "Capabilities",
    "CollectionName",
    "ScanPage",
    "StoreOptions",
    "VectorStore",
    "as_query_vector",
    "check_document",
]
