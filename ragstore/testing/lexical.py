"""A reference BM25 and a fixed bilingual corpus, for holding every store's lexical index to one answer.

The reference scores the corpus in plain Python from the analyzer's terms (Lucene BM25, float64), with no
SQLite, no postings and nothing from the index under test; ``tests/test_lexical.py`` checks it against the
``bm25s`` library.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..lexical import Analyzer, default_analyzer
from ..types import Document
from .data import DIM, make_docs

_WORDS = (  # noqa: SIM905
    "super fund contribution member retirement pension tax form return deadline cat dog garden river climate "
    "policy insurance property rental income capital gain audit trustee rollover balance employer payment "
    "running runs ran quickly carefully investment investments invest strategy report annual"
).split()
_ZH = ["自管养老基金", "投资", "规则", "缴款", "退休", "税务", "报表", "雇主", "保险", "房产"]
_ACRONYMS = ["SMSF", "SG", "TFN", "ATO", "Form 5", "ＳＭＳＦ"]
_HOSTILE = ["'); DROP TABLE docs; --", 'it\'s "quoted"', "ünïcödé 中文 🎉", "back\\slash", "%_* LIKE"]

#: queries every store must answer exactly like the reference: English, Chinese, mixed, acronyms, hostile
QUERIES = [
    "super fund contribution",
    "tax form return deadline",
    "Form 5",
    "SMSF 投资规则",
    "自管养老基金是什么",
    "ＳＭＳＦ rollover",
    "running investments",
    "'); DROP TABLE docs; --",
    "ünïcödé 中文",
    "cat dog garden river climate policy insurance property",
]
#: queries with no terms: only stop words, punctuation or emoji
EMPTY_QUERIES = ["the of and", "?!…", "🎉🎉", "的 了 吗"]


def lexical_docs(n: int = 60, seed: int = 11) -> list[Document]:
    """``make_docs`` metadata and vectors with texts that give BM25 something to rank (repeats, lengths,
    Chinese, acronyms, hostile strings)."""
    rng = np.random.default_rng(seed)
    docs = make_docs(n, DIM)
    for i, d in enumerate(docs):
        words = list(rng.choice(_WORDS, size=int(rng.integers(3, 25))))
        if i % 3 == 0:
            words.append(str(rng.choice(_ACRONYMS)))
        if i % 4 == 1:
            words.insert(int(rng.integers(0, len(words))), "".join(rng.choice(_ZH, size=int(rng.integers(1, 4)))))
        if i % 11 == 5:
            words.append(_HOSTILE[i % len(_HOSTILE)])
        d.text = " ".join(words)
    return docs


def reference_bm25(
    docs: Sequence[Document],
    query: str,
    k: int,
    pred: Callable[[dict[str, Any]], bool] | None = None,
    *,
    k1: float = 1.2,
    b: float = 0.75,
    analyzer: Analyzer | None = None,
    avglen: float | None = None,
) -> list[tuple[str, float]]:
    """(id, score) of the ``k`` best documents matching ``pred``; statistics over all ``docs``; ties by id.
    ``avglen``: a leg's recorded average length instead of today's (an engine leg that fixes it when built)."""
    an = analyzer or default_analyzer()
    tfs = {d.id: Counter(an.terms(d.text)) for d in docs}
    n = len(docs)
    avg = sum(sum(c.values()) for c in tfs.values()) / n if n else 0.0
    if avglen is not None:
        avg = avglen
    scores: dict[str, float] = {}
    for term in dict.fromkeys(an.terms(query)):
        df = sum(1 for c in tfs.values() if term in c)
        if not df:
            continue
        idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        for d in docs:
            tf = tfs[d.id].get(term, 0)
            if tf:
                length = sum(tfs[d.id].values())
                scores[d.id] = scores.get(d.id, 0.0) + idf * tf / (tf + k1 * (1 - b + b * length / avg))
    meta = {d.id: d.metadata for d in docs}
    ranked = sorted((i for i in scores if pred is None or pred(meta[i])), key=lambda i: (-scores[i], i))
    return [(i, scores[i]) for i in ranked[:k]]


__all__ = ["EMPTY_QUERIES", "QUERIES", "lexical_docs", "reference_bm25"]
