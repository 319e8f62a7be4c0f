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

The lexical leg lives in the collection on Milvus Lite and servers >= 2.5 (``lexical: true``): ragstore's
analysed terms go into ``rs_terms`` (a VARCHAR with Milvus's ``standard`` tokenizer; a term that tokenizer
would split -- Han words, ``a_b`` -- travels hex-encoded as one token), and Milvus's BM25 function turns it
into the sparse ``rs_bm25`` in the same row write. Milvus scores BM25 itself with its own statistics: Milvus
Lite 3.2 keeps them per segment, so scores (and near-tie orders) differ from the reference while the top-10
agrees (measured in ``benchmarks/results/lexical-legs.md``). Servers older than 2.5 have no BM25 function
and keep the sidecar; so do collections made before this leg existed (Milvus cannot add a function).
``lexical_leg: auto`` uses the leg on a server; on Milvus Lite (one process per file) it keeps the sidecar,
which is exact and faster there.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ragstore._optional import require
from ragstore.errors import BackendUnavailableError, UnsupportedFeatureError, ValidationError
from ragstore.query.filters import RANGE_SYMBOL, FilterCompiler, Node, kind, matches
from ragstore.query.namespaces import NS_FIELD, SEP
from ragstore.stores.base import Capabilities, StoreOptions, VectorStore
from ragstore.types import Document, Hit, Metadata

IndexType = Literal["FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN", "SCANN", "AUTOINDEX"]
LITE_REFUSED = ("IVF_PQ", "DISKANN", "SCANN", "IVF_SQ8", "AUTOINDEX")
MAX_TEXT_BYTES = 65535
_PREFIX = {"str": "s:", "number": "n:", "bool": "b:"}
_METRIC = {"cosine": "COSINE", "dot": "IP", "l2": "L2"}
_OUT = ["text", "meta"]
_TERMS, _SPARSE = "rs_terms", "rs_bm25"  # the lexical leg: analysed terms in, BM25 sparse vector out
_MAX_LIMIT = 16384  # Milvus's largest topk
_LEXICAL_KEY = "rs_lexical"  # collection property: the analyzer version of the built leg
_TOKEN = re.compile(r"[a-z0-9]+")


