"""The bilingual query path: Chinese (or mixed) questions over English documents.

``detect`` tells Chinese from English by script; ``translate`` holds the translators (``dictionary``:
jieba + CC-CEDICT, offline; ``marian``: a MarianMT model; ``llm``: an OpenAI-compatible endpoint) and their
cache; ``query`` decides per query what to do (``off``, ``translate``, ``route``, ``both``, ``auto``) and
reports what it did; ``fusion`` fuses the translated and routed rankings.
"""

from __future__ import annotations

from .detect import Language, detect_language, is_chinese
from .fusion import rrf
from .query import BilingualConfig, QueryPlan, plan_queries, plan_query
from .translate import (
    CachedTranslator,
    DictionaryTranslator,
    LLMTranslator,
    MarianTranslator,
    Translator,
    create_translator,
)

__all__ = [
    "BilingualConfig",
    "CachedTranslator",
    "DictionaryTranslator",
    "LLMTranslator",
    "Language",
    "MarianTranslator",
    "QueryPlan",
    "Translator",
    "create_translator",
    "detect_language",
    "is_chinese",
    "plan_queries",
    "plan_query",
    "rrf",
]
