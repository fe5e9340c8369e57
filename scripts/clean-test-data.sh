#!/usr/bin/env bash
# Removes what earlier (possibly crashed) test runs left under /var/lib/stasis-test:
# their sandboxes (processes, cgroups, networks, mounts) and their files.
set -uo pipefail
ROOT=${1:-/var/lib/stasis-test}
STASIS=${STASIS_BIN:-/usr/local/bin/stasis}
[ -d "$ROOT" ] || exit 0
for data in "$ROOT"/*/; do
    [ -d "$data/sandboxes" ] || continue
    for sbx in "$data"/sandboxes/*/; do
        [ -f "$sbx/record.json" ] || continue
        "$STASIS" runtime --data-dir "$data" kill "$(basename "$sbx")" >/dev/null 2>&1 || true
    done
done
# Anything still mounted below (a kill that could not finish): detach it.
grep -o " $ROOT/[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
rm -rf "$ROOT"
