"""ragstore: swap vector databases and embedding models by config, and measure them.

Importing this package is cheap: no torch, no engine client. Those load when a store or embedder that
needs them is built, and a missing one raises ``BackendNotInstalledError`` naming the pip command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._moved import install as _install_moved
from ._version import __version__ as __version__
from .errors import (
    BackendNotInstalledError,
    BackendUnavailableError,
    ConfigError,
    DatasetError,
    DimensionMismatchError,
    EmbedderMismatchError,
    EngineError,
    FilterError,
    RagstoreError,
    TransferError,
    UnsupportedFeatureError,
    ValidationError,
)
from .types import Document, Hit

_install_moved()  # ragstore.store, ragstore.filters... still import, as the modules that moved into folders

_LAZY = {
    "open": ("ragstore.pipeline", "open"),
    "Ragstore": ("ragstore.pipeline", "Ragstore"),
    "load_config": ("ragstore.config", "load_config"),
    "RagstoreConfig": ("ragstore.config", "RagstoreConfig"),
    "VectorStore": ("ragstore.stores.base", "VectorStore"),
    "Embedder": ("ragstore.embedders.base", "Embedder"),
    "create_store": ("ragstore.stores.registry", "create_store"),
    "create_embedder": ("ragstore.stores.registry", "create_embedder"),
    "Collection": ("ragstore.stores.collection", "Collection"),
    "open_collection": ("ragstore.stores.collection", "open_collection"),
}

if TYPE_CHECKING:
    from .config import RagstoreConfig, load_config
    from .embedders.base import Embedder
    from .pipeline import Ragstore, open
    from .stores.base import VectorStore
    from .stores.collection import Collection, open_collection
    from .stores.registry import create_embedder, create_store


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ragstore' has no attribute {name!r}")


__all__ = [
    "BackendNotInstalledError",
    "BackendUnavailableError",
    "Collection",
    "ConfigError",
    "DatasetError",
    "DimensionMismatchError",
    "Document",
    "Embedder",
    "EmbedderMismatchError",
    "EngineError",
    "FilterError",
    "Hit",
    "Ragstore",
    "RagstoreConfig",
    "RagstoreError",
    "TransferError",
    "UnsupportedFeatureError",
    "ValidationError",
    "VectorStore",
    "create_embedder",
    "create_store",
    "load_config",
    "open",
    "open_collection",
]
