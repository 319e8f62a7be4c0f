"""Issue 28's cases, counted: what wave 2 added (serve, BM25, exports, IVF, ingest) tried as a hostile user.

Store cases run on every backend in a child process each, so a crash (a segfault in an engine) is counted as
a crash instead of ending the run. ``benchmarks/reliability.py`` calls :func:`run_all` and adds these rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ragstore.errors import DatasetError, FilterError, RagstoreError
from ragstore.testing.data import make_docs

Row = dict[str, Any]
PASSWORD = "s3cr3t-Pa55word"


def _row(category: str, backend: str, results: list[tuple[bool, bool]], lost: int = 0, crashes: int = 0) -> Row:
    return {
        "category": category,
        "backend": backend,
        "cases": len(results) + crashes,
        "passed": sum(ok for ok, _ in results),
        "data_lost": lost,
        "raw_errors": sum(tb for _, tb in results),
        "crashes": crashes,
    }


def _case(fn: Callable[[], bool]) -> tuple[bool, bool]:
    try:
        return bool(fn()), False
    except RagstoreError:
        return False, False
    except Exception:
        return False, True


def _refused(fn: Callable[[], Any], error: type[Exception]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            fn()
        except error:
            return True
        return False

    return check


# ------------------------------------------------------------------------------------------ store cases
def store_cases(config: dict[str, Any]) -> tuple[list[tuple[bool, bool]], int]:
    """Filter size and shape, k on every index, delete by a filter matching nothing: (results, data lost)."""
    from ragstore.stores.registry import create_store

    store = create_store(config)
    seed = make_docs()
    store.upsert(seed)
    q = seed[0].vector
    wide_or = {"$or": [{"i": i} for i in range(10_000)]}
    ranges = {"$or": [{"x": {"$gt": 1000 + i}} for i in range(10_000)]}
    at_limit = {"$or": [{"x": {"$gt": 1000 + i}} for i in range(511)] + [{"i": 3}]}
    cases: list[Callable[[], bool]] = [
        _refused(lambda: store.search(q, 5, filter=ranges), FilterError),  # crashed Chroma before
        _refused(lambda: store.count(ranges), FilterError),
        _refused(lambda: store.delete(filter=ranges), FilterError),
        _refused(lambda: store.count({"$or": [*at_limit["$or"], {"i": {"$gt": 5000}}]}), FilterError),
        _refused(lambda: store.count({"i": {"$in": list(range(10_001))}}), FilterError),
        lambda: store.count(at_limit) == 1,
        lambda: store.count(wide_or) == len(seed),
        lambda: len(store.search(q, 5, filter=wide_or)) == 5,
        lambda: store.delete(filter={"tag": "no such tag"}) == 0,  # Chroma raised before
        lambda: store.delete(filter={"i": {"$gt": 10**6}}) == 0,
        lambda: len(store.search(q, len(seed))) == len(seed),
        lambda: len(store.search(q, 16_384)) == len(seed),
    ]
    results = [_case(c) for c in cases]
    got = {d.id: d for d in store.get([d.id for d in seed])}
    lost = sum(1 for d in seed if d.id not in got or got[d.id].text != d.text or got[d.id].metadata != d.metadata)
    many = make_docs(1500, seed=11)
    store.upsert(many)
    results.append(_case(lambda: len(store.search(many[0].vector, 1500)) == 1500))
    results.append(_case(lambda: len(store.search(many[0].vector, 2000)) == store.count()))
    store.close()
    return results, lost


def store_rows(backends: dict[str, Callable[[Path], dict[str, Any]]], tmp: Path) -> list[Row]:
    rows = []
    extra = {
        "faiss-ivf": lambda root: {
            "type": "faiss",
            "path": str(root / "ivf"),
            "index": "ivf_sq8",
            "ivf_train_at": 100,
            "nprobe": 1,
        }
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    for name, make in {**backends, **extra}.items():
        config = make(tmp / f"w2-{name}")
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            crashed = proc.returncode < 0 or "Traceback" not in proc.stderr
            rows.append(_row("filters at size, k, empty deletes", name, [(False, not crashed)], crashes=int(crashed)))
            continue
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(_row("filters at size, k, empty deletes", name, [tuple(r) for r in out["results"]], out["lost"]))
    return rows


# ------------------------------------------------------------------------------------------ once-only cases
def pg_paths(tmp: Path) -> Row:
    from ragstore.errors import ConfigError
    from ragstore.stores.registry import create_store

    def works(name: str) -> bool:
        store = create_store({"type": "pgvector", "path": str(tmp / "pgp" / name / "pg"), "table": "t"})
        try:
            store.upsert(make_docs(3))
            return store.count() == 3
        finally:
            store.close()

    sockets = Path(tempfile.gettempdir())
    before = set(sockets.glob("ragstore-pg-*"))  # earlier runs' folders are not this case's
    names = ["x$(touch PWNED)", "with space", "q'uo\"te", "back`touch PWNED`", "a,b;touch PWNED", "d" * 100]
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        results = [_case(lambda n=n: works(n)) for n in names]
    finally:
        os.chdir(cwd)
    results.append((not list(tmp.rglob("PWNED")), False))
    for bad in ("new\nline", "bell\x07"):
        results.append(
            _case(_refused(lambda b=bad: create_store({"type": "pgvector", "path": str(tmp / b)}), ConfigError))
        )
    left = set(sockets.glob("ragstore-pg-*")) - before
    results.append((not left, False))
    return _row("pgvector data paths (shell, quotes, socket folders)", "pgvector", results)


_FIRST = """
import sys, time
from ragstore.stores.registry import create_store
from ragstore.testing import make_docs
while time.time() < float(sys.argv[3]):
    time.sleep(0.001)
