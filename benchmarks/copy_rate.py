"""`ragstore copy` against each destination's own bulk upsert, in one run.

100,000 documents x 384 dims (seeded unit vectors, short texts, four metadata fields) sit in a FAISS flat
store. For each destination -- qdrant-edge, pgvector (embedded server, ``index: none``: its fastest write, so
the copy's own cost shows most; with HNSW both sides spend their time building the graph) and Chroma
(embedded) --
alternating, best of ``--rounds``:

- **upsert**: the same documents, already in RAM with their vectors, written to a fresh store with
  ``VectorStore.upsert`` in batches of 1,000 (the destination's own bulk write rate through ragstore; the
  adapters' own overhead against each engine's client is in ``benchmarks/results/overhead.md``);
- **copy**: ``copy_collection`` from the FAISS store into a fresh collection of that destination: pages of
  1,000 read from FAISS (its SQLite sidecar), written through the collection's write path, a checkpoint in
  the destination's manifest after the first page and then at most every 0.25 s.

Ratio = copy docs/s / upsert docs/s (target >= 0.8). Writes ``benchmarks/results/copy-rate.{md,json}``.

    python -P benchmarks/copy_rate.py [--n 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ragstore.stores.collection import open_collection
from ragstore.stores.registry import resolve_store
from ragstore.transfer import StoreSource, copy_collection
from ragstore.types import Document

HERE = Path(__file__).resolve().parent
BATCH = 1000
console = Console(stderr=True)


def documents(n: int, dim: int) -> list[Document]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        Document(
            text=f"passage {i} about topic {i % 97}",
            id=f"doc-{i:07d}",
            metadata={"i": i, "topic": f"t{i % 97}", "score": float(i % 13) / 13, "even": i % 2 == 0},
            vector=vectors[i],
        )
        for i in range(n)
    ]


def open_store(block: dict[str, Any]) -> Any:
    cls, opts = resolve_store(dict(block), None)
    return cls(opts)


def block_for(kind: str, folder: Path, pg: Path) -> dict[str, Any]:
    if kind == "pgvector":
        return {"type": "pgvector", "path": str(pg), "table": f"t_{uuid.uuid4().hex[:10]}", "index": "none"}
    return {"type": kind, "path": str(folder / f"{kind}-{uuid.uuid4().hex[:8]}")}


def upsert_rate(docs: list[Document], block: dict[str, Any]) -> float:
    store = open_store(block)
    try:
        start = time.perf_counter()
        for s in range(0, len(docs), BATCH):
            store.upsert(docs[s : s + BATCH])
        store.flush()
        return len(docs) / (time.perf_counter() - start)
    finally:
        store.drop()
        store.close()


def copy_rate(source_block: dict[str, Any], block: dict[str, Any], n: int) -> float:
    with StoreSource(open_store(source_block)) as source, open_collection(block) as dest:
        start = time.perf_counter()
        report = copy_collection(source, dest, batch_size=BATCH, progress=False)
        seconds = time.perf_counter() - start
        assert report.copied == n == dest.count()
        dest.drop()
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="qdrant-edge,pgvector,chroma")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="copy-rate-"))
    try:
        docs = documents(args.n, args.dim)
        source_block = {"type": "faiss", "path": str(folder / "source")}
        src = open_store(source_block)
        for s in range(0, len(docs), 10_000):
            src.upsert(docs[s : s + 10_000])
        src.close()
        console.print(f"source: FAISS flat, {args.n:,} x {args.dim}")
        rows = []
        for kind in args.engines.split(","):
            pg = folder / "pg"
            ups, cps = [], []
            for r in range(args.rounds):
                order = ("upsert", "copy") if r % 2 == 0 else ("copy", "upsert")
                for what in order:
                    block = block_for(kind, folder, pg)
                    if what == "upsert":
                        ups.append(upsert_rate(docs, block))
                    else:
                        cps.append(copy_rate(source_block, block, args.n))
                    console.print(f"{kind} round {r + 1} {what}: {(ups if what == 'upsert' else cps)[-1]:,.0f} docs/s")
            up, cp = max(ups), max(cps)
            rows.append({"destination": kind, "upsert_docs_s": up, "copy_docs_s": cp, "ratio": cp / up})
        result = {"n": args.n, "dim": args.dim, "rounds": args.rounds, "batch": BATCH, "rows": rows}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "copy-rate.json").write_text(json.dumps(result, indent=2) + "\n")
        lines = [
            f"# copy FAISS -> destination vs the destination's own bulk upsert ({args.n:,} x {args.dim})",
            "",
            "| destination | own bulk upsert (docs/s) | copy from FAISS (docs/s) | ratio |",
            "|---|---|---|---|",
            *[
                f"| {r['destination']} | {r['upsert_docs_s']:,.0f} | {r['copy_docs_s']:,.0f} | {r['ratio']:.2f} |"
                for r in rows
            ],
            "",
            f"Best of {args.rounds} rounds each, alternating; batches of {BATCH}. `python -P benchmarks/copy_rate.py`",
        ]
        (args.out / "copy-rate.md").write_text("\n".join(lines) + "\n")
        console.print("\n".join(lines))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
