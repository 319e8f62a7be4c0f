"""LangChain: any ragstore embedder as ``Embeddings``, any ragstore store as a ``VectorStore``.

Both pass ``langchain_tests``' standard suites on all six engines. Scores from
``similarity_search_with_score`` are the store's own (cosine similarity in [-1, 1] by default, higher is
better); ``similarity_search_with_relevance_scores`` gives what LangChain's own stores give, so a copied
``score_threshold`` means the same: cosine similarity (``1 - cosine distance``, LangChain's cosine relevance
function) clipped to [0, 1] for cosine and dot, and ``1 - distance / sqrt(2)`` (its Euclidean function for unit
vectors) clipped to [0, 1] for l2. Filters use the ragstore filter
grammar, which is the Mongo-style dict LangChain users know from Chroma and PGVector::

    store.similarity_search("deadline", k=4, filter={"year": {"$gte": 2024}, "source": {"$in": ["ato", "apra"]}})
"""

from __future__ import annotations

import asyncio
import copy
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._optional import require
from ..config import SearchConfig
from ..embedders.base import Embedder
from ..errors import FilterError, UnsupportedFeatureError, ValidationError
from ..lexical import SEARCH_MODES, SearchMode
from ..pipeline import Ragstore
from ..query.retrieval import Retriever
from ..stores.base import VectorStore as RagstoreStore
from ..types import SCALES, Hit
from ..types import Document as RsDocument
from .common import (
    QueryMode,
    Session,
    as_embedder,
    mmr,
    pack_metadata,
    query_retriever,
    reject_unknown,
    unpack_metadata,
)

