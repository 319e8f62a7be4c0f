"""Hostile input, threads and processes against every backend, counted: cases tried, passed, data lost.

Each backend starts from the same 60 seeded documents. A case passes when ragstore either refuses it with a
``RagstoreError`` that the documented rule predicts, or does exactly what was asked; after every category
the seeded documents are checked (count, ids, text and metadata): any missing or altered one is data lost.
CLI cases pass when the command exits 2 with one red line and no traceback.

    python -P benchmarks/reliability.py [--backends memory,faiss,...] [--out benchmarks/results/reliability]

Wave 2's surfaces (serve, BM25, exports, IVF, ingest; issue 28) are counted by ``reliability_wave2.py``; a
store case there runs in a child process, so an engine that crashes is counted under "crashes".
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ragstore.errors import RagstoreError, ValidationError
from ragstore.pipeline import Ragstore
from ragstore.stores.base import VectorStore
from ragstore.stores.registry import create_store
from ragstore.testing.conformance import _SECOND_WRITER, allowed_value
from ragstore.testing.data import DIM, make_docs
from ragstore.testing.strategies import HOSTILE_PIECES
from ragstore.types import Document

HERE = Path(__file__).resolve().parent
COLUMNS = ("category", "backend", "cases", "passed", "data_lost", "raw_errors")
BACKENDS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "memory": lambda root: {"type": "memory", "path": str(root / "mem")},
    "faiss": lambda root: {"type": "faiss", "path": str(root / "faiss")},
    "faiss-hnsw": lambda root: {"type": "faiss", "path": str(root / "hnsw"), "index": "hnsw"},
    "chroma": lambda root: {"type": "chroma", "path": str(root / "chroma")},
    "milvus": lambda root: {"type": "milvus", "path": str(root / "milvus")},
    "qdrant": lambda root: {"type": "qdrant", "path": str(root / "qdrant")},
    "qdrant-edge": lambda root: {"type": "qdrant-edge", "path": str(root / "edge")},
    "pgvector": lambda root: {"type": "pgvector", "path": str(root / "pg")},
}


def hostile_values() -> list[str]:
    """Every piece alone, every ordered pair, and a few long ones: deterministic, so reruns compare."""
    pieces = [p for p in HOSTILE_PIECES if p]
    pairs = [a + b for a, b in product(pieces, repeat=2)][::7]
    return [*pieces, *pairs, "x" * 600, "é" * 300]


def _lost(store: VectorStore, seed: list[Document]) -> int:
    """Seeded documents missing or altered now."""
    got = {d.id: d for d in store.get([d.id for d in seed])}
    return sum(1 for d in seed if d.id not in got or got[d.id].text != d.text or got[d.id].metadata != d.metadata)


def _case(fn: Callable[[], bool]) -> tuple[bool, bool]:
    """(passed, raw traceback): a RagstoreError is a clean refusal; anything else escaping is a raw error."""
    try:
        return fn(), False
    except RagstoreError:
        return False, False
    except Exception:
        return False, True


def _refused(store: VectorStore, doc: Document, seed: list[Document]) -> bool:
    """The rule says no: the write must raise ``ValidationError`` and leave the store as it was."""
    try:
        store.upsert([doc])
    except ValidationError:
        return store.count() == len(seed)
    return False


def hostile_ids(store: VectorStore, seed: list[Document]) -> tuple[int, int, int]:
    rng = np.random.default_rng(1)
    passed = raw = 0
    values = hostile_values()
    for value in values:
        doc = Document(id=value, text="hostile", metadata={"h": "x"}, vector=rng.normal(size=DIM))

        def check(doc: Document = doc) -> bool:
            if not (allowed_value(doc.id) and len(doc.id) <= 512):
                return _refused(store, doc, seed)
            store.upsert([doc])
            ok = [d.id for d in store.get([doc.id])] == [doc.id] and store.search(doc.vector, 1)[0].id == doc.id
            return store.delete([doc.id]) == 1 and ok and store.count() == len(seed)

        ok, tb = _case(check)
        passed, raw = passed + ok, raw + tb
    return len(values), passed, raw


def hostile_metadata(store: VectorStore, seed: list[Document]) -> tuple[int, int, int]:
    rng = np.random.default_rng(2)
    passed = raw = 0
    values = hostile_values()
    for n, value in enumerate(values):
        doc = Document(id=f"meta-{n}", text="hostile", metadata={"h": value}, vector=rng.normal(size=DIM))

        def check(doc: Document = doc, value: str = value) -> bool:
            if not allowed_value(value):
                return _refused(store, doc, seed)
            store.upsert([doc])
            ok = store.count({"h": value}) == 1 and store.get([doc.id])[0].metadata == {"h": value}
            removed = store.delete(filter={"h": value})
            return ok and removed == 1 and store.count() == len(seed)

        ok, tb = _case(check)
        passed, raw = passed + ok, raw + tb
    return len(values), passed, raw


def bad_calls(store: VectorStore, seed: list[Document]) -> tuple[int, int, int]:
    q = seed[0].vector
    calls: list[Callable[[], Any]] = [
        *(lambda k=k: store.search(q, k) for k in (0, -1, 2.5, "3", True, None, 16_385, 10**9, 2**63)),
        lambda: store.search([float("nan")] * DIM, 3),
        lambda: store.search(np.ones(DIM + 1), 3),
        lambda: store.search(np.zeros(DIM), 3),
        lambda: store.search(q, 3, {"tag": {"$regex": "a"}}),
        lambda: store.search(q, 3, {"$and": "x"}),
        lambda: store.search(q, 3, {"a" * 200: 1}),
        lambda: store.upsert([seed[0], seed[0]]),
        lambda: store.upsert([Document(id="nan", text="t", vector=[float("nan")] * DIM)]),
        lambda: store.upsert([Document(id="dim", text="t", vector=np.ones(DIM + 3))]),
        lambda: store.upsert([Document(id="empty", text="  ", vector=np.ones(DIM))]),
        lambda: store.upsert(["not a document"]),  # type: ignore[list-item]
        lambda: store.upsert([Document(id="nested", text="t", metadata={"a": {"b": 1}}, vector=np.ones(DIM))]),
        lambda: store.delete(),
        lambda: store.delete(["a"], filter={"tag": "alpha"}),
        lambda: store.get(["a"], filter={"tag": "alpha"}),
    ]
    passed = raw = 0
    for call in calls:
        try:
            call()
        except ValidationError:
            passed += 1
        except Exception:
            raw += 1
    return len(calls), passed, raw


def threads(config: dict[str, Any], root: Path) -> tuple[int, int, int]:
    cfg = {"data_dir": str(root / "pipe"), "embedder": {"type": "hashing", "dim": 32}, "store": config}
    failures = raw = 0
    with Ragstore.open(cfg) as rs:

        def work(t: int) -> tuple[int, int]:
            bad = tb = 0
            for i in range(50):
                text, doc_id = f"thread {t} doc {i}", f"t{t}-{i}"
                ok, trace = _case(lambda text=text, doc_id=doc_id: bool(rs.add([text], ids=[doc_id])))
                bad, tb = bad + (not ok), tb + trace
                ok, trace = _case(lambda text=text: len(rs.search(text, k=3)) > 0)
                bad, tb = bad + (not ok), tb + trace
            return bad, tb

        with ThreadPoolExecutor(4) as pool:
            for bad, tb in pool.map(work, range(4)):
                failures, raw = failures + bad, raw + tb
        cases = 4 * 50 * 2
        return cases, cases - failures - (0 if rs.count() == 200 else 1), raw


def second_process(config: dict[str, Any]) -> tuple[int, int, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-c", _SECOND_WRITER],
        input=json.dumps({"config": config, "dim": DIM}),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    clean = proc.returncode == 0 and proc.stdout.strip() != ""
    return 1, int(clean), int(not clean)


CLI_CASES: list[list[str]] = [
    ["search", "x", "-k", "0"],
    ["search", "x", "-k", str(10**9)],
    ["search", "x", "--filter", "{bad json"],
    ["search", "x", "--filter", '{"a": ' * 2000 + "1" + "}" * 2000],
    ["search", "x", "--filter", '{"tag": "a\\u0000b"}'],
    ["search", "x", "--filter", '{"a": {"$regex": "x"}}'],
    ["search", "", "-k", "3"],
    ["ingest", "/no/such/folder"],
    ["bench", "--dataset", "/no/such/dataset", "--no-speed"],
    ["bench", "--store", "nosuchstore"],
    ["finetune", "--beir", "/no/such/folder"],
]


def cli(root: Path) -> tuple[int, int, int]:
    cfg = root / "ragstore.yaml"
    cfg.write_text(f"data_dir: {root / 'cli'}\nembedder: {{type: hashing, dim: 16}}\nstore: {{type: faiss}}\n")
    bad_cfg = root / "bad.yaml"
    bad_cfg.write_bytes(b"store: {type: memory}\ndata_dir: \xff\n")
    exe = str(Path(sys.executable).with_name("ragstore"))
    runs = [[*args, "-c", str(cfg)] if args[0] in ("search", "ingest") else args for args in CLI_CASES]
    runs += [["info", "-c", str(bad_cfg)], ["info", "-c", str(root / "missing.yaml")]]
    passed = raw = 0
    for args in runs:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, cwd=root)
        tb = "Traceback" in proc.stdout + proc.stderr
        passed += proc.returncode == 2 and not tb
        raw += tb
    return len(runs), passed, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--out", default=str(HERE / "results" / "reliability"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    console = Console(stderr=True)
    rows: list[dict[str, Any]] = []
    names = [b for b in args.backends.split(",") if b]
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as bar:
        task = bar.add_task("backends", total=len(names) + 1)
        for name in names:
            root = Path(tmp) / name
            config = BACKENDS[name](root)
            seed = make_docs()
            store = create_store(config)
            store.upsert(seed)
            for category, run in (
                ("hostile ids", hostile_ids),
                ("hostile metadata values", hostile_metadata),
                ("bad input calls", bad_calls),
            ):
                cases, passed, raw = run(store, seed)
                rows.append(
                    {
                        "category": category,
                        "backend": name,
                        "cases": cases,
                        "passed": passed,
                        "data_lost": _lost(store, seed),
                        "raw_errors": raw,
                    }
                )
            cases, passed, raw = second_process(config)
            rows.append(
                {
                    "category": "second process",
                    "backend": name,
                    "cases": cases,
                    "passed": passed,
                    "data_lost": _lost(store, seed),
                    "raw_errors": raw,
                }
            )
            store.close()
            cases, passed, raw = threads(BACKENDS[name](root / "threads"), root)
            rows.append(
                {
                    "category": "4 threads through the pipeline, cache on",
                    "backend": name,
                    "cases": cases,
                    "passed": passed,
                    "data_lost": 0,
                    "raw_errors": raw,
                }
            )
            bar.advance(task)
        # loaded by path: benchmarks/ on sys.path would shadow the `datasets` package with benchmarks/datasets
        spec = importlib.util.spec_from_file_location("reliability_wave2", HERE / "reliability_wave2.py")
        assert spec is not None and spec.loader is not None
        wave2 = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(wave2)
        chosen = {n: BACKENDS[n] for n in names}
        rows += wave2.run_all(chosen, Path(tmp), lambda what: bar.update(task, description=what))
        cases, passed, raw = cli(Path(tmp))
        rows.append(
            {
                "category": "CLI bad invocations",
                "backend": "-",
                "cases": cases,
                "passed": passed,
                "data_lost": 0,
                "raw_errors": raw,
            }
        )
        bar.advance(task)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    lines = [
        "# ragstore reliability: hostile input, threads, processes (`python -P benchmarks/reliability.py`)",
        "",
        "| category | backend | cases | passed | data lost | raw errors | crashes |",
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(str(r.get(k, 0)) for k in (*COLUMNS, "crashes")) + " |" for r in rows),
        "",
        f"Total: {sum(r['cases'] for r in rows)} cases, {sum(r['passed'] for r in rows)} passed, "
        f"{sum(r['data_lost'] for r in rows)} documents lost, {sum(r['raw_errors'] for r in rows)} raw errors, "
        f"{sum(r.get('crashes', 0) for r in rows)} crashes.",
    ]
    before = HERE / "results" / "reliability-wave2-before.json"
    if before.exists():  # the same wave-2 cases run once on the code before issue 28 (reliability_wave2.py)
        old = json.loads(before.read_text(encoding="utf-8"))
        lines += [
            "",
            "## Wave 2's cases on the code before issue 28's fixes",
            "",
            "Recorded once with `reliability_wave2.py` against the previous commit (a crash ends that store's child",
            "process, so its remaining cases did not run).",
            "",
            "| category | backend | cases | passed | raw errors | crashes |",
            "|---|---|---|---|---|---|",
            *(
                "| " + " | ".join(str(r.get(k, 0)) for k in ("category", "backend", "cases", "passed")) + " | "
                f"{r.get('raw_errors', 0)} | {r.get('crashes', 0)} |"
                for r in old
            ),
            "",
            f"Before: {sum(r['cases'] for r in old)} cases, {sum(r['passed'] for r in old)} passed, "
            f"{sum(r.get('raw_errors', 0) for r in old)} raw errors, {sum(r.get('crashes', 0) for r in old)} crashes.",
        ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = Table(title="ragstore reliability")
    for col in ("category", "backend", "cases", "passed", "data lost", "raw errors", "crashes"):
        table.add_column(col, justify="left" if col in ("category", "backend") else "right")
    for r in rows:
        table.add_row(r["category"], r["backend"], *(str(r.get(k, 0)) for k in (*COLUMNS[2:], "crashes")))
    Console(width=140).print(table)
    console.print(lines[-1])


if __name__ == "__main__":
    main()
