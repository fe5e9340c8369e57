#!/usr/bin/env bash
# End-to-end tests of Stasis with the official SDKs (npm e2b + novita-sandbox, PyPI e2b).
#
#   bash tests/e2e/run.sh                 # install deps (idempotent), start a server, run all, check leaks
#   bash tests/e2e/run.sh js/lifecycle.test.mjs py/test_lifecycle.py   # only these files
#   E2E_SUITES=js bash tests/e2e/run.sh   # only the JS suites (or: py)
#
# Env: STASIS_BIN (default /usr/local/bin/stasis), STASIS_AGENT (default
# /usr/local/lib/stasis/stasis-agent), E2E_TEMPLATE_BASE (default /var/lib/stasis/templates/base),
# E2E_KEEP_LOG=1 keeps the server log on success,
# E2E_ROUTING=host runs the JS files in host-routing mode (helpers.mjs `useHostRouting`),
# E2E_SERVE_ARGS adds arguments to `stasis serve` (e.g. --park-connections: every SDK call
# through the relay).
# Must run as root (sandboxes need namespaces and cgroups). Talks only to 127.0.0.1.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STASIS_BIN=${STASIS_BIN:-/usr/local/bin/stasis}
STASIS_AGENT=${STASIS_AGENT:-/usr/local/lib/stasis/stasis-agent}
TEMPLATE_BASE=${E2E_TEMPLATE_BASE:-/var/lib/stasis/templates/base}
TEMPLATE_INTERPRETER=/var/lib/stasis/templates/code-interpreter-v1
SUITES=${E2E_SUITES:-js py}
START=$(date +%s)

