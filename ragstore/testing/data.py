"""The seeded documents every conformance test and filter strategy works on (no pytest or hypothesis here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..types import Document

DIM = 16
N_DOCS = 60
TAGS = [
    "alpha",
    "beta",
    "gamma",
    'it\'s "quoted"',
    "'); DROP TABLE docs; --",
    "ünïcödé 中文 🎉",
    "back\\slash",
]


def make_docs(n: int = N_DOCS, dim: int = DIM, seed: int = 7) -> list[Document]:
    """Seeded documents with every metadata kind; some fields are missing on purpose."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        meta: dict[str, Any] = {"i": i, "x": round(float(rng.normal()), 4), "tag": TAGS[i % len(TAGS)]}
        if i % 3 == 0:
            meta["flag"] = i % 2 == 0
        if i % 4 != 0:
            meta["opt"] = "odd" if i % 2 else "even"
        if i % 5 == 0:
            meta["num_or_str"] = str(i)  # same key, string kind
        elif i % 5 == 1:
            meta["num_or_str"] = i  # same key, number kind
        docs.append(
            Document(id=f"doc-{i:03d}", text=f"document number {i}", metadata=meta, vector=rng.normal(size=dim))
        )
    return docs


def made_up_word(i: int, letters: int = 4) -> str:
    """A word of its own per ``i`` (``zq`` + letters + ``x``: no stemmer or stop list touches it), so a lexical
    query for it finds exactly the documents that carry it."""
    out = ""
    for _ in range(letters):
        i, r = divmod(i, 26)
        out += chr(97 + r)
    return f"zq{out}x"
