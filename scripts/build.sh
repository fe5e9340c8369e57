#!/usr/bin/env bash
# Build the Stasis binaries and install them:
#   /usr/local/bin/stasis                 (cargo build --release -p stasis)
#   /usr/local/lib/stasis/stasis-agent    (static: it runs inside sandboxes
#                                          whose rootfs may lack our libc)
#   /usr/local/lib/stasis/stasis-interpreter  (static, likewise: the code interpreter
#                                          of code-interpreter-v1, carried by the agent
#                                          layer as /.stasis/interpreter)
# Files are only replaced when their content changed.
# Usage: build.sh [--no-install]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
STASIS_LOG_TAG=build
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

TARGET=x86_64-unknown-linux-gnu
BIN_DST=/usr/local/bin/stasis
AGENT_DST=/usr/local/lib/stasis/stasis-agent
INTERP_DST=/usr/local/lib/stasis/stasis-interpreter

INSTALL=1
for arg in "$@"; do
    case "$arg" in
        --no-install) INSTALL=0 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) die "unknown argument: $arg" ;;
    esac
done

if ! command -v cargo >/dev/null 2>&1 && [ -r "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found (install a Rust toolchain >= 1.85 with rustup, or put cargo on PATH)"

build_failed() {
    die "cargo build failed ($1). The crates under crates/ may not compile yet while they are being written; fix the build, or run 'scripts/setup.sh --skip-build' to set up the rest of the host."
}

cd "$REPO"
log "cargo build --release -p stasis"
t=$SECONDS
cargo build --release -p stasis || build_failed "stasis"
log "  done in $((SECONDS - t))s"

# An explicit --target keeps RUSTFLAGS (crt-static) away from build scripts
# and proc-macros, and puts the agent in its own target dir.
log "cargo build --release -p stasis-agent -p stasis-interpreter --target $TARGET (static)"
t=$SECONDS
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    cargo build --release -p stasis-agent -p stasis-interpreter --target "$TARGET" ||
    build_failed "stasis-agent, stasis-interpreter"
log "  done in $((SECONDS - t))s"

target_dir=${CARGO_TARGET_DIR:-$REPO/target}
bin=$target_dir/release/stasis
agent=$target_dir/$TARGET/release/stasis-agent
interp=$target_dir/$TARGET/release/stasis-interpreter
for f in "$bin" "$agent" "$interp"; do
    [ -x "$f" ] || die "$f was not produced"
done
for f in "$agent" "$interp"; do
    if ldd "$f" >/dev/null 2>&1 && ! ldd "$f" 2>&1 | grep -q 'statically linked'; then
        warn "$f is dynamically linked:"
        ldd "$f" >&2 || true
    fi
done

install_if_changed() {
    local src=$1 dst=$2
    if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
        log "$dst is up to date"
    else
        # Install beside it and rename: a running `stasis serve` keeps its
        # old inode and never sees a half-written file (no ETXTBSY either).
        install -D -m 0755 "$src" "$dst.new"
        mv -f "$dst.new" "$dst"
        log "installed $dst"
    fi
}

if [ $INSTALL -eq 1 ]; then
    require_root
    install_if_changed "$bin" "$BIN_DST"
    install_if_changed "$agent" "$AGENT_DST"
    install_if_changed "$interp" "$INTERP_DST"
fi
