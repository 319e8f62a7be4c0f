"""A deterministic, dependency-free embedder: feature hashing of words and CJK character bigrams.

Not a semantic model. It exists so tests, CI and the conformance suite run without torch or weights, and
it still gives real lexical retrieval (shared words -> similar vectors), so tests can assert rankings.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
from pydantic import Field

from .base import Embedder, EmbedderOptions, Kind

_WORD = re.compile(r"[a-z0-9]+|[\u3400-\u9fff\uf900-\ufaff]+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class HashingOptions(EmbedderOptions):
    dim: int = Field(default=256, gt=0)
    seed: str = Field(default="", description="another seed is another 'model' of the same dimension")


def _features(text: str) -> list[str]:
    feats: list[str] = []
    for tok in _WORD.findall(text.lower()):
        if _CJK.match(tok):
            feats += list(tok) + [tok[i : i + 2] for i in range(len(tok) - 1)]
        else:
            feats.append(tok)
    return feats


class HashingEmbedder(Embedder):
    name = "hashing"
    Options = HashingOptions

    def __init__(self, dim: int | HashingOptions | None = None, **options: Any) -> None:
        opts: HashingOptions = self.configure(
            dim if isinstance(dim, HashingOptions) else {**({"dim": dim} if dim is not None else {}), **options}
        )
        self._dim = opts.dim
        self.seed = opts.seed

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"hashing:{self._dim}:{self.normalize}" + (f":{self.seed}" if self.seed else "")

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feat in _features(text):
                digest = hashlib.blake2b((self.seed + feat).encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self._dim] += 1.0 if (value >> 63) & 1 else -1.0
            if not out[row].any():  # text with no word characters: a fixed, non-zero direction
                out[row, 0] = 1.0
        return out
