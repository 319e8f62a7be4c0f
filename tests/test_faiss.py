"""FAISS specifics beyond the shared suite: crash safety, HNSW tombstones, single-thread search."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="FAISS not installed: pip install 'ragstore[faiss]'")

from ragstore.adapters.faiss import INDEX_FILE, FaissStore  # noqa: E402
from ragstore.errors import BackendUnavailableError  # noqa: E402
from ragstore.testing import make_docs  # noqa: E402


def test_killed_process_loses_no_committed_write(tmp_path: Path) -> None:
    """Upserts after the last flush survive a hard exit: the index is rebuilt from SQLite."""
    code = textwrap.dedent(
        f"""
        import os
        from ragstore.adapters.faiss import FaissStore
        from ragstore.testing import make_docs
        docs = make_docs(40)
        s = FaissStore(path={str(tmp_path / "db")!r})
        s.upsert(docs[:20]); s.flush()
        s.upsert(docs[20:]); s.delete([docs[0].id])
        os._exit(1)  # no close(), no flush
        """
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    store = FaissStore(path=tmp_path / "db")
    docs = make_docs(40)
    assert store.count() == 39
    assert store.search(docs[30].vector, 1)[0].id == docs[30].id
    assert docs[0].id not in {h.id for h in store.search(docs[0].vector, 40)}
    store.close()


def test_torn_index_file_is_ignored(tmp_path: Path) -> None:
    docs = make_docs(30)
    store = FaissStore(path=tmp_path / "db", index="hnsw")
    store.upsert(docs)
    store.close()
    (tmp_path / "db" / (INDEX_FILE + ".tmp")).write_bytes(b"half a write")
    index = tmp_path / "db" / INDEX_FILE
    index.write_bytes(index.read_bytes()[:100])  # a corrupted index file with a matching generation
    again = FaissStore(path=tmp_path / "db", index="hnsw")
    assert again.count() == 30
    assert again.search(docs[3].vector, 1)[0].id == docs[3].id
    again.close()


def test_switching_index_type_rebuilds(tmp_path: Path) -> None:
    docs = make_docs(30)
    with FaissStore(path=tmp_path / "db") as flat:
        flat.upsert(docs)
    with FaissStore(path=tmp_path / "db", index="hnsw") as hnsw:
        assert hnsw.capabilities.exact is False
        assert hnsw.search(docs[5].vector, 1)[0].id == docs[5].id


def test_metric_mismatch_on_reopen(tmp_path: Path) -> None:
    with FaissStore(path=tmp_path / "db") as s:
        s.upsert(make_docs(3))
    with pytest.raises(BackendUnavailableError, match="metric"):
        FaissStore(path=tmp_path / "db", metric="l2")


def test_hnsw_deletes_never_come_back_and_trigger_rebuild(tmp_path: Path) -> None:
    docs = make_docs(200)
    store = FaissStore(path=tmp_path / "db", index="hnsw")
    store.upsert(docs)
    gone = [d.id for d in docs[:120]]
    store.delete(gone[:10])
    assert store._tombstones == 10
    hits = store.search(docs[0].vector, 200)
    assert len(hits) == 190 and not {h.id for h in hits} & set(gone[:10])
    store.upsert([d for d in docs[10:20]])  # re-upserts tombstone their old rows too
    store.delete(gone[10:])
    assert store.count() == 80
    assert not {h.id for h in store.search(docs[0].vector, 200)} & set(gone)
    store.rebuild()
    assert store._tombstones == 0 and store._index.ntotal == 80
    store.close()


def test_single_query_search_uses_one_thread_and_restores_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FaissStore(path=None)
    store.upsert(make_docs(20))
    seen: list[int] = []
    search_one = store._search_one

    def spy(*args: object) -> object:
        seen.append(faiss.omp_get_max_threads())
        return search_one(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_search_one", spy)
    faiss.omp_set_num_threads(2)
    store.search(make_docs(1)[0].vector, 3)
    assert seen == [1]  # one query: one thread
    assert faiss.omp_get_max_threads() == 2  # and the caller's setting back (torch shares it)
    store.close()


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_other_metrics_match_numpy(tmp_path: Path, metric: str) -> None:
    docs = make_docs(50)
    store = FaissStore(path=tmp_path / metric, metric=metric)  # type: ignore[arg-type]
    store.upsert(docs)
    q = np.random.default_rng(1).normal(size=16)
    m = np.stack([d.vector for d in docs])
    scores = m @ q if metric == "dot" else -np.linalg.norm(m - q, axis=1)
    want = [docs[i].id for i in np.argsort(-scores)[:5]]
    hits = store.search(q, 5)
    assert [h.id for h in hits] == want
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:5], rtol=1e-4, atol=1e-4)
    store.close()


def test_foreign_index_file_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    """An index.faiss copied in from another store (same dim, ids and generation counters that happen to
    match) is detected by its fingerprint and rebuilt from the sidecar."""
    docs = make_docs(30)
    with FaissStore(path=tmp_path / "a", index="hnsw") as a:
        a.upsert(docs)
    other = make_docs(30, seed=99)  # same ids, other vectors
    with FaissStore(path=tmp_path / "b", index="hnsw") as b:
        b.upsert(other)
    (tmp_path / "a" / INDEX_FILE).write_bytes((tmp_path / "b" / INDEX_FILE).read_bytes())
    with FaissStore(path=tmp_path / "a", index="hnsw") as a:
        hits = a.search(docs[4].vector, 1)
        assert hits[0].id == docs[4].id and hits[0].score > 0.999


def test_two_writers_never_collide_on_the_temp_file(tmp_path: Path) -> None:
    """Each flush writes its own temp file, so two stores flushing one folder never remove each other's."""
    import threading

    stores = [FaissStore(path=tmp_path / "shared") for _ in range(2)]
    stores[0].upsert(make_docs(10))
    errors: list[BaseException] = []

    def flush(store: FaissStore) -> None:
        try:
            for _ in range(20):
                store.flush()
        except BaseException as exc:  # collected: asserted below
            errors.append(exc)

    threads = [threading.Thread(target=flush, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == []
    assert not list((tmp_path / "shared").glob("*.tmp"))


_WRITER = """
import sys
import numpy as np
from ragstore.adapters.faiss import FaissStore
from ragstore.types import Document
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(sum(map(ord, tag)))
store = FaissStore(path=path)
for i in range(n):
    v = rng.normal(size=16)
    store.upsert([Document(id=f"{tag}-{i}", text=f"{tag} {i}", metadata={"w": tag}, vector=v)])
    assert store.search(v, 1)[0].id == f"{tag}-{i}"
    if i % 10 == 0:
        store.flush()
    if i % 15 == 14:
        assert store.delete([f"{tag}-{i - 1}"]) == 1
store.close()
print("ok")
"""


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_processes_sharing_a_folder_see_each_others_writes(tmp_path: Path, index: str) -> None:
    """Two writer processes and this long-open reader on one folder: nobody's close() fails, no write is
    lost, and every process's search agrees with count() (each catches up with the others before a call)."""
    import subprocess
    import sys

    import numpy as np

    path = tmp_path / "shared"
    reader = FaissStore(path=path, index=index)
    reader.upsert(make_docs(5))
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag, "60"], stdout=subprocess.PIPE, text=True)
        for tag in ("a", "b")
    ]
    while any(p.poll() is None for p in procs):
        seen = reader.count()
        assert len(reader.search(np.ones(16), 1000)) >= min(seen, 5)
    outs = [p.communicate()[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and all("ok" in o for o in outs)
    expected = 5 + 2 * (60 - 4)  # four deletes per writer
    assert reader.count() == expected
    assert len(reader.search(np.ones(16), 1000)) == expected  # the index agrees with the rows
    for doc in reader.get(filter={"w": "b"}):
        assert reader.search(doc.vector, 1)[0].id == doc.id
    reader.close()
    fresh = FaissStore(path=path, index=index)
    assert fresh.count() == expected and len(fresh.search(np.ones(16), 1000)) == expected
    fresh.close()


@pytest.mark.parametrize("index", ["ivf_pq", "ivf_sq8"])
def test_ivf_trains_at_its_size_retrains_as_it_grows_and_scores_exactly(tmp_path: Path, index: str) -> None:
    """Exact flat below ``ivf_train_at``; trained at it, re-trained at 8x; hits carry the exact float score
    (re-scored from SQLite, not the lossy codes), find most exact neighbours, and survive a reopen; a 1%
    filter finds exactly the filtered top-k (small sets re-scored exactly, larger ones by widened probing)."""
    from ragstore.types import Document

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 32))
    x = centres[rng.integers(0, 40, 3000)] + 0.4 * rng.normal(size=(3000, 32))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    docs = [Document(id=f"v{i}", text=f"t{i}", vector=x[i], metadata={"b": i % 100}) for i in range(3000)]
    cfg = {"path": tmp_path / "ivf", "index": index, "ivf_train_at": 300, "pq_m": 8}
    store = FaissStore(**cfg)
    store.upsert(docs[:100])
    assert store._trained_at == 0 and "ivf_lists" not in store.describe()
    store.upsert(docs[100:300])
    assert store._trained_at == 300
    store.upsert(docs[300:])  # written in batches: trained again on everything once past 8 x 300
    assert 2400 <= store._trained_at <= 3000 and store.describe()["ivf_lists"] > 1
    queries = x[:50] + 0.05 * rng.normal(size=(50, 32)).astype(np.float32)
    found = 0
    for q in queries:
        q = q / np.linalg.norm(q)
        exact = np.argsort(-(x @ q))[:10]
        hits = store.search(q, 10)
        for h in hits:  # the float score, not a code's approximation
            assert h.score == pytest.approx(float(x[int(h.id[1:])] @ q), abs=1e-5)
        found += len({f"v{i}" for i in exact} & {h.id for h in hits})
    assert found / 500 >= 0.9
    for limit in (0, 20_000):  # widened probing, then the exact small-set path
        store.tune(exact_filter_limit=limit)
        q = queries[0] / np.linalg.norm(queries[0])
        allowed = np.arange(7, 3000, 100)
        want = {f"v{i}" for i in allowed[np.argsort(-(x[allowed] @ q))[:10]]}
        got = {h.id for h in store.search(q, 10, filter={"b": 7})}
        assert len(got & want) >= (9 if limit == 0 else 10)
    before = [h.id for h in store.search(queries[1], 10)]
    trained = store._trained_at
    store.close()
    again = FaissStore(**cfg)
    assert again._trained_at == trained and [h.id for h in again.search(queries[1], 10)] == before
    again.delete(before[:3])
    assert not {h.id for h in again.search(queries[1], 10)} & set(before[:3])
    again.close()


