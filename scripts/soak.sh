#!/usr/bin/env bash
# Soak: the model-based randomized test (tests/e2e/py/model) with fresh seeds until the
# time is up, then a summary (ops run per kind, seeds, failures with their shrunk,
# replayable sequences). Each seed runs on its own `stasis serve` (own data dir under
# /var/lib/stasis-test, own port on 127.0.0.1), which the sequence SIGTERMs / SIGKILLs
# and restarts.
#
#   sudo scripts/soak.sh 30m                 # (default 30m; also 600s, 1h)
#   sudo MODEL_OPS=500 scripts/soak.sh 1h    # ops per seed (default 300)
#   sudo STASIS_BIN=target/release/stasis STASIS_AGENT=... scripts/soak.sh 10m
#
# Env: MODEL_OPS, MODEL_SHRINK_SECS (300), MODEL_WEIGHTS (kind=w,...), MODEL_USERS,
# STASIS_BIN, STASIS_AGENT; MODEL_OUT (/tmp/stasis-model) gets the shrunk sequences and
# this run's log (soak-<date>.log). Exit status: 0 no failure, 1 failures, 2 cannot run.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
E2E=$REPO/tests/e2e
DURATION=${1:-30m}
[ "$(id -u)" -eq 0 ] || { echo "soak.sh: run as root (sandboxes need namespaces, cgroups and CRIU)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "soak.sh: python3 is required" >&2; exit 2; }

# The venv tests/e2e/run.sh uses (PyPI e2b, pinned), installed the same way if missing.
venv=$E2E/.venv req=$E2E/py/requirements.txt
if ! { [ -x "$venv/bin/python" ] && [ -f "$venv/.e2e-installed-req" ] && cmp -s "$req" "$venv/.e2e-installed-req"; }; then
  echo "== soak: python venv (tests/e2e/.venv)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || exit 2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" || exit 2
  cp "$req" "$venv/.e2e-installed-req"
fi

# Only loopback: the model passes its own server's URL and key to every SDK call, and
# nothing from the environment may point the SDK elsewhere.
unset E2B_DEBUG E2B_DOMAIN E2B_API_URL E2B_SANDBOX_URL E2B_API_KEY E2B_ACCESS_TOKEN
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
mkdir -p /var/lib/stasis-test && chmod 0755 /var/lib/stasis-test
OUT=${MODEL_OUT:-/tmp/stasis-model}
mkdir -p "$OUT"
LOG=$OUT/soak-$(date -u +%Y%m%dT%H%M%SZ).log
echo "== soak: $DURATION with ${STASIS_BIN:-/usr/local/bin/stasis}, log $LOG"
cd "$E2E/py" || exit 2
"$venv/bin/python" -u -m model --soak "$DURATION" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
echo "== soak: log $LOG"
exit "$rc"
