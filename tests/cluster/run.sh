#!/usr/bin/env bash
# The cluster test: three `stasis serve` nodes on this machine sharing a real PostgreSQL
# (Debian's, a throwaway cluster) and a real S3 server (moto's), checked through the PyPI
# e2b SDK and the `stasis node` CLI (test_cluster.py; the set-up is harness.py), then the
# model test's random sequences on a cluster (test_cluster_model.py).
#
#   sudo bash tests/cluster/run.sh          # installs what it needs (idempotent), runs, cleans up
#
# Env: STASIS_BIN (default /usr/local/bin/stasis), STASIS_AGENT (default
# /usr/local/lib/stasis/stasis-agent), CLUSTER_TEMPLATE_BASE (default
# /var/lib/stasis/templates/base). Loopback only. A failure keeps the work dir
# (/var/lib/stasis-test/cluster-*: node logs, PostgreSQL log) and prints the nodes' logs.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STASIS_LOG_TAG=cluster
# shellcheck source=../../scripts/lib.sh
. "$REPO/scripts/lib.sh"
require_root

export STASIS_BIN=${STASIS_BIN:-/usr/local/bin/stasis}
export STASIS_AGENT=${STASIS_AGENT:-/usr/local/lib/stasis/stasis-agent}
[ -x "$STASIS_BIN" ] || die "no stasis binary at $STASIS_BIN (scripts/setup.sh --no-start installs it)"
[ -f "$STASIS_AGENT" ] || die "no agent at $STASIS_AGENT (scripts/setup.sh --no-start installs it)"

apt_install_missing postgresql
eval "$("$REPO/scripts/s3-test-server-env.sh" | tail -1 | sed 's/^/export /')"
"$REPO/tests/e2e/py-venv.sh"

T0=$SECONDS
cd "$HERE"
# test_cluster.py: the scripted checks; test_cluster_model.py: the randomized model test on
# a cluster of its own (CLUSTER_MODEL_SEEDS, CLUSTER_MODEL_OPS).
if "$REPO/tests/e2e/.venv/bin/python" -m pytest -p no:cacheprovider -rA -q -x test_cluster.py test_cluster_model.py; then
    log "cluster test passed in $((SECONDS - T0)) s"
else
    die "cluster test failed after $((SECONDS - T0)) s (above: the nodes' logs; the work dir is kept)"
fi
