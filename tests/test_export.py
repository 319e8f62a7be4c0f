"""ONNX Runtime / OpenVINO exports of sentence-transformers models: same vectors as torch, a gate that refuses
bad exports with figures, exports made once (also across processes) and re-made when damaged.

A tiny random BERT exercises the export and loading code (never quality); the gate itself runs on the bundled
xquad-r as it does for real models.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from ragstore.embedders import export
from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
from ragstore.errors import BackendNotInstalledError, ConfigError, ExportError, ExportGateError
from ragstore.stores.registry import create_embedder

TEXTS = [
    "x",
    "a much longer sentence about the capital of France, its museums and the river that runs through it",
    "北京是中国的首都",
    "short one",
    "   spaces   around   ",
    "emoji 🚀 and symbols <>&\"'",
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_export_gives_torch_vectors_in_the_callers_order(
    tiny_model: Path, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"query_prefix": "query: ", "passage_prefix": "passage: ", "truncate_dim": 16, "batch_size": 2}
    torch_emb = SentenceTransformerEmbedder(str(tiny_model), backend="torch", **options)  # type: ignore[arg-type]
    emb = SentenceTransformerEmbedder(str(tiny_model), backend=backend, export_dir=str(tmp_path), **options)  # type: ignore[arg-type]
    for method in ("embed_documents", "embed_query"):
        ref, out = getattr(torch_emb, method)(TEXTS), getattr(emb, method)(TEXTS)
        assert out.shape == (len(TEXTS), 16)
        assert _cos(ref, out).min() > 0.9999, method
    # queries and passages keep their own prefixes through the export
    assert _cos(emb.embed_query(TEXTS), emb.embed_documents(TEXTS)).max() < 0.9999
    report = json.loads((tmp_path / f"{backend}-none" / "gate.json").read_text(encoding="utf-8"))
    assert report["passed"] and report["mean_cosine"] > 0.9999
    assert report["held_out_questions"] > 500 and report["corpus"] > 1000
    assert emb.fingerprint != torch_emb.fingerprint  # an export never shares cached vectors with torch
    assert emb.describe()["backend"] == backend
    if backend == "openvino":  # several batches: latency model first, then the streams once compiled
        import time

        ready = emb._runner.throughput_ready  # type: ignore[union-attr]
        assert not ready()  # calls of under four batches never compile it
        many = TEXTS * 3  # nine batches of two: starts the compile
        assert _cos(torch_emb.embed_documents(many), emb.embed_documents(many)).min() > 0.9999
        deadline = time.monotonic() + 60
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready()
        streamed = emb.embed_documents(many)
        assert _cos(torch_emb.embed_documents(many), streamed).min() > 0.9999  # same vectors, caller's order
    before = emb.fingerprint
    monkeypatch.setattr(export, "GATE_VERSION", export.GATE_VERSION + 1)
    assert emb.fingerprint != before  # a runtime that computes exports differently never reuses cached vectors


def test_an_export_is_made_once_and_remade_when_damaged(tiny_model: Path, tmp_path: Path) -> None:
    SentenceTransformerEmbedder(str(tiny_model), backend="onnx", export_dir=str(tmp_path))
    model = tmp_path / "onnx-none" / "model.onnx"
    made = model.stat().st_mtime_ns
    again = SentenceTransformerEmbedder(str(tiny_model), backend="onnx", export_dir=str(tmp_path))
    assert model.stat().st_mtime_ns == made
    model.write_bytes(model.read_bytes()[:1000])  # truncated, as by a full disk
    fixed = SentenceTransformerEmbedder(str(tiny_model), backend="onnx", export_dir=str(tmp_path))
    assert model.stat().st_size > 1000
    np.testing.assert_allclose(fixed.embed_documents(TEXTS), again.embed_documents(TEXTS), atol=1e-6)


def test_a_failed_gate_refuses_with_its_figures_until_the_settings_change(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportGateError, match=r"mean cosine to torch fp32 \d\.\d{8} < 1\.0 \(short by \d") as info:
        SentenceTransformerEmbedder(
            str(tiny_model), backend="onnx", quantize="int8", export_dir=str(tmp_path), gate_min_cosine=1.0
        )
    assert info.value.report["passed"] is False and info.value.report["mean_cosine"] < 1.0
    model = tmp_path / "onnx-int8" / "model.onnx"
    made = model.stat().st_mtime_ns
    with pytest.raises(ExportGateError):  # refused again from the saved figures, not re-exported
        SentenceTransformerEmbedder(
            str(tiny_model), backend="onnx", quantize="int8", export_dir=str(tmp_path), gate_min_cosine=1.0
        )
    assert model.stat().st_mtime_ns == made
    ok = SentenceTransformerEmbedder(str(tiny_model), backend="onnx", quantize="int8", export_dir=str(tmp_path))
    assert ok.gate_report is not None and ok.gate_report["passed"]


def test_a_model_that_cannot_be_exported_says_why(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-prompt-pooling"
    shutil.copytree(tiny_model, folder)
    pooling = next(folder.glob("*Pooling*/config.json"))
    config = json.loads(pooling.read_text(encoding="utf-8"))
    config["include_prompt"] = False
    pooling.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ExportError, match="prompt tokens out of pooling"):
        SentenceTransformerEmbedder(str(folder), backend="onnx", query_prefix="query: ", export_dir=str(tmp_path / "x"))
    assert not (tmp_path / "x" / "onnx-none" / "model.onnx").exists()


def test_config_errors_and_missing_runtimes(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = {"type": "sentence-transformers", "model": str(tiny_model)}
    with pytest.raises(ConfigError, match="quantize: int8 needs backend"):
        create_embedder({**block, "quantize": "int8", "backend": "torch"})
    with pytest.raises(ConfigError, match="chosen by backend: auto"):
        create_embedder({**block, "quantize": "int8"})
    with pytest.raises(ConfigError, match="backend"):
        create_embedder({"type": "sentence-transformers", "model": str(tiny_model), "backend": "tensorrt"})
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the accel extra were not installed
    with pytest.raises(BackendNotInstalledError, match="accel"):
        create_embedder(
            {
                "type": "sentence-transformers",
                "model": str(tiny_model),
                "backend": "openvino",
                "export_dir": str(tmp_path),
            }
        )


def test_config_export_beside_a_model_folder_the_user_owns(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    shutil.copytree(tiny_model, folder)
    emb = create_embedder({"type": "sentence-transformers", "model": str(folder), "backend": "openvino", "threads": 1})
    assert (folder / "ragstore-exports" / "openvino-none" / "model.xml").is_file()
    assert emb.embed_query(["hello"]).shape == (1, emb.dim)


def _export_in_a_process(folder: str, export_dir: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    emb = SentenceTransformerEmbedder(folder, backend="onnx", export_dir=export_dir)
    queue.put(emb.embed_documents(["same text in both processes"]).tolist())


def test_two_processes_exporting_at_once_share_one_export(tiny_model: Path, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_export_in_a_process, args=(str(tiny_model), str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    np.testing.assert_allclose(results[0], results[1], atol=1e-7)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["gate.key", "onnx-none"]


def test_retrained_weights_are_exported_again(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tuned"
    shutil.copytree(tiny_model, folder)
    first = SentenceTransformerEmbedder(str(folder), backend="onnx")
    model = folder / "ragstore-exports" / "onnx-none" / "model.onnx"
    made = model.stat().st_mtime_ns

    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    with torch.no_grad():
        for p in st.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    st.save(str(folder))  # "re-trained" in place
    second = SentenceTransformerEmbedder(str(folder), backend="onnx")
    assert model.stat().st_mtime_ns != made
    retrained = SentenceTransformerEmbedder(str(folder), backend="torch").embed_documents(TEXTS)
    assert _cos(second.embed_documents(TEXTS), retrained).min() > 0.9999
    assert _cos(first.embed_documents(TEXTS), retrained).min() < 0.9999


def test_bench_names_exported_variants_and_skips_a_refused_one(tiny_model: Path, tmp_path: Path) -> None:
    from ragstore.bench import load_bench_config, plan, run_bench

    base = {"type": "sentence-transformers", "model": str(tiny_model), "export_dir": str(tmp_path / "exports")}
    config = {
        "embedders": [
            {"type": "sentence-transformers", "model": str(tiny_model), "backend": "torch"},
            {**base, "backend": "onnx"},
            {**base, "backend": "onnx", "quantize": "int8", "gate_min_cosine": 1.0},  # cannot pass
        ],
        "stores": [{"type": "memory"}],
        "query_paths": ["plain"],
        "output": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "speed": {"enabled": False},
        "plots": False,
    }
    result = run_bench(plan(load_bench_config(config)), progress=False)
    by_embedder = {r["embedder"]: r["nDCG@10"] for r in result["rows"]}
    plain, exported = str(tiny_model), f"{tiny_model} [onnx fp32]"  # a folder is named by its path
    assert set(by_embedder) == {plain, exported}
    assert by_embedder[plain] == pytest.approx(by_embedder[exported], abs=1e-4)
    (refused,) = result["skipped"]
    assert "[onnx int8]" in refused["what"] and "failed its quality gate" in refused["why"]


def test_an_edited_gate_report_is_never_trusted(tiny_model: Path, tmp_path: Path) -> None:
    """Issue 28: digests patched to match a swapped model, or ``passed`` flipped, make the export be remade."""
    first = SentenceTransformerEmbedder(str(tiny_model), backend="onnx", export_dir=str(tmp_path))
    expected = first.embed_documents(TEXTS)
    folder = tmp_path / "onnx-none"
    report_file = folder / "gate.json"
    # a swapped model (another export of other weights would do; random bytes stand in) with matching digests
    model = folder / "model.onnx"
    good = model.read_bytes()
    model.write_bytes(good[: len(good) // 2] + bytes(len(good) - len(good) // 2))
    report = json.loads(report_file.read_text(encoding="utf-8"))
    import hashlib

    report["files"] = {"model.onnx": hashlib.sha256(model.read_bytes()).hexdigest()}
    report_file.write_text(json.dumps(report), encoding="utf-8")
    again = SentenceTransformerEmbedder(str(tiny_model), backend="onnx", export_dir=str(tmp_path))
    np.testing.assert_allclose(again.embed_documents(TEXTS), expected, atol=1e-6)
    assert model.read_bytes() != good[: len(good) // 2] + bytes(len(good) - len(good) // 2)
    # a good export marked failed by hand is checked again, and used
    report = json.loads(report_file.read_text(encoding="utf-8"))
    report["passed"] = False
    report_file.write_text(json.dumps(report), encoding="utf-8")
    third = SentenceTransformerEmbedder(str(tiny_model), backend="onnx", export_dir=str(tmp_path))
    assert third.gate_report is not None and third.gate_report["passed"]
    assert json.loads(report_file.read_text(encoding="utf-8"))["passed"] is True
    assert oct((tmp_path / "gate.key").stat().st_mode & 0o777) == "0o600"


def test_backend_auto_takes_the_fastest_gated_export_or_torch(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``backend: auto`` (the default) runs the first variant of ``AUTO_ORDER`` whose export passes its gate;
    its vectors are the same model's (one manifest identity key), and without the accel extra it is torch."""
    from ragstore.embedders import export

    block = {"type": "sentence-transformers", "model": str(tiny_model), "export_dir": str(tmp_path / "x")}
    torch_emb = create_embedder({**block, "backend": "torch"})
    auto = create_embedder(block)
    assert auto.describe()["requested"] == "auto"
    tried = auto.describe()["auto_skipped"]
    assert (auto.backend, auto.quantize) == export.AUTO_ORDER[len(tried)]  # earlier variants failed their gate
    assert all(f"{b}-{q}" in t for (b, q), t in zip(export.AUTO_ORDER, tried, strict=False))
    assert auto.identity()["key"] == torch_emb.identity()["key"] and auto.identity()["variant"] != "torch"
    a, t = auto.embed_documents(["one text"]), torch_emb.embed_documents(["one text"])
    assert float(a[0] @ t[0]) > 0.99  # what its gate checked
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    plain = create_embedder(block)
    assert plain.backend == "torch" and plain.describe()["auto_skipped"] == []
