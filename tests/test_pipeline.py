"""ragstore.open(): add, search, filters, counts, and the guard against mixing embedders in one store."""

from __future__ import annotations

from pathlib import Path

import pytest

import ragstore
from ragstore.errors import DimensionMismatchError, ValidationError


def config(tmp_path: Path, dim: int = 64, store: str = "faiss") -> dict:
    return {
        "data_dir": str(tmp_path / "data"),
        "embedder": {"type": "hashing", "dim": dim},
        "store": {"type": store},
    }


def test_add_and_search(tmp_path: Path) -> None:
    with ragstore.open(config(tmp_path)) as rs:
        ids = rs.add(
            [
                "The super guarantee rate is 12 percent",
                "SuperStream sends data and money together",
                "APRA supervises funds",
            ],
            metadatas=[{"topic": "employer"}, {"topic": "superstream"}, {"topic": "regulation"}],
        )
        assert len(set(ids)) == 3
        hits = rs.search("what is the super guarantee rate", k=2)
        assert hits[0].id == ids[0] and hits[0].score > hits[1].score
        filtered = rs.search("what is the super guarantee rate", k=2, filter={"topic": "regulation"})
        assert [h.id for h in filtered] == [ids[2]]
        assert rs.count({"topic": "superstream"}) == 1
        assert rs.add(["The super guarantee rate is 12 percent"]) == [ids[0]]  # same text, same id
        assert rs.count() == 3
        assert [d.text for d in rs.get([ids[1]])] == ["SuperStream sends data and money together"]
        many = rs.search_many(["APRA", "SuperStream"], k=1)
        assert [m[0].id for m in many] == [ids[2], ids[1]]


def test_bad_add_input(tmp_path: Path) -> None:
    with ragstore.open(config(tmp_path)) as rs:
        with pytest.raises(ValidationError):
            rs.add("not a list")  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            rs.add(["a", ""])
        with pytest.raises(ValidationError):
            rs.add(["a"], metadatas=[{}, {}])
        with pytest.raises(ValidationError):
            rs.search("   ")
        assert rs.count() == 0


def test_reopening_with_another_dimension_is_refused(tmp_path: Path) -> None:
    with ragstore.open(config(tmp_path, 64)) as rs:
        rs.add(["hello world"])
    with pytest.raises(DimensionMismatchError, match="another model"):
        ragstore.open(config(tmp_path, 32))
    with ragstore.open(config(tmp_path, 64)) as rs:  # the data is intact
        assert rs.count() == 1


def test_info_and_cache(tmp_path: Path) -> None:
    with ragstore.open(config(tmp_path)) as rs:
        rs.add(["cache me"])
        info = rs.info()
    assert info["store"]["count"] == 1 and info["store"]["type"] == "faiss"
    assert info["embedder"]["cache"].endswith("embeddings.sqlite")
    assert (tmp_path / "data" / "cache" / "embeddings.sqlite").exists()


@pytest.mark.model
def test_minilm_ranks_the_sample(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    """The real default model puts the judged passage first for a plain question."""
    from ragstore.config import load_config
    from ragstore.pipeline import Ragstore, sample_dataset

    rs = Ragstore(load_config({"data_dir": str(tmp_path), "cache": False}), embedder=minilm)
    rs.ingest(sample_dataset() / "corpus.en.jsonl", progress=False)
    assert rs.count() == 62
    assert rs.search("When are quarterly super guarantee payments due?", k=1)[0].id == "sup-008"
    assert rs.search("How many members can an SMSF have?", k=1)[0].id == "sup-055"
    rs.close()
