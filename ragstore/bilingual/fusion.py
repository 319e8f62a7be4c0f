"""Reciprocal rank fusion of several rankings (mode ``both``: the translated and the routed search)."""

from __future__ import annotations

from ..types import Hit

RRF_K = 60


def rrf(rankings: list[list[Hit]], k: int, constant: int = RRF_K) -> list[Hit]:
    """Score = sum of 1 / (constant + rank) over the rankings a hit appears in; ties break by id.

    Fusing ranks, not scores, because two indexes built by different models give similarities on different
    scales. The fused scores order the hits; they are not cosine similarities.
    """
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (constant + rank)
            first.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda i: (-scores[i], i))[:k]
    return [Hit(i, scores[i], first[i].text, first[i].metadata) for i in order]
