#!/usr/bin/env bash
# The Python venv of the SDK tests (tests/e2e/.venv: PyPI e2b, pytest, ...), installed from
# py/requirements.txt; reinstalled only when that file changed. Used by tests/e2e/run.sh
# and tests/cluster/run.sh. Prints nothing when it is up to date.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="$HERE/.venv" req="$HERE/py/requirements.txt"
if [ -x "$venv/bin/python" ] && [ -f "$venv/.e2e-installed-req" ] && cmp -s "$req" "$venv/.e2e-installed-req"; then
  exit 0
fi
printf '== e2e: %s\n' "python venv (tests/e2e/.venv)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" || exit 1
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req" || exit 1
cp "$req" "$venv/.e2e-installed-req"
