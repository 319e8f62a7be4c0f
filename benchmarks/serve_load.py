"""Load test of ``ragstore serve`` on loopback: embedding throughput with dynamic batching, search latency and
QPS, a soak mixing searches and upserts, and kill -9 during upserts. Bounded in count and time.

The server runs in its own process (as deployed: ``uvicorn``, one worker) on this machine's cores; the
clients are aiohttp on uvloop in this process, so at 64 clients they compete with the server for the same
two cores (the figures are what one small box does for itself, not a cluster).

    python -P benchmarks/serve_load.py [--soak 300]   # writes benchmarks/results/serve.{md,json}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import psutil
import uvloop
from rich.console import Console

from ragstore.data.beir import bundled_dataset, load_beir
from ragstore.stores.registry import create_embedder

HERE = Path(__file__).resolve().parent
CLIENTS = [1, 4, 16, 64]
console = Console(stderr=True)
_SERVE = """
import sys, uvicorn
from ragstore.config import load_config
from ragstore.serve import create_app
uvicorn.run(create_app(load_config(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_ENV: dict[str, str] = {}


def start(config: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **SERVER_ENV}
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(config), str(port)], env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


async def drive(url: str, clients: int, requests: list[tuple[str, dict[str, Any]]]) -> tuple[list[float], float, int]:
    """Send ``requests`` (path, body) from ``clients`` concurrent clients; (latencies, seconds, errors).

    aiohttp on uvloop with the bodies serialised beforehand: the load generator shares the server's two
    cores, so its own cost per request must stay small (httpx's pool cost several times as much CPU per request
    and collapsed at 64 connections)."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for path, body in requests:
        queue.put_nowait((path, json.dumps(body).encode()))
    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as client:

        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    path, body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t = time.perf_counter()
                async with client.post(path, data=body, headers=headers) as r:
                    await r.read()
                    latencies.append(time.perf_counter() - t)
                    if r.status != 200:
                        errors += 1

        start_t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, time.perf_counter() - start_t, errors


def raw_encode_rates(model: Any, texts: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """The model's own speed in this process, best of 3: batched with torch's default threads and with one
    (the baseline is the faster), then, with those threads, in calls of exactly 1, 4, 16 and 64 texts: the
    most a server can do when that many single-text clients wait at once (16 clients can never fill a batch
    of 64)."""
    import torch

    def best_rate(size: int) -> float:
        chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
        model.embed_documents(chunks[0])  # warm-up
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for chunk in chunks:
                model.embed_documents(chunk)
            best = min(best, time.perf_counter() - t)
        return len(texts) / best

    rates = {}
    default = torch.get_num_threads()
    for threads in sorted({default, 1}):
        torch.set_num_threads(threads)
        rates[str(threads)] = best_rate(len(texts))
    torch.set_num_threads(int(max(rates, key=lambda k: rates[k])))
    by_batch = {str(size): best_rate(size) for size in CLIENTS}
    torch.set_num_threads(default)
    return rates, by_batch


def batch_histogram(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("ragstore_model_batch_size_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out[le] = float(line.split()[-1])
    return out


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p) * 1000) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--soak", type=float, default=300.0, help="soak seconds (16 clients)")
    parser.add_argument("--texts", type=int, default=1024, help="texts per throughput level")
    parser.add_argument("--searches", type=int, default=1000, help="searches per concurrency level")
    parser.add_argument("--embeddings-only", action="store_true", help="only the embedding throughput (FAISS)")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="the server's serve.max_wait_ms")
    parser.add_argument("--server-threads", type=int, default=None, help="OMP_NUM_THREADS of the server")
    args = parser.parse_args()
    if args.server_threads:
        SERVER_ENV["OMP_NUM_THREADS"] = str(args.server_threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    folder = bundled_dataset("xquad-r")
    ds = load_beir(folder, query_lang="en", corpus_langs="en")
    questions = list(ds.queries.values())
    texts = (questions * 4)[: args.texts]
    model = create_embedder({"type": "sentence-transformers", "model": "all-MiniLM-L6-v2"})
    raw_rates, raw_by_batch = raw_encode_rates(model, texts)
    raw_rate = max(raw_rates.values())
    search_texts = (questions * 2)[: args.searches]
    search_vectors = [v.tolist() for v in model.embed_query(search_texts)]
    del model
    console.print(f"raw batched encode: {raw_rates} texts/s; by batch size: {raw_by_batch}")
    result: dict[str, Any] = {
        "texts": len(texts),
        "raw_texts_per_s": raw_rate,
        "raw_by_torch_threads": raw_rates,
        "raw_by_batch_size": raw_by_batch,
        "embeddings": [],
        "search": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    for store in ("faiss",) if args.embeddings_only else ("faiss", "pgvector"):
        cfg = tmp / f"{store}.yaml"
        cfg.write_text(
            f"data_dir: {tmp / 'data'}\ncache: false\nstore: {{type: {store}, path: {tmp / store}}}\n"
            f"serve: {{max_batch: 64, max_wait_ms: {args.max_wait_ms}, max_queue: 8192}}\n",
            encoding="utf-8",
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(cfg, port)
        try:
            docs = [{"id": d.id, "text": d.text} for d in ds.corpus]
            for s in range(0, len(docs), 128):
                httpx.post(url + "/v1/documents", json={"documents": docs[s : s + 128]}, timeout=300).raise_for_status()
            if store == "faiss":
                for clients in CLIENTS:
                    before = batch_histogram(url)
                    reqs = [("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": x}) for x in texts]
                    lat, secs, errors = uvloop.run(drive(url, clients, reqs))
                    after = batch_histogram(url)
                    hist = {le: after[le] - before.get(le, 0.0) for le in after}
                    row = {
                        "clients": clients,
                        "texts_per_s": len(texts) / secs,
                        "ratio_to_raw": len(texts) / secs / raw_rate,
                        "ratio_to_raw_same_batch": len(texts) / secs / raw_by_batch[str(clients)],
                        "p50_ms": pct(lat, 50),
                        "p99_ms": pct(lat, 99),
                        "errors": errors,
                        "batch_size_cumulative": hist,
                    }
                    result["embeddings"].append(row)
                    console.print(row)
            for kind in () if args.embeddings_only else ("text", "vector"):
                rows = []
                if kind == "text":
                    qs = [("/v1/search", {"query": q, "k": 10}) for q in search_texts]
                else:
                    qs = [("/v1/search", {"vector": v, "k": 10}) for v in search_vectors]
                for clients in CLIENTS:
                    lat, secs, errors = uvloop.run(drive(url, clients, qs))
                    rows.append(
                        {
                            "clients": clients,
                            "qps": len(qs) / secs,
                            "p50_ms": pct(lat, 50),
                            "p95_ms": pct(lat, 95),
                            "p99_ms": pct(lat, 99),
                            "errors": errors,
                        }
                    )
                    console.print(store, kind, rows[-1])
                result["search"][f"{store}, {kind} queries"] = rows
            if store == "faiss" and args.soak > 0 and not args.embeddings_only:
                result["soak"] = soak(url, proc.pid, questions, args.soak)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
    if args.embeddings_only:
        print(json.dumps(result["embeddings"], indent=1))
        return
    result["kill9"] = kill9(tmp)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    write_md(result, args.out / "serve.md")


def soak(url: str, pid: int, questions: list[str], seconds: float) -> dict[str, Any]:
    """16 clients for ``seconds``: 3 searches per upsert of 4 new documents; then every acknowledged id read back."""
    proc = psutil.Process(pid)
    rss_start = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    acked: list[str] = []
    counts = {"search": 0, "upsert": 0, "errors": 0}

    async def run() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            end = time.time() + seconds

            async def worker(w: int) -> None:
                i = 0
                while time.time() < end:
                    i += 1
                    if i % 4 == 0:
                        ids = [f"soak-{w}-{i}-{j}" for j in range(4)]
                        docs = [{"id": d, "text": f"{questions[(w * 7 + i) % len(questions)]} ({d})"} for d in ids]
                        r = await client.post("/v1/documents", json={"documents": docs})
                        if r.status_code == 200:
                            acked.extend(ids)
                            counts["upsert"] += 1
                        else:
                            counts["errors"] += 1
                    else:
                        r = await client.post(
                            "/v1/search", json={"query": questions[(w + i) % len(questions)], "k": 10}
                        )
                        counts["search" if r.status_code == 200 else "errors"] += 1

            await asyncio.gather(*(worker(w) for w in range(16)))

    before = httpx.get(f"{url}/v1/info").json()["store"]["count"]
    asyncio.run(run())
    rss_end = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    missing = asyncio.run(count_missing(url, acked))
    after = httpx.get(f"{url}/v1/info").json()["store"]["count"]
    out = {
        **counts,
        "seconds": seconds,
        "acked_docs": len(acked),
        "missing": missing,
        "count_grew_by": after - before,
        "rss_start_mb": rss_start / 2**20,
        "rss_end_mb": rss_end / 2**20,
    }
    console.print("soak", out)
    return out


async def count_missing(url: str, ids: list[str], clients: int = 16) -> int:
    """How many of ``ids`` the server does not have (every one read back, 16 keep-alive clients)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for d in ids:
        queue.put_nowait(d)
    missing = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def worker() -> None:
            nonlocal missing
            while not queue.empty():
                r = await client.get(f"/v1/documents/{queue.get_nowait()}")
                missing += r.status_code != 200

        await asyncio.gather(*(worker() for _ in range(clients)))
    return missing


def kill9(tmp: Path) -> dict[str, Any]:
    cfg = tmp / "kill.yaml"
    cfg.write_text(
        f"data_dir: {tmp / 'kdata'}\nembedder: {{type: hashing, dim: 384}}\n"
        f"store: {{type: faiss, path: {tmp / 'kfaiss'}}}\n",
        encoding="utf-8",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(cfg, port)
    acked: list[str] = []
    stop_at = time.time() + 3.0
    i = 0
    while time.time() < stop_at:
        ids = [f"k{i}-{j}" for j in range(8)]
        r = httpx.post(url + "/v1/documents", json={"documents": [{"id": d, "text": f"text {d}"} for d in ids]})
        if r.status_code == 200:
            acked += ids
        i += 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc = start(cfg, port)
    try:
        missing = asyncio.run(count_missing(url, acked))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    out = {"acked_docs": len(acked), "missing_after_restart": missing}
    console.print("kill -9", out)
    return out


def write_md(result: dict[str, Any], path: Path) -> None:
    lines = [
        "# `ragstore serve` under load (loopback, one uvicorn worker, this 2-core machine)",
        "",
        "`python -P benchmarks/serve_load.py`. all-MiniLM-L6-v2 (embedding cache off: every text reaches the model), "
        "FAISS flat and embedded pgvector, xquad-r. The clients "
        "are aiohttp on uvloop in one process, on the same two cores as the server and its model.",
        "",
        f"Embedding throughput, single short texts per request ({result['texts']} texts per level); raw batched "
        f"`encode` of the same texts in one process, best of 3: {result['raw_texts_per_s']:.0f} texts/s (by torch "
        f"threads: {', '.join(f'{k}: {v:.0f}' for k, v in result['raw_by_torch_threads'].items())}); in calls of "
        f"exactly 1 / 4 / 16 / 64 texts: "
        f"{' / '.join(f'{v:.0f}' for v in result['raw_by_batch_size'].values())} texts/s. N single-text clients "
        "can never give the model a batch larger than N, so the last ratio compares with the model's own speed at "
        "that batch size.",
        "",
        "| clients | texts/s | ratio to raw | p50 ms | p99 ms | errors | model calls, cumulative by batch size "
        "(<=1 / <=4 / <=16 / <=64) | ratio to raw in calls of N |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["embeddings"]:
        h = r["batch_size_cumulative"]
        dist = " / ".join(f"{h.get(k, 0):.0f}" for k in ("1.0", "4.0", "16.0", "64.0"))
        lines.append(
            f"| {r['clients']} | {r['texts_per_s']:.0f} | {r['ratio_to_raw']:.2f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['errors']} | {dist} | {r['ratio_to_raw_same_batch']:.2f} |"
        )
    for store, rows in result["search"].items():
        lines += [
            "",
            f"Search ({store}, k=10; text queries are embedded by the server, vector queries are not):",
            "",
            "| clients | QPS | p50 ms | p95 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['clients']} | {r['qps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['errors']} |"
            )
    if "soak" in result:
        s = result["soak"]
        lines += [
            "",
            f"Soak, 16 clients, {s['seconds']:.0f} s (3 searches per upsert of 4 documents): {s['search']} searches, "
            f"{s['upsert']} upserts, {s['errors']} errors; RSS {s['rss_start_mb']:.0f} -> {s['rss_end_mb']:.0f} MB; "
            f"{s['acked_docs']} acknowledged documents, {s['missing']} missing afterwards (each read back; the "
            f"count grew by {s['count_grew_by']}).",
        ]
    k = result["kill9"]
    lines += [
        "",
        f"kill -9 during upserts, then restart: {k['acked_docs']} acknowledged documents, "
        f"{k['missing_after_restart']} missing.",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
