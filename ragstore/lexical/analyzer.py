"""Text -> BM25 terms, for English, Chinese and text that mixes them.

Text is NFKC-normalised (full-width ``ＳＭＳＦ`` becomes ``smsf``) and lower-cased, then split by script:
runs of Han characters are segmented into words by jieba; everything else is split into word tokens of two
or more characters (single digits kept: form 5, part 2), English stop words (Lucene's list, as in bm25s)
removed and the rest Snowball-stemmed (PyStemmer). So a Chinese question's Latin acronyms ("SMSF") and Han
words reach the index as written, and a translated question meets English documents with the same terms
they were indexed with.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from typing import Any

from .._optional import require

#: bumped when the analysis changes: an index built by another version is rebuilt on open
ANALYZER_VERSION = "1"

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]+")
_WORD = re.compile(r"(?u)\b\w\w+\b|\b\d\b")
_HAN_WORD = re.compile(r"\w", re.UNICODE)

#: Lucene's English stop words (the list bm25s and Elasticsearch's ``english`` analyzer use)
STOPWORDS_EN = frozenset(
    (  # noqa: SIM905 - one line of words reads better than 33 lines
        "a an and are as at be but by for if in into is it no not of on or such that the their then there "
        "these they this to was will with"
    ).split()
)
#: function words that carry no topic in a Chinese question
STOPWORDS_ZH = frozenset(
    (  # noqa: SIM905
        "的 了 是 在 和 与 及 或 吗 呢 吧 啊 呀 着 过 也 都 就 而 并 被 把 对 从 向 于 之 其 这 那 这个 那个 "
        "什么 怎么 怎样 如何 哪 哪些 哪个 为什么 谁 多少 几 请问 一个 有 没有 我 你 他 她 它 我们 你们 他们"
    ).split()
)


class Analyzer:
    """Thread-safe: the stemmer (not thread-safe itself) and jieba's lazy start are each behind a lock."""

    version = ANALYZER_VERSION

    def __init__(self, max_terms: int = 10_000_000) -> None:
        self.max_terms = max_terms
        self._stemmer: Any = None
        self._jieba: Any = None
        self._lock = threading.Lock()

    def _stem(self, words: list[str]) -> list[str]:
        with self._lock:
            if self._stemmer is None:
                stemmer_mod = require("Stemmer", "lexical", "PyStemmer (English stemming for lexical search)")
                self._stemmer = stemmer_mod.Stemmer("english")
            return list(self._stemmer.stemWords(words))

    def _segment(self, han: str) -> list[str]:
        with self._lock:
            if self._jieba is None:
                jieba = require("jieba", "lexical", "jieba (Chinese word segmentation for lexical search)")
                jieba.setLogLevel(60)
                tok = jieba.Tokenizer()
                tok.initialize()
                self._jieba = tok
        return [w for w in self._jieba.lcut(han) if w not in STOPWORDS_ZH and _HAN_WORD.search(w)]

    def _latin(self, text: str) -> list[str]:
        words = [w for w in _WORD.findall(text) if w not in STOPWORDS_EN]
        return self._stem(words) if words else []

    def terms(self, text: str) -> list[str]:
        """Every term of ``text`` in order (repeats kept: they are the term frequencies)."""
        norm = unicodedata.normalize("NFKC", text).lower()
        out: list[str] = []
        pos = 0
        for m in _HAN.finditer(norm):
            out += self._latin(norm[pos : m.start()])
            out += self._segment(m.group())
            pos = m.end()
        out += self._latin(norm[pos:])
        return out[: self.max_terms]


@lru_cache(maxsize=1)
def default_analyzer() -> Analyzer:
    """One analyzer per process: jieba's dictionary (~1 s to load) is loaded once."""
    return Analyzer()


__all__ = ["ANALYZER_VERSION", "STOPWORDS_EN", "STOPWORDS_ZH", "Analyzer", "default_analyzer"]
