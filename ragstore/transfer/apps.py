"""Collections that LangChain and LlamaIndex apps made, read as copy sources (never written).

- Chroma: any collection (LangChain's default ``langchain``, LlamaIndex's ``ChromaVectorStore``): ids,
  ``documents``, ``metadatas``, embeddings; the metric from the collection's ``hnsw`` space (Chroma's
  default, and so LangChain's, is ``l2``).
- PostgreSQL: LangChain's ``langchain_pg_embedding`` rows of one ``langchain_pg_collection`` (langchain-postgres
  and the older langchain-community layout), or LlamaIndex's ``PGVectorStore`` table ``data_<table_name>``
  (``node_id`` is the id). Table and schema names go through ``psycopg.sql.Identifier``, values through
  parameters: no SQL is built from user strings.
- Qdrant: a collection of LangChain's ``QdrantVectorStore`` (``page_content`` + ``metadata`` payload) or
  LlamaIndex's (``_node_content`` payload); the point id is the id.

LlamaIndex keeps each node as JSON in ``_node_content``; it is kept as metadata, so ragstore's LlamaIndex
store gives the same nodes back. Nested metadata becomes JSON text and null values are left out (named in
``notes``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..errors import BackendUnavailableError, TransferError
from ..stores.base import SCAN_END, ScanPage
from ..types import Document, Hit
from .sources import Source, plain_metadata

APPS = ("langchain", "llamaindex")


def _score(metric: str, distance: float) -> float:
    """An engine distance as ragstore's higher-is-better score."""
    if metric == "l2":
        return -float(np.sqrt(max(distance, 0.0)))
    return 1.0 - float(distance)


class _Foreign(Source):
    def __init__(self, app: str) -> None:
        super().__init__()
        if app not in APPS:
            raise TransferError(f"app must be one of {APPS}, got {app!r}")
        self.app = app
        self._notes: set[str] = set()

    def _doc(self, doc_id: Any, text: Any, meta: Any, vector: Any) -> Document:
        ident = str(doc_id)
        if vector is None:
            raise TransferError(
                f"{self.label}: document {ident!r} has no vector (nothing to copy without re-embedding)"
            )
        out = Document(
            text="" if text is None else str(text),
            id=ident,
            metadata=plain_metadata(meta if isinstance(meta, dict) else {}, ident, self._notes),
            vector=np.asarray(vector, dtype=np.float32),
        )
        return out

    def _flush_notes(self) -> None:
        for note in sorted(self._notes):
            if note not in self.notes:
                self.notes.append(note)


# ----------------------------------------------------------------------------- Chroma
class ChromaAppSource(_Foreign):
    """A Chroma collection another app wrote (embedded folder or server)."""

    kind = "chroma-app"
    exact = False  # Chroma searches HNSW

    def __init__(
        self,
        *,
        collection: str = "langchain",
        path: str | None = None,
        host: str | None = None,
        port: int = 8000,
        app: str = "langchain",
    ) -> None:
        super().__init__(app)
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        chromadb = require("chromadb", "chroma", "Chroma (chromadb)")
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        if path is not None:
            if not Path(path).is_dir():
                raise TransferError(f"no Chroma folder at {path}")
            self.client = chromadb.PersistentClient(path=str(path), settings=settings)
            where = os.path.realpath(path)
        elif host is not None:
            self.client = chromadb.HttpClient(host=host, port=port, settings=settings)
            where = f"{host}:{port}"
        else:
            raise TransferError("a Chroma app source needs path= (an embedded folder) or host=")
        names = [c.name if hasattr(c, "name") else str(c) for c in self.client.list_collections()]
        if collection not in names:
            raise TransferError(f"Chroma at {where} has no collection {collection!r} (it has {sorted(names)})")
        self.col = self.client.get_collection(collection, embedding_function=None)
        space = ((getattr(self.col, "configuration", None) or {}).get("hnsw") or {}).get("space")
        space = space or (self.col.metadata or {}).get("hnsw:space") or "l2"
        self.metric = {"ip": "dot"}.get(space, space)
        first = self.col.get(limit=1, include=["embeddings"])
        embeddings = first.get("embeddings")
        self.dim = len(embeddings[0]) if embeddings is not None and len(embeddings) else None
        self.location = f"chroma-app|{where}|{collection}"
        self.label = f"{app} chroma {collection!r} at {where}"

    def count(self) -> int:
        return int(self.col.count())

    def scan(self, batch_size: int, cursor: str | None = None) -> Iterator[ScanPage]:
        if cursor == SCAN_END:
            return
        ids = sorted(self.col.get(include=[])["ids"])
        start = 0 if cursor is None else next((n for n, i in enumerate(ids) if i > cursor), len(ids))
        for s in range(start, len(ids), batch_size):
            chunk = ids[s : s + batch_size]
            res = self.col.get(ids=chunk, include=["documents", "metadatas", "embeddings"])
            docs = {
                i: self._doc(i, t, m, v)
                for i, t, m, v in zip(res["ids"], res["documents"], res["metadatas"], res["embeddings"], strict=True)
            }
            self._flush_notes()
            yield ScanPage([docs[i] for i in chunk if i in docs], chunk[-1])

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        res = self.col.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        return [
            Hit(str(i), _score(self.metric, d), t or "", plain_metadata(m or {}, str(i), set()), self.metric)
            for i, d, t, m in zip(
                res["ids"][0], res["distances"][0], res["documents"][0], res["metadatas"][0], strict=True
            )
        ]


