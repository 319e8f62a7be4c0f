"""The one way ragstore opens the SQLite files it keeps: the FAISS sidecar, the BM25 index, the collection
journal, the embedding cache and the translation cache.

Every one is shared by threads (the caller serialises writes with its own lock) and often by processes
(two writers of one collection, a bench beside a server), so every one gets the same settings: autocommit
(transactions are explicit ``BEGIN IMMEDIATE``), any thread, WAL (readers never block the writer), a busy
wait instead of an immediate "database is locked", and ``synchronous=NORMAL`` (durable across a process
crash, with an fsync per checkpoint rather than per commit). ``None`` is an in-memory database.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

#: how long a connection waits for another process's write lock before giving up
BUSY_TIMEOUT_S = 60.0


def connect(path: str | os.PathLike[str] | None) -> sqlite3.Connection:
    """Open (creating its folder) or create the database at ``path``; ``None``: in memory."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path) if path is not None else ":memory:",
        isolation_level=None,
        check_same_thread=False,
        timeout=BUSY_TIMEOUT_S,
    )
    if path is not None:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


__all__ = ["BUSY_TIMEOUT_S", "connect"]
