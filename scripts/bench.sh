#!/usr/bin/env bash
# README command 1: install, then run the main job on the embedded default:
# `ragstore bench` on the bundled sample with FAISS + the offline all-MiniLM-L6-v2 (no server, no network).
# Extra arguments go to `ragstore bench` (e.g. -c benchmarks/configs/xquad-r.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh default
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/ragstore bench "$@"
