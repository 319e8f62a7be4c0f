"""Per query: detect the language, then decide whether to translate, and say what was done.

Modes: ``off`` (embed the query as written), ``translate`` (translate every query that contains Chinese,
keeping its Latin words), ``route`` (embed Chinese queries with the multilingual embedder and search the
second index), ``both`` (translate and route, fuse the two rankings with reciprocal rank fusion), ``auto``
(English plain; Chinese and mixed ``both`` when a multilingual index exists, else ``translate``; other
scripts pass through untranslated with a note).
Empty queries and queries with no letters or digits (only punctuation or emoji) are refused; very long
queries are cut to ``max_chars`` with a warning, before anything is embedded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ValidationError
from .config import BilingualConfig, Mode
from .detect import Language, detect_language
from .translate import Translator

__all__ = ["BilingualConfig", "Mode", "QueryPlan", "check_query", "plan_queries", "plan_query"]


@dataclass
class QueryPlan:
    """What happens to one query: the text to embed, the path taken and why."""

    original: str
    language: Language
    path: Literal["plain", "translate", "route", "both"]
    text: str  # what the main (English) embedder embeds
    notes: list[str] = field(default_factory=list)
    route_text: str | None = None  # what the multilingual embedder embeds (route, both)

    @property
    def translated(self) -> str | None:
        return self.text if self.path in ("translate", "both") else None


def check_query(text: object, max_chars: int) -> tuple[str, list[str]]:
    if not isinstance(text, str):
        raise ValidationError(f"query must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValidationError("query is empty")
    if not any(ch.isalnum() for ch in text):
        raise ValidationError(f"query {text!r} has no letters or digits (only punctuation or symbols)")
    notes = []
    if len(text) > max_chars:
        msg = f"query of {len(text)} characters truncated to {max_chars}"
        warnings.warn(msg, stacklevel=3)
        notes.append(msg)
        text = text[:max_chars]
    return text, notes


def plan_queries(
    texts: list[str],
    mode: Mode,
    translator: Translator | None,
    max_chars: int = 1000,
    *,
    multilingual: bool = False,
) -> list[QueryPlan]:
    """Plans for a batch (translations done in one call, so a batch pays the translator once).

    ``auto`` picks per query: English (and other scripts) plain; Chinese and mixed ``both`` when a
    multilingual index exists, else ``translate``.
    """
    if mode in ("route", "both") and not multilingual:
        raise ValidationError(f"bilingual mode {mode!r} needs a multilingual index (bilingual.multilingual)")
    plans = []
    for raw in texts:
        text, notes = check_query(raw, max_chars)
        plans.append(QueryPlan(raw, detect_language(text), "plain", text, notes))
    if mode == "off":
        return plans
    chinese = [p for p in plans if p.language in ("zh", "mixed")]
    for p in plans:
        if p.language == "other":
            p.notes.append("script not supported by the translator: searched untranslated")
    chosen = "both" if mode == "auto" and multilingual else ("translate" if mode == "auto" else mode)
    for p in chinese:
        p.path = chosen
        if chosen in ("route", "both"):
            p.route_text = p.text
    to_translate = [p for p in chinese if p.path in ("translate", "both")]
    if to_translate:
        if translator is None:
            raise ValidationError(f"bilingual mode {mode!r} needs a translator")
        for p, english in zip(to_translate, translator.translate([p.text for p in to_translate]), strict=True):
            p.text = english
    return plans


def plan_query(text: str, mode: Mode, translator: Translator | None, max_chars: int = 1000) -> QueryPlan:
    return plan_queries([text], mode, translator, max_chars)[0]
