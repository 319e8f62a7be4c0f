"""Corpus-only domain adaptation: training pairs the corpus makes by itself, for users with documents and no
questions.

Four kinds, mixed round-robin so none crowds out the others: ``title`` (a passage's title <-> its body),
``ict`` (inverse cloze task: one sentence <-> the rest of its passage; where passages are single sentences,
the sentence <-> the passages around it in its document), ``neighbours`` (consecutive passages of one
document), ``crop`` (a random span of a passage, a third to two thirds of its words, <-> the whole passage,
as Contriever's cropping: a short query-like piece that must find its own passage among its neighbours).
A corpus without titles skips the title mode and says so (falling back to ``ict`` when it was the only one).
"""

from __future__ import annotations

import random
import re
import warnings
from itertools import pairwise, zip_longest
from typing import Any

from .config import AdaptSpec
from .data import Passage

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？])")
_WINDOW = 2  # passages either side that make a single-sentence passage's context


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _documents(passages: list[Passage]) -> list[list[Passage]]:
    """Passages grouped by document in corpus order; a passage without a document stands alone."""
    docs: dict[str, list[Passage]] = {}
    alone: list[list[Passage]] = []
    for p in passages:
        if p.document is None:
            alone.append([p])
        else:
            docs.setdefault(p.document, []).append(p)
    return list(docs.values()) + alone


def corpus_pairs(passages: list[Passage], spec: AdaptSpec) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(pseudo-query, positive) pairs and what was made of each mode, capped at ``spec.max_pairs``."""
    rng = random.Random(spec.seed)
    modes = list(spec.modes)
    info: dict[str, Any] = {}
    made: dict[str, list[tuple[str, str]]] = {}
    if "title" in modes:
        titled = [(p.title, p.text) for p in passages if p.title.strip() and p.text.strip()]
        if titled:
            made["title"] = titled
        else:
            note = "no passage has a title: title mode skipped"
            if modes == ["title"]:
                modes.append("ict")
                note += "; fell back to ict (a sentence <-> the rest of its passage)"
            info["title"] = note
            warnings.warn(f"adapt: {note}", stacklevel=2)
    docs = _documents(passages)
    if "ict" in modes:
        made["ict"] = _ict(docs, rng)
    if "crop" in modes:
        made["crop"] = [(c, p.text) for p in passages if (c := _crop(p.text, rng))]
    if "neighbours" in modes:
        made["neighbours"] = [(a.text, b.text) for doc in docs for a, b in pairwise(doc)]
        if not made["neighbours"]:
            info["neighbours"] = "no document has two passages (set adapt.by to the field naming the document)"
    for kind in made.values():
        rng.shuffle(kind)
    mixed = [pair for row in zip_longest(*made.values()) for pair in row if pair is not None]
    pairs = [(q, p) for q, p in mixed if q.strip() and p.strip() and q.strip() != p.strip()][: spec.max_pairs]
    info["pairs"] = {mode: len(v) for mode, v in made.items()}
    info["used"] = len(pairs)
    return pairs, info


def _ict(docs: list[list[Passage]], rng: random.Random) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for doc in docs:
        for i, p in enumerate(doc):
            parts = sentences(p.text)
            if len(parts) >= 2:
                j = rng.randrange(len(parts))
                out.append((parts[j], " ".join(parts[:j] + parts[j + 1 :])))
            elif len(doc) >= 2:
                around = doc[max(0, i - _WINDOW) : i] + doc[i + 1 : i + 1 + _WINDOW]
                out.append((p.text, " ".join(q.text for q in around)))
    return out


def _crop(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) < 6:
        return ""
    size = rng.randint(max(3, len(words) // 3), max(3, 2 * len(words) // 3))
    start = rng.randrange(len(words) - size + 1)
    return " ".join(words[start : start + size])
