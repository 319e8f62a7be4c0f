"""The inter-process folder lock for engines that keep one process per folder (memory, Chroma)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ragstore import _plock
from ragstore.errors import BackendUnavailableError
from ragstore.stores.registry import create_store

_HOLD = """
import sys, time
from ragstore.stores.registry import create_store
store = create_store({"type": "memory", "path": sys.argv[1]})
print("holding", flush=True)
time.sleep(30)
"""


def test_second_process_gets_a_clear_error_naming_the_holder(tmp_path: Path) -> None:
    folder = tmp_path / "mem"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(BackendUnavailableError, match=rf"open in pid {holder.pid}"):
            create_store({"type": "memory", "path": str(folder)})
    finally:
        holder.kill()  # a killed holder releases the lock with its process
        holder.wait()
    create_store({"type": "memory", "path": str(folder)}).close()


def test_one_process_may_hold_a_folder_twice_and_release_it(tmp_path: Path) -> None:
    key = _plock.acquire(tmp_path / "f", "test store")
    assert _plock.acquire(tmp_path / "f", "test store") == key and key in _plock._held
    _plock.release(key)
    assert key in _plock._held
    _plock.release(key)
    assert key not in _plock._held


def test_an_engine_with_one_opener_per_folder_refuses_a_second_in_this_process(tmp_path: Path) -> None:
    """Two memory stores on one folder would each keep a copy, and the last to save would win."""
    a = create_store({"type": "memory", "path": str(tmp_path / "m")})
    with pytest.raises(BackendUnavailableError, match="already open in this process"):
        create_store({"type": "memory", "path": str(tmp_path / "m")})
    key = a._path_lock
    a.close()
    assert key not in _plock._held
    b = create_store({"type": "memory", "path": str(tmp_path / "m")})  # free again once closed
    b.close()
