"""PGVector: any PostgreSQL with the ``vector`` extension (``dsn``), or an embedded server in ``path``.

Table: ``id text primary key, text text, metadata jsonb, embedding vector(dim)``. All SQL is parameterised:
filter field names and values travel as bind parameters (``metadata -> %s``), identifiers go through
``psycopg.sql.Identifier``. Each filter atom is two-valued (``CASE``/``COALESCE``), so ``NOT`` keeps
ragstore's semantics on missing fields, and kinds never mix (``jsonb_typeof`` guards every comparison).

Indexes: ``hnsw`` (default; ``ef_search`` per query), ``ivfflat`` (``probes``), or ``none`` for exact search.
``quantize: halfvec | binary`` indexes an expression instead of the float column (``embedding::halfvec``,
half the size; ``binary_quantize(embedding)::bit``, 1/32, Hamming distance): the index yields
``k * rescore`` candidates and the full-precision column re-scores them, so scores keep their meaning.
Filtered HNSW/IVF searches use pgvector's iterative index scans, so a selective filter still returns k rows
instead of "top-k then drop".

The lexical leg lives inside PostgreSQL (``lexical: true``): ragstore's analyzer turns each text into terms,
which go to ``<table>_terms (term, id, tf)`` (a foreign key to the table, ``ON DELETE CASCADE``) and the
document's length to the table's ``lex_len`` column, in the same transaction as the vector. Statement-level
triggers keep one statistics row (documents, total length) in ``ragstore_lexical`` exact under every write
path, deletes by filter and ``TRUNCATE`` included. BM25 is computed in SQL at query time -- the same
Lucene formula as the sidecar index, so the ranking is the reference's -- and every process and app server in
front of the database shares one index with nothing on the app's disk.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ragstore._optional import require
from ragstore.errors import BackendUnavailableError, ConfigError, ValidationError
from ragstore.query.filters import RANGE_SYMBOL, FilterCompiler, Node, kind
from ragstore.query.indexed import KIND_OF, fields_in, not_indexable
from ragstore.query.namespaces import NS_FIELD
from ragstore.stores.base import Capabilities, StoreOptions, VectorStore
from ragstore.types import Document, Hit, Metadata

from . import _pgserver

_CREATE_LOCK = 0x7261_6773_746F_7265  # "ragstore": the advisory lock key held while creating anything
_MAX_EF_SEARCH = 1000  # hnsw.ef_search's upper bound in pgvector
_OPS = {"cosine": ("vector_cosine_ops", "<=>"), "dot": ("vector_ip_ops", "<#>"), "l2": ("vector_l2_ops", "<->")}
_HALF_OPS = {"cosine": "halfvec_cosine_ops", "dot": "halfvec_ip_ops", "l2": "halfvec_l2_ops"}


class _PgFilter(FilterCompiler[tuple[Any, list[Any]]]):
    """SQL over ``jsonb``: fixed templates with bound parameters only; each atom two-valued (``CASE`` /
    ``COALESCE``) and guarded by ``jsonb_typeof`` so kinds never mix."""

    def __init__(self, declared: dict[str, str] | None = None) -> None:
        from psycopg import sql

        self.sql = sql
        #: declared fields: a CHECK constraint holds their JSON type and a B-tree indexes their value, so
        #: their atoms test presence (``?``) and the indexed expression, nothing else (see _declared_atom)
        self.declared = declared or {}

    def _declared_atom(self, field: str, value: Any, test: str, param: Any) -> tuple[Any, list[Any]] | None:
        """``metadata ? f AND <indexed expression> <test>``: two-valued (FALSE when the field is missing) and
        the same expression as the field's index, so the planner can use it; None when not declared."""
        ftype = self.declared.get(field)
        if ftype is None:
            return None
        if kind(value) != KIND_OF[ftype]:
            return self.sql.SQL("FALSE"), []  # a declared field holds no value of another kind
        expr = _field_expr(self.sql, field, ftype)
        return self.sql.SQL("(metadata ? {} AND {} " + test + ")").format(self.sql.Literal(field), expr), [param]

    def _join(self, joiner: str, parts: list[tuple[Any, list[Any]]]) -> tuple[Any, list[Any]]:
        clause = self.sql.SQL("({})").format(self.sql.SQL(joiner).join(p for p, _ in parts))
        return clause, [x for _, ps in parts for x in ps]

    def all_of(self, parts: list[tuple[Any, list[Any]]]) -> tuple[Any, list[Any]]:
        return self._join(" AND ", parts)

    def any_of(self, parts: list[tuple[Any, list[Any]]]) -> tuple[Any, list[Any]]:
        return self._join(" OR ", parts)

    def negate(self, part: tuple[Any, list[Any]], node: Node) -> tuple[Any, list[Any]]:
        return self.sql.SQL("(NOT {})").format(part[0]), part[1]

    def eq(self, field: str, value: Any) -> tuple[Any, list[Any]]:
        if field == NS_FIELD:  # a namespaced table's own column (generated from the row, B-tree indexed)
            return self.sql.SQL("(ns = %s)"), [value]
        fast = self._declared_atom(field, value, "= %s", _param(value))
        if fast is not None:
            return fast
        k = kind(value)
        if k == "bool":
            text, params = "COALESCE(metadata -> %s = %s::jsonb, FALSE)", [field, "true" if value else "false"]
        elif k == "number":
            text = (
                "(CASE WHEN jsonb_typeof(metadata -> %s) = 'number' "
                "THEN (metadata ->> %s)::numeric = %s::numeric ELSE FALSE END)"
            )
            params = [field, field, value]
        else:
            text = "COALESCE(jsonb_typeof(metadata -> %s) = 'string' AND metadata ->> %s = %s, FALSE)"
            params = [field, field, value]
        return self.sql.SQL(text), params  # fixed templates only; values are bound

    def is_in(self, field: str, values: tuple[Any, ...]) -> tuple[Any, list[Any]]:
        fast = self._declared_atom(field, values[0], "= ANY(%s)", [_param(v) for v in values])
        return fast if fast is not None else super().is_in(field, values)

    def range(self, field: str, op: str, value: Any) -> tuple[Any, list[Any]]:
        if self.declared.get(field) in ("keyword", "datetime", "bool"):
            return self.sql.SQL("FALSE"), []  # only numbers compare
        fast = self._declared_atom(field, value, f"{RANGE_SYMBOL[op]} %s", float(value))
        if fast is not None:
            return fast
        text = (
            "(CASE WHEN jsonb_typeof(metadata -> %s) = 'number' "
            f"THEN (metadata ->> %s)::numeric {RANGE_SYMBOL[op]} %s::numeric ELSE FALSE END)"
        )
        return self.sql.SQL(text), [field, field, value]


