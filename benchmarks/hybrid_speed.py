"""What the lexical index costs on every store: ingest with and without it, and hybrid vs dense latency.

xquad-r's 1,180 English sentences (MiniLM vectors from the embedding cache) are written to each store twice,
once with ``lexical: false`` and once with ``lexical: true``, alternating, best of 3; then 300 English questions
are answered dense and hybrid (the default fusion) through ``Retriever`` / ``Prepared.run``, interleaved
per question. Two ratios per store, each against a baseline measured in the same process:

- store level: vectors already computed (what ``ragstore bench`` reports as ingest/s and search latency);
- end to end: with the MiniLM embedding a user's ``add``/``query`` pays (passage and question throughput
  measured here), which is what ``ragstore ingest`` and ``ragstore search`` feel.

    python -P benchmarks/hybrid_speed.py       # writes benchmarks/results/hybrid-speed.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ragstore.data.beir import bundled_dataset, load_beir
from ragstore.embedders.cache import CachedEmbedder
from ragstore.query.retrieval import Retriever
from ragstore.stores.collection import open_collection
from ragstore.stores.registry import create_embedder
from ragstore.types import Document

HERE = Path(__file__).resolve().parent
MINILM = {"type": "sentence-transformers", "model": "all-MiniLM-L6-v2"}
STORES: list[dict[str, Any]] = [
    {"type": "memory"},
    {"type": "faiss", "index": "flat"},
    {"type": "chroma"},
    {"type": "milvus"},
    {"type": "qdrant"},
    {"type": "qdrant-edge"},
    {"type": "pgvector"},
]
console = Console(stderr=True)


def ingest_seconds(block: dict[str, Any], docs: list[Document], folder: Path) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(str(folder) + ".lexical", ignore_errors=True)
    store = open_collection({**block, "path": str(folder)} if block["type"] != "memory" else block)
    try:
        store.drop()
        start = time.perf_counter()
        for s in range(0, len(docs), 256):
            store.upsert(docs[s : s + 256])
        store.flush()
        return time.perf_counter() - start
    finally:
        store.drop()
        store.close()


def interleaved_p50(store: Any, dense: Any, hybrid: Any) -> tuple[float, float]:
    """p50 seconds of dense and hybrid over every prepared question, interleaved per question after a
    warm-up, so both see the same machine state."""
    for i in range(20):
        dense.run(store, i, 10)
        hybrid.run(store, i, 10)
    d_t, h_t = [], []
    for i in range(dense.n):
        start = time.perf_counter()
        dense.run(store, i, 10)
        d_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        hybrid.run(store, i, 10)
        h_t.append(time.perf_counter() - start)
    return statistics.median(d_t), statistics.median(h_t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path(".ragstore/bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--stores", default="", help="comma-separated store types (default: all seven)")
    parser.add_argument(
        "--scale",
        type=int,
        default=0,
        help="N synthetic documents (two xquad-r sentences each, random unit vectors) instead of xquad-r: "
        "store-level latency only, written to hybrid-speed-<N>.{md,json}",
    )
    args = parser.parse_args()
    if args.scale:
        scaled(args)
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    folder = bundled_dataset("xquad-r")
    ds = load_beir(folder, query_lang="en", corpus_langs="en")
    texts = list(ds.queries.values())[: args.queries]
    emb = CachedEmbedder(create_embedder(MINILM), args.cache / "embeddings.sqlite")
    docs = [Document(id=d.id, text=d.text, metadata=dict(d.metadata)) for d in ds.corpus]
    for d, v in zip(docs, emb.embed_documents([d.text for d in docs]), strict=True):
        d.vector = v
    raw = emb.inner
    start = time.perf_counter()
    raw.embed_documents([d.text for d in docs[:256]])
    passage_s = (time.perf_counter() - start) / 256 * len(docs)  # MiniLM on this machine, uncached
    query_s = []
    for t in texts[:50]:
        start = time.perf_counter()
        raw.embed_query([t])
        query_s.append(time.perf_counter() - start)
    query_p50 = statistics.median(query_s)
    retriever = Retriever(emb)
    dense = retriever.prepare(texts, "off", search="dense")
    hybrid = retriever.prepare(texts, "off", search="hybrid")
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="hybrid-speed-"))
    try:
        for block in [b for b in STORES if not args.stores or b["type"] in args.stores.split(",")]:
            name = block["type"]
            console.print(f"[bold]{name}[/]")
            plain_s, lex_s = [], []
            for _ in range(3):
                plain_s.append(ingest_seconds({**block, "lexical": False}, docs, tmp / f"{name}-a"))
                lex_s.append(ingest_seconds({**block, "lexical": True}, docs, tmp / f"{name}-b"))
            path = tmp / f"{name}-q"
            store = open_collection(
                {**block, "path": str(path), "lexical": True} if name != "memory" else {**block, "lexical": True}
            )
            store.drop()
            for s in range(0, len(docs), 256):
                store.upsert(docs[s : s + 256])
            d50, h50 = interleaved_p50(store, dense, hybrid)
            store.drop()
            store.close()
            p, lx = min(plain_s), min(lex_s)
            rows.append(
                {
                    "store": name,
                    "ingest_per_s": len(docs) / p,
                    "ingest_lexical_per_s": len(docs) / lx,
                    "ingest_ratio": p / lx,
                    "ingest_ratio_end_to_end": (passage_s + p) / (passage_s + lx),
                    "dense_p50_ms": d50 * 1000,
                    "hybrid_p50_ms": h50 * 1000,
                    "latency_ratio": h50 / d50,
                    "latency_ratio_end_to_end": (query_p50 + h50) / (query_p50 + d50),
                }
            )
            console.print(rows[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        emb.close()
    result = {
        "dataset": "xquad-r English sentences and questions",
        "docs": len(docs),
        "questions": len(texts),
        "minilm_passages_per_s": len(docs) / passage_s,
        "minilm_query_p50_ms": query_p50 * 1000,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hybrid-speed.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    lines = [
        "# What the lexical index costs (xquad-r, 1,180 sentences, 300 questions)",
        "",
        "`python -P benchmarks/hybrid_speed.py`. Ingest: best of 3, alternating, vectors precomputed; latency: p50 "
        "of dense and hybrid (default fusion, alpha 0.5, 50 candidates per leg) interleaved per question. "
        f"End to end adds MiniLM on this machine ({result['minilm_passages_per_s']:.0f} passages/s, "
        f"{result['minilm_query_p50_ms']:.1f} ms per question).",
        "",
        "| store | ingest/s | with lexical | ratio | end to end | dense p50 ms | hybrid p50 ms | ratio | end to end |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['store']} | {r['ingest_per_s']:,.0f} | {r['ingest_lexical_per_s']:,.0f} | {r['ingest_ratio']:.2f}x "
            f"| {r['ingest_ratio_end_to_end']:.3f}x | {r['dense_p50_ms']:.2f} | {r['hybrid_p50_ms']:.2f} | "
            f"{r['latency_ratio']:.2f}x | {r['latency_ratio_end_to_end']:.2f}x |"
        )
    (args.out / "hybrid-speed.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def scaled(args: argparse.Namespace) -> None:
    """Store-level dense vs hybrid p50 at N documents: texts with xquad-r's word statistics (two sentences
    each), random unit vectors (the dense leg's cost does not depend on what they mean)."""
    import numpy as np

    ds = load_beir(bundled_dataset("xquad-r"), query_lang="en", corpus_langs="en")
    sentences = [d.text for d in ds.corpus]
    rng = np.random.default_rng(0)
    n = args.scale
    pairs = rng.integers(0, len(sentences), size=(n, 2))
    vecs = rng.normal(size=(n, 384)).astype(np.float32)
    docs = [
        Document(id=f"d{i}", text=f"{sentences[a]} {sentences[b]}", vector=vecs[i])
        for i, (a, b) in enumerate(pairs.tolist())
    ]
    texts = list(ds.queries.values())[: args.queries]
    qv = rng.normal(size=(len(texts), 384)).astype(np.float32)
    retriever = Retriever(create_embedder({"type": "hashing", "dim": 384}))  # only its dimension is used
    dense = retriever.prepare(texts, "off", vectors=qv, search="dense")
    hybrid = retriever.prepare(texts, "off", vectors=qv, search="hybrid")
    chosen = [
        b
        for b in STORES
        if b["type"] in (args.stores.split(",") if args.stores else ["memory", "faiss", "qdrant-edge"])
    ]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="hybrid-scale-"))
    try:
        for block in chosen:
            name = block["type"]
            console.print(f"[bold]{name}[/] at {n:,}")
            spec = (
                {**block, "lexical": True} if name == "memory" else {**block, "path": str(tmp / name), "lexical": True}
            )
            store = open_collection(spec)
            for s in range(0, n, 2000):
                store.upsert(docs[s : s + 2000])
            store.flush()
            d50, h50 = interleaved_p50(store, dense, hybrid)
            store.drop()
            store.close()
            rows.append(
                {"store": name, "dense_p50_ms": d50 * 1000, "hybrid_p50_ms": h50 * 1000, "latency_ratio": h50 / d50}
            )
            console.print(rows[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"docs": n, "questions": len(texts), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"hybrid-speed-{n}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    lines = [
        f"# Hybrid vs dense at {n:,} documents (store level)",
        "",
        f"`python -P benchmarks/hybrid_speed.py --scale {n}`: texts of two xquad-r sentences each, random unit "
        f"vectors, {len(texts)} xquad-r questions; p50 of dense and hybrid (alpha 0.5, 50 candidates per leg) "
        "interleaved.",
        "",
        "| store | dense p50 ms | hybrid p50 ms | ratio |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['store']} | {r['dense_p50_ms']:.2f} | {r['hybrid_p50_ms']:.2f} | {r['latency_ratio']:.2f}x |"
        for r in rows
    ]
    (args.out / f"hybrid-speed-{n}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
