#!/usr/bin/env bash
# The main job on the embedded defaults: set up .venv, ingest a sample corpus (the Debian FAQ, fetched from
# Debian's package), list it, ask it a question, then open the chat UI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# OCR for scanned PDFs and images; without it they are reported as needing Tesseract, and the rest is read.
scripts/system_deps.sh app || echo "note: could not install tesseract-ocr (apt-get); scanned pages and images will not be read"
export HF_HUB_OFFLINE=1
export RAG_DATA_DIR="${RAG_DATA_DIR:-$PWD/.rag}"
export RAG_COLLECTION="${RAG_COLLECTION:-debian-faq}"
corpus=$(.venv/bin/python -m evals.fetch_corpora debian-faq | tail -n1 | sed "s/^debian-faq: //")
# The FAQ ships as HTML chapters plus the same text as one .txt and one .pdf: ingest the chapters once.
.venv/bin/rag ingest "$corpus" --exclude '*.txt' --exclude '*.pdf' || [ $? -eq 1 ]  # 1: a file failed, the rest is in
.venv/bin/rag docs
.venv/bin/rag ask "What is the latest stable release of Debian?"
if [ "${DEMO_NO_UI:-0}" != "1" ] && .venv/bin/rag ui --help >/dev/null 2>&1; then
  exec .venv/bin/rag ui
fi
