"""What a fine-tuning run does, as one validated config (YAML or flags).

```yaml
base_model: all-MiniLM-L6-v2          # hub name or folder
data:
  beir: xquad-r                       # bundled name or BEIR folder; or jsonl: pairs.jsonl ({query, positive, ...})
  queries: en                         # zh + corpus en: the bilingual option (Chinese questions, English passages)
  corpus: en
split:                                # held-out queries never share a group with training queries
  by: context_id                      # a corpus metadata field (jsonl: the "group" field, else the positive)
  pattern: "^(a\\d+)"                 # optional: the group is this regex's first group (article of a0p3)
  test_fraction: 0.5
preset: default                       # quick: one pass, no dev split (the wave-1 recipe, ~3 min here)
hard_negatives: {enabled: true, num: 1, mine: static, relative_margin: 0.05}  # mine: index (+ refresh: true)
loss: {type: mnrl, guide: false, matryoshka_dims: null, lora: null}   # cached_mnrl; [384, 256, 128, 64]
train: {epochs: 3, batch_size: 32, learning_rate: 1.0e-4, dev_fraction: 0.2, patience: 1, budget_minutes: 15}
# train.refit: true -> after the dev split chose, train again on training + dev pairs up to the chosen epoch
adapt: {modes: [crop]}                # corpus-only pairs first: crop, ict, neighbours, title
output: models/minilm-xquad
```

Unset fields take the preset's value (``PRESETS``), so ``preset: quick`` with ``train.epochs: 2`` is the quick
recipe trained twice as long; the defaults were chosen on a development split (benchmarks/finetune_search.py).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import FileConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(_Strict):
    beir: str | None = Field(
        default=None, description="BEIR folder or bundled name: train qrels if present, else split test"
    )
    jsonl: str | None = Field(default=None, description="{query, positive[, negatives][, group]} per line")
    test_jsonl: str | None = Field(default=None, description="held-out pairs given by the user (jsonl)")
    queries: str | None = Field(default=None, description="query language of a BEIR folder")
    corpus: str | None = Field(default=None, description="corpus language(s) of a BEIR folder")
    max_pairs: int | None = Field(default=None, gt=0, description="first N training pairs (quick runs)")
    mix_corpus_language: bool = Field(
        default=True,
        description="questions in another language than the corpus (BEIR folder with both): also train on the "
        "corpus-language questions of the same training groups, so those do not fall",
    )
    generate: dict[str, Any] | None = Field(
        default=None, description="LLM-written questions for passages: base_url, model, per_passage, api_key"
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if bool(self.beir) == bool(self.jsonl):
            raise ValueError("give exactly one of data.beir or data.jsonl")
        return self


class SplitSpec(_Strict):
    by: str | None = Field(default=None, description="corpus metadata field that groups passages")
    pattern: str | None = Field(default=None, description="regex; its first group is the group key")
    test_fraction: float = Field(default=0.5, gt=0, lt=1)
    seed: int = 0


class NegativesSpec(_Strict):
    enabled: bool = True
    num: int = Field(default=1, gt=0)
    mine: Literal["static", "index"] = Field(
        default="static",
        description="static: sentence-transformers' miner once with the base model; index: a ragstore index "
        "built with the model being trained (ANCE), refreshed mid-training when refresh is set",
    )
    refresh: bool = Field(
        default=False, description="index mining: re-mine once, halfway, with the partly trained model"
    )
    store: dict[str, Any] = Field(
        default_factory=lambda: {"type": "memory"}, description="index mining: the ragstore store block to mine from"
    )
    layout: Literal["triplet", "tuple"] = Field(
        default="triplet",
        description="triplet: one row per negative (an anchor comes back num times an epoch); tuple: one row per "
        "anchor holding all its negatives (each anchor once an epoch, against all of them)",
    )
    range_min: int = Field(default=0, ge=0, description="skip this many top-ranked candidates")
    range_max: int = Field(default=50, gt=0)
    relative_margin: float | None = Field(default=0.05, ge=0, description="negative score <= (1-m) * positive")
    absolute_margin: float | None = Field(default=None, ge=0)
    batch_size: int = Field(default=64, gt=0)


class LoraSpec(_Strict):
    r: int = Field(default=16, gt=0)
    alpha: int = Field(default=32, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | None = None


class LossSpec(_Strict):
    type: Literal["mnrl", "cached_mnrl"] = "mnrl"
    mini_batch_size: int = Field(default=16, gt=0, description="cached_mnrl: micro-batch held in memory")
    guide: bool = Field(
        default=False,
        description="GISTEmbed: a frozen copy of the base model drops in-batch negatives it scores above the positive",
    )
    matryoshka_dims: list[int] | None = None
    lora: LoraSpec | None = None

    @field_validator("matryoshka_dims")
    @classmethod
    def _dims(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(d <= 0 for d in value)):
            raise ValueError("matryoshka_dims must be positive")
        return sorted(set(value), reverse=True) if value else value


class TrainSpec(_Strict):
    epochs: float = Field(default=1.0, gt=0, description="at most this many; early stopping may end sooner")
    decay_epochs: float | None = Field(
        default=None,
        gt=0,
        description="the learning rate decays linearly to 0 over this many epochs (default: epochs); epochs 1 of a "
        "3-epoch decay ends at 2/3 of the rate, as a 3-epoch run stopped after its first",
    )
    batch_size: int = Field(default=32, gt=1)
    learning_rate: float = Field(default=2e-5, gt=0)
    dev_fraction: float = Field(
        default=0.0, ge=0, lt=1, description="training-side groups held out to pick the epoch (0: no dev split)"
    )
    patience: int = Field(default=1, ge=1, description="epochs without a dev gain before stopping")
    refit: bool = Field(
        default=False,
        description="after the dev split has chosen the epoch (and trial), train again from the start on the "
        "training and dev pairs together, for that many epochs",
    )
    budget_minutes: float | None = Field(default=None, gt=0, description="stop cleanly, best so far, at this time")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    seed: int = 0
    max_steps: int | None = Field(default=None, gt=0)
    max_seq_length: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _decay_covers_the_epochs(self) -> TrainSpec:
        if self.decay_epochs is not None and self.decay_epochs < self.epochs:
            raise ValueError(
                f"train.decay_epochs ({self.decay_epochs:g}) must be at least train.epochs ({self.epochs:g})"
            )
        return self


AdaptMode = Literal["title", "ict", "neighbours", "crop"]


class AdaptSpec(_Strict):
    """Corpus-only domain adaptation: pairs the corpus makes by itself, trained on before any questions."""

    modes: list[AdaptMode] = Field(
        default_factory=lambda: list[AdaptMode](["crop"]),
        description="title <-> body; a sentence <-> the rest of its passage (inverse cloze); neighbouring chunks; "
        "a random span <-> its passage (crop)",
    )
    by: str | None = Field(
        default=None, description="corpus field whose value orders passages into documents (default: split.by)"
    )
    max_pairs: int = Field(default=2000, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    learning_rate: float = Field(default=2e-5, gt=0)
    seed: int = 0

    @field_validator("modes")
    @classmethod
    def _modes(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("adapt.modes needs at least one of title, ict, neighbours, crop")
        return list(dict.fromkeys(value))


class SearchSpec(_Strict):
    """A small grid, each trial trained with early stopping and judged on the dev split; the best is kept."""

    learning_rate: list[float] | None = None
    batch_size: list[int] | None = None
    num_negatives: list[int] | None = None


#: unset fields of ``train`` / ``hard_negatives`` take these; ``default`` was picked on a dev split
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "train": {"epochs": 1.0, "batch_size": 32, "learning_rate": 2e-5, "dev_fraction": 0.0},
        "hard_negatives": {"mine": "static", "refresh": False},
    },
    # chosen on xquad-r's dev split (benchmarks/results/finetune/search.json): lr 1e-4 over 5e-5; then, as no
    # variant's dev nDCG@10 is more than one paired standard error from the best (three negatives, index-mined,
    # GISTEmbed, a cached batch of 128), the cheapest: one static negative, early stopping on the dev split
    "default": {
        "train": {"epochs": 3.0, "batch_size": 32, "learning_rate": 1e-4, "dev_fraction": 0.2, "patience": 1},
        "hard_negatives": {"mine": "static", "refresh": False, "num": 1},
    },
}


class FinetuneConfig(FileConfig):
    base_model: str = "all-MiniLM-L6-v2"
    preset: Literal["default", "quick"] = "default"
    data: DataSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    hard_negatives: NegativesSpec = Field(default_factory=NegativesSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    adapt: AdaptSpec | None = Field(default=None, description="corpus-only adaptation before the supervised step")
    search: SearchSpec | None = Field(default=None, description="try these settings, keep the dev-best model")
    supervised: bool = Field(default=True, description="false: corpus-only (adapt) training, questions unused")
    output: str = "models/finetuned"
    force: bool = Field(default=False, description="mark the model usable even when held-out quality fell")
    min_gain: float = Field(default=0.0, description="nDCG@10 gain the model must show to count as better")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = PRESETS.get(str(data.get("preset") or "default"))
        if preset is None:
            return data  # the Literal check names the bad value
        data = dict(data)
        for block, values in preset.items():
            given = data.get(block)
            if given is None or isinstance(given, dict):
                data[block] = {**values, **(given or {})}
        return data

    @model_validator(mode="after")
    def _something_to_train(self) -> FinetuneConfig:
        if not self.supervised and self.adapt is None:
            raise ValueError("supervised: false leaves nothing to train: add an adapt block")
        return self


def load_finetune_config(
    source: str | os.PathLike[str] | dict[str, Any] | None, overrides: dict[str, Any] | None = None
) -> FinetuneConfig:
    """A YAML file or a dict, with ``overrides`` (command-line flags) laid over it; every problem is a
    ``ConfigError`` naming the key, before any work."""
    return FinetuneConfig.load(source, "finetune config", overrides)
