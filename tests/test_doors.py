"""One behaviour from every door (issue 31, part 2): each friction a new user met, as a test that failed on
the code before it was fixed -- the server's errors in one shape, `/v1/models`, the binding hint, a quiet
`/readyz`, engine failures as 500s; the CLI's `--version`, help that tells the truth, whole ids, a one-line
YAML error, an embedder block without `type`, a hint on an empty store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragstore.cli import app as cli
from ragstore.config import load_config
from ragstore.errors import ConfigError

runner = CliRunner()
pytest.importorskip("fastapi", reason="needs: pip install 'ragstore[serve]'")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from ragstore.serve import create_app  # noqa: E402
from ragstore.serve.app import check_binding  # noqa: E402


@pytest.fixture
def served(tmp_path: Path) -> Any:
    """(TestClient, the Ragstore it serves)."""
    from ragstore.pipeline import Ragstore

    cfg = load_config(
        {
            "data_dir": str(tmp_path / "data"),
            "embedder": {"type": "hashing", "dim": 32},
            "store": {"type": "faiss", "path": str(tmp_path / "faiss")},
            "serve": {"max_body_bytes": 2_000},
        }
    )
    rs = Ragstore(cfg)
    with TestClient(create_app(cfg, pipeline=rs)) as c:
        yield c, rs


@pytest.fixture
def client(served: Any) -> Any:
    return served[0]


def _openai_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
    return dict(body["error"])


def test_models_are_listed_as_openai_lists_them(client: Any) -> None:
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["hashing"]
    assert listed["data"][0]["object"] == "model" and listed["data"][0]["owned_by"] == "ragstore"
    assert client.get("/v1/models/hashing").json()["id"] == "hashing"
    assert _openai_error(client.get("/v1/models/gpt-4"), 404)["code"] == "model_not_found"


def test_every_error_has_the_openai_shape(client: Any) -> None:
    assert "no route GET /no/such/path" in _openai_error(client.get("/no/such/path"), 404)["message"]
    assert (
        "not allowed"
        in _openai_error(client.put("/v1/embeddings", json={"model": "hashing", "input": "x"}), 405)["message"]
    )
    json_type = {"content-type": "application/json"}
    bad_utf8 = client.post("/v1/embeddings", content=b'{"model": "hashing", "input": "\xff\xfe"}', headers=json_type)
    _openai_error(bad_utf8, 400)

    def chunks() -> Any:  # no Content-Length: the limit is found while reading
        for _ in range(10):
            yield b" " * 500

    big = client.post("/v1/embeddings", content=chunks(), headers=json_type)
    assert "over 2000 bytes" in _openai_error(big, 413)["message"]
    small = client.post("/v1/embeddings", json={"model": "hashing", "input": "still fine"})
    assert small.status_code == 200


def test_readyz_does_not_tell_strangers_the_document_count(client: Any) -> None:
    client.post("/v1/documents", json={"documents": [{"text": "one"}]})
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/v1/info").json()["store"]["count"] == 1


def test_an_engine_failure_is_a_500_not_unavailable(served: Any) -> None:
    from ragstore.errors import EngineError

    client, rs = served
    client.post("/v1/documents", json={"documents": [{"text": "one"}]})
    primary = rs.collection.primary

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk I/O error")

    primary._search = broken
    try:
        error = _openai_error(client.post("/v1/search", json={"vector": [0.1] * 32, "k": 1}), 500)
        assert error["type"] == "server_error" and EngineError.__name__ in error["message"]
    finally:
        del primary._search


def test_binding_refusal_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--api-key"):
        check_binding("0.0.0.0", [])


# ----------------------------------------------------------------------------- the command line
@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "ragstore.yaml"
    path.write_text("embedder: {type: hashing, dim: 64}\nstore: {type: faiss}\n", encoding="utf-8")
    return path


def test_version() -> None:
    from ragstore import __version__

    res = runner.invoke(cli, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("ragstore ") and res.output.split()[1][0].isdigit()
    assert __version__


def test_alpha_help_says_what_the_default_is() -> None:
    res = runner.invoke(cli, ["search", "--help"], env={"COLUMNS": "200"})
    assert "(default: rrf)" not in res.output and "alpha fusion at 0.5" in " ".join(res.output.split())


def test_long_ids_are_shown_whole(cfg: Path, tmp_path: Path) -> None:
    long_id = "report-2024/section-7/" + "x" * 60 + "/end"
    from ragstore import open as rs_open

    with rs_open(cfg) as rs:
        rs.add(["a passage about quarterly figures"], ids=[long_id])
    res = runner.invoke(cli, ["search", "quarterly figures", "-c", str(cfg)], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    cells = [line.split("│")[3].strip() for line in res.output.splitlines() if line.count("│") >= 4]
    assert "".join(cells) == long_id  # folded over lines, never cut with an ellipsis


def test_empty_store_says_how_to_fill_it(cfg: Path) -> None:
    res = runner.invoke(cli, ["search", "anything", "-c", str(cfg)])
    assert res.exit_code == 0 and "ragstore ingest" in res.output


def test_broken_yaml_is_one_line_with_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("store:\n  type: faiss\n   path: x\nembedder: [\n", encoding="utf-8")
    res = runner.invoke(cli, ["info", "-c", str(bad)])
    assert res.exit_code == 2 and "line 3" in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(" ".join(lines)) < 300 and "^" not in res.output  # no parser dump with a caret under the line


def test_embedder_block_without_type_is_sentence_transformers(tmp_path: Path) -> None:
    config = load_config({"embedder": {"model": "all-MiniLM-L6-v2", "batch_size": 8}})
    cls, options = config.embedder_spec()
    assert cls.name == "sentence-transformers" and options["model"] == "all-MiniLM-L6-v2"


def test_embeddings_without_a_model_are_refused_naming_the_served_one(client: Any) -> None:
    error = _openai_error(client.post("/v1/embeddings", json={"input": "x"}), 400)
    assert error["param"] == "model" and "'hashing'" in error["message"] and "/v1/models" in error["message"]
    assert _openai_error(client.post("/v1/embeddings", json={"model": "", "input": "x"}), 400)["param"] == "model"
    assert client.post("/v1/embeddings", json={"model": "hashing", "input": "x"}).status_code == 200


def test_hybrid_from_the_server_builds_the_index_like_every_other_door(served: Any) -> None:
    """Default config (no `lexical: true`): POST /v1/search with mode hybrid answers, as the CLI did."""
    client, rs = served
    docs = [{"id": "esa", "text": "an electronic service address (ESA) receives SuperStream messages"}]
    docs += [{"id": f"n{i}", "text": f"unrelated note number {i} about gardening"} for i in range(5)]
    assert client.post("/v1/documents", json={"documents": docs}).status_code == 200
    assert not rs.collection.lexical
    found = client.post("/v1/search", json={"query": "ESA", "k": 3, "mode": "hybrid"})
    assert found.status_code == 200, found.text
    assert found.json()["hits"][0]["id"] == "esa"
    lexical = client.post("/v1/search", json={"query": "gardening", "k": 2, "mode": "lexical"}).json()
    assert {h["id"] for h in lexical["hits"]} <= {f"n{i}" for i in range(5)}
    assert rs.collection.lexical


def test_every_score_says_its_scale(cfg: Path) -> None:
    """Fused scores are rank-fusion numbers: Hit.scale, the CLI's column header and --json say so."""
    import json

    from ragstore.types import SCALES

    assert runner.invoke(cli, ["demo", "-c", str(cfg)]).exit_code == 0
    dense = runner.invoke(cli, ["search", "electronic service address", "-c", str(cfg), "-k", "2", "--json"])
    answer = json.loads(dense.stdout)
    assert {h["scale"] for h in answer["hits"]} == {"cosine"} and answer["plan"]["search"] == "dense"
    hybrid = runner.invoke(cli, ["search", "electronic service address", "-c", str(cfg), "--mode", "hybrid"])
    assert hybrid.exit_code == 0, hybrid.output
    assert "score (alpha)" in hybrid.output and SCALES["alpha"][:30] in " ".join(hybrid.output.split())
    lexical = runner.invoke(cli, ["search", "electronic", "-c", str(cfg), "--mode", "lexical", "--json"])
    assert {h["scale"] for h in json.loads(lexical.stdout)["hits"]} == {"bm25"}


