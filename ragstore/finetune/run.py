"""Train, evaluate against the base model on held-out queries, and only then hand the model over.

Steps: validate the data (``data.py``), score the base model on the held-out queries, mine hard negatives
with sentence-transformers' ``mine_hard_negatives`` (top ranks skipped, a margin against the positive, so
unlabeled positives are not used as negatives), train with ``SentenceTransformerTrainer`` (MNRL or its
cached variant, optionally inside ``MatryoshkaLoss``, optionally LoRA through PEFT, merged before saving),
score again, and write the model folder with ``ragstore_finetune.json`` and a model card. A model that
scores worse than the base is written but not *marked*: ``--update-config`` refuses it unless forced.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..embedders.sentence_transformers import SentenceTransformerEmbedder
from ..errors import ConfigError, DatasetError
from ..eval.metrics import evaluate, evaluate_per_query
from .adapt import corpus_pairs
from .config import FinetuneConfig, NegativesSpec, load_finetune_config
from .data import Pair, TrainingData, load_training_data
from .mine import mine_from_index

MEASURES = ["nDCG@10", "Recall@10", "MRR@10"]
RESULT_FILE = "ragstore_finetune.json"


@dataclass
class FinetuneResult:
    output: Path
    before: dict[str, float]
    after: dict[str, float]
    improved: bool
    marked: bool  # usable as the config's model (improved, or forced)
    data: dict[str, Any]
    seconds: dict[str, float]
    matryoshka: dict[str, dict[str, float]] | None = None
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gain(self) -> float:
        return self.after["nDCG@10"] - self.before["nDCG@10"]


def _normalise(m: np.ndarray) -> np.ndarray:
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def score(
    embedder: SentenceTransformerEmbedder, data: TrainingData, dims: list[int] | None = None, depth: int = 100
) -> dict[str, dict[str, float]]:
    """Held-out quality, exact search over the whole corpus, at full size and at each Matryoshka dim."""
    return score_set(embedder, data.corpus, data.test_queries, data.test_qrels, dims, depth)


def score_set(
    embedder: SentenceTransformerEmbedder,
    corpus: dict[str, str],
    queries_by_id: dict[str, str],
    qrels: dict[str, dict[str, int]],
    dims: list[int] | None = None,
    depth: int = 100,
    docs: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Means of each measure at full size (``"full"``) and at each Matryoshka dim; ``docs``: the corpus'
    vectors when another query set has just embedded it."""
    runs = _search(embedder, corpus, queries_by_id, dims, depth, docs)
    return {dim: evaluate(qrels, run, MEASURES) for dim, run in runs.items()}


def _score_held_out(
    embedder: SentenceTransformerEmbedder, data: TrainingData, same_lang: TrainingData | None, dims: list[int] | None
) -> tuple[dict[str, dict[str, float]], dict[str, float] | None]:
    """The held-out queries and, for the bilingual option, the corpus-language guard's: one corpus, embedded once."""
    docs = embedder.embed_documents(list(data.corpus.values()))
    held = score_set(embedder, data.corpus, data.test_queries, data.test_qrels, dims, docs=docs)
    if same_lang is None:
        return held, None
    shared = docs if same_lang.corpus == data.corpus else None
    guard = score_set(embedder, same_lang.corpus, same_lang.test_queries, same_lang.test_qrels, docs=shared)
    return held, guard["full"]


