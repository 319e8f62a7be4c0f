"""SQLite sidecar for index-only engines (FAISS): ids, text and metadata, plus filter -> SQL; the float
vectors beside it in one file of fixed-size slots.

SQLite is the source of truth: every write is one transaction, so the index file can always be rebuilt
from it after a crash. The vectors are not in SQLite: row ``iid`` (never reused) has slot ``iid - 1`` of
``vectors.f32``, written before the transaction commits (a vector whose row is acknowledged is in the file
the moment any process can see the row; a slot written by a transaction that then failed is never read).
SQLite would write each vector twice (WAL, then the checkpoint) inside a B-tree of blobs; the slots file
is written once, read back with one memory map, and lets a flat index skip an index file of its own.

Filters compile to parameterised SQL over ``json_type``/``json_extract``; field names are validated
identifiers and still travel as bound JSON-path parameters, never pasted into SQL.

Declared fields (``indexed``, ``ragstore.query.indexed``) also live in one typed table, ``fields(field,
kval, nval, iid)`` with B-tree indexes on (field, value, iid): a filter on them reads the matching iids from
an index instead of every row's JSON. The declaration is kept in the file (``info.indexed``), so every
process writing the folder keeps the table whole and checks the types, whatever its own config says.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragstore._db import connect
from ragstore.errors import ConfigError, EngineError
from ragstore.query.filters import RANGE_SYMBOL, And, Cmp, FilterCompiler, Node, Or, kind, range_groups
from ragstore.query.indexed import KIND_OF, check_indexed, fits, not_indexable
from ragstore.types import Document, Metadata

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    iid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fields (field TEXT NOT NULL, kval TEXT, nval REAL, iid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS fields_k ON fields(field, kval, iid);
CREATE INDEX IF NOT EXISTS fields_n ON fields(field, nval, iid);
CREATE INDEX IF NOT EXISTS fields_iid ON fields(iid);
"""
_MATCH_SETS, _MATCH_BYTES = 32, 64 * 2**20  # filters whose matching rows are remembered, and their bytes
_ID_CACHE = 500_000  # iid -> id entries kept for fused queries' legs
_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-variable limit
VECTORS_FILE = "vectors.f32"


def _type_test(value: Any) -> tuple[str, list[Any]]:
    k = kind(value)
    if k == "bool":
        return "json_type(metadata, ?) = ?", ["true" if value else "false"]
    if k == "number":
        return "json_type(metadata, ?) IN ('integer', 'real')", []
    return "json_type(metadata, ?) = 'text'", []


Sql = tuple[str, list[Any]]


def _join(joiner: str, parts: list[Sql]) -> Sql:
    return "(" + joiner.join(p for p, _ in parts) + ")", [x for _, ps in parts for x in ps]


_NUMERIC = ("integer", "float")
_NONE: Sql = ("SELECT iid FROM fields WHERE 0", [])  # a declared field holds no value of another kind


def _column(value: Any) -> tuple[str, Any]:
    """Where a declared field's value lives in ``fields``: strings in ``kval``, numbers and booleans in ``nval``."""
    return ("kval", value) if isinstance(value, str) else ("nval", float(value))


def _field_row(field: str, value: Any, iid: int) -> tuple[Any, ...]:
    """A ``fields`` row: (field, kval, nval, iid)."""
    col, v = _column(value)
    return (field, v, None, iid) if col == "kval" else (field, None, v, iid)


