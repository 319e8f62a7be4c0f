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


def test_one_process_may_open_a_folder_twice_and_release_it(tmp_path: Path) -> None:
    a = create_store({"type": "memory", "path": str(tmp_path / "m")})
    b = create_store({"type": "memory", "path": str(tmp_path / "m")})
    key = a._path_lock
    assert key is not None and key == b._path_lock and key in _plock._held
    a.close()
    assert key in _plock._held
    b.close()
    assert key not in _plock._held
