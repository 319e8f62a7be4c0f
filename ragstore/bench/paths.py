"""Query paths: how a query text becomes hits. The bench compares them like it compares stores.

Each path is a bilingual mode of the one retrieval component (``ragstore.query.retrieval``) that users call:
``plain`` (mode off), ``translate``, ``route`` and ``both``; ``route:<name>`` searches one multilingual
index and ``both:<a>+<b>+...`` fuses the named members (``translate`` and route names). A path prepares all
query texts once (planning, translating, embedding) outside the timed part; latency and QPS time
``Prepared.run``, so a path that searches three indexes and fuses pays for all three in its figures.
A ``/lexical`` or ``/hybrid`` suffix (``translate/hybrid``; bare ``hybrid`` is ``plain/hybrid``) searches the
store's BM25 index alone or fuses it with the path's dense rankings.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..query.retrieval import PATH_MODES, Prepared, Retriever, parse_path, split_search

QUERY_PATHS = tuple(PATH_MODES)
NEEDS_MULTILINGUAL = frozenset({"route", "both"})

__all__ = ["NEEDS_MULTILINGUAL", "QUERY_PATHS", "Prepared", "needs_lexical", "needs_routes", "prepare", "query_path"]


def needs_lexical(name: str) -> bool:
    """Whether the path searches the lexical index (``lexical``, ``hybrid``, ``<path>/hybrid``...)."""
    return split_search(name)[1] != "dense"


def query_path(name: str) -> str:
    """The bilingual mode behind a path name (``ConfigError`` for an unknown one)."""
    return parse_path(name)[0]


def needs_routes(name: str) -> bool:
    mode, members = parse_path(name)
    return mode in NEEDS_MULTILINGUAL and (members is None or any(m != "translate" for m in members))


def prepare(retriever: Retriever, name: str, texts: list[str]) -> Prepared:
    mode, members = parse_path(name)
    if needs_routes(name) and not retriever.routes:
        raise ConfigError(f"query path {name!r} needs a multilingual embedder (bench multilingual:)")
    if members is not None:
        missing = [m for m in members if m != "translate" and m not in retriever.routes]
        if missing:
            known = ", ".join(["translate", *retriever.routes])
            raise ConfigError(f"query path {name!r} names {', '.join(missing)}; known members: {known}")
    return retriever.prepare(texts, mode, members=members, search=split_search(name)[1])
