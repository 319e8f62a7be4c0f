"""`ragstore copy`, `export`, `import`: every pair of engines, kill -9 and resume, refusals before any write,
a bit-identical Parquet round trip, and collections LangChain and LlamaIndex apps made."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ENGINES

from ragstore.embedders.hashing import HashingEmbedder
from ragstore.errors import DimensionMismatchError, EmbedderMismatchError, TransferError
from ragstore.stores.collection import open_collection
from ragstore.stores.registry import resolve_store
from ragstore.testing.conformance import COPY_IDS, _copy_docs
from ragstore.testing.data import DIM
from ragstore.transfer import ParquetSource, StoreSource, content_hash, copy_collection, export_parquet
from ragstore.types import Document

REPO = Path(__file__).resolve().parents[1]
KINDS = ["memory", *ENGINES]


def _installed(kind: str) -> bool:
    return kind == "memory" or importlib.util.find_spec(ENGINES[kind]) is not None


def _block(kind: str, folder: Path, dsn: str | None, tag: str) -> dict[str, Any]:
    if kind == "pgvector":
        assert dsn is not None
        return {"type": "pgvector", "dsn": dsn, "table": f"{tag}_{uuid.uuid4().hex[:12]}"}
    return {"type": kind, "path": str(folder / f"{tag}-{kind}")}


def _open_store(block: dict[str, Any]) -> Any:
    cls, opts = resolve_store(dict(block), None)
    return cls(opts)


def _snapshot(store: Any) -> dict[str, tuple[str, bytes]]:
    """Every document's content hash and vector bits: what "the source did not change" compares."""
    return {
        d.id: (content_hash(d), np.asarray(d.vector, dtype=np.float32).tobytes())
        for page in store.scan(100)
        for d in page.documents
    }


def _unchanged(store: Any, before: dict[str, tuple[str, bytes]]) -> None:
    """Texts, metadata and ids exactly; vectors to float32 rounding (qdrant-client's local mode normalises
    its stored vectors again, in RAM, whenever it searches: reading it twice after a search differs in the
    last bit without anything being written)."""
    after = _snapshot(store)
    assert {i: h for i, (h, _) in after.items()} == {i: h for i, (h, _) in before.items()}
    for i, (_, bits) in before.items():
        a, b = np.frombuffer(bits, dtype=np.float32), np.frombuffer(after[i][1], dtype=np.float32)
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """One filled source per engine (the conformance documents with hostile ids), closed again."""
    folder = tmp_path_factory.mktemp("sources")
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        if not _installed(kind):
            continue
        dsn = request.getfixturevalue("pg_dsn") if kind == "pgvector" else None
        block = _block(kind, folder, dsn, "src")
        with open_collection(block, embedder=HashingEmbedder(dim=DIM)) as coll:
            coll.upsert(_copy_docs(DIM))
        out[kind] = block
    return out


