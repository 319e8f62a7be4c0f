"""On-disk embedding cache: never embed the same text with the same model and settings twice.

Keyed by the inner embedder's fingerprint, the kind (query/passage) and a hash of the text, so changing
model, prefixes, truncation or normalisation can never return stale vectors.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._db import connect
from .base import Embedder, Kind, check_texts

_CHUNK = 500


class CachedEmbedder(Embedder):
    """Wraps any embedder; lookups and inserts are batched, one SQLite transaction per call.

    Safe to share between threads (one connection, every use of it under a lock; the model itself runs
    outside the lock, so threads still embed in parallel) and between processes (WAL, a busy timeout, and
    ``INSERT OR REPLACE`` of identical vectors when two processes embed the same text).
    """

    name = "cached"

    def __init__(self, inner: Embedder, path: str | os.PathLike[str]) -> None:
        super().__init__(normalize=inner.normalize)
        self.inner = inner
        self.path = Path(path)
        self.conn = connect(self.path)
        self.conn.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def _key(self, text: str, kind: Kind) -> str:
        h = hashlib.sha256(f"{self.inner.fingerprint}\x00{kind}\x00".encode())
        h.update(text.encode("utf-8"))
        return h.hexdigest()

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:  # pragma: no cover - not used
        return self.inner.embed(texts, kind)

    def _lookup(self, keys: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, vec FROM emb WHERE key IN ({marks})"  # noqa: S608 - placeholders only
            found.update(self.conn.execute(sql, chunk).fetchall())
        return found

    def _cached(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        items = check_texts(texts, "query" if kind == "query" else "text")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [self._key(t, kind) for t in items]
        with self._lock:
            found = self._lookup(keys)
            missing = list(dict.fromkeys(t for t, k in zip(items, keys, strict=True) if k not in found))
            self.hits += len(items) - sum(1 for k in keys if k not in found)
            self.misses += len(missing)
        if missing:
            vecs = self.inner.embed(missing, kind)  # outside the lock: other threads keep embedding
            rows = [(self._key(t, kind), v.astype(np.float32).tobytes()) for t, v in zip(missing, vecs, strict=True)]
            with self._lock:  # one transaction at a time on the shared connection
                self.conn.execute("BEGIN")
                try:
                    self.conn.executemany("INSERT OR REPLACE INTO emb(key, vec) VALUES (?, ?)", rows)
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
            found.update(rows)
        return np.stack([np.frombuffer(found[k], dtype=np.float32) for k in keys])

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._cached(texts, "passage")

    def embed_query(self, texts: str | Sequence[str]) -> np.ndarray:
        return self._cached([texts] if isinstance(texts, str) else texts, "query")

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "cache": str(self.path)}

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()
