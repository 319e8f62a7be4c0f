"""Tenants at scale (issue 34): 1,000 namespaces x 200 documents in one collection, per engine.

Each store is made with ``namespaces: true`` and filled tenant by tenant (one upsert of 200 documents per
namespace; 384-d vectors, each tenant a Gaussian cluster of its own around a shared mixture, normalised).
Then, for ``--sample`` tenants, the same 200 documents are written alone into a fresh store of the same
engine and options (no namespaces), and the same queries (near that tenant's documents) run against both,
interleaved: the tenant's search p50 over the alone store's p50 is the figure (<= 1.5 asked), and the top-10
ids must be identical (exact configurations).

    python -P benchmarks/tenants_scale.py                         # every engine, 1,000 x 200
    python -P benchmarks/tenants_scale.py --stores "faiss flat,qdrant-edge" --tenants 100
    RAGSTORE_MILVUS_URI=http://127.0.0.1:19530 python -P benchmarks/tenants_scale.py --stores "milvus server"
Results are merged into results/tenants-scale.{json,md} (one row per store and size) with a plot.
"""

from __future__ import annotations

import argparse
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
DIM, K, PER = 384, 10, 200
STORES: dict[str, dict[str, Any]] = {
    "memory": {"type": "memory"},
    "faiss flat": {"type": "faiss", "index": "flat"},
    "chroma": {"type": "chroma"},
    "milvus lite": {"type": "milvus"},
    "qdrant-edge": {"type": "qdrant-edge"},
    "pgvector hnsw": {"type": "pgvector", "table": "tenants_scale"},
    # a Milvus 2.3 standalone server (scripts/milvus-server.sh starts one): RAGSTORE_MILVUS_URI
    "milvus server": {"type": "milvus", "collection": "tenants_scale"},
}


