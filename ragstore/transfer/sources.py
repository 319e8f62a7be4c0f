"""What a copy reads from: a ragstore store, a Parquet export, or a collection another app made.

Every source gives the same four things -- a count, a paged scan in a stable order with a resume cursor,
a search (so ``--verify`` can compare answers), and what it knows of the embedder that wrote it -- so
``copy``, ``export`` and ``import`` are one loop over one interface.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import suppress
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..query.namespaces import ALL_NAMESPACES, Namespace
from ..stores.base import ScanPage, VectorStore
from ..types import Document, Hit, Metadata, validate_key, validate_metadata


class Source(ABC):
    """A collection to read from. ``location`` identifies it across processes (a copy's checkpoint names it);
    ``label`` is what messages show."""

    kind: str = "source"
    label: str = ""
    location: str = ""
    dim: int | None = None
    metric: str = "cosine"
    exact: bool = True
    manifest: dict[str, Any] | None = None

    def __init__(self) -> None:
        self.notes: list[str] = []

    def identity(self) -> dict[str, Any] | None:
        """The embedder identity the source records for its vectors (None: not recorded)."""
        indexes = (self.manifest or {}).get("indexes") or {}
        found = (indexes.get("primary") or {}).get("embedder")
        return found if isinstance(found, dict) else None

    @property
    def namespaced(self) -> bool:
        """The source keeps namespaces (read whole, its ids carry them): its manifest says so."""
        return bool((self.manifest or {}).get("namespaces"))

    @property
    def namespace(self) -> Namespace:
        """The one namespace read (``ALL_NAMESPACES``: the whole source, as it keeps it)."""
        return ALL_NAMESPACES

    def chunking(self) -> dict[str, Any] | None:
        found = (self.manifest or {}).get("chunking")
        return found if isinstance(found, dict) else None

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def scan(self, batch_size: int, cursor: str | None = None) -> Iterator[ScanPage]: ...

    @abstractmethod
    def search(self, vector: np.ndarray, k: int) -> list[Hit]: ...

    def state(self) -> str:
        """Changes when the source is written (to tell a copy that its source moved under it)."""
        return str(self.count())

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the source opened."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreSource(Source):
    """A ragstore store, read through its adapter (never written: no collection is opened on it)."""

    kind = "ragstore"

    def __init__(self, store: VectorStore, *, owned: bool = True, namespace: Namespace = ALL_NAMESPACES) -> None:
        """``namespace``: the one read (default: every one, as the engine keeps them)."""
        super().__init__()
        self.store, self.owned = store, owned
        self._namespace: Namespace = namespace
        store.scoped_filter(None, namespace)  # an unknown or bad namespace is refused here
        self.location = store.location() + ("" if namespace is ALL_NAMESPACES else f"|ns={namespace}")
        self.label = f"{store.name} {_where(store)}" + ("" if namespace is ALL_NAMESPACES else f" [{namespace}]")
        self.dim, self.metric = store.dim, store.metric
        self.exact = store.capabilities.exact
        self.manifest = store.read_manifest() if store.dim is not None else None

    @property
    def namespaced(self) -> bool:
        return self.store.options.namespaces

    @property
    def namespace(self) -> Namespace:
        return self._namespace

    def count(self) -> int:
        return self.store.count(namespace=self.namespace)

    def scan(self, batch_size: int, cursor: str | None = None) -> Iterator[ScanPage]:
        return self.store.scan(batch_size, cursor, namespace=self.namespace)

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        return self.store.search(vector, k, namespace=self.namespace)

    def state(self) -> str:
        manifest = self.store.read_manifest() if self.store.dim is not None else None
        return json.dumps([self.count(), (manifest or {}).get("generation")])

    def close(self) -> None:
        if self.owned:
            self.store.close()


def _where(store: VectorStore) -> str:
    """The part of a store's location worth showing (never a server address: those are hashed there)."""
    return store.location().split("|", 1)[-1]


def plain_metadata(raw: Mapping[str, Any] | None, doc_id: str, notes: set[str]) -> Metadata:
    """An app's metadata as ragstore stores it: nulls dropped, nested values kept as JSON text, keys ragstore
    cannot filter on renamed (each change named once in ``notes``); strings keep every character the value
    rule allows and are refused, by id, otherwise."""
    out: Metadata = {}
    for key, value in (raw or {}).items():
        name = key if isinstance(key, str) else str(key)
        try:
            validate_key(name)
        except ValidationError:
            fixed = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:128] or "_"
            if not (fixed[0].isalpha() or fixed[0] == "_"):
                fixed = "_" + fixed[:127]
            notes.add(f"metadata key {name!r} renamed {fixed!r} (ragstore keys are letters, digits, '_' or '-')")
            name = fixed
        if value is None:
            notes.add(f"metadata key {name!r}: null values left out")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            notes.add(f"metadata key {name!r}: a non-finite number kept as text")
            value = str(value)
        elif isinstance(value, dict | list | tuple):
            notes.add(f"metadata key {name!r}: nested values kept as JSON text")
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif not isinstance(value, str | int | float | bool):
            value = str(value)
        out[name] = value
    return validate_metadata(out, doc_id)


def exact_search(docs: list[Document], metric: str, vector: np.ndarray, k: int) -> list[Hit]:
    """Exact top-k over documents in RAM with ragstore's score meaning and tie-break (a Parquet file has no
    index of its own)."""
    if not docs:
        return []
    matrix = np.stack([np.asarray(d.vector, dtype=np.float64) for d in docs])
    q = np.asarray(vector, dtype=np.float64).reshape(-1)
    if metric == "cosine":
        norms = np.linalg.norm(matrix, axis=1)
        matrix = matrix / np.where(norms == 0, 1.0, norms)[:, None]
        qn = np.linalg.norm(q)
        q = q / (qn or 1.0)
    scores = -np.sqrt(np.maximum(((matrix - q) ** 2).sum(axis=1), 0.0)) if metric == "l2" else matrix @ q
    order = sorted(range(len(docs)), key=lambda i: (-scores[i], docs[i].id))[:k]
    return [Hit(docs[i].id, float(scores[i]), docs[i].text, dict(docs[i].metadata), metric) for i in order]


def close_quietly(*things: Any) -> None:
    for thing in things:
        if thing is not None:
            with suppress(Exception):
                thing.close()
