#!/usr/bin/env bash
# Install CRIU >= 4.2 as /usr/local/sbin/criu (plus /usr/local/bin/criu link).
#
# Debian 12 ships CRIU 3.17, which is too old for the kernels we run on
# (6.x: mount-v2, rseq, newer vDSO layouts, ...). We build upstream 4.2.1
# from the orig tarball of Debian sid's source package: that tarball comes
# through the machine's normal apt mirror with a SHA256 from a signed
# Sources index, so no other download channel is needed. Only the criu
# binary is built and it goes under /usr/local, so no file owned by a
# Debian package is replaced (Debian's /usr/sbin/criu stays as it is).
#
# Idempotent: exits at once when a criu >= 4.2 is already installed.
# Usage: install-criu.sh [--force]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STASIS_LOG_TAG=install-criu
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

CRIU_VERSION=4.2.1
CRIU_DEB_VERSION=4.2.1-1
CRIU_MIN_VERSION=4.2
PREFIX=/usr/local
CACHE_DIR=/var/cache/stasis
TARBALL=criu_${CRIU_VERSION}.orig.tar.xz
SID_LIST=/etc/apt/sources.list.d/stasis-sid-src.list

# Packages needed to build `make criu`, found by building on Debian 12:
# without protobuf-compiler/libprotobuf-dev the images/*.proto (which import
# google/protobuf/descriptor.proto) don't compile; libcap-dev provides
# <sys/capability.h>; uuid-dev, libnet1-dev, libnl-3-dev, libprotobuf-c-dev
# are linked unconditionally.
BUILD_DEPS=(gcc make pkg-config
            libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
            libnl-3-dev libnet1-dev libcap-dev uuid-dev)
# Optional features CRIU enables when present: libbsd (setproctitle),
# gnutls (TLS page server), libnftables (network locking with nftables,
# which is what iptables-nft hosts need).
FEATURE_DEPS=(libbsd-dev libgnutls28-dev libnftables-dev)

FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) die "unknown argument: $arg" ;;
    esac
done

criu_version_of() {
    "$1" --version 2>/dev/null | awk '/^Version:/ { print $2; exit }'
}

# Make `criu` on PATH resolve to ours even for PATHs without sbin dirs.
ensure_path_link() {
    local link=$PREFIX/bin/criu
    if [ -L "$link" ] || [ ! -e "$link" ]; then
        ln -sfn "$PREFIX/sbin/criu" "$link"
    fi
}

installed_ok() {
    local c v
    for c in "$PREFIX/sbin/criu" "$(command -v criu 2>/dev/null || true)"; do
        if [ -z "$c" ] || [ ! -x "$c" ]; then continue; fi
        v=$(criu_version_of "$c")
        if [ -n "$v" ] && version_ge "$v" "$CRIU_MIN_VERSION"; then
            log "criu $v already installed at $c (>= $CRIU_MIN_VERSION); nothing to do"
            [ "$c" = "$PREFIX/sbin/criu" ] && ensure_path_link
            return 0
        fi
    done
    return 1
}

run_criu_check() {
    local criu out rc
    criu=$(command -v criu)
    log "criu on PATH: $criu ($(criu_version_of "$criu"))"
    log "running: criu check"
    set +e
    out=$("$criu" check 2>&1)
    rc=$?
    set -e
    printf '%s\n' "$out" | sed 's/^/    /'
    if [ $rc -eq 0 ]; then
        log "criu check: OK"
    else
        warn "criu check exited $rc (see above); checkpoint/restore may not work on this kernel"
    fi
}

require_root
if [ $FORCE -eq 0 ] && installed_ok; then
    exit 0
fi

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.install-criu.lock"
flock 9

# --- 1. fetch the orig tarball (cached) ------------------------------------
cd "$CACHE_DIR"
if [ -f "$TARBALL" ] && [ -f "$TARBALL.sha256" ] &&
   sha256sum --quiet -c "$TARBALL.sha256" 2>/dev/null; then
    log "using cached $CACHE_DIR/$TARBALL"
