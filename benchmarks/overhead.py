"""What ragstore adds on top of each engine's own client: single-query latency and bulk-upsert throughput.

For each backend, 10,000 random 384-d unit vectors (seeded) are bulk-upserted through ragstore and through
the engine's own client, each into a fresh collection, twice, in the order ragstore, native, native,
ragstore (the first write into an engine pays its warm-up), keeping the best of each. Then single queries
run against the ragstore-filled collection through both paths, interleaved query by query so drift on this
noisy machine hits both alike. Ratios, not absolute times, are the result: latency ratio = ragstore /
native (target <= 1.10), throughput ratio = ragstore / native (target >= 0.90).

"Native" is the engine's own call doing the same job: the same k, the same search parameters, and the
payload (text + metadata) read back, since a caller needs it. FAISS stores no payload, so its native
paths are ``index.add_with_ids`` plus the same SQLite rows (id, text, metadata) and a file of the vectors
written by hand (as ragstore keeps them since wave 3), and ``index.search`` plus the same SQLite lookup.
pgvector's native upsert is binary ``COPY`` (PostgreSQL's own bulk path), one transaction per batch.
Native Qdrant Edge points use integer ids (the engine's best case; ragstore must map string ids to UUIDs).

    python benchmarks/overhead.py [--n 10000] [--queries 300] [--backends faiss,chroma,...]
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from ragstore.stores.base import VectorStore
from ragstore.stores.registry import create_store
from ragstore.types import Document

RESULTS = Path(__file__).resolve().parent / "results"
console = Console()


def make_data(n: int, dim: int, queries: int) -> tuple[list[Document], np.ndarray]:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    docs = [Document(id=f"doc-{i}", text=f"passage {i}", metadata={"g": i % 10}, vector=vecs[i]) for i in range(n)]
    q = rng.normal(size=(queries, dim)).astype(np.float32)
    return docs, q / np.linalg.norm(q, axis=1, keepdims=True)


# ------------------------------------------------------------------------ native paths, one per engine
# Each returns (bulk_upsert(docs) on a fresh native collection, search(q) on the ragstore-filled collection).


def native_faiss(
    store: Any, root: Path, dim: int, k: int
) -> tuple[Callable[[list[Document]], None], Callable[[np.ndarray], Any]]:
    import faiss

    def upsert(docs: list[Document]) -> None:
        db = sqlite3.connect(str(root / f"native_{uuid.uuid4().hex[:8]}.sqlite"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE docs (iid INTEGER PRIMARY KEY, id TEXT UNIQUE, text TEXT, metadata TEXT)")
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        vecs = np.stack([d.vector for d in docs])  # type: ignore[misc]
        db.execute("BEGIN")
        vecs.tofile(root / f"native_{uuid.uuid4().hex[:8]}.f32")  # the vectors beside SQLite, as ragstore keeps them
        db.executemany(
            "INSERT INTO docs VALUES (?, ?, ?, ?)",
            [(i, d.id, d.text, json.dumps(d.metadata)) for i, d in enumerate(docs)],
        )
        db.execute("COMMIT")
        index.add_with_ids(vecs, np.arange(len(docs), dtype=np.int64))
        db.close()

    def search(q: np.ndarray) -> Any:
        faiss.omp_set_num_threads(1)
        _, labels = store._index.search(q.reshape(1, -1), k)
        return store.db.rows_by_iid([int(x) for x in labels[0] if x >= 0])

    return upsert, search


def native_chroma(store: Any, root: Path, dim: int, k: int) -> tuple[Callable[..., None], Callable[..., Any]]:
    col = store.col

    def upsert(docs: list[Document]) -> None:
        other = store.client.create_collection(
            "native_" + uuid.uuid4().hex[:8], embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        step = store.max_batch
        for s in range(0, len(docs), step):
            batch = docs[s : s + step]
            other.upsert(
                ids=[d.id for d in batch],
                embeddings=np.stack([d.vector for d in batch]),  # type: ignore[misc]
                documents=[d.text for d in batch],
                metadatas=[d.metadata for d in batch],
            )

    def search(q: np.ndarray) -> Any:
        return col.query(query_embeddings=[q], n_results=k, include=["documents", "metadatas", "distances"])

    return upsert, search


def native_milvus(store: Any, root: Path, dim: int, k: int) -> tuple[Callable[..., None], Callable[..., Any]]:
    from pymilvus import DataType

    client = store.client

    def upsert(docs: list[Document]) -> None:
        name = "native_" + uuid.uuid4().hex[:8]
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("text", DataType.VARCHAR, max_length=65535)
        schema.add_field("metadata", DataType.JSON)
        params = client.prepare_index_params()
        params.add_index("vector", index_type="FLAT", metric_type="COSINE")
        client.create_collection(name, schema=schema, index_params=params)
        rows = [{"id": d.id, "vector": d.vector.tolist(), "text": d.text, "metadata": d.metadata} for d in docs]  # type: ignore[union-attr]
        for s in range(0, len(rows), store.batch_size):
            client.upsert(name, rows[s : s + store.batch_size])

    def search(q: np.ndarray) -> Any:
        return client.search(
            store.collection,
            data=[q.tolist()],
            limit=k,
            output_fields=["text", "meta"],
            search_params={"metric_type": "COSINE", "params": {}},
        )

    return upsert, search


def native_qdrant(store: Any, root: Path, dim: int, k: int) -> tuple[Callable[..., None], Callable[..., Any]]:
    from qdrant_client import models as m

    client = store.client

    def upsert(docs: list[Document]) -> None:
        name = "native_" + uuid.uuid4().hex[:8]
        client.create_collection(name, vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE))
        points = [
            m.PointStruct(id=i, vector=d.vector.tolist(), payload={"text": d.text, **d.metadata})  # type: ignore[union-attr]
            for i, d in enumerate(docs)
        ]
        client.upload_points(name, points, wait=True, batch_size=store.batch_size)

    def search(q: np.ndarray) -> Any:
        res = client.query_points(store.collection, query=q.tolist(), limit=k, with_payload=True).points
        return [(p.id, p.score, p.payload) for p in res]

    return upsert, search


def native_qdrant_edge(store: Any, root: Path, dim: int, k: int) -> tuple[Callable[..., None], Callable[..., Any]]:
    import qdrant_edge as q

    def upsert(docs: list[Document]) -> None:
        shard = q.EdgeShard.create(
            str(root / ("native_edge_" + uuid.uuid4().hex[:8])),
            q.EdgeConfig(vectors=q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine)),
        )
        for s in range(0, len(docs), store.batch_size):
            batch = docs[s : s + store.batch_size]
            points = [q.Point(s + i, d.vector.tolist(), {"text": d.text, **d.metadata}) for i, d in enumerate(batch)]  # type: ignore[union-attr]
            shard.update(q.UpdateOperation.upsert_points(points))
        shard.close()

    def search(vec: np.ndarray) -> Any:
        res = store.shard.query(q.QueryRequest(limit=k, query=q.Query.Nearest(vec.tolist()), with_payload=True))
        return [(p.id, p.score, p.payload) for p in res]  # payloads convert from Rust on access

    return upsert, search


def native_pgvector(store: Any, root: Path, dim: int, k: int) -> tuple[Callable[..., None], Callable[..., Any]]:
    from psycopg import sql as q
    from psycopg.types.json import Jsonb

    conn = store.conn
    search_sql = q.SQL(
        "SELECT id, text, metadata, embedding <=> %s AS d FROM {} ORDER BY embedding <=> %s LIMIT %s"
    ).format(q.Identifier(store.table))

    def upsert(docs: list[Document]) -> None:
        name = q.Identifier("native_" + uuid.uuid4().hex[:8])
        table = q.SQL("CREATE TABLE {} (id text PRIMARY KEY, text text, metadata jsonb, embedding vector({}))")
        conn.execute(table.format(name, q.Literal(dim)))
        conn.execute(q.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)").format(name))
        # PostgreSQL's own bulk path: binary COPY straight into the fresh table, one transaction per batch
        copy_sql = q.SQL("COPY {} (id, text, metadata, embedding) FROM STDIN (FORMAT BINARY)").format(name)
        for s in range(0, len(docs), store.batch_size):
            batch = docs[s : s + store.batch_size]
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.set_types(["text", "text", "jsonb", "vector"])
                for d in batch:
                    copy.write_row((d.id, d.text, Jsonb(d.metadata), d.vector))

    def search(q: np.ndarray) -> Any:
        with conn.transaction():
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(store.options.ef_search),))
            conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
            return conn.execute(search_sql, (q, q, k)).fetchall()

    return upsert, search


BACKENDS: dict[str, tuple[Callable[[Path], dict[str, Any]], Callable[..., Any]]] = {
    "faiss": (lambda root: {"type": "faiss", "path": str(root / "faiss")}, native_faiss),
    "chroma": (lambda root: {"type": "chroma", "path": str(root / "chroma")}, native_chroma),
    "milvus": (lambda root: {"type": "milvus", "path": str(root / "milvus")}, native_milvus),
    "qdrant": (lambda root: {"type": "qdrant", "path": str(root / "qdrant")}, native_qdrant),
    "qdrant-edge": (lambda root: {"type": "qdrant-edge", "path": str(root / "edge")}, native_qdrant_edge),
    "pgvector": (lambda root: {"type": "pgvector", "path": str(root / "pg"), "index": "hnsw"}, native_pgvector),
}


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def run_backend(name: str, docs: list[Document], queries: np.ndarray, k: int, root: Path) -> dict[str, Any]:
    make_cfg, make_native = BACKENDS[name]

    def timed(call: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0

    store: VectorStore = create_store(make_cfg(root / "a"))
    second: VectorStore | None = None
    try:
        rs_times = [timed(lambda: store.upsert(docs))]
        native_upsert, native_search = make_native(store, root, docs[0].vector.shape[0], k)  # type: ignore[union-attr]
        nat_times = [timed(lambda: native_upsert(docs)), timed(lambda: native_upsert(docs))]
        second = create_store(make_cfg(root / "b"))
        rs_times.append(timed(lambda: second.upsert(docs)))  # type: ignore[union-attr]
        second.close()
        rs_upsert, nat_upsert = min(rs_times), min(nat_times)
        for q in queries[:20]:  # warm-up both paths
            store.search(q, k)
            native_search(q)
        rs_lat: list[float] = []
        nat_lat: list[float] = []
        for i, q in enumerate(track(queries, description=f"{name}: queries", console=console, transient=True)):
            pair = [(rs_lat, lambda q=q: store.search(q, k)), (nat_lat, lambda q=q: native_search(q))]
            for bucket, call in pair if i % 2 == 0 else reversed(pair):
                t0 = time.perf_counter()
                call()
                bucket.append((time.perf_counter() - t0) * 1000)
    finally:
        store.close()
    n = len(docs)
    return {
        "backend": name,
        "n": n,
        "ragstore_p50_ms": statistics.median(rs_lat),
        "native_p50_ms": statistics.median(nat_lat),
        "ragstore_p95_ms": pct(rs_lat, 95),
        "native_p95_ms": pct(nat_lat, 95),
        "p50_ratio": statistics.median(rs_lat) / statistics.median(nat_lat),
        "p95_ratio": pct(rs_lat, 95) / pct(nat_lat, 95),
        "ragstore_upsert_per_s": n / rs_upsert,
        "native_upsert_per_s": n / nat_upsert,
        "upsert_ratio": (n / rs_upsert) / (n / nat_upsert),
    }


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return path.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--out", default=str(RESULTS / "overhead"))
    args = parser.parse_args(argv)
    docs, queries = make_data(args.n, args.dim, args.queries)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backends.split(","):
            console.print(f"[bold]{name}[/]: {args.n} x {args.dim} ...")
            rows.append(run_backend(name, docs, queries, args.k, Path(tmp)))
    table = Table(title=f"ragstore overhead vs each engine's own client ({args.n} x {args.dim}, k={args.k})")
    for col in [
        "backend",
        "p50 ms (rs/native)",
        "p50 ratio",
        "p95 ms (rs/native)",
        "p95 ratio",
        "upsert/s (rs/native)",
        "upsert ratio",
    ]:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["backend"],
            f"{r['ragstore_p50_ms']:.2f} / {r['native_p50_ms']:.2f}",
            f"{r['p50_ratio']:.2f}",
            f"{r['ragstore_p95_ms']:.2f} / {r['native_p95_ms']:.2f}",
            f"{r['p95_ratio']:.2f}",
            f"{r['ragstore_upsert_per_s']:.0f} / {r['native_upsert_per_s']:.0f}",
            f"{r['upsert_ratio']:.2f}",
        )
    console.print(table)
    meta = {"python": sys.version.split()[0], "machine": platform.platform(), "processor": platform.processor()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shown = {**vars(args), "out": _relative(out)}  # never this machine's absolute path
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "args": shown, "rows": rows}, indent=2))
    lines = [
        f"# ragstore overhead vs native clients ({args.n} x {args.dim}, k={args.k}, {args.queries} queries)",
        "",
        "| backend | p50 ms ragstore / native | p50 ratio | p95 ms ragstore / native | p95 ratio "
        "| upsert/s ragstore / native | upsert ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['ragstore_p50_ms']:.2f} / {r['native_p50_ms']:.2f} | {r['p50_ratio']:.2f} | "
            f"{r['ragstore_p95_ms']:.2f} / {r['native_p95_ms']:.2f} | {r['p95_ratio']:.2f} | "
            f"{r['ragstore_upsert_per_s']:.0f} / {r['native_upsert_per_s']:.0f} | {r['upsert_ratio']:.2f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