def _search(
    embedder: SentenceTransformerEmbedder,
    corpus: dict[str, str],
    queries_by_id: dict[str, str],
    dims: list[int] | None = None,
    depth: int = 100,
    docs: np.ndarray | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Exact search, one run per dim; queries go in chunks, so memory holds one chunk x corpus score block,
    never the full matrix."""
    ids = list(corpus)
    if docs is None:
        docs = embedder.embed_documents([corpus[i] for i in ids])
    qids = list(queries_by_id)
    queries = embedder.embed_query([queries_by_id[q] for q in qids])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for dim in [None, *(dims or [])]:
        d = docs if dim is None else _normalise(docs[:, :dim])
        q = queries if dim is None else _normalise(queries[:, :dim])
        run: dict[str, dict[str, float]] = {}
        for start in range(0, len(qids), 256):
            block = q[start : start + 256] @ d.T
            top = np.argsort(-block, axis=1)[:, :depth]
            for row, qid in enumerate(qids[start : start + 256]):
                run[qid] = {ids[j]: float(block[row, j]) for j in top[row]}
        out["full" if dim is None else str(dim)] = run
    return out


def score_dev(embedder: SentenceTransformerEmbedder, data: TrainingData) -> float:
    """nDCG@10 of the dev pairs over the training-side corpus: what picks the epoch, never the held-out set."""
    per = dev_per_query(embedder, data)
    return sum(per.values()) / max(len(per), 1)


def dev_per_query(embedder: SentenceTransformerEmbedder, data: TrainingData) -> dict[str, float]:
    """nDCG@10 of each dev question: two settings compared on the same questions give a paired standard error,
    which says whether the dev split can tell them apart at all."""
    texts = list(dict.fromkeys([*data.train_corpus, *(p.positive for p in data.dev)]))
    ids = {t: f"d{i}" for i, t in enumerate(texts)}
    qid_of: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for p in data.dev:
        qid = qid_of.setdefault(p.query, f"q{len(qid_of)}")
        qrels.setdefault(qid, {})[ids[p.positive]] = 1
    queries = {qid: text for text, qid in qid_of.items()}
    run = _search(embedder, {i: t for t, i in ids.items()}, queries)["full"]
    return evaluate_per_query(qrels, run, ["nDCG@10"])["nDCG@10"]


def _losses() -> Any:
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import losses  # type: ignore[no-redef,attr-defined]
    return losses


def _triplets(
    cfg: FinetuneConfig, data: TrainingData, embedder: SentenceTransformerEmbedder, neg: NegativesSpec | None = None
) -> tuple[Any, dict]:
    """(anchor, positive, negative) rows: the user's negatives where given, mined ones for the rest (by
    sentence-transformers' miner with the base model, or from a ragstore index with the current model)."""
    datasets = require("datasets", "finetune", "datasets")
    neg = neg or cfg.hard_negatives
    given = [p for p in data.train if p.negatives]
    bare = [p for p in data.train if not p.negatives]
    rows: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    for p in given:
        for n in p.negatives[: neg.num]:
            rows["anchor"].append(p.query)
            rows["positive"].append(p.positive)
            rows["negative"].append(n)
    info: dict[str, Any] = {"given_negatives": len(given), "mined_for": 0, "without_negative": 0, "miner": neg.mine}
    if not neg.enabled:
        if given:
            raise ConfigError("some pairs carry negatives but hard_negatives.enabled is false: enable it or drop them")
        pairs = {"anchor": [p.query for p in bare], "positive": [p.positive for p in bare]}
        return datasets.Dataset.from_dict(pairs), info
    rest: list[Pair] = []
    if bare and neg.mine == "index":
        mined, rest, counts = mine_from_index(embedder, bare, data.train_corpus, neg)
        info.update(counts)
        for key in rows:
            rows[key] += mined[key]
    elif bare:
        from sentence_transformers.util import mine_hard_negatives

        static = mine_hard_negatives(
            datasets.Dataset.from_dict({"anchor": [p.query for p in bare], "positive": [p.positive for p in bare]}),
            embedder.model,
            corpus=data.train_corpus or None,
            range_min=neg.range_min,
            range_max=neg.range_max,
            relative_margin=neg.relative_margin,
            absolute_margin=neg.absolute_margin,
            num_negatives=neg.num,
            sampling_strategy="top",
            query_prompt=embedder.query_prefix or None,
            corpus_prompt=embedder.passage_prefix or None,
            batch_size=neg.batch_size,
            # a queries x corpus score matrix past ~50M cells goes through FAISS in batches instead
            use_faiss=len(data.train_corpus) * len(bare) > 50_000_000 and importlib.util.find_spec("faiss") is not None,
            output_format="triplet",
            verbose=False,
        )
        found = set(static["anchor"])
        info["mined_for"] = len(found)
        rest = [p for p in bare if p.query not in found]
        info["without_negative"] = len(rest)
        for key in rows:
            rows[key] += list(static[key])
    if not rows["anchor"]:  # nothing passed the margin: in-batch negatives only, and say so
        warnings.warn(
            "hard-negative mining found no negative that passes the margin; training on pairs with in-batch "
            "negatives only (widen range_max or lower the margin)",
            stacklevel=3,
        )
        info["fallback"] = "in-batch negatives only"
        pairs = {"anchor": [p.query for p in bare], "positive": [p.positive for p in bare]}
        return datasets.Dataset.from_dict(pairs), info
    parts = _tuples(rows) if neg.layout == "tuple" and neg.num > 1 else {"with_negatives": rows}
    if rest:  # pairs no negative passed the margin for still train, on in-batch negatives
        info["pairs_without_negative"] = "trained as pairs (in-batch negatives)"
        parts["pairs"] = {"anchor": [p.query for p in rest], "positive": [p.positive for p in rest]}
    if len(parts) == 1:
        return datasets.Dataset.from_dict(next(iter(parts.values()))), info
    return datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in parts.items()}), info


