"""``ragstore.open(config)``: an embedder and a store wired together, with ingestion and search.

This is the object applications hold. It owns the rule that texts are embedded once (unchanged chunks are
skipped on re-ingest, and an embedding cache sits under ``data_dir``) and that a store is only ever opened
with an embedder of its own dimension.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tqdm.auto import tqdm

from .bilingual.query import QueryPlan, plan_queries
from .bilingual.translate import CachedTranslator, Translator, create_translator
from .config import Mode, RagstoreConfig, load_config
from .embedders.base import Embedder
from .embedders.cache import CachedEmbedder
from .errors import DimensionMismatchError, ValidationError
from .filters import Filter
from .ingest import chunk_sources, iter_files, read_file
from .registry import create_embedder, create_store
from .store import VectorStore
from .types import Document, Hit, Metadata


@dataclass
class SearchResult:
    """Hits plus how the query was served (``plan.path``: plain or translate; ``plan.text``: what was embedded)."""

    hits: list[Hit]
    plan: QueryPlan

    @property
    def path(self) -> str:
        return self.plan.path

    @property
    def translated(self) -> str | None:
        return self.plan.translated


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
        self._translator_obj: Translator | None = None
        self.embedder = embedder or self._build_embedder()
        self.store = store or create_store(self.config.store_block())
        if self.store.dim is not None and self.store.dim != self.embedder.dim:
            stored = self.store.dim
            self.store.close()
            raise DimensionMismatchError(
                stored,
                self.embedder.dim,
                f"embedder {self.embedder.fingerprint}",
                "the store was filled by another model: give this model its own store path, or call "
                "store.drop() and re-ingest",
            )

    @classmethod
    def open(cls, config: str | os.PathLike[str] | Mapping[str, Any] | RagstoreConfig | None = None) -> Ragstore:
        return cls(load_config(config))

    def _build_embedder(self) -> Embedder:
        inner = create_embedder(self.config.embedder)
        if not self.config.cache:
            return inner
        return CachedEmbedder(inner, self.config.data_path / "cache" / "embeddings.sqlite")

    # ----------------------------------------------------------------- writes
    def add(
        self,
        texts: Sequence[str | Document],
        metadatas: Sequence[Metadata] | None = None,
        ids: Sequence[str] | None = None,
        *,
        progress: bool = False,
    ) -> list[str]:
        """Embed and upsert texts (or Documents); returns their ids."""
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
        return self._embed_and_upsert(docs, progress=progress)

    def _embed_and_upsert(self, docs: list[Document], *, progress: bool, desc: str = "embedding") -> list[str]:
        step = self.config.ingest.batch_size
        out: list[str] = []
        with tqdm(total=len(docs), desc=desc, unit="chunk", disable=not progress) as bar:
            for start in range(0, len(docs), step):
                batch = docs[start : start + step]
                todo = [d for d in batch if d.vector is None]
                if todo:
                    for doc, vec in zip(todo, self.embedder.embed_documents([d.text for d in todo]), strict=True):
                        doc.vector = vec
                out += self.store.upsert(batch)
                bar.update(len(batch))
        return out

    def ingest(self, path: str | os.PathLike[str], *, progress: bool = True) -> IngestReport:
        """Chunk files under ``path``, embed only new or changed chunks, drop chunks of a file that are gone."""
        files = iter_files(path)
        cfg = self.config.ingest
        report = IngestReport(files=len(files))
        sources = (s for f in tqdm(files, desc="reading", unit="file", disable=not progress) for s in read_file(f))
        docs = chunk_sources(sources, cfg.chunk_size, cfg.chunk_overlap)
        unique: dict[str, Document] = {}
        for doc in docs:
            if doc.id in unique:
                report.duplicates += 1
            else:
                unique[doc.id] = doc
        report.chunks = len(unique)
        existing = {d.id: d for d in self.store.get(list(unique))} if unique else {}
        todo = [
            d
            for d in unique.values()
            if d.id not in existing or existing[d.id].text != d.text or existing[d.id].metadata != d.metadata
        ]
        report.unchanged = len(unique) - len(todo)
        self._embed_and_upsert(todo, progress=progress)
        report.embedded = len(todo)
        report.sources = sorted({str(d.metadata["source"]) for d in unique.values()})
        for source in report.sources:
            stale = [d.id for d in self.store.get(filter={"source": source}) if d.id not in unique]
            report.removed += self.store.delete(stale) if stale else 0
        return report

    def delete(self, ids: Sequence[str] | None = None, *, filter: Filter | None = None) -> int:
        return self.store.delete(ids, filter=filter)

    # ----------------------------------------------------------------- reads
    def search(
        self, query: str, k: int | None = None, filter: Filter | None = None, *, bilingual: Mode | None = None
    ) -> list[Hit]:
        """The ``k`` best hits for one query (score: cosine similarity by default, higher is better)."""
        return self.query(query, k, filter, bilingual=bilingual).hits

    def search_many(
        self,
        queries: Sequence[str],
        k: int | None = None,
        filter: Filter | None = None,
        *,
        bilingual: Mode | None = None,
    ) -> list[list[Hit]]:
        """Embed all queries in one batch, then search each."""
        return [r.hits for r in self.query_many(queries, k, filter, bilingual=bilingual)]

    def query(
        self, query: str, k: int | None = None, filter: Filter | None = None, *, bilingual: Mode | None = None
    ) -> SearchResult:
        """Like ``search``, and also says which path served the query and what text was embedded."""
        return self.query_many([query], k, filter, bilingual=bilingual)[0]

    def query_many(
        self,
        queries: Sequence[str],
        k: int | None = None,
        filter: Filter | None = None,
        *,
        bilingual: Mode | None = None,
    ) -> list[SearchResult]:
        if isinstance(queries, str):
            raise ValidationError("query_many() takes a list of queries; wrap a single query in a list")
        mode = bilingual or self.config.bilingual.mode
        if mode not in ("off", "translate", "auto"):
            raise ValidationError(f"bilingual mode must be off, translate or auto, got {mode!r}")
        plans = plan_queries(
            list(queries), mode, self._translator() if mode != "off" else None, self.config.bilingual.max_chars
        )
        vectors = self.embedder.embed_query([p.text for p in plans])
        hits = self.store.search_batch(vectors, k or self.config.search.k, filter)
        return [SearchResult(h, p) for h, p in zip(hits, plans, strict=True)]

    def _translator(self) -> Translator:
        if self._translator_obj is None:
            cache = self.config.data_path / "cache" / "translations.sqlite" if self.config.cache else None
            bi = self.config.bilingual
            self._translator_obj = create_translator(bi.translator, cache=cache, **bi.translator_options)
        return self._translator_obj

    def get(self, ids: Sequence[str]) -> list[Document]:
        return self.store.get(ids)

    def count(self, filter: Filter | None = None) -> int:
        return self.store.count(filter)

    def info(self) -> dict[str, Any]:
        """What this instance runs on: config source, embedder, store, counts."""
        describe = getattr(self.store, "describe", None)
        return {
            "config": self.config.source or "(defaults)",
            "data_dir": str(self.config.data_path),
            "embedder": self.embedder.describe(),
            "store": {
                "type": self.store.name,
                "metric": self.store.metric,
                "dim": self.store.dim,
                "count": self.store.count(),
                **(describe() if callable(describe) else {}),
            },
        }

    def close(self) -> None:
        self.store.close()
        if isinstance(self.embedder, CachedEmbedder):
            self.embedder.close()
        if isinstance(self._translator_obj, CachedTranslator):
            self._translator_obj.close()

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
    from importlib.resources import files

    return Path(str(files("ragstore.datasets") / "superannuation"))
