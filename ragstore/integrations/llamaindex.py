"""LlamaIndex: any ragstore embedder as a ``BaseEmbedding``, any ragstore store as a vector store.

The vector store keeps text and the whole node (``stores_text=True``), so a ``VectorStoreIndex`` needs no
docstore and nodes come back as they went in. ``MetadataFilters`` become the ragstore filter grammar:
``== != > >= < <= in nin`` and AND/OR/NOT, nested; operators the engines cannot all evaluate the same way
(text match, contains, any/all on lists, is_empty) raise ``UnsupportedFeatureError`` instead of being
silently ignored. ``from_config`` turns a ragstore YAML into the embed model and storage context an app
passes to ``VectorStoreIndex``, so a backend changes by editing the YAML only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._optional import require
from ..embedders.base import Embedder
from ..errors import FilterError, UnsupportedFeatureError, ValidationError
from ..lexical import SearchMode
from ..pipeline import Ragstore
from ..query.filters import matches, parse_filter
from ..query.retrieval import Retriever
from ..stores.base import VectorStore
from ..stores.collection import Collection
from ..types import Document, Hit
from .common import QueryMode, Session, as_embedder, mmr, pack_metadata, query_retriever, unpack_metadata

require("llama_index.core", "llamaindex", "llama-index-core")

from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.schema import BaseNode, MetadataMode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict  # noqa: E402

#: hybrid and sparse/text_search need the store's lexical index (``lexical: true``)
_LEXICAL_MODES = (VectorStoreQueryMode.HYBRID, VectorStoreQueryMode.SPARSE, VectorStoreQueryMode.TEXT_SEARCH)
_MODES = (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR, *_LEXICAL_MODES)


class RagstoreEmbedding(BaseEmbedding):
    """A ragstore embedder for LlamaIndex. Queries and passages stay distinct (E5/BGE prefixes, and the
    bilingual path with ``bilingual="translate"``/``"auto"``, apply to queries only). Batches go to the model
    as one call; async methods run it in a worker thread so the event loop is never blocked."""

    _embedder: Embedder = PrivateAttr()
    _retriever: Retriever = PrivateAttr()

    def __init__(
        self,
        embedder: Embedder | Mapping[str, Any] | str | None = None,
        *,
        model_name: str | None = None,
        bilingual: QueryMode = "off",
        translator: str = "dictionary",
        translator_options: Mapping[str, Any] | None = None,
        retriever: Retriever | None = None,
        embed_batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        """``model_name`` is LlamaIndex's usual name for ``embedder`` (a model name or folder);
        ``retriever``: share one, e.g. a pipeline's, instead of building one from the bilingual options."""
        if model_name is not None and embedder is not None:
            raise ValidationError("give embedder or model_name, not both")
        inner = retriever.embedder if retriever is not None else as_embedder(embedder or model_name)
        name = str(getattr(inner, "model_name", None) or inner.fingerprint)
        super().__init__(model_name=name, embed_batch_size=embed_batch_size, **kwargs)
        self._embedder = inner
        self._retriever = retriever or query_retriever(inner, bilingual, translator, translator_options)

    @classmethod
    def class_name(cls) -> str:
        return "RagstoreEmbedding"

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in self._retriever.embed_queries([query])[0]]

    def _get_text_embedding(self, text: str) -> list[float]:
        return [float(x) for x in self._embedder.embed_documents([text])[0]]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed_documents(texts).astype(float).tolist() if texts else []

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


_OPS = {
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}


