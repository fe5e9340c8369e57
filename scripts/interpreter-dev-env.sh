#!/usr/bin/env bash
# Prepare real Jupyter kernels on the host for stasis-interpreter's integration test
# (crates/stasis-interpreter/tests/service.rs) and for trying the service by hand.
# Idempotent: what is already there is kept.
#   $STASIS_INTERP_DEV (default /var/cache/stasis/interp-dev)
#     venv/      python3 venv: ipykernel, numpy, pandas, matplotlib, bash_kernel
#     deno/deno  Deno from the npm registry
#     kernels/   kernelspecs (scripts/interpreter-kernels.sh)
#     sdk-js/    npm @e2b/code-interpreter and novita-sandbox, and in venv/ the PyPI
#                e2b-code-interpreter: the test drives the real SDKs against the service
# Versions are the template's (templates/code-interpreter-v1/). The service's Python
# start-up code is read from the repo (--python-dir crates/stasis-interpreter/python).
# Prints the line to export: STASIS_INTERP_TEST_KERNELS=<dev>/kernels
# Usage: interpreter-dev-env.sh
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
STASIS_LOG_TAG=interp-dev
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

DEV=${STASIS_INTERP_DEV:-/var/cache/stasis/interp-dev}
RECIPE=$REPO/templates/code-interpreter-v1
# shellcheck source=../templates/code-interpreter-v1/versions.env
. "$RECIPE/versions.env"
mapfile -t PY_PACKAGES < <(grep -v '^#' "$RECIPE/requirements.txt" | grep .)
# The SDKs the end-to-end tests pin (tests/e2e/py/requirements.txt, tests/e2e/js/package.json).
PY_PACKAGES+=("$(grep '^e2b-code-interpreter==' "$REPO/tests/e2e/py/requirements.txt")")
JS_PACKAGES=("@e2b/code-interpreter@2.8.0" "novita-sandbox@2.1.1")

command -v python3 >/dev/null || die "python3 is needed"
command -v npm >/dev/null || die "npm is needed (for Deno's npm package)"
mkdir -p "$DEV"

venv=$DEV/venv
stamp=$venv/.stasis-packages
want=$(printf '%s\n' "${PY_PACKAGES[@]}")
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "python venv in $venv: ${PY_PACKAGES[*]}"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
    printf '%s\n' "$want" > "$stamp"
else
    log "python venv $venv is up to date"
fi

deno=$DEV/deno/deno
if [ ! -x "$deno" ] || ! "$deno" --version 2>/dev/null | grep -q "^deno $DENO_VERSION "; then
    log "deno $DENO_VERSION from npm ($DENO_NPM_PACKAGE)"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$DENO_NPM_PACKAGE@$DENO_VERSION" >/dev/null)
    tar -xzf "$tmp"/deno-linux-x64-glibc-*.tgz -C "$tmp"
    mkdir -p "$DEV/deno"
    install -m 0755 "$tmp/package/deno" "$deno.new"
    mv -f "$deno.new" "$deno"
else
    log "deno $DENO_VERSION is there"
fi

sdk_js=$DEV/sdk-js
if [ "$(cat "$sdk_js/.stasis-packages" 2>/dev/null)" != "${JS_PACKAGES[*]}" ]; then
    log "npm: ${JS_PACKAGES[*]} in $sdk_js"
    mkdir -p "$sdk_js"
    [ -f "$sdk_js/package.json" ] || echo '{"private": true}' > "$sdk_js/package.json"
    (cd "$sdk_js" && npm install --silent --no-audit --no-fund "${JS_PACKAGES[@]}" >/dev/null)
    printf '%s' "${JS_PACKAGES[*]}" > "$sdk_js/.stasis-packages"
else
    log "JS SDKs in $sdk_js are up to date"
fi

"$SCRIPT_DIR/interpreter-kernels.sh" "$venv" "$deno" "$DEV/kernels"
log "ready; for the test: export STASIS_INTERP_TEST_KERNELS=$DEV/kernels"
echo "STASIS_INTERP_TEST_KERNELS=$DEV/kernels"