def _tuples(rows: dict[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    """Triplet rows folded into one row per (anchor, positive) with all its negatives as columns; anchors with
    fewer negatives than the rest go in a dataset of their own width (a batch comes from one dataset)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for a, p, n in zip(rows["anchor"], rows["positive"], rows["negative"], strict=True):
        grouped.setdefault((a, p), []).append(n)
    parts: dict[str, dict[str, list[str]]] = {}
    for (a, p), negs in grouped.items():
        part = parts.setdefault(
            f"negatives_{len(negs)}",
            {"anchor": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(len(negs))}},
        )
        part["anchor"].append(a)
        part["positive"].append(p)
        for i, n in enumerate(negs):
            part[f"negative_{i + 1}"].append(n)
    return parts


def _rows(train_set: Any) -> int:
    return sum(len(d) for d in train_set.values()) if isinstance(train_set, dict) else len(train_set)


def _add_lora(model: Any, spec: Any) -> None:
    peft = require("peft", "finetune", "peft")
    config = peft.LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        task_type=peft.TaskType.FEATURE_EXTRACTION,
    )
    first, name = _inner(model)
    setattr(first, name, peft.get_peft_model(getattr(first, name), config))


def _inner(model: Any) -> tuple[Any, str]:
    """The transformer module and the attribute holding its Hugging Face model (``model`` since
    sentence-transformers 6, where ``auto_model`` became a read-only alias; ``auto_model`` before)."""
    first = model[0]
    return first, "model" if "model" in first._modules else "auto_model"


def _merge_lora(model: Any) -> None:
    first, name = _inner(model)
    setattr(first, name, getattr(first, name).merge_and_unload())


SMALL_SET = 50  # below this many training pairs the held-out figure is mostly noise


class _Budget:
    """The run's deadline: a trainer stops at the first step past it; a new epoch or trial starts only if
    the last one's duration still fits."""

    def __init__(self, minutes: float | None, reserve: float = 0.0) -> None:
        self.deadline = None if minutes is None else time.perf_counter() + minutes * 60 - reserve
        self.hit = False

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.perf_counter()

    def fits(self, seconds: float) -> bool:
        ok = self.left() >= seconds
        self.hit = self.hit or not ok
        return ok

    def callback(self) -> Any:
        transformers = require("transformers", "finetune", "transformers")
        budget = self

        class Deadline(transformers.TrainerCallback):  # type: ignore[name-defined]
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
                if budget.left() <= 0:
                    budget.hit = True
                    control.should_training_stop = True
                return control

        return Deadline()


@dataclass
class _Fit:
    """What one supervised training pass left: dev history, the best dev figure and the epoch it came at."""

    history: list[dict[str, Any]]
    best_dev: float | None
    best_epoch: float
    stopped: str
    mining: list[dict[str, Any]]
    state: dict[str, Any] | None = None
    best_dev_per_query: list[float] | None = None  # in dev-question order, for paired comparisons


class _Trainer:
    """Runs ``SentenceTransformerTrainer`` one epoch (or part) at a time: between passes the dev split is
    scored (early stopping, best epoch kept), the budget checked, and index-mined negatives refreshed. The
    learning rate follows one linear decay over the whole run, each pass taking its slice of it."""

    def __init__(self, cfg: FinetuneConfig, embedder: SentenceTransformerEmbedder, progress: bool, say: Any) -> None:
        self.cfg, self.embedder, self.progress, self.say = cfg, embedder, progress, say
        self.st = require("sentence_transformers", "finetune", "sentence-transformers")
        self.model = embedder.model
        self.log: list[dict[str, Any]] = []
        self.scratch = cfg.resolve_path(cfg.output).parent / f".{Path(cfg.output).name}.checkpoints"
        passage = embedder.passage_prefix
        widest = max([cfg.hard_negatives.num, *((cfg.search.num_negatives or []) if cfg.search else [])])
        negatives = {f"negative_{i}": passage for i in range(1, widest + 1)}  # the tuple layout's columns
        prompts = {"anchor": embedder.query_prefix, "positive": passage, "negative": passage, **negatives}
        self.prompts = {k: v for k, v in prompts.items() if v} or None

    def loss(self, guide: Any | None, cached: bool, mini_batch: int, dims: list[int] | None) -> Any:
        losses = _losses()
        if guide is not None and cached:
            loss = losses.CachedGISTEmbedLoss(self.model, guide, temperature=0.05, mini_batch_size=mini_batch)
        elif guide is not None:
            loss = losses.GISTEmbedLoss(self.model, guide, temperature=0.05)
        elif cached:
            loss = losses.CachedMultipleNegativesRankingLoss(self.model, mini_batch_size=mini_batch)
        else:
            loss = losses.MultipleNegativesRankingLoss(self.model)
        return losses.MatryoshkaLoss(self.model, loss, matryoshka_dims=dims) if dims else loss

    def run_pass(
        self,
        train_set: Any,
        loss: Any,
        epochs: float,
        lr: tuple[float, float],
        warmup: int,
        batch: int,
        budget: _Budget,
    ) -> None:
        planned = self.cfg.train.max_steps or math.ceil(math.ceil(_rows(train_set) / batch) * epochs)
        warmup = min(warmup, max(planned - 1, 0))  # the decay needs at least one step after the warm-up
        args = self.st.SentenceTransformerTrainingArguments(
            output_dir=str(self.scratch),
            num_train_epochs=epochs,
            max_steps=self.cfg.train.max_steps or -1,
            per_device_train_batch_size=batch,
            learning_rate=lr[0],
            lr_scheduler_type="polynomial",
            lr_scheduler_kwargs={"lr_end": lr[1], "power": 1.0},
            warmup_steps=warmup,
            weight_decay=self.cfg.train.weight_decay,
            seed=self.cfg.train.seed,
            data_seed=self.cfg.train.seed,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            batch_sampler="no_duplicates",
            prompts=self.prompts,
            disable_tqdm=not self.progress,
            use_cpu=self.model.device.type == "cpu",
        )
        trainer = self.st.SentenceTransformerTrainer(
            model=self.model, args=args, train_dataset=train_set, loss=loss, callbacks=[budget.callback()]
        )
        trainer.train()
        shutil.rmtree(self.scratch, ignore_errors=True)
        offset = self.log[-1]["step"] if self.log else 0
        self.log += [{**e, "step": offset + e.get("step", 0)} for e in trainer.state.log_history if "loss" in e]

    def fit_pairs(self, pairs: list[tuple[str, str]], epochs: float, lr: float, budget: _Budget) -> None:
        """Corpus-only adaptation: MNRL on the corpus' own pairs, in-batch negatives, one decay."""
        datasets = require("datasets", "finetune", "datasets")
        rows = {"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]}
        loss = self.loss(None, False, 16, self.cfg.loss.matryoshka_dims)
        batch = self.cfg.train.batch_size
        warmup = int(math.ceil(len(pairs) / batch) * epochs * self.cfg.train.warmup_ratio)
        self.run_pass(datasets.Dataset.from_dict(rows), loss, epochs, (lr, 0.0), warmup, batch, budget)

    def fit(
        self,
        data: TrainingData,
        budget: _Budget,
        lr: float,
        batch: int,
        neg: NegativesSpec,
        guide: Any | None,
        keep_state: bool = False,
        until: float | None = None,
    ) -> _Fit:
        """``until``: stop after this many epochs of the planned schedule (the refit replays the chosen run's
        learning rates up to its best epoch)."""
        cfg = self.cfg
        total = cfg.train.decay_epochs or cfg.train.epochs  # the learning rate's decay runs over this many
        stop = until if until is not None else cfg.train.epochs
        cuts = sorted({*(float(e) for e in range(1, math.ceil(stop))), stop})
        refresh_at = None
        if cfg.train.max_steps:  # a step cap is one pass: no mid-run refresh or per-epoch dev scoring
            cuts = [stop]
        elif neg.enabled and neg.mine == "index" and neg.refresh:
            refresh_at = float(math.floor(stop / 2)) if stop >= 2 else stop / 2
            cuts = sorted({*cuts, refresh_at})
        loss = self.loss(guide, cfg.loss.type == "cached_mnrl", cfg.loss.mini_batch_size, cfg.loss.matryoshka_dims)
        fit = _Fit([], None, 0.0, "epochs done", [])
        bad, start, train_set, last = 0, 0.0, None, 0.0
        for cut in cuts:
            if train_set is None or start == refresh_at:
                t = time.perf_counter()
                train_set, mining = _triplets(cfg, data, self.embedder, neg)
                mining["rows"] = _rows(train_set)
                fit.mining.append({"at_epoch": start, "seconds": round(time.perf_counter() - t, 1), **mining})
                if start:
                    self.say(f"[dim]negatives re-mined from the index at epoch {start:g}: {mining}[/]")
            steps = math.ceil(_rows(train_set) / batch)
            warmup = int(steps * total * cfg.train.warmup_ratio) if start == 0 else 0
            t = time.perf_counter()
            self.run_pass(
                train_set, loss, cut - start, (lr * (1 - start / total), lr * (1 - cut / total)), warmup, batch, budget
            )
            entry: dict[str, Any] = {"epoch": cut, "train_s": round(time.perf_counter() - t, 1)}
            if data.dev:
                per_query = dev_per_query(self.embedder, data)
                dev = sum(per_query.values()) / len(per_query)
                entry["dev_ndcg10"] = dev
                if fit.best_dev is None or dev > fit.best_dev:
                    fit.best_dev, fit.best_epoch, bad = dev, cut, 0
                    fit.best_dev_per_query = [round(v, 6) for v in per_query.values()]
                    if keep_state or cut != cuts[-1]:
                        fit.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    bad += 1
                self.say(
                    f"[dim]epoch {cut:g}: dev nDCG@10 {dev:.4f} (best {fit.best_dev:.4f} at {fit.best_epoch:g})[/]"
                )
            else:
                fit.best_epoch = cut
            fit.history.append(entry)
            last = time.perf_counter() - t
            if budget.hit:
                fit.stopped = f"budget reached at epoch {cut:g}"
                break
            if data.dev and bad >= cfg.train.patience:
                fit.stopped = f"early stop: no dev gain for {bad} pass(es)"
                break
            if cut != cuts[-1] and not budget.fits(last * (cuts[cuts.index(cut) + 1] - cut) / max(cut - start, 1e-9)):
                fit.stopped = f"budget: the next pass would not fit (stopped at epoch {cut:g})"
                break
            start = cut
        if fit.state is not None and fit.best_epoch != fit.history[-1]["epoch"]:
            self.model.load_state_dict(fit.state)  # back to the best dev epoch
        return fit


def _dev_best(fits: list[dict[str, Any]]) -> dict[str, Any]:
    return max(fits, key=lambda f: f["best_dev_ndcg10"] if f["best_dev_ndcg10"] is not None else -math.inf)


def _refit(
    trainer: _Trainer,
    data: TrainingData,
    budget: _Budget,
    chosen: dict[str, Any],
    start_state: dict[str, Any],
    guide: Any | None,
    say: Any,
) -> dict[str, Any]:
    """The dev split chose the settings and the epoch; its pairs are then worth more as training data. The
    chosen run is replayed from the start on training + dev pairs up to its best epoch. If the budget cannot
    take it (judged by the chosen run's own pace), or cuts it short, the dev-chosen model stays."""
    if chosen["best_dev_ndcg10"] is None:
        return {"done": False, "why": "no dev figure to choose by"}
    if budget.hit:
        return {"done": False, "why": "budget already reached"}
    epochs = float(chosen["best_epoch"])
    grow = (len(data.train) + len(data.dev)) / max(len(data.train), 1)
    pace = sum(h["train_s"] for h in chosen["history"] if h["epoch"] <= epochs)
    pace += sum(m["seconds"] for m in chosen["mining"] if m["at_epoch"] < epochs)
    estimate = pace * grow
    record: dict[str, Any] = {"epochs": epochs, "pairs": len(data.train) + len(data.dev), "estimate_s": round(estimate)}
    if not budget.fits(estimate):
        say(
            f"[yellow]budget:[/] no time to refit on the dev pairs too (~{estimate / 60:.1f} min); "
            "keeping the dev-chosen model"
        )
        return {**record, "done": False, "why": "budget"}
    model = trainer.model
    chosen_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(start_state)
    say(f"[dim]refit: {record['pairs']} pairs (training + dev) for {epochs:g} epoch(s), the dev-chosen settings[/]")
    t = time.perf_counter()
    merged = dataclasses.replace(data, train=[*data.train, *data.dev], dev=[])
    neg = trainer.cfg.hard_negatives.model_copy(update={"num": chosen["num"]})
    fit = trainer.fit(merged, budget, chosen["learning_rate"], chosen["batch_size"], neg, guide, until=epochs)
    record["seconds"] = round(time.perf_counter() - t, 1)
    record["mining"] = fit.mining
    if budget.hit:
        model.load_state_dict(chosen_state)
        say("[yellow]budget:[/] the refit was cut short; keeping the dev-chosen model")
        return {**record, "done": False, "why": "budget reached during the refit"}
    return {**record, "done": True}


def _corpus_language_questions(cfg: FinetuneConfig) -> TrainingData | None:
    """The bilingual option (questions in one language, passages in another) must not cost the questions in the
    corpus' own language: where the BEIR folder has them, the same held-out split in that language is scored
    before and after, and a fall there leaves the model unmarked too."""
    spec = cfg.data
    if not spec.beir or not spec.queries or not spec.corpus or spec.queries == spec.corpus or "+" in spec.corpus:
        return None
    other = cfg.model_copy(update={"data": spec.model_copy(update={"queries": spec.corpus, "generate": None})})
    try:
        return load_training_data(other)
    except (DatasetError, ConfigError):
        return None


def _trial_grid(cfg: FinetuneConfig) -> list[dict[str, Any]]:
    if cfg.search is None:
        return [
            {
                "learning_rate": cfg.train.learning_rate,
                "batch_size": cfg.train.batch_size,
                "num": cfg.hard_negatives.num,
            }
        ]
    return [
        {"learning_rate": lr, "batch_size": bs, "num": n}
        for lr in cfg.search.learning_rate or [cfg.train.learning_rate]
        for bs in cfg.search.batch_size or [cfg.train.batch_size]
        for n in cfg.search.num_negatives or [cfg.hard_negatives.num]
    ]


def finetune(
    config: FinetuneConfig | dict[str, Any] | str | Path, *, progress: bool = True, console: Any = None
) -> FinetuneResult:
    """Run one fine-tuning job end to end; every input problem raises before the model is loaded."""
    cfg = config if isinstance(config, FinetuneConfig) else load_finetune_config(config)
    require("sentence_transformers", "finetune", "sentence-transformers")
    say = console.print if console is not None else (lambda *a, **k: None)
    out = cfg.resolve_path(cfg.output)
    if out.exists() and any(out.iterdir()) and not (out / RESULT_FILE).exists():
        raise ConfigError(f"output folder {out} is not empty and was not written by ragstore finetune")
    if cfg.search is not None and cfg.supervised and cfg.train.dev_fraction <= 0:
        raise ConfigError("search picks settings on the dev split: set train.dev_fraction > 0")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    data = load_training_data(cfg)
    if cfg.search is not None and cfg.supervised and not data.dev:
        raise ConfigError(f"search needs a dev split, and there is none: {data.groups.get('dev')}")
    same_lang = _corpus_language_questions(cfg)
    mixed = 0
    if same_lang is not None and cfg.data.mix_corpus_language and cfg.supervised:
        # the corpus-language questions of the same training (and dev) groups train alongside: without them
        # the model drifts towards the other language and the corpus' own questions fall
        data.train, data.dev, mixed = data.train + same_lang.train, data.dev + same_lang.dev, len(same_lang.train)
    say(f"[dim]data: {data.describe()}[/]")
    if cfg.supervised and len(data.train) < SMALL_SET:
        note = (
            f"only {len(data.train)} training pairs: expect little or no gain and a noisy held-out figure "
            f"(gains here showed from a few hundred pairs); the guard still compares with the base"
        )
        warnings.warn(note, stacklevel=2)
        say(f"[yellow]warning:[/] {note}")
    # torch: training updates these very weights (an export would keep scoring the base model)
    embedder = SentenceTransformerEmbedder(cfg.base_model, max_seq_length=cfg.train.max_seq_length, backend="torch")
    dims = cfg.loss.matryoshka_dims
    if dims and max(dims) > embedder.dim:
        raise ConfigError(f"loss.matryoshka_dims {dims} exceed the model's dimension {embedder.dim}")
    times["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    before_all, same_before = _score_held_out(embedder, data, same_lang, dims)
    times["eval_before"] = time.perf_counter() - t
    say(f"base model on {len(data.test_queries)} held-out queries: {before_all['full']}")
    # the final scoring and save must fit too: keep what the first scoring took, and a margin, in reserve
    budget = _Budget(cfg.train.budget_minutes, reserve=times["eval_before"] + 15 + (time.perf_counter() - t0))

    model = embedder.model
    guide = None
    if cfg.loss.guide:  # a second, frozen copy of the base, found the same way (offline folders included)
        guide = SentenceTransformerEmbedder(
            cfg.base_model, max_seq_length=cfg.train.max_seq_length, backend="torch"
        ).model
        guide.requires_grad_(False)
    if cfg.loss.lora is not None:
        _add_lora(model, cfg.loss.lora)
    trainer = _Trainer(cfg, embedder, progress, say)
    data_info: dict[str, Any] = {**data.describe()}
    if mixed:
        data_info["mixed_corpus_language_pairs"] = mixed
    if data.dev:  # the base on the dev split: what the epochs' dev figures are measured against
        data_info["dev_base_ndcg10"] = score_dev(embedder, data)
        say(f"[dim]base model on {len(data.dev)} dev pairs: nDCG@10 {data_info['dev_base_ndcg10']:.4f}[/]")
    if cfg.adapt is not None:
        t = time.perf_counter()
        pairs, adapt_info = corpus_pairs(data.passages, cfg.adapt)
        data_info["adapt"] = adapt_info
        say(f"[dim]corpus-only adaptation: {adapt_info}[/]")
        if not pairs:
            raise DatasetError(f"adapt: the corpus made no pairs ({adapt_info})")
        trainer.fit_pairs(pairs, cfg.adapt.epochs, cfg.adapt.learning_rate, budget)
        times["adapt"] = time.perf_counter() - t
    fits: list[dict[str, Any]] = []
    if cfg.supervised and not budget.hit:
        t = time.perf_counter()
        trials = _trial_grid(cfg)
        refit = cfg.train.refit and bool(data.dev)
        keep = len(trials) > 1 or refit
        start_state = {k: v.detach().clone() for k, v in model.state_dict().items()} if keep else None
        best: tuple[float, dict[str, Any] | None] = (-math.inf, None)
        for n, trial in enumerate(trials):
            if n and start_state is not None:
                if not budget.fits(fits[-1]["seconds"]):
                    say(f"[yellow]budget:[/] {len(trials) - n} trial(s) not run; keeping the best so far")
                    break
                model.load_state_dict(start_state)
            neg = cfg.hard_negatives.model_copy(update={"num": trial["num"]})
            ts = time.perf_counter()
            fit = trainer.fit(data, budget, trial["learning_rate"], trial["batch_size"], neg, guide, len(trials) > 1)
            fits.append(
                {
                    **trial,
                    "best_dev_ndcg10": fit.best_dev,
                    "best_dev_per_query": fit.best_dev_per_query,
                    "best_epoch": fit.best_epoch,
                    "stopped": fit.stopped,
                    "history": fit.history,
                    "mining": fit.mining,
                    "seconds": round(time.perf_counter() - ts, 1),
                }
            )
            if len(trials) > 1:
                say(f"trial {n + 1}/{len(trials)} {trial}: dev nDCG@10 {fit.best_dev:.4f} at epoch {fit.best_epoch:g}")
                if fit.best_dev is not None and fit.best_dev > best[0]:
                    best = (fit.best_dev, fit.state)
            if budget.hit:
                break
        if len(trials) > 1 and best[1] is not None:
            model.load_state_dict(best[1])
            data_info["search"] = {"chosen": _dev_best(fits)}
        if refit and fits and start_state is not None:
            data_info["refit"] = _refit(trainer, data, budget, _dev_best(fits), start_state, guide, say)
        data_info["training_rows"] = fits[-1]["mining"][0]["rows"] if fits and fits[-1]["mining"] else 0
        data_info["mining"] = fits[-1]["mining"][0] if fits and fits[-1]["mining"] else {}
        times["train"] = time.perf_counter() - t
    data_info["fits"] = fits
    if budget.hit:
        data_info["budget"] = f"stopped at the {cfg.train.budget_minutes:g}-minute budget with the best model so far"
        say(f"[yellow]{data_info['budget']}[/]")
    if cfg.loss.lora is not None:
        _merge_lora(model)

    t = time.perf_counter()
    after_all, same_after = _score_held_out(embedder, data, same_lang, dims)
    times["eval_after"] = time.perf_counter() - t
    before, after = before_all.pop("full"), after_all.pop("full")
    gain = after["nDCG@10"] - before["nDCG@10"]
    improved = gain > cfg.min_gain
    if same_lang is not None and same_before is not None and same_after is not None:
        fell = same_after["nDCG@10"] < same_before["nDCG@10"]
        data_info["corpus_language_guard"] = {"language": cfg.data.corpus, "before": same_before, "after": same_after}
        if fell:  # better for the trained language but worse for the corpus' own: not marked
            improved = False
            say(
                f"[bold red]the held-out {cfg.data.corpus} questions fell: nDCG@10 {same_before['nDCG@10']:.4f} -> "
                f"{same_after['nDCG@10']:.4f}[/]"
            )
    marked = improved or cfg.force
    matryoshka = {d: {"base": before_all[d]["nDCG@10"], "finetuned": after_all[d]["nDCG@10"]} for d in before_all}

    out.mkdir(parents=True, exist_ok=True)
    prefixes = {k: v for k, v in {"query": embedder.query_prefix, "document": embedder.passage_prefix}.items() if v}
    if prefixes:  # saved prompts: the folder gets the same prefixes wherever it is loaded
        model.prompts = prefixes
    model.save(str(out))
    times["total"] = time.perf_counter() - t0
    result = FinetuneResult(out, before, after, improved, marked, data_info, times, matryoshka or None, trainer.log)
    _write_outputs(cfg, result)
    return result


def _write_outputs(cfg: FinetuneConfig, result: FinetuneResult) -> None:
    from importlib.metadata import version

    record = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": cfg.base_model,
        "config": cfg.model_dump(),
        **{k: v for k, v in asdict(result).items() if k not in ("output", "log")},
        "gain_ndcg10": result.gain,
        "versions": {p: version(p) for p in ("sentence-transformers", "transformers", "torch")},
    }
    (result.output / RESULT_FILE).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    with (result.output / "loss_log.jsonl").open("w", encoding="utf-8") as fh:
        for entry in result.log:
            fh.write(json.dumps(entry) + "\n")
    _plot_loss(result)
    card = result.output / "README.md"
    generated = card.read_text(encoding="utf-8") if card.exists() else ""
    ours = model_card(cfg, result)
    if generated.startswith("---"):  # keep the hub metadata block first, where the hub reads it
        end = generated.find("\n---", 3)
        head, rest = (generated[: end + 4], generated[end + 4 :]) if end > 0 else ("", generated)
        card.write_text(f"{head}\n\n{ours}\n{rest}", encoding="utf-8")
    else:
        card.write_text(ours + ("\n\n" + generated if generated else ""), encoding="utf-8")


def _plot_loss(result: FinetuneResult) -> None:
    if not result.log:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([e.get("step", i) for i, e in enumerate(result.log)], [e["loss"] for e in result.log])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("ragstore finetune")
    fig.tight_layout()
    fig.savefig(result.output / "loss.png", dpi=110)
    plt.close(fig)


def recipe_lines(cfg: FinetuneConfig, result: FinetuneResult) -> list[str]:
    """What adaptation made and what the dev split chose, so the card says how the model was arrived at."""
    lines = []
    if result.data.get("adapt"):
        lines.append(
            f"Corpus-only adaptation first ({', '.join(cfg.adapt.modes) if cfg.adapt else ''}): {result.data['adapt']}."
        )
    for fit in result.data.get("fits") or []:
        if fit.get("best_dev_ndcg10") is not None:
            lines.append(
                f"Dev split: lr {fit['learning_rate']:g}, batch {fit['batch_size']}, {fit['num']} negative(s): best "
                f"nDCG@10 {fit['best_dev_ndcg10']:.4f} at epoch {fit['best_epoch']:g} ({fit['stopped']})."
            )
    refit = result.data.get("refit")
    if refit and refit.get("done"):
        lines.append(
            f"Refit: the chosen settings trained again from the start on {refit['pairs']} training + dev pairs "
            f"for {refit['epochs']:g} epoch(s) ({refit['seconds']:.0f} s)."
        )
    elif refit:
        lines.append(f"No refit on the dev pairs ({refit.get('why')}): the dev-chosen model is the one saved.")
    if result.data.get("budget"):
        lines.append(str(result.data["budget"]) + ".")
    return [*lines, ""] if lines else []


def model_card(cfg: FinetuneConfig, result: FinetuneResult) -> str:
    verdict = (
        f"Held-out nDCG@10 improved by {result.gain:+.4f}."
        if result.improved
        else f"**WARNING: held-out nDCG@10 changed by {result.gain:+.4f}: this model is not better than the base.**"
        + (" Marked usable because `force` was set." if result.marked else " Not marked for use.")
    )
    rows = "\n".join(
        f"| {m} | {result.before[m]:.4f} | {result.after[m]:.4f} | {result.after[m] - result.before[m]:+.4f} |"
        for m in MEASURES
    )
    lines = [
        f"# Fine-tuned from {cfg.base_model} with ragstore",
        "",
        verdict,
        "",
        f"Data: {result.data['source']}: "
        + (
            f"{result.data['train_pairs']} training pairs ({result.data.get('training_rows', 0)} rows with "
            f"negatives), {result.data.get('dev_pairs', 0)} dev pairs, "
            if cfg.supervised
            else "no training questions (corpus-only), "
        )
        + f"{result.data['test_queries']} held-out queries over {result.data['corpus']} passages; groups "
        f"{result.data['groups']}; dropped {result.data['dropped']}.",
        "",
        *recipe_lines(cfg, result),
        f"Settings: loss {cfg.loss.type}"
        + (f" in MatryoshkaLoss {cfg.loss.matryoshka_dims}" if cfg.loss.matryoshka_dims else "")
        + (f", LoRA r={cfg.loss.lora.r} (merged)" if cfg.loss.lora else "")
        + f", hard negatives {cfg.hard_negatives.model_dump() if cfg.hard_negatives.enabled else 'off'}, "
        f"epochs {cfg.train.epochs}, batch {cfg.train.batch_size}, lr {cfg.train.learning_rate}, "
        f"warm-up {cfg.train.warmup_ratio}, seed {cfg.train.seed}.",
        "",
        "| held-out | base | fine-tuned | change |",
        "|---|---|---|---|",
        rows,
    ]
    if result.matryoshka:
        lines += ["", "| dims | base truncated | fine-tuned |", "|---|---|---|"]
        lines += [f"| {d} | {v['base']:.4f} | {v['finetuned']:.4f} |" for d, v in result.matryoshka.items()]
    lines += [
        "",
        "Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()) + ".",
    ]
    return "\n".join(lines)