def _analyse(texts: list[str]) -> list[Counter[str]]:
    """Term frequencies of each text by ragstore's analyzer (the engine never tokenises: one meaning everywhere)."""
    from ragstore.lexical.analyzer import default_analyzer

    analyzer = default_analyzer()
    return [Counter(analyzer.terms(t)) for t in texts]


@functools.cache
def _compiler() -> _PgFilter:
    return _PgFilter()  # built on first use: psycopg is imported only when pgvector is


#: batches from this size are written with binary COPY through a staging table
_COPY_AT = 1000
#: a declared type's JSON type (its CHECK constraint) and the cast of ``metadata ->> f`` its index holds
_JSON_TYPE = {"keyword": "string", "datetime": "string", "integer": "number", "float": "number", "bool": "boolean"}
_CAST = {"keyword": "", "datetime": "", "integer": "::float8", "float": "::float8", "bool": "::boolean"}


def _field_expr(sql: Any, field: str, ftype: str) -> Any:
    """The indexed expression of a declared field (a literal key: the planner matches it to the index)."""
    return sql.SQL("((metadata ->> {}){})").format(sql.Literal(field), sql.SQL(_CAST[ftype]))


def _param(value: Any) -> Any:
    return float(value) if kind(value) == "number" else value


def to_sql(node: Node | None, declared: dict[str, str] | None = None) -> tuple[Any, list[Any]]:
    """Filter tree -> (``psycopg.sql`` WHERE clause with %s placeholders, parameters)."""
    compiler = _PgFilter(declared) if declared else _compiler()
    return (compiler.sql.SQL("TRUE"), []) if node is None else compiler.compile(node)


