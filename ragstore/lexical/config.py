"""How a query combines the dense and lexical legs (the ``search`` block of a config; overridable per call)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SearchMode = Literal["dense", "lexical", "hybrid"]
SEARCH_MODES: tuple[str, ...] = ("dense", "lexical", "hybrid")
LEXICAL = "lexical"  # the fusion member name of the lexical leg


class HybridConfig(BaseModel):
    """``alpha`` (default): ``alpha * dense + (1 - alpha) * lexical`` over scores min-max normalised per leg
    (``alpha=1`` dense only, ``0`` lexical only); ``rrf``: weighted reciprocal rank fusion of the legs
    (``rrf_k``; the lexical leg counts ``weight``). A bilingual query that already fuses several dense
    rankings (``both``, ``route`` with several routes) adds the lexical leg to that RRF whichever fusion is
    set (constant: ``bilingual.rrf_k``). Each leg contributes ``candidates`` hits (at least k)."""

    model_config = ConfigDict(extra="forbid")

    fusion: Literal["rrf", "alpha"] = Field(
        default="alpha",
        description="alpha (default: best on held-out xquad-r questions, benchmarks/results/hybrid-fusion.md) or rrf",
    )
    alpha: float = Field(default=0.5, ge=0, le=1, description="alpha fusion: share of the dense leg")
    rrf_k: int = Field(default=60, gt=0, description="rrf fusion constant")
    weight: float = Field(
        default=1.25, gt=0, description="rrf weight of the lexical leg (tuned on xquad-r's dev half; dense legs: 1)"
    )
    candidates: int = Field(default=50, gt=0, le=1000, description="hits each leg contributes before fusion")


__all__ = ["LEXICAL", "SEARCH_MODES", "HybridConfig", "SearchMode"]
