"""``ragstore bench``: up-front errors, figures checked against an independent computation, outputs, compare."""

from __future__ import annotations

import importlib.util
import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ragstore.bench import load_bench_config, plan, run_bench
from ragstore.bench.measure import latency, percentiles, qps
from ragstore.bench.report import compare, load_result, write_all
from ragstore.cli import app
from ragstore.data.beir import bundled_dataset
from ragstore.errors import BackendNotInstalledError, ConfigError, DatasetError, ValidationError
from ragstore.pipeline import sample_dataset

HASHING = {"type": "hashing", "dim": 128}
QUIET = {"speed": {"enabled": False}, "plots": False}


def _config(tmp_path: Path, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "embedders": [HASHING],
        "stores": [{"type": "memory"}],
        "query_paths": ["plain"],
        "output": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        **QUIET,
    }
    base.update(over)
    return base


def _bench(tmp_path: Path, **over: Any) -> dict[str, Any]:
    return run_bench(plan(load_bench_config(_config(tmp_path, **over))), progress=False)


def _copy_sample(tmp_path: Path) -> Path:
    target = tmp_path / "ds"
    shutil.copytree(sample_dataset(), target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return target


# ------------------------------------------------------------------------------------------- bad input first


@pytest.mark.parametrize(
    ("over", "error", "words"),
    [
        ({"stores": [{"type": "nosuchdb"}]}, ConfigError, "unknown store 'nosuchdb'"),
        ({"stores": [{"type": "faiss", "idx": "flat"}]}, ConfigError, "stores[0].idx: unknown key"),
        ({"stores": [{"type": "faiss", "sweep": {"ef": [1]}}]}, ConfigError, "faiss has no option 'ef'"),
        ({"stores": [{"type": "faiss", "sweep": {"ef_search": [0]}}]}, ConfigError, "ef_search"),
        ({"stores": [{"type": "faiss", "sweep": {"ef_search": []}}]}, ConfigError, "non-empty lists"),
        ({"embedders": [{"type": "nosuchmodel"}]}, ConfigError, "unknown embedder"),
        ({"query_paths": ["telepathy"]}, ConfigError, "unknown query path 'telepathy'"),
        ({"dataset": {"queries": ["fr"]}}, DatasetError, "no queries for language 'fr'"),
        ({"dataset": {"path": "/nonexistent/beir"}}, DatasetError, "does not exist"),
        ({"k": 0}, ConfigError, "k:"),
        ({"speed": {"concurrency": [0]}}, ConfigError, "concurrency"),
        ({"dataset": {"path": "x", "hub": "y"}}, ConfigError, "path or hub, not both"),
    ],
)
def test_bad_input_fails_before_any_work(tmp_path: Path, over: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error) as info:
        plan(load_bench_config(_config(tmp_path, **over)))
    assert words in str(info.value)
    assert not (tmp_path / "cache" / "embeddings.sqlite").exists()  # nothing was embedded


def test_dataset_problems_are_named(tmp_path: Path) -> None:
    ds = _copy_sample(tmp_path)
    with (ds / "qrels" / "test.en.tsv").open("a", encoding="utf-8") as fh:
        fh.write("q-en-001\tno-such-passage\t1\n")
    with pytest.raises(DatasetError, match="qrels name 1 passages not in the corpus"):
        plan(load_bench_config(_config(tmp_path, dataset={"path": str(ds)})))
    (ds / "corpus.en.jsonl").unlink()
    with pytest.raises(DatasetError, match="no corpus"):
        plan(load_bench_config(_config(tmp_path, dataset={"path": str(ds)})))


def test_missing_engine_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ragstore.stores.registry as registry

    monkeypatch.setattr(registry, "_importable", lambda module: module != "chromadb")
    with pytest.raises(BackendNotInstalledError, match=r"ragstore\[chroma\]"):
        plan(load_bench_config(_config(tmp_path, stores=[{"type": "chroma"}])))


def test_config_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    ds = _copy_sample(tmp_path)
    cfg = tmp_path / "conf" / "bench.yaml"
    cfg.parent.mkdir()
    cfg.write_text("dataset: {path: ../ds, queries: en}\nembedders: [{type: hashing}]\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus: unknown key"):
        load_bench_config(cfg)
    cfg.write_text("dataset: {path: ../ds, queries: en}\nembedders: [{type: hashing}]\n")
    assert plan(load_bench_config(cfg)).dataset_folder == ds


# ------------------------------------------------------------------------------------------- figures


def test_quality_matches_an_independent_computation(tmp_path: Path) -> None:
    """nDCG@10 from the bench equals numpy exact search + pytrec_eval called directly."""
    import pytrec_eval

    from ragstore.data.beir import load_beir
    from ragstore.embedders.hashing import HashingEmbedder

    result = _bench(tmp_path, stores=[{"type": "memory"}, {"type": "faiss", "index": "flat"}])
    emb = HashingEmbedder(128)
    for lang in ("en", "zh"):
        ds = load_beir(sample_dataset(), query_lang=lang, corpus_langs="en")
        docs = emb.embed_documents([d.text for d in ds.corpus])
        qids = list(ds.queries)
        scores = emb.embed_query([ds.queries[q] for q in qids]) @ docs.T
        run = {}
        for q, row in zip(qids, scores, strict=True):
            top = np.argsort(-row, kind="stable")[:100]
            run[q] = {ds.corpus[j].id: float(row[j]) for j in top}
        per_query = pytrec_eval.RelevanceEvaluator(ds.qrels, {"ndcg_cut.10"}).evaluate(run)
        expected = float(np.mean([per_query[q]["ndcg_cut_10"] for q in ds.qrels]))
        got = [r for r in result["rows"] if r["queries"] == lang]
        assert len(got) == 2
        for row in got:
            assert row["nDCG@10"] == pytest.approx(expected, abs=1e-6), row["store"]
            assert row["ann_recall@10"] == pytest.approx(1.0)
            assert row["n_queries"] == len(ds.queries)


def test_sweep_tunes_one_build_and_recall_follows_ef(tmp_path: Path) -> None:
    """A larger random corpus where ef_search=1 must lose neighbours that ef_search=200 finds."""
    ds = tmp_path / "rand"
    (ds / "qrels").mkdir(parents=True)
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(400)]
    with (ds / "corpus.jsonl").open("w") as fh:
        for i in range(1500):
            fh.write(json.dumps({"_id": f"d{i}", "text": " ".join(rng.choice(words, 6))}) + "\n")
    with (ds / "queries.jsonl").open("w") as fh, (ds / "qrels" / "test.tsv").open("w") as qr:
        for i in range(60):
            fh.write(json.dumps({"_id": f"q{i}", "text": " ".join(rng.choice(words, 3))}) + "\n")
            qr.write(f"q{i}\td{i}\t1\n")
    store = {"type": "faiss", "index": "hnsw", "hnsw_m": 4, "ef_construction": 8, "sweep": {"ef_search": [1, 200]}}
    result = _bench(tmp_path, dataset={"path": str(ds)}, stores=[store], embedders=[{"type": "hashing", "dim": 64}])
    rows = {r["setting"]: r for r in result["rows"]}
    assert set(rows) == {"ef_search=1", "ef_search=200"}
    assert rows["ef_search=1"]["ingest_s"] == rows["ef_search=200"]["ingest_s"]  # one build, tuned
    assert rows["ef_search=1"]["ann_recall@10"] < rows["ef_search=200"]["ann_recall@10"]
    assert rows["ef_search=200"]["ann_recall@10"] > 0.9
    assert all(r["exact"] is False for r in rows.values())


