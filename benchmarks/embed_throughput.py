"""Embedding throughput: ragstore's sentence-transformers embedder against ``SentenceTransformer.encode``.

Same model object, same texts, same batch size, same process. The order is raw, ragstore, ragstore, raw, raw,
ragstore (the machine warms up and drifts; each path gets early and late turns); the best of each is kept.
The ratio ragstore / raw (target >= 0.95) is the result; absolute rates on this 2-core CPU are noisy.
A third line shows the on-disk cache on a second pass over the same texts: the real saving.

    python benchmarks/embed_throughput.py [--xquad FOLDER]  (default: the bundled xquad-r) [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# this folder holds the sample dataset package `datasets/`, which would shadow Hugging Face `datasets`
# (imported by sentence-transformers) when the script's own folder leads sys.path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ragstore.data.beir import bundled_dataset, load_beir  # noqa: E402
from ragstore.embedders.cache import CachedEmbedder  # noqa: E402
from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder  # noqa: E402
from ragstore.pipeline import sample_dataset  # noqa: E402

HERE = Path(__file__).resolve().parent


def _rate(fn: Any, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def measure(name: str, texts: list[str], emb: SentenceTransformerEmbedder) -> dict[str, Any]:
    model = emb.model
    bs = emb.batch_size

    def raw() -> np.ndarray:
        out = model.encode(texts, batch_size=bs, convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(out)

    def ours() -> np.ndarray:
        return emb.embed_documents(texts)

    assert np.allclose(raw(), ours(), atol=1e-5), "the two paths must compute the same vectors"
    raw_rates, our_rates = [], []
    order = [(raw, raw_rates), (ours, our_rates), (ours, our_rates), (raw, raw_rates)]
    order += [(raw, raw_rates), (ours, our_rates)]
    for fn, bucket in order:
        bucket.append(_rate(fn, len(texts)))
    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedEmbedder(emb, Path(tmp) / "cache.sqlite")
        cached.embed_documents(texts)
        cached_rate = _rate(lambda: cached.embed_documents(texts), len(texts))
        cached.close()
    return {
        "dataset": name,
        "texts": len(texts),
        "mean_chars": float(np.mean([len(t) for t in texts])),
        "batch_size": bs,
        "raw_per_s": max(raw_rates),
        "ragstore_per_s": max(our_rates),
        "ratio": max(our_rates) / max(raw_rates),
        "cached_per_s": cached_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--xquad", type=Path, default=bundled_dataset("xquad-r"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "embed_throughput")
    args = parser.parse_args()
    emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=args.batch_size)
    sets = [("superannuation sample", [d.text for d in load_beir(sample_dataset(), query_lang="en").corpus])]
    if args.xquad.exists():
        sets.append(("xquad-r (en)", [d.text for d in load_beir(args.xquad, query_lang="en").corpus]))
    else:
        print(f"skipping xquad-r: {args.xquad} not found")
    rows = [measure(name, texts, emb) for name, texts in sets]
    table = Table(title="embedding throughput, all-MiniLM-L6-v2 (passages/s)", title_justify="left")
    for col in ("dataset", "texts", "mean chars", "raw encode", "ragstore", "ratio", "cached 2nd pass"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for r in rows:
        table.add_row(
            r["dataset"],
            str(r["texts"]),
            f"{r['mean_chars']:.0f}",
            f"{r['raw_per_s']:.1f}",
            f"{r['ragstore_per_s']:.1f}",
            f"{r['ratio']:.3f}",
            f"{r['cached_per_s']:,.0f}",
        )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Embedding throughput: ragstore vs SentenceTransformer.encode",
        "",
        "Same model, texts, batch size and process; order raw, ragstore, ragstore, raw, raw, ragstore; best of each.",
        "",
        "| dataset | texts | mean chars | raw encode /s | ragstore /s | ratio | cached 2nd pass /s |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['dataset']} | {r['texts']} | {r['mean_chars']:.0f} | {r['raw_per_s']:.1f} | "
        f"{r['ragstore_per_s']:.1f} | {r['ratio']:.3f} | {r['cached_per_s']:,.0f} |"
        for r in rows
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
