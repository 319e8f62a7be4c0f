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
hard_negatives: {enabled: true, num: 1, range_min: 0, range_max: 50, relative_margin: 0.05}
loss: {type: mnrl, matryoshka_dims: null, lora: null}   # cached_mnrl; [384, 256, 128, 64]; {r: 16}
train: {epochs: 1, batch_size: 32, learning_rate: 2.0e-5, warmup_ratio: 0.1, seed: 0}
output: models/minilm-xquad
```
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
    matryoshka_dims: list[int] | None = None
    lora: LoraSpec | None = None

    @field_validator("matryoshka_dims")
    @classmethod
    def _dims(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(d <= 0 for d in value)):
            raise ValueError("matryoshka_dims must be positive")
        return sorted(set(value), reverse=True) if value else value


class TrainSpec(_Strict):
    epochs: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=32, gt=1)
    learning_rate: float = Field(default=2e-5, gt=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    seed: int = 0
    max_steps: int | None = Field(default=None, gt=0)
    max_seq_length: int | None = Field(default=None, gt=0)


class FinetuneConfig(FileConfig):
    base_model: str = "all-MiniLM-L6-v2"
    data: DataSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    hard_negatives: NegativesSpec = Field(default_factory=NegativesSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    output: str = "models/finetuned"
    force: bool = Field(default=False, description="mark the model usable even when held-out quality fell")
    min_gain: float = Field(default=0.0, description="nDCG@10 gain the model must show to count as better")


def load_finetune_config(
    source: str | os.PathLike[str] | dict[str, Any] | None, overrides: dict[str, Any] | None = None
) -> FinetuneConfig:
    """A YAML file or a dict, with ``overrides`` (command-line flags) laid over it; every problem is a
    ``ConfigError`` naming the key, before any work."""
    return FinetuneConfig.load(source, "finetune config", overrides)
