"""Qdrant, two ways: ``qdrant`` (qdrant-client: local ``path=`` mode or a server/cluster ``url=``) and
``qdrant-edge`` (Qdrant's Rust engine in-process through ``qdrant-edge-py``).

Qdrant point ids must be integers or UUIDs, so a caller's string id maps to ``uuid5(id)`` and the original
id travels in the payload. Payload layout is flat (nested payloads cost the engine ~40% more per write):
``{"rs_id": id, "rs_text": text, "m_<field>": value, ...}``; filters address ``m_<field>``. Qdrant's own
filter logic is two-valued (``must_not`` on a missing field holds), which is ragstore's semantics; numeric
equality is a closed range so ``1`` matches ``1.0`` as it should.

The lexical leg of ``qdrant`` lives in the collection (``lexical: true``): a sparse vector ``rs_bm25`` per
point, written with the dense vector in the same point, whose entries are ragstore's analysed terms (hashed
to 32 bits) valued ``tf / (tf + k1 * (1 - b + b * len / avglen))``; Qdrant's ``Modifier.IDF`` multiplies in
``ln(1 + (N - df + 0.5) / (df + 0.5))`` at query time over the points as they are then. That is Lucene BM25
with one difference: ``avglen`` is the average when the leg was built (recorded in the collection's
metadata; a rebuild refreshes it), where the reference uses today's. Every collection made by this version
carries the sparse vector; an older one (Qdrant cannot add a vector to a collection) keeps the sidecar.
``lexical_leg: auto`` uses the leg on a server; in local mode (one process per folder, sparse scoring in
Python) it keeps the sidecar, which is exact and faster there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ragstore._optional import require
from ragstore.errors import BackendUnavailableError, ValidationError
from ragstore.query.filters import FilterCompiler, Node, kind
from ragstore.query.indexed import fields_in
from ragstore.query.namespaces import NS_FIELD
from ragstore.stores.base import SCAN_END, Capabilities, CollectionName, StoreOptions, VectorStore
from ragstore.types import Document, Hit, Metadata, Ranked

_NAMESPACE = uuid.UUID("6f1c9a52-4b1e-4f55-9d3c-2a7b8e0c1d11")
_PAGE = 1000
_SPARSE = "rs_bm25"  # the lexical leg's sparse vector
_LEXICAL_KEY = "rs_lexical"  # collection metadata: analyzer version, k1, b, avglen of the built leg


def term_index(term: str) -> int:
    """A term's sparse index: 32 bits of its BLAKE2b hash (collisions merge two terms; ~1 in 10^6 pairs at
    100K distinct terms)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big")


def sparse_weights(terms: list[str], k1: float, b: float, avg: float) -> tuple[list[int], list[float]]:
    """BM25's term-frequency part of one document, by sparse index (the IDF is Qdrant's)."""
    from collections import Counter

    length = len(terms)
    norm = k1 * (1.0 - b + b * length / avg)
    weights: dict[int, float] = {}
    for term, tf in Counter(terms).items():
        idx = term_index(term)
        weights[idx] = weights.get(idx, 0.0) + tf / (tf + norm)
    return list(weights), list(weights.values())


