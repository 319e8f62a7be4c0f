"""Lexical (BM25) search kept beside every store: the analyzer that turns English and Chinese text into
terms, and the SQLite index that scores them.

One analyzer and one scorer serve every engine, so a lexical or hybrid query means the same thing on
FAISS, Chroma, Milvus, Qdrant, pgvector and the memory store (checked against a reference BM25 by the
conformance suite).
"""

from .analyzer import ANALYZER_VERSION, Analyzer, default_analyzer
from .config import LEXICAL, SEARCH_MODES, HybridConfig, SearchMode
from .index import LexicalIndex

__all__ = [
    "ANALYZER_VERSION",
    "LEXICAL",
    "SEARCH_MODES",
    "Analyzer",
    "HybridConfig",
    "LexicalIndex",
    "SearchMode",
    "default_analyzer",
]
