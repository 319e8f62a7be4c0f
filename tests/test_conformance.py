"""The shared conformance suite on every store built into this package, in every configuration."""

from __future__ import annotations

from typing import Any

import pytest

from ragstore.testing import VectorStoreConformance


class TestMemoryStore(VectorStoreConformance):
    @pytest.fixture(params=["persistent", "ram"])
    def store_config(self, request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, Any]:
        return {"type": "memory", "path": str(tmp_path / "mem") if request.param == "persistent" else None}


class TestFaissFlat(VectorStoreConformance):
    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        return {"type": "faiss", "path": str(tmp_path / "faiss"), "index": "flat"}

    def break_engine(self, store: Any) -> None:
        store.db.conn.close()  # the SQLite sidecar, source of truth for ids, text and metadata


class TestFaissHnsw(VectorStoreConformance):
    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        # a tiny exact_filter_limit forces the HNSW id-selector path for filtered search too
        return {"type": "faiss", "path": str(tmp_path / "hnsw"), "index": "hnsw", "exact_filter_limit": 4}

    def break_engine(self, store: Any) -> None:
        store.db.conn.close()  # the SQLite sidecar, source of truth for ids, text and metadata


class TestFaissInMemory(VectorStoreConformance):
    @pytest.fixture
    def store_config(self) -> dict[str, Any]:
        return {"type": "faiss", "path": None}

    def break_engine(self, store: Any) -> None:
        store.db.conn.close()  # the SQLite sidecar, source of truth for ids, text and metadata
