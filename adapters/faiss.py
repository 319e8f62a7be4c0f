"""FAISS: the embedded default. Exact (flat), HNSW or quantised IVF (PQ, SQ8) index over a SQLite sidecar.

Durability: SQLite holds ids, text, metadata *and* vectors, one transaction per write, and is the source
of truth. The FAISS index is written on ``flush``/``close`` to a temporary file and atomically renamed; it
records which SQLite generation it reflects. On open, an index from another generation (a crash between
writes, a killed process) is rebuilt from SQLite, so the last committed state is never lost.

Filters are exact: the matching ids come from SQLite and the index searches only those (an id selector on
flat indexes; exact re-scoring of the filtered set on HNSW when it is small enough), never top-k then drop.

Quantised IVF (``ivf_pq``, ``ivf_sq8``) keeps only compressed codes in memory: PQ48 is 56 bytes a vector
against 1,536 for float32. Every search re-scores ``k * rescore`` candidates exactly with the float vectors
SQLite already holds on disk, so scores keep their meaning and the ranking its precision. IVF needs training
data: below ``ivf_train_at`` vectors the index is exact flat; at that size it is trained on what is stored,
and re-trained (rebuilt) each time the store has grown eightfold since, so the lists keep up with the data.
A filtered search widens ``nprobe`` by the filter's selectivity (or re-scores small filtered sets exactly).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ragstore._optional import require
from ragstore.errors import BackendUnavailableError, UnsupportedFeatureError
from ragstore.query.filters import Node
from ragstore.stores.base import SQLITE_MAX_FILTER_ATOMS, Capabilities, StoreOptions, VectorStore
from ragstore.types import Document, Hit, Metadata, Ranked

from ._sqlite import SqliteDocs

INDEX_FILE = "index.faiss"
IVF = ("ivf_pq", "ivf_sq8")
DB_FILE = "docs.sqlite"


#: a filter matching at most this many rows keeps its vectors at hand between searches (a tenant's documents)
_KEEP_ROWS = 4096
#: ... for this many filters (the most recently used; at most ~100 MB of 384-d float32 rows)
_KEEP_FILTERS = 64


class FaissOptions(StoreOptions):
    engine_max_filter_atoms = SQLITE_MAX_FILTER_ATOMS  # SQLite's expression depth (FAISS's sidecar)
    path: str | None = Field(default=None, description="folder for the index and SQLite sidecar; None = RAM")
    index: Literal["flat", "hnsw", "ivf_pq", "ivf_sq8"] = "flat"
    hnsw_m: int = Field(default=32, gt=1)
    ef_construction: int = Field(default=200, gt=0)
    ef_search: int = Field(default=128, gt=0)
    threads: int | None = Field(default=None, gt=0, description="OpenMP threads for bulk add; search uses 1")
    nlist: int | None = Field(default=None, gt=0, description="IVF lists; None = 4 * sqrt(vectors) at training")
    nprobe: int | None = Field(default=None, gt=0, description="IVF lists searched; None = 1/32 of them, >= 32")
    pq_m: int = Field(default=48, gt=0, description="ivf_pq: bytes per code (a divisor of the dimension)")
    rescore: int | None = Field(
        default=None, gt=0, description="IVF: k * rescore candidates re-scored exactly; None = 25 (PQ), 4 (SQ8)"
    )
    ivf_train_at: int = Field(default=10_000, gt=0, description="IVF: exact flat below this many vectors")


def _digest(file: Path) -> str:
    """The fingerprint of the index file the sidecar belongs to."""
    with open(file, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _faiss() -> Any:
    return require("faiss", "faiss", "FAISS (faiss-cpu)")


class FaissStore(VectorStore):
    name = "faiss"
    tunable = ("ef_search", "exact_filter_limit", "nprobe", "rescore")
    Options = FaissOptions
    indexes_fields = True  # the sidecar's typed ``fields`` table
    checks_stored_types = True

    options: FaissOptions

    def _connect(self) -> None:
        self._rows_kept: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._rows_lock = threading.Lock()
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
        self._trained_at = 0  # IVF: how many vectors the lists were trained on (0 = still exact flat)
        self._version = self.db.data_version() if self.path is not None else 0

    def _capabilities(self) -> Capabilities:
        return Capabilities(persistent=self.path is not None, exact=self.index_type == "flat")

    # ----------------------------------------------------------------- setup
    def _stored(self) -> tuple[int, str | None] | None:
        dim = self.db.get_info("dim")
        return None if dim is None else (int(dim), self.db.get_info("metric"))

    def _adopt(self, dim: int) -> None:
        self._forget_rows()
        self._open_index()

    # ----------------------------------------------------------------- other processes
    # SQLite is the source of truth and serialises writers from every process; each process keeps its own
    # index and, before each call, catches up with rows other processes added or removed since it looked.
    def _changed_elsewhere(self) -> bool:
        return self.path is not None and self.db.data_version() != self._version

    def _refresh(self) -> None:
        self._forget_rows()
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
        in_index = self._ids_in(self._index) - self._dead
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

    def _ivf(self, index: Any) -> Any:
        """The IVF index inside ``index``, or None for flat and HNSW."""
        return None if hasattr(index, "id_map") else self.faiss.extract_index_ivf(index)

    def _ids_in(self, index: Any) -> set[int]:
        ivf = self._ivf(index)
        if ivf is None:
            return set(self.faiss.vector_to_array(index.id_map).tolist())
        lists = ivf.invlists
        parts = [
            self.faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(ivf.nlist)
            if lists.list_size(i)
        ]
        return set(np.concatenate(parts).tolist()) if parts else set()

    def _new_ivf(self, vecs: np.ndarray) -> Any:
        """An IVF index trained on ``vecs``: lists and code size fitted to how many there are."""
        faiss, opts, (n, dim) = self.faiss, self.options, vecs.shape
        nlist = max(1, min(opts.nlist or int(4 * np.sqrt(n)), n // 39))  # FAISS wants >= 39 points per list
        if self.index_type == "ivf_pq":
            m = max(d for d in range(1, min(opts.pq_m, dim) + 1) if dim % d == 0)
            bits = int(min(8, max(1, np.floor(np.log2(max(n // 39, 2))))))  # 256 centroids need ~10K points
            codes = f"PQ{m}x{bits}"
        else:
            codes = "SQ8"
        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        index = faiss.index_factory(dim, f"IVF{nlist},{codes}", metric)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.cp.min_points_per_centroid = 1  # lists and codes are sized to the data above: no warnings on stderr
        if self.index_type == "ivf_pq":
            ivf.pq.cp.min_points_per_centroid = 1
            ivf.pq.cp.max_points_per_centroid = 64  # 16K samples, 15 rounds: a third of the time, and the
            ivf.pq.cp.niter = 15  # codes only pick candidates (exact re-scoring decides the ranking)
            ivf.do_polysemous_training = False  # only for Hamming pre-filtering, which is off; 50x the training time
        rng = np.random.default_rng(0)
        sample = vecs if n <= nlist * 64 else vecs[np.sort(rng.choice(n, nlist * 64, replace=False))]
        with self._omp_threads(self.threads):
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
        return index

    def _open_index(self) -> None:
        assert self._dim is not None
        if self.index_type == "flat":  # a flat index is its vectors: added from the slots file, no file of its own
            self._rebuild()
            return
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
                in_index = self._ids_in(index)
                if live <= in_index:
                    self._index = index
                    self._dead = in_index - live
                    # how many vectors the lists were trained on (recorded with the file), not how many it
                    # holds now: the latter postponed the next eightfold retraining after every reopen
                    trained = self.db.get_info("index_trained_at") or index.ntotal
                    self._trained_at = int(trained) if self._ivf(index) is not None else 0
                    return
        self._rebuild()

    @property
    def _tombstones(self) -> int:
        return len(self._dead)

    def _rebuild(self) -> None:
        assert self._dim is not None
        iids, vecs = self.db.all_vectors(self._dim)
        self._trained_at = 0
        if self.index_type in IVF and len(iids) >= self.options.ivf_train_at:
            self._index = self._new_ivf(vecs)
            self._trained_at = len(iids)
        else:
            self._index = self._new_index(self._dim)
        if len(iids):
            self._add(iids, vecs)
        self._dead = set()

    def _maybe_train(self) -> None:
        """IVF: train once the store is big enough, and again each time it has grown eightfold."""
        if self.index_type not in IVF:
            return
        n = self._index.ntotal
        if n >= self.options.ivf_train_at and (self._trained_at == 0 or n >= 8 * self._trained_at):
            self._rebuild()

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
        self._forget_rows()
        with self.db.transaction():
            self.db.set_info("dim", dim)
            self.db.set_info("metric", self.metric)
            self.db.set_info("index", self.index_type)
        self._dim = dim
        self._index = self._new_index(dim)

    def _declare_indexed(self) -> None:
        if self.declared:
            self.db.declare(dict(self.declared))

    def _plan(self, node: Node | None, k: int) -> dict[str, Any]:
        total = self._matching(None) if self._index is not None else 0
        if node is None:
            return {"strategy": "ann" if self.index_type != "flat" else "exact", "matching": total, "total": total}
        matching = int(self.db.matching_iids(node).size)
        ivf = bool(self._trained_at)
        strategy = self.choose_plan(matching, exact=False)
        if strategy == "filtered_ann" and not ivf and self.index_type != "hnsw":
            strategy = "exact"
        detail = {
            "exact": "flat index: every vector's score, the matching rows kept by an id selector",
            "prefilter": f"exact scores over the {matching} matching rows (<= exact_filter_limit)",
            "filtered_ann": (
                f"IVF lists probed {total / max(matching, 1):.1f}x wider for the filter's share"
                if ivf
                else f"HNSW walk with an id selector (ef_search {max(self.options.ef_search, k)})"
            ),
        }[strategy]
        return {"strategy": strategy, "detail": detail, "matching": matching, "total": total}

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
        self._forget_rows()
        replaced, new = self.db.upsert(ids, vectors, texts, metadatas)
        self._forget(replaced)
        self._add(np.asarray(new, dtype=np.int64), vectors)
        self._maybe_train()

    def _delete_iids(self, iids: list[int]) -> int:
        if iids:
            self.db.delete_iids(iids)
            self._forget(iids)
        return len(iids)

    def _delete_ids(self, ids: list[str]) -> int:
        self._forget_rows()
        return self._delete_iids([iid for iid, _ in self.db.iids_for(ids)])

    def _delete_where(self, node: Node) -> int:
        self._forget_rows()
        return self._delete_iids(self.db.where_iids(node))

    def _clear(self) -> None:
        self._forget_rows()
        assert self._dim is not None  # the base class only clears a store that has a dimension
        self.db.clear()
        self._index = self._new_index(self._dim)
        self._dead = set()
        self._trained_at = 0

    def _drop(self) -> None:
        self._forget_rows()
        self.db.drop()
        self._index = None
        self._dead = set()
        self._trained_at = 0
        if self.path is not None:
            (self.path / INDEX_FILE).unlink(missing_ok=True)

    # ----------------------------------------------------------------- reads
    def _search(self, vector: np.ndarray, k: int, node: Node | None, fields: bool = True) -> list[Hit]:
        return self._hits(self._pairs(vector, k, node), fields)

    def _search_bare(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        return self._search(vector, k, node, fields=False)

    def _search_scores(self, vector: np.ndarray, k: int, node: Node | None) -> Ranked:
        pairs = self._pairs(vector, k, node)  # nearest first, from every search path
        ids = self.db.ids_by_iid([iid for iid, _ in pairs])
        kept = [(ids[iid], d) for iid, d in pairs if iid in ids]
        dist = np.fromiter((d for _, d in kept), dtype=np.float64, count=len(kept))
        return Ranked([i for i, _ in kept], -np.sqrt(np.maximum(dist, 0.0)) if self.metric == "l2" else dist)

    def _pairs(self, vector: np.ndarray, k: int, node: Node | None) -> list[tuple[int, float]]:
        """(iid, engine distance) of the ``k`` nearest matching vectors."""
        if self._index is None or self._index.ntotal == 0:
            return []
        with self._omp_threads(1):  # one query: more threads only add start-up cost
            return self._search_one(vector, k, node)

    def _fields(self, ids: list[str]) -> dict[str, tuple[str, Metadata]]:
        return self.db.fields_by_id(ids)

    def _search_one(self, vector: np.ndarray, k: int, node: Node | None) -> list[tuple[int, float]]:
        faiss = self.faiss
        q = vector.reshape(1, -1)
        allowed: np.ndarray | None = None
        if node is not None:
            allowed = self.db.matching_iids(node)
            if allowed.size == 0:
                return []
        if self._trained_at:
            return self._search_ivf(q, k, allowed)
        if allowed is not None and allowed.size <= self.options.exact_filter_limit:
            # pre-filter: the matching vectors alone, scored exactly (a small set -- a tenant -- kept at hand)
            return self._rescore(q[0], allowed, k, remember=allowed.size <= _KEEP_ROWS)
        if self.index_type == "hnsw":
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
        if len(pairs) < min(
            k, self._matching(allowed)
        ):  # a graph walk that ran out before k: exact over the matching rows
            rows = allowed if allowed is not None else np.asarray(self.db.where_iids(None), dtype=np.int64)
            return self._rescore(q[0], rows, k)
        return pairs

    def _matching(self, allowed: np.ndarray | None) -> int:
        """How many live documents a search may return: the filter's rows, or every row but the tombstones."""
        return int(allowed.size) if allowed is not None else self._index.ntotal - len(self._dead)

    def _search_ivf(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """Candidates from the compressed codes, then exact scores from the float vectors in SQLite."""
        faiss, opts = self.faiss, self.options
        # defaults measured at 1M MiniLM-like vectors (benchmarks/results/scale.md): PQ48 codes need ~250
        # candidates for recall@10 >= 0.95, SQ8 codes ~40; ~3% of the lists hold the true neighbours
        nlist = self._ivf(self._index).nlist
        nprobe, sel = opts.nprobe or max(32, nlist // 32), None
        rescore = opts.rescore or (25 if self.index_type == "ivf_pq" else 4)
        if allowed is not None:
            if allowed.size <= opts.exact_filter_limit:
                return self._rescore(q[0], allowed, k)
            # a filter keeping 1 in s vectors leaves ~1/s of each list: probe s times as many lists
            nprobe = int(np.ceil(nprobe * self._index.ntotal / allowed.size))
            sel = faiss.IDSelectorBatch(allowed)
        # k results whenever k documents match: lists hold unequal shares, so a short answer widens nprobe
        # (fourfold each time) until enough candidates come back or every list has been read
        want = min(k, self._matching(allowed))
        nprobe = min(nprobe, nlist)
        while True:
            params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
            _, labels = self._index.search(q, k * rescore, params=params)
            cands = labels[0][labels[0] >= 0]
            if cands.size >= want or nprobe >= nlist:
                break
            nprobe = min(nlist, nprobe * 4)
        return self._rescore(q[0], cands, k) if cands.size else []

    def _rescore(self, q: np.ndarray, iids: np.ndarray, k: int, remember: bool = False) -> list[tuple[int, float]]:
        if self._trained_at:  # codes are lossy: the float vectors live in SQLite
            iids, vecs = self.db.vectors_for(iids.tolist(), self._dim or 0)
        elif remember:
            vecs = self._kept_rows(iids)
        else:
            vecs = self._index.reconstruct_batch(iids)
        if self.metric == "l2":
            dist = ((vecs - q) ** 2).sum(axis=1)
            order = np.argsort(dist, kind="stable")[:k]
            return [(int(iids[i]), float(dist[i])) for i in order]
        scores = vecs @ q
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(iids[i]), float(scores[i])) for i in order]

    def _forget_rows(self) -> None:
        """Every write (or a reopen) drops the remembered rows: vectors may have moved under the same iids."""
        with self._rows_lock:
            self._rows_kept.clear()

    def _kept_rows(self, iids: np.ndarray) -> np.ndarray:
        """The vectors of a remembered filter's rows (``SqliteDocs.matching_iids`` hands back the same array
        until the next write), read out of the index once: a tenant's search then scores a contiguous block."""
        kept = self._rows_kept
        with self._rows_lock:
            found = kept.get(id(iids))
            if found is not None and found[0] is iids:  # the entry holds the array: its id is not reused
                kept.move_to_end(id(iids))
                return found[1]
        vecs = self._index.reconstruct_batch(iids)
        with self._rows_lock:
            kept[id(iids)] = (iids, vecs)
            while len(kept) > _KEEP_FILTERS:
                kept.popitem(last=False)
        return vecs

    def _hits(self, pairs: list[tuple[int, float]], fields: bool = True) -> list[Hit]:
        if not fields:
            ids = self.db.ids_by_iid([iid for iid, _ in pairs])
            return [Hit(ids[iid], self.score_from_distance(d), "", {}) for iid, d in pairs if iid in ids]
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

    def _scan(self, cursor: str | None, limit: int) -> Iterator[tuple[list[Document], str]]:
        while True:
            docs = self.db.documents_after(cursor, limit)
            if not docs:
                return
            cursor = docs[-1].id
            yield docs, cursor

    def _count(self, node: Node | None) -> int:
        return self.db.count(node)

    # ----------------------------------------------------------------- durability
    def _flush(self) -> None:
        """Write the index atomically (temp file + rename), then record which generation it holds."""
        if self.path is None or self._index is None:
            return
        self.db.vectors.sync()
        if self.index_type == "flat":
            (self.path / INDEX_FILE).unlink(missing_ok=True)  # an earlier version's copy of the slots
            return
        gen = self.db.get_info("generation") or "0"
        if (
            self.db.get_info("index_generation") == gen
            and self.db.get_info("index_type") == self.index_type
            and (self.path / INDEX_FILE).exists()
        ):
            return  # the file already holds every write: a store only read (a copy's source) writes nothing
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
            self.db.set_info("index_trained_at", self._trained_at)

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
            self.db.set_info("index_generation", "")  # the rebuilt index differs from the file: write it on flush

    def _read_manifest(self) -> str | None:
        return self.db.get_info("manifest")

    def _write_manifest(self, text: str) -> None:
        self.db.set_info("manifest", text)

    def _describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": str(self.path) if self.path else None, "index": self.index_type}
        if self._trained_at and self._index is not None:
            out["ivf_lists"] = self._ivf(self._index).nlist
        return out
