#!/usr/bin/env bash
# Build the "code-interpreter-v1" template: the base template plus
#   - a Python venv (/opt/stasis/python, owned by `user` so `pip install` works from
#     runCode) with the pinned packages of templates/code-interpreter-v1/requirements.txt
#     (ipykernel, numpy, pandas, matplotlib, bash_kernel);
#   - Deno (JavaScript and TypeScript kernels: `deno jupyter`), from npm;
#   - Jupyter kernelspecs in /usr/local/share/jupyter/kernels (python3, bash, deno);
#   - the code interpreter's IPython start-up code (crates/stasis-interpreter/python);
#   - in template.json, the start command (the code interpreter, which the agent layer
#     carries as /.stasis/interpreter) and its ready check: `stasis serve` warms the
#     template once (boots it, waits for GET /health on 49999, snapshots it) and every
#     create starts from that snapshot with the kernels already running.
#
# Versioned: the template is DATA/templates/.code-interpreter-v1-RECIPE, RECIPE being the
# hash of this script and of its inputs; DATA/templates/code-interpreter-v1 is a symlink
# to the current one. A changed recipe builds a new version and moves the link
# (sandboxes made from the old one keep using it: records hold the resolved path).
# Idempotent: exits at once when the link already names the current recipe.
#
# Usage: build-interpreter-template.sh [--data-dir /var/lib/stasis]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
STASIS_LOG_TAG=build-interpreter-template
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

DATA=/var/lib/stasis
NAME=code-interpreter-v1
UID_SHIFT=100000
SANDBOX_UID=1000
RECIPE_DIR=$REPO/templates/$NAME
SUPPORT_DIR=$REPO/crates/stasis-interpreter/python
CACHE=/var/cache/stasis
VENV=/opt/stasis/python
KERNELS=/usr/local/share/jupyter/kernels
START_LOG=/var/log/stasis/interpreter.log

