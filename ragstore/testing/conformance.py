"""Conformance suite every ``VectorStore`` must pass: same ids, same scores, same filters, same errors.

Use it by subclassing and overriding one fixture::

    from ragstore.testing import VectorStoreConformance

    class TestMyStore(VectorStoreConformance):
        @pytest.fixture
        def store_config(self, tmp_path):
            return {"type": "mystore", "path": str(tmp_path / "db")}

``store_config`` is a config block (as in ``ragstore.yaml``); the suite builds stores from it through the
registry, and reopens it in a *fresh process* for the persistence tests. Expected results come from an
independent oracle (numpy scores and plain-Python predicates), never from the store under test.
Slow engines can lower ``hypothesis_examples``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from ..errors import (
    BackendUnavailableError,
    ConfigError,
    DimensionMismatchError,
    EmbedderMismatchError,
    EngineError,
    FilterError,
    RagstoreError,
    UnsupportedFeatureError,
    ValidationError,
)
from ..query.filters import MAX_ATOMS, matches, parse_filter
from ..stores.base import VectorStore
from ..stores.collection import Collection, open_collection
from ..stores.registry import create_store, resolve_store, store_block
from ..types import Document, Hit
from .data import DIM, TAGS, make_docs
from .lexical import EMPTY_QUERIES, QUERIES, lexical_docs, reference_bm25


def oracle_scores(docs: list[Document], query: Any) -> dict[str, float]:
    """Cosine similarity computed independently from the raw (unnormalised) vectors."""
    q = np.asarray(query, dtype=np.float64)
    out = {}
    for d in docs:
        v = np.asarray(d.vector, dtype=np.float64)
        out[d.id] = float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q)))
    return out


def oracle_top(
    docs: list[Document], query: Any, k: int, pred: Callable[[dict[str, Any]], bool] | None = None
) -> list[str]:
    scores = oracle_scores([d for d in docs if pred is None or pred(d.metadata)], query)
    return sorted(scores, key=lambda i: (-scores[i], i))[:k]


def _num(m: dict[str, Any], key: str) -> float | None:
    v = m.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


#: (filter, independent predicate) pairs covering every operator, missing fields and nesting.
FILTER_CASES: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({"tag": "alpha"}, lambda m: m.get("tag") == "alpha"),
    ({"tag": {"$eq": "beta"}}, lambda m: m.get("tag") == "beta"),
    ({"tag": {"$ne": "beta"}}, lambda m: m.get("tag") != "beta"),
    ({"i": 7}, lambda m: m.get("i") == 7),
    ({"i": 7.0}, lambda m: m.get("i") == 7),
    ({"i": {"$gt": 40}}, lambda m: m["i"] > 40),
    ({"i": {"$gte": 40}}, lambda m: m["i"] >= 40),
    ({"i": {"$lt": 5}}, lambda m: m["i"] < 5),
    ({"i": {"$lte": 5}}, lambda m: m["i"] <= 5),
    ({"i": {"$gt": 10, "$lt": 20}}, lambda m: 10 < m["i"] < 20),
    ({"x": {"$gte": 0.5}}, lambda m: m["x"] >= 0.5),
    ({"x": {"$lt": -0.25}}, lambda m: m["x"] < -0.25),
    ({"i": {"$in": [1, 2, 3, 59, 1000]}}, lambda m: m["i"] in (1, 2, 3, 59)),
    ({"i": {"$nin": [1, 2, 3]}}, lambda m: m["i"] not in (1, 2, 3)),
    ({"tag": {"$in": ["alpha", "gamma"]}}, lambda m: m["tag"] in ("alpha", "gamma")),
    ({"tag": {"$nin": ["alpha", "gamma"]}}, lambda m: m["tag"] not in ("alpha", "gamma")),
    ({"flag": True}, lambda m: m.get("flag") is True),
    ({"flag": False}, lambda m: m.get("flag") is False),
    ({"flag": {"$ne": True}}, lambda m: m.get("flag") is not True),
    ({"flag": {"$in": [True]}}, lambda m: m.get("flag") is True),
    ({"flag": {"$nin": [False]}}, lambda m: m.get("flag") is not False),
    # missing fields: comparisons are false, negations true
    ({"opt": "odd"}, lambda m: m.get("opt") == "odd"),
    ({"opt": {"$ne": "odd"}}, lambda m: m.get("opt") != "odd"),
    ({"opt": {"$nin": ["odd", "even"]}}, lambda m: "opt" not in m),
    ({"missing": {"$ne": 1}}, lambda m: True),
    ({"missing": 1}, lambda m: False),
    ({"missing": {"$gt": 0}}, lambda m: False),
    ({"$not": {"missing": {"$gt": 0}}}, lambda m: True),
    # kinds never mix: numbers, strings and booleans
    ({"flag": 1}, lambda m: False),
    ({"i": True}, lambda m: False),
    ({"i": "7"}, lambda m: False),
    ({"num_or_str": 11}, lambda m: m.get("num_or_str") == 11 and not isinstance(m.get("num_or_str"), str)),
    ({"num_or_str": "10"}, lambda m: m.get("num_or_str") == "10"),
    ({"num_or_str": {"$gt": 0}}, lambda m: (_num(m, "num_or_str") or 0) > 0),
    ({"num_or_str": {"$ne": "10"}}, lambda m: m.get("num_or_str") != "10"),
    # logic
    ({"tag": "alpha", "i": {"$gt": 20}}, lambda m: m["tag"] == "alpha" and m["i"] > 20),
    ({"$and": [{"tag": "alpha"}, {"i": {"$lt": 30}}]}, lambda m: m["tag"] == "alpha" and m["i"] < 30),
    ({"$or": [{"tag": "alpha"}, {"i": {"$lt": 3}}]}, lambda m: m["tag"] == "alpha" or m["i"] < 3),
    ({"$not": {"tag": "alpha"}}, lambda m: m["tag"] != "alpha"),
    (
        {"$not": {"$or": [{"opt": "odd"}, {"flag": True}]}},
        lambda m: not (m.get("opt") == "odd" or m.get("flag") is True),
    ),
    (
        {"$or": [{"$and": [{"opt": "even"}, {"x": {"$gt": 0}}]}, {"$not": {"i": {"$gte": 5}}}]},
        lambda m: (m.get("opt") == "even" and m["x"] > 0) or m["i"] < 5,
    ),
    (
        {"$and": [{"$not": {"flag": False}}, {"$not": {"opt": {"$in": ["odd"]}}}]},
        lambda m: m.get("flag") is not False and m.get("opt") != "odd",
    ),
    # values an engine might misparse are matched literally
    *[({"tag": tag}, lambda m, tag=tag: m["tag"] == tag) for tag in TAGS[3:]],
    ({"tag": {"$in": TAGS[3:]}}, lambda m: m["tag"] in TAGS[3:]),
    ({"tag": "' OR '1'='1"}, lambda m: False),
    ({"tag": '" or 1==1 or "'}, lambda m: False),
]

BAD_FILTERS: list[Any] = [
    {"tag": {"$regex": "a.*"}},
    {"$nor": [{"tag": "a"}]},
    {"tag": None},
    {"tag": {"$in": []}},
    {"tag": {"$in": "alpha"}},
    {"tag": {"$in": ["a", 1]}},
    {"i": {"$gt": "5"}},
    {"i": {"$gt": True}},
    {"tag": ["alpha"]},
    {"tag": {"nested": 1}},
    {"$and": []},
    {"$and": {"tag": "a"}},
    {"$or": "x"},
    {"x": float("nan")},
    {"bad key!": 1},
    {"": 1},
    "tag = 'a'",
    [{"tag": "a"}],
]


def child_env() -> dict[str, str]:
    """This interpreter's environment and import path, for the suite's second processes."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _opener(config: dict[str, Any]) -> Iterator[Callable[[], VectorStore]]:
    """A factory of stores opened from ``config``, every one closed when the test ends."""
    opened: list[VectorStore] = []

    def factory() -> VectorStore:
        store = create_store(config)
        opened.append(store)
        return store

    yield factory
    for store in reversed(opened):
        store.close()


def _collection_opener(config: dict[str, Any], **kwargs: Any) -> Iterator[Callable[..., Collection]]:
    """A factory of collections opened from ``config``, every one closed when the test ends."""
    opened: list[Collection] = []

    def factory(**more: Any) -> Collection:
        coll = open_collection(config, **{**kwargs, **more})
        opened.append(coll)
        return coll

    yield factory
    for coll in reversed(opened):
        coll.close()