@pytest.mark.parametrize("dst", KINDS)
@pytest.mark.parametrize("src", KINDS)
def test_copy_matrix(
    src: str, dst: str, sources: dict[str, dict[str, Any]], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every engine into every engine: same ids, texts, metadata (with kinds), vectors and top-10; the
    destination records the source's embedder; the source is unchanged; a second run adds nothing."""
    if src not in sources or not _installed(dst):
        pytest.skip(f"{src} or {dst} not installed")
    dsn = request.getfixturevalue("pg_dsn") if dst == "pgvector" else None
    source = StoreSource(_open_store(sources[src]))
    try:
        before = _snapshot(source.store)
        with open_collection(_block(dst, tmp_path, dsn, "dst")) as dest:
            report = copy_collection(source, dest, batch_size=64, progress=False, verify=True)
            assert report.verify is not None and report.verify.ok, report.verify.summary()
            assert report.copied == len(before) == dest.count()
            assert report.verify.same_top == report.verify.queries == 20 or not report.verify.exact
            recorded = dest.read_manifest()
            assert recorded["indexes"]["primary"]["embedder"] == source.identity()
            assert recorded["copy"]["state"] == "done" and recorded["copy"]["copied"] == len(before)
            again = copy_collection(source, dest, batch_size=64, progress=False)
            assert again.copied == len(before) and dest.count() == len(before)  # idempotent
            got = {d.id: content_hash(d) for d in dest.get(list(before))}
            assert got == {i: h for i, (h, _) in before.items()}
            assert set(COPY_IDS) <= set(got)
        _unchanged(source.store, before)
    finally:
        source.close()


def test_refusals_come_before_any_write(tmp_path: Path) -> None:
    docs = _copy_docs(DIM)
    src_block = {"type": "faiss", "path": str(tmp_path / "src")}
    with open_collection(src_block, embedder=HashingEmbedder(dim=DIM, seed="1")) as coll:
        coll.upsert(docs)
    source = StoreSource(_open_store(src_block))
    before = _snapshot(source.store)
    # another embedder in the destination
    with open_collection(
        {"type": "faiss", "path": str(tmp_path / "a")}, embedder=HashingEmbedder(dim=DIM, seed="2")
    ) as d:
        with pytest.raises(EmbedderMismatchError, match="copy --reembed"):
            copy_collection(source, d, progress=False)
        assert d.count() == 0
    # another dimension
    other = [Document(text="x", id="x", vector=np.ones(DIM + 1))]
    with open_collection({"type": "faiss", "path": str(tmp_path / "b")}) as d:
        d.upsert(other)
        with pytest.raises(DimensionMismatchError):
            copy_collection(source, d, progress=False, append=True)
        assert d.count() == 1
    # a destination holding other documents: refused, then allowed with append
    with open_collection({"type": "faiss", "path": str(tmp_path / "c")}) as d:
        d.upsert([Document(text="mine", id="mine", vector=np.ones(DIM))])
        with pytest.raises(TransferError, match="--append"):
            copy_collection(source, d, progress=False)
        assert d.count() == 1
        report = copy_collection(source, d, progress=False, append=True)
        assert d.count() == len(docs) + 1 and report.copied == len(docs)
    _unchanged(source.store, before)
    source.close()


def test_metric_change_needs_unit_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    docs = [Document(text=f"t{i}", id=f"d{i}", vector=rng.normal(size=DIM) * 3) for i in range(40)]
    src_block = {"type": "faiss", "path": str(tmp_path / "l2"), "metric": "l2"}
    with open_collection(src_block) as coll:
        coll.upsert(docs)
    with StoreSource(_open_store(src_block)) as source, open_collection({"type": "memory"}) as dest:
        with pytest.raises(TransferError, match="not unit length"):
            copy_collection(source, dest, progress=False)
        assert dest.count() == 0
    unit = [Document(d.text, d.id, {}, d.vector / np.linalg.norm(d.vector)) for d in docs]
    src2 = {"type": "faiss", "path": str(tmp_path / "l2u"), "metric": "l2"}
    with open_collection(src2) as coll:
        coll.upsert(unit)
    with StoreSource(_open_store(src2)) as source, open_collection({"type": "memory"}) as dest:
        report = copy_collection(source, dest, progress=False, verify=True)
        assert report.verify is not None and report.verify.ok, report.verify.summary()
        assert any("unit-length" in n for n in report.notes)


KILLER = """
import os, signal, sys
from ragstore.stores.collection import open_collection
from ragstore.stores.registry import resolve_store
from ragstore.transfer import StoreSource, copy_collection

src, dst, after = sys.argv[1], sys.argv[2], int(sys.argv[3])
cls, opts = resolve_store(eval(src), None)
source = StoreSource(cls(opts))
pages = source.scan
def scan(batch_size, cursor=None):
    for n, page in enumerate(pages(batch_size, cursor)):
        if n == after:  # the reader runs a page ahead: the writer is inside its write of an earlier page
            os.kill(os.getpid(), signal.SIGKILL)
        yield page
source.scan = scan
copy_collection(source, open_collection(eval(dst)), batch_size=50, progress=False)
print("not killed")
"""


@pytest.mark.parametrize("dst", ["faiss", "qdrant-edge", "pgvector", "chroma", "milvus"])
def test_kill_9_mid_copy_then_resume(dst: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A copy killed by SIGKILL mid-way resumes from its checkpoint: nothing lost, nothing duplicated."""
    if not _installed(dst):
        pytest.skip(f"{dst} not installed")
    dsn = request.getfixturevalue("pg_dsn") if dst == "pgvector" else None
    docs = _copy_docs(DIM) * 1
    many = [Document(d.text, f"{d.id[:500]}#{k}", d.metadata, d.vector + k * 0.01) for k in range(4) for d in docs]
    src_block = {"type": "faiss", "path": str(tmp_path / "src")}
    with open_collection(src_block, embedder=HashingEmbedder(dim=DIM)) as coll:
        coll.upsert(many)
    dst_block = _block(dst, tmp_path, dsn, "dst")
    if dst != "pgvector":
        dst_block["lexical"] = True  # the derived BM25 index must come back level too
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, str(script), repr(src_block), repr(dst_block), "7"], env=env, capture_output=True, text=True
    )
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    with StoreSource(_open_store(src_block)) as source, open_collection(dst_block) as dest:
        mark = dest.read_manifest()["copy"]
        assert mark["state"] == "running" and 0 < mark["copied"] < len(many)
        report = copy_collection(source, dest, batch_size=50, progress=False, verify=True)
        assert report.resumed and report.already == mark["copied"]
        assert report.already + report.copied == len(many)
        assert dest.count() == len(many)
        assert report.verify is not None and report.verify.ok, report.verify.summary()
        if dst != "pgvector":
            assert dest.verify() == []  # the BM25 index agrees with the store


def test_cli_copy_killed_then_resumed(tmp_path: Path, pg_dsn: str) -> None:
    """The command itself, killed with SIGKILL while it writes to PostgreSQL, then run again."""
    docs = _copy_docs(DIM)
    many = [Document(d.text, f"{d.id[:500]}#{k}", d.metadata, d.vector + k * 0.01) for k in range(60) for d in docs]
    src = tmp_path / "src"
    with open_collection({"type": "faiss", "path": str(src)}) as coll:
        coll.upsert(many)
    table = f"cli_{uuid.uuid4().hex[:10]}"
    dst = json.dumps({"type": "pgvector", "dsn": pg_dsn, "table": table})
    cmd = [sys.executable, "-m", "ragstore.cli", "copy", f"faiss:path={src}", dst, "--batch-size", "50"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import psycopg
    from psycopg import sql

    count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
    deadline = time.monotonic() + 120
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if conn.execute(count).fetchone()[0] >= 200:
                    break
            except psycopg.errors.UndefinedTable:
                pass
            time.sleep(0.01)
    assert proc.poll() is None, f"the copy finished before it could be killed (rc {proc.returncode})"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = subprocess.run([*cmd, "--verify", "--no-progress"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "resumed after" in out.stderr and "verified" in out.stdout
    with open_collection(json.loads(dst)) as dest:
        assert dest.count() == len(many)


def test_export_import_round_trip_is_bit_identical(tmp_path: Path) -> None:
    docs = _copy_docs(DIM)
    block = {"type": "faiss", "path": str(tmp_path / "a")}
    with open_collection(block, embedder=HashingEmbedder(dim=DIM), chunking={"chunk_size": 300}) as coll:
        coll.upsert(docs)
    with StoreSource(_open_store(block)) as source:
        export_parquet(source, tmp_path / "a.parquet", batch_size=70, progress=False)
        first_manifest = source.manifest
    parquet = ParquetSource(tmp_path / "a.parquet")
    with open_collection({"type": "faiss", "path": str(tmp_path / "b")}) as dest:
        report = copy_collection(parquet, dest, batch_size=50, progress=False, verify=True)
        assert report.verify is not None and report.verify.ok, report.verify.summary()
        assert report.verify.vectors_identical == len(docs)
    with StoreSource(_open_store({"type": "faiss", "path": str(tmp_path / "b")})) as again:
        export_parquet(again, tmp_path / "b.parquet", batch_size=70, progress=False)
        second_manifest = again.manifest
    import pyarrow.parquet as pq

    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    a, b = a.sort_by("id"), b.sort_by("id")
    for column in ("id", "text", "metadata"):
        assert a.column(column).to_pylist() == b.column(column).to_pylist()
    va = a.column("vector").combine_chunks().values.to_numpy()
    vb = b.column("vector").combine_chunks().values.to_numpy()
    assert va.tobytes() == vb.tobytes()
    assert first_manifest is not None and second_manifest is not None
    for key in ("indexes", "chunking"):
        assert first_manifest[key] == second_manifest[key]
    assert ParquetSource(tmp_path / "b.parquet").identity() == HashingEmbedder(dim=DIM).identity()


def test_bad_export_files_are_named(tmp_path: Path) -> None:
    from ragstore.errors import DatasetError

    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(DatasetError, match="not a Parquet file"):
        ParquetSource(tmp_path / "x.parquet")
    with pytest.raises(DatasetError, match="no such export file"):
        ParquetSource(tmp_path / "missing.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), tmp_path / "other.parquet")
    with pytest.raises(DatasetError, match="ragstore export"):
        ParquetSource(tmp_path / "other.parquet")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ragstore.cli", *args], env=env, capture_output=True, text=True)


def test_cli_export_import_and_source_errors(tmp_path: Path) -> None:
    docs = _copy_docs(DIM)
    with open_collection({"type": "faiss", "path": str(tmp_path / "a")}) as coll:
        coll.upsert(docs)
    out = _cli("export", f"faiss:path={tmp_path / 'a'}", str(tmp_path / "a.parquet"), "--no-progress")
    assert out.returncode == 0, out.stderr
    out = _cli("import", str(tmp_path / "a.parquet"), f"qdrant-edge:path={tmp_path / 'e'}", "--verify", "--no-progress")
    assert out.returncode == 0 and "verified" in out.stdout, out.stdout + out.stderr
    out = _cli("copy", f"faiss:path={tmp_path / 'typo'}", f"faiss:path={tmp_path / 'z'}")
    assert out.returncode == 2 and "TransferError" in out.stderr and "nothing at" in out.stderr
    assert not (tmp_path / "typo").exists()
    out = _cli("copy", f"faiss:path={tmp_path / 'a'}", f"qdrant-edge:path={tmp_path / 'e'}")
    assert out.returncode == 2 and "--append" in out.stderr  # holds the import, not a copy of this source


# ----------------------------------------------------------------------------- apps' own collections
def _needs(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed")


def _app_vectors(dim: int) -> Any:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    return DeterministicFakeEmbedding(size=dim)


def _same_answers(app_ids: list[list[str]], dest: Any, queries: list[list[float]]) -> None:
    for want, q in zip(app_ids, queries, strict=True):
        got = [h.id for h in dest.search(np.asarray(q), 10)]
        assert got == want


def _lc_docs() -> list[Any]:
    from langchain_core.documents import Document as LCDoc

    return [
        LCDoc(page_content=f'passage {i} it\'s "quoted" 中文', metadata={"i": i, "source": f"f{i % 3}.txt"})
        for i in range(60)
    ]


def test_langchain_and_llamaindex_chroma_collections_come_across(tmp_path: Path) -> None:
    _needs("langchain_chroma", "llama_index.vector_stores.chroma", "chromadb")
    import chromadb
    from langchain_chroma import Chroma
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.chroma import ChromaVectorStore

    emb = _app_vectors(32)
    queries = [emb.embed_query(f"question {n}") for n in range(5)]
    lc = Chroma(collection_name="langchain", embedding_function=emb, persist_directory=str(tmp_path / "lc"))
    lc.add_documents(_lc_docs())
    lc_answers = [[d.id for d, _ in lc.similarity_search_by_vector_with_relevance_scores(q, k=10)] for q in queries]
    del lc
    client = chromadb.PersistentClient(path=str(tmp_path / "li"))
    li = ChromaVectorStore(chroma_collection=client.get_or_create_collection("docs", metadata={"hnsw:space": "cosine"}))
    li.add(
        [
            TextNode(id_=f"n{i}", text=f"node {i}", metadata={"k": i}, embedding=emb.embed_query(f"node {i}"))
            for i in range(50)
        ]
    )
    li_answers = [list(li.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10)).ids or []) for q in queries]
    del li, client
    for spec, answers, metric in (
        (f"langchain-chroma:path={tmp_path / 'lc'},collection=langchain", lc_answers, "l2"),
        (f"llamaindex-chroma:path={tmp_path / 'li'},collection=docs", li_answers, "cosine"),
    ):
        dest = tmp_path / f"dest-{metric}"
        out = _cli("copy", spec, f"faiss:path={dest}", "--verify", "--no-progress")
        assert out.returncode == 0 and "verified" in out.stdout, out.stdout + out.stderr
        with open_collection({"type": "faiss", "path": str(dest), "metric": metric}) as coll:
            assert coll.metric == metric  # the source's metric was taken over
            _same_answers(answers, coll, queries)
    with open_collection({"type": "faiss", "path": str(tmp_path / "dest-cosine"), "metric": "cosine"}) as coll:
        node = coll.get(["n3"])[0]
        assert json.loads(str(node.metadata["_node_content"]))["id_"] == "n3"  # LlamaIndex gets its node back


def test_langchain_and_llamaindex_pgvector_tables_come_across(tmp_path: Path, pg_dsn: str) -> None:
    _needs("langchain_postgres", "llama_index.vector_stores.postgres", "psycopg2", "asyncpg")
    import psycopg
    from langchain_postgres import PGVector
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.postgres import PGVectorStore

    with psycopg.connect(pg_dsn) as conn:
        user, db = conn.execute("SELECT current_user, current_database()").fetchone()
    sock = pg_dsn.split("host='", 1)[1].split("'", 1)[0]
    emb = _app_vectors(24)
    queries = [emb.embed_query(f"question {n}") for n in range(5)]
    name = f"lc_{uuid.uuid4().hex[:8]}"
    lc = PGVector(embeddings=emb, collection_name=name, connection=f"postgresql+psycopg://{user}@/{db}?host={sock}")
    docs = _lc_docs()
    for i, doc in enumerate(docs):
        doc.metadata["nested"] = {"page": i, "tags": ["a", "b"]}
        doc.metadata["gone"] = None
    lc.add_documents(docs, ids=[f"lc-{i}" for i in range(len(docs))])
    lc_answers = [[d.id for d, _ in lc.similarity_search_with_score_by_vector(q, k=10)] for q in queries]
    table = f"li_{uuid.uuid4().hex[:8]}"
    li = PGVectorStore.from_params(
        connection_string=f"postgresql+psycopg2://{user}@/{db}?host={sock}",
        async_connection_string=f"postgresql+asyncpg://{user}@/{db}?host={sock}",
        table_name=table,
        embed_dim=24,
    )
    li.add(
        [
            TextNode(id_=f"n{i}", text=f"node {i}", metadata={"k": i}, embedding=emb.embed_query(f"node {i}"))
            for i in range(50)
        ]
    )
    li_answers = [list(li.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10)).ids or []) for q in queries]
    for spec, answers in (
        (json.dumps({"type": "langchain-pgvector", "dsn": pg_dsn, "collection": name}), lc_answers),
        (json.dumps({"type": "llamaindex-pgvector", "dsn": pg_dsn, "table": table}), li_answers),
    ):
        dest = tmp_path / f"dest-{len(answers)}-{uuid.uuid4().hex[:6]}"
        out = _cli("copy", spec, f"qdrant-edge:path={dest}", "--verify", "--no-progress")
        assert out.returncode == 0 and "verified" in out.stdout, out.stdout + out.stderr
        with open_collection({"type": "qdrant-edge", "path": str(dest)}) as coll:
            _same_answers(answers, coll, queries)
            if "langchain" in spec:
                got = coll.get(["lc-4"])[0].metadata
                assert json.loads(str(got["nested"])) == {"page": 4, "tags": ["a", "b"]} and "gone" not in got
                assert "nested values kept as JSON text" in out.stderr


def test_llamaindex_qdrant_collection_comes_across(tmp_path: Path) -> None:
    _needs("llama_index.vector_stores.qdrant", "qdrant_client")
    import qdrant_client
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    emb = _app_vectors(16)
    queries = [emb.embed_query(f"question {n}") for n in range(5)]
    client = qdrant_client.QdrantClient(path=str(tmp_path / "q"))
    li = QdrantVectorStore(client=client, collection_name="nodes")
    li.add(
        [
            TextNode(
                id_=str(uuid.UUID(int=i + 1)), text=f"node {i}", metadata={"k": i}, embedding=emb.embed_query(f"n{i}")
            )
            for i in range(40)
        ]
    )
    answers = [list(li.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10)).ids or []) for q in queries]
    client.close()
    spec = f"llamaindex-qdrant:path={tmp_path / 'q'},collection=nodes"
    out = _cli("copy", spec, f"faiss:path={tmp_path / 'f'}", "--verify", "--no-progress")
    assert out.returncode == 0 and "verified" in out.stdout, out.stdout + out.stderr
    with open_collection({"type": "faiss", "path": str(tmp_path / "f")}) as coll:
        _same_answers(answers, coll, queries)
        node = coll.get([answers[0][0]])[0]
        assert node.text.startswith("node ") and "_node_content" in node.metadata


def test_langchain_qdrant_collection_comes_across(tmp_path: Path) -> None:
    _needs("langchain_qdrant", "qdrant_client")
    from langchain_qdrant import QdrantVectorStore

    emb = _app_vectors(16)
    queries = [emb.embed_query(f"question {n}") for n in range(5)]
    lc = QdrantVectorStore.from_documents(_lc_docs(), emb, path=str(tmp_path / "q"), collection_name="docs")
    answers = [[str(d.metadata["_id"]) for d, _ in lc.similarity_search_with_score_by_vector(q, k=10)] for q in queries]
    lc.client.close()
    del lc
    out = _cli(
        "copy", f"langchain-qdrant:path={tmp_path / 'q'},collection=docs", f"faiss:path={tmp_path / 'f'}", "--verify"
    )
    assert out.returncode == 0 and "verified" in out.stdout, out.stdout + out.stderr
    with open_collection({"type": "faiss", "path": str(tmp_path / "f")}) as coll:
        _same_answers(answers, coll, queries)
        assert coll.get([answers[0][0]])[0].metadata["source"].endswith(".txt")


def test_reembed_uses_the_destination_embedder(tmp_path: Path) -> None:
    docs = _copy_docs(DIM)
    src = tmp_path / "src"
    with open_collection({"type": "faiss", "path": str(src)}, embedder=HashingEmbedder(dim=DIM, seed="1")) as coll:
        coll.upsert(docs)
    config = tmp_path / "dest.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            embedder: {{type: hashing, dim: 32, seed: "5"}}
            store: {{type: faiss, path: {tmp_path / "dst"}}}
            data_dir: {tmp_path / "data"}
            """
        )
    )
    out = _cli("copy", f"faiss:path={src}", str(config))
    assert out.returncode == 2 and "EmbedderMismatchError" in out.stderr  # 16 != 32 dims, other model
    out = _cli("copy", f"faiss:path={src}", str(config), "--reembed", "--verify", "--no-progress")
    assert out.returncode == 0 and "verified" in out.stdout, out.stdout + out.stderr
    with open_collection({"type": "faiss", "path": str(tmp_path / "dst")}) as coll:
        assert coll.dim == 32 and coll.count() == len(docs)
        want = HashingEmbedder(dim=32, seed="5").embed_documents([docs[0].text])[0]
        np.testing.assert_allclose(coll.get([docs[0].id])[0].vector, want, atol=1e-6)
        assert coll.read_manifest()["indexes"]["primary"]["embedder"] == HashingEmbedder(dim=32, seed="5").identity()


