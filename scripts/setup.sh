#!/usr/bin/env bash
# Create ./.venv and install ragstore with the given extras (default: "default").
# torch is pinned to 2.13.0 and installed first: any other spec pulls a multi-GB CUDA build.
# Safe to run again: it skips the install when nothing it depends on has changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-default}"
venv="${RAGSTORE_VENV:-.venv}"

pick_python() {
  for py in python3.11 python3 python; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$py"; return 0
    fi
  done
  echo "ragstore needs Python >= 3.11" >&2; return 1
}

if [ ! -x "$venv/bin/python" ]; then
  "$(pick_python)" -m venv "$venv"
fi
stamp="$venv/.ragstore-$extras.stamp"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "ragstore[$extras] already installed in $venv"
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "torch==2.13.0"
"$venv/bin/python" -m pip install -q -e ".[$extras]"
echo "$want" > "$stamp"
echo "installed ragstore[$extras] into $venv"
