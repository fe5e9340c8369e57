#!/usr/bin/env bash
# Build the "base" sandbox template: a Debian bookworm minbase rootfs (with git and curl,
# as the hosted platforms' base images have) whose ownership is shifted by 100000 for the
# sandboxes' user namespaces.
#
# Versioned by its recipe (this script and shift-owner.py): each recipe is built once into
#   $DATA/templates/.base-RECIPE/rootfs/             the root file system
#   $DATA/templates/.base-RECIPE/rootfs.uid-shift    marker left by shift-owner.py
#   $DATA/templates/.base-RECIPE/template.json       {"name","recipe","uidShift","createdAt","sizeBytes"}
# and published by pointing the symlink $DATA/templates/base at it (one rename(2)).
# Sandboxes, snapshots and templates made before keep the version they were made from
# (their records name its resolved path). A base from before versions (a real directory
# at templates/base) moves to templates/.base-legacy, where the runtime finds it for the
# records that name templates/base/rootfs (Layout::lower_now).
#
# Idempotent: exits at once when templates/base already points at this recipe's build.
# Usage: build-template.sh [--data-dir /var/lib/stasis]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STASIS_LOG_TAG=build-template
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

DATA=/var/lib/stasis
NAME=base
SUITE=bookworm
UID_SHIFT=100000
SANDBOX_USER=user
SANDBOX_UID=1000
SANDBOX_HOSTNAME=sandbox
INCLUDE=bash,coreutils,procps,python3,sudo,ca-certificates,iproute2,git,curl
DEBOOTSTRAP_CACHE=/var/cache/stasis/debootstrap

