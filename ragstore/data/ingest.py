"""Read files or folders into chunked ``Document``s that remember where they came from.

Formats: ``.txt``/``.md`` (whole file), ``.html``/``.htm`` (visible text), ``.jsonl`` (BEIR corpus rows:
``_id``/``id``, ``title``, ``text``, other keys kept as metadata), ``.csv`` (a ``text`` column; ``_id``/``id``
if present; other columns as metadata). Chunks carry ``source``, ``chunk`` (index) and ``start`` (character
offset). Ids are derived from source and chunk text, or from the row id for JSONL/CSV rows, so
re-ingesting unchanged files is idempotent.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import DatasetError
from ..types import Document, MetadataValue, content_id, validate_key

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl", ".csv")
_ROW_ID_KEYS = ("_id", "id")


@dataclass
class Source:
    """One logical text before chunking: a file, or a JSONL/CSV row."""

    text: str
    source: str
    row_id: str | None = None
    metadata: dict[str, MetadataValue] | None = None


def iter_files(path: str | os.PathLike[str], max_file_mb: float | None = None) -> list[Path]:
    """Supported files under ``path`` (a file or a folder), sorted, hidden files skipped. A path that is
    neither (a FIFO, a device, a socket) and a file over ``max_file_mb`` are refused by name before any is
    read: a 1 GB file was read and chunked whole before its content was checked."""
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"{root} does not exist")
    if root.is_file():
        if root.suffix.lower() not in SUPPORTED:
            raise DatasetError(f"{root}: unsupported file type {root.suffix!r}; supported: {', '.join(SUPPORTED)}")
        files = [root]
    elif root.is_dir():
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in SUPPORTED and not any(part.startswith(".") for part in p.parts)
        )
    else:
        raise DatasetError(f"{root} is not a regular file or a folder (a FIFO, device or socket cannot be ingested)")
    if max_file_mb is not None:
        limit = int(max_file_mb * 2**20)
        for file in files:
            size = file.stat().st_size
            if size > limit:
                raise DatasetError(
                    f"{file} is {size / 2**20:.1f} MB, over ingest.max_file_mb ({max_file_mb:g}); "
                    "split it or raise the limit"
                )
    return files


def read_text(file: Path, block: int = 1 << 20) -> str:
    """A UTF-8 file's text, checked while it streams in: a NUL (a binary file, or a file of zeros) is refused
    at the first block that holds one, before the rest is read."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts: list[str] = []
    seen = 0
    with file.open("rb") as fh:
        while chunk := fh.read(block):
            text = decoder.decode(chunk)
            nul = text.find("\x00")
            if nul >= 0:
                raise DatasetError(
                    f"{file} contains NUL at character {seen + nul}: not a text file; nothing was written"
                )
            parts.append(text)
            seen += len(text)
    parts.append(decoder.decode(b"", final=True))
    return "".join(parts)


def _scalar_metadata(row: dict[str, Any], skip: tuple[str, ...]) -> dict[str, MetadataValue]:
    meta: dict[str, MetadataValue] = {}
    for key, value in row.items():
        if key in skip or value is None or value == "":
            continue
        try:
            validate_key(key)
        except Exception:
            continue  # keys no engine can filter on are not carried as metadata
        if isinstance(value, str | int | float | bool):
            meta[key] = value
    return meta


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed row) for each non-blank line; bad JSON is a DatasetError naming the line."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid JSON: {exc}") from None


def source_name(file: Path, base: Path | None = None) -> str:
    """The ``source`` a file's chunks carry: relative to ``base`` (the config's folder; default the working
    folder) when inside it, else absolute, so the same file reached by another spelling of its path
    (``./docs``, ``/abs/docs``) gets the same chunk ids and is never ingested twice."""
    resolved = file.resolve()
    try:
        return resolved.relative_to((base or Path.cwd()).resolve()).as_posix()
    except ValueError:
        return str(resolved)


def read_file(file: Path, base: Path | None = None) -> Iterator[Source]:
    """Yield the logical texts in one file (``base``: see ``source_name``)."""
    suffix = file.suffix.lower()
    name = source_name(file, base)
    try:
        if suffix in (".txt", ".md", ".markdown"):
            yield Source(read_text(file), name)
        elif suffix in (".html", ".htm"):
            bs4 = require("bs4", "ingest", "beautifulsoup4")
            soup = bs4.BeautifulSoup(read_text(file), "html.parser")
            for tag in soup(["script", "style", "noscript"]):
                tag.decompose()
            title = soup.title.get_text(strip=True) if soup.title else ""
            yield Source(soup.get_text("\n", strip=True), name, metadata={"title": title} if title else None)
        elif suffix == ".jsonl":
            for lineno, row in read_jsonl(file):
                yield _row_source(row, name, f"{file}:{lineno}")
        elif suffix == ".csv":
            with file.open(encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "text" not in reader.fieldnames:
                    raise DatasetError(f"{file}: a CSV needs a 'text' column (found {reader.fieldnames})")
                for lineno, row in enumerate(reader, 2):
                    yield _row_source(dict(row), name, f"{file}:{lineno}")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file} is not UTF-8 text: {exc}") from None


def _row_source(row: Any, name: str, where: str) -> Source:
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise DatasetError(f"{where}: a row needs a string 'text' field")
    row_id = next((str(row[k]) for k in _ROW_ID_KEYS if row.get(k) not in (None, "")), None)
    title = row.get("title") or ""
    text = f"{title}\n{row['text']}" if isinstance(title, str) and title.strip() else row["text"]
    return Source(text, name, row_id, _scalar_metadata(row, ("text", *_ROW_ID_KEYS)))


def make_splitter(chunk_size: int, chunk_overlap: int) -> Any:
    """A recursive character splitter (paragraphs, then sentences, then words)."""
    if chunk_overlap >= chunk_size:
        raise DatasetError(f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size})")
    splitters = require("langchain_text_splitters", "ingest", "langchain-text-splitters")
    return splitters.RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        add_start_index=True,
        separators=["\n\n", "\n", "。", ". ", "？", "! ", "? ", "；", "; ", "，", ", ", " ", ""],
        keep_separator="end",
    )


def chunk_sources(sources: Iterator[Source] | list[Source], chunk_size: int, chunk_overlap: int) -> list[Document]:
    """Split sources into documents; a row that fits in one chunk keeps its own id unchanged."""
    splitter = make_splitter(chunk_size, chunk_overlap)
    docs: list[Document] = []
    for src in sources:
        if not src.text.strip():
            continue
        pieces = splitter.create_documents([src.text])
        pieces = [p for p in pieces if p.page_content.strip()]
        for idx, piece in enumerate(pieces):
            text = piece.page_content
            meta: dict[str, MetadataValue] = {
                **(src.metadata or {}),
                "source": src.source,
                "chunk": idx,
                "start": int(piece.metadata.get("start_index", 0)),
            }
            if src.row_id is not None:
                doc_id = src.row_id if len(pieces) == 1 else f"{src.row_id}#{idx}"
            else:
                doc_id = content_id(text, src.source, str(idx))
            docs.append(Document(text=text, id=doc_id, metadata=meta))
    return docs


def load_documents(path: str | Path, chunk_size: int = 1000, chunk_overlap: int = 150) -> list[Document]:
    """Every chunk of every supported file under ``path``."""
    files = iter_files(path)
    return chunk_sources((s for f in files for s in read_file(f)), chunk_size, chunk_overlap)
