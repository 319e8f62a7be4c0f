"""``ragstore`` command line: ingest, search, info, demo.

Every command reads the same config (``--config``, ``$RAGSTORE_CONFIG``, ``./ragstore.yaml``, or defaults:
FAISS under ``./.ragstore`` with the offline all-MiniLM-L6-v2). A ``RagstoreError`` prints one red line and
exits with status 2; no traceback for a user mistake.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import RagstoreError
from .types import Hit

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Swap vector stores and embedders by config.")
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="config file (YAML/TOML); default ./ragstore.yaml")
]
F = TypeVar("F", bound=Callable[..., Any])


def _friendly(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagstoreError as exc:
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _open(config: Path | None) -> Any:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .pipeline import Ragstore

    return Ragstore.open(config)


def _hits_table(title: str, hits: list[Hit], relevant: set[str] | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id")
    if relevant is not None:
        table.add_column("rel", justify="center")
    table.add_column("text", overflow="fold", max_width=80)
    for rank, hit in enumerate(hits, 1):
        text = " ".join(hit.text.split())
        row = [str(rank), f"{hit.score:.3f}", escape(hit.id)]
        if relevant is not None:
            row.append("[green]✓[/]" if hit.id in relevant else "")
        row.append(escape(text[:160] + ("…" if len(text) > 160 else "")))
        table.add_row(*row)
    return table


@app.command()
@_friendly
def ingest(
    path: Annotated[Path, typer.Argument(help="file or folder (.txt .md .html .jsonl .csv)")],
    config: ConfigOpt = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Chunk, embed and store documents; unchanged chunks are skipped, removed ones deleted."""
    with _open(config) as rs:
        report = rs.ingest(path, progress=progress)
        console.print(
            f"[bold]{report.files}[/] files, [bold]{report.chunks}[/] chunks: {report.embedded} embedded, "
            f"{report.unchanged} unchanged, {report.removed} removed"
            + (f", {report.duplicates} duplicate ids skipped" if report.duplicates else "")
            + f"; store now holds {rs.count()}"
        )


@app.command()
@_friendly
def search(
    query: Annotated[str, typer.Argument(help="the question")],
    k: Annotated[int | None, typer.Option("-k", help="number of results")] = None,
    filter: Annotated[str | None, typer.Option("--filter", "-f", help='JSON filter, e.g. {"lang": "en"}')] = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Search the store for a query."""
    from .errors import FilterError

    where = None
    if filter:
        try:
            where = json.loads(filter)
        except json.JSONDecodeError as exc:
            raise FilterError(f"--filter is not valid JSON: {exc}") from None
    with _open(config) as rs:
        hits = rs.search(query, k, where)
    if as_json:
        console.print_json(data=[asdict(h) for h in hits])
    else:
        console.print(_hits_table(escape(query), hits))


@app.command()
@_friendly
def info(config: ConfigOpt = None) -> None:
    """Show the config in use, installed backends, the model and counts."""
    from .registry import EMBEDDERS, STORES, installed

    with _open(config) as rs:
        data = rs.info()
    table = Table(title="backends", title_justify="left")
    table.add_column("backend")
    table.add_column("installed")
    table.add_column("install with", no_wrap=True)
    table.add_column("kind")
    for kind, entries in (("store", STORES), ("embedder", EMBEDDERS)):
        for name, ok in installed(entries).items():
            extra = entries[name].extra
            hint = escape(f"pip install 'ragstore[{extra}]'") if extra else "-"
            table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", hint, kind)
    console.print_json(data=data)
    console.print(table)


@app.command()
@_friendly
def demo(
    config: ConfigOpt = None,
    queries: Annotated[int, typer.Option(help="how many sample queries to show")] = 3,
    k: Annotated[int, typer.Option("-k", help="results per query")] = 3,
) -> None:
    """Ingest the bundled superannuation sample and show ranked results for sample queries."""
    from .pipeline import sample_dataset

    folder = sample_dataset()
    qrels: dict[str, set[str]] = {}
    for line in (folder / "qrels" / "test.en.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(did)
    rows = [json.loads(x) for x in (folder / "queries.en.jsonl").read_text(encoding="utf-8").splitlines() if x]
    with _open(config) as rs:
        console.print(f"[dim]store: {rs.store.name} · embedder: {rs.embedder.fingerprint}[/]")
        report = rs.ingest(folder / "corpus.en.jsonl", progress=True)
        console.print(
            f"sample corpus: {report.chunks} passages ({report.embedded} embedded, {report.unchanged} unchanged)"
        )
        picked = rows[:: max(1, len(rows) // max(queries, 1))][:queries]
        results = rs.search_many([r["text"] for r in picked], k)
        found = 0
        for row, hits in zip(picked, results, strict=True):
            rel = qrels.get(row["_id"], set())
            found += any(h.id in rel for h in hits)
            console.print(_hits_table(escape(row["text"]), hits, rel))
        console.print(
            f"{found}/{len(picked)} queries have a judged-relevant passage in their top {k} (✓ = judged relevant)"
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
