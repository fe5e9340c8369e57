#!/usr/bin/env bash
# Issue 9, "Faults": the long SIGKILL loop. `stasis serve` is SIGKILLed 0-600 ms into a
# random create / pause / resume / kill, 50 times (or $1), restarted each time; after every
# restart each sandbox must be running (same process, same memory), paused (resumable,
# same memory) or cleanly gone, with no sandbox dir without a record, no cgroup, mount,
# process or stasis-ID netns left for an id the server does not know.
#
#   sudo scripts/fault-loop.sh            # 50 rounds (~1-3 min on an idle 2-core host)
#   sudo scripts/fault-loop.sh 200        # more rounds
#   STASIS_FAULT_SEED=123 sudo scripts/fault-loop.sh   # replay a printed seed
#
# CI runs the same test with 8 rounds: cargo test -p stasis --test faults.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
[ "$(id -u)" -eq 0 ] || { echo "fault-loop.sh: run as root (sandboxes need namespaces, cgroups and CRIU)" >&2; exit 1; }
mkdir -p /var/lib/stasis-test
chmod 0711 /var/lib/stasis-test
export STASIS_FAULT_ITERATIONS=${1:-50}
exec cargo test -p stasis --test faults sigkill_of_serve_at_random_points -- --nocapture --test-threads=1
