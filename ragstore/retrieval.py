"""The one query path: plan -> translate -> embed -> search -> route -> fuse.

``ragstore.open()``, ``ragstore bench`` and the LlamaIndex and LangChain integrations all answer queries
through a ``Retriever``, so a query path added here (hybrid, reranking) is written once and measured exactly
as users run it.

The work is split in two so the bench can time only the search: ``prepare`` does everything that depends
on the query texts alone (language detection, translation, both embeddings) and returns ``Prepared``
queries; ``Prepared.run`` / ``run_all`` search any store with them (and the multilingual second index for
routed queries), fusing the two rankings for mode ``both``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bilingual.config import MODES, BilingualConfig, Mode
from .bilingual.fusion import rrf
from .bilingual.query import QueryPlan, plan_queries
from .bilingual.translate import Translator, create_translator
from .embedders.base import Embedder
from .errors import ConfigError, ValidationError
from .filters import Filter, Node, parse_filter
from .store import VectorStore
from .types import Hit

#: bench query-path names -> bilingual modes
PATH_MODES: dict[str, Mode] = {"plain": "off", "translate": "translate", "route": "route", "both": "both"}


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
    """Queries made ready for one embedder (and the multilingual one): only the searches are left.

    ``run(store, i, k)`` answers query ``i``; ``run_all`` answers every query through the engine's batch
    call. ``second`` is the multilingual index, needed when any query was routed (``needs_second``).
    """

    def __init__(self, plans: list[QueryPlan], main: np.ndarray, routed: dict[int, np.ndarray], rrf_k: int) -> None:
        self.plans, self.main, self.routed, self.rrf_k = plans, main, routed, rrf_k
        self.n = len(plans)
        self.needs_second = bool(routed)

    @property
    def texts(self) -> list[str]:
        """What the main embedder embedded, per query (the translation where one was made)."""
        return [p.text for p in self.plans]

    def _second(self, second: VectorStore | None) -> VectorStore:
        if second is None:
            raise ConfigError("routed queries need the multilingual index (bilingual.multilingual)")
        return second

    def _fuse(self, i: int, main: list[Hit], other: list[Hit], k: int) -> list[Hit]:
        return rrf([main, other], k, self.rrf_k) if self.plans[i].path == "both" else other

    def run(
        self, store: VectorStore, i: int, k: int, second: VectorStore | None = None, filter: Filter | Node | None = None
    ) -> list[Hit]:
        if i not in self.routed:
            return store.search(self.main[i], k, filter)
        other = self._second(second).search(self.routed[i], k, filter)
        main = store.search(self.main[i], k, filter) if self.plans[i].path == "both" else []
        return self._fuse(i, main, other, k)

    def run_all(
        self, store: VectorStore, k: int, second: VectorStore | None = None, filter: Filter | Node | None = None
    ) -> list[list[Hit]]:
        out = store.search_batch(self.main, k, filter) if self.n else []
        if self.routed:
            order = sorted(self.routed)
            found = self._second(second).search_batch(np.stack([self.routed[i] for i in order]), k, filter)
            for i, hits in zip(order, found, strict=True):
                out[i] = self._fuse(i, out[i], hits, k)
        return out

    def results(self, hits: list[list[Hit]]) -> list[SearchResult]:
        return [SearchResult(h, p) for h, p in zip(hits, self.plans, strict=True)]


class Retriever:
    """Turns query texts into hits the same way for every caller.

    ``bilingual`` holds the mode, translator (created on first use, cached on disk under ``cache_dir``) and
    fusion constant; ``multilingual`` is the embedder of the second index, when there is one.
    """

    def __init__(
        self,
        embedder: Embedder,
        bilingual: BilingualConfig | None = None,
        *,
        multilingual: Embedder | None = None,
        cache_dir: str | Path | None = None,
        translator: Translator | None = None,
    ) -> None:
        self.embedder = embedder
        self.bilingual = bilingual or BilingualConfig()
        self.multilingual = multilingual
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._translator = translator
        self._lock = threading.Lock()

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

    def plan(self, queries: Sequence[str], mode: str | None = None) -> list[QueryPlan]:
        """Language, path and the text each embedder will see, per query (translations made here)."""
        if isinstance(queries, str):
            raise ValidationError("queries must be a list of strings; wrap a single query in a list")
        chosen = self.mode(mode)
        translator = self.translator if chosen not in ("off", "route") else None
        return plan_queries(
            list(queries), chosen, translator, self.bilingual.max_chars, multilingual=self.multilingual is not None
        )

    def embed_queries(self, queries: Sequence[str], mode: str | None = None) -> np.ndarray:
        """Main-embedder query vectors after planning: what an embedding-only integration can apply. An
        embedding alone cannot route, so ``route`` translates here (the main index is searched with it only
        by callers that have no second index)."""
        chosen = self.mode(mode)
        plans = self.plan(queries, "translate" if chosen == "route" else chosen)
        return self.embedder.embed_query([p.text for p in plans])

    def prepare(self, queries: Sequence[str], mode: str | None = None, *, vectors: Any | None = None) -> Prepared:
        """Plan, translate and embed; ``vectors`` (the main embeddings, e.g. computed by a framework with
        this retriever's embedder) are used instead of embedding again."""
        plans = self.plan(queries, mode)
        main: np.ndarray
        if vectors is not None:
            main = np.asarray(vectors, dtype=np.float32)
            if main.ndim == 1:
                main = main[None, :]
            if main.shape[0] != len(plans):
                raise ValidationError(f"{main.shape[0]} query vectors for {len(plans)} queries")
        else:
            main = self.embedder.embed_query([p.text for p in plans]) if plans else np.zeros((0, self.embedder.dim))
        idx = [i for i, p in enumerate(plans) if p.route_text is not None]
        routed: dict[int, np.ndarray] = {}
        if idx:
            if self.multilingual is None:  # plan_queries refuses route/both without one; kept for mypy
                raise ConfigError("routed queries need a multilingual embedder (bilingual.multilingual)")
            vecs = self.multilingual.embed_query([plans[i].route_text or "" for i in idx])
            routed = dict(zip(idx, vecs, strict=True))
        return Prepared(plans, main, routed, self.bilingual.rrf_k)

    def search(
        self,
        store: VectorStore,
        queries: Sequence[str],
        k: int,
        filter: Filter | Node | None = None,
        *,
        mode: str | None = None,
        second: VectorStore | None = None,
        vectors: Any | None = None,
    ) -> list[SearchResult]:
        """Every query answered over ``store`` (and ``second`` for routed ones), with how it was served."""
        node = parse_filter(filter)  # checked before any translation or embedding
        prepared = self.prepare(queries, mode, vectors=vectors)
        return prepared.results(prepared.run_all(store, k, second, node))

    def close(self) -> None:
        close = getattr(self._translator, "close", None)
        if callable(close):
            close()
