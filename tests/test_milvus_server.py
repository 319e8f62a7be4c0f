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
from typing import Any

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


def test_a_server_without_the_bm25_function_keeps_the_sidecar(config: dict[str, str], tmp_path: Any) -> None:
    """Milvus 2.3 has no BM25 function: the leg stays in the sidecar, which on a server needs `lexical_path`."""
    from ragstore.errors import ConfigError
    from ragstore.stores.collection import open_collection

    probe = create_store(config)
    try:
        assert not probe.lexical_native
    finally:
        probe.close()
    with pytest.raises(ConfigError, match="lexical_path"):
        open_collection({**config, "lexical": True})
    docs = make_docs(30)
    with open_collection({**config, "lexical": True, "lexical_path": str(tmp_path)}) as coll:
        coll.upsert(docs)
        assert coll.lexical_leg == "sidecar"
        assert coll.search_lexical(docs[4].text, 1)[0].id == docs[4].id
        coll.drop()


def test_two_app_servers_on_one_milvus_server(config: dict[str, str], tmp_path: Any) -> None:
    """Two `ragstore serve` processes on one Milvus 2.3 server, sharing the sidecar through one folder (this
    server has no native leg, so the app servers must share a disk): writes and deletes through one are seen
    through the other at once, dense, lexical and hybrid."""
    pytest.importorskip("fastapi")
    from test_two_servers import App, _config, _word

    block = {**config, "lexical": True, "lexical_path": str(tmp_path / "shared")}
    a, b = App(_config(tmp_path, "a", block)), App(_config(tmp_path, "b", block))
    try:
        for i in range(6):
            text = f"pension {_word(i)} {_word(i + 1000)} {_word(i + 2000)}"
            a.write([{"id": f"doc-{i}", "text": text}])
            assert b.ids(_word(i), "lexical")[:1] == [f"doc-{i}"]
            assert b.ids(text, "dense", 1) == [f"doc-{i}"]
            assert f"doc-{i}" in b.ids(f"{_word(i)} pension", "hybrid", 3)
        import httpx

        r = httpx.request("DELETE", a.url + "/v1/documents", json={"ids": ["doc-2"]}, timeout=60)
        assert r.json()["deleted"] == 1
        assert "doc-2" not in b.ids(_word(2), "lexical")
    finally:
        a.stop()
        b.stop()


def test_namespaces_on_a_milvus_server(config: dict[str, str]) -> None:
    """Namespaces on a real server: the same ids in two tenants are two documents, and every call of one
    tenant (search, get, count, delete) stays in its own. The namespace is a plain column on 2.3 (its upsert
    misroutes partition keys; 2.4 and later get the key), compared without JSON ``exists``, which 2.3 lacks."""
    store = create_store({**config, "namespaces": True})
    try:
        docs = make_docs(8)
        for ns in ("a", "b"):
            store.upsert([Document(text=f"{ns} {d.text}", id=d.id, vector=d.vector) for d in docs], namespace=ns)
        assert store.namespaces() == {"a": 8, "b": 8}
        for ns in ("a", "b"):
            hits = store.search(docs[0].vector, 8, namespace=ns)
            assert len(hits) == 8 and {h.text.split()[0] for h in hits} == {ns} and hits[0].id == docs[0].id
            assert store.get([docs[1].id], namespace=ns)[0].text == f"{ns} {docs[1].text}"
        assert store.delete([d.id for d in docs[:3]], namespace="a") == 3
        assert store.count(namespace="a") == 5 and store.count(namespace="b") == 8
        store.clear(namespace="b")
        assert store.namespaces() == {"a": 5}
    finally:
        store.drop()
        store.close()
