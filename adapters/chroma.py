"""Chroma: ``PersistentClient(path)`` embedded, or ``HttpClient(host, port)`` against a Chroma server.

Embeddings are always passed in and ``embedding_function=None`` (otherwise Chroma downloads an ONNX model).
Chroma returns distances: cosine ``1 - similarity``, ip ``1 - dot``, l2 squared; they become scores here.

Chroma's ``where`` has no ``$not``, so filters go to negation normal form. ``$ne``/``$nin`` already match
documents without the field, as ragstore's grammar requires. A negated range ("not > 5") must also match
a missing or non-number field, which ``where`` cannot say, so every numeric metadata value is written with a
hidden marker key ``rs#num#<field>`` that the translation tests; markers never reach the caller.

Chroma compares an int-valued field against a *truncated* float filter value (``i == 1.5`` matches ``i = 1``),
so numbers are stored as floats, the marker records ``"int"`` or ``"float"`` to restore the kind on read
(ints are exact up to 2**53), and numeric filter values are sent as floats. Chroma's upsert merges
metadata, so keys that disappear are set to ``None``, which deletes them.

Namespaces follow Chroma's own design for tenants, a collection each: the configured collection keeps the
default namespace (and the manifest), every other namespace a collection named ``<collection>-ns-<hash>``
that records its namespace (``rs_ns``). A tenant's call touches its collection only, so its search costs
what the same documents alone would (a metadata filter over every tenant cost 28x that at 1,000 tenants).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ragstore._optional import require
from ragstore.errors import BackendUnavailableError
from ragstore.query.filters import RANGE_FLIP, Cmp, FilterCompiler, Node, kind, push_not
from ragstore.query.namespaces import DEFAULT_NAMESPACE, NS_FIELD, split_id, split_scope
from ragstore.stores.base import SQLITE_MAX_FILTER_ATOMS, Capabilities, CollectionName, StoreOptions, VectorStore
from ragstore.types import Document, Hit, Metadata

NUM_MARK = "rs#num#"
_SPACE = {"cosine": "cosine", "dot": "ip", "l2": "l2"}


def _store_meta(meta: Metadata) -> dict[str, Any]:
    out: dict[str, Any] = dict(meta)
    for key, value in meta.items():
        if kind(value) == "number":
            out[key] = float(value)
            out[NUM_MARK + key] = "float" if isinstance(value, float) else "int"
    return out


def _user_meta(meta: dict[str, Any] | None) -> Metadata:
    meta = meta or {}
    out: Metadata = {}
    for key, value in meta.items():
        if key.startswith(NUM_MARK):
            continue
        out[key] = int(value) if meta.get(NUM_MARK + key) == "int" else value
    return out


def _num(value: Any) -> Any:
    return float(value) if kind(value) == "number" else value


def _combine(op: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {op: parts}


class _Where(FilterCompiler[dict[str, Any]]):
    """Chroma ``where`` atoms over a tree in negation normal form (``push_not``): a negation reaches only a
    comparison, written with Chroma's own ``$ne``/``$nin``, or for a range its flip OR "not a number"."""

    def all_of(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return _combine("$and", parts)

    def any_of(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return _combine("$or", parts)

    def negate(self, part: dict[str, Any], node: Node) -> dict[str, Any]:
        assert isinstance(node, Cmp)  # negation normal form: never above $and/$or
        if node.op == "$eq":
            return {node.field: {"$ne": _num(node.value)}}
        if node.op == "$in":
            assert isinstance(node.value, tuple)
            return {node.field: {"$nin": [_num(v) for v in node.value]}}
        not_a_number = {NUM_MARK + node.field: {"$nin": ["int", "float"]}}
        return {"$or": [{node.field: {RANGE_FLIP[node.op]: _num(node.value)}}, not_a_number]}

    def eq(self, field: str, value: Any) -> dict[str, Any]:
        return {field: {"$eq": _num(value)}}

    def is_in(self, field: str, values: tuple[Any, ...]) -> dict[str, Any]:
        return {field: {"$in": [_num(v) for v in values]}}

    def range(self, field: str, op: str, value: Any) -> dict[str, Any]:
        return {field: {op: _num(value)}}


_COMPILER = _Where()


def to_where(node: Node) -> dict[str, Any]:
    """Filter tree -> Chroma ``where`` (after negation normal form)."""
    return _COMPILER.compile(push_not(node))


class ChromaOptions(StoreOptions):
    # Chroma's query planner: 998 atoms failed, 10,000 crashed the process
    engine_max_filter_atoms = SQLITE_MAX_FILTER_ATOMS
    remote_keys = ("host",)
    name_key = "collection"

    path: str | None = Field(default=None, description="folder for PersistentClient; None with no host = RAM")
    host: str | None = Field(default=None, description="Chroma server host (HttpClient)")
    port: int = 8000
    ssl: bool = False
    headers: dict[str, str] | None = None
    collection: CollectionName = Field(
        default="ragstore",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$",
        description="3-512 of letters, digits, '.', '_', '-'; starts and ends alphanumeric; no '..'",
    )

    ef_search: int | None = Field(default=None, gt=0)
    ef_construction: int | None = Field(default=None, gt=0)
    max_neighbors: int | None = Field(default=None, gt=0)


class ChromaStore(VectorStore):
    name = "chroma"
    one_process_per_path = True  # Chroma's embedded engine is single-process
    tunable = ("ef_search",)
    Options = ChromaOptions

    options: ChromaOptions

    def _connect(self) -> None:
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        chromadb = require("chromadb", "chroma", "Chroma (chromadb)")
        from chromadb.config import Settings

        opts = self.options
        settings = Settings(anonymized_telemetry=False)
        self.path = Path(opts.path) if opts.path is not None else None
        self.persistent = opts.host is not None or self.path is not None
        try:
            if opts.host is not None:
                self.client = chromadb.HttpClient(
                    host=opts.host, port=opts.port, ssl=opts.ssl, headers=opts.headers, settings=settings
                )
            elif self.path is not None:
                self.path.mkdir(parents=True, exist_ok=True)
                self.client = chromadb.PersistentClient(path=str(self.path), settings=settings)
            else:
                self.client = chromadb.EphemeralClient(settings=settings)
            self.max_batch = int(self.client.get_max_batch_size())
            self._existing = {c.name if hasattr(c, "name") else str(c) for c in self.client.list_collections()}
        except Exception as exc:  # connection errors differ between client kinds
            raise BackendUnavailableError(
                f"cannot open Chroma ({opts.host or opts.path or 'in-memory'}): {exc}"
            ) from exc
        self.col: Any = None
        self._spaces: dict[str, Any] = {}  # namespace -> its collection (namespaced stores; found or made)

    # ----------------------------------------------------------------- namespaces: a collection each
    def _space_name(self, space: str) -> str:
        digest = hashlib.sha256(space.encode("utf-8")).hexdigest()[:24]
        return f"{self.options.collection[:400]}-ns-{digest}"

    def _space(self, space: str, create: bool = False) -> Any:
        """The collection of ``space`` (the configured one for the default namespace); None when it has none."""
        if space == DEFAULT_NAMESPACE:
            return self.col
        found = self._spaces.get(space)
        if found is not None:
            return found
        name = self._space_name(space)
        try:
            found = self.client.get_collection(name, embedding_function=None)
        except Exception:  # not made yet (Chroma raises its own NotFound kinds)
            if not create:
                return None
            config = {"hnsw": {"space": _SPACE[self.metric], **self._hnsw()}}
            found = self.client.get_or_create_collection(
                name,
                embedding_function=None,
                configuration=config,
                metadata={"rs_ns": space, "rs_of": self.options.collection},
            )
        self._spaces[space] = found
        return found

    def _all_spaces(self) -> list[Any]:
        """Every collection of this store: the configured one and each namespace's (by name and owner)."""
        if not self.options.namespaces:
            return [self.col]
        prefix = f"{self.options.collection[:400]}-ns-"
        known = {col.name: col for col in self._spaces.values()}
        out = [self.col]
        for entry in self.client.list_collections():
            name = entry.name if hasattr(entry, "name") else str(entry)
            if not name.startswith(prefix):
                continue
            col = known.get(name) or self.client.get_collection(name, embedding_function=None)
            if (col.metadata or {}).get("rs_of") == self.options.collection:
                self._spaces[str(col.metadata["rs_ns"])] = col
                out.append(col)
        return out

    def _targets(self, node: Node | None) -> list[tuple[Any, Node | None]]:
        """(collection, filter left for it) of each collection a call with ``node`` must ask: a tenant's call
        its namespace's collection alone, with the caller's filter."""
        if not self.options.namespaces:
            return [(self.col, node)]
        space, rest = split_scope(node)
        if space is not None:
            col = self._space(space)
            return [] if col is None else [(col, rest)]
        return [(col, node) for col in self._all_spaces()]

    def _by_space(self, ids: list[str]) -> list[tuple[Any, list[str]]]:
        if not self.options.namespaces:
            return [(self.col, ids)]
        groups: dict[str, list[str]] = {}
        for i in ids:
            groups.setdefault(split_id(i)[0], []).append(i)
        out = []
        for space, members in groups.items():
            col = self._space(space)
            if col is not None:
                out.append((col, members))
        return out

    def _namespace_counts(self) -> dict[str, int]:
        counts = {DEFAULT_NAMESPACE: int(self.col.count())}
        for col in self._all_spaces()[1:]:
            counts[str(col.metadata["rs_ns"])] = int(col.count())
        return counts

    def _hnsw(self) -> dict[str, Any]:
        keys = ("ef_search", "ef_construction", "max_neighbors")
        return {k: getattr(self.options, k) for k in keys if getattr(self.options, k) is not None}

    def _stored(self) -> tuple[int, str | None] | None:
        if self.options.collection not in self._existing:  # asked again while empty: another process may make it
            self._existing = {c.name if hasattr(c, "name") else str(c) for c in self.client.list_collections()}
        if self.options.collection not in self._existing:
            return None
        self.col = self.client.get_collection(self.options.collection, embedding_function=None)
        meta = self.col.metadata or {}
        dim = meta.get("rs_dim")
        return None if dim is None else (int(dim), str(meta.get("rs_metric", "cosine")))

    def _capabilities(self) -> Capabilities:
        return Capabilities(persistent=self.persistent, exact=False)  # HNSW (exact below its sync threshold)

    def _init_dim(self, dim: int) -> None:
        config = {"hnsw": {"space": _SPACE[self.metric], **self._hnsw()}}
        self.col = self.client.get_or_create_collection(
            self.options.collection,
            embedding_function=None,
            configuration=config,
            metadata={"rs_dim": dim, "rs_metric": self.metric},
        )

    def _tune(self, name: str, value: Any) -> None:
        super()._tune(name, value)
        if self.col is not None:  # the collection exists: tell Chroma (takes effect for the next query)
            for col in self._all_spaces():
                col.modify(configuration={"hnsw": {name: value}})

    def _upsert(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Metadata]) -> None:
        if not self.options.namespaces:
            self._upsert_into(self.col, ids, vectors, texts, metadatas)
            return
        rows: dict[str, list[int]] = {}
        for pos, meta in enumerate(metadatas):
            rows.setdefault(str(meta[NS_FIELD]), []).append(pos)
        for space, members in rows.items():
            self._upsert_into(
                self._space(space, create=True),
                [ids[p] for p in members],
                vectors[members],
                [texts[p] for p in members],
                [metadatas[p] for p in members],
            )

    def _upsert_into(
        self, col: Any, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Metadata]
    ) -> None:
        first_load = col.count() == 0  # nothing stored yet: no old metadata to replace
        for s in range(0, len(ids), self.max_batch):
            e = s + self.max_batch
            old_keys: dict[str, set[str]] = {}
            if not first_load:
                old = col.get(ids=ids[s:e], include=["metadatas"])
                old_keys = {i: set(m or {}) for i, m in zip(old["ids"], old["metadatas"], strict=True)}
            metas: list[dict[str, Any] | None] = []
            for i, m in zip(ids[s:e], metadatas[s:e], strict=True):
                meta = _store_meta(m)
                meta.update({k: None for k in old_keys.get(i, set()) - meta.keys()})  # None deletes a key
                metas.append(meta or None)
            col.upsert(ids=ids[s:e], embeddings=vectors[s:e], documents=texts[s:e], metadatas=metas)

    def _score(self, distance: float) -> float:
        if self.metric == "l2":
            return -float(np.sqrt(max(distance, 0.0)))
        return 1.0 - float(distance)

    def _search(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        hits: list[Hit] = []
        for col, rest in self._targets(node):
            res = col.query(
                query_embeddings=[vector],
                n_results=k,
                where=to_where(rest) if rest is not None else None,
                include=["documents", "metadatas", "distances"],
            )
            hits += [
                Hit(i, self._score(d), t, _user_meta(m))
                for i, d, t, m in zip(
                    res["ids"][0], res["distances"][0], res["documents"][0], res["metadatas"][0], strict=True
                )
            ]
        return hits  # the base class ranks them (several collections: merged by score, ties by id)

    def _docs(self, res: dict[str, Any]) -> list[Document]:
        return [
            Document(id=i, text=t, metadata=_user_meta(m), vector=np.asarray(v, dtype=np.float32))
            for i, t, m, v in zip(res["ids"], res["documents"], res["metadatas"], res["embeddings"], strict=True)
        ]

    def _get(self, ids: list[str]) -> list[Document]:
        out: list[Document] = []
        for col, members in self._by_space(ids):
            out += self._docs(col.get(ids=members, include=["documents", "metadatas", "embeddings"]))
        return out

    def _get_where(self, node: Node | None, limit: int | None) -> list[Document]:
        out: list[Document] = []
        for col, rest in self._targets(node):
            left = None if limit is None else limit - len(out)
            if left is not None and left <= 0:
                break
            where = to_where(rest) if rest is not None else None
            out += self._docs(col.get(where=where, limit=left, include=["documents", "metadatas", "embeddings"]))
        return out

    def _ids_where(self, node: Node | None) -> list[str]:
        out: list[str] = []
        for col, rest in self._targets(node):
            where = to_where(rest) if rest is not None else None
            out += list(col.get(where=where, include=[])["ids"])
        return out

    def _all_ids(self) -> list[str]:
        return self._ids_where(None)

    def _delete_ids(self, ids: list[str]) -> int:
        if not ids:  # a filter that matched nothing: Chroma refuses an empty id list
            return 0
        removed = 0
        for col, members in self._by_space(ids):
            found = list(col.get(ids=members, include=[])["ids"])  # Chroma's delete count includes unknown ids
            for s in range(0, len(found), self.max_batch):
                col.delete(ids=found[s : s + self.max_batch])
            removed += len(found)
        return removed

    def _delete_where(self, node: Node) -> int:
        return self._delete_ids(self._ids_where(node))

    def _count(self, node: Node | None) -> int:
        total = 0
        for col, rest in self._targets(node):
            total += int(col.count()) if rest is None else len(self._ids_where_in(col, rest))
        return total

    def _ids_where_in(self, col: Any, node: Node) -> list[str]:
        return list(col.get(where=to_where(node), include=[])["ids"])

    def _read_manifest(self) -> str | None:
        value = (self.col.metadata or {}).get("rs_manifest") if self.col is not None else None
        return str(value) if value else None

    def _write_manifest(self, text: str) -> None:
        assert self.col is not None
        self.col.modify(metadata={**(self.col.metadata or {}), "rs_manifest": text})

    def _drop(self) -> None:
        for col in self._all_spaces()[1:]:
            self.client.delete_collection(col.name)
        self._spaces = {}
        self.client.delete_collection(self.options.collection)
        self.col = None

    def _close(self) -> None:
        closer = getattr(self.client, "close", None)
        if callable(closer):
            closer()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None, "collection": self.options.collection}