def point_id(doc_id: str) -> str:
    """Deterministic UUID for a caller's string id: exactly ``uuid5(namespace, id)``, computed ~3x faster."""
    h = bytearray(hashlib.sha1(_NAMESPACE.bytes + doc_id.encode("utf-8")).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


class FilterDialect(FilterCompiler[Any]):
    """Qdrant ``Filter`` atoms; the two Qdrant Python APIs differ only in the constructors given here.

    Qdrant's own logic is two-valued (``must_not`` on a missing field holds), ragstore's semantics.
    """

    def __init__(
        self,
        filter_cls: Callable[..., Any],
        field: Callable[..., Any],
        match_value: Callable[[Any], Any],
        match_any: Callable[[list[Any]], Any],
        range_: Callable[..., Any],
        bools_as_text: bool = False,
    ) -> None:
        self.filter, self.field, self.match_value, self.match_any, self.range_ = (
            filter_cls,
            field,
            match_value,
            match_any,
            range_,
        )
        #: qdrant-edge's binding turns a Python bool into an integer match, so booleans are also stored
        #: as "true"/"false" under ``b_<field>`` and matched there.
        self.bools_as_text = bools_as_text

    def translate(self, node: Node) -> Any:
        """Filter tree -> a Qdrant ``Filter``."""
        return self.compile(node)

    def all_of(self, parts: list[Any]) -> Any:
        return self.filter(must=parts)

    def any_of(self, parts: list[Any]) -> Any:
        return self.filter(should=parts)

    def negate(self, part: Any, node: Node) -> Any:
        return self.filter(must_not=[part])

    def _condition(self, key: str, value: Any) -> Any:
        if kind(value) == "number":  # numeric equality as a closed range, so 1 matches 1.0
            return self.field(key=key, range=self.range_(gte=float(value), lte=float(value)))
        if kind(value) == "bool" and self.bools_as_text:
            key = "b_" + key.removeprefix("m_")
            value = "true" if value else "false"
        return self.field(key=key, match=self.match_value(value))

    def eq(self, field: str, value: Any) -> Any:
        return self.filter(must=[self._condition(f"m_{field}", value)])

    def is_in(self, field: str, values: tuple[Any, ...]) -> Any:
        if kind(values[0]) == "str":
            return self.filter(must=[self.field(key=f"m_{field}", match=self.match_any(list(values)))])
        return self.filter(should=[self._condition(f"m_{field}", v) for v in values])

    merges_ranges = True

    def range(self, field: str, op: str, value: Any) -> Any:
        return self.range_all(field, [(op, value)])

    def range_all(self, field: str, bounds: list[tuple[str, Any]]) -> Any:
        """One condition for every bound on the field: Qdrant then estimates the range's true size and walks
        the payload index (as two conditions, ``u >= x AND u < y`` scanned every point: 55 vs 5 ms at 1M)."""
        spec = {op.removeprefix("$"): float(value) for op, value in bounds}  # gt, gte, lt, lte
        return self.filter(must=[self.field(key=f"m_{field}", range=self.range_(**spec))])


def _payload(doc_id: str, text: str, meta: Metadata, bools_as_text: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {"rs_id": doc_id, "rs_text": text}
    for key, value in meta.items():
        payload["m_" + key] = value
        if bools_as_text and isinstance(value, bool):
            payload["b_" + key] = "true" if value else "false"
    return payload


def _meta(payload: dict[str, Any]) -> Metadata:
    return {k[2:]: v for k, v in payload.items() if k.startswith("m_")}


def _record_doc(record: Any) -> Document:
    p = record.payload
    vector = record.vector[""] if isinstance(record.vector, dict) else record.vector  # dense beside the sparse leg
    return Document(id=p["rs_id"], text=p["rs_text"], metadata=_meta(p), vector=np.asarray(vector, np.float32))


def _hits(points: Any, metric: str) -> list[Hit]:
    """Scored points -> hits; Qdrant's Euclid score is a distance, so it is negated."""
    sign = -1.0 if metric == "l2" else 1.0
    return [Hit(p.payload["rs_id"], sign * float(p.score), p.payload["rs_text"], _meta(p.payload)) for p in points]


class QdrantOptions(StoreOptions):
    remote_keys = ("url",)
    name_key = "collection"

    path: str | None = Field(default=None, description="local mode folder (qdrant-client's Python engine)")
    url: str | None = Field(default=None, description="server or cluster URL, e.g. http://localhost:6333")
    api_key: str | None = None
    collection: CollectionName = Field(
        default="ragstore",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$",
        description="letters, digits, '.', '_', '-' (no '/', no '..'), at most 255",
    )

    hnsw_m: int | None = Field(default=None, gt=0)
    ef_construct: int | None = Field(default=None, gt=0)
    ef_search: int | None = Field(default=None, gt=0, description="hnsw_ef at query time (server)")
    exact: bool = Field(default=False, description="server: search exactly instead of through HNSW")
    timeout: int = Field(default=30, gt=0)


class QdrantStore(VectorStore):
    name = "qdrant"
    tunable = ("ef_search", "exact")
    Options = QdrantOptions
    native_lexical = "sparse vectors with Qdrant's IDF modifier (BM25; average length fixed when built)"

    options: QdrantOptions

    def _connect(self) -> None:
        require("qdrant_client", "qdrant", "qdrant-client")
        from qdrant_client import QdrantClient
        from qdrant_client import models as m

        opts = self.options
        self.m = m
        self.local = opts.url is None
        self.path = opts.path
        self.collection = opts.collection
        self.dialect = FilterDialect(
            m.Filter, m.FieldCondition, lambda v: m.MatchValue(value=v), lambda vs: m.MatchAny(any=vs), m.Range
        )
        try:
            if opts.url is not None:
                self.client = QdrantClient(url=opts.url, api_key=opts.api_key, timeout=opts.timeout)
            elif opts.path is not None:
                Path(opts.path).mkdir(parents=True, exist_ok=True)
                self.client = QdrantClient(path=str(opts.path))
            else:
                self.client = QdrantClient(location=":memory:")
        except Exception as exc:  # engine-specific connection and lock errors
            raise BackendUnavailableError(f"cannot open Qdrant ({opts.url or opts.path or ':memory:'}): {exc}") from exc

    def _stored(self) -> tuple[int, str | None] | None:
        if not self.client.collection_exists(self.collection):
            return None
        params = self.client.get_collection(self.collection).config.params.vectors
        m = self.m
        distance = {m.Distance.COSINE: "cosine", m.Distance.DOT: "dot", m.Distance.EUCLID: "l2"}
        return int(params.size), distance.get(params.distance, str(params.distance))  # type: ignore[union-attr]

    def _capabilities(self) -> Capabilities:
        # local mode scores every point; a server searches HNSW unless told to be exact
        return Capabilities(persistent=not self.local or self.path is not None, exact=self.local or self.options.exact)

    def _init_dim(self, dim: int) -> None:
        m = self.m
        distance = {"cosine": m.Distance.COSINE, "dot": m.Distance.DOT, "l2": m.Distance.EUCLID}[self.metric]
        hnsw = None
        if self.options.hnsw_m or self.options.ef_construct:
            hnsw = m.HnswConfigDiff(m=self.options.hnsw_m, ef_construct=self.options.ef_construct)
        self.client.create_collection(
            self.collection,
            vectors_config=m.VectorParams(size=dim, distance=distance),
            sparse_vectors_config={_SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},  # the lexical leg
            hnsw_config=hnsw,
        )

    def _filter(self, node: Node | None) -> Any:
        return None if node is None else self.dialect.translate(node)

    @property
    def indexes_fields(self) -> bool:  # type: ignore[override]
        return not self.local  # local mode keeps no payload index (it scans in Python)

    def _declare_indexed(self) -> None:
        if not self.declared or self.local:
            return
        m = self.m
        have = self.client.get_collection(self.collection).payload_schema or {}
        schema = {
            "keyword": m.PayloadSchemaType.KEYWORD,
            "datetime": m.PayloadSchemaType.KEYWORD,  # filtered by string equality, as every engine does
            "integer": m.PayloadSchemaType.INTEGER,
            "float": m.PayloadSchemaType.FLOAT,
            "bool": m.PayloadSchemaType.BOOL,
        }
        for field, ftype in self.declared.items():
            if f"m_{field}" not in have:  # Qdrant indexes the points already stored itself
                kind: Any = schema[ftype]
                if field == NS_FIELD:  # Qdrant's multitenancy: points grouped by tenant on disk and in the graph
                    kind = m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True)
                self.client.create_payload_index(self.collection, f"m_{field}", kind, wait=True)

    def _plan(self, node: Node | None, k: int) -> dict[str, Any]:
        if node is None:
            return {"strategy": "ann" if not self.local else "exact", "detail": "Qdrant's own search, no filter"}
        if self.local:
            return {"strategy": "exact", "detail": "local mode: every point's payload tested, exact scores"}
        total, matching = self._count(None), self._count(node)
        strategy = self.choose_plan(matching, exact=self.options.exact)
        detail = {
            "exact": "exact search over the matching points (exact: true)",
            "prefilter": f"{matching} matching points (<= exact_filter_limit): Qdrant's planner scores them exactly "
            "through the payload index below its full_scan_threshold",
            "filtered_ann": "Qdrant's filterable HNSW walk (payload-index links between matching points)",
        }[strategy]
        return {"strategy": strategy, "detail": detail, "matching": matching, "total": total}

    def _upsert(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Metadata]) -> None:
        leg = self._leg()
        if leg is not None and leg["avglen"] is None:  # built empty: the first documents set the average length
            from ragstore.lexical.analyzer import default_analyzer

            lengths = [len(default_analyzer().terms(t)) for t in texts]
            leg = self._record_leg({**leg, "avglen": max(sum(lengths), 1) / len(lengths)})
        points = [
            self.m.PointStruct(
                id=point_id(i),
                vector=v.tolist() if leg is None else {"": v.tolist(), _SPARSE: self._sparse(t, leg)},
                payload=_payload(i, t, md),
            )
            for i, v, t, md in zip(ids, vectors, texts, metadatas, strict=True)
        ]
        self.client.upload_points(self.collection, points, wait=True, batch_size=self.batch_size)
        if leg is None and self._leg(fresh=True) is not None:
            # another process built the leg while this batch was written: give the batch its terms too
            self._index_points([(point_id(i), t) for i, t in zip(ids, texts, strict=True)])

    # ----------------------------------------------------------------- the lexical leg
    def _native_preferred(self) -> bool:
        # local mode is one process per folder and scores sparse vectors in Python: 6x the sidecar's hybrid
        # latency on xquad-r (benchmarks/results/lexical-legs.md); a server scores them in Rust for every app
        return not self.local

    def _native_possible(self) -> bool:
        if not self.client.collection_exists(self.collection):
            return True
        sparse = self.client.get_collection(self.collection).config.params.sparse_vectors or {}
        return _SPARSE in sparse

    def _leg(self, *, fresh: bool = False) -> dict[str, Any] | None:
        """The built leg's parameters (from the collection's metadata; remembered once seen)."""
        known = getattr(self, "_leg_info", None)
        if known is not None and not fresh:
            return known
        if self._dim is None and not self.client.collection_exists(self.collection):
            return None  # (a write or search has the collection: one round trip, not two)
        raw = (self.client.get_collection(self.collection).config.metadata or {}).get(_LEXICAL_KEY)
        self._leg_info: dict[str, Any] | None = json.loads(raw) if raw else None
        return self._leg_info

    def _record_leg(self, leg: dict[str, Any]) -> dict[str, Any]:
        self.client.update_collection(self.collection, metadata={_LEXICAL_KEY: json.dumps(leg)})
        self._leg_info = leg
        return leg

    def _sparse(self, text: str, leg: dict[str, Any]) -> Any:
        from ragstore.lexical.analyzer import default_analyzer

        indices, values = sparse_weights(default_analyzer().terms(text), leg["k1"], leg["b"], leg["avglen"])
        return self.m.SparseVector(indices=indices, values=values)

    def _index_points(self, items: list[tuple[str, str]]) -> None:
        leg = self._leg()
        assert leg is not None
        m = self.m
        for start in range(0, len(items), self.batch_size):
            part = items[start : start + self.batch_size]
            vectors = [m.PointVectors(id=pid, vector={_SPARSE: self._sparse(t, leg)}) for pid, t in part]
            self.client.update_vectors(self.collection, vectors, wait=True)

    def lexical_variant(self) -> dict[str, float]:
        leg = self._leg(fresh=True)
        avglen = leg.get("avglen") if leg else None
        return {"rel_tol": 1e-6, **({"avglen": float(avglen)} if avglen else {})}  # Qdrant scores in float32

    def _lexical_state(self) -> str:
        from ragstore.lexical.analyzer import ANALYZER_VERSION

        leg = self._leg(fresh=True)
        if leg is None:
            return "none"
        return "ready" if leg.get("analyzer") == ANALYZER_VERSION else "stale"

    def _lexical_build(self) -> int:
        """Record the leg's parameters first (writers from then on write terms), then give every stored point
        its sparse vector; a writer that raced the recording re-indexes its own batch."""
        from tqdm.auto import tqdm

        from ragstore.lexical.analyzer import ANALYZER_VERSION, default_analyzer

        analyzer = default_analyzer()
        stored: list[tuple[str, str]] = []
        offset = None
        while True:
            records, offset = self.client.scroll(self.collection, limit=_PAGE, offset=offset, with_payload=["rs_text"])
            stored += [(str(r.id), str((r.payload or {})["rs_text"])) for r in records]
            if offset is None:
                break
        lengths = [len(analyzer.terms(t)) for _, t in stored]
        avglen = max(sum(lengths), 1) / len(lengths) if lengths else None
        self._record_leg(
            {"analyzer": ANALYZER_VERSION, "k1": self.options.bm25_k1, "b": self.options.bm25_b, "avglen": avglen}
        )
        with tqdm(total=len(stored), desc="building lexical leg", unit="doc", leave=False, delay=1.0) as bar:
            for start in range(0, len(stored), self.batch_size):
                part = stored[start : start + self.batch_size]
                self._index_points(part)
                bar.update(len(part))
        return len(stored)

    def _lexical_search(self, terms: list[str], k: int, node: Node | None, fields: bool) -> list[Hit]:
        query = self.m.SparseVector(indices=sorted({term_index(t) for t in terms}), values=[])
        query.values = [1.0] * len(query.indices)
        res = self.client.query_points(
            self.collection,
            query=query,
            using=_SPARSE,
            query_filter=self._filter(node),
            limit=k,
            with_payload=True if fields else ["rs_id"],
        ).points
        out = []
        for point in res:
            payload: dict[str, Any] = point.payload or {}
            text, meta = (payload["rs_text"], _meta(payload)) if fields else ("", {})
            out.append(Hit(payload["rs_id"], float(point.score), text, meta, "bm25"))
        return out

    def _search(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        params = None
        if not self.local:
            params = self.m.SearchParams(hnsw_ef=self.options.ef_search, exact=self.options.exact)
        res = self.client.query_points(
            self.collection,
            query=vector.tolist(),
            query_filter=self._filter(node),
            limit=k,
            with_payload=True,
            search_params=params,
        ).points
        return _hits(res, self.metric)

    def _get(self, ids: list[str]) -> list[Document]:
        records = self.client.retrieve(
            self.collection, [point_id(i) for i in ids], with_payload=True, with_vectors=True
        )
        return [_record_doc(r) for r in records]

    def _fields(self, ids: list[str]) -> dict[str, tuple[str, Metadata]]:
        records = self.client.retrieve(self.collection, [point_id(i) for i in ids], with_payload=True)
        payloads = [r.payload or {} for r in records]
        return {p["rs_id"]: (p["rs_text"], _meta(p)) for p in payloads}

    def _get_where(self, node: Node | None, limit: int | None) -> list[Document]:
        out: list[Document] = []
        offset = None
        while limit is None or len(out) < limit:
            page = _PAGE if limit is None else min(_PAGE, limit - len(out))
            records, offset = self.client.scroll(
                self.collection, scroll_filter=self._filter(node), limit=page, offset=offset, with_vectors=True
            )
            out += [_record_doc(r) for r in records]
            if offset is None:
                break
        return out

    def _scan(self, cursor: str | None, limit: int) -> Iterator[tuple[list[Document], str]]:
        """Qdrant's own scroll order (point ids); the cursor names the next page's first point."""
        offset = _offset(cursor)
        while True:
            records, offset = self.client.scroll(self.collection, limit=limit, offset=offset, with_vectors=True)
            yield [_record_doc(r) for r in records], _cursor(offset)
            if offset is None:
                return

    def _delete_ids(self, ids: list[str]) -> int:
        found = [r.id for r in self.client.retrieve(self.collection, [point_id(i) for i in ids], with_payload=False)]
        if found:
            self.client.delete(self.collection, points_selector=self.m.PointIdsList(points=found), wait=True)
        return len(found)

    def _delete_where(self, node: Node) -> int:
        n = self._count(node)
        if n:
            selector = self.m.FilterSelector(filter=self._filter(node))
            self.client.delete(self.collection, points_selector=selector, wait=True)
        return n

    def _count(self, node: Node | None) -> int:
        return int(self.client.count(self.collection, count_filter=self._filter(node), exact=True).count)

    def _read_manifest(self) -> str | None:
        value = (self.client.get_collection(self.collection).config.metadata or {}).get("rs_manifest")
        return str(value) if value else None

    def _write_manifest(self, text: str) -> None:
        self.client.update_collection(self.collection, metadata={"rs_manifest": text})

    def _drop(self) -> None:
        self.client.delete_collection(self.collection)
        self._leg_info = None

    def _close(self) -> None:
        self.client.close()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None, "collection": self.collection, "local": self.local}