class _SqliteFilter(FilterCompiler[Sql]):
    """SQLite JSON atoms, each two-valued (``IFNULL(..., 0)``) so ``NOT`` keeps ragstore's semantics; a
    declared field's atom is ``iid IN (SELECT ... FROM fields)``, answered from its index (two-valued too)."""

    def __init__(self, declared: dict[str, str] | None = None) -> None:
        self.declared = declared or {}

    def _select(self, field: str, op: str, values: tuple[Any, ...]) -> Sql | None:
        """The iids a positive comparison on a declared field matches, read from ``fields``; None when the
        field is not declared."""
        ftype = self.declared.get(field)
        if ftype is None:
            return None
        if kind(values[0]) != KIND_OF[ftype] or (op in RANGE_SYMBOL and ftype not in _NUMERIC):
            return _NONE  # kinds never mix; only numbers compare
        col = _column(values[0])[0]
        test = f"{RANGE_SYMBOL[op]} ?" if op in RANGE_SYMBOL else f"IN ({', '.join('?' for _ in values)})"
        sql = f"SELECT iid FROM fields WHERE field = ? AND {col} {test}"  # noqa: S608 - fixed symbols only
        return sql, [field, *(_column(v)[1] for v in values)]

    def _merged_ranges(self, children: tuple[Node, ...]) -> tuple[list[Sql], list[Node]]:
        """Under ``$and``: the bounds on one declared number field as one index range (``u >= x AND u < y``
        as two atoms reads half the table twice), and the other children."""
        bounds, rest = range_groups(children, lambda field: self.declared.get(field) in _NUMERIC)
        merged: list[Sql] = []
        for field, cmps in bounds.items():
            tests = " AND ".join(f"nval {RANGE_SYMBOL[c.op]} ?" for c in cmps)
            sql = f"SELECT iid FROM fields WHERE field = ? AND {tests}"  # noqa: S608 - fixed symbols only
            merged.append((sql, [field, *(float(c.value) for c in cmps)]))  # type: ignore[arg-type]
        return merged, rest

    def compile(self, node: Node) -> Sql:
        if isinstance(node, And) and self.declared:
            merged, rest = self._merged_ranges(node.children)
            if merged:
                return self.all_of([_in(s) for s in merged] + [self.compile(c) for c in rest])
        return super().compile(node)

    def iids(self, node: Node) -> Sql | None:
        """A query of the matching iids read from the ``fields`` table alone, when every comparison is a
        positive one on a declared field (``$and`` as INTERSECT, ``$or`` as UNION): 2.8 ms for 10,000 of a
        million rows, where joining them back to ``docs`` costs 16 ms. None otherwise (negations need every
        row)."""
        if isinstance(node, Cmp):
            if node.op in ("$ne", "$nin"):
                return None
            return self._select(node.field, node.op, node.value if isinstance(node.value, tuple) else (node.value,))
        if not isinstance(node, And | Or):
            return None
        parts, rest = self._merged_ranges(node.children) if isinstance(node, And) else ([], list(node.children))
        for child in rest:
            part = self.iids(child)
            if part is None:
                return None
            parts.append(part)
        joiner = " INTERSECT " if isinstance(node, And) else " UNION "
        sql = joiner.join(f"SELECT iid FROM ({p})" for p, _ in parts)  # noqa: S608 - compiled templates
        return sql, [x for _, ps in parts for x in ps]

    def all_of(self, parts: list[Sql]) -> Sql:
        return _join(" AND ", parts)

    def any_of(self, parts: list[Sql]) -> Sql:
        return _join(" OR ", parts)

    def negate(self, part: Sql, node: Node) -> Sql:
        return f"(NOT {part[0]})", part[1]

    def eq(self, field: str, value: Any) -> Sql:
        fast = self._select(field, "$eq", (value,))
        if fast is not None:
            return _in(fast)
        path = f'$."{field}"'
        type_sql, type_params = _type_test(value)
        if kind(value) == "bool":
            return f"IFNULL({type_sql}, 0)", [path, *type_params]
        return f"IFNULL({type_sql} AND json_extract(metadata, ?) = ?, 0)", [path, *type_params, path, value]

    def is_in(self, field: str, values: tuple[Any, ...]) -> Sql:
        marks = ", ".join("?" for _ in values)
        fast = self._select(field, "$in", values)
        if fast is not None:
            return _in(fast)
        path = f'$."{field}"'
        if kind(values[0]) == "bool":
            return f"IFNULL(json_type(metadata, ?) IN ({marks}), 0)", [
                path,
                *("true" if v else "false" for v in values),
            ]
        type_sql, type_params = _type_test(values[0])
        sql = f"IFNULL({type_sql} AND json_extract(metadata, ?) IN ({marks}), 0)"
        return sql, [path, *type_params, path, *values]

    def range(self, field: str, op: str, value: Any) -> Sql:
        fast = self._select(field, op, (value,))
        if fast is not None:
            return _in(fast)
        path = f'$."{field}"'
        sql = (
            "IFNULL(json_type(metadata, ?) IN ('integer', 'real') "
            f"AND json_extract(metadata, ?) {RANGE_SYMBOL[op]} ?, 0)"
        )
        return sql, [path, path, value]


