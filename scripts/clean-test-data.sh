#!/usr/bin/env bash
# Removes what earlier (possibly crashed) test runs left under /var/lib/stasis-test:
# their sandboxes (processes, cgroups, networks, mounts) and their files.
# A data dir whose lock a live `stasis serve` holds belongs to a test still running
# (another suite, a soak): it is left alone, mounts and all.
set -uo pipefail
ROOT=${1:-/var/lib/stasis-test}
STASIS=${STASIS_BIN:-/usr/local/bin/stasis}
[ -d "$ROOT" ] || exit 0

# True if some data dir under $1 (up to 3 levels: loop-mounted test volumes hold theirs
# deeper) is owned by a live daemon.
in_use() {
    local lock
    while IFS= read -r lock; do
        flock -n "$lock" true 2>/dev/null || return 0
    done < <(find "$1" -maxdepth 4 -name lock -type f 2>/dev/null)
    return 1
}

status=0
for entry in "$ROOT"/*; do
    [ -e "$entry" ] || continue
    if [ -d "$entry" ] && in_use "$entry"; then
        echo "clean-test-data: $entry is in use by a running stasis serve; left alone" >&2
        continue
    fi
    if [ -d "$entry" ]; then
        for sbx in "$entry"/sandboxes/*/; do
            [ -f "$sbx/record.json" ] || continue
            "$STASIS" runtime --data-dir "$entry" kill "$(basename "$sbx")" >/dev/null 2>&1 || true
        done
        # Anything still mounted below (a kill that could not finish): detach it.
        grep -o " $entry/[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
        grep -q " $entry " /proc/self/mountinfo && umount -l "$entry" 2>/dev/null
    fi
    rm -rf "$entry" || status=1
done
exit $status