while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) [ $# -ge 2 ] || die "--data-dir needs a value"; DATA=$2; shift 2 ;;
        --data-dir=*) DATA=${1#*=}; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
case "$DATA" in /*) ;; *) die "--data-dir must be an absolute path" ;; esac

TEMPLATES=$DATA/templates
BASE=$TEMPLATES/base
LINK=$TEMPLATES/$NAME

# shellcheck source=../templates/code-interpreter-v1/versions.env
. "$RECIPE_DIR/versions.env"
recipe_inputs() {
    # The base's version too: a new base (its own recipe) makes a new interpreter.
    readlink "$BASE" || true
    cat "$0" "$RECIPE_DIR"/*
    if [ -d "$SUPPORT_DIR" ]; then find "$SUPPORT_DIR" -type f -print0 | sort -z | xargs -0r cat; fi
}
recipe=$(recipe_inputs | sha256sum | cut -c1-16)
VERSION=.$NAME-$recipe
FINAL=$TEMPLATES/$VERSION

if [ "$(readlink "$LINK" 2>/dev/null)" = "$VERSION" ] && [ -f "$FINAL/template.json" ]; then
    log "template '$NAME' already built (recipe $recipe); nothing to do"
    exit 0
fi

require_root
[ -f "$BASE/template.json" ] || die "the base template is missing: run scripts/build-template.sh first"
if [ -e "$LINK" ] && [ ! -L "$LINK" ]; then
    die "$LINK is not a symlink (made by an older Stasis?); move it away and rerun"
fi

t_start=$SECONDS
exec 9>"$TEMPLATES/.build.lock"
flock 9
if [ "$(readlink "$LINK" 2>/dev/null)" = "$VERSION" ] && [ -f "$FINAL/template.json" ]; then
    log "template '$NAME' was built by a concurrent run; nothing to do"
    exit 0
fi
if [ -f "$FINAL/template.json" ]; then
    # Built before, link moved since (a rollback): point at it again.
    ln -sfn "$VERSION" "$LINK.tmp" && mv -T "$LINK.tmp" "$LINK"
    log "template '$NAME' -> $VERSION (already built)"
    exit 0
fi

umount_under() {
    local m
    awk -v d="$1/" 'index($5 "/", d) == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

for old in "$TEMPLATES/.$NAME-"*.tmp-*; do
    [ -d "$old" ] || continue
    log "removing leftover staging dir $old"
    umount_under "$old"
    rm -rf --one-file-system "$old"
done

STAGE=$(mktemp -d "$FINAL.tmp-XXXX")
ROOTFS=$STAGE/rootfs
BUILD_LOG=$TEMPLATES/.$NAME-build.log
: >"$BUILD_LOG"
cleanup() {
    local rc=$?
    umount_under "$STAGE"
    if [ $rc -ne 0 ]; then
        warn "build failed (exit $rc); removing $STAGE; log: $BUILD_LOG"
        tail -n 30 "$BUILD_LOG" >&2 || true
        rm -rf --one-file-system "$STAGE"
    fi
}
trap cleanup EXIT

in_root() {
    chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

# --- 1. copy base -------------------------------------------------------------------
log "[1/7] copying the base template (recipe $recipe)"
cp -a "$BASE/rootfs" "$ROOTFS"

# The build reaches Debian's and PyPI's mirrors from the chroot with the host's network,
# DNS and CA bundle (the host may trust a local CA); all three are undone at the end.
mkdir -p "$CACHE/pip" "$ROOTFS/var/cache/stasis-pip"
mount -t proc proc "$ROOTFS/proc"
mount --bind /dev "$ROOTFS/dev"
mount --bind "$CACHE/pip" "$ROOTFS/var/cache/stasis-pip"
mount --bind -o ro /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
cp "$ROOTFS/etc/resolv.conf" "$STAGE/resolv.conf.orig" 2>/dev/null || true
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"

# --- 2. Debian packages ---------------------------------------------------------------
log "[2/7] apt: python3-venv"
t=$SECONDS
in_root apt-get update -q >>"$BUILD_LOG" 2>&1 || die "apt-get update failed in the template"
in_root apt-get install -y -q --no-install-recommends python3-venv >>"$BUILD_LOG" 2>&1 ||
    die "apt-get install failed in the template"
log "      done in $((SECONDS - t))s"

# --- 3. Python venv -------------------------------------------------------------------
log "[3/7] pip: $(grep -v '^#' "$RECIPE_DIR/requirements.txt" | tr '\n' ' ')"
t=$SECONDS
cp "$RECIPE_DIR/requirements.txt" "$ROOTFS/tmp/requirements.txt"
in_root python3 -m venv "$VENV" >>"$BUILD_LOG" 2>&1 || die "python3 -m venv failed"
in_root env PIP_CACHE_DIR=/var/cache/stasis-pip PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT=120 \
    "$VENV/bin/pip" install -q -r /tmp/requirements.txt >>"$BUILD_LOG" 2>&1 || die "pip install failed"
rm -f "$ROOTFS/tmp/requirements.txt"
# Font cache and byte code now, not in every sandbox's first run.
in_root "$VENV/bin/python" -c 'import matplotlib.pyplot, pandas' >>"$BUILD_LOG" 2>&1 ||
    die "the venv cannot import matplotlib and pandas"
log "      done in $((SECONDS - t))s"

# --- 4. Deno --------------------------------------------------------------------------
log "[4/7] deno $DENO_VERSION ($DENO_NPM_PACKAGE)"
mkdir -p "$CACHE/deno"
tarball=$CACHE/deno/deno-$DENO_VERSION.tgz
if [ ! -s "$tarball" ]; then
    command -v npm >/dev/null || apt_install_missing npm
    tmpd=$(mktemp -d)
    (cd "$tmpd" && npm pack -q "$DENO_NPM_PACKAGE@$DENO_VERSION" >>"$BUILD_LOG" 2>&1) ||
        die "npm pack $DENO_NPM_PACKAGE@$DENO_VERSION failed"
    mv "$tmpd"/*.tgz "$tarball"
    rmdir "$tmpd"
fi
tar -xzf "$tarball" -C "$STAGE" package/deno
install -m 0755 "$STAGE/package/deno" "$ROOTFS/usr/local/bin/deno"
rm -rf "$STAGE/package"
in_root /usr/local/bin/deno --version >>"$BUILD_LOG" 2>&1 || die "deno does not run in the template"

# --- 5. kernelspecs, start-up code, interpreter files ---------------------------------
log "[5/7] kernelspecs (python3, bash, deno) and the interpreter's start-up code"
kernelspec() { # NAME LANGUAGE DISPLAY ARGV-JSON
    mkdir -p "$ROOTFS$KERNELS/$1"
    printf '{"argv": %s, "display_name": "%s", "language": "%s"}\n' "$4" "$3" "$2" \
        >"$ROOTFS$KERNELS/$1/kernel.json"
}
# No IPython history: its SQLite file, open in every warm snapshot, turns read-only in the
# sandboxes made from it (SQLite sees the file's identity change when overlayfs copies it
# up; docs/reliability.md), and a code interpreter has no use for a shell history.
kernelspec python3 python "Python 3" "[\"$VENV/bin/python\", \"-m\", \"ipykernel_launcher\", \"-f\", \"{connection_file}\", \"--HistoryManager.enabled=False\"]"
kernelspec bash bash "Bash" "[\"$VENV/bin/python\", \"-m\", \"bash_kernel\", \"-f\", \"{connection_file}\"]"
kernelspec deno typescript "Deno" '["/usr/local/bin/deno", "jupyter", "--kernel", "--conn", "{connection_file}"]'
if [ -d "$SUPPORT_DIR" ]; then
    mkdir -p "$ROOTFS/usr/local/share/stasis-interpreter"
    cp -r "$SUPPORT_DIR/." "$ROOTFS/usr/local/share/stasis-interpreter/"
fi
mkdir -p "$ROOTFS/var/log/stasis"
chown -R "$SANDBOX_UID:$SANDBOX_UID" "$ROOTFS$VENV" "$ROOTFS/var/log/stasis"

# --- 6. clean, shift ownership ----------------------------------------------------------
log "[6/7] cleaning, shifting new files' ownership by $UID_SHIFT"
in_root apt-get clean >>"$BUILD_LOG" 2>&1
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/apt/* "$ROOTFS"/var/log/dpkg.log
mkdir -p "$ROOTFS/var/lib/apt/lists/partial"
if [ -f "$STAGE/resolv.conf.orig" ]; then
    cp "$STAGE/resolv.conf.orig" "$ROOTFS/etc/resolv.conf"
    rm -f "$STAGE/resolv.conf.orig"
fi
umount_under "$STAGE"
rmdir "$ROOTFS/var/cache/stasis-pip"
# The base's files are shifted already (shift-owner.py leaves ids >= SHIFT alone).
/usr/bin/python3 "$SCRIPT_DIR/shift-owner.py" "$ROOTFS" --shift "$UID_SHIFT" --marker "$STAGE/rootfs.uid-shift" \
    >>"$BUILD_LOG" 2>&1 || die "shift-owner.py failed"

# --- 7. template.json + publish --------------------------------------------------------
size=$(du -sb --one-file-system "$ROOTFS" | awk '{ print $1 }')
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "[7/7] writing template.json and publishing $LINK -> $VERSION"
cat >"$STAGE/template.json.tmp" <<EOF
{
  "name": "$NAME",
  "from": "base",
  "recipe": "$recipe",
  "uidShift": $UID_SHIFT,
  "createdAt": "$created",
  "sizeBytes": $size,
  "start": {
    "cmd": "exec /.stasis/interpreter --listen 0.0.0.0:49999 --kernels-dir $KERNELS >>$START_LOG 2>&1",
    "user": "user",
    "cwd": "/home/user",
    "env": {"STASIS_START_LOG": "$START_LOG"}
  },
  "ready": {"port": 49999, "path": "/health", "timeoutSecs": 180}
}
EOF
mv "$STAGE/template.json.tmp" "$STAGE/template.json"
chmod 0644 "$STAGE/template.json"
chmod 0711 "$STAGE"
mv -T "$STAGE" "$FINAL"
trap - EXIT
ln -sfn "$VERSION" "$LINK.tmp"
mv -T "$LINK.tmp" "$LINK"

log "template '$NAME' ready: $FINAL ($((size / 1024 / 1024)) MiB, $((SECONDS - t_start))s total)"
