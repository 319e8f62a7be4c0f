"""Bench results as people read them: a terminal table, Markdown, CSV, JSON, PNG plots, and a diff of two runs."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from .._optional import require
from ..errors import DatasetError

#: (column title, row key or function, format)
Column = tuple[str, Callable[[dict[str, Any]], Any], str]


def _get(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row.get(key)


def _qps_max(row: dict[str, Any]) -> float | None:
    values = (row.get("qps") or {}).values()
    return max(values) if values else None


def _shares(shares: dict[str, float] | None) -> str | None:
    return " / ".join(f"{lang} {v:.0%}" for lang, v in shares.items()) if shares else None


def _by_lang(values: dict[str, float] | None) -> str | None:
    return " / ".join(f"{lang} {v:.2f}" for lang, v in values.items()) if values else None


def _qps_all(row: dict[str, Any]) -> str | None:
    values = row.get("qps") or {}
    return " / ".join(f"{values[c]:,.0f}" for c in sorted(values, key=int)) if values else None


COLUMNS: list[Column] = [
    ("embedder", _get("embedder"), "s"),
    ("store", _get("store"), "s"),
    ("setting", _get("setting"), "s"),
    ("queries", _get("queries"), "s"),
    ("path", _get("path"), "s"),
    ("nDCG@10", _get("nDCG@10"), ".4f"),
    ("R@10", _get("Recall@10"), ".4f"),
    ("R@100", _get("Recall@100"), ".4f"),
    ("MRR@10", _get("MRR@10"), ".4f"),
    ("ANN R@10", _get("ann_recall@10"), ".3f"),
    ("ingest/s", _get("ingest_per_s"), ",.0f"),
    ("p50 ms", _get("p50_ms"), ".2f"),
    ("p95 ms", _get("p95_ms"), ".2f"),
    ("p99 ms", _get("p99_ms"), ".2f"),
    ("QPS max", _qps_max, ",.0f"),
    ("QPS by clients", _qps_all, "s"),
    ("top-10 languages", lambda row: _shares(row.get("top10_lang_share")), "s"),
    ("R@10 by language", lambda row: _by_lang(row.get("recall@10_by_lang")), "s"),
    ("mem MB", _get("peak_mem_mb"), ".0f"),
    ("disk MB", _get("disk_mb"), ".1f"),
]


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if spec == "s":
        return str(value)
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


#: the terminal shows fewer columns than the files, so it fits a normal window
TERMINAL = (
    "top-10 languages",
    "R@10 by language",
    "embedder",
    "store",
    "setting",
    "queries",
    "path",
    "nDCG@10",
    "R@10",
    "MRR@10",
    "ANN R@10",
    "ingest/s",
    "p50 ms",
    "p95 ms",
    "QPS max",
    "mem MB",
)
FILES = tuple(c[0] for c in COLUMNS if c[0] != "QPS max")


def _columns(rows: list[dict[str, Any]], names: tuple[str, ...] = FILES) -> list[Column]:
    """Drop columns that say nothing in this run (one embedder, no settings, one path, speed off)."""
    keep = []
    for col in COLUMNS:
        if col[0] not in names:
            continue
        values = {str(col[1](r)) for r in rows}
        if col[0] in ("embedder", "path") and len(values) <= 1:
            continue
        if col[0] == "setting" and values <= {""}:
            continue
        if values <= {"None"}:
            continue
        keep.append(col)
    return keep


def rich_table(result: dict[str, Any], title: str | None = None) -> Table:
    rows = result["rows"]
    table = Table(title=title, title_justify="left")
    cols = _columns(rows, TERMINAL)
    for name, _, spec in cols:
        numeric = spec != "s"
        table.add_column(name, justify="right" if numeric else "left", no_wrap=numeric, overflow="fold")
    for row in rows:
        table.add_row(*(escape(_fmt(get(row), spec)) for _, get, spec in cols))
    return table


def _embedder_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for emb in result.get("embedders", []):
        c = emb["corpus"]
        how = f"{c['embedded']} embedded" + (f", {c['from_cache']} from cache" if c["from_cache"] else "")
        if c["embedded"] and c["seconds"] > 0:  # texts repeated in the corpus are embedded once
            rate = f"{c['embedded'] / c['seconds']:.1f} passages/s"
        elif c.get("measured_per_s"):
            rate = f"{c['measured_per_s']:.1f} passages/s when first embedded"
        else:
            rate = "cached"
        queries = "; ".join(
            f"{k}: {q['n']} in {q['seconds']:.2f} s ({q['embedded']} embedded)" for k, q in emb["queries"].items()
        )
        lines.append(
            f"{emb['label']} (dim {emb['dim']}): corpus {c['n']} in {c['seconds']:.2f} s = {rate} ({how}); "
            f"queries {queries}"
        )
    main_rate = _rate(result.get("embedders", [{}])[0].get("corpus", {})) if result.get("embedders") else None
    for route in result.get("multilingual") or []:
        per_s = _rate(route["corpus"])
        ratio = f", {main_rate / per_s:.1f}x the main embedder's corpus time" if per_s and main_rate else ""
        pkg = route.get("describe", {}).get("package")
        lines.append(
            f"route {route['label']} (dim {route['dim']}{', ' + pkg if pkg else ''}): second index of "
            f"{route['corpus']['n']} passages" + (f" at {per_s:.1f} passages/s{ratio}" if per_s else "")
        )
    return lines


def _rate(corpus: dict[str, Any]) -> float | None:
    """Passages/s of a fresh embedding (or the one remembered from the first run when cached)."""
    if corpus.get("embedded") and corpus.get("seconds"):
        return float(corpus["embedded"] / corpus["seconds"])
    value = corpus.get("measured_per_s")
    return float(value) if value else None


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    ds = meta["dataset"]
    mach = meta["machine"]
    rows = result["rows"]
    cols = _columns(rows)
    out = [
        f"# ragstore bench: {ds.get('name')}",
        "",
        f"- dataset: `{ds.get('folder')}` (fingerprint `{ds.get('fingerprint')}`), corpus {ds.get('corpus')} "
        f"passages ({'+'.join(ds.get('corpus_langs') or [])}), queries {ds.get('queries')}",
        f"- machine: {mach.get('cpu')}, {mach.get('cores')} cores, {mach.get('memory_gb', '?')} GiB; "
        f"Python {mach.get('python')}",
        f"- run: {meta['started']}, {meta['duration_s']:.0f} s; ragstore {meta['versions'].get('ragstore', '?')}",
    ]
    for line in _embedder_lines(result):
        out.append(f"- embedder {line}")
    speed = meta["config"].get("speed", {})
    if speed.get("enabled", True):
        out.append(
            f"- latency: {speed.get('latency_queries')} single queries at k={speed.get('latency_k')} after "
            f"{speed.get('warmup')} warm-up; QPS with {speed.get('concurrency')} client threads, "
            f"{speed.get('qps_seconds')} s each; mem = peak RSS growth of the process tree while the store was open"
        )
    out += ["", "| " + " | ".join(c[0] for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        out.append("| " + " | ".join(_fmt(get(row), spec).replace("|", "\\|") for _, get, spec in cols) + " |")
    if result.get("skipped"):
        out += ["", "## Skipped", ""]
        out += [f"- {s['what']}: {s['why']}" for s in result["skipped"]]
    if result.get("errors"):
        out += ["", "## Failed", ""]
        out += [f"- {e['store']} ({e['embedder']}): {e['error']}" for e in result["errors"]]
    return "\n".join(out) + "\n"


def write_csv(result: dict[str, Any], path: Path) -> None:
    rows = result["rows"]
    levels = sorted({c for r in rows for c in (r.get("qps") or {})}, key=int)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k != "qps" and k not in keys]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(keys + [f"qps_{c}" for c in levels])
        for row in rows:
            cells = [json.dumps(v) if isinstance(v := row.get(k), dict) else v for k in keys]
            writer.writerow(cells + [(row.get("qps") or {}).get(c) for c in levels])


def _point_label(row: dict[str, Any]) -> str:
    parts = [row["store"]]
    if row.get("setting"):
        parts.append(row["setting"])
    return " ".join(parts)


#: markers cycled over stores (colours are query paths)
_MARKERS = "osD^vP*Xph<>"


def quality_vs_latency(result: dict[str, Any], rows: list[dict[str, Any]], target: Path, plt: Any) -> Path:
    """One figure read at a glance: nDCG@10 against p50 latency, one panel per query language, colour = query
    path, marker = store, every point labelled (store, setting, and the model when several ran); a swept
    setting's points joined by a line. Its size depends on the number of languages, never on the number of
    stores, models or paths, so ten configurations stay one readable figure."""
    langs = sorted({r["queries"] for r in rows})
    paths = sorted({r["path"] for r in rows}, key=lambda p: (p != "plain", p))
    stores = sorted({r["store"] for r in rows})
    embedders = sorted({r["embedder"] for r in rows})
    colours = plt.get_cmap("tab10")
    colour = {p: colours(i % 10) for i, p in enumerate(paths)}
    marker = {s: _MARKERS[i % len(_MARKERS)] for i, s in enumerate(stores)}
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, len(langs), figsize=(6.5 * len(langs), 5.2), squeeze=False, sharey=True)
    for ax, lang in zip(axes[0], langs, strict=True):
        part = [r for r in rows if r["queries"] == lang]
        placed: list[tuple[dict[str, Any], tuple[str, str, str]]] = []
        for key in sorted({(r["embedder"], r["store"], r["path"]) for r in part}):
            pts = sorted((r for r in part if (r["embedder"], r["store"], r["path"]) == key), key=lambda r: r["p50_ms"])
            xs, ys = [r["p50_ms"] for r in pts], [r["nDCG@10"] for r in pts]
            if len(pts) > 1:
                ax.plot(xs, ys, color=colour[key[2]], alpha=0.5, linewidth=1)
            ax.scatter(
                xs, ys, color=colour[key[2]], marker=marker[key[1]], s=46, zorder=3, edgecolors="black", linewidths=0.4
            )
            placed.extend((r, key) for r in pts)
        _label_points(ax, placed, several_stores=len(stores) > 1, several_models=len(embedders) > 1)
        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _pos: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("p50 search latency at k=10 (ms, log scale)")
        ax.set_title(f"{lang} questions", fontsize=11)
        ax.grid(True, alpha=0.3, which="both")
    axes[0][0].set_ylabel("nDCG@10")
    handles = [Line2D([], [], color=colour[p], marker="o", linestyle="", label=p) for p in paths]
    handles += [Line2D([], [], color="grey", marker=marker[s], linestyle="", label=s) for s in stores]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(len(handles), 6),
        fontsize=8,
        frameon=False,
        title="colour: query path · marker: store",
        title_fontsize=8,
    )
    name = result["meta"]["dataset"].get("name")
    fig.suptitle(f"quality vs latency · {name} · higher and further left is better", fontsize=12)
    rows_of_legend = -(-len(handles) // 6)
    fig.tight_layout(rect=(0, 0.05 + 0.035 * rows_of_legend, 1, 1))
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def _label_points(
    ax: Any, placed: list[tuple[dict[str, Any], tuple[str, str, str]]], *, several_stores: bool, several_models: bool
) -> None:
    """A label per point (path, then store and setting when several ran, then the model when several ran);
    points that land on the same spot share one label, so none is written over another."""
    spots: dict[tuple[float, float], list[str]] = {}
    for row, (embedder, _store, path) in placed:
        parts = [path]
        if several_stores or row.get("setting"):
            parts.append(_point_label(row))
        if several_models:
            parts.append(embedder)
        x, y = float(row["p50_ms"]), float(row["nDCG@10"])
        spot = next(
            (s for s in spots if abs(s[1] - y) < 0.012 and max(s[0], x) / max(min(s[0], x), 1e-9) < 1.25), (x, y)
        )
        spots.setdefault(spot, []).append(" ".join(parts))
    for (x, y), labels in spots.items():
        ax.annotate(", ".join(labels), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7, color="#222222")


def plots(result: dict[str, Any], folder: Path) -> list[Path]:
    """quality_vs_latency.png always (when latency was measured); sweep.png when a sweep ran."""
    rows = [r for r in result["rows"] if r.get("p95_ms") is not None]
    if not rows:
        return []
    mpl = require("matplotlib", "bench", "matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    written = [quality_vs_latency(result, rows, folder / "quality_vs_latency.png", plt)]

    swept = [r for r in rows if r.get("setting")]
    if swept:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        for line in sorted({(r["embedder"], r["store"], r["queries"], r["path"]) for r in swept}):
            pts = [r for r in swept if (r["embedder"], r["store"], r["queries"], r["path"]) == line]
            xs = [_sweep_x(r["setting"]) for r in pts]
            name = f"{line[1]} · {line[2]}"
            ax1.plot(xs, [r["ann_recall@10"] for r in pts], marker="o", label=name)
            ax2.plot(xs, [r["p95_ms"] for r in pts], marker="o", label=name)
        setting_name = swept[0]["setting"].split("=")[0]
        for ax, ylabel in ((ax1, "ANN recall@10 vs exact"), (ax2, "p95 latency (ms)")):
            ax.set_xlabel(setting_name)
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle("search-time setting sweep")
        fig.tight_layout()
        target = folder / "sweep.png"
        fig.savefig(target, dpi=110)
        plt.close(fig)
        written.append(target)
    return written


def _sweep_x(setting: str) -> float:
    match = re.search(r"=\s*([-0-9.]+)", setting)
    return float(match.group(1)) if match else 0.0


def write_all(result: dict[str, Any], folder: Path, with_plots: bool = True) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "results.json", folder / "results.md", folder / "results.csv"]
    files[0].write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    files[1].write_text(markdown(result), encoding="utf-8")
    write_csv(result, files[2])
    if with_plots:
        files += plots(result, folder)
    return files


# ---------------------------------------------------------------------------------------------- compare

KEY = ("embedder", "store", "setting", "queries", "path")
COMPARED: list[tuple[str, Callable[[dict[str, Any]], Any], bool]] = [
    ("nDCG@10", _get("nDCG@10"), True),
    ("R@10", _get("Recall@10"), True),
    ("ANN R@10", _get("ann_recall@10"), True),
    ("p95 ms", _get("p95_ms"), False),
    ("QPS max", _qps_max, True),
    ("ingest/s", _get("ingest_per_s"), True),
]


def load_result(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if file.is_dir():
        file = file / "results.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"cannot read bench result {file}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{file} is not a bench result (invalid JSON: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or "meta" not in data:
        raise DatasetError(f"{file} is not a ragstore bench result (no 'meta' and 'rows')")
    return data


def compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[Table, list[str]]:
    """Side-by-side table of configurations found in both runs, with B - A; plus warnings."""
    notes = []
    fa, fb = a["meta"]["dataset"].get("fingerprint"), b["meta"]["dataset"].get("fingerprint")
    if fa != fb:
        notes.append(f"different datasets (fingerprints {fa} vs {fb}): quality figures are not comparable")
    if a["meta"].get("machine") != b["meta"].get("machine"):
        notes.append("measured on different machines: speed figures are not comparable")
    index_a = {tuple(r.get(k) for k in KEY): r for r in a["rows"]}
    index_b = {tuple(r.get(k) for k in KEY): r for r in b["rows"]}
    common = [k for k in index_a if k in index_b]
    only = len(index_a) + len(index_b) - 2 * len(common)
    if only:
        notes.append(f"{only} configurations appear in only one run and are not shown")
    table = Table(title="B vs A", title_justify="left")
    for name in ("store", "setting", "queries"):
        table.add_column(name)
    for name, _, _ in COMPARED:
        table.add_column(f"{name} A → B", justify="right")
    for key in common:
        ra, rb = index_a[key], index_b[key]
        cells = [escape(str(key[1])), escape(str(key[2])), escape(str(key[3]))]
        for _, get, higher_better in COMPARED:
            va, vb = get(ra), get(rb)
            if va is None or vb is None:
                cells.append("-")
                continue
            delta = vb - va
            rel = delta / abs(va) if va else 0.0
            better = (delta > 0) == higher_better
            colour = "dim" if abs(rel) < 0.02 else ("green" if better else "red")
            cells.append(f"{va:.4g} → {vb:.4g} [{colour}]({rel:+.1%})[/]")
        table.add_row(*cells)
    return table, notes
