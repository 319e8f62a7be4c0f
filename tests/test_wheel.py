"""The built wheel is the whole package: every folder of ``ragstore/`` with Python files (the ``adapters`` and
``datasets`` links included), the bundled datasets with their licenses, and no top-level ``adapters``."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("ragstore-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def _python_folders() -> set[str]:
    found = set()
    for root, _dirs, files in os.walk(REPO / "ragstore", followlinks=True):
        if "__pycache__" in root:
            continue
        if any(f.endswith(".py") for f in files):
            found.add(Path(root).relative_to(REPO).as_posix())
    return found


def test_every_python_folder_is_in_the_wheel(wheel_names: set[str]) -> None:
    folders = _python_folders()
    assert {"ragstore/adapters", "ragstore/bench", "ragstore/integrations", "ragstore/finetune"} <= folders
    missing = sorted(f for f in folders if not any(n.startswith(f + "/") and n.endswith(".py") for n in wheel_names))
    assert not missing, f"left out of the wheel: {missing}"
    for folder in folders:
        for py in (REPO / folder).glob("*.py"):
            assert f"{folder}/{py.name}" in wheel_names, f"{folder}/{py.name} is not in the wheel"


def test_datasets_and_their_licenses_ship(wheel_names: set[str]) -> None:
    for name in ("superannuation", "xquad-r"):
        for file in ("corpus.en.jsonl", "queries.en.jsonl", "queries.zh.jsonl", "qrels/test.en.tsv", "README.md"):
            assert f"ragstore/datasets/{name}/{file}" in wheel_names
    assert "ragstore/datasets/xquad-r/LICENSE.md" in wheel_names
    assert "ragstore/datasets/xquad-r/corpus.zh.jsonl" in wheel_names


def test_no_top_level_adapters_in_the_wheel(wheel_names: set[str]) -> None:
    tops = {n.split("/", 1)[0] for n in wheel_names}
    assert tops == {"ragstore", *(t for t in tops if t.endswith(".dist-info"))}
