"""Copy a collection into another store: pages streamed, nothing re-embedded, resumable, verifiable.

The loop reads the source page by page in its stable order and writes each page through the destination
collection's one write path (so its BM25 index and routes follow); after the first page, and then at most
every quarter second, the destination's manifest records a checkpoint (``copy``: the source, the cursor
after the last page written, how many were copied). A copy killed at any point resumes from the last
checkpoint: the pages since are written again, and writing a page again changes nothing (upserts by id).
Pages are read and written in turn: reading one page ahead in a thread was measured slower (the two halves
contend for the interpreter lock).

While a copy runs, the source is read, never written. A document written to the source during a copy is
copied when its page is read after the write (engines that read by key ranges: FAISS, Milvus, pgvector,
Qdrant; Chroma and memory list their ids once, at the start); a deletion, or a write to a page already read,
is not. The copy compares the source before and after and says when it moved; run the copy again to bring
the destination level (it adds and rewrites, never deletes) and ``--verify`` to check.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..embedders.base import Embedder
from ..errors import DimensionMismatchError, EmbedderMismatchError, TransferError
from ..query.namespaces import ALL_NAMESPACES, Namespace
from ..stores.base import SCAN_END, VectorStore
from ..stores.collection import PRIMARY, Collection
from ..types import Document, Hit
from .sources import Source

CHECKPOINT = "copy"
#: a checkpoint after the first page, then at most this often (one per page cost fast destinations ~3%); a
#: resumed copy writes again at most this much, which changes nothing
CHECKPOINT_EVERY_S = 0.25
UNIT_TOLERANCE = 1e-3  # |norm - 1| below this counts as a unit vector (float32 embeddings: ~1e-7)


@dataclass
class VerifyReport:
    """What ``verify_copy`` compared and found; ``ok`` is the verdict."""

    source_count: int = 0
    destination_count: int = 0
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    content_differs: list[str] = field(default_factory=list)
    vectors_identical: int = 0
    vectors_differ: list[str] = field(default_factory=list)
    max_vector_diff: float = 0.0
    queries: int = 0
    same_top: int = 0
    mean_overlap: float = 1.0
    max_score_diff: float = 0.0
    exact: bool = True
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": [self.source_count, self.destination_count],
            "checked": self.checked,
            "missing": self.missing[:10],
            "content_differs": self.content_differs[:10],
            "vectors_identical": self.vectors_identical,
            "vectors_differ": self.vectors_differ[:10],
            "max_vector_diff": self.max_vector_diff,
            "queries": self.queries,
            "same_top10": self.same_top,
            "mean_overlap": round(self.mean_overlap, 4),
            "max_score_diff": self.max_score_diff,
            "exact": self.exact,
            "problems": self.problems,
            "notes": self.notes,
        }


@dataclass
class CopyReport:
    source: str
    destination: str
    copied: int = 0
    already: int = 0
    pages: int = 0
    seconds: float = 0.0
    reembedded: bool = False
    resumed: bool = False
    source_changed: bool = False
    notes: list[str] = field(default_factory=list)
    verify: VerifyReport | None = None

    @property
    def rate(self) -> float:
        return self.copied / self.seconds if self.seconds else 0.0


def content_hash(doc: Document) -> str:
    """Id, text and metadata (with each value's kind: 1, 1.0 and True differ), hashed."""
    meta = sorted((k, type(v).__name__, v) for k, v in doc.metadata.items())
    blob = json.dumps([doc.id, doc.text, meta], ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _unit(docs: list[Document]) -> bool:
    norms = np.linalg.norm(np.stack([np.asarray(d.vector, dtype=np.float64) for d in docs]), axis=1)
    return bool(np.all(np.abs(norms - 1.0) < UNIT_TOLERANCE))


def copy_collection(
    source: Source,
    destination: Collection,
    *,
    reembed: Embedder | None = None,
    append: bool = False,
    batch_size: int = 1000,
    progress: bool = True,
    verify: bool = False,
    queries: int = 20,
    into: Namespace = ALL_NAMESPACES,
) -> CopyReport:
    """Copy every document of ``source`` into ``destination`` (see the module docstring for the guarantees):
    each into its own namespace (``into`` left out: a source read whole keeps its namespaces), or all into
    ``into``.

    Refused before anything is written: another embedder than the source's (unless ``reembed``), another
    dimension, a metric whose scores would mean something else, a source with namespaces copied whole into
    a destination without them, and a destination that holds other data (unless ``append``)."""
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise TransferError(f"batch_size must be a positive integer, got {batch_size!r}")
    picked = source.namespace
    if into is ALL_NAMESPACES and isinstance(picked, str):
        into = picked  # one namespace read: written into the namespace of the same name
    primary = destination.primary
    report = CopyReport(source.label, f"{primary.name} {primary.location().split('|', 1)[-1]}")
    report.reembedded = reembed is not None
    dest_manifest = primary.read_manifest() if primary.dim is not None else None
    cursor = _plan(source, destination, dest_manifest, reembed=reembed, append=append, report=report, into=into)
    check_metric = reembed is None and source.metric != destination.metric
    before = source.state()
    total = source.count()
    start = time.perf_counter()
    started = ((dest_manifest or {}).get(CHECKPOINT) or {}).get("started") if report.resumed else None
    checkpoint = {
        "source": source.location,
        "label": source.label,
        "reembed": reembed is not None,
        "started": started or _now(),
        "state": "running",
        "cursor": cursor,
        "copied": report.already,
    }
    last = -CHECKPOINT_EVERY_S  # the first page is checkpointed at once
    with tqdm(
        total=total, initial=min(report.already, total), desc=f"copy {source.label}", unit="doc", disable=not progress
    ) as bar:
        for page in source.scan(batch_size, cursor):
            docs = page.documents
            if docs:
                if check_metric and not _unit(docs):
                    raise TransferError(
                        f"{source.label} uses metric {source.metric!r} and holds vectors that are not unit length "
                        f"(first page with one ends at cursor {page.cursor!r}); the destination's "
                        f"{destination.metric!r} would rank them differently: set the destination's metric to "
                        f"{source.metric!r}. Pages before this one were copied; the same copy resumes from its "
                        "last checkpoint."
                    )
                if reembed is not None:
                    matrix = reembed.embed_documents([d.text for d in docs])
                    docs = [Document(d.text, d.id, d.metadata, matrix[r]) for r, d in enumerate(docs)]
                step = min(batch_size, destination.batch_size or batch_size)
                destination.upsert(docs, batch_size=step, namespace=into)
            report.copied += len(docs)
            report.pages += 1
            bar.update(len(docs))
            now = time.perf_counter()
            if primary.dim is not None and now - last >= CHECKPOINT_EVERY_S:
                checkpoint.update(cursor=page.cursor, copied=report.already + report.copied, updated=_now())
                destination.record(CHECKPOINT, dict(checkpoint))
                last = now
    report.seconds = time.perf_counter() - start
    if primary.dim is not None:
        checkpoint.update(state="done", cursor=None, finished=_now(), copied=report.already + report.copied)
        destination.record(CHECKPOINT, dict(checkpoint), counts=True)
    destination.flush()
    if source.state() != before:
        report.source_changed = True
        report.notes.append(
            "the source was written during the copy: documents written to pages already read, and deletions, "
            "are not in the destination; run the copy again to bring it level"
        )
    if verify:
        report.verify = verify_copy(
            source, destination, queries=queries, reembedded=reembed is not None, namespace=into
        )
    return report


def _plan(
    source: Source,
    destination: Collection,
    manifest: dict[str, Any] | None,
    *,
    reembed: Embedder | None,
    append: bool,
    report: CopyReport,
    into: Namespace = ALL_NAMESPACES,
) -> str | None:
    """Every check that can refuse the copy, before anything is written; returns where to start."""
    primary = destination.primary
    if source.dim is None:
        raise TransferError(f"{source.label} holds no documents: nothing to copy")
    primary.scoped_filter(None, into)  # a bad namespace, or one the destination cannot keep
    whole = into is ALL_NAMESPACES and source.namespace is ALL_NAMESPACES
    if whole and source.namespaced and not primary.options.namespaces:
        raise TransferError(
            f"{source.label} keeps namespaces: copy it into a collection made with namespaces: true, or copy one "
            "namespace (--namespace NAME)"
        )
    if reembed is not None:
        if destination.embedder is None:
            raise TransferError("--reembed needs a destination config that names its embedder")
        dim = reembed.dim
    else:
        dim = int(source.dim)
        given = destination.identity()
        recorded = source.identity()
        if given is not None and recorded is not None and given.get("key") != recorded.get("key"):
            raise EmbedderMismatchError(PRIMARY, recorded, given, f"copy from {source.label}")
        if destination.embedder is not None and destination.embedder.dim != dim:
            raise DimensionMismatchError(
                destination.embedder.dim,
                dim,
                f"{source.label}'s vectors",
                "the destination's embedder makes another dimension: copy with --reembed, or into a store "
                "without that embedder",
            )
        if recorded is not None and given is None:
            destination.adopt_identity(recorded)
        elif recorded is None:
            report.notes.append(
                f"{source.label} does not record which embedder wrote its vectors: the destination's manifest "
                + ("records the destination's embedder, unchecked" if given else "records none")
            )
        if source.metric != destination.metric:
            report.notes.append(
                f"metric {source.metric!r} -> {destination.metric!r}: allowed only for unit-length vectors, "
                "checked on every page (their ranking is the same under cosine, dot and l2)"
            )
    if primary.dim is not None and primary.dim != dim:
        raise DimensionMismatchError(primary.dim, dim, f"{source.label}'s vectors", "copy into another collection")
    if destination.chunking is None and source.chunking() is not None:
        destination.chunking = source.chunking()
    there = primary.count(namespace=into) if primary.dim is not None else 0
    mark = (manifest or {}).get(CHECKPOINT) or {}
    same = mark.get("source") == source.location and bool(mark.get("reembed")) == (reembed is not None)
    if there and not same and not append:
        what = f"a copy of {mark.get('label')}" if mark else "documents that were not copied from this source"
        raise TransferError(
            f"the destination {primary.name} {primary.location().split('|', 1)[-1]!r} already holds {there} "
            f"documents ({what}); copy into an empty collection, or pass --append to add to it"
        )
    if same and mark.get("state") == "running" and mark.get("cursor") is not None:
        report.resumed, report.already = True, int(mark.get("copied") or 0)
        report.notes.append(f"resumed after {report.already} documents (an earlier copy stopped)")
        return str(mark["cursor"])
    if same and mark.get("state") == "done":
        report.notes.append("copied before: read again from the start (documents already there are rewritten as is)")
    return None


def _documents_by_page(source: Source, batch: int) -> Iterator[list[Document]]:
    for page in source.scan(batch):
        if page.documents:
            yield page.documents
        if page.cursor == SCAN_END:
            return


def verify_copy(
    source: Source,
    destination: Collection | VectorStore,
    *,
    queries: int = 20,
    k: int = 10,
    seed: int = 0,
    tolerance: float = 1e-5,
    batch_size: int = 1000,
    reembedded: bool = False,
    namespace: Namespace = ALL_NAMESPACES,
) -> VerifyReport:
    """Counts, a content hash per id, the vectors, and the top-``k`` of ``queries`` sampled source vectors on
    both sides (ids, and scores to ``tolerance`` where both indexes are exact), in the destination's
    ``namespace`` (default: the whole collection)."""
    store = destination if isinstance(destination, VectorStore) else destination.primary
    ns = namespace
    out = VerifyReport(source_count=source.count(), destination_count=store.count(namespace=ns))
    if out.source_count != out.destination_count:
        out.problems.append(f"counts differ: source {out.source_count}, destination {out.destination_count}")
    rng = random.Random(seed)
    sample: list[np.ndarray] = []
    seen = 0
    same_metric = source.metric == store.metric
    for docs in _documents_by_page(source, batch_size):
        there = {d.id: d for d in store.get([d.id for d in docs], namespace=ns)}
        for doc in docs:
            seen += 1
            if len(sample) < queries:
                sample.append(np.asarray(doc.vector, dtype=np.float32))
            else:
                j = rng.randrange(seen)
                if j < queries:
                    sample[j] = np.asarray(doc.vector, dtype=np.float32)
            copy = there.get(doc.id)
            out.checked += 1
            if copy is None:
                out.missing.append(doc.id)
                continue
            if content_hash(copy) != content_hash(doc):
                out.content_differs.append(doc.id)
            if reembedded:
                continue
            a = np.asarray(doc.vector, dtype=np.float32)
            b = np.asarray(copy.vector, dtype=np.float32)
            if a.tobytes() == b.tobytes():
                out.vectors_identical += 1
                continue
            if store.metric == "cosine" or source.metric == "cosine":
                a, b = a / (np.linalg.norm(a) or 1.0), b / (np.linalg.norm(b) or 1.0)
            diff = float(np.max(np.abs(a.astype(np.float64) - b)))
            out.max_vector_diff = max(out.max_vector_diff, diff)
            if diff > tolerance:
                out.vectors_differ.append(doc.id)
    for what, ids in (("missing", out.missing), ("with other text or metadata", out.content_differs)):
        if ids:
            out.problems.append(f"{len(ids)} documents {what} in the destination, e.g. {ids[:3]}")
    if out.vectors_differ:
        out.problems.append(f"{len(out.vectors_differ)} vectors differ by more than {tolerance}")
    if reembedded:
        out.notes.append("re-embedded: vectors and answers are the new model's, so only texts and metadata compared")
        return out
    out.exact = source.exact and store.capabilities.exact
    overlaps: list[float] = []
    for vec in sample:
        theirs, ours = source.search(vec, k), store.search(vec, k, namespace=ns)
        out.queries += 1
        overlaps.append(_overlap(theirs, ours, tolerance, scores=same_metric))
        same, worst = _same_top(theirs, ours, tolerance, scores=same_metric)
        out.same_top += same
        out.max_score_diff = max(out.max_score_diff, worst)
    out.mean_overlap = float(np.mean(overlaps)) if overlaps else 1.0
    if out.exact and out.same_top != out.queries:
        out.problems.append(f"top-{k} differs on {out.queries - out.same_top} of {out.queries} queries")
    if not out.exact:
        # An approximate index's top-k measures the index's recall on this data, not the copy: near-duplicate
        # clusters took pgvector's HNSW (ef_search 40) to 0.86 on a copy whose every vector was bit-identical.
        # The copy is judged by counts, hashes and vectors above; the overlap is reported, never a failure.
        out.notes.append(
            f"an approximate index on one side: top-{k} overlap {out.mean_overlap:.3f} (the index's recall on "
            "this data; the copy itself is judged by counts, hashes and vectors)"
        )
    return out


def _overlap(theirs: list[Hit], ours: list[Hit], tolerance: float, *, scores: bool) -> float:
    """Share of the source's top-k found on our side; with equal scores any of the tied ids counts."""
    if not theirs:
        return 1.0
    if not scores:
        return len({h.id for h in theirs} & {h.id for h in ours}) / len(theirs)
    floor = theirs[-1].score - tolerance
    found = {h.id for h in theirs}
    return min(1.0, sum(1 for h in ours if h.id in found or h.score >= floor) / len(theirs))


def _same_top(theirs: list[Hit], ours: list[Hit], tolerance: float, *, scores: bool) -> tuple[bool, float]:
    """Same answers: the same ids at every rank, except that ids whose scores tie (within ``tolerance``) may
    swap places, and -- on the same metric -- scores within ``tolerance``."""
    if len(theirs) != len(ours):
        return False, float("inf")
    worst = 0.0
    if scores:
        for a, b in zip(theirs, ours, strict=True):
            worst = max(worst, abs(a.score - b.score))
        if worst > tolerance:
            return False, worst
    if [h.id for h in theirs] == [h.id for h in ours]:
        return True, worst
    if not scores or not theirs:
        return {h.id for h in theirs} == {h.id for h in ours}, worst
    floor = theirs[-1].score + tolerance  # ids scoring at the k-th score may differ between engines
    return {h.id for h in theirs if h.score > floor} <= {h.id for h in ours} and {
        h.id for h in ours if h.score > floor
    } <= {h.id for h in theirs}, worst
