"""Speed and resource measurements: latency percentiles, QPS under concurrency, peak memory, disk size.

Latency is the store's search only (the query is already a vector), measured one query at a time after a
warm-up. QPS runs N client threads against the one open store for a fixed time, as concurrent users of an
application would. Memory counts this process *and its children* (the embedded PostgreSQL server, a Chroma
server), sampled in the background while the store is open.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .._optional import require


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 and mean of latencies, in milliseconds."""
    if not samples_s:
        return {}
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(ms.mean())}


def latency(search: Callable[[Any], object], vectors: Sequence[Any], warmup: int, n: int) -> list[float]:
    """Seconds per single call of ``search``, cycling through ``vectors``; the first ``warmup`` are not kept."""
    if not len(vectors):
        return []
    for i in range(min(warmup, n, len(vectors))):
        search(vectors[i])
    out = []
    for i in range(n):
        vec = vectors[i % len(vectors)]
        start = time.perf_counter()
        search(vec)
        out.append(time.perf_counter() - start)
    return out


def qps(search: Callable[[Any], object], vectors: Sequence[Any], clients: int, seconds: float) -> float:
    """Queries per second with ``clients`` threads calling ``search`` back to back for ``seconds``."""
    if not len(vectors):
        return 0.0
    stop = time.perf_counter() + seconds
    counts = [0] * clients

    def client(c: int) -> None:
        i = c
        while time.perf_counter() < stop:
            search(vectors[i % len(vectors)])
            counts[c] += 1
            i += clients

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client, c) for c in range(clients)]:
            f.result()
    return sum(counts) / (time.perf_counter() - start)


def tree_rss() -> int:
    """Resident memory of this process plus all its descendants, in bytes."""
    psutil = require("psutil", "bench", "psutil")
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += child.memory_info().rss
    return int(total)


class MemorySampler:
    """Peak resident memory of the process tree above a baseline, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.baseline = tree_rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        self.peak = max(self.peak, tree_rss())

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def peak_delta_mb(self) -> float:
        return max(self.peak - self.baseline, 0) / 2**20