def test_build_time_sweep_builds_one_store_per_value(tmp_path: Path) -> None:
    result = _bench(tmp_path, stores=[{"type": "faiss", "index": "hnsw", "sweep": {"hnsw_m": [4, 8]}}])
    assert sorted({r["store"] for r in result["rows"]}) == ["faiss(index=hnsw) hnsw_m=4", "faiss(index=hnsw) hnsw_m=8"]


def test_second_run_embeds_nothing(tmp_path: Path) -> None:
    first = _bench(tmp_path)
    second = _bench(tmp_path)
    assert first["embedders"][0]["corpus"]["embedded"] == 62
    assert second["embedders"][0]["corpus"]["embedded"] == 0
    assert second["embedders"][0]["corpus"]["from_cache"] == 62
    assert all(q["embedded"] == 0 for q in second["embedders"][0]["queries"].values())
    assert [r["nDCG@10"] for r in first["rows"]] == [r["nDCG@10"] for r in second["rows"]]


def test_speed_figures_and_outputs(tmp_path: Path) -> None:
    speed = {"warmup": 2, "latency_queries": 30, "concurrency": [1, 2], "qps_seconds": 0.2}
    stores = [{"type": "faiss", "index": "hnsw", "sweep": {"ef_search": [8, 64]}}, {"type": "memory"}]
    result = _bench(tmp_path, stores=stores, speed=speed, plots=True, dataset={"queries": "en", "max_queries": 10})
    assert len(result["rows"]) == 3
    for row in result["rows"]:
        assert row["n_queries"] == 10
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert set(row["qps"]) == {"1", "2"} and all(v > 0 for v in row["qps"].values())
        assert row["ingest_per_s"] > 0 and row["peak_mem_mb"] >= 0
    by_store = {r["store"]: r for r in result["rows"]}
    assert by_store["faiss(index=hnsw)"]["disk_mb"] > 0
    assert by_store["memory"]["disk_mb"] > 0  # the bench gives every store a scratch folder
    meta = result["meta"]
    assert meta["machine"]["cores"] and meta["versions"]["ragstore"]
    assert meta["dataset"]["fingerprint"] and meta["config"]["stores"] == stores
    files = write_all(result, tmp_path / "report")
    names = {f.name for f in files}
    assert names == {"results.json", "results.md", "results.csv", "quality_vs_latency.png", "sweep.png"}
    for f in files:
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000
    md = (tmp_path / "report" / "results.md").read_text()
    assert "| store | setting | queries | nDCG@10 |" in md and "ef_search=64" in md
    lines = (tmp_path / "report" / "results.csv").read_text().splitlines()
    assert len(lines) == 4 and "qps_1" in lines[0] and "qps_2" in lines[0]
    assert load_result(tmp_path / "report")["rows"] == json.loads(json.dumps(result["rows"]))


