"""Fusing rankings: weighted reciprocal rank fusion of any number of them, and alpha-weighted score fusion.

Rank fusion (RRF) is the default everywhere rankings come from different scorers (two embedders, or a
dense leg and BM25): it needs no score calibration. Alpha fusion mixes the scores themselves, each leg
min-max normalised over its own candidates first (Weaviate's "relative score" fusion): ``alpha=1`` is the
dense leg alone, ``alpha=0`` the lexical leg alone (LlamaIndex's convention).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Hit, Ranked

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
    return dict(zip((h.id for h in hits), _normalised([h.score for h in hits]), strict=True))


def _normalised(scores: list[float]) -> list[float]:
    """Min-max over one leg's candidates (plain floats: for 50 of them, faster than numpy's calls)."""
    if not scores:
        return scores
    low, high = min(scores), max(scores)
    span = high - low
    return [(s - low) / span for s in scores] if span > 0 else [1.0] * len(scores)


def alpha_fusion(dense: list[Hit], lexical: list[Hit], k: int, alpha: float) -> list[Hit]:
    """``alpha * dense + (1 - alpha) * lexical`` over min-max normalised scores; a hit missing from a leg
    scores 0 there. Ties break by id."""
    first = {h.id: h for h in (*lexical, *dense)}
    fused = alpha_fusion_ranked(Ranked.of(_once(dense)), Ranked.of(_once(lexical)), k, alpha)
    for hit in fused:
        hit.text, hit.metadata = first[hit.id].text, first[hit.id].metadata
    return fused


def _once(hits: list[Hit]) -> list[Hit]:
    """A ranking lists each id once (its first, best, place)."""
    seen: set[str] = set()
    return [h for h in hits if not (h.id in seen or seen.add(h.id))]  # type: ignore[func-returns-value]


def alpha_fusion_ranked(dense: Ranked, lexical: Ranked, k: int, alpha: float) -> list[Hit]:
    """``alpha_fusion`` of two legs given as arrays; the hits carry ids and scores (text ``""``, no
    metadata) for the caller to fill. The one implementation: ``alpha_fusion`` calls it."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ids = list(dense.ids)
    total = [alpha * x for x in _normalised(dense.scores.tolist())]
    pos = dict(zip(ids, range(len(ids)), strict=True))
    share = 1.0 - alpha
    for doc_id, x in zip(lexical.ids, _normalised(lexical.scores.tolist()), strict=True):
        n = pos.get(doc_id)
        if n is None:  # the same sums, in the same order, as alpha * d + (1 - alpha) * l with 0 for a miss
            ids.append(doc_id)
            total.append(0.0 + share * x)
        else:
            total[n] += share * x
    if len(total) > k:  # the k best and every tie of the k-th; the exact order (ties by id) among those
        kth = sorted(total, reverse=True)[k - 1]
        picked = [(sc, i) for sc, i in zip(total, ids, strict=True) if sc >= kth]
    else:
        picked = list(zip(total, ids, strict=True))
    picked.sort(key=lambda t: (-t[0], t[1]))
    return [Hit(doc_id, sc, "", {}, "alpha") for sc, doc_id in picked[:k]]


__all__ = ["RRF_K", "alpha_fusion", "alpha_fusion_ranked", "min_max", "rrf"]