# ----------------------------------------------------------------------------- PostgreSQL
class PgAppSource(_Foreign):
    """LangChain's or LlamaIndex's pgvector tables, on a server (``dsn``) or an embedded data folder (``path``)."""

    kind = "pgvector-app"

    def __init__(
        self,
        *,
        app: str = "langchain",
        dsn: str | None = None,
        path: str | None = None,
        collection: str | None = None,
        table: str | None = None,
        schema: str = "public",
        metric: str = "cosine",
    ) -> None:
        super().__init__(app)
        psycopg = require("psycopg", "pgvector", "PostgreSQL (psycopg)")
        from pgvector.psycopg import register_vector
        from psycopg import sql

        self.sql = sql
        self._pgdata: Path | None = None
        if metric not in ("cosine", "dot", "l2"):
            raise TransferError(f"metric must be cosine, dot or l2, got {metric!r}")
        self.metric = metric
        if path is not None:
            from ..adapters import _pgserver

            self._pgdata = Path(path)
            if not (self._pgdata / "PG_VERSION").is_file():
                raise TransferError(f"no PostgreSQL data folder at {path}")
            dsn = _pgserver.acquire(self._pgdata)
            where = os.path.realpath(path)
        elif dsn is not None:
            from ..secrets import redact

            where = redact(dsn)
        else:
            raise TransferError("a PostgreSQL app source needs dsn= or path= (an embedded data folder)")
        try:
            self.conn = psycopg.connect(dsn, autocommit=True)
            register_vector(self.conn)
        except Exception as exc:
            self._release()
            raise BackendUnavailableError(f"cannot connect to PostgreSQL at {where}: {exc}") from exc
        if app == "langchain":
            name = collection or "langchain"
            row = self.conn.execute("SELECT uuid FROM langchain_pg_collection WHERE name = %s", (name,)).fetchone()
            if row is None:
                names = [r[0] for r in self.conn.execute("SELECT name FROM langchain_pg_collection").fetchall()]
                raise TransferError(f"no LangChain collection {name!r} at {where} (there are {sorted(names)})")
            self._filter = sql.SQL("collection_id = %s")
            self._args: tuple[Any, ...] = (row[0],)
            self.table = sql.Identifier(schema, "langchain_pg_embedding")
            self._key, self._id, self._text, self._meta = "id", "id", "document", "cmetadata"
            label = f"collection {name!r}"
        else:
            if not table:
                raise TransferError("a LlamaIndex PGVectorStore source needs table= (its table_name)")
            real = f"data_{table}".lower() if not table.lower().startswith("data_") else table.lower()
            self._filter, self._args = sql.SQL("TRUE"), ()
            self.table = sql.Identifier(schema, real)
            self._key, self._id, self._text, self._meta = "id", "node_id", "text", "metadata_"
            label = f"table {schema}.{real}"
        try:
            first = self._select((1,))
        except Exception as exc:
            raise TransferError(f"cannot read the {app} {label} at {where}: {type(exc).__name__}: {exc}") from None
        self.dim = len(first[0][4]) if first else None
        self.exact = not self._has_ann_index(schema)
        self.location = f"pgvector-app|{where}|{app}|{label}"
        self.label = f"{app} pgvector {label}"

    def _has_ann_index(self, schema: str) -> bool:
        table = self.table.as_string(self.conn).split(".")[-1].strip('"')
        rows = self.conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s", (schema, table)
        ).fetchall()
        return any(" hnsw " in r[0].lower() or " ivfflat " in r[0].lower() for r in rows)

    def _select(self, args: tuple[Any, ...], extra: Any = None) -> list[Any]:
        s = self.sql
        cond = self._filter if extra is None else s.SQL("{} AND {}").format(self._filter, extra)
        query = s.SQL("SELECT {}, {}, {}, {}, embedding FROM {} WHERE {} ORDER BY {} LIMIT %s").format(
            s.Identifier(self._key),
            s.Identifier(self._id),
            s.Identifier(self._text),
            s.Identifier(self._meta),
            self.table,
            cond,
            s.Identifier(self._key),
        )
        return list(self.conn.execute(query, (*self._args, *args)).fetchall())

    def _row(self, row: Any) -> Document:
        _, doc_id, text, meta, vec = row
        if isinstance(meta, str):
            meta = json.loads(meta)
        vec = vec.to_numpy() if hasattr(vec, "to_numpy") else vec
        return self._doc(doc_id, text, meta, vec)

    def count(self) -> int:
        query = self.sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.table, self._filter)
        return int(self.conn.execute(query, self._args).fetchone()[0])

    def scan(self, batch_size: int, cursor: str | None = None) -> Iterator[ScanPage]:
        if cursor == SCAN_END:
            return
        key: Any = None if cursor is None else (cursor if self.app == "langchain" else int(cursor))
        after = self.sql.SQL("{} > %s").format(self.sql.Identifier(self._key))
        while True:
            rows = self._select((batch_size,)) if key is None else self._select((key, batch_size), after)
            if not rows:
                return
            key = rows[-1][0]
            docs = [self._row(r) for r in rows]
            self._flush_notes()
            yield ScanPage(docs, str(key))

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        s = self.sql
        op = {"cosine": "<=>", "l2": "<->", "dot": "<#>"}[self.metric]
        query = s.SQL("SELECT {}, {}, {}, embedding {} %s FROM {} WHERE {} ORDER BY 4 LIMIT %s").format(
            s.Identifier(self._id),
            s.Identifier(self._text),
            s.Identifier(self._meta),
            s.SQL(op),  # one of three fixed operators, never user text
            self.table,
            self._filter,
        )
        rows = self.conn.execute(query, (np.asarray(vector, dtype=np.float32), *self._args, k)).fetchall()
        out = []
        for doc_id, text, meta, dist in rows:
            meta = json.loads(meta) if isinstance(meta, str) else meta
            score = {"dot": -float(dist), "l2": -float(dist)}.get(self.metric, 1.0 - float(dist))
            out.append(Hit(str(doc_id), score, text or "", plain_metadata(meta or {}, str(doc_id), set()), self.metric))
        return out

    def _release(self) -> None:
        if self._pgdata is not None:
            from ..adapters import _pgserver

            _pgserver.release(self._pgdata)
            self._pgdata = None

    def close(self) -> None:
        try:
            conn = getattr(self, "conn", None)
            if conn is not None:
                conn.close()
        finally:
            self._release()