require("langchain_core", "langchain", "langchain-core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402


class RagstoreEmbeddings(Embeddings):
    """A ragstore embedder for LangChain: passages through ``embed_documents`` (passage prefix), questions
    through ``embed_query`` (query prefix, then the bilingual path when ``bilingual`` is translate/auto).

    ``embedder``: an ``Embedder``, a config block (``{"type": "sentence-transformers", "model": ...}``), or a
    model name or fine-tuned folder. Async methods run the model in a worker thread (torch releases the GIL),
    so an event loop keeps serving while a batch is embedded.
    """

    def __init__(
        self,
        embedder: Embedder | Mapping[str, Any] | str | None = None,
        *,
        model_name: str | None = None,
        bilingual: QueryMode = "off",
        translator: str = "dictionary",
        translator_options: Mapping[str, Any] | None = None,
        retriever: Retriever | None = None,
    ) -> None:
        """``model_name`` is LangChain's usual name for ``embedder`` (a model name or folder); ``retriever``:
        share one, e.g. a pipeline's, instead of building one from the bilingual options."""
        if model_name is not None and embedder is not None:
            raise ValidationError("give embedder or model_name, not both")
        self.embedder = retriever.embedder if retriever is not None else as_embedder(embedder or model_name)
        self.retriever = retriever or query_retriever(self.embedder, bilingual, translator, translator_options)

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self.embedder.embed_documents(list(texts)).astype(float).tolist()

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.retriever.embed_queries([text])[0]]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Many questions in one batch (LangChain's interface has only the one-question call)."""
        return self.retriever.embed_queries(texts).astype(float).tolist() if texts else []

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


def _where(filter: Any) -> dict[str, Any] | None:
    """LangChain's ``filter=`` as a ragstore filter. A callable (as LangChain's FAISS and in-memory stores
    take) cannot run inside the engines, where every ragstore filter runs: refused with the grammar named."""
    if filter is None:
        return None
    if isinstance(filter, Mapping):
        return dict(filter) or None
    if callable(filter):
        raise FilterError(
            "callable filters are not supported: ragstore filters run inside each engine; write it as a "
            'filter dict, e.g. {"year": {"$gte": 2024}, "$or": [{"source": "ato"}, {"source": "apra"}]}'
        )
    raise FilterError(f"filter must be a dict in the ragstore filter grammar, got {type(filter).__name__}")


def _relevance(metric: str) -> Callable[[float], float]:
    """LangChain's relevance functions, so ``score_threshold`` copied from another LangChain store keeps its
    meaning: cosine -> ``1 - cosine distance`` (= the cosine), l2 -> ``1 - distance / sqrt(2)``; clipped to [0, 1]."""
    if metric == "l2":  # score = -distance
        return lambda score: min(max(1.0 + score / math.sqrt(2.0), 0.0), 1.0)
    # cosine in [-1, 1]; dot products of normalised vectors are cosines too
    return lambda score: min(max(score, 0.0), 1.0)


def _search_kwargs(kwargs: dict[str, Any], base: SearchConfig) -> tuple[SearchMode, float | None]:
    """Pop ``mode`` and ``alpha`` (LangChain passes search kwargs through): LangChain's words for the search
    mode and the fusion, checked where every door's are (``Retriever.resolve`` / ``override_hybrid``)."""
    mode = kwargs.pop("mode", None)
    alpha = kwargs.pop("alpha", None)
    chosen = mode or base.mode
    if chosen not in SEARCH_MODES:
        raise ValidationError(f"mode must be one of {', '.join(SEARCH_MODES)}, got {chosen!r}")
    return chosen, alpha


class RagstoreVectorStore(VectorStore):
    """Any ragstore store behind LangChain's ``VectorStore``.

    ``store``: a ragstore ``VectorStore`` or a store config block (``{"type": "qdrant", "path": ...}``);
    ``embedding``: any LangChain ``Embeddings`` (a :class:`RagstoreEmbeddings` for ragstore models). The store
    takes whatever dimension the embeddings give. Metadata of any JSON shape round-trips; scalar fields
    are filterable.
    """

    def __init__(
        self,
        store: RagstoreStore | Mapping[str, Any] | None,
        embedding: Embeddings,
        *,
        pipeline: Ragstore | None = None,
        namespace: str | None = None,
    ) -> None:
        """``namespace``: the tenant every call reads and writes (a per-call ``namespace=`` overrides it; the
        store must be made with ``namespaces: true`` for any but the default)."""
        if not isinstance(embedding, Embeddings):
            raise ValidationError(f"embedding must be a LangChain Embeddings, got {type(embedding).__name__}")
        self.pipeline = pipeline  # set by from_config: text queries take its bilingual path
        self.session = Session.of(store, pipeline)
        self.store = self.session.collection  # writes reach its lexical index and routes
        self.store.primary.scoped_filter(None, namespace)  # a bad or unavailable namespace: refused now
        self.namespace = namespace
        self._embedding = embedding

    def with_namespace(self, namespace: str | None) -> RagstoreVectorStore:
        """The same collection (and query path) seen from another tenant: one object per tenant, sharing one
        engine connection (close the first only)."""
        twin = copy.copy(self)
        self.store.primary.scoped_filter(None, namespace)
        twin.namespace = namespace
        return twin

    def _ns(self, kwargs: dict[str, Any]) -> str | None:
        """The call's namespace (``namespace=`` kwarg), else the store's."""
        return kwargs.pop("namespace", None) or self.namespace

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    # ----------------------------------------------------------------------------------------- writes
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        items = list(texts)
        ns = self._ns(kwargs)
        self.store.primary.scoped_filter(None, ns)  # before anything is embedded
        if metadatas is not None and len(metadatas) != len(items):
            raise ValidationError(f"got {len(metadatas)} metadatas for {len(items)} texts")
        if ids is not None and len(ids) != len(items):
            raise ValidationError(f"got {len(ids)} ids for {len(items)} texts")
        if not items:
            return []
        chosen = [i if i else str(uuid.uuid4()) for i in (ids or [None] * len(items))]  # type: ignore[list-item]
        vectors = np.asarray(self._embedding.embed_documents(items), dtype=np.float32)
        docs = [
            RsDocument(text=t, id=i, metadata=pack_metadata(m), vector=v)
            for t, i, m, v in zip(items, chosen, metadatas or [{}] * len(items), vectors, strict=True)
        ]
        return self.store.upsert(docs, namespace=ns)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        items = list(texts)
        return await asyncio.to_thread(self.add_texts, items, metadatas, ids=ids, **kwargs)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete by ids (unknown ids are ignored) or, with ``filter=...``, by metadata filter."""
        where = kwargs.get("filter")
        ns = self._ns(kwargs)
        if ids is None and where is None:
            raise ValidationError("delete() needs ids or filter=...")
        if ids is not None:
            self.store.delete(list(ids), namespace=ns)
        if where is not None:
            self.store.delete(filter=where, namespace=ns)
        return True

    # ----------------------------------------------------------------------------------------- reads
    @staticmethod
    def _doc(doc_id: str, text: str, metadata: Mapping[str, Any]) -> Document:
        return Document(id=doc_id, page_content=text, metadata=unpack_metadata(metadata))

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [self._doc(d.id, d.text, d.metadata) for d in self.store.get(list(ids), namespace=self.namespace)]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        ns = self._ns(kwargs)
        if self.store.dim is None:  # nothing stored yet: no collection to ask
            return []
        reject_unknown(kwargs, "similarity_search")
        hits = self.store.search(np.asarray(embedding, dtype=np.float32), k, _where(filter), namespace=ns)
        return [(self._doc(h.id, h.text, h.metadata), h.score) for h in hits]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Hits with the store's score: cosine similarity by default (higher is more similar; with the
        config's bilingual mode ``both``, Chinese queries get fused RRF scores).

        ``mode="hybrid"`` (or ``"lexical"``) searches the store's BM25 index too (``lexical: true``), fused
        by RRF, or by ``alpha`` (share of the dense leg) when given; also through
        ``as_retriever(search_kwargs={"mode": "hybrid", "alpha": 0.5})``."""
        return [(self._doc(h.id, h.text, h.metadata), h.score) for h in self._hits(query, k, filter, kwargs)]

    def _hits(self, query: str, k: int, filter: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> list[Hit]:
        mode, alpha = _search_kwargs(kwargs, self.session.search)
        ns = self._ns(kwargs)
        reject_unknown(kwargs, "similarity_search")
        where = _where(filter)  # checked before the question is embedded
        if mode != "dense":
            self.store.require_lexical()
        return self.session.query(
            query,
            k,
            where,
            search=mode,
            alpha=alpha,
            embed=lambda: self._embedding.embed_query(query),
            namespace=ns,
        )

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Relevance in [0, 1] by each hit's scale: similarities as LangChain's own stores map them, alpha
        fusion as it is (already in [0, 1]); RRF and BM25 scores have no fixed scale, so a ``score_threshold``
        on them would mean nothing: refused, naming the scale and the way out."""
        filter = kwargs.pop("filter", None)
        hits = self._hits(query, k, filter, kwargs)
        dense = _relevance(self.store.metric)
        out = []
        for h in hits:
            if h.scale in ("cosine", "dot", "l2"):
                relevance = dense(h.score)
            elif h.scale == "alpha":
                relevance = h.score
            else:
                raise UnsupportedFeatureError(
                    f"relevance scores need a score on a fixed scale; these are {h.scale} scores ({SCALES[h.scale]}): "
                    "use similarity_search_with_score, or hybrid alpha fusion (mode='hybrid', alpha=...) whose "
                    "scores lie in [0, 1]"
                )
            out.append((self._doc(h.id, h.text, h.metadata), relevance))
        return out

    def similarity_search(
        self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return _relevance(self.store.metric)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        ns = self._ns(kwargs)
        if self.store.dim is None:
            return []
        query = np.asarray(embedding, dtype=np.float32)
        reject_unknown(kwargs, "max_marginal_relevance_search")
        hits = self.store.search(query, max(fetch_k, k), _where(filter), namespace=ns)
        if not hits:
            return []
        stored = {d.id: d for d in self.store.get([h.id for h in hits], namespace=ns)}
        hits = [h for h in hits if h.id in stored and stored[h.id].vector is not None]
        matrix = np.stack([np.asarray(stored[h.id].vector, dtype=np.float32) for h in hits])
        return [self._doc(hits[i].id, hits[i].text, hits[i].metadata) for i in mmr(query, matrix, k, lambda_mult)]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        where = _where(filter)
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, where, **kwargs
        )

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store: RagstoreStore | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> RagstoreVectorStore:
        """A store (default: in-memory) filled with ``texts``; ``store=`` takes any ragstore store block,
        ``namespace=`` the tenant."""
        vs = cls(store, embedding, namespace=kwargs.pop("namespace", None))
        vs.add_texts(texts, metadatas, ids=ids)
        return vs

    def close(self) -> None:
        self.session.close()


def from_config(config: Any = None, *, namespace: str | None = None) -> tuple[RagstoreVectorStore, RagstoreEmbeddings]:
    """The config's store and embedder as LangChain objects, so an app changes backend by editing YAML only.

    ``config``: a path, a dict or a ``RagstoreConfig``, as for ``ragstore.open``. Text queries through the
    store take the config's bilingual path (route and both included); the embeddings object alone can only
    translate, so it applies ``translate`` for route/both.
    """
    from ..pipeline import Ragstore

    rs = Ragstore.open(config)
    embeddings = RagstoreEmbeddings(retriever=rs.retriever)  # the pipeline's translator and cache, shared
    return RagstoreVectorStore(None, embeddings, pipeline=rs, namespace=namespace), embeddings
