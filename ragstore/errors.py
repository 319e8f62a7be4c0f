"""Every error ragstore raises on purpose, in one tree.

Callers catch ``RagstoreError`` for "ragstore refused or could not do this"; anything else escaping is a
bug. Each class names the problem so a message alone tells the user what to change::

    RagstoreError
    ├── ConfigError                  a config file/key/value is wrong (names the key)
    │   └── EmbedderMismatchError    a collection opened with another embedder than the one that wrote it
    ├── BackendNotInstalledError     an optional dependency is missing (names the pip command)
    ├── BackendUnavailableError      the engine is installed but cannot be reached / opened (retry later)
    ├── EngineError                  an engine or model failed during an operation (its exception chained)
    ├── ValidationError              bad input to a store or embedder call
    │   ├── DimensionMismatchError   a vector's length differs from the store's dimension
    │   └── FilterError              a metadata filter is malformed (unknown operator, bad value type)
    ├── UnsupportedFeatureError      the backend cannot do this (declared in its capabilities)
    ├── ExportError                  a model cannot be exported to ONNX Runtime / OpenVINO
    │   └── ExportGateError          an export or quantisation is too far from the original (says how far)
    ├── DatasetError                 a dataset folder or file is missing or inconsistent
    └── TransferError                a copy, export or import refused before writing (names the flag that allows it)

``ValidationError`` is raised *before* anything is written, so a rejected batch never leaves a store
half-updated.
"""

from __future__ import annotations

from typing import Any


class RagstoreError(Exception):
    """Root of all errors ragstore raises deliberately."""


class ConfigError(RagstoreError):
    """A configuration value is missing, unknown or invalid."""


class EmbedderMismatchError(ConfigError):
    """A collection is opened with an embedder other than the one its manifest records (same dimension or
    not): its vectors would be compared with vectors from another model. ``recorded`` and ``given`` are the
    two identities."""

    def __init__(self, index: str, recorded: dict[str, Any], given: dict[str, Any], where: str) -> None:
        self.index, self.recorded, self.given = index, recorded, given
        super().__init__(
            f"{where}: index {index!r} was written by embedder {_who(recorded)}, this config gives "
            f"{_who(given)}; open it with the recorded model, or move the documents to a new collection with "
            "the new model (`ragstore copy --reembed`)"
        )


def _who(identity: dict[str, Any]) -> str:
    model = identity.get("model") or identity.get("type", "?")
    return f"{model} (dim {identity.get('dim')}, weights {identity.get('weights', '?')})"


class BackendNotInstalledError(RagstoreError):
    """An optional dependency needed for a backend or feature is not installed."""

    def __init__(self, what: str, extra: str, module: str | None = None) -> None:
        self.what = what
        self.extra = extra
        self.module = module
        hint = f"pip install 'ragstore[{extra}]'"
        missing = f" (module {module!r} could not be imported)" if module else ""
        super().__init__(f"{what} is not installed{missing}; install it with: {hint}")


class BackendUnavailableError(RagstoreError):
    """The backend is installed but its engine could not be opened or reached."""


class EngineError(RagstoreError):
    """The engine raised during an operation (search, upsert, delete, an embedding); the engine's own
    exception is chained as ``__cause__``. Raised by the store and embedder base classes, so every backend
    and model maps failures the same way. Not "unavailable": the engine answered, with a failure (serve
    answers it with 500, an unreachable engine with 503)."""


class ValidationError(RagstoreError):
    """Input to a store, embedder or pipeline call is invalid."""


class DimensionMismatchError(ValidationError):
    """A vector has a different length than the store or embedder expects."""

    def __init__(self, expected: int, got: int, where: str = "vector", hint: str = "") -> None:
        self.expected = expected
        self.got = got
        message = f"{where} has dimension {got}, but this store/embedder uses dimension {expected}"
        super().__init__(f"{message}; {hint}" if hint else message)


class FilterError(ValidationError):
    """A metadata filter does not follow ragstore's filter grammar."""


class UnsupportedFeatureError(RagstoreError):
    """The backend does not support this operation; it never silently degrades instead."""


class DatasetError(RagstoreError):
    """A dataset folder or file is missing, malformed or internally inconsistent."""


class TransferError(RagstoreError):
    """A copy, export or import cannot go ahead as asked: a destination holding other data, vectors whose
    metric would change their ranking, a source with nothing in it. Raised before the page it concerns is
    written, so a destination is never left with a half-written page."""


class ExportError(RagstoreError):
    """A model cannot be exported to (or loaded on) the requested inference backend."""


class ExportGateError(ExportError):
    """An exported or quantised model failed its quality gate; ``report`` holds the measured figures."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def describe_problems(exc: Any, where: str = "") -> str:
    """One line naming every bad key of a pydantic ``ValidationError`` (``store.indx: unknown key; ...``):
    the one formatter for config, store option and translator option errors."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}.{loc}: {msg}" if where else f"{loc}: {msg}")
    return "; ".join(problems)


__all__ = [
    "BackendNotInstalledError",
    "BackendUnavailableError",
    "ConfigError",
    "DatasetError",
    "DimensionMismatchError",
    "EmbedderMismatchError",
    "EngineError",
    "ExportError",
    "ExportGateError",
    "FilterError",
    "RagstoreError",
    "TransferError",
    "UnsupportedFeatureError",
    "ValidationError",
]