def _hooked(docs: list[Document], at_page: int, action: Any) -> tuple[Any, StoreSource, Any]:
    """A reference store as a source whose scan calls ``action()`` before handing out page ``at_page``;
    returns (store, source, the source's own scan) so a test can put the healthy scan back."""
    from ragstore.adapters.memory import MemoryStore

    store = MemoryStore()
    store.upsert(docs)
    source = StoreSource(store, owned=False)
    healthy = source.scan

    def hooked(batch_size: int, cursor: str | None = None) -> Any:
        for n, page in enumerate(healthy(batch_size, cursor)):
            if n == at_page:
                action(store)
            yield page

    source.scan = hooked  # type: ignore[method-assign]
    return store, source, healthy


def test_source_failing_mid_stream_leaves_a_resumable_destination(tmp_path: Path) -> None:
    from ragstore.errors import EngineError

    def fail(store: Any) -> None:
        raise EngineError("memory failed to read a page of documents: connection reset")

    docs = _copy_docs(DIM)
    _, source, healthy = _hooked(docs, 2, fail)
    with open_collection({"type": "faiss", "path": str(tmp_path / "d")}) as dest:
        with pytest.raises(EngineError):
            copy_collection(source, dest, batch_size=40, progress=False)
        mark = dest.read_manifest()["copy"]
        assert mark["state"] == "running" and mark["copied"] == 40 and dest.count() == 80
        source.scan = healthy  # type: ignore[method-assign]
        report = copy_collection(source, dest, batch_size=40, progress=False, verify=True)
        assert report.resumed and report.verify is not None and report.verify.ok
        assert dest.count() == len(docs)


