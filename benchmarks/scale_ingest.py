"""Bulk ingest into FAISS: ragstore's ``upsert`` against FAISS's own ``add``, same vectors, same process.

ragstore writes every vector, id, text and metadata row to its SQLite sidecar (the source of truth that makes
a crash lose nothing) and adds it to the index, then writes the index file on close. The baselines: FAISS's
``add_with_ids`` alone (what the issue asks for), and ``add_with_ids`` + ``write_index`` (the same index
persisted, without the sidecar). Rounds alternate ragstore and FAISS so drift hits both, and each timed part
starts after ``os.sync()``: the 1.5 GB one side leaves dirty in the page cache would otherwise be written
back while the other side is being timed (this disk's first 1.5 GB write after another took 1-10 s).
Without the scale cache (``scale_data.py``), random unit vectors stand in (flat and sidecar costs do not
depend on the values; HNSW's do, a little).

    python -P benchmarks/scale_ingest.py --n 1000000 --index flat   # appends to results/scale-ingest.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent))  # last: benchmarks/datasets must not shadow HF datasets
import scale
import scale_data

STEP = 10_000


def faiss_native(vecs: np.ndarray, n: int, cfg: dict[str, Any], folder: Path) -> dict[str, float]:
    import faiss

    dim = vecs.shape[1]
    if cfg["index"] == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = cfg.get("ef_construction", 200)
    else:
        inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    os.sync()
    t = time.perf_counter()
    for start in range(0, n, STEP):
        stop = min(n, start + STEP)
        index.add_with_ids(np.ascontiguousarray(vecs[start:stop], dtype=np.float32), np.arange(start, stop))
    add_s = time.perf_counter() - t
    faiss.write_index(index, str(folder / "native.faiss"))
    return {"add_s": add_s, "add_write_s": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--index", choices=["flat", "hnsw"], default="flat")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    real_file = scale_data.CACHE / "real-100000-openvino.npy"
    synthetic = sorted(scale_data.CACHE.glob(f"synthetic-{args.n}-of-*.npy"))
    data = "real" if real_file.exists() and args.n <= 100_000 else "synthetic" if synthetic else "random"
    if data == "real":
        vecs = np.asarray(np.load(real_file, mmap_mode="r")[: args.n])
    elif data == "synthetic":
        vecs = np.load(synthetic[0], mmap_mode="r")
    else:
        vecs = np.random.default_rng(0).standard_normal((args.n, 384), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cfg = dict(scale.SETTINGS[f"faiss {args.index}"][0])
    rows = []
    for r in range(args.rounds):
        scale_data.CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scale_data.CACHE.resolve()) as tmp:
            folder = Path(tmp)
            native = faiss_native(vecs, args.n, cfg, folder)
            file = _save(vecs, folder)
            os.sync()
            mine = scale.ingest({**cfg, "path": str(folder / "store")}, file, args.n)
            shutil.rmtree(folder / "store", ignore_errors=True)
        rows.append({"round": r, **native, **mine})
        print(json.dumps(rows[-1]), flush=True)
    best = {k: min(x[k] for x in rows) for k in ("add_s", "add_write_s", "ingest_s")}
    out = {
        "n": args.n,
        "index": args.index,
        "data": data,
        "rounds": rows,
        "ragstore_per_s": args.n / best["ingest_s"],
        "faiss_add_per_s": args.n / best["add_s"],
        "ratio_to_add": best["add_s"] / best["ingest_s"],
        "ratio_to_add_and_write": best["add_write_s"] / best["ingest_s"],
    }
    print(json.dumps(out))
    file = scale.RESULTS / "scale-ingest.json"
    prior = json.loads(file.read_text()) if file.exists() else []
    prior = [p for p in prior if (p["n"], p["index"]) != (args.n, args.index)]
    file.write_text(json.dumps([*prior, out], indent=1))


def _save(vecs: np.ndarray, folder: Path) -> str:
    """ragstore's ingest reads its vectors from a file, like the scale runs."""
    if isinstance(vecs, np.memmap) and vecs.filename:
        return str(vecs.filename)
    file = folder / "vectors.npy"
    np.save(file, np.asarray(vecs, dtype=np.float32), allow_pickle=False)
    return str(file)


if __name__ == "__main__":
    main()
