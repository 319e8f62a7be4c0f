"""Datasets in BEIR layout, one language or several, checked completely before any work starts.

A folder holds ``corpus[.<lang>].jsonl``, ``queries[.<lang>].jsonl`` and ``qrels/<split>[.<lang>].tsv``.
Relevance judgments belong to the *corpus* language (``test.en.tsv`` judges English passages), so Chinese
questions over English passages use the English qrels, and a pooled corpus (``en+zh``) uses the union of
both. Every problem (a missing file, bad JSON, a judgment naming an unknown query or passage) is a
``DatasetError`` raised here, never half-way through a long benchmark.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from ..types import Document, MetadataValue
from .ingest import read_jsonl

#: datasets that ship inside the package (``ragstore.datasets``), reachable by name
BUNDLED = ("superannuation", "xquad-r")


def bundled_dataset(name: str = "superannuation") -> Path:
    """Folder of a dataset that ships with ragstore (BEIR layout): ``superannuation`` (the sample) or
    ``xquad-r`` (XQuAD-R en + zh, CC BY-SA 4.0)."""
    from importlib.resources import files

    if name not in BUNDLED:
        raise DatasetError(f"no bundled dataset {name!r}; bundled: {', '.join(BUNDLED)}")
    return Path(str(files("ragstore.datasets") / name))


def dataset_folder(value: str, resolve: Callable[[str], Path] = Path) -> Path:
    """A BEIR folder from a config value: a bundled name unless a folder of that name exists here, else a
    path (``resolve`` makes it absolute against the config file's folder)."""
    if value in BUNDLED and not resolve(value).is_dir():
        return bundled_dataset(value)
    return resolve(value)


_LANG_FILE = re.compile(r"^(corpus|queries)(?:\.([A-Za-z0-9_-]+))?\.jsonl$")


@dataclass
class BeirDataset:
    """A corpus, the queries of one language, and the judgments that apply to both."""

    name: str
    corpus: list[Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    corpus_langs: list[str]
    query_lang: str
    fingerprint: str
    dropped: dict[str, int] = field(default_factory=dict)
    #: the corpus rows' own titles (also the first line of their text), for title <-> body pairs
    titles: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "corpus": len(self.corpus),
            "queries": len(self.queries),
            "judged_queries": len(self.qrels),
            "corpus_langs": self.corpus_langs,
            "query_lang": self.query_lang,
            "fingerprint": self.fingerprint,
            "dropped": self.dropped,
        }


def languages(folder: str | Path) -> dict[str, list[str]]:
    """Languages present for corpus and queries ('' when the file has no language suffix)."""
    found: dict[str, list[str]] = {"corpus": [], "queries": []}
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    for file in sorted(root.iterdir()):
        m = _LANG_FILE.match(file.name)
        if m:
            found[m.group(1)].append(m.group(2) or "")
    return found


def _pick(kind: str, wanted: str | None, available: list[str], root: Path) -> str:
    if not available:
        raise DatasetError(f"{root} has no {kind}.jsonl or {kind}.<lang>.jsonl")
    if wanted is None:
        if len(available) == 1:
            return available[0]
        if "en" in available:
            return "en"
        raise DatasetError(f"{root} has {kind} in several languages {available}; choose one")
    if wanted not in available:
        shown = [a or "(none)" for a in available]
        raise DatasetError(f"{root} has no {kind} for language {wanted!r}; available: {shown}")
    return wanted


def _file(root: Path, stem: str, lang: str, suffix: str) -> Path:
    return root / (f"{stem}.{lang}{suffix}" if lang else f"{stem}{suffix}")


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    rows = []
    try:
        for lineno, row in read_jsonl(path):
            if not isinstance(row, dict) or not isinstance(row.get("_id"), str | int):
                raise DatasetError(f"{path}:{lineno}: a row needs an '_id'")
            if not isinstance(row.get("text"), str):
                raise DatasetError(f"{path}:{lineno}: a row needs a string 'text'")
            rows.append(row)
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    return rows


def _read_qrels(path: Path) -> list[tuple[str, str, int]]:
    out = []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t")
            for lineno, row in enumerate(reader, 1):
                if not row or (lineno == 1 and row[0] == "query-id"):
                    continue
                if len(row) < 3:
                    raise DatasetError(f"{path}:{lineno}: expected query-id, corpus-id, score")
                try:
                    out.append((row[0], row[1], int(float(row[2]))))
                except ValueError:
                    raise DatasetError(f"{path}:{lineno}: score {row[2]!r} is not a number") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    return out


def load_beir(
    folder: str | Path,
    *,
    query_lang: str | None = None,
    corpus_langs: list[str] | str | None = None,
    split: str = "test",
) -> BeirDataset:
    """Load and cross-check a BEIR-layout folder; ``corpus_langs`` may pool several (``"en+zh"``)."""
    root = Path(folder)
    avail = languages(root)
    qlang = _pick("queries", query_lang, avail["queries"], root)
    if isinstance(corpus_langs, str):
        corpus_langs = [c for c in corpus_langs.split("+") if c]
    if not corpus_langs:  # default: the queries' own language, else the only (or English) corpus
        corpus_langs = [qlang] if qlang in avail["corpus"] else [_pick("corpus", None, avail["corpus"], root)]
    clangs = [_pick("corpus", c, avail["corpus"], root) for c in corpus_langs]

    digest = hashlib.sha256()
    files: list[Path] = []
    corpus: list[Document] = []
    titles: dict[str, str] = {}
    seen: set[str] = set()
    for lang in clangs:
        path = _file(root, "corpus", lang, ".jsonl")
        files.append(path)
        for row in _read_jsonl(path):
            doc_id = str(row["_id"])
            if doc_id in seen:
                raise DatasetError(f"{path}: passage id {doc_id!r} appears twice in the pooled corpus")
            seen.add(doc_id)
            title = row.get("title") or ""
            text = f"{title}\n{row['text']}" if isinstance(title, str) and title.strip() else str(row["text"])
            if isinstance(title, str) and title.strip():
                titles[doc_id] = title.strip()
            meta: dict[str, MetadataValue] = {"lang": lang} if lang else {}
            for k, v in row.items():
                if k not in ("_id", "text", "title") and isinstance(v, str | int | float | bool) and v != "":
                    meta[k] = v
            corpus.append(Document(id=doc_id, text=text, metadata=meta))
    qpath = _file(root, "queries", qlang, ".jsonl")
    files.append(qpath)
    queries = {str(r["_id"]): str(r["text"]) for r in _read_jsonl(qpath)}

    qrels: dict[str, dict[str, int]] = {}
    for lang in clangs:
        candidates = ([root / "qrels" / f"{split}.{lang}.tsv"] if lang else []) + [root / "qrels" / f"{split}.tsv"]
        qrels_file = next((p for p in candidates if p.exists()), None)
        if qrels_file is None:
            raise DatasetError(f"{root} has no " + " or ".join(str(c.relative_to(root)) for c in candidates))
        files.append(qrels_file)
        for qid, did, score in _read_qrels(qrels_file):
            qrels.setdefault(qid, {})[did] = score
    unknown_docs = sorted({d for rel in qrels.values() for d in rel} - seen)
    if unknown_docs:
        raise DatasetError(f"qrels name {len(unknown_docs)} passages not in the corpus, e.g. {unknown_docs[:3]}")
    unknown_queries = sorted(set(qrels) - set(queries))
    if unknown_queries:
        raise DatasetError(f"qrels name {len(unknown_queries)} unknown queries, e.g. {unknown_queries[:3]}")
    judged = {q: t for q, t in queries.items() if any(s > 0 for s in qrels.get(q, {}).values())}
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return BeirDataset(
        name=root.name,
        corpus=corpus,
        queries=judged,
        qrels={q: rel for q, rel in qrels.items() if q in judged},
        corpus_langs=clangs,
        query_lang=qlang,
        fingerprint=digest.hexdigest()[:16],
        dropped={"queries_without_judgments": len(queries) - len(judged)},
        titles=titles,
    )
