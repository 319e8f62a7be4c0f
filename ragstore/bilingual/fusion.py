"""Weighted reciprocal rank fusion of any number of rankings (translate + one or more multilingual routes).

Ranks, not scores, are fused because indexes built by different models give similarities on different
scales (E5 puts unrelated pairs near 0.7, USE near 0.1). The function lives in ``ragstore.query.fusion``, shared
with hybrid (dense + lexical) search.
"""

from __future__ import annotations

from ..query.fusion import RRF_K, rrf

__all__ = ["RRF_K", "rrf"]
