#!/usr/bin/env bash
# Set up a fresh Debian 12 host (as root) to run Stasis. Idempotent: every
# step checks before it acts, so a second run finishes in seconds.
#
#   1. apt packages needed at run time (only the missing ones)
#   2. CRIU >= 4.2 under /usr/local            (scripts/install-criu.sh)
#   3. build + install the stasis binaries     (scripts/build.sh)
#   4. host configuration, data dir            (configure_host)
#   5. the "base" sandbox template             (scripts/build-template.sh)
#   6. the "code-interpreter-v1" template      (scripts/build-interpreter-template.sh)
#   7. (re)start `stasis serve`                 (unless --no-start); it warms
#      code-interpreter-v1 in the background (boots it once and snapshots it ready)
#
# Usage: setup.sh [--no-start] [--skip-build] [--data-dir /var/lib/stasis]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STASIS_LOG_TAG=setup
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

DATA=/var/lib/stasis
START=1
BUILD=1
STASIS_BIN=/usr/local/bin/stasis
PID_FILE=/run/stasis.pid
LOG_FILE=/var/log/stasis.log

while [ $# -gt 0 ]; do
    case "$1" in
        --no-start) START=0; shift ;;
        --skip-build) BUILD=0; shift ;;
        --data-dir) [ $# -ge 2 ] || die "--data-dir needs a value"; DATA=$2; shift 2 ;;
        --data-dir=*) DATA=${1#*=}; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
case "$DATA" in /*) ;; *) die "--data-dir must be an absolute path" ;; esac

require_root
[ -r /etc/debian_version ] || die "this script supports Debian 12 (bookworm) only"
[ "$(host_codename)" = bookworm ] || warn "host is $(host_codename), not bookworm; continuing"

# Run time: networking for sandboxes (iproute2, nftables, iptables), the
# template builder (debootstrap, python3 for shift-owner.py), the CRIU
# build (build-essential, pkg-config; its -dev packages are installed by
# install-criu.sh), CRIU's shared libraries, and skopeo + umoci (templates from
# OCI images: pull and unpack).
RUNTIME_PACKAGES=(
    iproute2 nftables iptables debootstrap python3 pkg-config build-essential
    ca-certificates util-linux
    libprotobuf-c1 libnl-3-200 libnet1 libbsd0 libcap2 libgnutls30
    libnftables1 libuuid1
    skopeo umoci
)

T0=$SECONDS
STEP=0
NSTEPS=7
step() { STEP=$((STEP + 1)); STEP_T=$SECONDS; log "[$STEP/$NSTEPS] $*"; }
step_done() { log "      ok ($((SECONDS - STEP_T))s)"; }

# Host tuning the runtime needs: the data dir (0711: sandbox uids may traverse it to
# reach their rootfs, but nobody can list it) and the sysctls persisted in
# /etc/sysctl.d/60-stasis.conf.
configure_host() {
    mkdir -p "$DATA"
    chmod 0711 "$DATA"
    chown root:root "$DATA"
    # Lazy restore (resume in ~0.1 s whatever the memory size) uses userfaultfd from
    # inside the sandbox's user namespace, which needs this host-wide switch. Sandboxed
    # code itself cannot use userfaultfd (seccomp); see docs/security.md for the trade-off.
    # STASIS_LAZY_RESTORE=0 at setup keeps it off (resume then copies memory eagerly).
    local conf=/etc/sysctl.d/60-stasis.conf want=1
    [ "${STASIS_LAZY_RESTORE:-1}" = 0 ] && want=0
    # Inotify instances and watches: the kernel counts every sandbox's against one
    # shared budget (host root's, the owner of every sandbox's user namespace), so with
    # the default 128 instances one sandbox could leave none to the others, to their
    # agents (files.watch) or to the host. INT_MAX makes that count non-binding; what
    # binds is each sandbox's own: its memory cgroup (the kernel charges inotify groups,
    # marks, events and their files to it, ~1 KiB an instance, ~85 B a watch), its pids
    # limit and RLIMIT_NOFILE. Any finite shared number is again a budget one sandbox
    # can drain. See docs/security.md, "Inotify counts".
    local inotify=2147483647
    local want_conf
    want_conf=$(printf '%s\n' "vm.unprivileged_userfaultfd = $want" \
        "fs.inotify.max_user_instances = $inotify" "fs.inotify.max_user_watches = $inotify")
    if [ "$(cat "$conf" 2>/dev/null)" != "$want_conf" ]; then
        echo "$want_conf" >"$conf"
    fi
    sysctl -q -w "vm.unprivileged_userfaultfd=$want" || warn "cannot set vm.unprivileged_userfaultfd (resume will not be lazy)"
    sysctl -q -w "fs.inotify.max_user_instances=$inotify" "fs.inotify.max_user_watches=$inotify" ||
        warn "cannot raise fs.inotify.max_user_*: one sandbox can use every inotify instance of all sandboxes"
}

# True if $1 is a live `stasis serve` process.
is_stasis_serve() {
    local pid=$1 cmd
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    case "$cmd" in *stasis*serve*) return 0 ;; *) return 1 ;; esac
}

stop_server() {
    local pid
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    if is_stasis_serve "$pid"; then
        log "stopping running stasis serve (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            is_stasis_serve "$pid" || break
            sleep 0.2
        done
        if is_stasis_serve "$pid"; then
            warn "pid $pid did not stop within 10s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PID_FILE"
}

# True where systemd is PID 1 (then Stasis runs as a unit, not a background process).
has_systemd() {
    [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && command -v systemctl >/dev/null
}

# Installs scripts/systemd/stasis.service with these serve arguments, enables it and
# (re)starts it: restart on failure, pause-on-shutdown on stop, logs in the journal.
start_server_systemd() {
    local unit=/etc/systemd/system/stasis.service
    stop_server   # a background server from an earlier setup
    sed -e "s|@STASIS_BIN@|$STASIS_BIN|" -e "s|@ARGS@|$*|" "$SCRIPT_DIR/systemd/stasis.service" >"$unit.tmp"
    mv "$unit.tmp" "$unit"
    systemctl daemon-reload
    systemctl enable stasis.service >/dev/null 2>&1
    log "starting: systemctl restart stasis (unit $unit; logs: journalctl -u stasis)"
    systemctl restart stasis.service
    sleep 1
    systemctl is-active --quiet stasis.service || {
        journalctl -u stasis.service -n 20 --no-pager >&2 || true
        die "stasis.service did not start (journalctl -u stasis)"
    }
    log "stasis serve running (systemd unit stasis.service)"
    for _ in $(seq 20); do [ -s "$DATA/api-key" ] && break; sleep 0.1; done
    if [ -s "$DATA/api-key" ]; then
        log "API key in $DATA/api-key: export E2B_API_KEY=\$(cat $DATA/api-key) E2B_API_URL=http://127.0.0.1:3000 E2B_SANDBOX_URL=http://127.0.0.1:3000"
    fi
}

start_server() {
    local help pid args=(serve)
    if [ ! -x "$STASIS_BIN" ]; then
        log "$STASIS_BIN is not installed: 'stasis serve' not available yet; not starting"
        return 0
    fi
    if ! help=$("$STASIS_BIN" serve --help 2>&1); then
        log "'stasis serve' not available yet in this build; not starting"
        return 0
    fi
    if grep -q -- '--data-dir' <<<"$help"; then
        args+=(--data-dir "$DATA")
    fi
    # HTTPS beside HTTP: https://{port}-{id}.localhost:3443 with the local CA (docs/network.md).
    if grep -q -- '--tls-listen' <<<"$help" && "$STASIS_BIN" tls init --data-dir "$DATA" >/dev/null; then
        args+=(--tls-listen 127.0.0.1:3443)
    fi
    if has_systemd; then
        start_server_systemd "${args[@]:1}"
        return
    fi
    stop_server
    mkdir -p "$(dirname "$LOG_FILE")"
    log "starting: $STASIS_BIN ${args[*]} (log $LOG_FILE, pid file $PID_FILE)"
    setsid "$STASIS_BIN" "${args[@]}" >>"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
    sleep 1
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$PID_FILE"
        tail -n 20 "$LOG_FILE" >&2 || true
        die "stasis serve exited right after starting (see $LOG_FILE)"
    fi
    log "stasis serve running (pid $pid)"
    # The key serve generated on its first start (printed once, into its log): show where.
    for _ in $(seq 20); do [ -s "$DATA/api-key" ] && break; sleep 0.1; done
    if [ -s "$DATA/api-key" ]; then
        log "API on http://127.0.0.1:3000 (and https://localhost:3443, CA $DATA/tls/ca.pem)"
        log "API key in $DATA/api-key: export E2B_API_KEY=\$(cat $DATA/api-key) E2B_API_URL=http://127.0.0.1:3000 E2B_SANDBOX_URL=http://127.0.0.1:3000"
    fi
}

step "apt packages needed at run time"
apt_install_missing "${RUNTIME_PACKAGES[@]}"
step_done

step "CRIU >= 4.2"
"$SCRIPT_DIR/install-criu.sh"
step_done

if [ $BUILD -eq 1 ]; then
    step "build and install stasis binaries (scripts/build.sh)"
    "$SCRIPT_DIR/build.sh"
    step_done
else
    step "build skipped (--skip-build)"
fi

step "host configuration ($DATA)"
configure_host
step_done

step "sandbox template 'base'"
"$SCRIPT_DIR/build-template.sh" --data-dir "$DATA"
step_done

step "sandbox template 'code-interpreter-v1' (Jupyter kernels, numpy, pandas, matplotlib, Deno)"
"$SCRIPT_DIR/build-interpreter-template.sh" --data-dir "$DATA"
step_done

if [ $START -eq 1 ]; then
    step "stasis serve"
    start_server
    step_done
else
    step "not starting stasis serve (--no-start)"
fi

log "setup complete in $((SECONDS - T0))s"
