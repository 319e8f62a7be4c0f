"""Fusing rankings: weighted reciprocal rank fusion of any number of them, and alpha-weighted score fusion.

Rank fusion (RRF) is the default everywhere rankings come from different scorers (two embedders, or a
dense leg and BM25): it needs no score calibration. Alpha fusion mixes the scores themselves, each leg
min-max normalised over its own candidates first (Weaviate's "relative score" fusion): ``alpha=1`` is the
dense leg alone, ``alpha=0`` the lexical leg alone (LlamaIndex's convention).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Hit

RRF_K = 60


def rrf(rankings: list[list[Hit]], k: int, constant: int = RRF_K, weights: Sequence[float] | None = None) -> list[Hit]:
    """Score = sum of weight / (constant + rank) over the rankings a hit appears in; ties break by id.

    The fused scores order the hits; they are not cosine similarities.
    """
    if weights is not None and len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for pos, ranking in enumerate(rankings):
        w = 1.0 if weights is None else float(weights[pos])
        for rank, hit in enumerate(ranking, 1):
            scores[hit.id] = scores.get(hit.id, 0.0) + w / (constant + rank)
            first.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda i: (-scores[i], i))[:k]
    return [Hit(i, scores[i], first[i].text, first[i].metadata, "rrf") for i in order]


def min_max(hits: list[Hit]) -> dict[str, float]:
    """Scores mapped to [0, 1] over this list (best 1, worst 0; a list of equal scores maps to 1)."""
    if not hits:
        return {}
    scores = [h.score for h in hits]
    low, high = min(scores), max(scores)
    span = high - low
    return {h.id: (h.score - low) / span if span > 0 else 1.0 for h in hits}


def alpha_fusion(dense: list[Hit], lexical: list[Hit], k: int, alpha: float) -> list[Hit]:
    """``alpha * dense + (1 - alpha) * lexical`` over min-max normalised scores; a hit missing from a leg
    scores 0 there. Ties break by id."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    d, lx = min_max(dense), min_max(lexical)
    first = {h.id: h for h in (*lexical, *dense)}
    scores = {i: alpha * d.get(i, 0.0) + (1.0 - alpha) * lx.get(i, 0.0) for i in first}
    order = sorted(scores, key=lambda i: (-scores[i], i))[:k]
    return [Hit(i, scores[i], first[i].text, first[i].metadata, "alpha") for i in order]


__all__ = ["RRF_K", "alpha_fusion", "min_max", "rrf"]