class _Base:
    """Fixtures shared by the mixins. Override ``store_config``."""

    hypothesis_examples: int = 60

    @pytest.fixture
    def store_config(self, tmp_path: Any) -> dict[str, Any]:
        raise NotImplementedError("override the store_config fixture to return a store config block")

    @pytest.fixture
    def make_store(self, store_config: dict[str, Any]) -> Iterator[Callable[[], VectorStore]]:
        yield from _opener(store_config)

    @pytest.fixture
    def lexical_config(self, store_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        config = {**store_config, "lexical": True}
        cls, opts = resolve_store(config)
        native = cls.native_lexical is not None and opts.lexical_leg != "sidecar"
        if opts.remote and not native:  # a server store's sidecar index lives in a local folder
            config["lexical_path"] = str(tmp_path_factory.mktemp("lexical"))
        return config

    @pytest.fixture
    def store(self, make_store: Callable[[], VectorStore]) -> VectorStore:
        return make_store()

    @pytest.fixture
    def docs(self) -> list[Document]:
        return make_docs()

    @pytest.fixture
    def filled(self, store: VectorStore, docs: list[Document]) -> VectorStore:
        store.upsert(docs)
        return store

    @pytest.fixture
    def persisted(self, make_store: Callable[[], VectorStore], docs: list[Document]) -> VectorStore:
        """A filled store whose data outlives ``close`` (skips RAM-only configurations)."""
        store = make_store()
        if not store.capabilities.persistent:
            pytest.skip(f"{store.name} with this config keeps nothing after close (capabilities.persistent=False)")
        store.upsert(docs)
        return store


class UpsertTests(_Base):
    def test_upsert_returns_ids_and_counts(self, store: VectorStore, docs: list[Document]) -> None:
        assert store.upsert(docs) == [d.id for d in docs]
        assert store.count() == len(docs)
        assert store.dim == DIM

    def test_upsert_is_idempotent(self, store: VectorStore, docs: list[Document]) -> None:
        store.upsert(docs)
        store.upsert(docs)
        assert store.count() == len(docs)
        q = docs[0].vector
        assert [h.id for h in store.search(q, 5)] == oracle_top(docs, q, 5)

    def test_upsert_replaces_text_metadata_and_vector(self, filled: VectorStore, docs: list[Document]) -> None:
        target = docs[5]
        new_vec = -np.asarray(docs[9].vector)
        filled.upsert([Document(id=target.id, text="replaced", metadata={"tag": "new", "i": -1}, vector=new_vec)])
        assert filled.count() == len(docs)
        (got,) = filled.get([target.id])
        assert got.text == "replaced"
        assert got.metadata == {"tag": "new", "i": -1}
        top = filled.search(new_vec, 1)[0]
        assert top.id == target.id and top.score == pytest.approx(1.0, abs=1e-4)
        assert target.id not in [h.id for h in filled.search(docs[5].vector, 3)]
        assert filled.count({"tag": "new"}) == 1

    def test_upsert_empty_is_a_no_op(self, store: VectorStore) -> None:
        assert store.upsert([]) == []
        assert store.count() == 0

    def test_any_dimension_is_accepted(self, store: VectorStore) -> None:
        docs = make_docs(n=5, dim=3)
        store.upsert(docs)
        assert store.dim == 3
        assert store.search(docs[2].vector, 1)[0].id == docs[2].id

    def test_derived_ids_are_stable(self, store: VectorStore) -> None:
        a = Document(text="same text", vector=np.ones(4))
        b = Document(text="same text", vector=np.ones(4))
        assert a.id == b.id
        store.upsert([a])
        store.upsert([b])
        assert store.count() == 1


class GetDeleteTests(_Base):
    def test_get_keeps_order_skips_missing_and_repeats(self, filled: VectorStore, docs: list[Document]) -> None:
        got = filled.get([docs[3].id, "nope", docs[1].id, docs[3].id])
        assert [d.id for d in got] == [docs[3].id, docs[1].id]
        assert filled.get([]) == []

    def test_get_round_trips_text_metadata_and_kinds(self, filled: VectorStore, docs: list[Document]) -> None:
        for want in docs[:12]:
            (got,) = filled.get([want.id])
            assert got.text == want.text
            assert got.metadata == want.metadata
            for key, value in want.metadata.items():
                assert type(got.metadata[key]) is type(value), key

    def test_get_returns_normalised_vectors(self, filled: VectorStore, docs: list[Document]) -> None:
        (got,) = filled.get([docs[4].id])
        assert got.vector is not None
        raw = np.asarray(docs[4].vector, dtype=np.float64)
        want = raw / np.linalg.norm(raw)
        np.testing.assert_allclose(np.asarray(got.vector, dtype=np.float64), want, atol=1e-5)

    def test_get_by_filter(self, filled: VectorStore, docs: list[Document]) -> None:
        if not filled.capabilities.get_by_filter:
            with pytest.raises(UnsupportedFeatureError):
                filled.get(filter={"tag": "alpha"})
            return
        got = {d.id for d in filled.get(filter={"tag": "alpha"})}
        assert got == {d.id for d in docs if d.metadata["tag"] == "alpha"}
        assert len(filled.get(filter={"tag": "alpha"}, limit=2)) == 2

    def test_get_pages_through_a_large_collection(self, store: VectorStore) -> None:
        """Reading by filter pages through engines' result windows: every document once, ids with quotes too."""
        many = make_docs(2500, seed=3)
        for i, doc in enumerate(many):
            doc.id = f"p'{i:05d}\"" if i % 7 == 0 else f"p-{i:05d}"
        store.upsert(many)
        if not store.capabilities.get_by_filter:
            pytest.skip(f"{store.name} cannot get documents by filter")
        got = [d.id for d in store.get(filter=None)]
        assert sorted(got) == sorted(d.id for d in many) and len(set(got)) == len(got)
        assert len(store.get(filter={"opt": "odd"}, limit=1100)) == 1100
        expected = sum(1 for d in many if d.metadata.get("opt") == "odd")
        assert len(store.get(filter={"opt": "odd"})) == expected

    def test_delete_by_ids(self, filled: VectorStore, docs: list[Document]) -> None:
        gone = [docs[0].id, docs[1].id]
        assert filled.delete([*gone, "unknown-id"]) == 2
        assert filled.count() == len(docs) - 2
        assert filled.get(gone) == []
        assert filled.delete(gone) == 0
        hits = filled.search(docs[0].vector, len(docs))
        assert not {h.id for h in hits} & set(gone)
        assert len(hits) == len(docs) - 2

    def test_delete_by_filter(self, filled: VectorStore, docs: list[Document]) -> None:
        if not filled.capabilities.delete_by_filter:
            with pytest.raises(UnsupportedFeatureError):
                filled.delete(filter={"tag": "alpha"})
            return
        expected = {d.id for d in docs if d.metadata["tag"] == "alpha"}
        assert filled.delete(filter={"tag": "alpha"}) == len(expected)
        assert filled.count() == len(docs) - len(expected)
        assert filled.count({"tag": "alpha"}) == 0
        assert not {h.id for h in filled.search(docs[0].vector, len(docs))} & expected

    def test_delete_needs_ids_or_filter(self, filled: VectorStore, docs: list[Document]) -> None:
        with pytest.raises(ValidationError):
            filled.delete()
        with pytest.raises(ValidationError):
            filled.delete(filter={})
        with pytest.raises(ValidationError):
            filled.delete([docs[0].id], filter={"tag": "alpha"})
        assert filled.count() == len(docs)

    def test_clear(self, filled: VectorStore, docs: list[Document]) -> None:
        filled.clear()
        assert filled.count() == 0
        assert filled.search(docs[0].vector, 3) == []
        filled.upsert(docs[:3])
        assert filled.count() == 3


class DropTests(_Base):
    def test_drop_removes_the_collection(self, make_store: Callable[[], VectorStore], docs: list[Document]) -> None:
        store = make_store()
        store.upsert(docs)
        store.drop()
        assert store.dim is None and store.count() == 0
        assert store.search(docs[0].vector, 3) == [] and store.get([docs[0].id]) == []
        other = make_docs(n=5, dim=3)  # another dimension is fine after a drop
        store.upsert(other)
        assert store.dim == 3 and store.count() == 5
        assert store.search(other[1].vector, 1)[0].id == other[1].id
        persistent = store.capabilities.persistent
        store.close()
        if persistent:
            again = make_store()
            assert again.dim == 3 and again.count() == 5


class FilterTests(_Base):
    @pytest.mark.parametrize(
        ("flt", "pred"), FILTER_CASES, ids=[json.dumps(c[0], ensure_ascii=True)[:60] for c in FILTER_CASES]
    )
    def test_filter_matches_oracle(
        self,
        filled: VectorStore,
        docs: list[Document],
        flt: dict[str, Any],
        pred: Callable[[dict[str, Any]], bool],
    ) -> None:
        expected = {d.id for d in docs if pred(d.metadata)}
        assert filled.count(flt) == len(expected)
        hits = filled.search(docs[0].vector, len(docs), flt)
        assert {h.id for h in hits} == expected
        if filled.capabilities.get_by_filter:
            assert {d.id for d in filled.get(filter=flt)} == expected

    def test_filtered_top_k_is_exact_not_post_filtered(self, filled: VectorStore, docs: list[Document]) -> None:
        q = docs[0].vector
        flt, pred = {"tag": "gamma"}, (lambda m: m["tag"] == "gamma")
        hits = filled.search(q, 3, flt)
        assert [h.id for h in hits] == oracle_top(docs, q, 3, pred)

    @pytest.mark.parametrize("bad", BAD_FILTERS, ids=[repr(b)[:40] for b in BAD_FILTERS])
    def test_bad_filters_raise_filter_error(self, filled: VectorStore, docs: list[Document], bad: Any) -> None:
        with pytest.raises(FilterError):
            filled.search(docs[0].vector, 3, bad)
        with pytest.raises(FilterError):
            filled.count(bad)
        assert filled.count() == len(docs)

    def test_random_filters_match_oracle(self, filled: VectorStore, docs: list[Document]) -> None:
        reads = [lambda flt: {d.id for d in filled.get(filter=flt)}] if filled.capabilities.get_by_filter else []
        random_filters_agree(filled, docs, self.hypothesis_examples, *reads)


def random_filters_agree(
    store: VectorStore, docs: list[Document], examples: int, *reads: Callable[[dict[str, Any]], set[str]]
) -> None:
    """Hypothesis-generated filters: ``count`` and each of ``reads`` (the ids it returns) give exactly the
    documents the reference evaluator matches."""
    from hypothesis import HealthCheck, given, settings

    from .strategies import filters

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(filters())
    def check(flt: dict[str, Any]) -> None:
        node = parse_filter(flt)
        expected = {d.id for d in docs if matches(node, d.metadata)}
        assert store.count(flt) == len(expected)
        for read in reads:
            assert read(flt) == expected

    check()


def allowed_value(value: str) -> bool:
    """The documented character rule (``ragstore.types``), restated independently: no NUL, no C0 control
    character but tab/newline/CR, no lone surrogate."""
    return not any(
        ch == "\x00" or ("\x01" <= ch <= "\x1f" and ch not in "\t\n\r") or "\ud800" <= ch <= "\udfff" for ch in value
    )


class HostileValueTests(_Base):
    """Arbitrary ids and metadata strings: either refused up front with a ``ValidationError`` (by one rule,
    on every backend) or round-tripped through get, search, filter and delete; deleting one id never
    removes another, and a refused write changes nothing."""

    EVIL_ID = "zzz'] or id not in ['zzz"

    def test_crafted_id_deletes_only_itself(self, filled: VectorStore, docs: list[Document]) -> None:
        evil = Document(id=self.EVIL_ID, text="evil", metadata={"h": "x"}, vector=np.ones(DIM))
        filled.upsert([evil])
        assert [d.id for d in filled.get([self.EVIL_ID])] == [self.EVIL_ID]
        assert filled.delete([self.EVIL_ID]) == 1
        assert filled.count() == len(docs)
        assert filled.delete([self.EVIL_ID, "'", '"', "\\", "' or '1'='1"]) == 0
        assert filled.count() == len(docs)

    def test_nul_and_control_characters_are_refused_everywhere(self, filled: VectorStore, docs: list[Document]) -> None:
        for bad in ("a\x00b", "a\x01b", "\ud800"):
            for doc in (
                Document(id=bad, text="t", vector=np.ones(DIM)),
                Document(id="ok", text="t", metadata={"tag": bad}, vector=np.ones(DIM)),
            ):
                with pytest.raises(ValidationError):
                    filled.upsert([docs[0], doc])  # the whole batch, the good document too
            with pytest.raises(FilterError):
                filled.count({"tag": bad})
        with pytest.raises(ValidationError):
            filled.upsert([Document(id="nul-text", text="a\x00b", vector=np.ones(DIM))])
        assert filled.count() == len(docs) and filled.count({"tag": "alpha"}) == sum(
            1 for d in docs if d.metadata.get("tag") == "alpha"
        )

    def test_hostile_ids_and_values_round_trip_or_are_refused(self, filled: VectorStore, docs: list[Document]) -> None:
        from hypothesis import HealthCheck, given, settings

        from .strategies import hostile_strings

        base = filled.count()
        rng = np.random.default_rng(11)

        @settings(max_examples=self.hypothesis_examples, deadline=None, suppress_health_check=list(HealthCheck))
        @given(hostile_strings().filter(bool), hostile_strings())  # an empty id means "derive it from the text"
        def check(doc_id: str, value: str) -> None:
            vec = rng.normal(size=DIM)
            doc = Document(id=doc_id, text="hostile text ' \" \\", metadata={"h": value}, vector=vec)
            if not (allowed_value(doc_id) and len(doc_id) <= 512 and allowed_value(value)):
                with pytest.raises(ValidationError):
                    filled.upsert([doc])
                assert filled.count() == base
                return
            assert filled.upsert([doc]) == [doc_id]
            try:
                (got,) = filled.get([doc_id])
                assert got.id == doc_id and got.metadata == {"h": value} and got.text == doc.text
                assert filled.search(vec, 1)[0].id == doc_id
                assert filled.count({"h": value}) == 1
                if filled.capabilities.get_by_filter:
                    assert [d.id for d in filled.get(filter={"h": value})] == [doc_id]
                assert filled.search(vec, 3, {"h": {"$ne": value}})[0].id != doc_id
            finally:
                assert filled.delete([doc_id]) == 1
            assert filled.count() == base  # deleting it removed nothing else

        check()


class SearchTests(_Base):
    def test_top_k_matches_oracle(self, filled: VectorStore, docs: list[Document]) -> None:
        rng = np.random.default_rng(3)
        queries = rng.normal(size=(8, DIM))
        if filled.capabilities.exact:
            for q in queries:
                assert [h.id for h in filled.search(q, 10)] == oracle_top(docs, q, 10)
        else:
            found = sum(len({h.id for h in filled.search(q, 10)} & set(oracle_top(docs, q, 10))) for q in queries)
            assert found / (10 * len(queries)) >= 0.95

    def test_bare_search_then_hydrate_is_the_search(self, filled: VectorStore, docs: list[Document]) -> None:
        """A fused query's legs read ids and scores only (``fields=False``) and ``hydrate`` fills the winners:
        the same hits as a plain search, with and without a filter, in batches too; gone ids are dropped."""
        rng = np.random.default_rng(5)
        queries = rng.normal(size=(4, DIM))
        flt = {"i": {"$gte": 10}}
        for q in queries:
            for f in (None, flt):
                full = filled.search(q, 12, f)
                bare = filled.search(q, 12, f, fields=False)
                assert [(h.id, h.score) for h in bare] == [(h.id, h.score) for h in full]
                filledin = filled.hydrate(bare)
                assert [(h.id, h.text, h.metadata) for h in filledin] == [(h.id, h.text, h.metadata) for h in full]
        batch = filled.search_batch(queries, 7, fields=False)
        assert [[h.id for h in hits] for hits in batch] == [[h.id for h in filled.search(q, 7)] for q in queries]
        gone = [Hit(h.id, h.score, "", {}) for h in filled.search(queries[0], 3)]
        filled.delete([gone[0].id])
        assert [h.id for h in filled.hydrate(gone)] == [h.id for h in gone[1:]]

    def test_score_arrays_are_the_bare_search(self, filled: VectorStore, docs: list[Document]) -> None:
        """``search_scores`` (a fused query's dense leg as arrays) finds the documents ``search(fields=False)``
        finds, with the same scores, best first; with a filter, with k past the store's size, on ties."""
        rng = np.random.default_rng(8)
        queries = [*rng.normal(size=(3, DIM)), docs[4].vector]
        for q in queries:
            for f, k in ((None, 12), ({"i": {"$gte": 10}}, 9), ({"tag": "alpha"}, 500)):
                bare = {h.id: h.score for h in filled.search(q, k, f, fields=False)}
                ranked = filled.search_scores(q, k, f)
                assert dict(zip(ranked.ids, ranked.scores.tolist(), strict=True)) == bare
                assert ranked.scores.tolist() == sorted(ranked.scores.tolist(), reverse=True)
                assert len(ranked.ids) == len(set(ranked.ids))

    def test_scores_are_cosine_similarity_best_first(self, filled: VectorStore, docs: list[Document]) -> None:
        if filled.metric != "cosine":
            pytest.skip(f"score-range checks are for the cosine metric; this store uses {filled.metric}")
        q = np.random.default_rng(11).normal(size=DIM) * 7.5  # scale must not matter for cosine
        want = oracle_scores(docs, q)
        hits = filled.search(q, 20)
        assert len(hits) == 20
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for h in hits:
            assert -1.0 - 1e-5 <= h.score <= 1.0 + 1e-5
            assert h.score == pytest.approx(want[h.id], abs=1e-4)

    def test_score_meaning(self, store: VectorStore) -> None:
        if store.metric != "cosine":
            pytest.skip(f"score-range checks are for the cosine metric; this store uses {store.metric}")
        base = np.array([1.0, 0.0, 0.0, 0.0])
        store.upsert(
            [
                Document(id="same", text="same direction", vector=base * 3),
                Document(id="orth", text="orthogonal", vector=np.array([0.0, 2.0, 0.0, 0.0])),
                Document(id="opp", text="opposite", vector=-base),
            ]
        )
        hits = {h.id: h.score for h in store.search(base, 3)}
        assert hits["same"] == pytest.approx(1.0, abs=1e-4)
        assert hits["orth"] == pytest.approx(0.0, abs=1e-4)
        assert hits["opp"] == pytest.approx(-1.0, abs=1e-4)
        assert [h.id for h in store.search(base, 3)] == ["same", "orth", "opp"]

    def test_search_batch_matches_search(self, filled: VectorStore, docs: list[Document]) -> None:
        queries = [d.vector for d in docs[:7]]
        for where in (None, {"tag": {"$in": ["alpha", "beta"]}}):
            single = [[(h.id, round(h.score, 4)) for h in filled.search(q, 4, where)] for q in queries]
            batch = [[(h.id, round(h.score, 4)) for h in hits] for hits in filled.search_batch(queries, 4, where)]
            assert batch == single
        assert filled.search_batch([], 3) == []
        with pytest.raises(DimensionMismatchError):
            filled.search_batch([docs[0].vector, [1.0, 2.0]], 3)
        with pytest.raises(ValidationError):
            filled.search_batch(queries, 0)

    def test_hits_carry_text_and_metadata(self, filled: VectorStore, docs: list[Document]) -> None:
        by_id = {d.id: d for d in docs}
        for h in filled.search(docs[10].vector, 5):
            assert h.text == by_id[h.id].text
            assert h.metadata == by_id[h.id].metadata

    def test_k_larger_than_store(self, store: VectorStore) -> None:
        docs = make_docs(n=4)
        store.upsert(docs)
        assert len(store.search(docs[0].vector, 50)) == 4

    def test_empty_store_returns_nothing(self, store: VectorStore) -> None:
        """A brand-new store (no collection created yet) answers every read and delete."""
        assert store.search(np.ones(DIM), 5) == []
        assert store.search_scores(np.ones(DIM), 5).ids == []
        assert store.search(np.ones(DIM), 5, {"tag": "alpha"}) == []
        assert store.count() == 0 and store.count({"tag": "alpha"}) == 0
        assert store.get(["a", "b"]) == []
        if store.capabilities.get_by_filter:
            assert store.get(filter={"tag": "alpha"}) == []
        assert store.delete(["a"]) == 0
        if store.capabilities.delete_by_filter:
            assert store.delete(filter={"tag": "alpha"}) == 0
        store.clear()
        assert store.count() == 0


class BadInputTests(_Base):
    def _unchanged(self, store: VectorStore, docs: list[Document]) -> None:
        assert store.count() == len(docs)
        (got,) = store.get([docs[0].id])
        assert got.text == docs[0].text and got.metadata == docs[0].metadata

    @pytest.mark.parametrize("k", [0, -1, 2.5, "3", True, None, 16_385, 10**9, 2**63])
    def test_bad_k(self, filled: VectorStore, docs: list[Document], k: Any) -> None:
        with pytest.raises(ValidationError):
            filled.search(docs[0].vector, k)
        with pytest.raises(ValidationError):
            filled.search_batch([docs[0].vector], k)

    def test_largest_k_returns_every_document(self, filled: VectorStore, docs: list[Document]) -> None:
        """k beyond the engine's own bounds (pgvector's ef_search <= 1000) still answers, exactly."""
        from ..stores.base import MAX_K

        assert len(filled.search(docs[0].vector, MAX_K)) == len(docs)
        many = make_docs(1100, seed=21)
        for i, doc in enumerate(many):
            doc.id = f"k-{i:04d}"
        filled.upsert(many)
        assert len(filled.search(docs[0].vector, 1050)) == 1050
        assert len(filled.search(docs[0].vector, 1050, {"opt": "odd"})) == sum(
            1 for d in [*docs, *many] if d.metadata.get("opt") == "odd"
        )

    def test_wrong_query_dimension(self, filled: VectorStore) -> None:
        with pytest.raises(DimensionMismatchError):
            filled.search(np.ones(DIM + 1), 3)

    @pytest.mark.parametrize("vec", [[float("nan")] * DIM, [float("inf")] * DIM, [], [[1.0] * DIM] * 2, "abc"])
    def test_bad_query_vector(self, filled: VectorStore, vec: Any) -> None:
        with pytest.raises(ValidationError):
            filled.search(vec, 3)

    def test_zero_query_vector_under_cosine(self, filled: VectorStore) -> None:
        if filled.metric != "cosine":
            pytest.skip("zero vectors are only undefined under the cosine metric")
        with pytest.raises(ValidationError):
            filled.search(np.zeros(DIM), 3)

    def test_wrong_dimension_batch_stores_nothing(self, filled: VectorStore, docs: list[Document]) -> None:
        batch = [
            Document(id="new-1", text="ok", vector=np.ones(DIM + 2)),
            Document(id="new-2", text="ok", vector=np.ones(DIM + 2)),
        ]
        with pytest.raises(DimensionMismatchError):
            filled.upsert(batch)
        self._unchanged(filled, docs)
        assert filled.get(["new-1", "new-2"]) == []

    @pytest.mark.parametrize(
        "bad",
        [
            Document(id="bad", text="nan", vector=np.array([np.nan] * DIM)),
            Document(id="bad", text="   ", vector=np.ones(DIM)),
            Document(id="bad", text="no vector"),
            Document(id="bad", text="zero", vector=np.zeros(DIM)),
            Document(id="bad", text="ragged", vector=np.ones(DIM - 1)),
            Document(id="bad", text="nested", metadata={"a": {"b": 1}}, vector=np.ones(DIM)),  # type: ignore[dict-item]
            Document(id="bad", text="null", metadata={"a": None}, vector=np.ones(DIM)),  # type: ignore[dict-item]
            Document(id="bad", text="list", metadata={"a": [1, 2]}, vector=np.ones(DIM)),  # type: ignore[dict-item]
            Document(id="bad", text="key", metadata={"bad key": 1}, vector=np.ones(DIM)),
            Document(id="bad", text="inf meta", metadata={"a": float("inf")}, vector=np.ones(DIM)),
        ],
        ids=["nan", "empty-text", "no-vector", "zero", "ragged", "nested", "null", "list", "key", "inf-meta"],
    )
    def test_bad_document_rejects_whole_batch(self, filled: VectorStore, docs: list[Document], bad: Document) -> None:
        if filled.metric != "cosine" and bad.text == "zero":
            pytest.skip("zero vectors are valid under dot and l2")
        good = Document(id="good-new", text="fine", vector=np.ones(DIM))
        with pytest.raises(ValidationError):
            filled.upsert([good, bad])
        self._unchanged(filled, docs)
        assert filled.get(["good-new", "bad"]) == []

    def test_duplicate_ids_in_one_batch(self, filled: VectorStore, docs: list[Document]) -> None:
        with pytest.raises(ValidationError, match="duplicate"):
            filled.upsert(
                [
                    Document(id="dup", text="a", vector=np.ones(DIM)),
                    Document(id="dup", text="b", vector=np.ones(DIM)),
                ]
            )
        self._unchanged(filled, docs)

    @pytest.mark.parametrize("bad_id", ["", 5, None, "x" * 600, "nul\x00id"])
    def test_bad_ids(self, filled: VectorStore, docs: list[Document], bad_id: Any) -> None:
        doc = Document(id="tmp", text="t", vector=np.ones(DIM))
        doc.id = bad_id
        with pytest.raises(ValidationError):
            filled.upsert([doc])
        self._unchanged(filled, docs)

    def test_not_a_document(self, filled: VectorStore, docs: list[Document]) -> None:
        with pytest.raises(ValidationError):
            filled.upsert([{"id": "x", "text": "t", "vector": [1.0] * DIM}])  # type: ignore[list-item]
        self._unchanged(filled, docs)


_REOPEN = textwrap.dedent(
    """
    import json, sys
    from ragstore.stores.registry import create_store
    args = json.loads(sys.stdin.read())
    store = create_store(args["config"])
    out = {
        "count": store.count(),
        "hits": [[h.id, h.score] for h in store.search(args["query"], 10)],
        "filtered": [h.id for h in store.search(args["query"], 5, args["filter"])],
        "texts": {d.id: [d.text, d.metadata] for d in store.get(args["ids"])},
    }
    store.close()
    print(json.dumps(out))
    """
)


def reopen_in_subprocess(
    config: dict[str, Any], query: np.ndarray, flt: dict[str, Any], ids: list[str]
) -> dict[str, Any]:
    """Open the store from its config in a fresh interpreter and read it back."""
    payload = json.dumps({"config": config, "query": [float(x) for x in query], "filter": flt, "ids": ids})
    env = child_env()
    proc = subprocess.run(
        [sys.executable, "-c", _REOPEN],
        input=payload,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"reopening in a fresh process failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


_SECOND_WRITER = """
import json, sys
import numpy as np
from ragstore.errors import RagstoreError
from ragstore.stores.registry import create_store
from ragstore.types import Document
args = json.loads(sys.stdin.read())
try:
    store = create_store(args["config"])
    rng = np.random.default_rng(5)
    dim = args["dim"]
    store.upsert(
        [
            Document(id=f"second-{i}", text=f"second {i}", vector=rng.normal(size=dim), metadata={"origin": "second"})
            for i in range(5)
        ]
    )
    store.close()
    print(json.dumps({"wrote": 5}))
except RagstoreError as exc:
    print(json.dumps({"refused": f"{type(exc).__name__}: {exc}"}))
"""


class PersistenceTests(_Base):
    def test_second_process_is_seen_or_refused_never_lost(
        self, store_config: dict[str, Any], persisted: VectorStore, docs: list[Document]
    ) -> None:
        """Another process opening the same store while this one holds it either writes and is seen here
        (count, search and get agree), or is refused with a clear ``RagstoreError``; this process's data
        survives either way, also after both have closed."""
        # a filtered search first: whatever it remembers must not hide the other process's writes afterwards
        assert persisted.search(docs[0].vector, 3, filter={"origin": "second"}) == []
        env = child_env()
        payload = json.dumps({"config": store_config, "dim": DIM})
        proc = subprocess.run(
            [sys.executable, "-c", _SECOND_WRITER], input=payload, capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == 0, f"the second process crashed instead of a clear error:\n{proc.stderr[-3000:]}"
        outcome = json.loads(proc.stdout.strip().splitlines()[-1])
        expected = len(docs) + (5 if "wrote" in outcome else 0)
        assert persisted.count() == expected
        if "wrote" in outcome:
            (second,) = persisted.get(["second-3"])
            assert persisted.search(second.vector, 1)[0].id == "second-3"
            filtered = persisted.search(second.vector, 10, filter={"origin": "second"})
            assert [h.id for h in filtered][:1] == ["second-3"] and len(filtered) == 5
        persisted.close()
        reopened = create_store(store_config)
        try:
            assert reopened.count() == expected
        finally:
            reopened.close()

    def test_reopen_in_fresh_process_gives_same_results(
        self, store_config: dict[str, Any], persisted: VectorStore, docs: list[Document]
    ) -> None:
        store = persisted
        store.delete([docs[1].id, docs[2].id])
        q = np.asarray(docs[7].vector)
        flt = {"$or": [{"tag": "beta"}, {"flag": True}]}
        before = [(h.id, h.score) for h in store.search(q, 10)]
        before_filtered = [h.id for h in store.search(q, 5, flt)]
        store.close()
        ids = [d.id for d in docs[:6]]
        after = reopen_in_subprocess(store_config, q, flt, ids)
        assert after["count"] == len(docs) - 2
        assert [h[0] for h in after["hits"]] == [b[0] for b in before]
        for (_, s1), (_, s2) in zip(before, after["hits"], strict=True):
            assert math.isclose(s1, s2, abs_tol=1e-5)
        assert after["filtered"] == before_filtered
        assert set(after["texts"]) == set(ids) - {docs[1].id, docs[2].id}
        for d in docs[:6]:
            if d.id in after["texts"]:
                assert after["texts"][d.id] == [d.text, d.metadata]

    def test_reopen_in_same_process(
        self, persisted: VectorStore, make_store: Callable[[], VectorStore], docs: list[Document]
    ) -> None:
        persisted.close()
        again = make_store()
        assert again.count() == len(docs)
        assert again.dim == DIM
        with pytest.raises(DimensionMismatchError):
            again.upsert([Document(id="x", text="x", vector=np.ones(DIM + 1))])

    def test_closed_store_refuses_calls(self, make_store: Callable[[], VectorStore], docs: list[Document]) -> None:
        store = make_store()
        store.upsert(docs[:3])
        store.close()
        store.close()  # closing twice is harmless
        with pytest.raises(BackendUnavailableError):
            store.search(docs[0].vector, 1)
        with pytest.raises(BackendUnavailableError):
            store.upsert(docs[:1])


class ReopenTests(_Base):
    """A store reopened with settings its collection was not built with is refused, and keeps its data."""

    def test_reopen_with_another_metric_is_refused(
        self,
        store_config: dict[str, Any],
        persisted: VectorStore,
        make_store: Callable[[], VectorStore],
        docs: list[Document],
    ) -> None:
        other = "dot" if persisted.metric != "dot" else "cosine"
        persisted.close()
        with pytest.raises(BackendUnavailableError, match="metric"):
            create_store({**store_config, "metric": other})
        again = make_store()  # the refused open released the engine and changed nothing
        assert again.count() == len(docs)
        assert [d.id for d in again.get([docs[0].id])] == [docs[0].id]

    def test_a_store_opened_empty_finds_a_collection_made_since(
        self, make_store: Callable[[], VectorStore], docs: list[Document]
    ) -> None:
        """Two app servers start before the first document: the one that writes first creates the collection,
        and the other finds it on its next call instead of answering "empty" until it is restarted."""
        first = make_store()
        if not first.capabilities.persistent:
            pytest.skip(f"{first.name} with this config keeps nothing after close: no second opener")
        try:
            second = make_store()
        except BackendUnavailableError as exc:  # engines that hold a folder for one opener say so
            pytest.skip(f"{first.name} opens a path once at a time: {exc}")
        second.upsert(docs)
        assert first.count() == len(docs)
        assert first.dim == second.dim == docs[0].vector.shape[0]  # type: ignore[union-attr]
        assert [h.id for h in first.search(docs[0].vector, 1)] == [docs[0].id]


class EngineFailureTests(_Base):
    """An engine that fails underneath an open store surfaces as ``EngineError`` (a ``RagstoreError`` with the
    engine's exception chained), from every call, on every backend."""

    def break_engine(self, store: VectorStore) -> None:
        """Make the engine fail underneath ``store`` (drop its collection, close its connection...).
        Backends override this; the default skips, as for a store with no engine under it."""
        pytest.skip(f"{store.name}: the suite does not know how to break this engine (override break_engine)")

    def test_engine_failures_become_ragstore_errors(self, filled: VectorStore, docs: list[Document]) -> None:
        self.break_engine(filled)
        calls: dict[str, Callable[[], Any]] = {
            "search": lambda: filled.search(docs[0].vector, 3),
            "search with filter": lambda: filled.search(docs[0].vector, 3, {"tag": "beta"}),
            "upsert": lambda: filled.upsert(make_docs(2, seed=5)),
            "count": lambda: filled.count({"tag": "beta"}),
            "delete": lambda: filled.delete(filter={"tag": "beta"}),
        }
        for what, call in calls.items():
            with pytest.raises(EngineError) as info:
                call()
            assert info.value.__cause__ is not None, what
            assert filled.name in str(info.value), what
        with contextlib.suppress(RagstoreError):
            filled.close()


class ConcurrencyTests(_Base):
    """Thread pools (async integrations, ``ragstore bench`` QPS, web servers) share one open store."""

    def test_store_calls_leave_the_callers_thread_settings(self, make_store: Callable[[], VectorStore]) -> None:
        """Found on FAISS: its OpenMP setting (shared with torch) stayed at 1 after a search, so every later
        embedding in the calling thread ran on one core and ingest went at half speed."""
        torch = pytest.importorskip("torch")
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            store = make_store()
            docs = make_docs(40)
            store.upsert(docs)
            store.search(docs[0].vector, 5)
            store.search(docs[0].vector, 5, filter={"tag": docs[1].metadata["tag"]})
            store.delete([docs[0].id])
            store.flush()
            assert torch.get_num_threads() == 2
            store.close()
            assert torch.get_num_threads() == 2
        finally:
            torch.set_num_threads(before)

    def test_concurrent_searches_match_sequential(self, filled: VectorStore, docs: list[Document]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        queries = [d.vector for d in docs[:20]]
        expected = [[(h.id, round(h.score, 4)) for h in filled.search(q, 5)] for q in queries]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda q: [(h.id, round(h.score, 4)) for h in filled.search(q, 5)], queries * 3))
        assert got == expected * 3

    def test_pipeline_threads_with_the_embedding_cache_on(
        self, store_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """``rs.add``/``rs.search`` from 4 threads with the embedding cache on (the default) once failed
        hundreds of calls in one shared SQLite transaction."""
        from concurrent.futures import ThreadPoolExecutor

        from ..pipeline import Ragstore

        cfg = {
            "data_dir": str(tmp_path_factory.mktemp("pipeline")),
            "embedder": {"type": "hashing", "dim": 32},
            "store": store_config,
            "cache": True,
        }
        with Ragstore.open(cfg) as rs:

            def work(t: int) -> int:
                done = 0
                for i in range(25):
                    rs.add([f"thread {t} writes document {i} about topic {i % 5}"], ids=[f"t{t}-{i}"])
                    done += len(rs.search(f"document {i} about topic {i % 5}", k=3)) > 0
                return done

            with ThreadPoolExecutor(4) as pool:
                assert list(pool.map(work, range(4))) == [25] * 4
            assert rs.count() == 100
            assert rs.search("thread 2 writes document 7 about topic 2", k=1)[0].id == "t2-7"

    def test_writes_during_searches_stay_consistent(self, filled: VectorStore, docs: list[Document]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        extra = make_docs(40, seed=99)
        for i, doc in enumerate(extra):
            doc.id = f"extra-{i}"

        def write(part: int) -> int:
            return len(filled.upsert(extra[part * 10 : part * 10 + 10]))

        def read(i: int) -> int:
            return len(filled.search(docs[i % len(docs)].vector, 5))

        with ThreadPoolExecutor(4) as pool:
            writes = [pool.submit(write, p) for p in range(4)]
            reads = [pool.submit(read, i) for i in range(40)]
            assert sum(f.result() for f in writes) == 40
            assert all(f.result() == 5 for f in reads)
        assert filled.count() == len(docs) + 40
        assert [d.id for d in filled.get([e.id for e in extra])] == [e.id for e in extra]


_LEX_REOPEN = """
import json, sys
from ragstore.stores.collection import open_collection
args = json.loads(sys.stdin.read())
store = open_collection(args["config"])
hits = {q: [[h.id, h.score] for h in store.search_lexical(q, 10)] for q in args["queries"]}
out = {"count": store.count(), "hits": hits, "variant": store.lexical_variant()}
store.close()
print(json.dumps(out))
"""


class LexicalTests(_Base):
    """The lexical (BM25) index beside every store: the same terms and scores as a plain-Python reference
    BM25, filters on both legs of a hybrid query, writes reaching the index, reopen in a fresh process, and
    an index missing or left mid-write rebuilt on open."""

    @pytest.fixture
    def make_lexical(self, lexical_config: dict[str, Any]) -> Iterator[Callable[..., Collection]]:
        yield from _collection_opener(lexical_config)

    @pytest.fixture
    def ldocs(self) -> list[Document]:
        return lexical_docs()

    @pytest.fixture
    def lexical(self, make_lexical: Callable[..., Collection], ldocs: list[Document]) -> Collection:
        store = make_lexical()
        store.upsert(ldocs)
        return store

    @staticmethod
    def assert_reference(
        store: Collection, docs: list[Document], query: str, k: int = 10, flt: Any = None, pred: Any = None
    ) -> None:
        """The reference's ranking and scores; a leg that states a variant (``lexical_variant``) is held to the
        reference computed its way: with its recorded average length, scores to its precision, and documents
        whose reference scores tie at that precision in either order."""
        got = [(h.id, h.score) for h in store.search_lexical(query, k, flt)]
        LexicalTests.assert_ranking(got, store.lexical_variant(), docs, query, k, pred)

    @staticmethod
    def assert_ranking(
        got: list[tuple[str, float]], variant: dict[str, float], docs: list[Document], query: str, k: int, pred: Any
    ) -> None:
        tol = variant.get("rel_tol", 1e-9)
        full = reference_bm25(docs, query, len(docs), pred, avglen=variant.get("avglen"))
        want = full[:k]
        assert len(got) == len(want), query
        if "overlap" in variant:  # the engine's own statistics: the same candidates, most of the same top k
            assert {i for i, _ in got} <= {i for i, _ in full}, query  # every hit has a query term and matches
            scores = [s for _, s in got]
            assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores), query
            shared = len({i for i, _ in got} & {i for i, _ in want}) / len(want) if want else 1.0
            assert shared >= variant["overlap"], (query, got, want)
            return
        for (g_id, g_score), (w_id, w_score) in zip(got, want, strict=True):
            assert math.isclose(g_score, w_score, rel_tol=tol), (query, g_id, g_score, w_id, w_score)
            if g_id != w_id:
                tied = {i for i, s in full if math.isclose(s, w_score, rel_tol=tol)}
                assert {g_id, w_id} <= tied, (query, got, want)

    def test_lexical_matches_reference_bm25(self, lexical: Collection, ldocs: list[Document]) -> None:
        assert lexical.capabilities.lexical and lexical.capabilities.hybrid
        by_id = {d.id: d for d in ldocs}
        for query in QUERIES:
            self.assert_reference(lexical, ldocs, query)
            for hit in lexical.search_lexical(query, 3):
                assert (hit.text, hit.metadata) == (by_id[hit.id].text, by_id[hit.id].metadata)

    def test_lexical_filters_match_reference(self, lexical: Collection, ldocs: list[Document]) -> None:
        for flt, pred in FILTER_CASES:
            for query in (QUERIES[0], QUERIES[3]):
                self.assert_reference(lexical, ldocs, query, 5, flt, pred)

    def test_lexical_score_arrays_and_fused_arrays_are_the_hit_path(
        self, lexical: Collection, ldocs: list[Document]
    ) -> None:
        """The default hybrid query runs on arrays (``search_scores``, ``search_lexical_scores``,
        ``alpha_fusion_ranked``): the same documents, scores, texts and metadata as fusing the legs' hits, with
        and without filters, at depths that cut through ties."""
        from ..embedders.hashing import HashingEmbedder
        from ..lexical import HybridConfig
        from ..query.fusion import alpha_fusion
        from ..query.retrieval import Retriever

        for query in QUERIES:
            terms = lexical.lexical_terms(query)
            for flt, _ in FILTER_CASES[:4]:
                for k in (1, 3, 10, 50):
                    bare = {h.id: h.score for h in lexical.search_lexical_terms(terms, k, flt, fields=False)}
                    ranked = lexical.search_lexical_scores(terms, k, flt)
                    assert dict(zip(ranked.ids, ranked.scores.tolist(), strict=True)) == bare, (query, flt, k)
                    assert ranked.scores.tolist() == sorted(ranked.scores.tolist(), reverse=True)
        retriever = Retriever(HashingEmbedder(DIM), search="hybrid", hybrid=HybridConfig(alpha=0.3, candidates=8))
        vectors = [ldocs[(7 * n) % len(ldocs)].vector for n in range(len(QUERIES))]
        prepared = retriever.prepare(QUERIES, vectors=vectors)
        filters: list[Any] = [f for f, _ in FILTER_CASES[:4]]
        for flt in [*filters, None]:
            batch = prepared.run_all(lexical, 5, flt)
            for i, query in enumerate(QUERIES):
                if prepared.plans[i].search != "hybrid":
                    continue
                vec = prepared.main[i]  # the query vector as the prepared query holds it (float32)
                want = alpha_fusion(lexical.search(vec, 8, flt), lexical.search_lexical(query, 8, flt), 5, 0.3)
                expected = [(h.id, h.score, h.text, h.metadata, h.scale) for h in want]
                got = [(h.id, h.score, h.text, h.metadata, h.scale) for h in prepared.run(lexical, i, 5, flt)]
                assert got == expected, (query, flt, got, expected)
                # engines' batch calls compute scores in another order (BLAS): the same hits, scores to 1e-6
                assert [h.id for h in batch[i]] == [e[0] for e in expected], (query, flt)
                assert [h.score for h in batch[i]] == pytest.approx([e[1] for e in expected], abs=1e-6)

    @pytest.mark.parametrize("fusion", ["rrf", "alpha"])
    def test_hybrid_filters_apply_to_both_legs(self, lexical: Collection, ldocs: list[Document], fusion: str) -> None:
        from ..embedders.hashing import HashingEmbedder
        from ..lexical import HybridConfig
        from ..query.retrieval import Retriever

        retriever = Retriever(HashingEmbedder(DIM), search="hybrid", hybrid=HybridConfig(fusion=fusion, alpha=0.4))  # type: ignore[arg-type]
        queries = [QUERIES[0], QUERIES[3], QUERIES[6]]
        vectors = [ldocs[5].vector, ldocs[9].vector, ldocs[20].vector]
        for flt, pred in FILTER_CASES[:8]:
            matching = {d.id for d in ldocs if pred(d.metadata)}
            results = retriever.search(lexical, queries, 7, flt, vectors=vectors)
            for query, vec, result in zip(queries, vectors, results, strict=True):
                ids = [h.id for h in result.hits]
                assert set(ids) <= matching, (flt, query)
                assert len(ids) == min(7, len(matching)), (flt, query)  # k hits whenever k match
                dense = {h.id for h in lexical.search(vec, 50, flt)}
                lex = {h.id for h in lexical.search_lexical(query, 50, flt)}
                assert set(ids) <= dense | lex
                assert result.plan.search == "hybrid"

    def test_writes_reach_the_lexical_index(self, lexical: Collection, ldocs: list[Document]) -> None:
        docs = list(ldocs)
        changed = Document(
            id=docs[3].id, text="zebraquux zebraquux pension", metadata={"tag": "new"}, vector=docs[3].vector
        )
        lexical.upsert([changed])
        docs[3] = changed
        self.assert_reference(lexical, docs, "zebraquux pension")
        lexical.delete([docs[0].id, docs[1].id, "never-stored"])
        docs = docs[2:]
        self.assert_reference(lexical, docs, QUERIES[3])
        if lexical.capabilities.delete_by_filter:
            lexical.delete(filter={"tag": "alpha"})
            docs = [d for d in docs if d.metadata.get("tag") != "alpha"]
            for query in QUERIES[:4]:
                self.assert_reference(lexical, docs, query)
        lexical.clear()
        assert lexical.search_lexical(QUERIES[0], 5) == []
        lexical.upsert(docs[:10])
        self.assert_reference(lexical, docs[:10], QUERIES[0])
        lexical.drop()
        assert lexical.search_lexical(QUERIES[0], 5) == []

    def test_lexical_reopen_in_fresh_process(
        self, lexical_config: dict[str, Any], lexical: Collection, ldocs: list[Document]
    ) -> None:
        if not lexical.capabilities.persistent:
            pytest.skip(f"{lexical.name} with this config keeps nothing after close")
        lexical.delete([ldocs[1].id, ldocs[2].id])
        lexical.close()
        env = child_env()
        proc = subprocess.run(
            [sys.executable, "-c", _LEX_REOPEN],
            input=json.dumps({"config": lexical_config, "queries": QUERIES}),
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        rest = [d for d in ldocs if d.id not in (ldocs[1].id, ldocs[2].id)]
        assert out["count"] == len(rest)
        for query in QUERIES:
            got = [(h[0], h[1]) for h in out["hits"][query]]
            self.assert_ranking(got, out["variant"], rest, query, 10, None)

    def test_first_lexical_query_builds_the_index_and_every_writer_keeps_it(
        self, lexical_config: dict[str, Any], ldocs: list[Document]
    ) -> None:
        """One rule from every door: a collection opened without ``lexical: true`` builds its BM25 index on
        the first lexical or hybrid query and records it; a later opening with the same block reopens it from
        the manifest and keeps it in step with every write, even one whose block says ``lexical: false``
        (which refuses to build an index, never to keep a recorded one)."""
        config = {k: v for k, v in lexical_config.items() if k != "lexical"}
        opened: list[Collection] = []

        def make() -> Collection:
            opened.append(open_collection(config))
            return opened[-1]

        try:
            first = make()
            if not first.capabilities.persistent:
                pytest.skip(f"{first.name} with this config keeps nothing after close")
            first.upsert(ldocs)
            assert not first.lexical
            self.assert_reference(first, ldocs, QUERIES[0])  # built here, from the stored texts
            assert first.lexical and "lexical" in first.manifest()["indexes"]
            first.close()
            again = make()
            assert again.lexical  # from the manifest: this writer keeps it in step
            changed = Document(id=ldocs[3].id, text="zebraquux pension", metadata={}, vector=ldocs[3].vector)
            again.upsert([changed])
            docs = [changed if d.id == changed.id else d for d in ldocs]
            for query in [*QUERIES, "zebraquux"]:
                self.assert_reference(again, docs, query)
            assert again.verify() == []
            again.close()
            refused = open_collection({**config, "lexical": False})
            try:
                assert refused.lexical  # a recorded index is still kept in step: nothing drifts
            finally:
                refused.close()
        finally:
            for coll in opened:
                coll.close()

    def test_index_missing_or_left_mid_write_is_rebuilt_on_open(
        self,
        store_config: dict[str, Any],
        make_store: Callable[[], VectorStore],
        make_lexical: Callable[..., Collection],
        ldocs: list[Document],
    ) -> None:
        plain = make_store()
        if not plain.capabilities.persistent:
            pytest.skip(f"{plain.name} with this config keeps nothing after close")
        plain.upsert(ldocs)
        with pytest.raises(UnsupportedFeatureError, match="open_collection"):
            Collection.view(plain).search_lexical("pension", 3)  # a bare store has nowhere to keep one
        plain.close()
        built = make_lexical()  # an older store: the index is built from its texts on open
        self.assert_reference(built, ldocs, QUERIES[0])
        changed = Document(id=ldocs[5].id, text="zebraquux pension", metadata={"tag": "new"}, vector=ldocs[5].vector)

        def fail(*args: Any) -> None:
            raise RuntimeError("the index write failed")

        if built.lexical_leg == "native":  # one engine transaction: a failed terms write leaves nothing written
            assert any("built the lexical leg" in note for note in built.notes), built.notes
            from ..lexical.analyzer import default_analyzer

            # the engine's own terms write where it has one (inside the vectors' transaction), else the analysis
            # that builds the point's terms: either way the write fails whole
            target, name = (
                (built.primary, "_copy_terms")
                if hasattr(built.primary, "_copy_terms")
                else (default_analyzer(), "terms")
            )
            vars(target)[name] = fail
            try:
                with pytest.raises(EngineError, match="the index write failed"):
                    built.upsert([changed])
            finally:
                del vars(target)[name]
            assert built.get([changed.id])[0].text == ldocs[5].text
            for query in [*QUERIES, "zebraquux"]:
                self.assert_reference(built, ldocs, query)
            built.upsert([changed])
            docs = [changed if d.id == changed.id else d for d in ldocs]
            self.assert_reference(built, docs, "zebraquux")
            return
        index = built.derived["lexical"]
        index.upsert = fail  # type: ignore[method-assign,assignment]
        with pytest.raises(RuntimeError):  # the primary holds the new text, the index the old one: same count
            built.upsert([changed])
        built.close()
        docs = [changed if d.id == changed.id else d for d in ldocs]
        again = make_lexical()
        assert again.get([changed.id])[0].text == changed.text  # a clean close keeps the primary's write
        for query in [*QUERIES, "zebraquux"]:
            self.assert_reference(again, docs, query)
        assert any("repaired lexical" in note for note in again.notes)

    def test_queries_without_terms(self, lexical: Collection, ldocs: list[Document]) -> None:
        from ..embedders.hashing import HashingEmbedder
        from ..query.retrieval import Retriever

        for query in EMPTY_QUERIES:
            assert lexical.lexical_terms(query) == []
            assert lexical.search_lexical(query, 5) == []
        retriever = Retriever(HashingEmbedder(DIM))
        vec = ldocs[4].vector
        for mode in ("lexical", "hybrid"):
            (result,) = retriever.search(lexical, [EMPTY_QUERIES[0]], 5, search=mode, vectors=[vec])
            assert [h.id for h in result.hits] == [h.id for h in lexical.search(vec, 5)]  # the dense leg
            assert any("no lexical terms" in n for n in result.plan.notes)
        with pytest.raises(ValidationError):
            lexical.search_lexical(["not", "a", "string"], 5)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            lexical.search_lexical("pension", 0)

    def test_lexical_searches_during_writes(self, lexical: Collection, ldocs: list[Document]) -> None:
        import threading

        errors: list[BaseException] = []
        stop = threading.Event()

        def reader() -> None:
            try:
                while not stop.is_set():
                    assert len(lexical.search_lexical(QUERIES[0], 5)) == 5
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(5):
                lexical.upsert([Document(id=f"extra-{i}", text=f"pension extra {i}", vector=ldocs[i].vector)])
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[0]
        self.assert_reference(lexical, ldocs + lexical.get([f"extra-{i}" for i in range(5)]), QUERIES[0])


def _sized_filter(atoms: int) -> dict[str, Any]:
    """``atoms`` comparisons that cannot be merged (ranges, negations, several fields) under nested $and/$or."""
    parts: list[dict[str, Any]] = []
    for i in range(atoms):
        if i % 3 == 0:
            parts.append({"$not": {"i": {"$gt": 1000 + i}}})
        elif i % 3 == 1:
            parts.append({"tag": {"$ne": f"none-{i}"}})
        else:
            parts.append({"x": {"$lte": 1000 + i}})
    half = atoms // 2
    return {"$and": [{"$or": parts[:half]}, {"$and": parts[half:]}]}


class LimitTests(_Base):
    """Sizes: k results when k documents match, on every index setting; one filter-size rule everywhere."""

    def test_k_matches_when_k_documents_exist(self, store: VectorStore) -> None:
        many = make_docs(1500, seed=11)
        store.upsert(many)
        query = many[0].vector
        for k in (1500, 750, 2000):
            hits = store.search(query, k)
            assert len(hits) == min(k, len(many)), f"k={k}: {len(hits)} results of {len(many)} documents"
        assert {h.id for h in store.search(query, 1500)} == {d.id for d in many}
        odd = [d for d in many if d.metadata.get("opt") == "odd"]
        hits = store.search(query, len(odd), filter={"opt": "odd"})
        assert {h.id for h in hits} == {d.id for d in odd}
        assert [len(r) for r in store.search_batch([query, many[1].vector], 1500)] == [1500, 1500]

    def test_delete_by_a_filter_matching_nothing_returns_zero(self, filled: VectorStore, docs: list[Document]) -> None:
        if not filled.capabilities.delete_by_filter:
            pytest.skip(f"{filled.name} cannot delete by filter")
        assert filled.delete(filter={"tag": "no such tag"}) == 0
        assert filled.delete(filter={"i": {"$gt": 10_000}}) == 0
        assert filled.count() == len(docs)

    def test_filter_size_limit_is_one_rule_everywhere(self, filled: VectorStore, docs: list[Document]) -> None:
        at_limit = _sized_filter(MAX_ATOMS)
        node = parse_filter(at_limit)
        expected = {d.id for d in docs if matches(node, d.metadata)}
        assert filled.count(at_limit) == len(expected)
        assert {h.id for h in filled.search(docs[0].vector, len(docs), filter=at_limit)} == expected
        over = _sized_filter(MAX_ATOMS + 1)
        calls = [
            lambda f: filled.search(docs[0].vector, 5, filter=f),
            lambda f: filled.count(f),
            lambda f: filled.delete(filter=f),
        ]
        if filled.capabilities.get_by_filter:
            calls.append(lambda f: filled.get(filter=f))
        for call in calls:
            with pytest.raises(FilterError, match="max_filter_atoms"):
                call(over)
        # a long $or of one field's values is one $in: 10,000 of them run on every engine
        wide = {"$or": [{"i": i} for i in range(10_000)]}
        assert filled.count(wide) == len(docs)
        top = filled.search(docs[3].vector, 5, filter=wide)
        assert [h.id for h in top] == oracle_top(docs, docs[3].vector, 5, lambda m: m.get("i") in range(10_000))
        with pytest.raises(FilterError, match="max_filter_values"):
            filled.count({"i": {"$in": list(range(10_001))}})
        deep: dict[str, Any] = {"i": 1}
        for _ in range(40):
            deep = {"$not": deep}
        with pytest.raises(FilterError, match="deeper"):
            filled.count(deep)
        assert filled.count() == len(docs)  # nothing was deleted by a refused filter


_COLLECTION_WRITER = """
import json, os, sys
from ragstore.stores.collection import open_collection
from ragstore.embedders.hashing import HashingEmbedder
from ragstore.errors import RagstoreError
from ragstore.types import Document
args = json.loads(sys.stdin.read())
dim, who = args["dim"], args["who"]
main, route = HashingEmbedder(dim), HashingEmbedder(dim, seed="route")
try:
    coll = open_collection(args["config"], embedder=main, routes={"ml": (route, args["route"])})
except RagstoreError as exc:  # an engine that keeps one process per folder refuses clearly
    print(json.dumps({"refused": f"{type(exc).__name__}: {exc}"}))
    sys.exit(0)
if args.get("hold"):  # stop inside the first derived write (the primary already written) until released
    import pathlib, time
    index, write = coll.derived["lexical"], coll.derived["lexical"].upsert
    def held(*a, **k):
        pathlib.Path(args["barrier"], "holding-" + who).touch()
        while not pathlib.Path(args["hold"]).exists():
            time.sleep(0.01)
        return write(*a, **k)
    index.upsert = held
if args.get("crash"):
    def crash(*_a, **_k):
        os._exit(17)  # a crash after the primary's write, before any derived index's
    coll.derived["lexical"].upsert = crash
if args.get("opener"):  # open and close again and again while another process writes
    coll.close()
    opened, repairs = 0, []
    while not os.path.exists(args["stop"]) or not opened:
        again = open_collection(args["config"], embedder=main, routes={"ml": (route, args["route"])})
        repairs += [n for n in again.notes if "repaired" in n]
        again.close()
        opened += 1
    print(json.dumps({"opened": opened, "repairs": repairs}))
    sys.exit(0)
for r in range(args["rounds"]):
    texts = {f"shared-{j}": f"{who} round {r} text {j} pension" for j in range(args["shared"])}
    texts.update({f"{who}-{r}-{j}": f"{who} own {r} {j} superannuation" for j in range(args["own"])})
    vecs = main.embed_documents(list(texts.values()))
    coll.upsert([Document(id=i, text=t, vector=v, metadata={"who": who}) for (i, t), v in zip(texts.items(), vecs)])
coll.close()
print(json.dumps({"wrote": args["rounds"]}))
"""


def _run_script(script: str, payload: dict[str, Any]) -> Any:
    env = child_env()
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(payload))
    proc.stdin.close()
    return proc


def _wait_for(flag: Any, proc: Any) -> None:
    """Until the process reached ``flag`` (or ended: an engine that refused a second process)."""
    deadline = time.monotonic() + 300
    while not flag.exists() and proc.poll() is None:
        assert time.monotonic() < deadline, f"the process never reached {flag.name}"
        time.sleep(0.02)


def _settle(proc: Any, seconds: float = 3.0) -> None:
    """Give a second process time to open and reach the held write (or, wrongly, to pass it)."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def _outcome(proc: Any) -> dict[str, Any]:
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(600)
    assert proc.returncode == 0, f"a writer process failed:\n{err[-3000:]}"
    return dict(json.loads(out.strip().splitlines()[-1]))


class CollectionTests(_Base):
    """A collection's primary and derived indexes (BM25, a dense route) agree on every store: after a crash
    between their writes (found by generation, not count), with another process opening or writing the same
    ids at the same time, and with two stores sharing one ``lexical_path``; the manifest refuses another
    embedder."""

    @pytest.fixture
    def collection_config(
        self, store_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
    ) -> dict[str, Any]:
        # the journal, generations and repair of derived indexes: the sidecar leg is one of them on every
        # engine (an engine's native leg is written in the primary's own transaction: LexicalTests)
        config = {**store_config, "lexical": True, "lexical_leg": "sidecar"}
        if resolve_store(config)[1].remote:
            config["lexical_path"] = str(tmp_path_factory.mktemp("collection"))
        return config

    @pytest.fixture
    def route_config(self, collection_config: dict[str, Any]) -> dict[str, Any]:
        _cls, opts = resolve_store(collection_config)
        sibling = opts.sibling("route")
        sibling.lexical = False
        return store_block(str(collection_config["type"]), sibling)

    @pytest.fixture
    def make_collection(
        self, collection_config: dict[str, Any], route_config: dict[str, Any]
    ) -> Iterator[Callable[..., Collection]]:
        from ..embedders.hashing import HashingEmbedder

        routes = {"ml": (HashingEmbedder(DIM, seed="route"), route_config)}
        yield from _collection_opener(collection_config, embedder=HashingEmbedder(DIM), routes=routes)

    @staticmethod
    def _persistent(coll: Collection) -> None:
        if not coll.capabilities.persistent:
            coll.close()
            pytest.skip(f"{coll.name} with this config keeps nothing after close")

    def test_another_embedder_is_refused_and_an_export_of_the_same_one_allowed(
        self, make_collection: Callable[..., Collection], ldocs_for_collection: list[Document]
    ) -> None:
        from ..embedders.hashing import HashingEmbedder

        first = make_collection()
        self._persistent(first)
        first.upsert(ldocs_for_collection)
        manifest = first.primary.read_manifest()
        assert manifest is not None and manifest["indexes"]["primary"]["embedder"]["key"]
        assert manifest["indexes"]["lexical"]["kind"] == "bm25" and manifest["indexes"]["route:ml"]["dim"] == DIM
        first.close()
        with pytest.raises(EmbedderMismatchError, match="ragstore copy --reembed"):
            make_collection(embedder=HashingEmbedder(DIM, seed="another model"))

        class Exported(HashingEmbedder):
            def identity(self) -> dict[str, Any]:
                return {**super().identity(), "variant": "onnx-int8"}

        again = make_collection(embedder=Exported(DIM))  # the same weights run another way: compatible
        assert any("compatible" in note for note in again.notes)
        assert again.count() == len(ldocs_for_collection)
        assert again.verify() == []

    def test_a_store_made_before_manifests_gets_one_on_first_open(
        self,
        make_store: Callable[[], VectorStore],
        make_collection: Callable[..., Collection],
        ldocs_for_collection: list[Document],
    ) -> None:
        old = make_store()
        if not old.capabilities.persistent:
            pytest.skip(f"{old.name} with this config keeps nothing after close")
        old.upsert(ldocs_for_collection)
        assert old.read_manifest() is None
        old.close()
        coll = make_collection()
        assert any("no manifest" in note for note in coll.notes)
        manifest = coll.primary.read_manifest()
        assert manifest is not None and manifest["adopted"]["unverified"]
        assert coll.verify() == []  # the lexical index and the route were built from the primary
        assert coll.route("ml").count() == len(ldocs_for_collection)

    def test_crash_between_primary_and_derived_writes_is_repaired_by_generation(
        self,
        collection_config: dict[str, Any],
        route_config: dict[str, Any],
        make_collection: Callable[..., Collection],
        ldocs_for_collection: list[Document],
    ) -> None:
        docs = ldocs_for_collection
        first = make_collection()
        self._persistent(first)
        first.upsert(docs)
        before = [Document(id=f"shared-{j}", text=f"before {j} pension", vector=docs[j].vector) for j in range(5)]
        first.upsert(before)
        first.close()
        # the crash rewrites existing ids: the counts stay equal, only generations tell
        proc = _run_script(
            _COLLECTION_WRITER,
            {
                "config": collection_config,
                "route": route_config,
                "dim": DIM,
                "who": "crash",
                "crash": True,
                "rounds": 1,
                "shared": 5,
                "own": 0,
            },
        )
        proc.wait(600)
        assert proc.returncode == 17, proc.stderr.read()[-3000:]
        again = make_collection()
        assert any("repaired lexical" in n for n in again.notes) and any("repaired route:ml" in n for n in again.notes)
        assert again.verify() == []
        assert again.count() == len(docs) + 5
        if again.capabilities.durable_writes:  # the primary kept the write the crash interrupted
            assert again.get(["shared-0"])[0].text.startswith("crash round 0")
            assert [h.id for h in again.search_lexical("crash", 5)][:1] != []

    def test_opening_while_another_process_writes_loses_no_text(
        self,
        collection_config: dict[str, Any],
        route_config: dict[str, Any],
        make_collection: Callable[..., Collection],
        tmp_path: Any,
    ) -> None:
        """A process opening the collection while another is between its primary and its derived writes
        waits for that write: it never sees the half-done write as a crash to repair."""
        first = make_collection()
        self._persistent(first)
        first.close()
        release, stop = tmp_path / "release", tmp_path / "stop"
        base = {"config": collection_config, "route": route_config, "dim": DIM, "barrier": str(tmp_path)}
        writer = _run_script(
            _COLLECTION_WRITER, {**base, "who": "w", "rounds": 20, "shared": 10, "own": 10, "hold": str(release)}
        )
        _wait_for(tmp_path / "holding-w", writer)
        opener = _run_script(_COLLECTION_WRITER, {**base, "who": "o", "opener": True, "stop": str(stop)})
        _settle(opener)
        release.touch()
        wrote = _outcome(writer)
        stop.touch()
        seen = _outcome(opener)
        assert seen.get("repairs", []) == [], seen  # the opener waited; it found nothing half-written
        coll = make_collection()
        assert not [n for n in coll.notes if "repaired" in n], coll.notes
        assert coll.verify() == []
        if "wrote" in wrote:
            assert coll.count() == 10 + 20 * 10

    def test_two_processes_writing_the_same_ids_agree_everywhere(
        self,
        collection_config: dict[str, Any],
        route_config: dict[str, Any],
        make_collection: Callable[..., Collection],
        tmp_path: Any,
    ) -> None:
        """Writer B writes the ids writer A is writing, while A is between its primary and derived writes:
        B waits, so the last writer's text is the one in the store, the BM25 index and the route."""
        first = make_collection()
        self._persistent(first)
        first.close()
        release = tmp_path / "release"
        base = {"config": collection_config, "route": route_config, "dim": DIM, "barrier": str(tmp_path)}
        a = _run_script(
            _COLLECTION_WRITER, {**base, "who": "a", "rounds": 1, "shared": 20, "own": 0, "hold": str(release)}
        )
        _wait_for(tmp_path / "holding-a", a)
        b = _run_script(_COLLECTION_WRITER, {**base, "who": "b", "rounds": 1, "shared": 20, "own": 0})
        _settle(b)
        release.touch()
        outcomes = [_outcome(a), _outcome(b)]
        coll = make_collection()
        assert not [n for n in coll.notes if "repaired" in n], coll.notes
        assert coll.verify() == []
        assert coll.count() == 20
        winner = coll.get(["shared-0"])[0].text
        assert coll.derived["lexical"].texts()["shared-0"] == winner
        assert coll.route("ml").get(["shared-0"])[0].text == winner
        if all("wrote" in o for o in outcomes):
            assert winner.startswith("b ")  # B's write waited for A's

    def test_two_stores_sharing_a_lexical_path_stay_apart(
        self, collection_config: dict[str, Any], ldocs_for_collection: list[Document], tmp_path: Any
    ) -> None:
        shared = str(tmp_path / "shared-lexical")
        a_config = {**collection_config, "lexical_path": shared}
        _cls, opts = resolve_store(a_config)
        b_config = store_block(str(a_config["type"]), opts.sibling("other"))
        b_config["lexical_path"] = shared
        docs = ldocs_for_collection
        with open_collection(a_config) as a, open_collection(b_config) as b:
            a.upsert(docs[:10])
            b.upsert(docs[10:20])
            a_ids = {d.id for d in docs[:10]}
            assert {h.id for h in a.search_lexical(QUERIES[0], 50)} <= a_ids
            assert {h.id for h in b.search_lexical(QUERIES[0], 50)} <= {d.id for d in docs[10:20]}
            b.delete([d.id for d in docs[10:20]])
            assert a.verify() == [] and b.verify() == []
            assert set(a.derived["lexical"].texts()) == a_ids
            b.drop()
            a.drop()

    @pytest.fixture
    def ldocs_for_collection(self) -> list[Document]:
        return lexical_docs()[:30]


#: ids a copy must carry verbatim between any two engines (each refused character class is tested elsewhere)
COPY_IDS = [
    "'); DROP TABLE docs; --",
    'it\'s "quoted"',
    "back\\slash",
    "new\nline\ttab",
    "ünïcödé 中文 🎉",
    "zzz'] or id not in ['zzz",
    "../../etc/passwd",
    "x" * 512,
]


def _copy_docs(dim: int) -> list[Document]:
    docs = make_docs(230, dim=dim, seed=11)
    for doc, hostile in zip(docs, COPY_IDS, strict=False):
        doc.id = hostile
        doc.metadata["h"] = hostile[:100]
        doc.text = f"{hostile} ' \" \\ text"
    return docs


class ScanTests(_Base):
    """``scan`` reads every document once, with its vector, and resumes from any page's cursor; ``copy``
    carries a collection to the reference store and back with nothing lost or changed."""

    def test_scan_reads_every_document_once_and_resumes(self, store: VectorStore) -> None:
        docs = _copy_docs(DIM)
        store.upsert(docs)
        pages = list(store.scan(batch_size=50))
        got = [d for page in pages for d in page.documents]
        assert sorted(d.id for d in got) == sorted(d.id for d in docs) and len({d.id for d in got}) == len(got)
        by_id = {d.id: d for d in store.get([d.id for d in docs])}
        for doc in got:
            assert doc.text == by_id[doc.id].text and doc.metadata == by_id[doc.id].metadata
            np.testing.assert_array_equal(doc.vector, by_id[doc.id].vector)
        for n in (0, len(pages) // 2, len(pages) - 1):
            rest = [d.id for page in store.scan(batch_size=50, cursor=pages[n].cursor) for d in page.documents]
            assert rest == [d.id for page in pages[n + 1 :] for d in page.documents]
        with pytest.raises(ValidationError):
            next(store.scan(batch_size=0))

    def test_copy_out_and_back_matches_the_reference(self, store: VectorStore) -> None:
        from ..adapters.memory import MemoryStore
        from ..transfer import StoreSource, content_hash, copy_collection

        docs = _copy_docs(DIM)
        reference = MemoryStore()
        reference.upsert(docs)
        into = open_collection(store)
        report = copy_collection(StoreSource(reference, owned=False), into, batch_size=64, progress=False, verify=True)
        assert report.copied == len(docs) and report.verify is not None and report.verify.ok, report.verify
        back = open_collection(MemoryStore())
        again = copy_collection(StoreSource(store, owned=False), back, batch_size=40, progress=False, verify=True)
        assert again.verify is not None and again.verify.ok, again.verify
        want = {d.id: content_hash(d) for d in reference.get([d.id for d in docs])}
        have = {d.id: content_hash(d) for d in back.get([d.id for d in docs])}
        assert have == want


#: namespace names every store must refuse: quotes, NUL and control characters, spaces, paths, the separator
#: of engine ids, 10 KB, the empty name and what looks like "every namespace"
HOSTILE_NAMESPACES = [
    "",
    " ",
    "a b",
    "it's",
    'say "hi"',
    "nul\x00byte",
    "sep\x1fid",
    "tab\tname",
    "../etc",
    "a/b",
    "*",
    "%",
    "x" * 10_240,
    "x" * 65,
    "'); DROP TABLE docs; --",
    "ns\u200b",
]
#: namespace names every store must keep and give back exactly (letters of any script, digits, _ . @ : + = -)
ROUND_TRIP_NAMESPACES = ["租户一", "tenant-é", "acme.corp@eu:1", "A+B=c", "x" * 64, "0", "_"]


class NamespaceTests(_Base):
    """Tenants (``namespaces: true``): two namespaces of one collection never read, count, change or delete
    each other's documents, whatever the ids, filters and operations (``ragstore.query.namespaces``)."""

    @pytest.fixture
    def make_tenants(self, store_config: dict[str, Any]) -> Iterator[Callable[[], VectorStore]]:
        yield from _opener({**store_config, "namespaces": True})

    @pytest.fixture
    def tenants(self, make_tenants: Callable[[], VectorStore]) -> VectorStore:
        return make_tenants()

    @staticmethod
    def _variant(docs: list[Document], tag: str, seed: int) -> list[Document]:
        """The same ids, other texts, metadata and vectors: what another tenant keeps under them."""
        rng = np.random.default_rng(seed)
        return [
            Document(
                id=d.id,
                text=f"{tag} {d.text}",
                metadata={**d.metadata, "owner": tag},
                vector=rng.normal(size=len(np.asarray(d.vector))),
            )
            for d in docs
        ]

    def test_same_ids_in_two_namespaces_are_two_documents(self, tenants: VectorStore, docs: list[Document]) -> None:
        a, b = self._variant(docs[:20], "A", 1), self._variant(docs[:20], "B", 2)
        assert tenants.upsert(a, namespace="a") == [d.id for d in a]
        tenants.upsert(b, namespace="b")
        assert tenants.count(namespace="a") == tenants.count(namespace="b") == 20
        assert tenants.count() == 0  # the default namespace is a namespace like the others
        assert tenants.namespaces() == {"a": 20, "b": 20}
        for ns, want in (("a", a), ("b", b)):
            got = {d.id: d for d in tenants.get([d.id for d in want], namespace=ns)}
            assert {i: (d.text, d.metadata) for i, d in got.items()} == {d.id: (d.text, d.metadata) for d in want}
            for query in (a[0].vector, b[0].vector):
                hits = tenants.search(query, 20, namespace=ns)
                assert {h.metadata["owner"] for h in hits} == {ns.upper()} and len(hits) == 20
                assert all(h.text.startswith(ns.upper() + " ") for h in hits)
            assert {d.metadata["owner"] for d in tenants.get(filter={"owner": {"$ne": "zz"}}, namespace=ns)} == {
                ns.upper()
            }
        assert tenants.delete([d.id for d in a[:5]], namespace="a") == 5
        assert tenants.count(namespace="a") == 15 and tenants.count(namespace="b") == 20
        assert tenants.delete(filter={"owner": "A"}, namespace="b") == 0  # B's filter never reaches A
        assert tenants.delete(filter={"owner": "B"}, namespace="b") == 20
        assert tenants.count(namespace="a") == 15 and tenants.namespaces() == {"a": 15}
        tenants.upsert(b, namespace="b")
        tenants.clear(namespace="a")
        assert tenants.count(namespace="a") == 0 and tenants.count(namespace="b") == 20
        scanned = [d for page in tenants.scan(batch_size=7, namespace="b") for d in page.documents]
        assert sorted(d.id for d in scanned) == sorted(d.id for d in b)
        assert all(d.metadata["owner"] == "B" for d in scanned)

    def test_a_filter_naming_the_namespace_field_is_refused(self, tenants: VectorStore, docs: list[Document]) -> None:
        tenants.upsert(self._variant(docs[:5], "A", 1), namespace="a")
        tenants.upsert(self._variant(docs[:5], "B", 2), namespace="b")
        for bypass in (
            {"__ns": "b"},
            {"__ns": {"$ne": "a"}},
            {"__ns": {"$in": ["a", "b"]}},
            {"$or": [{"owner": "A"}, {"__ns": "b"}]},
            {"$not": {"__ns": "a"}},
            {"$and": [{"i": {"$gte": 0}}, {"$not": {"$or": [{"__ns": "a"}]}}]},
        ):
            calls = [
                lambda b=bypass: tenants.search(docs[0].vector, 5, b, namespace="a"),
                lambda b=bypass: tenants.count(b, namespace="a"),
                lambda b=bypass: tenants.get(filter=b, namespace="a"),
                lambda b=bypass: tenants.delete(filter=b, namespace="a"),
                lambda b=bypass: tenants.explain(b, namespace="a"),
            ]
            for call in calls:
                with pytest.raises(ValidationError, match="__ns"):
                    call()
        bad = Document(id="x", text="t", metadata={"__ns": "b"}, vector=docs[0].vector)
        with pytest.raises(ValidationError, match="__ns"):
            tenants.upsert([bad], namespace="a")
        assert tenants.namespaces() == {"a": 5, "b": 5}

    def test_hostile_namespace_names_are_refused(self, tenants: VectorStore, docs: list[Document]) -> None:
        tenants.upsert(docs[:3], namespace="a")
        for name in HOSTILE_NAMESPACES:
            for call in (
                lambda n=name: tenants.upsert(docs[:3], namespace=n),
                lambda n=name: tenants.search(docs[0].vector, 3, namespace=n),
                lambda n=name: tenants.count(namespace=n),
                lambda n=name: tenants.get([docs[0].id], namespace=n),
                lambda n=name: tenants.delete([docs[0].id], namespace=n),
                lambda n=name: tenants.clear(namespace=n),
            ):
                with pytest.raises(ValidationError, match="namespace"):
                    call()
        assert tenants.namespaces() == {"a": 3}

    def test_unusual_namespace_names_round_trip(self, tenants: VectorStore, docs: list[Document]) -> None:
        for n, name in enumerate(ROUND_TRIP_NAMESPACES):
            tenants.upsert(self._variant(docs[:2], f"T{n}", n), namespace=name)
        assert tenants.namespaces() == dict.fromkeys(ROUND_TRIP_NAMESPACES, 2)
        for n, name in enumerate(ROUND_TRIP_NAMESPACES):
            hits = tenants.search(docs[0].vector, 5, namespace=name)
            assert {h.metadata["owner"] for h in hits} == {f"T{n}"} and len(hits) == 2

    def test_random_operations_never_cross_namespaces(self, make_tenants: Callable[[], VectorStore]) -> None:
        """Hypothesis-generated upserts (ids colliding across the two namespaces), deletes by id and by random
        filter, and clears, checked after every sequence against a plain-Python model of each namespace:
        counts, reads, scans, searches with random filters, and what ``namespaces()`` reports."""
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        from .strategies import filters

        store = make_tenants()
        pool = make_docs(12)
        exact = store.capabilities.exact
        op = st.one_of(
            st.tuples(st.just("upsert"), st.lists(st.integers(0, 11), min_size=1, max_size=6, unique=True)),
            st.tuples(st.just("delete"), st.lists(st.integers(0, 11), min_size=1, max_size=4, unique=True)),
            st.tuples(st.just("delete_where"), filters(4)),
            st.tuples(st.just("clear"), st.none()),
        )
        runs = iter(range(10**6))

        @settings(
            max_examples=max(10, self.hypothesis_examples // 2), deadline=None, suppress_health_check=list(HealthCheck)
        )
        @given(st.lists(st.tuples(st.sampled_from([0, 1]), op), min_size=1, max_size=6), filters(4))
        def check(ops: list[tuple[int, tuple[str, Any]]], probe: dict[str, Any]) -> None:
            run = next(runs)
            names = (f"p{run}", f"q{run}")  # fresh tenants per example: the earlier ones stay beside them
            model: list[dict[str, Document]] = [{}, {}]
            for step, (side, (kind, arg)) in enumerate(ops):
                ns, mine = names[side], model[side]
                if kind == "upsert":
                    batch = self._variant([pool[i] for i in arg], f"{ns}.{step}", run * 100 + step)
                    store.upsert(batch, namespace=ns)
                    mine.update({d.id: d for d in batch})
                elif kind == "delete":
                    ids = [pool[i].id for i in arg]
                    assert store.delete(ids, namespace=ns) == sum(i in mine for i in ids)
                    for i in ids:
                        mine.pop(i, None)
                elif kind == "delete_where":
                    node = parse_filter(arg)
                    gone = [i for i, d in mine.items() if matches(node, d.metadata)]
                    assert store.delete(filter=arg, namespace=ns) == len(gone)
                    for i in gone:
                        mine.pop(i)
                else:
                    store.clear(namespace=ns)
                    mine.clear()
            seen = store.namespaces()
            for ns, mine in zip(names, model, strict=True):
                assert seen.get(ns, 0) == len(mine)
                assert store.count(namespace=ns) == len(mine)
                got = store.get([*mine, "never-written"], namespace=ns)
                assert {d.id: (d.text, d.metadata) for d in got} == {i: (d.text, d.metadata) for i, d in mine.items()}
                scanned = [d.id for page in store.scan(batch_size=5, namespace=ns) for d in page.documents]
                assert sorted(scanned) == sorted(mine)
                node = parse_filter(probe)
                matching = {i: d for i, d in mine.items() if matches(node, d.metadata)}
                assert store.count(probe, namespace=ns) == len(matching)
                query = pool[run % len(pool)].vector
                hits = store.search(query, 5, probe, namespace=ns)
                assert {h.id for h in hits} <= set(matching)
                assert all(h.text == matching[h.id].text for h in hits)
                if exact:
                    scores = oracle_scores(list(matching.values()), query)
                    want = sorted(scores, key=lambda i: (-round(scores[i], 5), i))[:5]
                    assert sorted(h.id for h in hits) == sorted(want) or _tied(hits, scores)

        check()

    def test_threads_writing_their_own_namespaces_never_mix(self, tenants: VectorStore, docs: list[Document]) -> None:
        """Four threads, each its own tenant, writing and deleting the same ids at once."""
        from concurrent.futures import ThreadPoolExecutor

        def tenant(n: int) -> None:
            mine = self._variant(docs[:15], f"T{n}", n)
            for start in range(0, 15, 5):
                tenants.upsert(mine[start : start + 5], namespace=f"t{n}")
            tenants.delete([d.id for d in mine[:n]], namespace=f"t{n}")

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(tenant, range(4)))
        assert tenants.namespaces() == {f"t{n}": 15 - n for n in range(4)}
        for n in range(4):
            got = tenants.get(filter={"owner": {"$ne": ""}}, namespace=f"t{n}")
            assert {d.metadata["owner"] for d in got} == {f"T{n}"} and len(got) == 15 - n

    def test_collection_legs_stay_in_their_namespace(self, lexical_config: dict[str, Any]) -> None:
        """The lexical leg (sidecar or native) and hybrid search answer from the caller's namespace only."""
        for coll in _collection_opener({**lexical_config, "namespaces": True}):
            c = coll()
            docs = lexical_docs()
            c.upsert(self._variant(docs, "A", 1), namespace="a")
            c.upsert(self._variant(docs, "B", 2), namespace="b")
            c.require_lexical()
            for ns in ("a", "b"):
                for query in QUERIES[:4]:
                    hits = c.search_lexical(query, 10, namespace=ns)
                    assert hits and {h.metadata["owner"] for h in hits} == {ns.upper()}
            c.delete(filter={"owner": "B"}, namespace="b")
            assert c.search_lexical(QUERIES[0], 10, namespace="b") == []
            assert c.search_lexical(QUERIES[0], 10, namespace="a")
            c.clear(namespace="a")
            assert c.search_lexical(QUERIES[0], 10, namespace="a") == []
            assert c.namespaces() == {}

    def test_a_collection_made_with_namespaces_is_reopened_with_them(
        self, make_tenants: Callable[[], VectorStore], store_config: dict[str, Any], docs: list[Document]
    ) -> None:
        first = make_tenants()
        if not first.capabilities.persistent:
            pytest.skip(f"{first.name} with this config keeps nothing after close")
        first.upsert(self._variant(docs[:4], "A", 1), namespace="a")
        first.close()
        for make in _opener(store_config):  # a config that does not say namespaces: the collection does
            again = make()
            assert again.options.namespaces and again.count() == 0 and again.count(namespace="a") == 4
            assert {h.metadata["owner"] for h in again.search(docs[0].vector, 4, namespace="a")} == {"A"}

    def test_namespaces_need_a_collection_made_with_them(self, store: VectorStore, docs: list[Document]) -> None:
        store.upsert(docs[:3])
        with pytest.raises(UnsupportedFeatureError, match="namespaces"):
            store.upsert(docs[:3], namespace="a")
        with pytest.raises(UnsupportedFeatureError, match="namespaces"):
            store.search(docs[0].vector, 3, namespace="a")
        assert store.count(namespace="default") == 3 and store.namespaces() == {"default": 3}


def _tied(hits: list[Hit], scores: dict[str, float]) -> bool:
    """The k-th place is a tie (float32 engines may pick either of two equal scores)."""
    return len(hits) > 0 and any(abs(scores[h.id] - hits[-1].score) < 1e-5 for h in hits[:-1])


#: the seeded documents' fields declared with their types (``num_or_str`` holds two kinds: never declarable)
INDEXED = {"tag": "keyword", "i": "integer", "x": "float", "flag": "bool", "opt": "keyword"}


class IndexedFieldTests(_Base):
    """Declared fields (``indexed``): filters on them give exactly what undeclared fields give (the oracle),
    a value of the wrong type is refused before anything is written, and declaring a field on a filled
    store indexes what is there."""

    @pytest.fixture
    def make_indexed(self, store_config: dict[str, Any]) -> Iterator[Callable[[], VectorStore]]:
        yield from _opener({**store_config, "indexed": INDEXED})

    def _check_filters(self, store: VectorStore, docs: list[Document]) -> None:
        q = docs[5].vector
        for flt, pred in FILTER_CASES:
            expected = {d.id for d in docs if pred(d.metadata)}
            assert store.count(flt) == len(expected), flt
            assert {h.id for h in store.search(q, len(docs), flt)} == expected, flt
            if expected:
                assert [h.id for h in store.search(q, 3, flt)] == oracle_top(docs, q, 3, pred), flt
        for flt in ({"tag": {"$in": TAGS[3:]}, "i": {"$gte": 10}}, {"$not": {"x": {"$gt": 0}}}):
            node = parse_filter(flt)
            assert store.count(flt) == sum(matches(node, d.metadata) for d in docs), flt

    def test_declared_field_filters_match_the_oracle(
        self, make_indexed: Callable[[], VectorStore], docs: list[Document]
    ) -> None:
        store = make_indexed()
        store.upsert(docs)
        self._check_filters(store, docs)
        plan = store.explain({"tag": "alpha", "num_or_str": 3}, k=5)
        assert plan["filter"] and plan["strategy"] and plan["k"] == 5
        assert plan["scanned"][:1] == ["num_or_str"] or "num_or_str" in plan["scanned"]
        assert ("tag" in plan["indexed"]) == store.indexes_fields
        # deletes by a declared field leave the index whole: the same filters still agree with the oracle
        removed = store.delete(filter={"tag": "beta"})
        kept = [d for d in docs if d.metadata["tag"] != "beta"]
        assert removed == len(docs) - len(kept)
        self._check_filters(store, kept)

    def test_random_filters_on_declared_fields_match_the_oracle(
        self, make_indexed: Callable[[], VectorStore], docs: list[Document]
    ) -> None:
        store = make_indexed()
        store.upsert(docs)
        random_filters_agree(
            store,
            docs,
            self.hypothesis_examples,
            lambda flt: {h.id for h in store.search(docs[0].vector, len(docs), flt)},
        )

    def test_wrong_type_is_refused_and_nothing_written(
        self, make_indexed: Callable[[], VectorStore], docs: list[Document]
    ) -> None:
        store = make_indexed()
        store.upsert(docs)
        fine = Document(id="new-fine", text="t", metadata={"tag": "alpha"}, vector=docs[0].vector)
        bad_metas: list[dict[str, Any]] = [
            {"tag": 5},
            {"i": 1.5},
            {"i": True},
            {"x": "1.0"},
            {"flag": 1},
            {"opt": False},
        ]
        for bad_meta in bad_metas:
            bad = Document(id="new-bad", text="t", metadata=bad_meta, vector=docs[1].vector)
            with pytest.raises(ValidationError, match=next(iter(bad_meta))):
                store.upsert([fine, bad])
            assert store.count() == len(docs)
            assert store.get(["new-fine", "new-bad"]) == []
        assert store.count({"tag": "alpha"}) == sum(d.metadata["tag"] == "alpha" for d in docs)

    def test_an_opener_without_the_declaration_is_held_to_it(
        self, make_indexed: Callable[[], VectorStore], make_store: Callable[[], VectorStore], docs: list[Document]
    ) -> None:
        """The declaration lives with the data (the sidecar file, a table constraint): a second opener whose
        config leaves ``indexed`` out is refused a wrong type too, and what it writes is indexed."""
        store = make_indexed()
        if not type(store).checks_stored_types:
            pytest.skip(f"{store.name} keeps no declaration with the data: each opener's config declares its own")
        if store.one_opener_per_path or not store.capabilities.persistent:
            pytest.skip(f"{store.name} with this config has one opener: there is no second one to hold to it")
        store.upsert(docs)
        plain = make_store()
        with pytest.raises(ValidationError):
            plain.upsert([Document(id="late", text="t", metadata={"tag": 5}, vector=docs[0].vector)])
        assert plain.count() == len(docs) and store.get(["late"]) == []
        plain.upsert([Document(id="late", text="t", metadata={"tag": "alpha", "i": 1000}, vector=docs[0].vector)])
        alpha = sum(d.metadata["tag"] == "alpha" for d in docs) + 1
        assert store.count({"tag": "alpha"}) == alpha and store.count({"i": {"$gte": 1000}}) == 1
        assert [h.id for h in store.search(docs[0].vector, 1, {"i": {"$gt": 999}})] == ["late"]

    def test_declaring_fields_on_a_filled_store_indexes_what_is_there(
        self, store_config: dict[str, Any], make_store: Callable[[], VectorStore], docs: list[Document]
    ) -> None:
        first = make_store()
        if not first.capabilities.persistent:
            pytest.skip(f"{first.name} with this config keeps nothing after close: nothing to declare fields on")
        first.upsert(docs)
        first.close()
        store = create_store({**store_config, "indexed": INDEXED})
        try:
            self._check_filters(store, docs)
            assert set(store.explain({"tag": "alpha"})["indexed"]) == ({"tag"} if store.indexes_fields else set())
            with pytest.raises(ValidationError, match="tag"):
                store.upsert([Document(id="late", text="t", metadata={"tag": 1}, vector=docs[0].vector)])
            assert store.count() == len(docs)
        finally:
            store.close()
        if not type(store).checks_stored_types:
            return
        # a stored value of another kind refuses the declaration, and the store is as it was
        with pytest.raises(ConfigError, match="num_or_str"):
            create_store({**store_config, "indexed": {"num_or_str": "keyword"}})
        again = create_store(store_config)
        try:
            assert again.count() == len(docs)
            self._check_filters(again, docs)
        finally:
            again.close()


class VectorStoreConformance(
    UpsertTests,
    GetDeleteTests,
    DropTests,
    FilterTests,
    SearchTests,
    BadInputTests,
    PersistenceTests,
    ReopenTests,
    HostileValueTests,
    EngineFailureTests,
    ConcurrencyTests,
    LexicalTests,
    LimitTests,
    CollectionTests,
    ScanTests,
    IndexedFieldTests,
    NamespaceTests,
):
    """All conformance tests; subclass and override ``store_config``."""
