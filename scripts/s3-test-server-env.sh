#!/usr/bin/env bash
# Install the S3 server the object-store tests and benchmarks start (moto's, PyPI
# moto[server], pinned) in a venv under /var/cache/stasis/s3-server. Idempotent: seconds
# when it is there. Nothing is started or enabled: each test starts its own server
# (tests/objstore/s3_server.py) on its own port, with its own data dir and credentials.
# Prints the line to export: STASIS_TEST_S3_PYTHON=<venv>/bin/python
# Why moto: docs/dependencies.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STASIS_LOG_TAG=s3-server
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

VENV=${STASIS_S3_SERVER_ENV:-/var/cache/stasis/s3-server}
MOTO_VERSION=5.2.5

if ! "$VENV/bin/python" -c "import moto, boto3, flask; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
    log "python venv in $VENV: moto[server]==$MOTO_VERSION"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
else
    log "python venv $VENV is up to date"
fi
echo "STASIS_TEST_S3_PYTHON=$VENV/bin/python"
