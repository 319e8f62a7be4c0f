"""One portable file per collection: Parquet, read and written with pyarrow.

Columns ``id``, ``text``, ``metadata`` (JSON text: keeps int, float and bool apart, which a Parquet map of
one value type cannot) and ``vector`` (a fixed-size list of float32, bit for bit what the store returned);
the collection's manifest, dimension and metric ride in the file's key-value metadata under ``ragstore``.
Any Parquet reader (pandas, DuckDB, Spark) can open the file; ``ragstore import`` puts it back.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..errors import DatasetError
from ..stores.base import SCAN_END, ScanPage
from ..types import Document, Hit
from .sources import Source, exact_search

FORMAT = 1
KEY = b"ragstore"


@dataclass
class ExportReport:
    path: str
    rows: int = 0
    seconds: float = 0.0
    bytes: int = 0


def _pa() -> Any:
    return require("pyarrow", "transfer", "Parquet export and import")


def export_parquet(
    source: Source, path: str | os.PathLike[str], *, batch_size: int = 10_000, progress: bool = True
) -> ExportReport:
    """Write every document of ``source`` to ``path`` (a temp file renamed into place: a reader never sees
    half a file, and a failed export leaves no file behind)."""
    pa = _pa()
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    target = Path(path)
    if source.dim is None:
        raise DatasetError(f"{source.label} holds no documents: nothing to export")
    dim = int(source.dim)
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.large_string()),
            ("metadata", pa.large_string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )
    header = {
        "format": FORMAT,
        "dim": dim,
        "metric": source.metric,
        "source": source.label,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "manifest": source.manifest,
    }
    schema = schema.with_metadata({KEY: json.dumps(header, ensure_ascii=False, sort_keys=True).encode()})
    report = ExportReport(str(target))
    start = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        with (
            pq.ParquetWriter(tmp, schema, compression="zstd") as writer,
            tqdm(total=source.count(), desc=f"export {source.label}", unit="doc", disable=not progress) as bar,
        ):
            for page in source.scan(batch_size):
                docs = page.documents
                if not docs:
                    continue
                matrix = np.ascontiguousarray(np.stack([np.asarray(d.vector, dtype=np.float32) for d in docs]))
                vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim)
                table = pa.Table.from_arrays(
                    [
                        pa.array([d.id for d in docs], pa.string()),
                        pa.array([d.text for d in docs], pa.large_string()),
                        pa.array([_meta_json(d.metadata) for d in docs], pa.large_string()),
                        vectors,
                    ],
                    schema=schema,
                )
                writer.write_table(table, row_group_size=len(docs))
                report.rows += len(docs)
                bar.update(len(docs))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report.seconds = time.perf_counter() - start
    report.bytes = target.stat().st_size
    return report


def _meta_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, ensure_ascii=False, sort_keys=True, allow_nan=False)


class ParquetSource(Source):
    """A file ``export_parquet`` wrote, read back page by page (the cursor counts rows already read)."""

    kind = "parquet"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        _pa()
        import pyarrow.parquet as pq

        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"no such export file: {self.path}")
        try:
            self.file = pq.ParquetFile(self.path)
        except Exception as exc:
            raise DatasetError(f"{self.path} is not a Parquet file: {type(exc).__name__}: {exc}") from None
        raw = (self.file.schema_arrow.metadata or {}).get(KEY)
        if raw is None:
            raise DatasetError(f"{self.path} was not written by `ragstore export` (no 'ragstore' key in its metadata)")
        try:
            header = json.loads(raw)
        except json.JSONDecodeError:
            raise DatasetError(f"{self.path}: its 'ragstore' metadata is not JSON") from None
        if int(header.get("format", 0)) > FORMAT:
            raise DatasetError(f"{self.path}: export format {header.get('format')} is newer than this ragstore reads")
        names = set(self.file.schema_arrow.names)
        if not {"id", "text", "metadata", "vector"} <= names:
            raise DatasetError(f"{self.path}: expected columns id, text, metadata, vector; found {sorted(names)}")
        self.dim = int(header["dim"])
        self.metric = str(header.get("metric", "cosine"))
        self.manifest = header.get("manifest")
        self.header = header
        self.location = f"parquet|{os.path.realpath(self.path)}"
        self.label = str(self.path)
        self._docs: list[Document] | None = None

    def count(self) -> int:
        return int(self.file.metadata.num_rows)

    def state(self) -> str:
        st = self.path.stat()
        return json.dumps([st.st_size, st.st_mtime_ns])

    def scan(self, batch_size: int, cursor: str | None = None) -> Iterator[ScanPage]:
        if cursor == SCAN_END:
            return
        skip = int(cursor) if cursor else 0
        done = 0
        for batch in self.file.iter_batches(batch_size=batch_size, columns=["id", "text", "metadata", "vector"]):
            n = batch.num_rows
            if done + n <= skip:
                done += n
                continue
            docs = self._documents(batch)[max(0, skip - done) :]
            done += n
            yield ScanPage(docs, str(done))

    def _documents(self, batch: Any) -> list[Document]:
        vectors = batch.column("vector")
        flat = vectors.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        matrix = flat.reshape(len(vectors), self.dim)
        ids = batch.column("id").to_pylist()
        texts = batch.column("text").to_pylist()
        metas = batch.column("metadata").to_pylist()
        try:
            return [
                Document(id=i, text=t, metadata=json.loads(m), vector=matrix[r].copy())
                for r, (i, t, m) in enumerate(zip(ids, texts, metas, strict=True))
            ]
        except (json.JSONDecodeError, TypeError) as exc:
            raise DatasetError(f"{self.path}: a metadata cell is not JSON ({exc})") from None

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        if self._docs is None:
            self._docs = [d for page in self.scan(10_000) for d in page.documents]
        return exact_search(self._docs, self.metric, vector, k)
