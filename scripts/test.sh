#!/usr/bin/env bash
# The whole test suite, as CI runs it: sets the host up (idempotent, seconds when done),
# then runs unit tests and the end-to-end tests (real sandboxes, real CRIU, real SDKs).
# Usage: scripts/test.sh [extra cargo test args...]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

[ "$(id -u)" -eq 0 ] || { echo "test.sh: run as root (sandboxes need namespaces, cgroups and CRIU)" >&2; exit 1; }

"$REPO/scripts/setup.sh" --no-start

# The tests use the agent and CRIU that setup just installed, and their own data dirs.
export STASIS_AGENT=/usr/local/lib/stasis/stasis-agent
rm -rf /var/lib/stasis-test
mkdir -p /var/lib/stasis-test

echo "== cargo test (unit + end-to-end)"
cargo test --workspace "$@"
