"""The adapter kit: options objects, siblings (a second store beside the first, never on top of it), the
filter fold, and what the base class does for every adapter."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ragstore.config import load_config
from ragstore.errors import ConfigError
from ragstore.query.filters import FilterCompiler, Node, parse_filter
from ragstore.stores.registry import STORES, store_class

HASHING = {"type": "hashing", "dim": 16}
SERVERS = {
    "chroma": {"host": "127.0.0.1", "collection": "mine"},
    "milvus": {"uri": "http://127.0.0.1:19530", "collection": "mine"},
    "qdrant": {"url": "http://127.0.0.1:6333", "collection": "mine"},
    "pgvector": {"dsn": "postgresql://app@127.0.0.1/app", "table": "mine"},
}


def _options(kind: str, **values: Any) -> Any:
    return store_class(kind).Options.model_validate(values)


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_scratch_and_sibling_on_a_server_never_reuse_the_collection(kind: str, tmp_path: Path) -> None:
    opts = _options(kind, **SERVERS[kind])
    name_key = type(opts).name_key
    assert opts.remote and name_key is not None
    for other in (opts.scratch(tmp_path / "scratch", "bench_1"), opts.sibling("ml")):
        assert getattr(other, name_key) != "mine"
        for key in type(opts).remote_keys:  # same server
            assert getattr(other, key) == getattr(opts, key)
        assert getattr(other, "path", None) is None  # never an embedded engine instead of the server


def test_bench_scratch_block_keeps_a_milvus_server_but_not_its_collection(tmp_path: Path) -> None:
    """The bench drops its scratch stores; with ``uri`` (a server) it once took the user's collection."""
    from ragstore.bench.runner import StoreCase, _scratch_block

    case = StoreCase(label="milvus", block={"type": "milvus", **SERVERS["milvus"]}, settings=[{}])
    block = _scratch_block(case, tmp_path / "scratch", "r1_0")
    assert block["uri"] == SERVERS["milvus"]["uri"] and block["collection"] != "mine"
    local = _scratch_block(StoreCase("faiss", {"type": "faiss", "path": "/data/mine"}, [{}]), tmp_path / "s", "t")
    assert local["path"] == str(tmp_path / "s")


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_multilingual_index_of_a_server_store_stays_on_that_server(kind: str, tmp_path: Path) -> None:
    cfg = load_config(
        {
            "data_dir": str(tmp_path),
            "embedder": HASHING,
            "store": {"type": kind, **SERVERS[kind]},
            "bilingual": {"multilingual": {"embedder": HASHING}},
        }
    )
    spec = cfg.multilingual_store_spec()
    assert spec is not None
    cls, ml = spec
    assert cls is store_class(kind)
    assert getattr(ml, type(ml).name_key) == "mine_ml"
    assert getattr(ml, "path", None) is None


def test_embedded_siblings(tmp_path: Path) -> None:
    faiss = _options("faiss", path=str(tmp_path / "idx"))
    assert faiss.sibling("ml").path == str(tmp_path / "idx") + "-ml"
    pg = _options("pgvector", path=str(tmp_path / "pg"))  # one embedded server, another table
    assert pg.sibling("ml").path == pg.path and pg.sibling("ml").table == "ragstore_docs_ml"
    assert _options("memory").sibling("ml").path is None
    with pytest.raises(ConfigError, match="table"):
        _options("pgvector", dsn="postgresql://x", table="t" * 60).sibling("a_much_too_long_tag")


def test_stores_take_their_validated_options_object(tmp_path: Path) -> None:
    from ragstore.adapters.faiss import FaissOptions, FaissStore

    opts = FaissOptions(path=str(tmp_path / "f"), index="hnsw", ef_search=16)
    with FaissStore(opts) as store:
        assert isinstance(store.options, FaissOptions) and store.options.ef_search == 16
        store.tune(ef_search=32)
        assert store.options.ef_search == 32 and opts.ef_search == 16  # the caller's object is not changed
    with FaissStore(path=tmp_path / "g") as store:  # keyword arguments and PathLike values still work
        assert store.options.path == str(tmp_path / "g")
    with pytest.raises(ConfigError, match=r"store\.indx: unknown key"):
        FaissStore(indx="hnsw")
    with pytest.raises(ConfigError, match="not both"):
        FaissStore(opts, path="x")


def test_every_builtin_adapter_reads_its_options_instead_of_redeclaring_them() -> None:
    import inspect

    for name in STORES:
        try:
            cls = store_class(name)
        except Exception:  # an engine not installed here has nothing to inspect
            continue
        assert "__init__" not in vars(cls), f"{name} re-declares its options in __init__"
        assert "_clear" not in vars(cls) or "_drop()" not in inspect.getsource(cls._clear), name


def test_the_registry_says_where_each_store_keeps_its_lexical_leg() -> None:
    """``ragstore info`` reads the leg from the registry without importing engines: it must be the class's."""
    for name, entry in STORES.items():
        cls = store_class(name)
        assert entry.lexical.startswith("native") == (cls.native_lexical is not None), name
    # and the README's backends table says the same, row by row
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `") or line.startswith("| [`")]
    said: dict[str, str] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        names = re.findall(r"`([a-z-]+)`", cells[0])
        leg = cells[-1]
        for name in names:
            if name in STORES:
                own = re.search(rf"{re.escape(name.split('-')[-1])}: ([^;]+)", leg) if len(names) > 1 else None
                said[name] = own.group(1) if own else leg
    assert set(said) == set(STORES)
    for name, leg in said.items():
        assert ("native" in leg) == (store_class(name).native_lexical is not None), (name, leg)


def test_lexical_leg_native_on_an_engine_without_one_is_refused() -> None:
    from ragstore.adapters.memory import MemoryStore

    with pytest.raises(ConfigError, match="no native lexical leg"):
        MemoryStore(lexical=True, lexical_leg="native")


def test_the_fold_walks_the_tree_once_for_any_engine() -> None:
    class Text(FilterCompiler[str]):
        def all_of(self, parts: list[str]) -> str:
            return "(" + " & ".join(parts) + ")"

        def any_of(self, parts: list[str]) -> str:
            return "(" + " | ".join(parts) + ")"

        def negate(self, part: str, node: Node) -> str:
            return f"!{part}"

        def eq(self, field: str, value: Any) -> str:
            return f"{field}={value!r}"

        def range(self, field: str, op: str, value: Any) -> str:
            return f"{field}{op}{value}"

    node = parse_filter({"a": {"$ne": 1}, "$or": [{"b": {"$in": ["x", "y"]}}, {"$not": {"c": {"$gt": 2}}}]})
    assert node is not None
    assert Text().compile(node) == "(!a=1 & ((b='x' | b='y') | !c$gt2))"


@pytest.mark.parametrize("kind", ["chroma", "qdrant", "milvus", "pgvector"])
@pytest.mark.parametrize("name", ["a/b", "../up", "x..y", "a b", "", "a\x00b"])
def test_collection_names_that_are_paths_are_config_errors(kind: str, name: str) -> None:
    from ragstore.stores.registry import resolve_store

    key = "table" if kind == "pgvector" else "collection"
    place = {"dsn": "postgresql://x"} if kind == "pgvector" else {"path": "/tmp/never-created"}
    with pytest.raises(ConfigError, match=key):
        resolve_store({"type": kind, **place, key: name})
