"""The BM25 index beside a store: one SQLite file (or RAM), written in the store's write path.

Why SQLite and not an engine's own text search: one scorer for every engine (the same terms, the same BM25,
the same filter semantics), transactions, and several processes sharing one file safely (WAL). Scoring is
Lucene's BM25 (``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``, ``tf / (tf + k1 * (1 - b + b * len / avglen))``)
computed at query time from postings, so ``k1`` and ``b`` can change on an open store.

Crash safety is the collection's (``ragstore.stores.collection``): every write here carries the collection's write
generation, stored in the same transaction as the postings, so an index that missed a write (a crash between
the store's write and this one) is told apart by generation, not by count, and rebuilt from the store. The
file records the collection it belongs to (``owner``); a file of another collection is refused.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .._db import connect
from ..query.filters import Node, matches
from ..types import Hit, Metadata, Ranked
from .analyzer import Analyzer, default_analyzer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    iid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    len INTEGER NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS postings (
    term TEXT NOT NULL,
    iid INTEGER NOT NULL,
    tf INTEGER NOT NULL,
    PRIMARY KEY (term, iid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS postings_by_doc ON postings (iid);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_CHUNK = 500  # ids per IN (...) list
_CACHE_BYTES = 64 * 2**20  # per-term postings kept in RAM between writes
_CACHE_TERMS = 100_000
_SMALL = 2_000  # postings per query below which Python sums them faster than numpy


class LexicalIndex:
    """Terms of every stored document; ``search`` ranks documents by BM25 for a query's terms."""

    def __init__(
        self,
        path: str | Path | None,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        analyzer: Analyzer | None = None,
        owner: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.k1, self.b = k1, b
        self.analyzer = analyzer or default_analyzer()
        self._db = connect(self.path)
        self._mutex = threading.RLock()
        # per-term BM25 contributions, read once per state of the file: cleared by this process's writes,
        # and when PRAGMA data_version says another connection (another process) committed one
        self._terms: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._terms_bytes = 0
        self._seen: int | None = None
        self._id_of: dict[int, str] = {}
        with self._mutex:
            self._db.executescript(_SCHEMA)
            with self._tx():
                for key, value in (("docs", "0"), ("length", "0")):
                    self._db.execute("INSERT OR IGNORE INTO info VALUES (?, ?)", (key, value))
                self._db.execute("INSERT OR IGNORE INTO info VALUES ('analyzer', ?)", (self.analyzer.version,))
                if owner is not None:
                    self._db.execute("INSERT OR IGNORE INTO info VALUES ('owner', ?)", (owner,))
            found = self._info("owner")
        if owner is not None and found != owner:
            self._db.close()
            raise OwnerMismatch(f"{self.path} belongs to another collection ({found}), not {owner}")

    # ----------------------------------------------------------------- state
    def _tx(self) -> _Tx:
        return _Tx(self._db)

    def _info(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else "0"

    def count(self) -> int:
        with self._mutex:
            return int(self._info("docs"))

    def generation(self) -> int | None:
        """The collection write generation this index has applied (None: never built, or built by another
        analyzer version, so it must be rebuilt)."""
        with self._mutex:
            if self._info("analyzer") != self.analyzer.version:
                return None
            row = self._db.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()
        return None if row is None else int(row[0])

    def _applied(self, generation: int | None) -> None:
        if generation is not None:
            self._db.execute("INSERT OR REPLACE INTO info VALUES ('generation', ?)", (str(generation),))

    # ----------------------------------------------------------------- writes
    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Metadata],
        *,
        generation: int | None = None,
    ) -> None:
        """Index (or re-index) documents; ``generation`` is recorded in the same transaction."""
        rows = [(i, Counter(self.analyzer.terms(t)), t, m) for i, t, m in zip(ids, texts, metadatas, strict=True)]
        with self._mutex, self._tx():
            self._stale()
            self._remove(list(ids))
            (top,) = self._db.execute("SELECT COALESCE(MAX(iid), 0) FROM docs").fetchone()
            docs: list[tuple[int, str, int, str, str]] = []
            postings: list[tuple[str, int, int]] = []
            added = 0
            for n, (doc_id, terms, text, meta) in enumerate(rows, int(top) + 1):
                length = sum(terms.values())
                docs.append((n, doc_id, length, text, json.dumps(meta, ensure_ascii=False)))
                postings.extend((t, n, c) for t, c in terms.items())
                added += length
            self._db.executemany("INSERT INTO docs (iid, id, len, text, metadata) VALUES (?, ?, ?, ?, ?)", docs)
            self._db.executemany("INSERT INTO postings (term, iid, tf) VALUES (?, ?, ?)", postings)
            self._bump(len(rows), added)
            self._applied(generation)

    def delete(self, ids: Sequence[str], *, generation: int | None = None) -> None:
        with self._mutex, self._tx():
            self._stale()
            self._remove(list(ids))
            self._applied(generation)

    def delete_where(self, node: Node, *, generation: int | None = None) -> None:
        """Delete the documents ``node`` matches (the same filter semantics as every store)."""
        with self._mutex, self._tx():
            self._stale()
            doomed = [
                i for i, meta in self._db.execute("SELECT id, metadata FROM docs") if matches(node, json.loads(meta))
            ]
            self._remove(doomed)
            self._applied(generation)

    def clear(self, *, generation: int | None = None) -> None:
        with self._mutex, self._tx():
            self._stale()
            self._db.execute("DELETE FROM postings")
            self._db.execute("DELETE FROM docs")
            self._db.execute("UPDATE info SET value = '0' WHERE key IN ('docs', 'length')")
            self._db.execute("DELETE FROM info WHERE key = 'generation'")
            self._applied(generation)

    def rebuild(
        self, documents: Iterable[tuple[str, str, Metadata]], total: int | None = None, *, generation: int | None = None
    ) -> None:
        """Replace everything with ``documents`` (id, text, metadata), showing progress; ``generation`` is
        recorded only when every document is in."""
        from tqdm.auto import tqdm

        self.clear()
        batch: list[tuple[str, str, Metadata]] = []
        with tqdm(total=total, desc="building lexical index", unit="doc", leave=False, delay=1.0) as bar:
            for item in documents:
                batch.append(item)
                if len(batch) >= 1000:
                    self.upsert(*zip(*batch, strict=True))
                    bar.update(len(batch))
                    batch = []
            if batch:
                self.upsert(*zip(*batch, strict=True))
                bar.update(len(batch))
        with self._mutex, self._tx():
            self._stale()
            self._db.execute("UPDATE info SET value = ? WHERE key = 'analyzer'", (self.analyzer.version,))
            self._applied(generation)

    def _remove(self, ids: list[str]) -> None:
        gone_docs = gone_len = 0
        for start in range(0, len(ids), _CHUNK):
            part = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(part))
            sql = f"SELECT iid, len FROM docs WHERE id IN ({marks})"  # noqa: S608 - placeholders only
            rows = self._db.execute(sql, part).fetchall()
            if not rows:
                continue
            iids = [r[0] for r in rows]
            imarks = ",".join("?" * len(iids))
            self._db.execute(f"DELETE FROM postings WHERE iid IN ({imarks})", iids)  # noqa: S608
            self._db.execute(f"DELETE FROM docs WHERE iid IN ({imarks})", iids)  # noqa: S608
            gone_docs += len(rows)
            gone_len += sum(r[1] for r in rows)
        if gone_docs:
            self._bump(-gone_docs, -gone_len)

    def _bump(self, docs: int, length: int) -> None:
        self._db.execute("UPDATE info SET value = CAST(value AS INTEGER) + ? WHERE key = 'docs'", (docs,))
        self._db.execute("UPDATE info SET value = CAST(value AS INTEGER) + ? WHERE key = 'length'", (length,))

    def texts(self) -> dict[str, str]:
        """Every indexed document's text by id (for verification against the store)."""
        with self._mutex:
            return {str(i): str(t) for i, t in self._db.execute("SELECT id, text FROM docs")}

    # ----------------------------------------------------------------- search
    def terms(self, query: str) -> list[str]:
        """The query's distinct terms, in order."""
        return list(dict.fromkeys(self.analyzer.terms(query)))

    def _stale(self) -> None:
        self._terms.clear()
        self._terms_bytes = 0
        self._seen = None
        self._id_of.clear()  # an upsert may hand a deleted document's iid to another one

    def _postings(self, term: str, n: int, avg: float) -> tuple[np.ndarray, np.ndarray]:
        """(iids, BM25 contributions) of one term, from the cache or SQLite."""
        found = self._terms.get(term)
        if found is not None:
            self._terms.move_to_end(term)
            return found
        rows = self._db.execute(
            "SELECT p.iid, p.tf, d.len FROM postings p JOIN docs d ON d.iid = p.iid WHERE p.term = ?", (term,)
        ).fetchall()
        if rows:
            arr = np.asarray(rows, dtype=np.float64)
            idf = math.log(1.0 + (n - len(rows) + 0.5) / (len(rows) + 0.5))
            tf, length = arr[:, 1], arr[:, 2]
            found = (arr[:, 0].astype(np.int64), idf * tf / (tf + self.k1 * (1.0 - self.b + self.b * length / avg)))
        else:
            found = (np.zeros(0, dtype=np.int64), np.zeros(0))
        self._terms[term] = found
        self._terms_bytes += found[0].nbytes + found[1].nbytes
        while self._terms and (self._terms_bytes > _CACHE_BYTES or len(self._terms) > _CACHE_TERMS):
            _, (a, b) = self._terms.popitem(last=False)
            self._terms_bytes -= a.nbytes + b.nbytes
        return found

    def search(self, terms: Sequence[str], k: int, node: Node | None = None, *, fields: bool = True) -> list[Hit]:
        """The ``k`` best documents by BM25 over ``terms`` that match ``node``; ties by id. ``fields=False``:
        ids and scores only (a fused query's leg; the winners' texts are read afterwards)."""
        if not fields:
            ranked = self.search_scores(terms, k, node)
            found = [Hit(i, sc, "", {}, "bm25") for i, sc in zip(ranked.ids, ranked.scores.tolist(), strict=True)]
        else:
            with self._mutex:
                iids, scores = self._picked(terms, k, node)
                rows = {r[0]: r[1:] for r in self._rows("iid, id, text, metadata", iids.tolist())}
            found = [
                Hit(rows[i][0], sc, rows[i][1], json.loads(rows[i][2]), "bm25")
                for i, sc in zip(iids.tolist(), scores.tolist(), strict=True)
                if i in rows
            ]
        found.sort(key=lambda h: (-h.score, h.id))
        return found[:k]

    def search_scores(self, terms: Sequence[str], k: int, node: Node | None = None) -> Ranked:
        """The ``k`` best documents as arrays (ids, BM25 scores), best first: a fused query's lexical leg."""
        with self._mutex:
            iids, scores = self._picked(terms, k, node)
            wanted = iids.tolist()
            ids = self._ids(wanted)
        if len(ids) == len(wanted) <= k:
            return Ranked([ids[i] for i in wanted], scores)
        kept = sorted(
            ((ids[i], sc) for i, sc in zip(wanted, scores.tolist(), strict=True) if i in ids), key=_best_first
        )[:k]  # every tie of the k-th came back: the smallest ids stay
        return Ranked([i for i, _ in kept], np.asarray([sc for _, sc in kept], dtype=np.float64))

    def _picked(self, terms: Sequence[str], k: int, node: Node | None) -> tuple[np.ndarray, np.ndarray]:
        """(iids, BM25 scores) of the best candidates, best first: the k best matching ``node`` and every tie
        of the k-th (callers break ties by id)."""
        (version,) = self._db.execute("PRAGMA data_version").fetchone()
        if version != self._seen:
            self._stale()
            self._seen = version
            stats = dict(self._db.execute("SELECT key, value FROM info WHERE key IN ('docs', 'length')"))
            self._stats = (int(stats.get("docs", 0)), int(stats.get("length", 0)))
            self._top_iid = int(self._db.execute("SELECT COALESCE(MAX(iid), 0) FROM docs").fetchone()[0])
        n, total = self._stats
        if n <= 0 or not terms:
            return _NONE
        avg = max(total, 1) / n
        parts = [p for p in (self._postings(term, n, avg) for term in dict.fromkeys(terms)) if p[0].size]
        if not parts:
            return _NONE
        if node is None and sum(p[0].size for p in parts) <= _SMALL:
            return _best_small(parts, k)
        if len(parts) == 1:
            iids, scores = parts[0]
        else:
            all_iids = np.concatenate([p[0] for p in parts])
            weights = np.concatenate([p[1] for p in parts])
            top = self._top_iid + 1
            if node is None and top <= 16 * all_iids.size:  # dense enough: sum into one array over every iid
                sums = np.bincount(all_iids, weights=weights, minlength=top)
                return _best_of(sums, k, positions=True)
            iids, inverse = np.unique(all_iids, return_inverse=True)
            scores = np.bincount(inverse, weights=weights)
        return self._best(iids, scores, k, node)

    def _ids(self, iids: list[int]) -> dict[int, str]:
        known = self._id_of
        missing = [i for i in iids if i not in known]
        if missing:
            if len(known) > _CACHE_TERMS:
                known.clear()
            known.update(self._rows("iid, id", missing))
        return {i: known[i] for i in iids if i in known}

    def _best(self, iids: np.ndarray, scores: np.ndarray, k: int, node: Node | None) -> tuple[np.ndarray, np.ndarray]:
        """Walk candidates best first until k match and no tie is left behind; metadata is read only when a
        filter needs it."""
        if node is None:
            best, top = _best_of(scores, k)
            return iids[best], top
        order = np.argsort(-scores, kind="stable")
        picked: list[tuple[int, float]] = []
        step = max(2 * k, 64)
        for start in range(0, len(order), step):
            if len(picked) >= k and scores[order[start]] < picked[k - 1][1]:
                break
            chunk = order[start : start + step]
            metas = dict(self._rows("iid, metadata", [int(iids[j]) for j in chunk]))
            picked += [
                (int(iids[j]), float(scores[j]))
                for j in chunk
                if int(iids[j]) in metas and matches(node, json.loads(metas[int(iids[j])]))
            ]
        return np.asarray([i for i, _ in picked], dtype=np.int64), np.asarray(
            [sc for _, sc in picked], dtype=np.float64
        )

    def _rows(self, columns: str, iids: list[int]) -> list[tuple]:
        out: list[tuple] = []
        for start in range(0, len(iids), _CHUNK):
            part = iids[start : start + _CHUNK]
            sql = f"SELECT {columns} FROM docs WHERE iid IN ({','.join('?' * len(part))})"  # noqa: S608 - fixed columns
            out += self._db.execute(sql, part).fetchall()
        return out

    def storage_bytes(self) -> int:
        if self.path is None:
            return 0
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())

    def close(self) -> None:
        with self._mutex:
            self._db.close()


