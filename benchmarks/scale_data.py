"""Vectors for the scale benchmark: real MiniLM embeddings of 100K+ passages, and a synthetic million.

Real: no large public corpus installs offline here, so the corpus is English prose that does: the docstring
paragraphs of the Python standard library and of this environment's packages (files in sorted order, each
paragraph whitespace-collapsed, >= 60 characters, first occurrence only). They are embedded once with
all-MiniLM-L6-v2 through ragstore's OpenVINO int8 export (its gate: mean cosine >= 0.99 to torch fp32) and
cached under ``.ragstore/scale/``. Queries are other paragraphs from the same stream, never in the corpus.

Synthetic: a Gaussian mixture fitted to the real vectors, so the neighbourhood structure an ANN index sees
(clusters, their spread, the anisotropy inside each) matches, then normalised like the real ones. K-means
(FAISS) finds ``clusters`` centres; each cluster's residuals give a covariance, shrunk halfway towards the
pooled one (a few hundred points per cluster cannot pin down 384 dimensions alone); a sample picks a
cluster by its share of the real set and draws centre + residual. ``scale.py --check-synthetic`` measures
recall@10 of the same indexes on 100K real and 100K synthetic vectors (the issue asks for agreement within
0.02).
"""

from __future__ import annotations

import ast
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

CACHE = Path(".ragstore/scale")
MIN_CHARS = 60