def test_source_written_during_a_copy_is_reported_and_a_second_run_levels(tmp_path: Path) -> None:
    def write(store: Any) -> None:  # documents that sort before and after every page read so far
        store.upsert([Document("early", "!early", {}, np.ones(DIM)), Document("late", "~~", {}, np.ones(DIM))])

    docs = _copy_docs(DIM)
    _, source, healthy = _hooked(docs, 1, write)
    with open_collection({"type": "faiss", "path": str(tmp_path / "d")}) as dest:
        report = copy_collection(source, dest, batch_size=50, progress=False)
        assert report.source_changed and any("run the copy again" in n for n in report.notes)
        assert not dest.get(["!early"])  # its page was read before it was written: the second run brings it
        source.scan = healthy  # type: ignore[method-assign]
        again = copy_collection(source, dest, batch_size=50, progress=False, verify=True)
        assert not again.source_changed and again.verify is not None and again.verify.ok
        assert dest.count() == len(docs) + 2


def test_swap_the_backend_with_the_data(tmp_path: Path) -> None:
    """The README's swap: the same app config on another store, its data copied, the same answers."""
    (tmp_path / "docs").mkdir()
    for i in range(12):
        (tmp_path / "docs" / f"n{i}.txt").write_text(
            f"note {i}: the quarterly report number {i} is about topic {i % 4}"
        )
    common = "embedder: {type: hashing, dim: 64}\ndata_dir: data\n"
    (tmp_path / "old.yaml").write_text(common + "store: {type: faiss, path: old-faiss}\n")
    (tmp_path / "new.yaml").write_text(common + "store: {type: qdrant-edge, path: new-edge}\n")
    assert _cli("ingest", str(tmp_path / "docs"), "-c", str(tmp_path / "old.yaml")).returncode == 0
    out = _cli("copy", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml"), "--verify", "--no-progress")
    assert out.returncode == 0 and "verified" in out.stdout, out.stdout + out.stderr
    answers = [
        json.loads(_cli("search", "quarterly report topic 3", "--json", "-c", str(tmp_path / f"{c}.yaml")).stdout)[
            "hits"
        ]
        for c in ("old", "new")
    ]
    old, new = answers
    assert old and [round(h["score"], 5) for h in old] == [round(h["score"], 5) for h in new]
    floor = old[-1]["score"] + 1e-5  # ids tied with the last one may differ: the engines' scores differ by 1e-7
    assert {h["id"] for h in old if h["score"] > floor} == {h["id"] for h in new if h["score"] > floor}
