"""Per query: detect the language, then decide whether to translate, and say what was done.

Modes: ``off`` (embed the query as written), ``translate`` (translate every query that contains Chinese,
keeping its Latin words), ``auto`` (the same decision made from the detected language: Chinese and mixed
queries are translated, English ones are not, other scripts pass through untranslated with a note).
Empty queries and queries with no letters or digits (only punctuation or emoji) are refused; very long
queries are cut to ``max_chars`` with a warning, before anything is embedded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

from ..config import BilingualConfig, Mode
from ..errors import ValidationError
from .detect import Language, detect_language
from .translate import Translator

__all__ = ["BilingualConfig", "Mode", "QueryPlan", "check_query", "plan_queries", "plan_query"]


@dataclass
class QueryPlan:
    """What happens to one query: the text to embed, the path taken and why."""

    original: str
    language: Language
    path: Literal["plain", "translate"]
    text: str
    notes: list[str] = field(default_factory=list)

    @property
    def translated(self) -> str | None:
        return self.text if self.path == "translate" else None


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


def plan_queries(texts: list[str], mode: Mode, translator: Translator | None, max_chars: int = 1000) -> list[QueryPlan]:
    """Plans for a batch (translations done in one call, so a batch pays the translator once)."""
    plans = []
    for raw in texts:
        text, notes = check_query(raw, max_chars)
        lang = detect_language(text)
        plans.append(QueryPlan(raw, lang, "plain", text, notes))
    if mode == "off":
        return plans
    todo = [p for p in plans if p.language in ("zh", "mixed")]
    for p in plans:
        if p.language == "other":
            p.notes.append("script not supported by the translator: searched untranslated")
    if todo:
        if translator is None:
            raise ValidationError(f"bilingual mode {mode!r} needs a translator")
        for p, english in zip(todo, translator.translate([p.text for p in todo]), strict=True):
            p.path, p.text = "translate", english
    return plans


def plan_query(text: str, mode: Mode, translator: Translator | None, max_chars: int = 1000) -> QueryPlan:
    return plan_queries([text], mode, translator, max_chars)[0]
