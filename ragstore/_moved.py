"""Modules that moved into layer folders, still importable by their old names (with a
``DeprecationWarning``), so adapters and apps written against ``ragstore.store`` or ``ragstore.filters``
keep working: the old name is the same module object as the new one, not a copy."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

#: old dotted name -> where the module lives now
MOVED: dict[str, str] = {
    "ragstore.store": "ragstore.stores.base",
    "ragstore.collection": "ragstore.stores.collection",
    "ragstore.registry": "ragstore.stores.registry",
    "ragstore.ingest": "ragstore.data.ingest",
    "ragstore.beir": "ragstore.data.beir",
    "ragstore.metrics": "ragstore.eval.metrics",
    "ragstore.retrieval": "ragstore.query.retrieval",
    "ragstore.fusion": "ragstore.query.fusion",
    "ragstore.filters": "ragstore.query.filters",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.target}; import it from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module ran when it was imported under its own name."""


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name in MOVED:
            return importlib.machinery.ModuleSpec(name, _Alias(MOVED[name]))
        return None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())


__all__ = ["MOVED", "install"]
