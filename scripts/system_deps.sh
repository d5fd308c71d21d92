#!/usr/bin/env bash
# Debian packages. `scripts/system_deps.sh app`: what the app itself uses (tesseract-ocr and its English data, for
# scanned PDFs and images). With no argument, also what the tests use: setpriv (util-linux) for the permission test
# and chromium for the browser tests.
set -euo pipefail
need=()
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr tesseract-ocr-eng)
if [ "${1:-tests}" != "app" ]; then
  command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
