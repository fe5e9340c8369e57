#!/usr/bin/env bash
# The whole test suite, as CI runs it: sets the host up (idempotent, seconds when done),
# then runs unit tests and the end-to-end tests (real sandboxes, real CRIU, real SDKs).
# Usage: scripts/test.sh [extra cargo test args...]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

[ "$(id -u)" -eq 0 ] || { echo "test.sh: run as root (sandboxes need namespaces, cgroups and CRIU)" >&2; exit 1; }

"$REPO/scripts/setup.sh" --no-start

# What only the tests need: a real PostgreSQL server (the store suite and the daemon on
# PostgreSQL start their own throwaway clusters from its binaries; nothing is enabled).
STASIS_LOG_TAG=test
# shellcheck source=lib.sh
. "$REPO/scripts/lib.sh"
apt_install_missing postgresql
# Templates from OCI images (crates/stasis/tests/templates_oci.rs, the e2e image tests):
# local registries (docker-registry, htpasswd from apache2-utils) and a static busybox
# the test images are made of.
apt_install_missing docker-registry apache2-utils busybox-static
# The egress proxy's test (crates/stasis/tests/egress_secrets.rs) makes its test CA and
# the echo server's certificate with the openssl command.
apt_install_missing openssl

# The tests use the agent and CRIU that setup just installed, and their own data dirs.
export STASIS_AGENT=/usr/local/lib/stasis/stasis-agent
"$REPO/scripts/clean-test-data.sh"
mkdir -p /var/lib/stasis-test
chmod 0711 /var/lib/stasis-test

# The code interpreter's integration test drives real kernels and the real SDKs on the
# host: a venv, Deno and the SDKs under /var/cache/stasis/interp-dev (idempotent).
"$REPO/scripts/interpreter-dev-env.sh"
export STASIS_INTERP_TEST_KERNELS=${STASIS_INTERP_DEV:-/var/cache/stasis/interp-dev}/kernels

# The object-store tests start real S3 servers (moto's) from a venv (idempotent).
"$REPO/scripts/s3-test-server-env.sh"
export STASIS_TEST_S3_PYTHON=${STASIS_S3_SERVER_ENV:-/var/cache/stasis/s3-server}/bin/python

# deploy/validate.sh checks the Kubernetes manifests with kubernetes-validate (PyPI, in a
# venv under /var/cache/stasis) and reads the DaemonSet with python3-yaml.
apt_install_missing python3-venv python3-yaml

status=0
echo "== house rules: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all -- --check || status=1
cargo clippy --workspace --all-targets --locked -- -D warnings || status=1

echo "== deploy/kubernetes: schemas without a cluster, the DaemonSet's flags against the installed stasis"
"$REPO/deploy/validate.sh" /usr/local/bin/stasis || status=1

echo "== cargo test (unit + end-to-end: runtime, API, lifecycle, snapshots, code interpreter)"
cargo test --workspace --no-fail-fast "$@" || status=1

echo "== SDK end-to-end tests (npm e2b, novita-sandbox, PyPI e2b) against the installed stasis"
STASIS_BIN=/usr/local/bin/stasis bash "$REPO/tests/e2e/run.sh" || status=1

echo "== the cluster: three nodes on one PostgreSQL and one S3 server, through the SDK (tests/cluster/run.sh)"
STASIS_BIN=/usr/local/bin/stasis bash "$REPO/tests/cluster/run.sh" || status=1

echo "== the JS SDK suites again in host-routing mode (E2B_DOMAIN, the TLS listener, no sandbox headers)"
E2E_ROUTING=host E2E_SUITES=js STASIS_BIN=/usr/local/bin/stasis bash "$REPO/tests/e2e/run.sh" || status=1

exit $status