else
    rm -f "$TARBALL" "$TARBALL.sha256"
    uri=$(debian_archive_uri) ||
        die "no Debian archive found in the apt sources (/etc/apt/sources.list*)"
    log "Debian archive from apt sources: $uri"

    # A sid deb-src entry only (never `deb`): it cannot make any bookworm
    # binary package upgrade. It is used with a private lists directory and
    # removed again on exit, so the system's apt state is left untouched.
    aptdir=$(mktemp -d /tmp/stasis-apt-sid.XXXXXX)
    chmod 0755 "$aptdir"
    cleanup_sid() { rm -f "$SID_LIST"; rm -rf "$aptdir"; }
    trap cleanup_sid EXIT
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri sid main" >"$SID_LIST"
    mkdir -p "$aptdir/lists/partial"
    APT_SID=(-o "Dir::Etc::sourcelist=$SID_LIST" -o "Dir::Etc::sourceparts=-"
             -o "Dir::State::Lists=$aptdir/lists" -o "APT::Get::List-Cleanup=0"
             -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=")
    log "apt-get update (sid deb-src only, private lists dir)"
    apt-get -q "${APT_SID[@]}" update >"$aptdir/update.log" 2>&1 ||
        { cat "$aptdir/update.log" >&2; die "apt-get update of the sid deb-src list failed"; }

    line=$(apt-get -q "${APT_SID[@]}" source --print-uris "criu=$CRIU_DEB_VERSION" 2>/dev/null |
           grep -F "$TARBALL" | head -n1) ||
        die "criu $CRIU_DEB_VERSION not found in sid Sources (apt-get source --print-uris)"
    # Format: 'URI' NAME SIZE SHA256:HEX
    src_uri=$(awk '{ gsub(/\047/, "", $1); print $1 }' <<<"$line")
    sha=$(awk '{ print $4 }' <<<"$line")
    case "$sha" in
        SHA256:*) sha=${sha#SHA256:} ;;
        *) die "no SHA256 for $TARBALL in: $line" ;;
    esac
    log "fetching $TARBALL (sha256 $sha)"
    # The .debian.tar part is not on every mirror, so no `apt-get source`:
    # fetch the orig tarball alone. Download into a dir _apt can write to
    # so apt-helper keeps its privilege drop.
    mkdir -p "$aptdir/dl"
    chown _apt "$aptdir/dl" 2>/dev/null || true
    /usr/lib/apt/apt-helper download-file "$src_uri" "$aptdir/dl/$TARBALL" "SHA256:$sha" >/dev/null ||
        die "download of $src_uri failed"
    echo "$sha  $TARBALL" >"$aptdir/dl/$TARBALL.sha256"
    (cd "$aptdir/dl" && sha256sum --quiet -c "$TARBALL.sha256") || die "SHA256 mismatch for $TARBALL"
    mv "$aptdir/dl/$TARBALL" "$aptdir/dl/$TARBALL.sha256" "$CACHE_DIR/"
    chown root:root "$CACHE_DIR/$TARBALL" "$CACHE_DIR/$TARBALL.sha256"
    cleanup_sid
    trap - EXIT
    log "cached $CACHE_DIR/$TARBALL"
fi

# --- 2. build deps (bookworm) ----------------------------------------------
apt_install_missing "${BUILD_DEPS[@]}" "${FEATURE_DEPS[@]}"

# --- 3. build ----------------------------------------------------------------
BUILD_DIR=$CACHE_DIR/build
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
tar -xJf "$CACHE_DIR/$TARBALL" -C "$BUILD_DIR"
SRC=$BUILD_DIR/criu-$CRIU_VERSION
[ -d "$SRC" ] || die "unexpected tarball layout (no criu-$CRIU_VERSION/)"
jobs=$(nproc 2>/dev/null || echo 2)
log "building criu $CRIU_VERSION (make -j$jobs criu; log: $BUILD_DIR/build.log)"
start=$SECONDS
if ! make -C "$SRC" -j"$jobs" criu >"$BUILD_DIR/build.log" 2>&1; then
    tail -n 40 "$BUILD_DIR/build.log" >&2
    die "criu build failed (full log: $BUILD_DIR/build.log)"
fi
log "built in $((SECONDS - start))s"
built_version=$(criu_version_of "$SRC/criu/criu")
[ "$built_version" = "$CRIU_VERSION" ] || die "built binary reports version '$built_version'"

# --- 4. install under /usr/local -------------------------------------------
for f in "$PREFIX/sbin/criu" "$PREFIX/bin/criu"; do
    if dpkg-query -S "$f" >/dev/null 2>&1; then
        die "$f belongs to a Debian package; refusing to overwrite it"
    fi
done
install -D -m 0755 "$SRC/criu/criu" "$PREFIX/sbin/criu"
ensure_path_link
hash -r
rm -rf "$BUILD_DIR"
log "installed $PREFIX/sbin/criu ($CRIU_VERSION)"

path_criu=$(command -v criu || true)
if [ "$path_criu" != "$PREFIX/sbin/criu" ] && [ "$path_criu" != "$PREFIX/bin/criu" ]; then
    warn "criu on PATH is $path_criu, not $PREFIX/sbin/criu: put $PREFIX/sbin first in PATH"
fi

run_criu_check