def _in(select: Sql) -> Sql:
    """A ``fields`` select as a two-valued atom on ``docs`` (nothing to look up when it matches nothing)."""
    return ("0", []) if select is _NONE else (f"iid IN ({select[0]})", select[1])


_COMPILER = _SqliteFilter()


def compile_filter(node: Node | None, declared: dict[str, str] | None = None) -> Sql:
    """Return a WHERE clause and its parameters; every atom is two-valued (never NULL). Atoms on
    ``declared`` fields read the ``fields`` table."""
    if node is None:
        return ("1", [])
    return (_SqliteFilter(declared) if declared else _COMPILER).compile(node)


#: SQLite's json_type -> a Python value's type, for checking stored rows against a declaration
_JSON_TYPES = {"text": str, "integer": int, "real": float, "true": bool, "false": bool}


def _field_rows(declared: dict[str, str], iids: Sequence[int], metas: Sequence[Metadata]) -> Iterator[tuple[Any, ...]]:
    for iid, meta in zip(iids, metas, strict=True):
        for field in declared:
            if field in meta:
                yield _field_row(field, meta[field], iid)


class VectorSlots:
    """float32 vectors at slot ``iid - 1``: written with ``pwrite`` in place, read through a memory map.

    The file never shrinks in place (a shorter file would turn another process's mapped pages into
    SIGBUS): deleted rows' slots are released with ``fallocate(PUNCH_HOLE)`` where Linux offers it (whole
    4 KiB blocks: a replaced batch gives its space back, scattered single deletes mostly do not).
    ``None``: kept in memory, one row per live iid (a store written over and over holds its live rows only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600) if path is not None else None
        self._mem: dict[int, np.ndarray] = {}  # in memory: iid -> its row
        self._map: np.ndarray | None = None
        self._lock = threading.Lock()

    def write(self, first_iid: int, matrix: np.ndarray) -> None:
        data = np.ascontiguousarray(matrix, dtype=np.float32)
        offset, view = (first_iid - 1) * data.shape[1] * 4, data.data.cast("B")
        if self._fd is None:
            self._mem.update(zip(range(first_iid, first_iid + len(data)), data.copy(), strict=True))
            return
        while len(view):
            done = os.pwrite(self._fd, view, offset)
            view, offset = view[done:], offset + done

    def read(self, iids: np.ndarray, dim: int) -> np.ndarray:
        """The vectors of ``iids`` (rows of a new array, in the given order)."""
        if not len(iids):
            return np.empty((0, dim), dtype=np.float32)
        if self._fd is None:
            return np.stack([self._mem[int(i)] for i in iids])
        rows = self._rows(int(iids.max()), dim)
        return rows[np.asarray(iids, dtype=np.int64) - 1]

    def _rows(self, need: int, dim: int) -> np.ndarray:
        assert self._fd is not None
        with self._lock:
            flat = self._map
            if flat is None or flat.size < need * dim:
                size = os.fstat(self._fd).st_size
                if size < need * dim * 4:
                    raise EngineError(
                        f"{self.path} holds {size // (4 * dim)} vectors; row {need} needs more (the file was cut short)"
                    )
                assert self.path is not None
                flat = self._map = np.memmap(self.path, dtype=np.float32, mode="r", shape=(size // 4,))
        return flat[: flat.size // dim * dim].reshape(-1, dim)

    def release(self, iids: Sequence[int], dim: int) -> None:
        """Give the slots of deleted rows back to the file system (their contents are never read again)."""
        if self._fd is None:
            for iid in iids:
                self._mem.pop(int(iid), None)
            return
        if not len(iids) or _punch_hole is None:
            return
        row = dim * 4
        order = np.sort(np.asarray(iids, dtype=np.int64))
        breaks = np.flatnonzero(np.diff(order) != 1) + 1
        for run in np.split(order, breaks):
            start, stop = (int(run[0]) - 1) * row, int(run[-1]) * row
            start, stop = -(-start // 4096) * 4096, stop // 4096 * 4096  # whole blocks inside the run only
            if stop > start:
                _punch_hole(self._fd, start, stop - start)

    def release_all(self) -> None:
        """A clear or drop, called while its transaction still holds the write lock (no other writer can
        have put a new row in the file yet; its slots may have another width after a drop)."""
        if self._fd is None:
            self._mem = {}
            return
        size = os.fstat(self._fd).st_size
        if size and _punch_hole is not None:
            _punch_hole(self._fd, 0, size)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._map = None


def _fallocate() -> Any:
    """``fallocate(fd, PUNCH_HOLE | KEEP_SIZE, offset, length)`` from libc, or None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]

    def punch(fd: int, offset: int, length: int) -> None:
        fn(fd, 0x02 | 0x01, offset, length)  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE; failure: space kept

    return punch


