"""Importing ragstore must stay light, the adapters must not ship as a top-level package, layers one-way."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = [
    "torch",
    "sentence_transformers",
    "transformers",
    "faiss",
    "chromadb",
    "pymilvus",
    "qdrant_client",
    "psycopg",
    "langchain_core",
    "llama_index",
]


def test_import_ragstore_pulls_no_engine_or_torch() -> None:
    code = f"import sys, ragstore, ragstore.config, ragstore.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_adapters_ship_inside_ragstore_not_top_level() -> None:
    spec = importlib.util.find_spec("ragstore.adapters.faiss")
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).resolve() == (REPO / "adapters" / "faiss.py").resolve()
    code = "import importlib.util as u; s = u.find_spec('adapters'); print(s.origin if s else None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert str(REPO) not in out.stdout  # no top-level `adapters` package comes from this distribution


# lower number = lower layer; a module may import only its own layer or below, and within a layer from 3 up,
# only its own package: pipeline, bench and finetune (and bilingual beside registry/ingest) never import
# each other sideways.
LAYERS = {
    "ragstore.errors": 0,
    "ragstore.types": 0,
    "ragstore.query.filters": 0,
    "ragstore.query.indexed": 0,
    "ragstore.query.namespaces": 0,
    "ragstore._optional": 0,
    "ragstore._version": 0,
    "ragstore._locks": 0,
    "ragstore._plock": 0,
    "ragstore._db": 0,
    "ragstore._moved": 0,
    "ragstore.query.fusion": 0,
    "ragstore.secrets": 0,
    "ragstore.lexical": 2,  # the BM25 index: above the store interface, read and written by collections
    "ragstore.stores.collection": 4,
    "ragstore.stores.base": 1,
    "ragstore.embedders": 1,
    "ragstore.adapters": 2,
    "ragstore.stores.registry": 3,
    "ragstore.data.ingest": 3,
    "ragstore.data.beir": 3,
    "ragstore.eval.metrics": 1,  # pytrec_eval only; the embedders' export gate scores with it
    "ragstore.bilingual": 3,
    "ragstore.config": 4,
    "ragstore.query.retrieval": 5,
    "ragstore.transfer": 5,  # copy, export, import: collections and sources, below the CLI
    "ragstore.pipeline": 6,
    "ragstore.bench": 6,
    "ragstore.finetune": 6,
    "ragstore.integrations": 7,
    "ragstore.testing": 7,
    "ragstore.cli": 7,
    "ragstore.serve": 7,
    "ragstore": 7,
}
SEALED_FROM = 3  # layers from here up: no sideways imports between packages of the same layer
ALLOWED_SIDEWAYS = {
    ("ragstore.data.beir", "ragstore.data.ingest"),  # BEIR rows are read with ingest's JSONL reader
    ("ragstore.cli", "ragstore.serve"),  # `ragstore serve` starts the app (imported only by that command)
}


def _owner(module: str) -> str:
    return max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)


def _layer(module: str) -> int:
    return LAYERS[_owner(module)]


def _modules() -> dict[str, Path]:
    out = {}
    for root, pkg in ((REPO / "ragstore", "ragstore"), (REPO / "adapters", "ragstore.adapters")):
        for file in root.rglob("*.py"):
            rel = file.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = file
    return out


def _imports(module: str, file: Path) -> set[str]:
    tree = ast.parse(file.read_text(encoding="utf-8"))
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("ragstore")}


def test_layers_only_import_downward() -> None:
    modules = _modules()
    problems = []
    for module, file in modules.items():
        if module == "ragstore":
            continue  # the package root re-exports lazily
        for imported in _imports(module, file):
            if imported not in modules and imported.rpartition(".")[0] in modules:
                imported = imported.rpartition(".")[0]  # "from pkg import name"
            if _layer(imported) > _layer(module):
                problems.append(f"{module} (layer {_layer(module)}) imports {imported} (layer {_layer(imported)})")
            elif (
                _layer(imported) == _layer(module) >= SEALED_FROM
                and _owner(imported) != _owner(module)
                and (_owner(module), _owner(imported)) not in ALLOWED_SIDEWAYS
            ):
                problems.append(f"{module} imports {imported} sideways (both layer {_layer(module)})")
    assert not problems, "\n".join(problems)


def test_no_import_cycles() -> None:
    """Module-level imports form no cycle (finetune data <-> generate and testing conformance <-> strategies
    once did); a package's ``__init__`` re-exporting its own modules is not a cycle."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, file in modules.items():
        targets = set()
        for imported in _imports(module, file):
            if imported not in modules and imported.rpartition(".")[0] in modules:
                imported = imported.rpartition(".")[0]
            if imported in modules and imported != module and not module.startswith(imported + "."):
                targets.add(imported)
        graph[module] = targets
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_benchmarks_import_each_other_one_way() -> None:
    """Scripts in benchmarks/ may import a sibling (inside a function, with benchmarks/ appended to the path),
    but never in a circle: finetune_search.py <-> finetune_xquad.py once did."""
    scripts = {f.stem: f for f in (REPO / "benchmarks").glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, file in scripts.items():
        found = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
        graph[name] = {m for m in found if m in scripts and m != name}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    circles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a, {b}))
    assert not circles, circles


def test_the_package_root_holds_few_loose_modules_and_at_most_nine_layers() -> None:
    """Layers have folders (stores/, data/, eval/, query/...): the root keeps the public basics (errors,
    types, secrets), the config, the pipeline and the CLI, and private helpers."""
    loose = sorted(p.stem for p in (REPO / "ragstore").glob("*.py") if p.stem != "__init__")
    public = [m for m in loose if not m.startswith("_")]
    assert public == ["cli", "config", "errors", "pipeline", "secrets", "types"], public
    assert max(LAYERS.values()) - min(LAYERS.values()) + 1 <= 9


def test_moved_modules_still_import_by_their_old_names() -> None:
    """ragstore.store, ragstore.filters... (what adapters written before the folders import) are the new
    modules under the old names, with a DeprecationWarning, in a fresh interpreter."""
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "import ragstore.stores.base as new\n"
        "try:\n    import ragstore.store\nexcept DeprecationWarning as w:\n    print('warned', w)\n"
        "warnings.simplefilter('ignore')\n"
        "from ragstore.store import VectorStore\nfrom ragstore.filters import parse_filter\n"
        "import ragstore.store as old\nprint(old is new, VectorStore is new.VectorStore)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "warned ragstore.store moved to ragstore.stores.base" in out.stdout
    assert out.stdout.strip().endswith("True True"), out.stdout
