#!/usr/bin/env bash
# Write the kernelspecs stasis-interpreter launches (one directory each, Jupyter's
# kernel.json format) for a Python venv holding ipykernel + bash_kernel and a Deno binary:
#   KERNELS_DIR/python3/kernel.json      ipykernel, with the stasis_kernel IPython extension
#   KERNELS_DIR/bash/kernel.json         bash_kernel
#   KERNELS_DIR/javascript/kernel.json   deno jupyter (E2B runs JS and TS on Deno too)
#   KERNELS_DIR/typescript/kernel.json   deno jupyter
# and makes the venv import stasis_kernel from PYTHON_DIR (a .pth file in its
# site-packages, so nothing is added to the environment user code sees).
# Used by scripts/interpreter-dev-env.sh; the code-interpreter template can run it too.
# Usage: interpreter-kernels.sh VENV DENO_BIN KERNELS_DIR PYTHON_DIR
set -euo pipefail

[ $# -eq 4 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
VENV=$1 DENO=$2 KERNELS=$3 PYDIR=$4

py=$VENV/bin/python
[ -x "$py" ] || { echo "no python at $py" >&2; exit 1; }
[ -x "$DENO" ] || { echo "no deno at $DENO" >&2; exit 1; }
[ -f "$PYDIR/stasis_kernel/__init__.py" ] || { echo "no stasis_kernel package in $PYDIR" >&2; exit 1; }

# kernel.json is JSON: let Python quote the paths.
write_spec() { # NAME LANGUAGE DISPLAY ARGV...
    local name=$1 language=$2 display=$3
    shift 3
    mkdir -p "$KERNELS/$name"
    "$py" - "$KERNELS/$name/kernel.json" "$language" "$display" "$@" <<'PY'
import json, os, sys
path, language, display, *argv = sys.argv[1:]
spec = {"argv": argv, "display_name": display, "language": language, "interrupt_mode": "signal"}
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
PY
}

write_spec python3 python "Python 3" "$py" -m ipykernel_launcher -f '{connection_file}' \
    --IPKernelApp.extensions=stasis_kernel --InteractiveShell.colors=NoColor
write_spec bash bash "Bash" "$py" -m bash_kernel -f '{connection_file}'
write_spec javascript javascript "JavaScript (Deno)" "$DENO" jupyter --kernel --conn '{connection_file}'
write_spec typescript typescript "TypeScript (Deno)" "$DENO" jupyter --kernel --conn '{connection_file}'

site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n' "$PYDIR" > "$site/stasis_kernel.pth"
echo "kernelspecs in $KERNELS; $site/stasis_kernel.pth -> $PYDIR"