def test_a_reopened_ivf_index_remembers_what_it_was_trained_on(tmp_path: Path) -> None:
    """Issue 28: a reopen recorded ``ntotal`` as the training size, postponing the next eightfold retraining."""
    from ragstore.types import Document

    rng = np.random.default_rng(5)
    x = rng.normal(size=(900, 16)).astype(np.float32)
    docs = [Document(id=f"v{i}", text=f"t{i}", vector=x[i]) for i in range(900)]
    cfg = {"path": tmp_path / "ivf", "index": "ivf_sq8", "ivf_train_at": 100}
    store = FaissStore(**cfg)
    store.upsert(docs[:100])
    store.upsert(docs[100:150])
    assert store._trained_at == 100
    store.close()
    again = FaissStore(**cfg)
    assert again._trained_at == 100
    again.upsert(docs[150:800])  # 800 = 8 x 100: trained again now, not at 8 x 150
    assert again._trained_at == 800
    again.close()


def _vectors(store: FaissStore, ids: list[str]) -> np.ndarray:
    got = {d.id: d.vector for d in store.get(ids)}
    return np.stack([got[i] for i in ids])


def test_flat_store_keeps_each_vector_once(tmp_path: Path) -> None:
    """Vectors live in the slots file only: not as SQLite blobs, and a flat index writes no file of its own."""
    import sqlite3

    from ragstore.adapters._sqlite import VECTORS_FILE

    docs = make_docs(50)
    with FaissStore(path=tmp_path / "db") as store:
        store.upsert(docs)
        want = _vectors(store, [d.id for d in docs])
    folder = tmp_path / "db"
    assert not (folder / INDEX_FILE).exists()
    assert (folder / VECTORS_FILE).stat().st_size == len(docs) * want.shape[1] * 4
    conn = sqlite3.connect(folder / "docs.sqlite")
    assert conn.execute("SELECT max(length(vector)) FROM docs").fetchone()[0] == 0
    conn.close()
    with FaissStore(path=tmp_path / "db") as again:
        np.testing.assert_array_equal(_vectors(again, [d.id for d in docs]), want)
        assert again.search(want[7], 1)[0].id == docs[7].id


