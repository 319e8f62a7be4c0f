"""Collections beyond the per-store conformance cases (``CollectionTests``): reading a bare store leaves it
untouched, ``verify``/``rebuild`` find and mend a derived index changed behind the collection's back, and the
embedder identity a manifest records follows the weights, not the folder they sit in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragstore.embedders.hashing import HashingEmbedder
from ragstore.errors import UnsupportedFeatureError, ValidationError
from ragstore.query.retrieval import Retriever
from ragstore.stores.collection import Collection, open_collection
from ragstore.stores.registry import create_store
from ragstore.types import Document


def _docs(n: int = 6) -> list[Document]:
    emb = HashingEmbedder(32)
    texts = [f"passage {i} about pensions and rollover form {i}" for i in range(n)]
    vectors = emb.embed_documents(texts)
    return [Document(id=f"d{i}", text=t, vector=v) for i, (t, v) in enumerate(zip(texts, vectors, strict=True))]


def test_reading_a_bare_store_writes_nothing_to_it(tmp_path: Path) -> None:
    store = create_store({"type": "faiss", "path": str(tmp_path / "f")})
    store.upsert(_docs())
    (result,) = Retriever(HashingEmbedder(32)).search(store, ["rollover form 3"], 2)
    assert result.hits[0].id == "d3"
    assert store.read_manifest() is None  # a view for reading: no manifest, no journal file
    assert not (tmp_path / "f.lexical").exists()
    store.close()


def test_a_store_opened_alone_says_where_its_lexical_index_went(tmp_path: Path) -> None:
    store = create_store({"type": "memory", "lexical": True})
    with pytest.raises(UnsupportedFeatureError, match="open_collection"):
        Collection.view(store).search_lexical("pension", 2)
    store.close()


def test_verify_finds_and_rebuild_mends_a_route_changed_behind_its_back(tmp_path: Path) -> None:
    route = HashingEmbedder(32, seed="route")
    coll = open_collection(
        {"type": "faiss", "path": str(tmp_path / "f"), "lexical": True},
        embedder=HashingEmbedder(32),
        routes={"ml": (route, {"type": "faiss", "path": str(tmp_path / "f-ml")})},
    )
    try:
        coll.upsert(_docs())
        assert coll.verify() == []
        coll.route("ml").delete(["d2"])  # not through the collection
        assert coll.verify() == ["route:ml: 1 documents missing (first: 'd2')"]
        assert coll.rebuild(["route:ml"]) == 1 and coll.verify() == []
        with pytest.raises(ValidationError, match="no derived index"):
            coll.rebuild(["route:nope"])
        assert coll.manifest()["counts"] == {"primary": 6, "lexical": 6, "route:ml": 6}
    finally:
        coll.close()


def test_embedder_identity_follows_the_weights_not_the_folder(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)  # other mtimes, same weights: the same model on any machine
    original = SentenceTransformerEmbedder(str(tiny_model), backend="torch").identity()
    copied = SentenceTransformerEmbedder(str(copy), backend="torch").identity()
    assert copied["key"] == original["key"] and copied["weights"] == original["weights"]
    prefixed = SentenceTransformerEmbedder(str(copy), backend="torch", query_prefix="query: ").identity()
    assert prefixed["key"] != original["key"]  # other prefixes give other vectors
    st = SentenceTransformer(str(copy), device="cpu")
    with torch.no_grad():
        for p in st.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    st.save(str(copy))  # re-trained in place
    retrained = SentenceTransformerEmbedder(str(copy), backend="torch").identity()
    assert retrained["key"] != original["key"]


def test_a_refused_write_leaves_nothing_to_repair(tmp_path: Path) -> None:
    """Input the store refuses (before writing anything) takes the pending mark back: the next write finds no
    half-done write and rebuilds nothing; the journal's generation moves only for writes that happened."""
    coll = open_collection({"type": "faiss", "path": str(tmp_path / "f"), "lexical": True})
    try:
        coll.upsert(_docs())
        gen = coll.journal.generation()
        with pytest.raises(ValidationError):
            coll.upsert([Document(id="bad", text="  ", vector=[1.0] * 32)])
        with pytest.raises(ValidationError):
            coll.delete(["d1"], filter={"x": 1})
        assert not coll.journal.pending() and coll.journal.generation() == gen
        coll.upsert(_docs(7)[6:])
        assert not [n for n in coll.notes if "repaired" in n] and coll.journal.generation() == gen + 1
        assert coll.verify() == [] and coll.count() == 7
    finally:
        coll.close()