def encode_terms(terms: list[str]) -> str:
    """ragstore's terms as one string Milvus's standard tokenizer splits back into exactly those terms."""
    return " ".join(t if _TOKEN.fullmatch(t) else "h" + t.encode("utf-8").hex() for t in terms)


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
        elif ch == SEP:  # a namespaced id (measured: Milvus' parser takes it raw; it has no escape for it)
            out.append(ch)
        elif ord(ch) < 0x20:
            raise UnsupportedFeatureError(f"Milvus filters cannot match control character {ch!r} in {value!r}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _atom(field: str, value: Any, symbol: str = "==") -> str:
    path = f'meta["{_PREFIX[kind(value) or "str"]}{field}"]'
    return f"(exists {path} and {path} {symbol} {literal(value)})"


class _MilvusFilter(FilterCompiler[str]):
    """Milvus boolean expressions; every atom is guarded by ``exists``, so it is two-valued."""

    def all_of(self, parts: list[str]) -> str:
        return "(" + " and ".join(parts) + ")"

    def any_of(self, parts: list[str]) -> str:
        return "(" + " or ".join(parts) + ")"

    def negate(self, part: str, node: Node) -> str:
        return f"(not {part})"

    def eq(self, field: str, value: Any) -> str:
        if field == NS_FIELD:  # the partition key column: Milvus searches that tenant's partition only
            return f"({_NS} == {literal(value)})"
        return _atom(field, value)

    def range(self, field: str, op: str, value: Any) -> str:
        return _atom(field, value, RANGE_SYMBOL[op])


_COMPILER = _MilvusFilter()


def to_expr(node: Node | None) -> str:
    """Filter tree -> Milvus boolean expression (two-valued by construction)."""
    return "" if node is None else _COMPILER.compile(node)


#: a namespaced collection's partition-key column (the namespace of each row)
_NS = "ns"
_ID_CHUNK = 500  # ids per expression
# a read sees every write that returned before it, as on every other backend (a Milvus server's default,
# "Bounded", lets a search miss documents written a moment ago; Milvus Lite is strong anyway)
_CONSISTENCY = "Strong"
_PAGE = 1000  # rows per query when reading by filter


def _ids_expr(ids: list[str]) -> str:
    return "id in [" + ", ".join(literal(i) for i in ids) + "]"


def _encode(meta: Metadata) -> dict[str, Any]:
    return {_PREFIX[kind(v) or "str"] + k: v for k, v in meta.items()}


_NQ_LIMIT = 256  # queries per search call: keeps each reply (k hits with text each) well under gRPC's limit


class MilvusOptions(StoreOptions):
    remote_keys = ("uri",)
    name_key = "collection"

    path: str | None = Field(default=None, description="Milvus Lite folder (file milvus.db inside)")
    uri: str | None = Field(default=None, description="server URI, e.g. http://localhost:19530")
    token: str | None = None
    db_name: str | None = None
    collection: str = Field(default="ragstore", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    index: IndexType = "FLAT"
    hnsw_m: int = Field(default=16, gt=1)
    ef_construction: int = Field(default=200, gt=0)
    ef_search: int = Field(default=128, gt=0)
    filtered_ef_search: int = Field(
        default=2048, gt=0, description="HNSW ef for filtered searches (Milvus drops non-matching candidates late)"
    )
    nlist: int = Field(default=128, gt=0)
    nprobe: int = Field(default=16, gt=0)


class MilvusStore(VectorStore):
    name = "milvus"
    tunable = ("ef_search", "filtered_ef_search", "nprobe")
    Options = MilvusOptions
    native_lexical = "Milvus's BM25 function over ragstore's terms (Lite, servers >= 2.5; statistics Milvus's own)"

    options: MilvusOptions

    def _connect(self) -> None:
        pymilvus = require("pymilvus", "milvus", "Milvus (pymilvus)")
        opts = self.options
        self.lite = opts.uri is None
        self.path = opts.path
        if self.lite:
            if opts.path is None:
                raise BackendUnavailableError("milvus needs a path (Milvus Lite) or a uri (server)")
            require("milvus_lite", "milvus", "Milvus Lite (milvus-lite)")
            if opts.index in LITE_REFUSED:
                raise UnsupportedFeatureError(
                    f"Milvus Lite accepts index {opts.index} but then searches brute force; use FLAT, HNSW or "
                    "IVF_FLAT, or a Milvus server"
                )
            Path(opts.path).mkdir(parents=True, exist_ok=True)
            self.uri = str(Path(opts.path) / "milvus.db")
        else:
            self.uri = str(opts.uri)
        self.collection = opts.collection
        self.DataType = pymilvus.DataType
        from pymilvus.client.constants import ITERATOR_FIELD, REDUCE_STOP_FOR_BEST

        self._in_key_order = {ITERATOR_FIELD: "True", REDUCE_STOP_FOR_BEST: "True"}
        kwargs: dict[str, Any] = {"uri": self.uri}
        if opts.token:
            kwargs["token"] = opts.token
        if opts.db_name:
            kwargs["db_name"] = opts.db_name
        try:
            self.client = pymilvus.MilvusClient(**kwargs)
        except Exception as exc:  # gRPC and lock errors
            raise BackendUnavailableError(f"cannot open Milvus at {self.uri}: {exc}") from exc

    def _stored(self) -> tuple[int, str | None] | None:
        if not self.client.has_collection(self.collection):
            return None
        info = self.client.describe_collection(self.collection)
        vec = next(f for f in info["fields"] if f["name"] == "vector")
        metric = self.client.describe_index(self.collection, "vector").get("metric_type")
        named = {v: k for k, v in _METRIC.items()}
        return int(vec["params"]["dim"]), named.get(str(metric).upper(), str(metric))

    def _adopt(self, dim: int) -> None:
        self.client.load_collection(self.collection)

    def _capabilities(self) -> Capabilities:
        return Capabilities(exact=self.options.index == "FLAT")

    def _index_params(self) -> dict[str, Any]:
        opts = self.options
        if opts.index == "HNSW":
            return {"M": opts.hnsw_m, "efConstruction": opts.ef_construction}
        if opts.index.startswith("IVF"):
            return {"nlist": opts.nlist}
        return {}

    def _search_params(self, filtered: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.options.index == "HNSW":
            # A filtered HNSW search over an indexed (sealed) segment checks the filter on the ef candidates it
            # visits: with a 1% filter, ef 128 found 70% of the true top 10 (benchmarks/results/scale.md)
            ef = max(self.options.ef_search, self.options.filtered_ef_search) if filtered else self.options.ef_search
            params = {"ef": ef}
        elif self.options.index.startswith("IVF"):
            params = {"nprobe": self.options.nprobe}
        return {"metric_type": _METRIC[self.metric], "params": params}

    def _init_dim(self, dim: int) -> None:
        self._room: bool | None = None
        dt = self.DataType
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        # a namespaced id carries its namespace (64 characters) before the caller's id
        schema.add_field("id", dt.VARCHAR, is_primary=True, max_length=2048 if self.options.namespaces else 512)
        if self.options.namespaces:
            # the partition key where the engine routes upserts by it correctly (measured on Milvus 2.3.5: an
            # upserted row landed where `ns == value` never looked); there a plain column, filtered the same
            schema.add_field(_NS, dt.VARCHAR, max_length=256, is_partition_key=self._at_least(2, 4))
        schema.add_field("vector", dt.FLOAT_VECTOR, dim=dim)
        schema.add_field("text", dt.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field("meta", dt.JSON)
        index = self.client.prepare_index_params()
        index.add_index(
            "vector", index_type=self.options.index, metric_type=_METRIC[self.metric], params=self._index_params()
        )
        if self._bm25_engine():  # room for the lexical leg in every collection made here; filled once built
            from pymilvus import Function, FunctionType

            analyzer = {"tokenizer": "standard"}
            schema.add_field(
                _TERMS, dt.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True, analyzer_params=analyzer
            )
            schema.add_field(_SPARSE, dt.SPARSE_FLOAT_VECTOR)
            schema.add_function(
                Function(
                    name="rs_bm25_fn",
                    function_type=FunctionType.BM25,
                    input_field_names=[_TERMS],
                    output_field_names=[_SPARSE],
                )
            )
            params = {"bm25_k1": self.options.bm25_k1, "bm25_b": self.options.bm25_b}
            index.add_index(_SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=params)
        self.client.create_collection(
            self.collection, schema=schema, index_params=index, consistency_level=_CONSISTENCY
        )

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
        if self.options.namespaces:
            for row, meta in zip(rows, metadatas, strict=True):
                row[_NS] = meta[NS_FIELD]
        roomy = self._has_room()
        built = roomy and self._leg() is not None
        if roomy:
            self._add_terms(rows, built)
        self.client.upsert(self.collection, rows)
        if roomy and not built and self._leg(fresh=True) is not None:
            # another process built the leg while this batch was written: write the batch again with its terms
            self._add_terms(rows, True)
            self.client.upsert(self.collection, rows)

    # ----------------------------------------------------------------- the lexical leg
    def _bm25_engine(self) -> bool:
        """Milvus Lite, or a server with the BM25 function (2.5 and later)."""
        return self._at_least(2, 5)

    def _at_least(self, major: int, minor: int) -> bool:
        """Milvus Lite (today's engine), or a server of at least ``major.minor``."""
        if self.lite:
            return True
        version = str(self.client.get_server_version()).lstrip("v")
        parts = re.findall(r"\d+", version)[:2]
        return len(parts) == 2 and (int(parts[0]), int(parts[1])) >= (major, minor)

    def _has_room(self) -> bool:
        """Whether this collection carries the leg's fields (made by this version on a BM25-capable engine)."""
        cached: bool | None = getattr(self, "_room", None)
        if cached is None:
            info = self.client.describe_collection(self.collection)
            cached = any(f["name"] == _TERMS for f in info["fields"])
            self._room = cached
        return cached

    def _native_preferred(self) -> bool:
        # Milvus Lite is one process per file, scores BM25 in Python with per-segment statistics: 3.7x the
        # sidecar's hybrid latency and a top-10 overlap of 0.97 on xquad-r (benchmarks/results/lexical-legs.md)
        return not self.lite

    def _native_possible(self) -> bool:
        if not self.client.has_collection(self.collection):
            return self._bm25_engine()
        return self._has_room()

    def _leg(self, *, fresh: bool = False) -> dict[str, Any] | None:
        known = getattr(self, "_leg_info", None)
        if known is not None and not fresh:
            return known
        raw = (self.client.describe_collection(self.collection).get("properties") or {}).get(_LEXICAL_KEY)
        self._leg_info: dict[str, Any] | None = json.loads(raw) if raw else None
        return self._leg_info

    @staticmethod
    def _add_terms(rows: list[dict[str, Any]], built: bool) -> None:
        from ragstore.lexical.analyzer import default_analyzer

        analyzer = default_analyzer()
        for row in rows:
            row[_TERMS] = encode_terms(analyzer.terms(row["text"])) if built else ""

    def _lexical_state(self) -> str:
        from ragstore.lexical.analyzer import ANALYZER_VERSION

        if not self._has_room():
            return "none"
        leg = self._leg(fresh=True)
        if leg is None:
            return "none"
        return "ready" if leg.get("analyzer") == ANALYZER_VERSION else "stale"

    def _lexical_build(self) -> int:
        """Record the leg first (writers from then on write terms), then write every stored row again with its
        terms; a writer that raced the recording writes its own batch again."""
        from tqdm.auto import tqdm

        from ragstore.lexical.analyzer import ANALYZER_VERSION

        if not self._has_room():
            raise UnsupportedFeatureError(f"milvus collection {self.collection} has no room for a lexical leg")
        self.client.alter_collection_properties(
            self.collection, properties={_LEXICAL_KEY: json.dumps({"analyzer": ANALYZER_VERSION})}
        )
        self._leg_info = {"analyzer": ANALYZER_VERSION}
        done = 0
        total = self._count(None)
        with tqdm(total=total, desc="building lexical leg", unit="doc", leave=False, delay=1.0) as bar:
            for docs, _ in self._pages(None, None, _PAGE, None):
                rows = [
                    {"id": d.id, "vector": d.vector.tolist(), "text": d.text, "meta": _encode(d.metadata)}  # type: ignore[union-attr]
                    for d in docs
                ]
                self._add_terms(rows, True)
                self.client.upsert(self.collection, rows)
                done += len(rows)
                bar.update(len(rows))
        return done

    def lexical_variant(self) -> dict[str, float]:
        return {"overlap": 0.8}  # Milvus's own statistics (per segment on Lite): the ranking, not the scores

    def _lexical_search(self, terms: list[str], k: int, node: Node | None, fields: bool) -> list[Hit]:
        """Milvus computes BM25's statistics over the documents a search's filter lets through; ragstore's
        meaning is the whole collection's (every other store): a filtered query searches unfiltered, widening,
        and keeps the hits the filter matches (``matches``: the reference semantics)."""
        scale = 1.0 + self.options.bm25_k1  # Milvus keeps BM25's (k1 + 1) factor; Lucene's scale drops it
        limit = k if node is None else max(4 * k, 64)
        while True:
            res = self.client.search(
                self.collection,
                consistency_level=_CONSISTENCY,
                data=[encode_terms(terms)],
                anns_field=_SPARSE,
                limit=limit,
                output_fields=_OUT if fields or node is not None else ["id"],
                search_params={"metric_type": "BM25"},
            )[0]
            found = [h for h in res if node is None or matches(node, self._meta(h["entity"]))]
            if node is None or len(found) >= k or len(res) < limit or limit >= _MAX_LIMIT:
                break
            limit = min(limit * 4, _MAX_LIMIT)
        out = []
        for h in found[:k]:
            score = abs(float(h["distance"])) / scale
            if fields:
                out.append(Hit(h["id"], score, h["entity"]["text"], self._meta(h["entity"]), "bm25"))
            else:
                out.append(Hit(h["id"], score, "", {}, "bm25"))
        return out

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
                consistency_level=_CONSISTENCY,
                data=matrix[start : start + step].tolist(),
                limit=k,
                filter=to_expr(node),
                output_fields=_OUT,
                search_params=self._search_params(node is not None),
            )
            out += [
                [Hit(h["id"], self._score(h["distance"]), h["entity"]["text"], self._meta(h["entity"])) for h in found]
                for found in res
            ]
        return out

    def _doc(self, row: dict[str, Any]) -> Document:
        return Document(
            id=row["id"], text=row["text"], metadata=self._meta(row), vector=np.asarray(row["vector"], np.float32)
        )

    def _rows(self, ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
        """Rows by id through an expression we escape ourselves: pymilvus' ``get(ids=)``/``delete(ids=)`` paste
        ids into ``id in ['...']`` unescaped, so a crafted id could select (and delete) other documents."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), _ID_CHUNK):
            out += self.client.query(
                self.collection,
                filter=_ids_expr(ids[start : start + _ID_CHUNK]),
                output_fields=fields,
                consistency_level=_CONSISTENCY,
            )
        return out

    def _get(self, ids: list[str]) -> list[Document]:
        return [self._doc(r) for r in self._rows(ids, ["id", "vector", *_OUT])]

    def _get_where(self, node: Node | None, limit: int | None) -> list[Document]:
        out: list[Document] = []
        for docs, _ in self._pages(node, None, _PAGE, limit):
            out += docs
        return out

    def _scan(self, cursor: str | None, limit: int) -> Iterator[tuple[list[Document], str]]:
        return self._pages(None, cursor, limit, None)

    def _pages(
        self, node: Node | None, last: str | None, size: int, limit: int | None
    ) -> Iterator[tuple[list[Document], str]]:
        """Pages by primary key with our own escaped ``id > last`` (pymilvus' ``query_iterator`` pastes the
        last id into its expression unescaped, so an id with a quote or newline broke it)."""
        expr, seen = to_expr(node), 0
        while limit is None or seen < limit:
            page = size if limit is None else min(size, limit - seen)
            after = None if last is None else f"id > {literal(last)}"
            cond = " and ".join(f"({c})" for c in (expr, after) if c)
            rows = self.client.query(
                self.collection,
                consistency_level=_CONSISTENCY,
                filter=cond,
                limit=page,
                output_fields=["id", "vector", *_OUT],
                **self._in_key_order,  # the iterator's flags: the smallest keys, sorted, not insertion order
            )
            if not rows:
                return
            last = rows[-1]["id"]
            seen += len(rows)
            yield [self._doc(r) for r in rows], last
            # a short page ends the read -- except across a partition key's partitions, where a server's
            # reduce may stop at the best of one partition first (measured on Milvus 2.3: 1 row of 16)
            if len(rows) < page and not self.options.namespaces:
                return

    def _delete_ids(self, ids: list[str]) -> int:
        found = [r["id"] for r in self._rows(ids, ["id"])]  # Milvus echoes unknown ids too: count first
        for start in range(0, len(found), _ID_CHUNK):
            self.client.delete(self.collection, filter=_ids_expr(found[start : start + _ID_CHUNK]))
        return len(found)

    def _delete_where(self, node: Node) -> int:
        n = self._count(node)
        if n:
            self.client.delete(self.collection, filter=to_expr(node))
        return n

    def _flush(self) -> None:
        """Seal what is written (Milvus keeps new rows in growing segments, searched row by row: a tenant's
        query over 20K unsealed rows on Milvus Lite took 1 s, 21 ms once flushed)."""
        self.client.flush(self.collection)

    def _count(self, node: Node | None) -> int:
        res = self.client.query(
            self.collection, filter=to_expr(node), output_fields=["count(*)"], consistency_level=_CONSISTENCY
        )
        return int(res[0]["count(*)"])

    def _read_manifest(self) -> str | None:
        value = (self.client.describe_collection(self.collection).get("properties") or {}).get("rs_manifest")
        return str(value) if value else None

    def _write_manifest(self, text: str) -> None:
        self.client.alter_collection_properties(self.collection, properties={"rs_manifest": text})

    def _drop(self) -> None:
        self.client.drop_collection(self.collection)
        self._room = None
        self._leg_info = None

    def _close(self) -> None:
        self.client.close()
        if self.lite:
            with contextlib.suppress(Exception):  # older milvus-lite has no manager: nothing to release
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)

    def _describe(self) -> dict[str, Any]:
        return {"uri": self.uri, "collection": self.collection, "index": self.options.index, "lite": self.lite}