while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) [ $# -ge 2 ] || die "--data-dir needs a value"; DATA=$2; shift 2 ;;
        --data-dir=*) DATA=${1#*=}; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
case "$DATA" in /*) ;; *) die "--data-dir must be an absolute path" ;; esac

TEMPLATES=$DATA/templates
LINK=$TEMPLATES/$NAME
LEGACY=$TEMPLATES/.$NAME-legacy
recipe=$(cat "$0" "$SCRIPT_DIR/shift-owner.py" | sha256sum | cut -c1-16)
VERSION=.$NAME-$recipe
FINAL=$TEMPLATES/$VERSION

current() { [ "$(readlink "$LINK" 2>/dev/null)" = "$VERSION" ] && [ -f "$FINAL/template.json" ]; }

# Points templates/base at $VERSION. A pre-versions base directory moves aside first, in
# the same breath, so a create never finds no base.
publish() {
    if [ -d "$LINK" ] && [ ! -L "$LINK" ]; then
        [ ! -e "$LEGACY" ] || die "$LINK is a directory and $LEGACY exists: move one away and rerun"
        mv -T "$LINK" "$LEGACY"
        log "the base from before versions is kept at $LEGACY (sandboxes made from it still use it)"
    fi
    ln -sfn "$VERSION" "$LINK.tmp"
    mv -T "$LINK.tmp" "$LINK"
}

if current; then
    log "template '$NAME' already built (recipe $recipe); nothing to do"
    exit 0
fi

require_root
if [ -d "$LINK" ] && [ ! -L "$LINK" ] && [ ! -f "$LINK/template.json" ]; then
    die "$LINK exists without template.json (not built by this script?); move it away and rerun"
fi
t_start=$SECONDS
apt_install_missing debootstrap

mkdir -p "$TEMPLATES"
chmod 0711 "$DATA" "$TEMPLATES"
exec 9>"$TEMPLATES/.build.lock"
flock 9
# Another run may have finished while we waited for the lock.
if current; then
    log "template '$NAME' was built by a concurrent run; nothing to do"
    exit 0
fi
if [ -f "$FINAL/template.json" ]; then
    # Built before, link moved since (a rollback): point at it again.
    publish
    log "template '$NAME' -> $VERSION (already built)"
    exit 0
fi

# Unmount whatever a killed debootstrap left mounted (proc, sys, ...) under $1.
umount_under() {
    local m
    awk -v d="$1/" 'index($5 "/", d) == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

# Staging dirs of earlier, interrupted runs.
for old in "$TEMPLATES/.$NAME.tmp-"* "$TEMPLATES/.$NAME-"*.tmp-*; do
    [ -d "$old" ] || continue
    log "removing leftover staging dir $old"
    umount_under "$old"
    rm -rf --one-file-system "$old"
done

STAGE=$(mktemp -d "$FINAL.tmp-XXXX")
ROOTFS=$STAGE/rootfs
BUILD_LOG=$TEMPLATES/.$NAME-build.log
cleanup() {
    local rc=$?
    if [ $rc -ne 0 ]; then
        warn "build failed (exit $rc); removing $STAGE; log: $BUILD_LOG"
        umount_under "$STAGE"
        rm -rf --one-file-system "$STAGE"
    fi
}
trap cleanup EXIT

# --- 1. debootstrap ---------------------------------------------------------
# debootstrap's own default mirror unless the machine's apt sources name a
# Debian archive, which is then used (read at run time, never hard-coded).
mirror=$(debian_archive_uri || true)
mkdir -p "$DEBOOTSTRAP_CACHE"
log "[1/5] debootstrap --variant=minbase $SUITE (recipe $recipe) -> $ROOTFS${mirror:+ (mirror $mirror)}"
t=$SECONDS
if ! debootstrap --variant=minbase --include="$INCLUDE" --cache-dir="$DEBOOTSTRAP_CACHE" \
        "$SUITE" "$ROOTFS" ${mirror:+"$mirror"} >"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2
    die "debootstrap failed"
fi
log "      done in $((SECONDS - t))s"

# --- 2. configure -----------------------------------------------------------
log "[2/5] configuring: user '$SANDBOX_USER' ($SANDBOX_UID:$SANDBOX_UID), sudo, hostname"
in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
in_root groupadd -g "$SANDBOX_UID" "$SANDBOX_USER"
in_root useradd -m -u "$SANDBOX_UID" -g "$SANDBOX_UID" -d "/home/$SANDBOX_USER" \
    -s /bin/bash "$SANDBOX_USER"
printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' "$SANDBOX_USER" >"$ROOTFS/etc/sudoers.d/$SANDBOX_USER"
chmod 0440 "$ROOTFS/etc/sudoers.d/$SANDBOX_USER"
in_root visudo -cq -f "/etc/sudoers.d/$SANDBOX_USER" || die "sudoers file rejected by visudo"
echo "$SANDBOX_HOSTNAME" >"$ROOTFS/etc/hostname"
cat >"$ROOTFS/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$SANDBOX_HOSTNAME
::1	localhost ip6-localhost ip6-loopback
EOF

# --- 3. shrink ---------------------------------------------------------------
log "[3/5] cleaning apt caches and logs"
in_root apt-get clean >>"$BUILD_LOG" 2>&1
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old \
       "$ROOTFS"/var/log/apt/* "$ROOTFS"/var/log/dpkg.log "$ROOTFS"/var/log/bootstrap.log
mkdir -p "$ROOTFS/var/lib/apt/lists/partial"
# Files in the rootfs must not be held by any mount (debootstrap unmounts
# its proc/sys; make sure before shifting ownership).
umount_under "$ROOTFS"

# --- 4. shift ownership -------------------------------------------------------
log "[4/5] shifting ownership of every file by $UID_SHIFT (shift-owner.py)"
t=$SECONDS
/usr/bin/python3 "$SCRIPT_DIR/shift-owner.py" "$ROOTFS" --shift "$UID_SHIFT"
chown "$UID_SHIFT:$UID_SHIFT" "$ROOTFS"
chmod 0755 "$ROOTFS"
log "      done in $((SECONDS - t))s"

# --- 5. metadata + publish ---------------------------------------------------
size=$(du -sb --one-file-system "$ROOTFS" | awk '{ print $1 }')
files=$(find "$ROOTFS" -xdev | wc -l)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "[5/5] writing template.json and publishing $LINK -> $VERSION"
printf '{"name":"%s","recipe":"%s","uidShift":%d,"createdAt":"%s","sizeBytes":%d}\n' \
    "$NAME" "$recipe" "$UID_SHIFT" "$created" "$size" >"$STAGE/template.json.tmp"
mv "$STAGE/template.json.tmp" "$STAGE/template.json"
chmod 0644 "$STAGE/template.json"
chmod 0711 "$STAGE"
mv -T "$STAGE" "$FINAL"    # atomic: rename(2) within $TEMPLATES
trap - EXIT
publish

log "template '$NAME' ready: $FINAL ($((size / 1024 / 1024)) MiB, $files entries, $((SECONDS - t_start))s total)"
