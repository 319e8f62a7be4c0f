"""Issue 28's serve cases: one bad text fails only its own request, strict request types, and a flood of idle
or slow connections leaves health checks and authorised requests answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs: pip install 'ragstore[serve]'")
httpx = pytest.importorskip("httpx")

from test_serve import HASHING, Server, _wait_ready, free_port  # noqa: E402

from ragstore.embedders.hashing import HashingEmbedder  # noqa: E402
from ragstore.errors import ValidationError  # noqa: E402
from ragstore.serve.batching import Batcher  # noqa: E402
from ragstore.types import Document, content_id  # noqa: E402

SURROGATE = "bad \ud800 text"


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()  # ensure_ascii: the lone surrogate travels as the JSON escape \\ud800


def test_surrogate_in_the_python_api_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="lone surrogate"):
        Document(text=SURROGATE)
    with pytest.raises(ValidationError, match="lone surrogate"):
        content_id(SURROGATE)
    assert content_id("text", "path/\udcff") == content_id("text", "path/\udcff")  # undecodable path bytes hash


def test_one_bad_request_in_a_batch_fails_only_itself(tmp_path: Path) -> None:
    config = {"embedder": HASHING, "store": {"type": "memory"}, "serve": {"max_wait_ms": 50}}
    with Server(config, tmp_path) as server, ThreadPoolExecutor(30) as pool:

        def call(i: int) -> httpx.Response:
            texts = ["fine", SURROGATE] if i == 7 else [f"text {i}"]
            return httpx.post(
                f"{server.url}/v1/embeddings",
                content=_body({"model": "hashing", "input": texts}),
                headers={"content-type": "application/json"},
                timeout=30,
            )

        answers = list(pool.map(call, range(30)))
    assert answers[7].status_code == 400
    assert "input 1" in answers[7].json()["error"]["message"] and "surrogate" in answers[7].json()["error"]["message"]
    assert [r.status_code for i, r in enumerate(answers) if i != 7] == [200] * 29


class _Fragile(HashingEmbedder):
    """Raises on one text, as a tokenizer does on input it cannot take."""

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if "boom" in texts:
            raise RuntimeError("tokenizer failed")
        return super().embed_documents(texts)


async def test_a_failure_inside_a_batch_is_retried_without_the_culprit() -> None:
    batcher = Batcher(_Fragile(dim=16), max_wait_ms=100, max_batch=64)
    batcher.start()
    try:
        jobs = [batcher.embed(["boom" if i == 3 else f"t{i}"], "passage") for i in range(10)]
        out = await asyncio.gather(*jobs, return_exceptions=True)
    finally:
        await batcher.stop()
    assert isinstance(out[3], RuntimeError)
    assert all(isinstance(v, np.ndarray) and v.shape == (1, 16) for i, v in enumerate(out) if i != 3)


@pytest.mark.parametrize("k", ["5", True, 2.0, None])
def test_search_k_is_strictly_an_integer(tmp_path: Path, k: Any) -> None:
    with Server({"embedder": HASHING, "store": {"type": "memory"}}, tmp_path) as server:
        r = httpx.post(f"{server.url}/v1/search", json={"query": "hello", "k": k}, timeout=30)
        assert r.status_code in (400, 422) and "k" in r.json()["error"]["message"], r.text
        ok = httpx.post(f"{server.url}/v1/search", json={"query": "hello", "k": 5}, timeout=30)
        assert ok.status_code == 200


# --------------------------------------------------------------------------------------- connection floods
_SERVE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))  # the default ulimit -n, hard limit too
sys.argv = ["ragstore", "serve", "-c", sys.argv[1], "--port", sys.argv[2]]
from ragstore.cli import main
main()
"""


def test_a_flood_of_idle_and_slow_connections_leaves_the_server_answering(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"this test opens 1,100 sockets; the hard descriptor limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300) if hard == resource.RLIM_INFINITY else hard, hard))
    cfg = tmp_path / "ragstore.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'data'}\nembedder: {{type: hashing, dim: 32}}\nstore: {{type: memory}}\n"
        "serve: {header_timeout_s: 3}\n",
        encoding="utf-8",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RAGSTORE_API_KEYS": "", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(cfg), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    idle: list[socket.socket] = []
    try:
        _wait_ready(port, proc)
        for _ in range(1100):  # more than the server's 1,024 descriptors
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            idle.append(s)
        started = time.time()
        health = httpx.get(f"{url}/healthz", timeout=10)
        embed = httpx.post(f"{url}/v1/embeddings", json={"model": "hashing", "input": ["still served"]}, timeout=10)
        assert health.status_code == 200 and embed.status_code == 200, (health.text, embed.text)
        assert time.time() - started < 10
        # a slow client (one header byte at a time) is cut at the header deadline, not kept forever
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        cut_after = None
        t0 = time.time()
        try:
            while time.time() - t0 < 15:
                slow.sendall(b"X")
                time.sleep(0.5)
        except OSError:
            cut_after = time.time() - t0
        slow.close()
        assert cut_after is not None and cut_after < 10, "the slow client was never cut off"
        # and the idle flood has been closed by the server by now
        closed = 0
        for s in idle[:50]:
            s.settimeout(0.5)
            with contextlib.suppress(TimeoutError, OSError):
                closed += s.recv(1) == b""
        assert closed == 50
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        for s in idle:
            s.close()
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "Too many open files" not in err, err[-2000:]
