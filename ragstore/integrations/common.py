"""What the LlamaIndex and LangChain integrations share.

Frameworks hand us metadata of any JSON shape (``None``, lists, nested dicts, keys with spaces) while every
ragstore engine stores flat scalars under identifier keys, the same way on all of them. ``pack_metadata``
keeps the scalars as filterable fields and puts the rest, JSON-encoded, under one reserved key that
``unpack_metadata`` restores, so a framework document round-trips exactly and filters work on scalars.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError as PydanticValidationError

from ..bilingual.config import BilingualConfig
from ..config import SearchConfig
from ..embedders.base import Embedder
from ..errors import ConfigError, UnsupportedFeatureError, ValidationError
from ..lexical import SearchMode
from ..query.retrieval import Retriever, override_hybrid, search_with_vector
from ..stores.base import VectorStore
from ..stores.collection import Collection, open_collection
from ..stores.registry import create_embedder, describe_problems
from ..types import _KEY_RE, Hit, Metadata

EXTRA_KEY = "_rs_extra"  # JSON of the metadata values an engine cannot hold as scalar fields
QueryMode = Literal["off", "translate", "auto"]


def as_embedder(embedder: Embedder | Mapping[str, Any] | str | os.PathLike[str] | None) -> Embedder:
    """An embedder from an instance, a config block, or a sentence-transformers model name or folder."""
    if isinstance(embedder, Embedder):
        return embedder
    if embedder is None:
        return create_embedder({"type": "sentence-transformers"})
    if isinstance(embedder, str | os.PathLike):
        return create_embedder({"type": "sentence-transformers", "model": str(embedder)})
    if isinstance(embedder, Mapping):
        return create_embedder(embedder)
    raise ConfigError(f"embedder must be an Embedder, a config block or a model name, got {type(embedder).__name__}")


class Session:
    """What an integration reads and writes through, the same however it was built: a ``collection`` (a
    pipeline's, with its routes and lexical index, or one around the store given) and the query path for
    question text (the pipeline's retriever and search settings, or the framework's own query vector).
    Writes go to the collection, so every derived index follows; no integration code asks which it has."""

    def __init__(
        self,
        collection: Collection,
        *,
        retriever: Retriever | None = None,
        search: SearchConfig | None = None,
        owner: Any = None,
    ) -> None:
        self.collection = collection
        self.retriever = retriever
        self.search = search or SearchConfig()
        self._owner = owner or collection

    @classmethod
    def of(
        cls, store: Collection | VectorStore | Mapping[str, Any] | None, pipeline: Any = None, base_dir: Any = None
    ) -> Session:
        """From a pipeline (``ragstore.open``), else from a collection, store or store block (default: RAM)."""
        if pipeline is not None:
            return cls(pipeline.collection, retriever=pipeline.retriever, search=pipeline.config.search, owner=pipeline)
        if isinstance(store, Collection):
            return cls(store)
        if isinstance(store, VectorStore):
            return cls(open_collection(store))
        if store is None:
            return cls(open_collection({"type": "memory"}))
        if isinstance(store, Mapping):
            return cls(open_collection(store, base_dir=base_dir))
        raise ConfigError(f"store must be a VectorStore, a Collection or a config block, got {type(store).__name__}")

    def query(
        self,
        text: str | None,
        k: int,
        where: Any,
        *,
        search: SearchMode,
        alpha: float | None = None,
        candidates: int | None = None,
        vector: Any = None,
        embed: Any = None,
        namespace: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best hits for one question: through the pipeline's retriever when there is one and the
        text is known (bilingual routing and fusion included; ``vector``, when given, is used instead of
        embedding again), else from ``vector`` (or ``embed()``) and ``text`` (lexical and hybrid legs)."""
        if self.collection.dim is None:
            return []
        hybrid = override_hybrid(self.search.hybrid, alpha=alpha, candidates=candidates)  # the framework's words
        if self.retriever is not None and text:
            given = None if vector is None else [vector]
            spec = self.retriever.resolve(
                k,
                where,
                search=search,
                hybrid=hybrid,
                limits=self.collection.options.filter_limits,
                namespace=namespace,
            )
            (result,) = self.retriever.answer(self.collection, [text], spec, vectors=given)
            return result.hits
        if vector is None and embed is not None and search != "lexical":
            vector = embed()
        return search_with_vector(
            self.collection, vector, text, k, where, search=search, hybrid=hybrid, namespace=namespace
        )

    def close(self) -> None:
        self._owner.close()


def query_retriever(
    embedder: Embedder,
    mode: str = "off",
    translator: str = "dictionary",
    options: Mapping[str, Any] | None = None,
) -> Retriever:
    """The retriever an embedding-only integration uses for questions: as far as an embedder can take the
    bilingual path, i.e. Chinese and mixed queries translated before the query embedding (``translate``,
    ``auto``); documents are never touched."""
    if mode not in ("off", "translate", "auto"):
        raise ConfigError(
            f"an embedding model can apply bilingual mode off, translate or auto, not {mode!r} (route and "
            "both need a second index: use ragstore.open() with bilingual.multilingual)"
        )
    try:
        bilingual = BilingualConfig.model_validate(
            {"mode": mode, "translator": translator, "translator_options": dict(options or {})}
        )
    except PydanticValidationError as exc:
        raise ConfigError("bilingual options: " + describe_problems(exc)) from None
    return Retriever(embedder, bilingual)


def reject_unknown(kwargs: Mapping[str, Any], where: str) -> None:
    """Keyword arguments we do not implement are an error, never silently ignored (``where_document=``...)."""
    if kwargs:
        raise UnsupportedFeatureError(f"{where} does not support {', '.join(sorted(map(repr, kwargs)))}")


def _scalar(value: Any) -> bool:
    if isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float) and math.isfinite(value)