say() { printf '== e2e: %s\n' "$*"; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || die "run as root (sandboxes need namespaces and cgroups)"
[ -x "$STASIS_BIN" ] || die "no stasis binary at $STASIS_BIN (run scripts/setup.sh or set STASIS_BIN)"
[ -f "$STASIS_AGENT" ] || die "no static agent at $STASIS_AGENT (set STASIS_AGENT)"
[ -d "$TEMPLATE_BASE/rootfs" ] || die "base template missing at $TEMPLATE_BASE (run scripts/setup.sh)"
command -v node >/dev/null || die "node is required"
command -v python3 >/dev/null || die "python3 is required"

# Files named on the command line select what runs (paths relative to tests/e2e).
JS_FILES=() PY_FILES=()
for f in "$@"; do
  case "$f" in
    js/*|*.mjs) JS_FILES+=("${f#js/}") ;;
    py/*|*.py) PY_FILES+=("${f#py/}") ;;
    *) die "unknown test file $f" ;;
  esac
done
if [ $# -gt 0 ]; then
  SUITES=""
  [ ${#JS_FILES[@]} -gt 0 ] && SUITES="$SUITES js"
  [ ${#PY_FILES[@]} -gt 0 ] && SUITES="$SUITES py"
fi

# ---------------------------------------------------------------- (a) dependencies
install_js() {
  cd "$HERE/js" || return 1
  # Reinstall only when the lock file changed since the last install.
  if [ -f node_modules/.package-lock.json ] && cmp -s package-lock.json node_modules/.e2e-installed-lock; then
    return 0
  fi
  say "npm ci (tests/e2e/js)"
  npm ci --no-audit --no-fund --prefer-offline >/dev/null || return 1
  cp package-lock.json node_modules/.e2e-installed-lock
}

install_py() {
  local venv="$HERE/.venv" req="$HERE/py/requirements.txt"
  if [ -x "$venv/bin/python" ] && [ -f "$venv/.e2e-installed-req" ] && cmp -s "$req" "$venv/.e2e-installed-req"; then
    return 0
  fi
  say "python venv (tests/e2e/.venv)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || return 1
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" || return 1
  cp "$req" "$venv/.e2e-installed-req"
}

# The dashboard's browser test drives Debian's chromium (headless, loopback only).
install_browser() {
  command -v chromium >/dev/null && return 0
  say "apt-get install chromium (the dashboard's browser test)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }; } \
    && command -v chromium >/dev/null
}

# The image template tests (templates_image, test_templates_image): Debian's skopeo and
# umoci (the server's image import; test-images.sh makes the images with them), its
# docker-registry (the local registries), busybox-static (an image) and apache2-utils
# (htpasswd for the registry that wants credentials).
OCI_PACKAGES=(skopeo umoci docker-registry busybox-static apache2-utils)
install_oci_tools() {
  local missing=() p
  for p in "${OCI_PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]} (the image template tests)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; }
}
WANT_REGISTRY=0
if [ $# -eq 0 ]; then WANT_REGISTRY=1; fi
for f in "$@"; do case "$f" in *image*) WANT_REGISTRY=1 ;; esac; done
if [ "$WANT_REGISTRY" = 1 ]; then install_oci_tools || die "installing the OCI tools failed"; fi
# The egress proxy's SDK tests: an HTTPS echo in a namespace of its own (egress/echo.sh).
WANT_EGRESS=0
if [ $# -eq 0 ]; then WANT_EGRESS=1; fi
for f in "$@"; do case "$f" in *egress*) WANT_EGRESS=1 ;; esac; done

case " $SUITES " in *" js "*) install_js || die "installing the JS deps failed" ;; esac
case " $SUITES " in *" py "*) install_py || die "installing the Python deps failed" ;; esac
case " $SUITES ${PY_FILES[*]:-} " in *" py "*|*test_dashboard*)
  if [ ${#PY_FILES[@]} -eq 0 ] || [[ " ${PY_FILES[*]} " == *test_dashboard* ]]; then
    install_browser || die "installing chromium failed"
  fi
;; esac

# ---------------------------------------------------------------- (b) the server
mkdir -p /var/lib/stasis-test
DATA_DIR=$(mktemp -d /var/lib/stasis-test/e2e-XXXXXX)
# mktemp makes it 0700; the sandboxes' user namespaces must be able to traverse it.
chmod 755 /var/lib/stasis-test "$DATA_DIR"
mkdir -p "$DATA_DIR/templates"
ln -s "$TEMPLATE_BASE" "$DATA_DIR/templates/base"
# code-interpreter-v1 when setup built it (the server warms it at start).
[ -e "$TEMPLATE_INTERPRETER" ] && ln -s "$TEMPLATE_INTERPRETER" "$DATA_DIR/templates/code-interpreter-v1"
LOG="$DATA_DIR.server.log"
API_KEY="e2b_$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PORT=$(free_port)
BASE_URL="http://127.0.0.1:$PORT"
# The HTTPS listener for host routing (`https://{port}-{id}.localhost`, the local CA made
# here): the SDKs' URLs without sandbox headers (signed file URLs, host-routing mode).
TLS_PORT=$(free_port)
"$STASIS_BIN" tls init --data-dir "$DATA_DIR" >/dev/null || die "stasis tls init failed"
SERVER_PID=""
# Every sandbox id the server ever reported (collected by the tests' list calls, and
# from the log), so the leak check can look for their cgroups after the data dir is gone.
SEEN_IDS="$DATA_DIR.ids"
: >"$SEEN_IDS"

leak_check() {
  local leaked=0 id
  # Ids: sandbox dirs present now + ids named in the server log + ids the tests recorded.
  {
    ls "$DATA_DIR/sandboxes" 2>/dev/null
    grep -oE '\b[a-z0-9]{20}\b' "$LOG" 2>/dev/null
    cat "$SEEN_IDS" 2>/dev/null
  } | sort -u >"$DATA_DIR.allids"
  if [ -d "$DATA_DIR/sandboxes" ] && [ -n "$(ls -A "$DATA_DIR/sandboxes")" ]; then
    echo "LEAK: sandbox dirs left in $DATA_DIR/sandboxes:" >&2
    ls -A "$DATA_DIR/sandboxes" >&2
    leaked=1
  fi
  while read -r id; do
    [ -n "$id" ] || continue
    for d in /sys/fs/cgroup/stasis/"$id" /sys/fs/cgroup/*/stasis/"$id"; do
      if [ -e "$d" ]; then echo "LEAK: cgroup $d" >&2; leaked=1; fi
    done
  done <"$DATA_DIR.allids"
  # Processes still in one of its sandboxes' cgroups (a sandbox's agent or its children).
  if [ -s "$DATA_DIR.allids" ]; then
    local p
    for p in $(grep -lsF -f "$DATA_DIR.allids" /proc/[0-9]*/cgroup 2>/dev/null); do
      p=${p#/proc/}; p=${p%/cgroup}
      echo "LEAK: process $p in a sandbox cgroup: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" >&2
      leaked=1
    done
  fi
  if awk '{print $5}' /proc/self/mountinfo | grep -q "^$DATA_DIR"; then
    echo "LEAK: mounts under $DATA_DIR:" >&2
    awk '{print $5}' /proc/self/mountinfo | grep "^$DATA_DIR" >&2
    leaked=1
  fi
  return $leaked
}

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "e2e: server did not stop on SIGTERM within 10 s; killing it" >&2
      kill -KILL "$SERVER_PID" 2>/dev/null
      SERVER_STOP_FAILED=1
    fi
    wait "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=""
}

