"""Query paths: how a query text becomes hits. The bench compares them like it compares stores.

Each path is a bilingual mode of the one retrieval component (``ragstore.retrieval``) that users call:
``plain`` (mode off), ``translate``, ``route`` and ``both``. A path prepares all query texts once (planning,
translating, embedding) outside the timed part; latency and QPS time ``Prepared.run``, so a path that
searches twice and fuses pays for both searches in its figures.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..retrieval import PATH_MODES, Prepared, Retriever

QUERY_PATHS = tuple(PATH_MODES)
NEEDS_MULTILINGUAL = frozenset({"route", "both"})

__all__ = ["NEEDS_MULTILINGUAL", "QUERY_PATHS", "Prepared", "prepare", "query_path"]


def query_path(name: str) -> str:
    """The bilingual mode behind a path name (``ConfigError`` for an unknown one)."""
    try:
        return PATH_MODES[name]
    except KeyError:
        raise ConfigError(f"unknown query path {name!r}; known: {', '.join(QUERY_PATHS)}") from None


def prepare(retriever: Retriever, name: str, texts: list[str]) -> Prepared:
    if name in NEEDS_MULTILINGUAL and retriever.multilingual is None:
        raise ConfigError(f"query path {name!r} needs a multilingual embedder (bench multilingual:)")
    return retriever.prepare(texts, query_path(name))
