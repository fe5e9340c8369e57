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
STAMP=$(mktemp)
# run.sh's leak check can fail a short run for a reason of its own (a template still
# warming when the server stops); what counts here is that the test took every picture.
E2E_SCREENSHOTS="$OUT" bash "$ROOT/tests/e2e/run.sh" py/test_dashboard.py || echo "screenshots: run.sh reported a failure (above)" >&2
missing=0
for page in login sandboxes sandbox snapshots templates; do
    if [ "$OUT/$page.png" -nt "$STAMP" ]; then echo "$OUT/$page.png"; else echo "screenshots: $page.png not taken" >&2; missing=1; fi
done
rm -f "$STAMP"
exit $missing
