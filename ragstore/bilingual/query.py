"""Per query: detect the language, then decide what to search, and say what was done.

Modes: ``off`` (embed the query as written), ``translate`` (translate every query that contains Chinese,
keeping its Latin words), ``route`` (embed it with the multilingual embedders and search their indexes,
fusing them when there are several), ``both`` (the fusion members: translate and/or routes), ``auto``
(English plain; Chinese and mixed ``both`` when a multilingual index exists, else ``translate``).
Queries in other scripts (kana, Hangul, Arabic...) are never glossed by the Chinese dictionary: with a
multilingual index they go to the routes as written, else they are searched plain; the plan names the
script either way.
Empty queries and queries with no letters or digits (only punctuation or emoji) are refused; very long
queries are cut to ``max_chars`` with a warning, before anything is embedded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ValidationError
from .config import TRANSLATE, BilingualConfig, Mode
from .detect import Language, detect_language, detect_script
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
    route_text: str | None = None  # what the multilingual embedders embed (route, both)
    members: list[str] = field(default_factory=list)  # rankings fused: "translate" and route names
    script: str = ""  # e.g. Han, Latin, Japanese (kana), Arabic
    search: str = "dense"  # dense, lexical or hybrid (set by the retriever)
    lexical_text: str | None = None  # what the lexical leg looks up (lexical, hybrid)

    @property
    def english_text(self) -> str:
        """The text an English index sees: the translation where one was made, else the query as written."""
        return self.text if self.searches_main else (self.route_text or self.text)

    @property
    def translated(self) -> str | None:
        return self.text if TRANSLATE in self.members else None

    @property
    def routes(self) -> list[str]:
        """The multilingual indexes this query searches."""
        return [m for m in self.members if m != TRANSLATE]

    @property
    def searches_main(self) -> bool:
        return not self.members or TRANSLATE in self.members

    def as_dict(self) -> dict[str, Any]:
        """What ran for this query, as every door shows it (``--json``, ``POST /v1/search``): the path and
        its members, the detected language and script, the text embedded (the translation where one was
        made), the search mode and the lexical leg's text, and notes."""
        return {
            "path": self.path,
            "members": list(self.members),
            "language": self.language,
            "script": self.script,
            "embedded": self.text,
            "translated": self.translated,
            "route_text": self.route_text,
            "search": self.search,
            "lexical_text": self.lexical_text,
            "notes": list(self.notes),
        }


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
    routes: list[str] | None = None,
    members: list[str] | None = None,
) -> list[QueryPlan]:
    """Plans for a batch (translations done in one call, so a batch pays the translator once).

    ``routes``: the multilingual indexes there are (``multilingual=True`` alone means one, named ``ml``);
    ``members``: what ``both`` fuses (default: translate + every route) -- ``route`` fuses every route
    named in it, or every route. ``auto`` picks per query: English plain; Chinese and mixed ``both`` when a
    route exists, else ``translate``.
    """
    have = list(routes) if routes is not None else (["ml"] if multilingual else [])
    if mode in ("route", "both") and not have:
        raise ValidationError(f"bilingual mode {mode!r} needs a multilingual index (bilingual.multilingual)")
    fused = list(members) if members is not None else [TRANSLATE, *have]
    unknown = [m for m in fused if m != TRANSLATE and m not in have]
    if unknown:
        raise ValidationError(f"fusion members {', '.join(unknown)} are not configured routes ({', '.join(have)})")
    routed = [m for m in fused if m != TRANSLATE] or have
    plans = []
    for raw in texts:
        text, notes = check_query(raw, max_chars)
        plans.append(QueryPlan(raw, detect_language(text), "plain", text, notes, script=detect_script(text)))
    if mode == "off":
        return plans
    chosen: Mode = "both" if mode == "auto" and have else ("translate" if mode == "auto" else mode)
    for p in plans:
        if p.language in ("zh", "mixed"):
            p.path = chosen  # type: ignore[assignment]
            p.members = {"translate": [TRANSLATE], "route": routed, "both": fused}[chosen]
        elif p.language == "other":
            if have and chosen in ("route", "both"):
                p.path, p.members = "route", routed
                p.notes.append(f"{p.script} script: searched through the multilingual index as written")
            else:
                p.notes.append(f"{p.script} script, not supported by the translator: searched untranslated")
        if p.routes:
            p.route_text = p.text
    to_translate = [p for p in plans if TRANSLATE in p.members]
    if to_translate:
        if translator is None:
            raise ValidationError(f"bilingual mode {mode!r} needs a translator")
        for p, english in zip(to_translate, translator.translate([p.text for p in to_translate]), strict=True):
            p.text = english
    return plans


def plan_query(text: str, mode: Mode, translator: Translator | None, max_chars: int = 1000) -> QueryPlan:
    return plan_queries([text], mode, translator, max_chars)[0]