def pack_metadata(metadata: Mapping[str, Any] | None) -> Metadata:
    """Scalars under identifier keys stay fields; everything else goes, JSON-encoded, under ``_rs_extra``."""
    if not metadata:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(f"metadata must be a mapping, got {type(metadata).__name__}")
    out: Metadata = {}
    extra: dict[str, Any] = {}
    for key, value in metadata.items():
        if key == EXTRA_KEY:
            raise ValidationError(f"metadata key {EXTRA_KEY!r} is reserved by ragstore")
        if isinstance(key, str) and _KEY_RE.match(key) and _scalar(value):
            out[key] = value
        else:
            extra[str(key)] = value
    if extra:
        try:
            out[EXTRA_KEY] = json.dumps(extra, ensure_ascii=False, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"metadata values must be JSON-serialisable: {exc}") from None
    return out


def unpack_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in metadata.items() if k != EXTRA_KEY}
    raw = metadata.get(EXTRA_KEY)
    if isinstance(raw, str):
        out.update(json.loads(raw))
    return out


def mmr(query: np.ndarray, candidates: np.ndarray, k: int, lambda_mult: float) -> list[int]:
    """Maximal marginal relevance over cosine similarities: indexes into ``candidates``, best first."""
    if len(candidates) == 0 or k <= 0:
        return []
    if not 0.0 <= lambda_mult <= 1.0:
        raise ValidationError(f"lambda_mult must be in [0, 1], got {lambda_mult}")
    cand = candidates / np.maximum(np.linalg.norm(candidates, axis=1, keepdims=True), 1e-12)
    q = query / max(float(np.linalg.norm(query)), 1e-12)
    relevance = cand @ q
    pairwise = cand @ cand.T
    chosen = [int(np.argmax(relevance))]
    while len(chosen) < min(k, len(cand)):
        redundancy = pairwise[:, chosen].max(axis=1)
        score = lambda_mult * relevance - (1 - lambda_mult) * redundancy
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))
    return chosen
