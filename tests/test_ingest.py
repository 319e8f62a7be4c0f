"""Reading and chunking files, and re-ingesting them through the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragstore.data.ingest import iter_files, load_documents
from ragstore.errors import DatasetError
from ragstore.pipeline import Ragstore, sample_dataset


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("Super guarantee is 12%.\n\nIt is paid quarterly.", encoding="utf-8")
    (root / "b.md").write_text("# SuperStream\n\nData and money travel together.", encoding="utf-8")
    (root / "sub" / "c.html").write_text(
        "<html><head><title>APRA</title><style>p{}</style><script>var x=1;</script></head>"
        "<body><p>APRA supervises funds.</p></body></html>",
        encoding="utf-8",
    )
    rows = [
        {"_id": "r1", "title": "T", "text": "Row one text.", "lang": "en"},
        {"_id": "r2", "text": "Row two text.", "nested": {"x": 1}},
    ]
    (root / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    (root / "e.csv").write_text("id,text,topic\nc1,CSV passage one,tax\nc2,CSV passage two,\n", encoding="utf-8")
    (root / "ignored.pdf").write_bytes(b"%PDF")
    (root / ".hidden.txt").write_text("secret", encoding="utf-8")
    return root


def test_reads_every_supported_format(folder: Path) -> None:
    files = [p.name for p in iter_files(folder)]
    assert files == ["a.txt", "b.md", "d.jsonl", "e.csv", "c.html"]
    docs = {d.id: d for d in load_documents(folder, chunk_size=200, chunk_overlap=20)}
    assert docs["r1"].text == "T\nRow one text." and docs["r1"].metadata["lang"] == "en"
    assert "nested" not in docs["r2"].metadata
    assert docs["c1"].metadata["topic"] == "tax" and "topic" not in docs["c2"].metadata
    html = next(d for d in docs.values() if d.metadata["source"].endswith("c.html"))
    assert "APRA supervises funds." in html.text and "var x" not in html.text and html.metadata["title"] == "APRA"
    for d in docs.values():
        assert {"source", "chunk", "start"} <= set(d.metadata)


def test_long_text_is_split_with_positions(tmp_path: Path) -> None:
    sentences = [f"Sentence number {i} talks about super." for i in range(60)]
    text = " ".join(sentences)
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    docs = load_documents(tmp_path / "long.txt", chunk_size=200, chunk_overlap=40)
    assert len(docs) > 5
    assert [d.metadata["chunk"] for d in docs] == list(range(len(docs)))
    for d in docs:
        assert len(d.text) <= 200
        start = d.metadata["start"]
        assert text[start : start + len(d.text)] == d.text
    assert len({d.id for d in docs}) == len(docs)


def test_row_split_into_chunks_gets_suffixed_ids(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text(json.dumps({"_id": "big", "text": "word " * 200}) + "\n", encoding="utf-8")
    ids = [d.id for d in load_documents(tmp_path / "x.jsonl", chunk_size=100, chunk_overlap=0)]
    assert ids[0] == "big#0" and len(ids) > 3


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"text": "ok"}\n{not json\n', "bad.jsonl:2: not valid JSON"),
        ("bad2.jsonl", '{"title": "no text"}\n', "needs a string 'text'"),
        ("bad.csv", "id,body\n1,x\n", "needs a 'text' column"),
        ("x.pdf", "%PDF", "unsupported file type"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_documents(tmp_path / name)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        iter_files(tmp_path / "nope")


def test_bad_chunk_settings(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError, match="chunk_overlap"):
        load_documents(tmp_path, chunk_size=10, chunk_overlap=10)


def _rs(tmp_path: Path) -> Ragstore:
    return Ragstore.open(
        {
            "data_dir": str(tmp_path / "data"),
            "embedder": {"type": "hashing", "dim": 64},
            "store": {"type": "faiss"},
            "ingest": {"chunk_size": 120, "chunk_overlap": 0},
        }
    )


def test_reingest_is_idempotent_and_removes_stale_chunks(folder: Path, tmp_path: Path) -> None:
    with _rs(tmp_path) as rs:
        first = rs.ingest(folder, progress=False)
        assert first.files == 5 and first.embedded == first.chunks and first.removed == 0
        total = rs.count()
        second = rs.ingest(folder, progress=False)
        assert (second.embedded, second.unchanged, second.removed) == (0, first.chunks, 0)
        assert rs.count() == total
        (folder / "a.txt").write_text("Only one short paragraph now.", encoding="utf-8")
        third = rs.ingest(folder, progress=False)
        assert third.embedded == 1
        assert third.removed >= 1
        sources = {d.text for d in rs.store.get(filter={"source": str(folder / "a.txt")})}
        assert sources == {"Only one short paragraph now."}


def test_sample_dataset_ships_with_the_package() -> None:
    folder = sample_dataset()
    corpus = [json.loads(x) for x in (folder / "corpus.en.jsonl").read_text(encoding="utf-8").splitlines()]
    queries = {
        lang: [json.loads(x) for x in (folder / f"queries.{lang}.jsonl").read_text(encoding="utf-8").splitlines()]
        for lang in ("en", "zh")
    }
    assert len(corpus) >= 60 and len(queries["en"]) == len(queries["zh"]) >= 40
    assert [q["_id"] for q in queries["en"]] == [q["_id"] for q in queries["zh"]]
    ids = {c["_id"] for c in corpus}
    qrels = (folder / "qrels" / "test.en.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert qrels and all(line.split("\t")[1] in ids for line in qrels)
    assert {line.split("\t")[0] for line in qrels} == {q["_id"] for q in queries["en"]}
