"""Milvus: Milvus Lite embedded (``path`` -> ``<path>/milvus.db``) or a Milvus server (``uri`` + ``token``).

Schema: ``id`` VARCHAR primary key (the caller's id), ``vector``, ``text``, and one JSON field ``meta``
whose keys carry the value's kind: ``s:<field>``, ``n:<field>``, ``b:<field>``. Milvus compares JSON values
loosely (``true == 1``) and uses three-valued logic on missing keys (``not (x == 1)`` drops documents
without ``x``); keeping each kind under its own key and guarding every comparison with ``exists`` makes
every atom two-valued, so ragstore's semantics hold with plain ``and``/``or``/``not``. Literals are escaped
here; field names are validated identifiers.

Milvus Lite accepts IVF_PQ, DISKANN and SCANN and then silently searches brute force; those are refused on
Lite with a clear error. After reopening, the collection is loaded; on close, Lite's file lock is released so
another process can open the same file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ragstore._optional import require
from ragstore.errors import (
    BackendUnavailableError,
    DimensionMismatchError,
    UnsupportedFeatureError,
    ValidationError,
)
from ragstore.filters import And, Cmp, Node, Not, Or, kind
from ragstore.store import Capabilities, StoreOptions, VectorStore
from ragstore.types import Document, Hit, Metadata, Metric

IndexType = Literal["FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN", "SCANN", "AUTOINDEX"]
LITE_REFUSED = ("IVF_PQ", "DISKANN", "SCANN", "IVF_SQ8", "AUTOINDEX")
MAX_TEXT_BYTES = 65535
_PREFIX = {"str": "s:", "number": "n:", "bool": "b:"}
_METRIC = {"cosine": "COSINE", "dot": "IP", "l2": "L2"}
_OUT = ["text", "meta"]


def literal(value: Any) -> str:
    """A Milvus expression literal: escaped string, number or boolean."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    out = ['"']
    for ch in str(value):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20:
            raise UnsupportedFeatureError(f"Milvus filters cannot match control character {ch!r} in {value!r}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def to_expr(node: Node | None) -> str:
    """Filter tree -> Milvus boolean expression (two-valued by construction)."""
    if node is None:
        return ""
    if isinstance(node, And | Or):
        joiner = " and " if isinstance(node, And) else " or "
        return "(" + joiner.join(to_expr(c) for c in node.children) + ")"
    if isinstance(node, Not):
        return f"(not {to_expr(node.child)})"
    return _cmp(node)


def _atom(field: str, value: Any, symbol: str = "==") -> str:
    path = f'meta["{_PREFIX[kind(value) or "str"]}{field}"]'
    return f"(exists {path} and {path} {symbol} {literal(value)})"


def _cmp(node: Cmp) -> str:
    op, value = node.op, node.value
    if op in ("$eq", "$ne"):
        atom = _atom(node.field, value)
        return atom if op == "$eq" else f"(not {atom})"
    if op in ("$in", "$nin"):
        assert isinstance(value, tuple)
        any_of = "(" + " or ".join(_atom(node.field, v) for v in value) + ")"
        return any_of if op == "$in" else f"(not {any_of})"
    symbol = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
    return _atom(node.field, value, symbol)


def _encode(meta: Metadata) -> dict[str, Any]:
    return {_PREFIX[kind(v) or "str"] + k: v for k, v in meta.items()}


_NQ_LIMIT = 256  # queries per search call: keeps each reply (k hits with text each) well under gRPC's limit


class MilvusOptions(StoreOptions):
    path: str | None = Field(default=None, description="Milvus Lite folder (file milvus.db inside)")
    uri: str | None = Field(default=None, description="server URI, e.g. http://localhost:19530")
    token: str | None = None
    db_name: str | None = None
    collection: str = Field(default="ragstore", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    index: IndexType = "FLAT"
    hnsw_m: int = Field(default=16, gt=1)
    ef_construction: int = Field(default=200, gt=0)
    ef_search: int = Field(default=128, gt=0)
    nlist: int = Field(default=128, gt=0)
    nprobe: int = Field(default=16, gt=0)


class MilvusStore(VectorStore):
    name = "milvus"
    tunable = ("ef_search", "nprobe")
    Options = MilvusOptions

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        uri: str | None = None,
        token: str | None = None,
        db_name: str | None = None,
        collection: str = "ragstore",
        index: IndexType = "FLAT",
        hnsw_m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 128,
        nlist: int = 128,
        nprobe: int = 16,
        metric: Metric = "cosine",
        dim: int | None = None,
        batch_size: int = 512,
    ) -> None:
        super().__init__(metric=metric, dim=dim, batch_size=batch_size)
        pymilvus = require("pymilvus", "milvus", "Milvus (pymilvus)")
        self.lite = uri is None
        if self.lite:
            if path is None:
                raise BackendUnavailableError("milvus needs a path (Milvus Lite) or a uri (server)")
            require("milvus_lite", "milvus", "Milvus Lite (milvus-lite)")
            if index in LITE_REFUSED:
                raise UnsupportedFeatureError(
                    f"Milvus Lite accepts index {index} but then searches brute force; use FLAT, HNSW or IVF_FLAT, "
                    "or a Milvus server"
                )
            Path(path).mkdir(parents=True, exist_ok=True)
            self.uri = str(Path(path) / "milvus.db")
        else:
            self.uri = str(uri)
        self.path = path
        self.collection = collection
        self.index, self.hnsw_m, self.ef_construction, self.ef_search = index, hnsw_m, ef_construction, ef_search
        self.nlist, self.nprobe = nlist, nprobe
        self.DataType = pymilvus.DataType
        kwargs: dict[str, Any] = {"uri": self.uri}
        if token:
            kwargs["token"] = token
        if db_name:
            kwargs["db_name"] = db_name
        try:
            self.client = pymilvus.MilvusClient(**kwargs)
            exists = self.client.has_collection(collection)
        except Exception as exc:  # gRPC and lock errors
            raise BackendUnavailableError(f"cannot open Milvus at {self.uri}: {exc}") from exc
        if exists:
            info = self.client.describe_collection(collection)
            vec = next(f for f in info["fields"] if f["name"] == "vector")
            stored = int(vec["params"]["dim"])
            if self._dim is not None and self._dim != stored:
                raise DimensionMismatchError(stored, self._dim, "configured dim")
            self._dim = stored
            self.client.load_collection(collection)
        elif self._dim is not None:
            self._init_dim(self._dim)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(exact=self.index == "FLAT")

    def _index_params(self) -> dict[str, Any]:
        if self.index == "HNSW":
            return {"M": self.hnsw_m, "efConstruction": self.ef_construction}
        if self.index.startswith("IVF"):
            return {"nlist": self.nlist}
        return {}

    def _search_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.index == "HNSW":
            params = {"ef": self.ef_search}
        elif self.index.startswith("IVF"):
            params = {"nprobe": self.nprobe}
        return {"metric_type": _METRIC[self.metric], "params": params}

    def _init_dim(self, dim: int) -> None:
        dt = self.DataType
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", dt.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("vector", dt.FLOAT_VECTOR, dim=dim)
        schema.add_field("text", dt.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field("meta", dt.JSON)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type=self.index, metric_type=_METRIC[self.metric], params=self._index_params())
        self.client.create_collection(self.collection, schema=schema, index_params=index)

    def _check_batch(self, ids: list[str], texts: list[str], metadatas: list[Metadata]) -> None:
        for doc_id, text in zip(ids, texts, strict=True):
            if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
                raise ValidationError(
                    f"text of {doc_id!r} exceeds Milvus' {MAX_TEXT_BYTES}-byte VARCHAR limit; chunk it"
                )

    def _upsert(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Metadata]) -> None:
        rows = [
            {"id": i, "vector": v.tolist(), "text": t, "meta": _encode(m)}
            for i, v, t, m in zip(ids, vectors, texts, metadatas, strict=True)
        ]
        self.client.upsert(self.collection, rows)

    @staticmethod
    def _meta(row: dict[str, Any]) -> Metadata:
        return {k[2:]: v for k, v in (row.get("meta") or {}).items()}

    def _score(self, distance: float) -> float:
        return -float(np.sqrt(max(distance, 0.0))) if self.metric == "l2" else float(distance)

    def _search(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        return self._search_batch(vector[None, :], k, node)[0]

    def _search_batch(self, matrix: np.ndarray, k: int, node: Node | None) -> list[list[Hit]]:
        # one call for many queries: Milvus Lite spends ~35 ms per call, not per query
        out: list[list[Hit]] = []
        step = max(1, min(_NQ_LIMIT, 16384 // k))
        for start in range(0, len(matrix), step):
            res = self.client.search(
                self.collection,
                data=matrix[start : start + step].tolist(),
                limit=k,
                filter=to_expr(node),
                output_fields=_OUT,
                search_params=self._search_params(),
            )
            for found in res:
                hits = [
                    Hit(h["id"], self._score(h["distance"]), h["entity"]["text"], self._meta(h["entity"]))
                    for h in found
                ]
                out.append(sorted(hits, key=lambda h: (-h.score, h.id)))
        return out

    def _doc(self, row: dict[str, Any]) -> Document:
        return Document(
            id=row["id"], text=row["text"], metadata=self._meta(row), vector=np.asarray(row["vector"], np.float32)
        )

    def _get(self, ids: list[str]) -> list[Document]:
        rows = self.client.get(self.collection, ids=ids, output_fields=["id", "vector", *_OUT])
        return [self._doc(r) for r in rows]

    def _get_where(self, node: Node | None, limit: int | None) -> list[Document]:
        out: list[Document] = []
        it = self.client.query_iterator(
            self.collection,
            batch_size=1000,
            limit=limit if limit is not None else -1,
            filter=to_expr(node),
            output_fields=["id", "vector", *_OUT],
        )
        try:
            while batch := it.next():
                out += [self._doc(r) for r in batch]
        finally:
            it.close()
        return out[:limit] if limit is not None else out

    def _delete_ids(self, ids: list[str]) -> int:
        found = [r["id"] for r in self.client.get(self.collection, ids=ids, output_fields=["id"])]
        if found:
            self.client.delete(self.collection, ids=found)  # Milvus echoes unknown ids too: count first
        return len(found)

    def _delete_where(self, node: Node) -> int:
        n = self._count(node)
        if n:
            self.client.delete(self.collection, filter=to_expr(node))
        return n

    def _count(self, node: Node | None) -> int:
        res = self.client.query(self.collection, filter=to_expr(node), output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def _clear(self) -> None:
        assert self._dim is not None  # the base class only clears a store that has a collection
        self.client.drop_collection(self.collection)
        self._init_dim(self._dim)

    def _drop(self) -> None:
        self.client.drop_collection(self.collection)

    def _close(self) -> None:
        self.client.close()
        if self.lite:
            with contextlib.suppress(Exception):  # older milvus-lite has no manager: nothing to release
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)

    def describe(self) -> dict[str, Any]:
        return {"uri": self.uri, "collection": self.collection, "index": self.index, "lite": self.lite}
