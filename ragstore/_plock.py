"""One process at a time on an embedded store folder, for engines that cannot share one between processes.

An exclusive ``flock`` on ``<path>.lock`` (beside the folder, so a store that swaps its folder on save keeps
the same lock file), held while any store of this process has the folder open. Another process gets a
clear ``BackendUnavailableError`` naming the holder's pid instead of corrupting or silently overwriting
the other's data. Locks vanish with the process, so a killed holder never leaves the folder locked.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import IO

from .errors import BackendUnavailableError

_lock = threading.Lock()
_held: dict[str, tuple[IO[str], int]] = {}  # lock file -> (open file, stores of this process using it)


def acquire(path: str | os.PathLike[str], what: str, *, one_opener: bool = False) -> str:
    """Hold the folder for this process; returns the key to ``release``. ``one_opener``: refuse a second
    opener in this process too (engines whose opener keeps the collection in its own memory or WAL lock)."""
    key = os.path.abspath(f"{os.fspath(path).rstrip(os.sep)}.lock")
    with _lock:
        if key in _held:
            fh, n = _held[key]
            if one_opener:
                raise BackendUnavailableError(
                    f"{what} at {os.fspath(path)} is already open in this process; this engine keeps one opener "
                    "per folder (each would keep its own copy): share the open store, or close it first"
                )
            _held[key] = (fh, n + 1)
            return key
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        fh = open(key, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the store's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise BackendUnavailableError(
                f"{what} at {os.fspath(path)} is open in {holder}; this engine keeps one process per folder: "
                "close it there, or use a server"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        _held[key] = (fh, 1)
        return key


def release(key: str) -> None:
    with _lock:
        if key not in _held:
            return
        fh, n = _held[key]
        if n > 1:
            _held[key] = (fh, n - 1)
            return
        del _held[key]
        fh.close()  # closing the file releases the flock
