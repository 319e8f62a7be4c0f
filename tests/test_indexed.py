"""Declared (indexed) fields from every door: config, Python, CLI, serve, LangChain and LlamaIndex. The
per-engine behaviour (same results as undeclared fields, types refused, backfill) is the conformance class
``IndexedFieldTests``; here each door must carry the declaration through and show the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ragstore.cli import app as cli
from ragstore.config import load_config
from ragstore.errors import ConfigError, ValidationError
from ragstore.query.indexed import check_indexed, fits
from ragstore.types import Document

HASHING = {"type": "hashing", "dim": 32}
INDEXED = {"year": "integer", "src": "keyword", "when": "datetime", "ok": "bool", "w": "float"}
TEXTS = ["super guarantee rate", "SMSF trustee duties", "clearing house deadline", "super guarantee deadline"]
METAS: list[dict[str, Any]] = [
    {"year": 2024, "src": "ato", "when": "2024-05-01", "ok": True, "w": 0.5},
    {"year": 2023, "src": "apra", "when": "2023-01-31T12:00:00+00:00", "ok": False, "w": 2},
    {"year": 2024, "src": "ato"},
    {"year": 2025, "src": "ato", "w": -1.5},
]


def test_types_accept_their_values_and_nothing_else() -> None:
    assert fits("integer", 3) and not fits("integer", 3.0) and not fits("integer", True)
    assert fits("float", 3) and fits("float", 3.5) and not fits("float", False) and not fits("float", "3")
    assert fits("bool", False) and not fits("bool", 0)
    assert fits("keyword", "") and not fits("keyword", 1)
    assert fits("datetime", "2024-05-01") and fits("datetime", "2024-05-01T10:00:00Z")
    assert not fits("datetime", "yesterday") and not fits("datetime", 1714521600)
    with pytest.raises(ValidationError, match=r"document 'b': field 'when' is declared datetime"):
        check_indexed(INDEXED, ["a", "b"], [{"when": "2024-01-01"}, {"when": "soon"}])


def test_config_refuses_unknown_types_and_bad_field_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="indexed"):
        load_config({"store": {"type": "faiss", "indexed": {"year": "int"}}})
    with pytest.raises(ConfigError, match="indexed"):
        load_config({"store": {"type": "faiss", "indexed": {"bad key!": "keyword"}}})


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    cfg = {
        "data_dir": str(tmp_path / "data"),
        "embedder": HASHING,
        "store": {"type": "faiss", "path": str(tmp_path / "faiss"), "indexed": INDEXED},
    }
    path = tmp_path / "ragstore.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_python_cli_and_info_show_the_plan(config_file: Path) -> None:
    from ragstore.pipeline import Ragstore

    with Ragstore(load_config(config_file)) as rs:
        rs.add([Document(id=f"d{i}", text=t, metadata=m) for i, (t, m) in enumerate(zip(TEXTS, METAS, strict=True))])
        with pytest.raises(ValidationError, match="'year' is declared integer"):
            rs.add([Document(id="bad", text="x", metadata={"year": "2024"})])
        assert rs.count() == 4 and rs.count({"year": 2024, "src": "ato"}) == 2
        plan = rs.explain({"year": {"$gte": 2024}, "note": "x"})
        assert plan["indexed"] == ["year"] and plan["scanned"] == ["note"] and plan["strategy"] == "prefilter"
        assert plan["matching"] == 0 and plan["total"] == 4
        assert rs.info()["store"]["indexed"] == {"fields": INDEXED, "engine_index": True}
    runner = CliRunner()
    res = runner.invoke(cli, ["search", "x", "-c", str(config_file), "-f", '{"src": "ato"}', "--explain"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["indexed"] == ["src"] and shown["matching"] == 3 and shown["filter"] == {"src": {"$eq": "ato"}}
    res = runner.invoke(cli, ["search", "x", "-c", str(config_file), "-f", '{"src": {"$gt": "a"}}', "--explain"])
    assert res.exit_code != 0 and "needs a number" in res.output


def test_serve_explains_and_refuses_a_wrong_type(config_file: Path) -> None:
    pytest.importorskip("fastapi", reason="needs: pip install 'ragstore[serve]'")
    from fastapi.testclient import TestClient

    from ragstore.serve import create_app

    cfg = load_config(config_file)
    with TestClient(create_app(cfg)) as client:
        docs = [{"id": f"d{i}", "text": t, "metadata": m} for i, (t, m) in enumerate(zip(TEXTS, METAS, strict=True))]
        assert client.post("/v1/documents", json={"documents": docs}).status_code == 200
        bad = client.post("/v1/documents", json={"documents": [{"id": "x", "text": "t", "metadata": {"ok": "yes"}}]})
        assert bad.status_code == 400 and "'ok' is declared bool" in bad.json()["error"]["message"]
        plan = client.post("/v1/explain", json={"filter": {"ok": True}, "k": 3}).json()
        assert plan["indexed"] == ["ok"] and plan["matching"] == 1 and plan["k"] == 3
        hits = client.post("/v1/search", json={"query": "deadline", "filter": {"w": {"$lt": 1}}, "k": 4}).json()
        assert {h["id"] for h in hits["hits"]} == {"d0", "d3"}


def test_langchain_carries_the_declaration(tmp_path: Path) -> None:
    pytest.importorskip("langchain_core", reason="needs: pip install 'ragstore[langchain]'")
    from ragstore.integrations.langchain import RagstoreEmbeddings, RagstoreVectorStore

    block = {"type": "faiss", "path": str(tmp_path / "lc"), "indexed": INDEXED}
    vs = RagstoreVectorStore(block, RagstoreEmbeddings(HASHING))
    try:
        vs.add_texts(TEXTS, METAS, ids=["a", "b", "c", "d"])
        hits = vs.similarity_search("super guarantee", k=4, filter={"year": {"$gte": 2024}, "src": "ato"})
        assert {d.id for d in hits} == {"a", "c", "d"}
        with pytest.raises(ValidationError, match="'src' is declared keyword"):
            vs.add_texts(["x"], [{"src": 7}], ids=["e"])
        assert vs.store.count() == 4 and vs.store.explain({"src": "ato"})["indexed"] == ["src"]
    finally:
        vs.close()


def test_llamaindex_carries_the_declaration(tmp_path: Path) -> None:
    pytest.importorskip("llama_index.core", reason="needs: pip install 'ragstore[llamaindex]'")
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters, VectorStoreQuery

    from ragstore.integrations.llamaindex import RagstoreEmbedding, RagstoreVectorStore

    embed = RagstoreEmbedding(HASHING)
    store = RagstoreVectorStore({"type": "faiss", "path": str(tmp_path / "li"), "indexed": INDEXED})
    try:
        nodes = [
            TextNode(id_=f"n{i}", text=t, metadata=dict(m)) for i, (t, m) in enumerate(zip(TEXTS, METAS, strict=True))
        ]
        for n in nodes:
            n.embedding = embed.get_text_embedding(n.text)
        store.add(nodes)
        flt = MetadataFilters(filters=[MetadataFilter(key="year", value=2024, operator=FilterOperator.EQ)])
        qv = embed.get_query_embedding("deadline")
        res = store.query(VectorStoreQuery(query_embedding=qv, similarity_top_k=4, filters=flt))
        assert sorted(res.ids or []) == ["n0", "n2"]
        bad = TextNode(id_="bad", text="x", metadata={"year": "2024"})
        bad.embedding = qv
        with pytest.raises(ValidationError, match="'year' is declared integer"):
            store.add([bad])
        assert store.client.count() == 4
    finally:
        store.close()
