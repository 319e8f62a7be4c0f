"""`ragstore serve` against a real uvicorn server started here: the official `openai` client, plain httpx,
bad input, API keys, batching, metrics, durability across a kill -9 and a SIGTERM drain."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs: pip install 'ragstore[serve]'")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from ragstore.config import load_config  # noqa: E402
from ragstore.errors import ConfigError  # noqa: E402
from ragstore.serve import create_app  # noqa: E402
from ragstore.serve.connections import uvicorn_config  # noqa: E402

HASHING = {"type": "hashing", "dim": 64}
KEY = "s3cret-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn in a thread, on a free loopback port."""

    def __init__(self, config: dict[str, Any], tmp: Path) -> None:
        cfg = load_config({"data_dir": str(tmp / "data"), **config})
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn_config(create_app(cfg), cfg.serve, "127.0.0.1", self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = {
        "embedder": HASHING,
        "store": {"type": "faiss", "path": str(tmp_path / "faiss"), "lexical": True},
        "serve": {"max_inputs": 100, "max_input_chars": 5000, "max_body_bytes": 200_000},
    }
    with Server(config, tmp_path) as s:
        yield s


def test_embeddings_with_the_openai_client(server: Server) -> None:
    openai = pytest.importorskip("openai")
    from ragstore.embedders.hashing import HashingEmbedder

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    texts = ["The super guarantee rate is 12%.", "SMSF trustees"]
    res = client.embeddings.create(model="hashing", input=texts)  # base64 on the wire by default
    got = np.array([d.embedding for d in res.data])
    want = HashingEmbedder(64).embed_documents(texts)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert [d.index for d in res.data] == [0, 1] and res.usage.total_tokens > 0
    floats = client.embeddings.create(model="hashing", input="one text", encoding_format="float")
    np.testing.assert_allclose(
        floats.data[0].embedding, HashingEmbedder(64).embed_documents(["one text"])[0], atol=1e-6
    )
    long = "many different words spread the hashed features over every one of the sixty four dimensions here"
    short = client.embeddings.create(model="hashing", input=long, dimensions=16)
    assert len(short.data[0].embedding) == 16
    assert np.linalg.norm(short.data[0].embedding) == pytest.approx(1.0)
    query = httpx.post(
        server.url + "/v1/embeddings", json={"model": "hashing", "input": ["q"], "input_type": "query"}
    ).json()
    assert len(query["data"][0]["embedding"]) == 64
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-large", input="x")
    assert [m.id for m in client.models.list()] == ["hashing"]  # what tools probing a server ask first
    assert client.models.retrieve("hashing").owned_by == "ragstore"


def test_documents_search_info_health_metrics(server: Server) -> None:
    c = httpx.Client(base_url=server.url, timeout=30)
    docs = [
        {"id": "a", "text": "The super guarantee rate is twelve percent.", "metadata": {"src": "ato"}},
        {"id": "b", "text": "SMSF trustees need an electronic service address.", "metadata": {"src": "ato"}},
        {"id": "c", "text": "Form 5 lists the rollover of benefits.", "metadata": {"src": "apra"}},
    ]
    r = c.post("/v1/documents", json={"documents": docs})
    assert r.status_code == 200 and r.json() == {"ids": ["a", "b", "c"], "count": 3}
    assert c.get("/v1/documents/b").json()["text"].startswith("SMSF")
    assert c.get("/v1/documents/zzz").status_code == 404
    hits = c.post("/v1/search", json={"query": "electronic service address", "k": 2}).json()
    assert hits["hits"][0]["id"] == "b" and hits["plan"]["search"] == "dense"
    hybrid = c.post("/v1/search", json={"query": "Form 5 rollover", "k": 2, "mode": "hybrid", "alpha": 0.2}).json()
    assert hybrid["hits"][0]["id"] == "c" and hybrid["plan"]["search"] == "hybrid"
    filtered = c.post("/v1/search", json={"query": "rate", "k": 5, "filter": {"src": "apra"}}).json()
    assert [h["id"] for h in filtered["hits"]] == ["c"]
    vec = c.post("/v1/embeddings", json={"model": "hashing", "input": "Form 5 lists the rollover of benefits."}).json()[
        "data"
    ][0]["embedding"]
    by_vector = c.post("/v1/search", json={"vector": vec, "k": 1}).json()
    assert by_vector["hits"][0]["id"] == "c"
    info = c.get("/v1/info").json()
    assert info["store"]["count"] == 3 and info["store"]["lexical"] is True and "config" not in info
    manifest = info["manifest"]  # what wrote the collection, kept by the engine
    assert (
        manifest["indexes"]["primary"]["embedder"]["type"] == "hashing"
        and manifest["indexes"]["lexical"]["kind"] == "bm25"
    )
    assert c.request("DELETE", "/v1/documents", json={"filter": {"src": "apra"}}).json() == {"deleted": 1}
    assert c.request("DELETE", "/v1/documents", json={"ids": ["a"]}).json() == {"deleted": 1}
    assert c.get("/healthz").json() == {"status": "ok"}
    ready = c.get("/readyz").json()
    assert ready == {"status": "ready"}  # how many documents is for /v1/info, behind the keys
    assert c.get("/no/such/path").status_code == 404
    metrics = c.get("/metrics").text
    assert "ragstore_requests_total" in metrics and "ragstore_model_batch_size_bucket" in metrics
    assert 'route="/v1/documents/{doc_id:path}"' in metrics and 'route="unmatched"' in metrics
    assert "/no/such/path" not in metrics and 'route="/v1/documents/b"' not in metrics  # bounded labels
    assert c.get("/openapi.json").json()["info"]["title"] == "ragstore"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "/v1/embeddings", b"{not json", 400, "not valid JSON"),
        ("POST", "/v1/embeddings", {"model": "hashing", "input": 5}, 400, "input"),
        ("POST", "/v1/embeddings", {"model": "hashing", "input": []}, 400, "empty"),
        ("POST", "/v1/embeddings", {"model": "hashing", "input": ["x"] * 101}, 400, "at most 100"),
        ("POST", "/v1/embeddings", {"model": "hashing", "input": ["x"] * 10_000}, 400, "at most 100"),
        ("POST", "/v1/embeddings", {"model": "hashing", "input": "x" * 5001}, 400, "characters"),
        ("POST", "/v1/embeddings", {"model": "hashing", "input": "x" * 1_000_000}, 413, "body"),
        ("POST", "/v1/embeddings", {"model": "hashing", "input": "x", "dimensions": 65}, 400, "dimensions"),
        ("POST", "/v1/embeddings", {"model": "hashing", "input": "x", "wat": 1}, 400, "wat"),
        ("POST", "/v1/search", {"query": "x", "filter": {"a": {"$regex": "x"}}}, 400, "FilterError"),
        ("POST", "/v1/search", {"vector": [0.1, 0.2], "k": 1}, 400, "Dimension"),
        ("POST", "/v1/search", {"k": 1}, 400, "exactly one"),
        ("POST", "/v1/search", {"query": "x", "mode": "sparse"}, 400, "mode"),
        ("POST", "/v1/search", {"query": "x", "k": "ten"}, 400, "k"),
        ("POST", "/v1/documents", {"documents": []}, 400, "empty"),
        ("POST", "/v1/documents", {"documents": "x"}, 400, "documents"),
        ("POST", "/v1/documents", {"documents": [{"text": "ok"}, {"text": " "}]}, 400, "empty"),
        ("POST", "/v1/documents", {"documents": [{"text": "ok", "vector": [1, 2]}]}, 400, "Dimension"),
        ("POST", "/v1/documents", {"documents": [{"text": "ok", "id": "bad\x00id"}]}, 400, "id"),
        ("DELETE", "/v1/documents", {}, 400, "exactly one"),
    ],
)
def test_bad_input_is_a_4xx_naming_it_and_writes_nothing(
    server: Server, method: str, path: str, body: Any, status: int, words: str
) -> None:
    c = httpx.Client(base_url=server.url, timeout=30)
    c.post("/v1/documents", json={"documents": [{"id": "keep", "text": "kept document"}]})
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = c.request(method, path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words.lower() in err["message"].lower() and "Traceback" not in r.text
    assert c.get("/v1/info").json()["store"]["count"] == 1  # nothing written, nothing lost
    assert c.get("/healthz").status_code == 200  # still serving


def test_api_keys(tmp_path: Path) -> None:
    config = {"embedder": HASHING, "store": {"type": "memory"}, "serve": {"api_keys": [KEY]}}
    with Server(config, tmp_path) as s:
        assert httpx.post(s.url + "/v1/embeddings", json={"model": "hashing", "input": "x"}).status_code == 401
        wrong = httpx.post(
            s.url + "/v1/embeddings", json={"model": "hashing", "input": "x"}, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        ok = httpx.post(
            s.url + "/v1/embeddings",
            json={"model": "hashing", "input": "x"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert ok.status_code == 200
        assert httpx.get(s.url + "/healthz").status_code == 200  # probes need no key
        assert httpx.get(s.url + "/metrics").status_code == 401
    cfg = load_config({"data_dir": str(tmp_path / "d"), "embedder": HASHING})
    with pytest.raises(ConfigError, match="API key"):
        create_app(cfg, host="0.0.0.0")


def test_concurrent_requests_are_batched(tmp_path: Path) -> None:
    config = {"embedder": HASHING, "store": {"type": "memory"}, "serve": {"max_wait_ms": 20}}
    with Server(config, tmp_path) as s:

        def one(i: int) -> list[float]:
            r = httpx.post(s.url + "/v1/embeddings", json={"model": "hashing", "input": f"text number {i}"}, timeout=30)
            assert r.status_code == 200
            return list(r.json()["data"][0]["embedding"])

        with ThreadPoolExecutor(16) as pool:
            vectors = list(pool.map(one, range(64)))
        from ragstore.embedders.hashing import HashingEmbedder

        np.testing.assert_allclose(
            vectors, HashingEmbedder(64).embed_documents([f"text number {i}" for i in range(64)]), atol=1e-6
        )
        metrics = httpx.get(s.url + "/metrics").text
        count = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("ragstore_model_batch_size_count")
        )
        assert count < 64  # fewer model calls than requests: they were coalesced


def test_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    config = {"embedder": HASHING, "store": {"type": "memory"}, "serve": {"max_queue": 3, "max_inputs": 10}}
    with Server(config, tmp_path) as s:
        r = httpx.post(s.url + "/v1/embeddings", json={"model": "hashing", "input": ["a", "b", "c", "d"]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert httpx.post(s.url + "/v1/embeddings", json={"model": "hashing", "input": ["a"]}).status_code == 200


_SERVE = """
import sys, uvicorn
from ragstore.config import load_config
from ragstore.serve import create_app
cfg = load_config(sys.argv[1])
uvicorn.run(create_app(cfg), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def _start(cfg: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(cfg), str(port)])
    try:
        _wait_ready(port, proc)
    except BaseException:
        proc.kill()
        raise
    return proc


@pytest.mark.parametrize("kind", ["faiss", "memory"])
def test_acknowledged_writes_survive_kill_9_and_sigterm_drains(tmp_path: Path, kind: str) -> None:
    cfg = tmp_path / "ragstore.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'data'}\nembedder: {{type: hashing, dim: 64}}\n"
        f"store: {{type: {kind}, path: {tmp_path / 'store'}}}\n",
        encoding="utf-8",
    )
    port = free_port()
    proc = _start(cfg, port)
    acked: list[str] = []
    try:
        for i in range(40):
            ids = [f"d{i}-{j}" for j in range(5)]
            docs = [{"id": d, "text": f"document {d}"} for d in ids]
            r = httpx.post(f"http://127.0.0.1:{port}/v1/documents", json={"documents": docs}, timeout=30)
            assert r.status_code == 200
            acked += ids
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    # restarted with a slow batcher, so a request is surely in flight when SIGTERM comes
    cfg.write_text(cfg.read_text(encoding="utf-8") + "serve: {max_wait_ms: 1000}\n", encoding="utf-8")
    proc = _start(cfg, port)
    try:
        for doc_id in acked[::7]:
            assert httpx.get(f"http://127.0.0.1:{port}/v1/documents/{doc_id}").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/info").json()["store"]["count"] == len(acked)
        late: dict[str, Any] = {}

        def send() -> None:
            docs = [{"id": "late", "text": "written while the server is asked to stop"}]
            late["r"] = httpx.post(f"http://127.0.0.1:{port}/v1/documents", json={"documents": docs}, timeout=60)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.4)
        proc.send_signal(signal.SIGTERM)  # drains the request in flight, then closes the store
        sender.join(60)
        assert late["r"].status_code == 200
        assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = _start(cfg, port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/v1/documents/late").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/info").json()["store"]["count"] == len(acked) + 1
    finally:
        proc.kill()
        proc.wait(30)


def test_the_serve_command_and_a_second_server_on_one_store(tmp_path: Path) -> None:
    """`ragstore serve` as a user runs it; a second server on the same embedded store shares it (FAISS) or
    is refused with a clear error (the memory store's folder belongs to one process)."""
    cli = [sys.executable, "-c", "from ragstore.cli import main; main()", "serve"]
    for kind, shared in (("faiss", True), ("memory", False)):
        cfg = tmp_path / f"{kind}.yaml"
        cfg.write_text(
            f"data_dir: {tmp_path / 'data'}\nembedder: {{type: hashing, dim: 64}}\n"
            f"store: {{type: {kind}, path: {tmp_path / kind}}}\n",
            encoding="utf-8",
        )
        port, port2 = free_port(), free_port()
        first = subprocess.Popen([*cli, "-c", str(cfg), "--port", str(port)])
        try:
            _wait_ready(port, first)
            docs = [{"id": "one", "text": "the first server wrote this"}]
            assert httpx.post(f"http://127.0.0.1:{port}/v1/documents", json={"documents": docs}).status_code == 200
            second = subprocess.Popen([*cli, "-c", str(cfg), "--port", str(port2)], stderr=subprocess.PIPE, text=True)
            try:
                if shared:
                    _wait_ready(port2, second)
                    assert httpx.get(f"http://127.0.0.1:{port2}/v1/documents/one").status_code == 200
                else:
                    _, err = second.communicate(timeout=120)
                    assert second.returncode == 2 and "BackendUnavailableError" in err, err
            finally:
                if second.poll() is None:
                    second.send_signal(signal.SIGTERM)
                    second.wait(60)
            refused = subprocess.run(
                [*cli, "-c", str(cfg), "--host", "0.0.0.0", "--port", str(port2)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert refused.returncode == 2 and "API key" in refused.stderr
        finally:
            first.send_signal(signal.SIGTERM)
            first.wait(60)


def _wait_ready(port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


def test_cli_search_and_ingest_through_a_running_server(tmp_path: Path) -> None:
    """`ragstore ingest/search --server URL` load no model: chunks go to the server, which embeds them, and
    answers come back with the same ids, scores, scales and plan as a local search of the same store."""
    from typer.testing import CliRunner

    from ragstore.cli import app as cli

    runner = CliRunner()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("SuperStream sends data and money together to super funds.")
    (tmp_path / "docs" / "b.md").write_text("A self-managed super fund can have up to six members.")
    with Server({"embedder": HASHING, "store": {"type": "faiss", "path": str(tmp_path / "f")}}, tmp_path) as s:
        sent = runner.invoke(cli, ["ingest", str(tmp_path / "docs"), "--server", s.url, "--no-progress"])
        assert sent.exit_code == 0, sent.output
        assert "2 chunks sent" in sent.output
        again = runner.invoke(cli, ["ingest", str(tmp_path / "docs"), "--server", s.url, "--no-progress"])
        assert again.exit_code == 0 and httpx.post(s.url + "/v1/search", json={"query": "x"}).json()["hits"]
        out = runner.invoke(cli, ["search", "six members", "--server", s.url, "--json", "-k", "2"])
        assert out.exit_code == 0, out.output
        answer = json.loads(out.stdout)
        assert [h["scale"] for h in answer["hits"]] == ["cosine", "cosine"] and answer["plan"]["path"] == "plain"
        assert "six members" in answer["hits"][0]["text"]
        hybrid = runner.invoke(cli, ["search", "SuperStream", "--server", s.url, "--mode", "hybrid"])
        assert hybrid.exit_code == 0 and "score (alpha)" in hybrid.output and "SuperStream" in hybrid.output
        bad = runner.invoke(cli, ["search", "x", "--server", s.url, "--filter", '{"$nope": 1}'])
        assert bad.exit_code == 2 and s.url in bad.output
    down = runner.invoke(cli, ["search", "x", "--server", s.url])
    assert down.exit_code == 2 and "did not answer" in " ".join(down.output.split())
