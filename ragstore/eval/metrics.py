"""Retrieval quality with pytrec_eval (the trec_eval reference implementation), not hand-written metrics.

Every judged query counts: one with no results scores 0 rather than silently leaving the average.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._optional import require

#: name shown to people -> (pytrec_eval measure, its result key, cut applied to the run first)
MEASURES: dict[str, tuple[str, str, int | None]] = {
    "nDCG@10": ("ndcg_cut.10", "ndcg_cut_10", None),
    "Recall@1": ("recall.1", "recall_1", None),
    "Recall@10": ("recall.10", "recall_10", None),
    "Recall@100": ("recall.100", "recall_100", None),
    "MRR@10": ("recip_rank", "recip_rank", 10),
    "MAP@100": ("map_cut.100", "map_cut_100", None),
}

Run = Mapping[str, Mapping[str, float]]


def _cut(run: Run, k: int) -> dict[str, dict[str, float]]:
    out = {}
    for qid, scores in run.items():
        top = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        out[qid] = dict(top)
    return out


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Run, measures: list[str] | None = None) -> dict[str, float]:
    """Mean of each measure over all judged queries (``run``: query id -> {passage id: score})."""
    names = measures or list(MEASURES)
    per = evaluate_per_query(qrels, run, names)
    return {name: sum(per[name].values()) / max(len(per[name]), 1) for name in names}


def evaluate_per_query(
    qrels: Mapping[str, Mapping[str, int]], run: Run, measures: list[str] | None = None
) -> dict[str, dict[str, float]]:
    """Each measure for each judged query (0 where the run has nothing for it): what a paired comparison of
    two systems on the same queries needs."""
    pytrec_eval = require("pytrec_eval", "bench", "pytrec-eval-terrier")
    names = measures or list(MEASURES)
    judged = {q: dict(rel) for q, rel in qrels.items()}
    result: dict[str, dict[str, float]] = {}
    by_cut: dict[int | None, list[str]] = {}
    for name in names:
        by_cut.setdefault(MEASURES[name][2], []).append(name)
    for cut, group in by_cut.items():
        run_part = {
            q: {d: float(s) for d, s in scores.items()} for q, scores in (_cut(run, cut) if cut else run).items()
        }
        evaluator = pytrec_eval.RelevanceEvaluator(judged, {MEASURES[n][0] for n in group})
        per_query = evaluator.evaluate({q: s for q, s in run_part.items() if q in judged and s})
        for name in group:
            key = MEASURES[name][1]
            result[name] = {q: per_query.get(q, {}).get(key, 0.0) for q in judged}
    return {name: result[name] for name in names}
