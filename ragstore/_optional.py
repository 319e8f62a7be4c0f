"""Import optional dependencies with an error that names the pip command to fix it."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import BackendNotInstalledError


def require(module: str, extra: str, what: str | None = None) -> ModuleType:
    """Import ``module`` or raise ``BackendNotInstalledError`` pointing at ``ragstore[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendNotInstalledError(what or module, extra, module) from None