def test_json_carries_the_plan_of_a_translated_question(tmp_path: Path) -> None:
    import json

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'd'}\nembedder: {{type: hashing, dim: 32}}\nbilingual: {{mode: translate}}\n",
        encoding="utf-8",
    )
    assert runner.invoke(cli, ["demo", "-c", str(cfg)]).exit_code == 0
    out = runner.invoke(cli, ["search", "养老金", "-c", str(cfg), "--json"])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.stdout)["plan"]
    assert plan["path"] == "translate" and plan["language"] in ("zh", "mixed") and plan["translated"]
    assert plan["translated"] == plan["embedded"] and "养老金" not in plan["embedded"]


def test_python_hits_carry_their_scale(served: Any) -> None:
    _, rs = served
    rs.add(["the ESA receives SuperStream messages", "gardening notes", "pension age rules"])
    assert {h.scale for h in rs.search("ESA", 2)} == {"cosine"}
    assert {h.scale for h in rs.search("ESA", 2, mode="lexical")} == {"bm25"}
    assert {h.scale for h in rs.search("ESA", 2, mode="hybrid")} == {"alpha"}
    from ragstore.lexical import HybridConfig

    (fused,) = rs.retriever.search(rs.collection, ["ESA"], 2, search="hybrid", hybrid=HybridConfig(fusion="rrf"))
    assert {h.scale for h in fused.hits} == {"rrf"}


