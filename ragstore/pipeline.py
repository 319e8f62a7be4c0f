"""``ragstore.open(config)``: an embedder and a store wired together, with ingestion and search.

This is the object applications hold. It owns the rule that texts are embedded once (unchanged chunks are
skipped on re-ingest, and an embedding cache sits under ``data_dir``) and that a store is only ever opened
with an embedder of its own dimension.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tqdm.auto import tqdm

from .bilingual.config import Mode
from .config import RagstoreConfig, load_config
from .data.beir import bundled_dataset
from .data.ingest import chunk_sources, iter_files, read_file
from .embedders.base import Embedder
from .embedders.cache import CachedEmbedder
from .errors import DimensionMismatchError, ValidationError
from .lexical.config import SearchMode
from .query.filters import Filter
from .query.namespaces import ALL_NAMESPACES
from .query.retrieval import Retriever, SearchResult
from .secrets import redact
from .stores.base import VectorStore, check_document
from .stores.collection import Collection, open_collection
from .stores.registry import build_embedder
from .types import Document, Hit, Metadata


@dataclass
class IngestReport:
    files: int = 0
    chunks: int = 0
    embedded: int = 0
    unchanged: int = 0
    removed: int = 0
    duplicates: int = 0
    sources: list[str] = field(default_factory=list)


class Ragstore:
    """Embed, store and search documents as the config says."""

    def __init__(
        self,
        config: RagstoreConfig | None = None,
        *,
        embedder: Embedder | None = None,
        store: VectorStore | None = None,
    ) -> None:
        self.config = config or load_config({})
        self.embedder = embedder or self._build_embedder()
        route_embedders: list[Embedder] = []
        opened: list[VectorStore] = []
        try:
            if store is None:
                cls, opts = self.config.store_spec()
                store = cls(opts)
                opened.append(store)
            if store.dim is not None and store.dim != self.embedder.dim:
                raise DimensionMismatchError(
                    store.dim,
                    self.embedder.dim,
                    f"embedder {self.embedder.fingerprint}",
                    "the store was filled by another model: give this model its own store path, or call "
                    "store.drop() and re-ingest",
                )
            # the multilingual routes: each a dense index of the same documents, in a store of its own
            routes: dict[str, tuple[Embedder, VectorStore]] = {}
            for name in self.config.bilingual.routes:
                ml_embedder = self._wrap(build_embedder(*self.config.embedder_spec(route=name)), "embeddings-ml.sqlite")
                route_embedders.append(ml_embedder)
                spec = self.config.multilingual_store_spec(name)
                assert spec is not None  # a multilingual block always yields a store per route
                ml_cls, ml_opts = spec
                routes[name] = (ml_embedder, ml_cls(ml_opts))
                opened.append(routes[name][1])
            ingest = self.config.ingest
            self.collection: Collection = open_collection(
                store,
                embedder=self.embedder,
                routes=routes,
                folder=self.config.data_path / "collections",
                chunking={"chunk_size": ingest.chunk_size, "chunk_overlap": ingest.chunk_overlap},
            )
        except BaseException:
            for one in opened:
                with suppress(Exception):
                    one.close()
            for emb in (*route_embedders, self.embedder):
                if isinstance(emb, CachedEmbedder):
                    emb.close()
            raise
        self.retriever = Retriever(
            self.embedder,
            self.config.bilingual,
            multilingual={name: emb for name, (emb, _) in self.routes.items()},
            cache_dir=self.config.data_path / "cache" if self.config.cache else None,
            search=self.config.search.mode,
            hybrid=self.config.search.hybrid,
        )

    @property
    def store(self) -> Collection:
        """The collection: the primary store and its derived indexes, read and written as one."""
        return self.collection

    @property
    def routes(self) -> dict[str, tuple[Embedder, VectorStore]]:
        """Route name -> (its embedder, its dense index)."""
        return {name: (d.embedder, d.store) for name, d in self.collection.routes.items()}

    @property
    def ml_store(self) -> VectorStore | None:
        """The first route's index (None without routes)."""
        return next((st for _, st in self.routes.values()), None)

    @property
    def ml_embedder(self) -> Embedder | None:
        """The first route's embedder (None without routes)."""
        return next((emb for emb, _ in self.routes.values()), None)

    @property
    def route_stores(self) -> dict[str, VectorStore]:
        return self.collection.route_stores

    def sync_multilingual(self, *, progress: bool = False) -> int:
        """Bring every multilingual index in step with the primary store now (the collection also does this
        on its own whenever a write did not reach one). Returns how many documents changed, over all routes."""
        return self.collection.rebuild([d.name for d in self.collection.routes.values()])

    @classmethod
    def open(cls, config: str | os.PathLike[str] | Mapping[str, Any] | RagstoreConfig | None = None) -> Ragstore:
        return cls(load_config(config))

    def _build_embedder(self) -> Embedder:
        return self._wrap(build_embedder(*self.config.embedder_spec()), "embeddings.sqlite")

    def _wrap(self, inner: Embedder, name: str) -> Embedder:
        if not self.config.cache:
            return inner
        return CachedEmbedder(inner, self.config.data_path / "cache" / name)

    # ----------------------------------------------------------------- writes
    def add(
        self,
        texts: Sequence[str | Document],
        metadatas: Sequence[Metadata] | None = None,
        ids: Sequence[str] | None = None,
        *,
        progress: bool = False,
        namespace: str | None = None,
    ) -> list[str]:
        """Embed and upsert texts (or Documents) into ``namespace``; returns their ids."""
        if isinstance(texts, str):
            raise ValidationError("add() takes a list of texts; wrap a single text in a list")
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValidationError(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValidationError(f"{len(ids)} ids for {len(texts)} texts")
        docs: list[Document] = []
        for pos, item in enumerate(texts):
            if isinstance(item, Document):
                doc = Document(text=item.text, id=item.id, metadata=dict(item.metadata), vector=item.vector)
            else:
                if not isinstance(item, str) or not item.strip():
                    raise ValidationError(f"text {pos} is empty or not a string")
                doc = Document(text=item)
            if metadatas is not None:
                doc.metadata = dict(metadatas[pos])
            if ids is not None:
                doc.id = ids[pos]
            docs.append(doc)
        return self._embed_and_upsert(docs, progress=progress, namespace=namespace)

    def _embed_and_upsert(
        self, docs: list[Document], *, progress: bool, desc: str = "embedding", namespace: str | None = None
    ) -> list[str]:
        if namespace is not None:  # a bad or unknown namespace is refused before anything is embedded
            self.collection.primary.scoped_filter(None, namespace)
        for pos, doc in enumerate(docs):  # the whole input is refused before the first batch is written
            try:
                check_document(doc, pos)
            except ValidationError as exc:
                source = doc.metadata.get("source") if isinstance(doc, Document) else None
                where = f"{source}: " if source else ""
                raise ValidationError(f"{where}{exc}; nothing was written") from None
        step = self.config.ingest.batch_size
        out: list[str] = []
        with tqdm(total=len(docs), desc=desc, unit="chunk", disable=not progress) as bar:
            for start in range(0, len(docs), step):
                batch = docs[start : start + step]
                todo = [d for d in batch if d.vector is None]
                if todo:
                    for doc, vec in zip(todo, self.embedder.embed_documents([d.text for d in todo]), strict=True):
                        doc.vector = vec
                out += self.collection.upsert(batch, namespace=namespace)  # the lexical index and every route follow
                bar.update(len(batch))
        return out

    def ingest(
        self, path: str | os.PathLike[str], *, progress: bool = True, namespace: str | None = None
    ) -> IngestReport:
        """Chunk files under ``path`` into ``namespace``, embed only new or changed chunks, drop chunks of a
        file that are gone."""
        ns = namespace
        cfg = self.config.ingest
        files = iter_files(path, cfg.max_file_mb)
        report = IngestReport(files=len(files))
        base = self.config.base_dir
        sources = (
            s for f in tqdm(files, desc="reading", unit="file", disable=not progress) for s in read_file(f, base)
        )
        docs = chunk_sources(sources, cfg.chunk_size, cfg.chunk_overlap)
        unique: dict[str, Document] = {}
        for doc in docs:
            if doc.id in unique:
                report.duplicates += 1
            else:
                unique[doc.id] = doc
        report.chunks = len(unique)
        existing = {d.id: d for d in self.store.get(list(unique), namespace=ns)} if unique else {}
        todo = [
            d
            for d in unique.values()
            if d.id not in existing or existing[d.id].text != d.text or existing[d.id].metadata != d.metadata
        ]
        report.unchanged = len(unique) - len(todo)
        self._embed_and_upsert(todo, progress=progress, namespace=ns)
        report.embedded = len(todo)
        report.sources = sorted({str(d.metadata["source"]) for d in unique.values()})
        for source in report.sources:
            stale = [d.id for d in self.store.get(filter={"source": source}, namespace=ns) if d.id not in unique]
            report.removed += self.delete(stale, namespace=ns) if stale else 0
        return report

    def delete(
        self, ids: Sequence[str] | None = None, *, filter: Filter | None = None, namespace: str | None = None
    ) -> int:
        return self.collection.delete(ids, filter=filter, namespace=namespace)

    def clear(self, *, namespace: str | None = None) -> None:
        """Remove every document of ``namespace`` (a collection without namespaces: every document)."""
        self.collection.clear(namespace=namespace)

    def namespaces(self) -> dict[str, int]:
        """Each namespace that holds documents, with how many."""
        return self.collection.namespaces()

    # ----------------------------------------------------------------- reads
    def search(
        self,
        query: str,
        k: int | None = None,
        filter: Filter | None = None,
        *,
        bilingual: Mode | None = None,
        mode: SearchMode | None = None,
        alpha: float | None = None,
        namespace: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best hits for one query in ``namespace`` (higher is better; ``Hit.scale`` says what the
        score is: cosine similarity by default, BM25 in lexical mode, the fusion's score in hybrid mode).
        ``alpha``: hybrid with alpha fusion at that share of the dense leg."""
        return self.query(query, k, filter, bilingual=bilingual, mode=mode, alpha=alpha, namespace=namespace).hits

    def search_many(
        self,
        queries: Sequence[str],
        k: int | None = None,
        filter: Filter | None = None,
        *,
        bilingual: Mode | None = None,
        mode: SearchMode | None = None,
        alpha: float | None = None,
        namespace: str | None = None,
    ) -> list[list[Hit]]:
        """Embed all queries in one batch, then search each."""
        found = self.query_many(queries, k, filter, bilingual=bilingual, mode=mode, alpha=alpha, namespace=namespace)
        return [r.hits for r in found]

    def query(
        self,
        query: str,
        k: int | None = None,
        filter: Filter | None = None,
        *,
        bilingual: Mode | None = None,
        mode: SearchMode | None = None,
        alpha: float | None = None,
        namespace: str | None = None,
    ) -> SearchResult:
        """Like ``search``, and also says which path served the query and what text was embedded."""
        return self.query_many([query], k, filter, bilingual=bilingual, mode=mode, alpha=alpha, namespace=namespace)[0]

    def query_many(
        self,
        queries: Sequence[str],
        k: int | None = None,
        filter: Filter | None = None,
        *,
        bilingual: Mode | None = None,
        mode: SearchMode | None = None,
        alpha: float | None = None,
        namespace: str | None = None,
    ) -> list[SearchResult]:
        """``mode``: dense, lexical or hybrid (default: the config's ``search.mode``); ``namespace``: the tenant
        searched (every leg: dense, lexical, routes)."""
        if isinstance(queries, str):
            raise ValidationError("query_many() takes a list of queries; wrap a single query in a list")
        spec = self.retriever.resolve(
            self.config.search.k if k is None else k,
            filter,
            bilingual=bilingual,
            search=mode,
            alpha=alpha,
            limits=self.store.options.filter_limits,
            namespace=namespace,
        )
        return self.retriever.answer(self.collection, queries, spec)

    def get(self, ids: Sequence[str], *, namespace: str | None = None) -> list[Document]:
        return self.store.get(ids, namespace=namespace)

    def explain(
        self, filter: Filter | None = None, k: int | None = None, *, namespace: str | None = None
    ) -> dict[str, Any]:
        """How the store would run a search with ``filter`` (declared fields used, pre-filter or filtered
        ANN), without running it: see ``VectorStore.explain``."""
        return self.collection.primary.explain(filter, k or self.config.search.k, namespace=namespace)

    def count(self, filter: Filter | None = None, *, namespace: str | None = None) -> int:
        return self.store.count(filter, namespace=namespace)

    def info(self) -> dict[str, Any]:
        """What this instance runs on: config source, embedder, store, counts (passwords masked: this reaches
        ``ragstore info`` and ``/v1/info``)."""
        return redact(
            {
                "config": self.config.source or "(defaults)",
                "data_dir": str(self.config.data_path),
                "embedder": self.embedder.describe(),
                "store": {
                    "type": self.store.name,
                    "metric": self.store.metric,
                    "dim": self.store.dim,
                    "count": self.store.count(namespace=ALL_NAMESPACES),
                    "namespaces": self.collection.namespaces() if self.store.options.namespaces else None,
                    "lexical": self.store.lexical,
                    "lexical_leg": self._lexical_leg(),
                    "indexed": {
                        "fields": dict(self.store.options.indexed),
                        "engine_index": self.collection.primary.indexes_fields,
                    },
                    **self.store.describe(),
                },
                "routes": {
                    name: {"embedder": emb.describe(), "count": st.count(), "dim": st.dim, **st.describe()}
                    for name, (emb, st) in self.routes.items()
                },
                "manifest": self.collection.manifest() if self.store.dim is not None else None,
                "notes": list(self.collection.notes),
            }
        )

    def _lexical_leg(self) -> str:
        """Where the BM25 leg lives, in words (``ragstore info``, ``/v1/info``)."""
        primary = self.collection.primary
        leg = self.collection.lexical_leg
        native = primary.native_lexical if primary.lexical_native else None
        if leg == "native":
            return f"native: {native}"
        if leg == "sidecar":
            return "sidecar: a SQLite BM25 index beside the store"
        where = f"native ({native})" if native else "a sidecar SQLite index"
        return f"none yet: the first lexical or hybrid query builds it ({where})"

    def close(self) -> None:
        collection = getattr(self, "collection", None)
        if collection is None:
            return
        embedders = [d.embedder for d in collection.routes.values()]
        collection.close()
        for emb in embedders:
            if isinstance(emb, CachedEmbedder):
                emb.close()
        if isinstance(self.embedder, CachedEmbedder):
            self.embedder.close()
        retriever = getattr(self, "retriever", None)
        if retriever is not None:
            retriever.close()

    def __enter__(self) -> Ragstore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open(config: str | os.PathLike[str] | Mapping[str, Any] | RagstoreConfig | None = None) -> Ragstore:
    """Open the store and embedder a config names (a path, a dict, or the default locations)."""
    return Ragstore.open(config)


def sample_dataset() -> Path:
    """Folder of the bundled sample dataset (BEIR layout)."""
    return bundled_dataset("superannuation")
