"""Train, evaluate against the base model on held-out queries, and only then hand the model over.

Steps: validate the data (``data.py``), score the base model on the held-out queries, mine hard negatives
with sentence-transformers' ``mine_hard_negatives`` (top ranks skipped, a margin against the positive, so
unlabeled positives are not used as negatives), train with ``SentenceTransformerTrainer`` (MNRL or its
cached variant, optionally inside ``MatryoshkaLoss``, optionally LoRA through PEFT, merged before saving),
score again, and write the model folder with ``ragstore_finetune.json`` and a model card. A model that
scores worse than the base is written but not *marked*: ``--update-config`` refuses it unless forced.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..embedders.sentence_transformers import SentenceTransformerEmbedder
from ..errors import ConfigError
from ..metrics import evaluate
from .config import FinetuneConfig, load_finetune_config
from .data import TrainingData, load_training_data

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
    """Held-out quality, exact search over the whole corpus, at full size and at each Matryoshka dim.
    Queries go in chunks, so memory holds one chunk x corpus score block, never the full matrix."""
    ids = list(data.corpus)
    docs = embedder.embed_documents([data.corpus[i] for i in ids])
    qids = list(data.test_queries)
    queries = embedder.embed_query([data.test_queries[q] for q in qids])
    out: dict[str, dict[str, float]] = {}
    for dim in [None, *(dims or [])]:
        d = docs if dim is None else _normalise(docs[:, :dim])
        q = queries if dim is None else _normalise(queries[:, :dim])
        run: dict[str, dict[str, float]] = {}
        for start in range(0, len(qids), 256):
            block = q[start : start + 256] @ d.T
            top = np.argsort(-block, axis=1)[:, :depth]
            for row, qid in enumerate(qids[start : start + 256]):
                run[qid] = {ids[j]: float(block[row, j]) for j in top[row]}
        out["full" if dim is None else str(dim)] = evaluate(data.test_qrels, run, MEASURES)
    return out


def _losses() -> Any:
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import losses  # type: ignore[no-redef,attr-defined]
    return losses


def _triplets(cfg: FinetuneConfig, data: TrainingData, embedder: SentenceTransformerEmbedder) -> tuple[Any, dict]:
    """(anchor, positive, negative) rows: the user's negatives where given, mined ones for the rest."""
    datasets = require("datasets", "finetune", "datasets")
    neg = cfg.hard_negatives
    given = [p for p in data.train if p.negatives]
    bare = [p for p in data.train if not p.negatives]
    rows: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    for p in given:
        for n in p.negatives[: neg.num]:
            rows["anchor"].append(p.query)
            rows["positive"].append(p.positive)
            rows["negative"].append(n)
    info: dict[str, Any] = {"given_negatives": len(given), "mined_for": 0, "without_negative": 0}
    if not neg.enabled:
        if given:
            raise ConfigError("some pairs carry negatives but hard_negatives.enabled is false: enable it or drop them")
        pairs = {"anchor": [p.query for p in bare], "positive": [p.positive for p in bare]}
        return datasets.Dataset.from_dict(pairs), info
    if bare:
        from sentence_transformers.util import mine_hard_negatives

        mined = mine_hard_negatives(
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
        found = {a for a in mined["anchor"]}
        info["mined_for"] = len(found)
        info["without_negative"] = sum(1 for p in bare if p.query not in found)
        for key in rows:
            rows[key] += list(mined[key])
        rest = [p for p in bare if p.query not in found]
        if rows["anchor"] and rest:  # pairs no negative passed the margin for still train, on in-batch negatives
            info["pairs_without_negative"] = "trained as pairs (in-batch negatives)"
            pairs = {"anchor": [p.query for p in rest], "positive": [p.positive for p in rest]}
            return datasets.DatasetDict(
                {"with_negatives": datasets.Dataset.from_dict(rows), "pairs": datasets.Dataset.from_dict(pairs)}
            ), info
    if not rows["anchor"]:  # nothing passed the margin: in-batch negatives only, and say so
        import warnings

        warnings.warn(
            "hard-negative mining found no negative that passes the margin; training on pairs with in-batch "
            "negatives only (widen range_max or lower the margin)",
            stacklevel=3,
        )
        info["fallback"] = "in-batch negatives only"
        pairs = {"anchor": [p.query for p in bare], "positive": [p.positive for p in bare]}
        return datasets.Dataset.from_dict(pairs), info
    return datasets.Dataset.from_dict(rows), info


def _warmup_steps(cfg: FinetuneConfig, rows: int) -> int:
    steps = cfg.train.max_steps or math.ceil(math.ceil(rows / cfg.train.batch_size) * cfg.train.epochs)
    return int(steps * cfg.train.warmup_ratio)


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


def finetune(
    config: FinetuneConfig | dict[str, Any] | str | Path, *, progress: bool = True, console: Any = None
) -> FinetuneResult:
    """Run one fine-tuning job end to end; every input problem raises before the model is loaded."""
    cfg = config if isinstance(config, FinetuneConfig) else load_finetune_config(config)
    st = require("sentence_transformers", "finetune", "sentence-transformers")
    say = console.print if console is not None else (lambda *a, **k: None)
    out = cfg.resolve_path(cfg.output)
    if out.exists() and any(out.iterdir()) and not (out / RESULT_FILE).exists():
        raise ConfigError(f"output folder {out} is not empty and was not written by ragstore finetune")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    data = load_training_data(cfg)
    say(f"[dim]data: {data.describe()}[/]")
    embedder = SentenceTransformerEmbedder(cfg.base_model, max_seq_length=cfg.train.max_seq_length)
    dims = cfg.loss.matryoshka_dims
    if dims and max(dims) > embedder.dim:
        raise ConfigError(f"loss.matryoshka_dims {dims} exceed the model's dimension {embedder.dim}")
    times["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    before_all = score(embedder, data, dims)
    times["eval_before"] = time.perf_counter() - t
    say(f"base model on {len(data.test_queries)} held-out queries: {before_all['full']}")

    t = time.perf_counter()
    train_set, mining = _triplets(cfg, data, embedder)
    rows_n = sum(len(d) for d in train_set.values()) if isinstance(train_set, dict) else len(train_set)
    data_info = {**data.describe(), "training_rows": rows_n, "mining": mining}
    times["mine"] = time.perf_counter() - t

    model = embedder.model
    losses = _losses()
    if cfg.loss.lora is not None:
        _add_lora(model, cfg.loss.lora)
    if cfg.loss.type == "cached_mnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=cfg.loss.mini_batch_size)
    else:
        loss = losses.MultipleNegativesRankingLoss(model)
    if dims:
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=dims)
    scratch = out.parent / f".{out.name}.checkpoints"
    prompts = {
        k: v
        for k, v in {
            "anchor": embedder.query_prefix,
            "positive": embedder.passage_prefix,
            "negative": embedder.passage_prefix,
        }.items()
        if v
    }
    args = st.SentenceTransformerTrainingArguments(
        output_dir=str(scratch),
        num_train_epochs=cfg.train.epochs,
        max_steps=cfg.train.max_steps or -1,
        per_device_train_batch_size=cfg.train.batch_size,
        learning_rate=cfg.train.learning_rate,
        warmup_steps=_warmup_steps(cfg, rows_n),
        weight_decay=cfg.train.weight_decay,
        seed=cfg.train.seed,
        data_seed=cfg.train.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        batch_sampler="no_duplicates",
        prompts=prompts or None,
        disable_tqdm=not progress,
        use_cpu=embedder.model.device.type == "cpu",
    )
    trainer = st.SentenceTransformerTrainer(model=model, args=args, train_dataset=train_set, loss=loss)
    t = time.perf_counter()
    trainer.train()
    times["train"] = time.perf_counter() - t
    shutil.rmtree(scratch, ignore_errors=True)
    log = [e for e in trainer.state.log_history if "loss" in e]
    if cfg.loss.lora is not None:
        _merge_lora(model)

    t = time.perf_counter()
    after_all = score(embedder, data, dims)
    times["eval_after"] = time.perf_counter() - t
    before, after = before_all.pop("full"), after_all.pop("full")
    gain = after["nDCG@10"] - before["nDCG@10"]
    improved = gain > cfg.min_gain
    marked = improved or cfg.force
    matryoshka = {d: {"base": before_all[d]["nDCG@10"], "finetuned": after_all[d]["nDCG@10"]} for d in before_all}

    out.mkdir(parents=True, exist_ok=True)
    prefixes = {k: v for k, v in {"query": embedder.query_prefix, "document": embedder.passage_prefix}.items() if v}
    if prefixes:  # saved prompts: the folder gets the same prefixes wherever it is loaded
        model.prompts = prefixes
    model.save(str(out))
    times["total"] = time.perf_counter() - t0
    result = FinetuneResult(out, before, after, improved, marked, data_info, times, matryoshka or None, log)
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
        f"Data: {result.data['source']}: {result.data['train_pairs']} training pairs "
        f"({result.data['training_rows']} rows with negatives), {result.data['test_queries']} held-out queries "
        f"over {result.data['corpus']} passages; groups {result.data['groups']}; dropped {result.data['dropped']}.",
        "",
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
