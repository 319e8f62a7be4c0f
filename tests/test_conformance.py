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


class TestFaissIvf(VectorStoreConformance):
    @pytest.fixture(params=["ivf_pq"])  # ivf_sq8 differs only in its code type (tests/test_faiss.py, test_scale.py)
    def store_config(self, request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, Any]:
        # trained from the 8th vector on (re-trained at 64, 512...): every test runs on trained IVF lists and
        # their re-scoring; the tiny exact_filter_limit forces the widened-nprobe filtered path
        return {
            "type": "faiss",
            "path": str(tmp_path / "ivf"),
            "index": request.param,
            "ivf_train_at": 8,
            "exact_filter_limit": 4,
            "nprobe": 1,  # one list at a time: "k matches when k documents exist" must widen it itself
        }

    def break_engine(self, store: Any) -> None:
        store.db.conn.close()  # the SQLite sidecar, source of truth for ids, text and metadata


class TestFaissInMemory(VectorStoreConformance):
    @pytest.fixture
    def store_config(self) -> dict[str, Any]:
        return {"type": "faiss", "path": None}

    def break_engine(self, store: Any) -> None:
        store.db.conn.close()  # the SQLite sidecar, source of truth for ids, text and metadata