def test_vectors_kept_in_sqlite_by_an_earlier_version_are_moved_out(tmp_path: Path) -> None:
    import sqlite3

    from ragstore.adapters._sqlite import VECTORS_FILE

    docs = make_docs(40)
    with FaissStore(path=tmp_path / "db", index="hnsw") as store:
        store.upsert(docs)
        store.delete([docs[0].id])
        ids = [d.id for d in docs[1:]]
        want = _vectors(store, ids)
    folder = tmp_path / "db"
    conn = sqlite3.connect(folder / "docs.sqlite")  # the earlier layout: blobs in docs.vector, no slots file
    slots = np.fromfile(folder / VECTORS_FILE, dtype=np.float32).reshape(-1, want.shape[1])
    for (iid,) in conn.execute("SELECT iid FROM docs").fetchall():
        conn.execute("UPDATE docs SET vector = ? WHERE iid = ?", (slots[iid - 1].tobytes(), iid))
    conn.execute("DELETE FROM info WHERE key = 'vectors'")
    conn.commit()
    conn.close()
    (folder / VECTORS_FILE).unlink()
    (folder / INDEX_FILE).unlink()
    with FaissStore(path=tmp_path / "db", index="hnsw") as again:
        assert again.count() == 39
        np.testing.assert_array_equal(_vectors(again, ids), want)
        assert again.search(want[3], 1)[0].id == ids[3]
    conn = sqlite3.connect(folder / "docs.sqlite")
    assert conn.execute("SELECT max(length(vector)) FROM docs").fetchone()[0] == 0
    assert conn.execute("SELECT value FROM info WHERE key = 'vectors'").fetchone()[0] == "slots"
    conn.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="hole punching (fallocate) is Linux-only")
