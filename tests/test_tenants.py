"""Tenants from every door: ``ragstore serve`` keys bound to namespaces and scopes (one test per route, each
checking that nothing of the other tenant is returned, counted, written or deleted), the key config, the
pipeline, ``ragstore copy`` of one namespace or all, and ``ragstore info``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs: pip install 'ragstore[serve]'")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from test_serve import HASHING, Server  # noqa: E402

from ragstore import Document  # noqa: E402
from ragstore.config import load_config  # noqa: E402
from ragstore.errors import ConfigError, TransferError  # noqa: E402
from ragstore.pipeline import Ragstore  # noqa: E402
from ragstore.query.namespaces import ALL_NAMESPACES  # noqa: E402

ADMIN = "admin-key-0123456789"
ALPHA_RW = "alpha-write-0123456789"
ALPHA_RO = "alpha-read-0123456789"
BETA_RW = "beta-write-0123456789"
BOTH_RO = "both-read-0123456789"
KEYS = [
    ADMIN,  # a plain key: every namespace, every scope
    {"name": "alpha-writer", "key": ALPHA_RW, "namespaces": ["alpha"], "scopes": ["read", "write"]},
    {"name": "alpha-reader", "sha256": hashlib.sha256(ALPHA_RO.encode()).hexdigest(), "namespaces": ["alpha"]},
    {"name": "beta-writer", "key": BETA_RW, "namespaces": ["beta"], "scopes": ["read", "write"]},
    {"name": "both-reader", "key": BOTH_RO, "namespaces": ["alpha", "beta"], "scopes": ["read"]},
]
IDS = [f"doc-{i}" for i in range(6)]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Api:
    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, key: str, route: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url + route, json=body, headers=_auth(key), timeout=60)

    def count(self, namespace: str) -> int:
        info = httpx.get(self.url + "/v1/info", headers=_auth(ADMIN), timeout=60).json()
        return int((info["store"]["namespaces"] or {}).get(namespace, 0))

    def texts(self, namespace: str) -> dict[str, str]:
        out = {}
        for doc_id in IDS:
            r = httpx.get(f"{self.url}/v1/documents/{doc_id}", params={"namespace": namespace}, headers=_auth(ADMIN))
            if r.status_code == 200:
                out[doc_id] = r.json()["text"]
        return out


def _forbidden(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["type"] == "permission_error" and error["message"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("tenants")
    config = {
        "embedder": HASHING,
        "store": {"type": "faiss", "path": str(tmp / "faiss"), "namespaces": True, "lexical": True},
        "serve": {"api_keys": KEYS},
    }
    with Server(config, tmp) as s:
        yield Api(s.url)


@pytest.fixture
def seeded(api: Api) -> Api:
    """alpha and beta each hold the same six ids with their own texts."""
    for ns in ("alpha", "beta"):
        httpx.request(
            "DELETE",
            api.url + "/v1/documents",
            json={"filter": {"i": {"$gte": 0}}, "namespace": ns},
            headers=_auth(ADMIN),
        )
        docs = [
            {"id": d, "text": f"{ns} report number {i} about super", "metadata": {"i": i}} for i, d in enumerate(IDS)
        ]
        assert api.post(ADMIN, "/v1/documents", {"documents": docs, "namespace": ns}).status_code == 200
    assert api.count("alpha") == api.count("beta") == 6
    return api


def test_search_returns_only_the_keys_namespace(seeded: Api) -> None:
    for key, ns in ((ALPHA_RW, "alpha"), (ALPHA_RO, "alpha"), (BETA_RW, "beta")):
        for body in (
            {"query": "report about super", "k": 20},
            {"query": "report super", "k": 20, "mode": "hybrid"},
            {"query": "report", "k": 20, "mode": "lexical"},
        ):
            r = seeded.post(key, "/v1/search", body)
            assert r.status_code == 200, r.text
            hits = r.json()["hits"]
            assert len(hits) == 6 and all(h["text"].startswith(ns + " ") for h in hits)
    vector = seeded.post(ADMIN, "/v1/embeddings", {"model": "hashing", "input": "report"}).json()["data"][0][
        "embedding"
    ]
    r = seeded.post(ALPHA_RO, "/v1/search", {"vector": vector, "k": 20})
    assert r.status_code == 200 and {h["text"].split()[0] for h in r.json()["hits"]} == {"alpha"}
    _forbidden(seeded.post(ALPHA_RO, "/v1/search", {"query": "report", "namespace": "beta"}))
    _forbidden(seeded.post(BETA_RW, "/v1/search", {"vector": vector, "namespace": "alpha"}))
    several = seeded.post(BOTH_RO, "/v1/search", {"query": "report"})
    assert several.status_code == 400 and several.json()["error"]["param"] == "namespace"
    r = seeded.post(BOTH_RO, "/v1/search", {"query": "report", "k": 20, "namespace": "beta"})
    assert {h["text"].split()[0] for h in r.json()["hits"]} == {"beta"}
    for bypass in ({"__ns": "beta"}, {"$or": [{"i": 1}, {"__ns": "beta"}]}, {"$not": {"__ns": "alpha"}}):
        r = seeded.post(ALPHA_RO, "/v1/search", {"query": "report", "filter": bypass})
        assert r.status_code == 400 and "__ns" in r.json()["error"]["message"]


def test_explain_is_scoped(seeded: Api) -> None:
    r = seeded.post(ALPHA_RO, "/v1/explain", {"filter": {"i": 1}})
    assert r.status_code == 200 and r.json()["filter"]["$and"][0] == {"__ns": {"$eq": "alpha"}}
    _forbidden(seeded.post(ALPHA_RO, "/v1/explain", {"filter": {"i": 1}, "namespace": "beta"}))


def test_writes_need_the_write_scope_and_the_namespace(seeded: Api) -> None:
    doc = {"documents": [{"id": "doc-0", "text": "overwritten by a reader"}]}
    _forbidden(seeded.post(ALPHA_RO, "/v1/documents", doc))
    _forbidden(seeded.post(ALPHA_RW, "/v1/documents", {**doc, "namespace": "beta"}))
    _forbidden(seeded.post(BOTH_RO, "/v1/documents", {**doc, "namespace": "alpha"}))
    assert seeded.texts("alpha")["doc-0"] == seeded.texts("beta")["doc-0"].replace("beta", "alpha")  # nothing written
    r = seeded.post(ALPHA_RW, "/v1/documents", {"documents": [{"id": "doc-0", "text": "alpha rewrote this"}]})
    assert r.status_code == 200 and r.json()["ids"] == ["doc-0"]
    assert seeded.texts("alpha")["doc-0"] == "alpha rewrote this"
    assert seeded.texts("beta")["doc-0"] == "beta report number 0 about super"
    assert seeded.count("alpha") == seeded.count("beta") == 6


def test_get_document_reads_the_keys_namespace(seeded: Api) -> None:
    r = httpx.get(seeded.url + "/v1/documents/doc-3", headers=_auth(BETA_RW))
    assert r.status_code == 200 and r.json()["text"] == "beta report number 3 about super"
    r = httpx.get(seeded.url + "/v1/documents/doc-3", headers=_auth(ALPHA_RO))
    assert r.json()["text"] == "alpha report number 3 about super" and "__ns" not in r.json()["metadata"]
    _forbidden(httpx.get(seeded.url + "/v1/documents/doc-3", params={"namespace": "beta"}, headers=_auth(ALPHA_RO)))


def test_delete_never_reaches_the_other_namespace(seeded: Api) -> None:
    def delete(key: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.request("DELETE", seeded.url + "/v1/documents", json=body, headers=_auth(key))

    _forbidden(delete(ALPHA_RO, {"ids": IDS}))
    _forbidden(delete(ALPHA_RW, {"ids": IDS, "namespace": "beta"}))
    assert seeded.count("alpha") == seeded.count("beta") == 6
    r = delete(ALPHA_RW, {"filter": {"i": {"$gte": 0}}})
    assert r.status_code == 200 and r.json()["deleted"] == 6
    assert seeded.count("alpha") == 0 and seeded.count("beta") == 6
    assert delete(BETA_RW, {"ids": IDS[:2]}).json()["deleted"] == 2 and seeded.count("beta") == 4


def test_embeddings_models_info_and_metrics_by_scope(seeded: Api) -> None:
    body = {"model": "hashing", "input": "x"}
    assert seeded.post(ALPHA_RO, "/v1/embeddings", body).status_code == 200
    _forbidden(seeded.post(ALPHA_RO, "/v1/embeddings", {**body, "namespace": "beta"}))
    assert httpx.get(seeded.url + "/v1/models", headers=_auth(ALPHA_RO)).status_code == 200
    _forbidden(httpx.get(seeded.url + "/v1/info", headers=_auth(ALPHA_RW)))
    _forbidden(httpx.get(seeded.url + "/metrics", headers=_auth(BETA_RW)))
    info = httpx.get(seeded.url + "/v1/info", headers=_auth(ADMIN)).json()
    assert info["store"]["namespaces"] == {"alpha": 6, "beta": 6}
    metrics = httpx.get(seeded.url + "/metrics", headers=_auth(ADMIN)).text
    assert 'key="alpha-reader"' in metrics and 'key="beta-writer"' in metrics and 'status="403"' in metrics
    assert not any(secret in metrics for secret in (ADMIN, ALPHA_RW, ALPHA_RO, BETA_RW, BOTH_RO))
    assert httpx.get(seeded.url + "/v1/info", headers=_auth("not-a-key-at-all")).status_code == 401


def test_key_config_is_checked_at_load(tmp_path: Path) -> None:
    base = {"data_dir": str(tmp_path), "embedder": HASHING}
    bad = [
        {"name": "k", "key": ALPHA_RW, "sha256": "0" * 64},  # two secrets
        {"name": "k"},  # none
        {"name": "k", "key": "short"},
        {"name": "k", "sha256": "xyz"},
        {"name": "k", "key": ALPHA_RW, "namespaces": ["it's"]},
        {"name": "k", "key": ALPHA_RW, "scopes": ["root"]},
        {"name": "bad name", "key": ALPHA_RW},
    ]
    for entry in bad:
        with pytest.raises(ConfigError):
            load_config({**base, "serve": {"api_keys": [entry]}})
    with pytest.raises(ConfigError, match="share a name"):
        load_config({**base, "serve": {"api_keys": [{"name": "k", "key": ALPHA_RW}, {"name": "k", "key": BETA_RW}]}})


def test_hash_key_command_matches_the_config(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ragstore.cli import app

    out = CliRunner().invoke(app, ["hash-key"], input=ALPHA_RO + "\n")
    assert out.exit_code == 0 and out.stdout.strip() == hashlib.sha256(ALPHA_RO.encode()).hexdigest()
    assert CliRunner().invoke(app, ["hash-key", "short"]).exit_code != 0


def _pipeline(tmp: Path, **store: Any) -> Ragstore:
    return Ragstore.open({"data_dir": str(tmp / "data"), "embedder": HASHING, "store": {"type": "faiss", **store}})


def test_pipeline_ingest_search_delete_per_namespace(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "a.md").write_text("Contributions are capped at thirty thousand dollars a year.")
    with _pipeline(tmp_path, path=str(tmp_path / "db"), namespaces=True, lexical=True) as rs:
        assert rs.ingest(folder, progress=False, namespace="t1").embedded == 1
        assert rs.ingest(folder, progress=False, namespace="t2").embedded == 1  # another tenant: embedded again
        assert rs.ingest(folder, progress=False, namespace="t1").unchanged == 1
        rs.add(["t1 only text about contributions"], namespace="t1")
        assert rs.namespaces() == {"t1": 2, "t2": 1}
        for mode in ("dense", "lexical", "hybrid"):
            assert len(rs.search("contributions", k=10, mode=mode, namespace="t1")) == 2
            assert len(rs.search("contributions", k=10, mode=mode, namespace="t2")) == 1
            assert rs.search("contributions", k=10, mode=mode) == []
        rs.clear(namespace="t1")
        assert rs.namespaces() == {"t2": 1} and rs.info()["store"]["namespaces"] == {"t2": 1}


def test_copy_one_namespace_or_all(tmp_path: Path) -> None:
    from ragstore.adapters.memory import MemoryStore
    from ragstore.stores.collection import open_collection
    from ragstore.transfer import StoreSource, copy_collection

    rng = np.random.default_rng(0)
    source = MemoryStore(namespaces=True)
    for ns in ("a", "b", None):
        source.upsert(
            [Document(id=f"d{i}", text=f"{ns} {i}", metadata={"i": i}, vector=rng.normal(size=8)) for i in range(5)],
            namespace=ns,
        )
    whole = open_collection(MemoryStore(namespaces=True))
    report = copy_collection(StoreSource(source, owned=False), whole, progress=False, verify=True)
    assert report.verify is not None and report.verify.ok, report.verify
    assert whole.namespaces() == {"a": 5, "b": 5, "default": 5}
    assert [d.text for d in whole.get(["d1"], namespace="b")] == ["b 1"]
    one = open_collection(MemoryStore(namespaces=True))
    report = copy_collection(StoreSource(source, owned=False, namespace="a"), one, progress=False, verify=True)
    assert report.verify is not None and report.verify.ok and one.namespaces() == {"a": 5}
    moved = open_collection(MemoryStore(namespaces=True))
    copy_collection(StoreSource(source, owned=False, namespace="a"), moved, progress=False, into="z")
    assert moved.namespaces() == {"z": 5} and [d.text for d in moved.get(["d2"], namespace="z")] == ["a 2"]
    plain = open_collection(MemoryStore())
    with pytest.raises(TransferError, match="namespaces"):
        copy_collection(StoreSource(source, owned=False), plain, progress=False)
    assert plain.count(namespace=ALL_NAMESPACES) == 0
    flat = open_collection(MemoryStore())  # one namespace into a collection without them: its default
    copy_collection(StoreSource(source, owned=False, namespace="b"), flat, progress=False, into=None)
    assert flat.count() == 5 and flat.get(["d0"])[0].text == "b 0"


def test_cli_copy_and_info_list_namespaces(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ragstore.cli import app

    with _pipeline(tmp_path, path=str(tmp_path / "src"), namespaces=True) as rs:
        rs.add(["one", "two"], ids=["1", "2"], namespace="acme")
        rs.add(["three"], ids=["1"], namespace="globex")
    runner = CliRunner()
    src = json.dumps({"type": "faiss", "path": str(tmp_path / "src")})
    dest = json.dumps({"type": "faiss", "path": str(tmp_path / "dest"), "namespaces": True})
    out = runner.invoke(app, ["copy", src, dest, "--namespace", "globex", "--verify", "--no-progress"])
    assert out.exit_code == 0, out.output
    cfg = tmp_path / "dest.yaml"
    cfg.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "d"),
                "embedder": HASHING,
                "store": {"type": "faiss", "path": str(tmp_path / "dest")},
            }
        )
    )
    out = runner.invoke(app, ["info", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    assert '"globex": 1' in out.stdout and "acme" not in out.stdout.split('"namespaces"')[1].split("}")[0]
    out = runner.invoke(app, ["copy", src, json.dumps({"type": "faiss", "path": str(tmp_path / "d2")})])
    assert out.exit_code != 0 and "namespaces" in out.output


def test_langchain_store_per_tenant_and_per_call() -> None:
    pytest.importorskip("langchain_core")
    from ragstore.integrations.langchain import RagstoreEmbeddings, RagstoreVectorStore

    emb = RagstoreEmbeddings({"type": "hashing", "dim": 64})
    acme = RagstoreVectorStore({"type": "memory", "namespaces": True}, emb, namespace="acme")
    globex = acme.with_namespace("globex")
    acme.add_texts(["acme pays quarterly", "acme leave"], ids=["pay", "leave"])
    globex.add_texts(["globex pays monthly"], ids=["pay"])
    assert [d.page_content for d in acme.similarity_search("pays", k=5)] == ["acme pays quarterly", "acme leave"][:2]
    assert [d.page_content for d in globex.similarity_search("pays", k=5)] == ["globex pays monthly"]
    assert [d.page_content for d in acme.similarity_search("pays", k=5, namespace="globex")] == ["globex pays monthly"]
    assert [d.page_content for d in globex.get_by_ids(["pay", "leave"])] == ["globex pays monthly"]
    assert len(acme.max_marginal_relevance_search("pays", k=5)) == 2
    globex.delete(["pay"])
    assert acme.get_by_ids(["pay"])[0].page_content == "acme pays quarterly" and globex.get_by_ids(["pay"]) == []
    with pytest.raises(Exception, match="namespace"):
        acme.with_namespace("it's")
    acme.close()


def test_llamaindex_store_per_tenant_and_retriever_kwargs() -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document as LlamaDocument
    from llama_index.core import StorageContext, VectorStoreIndex

    from ragstore.integrations.llamaindex import RagstoreEmbedding, RagstoreVectorStore

    embed = RagstoreEmbedding({"type": "hashing", "dim": 64})
    acme = RagstoreVectorStore({"type": "memory", "namespaces": True}, namespace="acme")
    globex = acme.with_namespace("globex")
    for store, text in ((acme, "acme pays quarterly"), (globex, "globex pays monthly")):
        ctx = StorageContext.from_defaults(vector_store=store)
        VectorStoreIndex.from_documents([LlamaDocument(text=text, id_="pay")], storage_context=ctx, embed_model=embed)
    index = VectorStoreIndex.from_vector_store(acme, embed_model=embed)
    assert [n.node.get_content() for n in index.as_retriever(similarity_top_k=5).retrieve("pays")] == [
        "acme pays quarterly"
    ]
    other = index.as_retriever(similarity_top_k=5, vector_store_kwargs={"namespace": "globex"})
    assert [n.node.get_content() for n in other.retrieve("pays")] == ["globex pays monthly"]
    assert [n.get_content() for n in globex.get_nodes()] == ["globex pays monthly"]
    globex.clear()
    assert globex.get_nodes() == [] and [n.get_content() for n in acme.get_nodes()] == ["acme pays quarterly"]
    acme.close()


def test_a_route_index_keeps_the_tenants_apart(tmp_path: Path) -> None:
    """A bilingual route's own store follows the collection's namespaces (made with them, written with the
    primary's engine ids), and a routed search answers from the tenant's documents only."""
    from ragstore.embedders.hashing import HashingEmbedder
    from ragstore.query.retrieval import Retriever
    from ragstore.stores.collection import open_collection

    main, route = HashingEmbedder(32), HashingEmbedder(48)
    coll = open_collection(
        {"type": "faiss", "path": str(tmp_path / "f"), "namespaces": True},
        embedder=main,
        routes={"ml": (route, {"type": "faiss", "path": str(tmp_path / "f-ml")})},
    )
    for ns in ("a", "b"):
        texts = [f"{ns} passage about super number {i}" for i in range(4)]
        docs = [
            Document(text=t, id=f"d{i}", metadata={"i": i}, vector=v)
            for i, (t, v) in enumerate(zip(texts, main.embed_documents(texts), strict=True))
        ]
        coll.upsert(docs, namespace=ns)
    assert coll.route("ml").options.namespaces and coll.route("ml").namespaces() == {"a": 4, "b": 4}
    retriever = Retriever(main, multilingual={"ml": route})
    for ns in ("a", "b"):
        (result,) = retriever.search(coll, ["养老金的问题"], 10, mode="route", namespace=ns)
        assert "ml" in result.plan.members, result.plan
        assert result.hits and {h.text.split()[0] for h in result.hits} == {ns}
        assert {h.id for h in result.hits} == {f"d{i}" for i in range(4)}
    coll.delete(["d0"], namespace="a")
    assert coll.route("ml").namespaces() == {"a": 3, "b": 4}
    assert coll.verify() == []
    coll.close()


def test_export_and_import_keep_every_namespace(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from ragstore.adapters.memory import MemoryStore
    from ragstore.stores.collection import open_collection
    from ragstore.transfer import StoreSource, copy_collection
    from ragstore.transfer.parquet import ParquetSource, export_parquet

    rng = np.random.default_rng(0)
    source = MemoryStore(namespaces=True)
    for ns in ("a", "b"):
        source.upsert([Document(id="x", text=f"{ns} x", vector=rng.normal(size=8))], namespace=ns)
    source.write_manifest({"format": 1})
    file = tmp_path / "t.parquet"
    export_parquet(StoreSource(source, owned=False), file, progress=False)
    back = open_collection(MemoryStore(namespaces=True))
    with ParquetSource(file) as parquet:
        assert parquet.namespaced
        copy_collection(parquet, back, progress=False)
    assert back.namespaces() == {"a": 1, "b": 1} and back.get(["x"], namespace="b")[0].text == "b x"
    with ParquetSource(file) as parquet, pytest.raises(TransferError, match="namespaces"):
        copy_collection(parquet, open_collection(MemoryStore()), progress=False)
