#!/usr/bin/env bash
# Start a Milvus 2.3 standalone server from the `milvus` PyPI package (no Docker) on 127.0.0.1, run the
# server-mode tests against it through the adapter's `uri`, and stop it. Its own venv: the package pins
# dependencies of its own. CI runs it (a ~100 MB download and ~40 s start).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev >/dev/null
venv=.venv-milvus
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "milvus==2.3.5"
data="$(mktemp -d)"
port="${RAGSTORE_MILVUS_PORT:-$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
cat > "$data/server.py" <<'PY'
import signal, sys, time
from milvus import default_server
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that `finally` stops the Milvus binary too
default_server.set_base_dir(sys.argv[1])
default_server.listen_port = int(sys.argv[2])
try:
    default_server.start()
    print("started", flush=True)
    while True:
        time.sleep(1)
finally:
    default_server.stop()
PY
# its own session: whatever the server signals on the way down stays inside it, and the trap can end the
# whole group (the wrapper and the Milvus binary) so no server outlives this script
setsid "$venv/bin/python" "$data/server.py" "$data" "$port" > "$data/server.log" 2>&1 &
server=$!
stop() {  # errexit holds inside the trap too: a group already gone must not fail the run
  kill -TERM -- "-$server" 2>/dev/null || true
  sleep 3
  kill -KILL -- "-$server" 2>/dev/null || true
  rm -rf "$data"
}
trap stop EXIT
for _ in $(seq 120); do grep -q started "$data/server.log" 2>/dev/null && break; sleep 1; done
grep -q started "$data/server.log" || { cat "$data/server.log"; exit 1; }
RAGSTORE_MILVUS_URI="http://127.0.0.1:$port" .venv/bin/python -m pytest -q tests/test_milvus_server.py "$@"