def test_an_embedding_failure_is_an_engine_error_on_every_call(served: Any) -> None:
    """errors.py promises that anything escaping unmapped is a bug: a model's own failure becomes an
    EngineError (chained), and serve answers it with 500, not 503."""
    from ragstore.embedders.hashing import HashingEmbedder
    from ragstore.errors import BackendUnavailableError, EngineError

    class Broken(HashingEmbedder):
        def _embed(self, texts: list[str], kind: Any) -> Any:
            raise RuntimeError("CUDA out of memory (pretend)")

    broken = Broken(dim=32)
    for call in (broken.embed_query, broken.embed_documents):
        with pytest.raises(EngineError, match="CUDA out of memory") as info:
            call(["x"])
        assert isinstance(info.value.__cause__, RuntimeError)
        assert not isinstance(info.value, BackendUnavailableError)
    client, _ = served
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HashingEmbedder, "_embed", Broken._embed)
        answer = client.post("/v1/embeddings", json={"model": "hashing", "input": "a text never embedded before"})
    error = _openai_error(answer, 500)
    assert error["type"] == "server_error" and "CUDA out of memory" in error["message"]


def test_one_search_spec_resolved_once_for_every_door(served: Any) -> None:
    """Per-call overrides meet the config's defaults in one place (Retriever.resolve -> a frozen SearchSpec):
    the Python door, the server and the integrations pass their own words in, and get the same checks."""
    import dataclasses

    from ragstore.errors import ValidationError
    from ragstore.query.retrieval import SearchSpec

    client, rs = served
    rs.add(["the ESA receives SuperStream messages", "gardening notes", "pension age rules"])
    spec = rs.retriever.resolve(3, {"x": 1}, search="hybrid", alpha=0.25)
    assert isinstance(spec, SearchSpec) and spec.fusion.method == "alpha" and spec.fusion.alpha == 0.25
    assert spec.fusion.bilingual_rrf_k == rs.config.bilingual.rrf_k and spec.fusion.rrf_k == 60
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.k = 4  # type: ignore[misc]
    assert rs.retriever.resolve(3, fusion="rrf").fusion.method == "rrf"
    with pytest.raises(ValidationError, match=r"alpha must be a number in \[0, 1\]"):
        rs.search("ESA", 2, mode="hybrid", alpha=2)
    with pytest.raises(ValidationError, match="k must be a positive integer"):
        rs.retriever.resolve(0)
    python = rs.search("ESA", 3, mode="hybrid", alpha=0.25)
    served_hits = client.post("/v1/search", json={"query": "ESA", "k": 3, "mode": "hybrid", "alpha": 0.25}).json()
    assert [h.id for h in python] == [h["id"] for h in served_hits["hits"]]
    assert [round(h.score, 6) for h in python] == [round(h["score"], 6) for h in served_hits["hits"]]
    assert _openai_error(client.post("/v1/search", json={"query": "ESA", "alpha": 2}), 400)["param"] in ("alpha", None)


def test_set_overrides_any_config_key_for_one_call(cfg: Path, tmp_path: Path) -> None:
    """`--set a.b=value` instead of one hand-made flag per option: values read as YAML, checked by the
    config models (a misspelt key is named), a mapping merged, null removing a key."""
    import json

    from ragstore.cli import _sets

    assert _sets(["store.type=qdrant", "search.k=3", "bilingual={mode: auto}", "store.index=null"]) == {
        "store": {"type": "qdrant", "index": None},
        "search": {"k": 3},
        "bilingual": {"mode": "auto"},
    }
    assert runner.invoke(cli, ["demo", "-c", str(cfg)]).exit_code == 0
    out = runner.invoke(cli, ["search", "electronic service address", "-c", str(cfg), "--json", "--set", "search.k=2"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.stdout)["hits"]) == 2
    info = runner.invoke(cli, ["info", "-c", str(cfg), "--set", f"data_dir={tmp_path / 'elsewhere'}"])
    assert info.exit_code == 0 and "elsewhere" in info.output
    bad = runner.invoke(cli, ["info", "-c", str(cfg), "--set", "store.indx=hnsw"])
    assert bad.exit_code == 2 and "indx" in bad.output
    worse = runner.invoke(cli, ["info", "-c", str(cfg), "--set", "store.type"])
    assert worse.exit_code == 2 and "KEY=VALUE" in worse.output


def test_bilingual_mode_off_unquoted_in_yaml(tmp_path: Path) -> None:
    """`bilingual: {mode: off}` (as the docs write it) is YAML's false: it means off, not an error."""
    path = tmp_path / "c.yaml"
    path.write_text("embedder: {type: hashing, dim: 8}\nbilingual: {mode: off}\n", encoding="utf-8")
    assert load_config(path).bilingual.mode == "off"
    with pytest.raises(ConfigError, match=r"bilingual\.mode"):
        load_config({"bilingual": {"mode": True}})
