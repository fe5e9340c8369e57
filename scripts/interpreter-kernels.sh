#!/usr/bin/env bash
# Write the kernelspecs stasis-interpreter launches, in Jupyter's kernel.json format, the
# same set as the code-interpreter-v1 template (scripts/build-interpreter-template.sh):
#   KERNELS_DIR/python3/kernel.json   ipykernel of VENV
#   KERNELS_DIR/bash/kernel.json      bash_kernel of VENV
#   KERNELS_DIR/deno/kernel.json      deno jupyter (JavaScript and TypeScript)
# What the SDKs' results need beyond the argv (the inline matplotlib backend and the
# start-up code for Python, no colours and message interrupts for Deno) the service
# adds itself (crates/stasis-interpreter/src/context.rs, Deps::launch).
# Usage: interpreter-kernels.sh VENV DENO_BIN KERNELS_DIR
set -euo pipefail

[ $# -eq 3 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
VENV=$1 DENO=$2 KERNELS=$3

py=$VENV/bin/python
[ -x "$py" ] || { echo "no python at $py" >&2; exit 1; }
[ -x "$DENO" ] || { echo "no deno at $DENO" >&2; exit 1; }

write_spec() { # NAME LANGUAGE DISPLAY ARGV...
    local name=$1 language=$2 display=$3
    shift 3
    mkdir -p "$KERNELS/$name"
    # kernel.json is JSON: let Python quote the paths.
    "$py" - "$KERNELS/$name/kernel.json" "$language" "$display" "$@" <<'PY'
import json, os, sys
path, language, display, *argv = sys.argv[1:]
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump({"argv": argv, "display_name": display, "language": language}, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
PY
}

write_spec python3 python "Python 3" "$py" -m ipykernel_launcher -f '{connection_file}'
write_spec bash bash "Bash" "$py" -m bash_kernel -f '{connection_file}'
write_spec deno typescript "Deno" "$DENO" jupyter --kernel --conn '{connection_file}'
# Earlier versions of this script wrote these; the service prefers them over deno.
rm -rf "$KERNELS/javascript" "$KERNELS/typescript"
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -f "$site/stasis_kernel.pth"
echo "kernelspecs in $KERNELS: $(ls "$KERNELS" | tr '\n' ' ')"
