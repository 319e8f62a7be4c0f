"""Exported sentence-transformers models on ONNX Runtime or OpenVINO, used only after a quality gate.

Why not sentence-transformers' own ``backend="onnx"|"openvino"``: both go through optimum / optimum-intel,
whose releases pin transformers < 4.58 / < 5 while ragstore runs transformers 5. Here ``torch.onnx`` exports the
model's whole module stack (transformer, pooling, dense, normalise) into one graph; ONNX Runtime runs it, and
OpenVINO reads the same graph. Reduced-precision variants: ONNX Runtime dynamic int8 (MatMul weights per
channel), OpenVINO static int8 through NNCF (calibrated on questions the gate never sees), and OpenVINO bf16
(the fp32 graph computed in bfloat16 on CPUs that have it: OpenVINO's own default there, which is why
``none`` asks for f32 explicitly).

The gate: an export is used only if, on held-out xquad-r questions (split by a hash of their id; calibration
uses the other half) and the English corpus, its vectors have mean cosine >= ``min_cosine`` to the torch fp32
vectors of the same texts and en->en nDCG@10 drops by at most ``max_ndcg_drop``. The figures are written to
``gate.json`` beside the export, so the check runs once per export; an export that failed is refused with its
figures (``ExportGateError``) every time it is asked for, until its settings change. The report is signed
(HMAC-SHA256 with ``gate.key``, a secret made once in the export root) and the files' digests are recomputed
at every load: an edited report or a changed file makes the export be made and checked again, never used.

Layout: ``<export root>/<backend>-<quantize>/{model.onnx | model.xml + model.bin, gate.json}``; the root is
``<model folder>/ragstore-exports`` for a model folder the user owns, else
``$XDG_CACHE_HOME/ragstore/exports/<model>-<weights signature>``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import itertools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._optional import require
from ..errors import ExportError, ExportGateError

Backend = Literal["torch", "onnx", "openvino"]
#: what ``backend: auto`` tries; the first whose export passes its gate is used, torch when none does or the
#: ``accel`` extra is missing (benchmarks/results/embed-backends.md, this 2-core AMX CPU: openvino int8 3.65x
#: torch, openvino bf16 3.58x, onnx int8 1.56x, openvino fp32 1.14x, onnx fp32 0.83x). onnx int8 stays before
#: bf16: on CPUs without bf16 units OpenVINO computes "bf16" in f32 (~1.1x), while onnx int8 measured 2.21x
AUTO_ORDER: tuple[tuple[str, str], ...] = (
    ("openvino", "int8"),
    ("onnx", "int8"),
    ("openvino", "bf16"),
    ("openvino", "none"),
    ("onnx", "none"),
)


def accel_installed(backend: str) -> bool:
    """Whether the runtime a backend needs (and the exporter) can be imported, without importing it."""
    import importlib.util

    needs = {"onnx": ("onnx", "onnxruntime"), "openvino": ("openvino", "nncf")}[backend]
    try:
        return all(importlib.util.find_spec(m) is not None for m in needs)
    except ValueError:  # a module set to None in sys.modules (how tests take an extra away)
        return False


Quantize = Literal["none", "int8", "bf16"]
# 2: int8 exports run their float parts at OpenVINO's default precision (bf16 on CPUs with bf16 units)
GATE_VERSION = 2
OPSET = 17

# a runner takes batches of the tokenizer's arrays (an iterator: the caller tokenises the next batch while the
# runtime computes this one) and returns one array of vectors per batch, in order
Runner = Callable[[Iterable[dict[str, np.ndarray]]], list[np.ndarray]]


def export_root(model_path: str, signature: str, export_dir: str | None) -> Path:
    """Where exports of this model live (see the module docstring)."""
    if export_dir:
        return Path(os.path.expanduser(export_dir)).resolve()
    folder = Path(model_path)
    if folder.is_dir() and os.access(folder, os.W_OK) and not _installed_package(folder):
        return folder / "ragstore-exports"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = folder.name if folder.is_dir() else model_path.replace("/", "--")
    return cache / "ragstore" / "exports" / f"{name}-{signature}"


def _installed_package(folder: Path) -> bool:
    return any(part in {"site-packages", "dist-packages"} for part in folder.resolve().parts)


def tokenize(st_model: Any, texts: list[str]) -> dict[str, Any]:
    """The model's own tokenisation (``preprocess`` in sentence-transformers 6, ``tokenize`` before)."""
    fn = getattr(st_model, "preprocess", None) or st_model.tokenize
    return dict(fn(texts))


