"""The adapter's server mode (``uri``) against a real Milvus standalone server.

Runs when ``RAGSTORE_MILVUS_URI`` names one (``bash scripts/milvus-server.sh`` starts Milvus 2.3 from the
``milvus`` PyPI package on 127.0.0.1 and runs this file); skipped otherwise. Milvus 2.3 lacks the JSON
``exists`` operator the adapter's filters use (Milvus >= 2.4), so here filters must fail cleanly while
everything else behaves as on every other backend.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from ragstore.errors import BackendUnavailableError, EngineError
from ragstore.stores.base import VectorStore
from ragstore.stores.registry import create_store
from ragstore.testing import make_docs
from ragstore.types import Document

URI = os.environ.get("RAGSTORE_MILVUS_URI")
pytestmark = pytest.mark.skipif(not URI, reason="no Milvus server: set RAGSTORE_MILVUS_URI (scripts/milvus-server.sh)")


@pytest.fixture
def config() -> dict[str, str]:
    return {"type": "milvus", "uri": str(URI), "collection": f"rs_{uuid.uuid4().hex}"}


@pytest.fixture
def store(config: dict[str, str]) -> Iterator[VectorStore]:
    s = create_store(config)
    yield s
    s.drop()
    s.close()


def test_writes_are_read_back_at_once(store: VectorStore) -> None:
    docs = make_docs(60)
    store.upsert(docs)
    assert store.count() == 60  # strong consistency: a server's default would miss fresh writes
    assert store.search(docs[3].vector, 1)[0].id == docs[3].id
    assert len(store.get(filter=None)) == 60
    assert store.delete([docs[0].id]) == 1 and store.count() == 59


def test_crafted_ids_select_only_themselves(store: VectorStore) -> None:
    docs = make_docs(20)
    store.upsert(docs)
    evil = "zzz'] or id not in ['zzz"
    store.upsert(
        [Document(id=evil, text="evil", vector=np.ones(16)), Document(id='a"\n\\b', text="x", vector=np.ones(16))]
    )
    assert [d.id for d in store.get([evil])] == [evil]
    assert store.delete([evil, 'a"\n\\b']) == 2 and store.count() == 20


def test_reopen_checks_dimension_and_metric(store: VectorStore, config: dict[str, str]) -> None:
    store.upsert(make_docs(5))
    with pytest.raises(BackendUnavailableError, match="metric"):
        create_store({**config, "metric": "dot"})
    again = create_store(config)
    assert again.dim == 16 and again.count() == 5
    again.close()


def test_filters_need_milvus_2_4(store: VectorStore) -> None:
    store.upsert(make_docs(10))
    with pytest.raises(EngineError, match=r"exists|parse"):
        store.count({"tag": "alpha"})
