"""PGVector: any PostgreSQL with the ``vector`` extension (``dsn``), or an embedded server in ``path``.

Table: ``id text primary key, text text, metadata jsonb, embedding vector(dim)``. All SQL is parameterised:
filter field names and values travel as bind parameters (``metadata -> %s``), identifiers go through
``psycopg.sql.Identifier``. Each filter atom is two-valued (``CASE``/``COALESCE``), so ``NOT`` keeps
ragstore's semantics on missing fields, and kinds never mix (``jsonb_typeof`` guards every comparison).

Indexes: ``hnsw`` (default; ``ef_search`` per query), ``ivfflat`` (``probes``), or ``none`` for exact search.
Filtered HNSW/IVF searches use pgvector's iterative index scans, so a selective filter still returns k rows
instead of "top-k then drop".
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ragstore._optional import require
from ragstore.errors import BackendUnavailableError, DimensionMismatchError
from ragstore.filters import And, Cmp, Node, Not, Or, kind
from ragstore.store import Capabilities, StoreOptions, VectorStore
from ragstore.types import Document, Hit, Metadata, Metric

from . import _pgserver

_OPS = {"cosine": ("vector_cosine_ops", "<=>"), "dot": ("vector_ip_ops", "<#>"), "l2": ("vector_l2_ops", "<->")}
_SYMBOL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def to_sql(node: Node | None) -> tuple[Any, list[Any]]:
    """Filter tree -> (``psycopg.sql`` WHERE clause with %s placeholders, parameters)."""
    from psycopg import sql

    if node is None:
        return sql.SQL("TRUE"), []
    if isinstance(node, And | Or):
        parts = [to_sql(c) for c in node.children]
        joiner = sql.SQL(" AND " if isinstance(node, And) else " OR ")
        return sql.SQL("({})").format(joiner.join(p for p, _ in parts)), [x for _, ps in parts for x in ps]
    if isinstance(node, Not):
        clause, params = to_sql(node.child)
        return sql.SQL("(NOT {})").format(clause), params
    text, params = _cmp(node)
    return sql.SQL(text), params  # fixed templates from _cmp/_eq only


def _eq(field: str, value: Any) -> tuple[str, list[Any]]:
    k = kind(value)
    if k == "bool":
        return "COALESCE(metadata -> %s = %s::jsonb, FALSE)", [field, "true" if value else "false"]
    if k == "number":
        return (
            "(CASE WHEN jsonb_typeof(metadata -> %s) = 'number' "
            "THEN (metadata ->> %s)::numeric = %s::numeric ELSE FALSE END)",
            [field, field, value],
        )
    return "COALESCE(jsonb_typeof(metadata -> %s) = 'string' AND metadata ->> %s = %s, FALSE)", [field, field, value]


def _cmp(node: Cmp) -> tuple[str, list[Any]]:
    op, value = node.op, node.value
    if op in ("$eq", "$ne"):
        clause, params = _eq(node.field, value)
        return (clause if op == "$eq" else f"(NOT {clause})"), params
    if op in ("$in", "$nin"):
        assert isinstance(value, tuple)
        parts = [_eq(node.field, v) for v in value]
        clause = "(" + " OR ".join(p for p, _ in parts) + ")"
        params = [x for _, ps in parts for x in ps]
        return (clause if op == "$in" else f"(NOT {clause})"), params
    clause = (
        "(CASE WHEN jsonb_typeof(metadata -> %s) = 'number' "
        f"THEN (metadata ->> %s)::numeric {_SYMBOL[op]} %s::numeric ELSE FALSE END)"
    )
    return clause, [node.field, node.field, value]


class PgVectorOptions(StoreOptions):
    dsn: str | None = Field(default=None, description="libpq DSN/URI of a server; None starts an embedded one")
    path: str | None = Field(default=None, description="data folder of the embedded server (when no dsn)")
    table: str = Field(default="ragstore_docs", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    index: Literal["hnsw", "ivfflat", "none"] = "hnsw"
    hnsw_m: int = Field(default=16, gt=1)
    ef_construction: int = Field(default=64, gt=0)
    ef_search: int = Field(default=100, gt=0)
    lists: int = Field(default=100, gt=0)
    probes: int = Field(default=10, gt=0)
    pool_size: int = Field(default=8, gt=0, description="connections for searches from other threads")


class PgVectorStore(VectorStore):
    name = "pgvector"
    tunable = ("ef_search", "probes")
    Options = PgVectorOptions

    def __init__(
        self,
        *,
        dsn: str | None = None,
        path: str | os.PathLike[str] | None = None,
        table: str = "ragstore_docs",
        index: Literal["hnsw", "ivfflat", "none"] = "hnsw",
        hnsw_m: int = 16,
        ef_construction: int = 64,
        ef_search: int = 100,
        lists: int = 100,
        probes: int = 10,
        pool_size: int = 8,
        metric: Metric = "cosine",
        dim: int | None = None,
        batch_size: int = 512,
    ) -> None:
        super().__init__(metric=metric, dim=dim, batch_size=batch_size)
        self.psycopg = require("psycopg", "pgvector", "psycopg")
        self.pgv = require("pgvector.psycopg", "pgvector", "pgvector")
        from psycopg import sql
        from psycopg.types.json import Jsonb

        self.sql, self.Jsonb = sql, Jsonb
        self.table, self.index = table, index
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.lists, self.probes = lists, probes
        self.pool_size = pool_size
        self.pgdata: Path | None = None
        if dsn is None:
            if path is None:
                raise BackendUnavailableError("pgvector needs a dsn (a server) or a path (embedded server data folder)")
            self.pgdata = Path(path)
            conninfo = _pgserver.acquire(self.pgdata)
        else:
            conninfo = dsn
        self._conninfo = conninfo
        self._owner = threading.get_ident()
        self._pool: Any = None  # opened when a second thread first reads
        self._pool_lock = threading.Lock()
        try:
            self.conn = self.psycopg.connect(conninfo, autocommit=True)
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            self.pgv.register_vector(self.conn)
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS ragstore_meta "
                "(tbl text PRIMARY KEY, dim int NOT NULL, metric text NOT NULL)"
            )
            row = self.conn.execute("SELECT dim, metric FROM ragstore_meta WHERE tbl = %s", (table,)).fetchone()
        except Exception as exc:
            self._release()
            raise BackendUnavailableError(f"cannot open PostgreSQL/pgvector ({self.pgdata or 'dsn'}): {exc}") from exc
        self.ident = sql.Identifier(table)
        if row is not None:
            stored_dim, stored_metric = int(row[0]), str(row[1])
            if stored_metric != metric:
                self.close()
                raise BackendUnavailableError(f"table {table!r} uses metric {stored_metric}, config says {metric}")
            if self._dim is not None and self._dim != stored_dim:
                self.close()
                raise DimensionMismatchError(stored_dim, self._dim, "configured dim")
            self._dim = stored_dim
        elif self._dim is not None:
            self._init_dim(self._dim)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(exact=self.index == "none")

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """A connection for reads: the store's own in the thread that opened it; otherwise one from a pool, since
        threads searching at once must not share a session (``set_config`` and transactions are per
        connection). Writes always use the store's connection and are serialised by the store's lock."""
        if threading.get_ident() == self._owner:
            yield self.conn
            return
        with self._pool_lock:
            if self._pool is None:
                pool_mod = require("psycopg_pool", "pgvector", "psycopg-pool")
                self._pool = pool_mod.ConnectionPool(
                    self._conninfo,
                    kwargs={"autocommit": True},
                    min_size=1,
                    max_size=self.pool_size,
                    configure=self.pgv.register_vector,
                    open=False,
                )
                try:
                    self._pool.open(wait=True, timeout=30)
                except Exception as exc:
                    self._pool = None
                    raise BackendUnavailableError(f"cannot open a PostgreSQL connection pool: {exc}") from exc
            pool = self._pool
        with pool.connection() as conn:
            yield conn

    def _q(self, template: str, *parts: Any, **named: Any) -> Any:
        """Compose a fixed SQL template with identifiers and ``to_sql`` clauses; values stay bound (%s)."""
        return self.sql.SQL(template).format(*parts, **named)

    def _init_dim(self, dim: int) -> None:
        sql = self.sql
        opclass, _ = _OPS[self.metric]
        with self.conn.transaction():
            self.conn.execute(
                self._q(
                    "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, text text NOT NULL, "
                    "metadata jsonb NOT NULL, embedding vector({}) NOT NULL)",
                    self.ident,
                    sql.Literal(dim),
                )
            )
            index_name = sql.Identifier(f"{self.table}_embedding_idx")
            if self.index == "hnsw":
                self.conn.execute(
                    self._q(
                        "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding {}) "
                        "WITH (m = {}, ef_construction = {})",
                        index_name,
                        self.ident,
                        sql.SQL(opclass),
                        sql.Literal(self.hnsw_m),
                        sql.Literal(self.ef_construction),
                    )
                )
            elif self.index == "ivfflat":
                self.conn.execute(
                    self._q(
                        "CREATE INDEX IF NOT EXISTS {} ON {} USING ivfflat (embedding {}) WITH (lists = {})",
                        index_name,
                        self.ident,
                        sql.SQL(opclass),
                        sql.Literal(self.lists),
                    )
                )
            self.conn.execute(
                "INSERT INTO ragstore_meta (tbl, dim, metric) VALUES (%s, %s, %s) ON CONFLICT (tbl) DO NOTHING",
                (self.table, dim, self.metric),
            )

    def _upsert(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Metadata]) -> None:
        query = self._q(
            "INSERT INTO {} (id, text, metadata, embedding) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
            "SET text = EXCLUDED.text, metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding",
            self.ident,
        )
        rows = [(i, t, self.Jsonb(m), v) for i, t, m, v in zip(ids, texts, metadatas, vectors, strict=True)]
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(query, rows)

    def _score(self, distance: float) -> float:
        return 1.0 - distance if self.metric == "cosine" else -distance

    def _search(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        where, params = to_sql(node)
        _, operator = _OPS[self.metric]
        query = self._q(
            "SELECT id, text, metadata, embedding {op} %s AS d FROM {table} WHERE {where} "
            "ORDER BY embedding {op} %s LIMIT %s",
            op=self.sql.SQL(operator),
            table=self.ident,
            where=where,
        )
        with self._reading() as conn, conn.transaction():
            if self.index == "hnsw":
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(max(self.ef_search, k)),))
                conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
            elif self.index == "ivfflat":
                conn.execute("SELECT set_config('ivfflat.probes', %s, true)", (str(self.probes),))
                conn.execute("SELECT set_config('ivfflat.iterative_scan', 'relaxed_order', true)")
            rows = conn.execute(query, [vector, *params, vector, k]).fetchall()
        hits = [Hit(i, self._score(float(d)), t, m) for i, t, m, d in rows]
        return sorted(hits, key=lambda h: (-h.score, h.id))

    @staticmethod
    def _doc(row: tuple[Any, ...]) -> Document:
        vec = row[3].to_numpy() if hasattr(row[3], "to_numpy") else row[3]
        return Document(id=row[0], text=row[1], metadata=row[2], vector=np.asarray(vec, dtype=np.float32))

    def _get(self, ids: list[str]) -> list[Document]:
        query = self._q("SELECT id, text, metadata, embedding FROM {} WHERE id = ANY(%s)", self.ident)
        with self._reading() as conn:
            return [self._doc(r) for r in conn.execute(query, (ids,)).fetchall()]

    def _get_where(self, node: Node | None, limit: int | None) -> list[Document]:
        where, params = to_sql(node)
        template = "SELECT id, text, metadata, embedding FROM {} WHERE {} ORDER BY id"
        if limit is not None:
            template += " LIMIT %s"
            params = [*params, limit]
        with self._reading() as conn:
            return [self._doc(r) for r in conn.execute(self._q(template, self.ident, where), params).fetchall()]

    def _delete_ids(self, ids: list[str]) -> int:
        cur = self.conn.execute(self._q("DELETE FROM {} WHERE id = ANY(%s)", self.ident), (ids,))
        return int(cur.rowcount)

    def _delete_where(self, node: Node) -> int:
        where, params = to_sql(node)
        return int(self.conn.execute(self._q("DELETE FROM {} WHERE {}", self.ident, where), params).rowcount)

    def _count(self, node: Node | None) -> int:
        where, params = to_sql(node)
        query = self._q("SELECT count(*) FROM {} WHERE {}", self.ident, where)
        with self._reading() as conn:
            row = conn.execute(query, params).fetchone()
        return int(row[0]) if row else 0

    def _clear(self) -> None:
        self.conn.execute(self._q("TRUNCATE {}", self.ident))

    def _drop(self) -> None:
        with self.conn.transaction():
            self.conn.execute(self._q("DROP TABLE IF EXISTS {}", self.ident))
            self.conn.execute("DELETE FROM ragstore_meta WHERE tbl = %s", (self.table,))

    def _release(self) -> None:
        if self.pgdata is not None:
            _pgserver.release(self.pgdata)
            self.pgdata = None

    def _close(self) -> None:
        try:
            if self._pool is not None:
                self._pool.close()
            self.conn.close()
        finally:
            self._release()

    def storage_bytes(self) -> int | None:
        """The table with its indexes and TOAST data (not the whole server's data folder)."""
        if self._dim is None:
            return 0
        with self._reading() as conn:
            row = conn.execute("SELECT pg_total_relation_size(quote_ident(%s)::regclass)", (self.table,)).fetchone()
        return int(row[0]) if row else None

    def describe(self) -> dict[str, Any]:
        return {"table": self.table, "index": self.index, "embedded": self.pgdata is not None}
