"""Filters at scale (issue 33): a filter value the store has not seen before, on declared fields, at 1M vectors.

Each store is filled with N precomputed 384-d vectors (a Gaussian mixture: 1,000 clusters, normalised; the
filters' latency depends on how many rows match, not on the vectors) with metadata ``{"b": i % 100, "c":
i % 1000, "u": a random permutation of 0..N-1}``, all declared ``integer`` (``indexed``). Queries use a new
filter value each time, so nothing a store remembers from an earlier filter helps:

- 1%: ``{"b": v}`` for the 100 values of ``b`` in turn, then ``{"u": {"$gte": x, "$lt": x + N/100}}``;
- 0.1%: ``{"c": v}`` for distinct ``v``, then ``u`` ranges of width N/1000.

Before timing, one query per field with a value no document holds loads each field's index (an engine
reads its index files lazily). Recall@10 is against exact search over the matching rows (numpy). The
before figures (no declared fields) come from the scale run (``results/scale.json``: the first use of a 1%
filter, and qdrant-edge's p50), since a declaration, once made, stays with the data. Ingest: ragstore's
``upsert`` in batches of 10,000 plus ``close``, against FAISS's own ``add_with_ids`` plus ``write_index`` of
the same vectors in the same process.

    python -P benchmarks/filters_scale.py --n 1000000 --stores "faiss flat,faiss ivf-sq8,qdrant-edge"
    python -P benchmarks/filters_scale.py --n 100000 --stores "faiss hnsw,pgvector hnsw"
Results are merged into results/filters-scale.{json,md} (one row per store and N) with a plot.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent))
import scale_data

RESULTS = Path(__file__).resolve().parent / "results"
DIM, K, STEP = 384, 10, 10_000
INDEXED = {"b": "integer", "c": "integer", "u": "integer"}
STORES: dict[str, dict[str, Any]] = {
    "faiss flat": {"type": "faiss", "index": "flat"},
    "faiss hnsw": {"type": "faiss", "index": "hnsw", "ef_construction": 80, "ef_search": 96},
    "faiss ivf-sq8": {"type": "faiss", "index": "ivf_sq8", "nprobe": 48, "rescore": 4},
    "qdrant-edge": {"type": "qdrant-edge"},
    "qdrant-edge hnsw": {"type": "qdrant-edge", "optimize": True, "ef_search": 128},
    "pgvector hnsw": {"type": "pgvector", "table": "filters_scale"},
}


def vectors(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, DIM)).astype(np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        pick = rng.integers(0, 1000, size=stop - start)
        out[start:stop] = centres[pick] + 0.8 * rng.normal(size=(stop - start, DIM)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    queries = out[rng.integers(0, n, size=400)] + 0.3 * rng.normal(size=(400, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return out, queries


def metadata(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    i = np.arange(n)
    return {"b": i % 100, "c": i % 1000, "u": np.random.default_rng(seed).permutation(n)}


def filters(n: int, meta: dict[str, np.ndarray], share: float, count: int, seed: int = 2) -> list[tuple[Any, Any]]:
    """(filter, boolean mask of the matching rows): new values every time."""
    rng = np.random.default_rng(seed)
    field, values = ("b", 100) if share == 0.01 else ("c", 1000)
    out: list[tuple[Any, Any]] = []
    for v in rng.permutation(values)[: count // 2]:
        out.append(({field: int(v)}, meta[field] == v))
    width = int(n * share)
    for x in rng.integers(0, n - width, size=count - len(out)):
        out.append(({"u": {"$gte": int(x), "$lt": int(x) + width}}, (meta["u"] >= x) & (meta["u"] < x + width)))
    return out


def exact_top(vecs: np.ndarray, q: np.ndarray, mask: np.ndarray) -> set[str]:
    rows = np.flatnonzero(mask)
    scores = vecs[rows] @ q
    return {str(int(r)) for r in rows[np.argsort(-scores, kind="stable")[:K]]}


def fill(cfg: dict[str, Any], vecs: np.ndarray, meta: dict[str, np.ndarray]) -> dict[str, float]:
    from rich.progress import Progress

    from ragstore.stores.registry import create_store
    from ragstore.types import Document

    n = len(vecs)
    store = create_store(cfg)
    os.sync()  # each side starts without the other's dirty pages being written back under it
    t = time.perf_counter()
    with Progress(transient=True) as bar:
        task = bar.add_task(f"ingest {n:,} into {cfg['type']}", total=n)
        for start in range(0, n, STEP):
            stop = min(n, start + STEP)
            docs = [
                Document(
                    id=str(i),
                    text=f"p{i}",
                    vector=vecs[i],
                    metadata={"b": int(meta["b"][i]), "c": int(meta["c"][i]), "u": int(meta["u"][i])},
                )
                for i in range(start, stop)
            ]
            store.upsert(docs, batch_size=STEP)
            bar.update(task, advance=stop - start)
    upsert_s = time.perf_counter() - t
    store.close()
    return {"upsert_s": upsert_s, "ingest_s": time.perf_counter() - t}


def faiss_native(vecs: np.ndarray, folder: Path, index: str) -> float:
    import faiss

    inner: Any
    if index == "hnsw":
        inner = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
    else:
        inner = faiss.IndexFlatIP(DIM)
    idx = faiss.IndexIDMap2(inner)
    os.sync()
    t = time.perf_counter()
    for start in range(0, len(vecs), STEP):
        idx.add_with_ids(vecs[start : start + STEP], np.arange(start, min(len(vecs), start + STEP)))
    faiss.write_index(idx, str(folder / "native.faiss"))
    return time.perf_counter() - t


def timed(store: Any, vecs: np.ndarray, queries: np.ndarray, cases: list[tuple[Any, Any]]) -> dict[str, Any]:
    lat, recall = [], []
    for q, (flt, mask) in zip(queries, cases, strict=False):
        t = time.perf_counter()
        hits = store.search(q, K, filter=flt)
        lat.append(time.perf_counter() - t)
        recall.append(len({h.id for h in hits} & exact_top(vecs, q, mask)) / K)
    return {
        "queries": len(lat),
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "recall@10": float(np.mean(recall)),
    }


def run(name: str, n: int, vecs: np.ndarray, queries: np.ndarray, work: Path, dsn: str | None) -> dict:
    from ragstore.stores.registry import create_store

    meta = metadata(n)
    base = dict(STORES[name])
    if base["type"] == "pgvector":
        base["dsn"] = dsn
    else:
        base["path"] = str(work / name.replace(" ", "-"))
    cfg = {**base, "indexed": INDEXED}
    row: dict[str, Any] = {"store": name, "n": n}
    row.update(fill(cfg, vecs, meta))
    if base["type"] == "faiss":
        native = faiss_native(vecs, work, base["index"] if base["index"] == "hnsw" else "flat")
        row["faiss_add_write_s"] = native
        row["ingest_ratio"] = native / row["ingest_s"]  # >= 0.5 asked (share of FAISS's own speed)
    gc.collect()
    store = create_store(cfg)
    store.search(queries[0], K)  # what the engine loads lazily
    for warm in ({"b": -1}, {"c": -1}, {"u": {"$gte": -10, "$lt": -1}}):  # each field's index, no value reused
        store.search(queries[0], K, filter=warm)
    for share, label in ((0.01, "1%"), (0.001, "0.1%")):
        cases = filters(n, meta, share, 200)
        row[label] = timed(store, vecs, queries[1:], cases)
        row[label]["plan"] = store.explain(cases[0][0])["strategy"]
    unf = [store.search(q, K) for q in queries[:5]]  # warm
    t = time.perf_counter()
    for q in queries[:200]:
        store.search(q, K)
    row["unfiltered_mean_ms"] = (time.perf_counter() - t) / 200 * 1e3
    del unf
    store.close()
    print(json.dumps(row), flush=True)
    return row


def _before() -> list[str]:
    """The undeclared figures at 1M from the scale run (a 1% filter, ``b == 7``)."""
    file = RESULTS / "scale.json"
    if not file.exists():
        return []
    out = ["Before (no declared fields; `results/scale.json`, 1M, 1% filter): "]
    parts = []
    for r in json.loads(file.read_text()):
        if r.get("n") == 1_000_000 and r.get("filtered_first_ms") is not None:
            parts.append(
                f"{r['setting']}: first use {r['filtered_first_ms']:.0f} ms, then {r['filtered_p50_ms']:.0f} ms"
            )
    return [out[0] + "; ".join(parts) + "."] if parts else []


def report(rows: list[dict[str, Any]]) -> None:
    lines = [
        "# Filters at scale: a new filter value on declared fields (benchmarks/filters_scale.py)",
        "",
        "New value per query (nothing remembered), recall@10 against exact search over the matching rows. "
        "Ingest ratio: FAISS's own add + write_index time over ragstore's upsert + close, same vectors "
        "(>= 0.5 asked), with the three declared fields indexed on the way.",
        "",
        *_before(),
        "",
        "| store | N | plan 1% | 1% p50 ms | 1% p99 ms | 1% recall | 0.1% p50 ms | 0.1% p99 ms | 0.1% recall "
        "| unfiltered mean ms | ingest s | ingest ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["n"], r["store"])):
        a, b = r["1%"], r["0.1%"]
        ratio = r.get("ingest_ratio")
        lines.append(
            f"| {r['store']} | {r['n']:,} | {a['plan']} | {a['p50_ms']:.1f} | {a['p99_ms']:.1f} | {a['recall@10']:.3f} "
            f"| {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {b['recall@10']:.3f} "
            f"| {r['unfiltered_mean_ms']:.2f} | {r['ingest_s']:.1f} "
            f"| {'-' if ratio is None else f'{ratio:.2f}'} |"
        )
    (RESULTS / "filters-scale.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plt = scale_data.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        xs = [0.1, 1.0]
        ax.plot(xs, [r["0.1%"]["p99_ms"], r["1%"]["p99_ms"]], marker="o", label=f"{r['store']} ({r['n']:,})")
    ax.axhline(50, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("share of documents matching the filter (%)")
    ax.set_ylabel("p99 latency, new filter value (ms)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "filters-scale.png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--stores", default="faiss flat,faiss ivf-sq8,qdrant-edge")
    args = ap.parse_args()
    vecs, queries = vectors(args.n)
    out = RESULTS / "filters-scale.json"
    rows = json.loads(out.read_text()) if out.exists() else []
    names = [s.strip() for s in args.stores.split(",") if s.strip()]
    for name, work, dsn in scale_data.each_store(names, {n: c["type"] for n, c in STORES.items()}, "filters-"):
        row = run(name, args.n, vecs, queries, work, dsn)
        rows = [r for r in rows if (r["store"], r["n"]) != (name, args.n)] + [row]
        out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        report(rows)
    sys.exit(0)


if __name__ == "__main__":
    main()