class PgVectorOptions(StoreOptions):
    remote_keys = ("dsn",)
    name_key = "table"
    shared_path = True  # the embedded server in `path` holds any number of tables

    dsn: str | None = Field(default=None, description="libpq DSN/URI of a server; None starts an embedded one")
    path: str | None = Field(default=None, description="data folder of the embedded server (when no dsn)")
    table: str = Field(default="ragstore_docs", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    index: Literal["hnsw", "ivfflat", "none"] = "hnsw"
    hnsw_m: int = Field(default=16, gt=1)
    ef_construction: int = Field(default=64, gt=0)
    ef_search: int = Field(default=100, gt=0)
    lists: int = Field(default=100, gt=0)
    probes: int = Field(default=10, gt=0)
    quantize: Literal["none", "halfvec", "binary"] = Field(
        default="none", description="index half-precision or binary codes; fixed when the table is created"
    )
    rescore: int = Field(default=10, gt=0, description="quantize: k * rescore candidates re-scored exactly")
    pool_size: int = Field(default=8, gt=0, description="connections for searches from other threads")


_LEX_STATS = """
CREATE TABLE IF NOT EXISTS ragstore_lexical (
    tbl text PRIMARY KEY, docs bigint NOT NULL, length bigint NOT NULL, analyzer text NOT NULL
)"""
# one function for every table: the trigger's table name keys the statistics row; unreferenced transition
# tables are never touched because PL/pgSQL plans each statement when it first runs it
_LEX_FUNCTION = """
CREATE OR REPLACE FUNCTION ragstore_lexical_stats() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE d bigint := 0; l bigint := 0;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE ragstore_lexical SET docs = 0, length = 0 WHERE tbl = TG_TABLE_NAME;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*), COALESCE(sum(lex_len), 0) INTO d, l FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT -count(*), -COALESCE(sum(lex_len), 0) INTO d, l FROM old_rows;
    ELSE
        SELECT COALESCE(sum(lex_len), 0) INTO l FROM new_rows;
        l := l - (SELECT COALESCE(sum(lex_len), 0) FROM old_rows);
    END IF;
    IF d <> 0 OR l <> 0 THEN
        UPDATE ragstore_lexical SET docs = docs + d, length = length + l WHERE tbl = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$fn$"""
_LEX_TRIGGERS = (
    ("ragstore_lex_ins", "INSERT", "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"),
    ("ragstore_lex_upd", "UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"),
    ("ragstore_lex_del", "DELETE", "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"),
    ("ragstore_lex_trunc", "TRUNCATE", "FOR EACH STATEMENT"),
)


def _terms_table(table: str) -> str:
    """``<table>_terms``, shortened with a hash where it would pass PostgreSQL's 63-byte identifiers."""
    name = f"{table}_terms"
    if len(name) <= 63:
        return name
    return f"{table[:46]}_{hashlib.sha1(table.encode()).hexdigest()[:10]}_terms"


class PgVectorStore(VectorStore):
    name = "pgvector"
    tunable = ("ef_search", "probes", "rescore", "exact_filter_limit")
    Options = PgVectorOptions
    native_lexical = "postings and statistics tables in PostgreSQL, BM25 scored in SQL (exact)"

    options: PgVectorOptions

    def _connect(self) -> None:
        self.psycopg = require("psycopg", "pgvector", "psycopg")
        self.pgv = require("pgvector.psycopg", "pgvector", "pgvector")
        from psycopg import sql
        from psycopg.types.json import Jsonb

        opts = self.options
        self.sql, self.Jsonb = sql, Jsonb
        self.table = opts.table
        self.ident = sql.Identifier(opts.table)
        self.terms_ident = sql.Identifier(_terms_table(opts.table))
        self._lex_on = False  # this process has seen the lexical leg built (writers then always write terms)
        self.pgdata: Path | None = None
        if opts.dsn is None:
            if opts.path is None:
                raise BackendUnavailableError("pgvector needs a dsn (a server) or a path (embedded server data folder)")
            self.pgdata = Path(opts.path)
            conninfo = _pgserver.acquire(self.pgdata)
        else:
            conninfo = opts.dsn
        self._conninfo = conninfo
        self._owner = threading.get_ident()
        self._pool: Any = None  # opened when a second thread first reads
        self._pool_lock = threading.Lock()
        try:
            self.conn = self.psycopg.connect(conninfo, autocommit=True)
            # IF NOT EXISTS is not safe under races (two first opens: "duplicate key ... pg_extension_name_index"
            # or "... typname"): one transaction-scoped advisory lock serialises every creation ragstore does
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
                self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS ragstore_meta "
                    "(tbl text PRIMARY KEY, dim int NOT NULL, metric text NOT NULL)"
                )
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS ragstore_manifest (tbl text PRIMARY KEY, body text NOT NULL)"
                )
                self.conn.execute(_LEX_STATS)
            self.pgv.register_vector(self.conn)
        except Exception as exc:
            where = f"embedded server in {self.pgdata}" if self.pgdata is not None else "dsn"
            self._release()
            raise BackendUnavailableError(f"cannot open PostgreSQL/pgvector ({where}): {exc}") from exc

    indexes_fields = True  # a CHECK constraint and a B-tree expression index per declared field
    checks_stored_types = True

    def _where(self, node: Node | None) -> tuple[Any, list[Any]]:
        return to_sql(node, dict(self.declared))

    def _field_names(self, field: str) -> tuple[str, str]:
        """(constraint, index) names of a declared field: short, fixed, whatever the field is called."""
        tag = hashlib.sha256(field.encode()).hexdigest()[:10]
        return f"{self.table[:40]}_f{tag}_type", f"{self.table[:40]}_f{tag}_idx"

    def _declare_indexed(self) -> None:
        sql = self.sql
        for field, ftype in self.declared.items():
            if field == NS_FIELD:  # its own column (``_init_dim``)
                continue
            check_name, index_name = self._field_names(field)
            check, index = sql.Identifier(check_name), sql.Identifier(index_name)
            jtype, key = _JSON_TYPE[ftype], sql.Literal(field)
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
                found = self.conn.execute(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = to_regclass(%s) AND conname = %s",
                    (self.table, check_name),
                ).fetchone()
                if found is not None and f"'{jtype}'" not in found[0]:
                    raise ConfigError(f"indexed field {field!r} is declared with another type in this table")
                if found is None:
                    bad = self.conn.execute(
                        self._q(
                            "SELECT id, metadata -> {} FROM {} "
                            "WHERE metadata ? {} AND jsonb_typeof(metadata -> {}) <> {} LIMIT 1",
                            key,
                            self.ident,
                            key,
                            key,
                            sql.Literal(jtype),
                        )
                    ).fetchone()
                    if bad is not None:
                        raise not_indexable(field, ftype, bad[0], bad[1])
                    # PostgreSQL holds every writer to the type, whatever its config says
                    self.conn.execute(
                        self._q(
                            "ALTER TABLE {} ADD CONSTRAINT {} "
                            "CHECK (NOT (metadata ? {}) OR jsonb_typeof(metadata -> {}) = {})",
                            self.ident,
                            check,
                            key,
                            key,
                            sql.Literal(jtype),
                        )
                    )
                self.conn.execute(
                    self._q(
                        "CREATE INDEX IF NOT EXISTS {} ON {} ({})", index, self.ident, _field_expr(sql, field, ftype)
                    )
                )

    def _prefilter(self, node: Node | None) -> int | None:
        """How many documents match (counted up to ``exact_filter_limit`` + 1 through the fields' B-trees)
        when every field the filter names is declared and the table has an ANN index; else None."""
        declared = self.declared
        if node is None or self.options.index == "none" or not fields_in(node) <= declared.keys():
            return None
        where, params = self._where(node)
        query = self._q("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} LIMIT %s) AS m", self.ident, where)
        with self._reading() as conn:
            row = conn.execute(query, [*params, self.options.exact_filter_limit + 1]).fetchone()
        return int(row[0]) if row else 0

    def _plan(self, node: Node | None, k: int) -> dict[str, Any]:
        if node is None:
            return {"strategy": "exact" if self.options.index == "none" else "ann", "detail": "no filter"}
        if self.options.index == "none":
            return {"strategy": "exact", "detail": "no ANN index: exact scores over the matching rows"}
        matching = self._prefilter(node)
        if matching is None:
            detail = "filter on undeclared fields: the ANN index walked with the filter (iterative scan)"
            return {"strategy": "filtered_ann", "detail": detail}
        limit = self.options.exact_filter_limit
        strategy = self.choose_plan(matching, exact=False)
        detail = {
            "prefilter": f"the {matching} matching rows read through the fields' B-tree indexes, scored exactly",
            "filtered_ann": f"over {limit} rows match: the ANN index walked with the filter (iterative scan)",
        }[strategy]
        return {"strategy": strategy, "detail": detail, "matching": matching if matching <= limit else f">{limit}"}

    def _stored(self) -> tuple[int, str | None] | None:
        row = self.conn.execute("SELECT dim, metric FROM ragstore_meta WHERE tbl = %s", (self.table,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def _capabilities(self) -> Capabilities:
        return Capabilities(exact=self.options.index == "none")

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
                    max_size=self.options.pool_size,
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
        sql, opts = self.sql, self.options
        opclass, _ = _OPS[self.metric]
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
            self.conn.execute(
                self._q(
                    "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, text text NOT NULL, "
                    "metadata jsonb NOT NULL, embedding vector({}) NOT NULL{})",
                    self.ident,
                    sql.Literal(dim),
                    # the namespace as a column of its own, written by PostgreSQL from the row: no write path
                    # can leave it out, and every query of a tenant names it (``ns = $1``, B-tree indexed)
                    sql.SQL(", ns text GENERATED ALWAYS AS (metadata ->> '__ns') STORED NOT NULL")
                    if self.options.namespaces
                    else sql.SQL(""),
                )
            )
            if self.options.namespaces:
                self.conn.execute(
                    self._q(
                        "CREATE INDEX IF NOT EXISTS {} ON {} (ns)",
                        sql.Identifier(f"{self.table[:50]}_ns_idx"),
                        self.ident,
                    )
                )
            index_name = sql.Identifier(f"{self.table}_embedding_idx")
            key, _, _ = self._index_key(dim)
            if opts.quantize == "halfvec":
                opclass = _HALF_OPS[self.metric]
            elif opts.quantize == "binary":
                opclass = "bit_hamming_ops"
            if opts.index == "hnsw":
                self.conn.execute(
                    self._q(
                        "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} {}) WITH (m = {}, ef_construction = {})",
                        index_name,
                        self.ident,
                        key,
                        sql.SQL(opclass),
                        sql.Literal(opts.hnsw_m),
                        sql.Literal(opts.ef_construction),
                    )
                )
            elif opts.index == "ivfflat":
                self.conn.execute(
                    self._q(
                        "CREATE INDEX IF NOT EXISTS {} ON {} USING ivfflat ({} {}) WITH (lists = {})",
                        index_name,
                        self.ident,
                        key,
                        sql.SQL(opclass),
                        sql.Literal(opts.lists),
                    )
                )
            self.conn.execute(
                "INSERT INTO ragstore_meta (tbl, dim, metric) VALUES (%s, %s, %s) ON CONFLICT (tbl) DO NOTHING",
                (self.table, dim, self.metric),
            )

    def _upsert(self, ids: list[str], vectors: np.ndarray, texts: list[str], metadatas: list[Metadata]) -> None:
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                if not self._lexical_here(cur):  # a leg built by any process is kept, whatever this block says
                    if len(ids) >= _COPY_AT:
                        self._copy_rows(cur, ids, texts, metadatas, vectors)
                        return
                    query = self._q(
                        "INSERT INTO {} (id, text, metadata, embedding) VALUES (%s, %s, %s, %s) ON CONFLICT (id) "
                        "DO UPDATE SET text = EXCLUDED.text, metadata = EXCLUDED.metadata, "
                        "embedding = EXCLUDED.embedding",
                        self.ident,
                    )
                    rows = [(i, t, self.Jsonb(m), v) for i, t, m, v in zip(ids, texts, metadatas, vectors, strict=True)]
                    cur.executemany(query, rows)
                    return
                counts = _analyse(texts)
                query = self._q(
                    "INSERT INTO {} (id, text, metadata, embedding, lex_len) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, metadata = EXCLUDED.metadata, "
                    "embedding = EXCLUDED.embedding, lex_len = EXCLUDED.lex_len",
                    self.ident,
                )
                lexed = [
                    (i, t, self.Jsonb(m), v, sum(c.values()))
                    for i, t, m, v, c in zip(ids, texts, metadatas, vectors, counts, strict=True)
                ]
                cur.executemany(query, lexed)
                cur.execute(self._q("DELETE FROM {} WHERE id = ANY(%s)", self.terms_ident), (ids,))
                self._copy_terms(cur, zip(ids, counts, strict=True))
        except self.psycopg.errors.CheckViolation as exc:
            # a field another opener declared (its CHECK constraint) holds another type here: nothing written
            raise ValidationError(
                "a document holds a value of the wrong type for a field this table indexes "
                f"({exc.diag.constraint_name}): declare the same indexed fields in every config that writes it; "
                "nothing was written"
            ) from None
        except Exception:
            self._lex_on = False  # the leg may have been dropped by another process: look again next time
            raise

    def _copy_rows(
        self, cur: Any, ids: list[str], texts: list[str], metadatas: list[Metadata], vectors: np.ndarray
    ) -> None:
        """A large batch through PostgreSQL's binary ``COPY`` into a per-transaction staging table, then one
        ``INSERT ... SELECT ... ON CONFLICT`` (COPY itself cannot replace rows): 1.7x executemany without an
        ANN index (20,000 384-d rows); with HNSW the index's own inserts dominate either way."""
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS ragstore_stage "
            "(id text, text text, metadata jsonb, embedding vector) ON COMMIT DELETE ROWS"
        )
        with cur.copy("COPY ragstore_stage (id, text, metadata, embedding) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "jsonb", "vector"])
            for row in zip(ids, texts, map(self.Jsonb, metadatas), vectors, strict=True):
                copy.write_row(row)
        cur.execute(
            self._q(
                "INSERT INTO {} (id, text, metadata, embedding) SELECT id, text, metadata, embedding "
                "FROM ragstore_stage ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, "
                "metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding",
                self.ident,
            )
        )

    # ----------------------------------------------------------------- the lexical leg
    def _lexical_here(self, cur: Any) -> bool:
        """Whether this write must carry terms. Once seen, always; until then asked inside the write's own
        transaction after taking the table's write lock, so a build in another process (which locks writers
        out while it fills the leg) is either done -- and seen -- or waits for this write and indexes it."""
        if self._lex_on:
            return True
        cur.execute(self._q("LOCK TABLE {} IN ROW EXCLUSIVE MODE", self.ident))
        row = cur.execute("SELECT analyzer FROM ragstore_lexical WHERE tbl = %s", (self.table,)).fetchone()
        self._lex_on = row is not None
        return self._lex_on

    def _copy_terms(self, cur: Any, docs: Any) -> None:
        """Postings carry their document's length, so scoring reads the postings alone."""
        with cur.copy(self._q("COPY {} (term, id, tf, len) FROM STDIN", self.terms_ident)) as copy:
            for doc_id, counts in docs:
                length = sum(counts.values())
                for term, tf in counts.items():
                    copy.write_row((term, doc_id, tf, length))

    def _lexical_state(self) -> str:
        from ragstore.lexical.analyzer import ANALYZER_VERSION

        with self._reading() as conn:
            row = conn.execute("SELECT analyzer FROM ragstore_lexical WHERE tbl = %s", (self.table,)).fetchone()
        if row is None:
            return "none"
        return "ready" if row[0] == ANALYZER_VERSION else "stale"

    def _lexical_build(self) -> int:
        """Create the leg and fill it from the stored texts in one transaction that locks writers out (they
        wait, then write their own terms): a crash leaves no half-built leg."""
        from psycopg import sql
        from tqdm.auto import tqdm

        from ragstore.lexical.analyzer import ANALYZER_VERSION

        conn = self.conn
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
            cur.execute(self._q("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", self.ident))
            cur.execute(_LEX_STATS)
            cur.execute(_LEX_FUNCTION)
            cur.execute(
                self._q("ALTER TABLE {} ADD COLUMN IF NOT EXISTS lex_len integer NOT NULL DEFAULT 0", self.ident)
            )
            for name, _, _ in _LEX_TRIGGERS:  # filled below without them, counted once at the end
                cur.execute(self._q("DROP TRIGGER IF EXISTS {} ON {}", sql.Identifier(name), self.ident))
            cur.execute(self._q("DROP TABLE IF EXISTS {}", self.terms_ident))
            cur.execute(
                self._q(
                    "CREATE TABLE {} (term text NOT NULL, id text NOT NULL REFERENCES {} (id) ON DELETE CASCADE, "
                    "tf integer NOT NULL, len integer NOT NULL, PRIMARY KEY (term, id))",
                    self.terms_ident,
                    self.ident,
                )
            )
            cur.execute(
                self._q(
                    "CREATE INDEX {} ON {} (id)",
                    sql.Identifier(f"{_terms_table(self.table)[:57]}_by_id"),
                    self.terms_ident,
                )
            )
            (total,) = cur.execute(self._q("SELECT count(*) FROM {}", self.ident)).fetchone()
            cur.execute("CREATE TEMP TABLE ragstore_lex_len (id text PRIMARY KEY, len integer) ON COMMIT DROP")
            done = 0
            with tqdm(total=int(total), desc="building lexical leg", unit="doc", leave=False, delay=1.0) as bar:
                reader = conn.cursor(name="ragstore_lex_build")  # server-side: the table never sits in RAM
                try:
                    reader.execute(self._q("SELECT id, text FROM {}", self.ident))
                    while rows := reader.fetchmany(2000):
                        ids = [r[0] for r in rows]
                        counts = _analyse([r[1] for r in rows])
                        self._copy_terms(cur, zip(ids, counts, strict=True))
                        with cur.copy("COPY ragstore_lex_len (id, len) FROM STDIN") as copy:
                            for doc_id, c in zip(ids, counts, strict=True):
                                copy.write_row((doc_id, sum(c.values())))
                        done += len(rows)
                        bar.update(len(rows))
                finally:
                    reader.close()
            cur.execute(
                self._q("UPDATE {} AS d SET lex_len = l.len FROM ragstore_lex_len l WHERE d.id = l.id", self.ident)
            )
            cur.execute(
                self._q(
                    "INSERT INTO ragstore_lexical (tbl, docs, length, analyzer) "
                    "SELECT %s, count(*), COALESCE(sum(lex_len), 0), %s FROM {} "
                    "ON CONFLICT (tbl) DO UPDATE SET docs = EXCLUDED.docs, length = EXCLUDED.length, "
                    "analyzer = EXCLUDED.analyzer",
                    self.ident,
                ),
                (self.table, ANALYZER_VERSION),
            )
            for name, event, clause in _LEX_TRIGGERS:
                cur.execute(
                    self._q(
                        "CREATE TRIGGER {} AFTER {} ON {} {} EXECUTE FUNCTION ragstore_lexical_stats()",
                        sql.Identifier(name),
                        sql.SQL(event),
                        self.ident,
                        sql.SQL(clause),
                    )
                )
            cur.execute(self._q("ANALYZE {}", self.terms_ident))  # the planner's row estimates, from the start
        self._lex_on = True
        return done

    def _lexical_search(self, terms: list[str], k: int, node: Node | None, fields: bool) -> list[Hit]:
        opts = self.options
        # Lucene BM25 as the sidecar computes it: idf = ln(1 + (N - df + 0.5) / (df + 0.5)) over every document,
        # tf / (tf + k1 * (1 - b + b * len / avglen)); ties by id in code-point order (COLLATE "C"). The query's
        # postings are read once (each carries its document's length); the table is joined only for a filter
        # or for the winners' fields.
        scored = (
            "WITH st AS (SELECT docs::float8 AS n, GREATEST(length, 1)::float8 / docs AS avg "
            "FROM ragstore_lexical WHERE tbl = %s AND docs > 0), "
            "p AS MATERIALIZED (SELECT term, id, tf, len FROM {terms} WHERE term = ANY(%s)), "
            "w AS (SELECT p.term, ln(1 + (st.n - count(*) + 0.5) / (count(*) + 0.5)) AS idf "
            "FROM p, st GROUP BY p.term, st.n), "
            "s AS (SELECT p.id, sum(w.idf * p.tf / (p.tf + %s * (1 - %s + %s * p.len / st.avg))) AS score "
            "FROM p JOIN w ON w.term = p.term CROSS JOIN st GROUP BY p.id) "
        )
        args: list[Any] = [self.table, terms, opts.bm25_k1, opts.bm25_b, opts.bm25_b]
        cols = self.sql.SQL(", d.text, d.metadata" if fields else "")
        if node is None:
            tail = (
                "SELECT s.id, s.score{cols} FROM "
                '(SELECT id, score FROM s ORDER BY score DESC, id COLLATE "C" LIMIT %s) s'
            )
            tail += " JOIN {table} d ON d.id = s.id" if fields else ""
            query = self._q(scored + tail, terms=self.terms_ident, table=self.ident, cols=cols)
            args.append(k)
        else:
            where, params = self._where(node)
            tail = (
                "SELECT s.id, s.score{cols} FROM s JOIN {table} d ON d.id = s.id WHERE {where} "
                'ORDER BY s.score DESC, s.id COLLATE "C" LIMIT %s'
            )
            query = self._q(scored + tail, terms=self.terms_ident, table=self.ident, cols=cols, where=where)
            args += [*params, k]
        with self._reading() as conn:
            rows = conn.execute(query, args).fetchall()
        if fields:
            return [Hit(r[0], float(r[1]), r[2], r[3], "bm25") for r in rows]
        return [Hit(r[0], float(r[1]), "", {}, "bm25") for r in rows]

    def _score(self, distance: float) -> float:
        return 1.0 - distance if self.metric == "cosine" else -distance

    def _index_key(self, dim: int) -> tuple[Any, Any, Any]:
        """(indexed expression, its distance operator, the query placeholder cast to match)."""
        sql, lit = self.sql, self.sql.Literal(dim)
        _, operator = _OPS[self.metric]
        if self.options.quantize == "halfvec":
            return (
                sql.SQL("(embedding::halfvec({}))").format(lit),
                sql.SQL(operator),
                sql.SQL("%s::halfvec({})").format(lit),
            )
        if self.options.quantize == "binary":
            return (
                sql.SQL("(binary_quantize(embedding)::bit({}))").format(lit),
                sql.SQL("<~>"),
                sql.SQL("binary_quantize(%s::vector)::bit({})").format(lit),
            )
        return sql.SQL("embedding"), sql.SQL(operator), sql.SQL("%s")

    def _search(self, vector: np.ndarray, k: int, node: Node | None) -> list[Hit]:
        where, params = self._where(node)
        _, operator = _OPS[self.metric]
        opts = self.options
        matching = self._prefilter(node)
        if matching is not None and matching <= opts.exact_filter_limit:
            # pre-filter: the matches through the fields' B-trees, every one scored (exact: recall 1)
            exact = self._q(
                "WITH m AS MATERIALIZED (SELECT id, text, metadata, embedding FROM {table} WHERE {where}) "
                "SELECT id, text, metadata, embedding {op} %s AS d FROM m ORDER BY d LIMIT %s",
                table=self.ident,
                where=where,
                op=self.sql.SQL(operator),
            )
            with self._reading() as conn:
                rows = conn.execute(exact, [*params, vector, k]).fetchall()
            return [Hit(i, self._score(float(d)), t, m) for i, t, m, d in rows]
        # candidates in the index's order (the float column, or its halfvec/bit codes); codes' candidates are
        # then re-ranked by exact distance on the float column
        key, qop, qkey = self._index_key(self._dim or len(vector))
        query = self._q(
            "SELECT id, text, metadata, embedding {op} %s AS d FROM {table} WHERE {where} "
            "ORDER BY {key} {qop} {qkey} LIMIT %s",
            op=self.sql.SQL(operator),
            table=self.ident,
            where=where,
            key=key,
            qop=qop,
            qkey=qkey,
        )
        limit, args = k, [vector, *params, vector, k]
        if opts.quantize != "none":
            query = self._q("SELECT id, text, metadata, d FROM ({}) AS c ORDER BY d LIMIT %s", query)
            limit = k * opts.rescore
            args = [vector, *params, vector, limit, k]
        with self._reading() as conn, conn.transaction():
            if opts.index == "hnsw":
                # ef_search follows k up to pgvector's limit; iterative scans then go on past it until k rows
                ef = min(max(opts.ef_search, limit), _MAX_EF_SEARCH)
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
                conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
            elif opts.index == "ivfflat":
                conn.execute("SELECT set_config('ivfflat.probes', %s, true)", (str(opts.probes),))
                conn.execute("SELECT set_config('ivfflat.iterative_scan', 'relaxed_order', true)")
            rows = conn.execute(query, args).fetchall()
        return [Hit(i, self._score(float(d)), t, m) for i, t, m, d in rows]

    @staticmethod
    def _doc(row: tuple[Any, ...]) -> Document:
        vec = row[3].to_numpy() if hasattr(row[3], "to_numpy") else row[3]
        return Document(id=row[0], text=row[1], metadata=row[2], vector=np.asarray(vec, dtype=np.float32))

    def _get(self, ids: list[str]) -> list[Document]:
        query = self._q("SELECT id, text, metadata, embedding FROM {} WHERE id = ANY(%s)", self.ident)
        with self._reading() as conn:
            return [self._doc(r) for r in conn.execute(query, (ids,)).fetchall()]

    def _get_where(self, node: Node | None, limit: int | None) -> list[Document]:
        where, params = self._where(node)
        template = "SELECT id, text, metadata, embedding FROM {} WHERE {} ORDER BY id"
        if limit is not None:
            template += " LIMIT %s"
            params = [*params, limit]
        with self._reading() as conn:
            return [self._doc(r) for r in conn.execute(self._q(template, self.ident, where), params).fetchall()]

    def _scan(self, cursor: str | None, limit: int) -> Iterator[tuple[list[Document], str]]:
        """Keyset pages on the primary key (the database's own collation, the same in every process)."""
        first = self._q("SELECT id, text, metadata, embedding FROM {} ORDER BY id LIMIT %s", self.ident)
        after = self._q("SELECT id, text, metadata, embedding FROM {} WHERE id > %s ORDER BY id LIMIT %s", self.ident)
        while True:
            with self._reading() as conn:
                rows = conn.execute(after, (cursor, limit)) if cursor is not None else conn.execute(first, (limit,))
                docs = [self._doc(r) for r in rows.fetchall()]
            if not docs:
                return
            cursor = docs[-1].id
            yield docs, cursor

    def _delete_ids(self, ids: list[str]) -> int:
        cur = self.conn.execute(self._q("DELETE FROM {} WHERE id = ANY(%s)", self.ident), (ids,))
        return int(cur.rowcount)

    def _delete_where(self, node: Node) -> int:
        where, params = self._where(node)
        return int(self.conn.execute(self._q("DELETE FROM {} WHERE {}", self.ident, where), params).rowcount)

    def _count(self, node: Node | None) -> int:
        where, params = self._where(node)
        query = self._q("SELECT count(*) FROM {} WHERE {}", self.ident, where)
        with self._reading() as conn:
            row = conn.execute(query, params).fetchone()
        return int(row[0]) if row else 0

    def _clear(self) -> None:
        with self.conn.transaction():
            if self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_terms_table(self.table),)).fetchone()[0]:
                self.conn.execute(self._q("TRUNCATE {}, {}", self.ident, self.terms_ident))
            else:
                self.conn.execute(self._q("TRUNCATE {}", self.ident))

    def _read_manifest(self) -> str | None:
        row = self.conn.execute("SELECT body FROM ragstore_manifest WHERE tbl = %s", (self.table,)).fetchone()
        return None if row is None else str(row[0])

    def _write_manifest(self, text: str) -> None:
        self.conn.execute(
            "INSERT INTO ragstore_manifest (tbl, body) VALUES (%s, %s) ON CONFLICT (tbl) DO UPDATE SET body = %s",
            (self.table, text, text),
        )

    def _drop(self) -> None:
        with self.conn.transaction():
            self.conn.execute(self._q("DROP TABLE IF EXISTS {}", self.terms_ident))
            self.conn.execute(self._q("DROP TABLE IF EXISTS {}", self.ident))
            self.conn.execute("DELETE FROM ragstore_lexical WHERE tbl = %s", (self.table,))
            self._lex_on = False
            self.conn.execute("DELETE FROM ragstore_meta WHERE tbl = %s", (self.table,))
            self.conn.execute("DELETE FROM ragstore_manifest WHERE tbl = %s", (self.table,))

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

    def _describe(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "index": self.options.index,
            "quantize": self.options.quantize,
            "embedded": self.pgdata is not None,
        }
