"""Config files, env interpolation, the registry and its errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ragstore.adapters.faiss import FaissStore
from ragstore.adapters.memory import MemoryStore
from ragstore.config import load_config
from ragstore.errors import BackendNotInstalledError, ConfigError
from ragstore.stores.registry import create_store, store_class

HASHING = {"type": "hashing", "dim": 32}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_config_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path / "ragstore.yaml",
            "embedder: {type: hashing, dim: 32}\nstore: {type: faiss, index: hnsw}\n",
        )
    )
    block = cfg.store_block()
    assert block["path"] == str(tmp_path / ".ragstore" / "faiss")
    assert cfg.source == str(tmp_path / "ragstore.yaml")
    store = create_store(block)
    assert isinstance(store, FaissStore) and store.index_type == "hnsw"
    store.close()


def test_toml_config(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path / "ragstore.toml", '[embedder]\ntype = "hashing"\n[store]\ntype = "memory"\npath = "m"\n')
    )
    assert cfg.store_block()["path"] == str(tmp_path / "m")


def test_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RS_INDEX", "hnsw")
    monkeypatch.delenv("RS_UNSET", raising=False)
    cfg = load_config(
        {"embedder": HASHING, "store": {"type": "faiss", "index": "${RS_INDEX}", "path": "${RS_UNSET:-x}"}}
    )
    assert cfg.store["index"] == "hnsw" and cfg.store["path"] == "x"
    with pytest.raises(ConfigError, match=r"RS_UNSET \(used in store.index\)"):
        load_config({"embedder": HASHING, "store": {"type": "faiss", "index": "${RS_UNSET}"}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"embedder": HASHING, "stor": {"type": "faiss"}}, "stor: unknown key"),
        ({"embedder": HASHING, "store": {"type": "faiss", "indx": "flat"}}, "store.indx: unknown key"),
        ({"embedder": HASHING, "store": {"type": "faiss", "index": "ivf"}}, "store.index"),
        ({"embedder": HASHING, "store": {"type": "faiss", "ef_search": "many"}}, "store.ef_search"),
        ({"embedder": HASHING, "store": {"type": "faiss", "metric": "hamming"}}, "store.metric"),
        ({"embedder": HASHING, "store": {"index": "flat"}}, "store.type is missing"),
        ({"embedder": HASHING, "store": {"type": "nosuchdb"}}, "unknown store 'nosuchdb'"),
        (
            {"embedder": {"type": "hashing", "dims": 3}, "store": {"type": "memory"}},
            "embedder.dims: unknown key",
        ),
        (
            {"embedder": HASHING, "store": {"type": "ragstore.types:Document"}},
            "not a subclass of VectorStore",
        ),
        ({"embedder": HASHING, "store": {"type": "nosuch.module:Thing"}}, "cannot import store"),
        ({"embedder": HASHING, "store": "faiss"}, "store"),
        ({"ingest": {"chunk_size": -1}}, "ingest.chunk_size"),
    ],
)
def test_bad_config_names_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(data)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path / "bad.yaml", "store: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(write(tmp_path / "list.yaml", "- a\n- b\n"))


def test_default_config_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGSTORE_CONFIG", raising=False)
    write(tmp_path / "ragstore.yml", "embedder: {type: hashing}\nstore: {type: memory}\n")
    assert load_config().store["type"] == "memory"
    other = write(tmp_path / "other.yaml", "embedder: {type: hashing}\nstore: {type: faiss}\n")
    monkeypatch.setenv("RAGSTORE_CONFIG", str(other))
    assert load_config().store["type"] == "faiss"


def test_dotted_path_store() -> None:
    assert store_class("ragstore.adapters.memory:MemoryStore") is MemoryStore
    assert store_class("ragstore.adapters.memory.MemoryStore") is MemoryStore


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the engine module as if its extra were not installed."""
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(BackendNotInstalledError, match=r"pip install 'ragstore\[faiss\]'"):
        FaissStore(path=None)


def test_missing_embedder_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(BackendNotInstalledError, match=r"pip install 'ragstore\[embed\]'"):
        SentenceTransformerEmbedder()


def test_missing_ingest_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragstore.data.ingest import make_splitter

    monkeypatch.setitem(sys.modules, "langchain_text_splitters", None)
    with pytest.raises(BackendNotInstalledError, match=r"ragstore\[ingest\]"):
        make_splitter(100, 10)


def test_relative_model_folder_resolves_against_the_config_folder(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import ragstore

    project = tmp_path / "project"
    shutil.copytree(tiny_model, project / "models" / "tuned")
    (project / "ragstore.yaml").write_text(
        "embedder: {type: sentence-transformers, model: models/tuned}\nstore: {type: memory}\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the folder is found beside the config, not here
    with ragstore.open(project / "ragstore.yaml") as rs:
        assert rs.embedder.dim == 32
        assert str((project / "models" / "tuned").resolve()) in rs.embedder.describe()["model"]
    cfg = load_config({"embedder": {"type": "sentence-transformers", "model": "all-MiniLM-L6-v2"}})
    assert cfg.embedder_spec()[1]["model"] == "all-MiniLM-L6-v2"  # a hub name stays a name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ingest": {"chunk_size": 100, "chunk_overlap": 100}}, r"ingest: chunk_overlap \(100\) must be smaller"),
        ({"bilingual": {"translator_options": {"bogus": 1}}}, "bilingual.translator_options.*bogus: unknown key"),
        (
            {"bilingual": {"translator": "llm", "translator_options": {"model": "m"}}},
            "bilingual.translator_options.*base_url: Field required",
        ),
        ({"bilingual": {"translator": "marian", "translator_options": {"num_beams": 0}}}, "num_beams"),
    ],
)
def test_every_bad_value_fails_at_load(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(data)


def test_non_utf8_config_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "ragstore.yaml"
    path.write_bytes(b"store: {type: memory}\ndata_dir: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_overrides_are_laid_over_the_file_once(tmp_path: Path) -> None:
    path = tmp_path / "ragstore.yaml"
    path.write_text("data_dir: d\nstore: {type: faiss, index: hnsw}\nsearch: {k: 3}\n", encoding="utf-8")
    cfg = load_config(path, {"search": {"k": 7}, "store": {"index": None}})
    assert cfg.search.k == 7 and cfg.store == {"type": "faiss"} and cfg.data_path == tmp_path / "d"
    with pytest.raises(ConfigError, match=r"search\.k"):
        load_config(path, {"search": {"k": 0}})
