"""Query paths: how a query text becomes hits. The bench compares them like it compares stores.

A path prepares all query texts once (embedding, translating...) outside the timed part, then answers
query ``i`` against any store (``run_all`` answers all of them for the untimed quality pass). Latency and
QPS time ``run``, so a path that searches twice and fuses pays for both searches in its figures.

``plain`` embeds the query with the embedder and searches once; ``translate`` first turns Chinese and mixed
queries into English with the offline dictionary translator (``ragstore.bilingual``); ``route`` embeds
Chinese and mixed queries with the multilingual embedder and searches the second index (``second``, the
same corpus embedded by that model), English ones take the plain path; ``both`` runs translate and route
for Chinese and mixed queries and fuses the two rankings with reciprocal rank fusion.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from ..bilingual.fusion import rrf
from ..embedders.base import Embedder
from ..errors import ConfigError
from ..store import VectorStore
from ..types import Hit


class PreparedQueries(Protocol):
    """Queries made ready for one embedder; ``run(store, i, k)`` answers query ``i``.

    ``second`` is the multilingual index, for the paths that set ``needs_second``."""

    n: int
    needs_second: bool

    def run(self, store: VectorStore, i: int, k: int, second: VectorStore | None = None) -> list[Hit]: ...

    def run_all(self, store: VectorStore, k: int, second: VectorStore | None = None) -> list[list[Hit]]:
        """Every query, through the engine's batch call where it has one (quality passes are not timed)."""
        ...


class _Vectors:
    needs_second = False

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.n = len(vectors)
        self.texts: list[str] | None = None  # what was embedded, when it differs from the query

    def run(self, store: VectorStore, i: int, k: int, second: VectorStore | None = None) -> list[Hit]:
        return store.search(self.vectors[i], k)

    def run_all(self, store: VectorStore, k: int, second: VectorStore | None = None) -> list[list[Hit]]:
        return store.search_batch(self.vectors, k)


class _Routed:
    """Per query: the main index, the second index, or both fused (``fuse``)."""

    needs_second = True

    def __init__(self, main: np.ndarray, routed: dict[int, np.ndarray], fuse: bool, texts: list[str]) -> None:
        self.main, self.routed, self.fuse = main, routed, fuse
        self.n = len(main)
        self.texts: list[str] | None = texts

    @staticmethod
    def _second(second: VectorStore | None) -> VectorStore:
        if second is None:
            raise ConfigError("query paths route and both need the multilingual index (bench multilingual:)")
        return second

    def run(self, store: VectorStore, i: int, k: int, second: VectorStore | None = None) -> list[Hit]:
        if i not in self.routed:
            return store.search(self.main[i], k)
        other = self._second(second).search(self.routed[i], k)
        return rrf([store.search(self.main[i], k), other], k) if self.fuse else other

    def run_all(self, store: VectorStore, k: int, second: VectorStore | None = None) -> list[list[Hit]]:
        out = store.search_batch(self.main, k)
        if self.routed:
            order = sorted(self.routed)
            found = self._second(second).search_batch(np.stack([self.routed[i] for i in order]), k)
            for i, hits in zip(order, found, strict=True):
                out[i] = rrf([out[i], hits], k) if self.fuse else hits
        return out


def plain(
    texts: list[str], embedder: Embedder, cache_dir: Path, multilingual: Embedder | None = None
) -> PreparedQueries:
    """Embed each query as it is (the embedder adds its query prefix)."""
    return _Vectors(embedder.embed_query(texts))


def translate(
    texts: list[str], embedder: Embedder, cache_dir: Path, multilingual: Embedder | None = None
) -> PreparedQueries:
    """Translate Chinese and mixed queries to English (offline dictionary, cached), then embed."""
    from ..bilingual import create_translator, plan_queries

    translator = create_translator("dictionary", cache=cache_dir / "translations.sqlite")
    plans = plan_queries(texts, "translate", translator)
    prepared = _Vectors(embedder.embed_query([p.text for p in plans]))
    prepared.texts = [p.text for p in plans]
    return prepared


def _routed(
    mode: str, texts: list[str], embedder: Embedder, cache_dir: Path, multilingual: Embedder | None
) -> PreparedQueries:
    from ..bilingual import create_translator, plan_queries

    if multilingual is None:
        raise ConfigError(f"query path {mode!r} needs a multilingual embedder (bench multilingual:)")
    translator = create_translator("dictionary", cache=cache_dir / "translations.sqlite") if mode == "both" else None
    plans = plan_queries(texts, "route" if mode == "route" else "both", translator, multilingual=True)
    idx = [i for i, p in enumerate(plans) if p.route_text is not None]
    routed: dict[int, np.ndarray] = {}
    if idx:
        routed = dict(zip(idx, multilingual.embed_query([plans[i].route_text or "" for i in idx]), strict=True))
    main = embedder.embed_query([p.text for p in plans])
    return _Routed(main, routed, mode == "both", [p.text for p in plans])


def route(
    texts: list[str], embedder: Embedder, cache_dir: Path, multilingual: Embedder | None = None
) -> PreparedQueries:
    """Chinese and mixed queries: the multilingual embedder over the second index; others: plain."""
    return _routed("route", texts, embedder, cache_dir, multilingual)


def both(
    texts: list[str], embedder: Embedder, cache_dir: Path, multilingual: Embedder | None = None
) -> PreparedQueries:
    """Chinese and mixed queries: translate and route, fused by reciprocal rank fusion; others: plain."""
    return _routed("both", texts, embedder, cache_dir, multilingual)


QueryPath = Callable[[list[str], Embedder, Path, Embedder | None], PreparedQueries]

QUERY_PATHS: dict[str, QueryPath] = {"plain": plain, "translate": translate, "route": route, "both": both}
NEEDS_MULTILINGUAL = frozenset({"route", "both"})


def query_path(name: str) -> QueryPath:
    try:
        return QUERY_PATHS[name]
    except KeyError:
        raise ConfigError(f"unknown query path {name!r}; known: {', '.join(QUERY_PATHS)}") from None