# ----------------------------------------------------------------------------- Qdrant
class QdrantAppSource(_Foreign):
    """A Qdrant collection of LangChain's ``QdrantVectorStore`` or LlamaIndex's ``QdrantVectorStore``."""

    kind = "qdrant-app"

    def __init__(
        self,
        *,
        collection: str,
        path: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        app: str = "langchain",
        vector_name: str = "",
    ) -> None:
        super().__init__(app)
        qdrant = require("qdrant_client", "qdrant", "Qdrant (qdrant-client)")
        if path is not None:
            if not Path(path).is_dir():
                raise TransferError(f"no Qdrant folder at {path}")
            self.client = qdrant.QdrantClient(path=str(path))
            where = os.path.realpath(path)
        elif url is not None:
            self.client = qdrant.QdrantClient(url=url, api_key=api_key)
            where = url
        else:
            raise TransferError("a Qdrant app source needs path= or url=")
        if not self.client.collection_exists(collection):
            raise TransferError(f"Qdrant at {where} has no collection {collection!r}")
        self.collection = collection
        params = self.client.get_collection(collection).config.params.vectors
        if isinstance(params, dict):
            if vector_name not in params:
                raise TransferError(f"{collection!r} has vectors {sorted(params)}: name one with vector_name=")
            params = params[vector_name]
        self.vector_name = vector_name
        self.dim = int(params.size)
        distance = str(getattr(params.distance, "value", params.distance)).lower()
        self.metric = {"cosine": "cosine", "dot": "dot", "euclid": "l2"}.get(distance, "")
        if not self.metric:
            raise TransferError(f"{collection!r} uses distance {distance!r}, which ragstore does not store")
        self.exact = path is not None  # local mode searches exactly
        self.location = f"qdrant-app|{where}|{collection}"
        self.label = f"{app} qdrant {collection!r}"

    def _vector(self, point: Any) -> Any:
        vec = point.vector
        return vec.get(self.vector_name) if isinstance(vec, dict) else vec

    def _raw(self, point: Any) -> tuple[str, dict[str, Any]]:
        payload = dict(point.payload or {})
        if self.app == "langchain":
            text = payload.pop("page_content", "")
            meta = payload.pop("metadata", None) or {}
            return text or "", ({**payload, **meta} if isinstance(meta, dict) else payload)
        return json.loads(payload.get("_node_content") or "{}").get("text", "") or "", payload

    def _point(self, point: Any) -> Document:
        text, meta = self._raw(point)
        return self._doc(point.id, text, meta, self._vector(point))

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def scan(self, batch_size: int, cursor: str | None = None) -> Iterator[ScanPage]:
        if cursor == SCAN_END:
            return
        offset = None if cursor is None else json.loads(cursor)
        while True:
            points, offset = self.client.scroll(
                self.collection, limit=batch_size, offset=offset, with_payload=True, with_vectors=True
            )
            docs = [self._point(p) for p in points]
            self._flush_notes()
            after = offset if offset is None or isinstance(offset, int | str) else str(offset)
            yield ScanPage(docs, SCAN_END if after is None else json.dumps(after))
            if offset is None:
                return

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        res = self.client.query_points(
            self.collection,
            query=np.asarray(vector, dtype=np.float32).tolist(),
            using=self.vector_name or None,
            limit=k,
            with_payload=True,
        ).points
        out = []
        for p in res:
            text, meta = self._raw(p)
            score = -float(p.score) if self.metric == "l2" else float(p.score)
            out.append(Hit(str(p.id), score, text, plain_metadata(meta, str(p.id), set()), self.metric))
        return out

    def close(self) -> None:
        self.client.close()


def open_app_source(kind: str, options: dict[str, Any]) -> Source:
    """``langchain-chroma``, ``llamaindex-pgvector``, ... with the block's options."""
    app, _, engine = kind.partition("-")
    classes: dict[str, type[_Foreign]] = {"chroma": ChromaAppSource, "pgvector": PgAppSource, "qdrant": QdrantAppSource}
    if app not in APPS or engine not in classes:
        known = [f"{a}-{e}" for a in APPS for e in classes]
        raise TransferError(f"unknown app source {kind!r}; one of {known}")
    try:
        return classes[engine](app=app, **options)
    except TypeError as exc:
        raise TransferError(f"{kind}: {exc}") from None