def input_names(st_model: Any) -> list[str]:
    """The tokenizer outputs the graph takes (``token_type_ids`` only for models that use it)."""
    features = tokenize(st_model, ["a"])
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in features]


def check_exportable(st_model: Any, prefixes: tuple[str, str]) -> None:
    """Refuse models the single-graph export would get wrong, before spending minutes on it."""
    names = [type(m).__name__ for m in st_model]
    if not names or names[0] != "Transformer":
        raise ExportError(
            f"cannot export a model whose first module is {names[0] if names else 'missing'}; "
            "only Transformer-based sentence-transformers models export"
        )
    for module in st_model:
        if type(module).__name__ == "Pooling" and not getattr(module, "include_prompt", True) and any(prefixes):
            raise ExportError(
                "this model leaves its prompt tokens out of pooling, which the exported graph cannot do; "
                "use backend: torch"
            )


def export_onnx(st_model: Any, target: Path) -> None:
    """The full module stack as one ONNX graph with dynamic batch and sequence axes."""
    import torch

    names = input_names(st_model)

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = st_model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, inputs, strict=True)))["sentence_embedding"]

    sample = tokenize(st_model, ["an example sentence for the export", "another one"])
    args = tuple(sample[n].to("cpu") for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"sentence_embedding": {0: "batch"}}
    graph = Graph().eval().to("cpu")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about Python control flow fixed at export
            torch.onnx.export(
                graph,
                args,
                str(target),
                input_names=names,
                output_names=["sentence_embedding"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many kinds; the user needs to know it was the export
        raise ExportError(f"torch.onnx could not export this model: {type(exc).__name__}: {exc}") from exc


def quantize_onnx(source: Path, target: Path) -> None:
    """Dynamic int8: MatMul weights quantised per output channel, activations at run time."""
    require("onnx", "accel", "onnx")
    quantization = require("onnxruntime.quantization", "accel", "onnxruntime")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ONNX Runtime logs a pre-processing tip to the root logger on every call
    try:
        quantization.quantize_dynamic(
            str(source),
            str(target),
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
    finally:
        root.setLevel(level)


def convert_openvino(source: Path, target: Path, calibration: list[dict[str, np.ndarray]] | None) -> None:
    """ONNX graph -> OpenVINO IR in fp32 (``calibration`` given: NNCF static int8 for transformers)."""
    ov = require("openvino", "accel", "openvino")
    model = ov.convert_model(str(source))
    if calibration is not None:
        nncf = require("nncf", "accel", "nncf")
        model = nncf.quantize(
            model,
            nncf.Dataset(calibration),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
        )
    ov.save_model(model, str(target), compress_to_fp16=False)


def onnx_runner(path: Path, threads: int | None) -> Runner:
    ort = require("onnxruntime", "accel", "onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}

    def run(batches: Iterable[dict[str, np.ndarray]]) -> list[np.ndarray]:
        return [np.asarray(session.run(None, {k: v for k, v in b.items() if k in wanted})[0]) for b in batches]

    return run


#: batches in one call from which OpenVINO's throughput model is worth compiling (in the background, ~0.1-0.3
#: s of both cores): a 62-document add ran at 295 docs/s while it compiled, against 424 on the latency model
_STREAMS_FROM = 4


def openvino_runner(path: Path, threads: int | None, precision: str | None = "f32") -> Runner:
    """One batch (a query) on a latency-compiled model: all threads on one request. Several batches (ingest)
    on a throughput-compiled one: OpenVINO's streams (one per core here) each run a request while the caller
    tokenises the next batch, 1.1-1.2x the latency model's docs/s on this 2-core CPU
    (benchmarks/results/embed-backends.md). The throughput model is compiled in the background on the first
    call with ``_STREAMS_FROM`` batches or more; batches go to the latency model until it is ready, so no call
    waits for it."""
    ov = require("openvino", "accel", "openvino")
    core = ov.Core()
    model = core.read_model(str(path))
    # fp32 and bf16 explicit (on CPUs with bf16 units OpenVINO would compute an fp32 graph in bf16); int8
    # (``precision`` None) leaves the float parts at OpenVINO's default: bf16 there, 1.13x the f32 docs/s
    config: dict[str, Any] = {} if precision is None else {"INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    latency = core.compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "LATENCY"})
    wanted = {i.get_any_name() for i in latency.inputs}
    compiled: list[Any] = []  # the throughput model, once ready
    started = threading.Event()

    def compile_throughput() -> None:
        with contextlib.suppress(Exception):  # a failed compile leaves every call on the latency model
            compiled.append(core.compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "THROUGHPUT"}))

    def one(batch: dict[str, np.ndarray]) -> np.ndarray:  # one request per call: safe from several threads
        result = latency.create_infer_request().infer({k: v for k, v in batch.items() if k in wanted})
        return np.asarray(result[latency.outputs[0]])

    def run(batches: Iterable[dict[str, np.ndarray]]) -> list[np.ndarray]:
        it = iter(batches)
        head = list(itertools.islice(it, _STREAMS_FROM))
        if len(head) < _STREAMS_FROM and not compiled:  # a query or a small add: compiling would cost more
            return [one(batch) for batch in head]
        if not started.is_set():
            started.set()
            threading.Thread(target=compile_throughput, name="ragstore-openvino-compile", daemon=True).start()
        outs: dict[int, np.ndarray] = {}
        queue: Any = None

        def done(request: Any, index: int) -> None:
            outs[index] = np.array(request.get_output_tensor(0).data)  # a copy: the request's tensor is reused

        count = 0
        for count, batch in enumerate(itertools.chain(head, it), start=1):
            if queue is None and compiled:
                queue = ov.AsyncInferQueue(
                    compiled[0], int(compiled[0].get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                )
                queue.set_callback(done)
            if queue is None:
                outs[count - 1] = one(batch)
            else:
                queue.start_async({k: v for k, v in batch.items() if k in wanted}, count - 1)
        if queue is not None:
            queue.wait_all()
        return [outs[i] for i in range(count)]

    run.throughput_ready = lambda: bool(compiled)  # type: ignore[attr-defined]  # for tests and describe()
    return run


def make_runner(backend: Backend, quantize: Quantize, path: Path, threads: int | None) -> Runner:
    if backend == "onnx":
        return onnx_runner(path, threads)
    return openvino_runner(path, threads, {"bf16": "bf16", "none": "f32"}.get(quantize))


def model_file(backend: Backend) -> str:
    return "model.onnx" if backend == "onnx" else "model.xml"


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """One exporter per variant across processes; the others wait and then find the finished export."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{folder}.lock", "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare(
    st_model: Any,
    backend: Backend,
    quantize: Quantize,
    root: Path,
    *,
    reference: Callable[[list[str], bool], np.ndarray],
    exported: Callable[[Runner, list[str], bool], np.ndarray],
    gate: GateSettings,
    prefixes: tuple[str, str],
    source: str = "",
    progress: Callable[[str], None] = lambda _m: None,
) -> tuple[Path, dict[str, Any]]:
    """The export's model file and gate report, exporting and gating it first when missing.

    ``reference(texts, is_query)`` gives torch fp32 vectors; ``exported(runner, texts, is_query)`` the same
    through a runner; ``source`` identifies the weights (an export of other weights is made again). Raises
    ``ExportGateError`` when the export fails the gate (now or when it was made).
    """
    if quantize == "bf16" and backend != "openvino":
        raise ExportError("quantize: bf16 is an OpenVINO setting; use backend: openvino")
    folder = root / f"{backend}-{quantize}"
    with _exclusive(folder):
        key = _signing_key(root)
        report = _read_report(folder, key)
        if report is None or report.get("gate") != gate.as_dict() or report.get("source") != source:
            check_exportable(st_model, prefixes)
            report = _build(st_model, backend, quantize, folder, reference, exported, gate, progress, source, key)
    if not report["passed"]:
        raise ExportGateError(failure_message(report), report)
    return folder / model_file(backend), report


class GateSettings:
    """The gate's thresholds (part of the export's identity: changing them re-runs the check)."""

    def __init__(self, min_cosine: float = 0.99, max_ndcg_drop: float = 0.005, threads: int | None = None) -> None:
        self.min_cosine, self.max_ndcg_drop, self.threads = min_cosine, max_ndcg_drop, threads

    def as_dict(self) -> dict[str, Any]:
        return {"version": GATE_VERSION, "min_cosine": self.min_cosine, "max_ndcg_drop": self.max_ndcg_drop}


def failure_message(report: dict[str, Any]) -> str:
    g = report["gate"]
    problems = []
    if report["mean_cosine"] < g["min_cosine"]:
        problems.append(
            f"mean cosine to torch fp32 {report['mean_cosine']:.8f} < {g['min_cosine']} "
            f"(short by {g['min_cosine'] - report['mean_cosine']:.2g})"
        )
    if report["ndcg_drop"] > g["max_ndcg_drop"]:
        problems.append(
            f"xquad-r en->en nDCG@10 {report['ndcg_export']:.4f} vs {report['ndcg_torch']:.4f}: drop "
            f"{report['ndcg_drop']:.4f} > {g['max_ndcg_drop']} (over by {report['ndcg_drop'] - g['max_ndcg_drop']:.4f})"
        )
    return (
        f"the {report['backend']} {report['quantize']} export failed its quality gate: {'; '.join(problems)}. "
        f"Use backend: torch, quantize: none, or another variant (figures in {report['path']})"
    )


_KEY_FILE = "gate.key"


def _signing_key(root: Path) -> bytes:
    """The export root's secret (32 random bytes, mode 0600, made once): ``gate.json`` is signed with it, so
    a report edited by hand (digests patched to match a swapped model, ``passed`` flipped) is not trusted.
    Made whole in a temporary file and linked into place, so a second process never reads half a key."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / _KEY_FILE
    for _ in range(3):
        with contextlib.suppress(FileNotFoundError):
            key = path.read_bytes()
            if len(key) == 32:
                return key
            path.unlink(missing_ok=True)  # damaged: a new key (reports signed with the old one are remade)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".gate-key-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(32))
            with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    raise ExportError(f"cannot keep the export signing key {path}")


def _sign(report: dict[str, Any], key: bytes) -> str:
    body = json.dumps({k: v for k, v in report.items() if k != "signature"}, sort_keys=True).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _read_report(folder: Path, key: bytes) -> dict[str, Any] | None:
    """The saved report, or None when it is unsigned or its signature does not match (edited), or the files it
    vouches for are missing or changed (export again: a changed file is never used)."""
    try:
        report = json.loads((folder / "gate.json").read_text(encoding="utf-8"))
        if not isinstance(report, dict) or not hmac.compare_digest(
            str(report.get("signature", "")), _sign(report, key)
        ):
            return None
        if report.get("files") != _digests(folder, report.get("backend")):
            return None
    except (OSError, ValueError, TypeError):
        return None
    return report


def _digests(folder: Path, backend: Any) -> dict[str, str]:
    """sha256 of the export's files: a truncated or swapped file is caught before a runtime loads it."""
    if backend not in ("onnx", "openvino"):
        raise ValueError(f"unknown backend {backend!r}")
    names = ["model.onnx"] if backend == "onnx" else ["model.xml", "model.bin"]
    out = {}
    for name in names:
        digest = hashlib.sha256()
        with open(folder / name, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        out[name] = digest.hexdigest()
    return out


def gate_data() -> tuple[list[str], dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """(calibration questions, held-out questions by id, English corpus by id, their relevance judgments),
    read from the xquad-r copy bundled with ragstore."""
    folder = Path(__file__).resolve().parents[1] / "datasets" / "xquad-r"
    try:
        queries = _jsonl(folder / "queries.en.jsonl")
        corpus = _jsonl(folder / "corpus.en.jsonl")
        qrels: dict[str, dict[str, int]] = {}
        for line in (folder / "qrels" / "test.en.tsv").read_text(encoding="utf-8").splitlines()[1:]:
            qid, did, score = line.split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    except (OSError, ValueError) as exc:
        raise ExportError(f"the gate's dataset (bundled xquad-r) is unreadable: {exc}") from exc
    calibration = [t for q, t in queries.items() if _calibration(q)]
    held = {q: t for q, t in queries.items() if not _calibration(q) and q in qrels}
    return calibration, held, corpus, {q: qrels[q] for q in held}


def _calibration(qid: str) -> bool:
    return hashlib.sha256(qid.encode()).digest()[0] % 2 == 0


def _jsonl(path: Path) -> dict[str, str]:
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            title = row.get("title") or ""
            rows[str(row["_id"])] = f"{title} {row['text']}".strip() if title else row["text"]
    return rows


def ndcg10(queries: np.ndarray, corpus: np.ndarray, qids: list[str], dids: list[str], qrels: Any) -> float:
    from ..eval.metrics import evaluate

    scores = queries @ corpus.T
    top = np.argsort(-scores, axis=1)[:, :10]
    run = {q: {dids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    return evaluate(qrels, run, ["nDCG@10"])["nDCG@10"]


def _build(
    st_model: Any,
    backend: Backend,
    quantize: Quantize,
    folder: Path,
    reference: Callable[[list[str], bool], np.ndarray],
    exported: Callable[[Runner, list[str], bool], np.ndarray],
    gate: GateSettings,
    progress: Callable[[str], None],
    source: str,
    key: bytes,
) -> dict[str, Any]:
    started = time.perf_counter()
    calibration, held, corpus, qrels = gate_data()
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        progress(f"exporting to {backend} ({quantize})")
        onnx_fp32 = work / "fp32.onnx"
        export_onnx(st_model, onnx_fp32)
        target = work / model_file(backend)
        if backend == "onnx":
            if quantize == "int8":
                quantize_onnx(onnx_fp32, target)
                onnx_fp32.unlink()
            else:
                onnx_fp32.rename(target)
        else:
            samples = None
            if quantize == "int8":
                names = input_names(st_model)
                samples = []
                for i in range(0, min(len(calibration), 300), 10):
                    features = tokenize(st_model, calibration[i : i + 10])
                    samples.append({n: features[n].numpy().astype(np.int64) for n in names})
            convert_openvino(onnx_fp32, target, samples)
            onnx_fp32.unlink()
        runner = make_runner(backend, quantize, target, gate.threads)
        progress("checking the export against torch fp32 on held-out xquad-r")
        qids, qtexts = list(held), list(held.values())
        dids, dtexts = list(corpus), list(corpus.values())
        ref_q, ref_d = reference(qtexts, True), reference(dtexts, False)
        out_q, out_d = exported(runner, qtexts, True), exported(runner, dtexts, False)
        cos = np.concatenate([_cosines(ref_q, out_q), _cosines(ref_d, out_d)])
        ndcg_torch = ndcg10(_unit(ref_q), _unit(ref_d), qids, dids, qrels)
        ndcg_export = ndcg10(_unit(out_q), _unit(out_d), qids, dids, qrels)
        mean_cosine, drop = float(cos.mean()), ndcg_torch - ndcg_export
        report: dict[str, Any] = {
            "backend": backend,
            "quantize": quantize,
            "source": source,
            "gate": gate.as_dict(),
            "texts": len(cos),
            "held_out_questions": len(qids),
            "corpus": len(dids),
            "mean_cosine": mean_cosine,
            "min_cosine": float(cos.min()),
            "ndcg_torch": ndcg_torch,
            "ndcg_export": ndcg_export,
            "ndcg_drop": drop,
            "seconds": time.perf_counter() - started,
            "path": str(folder / "gate.json"),
        }
        report["files"] = _digests(work, backend)
        report["passed"] = bool(mean_cosine >= gate.min_cosine and drop <= gate.max_ndcg_drop)
        report["signature"] = _sign(report, key)
        (work / "gate.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        work.rename(folder)  # the export appears whole or not at all
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)  # float32 rounds near-identical rows to a cosine of exactly 1
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(_unit(a) * _unit(b), axis=1)


__all__ = [
    "Backend",
    "ExportError",
    "GateSettings",
    "Quantize",
    "Runner",
    "export_root",
    "prepare",
]