_NONE = (np.zeros(0, dtype=np.int64), np.zeros(0))


def _best_of(scores: np.ndarray, k: int, positions: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of the k best positive scores and every tie of the k-th, best first, without sorting
    every candidate. ``positions``: ``scores`` is indexed by iid (0 where a document has none of the terms)."""
    if scores.size > k:
        kth = np.partition(scores, scores.size - k)[scores.size - k]
        keep = np.flatnonzero(scores >= kth) if kth > 0 else np.flatnonzero(scores)
    elif positions:
        keep = np.flatnonzero(scores)
    else:
        keep = np.arange(scores.size)
    top = scores[keep]
    order = np.argsort(-top, kind="stable")
    return keep[order], top[order]


def _best_small(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``_best_of`` for a query with few postings, in plain Python: a dozen numpy calls cost more than
    summing a hundred postings (the same sums in the same order as ``np.bincount``)."""
    acc: dict[int, float] = {}
    get = acc.get
    for iids, scores in parts:
        for i, s in zip(iids.tolist(), scores.tolist(), strict=True):
            acc[i] = get(i, 0.0) + s
    if len(acc) > k:
        kth = sorted(acc.values(), reverse=True)[k - 1]
        items = [(s, i) for i, s in acc.items() if s >= kth]
    else:
        items = [(s, i) for i, s in acc.items()]
    items.sort(reverse=True)
    return np.fromiter((i for _, i in items), np.int64, len(items)), np.fromiter(
        (s for s, _ in items), np.float64, len(items)
    )


def _best_first(item: tuple[str, float]) -> tuple[float, str]:
    return (-item[1], item[0])


class OwnerMismatch(Exception):
    """The index file was made for another collection."""


class _Tx:
    """``BEGIN IMMEDIATE`` .. ``COMMIT`` (rolled back on any error), so other processes wait, never interleave."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


__all__ = ["LexicalIndex", "OwnerMismatch"]