_punch_hole = _fallocate()


class SqliteDocs:
    """Documents keyed by a stable integer ``iid`` (never reused), which the vector index stores."""

    def __init__(self, path: Path | None) -> None:
        self._matches: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._matches_lock = threading.Lock()
        self.conn = connect(path or None)  # other processes may be writing the same folder: ragstore/_db.py
        self.conn.executescript(_SCHEMA)
        self.vectors = VectorSlots(path.with_name(VECTORS_FILE) if path is not None else None)
        if self.get_info("vectors") != "slots":
            self._move_vectors_out()
        # iid -> id never changes: AUTOINCREMENT never hands an iid out twice in a file (delete, clear and drop
        # keep the sequence), so this cache is never stale, in any process
        self._id_of: dict[int, str] = {}

    # info key/values: dim, metric, generation counters
    def get_info(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_info(self, key: str, value: object) -> None:
        self.conn.execute("INSERT OR REPLACE INTO info(key, value) VALUES (?, ?)", (key, str(value)))

    def _move_vectors_out(self) -> None:
        """A file written before the slots file kept its vectors in ``docs.vector``: move them out, once."""
        with self.transaction():
            if self.get_info("vectors") == "slots":  # another process moved them meanwhile
                return
            dim = self.get_info("dim")
            if dim is not None:
                rows = self.conn.execute("SELECT iid, vector FROM docs WHERE length(vector) > 0 ORDER BY iid")
                while batch := rows.fetchmany(10_000):
                    for iid, blob in batch:
                        self.vectors.write(iid, np.frombuffer(blob, dtype=np.float32).reshape(1, int(dim)))
                self.vectors.sync()
                self.conn.execute("UPDATE docs SET vector = x'' WHERE length(vector) > 0")
            self.set_info("vectors", "slots")

    def _dim(self) -> int:
        dim = self.get_info("dim")
        if dim is None:
            raise EngineError("the sidecar holds rows but no vector dimension")
        return int(dim)

    def bump_generation(self) -> int:
        gen = int(self.get_info("generation") or 0) + 1
        self.set_info("generation", gen)
        return gen

    def upsert(
        self, ids: list[str], vectors: np.ndarray, texts: list[str], metas: list[Metadata]
    ) -> tuple[list[int], list[int]]:
        """Write rows in one transaction; returns (iids of replaced rows, iids of the new rows). Values of
        the fields the file declares are checked (a wrong type: nothing written) and indexed."""
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.transaction():
            declared = self.declared()
            check_indexed(declared, ids, metas)
            replaced = [iid for iid, _ in self.iids_for(ids)]
            self._delete_iids(replaced)
            # iids handed out here, past every iid the file ever gave (AUTOINCREMENT's own counter, which an
            # explicit iid advances too), so one prepared statement writes the batch
            row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'docs'").fetchone()
            first = int(row[0]) + 1 if row else 1
            new = list(range(first, first + len(ids)))
            self.vectors.write(first, matrix)  # before the rows exist: no reader ever sees a row without its vector
            self.conn.executemany(
                "INSERT INTO docs(iid, id, text, metadata, vector) VALUES (?, ?, ?, ?, x'')",
                zip(new, ids, texts, map(_ENCODE, metas), strict=True),
            )
            if declared:
                self.conn.executemany(
                    "INSERT INTO fields(field, kval, nval, iid) VALUES (?, ?, ?, ?)", _field_rows(declared, new, metas)
                )
            self.bump_generation()
        self.vectors.release(replaced, matrix.shape[1])  # after the commit: a failed write keeps them
        return replaced, new

    def transaction(self) -> _Tx:
        return _Tx(self.conn)

    def _chunks(self, items: Sequence[Any]) -> Iterator[Sequence[Any]]:
        for start in range(0, len(items), _CHUNK):
            yield items[start : start + _CHUNK]

    def iids_for(self, ids: Sequence[str]) -> list[tuple[int, str]]:
        """(iid, id) of the ids stored: one statement for any number of ids (a bound JSON array), so a
        bulk write of fresh ids costs one index probe each, not one statement per 500."""
        if len(ids) <= _CHUNK:
            marks = ",".join("?" * len(ids))
            sql = f"SELECT iid, id FROM docs WHERE id IN ({marks})"  # noqa: S608 - placeholders only
            return self.conn.execute(sql, list(ids)).fetchall()
        sql = "SELECT iid, id FROM docs WHERE id IN (SELECT value FROM json_each(?))"
        return self.conn.execute(sql, (_ENCODE(list(ids)),)).fetchall()

    def _delete_iids(self, iids: Sequence[int]) -> None:
        for chunk in self._chunks(iids):
            marks = ",".join("?" * len(chunk))
            self.conn.execute(f"DELETE FROM docs WHERE iid IN ({marks})", list(chunk))  # noqa: S608
            self.conn.execute(f"DELETE FROM fields WHERE iid IN ({marks})", list(chunk))  # noqa: S608

    # ----------------------------------------------------------------- declared fields
    def declared(self) -> dict[str, str]:
        """The fields this file indexes, with their types (every writer keeps them, whatever its config)."""
        text = self.get_info("indexed")
        return dict(json.loads(text)) if text else {}

    def declare(self, wanted: dict[str, str], progress: bool = True) -> list[str]:
        """Add ``wanted``'s fields to the file's declaration, checking and indexing the rows already stored
        (one transaction: a stored value of the wrong type refuses the declaration and changes nothing).
        Returns the fields added."""
        with self.transaction():
            have = self.declared()
            for field, ftype in wanted.items():
                if have.get(field, ftype) != ftype:
                    raise ConfigError(
                        f"indexed field {field!r} is declared {have[field]} in this store; the config says {ftype}"
                    )
            added = {f: t for f, t in wanted.items() if f not in have}
            if not added:
                return []
            total = int(self.conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])
            from tqdm.auto import tqdm

            with tqdm(
                total=total * len(added), desc="indexing fields", unit="row", disable=not progress or total < 50_000
            ) as bar:
                for field, ftype in added.items():
                    self._backfill(field, ftype, bar)
            self.set_info("indexed", json.dumps({**have, **added}, sort_keys=True))
            self.bump_generation()
        return sorted(added)

    def _backfill(self, field: str, ftype: str, bar: Any) -> None:
        path = f'$."{field}"'
        rows = self.conn.execute(
            "SELECT iid, id, json_type(metadata, ?), json_extract(metadata, ?) FROM docs ORDER BY iid", (path, path)
        )
        while batch := rows.fetchmany(10_000):
            out = []
            for iid, doc_id, jtype, raw in batch:
                if jtype is None:
                    continue
                value = (jtype == "true") if jtype in ("true", "false") else _JSON_TYPES[jtype](raw)
                if not fits(ftype, value):
                    raise not_indexable(field, ftype, doc_id, value)
                out.append(_field_row(field, value, iid))
            self.conn.executemany("INSERT INTO fields(field, kval, nval, iid) VALUES (?, ?, ?, ?)", out)
            bar.update(len(batch))

    def delete_iids(self, iids: Sequence[int]) -> None:
        with self.transaction():
            self._delete_iids(iids)
            self.bump_generation()
            dim = self.get_info("dim")
        if dim is not None:
            self.vectors.release(iids, int(dim))

    def _iids_sql(self, node: Node | None) -> Sql:
        """``SELECT iid ...`` of the rows ``node`` matches: from the declared fields' table alone when it can."""
        declared = self.declared()
        if node is not None and declared:
            pure = _SqliteFilter(declared).iids(node)
            if pure is not None:
                return f"SELECT iid FROM ({pure[0]})", pure[1]  # noqa: S608 - compiled templates only
        sql, params = compile_filter(node, declared)
        return f"SELECT iid FROM docs WHERE {sql}", params  # noqa: S608

    def where_iids(self, node: Node | None) -> list[int]:
        sql, params = self._iids_sql(node)
        return [r[0] for r in self.conn.execute(f"{sql} ORDER BY iid", params)]

    def matching_iids(self, node: Node) -> np.ndarray:
        """``where_iids`` as an array, remembered per filter until the next write from any process.

        Filtering reads every row's JSON (~1 s at a million rows); applications repeat the same few filters
        (a tenant, a language), so the matching set is kept, keyed by the write generation every write bumps.
        """
        sql, params = self._iids_sql(node)
        key = (self.get_info("generation"), sql, *params)
        with self._matches_lock:
            found = self._matches.get(key)
            if found is not None:
                self._matches.move_to_end(key)
                return found
        rows = self.conn.execute(f"{sql} ORDER BY iid", params)
        found = np.fromiter((r[0] for r in rows), dtype=np.int64)
        found.flags.writeable = False  # shared between searches
        with self._matches_lock:
            self._matches[key] = found
            while len(self._matches) > _MATCH_SETS or sum(a.nbytes for a in self._matches.values()) > _MATCH_BYTES:
                self._matches.popitem(last=False)
        return found

    def count(self, node: Node | None) -> int:
        sql, params = self._iids_sql(node)
        return int(self.conn.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()[0])  # noqa: S608

    def rows_by_iid(self, iids: Sequence[int]) -> dict[int, tuple[str, str, Metadata]]:
        out: dict[int, tuple[str, str, Metadata]] = {}
        for chunk in self._chunks(iids):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT iid, id, text, metadata FROM docs WHERE iid IN ({marks})"  # noqa: S608
            for iid, doc_id, text, meta in self.conn.execute(sql, list(chunk)):
                out[iid] = (doc_id, text, json.loads(meta))
        return out

    def ids_by_iid(self, iids: Sequence[int]) -> dict[int, str]:
        """Only the ids: what a fused query's legs need (texts are read for the winners alone)."""
        known = self._id_of
        out = {i: known[i] for i in iids if i in known}
        missing = [i for i in iids if i not in out]
        for chunk in self._chunks(missing):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT iid, id FROM docs WHERE iid IN ({marks})"  # noqa: S608
            out.update(self.conn.execute(sql, list(chunk)))
        if missing:
            if len(known) > _ID_CACHE:
                known.clear()
            known.update((i, out[i]) for i in missing if i in out)
        return out

    def fields_by_id(self, ids: Sequence[str]) -> dict[str, tuple[str, Metadata]]:
        out: dict[str, tuple[str, Metadata]] = {}
        for chunk in self._chunks(ids):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id, text, metadata FROM docs WHERE id IN ({marks})"  # noqa: S608
            for doc_id, text, meta in self.conn.execute(sql, list(chunk)):
                out[doc_id] = (text, json.loads(meta))
        return out

    def documents(self, ids: Sequence[str]) -> list[Document]:
        docs: list[Document] = []
        for chunk in self._chunks(ids):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT iid, id, text, metadata FROM docs WHERE id IN ({marks})"  # noqa: S608
            docs += self._docs(self.conn.execute(sql, list(chunk)).fetchall())
        return docs

    def _docs(self, rows: list[tuple[int, str, str, str]]) -> list[Document]:
        """Documents from (iid, id, text, metadata) rows, their vectors read from the slots in one gather."""
        if not rows:
            return []
        vectors = self.vectors.read(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), self._dim())
        decode = _DECODE  # ragstore wrote this JSON (no leading blanks): 45% faster than json.loads
        return [Document(r[2], r[1], decode(r[3])[0], vectors[n]) for n, r in enumerate(rows)]

    def documents_where(self, node: Node | None, limit: int | None) -> list[Document]:
        sql, params = compile_filter(node, self.declared())
        query = f"SELECT iid, id, text, metadata FROM docs WHERE {sql} ORDER BY iid"  # noqa: S608
        if limit is not None:
            query += " LIMIT ?"
            params = [*params, limit]
        return self._docs(self.conn.execute(query, params).fetchall())

    def documents_after(self, cursor: str | None, limit: int) -> list[Document]:
        """A keyset page in id order (SQLite's binary order of UTF-8: code-point order)."""
        query = "SELECT iid, id, text, metadata FROM docs WHERE id > ? ORDER BY id LIMIT ?"
        return self._docs(self.conn.execute(query, (cursor if cursor is not None else "", limit)).fetchall())

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits to the file."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def vectors_for(self, iids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(iids, vectors) of the given rows that still exist."""
        found: list[int] = []
        for chunk in self._chunks(iids):
            marks = ",".join("?" * len(chunk))
            found += [r[0] for r in self.conn.execute(f"SELECT iid FROM docs WHERE iid IN ({marks})", list(chunk))]  # noqa: S608
        have = np.asarray(found, dtype=np.int64)
        return have, self.vectors.read(have, dim)

    def all_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(iids, vectors) of every row, for rebuilding the index."""
        rows = self.conn.execute("SELECT iid FROM docs ORDER BY iid")
        iids = np.fromiter((r[0] for r in rows), dtype=np.int64)
        return iids, self.vectors.read(iids, dim)

    def drop(self) -> None:
        """Forget documents and settings (dim, metric); the generation keeps counting up."""
        with self.transaction():
            self.conn.execute("DELETE FROM docs")
            self.conn.execute("DELETE FROM fields")
            self.conn.execute("DELETE FROM info WHERE key NOT IN ('generation', 'vectors')")
            self.bump_generation()
            self.vectors.release_all()  # last: only a failed COMMIT could follow, of rows asked to go anyway

    def clear(self) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM docs")
            self.conn.execute("DELETE FROM fields")
            self.bump_generation()
            self.vectors.release_all()  # last: only a failed COMMIT could follow, of rows asked to go anyway

    def close(self) -> None:
        self.conn.close()
        self.vectors.close()


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (autocommit connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.depth = 0

    def __enter__(self) -> _Tx:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
            self.depth = 1
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.depth:
            return
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


_DECODE = json.JSONDecoder().raw_decode
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps builds an encoder per call
