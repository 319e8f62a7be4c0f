"""Weighted reciprocal rank fusion of any number of rankings (translate + one or more multilingual routes).

Ranks, not scores, are fused because indexes built by different models give similarities on different
scales (E5 puts unrelated pairs near 0.7, USE near 0.1).
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
    return [Hit(i, scores[i], first[i].text, first[i].metadata) for i in order]