s = create_store({"type": "pgvector", "dsn": sys.argv[1], "table": sys.argv[2]})
s.upsert(make_docs(4)); s.close(); print("ok")
"""


def pg_first_use(tmp: Path) -> Row:
    from ragstore.adapters import _pgserver

    results = []
    for run in range(3):
        pgdata = tmp / f"first{run}"
        conninfo = _pgserver.acquire(pgdata)
        try:
            start = time.time() + 3
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", _FIRST, conninfo, f"t{i}", str(start)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for i in range(4)
            ]
            for p in procs:
                _, err = p.communicate(timeout=120)
                results.append(
                    (p.returncode == 0, "Traceback" in err and "RagstoreError" not in err and p.returncode != 0)
                )
        finally:
            _pgserver.release(pgdata)
    return _row("pgvector first use by 4 processes at once", "pgvector", results)


def secrets(tmp: Path) -> Row:
    from ragstore.adapters import _pgserver
    from ragstore.bench import load_bench_config, plan, run_bench
    from ragstore.bench.report import write_all
    from ragstore.pipeline import Ragstore

    os.environ["RS_DB_PASSWORD"] = PASSWORD
    conninfo = _pgserver.acquire(tmp / "secret-pg")
    results = []
    try:
        dsn = f"{conninfo} password=${{RS_DB_PASSWORD}}"
        cfg = tmp / "bench.yaml"
        cfg.write_text(
            "embedders: [{type: hashing, dim: 64}]\nquery_paths: [plain]\nplots: false\nspeed: {enabled: false}\n"
            f"output: {tmp / 'bench-out'}\ncache_dir: {tmp / 'bench-cache'}\n"
            f'stores: [{{type: pgvector, dsn: "{dsn}"}}]\n'
        )
        result = run_bench(plan(load_bench_config(cfg)), progress=False)
        write_all(result, tmp / "bench-out", with_plots=False)
        files = [p for p in (tmp / "bench-out").rglob("*") if p.is_file()]
        results.append((bool(files) and not any(PASSWORD.encode() in p.read_bytes() for p in files), False))
        with Ragstore.open(
            {
                "data_dir": str(tmp / "info"),
                "embedder": {"type": "hashing", "dim": 16},
                "store": {"type": "pgvector", "dsn": dsn, "table": "info"},
            }
        ) as rs:
            results.append((PASSWORD not in json.dumps(rs.info(), default=str), False))
    finally:
        _pgserver.release(tmp / "secret-pg")
    return _row("secrets in bench results and info", "-", results)


def ingest_cases(tmp: Path) -> Row:
    from ragstore.pipeline import Ragstore

    folder = tmp / "ingest"
    folder.mkdir()
    fifo = folder / "pipe.txt"
    os.mkfifo(fifo)
    big = folder / "big.txt"
    with open(big, "wb") as fh:
        fh.truncate(101 * 2**20)
    zeros = folder / "zeros.md"
    with open(zeros, "wb") as fh:
        fh.truncate(90 * 2**20)
    cfg = {
        "data_dir": str(tmp / "ingest-data"),
        "embedder": {"type": "hashing", "dim": 16},
        "store": {"type": "memory"},
    }
    with Ragstore.open(cfg) as rs:
        results = [_case(_refused(lambda f=f: rs.ingest(f), DatasetError)) for f in (fifo, big, zeros)]
        results.append((rs.count() == 0, False))
    return _row("ingest: FIFO, 101 MB file, 90 MB of NULs", "-", results)


def serve_cases(tmp: Path) -> list[Row]:
    import httpx

    cfg = tmp / "serve.yaml"
    cfg.write_text(
        f"data_dir: {tmp / 'serve'}\nembedder: {{type: hashing, dim: 32}}\nstore: {{type: memory}}\n"
        "serve: {max_wait_ms: 50}\n"  # the default header deadline (10 s) cuts the slow client
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    child = (
        "import resource, sys\nresource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))\n"
        "sys.argv = ['ragstore', 'serve', '-c', sys.argv[1], '--port', sys.argv[2]]\n"
        "from ragstore.cli import main\nmain()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(cfg), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    batch: list[tuple[bool, bool]] = []
    flood: list[tuple[bool, bool]] = []
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"ragstore serve exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)

        def status(method: str, path: str, **kw: Any) -> int:
            """The answer's status, or 0 when the server dropped or never answered the request."""
            try:
                return httpx.request(method, f"{url}{path}", timeout=10, **kw).status_code
            except httpx.HTTPError:
                return 0

        def call(i: int) -> int:
            texts = ["fine", "bad \ud800"] if i == 7 else [f"text {i}"]
            body = json.dumps({"model": "hashing", "input": texts}).encode()
            return status("POST", "/v1/embeddings", content=body, headers={"content-type": "application/json"})

        with ThreadPoolExecutor(30) as pool:
            codes = list(pool.map(call, range(30)))
        batch = [((c == 400) if i == 7 else (c == 200), c >= 500) for i, c in enumerate(codes)]
        for k in ("5", True, 2.0):
            c = status("POST", "/v1/search", json={"query": "x", "k": k})
            batch.append((c in (400, 422), c >= 500))
        idle = []
        try:
            for _ in range(1100):
                with contextlib.suppress(OSError):
                    idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            flood.append((status("GET", "/healthz") == 200, False))
            flood.append((status("POST", "/v1/embeddings", json={"model": "hashing", "input": ["x"]}) == 200, False))
            slow = socket.create_connection(("127.0.0.1", port), timeout=10)
            slow.sendall(b"GET /healthz HTTP/1.1\r\n")
            cut = False
            for _ in range(30):
                try:
                    slow.sendall(b"X")
                except OSError:
                    cut = True
                    break
                time.sleep(0.5)
            slow.close()
            flood.append((cut, False))
        finally:
            for s in idle:
                s.close()
        flood.append((status("GET", "/healthz") == 200, False))
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    crashed = int(proc.returncode not in (0, -15))
    return [
        _row("serve: a bad text among 30 batched requests, strict types", "-", batch),
        _row("serve: 1,100 idle connections (ulimit 1024) and a slow client", "-", flood, crashes=crashed),
    ]


