"""Index-mined (ANCE-style) hard negatives: search a ragstore index built with the model being trained.

Static mining picks negatives once, with the base model; as training moves the model, those stop being the
ones it confuses. Here the training corpus is embedded with the *current* model into a ragstore store (the
``hard_negatives.store`` block, in memory by default), each training query searched, and negatives taken
from the top ranks, skipping the first ``range_min``. Likely false negatives (an unlabeled passage that
answers the question) are dropped by a margin against the positive: a candidate scoring above
``(1 - relative_margin) * positive`` (or ``positive - absolute_margin``) is not used. ``run`` mines once
before training and, with ``refresh``, again halfway with the partly trained model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..embedders.sentence_transformers import SentenceTransformerEmbedder
from ..errors import ConfigError
from ..stores.registry import create_store
from ..types import Document
from .config import NegativesSpec
from .data import Pair


def mine_from_index(
    embedder: SentenceTransformerEmbedder, pairs: list[Pair], corpus: list[str], spec: NegativesSpec
) -> tuple[dict[str, list[str]], list[Pair], dict[str, Any]]:
    """(triplet rows, pairs no candidate passed the margin for, counts)."""
    texts = list(dict.fromkeys([*corpus, *(p.positive for p in pairs)]))
    positives: dict[str, set[str]] = {}
    for p in pairs:
        positives.setdefault(p.query, set()).add(p.positive)
    doc_vecs = embedder.embed_documents(texts)
    queries = list(dict.fromkeys(p.query for p in pairs))
    q_vecs = embedder.embed_query(queries)
    row_of = {q: i for i, q in enumerate(queries)}
    store = create_store(spec.store)
    try:
        if store.count():
            raise ConfigError("hard_negatives.store must name an empty store: mining fills it and drops it after")
        store.upsert(
            Document(text=t, id=f"c{i}", vector=v) for i, (t, v) in enumerate(zip(texts, doc_vecs, strict=True))
        )
        depth = spec.range_max + max(len(v) for v in positives.values())
        hits = store.search_batch(q_vecs, k=min(depth, len(texts)))
        store.clear()
    finally:
        store.close()
    index = {t: i for i, t in enumerate(texts)}
    rows: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    bare: list[Pair] = []
    dropped_false = 0
    for p in pairs:
        q = row_of[p.query]
        pos_score = float(doc_vecs[index[p.positive]] @ q_vecs[q])
        ceiling = pos_score * (1 - spec.relative_margin) if spec.relative_margin is not None else np.inf
        if spec.absolute_margin is not None:
            ceiling = min(ceiling, pos_score - spec.absolute_margin)
        ranked = [h for h in hits[q] if h.text not in positives[p.query]][spec.range_min : spec.range_max]
        kept = [h.text for h in ranked if h.score <= ceiling]
        dropped_false += sum(1 for h in ranked[: spec.num] if h.score > ceiling)
        if not kept:
            bare.append(p)
            continue
        for negative in kept[: spec.num]:
            rows["anchor"].append(p.query)
            rows["positive"].append(p.positive)
            rows["negative"].append(negative)
    info = {"mined_for": len(pairs) - len(bare), "without_negative": len(bare), "margin_dropped": dropped_false}
    return rows, bare, info