# ---------------------------------------------------------------------------------------------------- edge

_EDGE_INFO = "ragstore.json"
_EDGE_MANIFEST = "manifest.json"


class QdrantEdgeOptions(StoreOptions):
    path: str | None = Field(default=None, description="folder for the shard; required")
    ef_search: int | None = Field(default=None, gt=0)
    exact: bool = False
    optimize: bool = Field(
        default=False, description="build HNSW (and quantised codes) on flush/close; unoptimised shards scan exactly"
    )
    quantize: Literal["none", "int8"] = Field(default="none", description="scalar int8 codes; set at creation")
    on_disk: bool = Field(default=False, description="float vectors on disk (memory-mapped); set at creation")
    oversampling: float = Field(default=4.0, ge=1.0, description="quantize: candidates re-scored per result")
    hnsw_m: int | None = Field(default=None, gt=0)
    ef_construct: int | None = Field(default=None, gt=0)


class QdrantEdgeStore(VectorStore):
    """Qdrant's Rust engine in-process (write-ahead log, segments, HNSW when large enough)."""

    name = "qdrant-edge"
    tunable = ("ef_search", "exact", "oversampling", "exact_filter_limit")
    Options = QdrantEdgeOptions
    one_process_per_path = True  # the shard's WAL lock admits one opener; say so before the shard exists too
    one_opener_per_path = True

    options: QdrantEdgeOptions

    def _connect(self) -> None:
        self.q = require("qdrant_edge", "qdrant", "qdrant-edge-py")
        if self.options.path is None:
            raise BackendUnavailableError("qdrant-edge needs a path (a folder for the shard)")
        q = self.q
        self.path = Path(self.options.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.dialect = FilterDialect(q.Filter, q.FieldCondition, q.MatchValue, q.MatchAny, q.RangeFloat, True)
        self.shard: Any = None

    def _stored(self) -> tuple[int, str | None] | None:
        info_file = self.path / _EDGE_INFO
        if not info_file.exists():
            return None
        info = json.loads(info_file.read_text(encoding="utf-8"))
        return int(info["dim"]), str(info["metric"])

    def _adopt(self, dim: int) -> None:
        try:
            self.shard = self.q.EdgeShard.load(str(self.path / "shard"))
        except Exception as exc:
            raise BackendUnavailableError(f"cannot load qdrant-edge shard at {self.path}: {exc}") from exc

    def _capabilities(self) -> Capabilities:
        # an unoptimised shard is scanned exactly (qdrant-edge builds HNSW only when asked to optimise)
        opts = self.options
        return Capabilities(exact=not opts.optimize and opts.quantize == "none")

    def _init_dim(self, dim: int) -> None:
        q, opts = self.q, self.options
        distance = {"cosine": q.Distance.Cosine, "dot": q.Distance.Dot, "l2": q.Distance.Euclid}[self.metric]
        quant = q.ScalarQuantizationConfig(q.ScalarType.Int8, quantile=0.99, always_ram=True)
        hnsw = None
        if opts.hnsw_m or opts.ef_construct:
            m, ef = opts.hnsw_m or 16, opts.ef_construct or 100
            hnsw = q.HnswIndexConfig(m=m, ef_construct=ef, full_scan_threshold=10_000)
        params = q.EdgeVectorParams(
            size=dim,
            distance=distance,
            on_disk=opts.on_disk or None,
            quantization_config=quant if opts.quantize == "int8" else None,
            hnsw_config=hnsw,
        )
        self.shard = q.EdgeShard.create(str(self.path / "shard"), q.EdgeConfig(vectors=params))
        tmp = self.path / (_EDGE_INFO + ".tmp")
        tmp.write_text(json.dumps({"dim": dim, "metric": self.metric}), encoding="utf-8")
        os.replace(tmp, self.path / _EDGE_INFO)

    def _filter(self, node: Node | None) -> Any:
        return None if node is None else self.dialect.translate(node)

    indexes_fields = True  # payload indexes in the shard

    def _declare_indexed(self) -> None:
        if not self.declared:
            return
        q = self.q
        types = q.PayloadSchemaType
        schema = {"keyword": types.Keyword, "datetime": types.Keyword, "integer": types.Integer, "float": types.Float}
        for field, ftype in self.declared.items():
            # booleans are matched as "true"/"false" under b_<field> here (see FilterDialect)
            key, kind = (f"b_{field}", types.Keyword) if ftype == "bool" else (f"m_{field}", schema[ftype])
            self.shard.update(q.UpdateOperation.create_field_index(key, kind))  # idempotent; indexes stored points

    def _prefilter(self, node: Node | None) -> bool:
        """The shared rule: a filter on declared fields alone matching at most ``exact_filter_limit`` points
        is answered by exact scores over them (the payload index finds them); counted only for such filters
        on an optimised shard (an unoptimised one is scanned exactly anyway)."""
        if node is None or not self.options.optimize or not fields_in(node) <= self.declared.keys():
            return False
        return self._count(node) <= self.options.exact_filter_limit

    def _plan(self, node: Node | None, k: int) -> dict[str, Any]:
        total = self._count(None)
        if node is None:
            return {"strategy": "ann", "detail": "qdrant-edge's own search, no filter", "total": total}
        matching = self._count(node)
        strategy = self.choose_plan(matching, exact=self.options.exact or not self.options.optimize)
        detail = {
            "exact": "exact scores over the matching points (an unoptimised shard, or exact: true)",
            "prefilter": f"exact search over the {matching} matching points (<= exact_filter_limit)"
            + ("" if fields_in(node) <= self.declared.keys() else "; Qdrant's own planner decides (undeclared fields)"),
            "filtered_ann": "the shard's filterable HNSW walk (payload-index links between matching points)",
        }[strategy]
        return {"strategy": strategy, "detail": detail, "matching": matching, "total": total}

    def _upsert(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Metadata]) -> None:
        q = self.q
        points = [
            q.Point(point_id(i), v.tolist(), _payload(i, t, md, bools_as_text=True))
            for i, v, t, md in zip(ids, vectors, texts, metadatas, strict=True)
        ]
        self.shard.update(q.UpdateOperation.upsert_points(points))

    def _search(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        return _hits(self._nearest(vector, k, node, True), self.metric)

    def _search_scores(self, vector: np.ndarray, k: int, node: Node | None) -> Ranked:
        points = self._nearest(vector, k, node, ["rs_id"])  # the id alone: a fused query's leg
        sign = -1.0 if self.metric == "l2" else 1.0  # nearest first, as Qdrant returns them
        scores = np.fromiter((sign * float(p.score) for p in points), dtype=np.float64, count=len(points))
        return Ranked([p.payload["rs_id"] for p in points], scores)

    def _nearest(self, vector: np.ndarray, k: int, node: Node | None, payload: bool | list[str]) -> Any:
        q = self.q
        opts = self.options
        params = None
        exact = opts.exact or self._prefilter(node)
        if opts.quantize != "none":
            rescore = q.QuantizationSearchParams(rescore=True, oversampling=opts.oversampling)
            params = q.SearchParams(hnsw_ef=opts.ef_search, exact=exact, quantization=rescore)
        elif opts.ef_search or exact:
            params = q.SearchParams(hnsw_ef=opts.ef_search, exact=exact)
        return self.shard.query(
            q.QueryRequest(
                limit=k,
                query=q.Query.Nearest(vector.tolist()),
                filter=self._filter(node),
                params=params,
                with_payload=payload,
            )
        )

    def _get(self, ids: list[str]) -> list[Document]:
        return [
            _record_doc(r) for r in self.shard.retrieve([point_id(i) for i in ids], with_payload=True, with_vector=True)
        ]

    def _fields(self, ids: list[str]) -> dict[str, tuple[str, Metadata]]:
        records = self.shard.retrieve([point_id(i) for i in ids], with_payload=True, with_vector=False)
        return {r.payload["rs_id"]: (r.payload["rs_text"], _meta(r.payload)) for r in records}

    def _get_where(self, node: Node | None, limit: int | None) -> list[Document]:
        out: list[Document] = []
        offset = None
        q = self.q
        while limit is None or len(out) < limit:
            page = _PAGE if limit is None else min(_PAGE, limit - len(out))
            records, offset = self.shard.scroll(
                q.ScrollRequest(
                    filter=self._filter(node), limit=page, offset=offset, with_payload=True, with_vector=True
                )
            )
            out += [_record_doc(r) for r in records]
            if offset is None:
                break
        return out

    def _scan(self, cursor: str | None, limit: int) -> Iterator[tuple[list[Document], str]]:
        offset = _offset(cursor)
        while True:
            records, offset = self.shard.scroll(
                self.q.ScrollRequest(limit=limit, offset=offset, with_payload=True, with_vector=True)
            )
            yield [_record_doc(r) for r in records], _cursor(offset)
            if offset is None:
                return

    def _delete_ids(self, ids: list[str]) -> int:
        found = [r.id for r in self.shard.retrieve([point_id(i) for i in ids], with_payload=False, with_vector=False)]
        if found:
            self.shard.update(self.q.UpdateOperation.delete_points(found))
        return len(found)

    def _delete_where(self, node: Node) -> int:
        n = self._count(node)
        if n:
            self.shard.update(self.q.UpdateOperation.delete_points_by_filter(self._filter(node)))
        return n

    def _count(self, node: Node | None) -> int:
        return int(self.shard.count(self.q.CountRequest(exact=True, filter=self._filter(node))))

    def _clear(self) -> None:
        self.shard.update(self.q.UpdateOperation.delete_points_by_filter(self.q.Filter(must=[])))

    def _read_manifest(self) -> str | None:
        file = self.path / _EDGE_MANIFEST
        return file.read_text(encoding="utf-8") if file.exists() else None

    def _write_manifest(self, text: str) -> None:
        tmp = self.path / (_EDGE_MANIFEST + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path / _EDGE_MANIFEST)

    def _drop(self) -> None:
        self.shard.close()
        self.shard = None
        shutil.rmtree(self.path / "shard", ignore_errors=True)
        (self.path / _EDGE_INFO).unlink(missing_ok=True)
        (self.path / _EDGE_MANIFEST).unlink(missing_ok=True)

    def _flush(self) -> None:
        if self.shard is not None:
            self.shard.flush()
            if self.options.optimize:
                self.shard.optimize()  # blocks until segments are indexed (HNSW, quantised codes)

    def _close(self) -> None:
        if self.shard is not None:
            self._flush()
            self.shard.close()

    def _describe(self) -> dict[str, Any]:
        opts = self.options
        return {"path": str(self.path), "optimize": opts.optimize, "quantize": opts.quantize}


def _cursor(offset: Any) -> str:
    """A scroll offset (a point id: UUID string or integer) as a cursor string; none left: ``SCAN_END``."""
    return SCAN_END if offset is None else json.dumps(offset if isinstance(offset, int | str) else str(offset))


def _offset(cursor: str | None) -> Any:
    if cursor is None:
        return None
    try:
        value = json.loads(cursor)
    except json.JSONDecodeError:
        raise ValidationError(f"not a cursor of a Qdrant scan: {cursor[:40]!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationError(f"not a cursor of a Qdrant scan: {cursor[:40]!r}")
    return value
