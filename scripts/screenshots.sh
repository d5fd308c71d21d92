#!/usr/bin/env bash
# The README's screenshots, made by the browser tests that check those views (so they show what the tests saw):
# runs them, then copies their pictures from test-artifacts/ into docs/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -q -p no:cacheprovider tests/test_chat_workspace.py \
  "tests/test_ui.py::test_an_upload_shows_its_progress_and_the_chat_answers_meanwhile"
mkdir -p docs/screenshots
cp test-artifacts/ui-saved-conversations.png docs/screenshots/conversations.png
cp test-artifacts/ui-citation-viewer.png docs/screenshots/citation-viewer.png
cp test-artifacts/ui-search-within.png docs/screenshots/search-within.png
cp test-artifacts/ui-ingesting.png docs/screenshots/documents.png
echo "docs/screenshots/ updated"
