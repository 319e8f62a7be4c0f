"""The bilingual query path: Chinese (or mixed) questions over English documents.

``detect`` tells Chinese from English by script; ``translate`` holds the translators (``dictionary``:
jieba + CC-CEDICT, offline) and their cache; ``query`` decides per query what to do (``off``,
``translate``, ``auto``) and reports what it did.
"""

from __future__ import annotations

from .detect import Language, detect_language, is_chinese
from .query import BilingualConfig, QueryPlan, plan_queries, plan_query
from .translate import CachedTranslator, DictionaryTranslator, Translator, create_translator

__all__ = [
    "BilingualConfig",
    "CachedTranslator",
    "DictionaryTranslator",
    "Language",
    "QueryPlan",
    "Translator",
    "create_translator",
    "detect_language",
    "is_chinese",
    "plan_queries",
    "plan_query",
]
