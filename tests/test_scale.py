"""The scale benchmark: its memory refusal, its growth fit, and the small run CI does (10K vectors)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ragstore.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "scale.py"


def _scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ragstore_scale_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-P", str(SCRIPT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False)


def test_a_run_that_cannot_fit_is_refused_with_the_estimate() -> None:
    scale = _scale()
    with pytest.raises(ConfigError, match=r"N=50,000,000 needs about \d+\.\d GiB.*24\.0 GiB available"):
        scale.check_memory("faiss flat", 50_000_000, available=24 * 2**30)
    scale.check_memory("faiss ivf-pq", 1_000_000, available=24 * 2**30)  # fits: no error
    # from the command line: refused before any vector is made or loaded
    done = _run("--sizes", "2000000000", "--settings", "faiss flat")
    assert done.returncode != 0
    assert "refused" in done.stderr and "GiB" in done.stderr, done.stderr[-2000:]


def test_growth_exponent_is_fitted_on_log_log() -> None:
    scale = _scale()
    rows = [{"n": n, "p50_ms": 0.01 * n**0.5} for n in (10_000, 100_000, 1_000_000)]
    assert scale.growth(rows, "p50_ms") == pytest.approx(0.5, abs=1e-9)
    assert scale.growth(rows[:1], "p50_ms") is None  # one size: nothing to fit


def test_unknown_setting_is_named() -> None:
    done = _run("--sizes", "1000", "--settings", "faiss flat,faiss-hnws")
    assert done.returncode != 0 and "faiss-hnws" in done.stderr


SMALL = ["faiss flat", "faiss ivf-pq", "faiss ivf-sq8", "qdrant-edge hnsw int8", "chroma hnsw", "milvus-lite hnsw"]
SMALL += ["pgvector hnsw binary"]


def test_small_scale_run_on_every_engine(tmp_path: Path) -> None:
    """CI's version: 10K synthetic vectors fitted to 1,000 real ones, every engine (and each quantised
    setting), short timings. Exact settings must find exactly the exact neighbours, with and without the 1%
    filter; approximate ones most of them, filtered too; the report, JSON and plot are written."""
    out = tmp_path / "out"
    args = ["--sizes", "10000", "--real-n", "1000", "--queries", "50", "--embed", "torch", "--seconds", "1,1,1"]
    done = _run(*args, "--settings", ",".join(SMALL), "--out", str(out), cwd=tmp_path, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows: list[dict[str, Any]] = json.loads((out / "scale.json").read_text())
    by = {r["setting"]: r for r in rows}
    assert set(by) == set(SMALL)
    failed = {s: r.get("failed") or r.get("skipped") for s, r in by.items() if "wall_s" not in r}
    assert not failed
    assert by["faiss flat"]["recall@10"] == 1.0 and by["faiss flat"]["filtered_recall@10"] == 1.0
    for s, r in by.items():
        assert r["recall@10"] >= 0.8, (s, r["recall@10"])
        assert r["filtered_recall@10"] >= 0.9, (s, r["filtered_recall@10"])  # Milvus: 0.68 before filtered_ef
        assert r["n"] == 10_000 and r["ingest_per_s"] > 0 and r["disk_per_vector"] > 0
    assert (out / "scale.png").stat().st_size > 10_000
    assert "| faiss ivf-pq | 10,000 | synthetic |" in (out / "scale.md").read_text()
