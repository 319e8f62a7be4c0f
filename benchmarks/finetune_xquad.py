"""Issue 7's target: fine-tune all-MiniLM-L6-v2 on half of xquad-r's articles, evaluate on the other half.

Variants (one process, run one after another, same split and seed): MNRL + mined hard negatives (the
target: nDCG@10 +0.02 in under 15 minutes), LoRA, Matryoshka (384/256/128/64 next to the base truncated),
and the bilingual option (Chinese questions, English passages). Writes benchmarks/results/finetune/*.json
and a Markdown summary. Run: python -P benchmarks/finetune_xquad.py [variant ...]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ragstore.data.beir import bundled_dataset
from ragstore.finetune import finetune

ROOT = Path(__file__).resolve().parent
XQUAD = bundled_dataset("xquad-r")  # vendored in benchmarks/datasets, ships in the wheel
OUT = ROOT / "results" / "finetune"
BASE = {
    "preset": "quick",  # issue 7's recipe, one pass, no dev split (issue 19's default: finetune_search.py)
    "base_model": "all-MiniLM-L6-v2",
    "data": {"beir": str(XQUAD), "queries": "en", "corpus": "en"},
    "split": {"by": "context_id", "pattern": r"^(a\d+)", "test_fraction": 0.5, "seed": 0},
    "hard_negatives": {"enabled": True, "num": 1, "range_max": 50, "relative_margin": 0.05},
    "train": {"epochs": 1, "batch_size": 32, "learning_rate": 2e-5, "seed": 0},
}
VARIANTS = {
    "mnrl-hn": {},
    "lora": {"loss": {"lora": {"r": 16, "alpha": 32}}, "train": {**BASE["train"], "learning_rate": 2e-4}},
    "matryoshka": {"loss": {"matryoshka_dims": [384, 256, 128, 64]}},
    # an English tokenizer sees Chinese as single characters: more epochs and a higher rate than for English
    "bilingual-zh": {
        "data": {"beir": str(XQUAD), "queries": "zh", "corpus": "en"},
        "train": {**BASE["train"], "epochs": 4, "learning_rate": 1e-4},
    },
}


def main(names: list[str]) -> None:
    console = Console()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or list(VARIANTS):
        cfg = {**BASE, **VARIANTS[name], "output": f"/tmp/ragstore-finetune/{name}"}
        cfg["force"] = True  # write every variant's folder; the guard's verdict is recorded below
        console.rule(name)
        start = time.perf_counter()
        r = finetune(cfg, progress=False, console=console)
        record = run_record(name, r, time.perf_counter() - start, cfg)
        if name == "bilingual-zh":
            record["translate_path"] = translate_path(cfg)
        (OUT / f"{name}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        console.print(
            f"{name}: nDCG@10 {r.before['nDCG@10']:.4f} -> {r.after['nDCG@10']:.4f} ({r.gain:+.4f}) "
            f"in {record['wall_s']:.0f} s"
        )


def translate_path(cfg: dict) -> dict:
    """The same held-out Chinese questions through the dictionary translator and the base model."""
    from ragstore.bilingual import create_translator
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
    from ragstore.finetune import load_finetune_config, load_training_data
    from ragstore.finetune.run import score

    data = load_training_data(load_finetune_config(cfg))
    english = create_translator("dictionary").translate(list(data.test_queries.values()))
    data.test_queries = dict(zip(data.test_queries, english, strict=True))
    return score(SentenceTransformerEmbedder(cfg["base_model"]), data)["full"]


def run_record(name: str, r: Any, wall_s: float, cfg: dict[str, Any]) -> dict[str, Any]:
    """A fine-tuning run's results file, the same fields for every benchmark here, without machine paths."""
    public = {k: v for k, v in cfg.items() if k != "output"} | {"data": {**cfg["data"], "beir": "xquad-r"}}
    return {
        "variant": name,
        "before": r.before,
        "after": r.after,
        "gain_ndcg10": r.gain,
        "improved": r.improved,
        "matryoshka": r.matryoshka,
        "data": {**r.data, "source": "beir:xquad-r"},
        "seconds": r.seconds,
        "wall_s": wall_s,
        "config": json.loads(json.dumps(public)),
    }


def gain_cells(r: dict[str, Any]) -> str:
    """nDCG@10 base | fine-tuned | change | R@10 base -> fine-tuned: the cells every fine-tuning table shares."""
    b, a = r["before"], r["after"]
    return (
        f"{b['nDCG@10']:.4f} | {a['nDCG@10']:.4f} | {r['gain_ndcg10']:+.4f} | "
        f"{b['Recall@10']:.4f} -> {a['Recall@10']:.4f}"
    )


def summary() -> str:
    """The Markdown table of every variant recorded so far (README and results/finetune/README.md)."""
    names = {
        "mnrl-hn": "MNRL + hard negatives",
        "lora": "LoRA r=16 + hard negatives",
        "matryoshka": "Matryoshka 384/256/128/64 + hard negatives",
        "bilingual-zh": "bilingual: Chinese questions -> English sentences",
    }
    lines = [
        "| variant | held-out queries | nDCG@10 base | fine-tuned | change | R@10 base -> ft | time |",
        "|---|---|---|---|---|---|---|",
    ]
    extra = []
    for name in names:
        file = OUT / f"{name}.json"
        if not file.exists():
            continue
        r = json.loads(file.read_text(encoding="utf-8"))
        lines.append(f"| {names[name]} | {r['data']['test_queries']} | {gain_cells(r)} | {r['wall_s'] / 60:.1f} min |")
        if r.get("translate_path"):
            t = r["translate_path"]
            lines.append(
                f"| same Chinese questions, translate path (dictionary, base model) | "
                f"{r['data']['test_queries']} | {t['nDCG@10']:.4f} | | | {t['Recall@10']:.4f} | |"
            )
        if r.get("matryoshka"):
            extra += ["", "| dims | base truncated | Matryoshka fine-tuned |", "|---|---|---|"]
            extra += [f"| {d} | {v['base']:.4f} | {v['finetuned']:.4f} |" for d, v in r["matryoshka"].items()]
    return "\n".join(lines + extra)


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        print(summary())
    else:
        main(sys.argv[1:])
        # results/finetune/README.md joins this file's variants with the recipe search: finetune_search.py
        # imports this module (never the other way round) and writes it
        print("refresh results/finetune/README.md with: python -P benchmarks/finetune_search.py --readme")
