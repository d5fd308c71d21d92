#!/usr/bin/env bash
# The test command: set up .venv (and the Debian packages the tests need), then lint, type-check and test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/system_deps.sh
export HF_HUB_OFFLINE=1
.venv/bin/ruff check rag ingest service ui evals cli training api tests benchmarks
.venv/bin/ruff format --check rag ingest service ui evals cli training api tests benchmarks
.venv/bin/mypy rag ingest service ui evals cli training api benchmarks
.venv/bin/python -m pytest "$@"