FAILED=()
SERVER_STOP_FAILED=0
REGISTRY_DIR="$DATA_DIR.registry"
EGRESS_DIR="$DATA_DIR.egress"
finish() {
  local rc=$?
  trap - EXIT INT TERM
  stop_server
  [ -d "$EGRESS_DIR" ] && "$HERE/egress/echo.sh" stop "$EGRESS_DIR"
  if [ -d "$REGISTRY_DIR" ]; then
    "$HERE/../oci/registry.sh" stop "$REGISTRY_DIR/anon"
    "$HERE/../oci/registry.sh" stop "$REGISTRY_DIR/auth"
    rm -rf "$REGISTRY_DIR"
  fi
  say "leak check ($DATA_DIR)"
  if ! leak_check; then
    FAILED+=("leak-check")
    # Reported above; now clean up so the machine is not left with running sandboxes.
    local id
    for id in $(ls "$DATA_DIR/sandboxes" 2>/dev/null); do
      STASIS_DATA_DIR="$DATA_DIR" STASIS_AGENT="$STASIS_AGENT" timeout 30 "$STASIS_BIN" runtime kill "$id" >/dev/null 2>&1 \
        || echo "e2e: could not kill leaked sandbox $id" >&2
    done
  fi
  [ "$SERVER_STOP_FAILED" = 1 ] && FAILED+=("server-stop")
  local secs=$(( $(date +%s) - START ))
  if [ ${#FAILED[@]} -eq 0 ] && [ "$rc" -eq 0 ]; then
    say "ALL PASSED in ${secs}s"
    if [ "${E2E_KEEP_LOG:-0}" != 1 ]; then rm -f "$LOG"; fi
    rm -rf "$DATA_DIR" "$DATA_DIR.ids" "$DATA_DIR.allids"
    exit 0
  fi
  say "FAILED (${FAILED[*]:-rc=$rc}) in ${secs}s; server log: $LOG; data dir: $DATA_DIR"
  echo "---- last 40 lines of the server log" >&2
  tail -n 40 "$LOG" >&2
  exit 1
}
trap finish EXIT
trap 'exit 130' INT TERM

EGRESS_ARGS=()
if [ "$WANT_EGRESS" = 1 ]; then
  say "an HTTPS echo for the egress proxy's tests (tests/e2e/egress)"
  read -r E2E_EGRESS_ADDR E2E_EGRESS_CIDR _ < <("$HERE/egress/echo.sh" start "$EGRESS_DIR") \
    || die "starting the egress echo failed"
  [ -n "${E2E_EGRESS_ADDR:-}" ] || die "starting the egress echo failed"
  export E2E_EGRESS_ADDR E2E_EGRESS_CIDR E2E_EGRESS_CA="$EGRESS_DIR/ca.pem"
  EGRESS_ARGS=(--egress-extra-root "$EGRESS_DIR/ca.pem")
fi

say "starting $STASIS_BIN serve on $BASE_URL (data dir $DATA_DIR)"
# shellcheck disable=SC2086 # E2E_SERVE_ARGS is a list of words
STASIS_AGENT="$STASIS_AGENT" RUST_LOG="${RUST_LOG:-info}" \
  "$STASIS_BIN" serve --listen "127.0.0.1:$PORT" --tls-listen "127.0.0.1:$TLS_PORT" --data-dir "$DATA_DIR" --api-key "$API_KEY" \
    "${EGRESS_ARGS[@]}" ${E2E_SERVE_ARGS:-} >"$LOG" 2>&1 &
SERVER_PID=$!

ready=0
for _ in $(seq 1 300); do
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "e2e: server exited at start:" >&2; cat "$LOG" >&2; FAILED+=("server-start"); exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-KEY: $API_KEY" "$BASE_URL/v2/sandboxes" 2>/dev/null) || code=000
  if [ "$code" = 200 ]; then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "e2e: server did not answer GET /v2/sandboxes with 200 within 30 s" >&2; FAILED+=("server-start"); exit 1; }

# The SDKs' environment: only loopback, never E2B_DEBUG.
unset E2B_DEBUG E2B_DOMAIN NOVITA_DOMAIN E2B_ACCESS_TOKEN
export E2B_API_URL="$BASE_URL" E2B_SANDBOX_URL="$BASE_URL" E2B_API_KEY="$API_KEY" E2B_VOLUME_API_URL="$BASE_URL"
export NOVITA_API_URL="$BASE_URL" NOVITA_SANDBOX_URL="$BASE_URL" NOVITA_API_KEY="$API_KEY"
# Host-routing mode (helpers.mjs `useHostRouting`): where the TLS listener is and its CA.
export E2E_TLS_PORT="$TLS_PORT" E2E_DOMAIN=localhost E2E_CA_CERT="$DATA_DIR/tls/ca.pem"
export E2E_SEEN_IDS="$SEEN_IDS" NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy

# Two local registries (anonymous, and one wanting credentials) with the test images.
if [ "$WANT_REGISTRY" = 1 ]; then
  say "test images and local registries (tests/oci)"
  IMAGES=/var/cache/stasis/e2e-images
  "$HERE/../oci/test-images.sh" "$IMAGES" debian >/dev/null || die "making the test images failed"
  mkdir -p "$REGISTRY_DIR"
  E2E_REGISTRY_USER=tester E2E_REGISTRY_PASSWORD="pw-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  E2E_REGISTRY=$("$HERE/../oci/registry.sh" start "$REGISTRY_DIR/anon") || die "starting the registry failed"
  E2E_AUTH_REGISTRY=$("$HERE/../oci/registry.sh" start "$REGISTRY_DIR/auth" "$E2E_REGISTRY_USER:$E2E_REGISTRY_PASSWORD") \
    || die "starting the registry with credentials failed"
  push() { "$HERE/../oci/registry.sh" push "$REGISTRY_DIR" "$@" || die "pushing $1 to $2 failed"; }
  push "$IMAGES/layout:debian" "$E2E_REGISTRY/deb:1"
  push "$IMAGES/layout:busybox" "$E2E_REGISTRY/bb:1"
  push "$IMAGES/layout:busybox" "$E2E_AUTH_REGISTRY/bb:1" "$E2E_REGISTRY_USER:$E2E_REGISTRY_PASSWORD"
  export E2E_REGISTRY E2E_AUTH_REGISTRY E2E_REGISTRY_USER E2E_REGISTRY_PASSWORD
fi

if [ "${E2E_SERVE_ONLY:-0}" = 1 ]; then
  # Debugging aid: keep the server up and print how to reach it, until interrupted.
  echo "export E2B_API_URL=$BASE_URL E2B_SANDBOX_URL=$BASE_URL E2B_API_KEY=$API_KEY NOVITA_API_URL=$BASE_URL NOVITA_SANDBOX_URL=$BASE_URL NOVITA_API_KEY=$API_KEY"
  wait "$SERVER_PID"
  exit 0
fi

# ---------------------------------------------------------------- (c) the tests
case " $SUITES " in *" js "*)
  say "JS tests (node --test)"
  cd "$HERE/js"
  [ ${#JS_FILES[@]} -gt 0 ] || JS_FILES=(*.test.mjs)
  # One file at a time: the machine is small and each test creates real sandboxes.
  if ! node --test --test-concurrency=1 --test-reporter=spec "${JS_FILES[@]}"; then FAILED+=("js"); fi
;; esac

case " $SUITES " in *" py "*)
  say "Python tests (pytest)"
  cd "$HERE/py"
  [ ${#PY_FILES[@]} -gt 0 ] || PY_FILES=(test_*.py)
  if ! "$HERE/.venv/bin/python" -m pytest -p no:cacheprovider -rA -q "${PY_FILES[@]}"; then FAILED+=("py"); fi
;; esac

[ ${#FAILED[@]} -eq 0 ]
