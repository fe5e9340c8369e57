#!/usr/bin/env bash
# Regenerates the dashboard's screenshots in docs/dashboard/ (shown by docs/dashboard.md):
# runs the browser test (tests/e2e/py/test_dashboard.py) against a fresh server, which
# saves the main pages as it drives them in headless Chromium.
#
#   sudo scripts/screenshots.sh          # STASIS_BIN / STASIS_AGENT as for tests/e2e/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/docs/dashboard"
mkdir -p "$OUT"
E2E_SCREENSHOTS="$OUT" bash "$ROOT/tests/e2e/run.sh" py/test_dashboard.py
ls -1 "$OUT"/*.png