def _paragraphs() -> Iterator[str]:
    import sysconfig

    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    seen: set[str] = set()
    for root in roots:
        for file in sorted(root.rglob("*.py")):
            try:
                tree = ast.parse(file.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                doc = ast.get_docstring(node)
                if not doc:
                    continue
                for para in re.split(r"\n\s*\n", doc):
                    text = " ".join(para.split())
                    if len(text) >= MIN_CHARS and text not in seen:
                        seen.add(text)
                        yield text


def corpus_texts(n: int) -> list[str]:
    """The first ``n`` paragraphs of the stream (cached as text, one per line)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    file = CACHE / f"paragraphs-{n}.txt"
    if file.exists():
        return file.read_text(encoding="utf-8").split("\n")
    out: list[str] = []
    for text in _paragraphs():
        out.append(text)
        if len(out) == n:
            break
    if len(out) < n:
        raise SystemExit(f"only {len(out)} paragraphs found, {n} needed")
    file.write_text("\n".join(out), encoding="utf-8")
    return out


def real_vectors(n: int, queries: int, backend: str = "openvino") -> tuple[np.ndarray, np.ndarray]:
    """``n`` corpus vectors and ``queries`` query vectors (float32, unit length), cached.

    ``backend="openvino"`` embeds through the gated OpenVINO int8 export (3x torch here), ``"torch"`` through
    torch fp32 (what a small CI run uses: no export to make first)."""
    vec_file, q_file = CACHE / f"real-{n}-{backend}.npy", CACHE / f"real-{n}-{backend}-queries-{queries}.npy"
    if vec_file.exists() and q_file.exists():
        return np.load(vec_file, allow_pickle=False), np.load(q_file, allow_pickle=False)
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder

    texts = corpus_texts(n + queries)
    # queries spread evenly through the stream, the rest the corpus
    is_query = np.zeros(len(texts), dtype=bool)
    is_query[np.linspace(0, len(texts) - 1, queries).astype(int)] = True
    quantize = "none" if backend == "torch" else "int8"
    emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend=backend, quantize=quantize)  # type: ignore[arg-type]
    t = time.perf_counter()
    corpus = [t_ for t_, q in zip(texts, is_query, strict=True) if not q]
    vecs = _embed(emb, corpus)
    qvecs = emb.embed_query([t_ for t_, q in zip(texts, is_query, strict=True) if q]).astype(np.float32)
    print(f"embedded {len(corpus)} passages in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    np.save(vec_file, vecs, allow_pickle=False)
    np.save(q_file, qvecs, allow_pickle=False)
    return vecs, qvecs


def _embed(emb: object, texts: list[str], step: int = 4096) -> np.ndarray:
    from rich.progress import track

    parts = [
        emb.embed_documents(texts[i : i + step])  # type: ignore[attr-defined]
        for i in track(range(0, len(texts), step), description="embedding the scale corpus")
    ]
    return np.concatenate(parts).astype(np.float32)


class Mixture:
    """A Gaussian mixture fitted to unit vectors; samples are normalised back onto the sphere."""

    def __init__(self, vectors: np.ndarray, clusters: int = 256, shrink: float = 0.5, seed: int = 0) -> None:
        import faiss

        x = np.ascontiguousarray(vectors, dtype=np.float32)
        km = faiss.Kmeans(x.shape[1], clusters, niter=20, seed=seed, spherical=False, verbose=False)
        km.train(x)
        _, assign = km.index.search(x, 1)
        assign = assign[:, 0]
        self.centres = km.centroids.astype(np.float64)
        resid = x - km.centroids[assign]
        pooled = np.cov(resid, rowvar=False)
        self.weights = np.bincount(assign, minlength=clusters) / len(x)
        self.chol = []
        for c in range(clusters):
            r = resid[assign == c]
            own = np.cov(r, rowvar=False) if len(r) > 1 else pooled
            cov = (1 - shrink) * own + shrink * pooled + 1e-6 * np.eye(x.shape[1])
            self.chol.append(np.linalg.cholesky(cov).astype(np.float32))

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        which = rng.choice(len(self.weights), size=n, p=self.weights)
        out = np.empty((n, self.centres.shape[1]), dtype=np.float32)
        for c in np.unique(which):
            rows = np.flatnonzero(which == c)
            z = rng.standard_normal((len(rows), self.centres.shape[1]), dtype=np.float32)
            out[rows] = self.centres[c] + z @ self.chol[c].T
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def synthetic_vectors(real: np.ndarray, n: int, queries: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic corpus vectors and ``queries`` queries from the mixture fitted to ``real`` (cached)."""
    base = CACHE / f"synthetic-{n}-of-{len(real)}"
    vec_file, q_file = base.with_suffix(".npy"), Path(f"{base}-queries-{queries}.npy")
    if vec_file.exists() and q_file.exists():
        return np.load(vec_file, mmap_mode="r"), np.load(q_file, allow_pickle=False)
    mix = Mixture(real, clusters=max(1, min(256, len(real) // 100)))
    out = np.lib.format.open_memmap(vec_file.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(n, 384))
    step = 100_000
    for i in range(0, n, step):
        out[i : i + step] = mix.sample(min(step, n - i), seed + i)
    out.flush()
    del out
    qs = mix.sample(queries, seed + 10**9)
    np.save(q_file, qs, allow_pickle=False)
    vec_file.with_suffix(".tmp.npy").rename(vec_file)
    return np.load(vec_file, mmap_mode="r"), qs


if __name__ == "__main__":
    v, q = real_vectors(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, 1000)
    print(v.shape, q.shape)


def each_store(names: list[str], kinds: dict[str, str], prefix: str) -> Iterator[tuple[str, Path, str | None]]:
    """``(name, scratch folder, pgvector dsn)`` for each store of a benchmark run: one embedded PostgreSQL for
    the run when a pgvector store is among them, the folder emptied between stores and removed at the end."""
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix=prefix))
    dsn = None
    try:
        if any(kinds[name] == "pgvector" for name in names):
            from ragstore.adapters import _pgserver

            dsn = _pgserver.acquire(work / "pg")
        for name in names:
            yield name, work, dsn
            for child in work.iterdir():
                if child.name != "pg":
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
    finally:
        if dsn is not None:
            from ragstore.adapters import _pgserver

            _pgserver.release(work / "pg")
        shutil.rmtree(work, ignore_errors=True)


def pyplot() -> Any:
    """matplotlib's pyplot on the file backend, or None where matplotlib is not installed (no plot then)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
