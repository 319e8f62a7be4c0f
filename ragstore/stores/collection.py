"""A ``Collection``: one document set, kept in one primary store and the indexes derived from it.

A document may live in several places: the primary store (the configured engine), one dense index per
bilingual route (another model's vectors of the same texts, in a sibling store) and the BM25 index. The
collection is the only code that writes them, so they cannot drift apart:

- **One write path.** ``upsert``, ``delete`` (ids or filter), ``clear`` and ``drop`` go to the primary and
  then to every derived index, inside one lock: a thread lock, and an exclusive ``flock`` on the collection's
  journal for other processes on this machine. Two processes writing the same id leave the same winner
  everywhere; a process opening the collection while another writes waits for that write to finish.
- **Generations, not counts.** The journal (SQLite beside the store, or RAM) numbers writes. A write commits
  ``pending`` first, then writes the primary, then the derived indexes (the lexical index records the
  generation in its own transaction), then commits the new generation. A derived index whose generation is
  not the collection's -- a crash between the writes, a route added later, a lost file -- is rebuilt from the
  primary under the same lock (so a rebuild cannot overwrite a newer write), with a progress bar.
- **Identity.** Every derived file carries the primary's location (``VectorStore.location``): two stores
  given the same ``lexical_path`` get different files, and a file of another collection is refused.
- **Manifest.** Kept in the primary's engine (``VectorStore.write_manifest``): format, each index's embedder
  identity (``Embedder.identity``), dim, metric, analyzer version, chunking, times, counts. Opening with an
  embedder other than the recorded one raises ``EmbedderMismatchError``; an export of the same weights
  (onnx/openvino, int8/bf16) is compatible and said so in ``notes``.

A bare store is a collection without derived indexes (``open_collection(store)``, or ``Collection.view`` for
reading), so callers never branch on which one they hold.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .._db import connect
from ..embedders.base import Embedder
from ..errors import (
    BackendUnavailableError,
    ConfigError,
    EmbedderMismatchError,
    EngineError,
    UnsupportedFeatureError,
    ValidationError,
)
from ..lexical import ANALYZER_VERSION, LexicalIndex, default_analyzer
from ..lexical.index import OwnerMismatch
from ..query.filters import Filter, Node
from ..query.namespaces import ALL_NAMESPACES, Namespace
from ..types import Document, Hit, Ranked
from .base import LEXICAL_TUNABLE, Capabilities, StoreOptions, VectorStore, _check_k
from .registry import resolve_store

#: manifest layout version; a reader refuses a newer one
MANIFEST_FORMAT = 1
PRIMARY = "primary"
LEXICAL_INDEX = "lexical"


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Journal:
    """The collection's write generation, its ``pending`` mark and each dense index's applied generation, in
    SQLite (``folder``) or RAM; ``locked()`` serialises writers across threads and processes."""

    def __init__(self, folder: Path | None, owner: str) -> None:
        self.owner = owner
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_file: Any = None
        self._ram: dict[str, str] = {}
        self.fresh = True
        self._db: sqlite3.Connection | None = None
        self.lock_path: Path | None = None
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"journal-{_short(owner)}"
        self.lock_path = folder / f"{stem}.lock"
        file = folder / f"{stem}.sqlite"
        self.fresh = not file.exists()
        self._db = connect(file)  # as durable as the stores' own SQLite files: ragstore/_db.py
        self._db.execute("CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.execute("INSERT OR IGNORE INTO info VALUES ('owner', ?)", (owner,))
        found = self._get("owner")
        if found != owner:
            self._db.close()
            raise BackendUnavailableError(f"the journal {file} belongs to another collection ({found})")

    # ----------------------------------------------------------------- storage
    def _get(self, key: str) -> str | None:
        if self._db is None:
            return self._ram.get(key)
        row = self._db.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set(self, values: Mapping[str, str | None]) -> None:
        if self._db is None:
            for key, value in values.items():
                if value is None:
                    self._ram.pop(key, None)
                else:
                    self._ram[key] = value
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for key, value in values.items():
                if value is None:
                    self._db.execute("DELETE FROM info WHERE key = ?", (key,))
                else:
                    self._db.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (key, value))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ----------------------------------------------------------------- state
    def generation(self) -> int:
        return int(self._get("generation") or 0)

    def pending(self) -> bool:
        return self._get("pending") is not None

    def applied(self, name: str) -> int | None:
        value = self._get(f"applied:{name}")
        return None if value is None else int(value)

    def begin(self) -> int:
        """Mark a write in progress (committed before the primary is touched); returns its generation."""
        gen = self.generation() + 1
        self._set({"pending": f"{gen} pid {os.getpid()}"})
        return gen

    def commit(self, gen: int, applied: Iterable[str] = ()) -> None:
        self._set({"generation": str(gen), "pending": None, **{f"applied:{n}": str(gen) for n in applied}})

    def abort(self) -> None:
        """The write was refused before anything was written."""
        self._set({"pending": None})

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across threads (re-entrant) and, with a folder, across processes (``flock``; released by
        the kernel when a holder dies, so a crash never leaves the collection locked)."""
        with self._thread_lock:
            if self._depth == 0 and self.lock_path is not None:
                fh = open(self.lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held until the write ends
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                except BaseException:
                    fh.close()
                    raise
                self._lock_file = fh
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_file is not None:
                    self._lock_file.close()  # closing releases the flock
                    self._lock_file = None

    def close(self) -> None:
        if self._db is not None:
            with suppress(Exception):
                self._db.close()
            self._db = None


class DerivedIndex:
    """An index built from the primary's documents; the collection writes it right after the primary."""

    name: str
    #: its generation is recorded by the journal at commit (True), or by the index itself in the same
    #: transaction as its data (False: the lexical index)
    journaled: bool = True

    def generation(self, journal: Journal) -> int | None:
        return journal.applied(self.name)

    def upsert(self, docs: list[Document], gen: int, vectors: np.ndarray | None) -> None:
        raise NotImplementedError

    def delete(self, ids: list[str], gen: int) -> None:
        raise NotImplementedError

    def delete_where(self, node: Node, gen: int) -> None:
        raise NotImplementedError

    def clear(self, gen: int) -> None:
        raise NotImplementedError

    def drop(self, gen: int) -> None:
        self.clear(gen)

    def count(self) -> int:
        raise NotImplementedError

    def texts(self) -> dict[str, str]:
        """Text by id of every document this index holds (for ``Collection.verify``)."""
        raise NotImplementedError

    def repair(self, primary: VectorStore, gen: int) -> int:
        """Make this index hold exactly the primary's documents; returns how many it changed."""
        raise NotImplementedError

    def entry(self) -> dict[str, Any]:
        """This index's part of the manifest (the collection adds the embedder's identity)."""
        raise NotImplementedError

    def storage_bytes(self) -> int | None:
        return 0

    def close(self) -> None:
        """Release what this index holds."""


class LexicalDerived(DerivedIndex):
    """The BM25 index (``ragstore.lexical``), one SQLite file per collection (or RAM)."""

    journaled = False

    def __init__(self, index: LexicalIndex) -> None:
        self.name = LEXICAL_INDEX
        self.index = index

    def generation(self, journal: Journal) -> int | None:
        return self.index.generation()

    def upsert(self, docs: list[Document], gen: int, vectors: np.ndarray | None) -> None:
        self.index.upsert([d.id for d in docs], [d.text for d in docs], [d.metadata for d in docs], generation=gen)

    def delete(self, ids: list[str], gen: int) -> None:
        self.index.delete(ids, generation=gen)

    def delete_where(self, node: Node, gen: int) -> None:
        self.index.delete_where(node, generation=gen)

    def clear(self, gen: int) -> None:
        self.index.clear(generation=gen)

    def count(self) -> int:
        return self.index.count()

    def texts(self) -> dict[str, str]:
        return self.index.texts()

    def repair(self, primary: VectorStore, gen: int) -> int:
        docs = _all(primary)
        self.index.rebuild(((d.id, d.text, d.metadata) for d in docs), total=len(docs), generation=gen)
        return len(docs)

    def entry(self) -> dict[str, Any]:
        return {"kind": "bm25", "leg": "sidecar", "analyzer": ANALYZER_VERSION, "k1": self.index.k1, "b": self.index.b}

    def storage_bytes(self) -> int | None:
        return self.index.storage_bytes()

    def close(self) -> None:
        self.index.close()


def _all(store: VectorStore) -> list[Document]:
    """Every document as the engine keeps it (every namespace, engine ids): what derived indexes hold."""
    return store.get(filter=None, namespace=ALL_NAMESPACES) if store.dim is not None else []


class DenseDerived(DerivedIndex):
    """Another model's vectors of the same texts (a bilingual route), in a store of its own."""

    def __init__(self, route: str, embedder: Embedder, store: VectorStore) -> None:
        self.route = route
        self.name = f"route:{route}"
        self.embedder = embedder
        self.store = store

    def _twins(self, docs: Sequence[Document], vectors: np.ndarray | None) -> list[Document]:
        twins = [Document(text=d.text, id=d.id, metadata=dict(d.metadata)) for d in docs]
        vecs = vectors if vectors is not None else self.embedder.embed_documents([d.text for d in twins])
        for twin, vec in zip(twins, vecs, strict=True):
            twin.vector = vec
        return twins

    # a route keeps what the primary keeps: engine ids and the namespace field, written as they are
    def upsert(self, docs: list[Document], gen: int, vectors: np.ndarray | None) -> None:
        self.store.upsert(self._twins(docs, vectors), namespace=ALL_NAMESPACES)

    def delete(self, ids: list[str], gen: int) -> None:
        self.store.delete(ids, namespace=ALL_NAMESPACES)

    def delete_where(self, node: Node, gen: int) -> None:
        self.store.delete(filter=node, namespace=ALL_NAMESPACES)

    def clear(self, gen: int) -> None:
        self.store.clear(namespace=ALL_NAMESPACES)

    def drop(self, gen: int) -> None:
        self.store.drop()

    def count(self) -> int:
        return self.store.count(namespace=ALL_NAMESPACES)

    def texts(self) -> dict[str, str]:
        return {d.id: d.text for d in _all(self.store)}

    def repair(self, primary: VectorStore, gen: int) -> int:
        """Add what the route lacks or holds differently, drop what the primary no longer has (texts already
        in step are not embedded again)."""
        main = {d.id: d for d in _all(primary)}
        have = {d.id: d for d in _all(self.store)}
        stale = [i for i in have if i not in main]
        todo = [d for i, d in main.items() if i not in have or have[i].text != d.text or have[i].metadata != d.metadata]
        if stale:
            self.store.delete(stale, namespace=ALL_NAMESPACES)
        step = 256
        with tqdm(total=len(todo), desc=f"repair {self.name}", unit="doc", disable=not todo, leave=False) as bar:
            for start in range(0, len(todo), step):
                batch = todo[start : start + step]
                self.store.upsert(self._twins(batch, None), namespace=ALL_NAMESPACES)
                bar.update(len(batch))
        return len(stale) + len(todo)

    def entry(self) -> dict[str, Any]:
        return {
            "kind": "dense",
            "dim": self.store.dim,
            "metric": self.store.metric,
            "store": self.store.name,
        }

    def storage_bytes(self) -> int | None:
        return self.store.storage_bytes()

    def close(self) -> None:
        self.store.close()


class Collection:
    """One document set: a primary store and its derived indexes, written through one path.

    Reads (``search``, ``get``, ``count``) go to the primary; ``search_lexical`` to the BM25 index;
    ``route(name)`` is a route's dense index. ``notes`` says what opening found (a repair, an adopted older
    collection, a compatible export of the recorded model).
    """

    def __init__(
        self,
        primary: VectorStore,
        *,
        embedder: Embedder | None = None,
        derived: Sequence[DerivedIndex] = (),
        folder: str | os.PathLike[str] | None = None,
        chunking: Mapping[str, Any] | None = None,
    ) -> None:
        self.primary = primary
        self.embedder = embedder
        self.derived: dict[str, DerivedIndex] = {d.name: d for d in derived}
        self.chunking = dict(chunking) if chunking is not None else None
        self.notes: list[str] = []
        self._closed = False
        self._wrote = False
        self._lock = threading.RLock()
        self.timings: dict[str, float] = {PRIMARY: 0.0, **{name: 0.0 for name in self.derived}}
        self._borrowed = False
        self._manifest: dict[str, Any] | None = None
        self._adopted = False
        self._identities: dict[str, dict[str, Any] | None] = {}
        self._records: dict[str, Any] = {}
        #: the BM25 leg lives in the primary's engine (``VectorStore.native_lexical``); None: not asked yet
        self._native: bool | None = False
        where = Path(folder) if folder is not None and primary.capabilities.persistent else None
        try:
            self.journal = Journal(where, primary.location())
            with self._lock, self.journal.locked():
                self._check_manifest()
                recorded: dict[str, Any] = (self._manifest.get("indexes") if self._manifest else None) or {}
                if primary.lexical_native:
                    wanted = primary.options.lexical or LEXICAL_INDEX in recorded
                    if wanted or primary.lexical_built():
                        self._add_native(at_open=True)  # in the engine: every writer keeps it in step
                elif LEXICAL_INDEX in recorded and LEXICAL_INDEX not in self.derived:
                    self._add_lexical(at_open=True)  # built by an earlier query: every writer keeps it in step
                self._repair(at_open=True)
                self._save_manifest(force=False)
        except BaseException:
            self._release()
            raise

    @classmethod
    def view(cls, store: VectorStore | Collection) -> Collection:
        """A collection around an open store for reading only (no journal file, no manifest check or write,
        ``close`` leaves the store open): how the query path reads a store it was handed."""
        if isinstance(store, Collection):
            return store
        if not isinstance(store, VectorStore):
            raise ConfigError(f"expected a ragstore VectorStore or Collection, got {type(store).__name__}")
        self = cls.__new__(cls)
        self.primary, self.embedder, self.derived, self.chunking, self.notes = store, None, {}, None, []
        self._closed, self._wrote, self._lock = False, False, threading.RLock()
        self.timings = {PRIMARY: 0.0}
        self.journal = Journal(None, "view")  # never written: no location to resolve on the query path
        self._manifest, self._adopted, self._identities, self._records = None, False, {}, {}
        self._borrowed = True
        self._native = None  # asked of the engine when a lexical query first needs it
        return self

    def __getattr__(self, name: str) -> Any:
        """The primary store's own attributes (an engine's ``path``, ``client``...), so code that held the
        store keeps working when it holds the collection."""
        primary = self.__dict__.get("primary")
        if name.startswith("_") or primary is None:
            raise AttributeError(name)
        return getattr(primary, name)

    # ----------------------------------------------------------------- store-like reads
    @property
    def name(self) -> str:
        return self.primary.name

    @property
    def metric(self) -> str:
        return self.primary.metric

    @property
    def dim(self) -> int | None:
        return self.primary.dim

    @property
    def options(self) -> StoreOptions:
        return self.primary.options

    @property
    def batch_size(self) -> int:
        return self.primary.batch_size

    @property
    def capabilities(self) -> Capabilities:
        lexical = self.lexical
        return replace(self.primary.capabilities, lexical=lexical, hybrid=lexical)

    def _is_native(self) -> bool:
        if self._native is None:  # a view of a store: is the leg in its engine?
            primary = self.primary
            self._native = primary.lexical_native and primary.dim is not None and primary.lexical_built()
        return self._native

    @property
    def lexical(self) -> bool:
        """Whether lexical and hybrid search work here (``lexical: true``)."""
        return self._is_native() or LEXICAL_INDEX in self.derived

    @property
    def lexical_leg(self) -> str | None:
        """Where the BM25 leg lives: ``"native"`` (in the engine), ``"sidecar"`` (a local SQLite index) or
        ``None`` (none yet: the first lexical or hybrid query builds one)."""
        if self._is_native():
            return "native"
        return "sidecar" if LEXICAL_INDEX in self.derived else None

    @property
    def routes(self) -> dict[str, DenseDerived]:
        return {d.route: d for d in self.derived.values() if isinstance(d, DenseDerived)}

    @property
    def route_stores(self) -> dict[str, VectorStore]:
        return {name: d.store for name, d in self.routes.items()}

    def route(self, name: str) -> VectorStore:
        routes = self.routes
        if name not in routes:
            raise ConfigError(f"routed queries need the multilingual index {name!r} (bilingual.multilingual)")
        return routes[name].store

    def search(
        self,
        vector: Any,
        k: int = 10,
        filter: Filter | Node | None = None,
        *,
        fields: bool = True,
        namespace: Namespace = None,
    ) -> list[Hit]:
        return self.primary.search(vector, k, filter, fields=fields, namespace=namespace)

    def search_batch(
        self,
        vectors: Any,
        k: int = 10,
        filter: Filter | Node | None = None,
        *,
        fields: bool = True,
        namespace: Namespace = None,
    ) -> list[list[Hit]]:
        return self.primary.search_batch(vectors, k, filter, fields=fields, namespace=namespace)

    def search_scores(
        self, vector: Any, k: int = 10, filter: Filter | Node | None = None, *, namespace: Namespace = None
    ) -> Ranked:
        return self.primary.search_scores(vector, k, filter, namespace=namespace)

    def hydrate(self, hits: list[Hit], *, namespace: Namespace = None) -> list[Hit]:
        """Texts and metadata for hits found with ``fields=False`` (by any of this collection's indexes: the
        primary holds every document)."""
        return self.primary.hydrate(hits, namespace=namespace)

    def get(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | Node | None = None,
        limit: int | None = None,
        namespace: Namespace = None,
    ) -> list[Document]:
        return self.primary.get(ids, filter=filter, limit=limit, namespace=namespace)

    def count(self, filter: Filter | Node | None = None, *, namespace: Namespace = None) -> int:
        return self.primary.count(filter, namespace=namespace)

    def namespaces(self) -> dict[str, int]:
        """Each namespace that holds documents, with how many."""
        return self.primary.namespaces()

    def describe(self) -> dict[str, Any]:
        return self.primary.describe()

    def _parse_filter(self, filter: Filter | Node | None) -> Node | None:
        return self.primary._parse_filter(filter)

    # ----------------------------------------------------------------- lexical reads
    def _lexical(self) -> LexicalIndex:
        self.require_lexical()
        index = self.derived[LEXICAL_INDEX]
        assert isinstance(index, LexicalDerived)
        return index.index

    def require_lexical(self) -> None:
        """Make lexical and hybrid search work here: one rule for every door (Python, CLI, serve, LlamaIndex,
        LangChain). A collection without a BM25 index builds one from its stored texts on the first lexical
        or hybrid query and records it in its manifest, so every writer that opens the collection afterwards
        keeps it in step; ``lexical: false`` written in the store block refuses instead."""
        self._check_open()
        if self.lexical:
            return
        if self._borrowed and self.primary.options.lexical:
            raise UnsupportedFeatureError(
                f"{self.name} store was opened alone: its lexical index belongs to its collection, open it with "
                "ragstore.open_collection(block) (or ragstore.open(config))"
            )
        if self._borrowed:
            raise UnsupportedFeatureError(
                f"{self.name} store was opened alone, without a collection to own a lexical index: open it with "
                "ragstore.open_collection(block) (or ragstore.open(config)) and lexical and hybrid search build "
                "the index from the stored texts"
            )
        if "lexical" in self.primary.options.model_fields_set and not self.primary.options.lexical:
            raise UnsupportedFeatureError(
                f"{self.name} store block says `lexical: false`: lexical and hybrid search need its BM25 index "
                "(remove the line, or set `lexical: true`)"
            )
        with self._lock, self.journal.locked():
            self._check_open()
            if self.lexical:
                return
            if self.primary.lexical_native:
                self._add_native(at_open=False)
            else:
                self._add_lexical(at_open=False)
            self._save_manifest(force=True)

    def _add_native(self, *, at_open: bool) -> None:
        """Use the engine's own BM25 leg, building it from the stored texts when it is missing or was built by
        another analyzer version (a store made empty builds it at its first write)."""
        self._native = True
        if self.primary.dim is None:
            self.primary.plan_lexical()  # made with the collection's first write
            return
        changed = self.primary.build_lexical()
        if changed or not at_open:
            self.notes.append(
                f"built the lexical leg in {self.primary.name} from the stored texts ({changed} documents)"
            )

    def _add_lexical(self, *, at_open: bool) -> None:
        """Open the BM25 index beside the primary and fill it from the primary's texts (under the locks)."""
        index = open_lexical(self.primary, folder_of(self.primary.options))  # where `lexical: true` puts it
        self.derived[LEXICAL_INDEX] = index
        self.timings[LEXICAL_INDEX] = 0.0
        if not at_open:
            try:
                changed = self._repair(at_open=False, force=[LEXICAL_INDEX])
            except BaseException:
                self.derived.pop(LEXICAL_INDEX, None)
                with suppress(Exception):
                    index.close()
                raise
            self.notes.append(f"built the lexical index from the stored texts ({changed} documents)")

    def lexical_variant(self) -> dict[str, float]:
        """How this collection's BM25 departs from the reference (``VectorStore.lexical_variant``; the sidecar:
        not at all)."""
        return self.primary.lexical_variant() if self._is_native() else {}

    def lexical_terms(self, query: str) -> list[str]:
        """The terms a lexical search for ``query`` looks up (empty: only stop words, punctuation or emoji)."""
        self.require_lexical()
        if not isinstance(query, str):
            raise ValidationError(f"query must be a string, got {type(query).__name__}")
        if self._is_native():
            return list(dict.fromkeys(default_analyzer().terms(query)))
        return self._lexical().terms(query)

    def search_lexical(
        self,
        query: str,
        k: int = 10,
        filter: Filter | Node | None = None,
        *,
        fields: bool = True,
        namespace: Namespace = None,
    ) -> list[Hit]:
        """The ``k`` best documents by BM25 that match ``filter`` (scores are BM25, higher is better); empty
        when the query has no terms. Same terms and scores on every backend."""
        _check_k(k)
        return self.search_lexical_terms(self.lexical_terms(query), k, filter, fields=fields, namespace=namespace)

    def search_lexical_terms(
        self,
        terms: Sequence[str],
        k: int = 10,
        filter: Filter | Node | None = None,
        *,
        fields: bool = True,
        namespace: Namespace = None,
    ) -> list[Hit]:
        """``search_lexical`` for terms already analysed (``lexical_terms``): a prepared query's."""
        _check_k(k)
        self.require_lexical()
        if self._is_native():
            node = self._parse_filter(filter)
            return self.primary.search_terms(terms, int(k), node, fields=fields, namespace=namespace)
        scope, node = self.primary.scoped_filter(filter, namespace)  # the sidecar keeps the engine's ids
        return self.primary.owned(scope, self._lexical().search(list(terms), int(k), node, fields=fields))

    def search_lexical_scores(
        self, terms: Sequence[str], k: int = 10, filter: Filter | Node | None = None, *, namespace: Namespace = None
    ) -> Ranked:
        """``search_lexical_terms(fields=False)`` as arrays (the same documents and scores): a fused query's leg."""
        _check_k(k)
        self.require_lexical()
        if self._is_native():
            node = self._parse_filter(filter)
            return Ranked.of(self.primary.search_terms(terms, int(k), node, fields=False, namespace=namespace))
        scope, node = self.primary.scoped_filter(filter, namespace)
        return self.primary.owned_ranked(scope, self._lexical().search_scores(list(terms), int(k), node))

    # ----------------------------------------------------------------- the one write path
    @contextmanager
    def _writing(self) -> Iterator[int]:
        """Lock, repair what an earlier write left behind, mark the write pending, and commit the generation
        when the body (primary, then derived) returns; a failure leaves ``pending`` for the next repair."""
        self._check_open()
        with self._lock, self.journal.locked():
            self._check_open()
            self._repair(at_open=False)
            created = self.primary.dim is None
            gen = self.journal.begin()
            yield gen
            self.journal.commit(gen, [d.name for d in self.derived.values() if d.journaled])
            self._wrote = True
            if created and self.primary.dim is not None:
                self._save_manifest(force=True)

    def _primary_write(self, call: Any) -> Any:
        """The primary's write; its ``ValidationError`` or ``UnsupportedFeatureError`` means nothing was
        written (stores check the whole input and their capabilities first), so the pending mark is taken
        back."""
        start = time.perf_counter()
        try:
            return call()
        except (ValidationError, UnsupportedFeatureError):
            self.journal.abort()
            raise
        finally:
            self.timings[PRIMARY] += time.perf_counter() - start

    def _each(self, action: Any) -> None:
        for name, index in self.derived.items():
            start = time.perf_counter()
            action(index)
            self.timings[name] += time.perf_counter() - start

    def upsert(
        self,
        documents: Iterable[Document],
        batch_size: int | None = None,
        *,
        vectors: Mapping[str, np.ndarray] | None = None,
        namespace: Namespace = None,
    ) -> list[str]:
        """Insert or replace documents (of ``namespace``) in the primary and every derived index. ``vectors``
        may give a route's vectors (by route name) already made; otherwise the route's embedder embeds the
        texts."""
        docs = list(documents)
        if not docs:
            self._check_open()
            return []
        given = dict(vectors or {})
        with self._writing() as gen:
            ids = self._primary_write(lambda: self.primary.upsert(docs, batch_size, namespace=namespace))
            kept = self.primary.engine_documents(docs, namespace)  # derived indexes keep the engine's ids
            self._each(lambda d: d.upsert(kept, gen, given.get(getattr(d, "route", ""))))
        return ids

    def delete(
        self, ids: Sequence[str] | None = None, *, filter: Filter | Node | None = None, namespace: Namespace = None
    ) -> int:
        """Delete by ids or by filter (in ``namespace``) everywhere; returns how many documents the primary
        removed."""
        with self._writing() as gen:
            removed = self._primary_write(lambda: self.primary.delete(ids, filter=filter, namespace=namespace))
            if ids is not None:
                wanted = self.primary.engine_ids(ids, namespace)
                self._each(lambda d: d.delete(wanted, gen))
            else:
                node = self.primary.scoped_filter(filter, namespace)[1]
                assert node is not None  # the primary refused an empty filter
                self._each(lambda d: d.delete_where(node, gen))
        return int(removed)

    def clear(self, *, namespace: Namespace = None) -> None:
        """Remove every document of ``namespace`` everywhere (``ALL_NAMESPACES``, or a collection without
        namespaces: every document; dimensions stay)."""
        space, node = self.primary.scoped_filter(None, namespace)
        if space is not None:
            assert node is not None
            with self._writing() as gen:
                self._primary_write(lambda: self.primary.clear(namespace=namespace))
                self._each(lambda d: d.delete_where(node, gen))
            return
        with self._writing() as gen:
            self._primary_write(lambda: self.primary.clear(namespace=ALL_NAMESPACES))
            self._each(lambda d: d.clear(gen))
            if self._is_native() and self.primary.dim is not None:
                self.primary.build_lexical()  # engines that clear by re-creating the collection lose the leg
        if self.primary.dim is not None:  # engines that clear by re-creating lose the collection's properties
            self._save_manifest(force=True)

    def drop(self) -> None:
        """Delete the collection and its derived indexes' data; the next upsert may use another dimension."""
        with self._writing() as gen:
            self._primary_write(self.primary.drop)
            self._each(lambda d: d.drop(gen))

    def tune(self, **settings: Any) -> None:
        """Search-time options on the primary and every route (``bm25_k1``/``bm25_b`` on the lexical index)."""
        lexical = {k: v for k, v in settings.items() if k in LEXICAL_TUNABLE}
        dense = {k: v for k, v in settings.items() if k not in LEXICAL_TUNABLE}
        self.primary.tune(**settings)
        for route in self.routes.values():
            if dense:
                route.store.tune(**dense)
        if lexical and LEXICAL_INDEX in self.derived:
            index = self._lexical()
            index.k1, index.b = self.primary.options.bm25_k1, self.primary.options.bm25_b

    def flush(self) -> None:
        self.primary.flush()
        for route in self.routes.values():
            route.store.flush()

    def storage_bytes(self) -> int | None:
        """Bytes on disk over the primary and every derived index (None when any is RAM-only or remote)."""
        total: int | None = self.primary.storage_bytes()
        for index in self.derived.values():
            size = index.storage_bytes()
            total = None if total is None or size is None else total + size
        return total

    def rebuild(self, names: Iterable[str] | None = None) -> int:
        """Rebuild derived indexes (default: all) from the primary now, under the write lock; returns how many
        documents changed."""
        self._check_open()
        chosen = list(self.derived) if names is None else list(names)
        unknown = [n for n in chosen if n not in self.derived]
        if unknown:
            raise ValidationError(
                f"no derived index {', '.join(unknown)}; this collection has {', '.join(self.derived)}"
            )
        with self._lock, self.journal.locked():
            return self._repair(at_open=False, force=chosen)

    def rebuild_lexical(self) -> int:
        """Rebuild the BM25 leg from the stored texts, wherever it lives; returns how many documents it holds."""
        self.require_lexical()
        if self._is_native():
            with self._lock, self.journal.locked():
                return self.primary.build_lexical(rebuild=True)
        return self.rebuild([LEXICAL_INDEX])

    def verify(self) -> list[str]:
        """What differs between the primary and each derived index (ids missing or extra, other texts); empty
        when every index holds exactly the primary's documents. Reads everything: for checks, not queries."""
        self._check_open()
        with self._lock, self.journal.locked():
            want = {d.id: d.text for d in _all(self.primary)}
            problems = []
            for name, index in self.derived.items():
                have = index.texts()
                missing = sorted(set(want) - set(have))
                extra = sorted(set(have) - set(want))
                other = sorted(i for i in set(want) & set(have) if want[i] != have[i])
                for what, ids in (("missing", missing), ("not in the primary", extra), ("with another text", other)):
                    if ids:
                        problems.append(f"{name}: {len(ids)} documents {what} (first: {ids[0]!r})")
        return problems

    # ----------------------------------------------------------------- repair
    def _repair(self, *, at_open: bool, force: Iterable[str] = ()) -> int:
        """Rebuild every derived index whose generation is not the collection's (or, at open, whose count
        differs from the primary's: a write that bypassed the collection), and those named in ``force``, each
        once; returns how many documents changed."""
        forced = set(force)
        if not self.derived:
            if self.journal.pending():
                self.journal.commit(self.journal.generation() + 1)
            return 0
        pending = self.journal.pending()
        target = self.journal.generation() + (1 if pending else 0)
        if self.journal.fresh and at_open and self.primary.dim is not None:
            target = max(target, 1)  # a journal made now for a filled store: nothing derived is known good
        todo = []
        primary_count: int | None = None
        for index in self.derived.values():
            why = "asked" if index.name in forced else None
            have = index.generation(self.journal)
            if have != target:
                why = f"generation {have}, collection {target}"
            elif at_open and why is None:
                if primary_count is None:
                    primary_count = self.primary.count() if self.primary.dim is not None else 0
                count = index.count()
                if count != primary_count:
                    why = f"{count} documents, primary {primary_count}"
            if why is not None:
                todo.append((index, why))
        if not todo and not pending and target == self.journal.generation():
            return 0
        total = 0
        for index, why in todo:
            changed = index.repair(self.primary, target)
            total += changed
            if index.name not in forced and (changed or not (at_open and self.journal.fresh)):
                self.notes.append(f"repaired {index.name} from the primary ({why}; {changed} documents)")
        self.journal.commit(target, [d.name for d in self.derived.values() if d.journaled])
        self.journal.fresh = False
        return total

    # ----------------------------------------------------------------- manifest
    def _identity(self, index: str) -> dict[str, Any] | None:
        """The embedder identity of one index, computed once (a weights signature reads the weight files)."""
        if index not in self._identities:
            if index == PRIMARY:
                self._identities[index] = self.embedder.identity() if self.embedder is not None else None
            else:
                derived = self.derived[index]
                embedder = getattr(derived, "embedder", None)
                self._identities[index] = embedder.identity() if embedder is not None else None
        return self._identities[index]

    def identity(self, index: str = PRIMARY) -> dict[str, Any] | None:
        """The embedder identity of ``index``: this collection's embedder's, else the one its manifest records."""
        given = self._identity(index)
        if given is not None:
            return given
        recorded = ((self._manifest or {}).get("indexes") or {}).get(index) or {}
        found = recorded.get("embedder")
        return found if isinstance(found, dict) else None

    def adopt_identity(self, identity: Mapping[str, Any], index: str = PRIMARY) -> None:
        """Record ``identity`` for an index this collection has no embedder for (a copy brings the source's
        along, so the destination refuses another model from then on)."""
        if self._identity(index) is None:
            self._identities[index] = dict(identity)

    def record(self, key: str, value: Any, *, counts: bool = False) -> None:
        """Keep ``value`` under ``key`` in the manifest and write it now (a copy's checkpoint); without
        ``counts`` no engine is asked to count and the last recorded counts stay."""
        if key in _OWN_KEYS:
            raise ValueError(f"{key!r} is the manifest's own key")
        self._check_open()
        with self._lock:
            self._records[key] = value
            if self.primary.dim is None:
                return
            manifest = self.manifest(counts=counts)
            if not counts and self._manifest and "counts" in self._manifest:
                manifest["counts"] = self._manifest["counts"]
            self.primary.write_manifest(manifest)
            self._manifest = manifest

    def _check_manifest(self) -> None:
        """Refuse an embedder other than the recorded one; adopt a collection made before manifests."""
        if self.primary.dim is None:
            return
        found = self.primary.read_manifest()
        where = f"{self.primary.name} collection {self.primary.location().split('|', 1)[-1]!r}"
        if found is None:
            self.notes.append(
                "no manifest (made before ragstore recorded one): written now from what can be checked (dim "
                f"{self.primary.dim}, metric {self.primary.metric}); the embedder that wrote the existing vectors "
                "cannot be verified"
            )
            self._adopted = True
            return
        if int(found.get("format", 0)) > MANIFEST_FORMAT:
            raise ConfigError(f"{where}: manifest format {found.get('format')} is newer than this ragstore reads")
        self._manifest = found
        self._records = {k: v for k, v in found.items() if k not in _OWN_KEYS}
        indexes = found.get("indexes") or {}
        for name in (PRIMARY, *self.derived):
            recorded = (indexes.get(name) or {}).get("embedder")
            given = self._identity(name)
            if not recorded or not given:
                continue
            if recorded.get("key") != given.get("key"):
                raise EmbedderMismatchError(name, recorded, given, where)
            if recorded.get("variant") != given.get("variant"):
                self.notes.append(
                    f"{name}: written with {recorded.get('variant')}, read with {given.get('variant')} of the same "
                    "weights (a gated export: compatible)"
                )

    def manifest(self, *, counts: bool = True) -> dict[str, Any]:
        """What this collection is: the stored manifest brought up to date (counts, generation); without
        ``counts`` no engine is asked (enough to tell whether the stored one changed)."""
        previous = self._manifest or {}
        indexes: dict[str, Any] = {
            PRIMARY: {
                "kind": "dense",
                "embedder": self._identity(PRIMARY),
                "dim": self.primary.dim,
                "metric": self.primary.metric,
                "store": self.primary.name,
            }
        }
        old = previous.get("indexes") or {}
        if indexes[PRIMARY]["embedder"] is None and old.get(PRIMARY, {}).get("embedder"):
            indexes[PRIMARY]["embedder"] = old[PRIMARY]["embedder"]  # a bare store keeps what a pipeline recorded
        for name, index in self.derived.items():
            identity = self._identity(name)  # the collection's copy: read once per open
            indexes[name] = {**index.entry(), **({"embedder": identity} if identity is not None else {})}
        if self._is_native():
            opts = self.primary.options
            indexes[LEXICAL_INDEX] = {
                "kind": "bm25",
                "leg": "native",
                "engine": self.primary.native_lexical,
                "analyzer": ANALYZER_VERSION,
                "k1": opts.bm25_k1,
                "b": opts.bm25_b,
            }
        out: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "created": previous.get("created") or _now(),
            "updated": _now(),
            "generation": self.journal.generation(),
            "indexes": indexes,
            "chunking": self.chunking if self.chunking is not None else previous.get("chunking"),
        }
        out.update(self._records)
        if counts:
            out["counts"] = {
                PRIMARY: self.primary.count() if self.primary.dim is not None else 0,
                **{name: index.count() for name, index in self.derived.items()},
            }
        if self._adopted or previous.get("adopted"):
            out["adopted"] = previous.get("adopted") or {
                "at": _now(),
                "unverified": "the embedder that wrote the vectors stored before the manifest existed",
            }
        return out

    def _save_manifest(self, *, force: bool) -> None:
        if self.primary.dim is None:
            return
        old = self._manifest
        if not force and old is not None and _same(old, self.manifest(counts=False)):
            return
        manifest = self.manifest()
        try:
            self.primary.write_manifest(manifest)
            self._manifest = manifest
        except (BackendUnavailableError, EngineError) as exc:
            self.notes.append(f"the engine could not keep the manifest: {exc}")

    # ----------------------------------------------------------------- lifetime
    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailableError(f"{self.name} collection is closed")

    def _release(self) -> None:
        self._closed = True
        for index in self.derived.values():
            with suppress(Exception):
                index.close()
        if not getattr(self, "_borrowed", False):
            with suppress(Exception):
                self.primary.close()
        journal = getattr(self, "journal", None)
        if journal is not None:
            journal.close()

    def close(self) -> None:
        """Record the manifest's counts when this process wrote, then close every index."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._wrote:
                    with suppress(Exception):
                        self._save_manifest(force=True)
            finally:
                self._release()

    def __enter__(self) -> Collection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


#: the manifest's own keys; any other key (a copy's checkpoint) is kept as ``record`` wrote it
_OWN_KEYS = frozenset({"format", "created", "updated", "generation", "indexes", "chunking", "counts", "adopted"})


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal apart from times and counts (not worth an engine write at every open)."""
    keep = ("format", "indexes", "chunking", "adopted")
    return json.dumps({k: old.get(k) for k in keep}, sort_keys=True) == json.dumps(
        {k: new.get(k) for k in keep}, sort_keys=True
    )


