"""Training pairs and the held-out set, validated before any model is loaded.

Held-out queries are chosen by *group* (an article, a paragraph, a source file), never query by query, so
no test question shares a passage with a training question; what was dropped, and why, is counted.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.beir import dataset_folder, load_beir
from ..data.ingest import read_jsonl
from ..errors import ConfigError, DatasetError
from .config import FinetuneConfig


@dataclass
class Pair:
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    group: str | None = None  # what the dev split keeps together (article, source file); None: the positive


@dataclass
class Passage:
    """A corpus passage as corpus-only adaptation sees it: its title, and where it sits in its document."""

    id: str
    text: str
    title: str = ""
    document: str | None = None  # passages sharing this, in corpus order, are neighbours


@dataclass
class TrainingData:
    """``train``: pairs to learn from; ``corpus``/``test_queries``/``test_qrels``: the held-out evaluation
    (test queries searched over the whole corpus, training passages included as distractors)."""

    train: list[Pair]
    corpus: dict[str, str]
    test_queries: dict[str, str]
    test_qrels: dict[str, dict[str, int]]
    dropped: dict[str, int] = field(default_factory=dict)
    groups: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    train_corpus: list[str] = field(default_factory=list)  # where hard negatives may come from
    passages: list[Passage] = field(default_factory=list)  # the corpus, for corpus-only adaptation
    dev: list[Pair] = field(default_factory=list)  # training-side pairs held out to choose the epoch

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "train_pairs": len(self.train),
            "with_negatives": sum(1 for p in self.train if p.negatives),
            "dev_pairs": len(self.dev),
            "test_queries": len(self.test_queries),
            "corpus": len(self.corpus),
            "groups": self.groups,
            "dropped": self.dropped,
        }


def _count(dropped: dict[str, int], why: str, n: int = 1) -> None:
    if n:
        dropped[why] = dropped.get(why, 0) + n


def _group_key(value: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return value
    m = pattern.search(value)
    return (m.group(1) if m.groups() else m.group(0)) if m else value


def _split_groups(groups: set[str], fraction: float, seed: int) -> set[str]:
    """The held-out groups: a seeded shuffle, at least one group on each side."""
    if len(groups) < 2:
        raise DatasetError(f"a held-out split needs at least 2 groups, found {len(groups)}: set split.by")
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    n_test = min(max(round(len(order) * fraction), 1), len(order) - 1)
    return set(order[:n_test])


def load_training_data(cfg: FinetuneConfig) -> TrainingData:
    pattern = None
    if cfg.split.pattern:
        try:
            pattern = re.compile(cfg.split.pattern)
        except re.error as exc:
            raise ConfigError(f"split.pattern is not a valid regex: {exc}") from None
    data = _from_beir(cfg, pattern) if cfg.data.beir else _from_jsonl(cfg, pattern)
    if cfg.data.generate:
        from .generate import generate_pairs

        extra, failed = generate_pairs(data.train_corpus, cfg.data.generate)
        _count(data.dropped, "generate: passage with no usable question", failed)
        data.train += [Pair(q, passage) for q, passage in extra]
        data.source += f" + {len(extra)} LLM-written questions"
    if cfg.data.max_pairs:
        data.train = data.train[: cfg.data.max_pairs]
    if not data.train and cfg.supervised:
        raise DatasetError(f"no training pairs left after validation (dropped: {data.dropped})")
    if cfg.supervised and cfg.train.dev_fraction > 0:
        _carve_dev(data, cfg.train.dev_fraction, cfg.split.seed)
    if not data.test_qrels:
        raise DatasetError(f"no held-out queries left after validation (dropped: {data.dropped})")
    return data


def _carve_dev(data: TrainingData, fraction: float, seed: int) -> None:
    """Training-side groups held out to pick the epoch; the held-out test set is never looked at. With too few
    pairs or groups for both sides the run trains for the fixed number of epochs, and says so."""
    keys = [p.group if p.group is not None else p.positive for p in data.train]
    groups = set(keys)
    if len(groups) < 4 or len(data.train) < 40:
        data.groups["dev"] = f"none: {len(data.train)} pairs in {len(groups)} groups is too few to split"
        return
    held = _split_groups(groups, fraction, seed + 1)
    data.dev = [p for p, k in zip(data.train, keys, strict=True) if k in held]
    data.train = [p for p, k in zip(data.train, keys, strict=True) if k not in held]
    data.groups["dev"] = len(held)


def _from_beir(cfg: FinetuneConfig, pattern: re.Pattern[str] | None) -> TrainingData:
    folder = dataset_folder(cfg.data.beir or "", cfg.resolve_path)
    test = load_beir(folder, query_lang=cfg.data.queries, corpus_langs=cfg.data.corpus, split="test")
    dropped = {f"judgment: {k}": v for k, v in test.dropped.items() if v}
    corpus = {d.id: d.text for d in test.corpus}
    meta = {d.id: d.metadata for d in test.corpus}

    def group(doc_id: str) -> str:
        if cfg.split.by is None:
            return doc_id
        if cfg.split.by not in meta[doc_id]:
            raise DatasetError(f"corpus document {doc_id!r} has no field {cfg.split.by!r} (split.by)")
        return _group_key(str(meta[doc_id][cfg.split.by]), pattern)

    has_train = any((folder / "qrels").glob("train*.tsv"))
    if has_train:  # the user's own split
        train_ds = load_beir(folder, query_lang=cfg.data.queries, corpus_langs=cfg.data.corpus, split="train")
        train_q, train_rels = train_ds.queries, train_ds.qrels
        test_q, test_rels = test.queries, test.qrels
        groups: dict[str, Any] = {"split": "given (qrels/train)"}
        test_pos = {d for rels in test.qrels.values() for d in rels}
        train_corpus = [t for i, t in corpus.items() if i not in test_pos]
    else:
        all_groups = {group(d) for rels in test.qrels.values() for d in rels}
        held = _split_groups(all_groups, cfg.split.test_fraction, cfg.split.seed)
        train_q, train_rels, test_q, test_rels = {}, {}, {}, {}
        for qid, rels in test.qrels.items():
            sides = {group(d) in held for d in rels}
            if sides == {True}:
                test_q[qid], test_rels[qid] = test.queries[qid], rels
            elif sides == {False}:
                train_q[qid], train_rels[qid] = test.queries[qid], rels
            else:
                _count(dropped, "query judged in both halves")
        groups = {"train": len(all_groups - held), "test": len(held)}
        train_corpus = [t for i, t in corpus.items() if cfg.split.by is None or group(i) not in held]
    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    for qid, rels in train_rels.items():
        text = (train_q.get(qid) or "").strip()
        if not text:
            _count(dropped, "empty query")
            continue
        for doc_id, score in rels.items():
            if score <= 0:
                continue
            if doc_id not in corpus or not corpus[doc_id].strip():
                _count(dropped, "unknown or empty passage")
                continue
            if (text, doc_id) in seen:
                _count(dropped, "duplicate pair")
                continue
            seen.add((text, doc_id))
            pairs.append(Pair(text, corpus[doc_id], group=group(doc_id) if cfg.split.by else None))
    test_q = {q: t for q, t in test_q.items() if t.strip()}
    test_rels = {q: r for q, r in test_rels.items() if q in test_q}
    order_by = (cfg.adapt.by if cfg.adapt and cfg.adapt.by else None) or cfg.split.by
    passages = [
        Passage(
            d.id,
            d.text[len(test.titles[d.id]) + 1 :] if d.id in test.titles else d.text,
            test.titles.get(d.id, ""),
            str(d.metadata[order_by]) if order_by and order_by in d.metadata else None,
        )
        for d in test.corpus
    ]
    return TrainingData(
        pairs, corpus, test_q, test_rels, dropped, groups, f"beir:{folder}", train_corpus, passages=passages
    )


def _read_rows(path: Path, what: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"{what} {path} does not exist")
    rows = []
    for lineno, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{lineno} must be an object with query and positive")
        rows.append(row)
    return rows


def _clean_rows(
    rows: list[dict[str, Any]], dropped: dict[str, int], where: str
) -> list[tuple[str, str, list[str], str | None]]:
    out = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        query, positive = row.get("query"), row.get("positive")
        if not isinstance(query, str) or not isinstance(positive, str) or not query.strip() or not positive.strip():
            _count(dropped, f"{where}: empty or missing query/positive")
            continue
        negatives = row.get("negatives") or []
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            _count(dropped, f"{where}: negatives not a list of strings")
            continue
        if (query.strip(), positive.strip()) in seen:
            _count(dropped, f"{where}: duplicate pair")
            continue
        seen.add((query.strip(), positive.strip()))
        kept = [n for n in negatives if n.strip() and n.strip() != positive.strip()]
        _count(dropped, f"{where}: negative equal to the positive or empty", len(negatives) - len(kept))
        group = row.get("group")
        out.append((query.strip(), positive.strip(), kept, None if group is None else str(group)))
    return out


def _from_jsonl(cfg: FinetuneConfig, pattern: re.Pattern[str] | None) -> TrainingData:
    dropped: dict[str, int] = {}
    rows = _clean_rows(_read_rows(cfg.resolve_path(cfg.data.jsonl or ""), "training file"), dropped, "train")
    ids: dict[str, str] = {}

    def doc_id(text: str) -> str:
        return ids.setdefault(text, f"p{len(ids)}")

    if cfg.data.test_jsonl:
        test_rows = _clean_rows(_read_rows(cfg.resolve_path(cfg.data.test_jsonl), "test file"), dropped, "test")
        test_pos = {p for _, p, _, _ in test_rows}
        train_rows = [r for r in rows if r[1] not in test_pos]
        _count(dropped, "train: positive also in the test file", len(rows) - len(train_rows))
        groups: dict[str, Any] = {"split": "given (test_jsonl)"}
    else:
        keys = [_group_key(r[3] if r[3] is not None else r[1], pattern) for r in rows]
        held = _split_groups(set(keys), cfg.split.test_fraction, cfg.split.seed)
        test_rows = [r for r, key in zip(rows, keys, strict=True) if key in held]
        train_rows = [r for r, key in zip(rows, keys, strict=True) if key not in held]
        groups = {"train": len(set(keys) - held), "test": len(held)}
    for _, positive, negatives, _ in rows + test_rows:
        doc_id(positive)
        for negative in negatives:
            doc_id(negative)
    corpus = {i: t for t, i in ids.items()}
    test_queries: dict[str, str] = {}
    test_qrels: dict[str, dict[str, int]] = {}
    for n, (query, positive, _, _) in enumerate(test_rows):
        test_queries[f"q{n}"] = query
        test_qrels[f"q{n}"] = {doc_id(positive): 1}
    pairs = [Pair(q, p, negs, None if g is None else _group_key(g, pattern)) for q, p, negs, g in train_rows]
    train_corpus = list(dict.fromkeys([p for _, p, _, _ in train_rows] + [n for r in train_rows for n in r[2]]))
    source = f"jsonl:{cfg.data.jsonl}"
    passages = [Passage(i, t) for i, t in corpus.items()]
    return TrainingData(
        pairs, corpus, test_queries, test_qrels, dropped, groups, source, train_corpus, passages=passages
    )
