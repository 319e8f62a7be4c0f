"""BEIR loading (languages, pooling, validation before any work) and pytrec_eval-based metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ragstore.data.beir import bundled_dataset, languages, load_beir
from ragstore.errors import DatasetError
from ragstore.pipeline import sample_dataset

XQUAD = bundled_dataset("xquad-r")  # vendored in benchmarks/datasets, ships in the wheel


def test_sample_dataset_languages() -> None:
    folder = sample_dataset()
    assert languages(folder) == {"corpus": ["en"], "queries": ["en", "zh"]}
    zh = load_beir(folder, query_lang="zh")
    assert zh.corpus_langs == ["en"] and zh.query_lang == "zh"  # Chinese questions over the English corpus
    assert len(zh.corpus) == 62 and len(zh.queries) == 40 and set(zh.qrels) == set(zh.queries)
    en = load_beir(folder)
    assert en.query_lang == "en" and en.fingerprint != zh.fingerprint
    assert en.corpus[0].metadata["lang"] == "en" and "topic" in en.corpus[0].metadata


def test_xquad_pooled_corpus_uses_the_union_of_judgments() -> None:
    pooled = load_beir(XQUAD, query_lang="zh", corpus_langs="en+zh")
    assert pooled.corpus_langs == ["en", "zh"] and len(pooled.corpus) == 1180 + 1196
    some = next(iter(pooled.qrels.values()))
    assert {d.split("-")[0] for d in some} == {"en", "zh"}
    cross = load_beir(XQUAD, query_lang="zh", corpus_langs=["en"])
    assert all(d.startswith("en-") for rel in cross.qrels.values() for d in rel)
    assert len(cross.queries) == 1190


def _write(root: Path, corpus: list[dict], queries: list[dict], qrels: str) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels, encoding="utf-8")
    return root


GOOD_CORPUS = [{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}]
GOOD_QUERIES = [{"_id": "q1", "text": "x"}, {"_id": "q2", "text": "y"}]


def test_queries_without_judgments_are_counted_not_evaluated(tmp_path: Path) -> None:
    ds = load_beir(_write(tmp_path / "ok", GOOD_CORPUS, GOOD_QUERIES, "q1\td1\t1\n"))
    assert list(ds.queries) == ["q1"] and ds.dropped == {"queries_without_judgments": 1}


@pytest.mark.parametrize(
    ("corpus", "queries", "qrels", "message"),
    [
        (GOOD_CORPUS, GOOD_QUERIES, "q1\tnope\t1\n", "passages not in the corpus"),
        (GOOD_CORPUS, GOOD_QUERIES, "q9\td1\t1\n", "unknown queries"),
        (GOOD_CORPUS, GOOD_QUERIES, "q1\td1\n", "expected query-id, corpus-id, score"),
        (GOOD_CORPUS, GOOD_QUERIES, "q1\td1\thigh\n", "is not a number"),
        ([{"_id": "d1"}], GOOD_QUERIES, "q1\td1\t1\n", "needs a string 'text'"),
        ([{"text": "no id"}], GOOD_QUERIES, "q1\td1\t1\n", "needs an '_id'"),
    ],
)
def test_bad_datasets_fail_before_any_work(
    tmp_path: Path, corpus: list, queries: list, qrels: str, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        load_beir(_write(tmp_path / "ds", corpus, queries, qrels))


def test_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no queries\.jsonl"):
        load_beir(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no queries for language 'fr'"):
        load_beir(sample_dataset(), query_lang="fr")
    root = _write(tmp_path / "noqrels", GOOD_CORPUS, GOOD_QUERIES, "")
    (root / "qrels" / "test.tsv").unlink()
    with pytest.raises(DatasetError, match=r"qrels/test\.tsv"):
        load_beir(root)


def test_metrics_match_hand_computed_values() -> None:
    from ragstore.eval.metrics import evaluate

    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"d": 1}}
    run = {
        "q1": {"a": 0.9, "x": 0.5},  # relevant first
        "q2": {"x": 0.9, "b": 0.8, "y": 0.7, "c": 0.1},  # relevant at ranks 2 and 4
        # q3 returned nothing: it still counts, as 0
    }
    got = evaluate(qrels, run)
    ndcg_q2 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert got["nDCG@10"] == pytest.approx((1 + ndcg_q2 + 0) / 3)
    assert got["MRR@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert got["Recall@1"] == pytest.approx((1 + 0 + 0) / 3)
    assert got["Recall@10"] == pytest.approx((1 + 1 + 0) / 3)
    assert got["MAP@100"] == pytest.approx((1 + (0.5 + 0.5) / 2 + 0) / 3)


def test_mrr_is_cut_at_ten() -> None:
    from ragstore.eval.metrics import evaluate

    run = {"q": {f"x{i}": 1.0 - i / 100 for i in range(11)} | {"rel": 0.0}}
    assert evaluate({"q": {"rel": 1}}, run, ["MRR@10"]) == {"MRR@10": 0.0}