def folder_of(options: StoreOptions, fallback: str | os.PathLike[str] | None = None) -> Path | None:
    """Where a collection keeps its local files (journal, lexical index): ``lexical_path``, else
    ``<path>.lexical`` beside an embedded store, else ``fallback`` (a pipeline's data folder)."""
    if options.lexical_path:
        return Path(os.path.expanduser(options.lexical_path))
    path = getattr(options, "path", None)
    if path and not options.remote:
        return Path(f"{path}.lexical")
    return Path(fallback) if fallback is not None else None


def open_lexical(primary: VectorStore, folder: Path | None) -> LexicalDerived:
    """The primary's BM25 index: ``lexical-<name>-<owner hash>.sqlite`` in ``folder`` (RAM without one)."""
    opts = primary.options
    owner = primary.location()
    file = None
    if primary.capabilities.persistent:
        if folder is None:
            raise ConfigError(
                f"{primary.name} on a server keeps its lexical index in a local file: set store.lexical_path "
                "(a folder every process that writes this collection can reach)"
            )
        name = getattr(opts, opts.name_key, None) if opts.name_key else None
        stem = "".join(c if c.isalnum() or c in "_.-" else "_" for c in str(name or "index"))
        file = folder / f"lexical-{stem}-{_short(owner)}.sqlite"
    try:
        return LexicalDerived(LexicalIndex(file, k1=opts.bm25_k1, b=opts.bm25_b, owner=owner))
    except (OwnerMismatch, OSError, sqlite3.Error) as exc:
        raise BackendUnavailableError(f"cannot open the lexical index of {primary.name}: {exc}") from exc


