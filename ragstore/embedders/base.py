"""The one ``Embedder`` interface: texts in, float32 rows out, queries and passages kept apart.

Queries and passages go through separate methods because asymmetric models (E5, BGE) need different
prefixes for each; mixing them up silently costs retrieval quality.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from ..errors import ConfigError, EngineError, RagstoreError, ValidationError, describe_problems

Kind = Literal["query", "passage"]


class EmbedderOptions(BaseModel):
    """Options every embedder accepts; implementations extend this."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    normalize: bool = True


def check_texts(texts: str | Sequence[str], what: str = "text") -> list[str]:
    """Accept one string or a sequence of strings; refuse empty or non-string items by position."""
    items = [texts] if isinstance(texts, str) else list(texts)
    for pos, text in enumerate(items):
        if not isinstance(text, str):
            raise ValidationError(f"{what} {pos} is a {type(text).__name__}, expected str")
        if not text.strip():
            raise ValidationError(f"{what} {pos} is empty")
    return items


class Embedder(ABC):
    """Turns text into vectors. Rows are L2-normalised unless ``normalize=False``."""

    name: ClassVar[str] = "embedder"
    Options: ClassVar[type[EmbedderOptions]] = EmbedderOptions

    #: the validated settings (``Options``), set by ``configure``; what the embedder reads them from
    options: EmbedderOptions

    def __init__(self, *, normalize: bool = True) -> None:
        self.normalize = normalize

    def configure(self, given: Mapping[str, Any] | EmbedderOptions) -> Any:
        """Validate ``given`` through this class's ``Options`` once and keep it as ``self.options``: the one
        declaration of the settings (as stores have), so keyword arguments and config blocks are checked
        alike and a bad value names its key. Returns the options object (typed by the subclass)."""
        if isinstance(given, EmbedderOptions):
            opts = given if isinstance(given, self.Options) else self.Options.model_validate(given.model_dump())
        else:
            try:
                opts = self.Options.model_validate(dict(given))
            except PydanticValidationError as exc:
                raise ConfigError(describe_problems(exc, f"{self.name} embedder")) from None
        self.options = opts
        self.normalize = opts.normalize
        return opts

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of the vectors this embedder returns."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies model *and* settings: two embedders with equal fingerprints give equal vectors."""

    @abstractmethod
    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        """Raw vectors for non-empty, validated texts."""

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for passages to be stored, shape ``(len(texts), dim)``."""
        return self._run(check_texts(texts), "passage")

    def embed_query(self, texts: str | Sequence[str]) -> np.ndarray:
        """Vectors for queries (one string or many), shape ``(n, dim)``."""
        return self._run(check_texts(texts, "query"), "query")

    def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        """Either of the two, chosen by ``kind``."""
        return self.embed_query(texts) if kind == "query" else self.embed_documents(texts)

    def _run(self, texts: list[str], kind: Kind) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            out = np.asarray(self._embed(texts, kind), dtype=np.float32)
        except RagstoreError:
            raise
        except Exception as exc:  # the model's own failure, mapped on every call as the stores map theirs
            raise EngineError(
                f"{self.name} failed embedding {len(texts)} {kind} text(s): {type(exc).__name__}: {exc}"
            ) from exc
        if out.shape != (len(texts), self.dim):
            raise ValidationError(f"{self.name} returned shape {out.shape}, expected {(len(texts), self.dim)}")
        return self.finish(out)

    def finish(self, out: np.ndarray) -> np.ndarray:
        """Normalise rows when configured (zero rows stay zero rather than becoming NaN)."""
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.where(norms == 0, 1.0, norms)
        return np.ascontiguousarray(out, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"type": self.name, "dim": self.dim, "fingerprint": self.fingerprint}

    def identity(self) -> dict[str, Any]:
        """What a collection's manifest records about the embedder that wrote it. Two embedders with equal
        ``key`` give the same vectors up to rounding (same weights, prefixes, truncation, normalisation);
        ``variant`` names how they are run (an export, a quantisation), which may differ safely."""
        return {
            "type": self.name,
            "model": self.name,
            "dim": self.dim,
            "normalize": self.normalize,
            "weights": self.fingerprint,
            "variant": None,
            "key": hashlib.sha256(self.fingerprint.encode()).hexdigest()[:16],
        }
