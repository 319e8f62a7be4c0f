"""Native lexical legs against the sidecar: the same rankings, what they cost, on xquad-r.

For each store and leg (``lexical_leg: sidecar`` or ``native``), xquad-r's 1,180 English sentences with
MiniLM vectors (from the embedding cache) are written once without and once with the lexical leg (best of 3,
alternating); then every question -- English, and Chinese translated to English -- is answered lexically and
hybrid (the default fusion) through ``Retriever.prepare`` / ``run_all``. Reported per leg:

- top-10 overlap of the lexical ranking with the reference (the in-memory store's sidecar index, the oracle
  of the conformance suite) and whether the ids and order are identical;
- lexical and hybrid nDCG@10, English and zh->en translated;
- store-level hybrid/dense p50 (English questions, interleaved) and ingest with/without the leg.

    python -P benchmarks/lexical_legs.py          # writes benchmarks/results/lexical-legs.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ragstore.bilingual.config import BilingualConfig
from ragstore.data.beir import bundled_dataset, load_beir
from ragstore.embedders.cache import CachedEmbedder
from ragstore.eval.metrics import evaluate
from ragstore.query.retrieval import Retriever
from ragstore.stores.collection import Collection, open_collection
from ragstore.stores.registry import create_embedder
from ragstore.types import Document, Hit

HERE = Path(__file__).resolve().parent
MINILM = {"type": "sentence-transformers", "model": "all-MiniLM-L6-v2"}
#: (store block, leg): the first is the reference every other leg is compared with
LEGS: list[tuple[dict[str, Any], str]] = [
    ({"type": "memory"}, "sidecar"),
    ({"type": "pgvector", "index": "none"}, "sidecar"),
    ({"type": "pgvector", "index": "none"}, "native"),
    ({"type": "pgvector", "index": "hnsw"}, "native"),
    ({"type": "qdrant"}, "sidecar"),
    ({"type": "qdrant"}, "native"),
    ({"type": "milvus"}, "sidecar"),
    ({"type": "milvus"}, "native"),
]
console = Console(stderr=True)


def open_leg(block: dict[str, Any], leg: str, folder: Path, lexical: bool) -> Collection:
    spec = {**block, "lexical": lexical, "lexical_leg": leg}
    if block["type"] == "pgvector":
        spec.update(path=str(folder.parent / "pg"), table=f"t_{folder.name.replace('-', '_')}")
        spec["lexical_path"] = str(folder) + ".lexical"
    elif block["type"] != "memory":
        spec["path"] = str(folder)
    return open_collection(spec)


def ingest_seconds(block: dict[str, Any], leg: str, docs: list[Document], folder: Path, lexical: bool) -> float:
    shutil.rmtree(str(folder) + ".lexical", ignore_errors=True)
    store = open_leg(block, leg, folder, lexical)
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


def ndcg(qrels: dict[str, dict[str, int]], run: dict[str, list[Hit]]) -> float:
    ranked = {q: {h.id: float(100 - r) for r, h in enumerate(hits[:10])} for q, hits in run.items()}
    return evaluate({q: qrels[q] for q in run}, ranked, ["nDCG@10"])["nDCG@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path(".ragstore/bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    sys.path.append(str(HERE))  # last: benchmarks/datasets must not shadow HF datasets
    from hybrid_speed import interleaved_p50  # one way to time dense against hybrid

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    folder = bundled_dataset("xquad-r")
    emb = CachedEmbedder(create_embedder(MINILM), args.cache / "embeddings.sqlite")
    corpus = load_beir(folder, query_lang="en", corpus_langs="en").corpus
    docs = [Document(id=d.id, text=d.text, metadata=dict(d.metadata)) for d in corpus]
    for d, v in zip(docs, emb.embed_documents([d.text for d in docs]), strict=True):
        d.vector = v
    retriever = Retriever(emb, BilingualConfig(), cache_dir=args.cache)
    langs: dict[str, tuple[list[str], dict[str, dict[str, int]], dict[str, Any]]] = {}
    for lang in ("en", "zh"):
        ds = load_beir(folder, query_lang=lang, corpus_langs="en")
        qids, texts = list(ds.queries), list(ds.queries.values())
        mode, members = ("off", None) if lang == "en" else ("translate", ["translate"])
        prepared = {
            search: retriever.prepare(texts, mode, members=members, search=search)
            for search in ("dense", "lexical", "hybrid")
        }
        langs[lang] = (qids, ds.qrels, prepared)
    rows: list[dict[str, Any]] = []
    reference: dict[str, dict[str, list[str]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="lexical-legs-"))
    try:
        for n, (block, leg) in enumerate(LEGS):
            name = f"{block['type']}" + (f" {block['index']}" if "index" in block else "")
            console.print(f"[bold]{name} · {leg}[/]")
            plain_s, lex_s = [], []
            for _ in range(3):
                plain_s.append(ingest_seconds(block, leg, docs, tmp / f"s{n}-a", lexical=False))
                lex_s.append(ingest_seconds(block, leg, docs, tmp / f"s{n}-b", lexical=True))
            store = open_leg(block, leg, tmp / f"s{n}-q", lexical=True)
            store.drop()
            for s in range(0, len(docs), 256):
                store.upsert(docs[s : s + 256])
            assert store.lexical_leg == leg, (name, store.lexical_leg)
            row: dict[str, Any] = {"store": name, "leg": leg}
            for lang, (qids, qrels, prepared) in langs.items():
                lexical = dict(zip(qids, prepared["lexical"].run_all(store, 10), strict=True))
                hybrid = dict(zip(qids, prepared["hybrid"].run_all(store, 10), strict=True))
                ids = {q: [h.id for h in hits] for q, hits in lexical.items()}
                if n == 0:
                    reference[lang] = ids
                ref = reference[lang]
                overlap = [len(set(ids[q]) & set(ref[q])) / max(len(ref[q]), 1) for q in qids if ref[q]]
                row[lang] = {
                    "lexical_ndcg10": ndcg(qrels, lexical),
                    "hybrid_ndcg10": ndcg(qrels, hybrid),
                    "top10_overlap": statistics.fmean(overlap),
                    "identical_rankings": sum(ids[q] == ref[q] for q in qids) / len(qids),
                }
            d50, h50 = interleaved_p50(store, langs["en"][2]["dense"], langs["en"][2]["hybrid"])
            store.drop()
            store.close()
            p, lx = min(plain_s), min(lex_s)
            row.update(
                dense_p50_ms=d50 * 1000,
                hybrid_p50_ms=h50 * 1000,
                latency_ratio=h50 / d50,
                ingest_per_s=len(docs) / p,
                ingest_lexical_per_s=len(docs) / lx,
                ingest_ratio=p / lx,
            )
            rows.append(row)
            console.print(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        emb.close()
    result = {"dataset": "xquad-r (1,180 English sentences; en and zh->en translated questions)", "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lexical-legs.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    lines = [
        "# Lexical legs: native in the engine vs the sidecar (xquad-r)",
        "",
        "`python -P benchmarks/lexical_legs.py`. Overlap and identical rankings: lexical top-10 against the "
        "reference (memory store, sidecar index: the conformance oracle). nDCG@10 over every question; zh = "
        "Chinese questions translated to English (`bilingual: translate`). Latency: store-level p50 of dense and "
        "hybrid (alpha 0.5, 50 candidates per leg), English questions interleaved. Ingest: vectors precomputed, "
        "best of 3.",
        "",
        "| store | leg | en lexical | en hybrid | zh lexical | zh hybrid | top-10 overlap en / zh | identical en / zh "
        "| dense p50 ms | hybrid p50 ms | ratio | ingest/s | with leg | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        en, zh = r["en"], r["zh"]
        lines.append(
            f"| {r['store']} | {r['leg']} | {en['lexical_ndcg10']:.4f} | {en['hybrid_ndcg10']:.4f} | "
            f"{zh['lexical_ndcg10']:.4f} | {zh['hybrid_ndcg10']:.4f} | {en['top10_overlap']:.3f} / "
            f"{zh['top10_overlap']:.3f} | {en['identical_rankings']:.3f} / {zh['identical_rankings']:.3f} | "
            f"{r['dense_p50_ms']:.2f} | {r['hybrid_p50_ms']:.2f} | {r['latency_ratio']:.2f}x | "
            f"{r['ingest_per_s']:,.0f} | {r['ingest_lexical_per_s']:,.0f} | {r['ingest_ratio']:.2f}x |"
        )
    (args.out / "lexical-legs.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