def export_cases(tmp: Path) -> Row | None:
    """A patched gate report (digests matching a swapped model; passed flipped) is never trusted."""
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("onnxruntime") is None:
        return None
    import sentence_transformers as st
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder, resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    folder = tmp / "tiny"
    BertModel(config).save_pretrained(folder / "bert")
    tok.save_pretrained(folder / "bert")
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer
    modules = [Transformer(str(folder / "bert"), max_seq_length=64), Pooling(32, "mean")]
    st.SentenceTransformer(modules=modules, device="cpu").save(str(folder / "model"))
    model, exports = str(folder / "model"), str(tmp / "exports")
    texts = ["one text", "another text"]
    first = SentenceTransformerEmbedder(model, backend="onnx", export_dir=exports)
    want = first.embed_documents(texts)
    gate = Path(exports) / "onnx-none" / "gate.json"
    onnx = gate.with_name("model.onnx")
    results = []
    import hashlib

    onnx.write_bytes(onnx.read_bytes()[:-64] + bytes(64))
    report = json.loads(gate.read_text())
    report["files"] = {"model.onnx": hashlib.sha256(onnx.read_bytes()).hexdigest()}
    gate.write_text(json.dumps(report))
    results.append(
        _case(
            lambda: bool(
                np.allclose(
                    SentenceTransformerEmbedder(model, backend="onnx", export_dir=exports).embed_documents(texts),
                    want,
                    atol=1e-6,
                )
            )
        )
    )
    SentenceTransformerEmbedder(model, backend="onnx", export_dir=str(tmp / "fresh"))  # a good export to flip
    gate = Path(tmp / "fresh") / "onnx-none" / "gate.json"
    exports = str(tmp / "fresh")
    report = json.loads(gate.read_text())
    report["passed"] = False
    gate.write_text(json.dumps(report))
    results.append(
        _case(lambda: SentenceTransformerEmbedder(model, backend="onnx", export_dir=exports).gate_report["passed"])
    )
    return _row("export gate report edited by hand", "-", results)


def run_all(
    backends: dict[str, Callable[[Path], dict[str, Any]]], tmp: Path, progress: Callable[[str], None]
) -> list[Row]:
    rows = store_rows(backends, tmp)
    for name, fn in (
        ("pgvector paths", pg_paths),
        ("pgvector first use", pg_first_use),
        ("secrets", secrets),
        ("ingest", ingest_cases),
        ("exports", export_cases),
    ):
        progress(name)
        row = fn(tmp)
        if row is not None:
            rows.append(row)
    progress("serve")
    rows.extend(serve_cases(tmp))
    return rows


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    res, lost = store_cases(json.loads(sys.argv[2]))
    print(json.dumps({"results": res, "lost": lost}))