def to_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` -> the ragstore filter grammar (``None`` for no filter)."""
    if filters is None or not filters.filters:
        return None
    parts: list[dict[str, Any]] = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            sub = to_filter(item)
            if sub is not None:
                parts.append(sub)
            continue
        if not isinstance(item, MetadataFilter):
            raise FilterError(f"unexpected filter item {item!r}")
        op = FilterOperator(item.operator)
        if op == FilterOperator.EQ:
            parts.append({item.key: {"$eq": item.value}})
        elif op in _OPS:
            parts.append({item.key: {_OPS[op]: item.value}})
        else:
            raise UnsupportedFeatureError(
                f"filter operator {op.value!r} on {item.key!r} is not supported by ragstore stores "
                "(supported: ==, !=, >, >=, <, <=, in, nin, with and/or/not)"
            )
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition == FilterCondition.OR:
        return {"$or": parts}
    if condition == FilterCondition.NOT:  # LlamaIndex: none of the filters match
        return {"$not": {"$or": parts}}
    return parts[0] if len(parts) == 1 else {"$and": parts}


class RagstoreVectorStore(BasePydanticVectorStore):
    """Any ragstore store as a LlamaIndex vector store (``store``: a ``VectorStore`` or a config block).

    Built by ``from_config`` it also holds the ragstore pipeline: then text queries take the config's
    bilingual path (translate, route to a multilingual second index, or both) and writes keep that second
    index in step.
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    flat_metadata: bool = False

    _store: Collection = PrivateAttr()
    _session: Session = PrivateAttr()
    _pipeline: Ragstore | None = PrivateAttr(default=None)
    _namespace: str | None = PrivateAttr(default=None)

    def __init__(
        self,
        store: VectorStore | Collection | Mapping[str, Any] | None = None,
        *,
        pipeline: Ragstore | None = None,
        namespace: str | None = None,
    ) -> None:
        """``namespace``: the tenant every call reads and writes (``namespace=`` in a call's kwargs, or a
        retriever's ``vector_store_kwargs``, overrides it)."""
        super().__init__(stores_text=True)
        self._pipeline = pipeline
        self._session = Session.of(store, pipeline)
        self._store = self._session.collection  # writes reach its lexical index and routes
        self._store.primary.scoped_filter(None, namespace)  # a bad or unavailable namespace: refused now
        self._namespace = namespace

    @property
    def namespace(self) -> str | None:
        return self._namespace

    def with_namespace(self, namespace: str | None) -> RagstoreVectorStore:
        """The same collection (and query path) seen from another tenant: one vector store per tenant, for
        one ``VectorStoreIndex`` each, sharing one engine connection (close the first only)."""
        twin = RagstoreVectorStore.__new__(RagstoreVectorStore)
        BasePydanticVectorStore.__init__(twin, stores_text=True)
        twin._pipeline, twin._session, twin._store = self._pipeline, self._session, self._store
        self._store.primary.scoped_filter(None, namespace)
        twin._namespace = namespace
        return twin

    def _ns(self, kwargs: Mapping[str, Any]) -> str | None:
        return kwargs.get("namespace") or self._namespace

    @classmethod
    def class_name(cls) -> str:
        return "RagstoreVectorStore"

    @property
    def client(self) -> Collection:
        return self._store

    @property
    def pipeline(self) -> Ragstore | None:
        return self._pipeline

    # ----------------------------------------------------------------------------------------- writes
    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        ns = self._ns(kwargs)
        docs = []
        for node in nodes:
            if node.embedding is None:
                raise ValidationError(f"node {node.node_id!r} has no embedding: embed it before adding")
            meta = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
            docs.append(
                Document(
                    text=node.get_content(metadata_mode=MetadataMode.NONE),
                    id=node.node_id,
                    metadata=pack_metadata(meta),
                    vector=np.asarray(node.embedding, dtype=np.float32),
                )
            )
        if not docs:
            return []
        return self._store.upsert(docs, namespace=ns)

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    def _delete(
        self, ids: list[str] | None = None, where: dict[str, Any] | None = None, namespace: str | None = None
    ) -> int:
        return self._store.delete(ids, filter=where, namespace=namespace)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Every node that came from the document ``ref_doc_id``."""
        if self._store.dim is not None:
            self._delete(where={"ref_doc_id": ref_doc_id}, namespace=self._ns(delete_kwargs))

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        where = to_filter(filters)
        ns = self._ns(delete_kwargs)
        if node_ids is None and where is None:
            raise ValidationError("delete_nodes() needs node_ids or filters; use clear() to remove everything")
        if self._store.dim is None:
            return
        if node_ids is not None and where is not None:
            node = parse_filter(where, self._store.options.filter_limits)
            node_ids = [d.id for d in self._store.get(node_ids, namespace=ns) if matches(node, d.metadata)]
        if node_ids is not None:
            if node_ids:
                self._delete(list(node_ids), namespace=ns)
        else:
            self._delete(where=where, namespace=ns)

    def clear(self) -> None:
        """Every node of this store's namespace (the collection clears its routes and lexical index with it)."""
        self._store.clear(namespace=self._namespace)

    # ----------------------------------------------------------------------------------------- reads
    @staticmethod
    def _node(doc_id: str, text: str, metadata: Mapping[str, Any]) -> BaseNode:
        meta = unpack_metadata(metadata)
        if "_node_content" not in meta:  # written by ragstore itself (ingest, add): a plain text node
            from llama_index.core.schema import TextNode

            return TextNode(id_=doc_id, text=text, metadata=meta)
        return metadata_dict_to_node(meta, text=text)

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        where = to_filter(filters)
        if self._store.dim is None:
            return []
        ns = self._namespace
        if node_ids is not None:
            node = parse_filter(where, self._store.options.filter_limits)
            docs = [d for d in self._store.get(node_ids, namespace=ns) if matches(node, d.metadata)]
        else:
            docs = self._store.get(filter=where, namespace=ns)
        return [self._node(d.id, d.text, d.metadata) for d in docs]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        mode = VectorStoreQueryMode(query.mode)
        if mode not in _MODES:
            known = ", ".join(m.value for m in _MODES)
            raise UnsupportedFeatureError(f"query mode {mode.value!r} is not supported ({known})")
        ns = self._ns(kwargs)
        if mode in _LEXICAL_MODES:
            return self._query_lexical(query, mode, ns)
        where = to_filter(query.filters)
        if query.doc_ids:
            ref = {"ref_doc_id": {"$in": list(query.doc_ids)}}
            where = ref if where is None else {"$and": [where, ref]}
        k = query.similarity_top_k
        if self._store.dim is None or k <= 0:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        if query.node_ids:  # the retriever sends [] for "no restriction"
            hits = self._among(query, where, k, ns)
        elif mode == VectorStoreQueryMode.MMR:
            if query.query_embedding is None:
                raise ValidationError("the query has no embedding (give the index an embed_model)")
            vector = np.asarray(query.query_embedding, dtype=np.float32)
            prefetch = int(kwargs.get("mmr_prefetch_factor", 4))
            hits = self._mmr(vector, where, k, query.mmr_threshold, prefetch, ns)
        else:
            # the session's one query path (with a pipeline: bilingual routing and fusion), reusing the
            # embedding LlamaIndex already made with the embed model instead of embedding the question again
            if query.query_embedding is None and not (query.query_str and self._session.retriever is not None):
                raise ValidationError("the query has no embedding (give the index an embed_model)")
            hits = self._session.query(
                query.query_str,
                k,
                where,
                search="dense",
                vector=query.query_embedding,
                namespace=ns,
            )
        return VectorStoreQueryResult(
            nodes=[self._node(h.id, h.text, h.metadata) for h in hits],
            similarities=[h.score for h in hits],
            ids=[h.id for h in hits],
        )

    def _query_lexical(
        self, query: VectorStoreQuery, mode: VectorStoreQueryMode, namespace: str | None = None
    ) -> VectorStoreQueryResult:
        """``hybrid`` (``alpha`` given: alpha fusion, else the config's fusion) and ``sparse``/``text_search``
        (BM25 alone) over the store's lexical index; the pipeline's bilingual path applies to the text."""
        search: SearchMode = "hybrid" if mode == VectorStoreQueryMode.HYBRID else "lexical"
        where = to_filter(query.filters)
        if query.doc_ids:
            ref = {"ref_doc_id": {"$in": list(query.doc_ids)}}
            where = ref if where is None else {"$and": [where, ref]}
        if search == "hybrid":
            k = query.hybrid_top_k or query.similarity_top_k
        else:
            k = query.sparse_top_k or query.similarity_top_k
        if not query.query_str:
            raise ValidationError(f"{mode.value} search needs the query text")
        self._store.require_lexical()  # built from the stored texts on first use, as from every other door
        depth = max(query.similarity_top_k, query.sparse_top_k or 0, self._session.search.hybrid.candidates)
        if self._store.dim is None or k <= 0:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        hits = self._session.query(
            query.query_str,
            k,
            where,
            search=search,
            alpha=query.alpha,
            candidates=depth,
            vector=query.query_embedding,
            namespace=namespace,
        )
        return VectorStoreQueryResult(
            nodes=[self._node(h.id, h.text, h.metadata) for h in hits],
            similarities=[h.score for h in hits],
            ids=[h.id for h in hits],
        )

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    def _among(
        self, query: VectorStoreQuery, where: dict[str, Any] | None, k: int, namespace: str | None = None
    ) -> list[Hit]:
        """Search restricted to ``node_ids``: exact scores over those nodes only."""
        if query.query_embedding is None:
            raise ValidationError("the query has no embedding (give the index an embed_model)")
        node = parse_filter(where, self._store.options.filter_limits)
        found = self._store.get(list(query.node_ids or []), namespace=namespace)
        docs = [d for d in found if matches(node, d.metadata)]
        if not docs:
            return []
        q = np.asarray(query.query_embedding, dtype=np.float64)
        scores = []
        for d in docs:
            v = np.asarray(d.vector, dtype=np.float64)
            if self._store.metric == "cosine":
                s = float(q @ v) / max(float(np.linalg.norm(q) * np.linalg.norm(v)), 1e-12)
            elif self._store.metric == "dot":
                s = float(q @ v)
            else:
                s = -float(np.linalg.norm(q - v))
            scores.append(s)
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], docs[i].id))[:k]
        return [Hit(docs[i].id, scores[i], docs[i].text, docs[i].metadata, self._store.metric) for i in order]

    def _mmr(
        self,
        vector: np.ndarray,
        where: dict[str, Any] | None,
        k: int,
        threshold: float | None,
        prefetch: int,
        namespace: str | None = None,
    ) -> list[Hit]:
        hits = self._store.search(vector, max(k * max(prefetch, 1), k), where, namespace=namespace)
        stored = {d.id: d for d in self._store.get([h.id for h in hits], namespace=namespace)}
        hits = [h for h in hits if h.id in stored and stored[h.id].vector is not None]
        if not hits:
            return []
        matrix = np.stack([np.asarray(stored[h.id].vector, dtype=np.float32) for h in hits])
        lam = 0.5 if threshold is None else threshold
        return [hits[i] for i in mmr(vector, matrix, k, lam)]

    def close(self) -> None:
        self._session.close()


@dataclass
class LlamaIndexParts:
    """What ``VectorStoreIndex`` needs from a ragstore config."""

    vector_store: RagstoreVectorStore
    embed_model: RagstoreEmbedding
    storage_context: Any  # llama_index.core.StorageContext

    def close(self) -> None:
        self.vector_store.close()


def from_config(config: Any = None, *, namespace: str | None = None) -> LlamaIndexParts:
    """The config's store and embedder for LlamaIndex (``config``: a path, a dict or a ``RagstoreConfig``).

    ``VectorStoreIndex.from_documents(docs, storage_context=parts.storage_context,
    embed_model=parts.embed_model)`` builds an index on it; ``VectorStoreIndex.from_vector_store(
    parts.vector_store, embed_model=parts.embed_model)`` reopens one.
    """
    from llama_index.core import StorageContext

    rs = Ragstore.open(config)
    embed = RagstoreEmbedding(retriever=rs.retriever)  # the pipeline's translator and cache, shared
    vs = RagstoreVectorStore(pipeline=rs, namespace=namespace)
    return LlamaIndexParts(vs, embed, StorageContext.from_defaults(vector_store=vs))
