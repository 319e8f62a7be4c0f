"""FAISS: the embedded default. Exact (flat) or HNSW index over a SQLite sidecar.

Durability: SQLite holds ids, text, metadata *and* vectors, one transaction per write, and is the source
of truth. The FAISS index is written on ``flush``/``close`` to a temporary file and atomically renamed; it
records which SQLite generation it reflects. On open, an index from another generation (a crash between
writes, a killed process) is rebuilt from SQLite, so the last committed state is never lost.

Filters are exact: the matching ids come from SQLite and the index searches only those (an id selector on
flat indexes; exact re-scoring of the filtered set on HNSW when it is small enough), never top-k then drop.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ragstore._optional import require
from ragstore.errors import BackendUnavailableError, UnsupportedFeatureError
from ragstore.filters import Node
from ragstore.store import Capabilities, StoreOptions, VectorStore
from ragstore.types import Document, Hit, Metadata

from ._sqlite import SqliteDocs

INDEX_FILE = "index.faiss"
DB_FILE = "docs.sqlite"


class FaissOptions(StoreOptions):
    path: str | None = Field(default=None, description="folder for the index and SQLite sidecar; None = RAM")
    index: Literal["flat", "hnsw"] = "flat"
    hnsw_m: int = Field(default=32, gt=1)
    ef_construction: int = Field(default=200, gt=0)
    ef_search: int = Field(default=128, gt=0)
    exact_filter_limit: int = Field(
        default=20_000, ge=0, description="HNSW: filtered sets up to this size are re-scored exactly"
    )
    threads: int | None = Field(default=None, gt=0, description="OpenMP threads for bulk add; search uses 1")


def _digest(file: Path) -> str:
    """The fingerprint of the index file the sidecar belongs to."""
    with open(file, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _faiss() -> Any:
    return require("faiss", "faiss", "FAISS (faiss-cpu)")


class FaissStore(VectorStore):
    name = "faiss"
    tunable = ("ef_search", "exact_filter_limit")
    Options = FaissOptions

    options: FaissOptions

    def _connect(self) -> None:
        self.faiss = _faiss()
        opts = self.options
        self.path = Path(opts.path) if opts.path is not None else None
        self.index_type = opts.index
        self.threads = opts.threads or os.cpu_count() or 1
        try:
            if self.path is not None:
                self.path.mkdir(parents=True, exist_ok=True)
            self.db = SqliteDocs(self.path / DB_FILE if self.path else None)
        except Exception as exc:  # sqlite3.Error, OSError
            raise BackendUnavailableError(f"cannot open FAISS sidecar in {self.path}: {exc}") from exc
        self._index: Any = None
        self._dead: set[int] = set()  # HNSW cannot remove ids: deleted rows stay in the graph until a rebuild
        self._version = self.db.data_version() if self.path is not None else 0

    def _capabilities(self) -> Capabilities:
        return Capabilities(persistent=self.path is not None, exact=self.index_type == "flat")

    # ----------------------------------------------------------------- setup
    def _stored(self) -> tuple[int, str | None] | None:
        dim = self.db.get_info("dim")
        return None if dim is None else (int(dim), self.db.get_info("metric"))

    def _adopt(self, dim: int) -> None:
        self._open_index()

    # ----------------------------------------------------------------- other processes
    # SQLite is the source of truth and serialises writers from every process; each process keeps its own
    # index and, before each call, catches up with rows other processes added or removed since it looked.
    def _changed_elsewhere(self) -> bool:
        return self.path is not None and self.db.data_version() != self._version

    def _refresh(self) -> None:
        self._version = self.db.data_version()  # first: commits made while catching up are seen next time
        stored = self._stored()
        if stored is None:  # dropped by another process
            self._dim, self._index, self._dead = None, None, set()
            return
        dim, _ = stored
        if self._index is None or dim != self._dim:  # created, or dropped and created again, elsewhere
            self._dim = dim
            self._rebuild()
            return
        live = set(self.db.where_iids(None))
        in_index = set(self.faiss.vector_to_array(self._index.id_map).tolist()) - self._dead
        self._forget(sorted(in_index - live))
        new = sorted(live - in_index)
        if new:
            iids, vecs = self.db.vectors_for(new, dim)
            self._add(iids, vecs)

    def _new_index(self, dim: int) -> Any:
        faiss = self.faiss
        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if self.index_type == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, self.options.hnsw_m, metric)
            inner.hnsw.efConstruction = self.options.ef_construction
            inner.hnsw.efSearch = self.options.ef_search
        else:
            inner = faiss.IndexFlatIP(dim) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(dim)
        return faiss.IndexIDMap2(inner)

    def _open_index(self) -> None:
        assert self._dim is not None
        file = self.path / INDEX_FILE if self.path else None
        gen = self.db.get_info("generation") or "0"
        if (
            file is not None
            and file.exists()
            and self.db.get_info("index_generation") == gen
            and self.db.get_info("index_type") == self.index_type
            and self.db.get_info("index_sha256") == _digest(file)  # a foreign or altered index file: rebuild
        ):
            try:
                index = self.faiss.read_index(str(file))
            except RuntimeError:  # unreadable (torn or corrupted) file: SQLite still has everything
                index = None
            live = set(self.db.where_iids(None))
            if index is not None and index.d == self._dim and index.ntotal >= len(live):
                in_index = set(self.faiss.vector_to_array(index.id_map).tolist())
                if live <= in_index:
                    self._index = index
                    self._dead = in_index - live
                    return
        self._rebuild()

    @property
    def _tombstones(self) -> int:
        return len(self._dead)

    def _rebuild(self) -> None:
        assert self._dim is not None
        self._index = self._new_index(self._dim)
        iids, vecs = self.db.all_vectors(self._dim)
        if len(iids):
            self._add(iids, vecs)
        self._dead = set()

    @contextlib.contextmanager
    def _omp_threads(self, n: int) -> Iterator[None]:
        """FAISS's OpenMP setting is the process's: torch shares the same runtime, so leaving it at 1 after a
        search made every later embedding in this thread run on one core. Set it for the call, then restore."""
        before = self.faiss.omp_get_max_threads()
        self.faiss.omp_set_num_threads(n)
        try:
            yield
        finally:
            self.faiss.omp_set_num_threads(before)

    def _add(self, iids: np.ndarray, vecs: np.ndarray) -> None:
        with self._omp_threads(self.threads):
            self._index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), iids.astype(np.int64))

    def _init_dim(self, dim: int) -> None:
        with self.db.transaction():
            self.db.set_info("dim", dim)
            self.db.set_info("metric", self.metric)
            self.db.set_info("index", self.index_type)
        self._dim = dim
        self._index = self._new_index(dim)

    # ----------------------------------------------------------------- writes
    def _forget(self, iids: list[int]) -> None:
        """Drop iids from the index (flat) or leave them as tombstones (HNSW)."""
        if not iids:
            return
        if self.index_type == "hnsw":
            self._dead.update(iids)
            if len(self._dead) > max(1000, self._index.ntotal // 4):
                self._rebuild()
        else:
            self._index.remove_ids(np.asarray(iids, dtype=np.int64))

    def _upsert(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Metadata]) -> None:
        replaced, new = self.db.upsert(ids, vectors, texts, metadatas)
        self._forget(replaced)
        self._add(np.asarray(new, dtype=np.int64), vectors)

    def _delete_iids(self, iids: list[int]) -> int:
        if iids:
            self.db.delete_iids(iids)
            self._forget(iids)
        return len(iids)

    def _delete_ids(self, ids: list[str]) -> int:
        return self._delete_iids([iid for iid, _ in self.db.iids_for(ids)])

    def _delete_where(self, node: Node) -> int:
        return self._delete_iids(self.db.where_iids(node))

    def _clear(self) -> None:
        assert self._dim is not None  # the base class only clears a store that has a dimension
        self.db.clear()
        self._index = self._new_index(self._dim)
        self._dead = set()

    def _drop(self) -> None:
        self.db.drop()
        self._index = None
        self._dead = set()
        if self.path is not None:
            (self.path / INDEX_FILE).unlink(missing_ok=True)

    # ----------------------------------------------------------------- reads
    def _search(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        if self._index is None or self._index.ntotal == 0:
            return []
        with self._omp_threads(1):  # one query: more threads only add start-up cost
            return self._search_one(vector, k, node)

    def _search_one(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        faiss = self.faiss
        q = vector.reshape(1, -1)
        allowed: np.ndarray | None = None
        if node is not None:
            allowed = np.asarray(self.db.where_iids(node), dtype=np.int64)
            if allowed.size == 0:
                return []
        if self.index_type == "hnsw":
            if allowed is not None and allowed.size <= self.options.exact_filter_limit:
                return self._rescore(q[0], allowed, k)
            sel = None
            if allowed is not None:
                sel = faiss.IDSelectorBatch(allowed)
            elif self._dead:  # exclude only the tombstones, without reading every live id from SQLite
                dead = faiss.IDSelectorBatch(np.fromiter(self._dead, dtype=np.int64, count=len(self._dead)))
                sel = faiss.IDSelectorNot(dead)
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.options.ef_search, k))
        else:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed)) if allowed is not None else None
        distances, labels = self._index.search(q, k, params=params)
        pairs = [(lab, d) for lab, d in zip(labels[0].tolist(), distances[0].tolist(), strict=True) if lab >= 0]
        return self._hits(pairs)

    def _rescore(self, q: np.ndarray, iids: np.ndarray, k: int) -> list[Hit]:
        vecs = self._index.reconstruct_batch(iids)
        if self.metric == "l2":
            dist = ((vecs - q) ** 2).sum(axis=1)
            order = np.argsort(dist, kind="stable")[:k]
            return self._hits([(int(iids[i]), float(dist[i])) for i in order])
        scores = vecs @ q
        order = np.argsort(-scores, kind="stable")[:k]
        return self._hits([(int(iids[i]), float(scores[i])) for i in order])

    def _hits(self, pairs: list[tuple[int, float]]) -> list[Hit]:
        rows = self.db.rows_by_iid([iid for iid, _ in pairs])
        hits = []
        for iid, dist in pairs:
            if iid in rows:  # an HNSW tombstone never reaches here, but stay safe
                doc_id, text, meta = rows[iid]
                hits.append(Hit(id=doc_id, score=self.score_from_distance(dist), text=text, metadata=meta))
        return hits

    def _get(self, ids: list[str]) -> list[Document]:
        return self.db.documents(ids)

    def _get_where(self, node: Node | None, limit: int | None) -> list[Document]:
        return self.db.documents_where(node, limit)

    def _count(self, node: Node | None) -> int:
        return self.db.count(node)

    # ----------------------------------------------------------------- durability
    def _flush(self) -> None:
        """Write the index atomically (temp file + rename), then record which generation it holds."""
        if self.path is None or self._index is None:
            return
        gen = self.db.get_info("generation") or "0"
        fd, name = tempfile.mkstemp(dir=self.path, prefix=INDEX_FILE + ".", suffix=".tmp")  # unique per writer
        os.close(fd)
        tmp = Path(name)
        try:
            self.faiss.write_index(self._index, str(tmp))
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            digest = _digest(tmp)
            os.replace(tmp, self.path / INDEX_FILE)
        finally:
            tmp.unlink(missing_ok=True)
        with self.db.transaction():
            self.db.set_info("index_generation", gen)
            self.db.set_info("index_type", self.index_type)
            self.db.set_info("index_sha256", digest)

    def _close(self) -> None:
        try:
            self._flush()
        finally:
            self.db.close()

    def _abandon(self) -> None:
        self.db.close()  # no index file is written for a store whose open was refused

    def rebuild(self) -> None:
        """Rebuild the index from SQLite (drops HNSW tombstones)."""
        with self._lock.write(), self._engine("rebuild the index"):
            self._check_open()
            if self._dim is None:
                raise UnsupportedFeatureError("nothing to rebuild: the store is empty")
            self._rebuild()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None, "index": self.index_type}
