#!/usr/bin/env bash
# Makes the OCI images the template tests build from, without any registry or network:
#
#   tests/oci/test-images.sh OUT [debian]
#
# OUT/layout (an OCI image layout) gets the tag `busybox`: Debian's static busybox, with
# /etc/passwd naming root only (so a build must create the sandbox user), ENV
# PATH=/bin:/usr/bin and OCI_GREETING, WORKDIR /srv, CMD sh (ignored by builds).
# With `debian` also the tag `debian`: the base template's rootfs (glibc, bash, python3,
# ss, the user `user`) with its ownership un-shifted, ENV DEB_MARK. Made once per base
# template (OUT/debian.stamp records which); needs root (files keep their owners).
set -euo pipefail
OUT=${1:?usage: test-images.sh OUT [debian]}
WANT_DEBIAN=${2:-}
BASE=${TEMPLATE_BASE:-/var/lib/stasis/templates/base}
MAP=0:100000:65536
LAYOUT=$OUT/layout
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
[ -d "$LAYOUT" ] || umoci init --layout "$LAYOUT"

have_tag() { umoci ls --layout "$LAYOUT" 2>/dev/null | grep -qx "$1"; }

if ! have_tag busybox; then
    work=$(mktemp -d "$OUT/.bb-XXXX")
    umoci new --image "$LAYOUT:busybox"
    umoci unpack --uid-map "$MAP" --gid-map "$MAP" --image "$LAYOUT:busybox" "$work/bundle" >/dev/null
    r=$work/bundle/rootfs
    mkdir -p "$r/bin" "$r/etc" "$r/srv"
    cp /bin/busybox "$r/bin/busybox"
    for app in $(/bin/busybox --list); do [ -e "$r/bin/$app" ] || ln -s busybox "$r/bin/$app"; done
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
    printf 'root:x:0:\n' >"$r/etc/group"
    echo "made by test-images.sh" >"$r/srv/image.txt"
    chown -hR 100000:100000 "$r/bin" "$r/etc" "$r/srv"
    umoci repack --image "$LAYOUT:busybox" "$work/bundle"
    umoci config --image "$LAYOUT:busybox" --os linux --architecture amd64 \
        --config.env PATH=/bin:/usr/bin --config.env OCI_GREETING=from-the-image \
        --config.workingdir /srv --config.cmd /bin/sh
    rm -rf "$work"
fi

if [ "$WANT_DEBIAN" = debian ]; then
    stamp=$(cat "$BASE/template.json")
    if ! have_tag debian || [ "$(cat "$OUT/debian.stamp" 2>/dev/null)" != "$stamp" ]; then
        work=$(mktemp -d "$OUT/.deb-XXXX")
        umoci new --image "$LAYOUT:debian"
        umoci unpack --uid-map "$MAP" --gid-map "$MAP" --image "$LAYOUT:debian" "$work/bundle" >/dev/null
        # The base's files are owned by shifted ids already: the bundle's mapping takes
        # them back to in-image ids when repacking.
        cp -a "$BASE/rootfs/." "$work/bundle/rootfs/"
        rm -rf "$work/bundle/rootfs/usr/share/doc" "$work/bundle/rootfs/usr/share/man" "$work/bundle/rootfs/usr/share/locale"
        umoci repack --image "$LAYOUT:debian" "$work/bundle"
        umoci config --image "$LAYOUT:debian" --os linux --architecture amd64 \
            --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.env DEB_MARK=glibc \
            --config.cmd bash
        rm -rf "$work"
        echo "$stamp" >"$OUT/debian.stamp"
    fi
fi
umoci gc --layout "$LAYOUT"
