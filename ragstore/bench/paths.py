"""Query paths: how a query text becomes hits. The bench compares them like it compares stores.

A path prepares all query texts once (embedding, translating...) outside the timed part, then answers
query ``i`` against any store (``run_all`` answers all of them for the untimed quality pass). Latency and
QPS time ``run``, so a path that searches twice and fuses pays for both searches in its figures.
``plain`` embeds the query with the embedder and searches once; ``translate`` first turns Chinese and mixed
queries into English with the offline dictionary translator (``ragstore.bilingual``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from ..embedders.base import Embedder
from ..errors import ConfigError
from ..store import VectorStore
from ..types import Hit


class PreparedQueries(Protocol):
    """Queries made ready for one embedder; ``run(store, i, k)`` answers query ``i``."""

    n: int

    def run(self, store: VectorStore, i: int, k: int) -> list[Hit]: ...

    def run_all(self, store: VectorStore, k: int) -> list[list[Hit]]:
        """Every query, through the engine's batch call where it has one (quality passes are not timed)."""
        ...


class _Vectors:
    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.n = len(vectors)
        self.texts: list[str] | None = None  # what was embedded, when it differs from the query

    def run(self, store: VectorStore, i: int, k: int) -> list[Hit]:
        return store.search(self.vectors[i], k)

    def run_all(self, store: VectorStore, k: int) -> list[list[Hit]]:
        return store.search_batch(self.vectors, k)


def plain(texts: list[str], embedder: Embedder, cache_dir: Path) -> PreparedQueries:
    """Embed each query as it is (the embedder adds its query prefix)."""
    return _Vectors(embedder.embed_query(texts))


def translate(texts: list[str], embedder: Embedder, cache_dir: Path) -> PreparedQueries:
    """Translate Chinese and mixed queries to English (offline dictionary, cached), then embed."""
    from ..bilingual import create_translator, plan_queries

    translator = create_translator("dictionary", cache=cache_dir / "translations.sqlite")
    plans = plan_queries(texts, "translate", translator)
    prepared = _Vectors(embedder.embed_query([p.text for p in plans]))
    prepared.texts = [p.text for p in plans]
    return prepared


QueryPath = Callable[[list[str], Embedder, Path], PreparedQueries]

QUERY_PATHS: dict[str, QueryPath] = {"plain": plain, "translate": translate}


def query_path(name: str) -> QueryPath:
    try:
        return QUERY_PATHS[name]
    except KeyError:
        raise ConfigError(f"unknown query path {name!r}; known: {', '.join(QUERY_PATHS)}") from None
