"""MkDocs hooks: the benchmark plots come from ``benchmarks/results`` (one copy in the repo), and every
backend page's options table is generated from the adapter's own pydantic options model, so the docs can
never list an option the code does not take."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = re.compile(r"<!-- options: ([\w.]+):(\w+) -->")


def on_files(files: Files, config: Any) -> Files:
    for png in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        files.append(
            File(
                f"results/{png.name}",
                src_dir=str(png.parent.parent),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


def _table(module: str, name: str) -> str:
    model = getattr(importlib.import_module(module), name)
    rows = ["| option | type | default | what it does |", "|---|---|---|---|"]
    for field, info in model.model_fields.items():
        kind = str(info.annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
        default = "required" if info.is_required() else f"`{info.default!r}`"
        text = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{field}` | `{kind.replace('|', chr(92) + '|')}` | {default} | {text} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    return OPTIONS.sub(lambda m: _table(m.group(1), m.group(2)), markdown)
