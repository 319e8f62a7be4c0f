"""Moving collections: ``copy`` between stores, ``export``/``import`` through one Parquet file, and
collections other apps made read as sources. Layer 5: above collections and config, below the CLI."""

from __future__ import annotations

from .copy import CHECKPOINT, CopyReport, VerifyReport, content_hash, copy_collection, verify_copy
from .parquet import ExportReport, ParquetSource, export_parquet
from .sources import Source, StoreSource

__all__ = [
    "CHECKPOINT",
    "CopyReport",
    "ExportReport",
    "ParquetSource",
    "Source",
    "StoreSource",
    "VerifyReport",
    "content_hash",
    "copy_collection",
    "export_parquet",
    "verify_copy",
]
