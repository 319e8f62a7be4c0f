"""Public BEIR/MTEB retrieval datasets by name, through Hugging Face ``datasets`` (extra ``hub``).

MTEB publishes each BEIR dataset as one hub repo with three configs: ``corpus``, ``queries`` and
``default`` (the qrels, one split per judgment set); BEIR's own ``BeIR/<name>`` repos keep qrels in
``BeIR/<name>-qrels``. Either is written once into a BEIR folder under the cache and then read by
``load_beir`` like any local folder, so the same checks apply. A local copy of a hub repo (a folder with
the repo's README and data files) works the same way, which is how this is tested without a network.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import DatasetError

_READERS = {".jsonl": ("json", {}), ".json": ("json", {}), ".tsv": ("csv", {"sep": "\t"}), ".csv": ("csv", {})}
_READERS[".parquet"] = ("parquet", {})


def _reader(files: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The builder for these files by extension (a repo mixing JSONL corpora and TSV qrels would otherwise be
    read with one builder for every config)."""
    found: set[str] = set()
    for file in files:
        name = str(file).lower().removesuffix(".gz")
        found.add(next((ext for ext in _READERS if name.endswith(ext)), "?"))
    return _READERS[found.pop()] if len(found) == 1 and "?" not in found else None


def _load(name: str, config: str, split: str) -> Any:
    datasets = require("datasets", "hub", "Hugging Face datasets")
    try:
        builder = datasets.load_dataset_builder(name, config)
        files: list[str] = list((builder.config.data_files or {}).get(split) or [])
        reader = _reader(files) if files else None
        if reader is None:
            return datasets.load_dataset(name, config, split=split)
        module, kwargs = reader
        return datasets.load_dataset(module, data_files=files, split="train", **kwargs)
    except Exception as exc:  # network, unknown repo or config: one clear error either way
        raise DatasetError(f"cannot load {config!r} split {split!r} of hub dataset {name!r}: {exc}") from exc


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def fetch(name: str, cache_dir: Path, split: str = "test") -> Path:
    """A BEIR folder for hub dataset ``name`` (written on first use, reused after)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "__", name.strip("/"))
    folder = cache_dir / "datasets" / safe
    done = folder / f".complete-{split}"
    if done.exists():
        return folder
    corpus = _load(name, "corpus", "corpus")
    queries = _load(name, "queries", "queries")
    qrels_repo = f"{name}-qrels" if name.startswith("BeIR/") else name
    qrels = _load(qrels_repo, "default", split)
    for what, table, needed in (
        ("corpus", corpus, {"_id", "text"}),
        ("queries", queries, {"_id", "text"}),
        ("qrels", qrels, {"query-id", "corpus-id", "score"}),
    ):
        missing = needed - set(table.column_names)
        if missing:
            raise DatasetError(f"hub dataset {name!r} {what} lacks columns {sorted(missing)}")
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for row in corpus:
            item = {"_id": _text(row["_id"]), "title": _text(row.get("title")), "text": _text(row["text"])}
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for row in queries:
            fh.write(json.dumps({"_id": _text(row["_id"]), "text": _text(row["text"])}, ensure_ascii=False) + "\n")
    with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["query-id", "corpus-id", "score"])
        for row in qrels:
            writer.writerow([_text(row["query-id"]), _text(row["corpus-id"]), int(row["score"])])
    done.write_text(name, encoding="utf-8")
    return folder