def test_replaced_and_cleared_rows_give_their_space_back(tmp_path: Path) -> None:
    from ragstore.adapters._sqlite import VECTORS_FILE

    docs = make_docs(3000, dim=384)
    file = tmp_path / "db" / VECTORS_FILE
    with FaissStore(path=tmp_path / "db") as store:
        store.upsert(docs)
        once = file.stat().st_blocks
        for _ in range(4):  # each replacement writes new slots and releases the old ones
            store.upsert(docs)
        assert file.stat().st_size >= 5 * 3000 * 384 * 4
        assert file.stat().st_blocks <= once * 1.2
        store.clear()
        assert file.stat().st_blocks * 512 < 64 * 1024
        store.upsert(docs[:10])
        assert store.get([docs[3].id])[0].vector is not None
        np.testing.assert_allclose(store.search(docs[3].vector, 1)[0].score, 1.0, atol=1e-5)


def test_a_vectors_file_cut_short_is_a_clear_error(tmp_path: Path) -> None:
    from ragstore.adapters._sqlite import VECTORS_FILE
    from ragstore.errors import RagstoreError

    docs = make_docs(30)
    with FaissStore(path=tmp_path / "db") as store:
        store.upsert(docs)
    file = tmp_path / "db" / VECTORS_FILE
    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(RagstoreError, match="cut short"):
        FaissStore(path=tmp_path / "db")


def test_an_in_memory_store_written_over_and_over_keeps_its_live_rows_only() -> None:
    docs = make_docs(200)
    store = FaissStore()
    for _ in range(5):
        store.upsert(docs)
    store.delete([docs[0].id])
    assert len(store.db.vectors._mem) == 199  # one vector per live row, whatever was written before
    np.testing.assert_allclose(store.search(docs[9].vector, 1)[0].score, 1.0, atol=1e-5)
    store.clear()
    assert store.db.vectors._mem == {}
    store.close()