def open_collection(
    block: Mapping[str, Any] | VectorStore,
    *,
    embedder: Embedder | None = None,
    routes: Mapping[str, tuple[Embedder, Mapping[str, Any] | VectorStore]] | None = None,
    folder: str | os.PathLike[str] | None = None,
    chunking: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Collection:
    """Open a store block (or an open store) as a collection: its lexical index when the block says
    ``lexical: true``, one dense index per route (``name -> (embedder, store block or store)``). ``folder``
    is where a server store keeps its journal when the block names no ``lexical_path``.

    Every caller -- the pipeline, the bench's scratch stores, the integrations -- opens collections here."""
    opened: list[VectorStore] = []

    def store_of(spec: Mapping[str, Any] | VectorStore) -> VectorStore:
        if isinstance(spec, VectorStore):
            return spec
        cls, opts = resolve_store(dict(spec), Path(base_dir) if base_dir is not None else None)
        store = cls(opts)
        opened.append(store)
        return store

    derived: list[DerivedIndex] = []
    try:
        primary = store_of(block)
        where = folder_of(primary.options, folder)
        if primary.options.lexical and not primary.lexical_native:  # a native leg is the primary's own
            derived.append(open_lexical(primary, folder_of(primary.options)))
        tenants = primary.options.namespaces
        for name, (route_embedder, spec) in (routes or {}).items():
            # a route keeps the primary's engine ids: namespaced with it
            store = store_of({**spec, "namespaces": True} if tenants and isinstance(spec, Mapping) else spec)
            if tenants and not store.options.namespaces:
                if store.dim is not None:
                    raise ConfigError(
                        f"route {name!r}: its index was made without namespaces, the collection keeps them: "
                        "drop the route's index (it is rebuilt from the collection)"
                    )
                store.options.namespaces = True
            if store.dim is not None and store.dim != route_embedder.dim:
                raise ConfigError(
                    f"route {name!r}: its index holds dimension {store.dim}, its embedder gives {route_embedder.dim}"
                )
            derived.append(DenseDerived(name, route_embedder, store))
        if where is None and primary.capabilities.persistent and derived:
            raise ConfigError(
                f"{primary.name} on a server keeps its collection journal in a local folder: set "
                "store.lexical_path (a folder every process that writes this collection can reach)"
            )
        return Collection(primary, embedder=embedder, derived=derived, folder=where, chunking=chunking)
    except BaseException:
        for index in derived:
            with suppress(Exception):
                index.close()
        for store in opened:
            with suppress(Exception):
                store.close()
        raise


__all__ = [
    "MANIFEST_FORMAT",
    "Collection",
    "DenseDerived",
    "DerivedIndex",
    "Journal",
    "LexicalDerived",
    "folder_of",
    "open_collection",
]