def test_pooled_corpus_reports_the_language_of_top_hits(tmp_path: Path) -> None:
    ds = _copy_sample(tmp_path)
    rows = [{"_id": f"zh-{i}", "text": f"养老金 问题 {i} 退休 超级年金"} for i in range(5)]
    (ds / "corpus.zh.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (ds / "qrels" / "test.zh.tsv").write_text("query-id\tcorpus-id\tscore\nq01\tzh-1\t1\n")
    result = _bench(tmp_path, dataset={"path": str(ds), "queries": ["en", "zh"], "corpus": "en+zh"})
    assert result["meta"]["dataset"]["corpus"] == 62 + 5
    for row in result["rows"]:
        share = row["top10_lang_share"]
        assert set(share) == {"en", "zh"} and sum(share.values()) == pytest.approx(1.0)
        found = row["recall@10_by_lang"]  # was the answer in each language in the top 10?
        assert set(found) == {"en", "zh"} and all(0 <= v <= 1 for v in found.values())
    by_lang = {r["queries"]: r["top10_lang_share"] for r in result["rows"]}
    assert by_lang["zh"]["zh"] > by_lang["en"]["zh"]  # Chinese questions pull Chinese passages up


def test_a_failing_store_is_recorded_and_the_others_still_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "brokenstore.py"
    module.write_text(
        textwrap.dedent(
            """
            from ragstore.adapters.memory import MemoryStore

            class BrokenStore(MemoryStore):
                def _search(self, vector, k, node):
                    raise RuntimeError("engine crashed")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = _bench(tmp_path, stores=[{"type": "brokenstore:BrokenStore"}, {"type": "memory"}])
    assert [e["store"] for e in result["errors"]] == ["brokenstore:BrokenStore"]
    assert "engine crashed" in result["errors"][0]["error"]
    assert {r["store"] for r in result["rows"]} == {"memory"}


def test_compare_shows_changes_and_warns(tmp_path: Path) -> None:
    a = _bench(tmp_path, embedders=[{"type": "hashing", "dim": 128}])
    b = _bench(tmp_path, embedders=[{"type": "hashing", "dim": 128}])
    b["rows"][0]["nDCG@10"] = a["rows"][0]["nDCG@10"] + 0.1
    b["meta"]["dataset"]["fingerprint"] = "other"
    b["rows"].append({**b["rows"][0], "store": "extra"})
    table, notes = compare(a, b)
    assert table.row_count == len(a["rows"])
    cells = [str(c) for c in table.columns[3]._cells]
    assert "[green](+" in cells[0]
    assert any("different datasets" in n for n in notes)
    assert any("1 configurations appear in only one run" in n for n in notes)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DatasetError, match="not a ragstore bench result"):
        load_result(bad)


def test_measure_helpers() -> None:
    calls: list[int] = []
    samples = latency(calls.append, list(range(5)), warmup=3, n=20)
    assert len(samples) == 20 and len(calls) == 23
    p = percentiles([0.001, 0.002, 0.003, 0.004])
    assert p["p50_ms"] == pytest.approx(2.5) and p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"] <= 4.0
    assert qps(lambda v: None, [1, 2], clients=2, seconds=0.1) > 100


def test_tune_checks_names_and_values(tmp_path: Path) -> None:
    from ragstore.errors import UnsupportedFeatureError
    from ragstore.stores.registry import create_store

    store = create_store({"type": "faiss", "index": "hnsw"})
    with pytest.raises(UnsupportedFeatureError, match="tunable: ef_search"):
        store.tune(hnsw_m=8)
    with pytest.raises(ValidationError, match="ef_search=0"):
        store.tune(ef_search=0)
    store.tune(ef_search=7)
    assert store.options.ef_search == 7  # type: ignore[attr-defined]
    store.close()


# ------------------------------------------------------------------------------------------- hub loader


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="needs: pip install 'ragstore[hub]'")
def test_hub_loader_on_a_local_copy_of_a_hub_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MTEB-style repo (README configs corpus/queries/default) read through Hugging Face datasets."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    repo = tmp_path / "mteb-copy"
    (repo / "qrels").mkdir(parents=True)
    src = sample_dataset()
    shutil.copy(src / "corpus.en.jsonl", repo / "corpus.jsonl")
    shutil.copy(src / "queries.en.jsonl", repo / "queries.jsonl")
    shutil.copy(src / "qrels" / "test.en.tsv", repo / "qrels" / "test.tsv")
    (repo / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: default\n  data_files:\n  - split: test\n    path: qrels/test.tsv\n"
        "- config_name: corpus\n  data_files:\n  - split: corpus\n    path: corpus.jsonl\n"
        "- config_name: queries\n  data_files:\n  - split: queries\n    path: queries.jsonl\n---\n"
    )
    result = _bench(tmp_path, dataset={"hub": str(repo)})
    local = _bench(tmp_path, dataset={"queries": "en"})
    assert result["meta"]["dataset"]["corpus"] == 62
    assert result["rows"][0]["nDCG@10"] == pytest.approx(local["rows"][0]["nDCG@10"], abs=1e-9)
    with pytest.raises(DatasetError, match="cannot load"):
        _bench(tmp_path, dataset={"hub": str(tmp_path / "no-such-repo")})


# ------------------------------------------------------------------------------------------- command line


def test_cli_bench_runs_and_compares(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["bench", "--model", json.dumps(HASHING), "--store", "faiss:index=hnsw,ef_search=32", "--no-speed"]
    res = runner.invoke(app, [*args, "--out", "runs", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "ragstore bench · superannuation" in res.stdout and "faiss(index=hnsw, ef_search=32)" in res.stdout
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "results.json").exists()
    assert (tmp_path / ".ragstore" / "bench" / "embeddings.sqlite").exists()
    res = runner.invoke(app, ["bench", "compare", str(runs[0]), str(runs[0] / "results.json")])
    assert res.exit_code == 0, res.output
    assert "B vs A" in res.stdout
    res = runner.invoke(app, ["bench", "--store", "nosuchdb"])
    assert res.exit_code == 2
    assert "unknown store 'nosuchdb'" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["bench", "--store", "faiss:index"])
    assert res.exit_code == 2 and "expected key=value" in res.stderr


# ------------------------------------------------------------------------------------------- anchors


XQUAD = bundled_dataset("xquad-r")  # vendored in benchmarks/datasets, ships in the wheel


@pytest.mark.slow
@pytest.mark.model
def test_bench_reproduces_the_xquad_anchors(tmp_path: Path, minilm: Any) -> None:
    cfg = _config(
        tmp_path,
        dataset={"path": str(XQUAD), "queries": ["en", "zh"], "corpus": "en"},
        embedders=[{"type": "sentence-transformers", "model": "all-MiniLM-L6-v2", "backend": "torch"}],
        stores=[{"type": "faiss", "index": "flat"}, {"type": "memory"}],
    )
    result = run_bench(plan(load_bench_config(cfg)), progress=False)
    for row in result["rows"]:
        expected = 0.8301 if row["queries"] == "en" else 0.0489
        assert row["nDCG@10"] == pytest.approx(expected, abs=1e-4), row


def test_default_paths_follow_the_dataset_languages(tmp_path: Path) -> None:
    """English questions only: the bilingual paths are skipped (with the reason) and no multilingual model
    is loaded; named in query_paths, they run."""
    over = _config(tmp_path, dataset={"path": str(_copy_sample(tmp_path)), "queries": ["en"]})
    del over["query_paths"]
    english = plan(load_bench_config(over))
    assert english.config.query_paths == ["plain", "hybrid"] and english.routes == []
    assert {s["what"] for s in english.skipped} == {f"query path {p}" for p in ("translate", "route", "both")}
    assert all("no Chinese questions" in s["why"] for s in english.skipped)
    both = plan(load_bench_config({**over, "dataset": {"path": over["dataset"]["path"], "queries": ["en", "zh"]}}))
    assert "route" in both.config.query_paths or any("route" in s["what"] for s in both.skipped)
    named = plan(load_bench_config({**over, "query_paths": ["plain", "translate"]}))
    assert named.config.query_paths == ["plain", "translate"]


def test_quality_vs_latency_is_one_readable_figure(tmp_path: Path) -> None:
    """Ten configurations used to make a 6,600 px strip of 1-point panels: now one panel per query language,
    whatever the number of stores, models and paths, every point labelled."""
    from PIL import Image

    from ragstore.bench.report import plots

    rows = [
        {
            "embedder": emb,
            "store": store,
            "setting": None,
            "queries": lang,
            "path": path,
            "nDCG@10": 0.5 + 0.01 * i,
            "p50_ms": 0.1 * (i + 1),
            "p95_ms": 0.2 * (i + 1),
            "ann_recall@10": 1.0,
        }
        for i, (emb, store, lang, path) in enumerate(
            (e, s, lg, p)
            for e in ("minilm", "tuned")
            for s in ("faiss", "qdrant", "pgvector")
            for lg in ("en", "zh")
            for p in ("plain", "hybrid", "translate", "route", "both")
        )
    ]
    (png,) = plots({"rows": rows, "meta": {"dataset": {"name": "t"}}}, tmp_path)
    width, height = Image.open(png).size
    assert width <= 1600 and height <= 800, (width, height)


def test_a_namespaced_run_scores_exactly_as_a_plain_one(tmp_path: Path) -> None:
    """``namespace:``: the corpus in one tenant beside a decoy tenant holding the same ids with every text and
    vector moved one on; any leak across namespaces would move the scores."""
    stores = [{"type": "memory"}, {"type": "faiss", "index": "flat"}]
    paths = ["plain", "plain/hybrid", "plain/lexical"]
    plain = _bench(tmp_path / "plain", stores=stores, query_paths=paths)
    tenant = _bench(tmp_path / "tenant", stores=stores, query_paths=paths, namespace="acme")
    assert len(plain["rows"]) == len(tenant["rows"]) == 12
    for a, b in zip(plain["rows"], tenant["rows"], strict=True):
        assert b["namespace"] == "acme" and a["namespace"] is None
        # dense scores are the tenant's alone: identical; BM25's statistics (N, df, average length) are the
        # collection's, as in Lucene, Milvus and Qdrant, so the decoy's texts move lexical scores a little --
        # a leak would put the decoy's texts under judged ids and move them a lot
        close = 1e-9 if b["path"] == "plain" else 0.03
        for measure in ("nDCG@10", "Recall@10", "MRR@10"):
            assert b[measure] == pytest.approx(a[measure], abs=close), (b["store"], b["path"], measure)
    with pytest.raises(ConfigError, match="namespace"):
        plan(load_bench_config(_config(tmp_path, namespace="it's")))
