"""Exact in-memory store (numpy): the reference oracle every other backend is checked against.

Optionally persisted to a directory as ``vectors.npy`` + ``records.jsonl`` (no pickle), written to a
temporary folder and swapped in, so a crash mid-save leaves the previous save intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ragstore.query.filters import Node, matches
from ragstore.query.indexed import check_stored
from ragstore.query.namespaces import NS_FIELD, split_scope
from ragstore.stores.base import Capabilities, StoreOptions, VectorStore
from ragstore.types import Document, Hit, Metadata, Ranked

MANIFEST_FILE = "manifest.json"  # saved with the folder, like the records


class MemoryOptions(StoreOptions):
    path: str | None = Field(default=None, description="folder to save to on close; None keeps nothing")


class MemoryStore(VectorStore):
    """Brute-force exact search over a numpy matrix; ties are broken by id so results are deterministic."""

    name = "memory"
    one_process_per_path = True  # saves the whole folder on close
    one_opener_per_path = True  # each opener would keep its own copy in RAM
    Options = MemoryOptions

    options: MemoryOptions

    def _connect(self) -> None:
        self.path = Path(self.options.path) if self.options.path is not None else None
        self._records: dict[str, tuple[np.ndarray, str, Metadata]] = {}
        self._matrix: np.ndarray | None = None
        self._order: list[str] = []
        #: row positions of each namespace (a namespaced store's tenant index), rebuilt with the matrix
        self._spaces: dict[str, np.ndarray] = {}
        self._space_rows: dict[str, np.ndarray] = {}  # each namespace's rows, copied out once per write

    checks_stored_types = True

    def _declare_indexed(self) -> None:
        check_stored(self.declared, ((doc_id, meta) for doc_id, (_, _, meta) in self._records.items()))

    def _plan(self, node: Node | None, k: int) -> dict[str, Any]:
        total = len(self._records)
        if node is None:
            return {"strategy": "exact", "detail": "every row scored (the reference store)", "total": total}
        matching = sum(1 for _, _, meta in self._records.values() if matches(node, meta))
        detail = "every row's metadata tested, exact scores over the matches (the reference store)"
        return {"strategy": "exact", "detail": detail, "matching": matching, "total": total}

    def _capabilities(self) -> Capabilities:
        # saved as a whole folder on flush/close: a write is durable only after that
        return Capabilities(persistent=self.path is not None, durable_writes=self.path is None)

    # ----------------------------------------------------------------- persistence
    def _stored(self) -> tuple[int, str | None] | None:
        if self.path is None or not (self.path / "records.jsonl").exists():
            return None
        info = json.loads((self.path / "info.json").read_text(encoding="utf-8"))
        return None if info.get("dim") is None else (int(info["dim"]), info.get("metric"))

    def _adopt(self, dim: int) -> None:
        assert self.path is not None
        matrix = np.load(self.path / "vectors.npy", allow_pickle=False)
        with (self.path / "records.jsonl").open(encoding="utf-8") as fh:
            for row, line in zip(matrix, fh, strict=True):
                rec = json.loads(line)
                self._records[rec["id"]] = (row.astype(np.float32), rec["text"], rec["metadata"])
        manifest = self.path / MANIFEST_FILE
        self._manifest_text = manifest.read_text(encoding="utf-8") if manifest.exists() else None

    def _save(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        ids = list(self._records)
        dim = self._dim or 0
        matrix = np.stack([self._records[i][0] for i in ids]) if ids else np.zeros((0, dim), np.float32)
        np.save(tmp / "vectors.npy", matrix, allow_pickle=False)
        with (tmp / "records.jsonl").open("w", encoding="utf-8") as fh:
            for i in ids:
                _, text, meta = self._records[i]
                fh.write(json.dumps({"id": i, "text": text, "metadata": meta}, ensure_ascii=False) + "\n")
        (tmp / "info.json").write_text(json.dumps({"metric": self.metric, "dim": self._dim}), encoding="utf-8")
        if self._manifest_text is not None:
            (tmp / MANIFEST_FILE).write_text(self._manifest_text, encoding="utf-8")
        old = self.path.with_name(self.path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)

    # ----------------------------------------------------------------- hooks
    def _init_dim(self, dim: int) -> None:
        return None

    def _dirty(self) -> None:
        self._matrix = None

    def _upsert(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Metadata]) -> None:
        for i, vec, text, meta in zip(ids, vectors, texts, metadatas, strict=True):
            self._records[i] = (vec.copy(), text, dict(meta))
        self._dirty()

    def _ensure_matrix(self) -> np.ndarray:
        if self._matrix is None:
            self._order = list(self._records)
            dim = self._dim or 0
            # float64 once per write, not per query: the oracle scores in double precision
            self._matrix = (
                np.stack([self._records[i][0] for i in self._order]).astype(np.float64)
                if self._order
                else np.zeros((0, dim), dtype=np.float64)
            )
            self._spaces, self._space_rows = {}, {}
            if self.options.namespaces:
                rows: dict[str, list[int]] = {}
                for pos, i in enumerate(self._order):
                    rows.setdefault(str(self._records[i][2].get(NS_FIELD)), []).append(pos)
                self._spaces = {ns: np.asarray(p, dtype=np.int64) for ns, p in rows.items()}
        return self._matrix

    def scores(self, vector: np.ndarray) -> np.ndarray:
        """Exact scores of ``vector`` against every stored row (row order = ``self._order``)."""
        return self._score_rows(self._ensure_matrix(), vector)

    def _score_rows(self, matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
        q = vector.astype(np.float64)
        if self.metric == "l2":
            return -np.sqrt(np.maximum(((matrix - q) ** 2).sum(axis=1), 0.0))
        return matrix @ q

    def _search(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        hits = []
        for doc_id, score in self._top(vector, k, node):
            _, text, meta = self._records[doc_id]
            hits.append(Hit(id=doc_id, score=score, text=text, metadata=dict(meta)))
        return hits

    def _search_scores(self, vector: np.ndarray, k: int, node: Node | None) -> Ranked:
        top = self._top(vector, k, node)
        return Ranked([i for i, _ in top], np.fromiter((s for _, s in top), dtype=np.float64, count=len(top)))

    def _top(self, vector: np.ndarray, k: int, node: Node | None) -> list[tuple[str, float]]:
        """(id, score) of the k best matching rows, ties by id: the k-th score's ties are all kept before
        the exact sort, so the partial selection never changes which ids win."""
        if not self._records:
            return []
        space, rest = split_scope(node) if self.options.namespaces else (None, node)
        if space is not None:  # the tenant's rows only: scored and tested, nobody else's
            matrix = self._ensure_matrix()
            order = self._order
            pos = self._spaces.get(space, np.zeros(0, dtype=np.int64))
            if rest is not None:
                pos = pos[[matches(rest, self._records[order[p]][2]) for p in pos.tolist()]] if pos.size else pos
            if pos.size == 0:
                return []
            if rest is None:
                rows = self._space_rows.get(space)
                if rows is None:
                    rows = self._space_rows[space] = matrix[pos]
            else:
                rows = matrix[pos]
            s = self._score_rows(rows, vector)
        else:
            scores = self.scores(vector)
            order = self._order
            if node is None:
                pos = np.arange(len(order))
            else:
                pos = np.fromiter(
                    (p for p, i in enumerate(order) if matches(node, self._records[i][2])), dtype=np.int64
                )
            if pos.size == 0:
                return []
            s = scores[pos]
        if pos.size > k:
            kth = -np.partition(-s, k - 1)[k - 1]
            keep = s >= kth
            pos, s = pos[keep], s[keep]
        picked = sorted(zip(s.tolist(), pos.tolist(), strict=True), key=lambda t: (-t[0], order[t[1]]))[:k]
        return [(order[p], sc) for sc, p in picked]

    def _doc(self, i: str) -> Document:
        vec, text, meta = self._records[i]
        return Document(id=i, text=text, metadata=dict(meta), vector=vec.copy())

    def _fields(self, ids: list[str]) -> dict[str, tuple[str, Metadata]]:
        return {i: (self._records[i][1], dict(self._records[i][2])) for i in ids if i in self._records}

    def _get(self, ids: list[str]) -> list[Document]:
        return [self._doc(i) for i in ids if i in self._records]

    def _where(self, node: Node | None) -> list[str]:
        return [i for i, rec in self._records.items() if node is None or matches(node, rec[2])]

    def _get_where(self, node: Node | None, limit: int | None) -> list[Document]:
        return [self._doc(i) for i in self._where(node)[:limit]]

    def _all_ids(self) -> list[str]:
        return list(self._records)

    def _delete_ids(self, ids: list[str]) -> int:
        removed = sum(1 for i in ids if self._records.pop(i, None) is not None)
        if removed:
            self._dirty()
        return removed

    def _delete_where(self, node: Node) -> int:
        return self._delete_ids(self._where(node))

    def _count(self, node: Node | None) -> int:
        return len(self._records) if node is None else len(self._where(node))

    def _clear(self) -> None:
        self._records.clear()
        self._dirty()

    def _drop(self) -> None:
        self._records.clear()
        self._dirty()
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    def _close(self) -> None:
        if self.path is not None:
            self._save()

    def _abandon(self) -> None:
        return None  # nothing to release, and saving would overwrite the folder this open refused

    def _flush(self) -> None:
        if self.path is not None:
            self._save()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None}
