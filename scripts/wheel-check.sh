#!/usr/bin/env bash
# What users get: build the sdist and the wheel, install the wheel (not editable) with the default extras
# plus both integrations, the server and the exported embedders into a fresh venv, then use it from outside the
# repo: `ragstore bench` on the bundled sample, `ragstore finetune --help`, `ragstore export`/`import`/`copy`,
# both integrations, `ragstore serve` answering, an OpenVINO int8 export of MiniLM passing its gate on the
# bundled xquad-r.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev >/dev/null
repo="$(pwd)"
dist="$(mktemp -d)"
venv="${RAGSTORE_WHEEL_VENV:-$repo/.venv-wheel}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m build -q --outdir "$dist" . >/dev/null 2>&1 || { .venv/bin/python -m build --outdir "$dist" .; exit 1; }
wheel="$(ls "$dist"/ragstore-*.whl)"
ls "$dist"/ragstore-*.tar.gz >/dev/null
echo "built $(basename "$wheel") and $(basename "$(ls "$dist"/ragstore-*.tar.gz)")"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "torch==2.13.0"
"$venv/bin/python" -m pip install -q "$wheel[default,llamaindex,langchain,serve,accel]"
work="$(mktemp -d)"
cd "$work"  # away from the checkout: only the installed wheel can be imported
"$venv/bin/python" - <<'PY'
import ragstore, ragstore.adapters.faiss, ragstore.bench, ragstore.bilingual, ragstore.finetune, ragstore.query.retrieval
import ragstore.integrations.langchain, ragstore.integrations.llamaindex
from ragstore.data.beir import bundled_dataset, load_beir
assert "site-packages" in ragstore.__file__, ragstore.__file__
ds = load_beir(bundled_dataset("xquad-r"), query_lang="zh", corpus_langs="en")
assert len(ds.corpus) == 1180 and len(ds.queries) == 1190, (len(ds.corpus), len(ds.queries))
print("wheel imports: ok; xquad-r ships:", len(ds.corpus), "passages")
PY
"$venv/bin/ragstore" bench --no-plots --out "$work/results" | tail -n 8
"$venv/bin/ragstore" finetune --help >/dev/null && echo "ragstore finetune --help: ok"
# `ragstore export` / `import` / `copy` from the wheel: a FAISS store to a Parquet file to a memory store
"$venv/bin/python" - <<'PY'
import numpy as np
from ragstore import Document, create_store
store = create_store({"type": "faiss", "path": "copy-src"})
rng = np.random.default_rng(0)
store.upsert([Document(f"text {i} it's", f"id-{i}", {"i": i}, rng.normal(size=32)) for i in range(500)])
store.close()
PY
"$venv/bin/ragstore" export faiss:path=copy-src copy.parquet --no-progress
"$venv/bin/ragstore" import copy.parquet memory:path=copy-dst --verify --no-progress | tail -n 1
"$venv/bin/ragstore" copy faiss:path=copy-src memory:path=copy-dst2 --verify --no-progress | tail -n 1
# `ragstore serve` from the wheel on the embedded default (FAISS in ./.ragstore, the offline MiniLM)
RAGSTORE_BIN="$venv/bin/ragstore" "$venv/bin/python" - <<'PY'
import os, signal, socket, subprocess, time
import httpx
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([os.environ["RAGSTORE_BIN"], "serve", "--port", str(port)])
try:
    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert server.poll() is None, "ragstore serve exited"
        time.sleep(0.5)
    model = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()["data"][0]["id"]
    r = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"model": model, "input": "hello"}, timeout=60)
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384, r.text
    print("ragstore serve from the wheel: ok")
finally:
    server.send_signal(signal.SIGTERM)
    server.wait(60)
PY
"$venv/bin/python" - <<'PY'
import os
from ragstore.stores.registry import create_embedder
emb = create_embedder({"type": "sentence-transformers", "backend": "openvino", "quantize": "int8",
                       "export_dir": os.path.join(os.getcwd(), "exports")})
report = emb.gate_report
assert report is not None and report["passed"], report
assert emb.embed_query(["hello"]).shape == (1, 384)
print(f"openvino int8 export from the wheel: gate passed (cosine {report['mean_cosine']:.4f}, "
      f"nDCG@10 {report['ndcg_export']:.4f} vs {report['ndcg_torch']:.4f})")
PY
rm -rf "$work" "$dist"