def tenant_vectors(tenants: int, seed: int = 0) -> np.ndarray:
    """(tenants, PER, DIM) unit vectors: each tenant a cluster of its own (documents of one customer)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(tenants, 1, DIM)).astype(np.float32)
    out = centres + 0.9 * rng.normal(size=(tenants, PER, DIM)).astype(np.float32)
    out /= np.linalg.norm(out, axis=2, keepdims=True)
    return out


def docs_of(t: int, vecs: np.ndarray) -> list[Any]:
    from ragstore.types import Document

    return [
        Document(id=f"d{i}", text=f"tenant {t} passage {i}", metadata={"i": i}, vector=vecs[t, i]) for i in range(PER)
    ]


def place(name: str, work: Path, dsn: str | None, tag: str) -> dict[str, Any]:
    cfg = dict(STORES[name])
    if name == "milvus server":
        cfg["uri"] = os.environ["RAGSTORE_MILVUS_URI"]
        cfg["collection"] = f"{cfg['collection']}_{tag}"
        return cfg
    if cfg["type"] == "pgvector":
        cfg["dsn"] = dsn
        cfg["table"] = f"{cfg['table']}_{tag}"
    elif cfg["type"] != "memory":
        cfg["path"] = str(work / f"{name.replace(' ', '-')}-{tag}")
        if cfg["type"] == "milvus":
            os.makedirs(cfg["path"], exist_ok=True)
            cfg["path"] = str(Path(cfg["path"]) / "milvus.db")
    return cfg


def run(name: str, tenants: int, sample: int, queries: int, work: Path, dsn: str | None) -> dict[str, Any]:
    from rich.progress import Progress

    from ragstore.stores.registry import create_store

    vecs = tenant_vectors(tenants)
    shared = create_store({**place(name, work, dsn, "shared"), "namespaces": True, "dim": DIM})
    os.sync()
    start = time.perf_counter()
    with Progress(transient=True) as bar:
        task = bar.add_task(f"{name}: {tenants:,} tenants x {PER}", total=tenants)
        for t in range(tenants):
            shared.upsert(docs_of(t, vecs), namespace=f"t{t}")
            bar.advance(task)
    shared.flush()  # what a loaded collection is (Milvus seals its growing segments; others: durable)
    ingest_s = time.perf_counter() - start
    counts = shared.namespaces()
    assert len(counts) == tenants and set(counts.values()) == {PER}, "every tenant holds its 200 documents"
    rng = np.random.default_rng(1)
    picked = sorted(rng.choice(tenants, size=min(sample, tenants), replace=False).tolist())
    lat_tenant: list[float] = []
    lat_alone: list[float] = []
    same = total = 0
    for t in picked:
        alone = create_store({**place(name, work, dsn, f"alone{t}"), "dim": DIM})
        alone.upsert(docs_of(t, vecs))
        alone.flush()
        qs = vecs[t, rng.integers(0, PER, size=queries)] + 0.3 * rng.normal(size=(queries, DIM)).astype(np.float32)
        ns = f"t{t}"
        shared.search(qs[0], K, namespace=ns)  # warm both (an engine loads lazily; a filter is remembered)
        alone.search(qs[0], K)
        for q in qs:
            a0 = time.perf_counter()
            mine = shared.search(q, K, namespace=ns)
            a1 = time.perf_counter()
            theirs = alone.search(q, K)
            a2 = time.perf_counter()
            lat_tenant.append(a1 - a0)
            lat_alone.append(a2 - a1)
            total += 1
            same += [h.id for h in mine] == [h.id for h in theirs]
        alone.drop()
        alone.close()
    shared.drop()
    shared.close()
    p50_t, p50_a = float(np.percentile(lat_tenant, 50) * 1e3), float(np.percentile(lat_alone, 50) * 1e3)
    row = {
        "store": name,
        "tenants": tenants,
        "per_tenant": PER,
        "documents": tenants * PER,
        "ingest_s": ingest_s,
        "ingest_per_s": tenants * PER / ingest_s,
        "sampled": len(picked),
        "queries": total,
        "tenant_p50_ms": p50_t,
        "tenant_p99_ms": float(np.percentile(lat_tenant, 99) * 1e3),
        "alone_p50_ms": p50_a,
        "ratio_p50": p50_t / p50_a,
        "identical_top10": same / total,
    }
    print(json.dumps(row), flush=True)
    return row


def report(rows: list[dict[str, Any]]) -> None:
    lines = [
        "# Tenants at scale: 1,000 namespaces x 200 documents (benchmarks/tenants_scale.py)",
        "",
        "One collection per engine made with `namespaces: true`, filled one tenant (200 documents, 384-d) at a "
        "time. For sampled tenants the same documents were also written alone into a fresh store of the same "
        "engine and options, and the same queries ran against both, interleaved. Target: tenant p50 <= 1.5x "
        "the alone p50, top-10 identical.",
        "",
        "| store | documents | ingest s | docs/s | tenant p50 ms | tenant p99 ms | alone p50 ms | tenant / alone "
        "| identical top-10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["documents"], r["store"])):
        lines.append(
            f"| {r['store']} | {r['documents']:,} | {r['ingest_s']:.1f} | {r['ingest_per_s']:,.0f} "
            f"| {r['tenant_p50_ms']:.2f} | {r['tenant_p99_ms']:.2f} | {r['alone_p50_ms']:.2f} "
            f"| **{r['ratio_p50']:.2f}** | {r['identical_top10']:.3f} |"
        )
    (RESULTS / "tenants-scale.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plt = scale_data.pyplot()
    if plt is None:
        return
    shown = sorted(rows, key=lambda r: r["store"])
    x = np.arange(len(shown))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(x - 0.2, [r["alone_p50_ms"] for r in shown], 0.4, label="the tenant's 200 documents alone")
    ax.bar(x + 0.2, [r["tenant_p50_ms"] for r in shown], 0.4, label="the tenant among 1,000 (namespace)")
    ax.set_xticks(x, [r["store"] for r in shown], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("search p50 (ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "tenants-scale.png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=20)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--stores", default=",".join(s for s in STORES if s != "milvus server"))
    args = ap.parse_args()
    out = RESULTS / "tenants-scale.json"
    rows = json.loads(out.read_text()) if out.exists() else []
    names = [s.strip() for s in args.stores.split(",") if s.strip()]
    for name, work, dsn in scale_data.each_store(names, {n: c["type"] for n, c in STORES.items()}, "tenants-"):
        row = run(name, args.tenants, args.sample, args.queries, work, dsn)
        rows = [r for r in rows if not (r["store"] == name and r["documents"] == row["documents"])] + [row]
        out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        report(rows)
    sys.exit(0)


if __name__ == "__main__":
    main()
