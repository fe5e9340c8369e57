#!/usr/bin/env bash
# Checks deploy/kubernetes without a cluster (CI runs it from scripts/test.sh):
#   1. every manifest against the Kubernetes API schemas, strictly (an unknown or
#      misspelled field fails), for the oldest and the newest version we support, with
#      `kubernetes-validate` (PyPI; bundled schemas, no cluster, no network at check time);
#   2. every `--flag` the DaemonSet passes to `stasis serve`, and every STASIS_* variable it
#      sets, exists in that binary's `serve --help` (the manifests cannot drift from it);
#   3. the shell the init containers run parses (`sh -n`).
# Usage: deploy/validate.sh [STASIS_BINARY]   (step 2 is skipped without a binary)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STASIS_LOG_TAG=deploy-validate
# shellcheck source=../scripts/lib.sh
. "$HERE/../scripts/lib.sh"

BIN=${1:-}
VALIDATOR_VERSION=1.37.0
K8S_VERSIONS=(1.30.0 1.37.0)
VENV=${STASIS_CACHE_DIR:-/var/cache/stasis}/kubernetes-validate-$VALIDATOR_VERSION

if [ ! -f "$VENV/.complete" ]; then
    log "installing kubernetes-validate $VALIDATOR_VERSION into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "kubernetes-validate==$VALIDATOR_VERSION" \
        || die "installing kubernetes-validate failed (python3-venv and PyPI are needed)"
    touch "$VENV/.complete"
fi

mapfile -t FILES < <(find "$HERE/kubernetes" -name '*.yaml' | sort)
[ ${#FILES[@]} -gt 0 ] || die "no manifests under $HERE/kubernetes"
for v in "${K8S_VERSIONS[@]}"; do
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${FILES[@]}" \
        || die "a manifest does not validate against Kubernetes $v (above)"
done
log "schemas: ${#FILES[@]} manifests valid for Kubernetes ${K8S_VERSIONS[*]}"

python3 - "$HERE/kubernetes/20-daemonset.yaml" "$BIN" <<'PY'
import re, subprocess, sys, tempfile
import yaml  # python3-yaml (scripts/test.sh installs it)

path, binary = sys.argv[1], sys.argv[2]
ds = yaml.safe_load(open(path))
spec = ds["spec"]["template"]["spec"]
(node,) = [c for c in spec["containers"] if c["name"] == "stasis"]
errors = []
for c in spec.get("initContainers", []) + spec["containers"]:
    cmd = c.get("command", [])
    if "-c" in cmd:
        script = cmd[cmd.index("-c") + 1]
        with tempfile.NamedTemporaryFile("w", suffix=".sh") as f:
            f.write(script)
            f.flush()
            r = subprocess.run(["sh", "-n", f.name], capture_output=True, text=True)
        if r.returncode:
            errors.append(f"init container {c['name']}: its shell does not parse: {r.stderr.strip()}")
if binary:
    helptext = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, check=True).stdout
    flags = set(re.findall(r"--[a-z][a-z0-9-]*", helptext))
    envs = set(re.findall(r"\[env: (STASIS_[A-Z_]+)", helptext))
    cmd = node["command"]
    used = [a.split("=", 1)[0] for a in node.get("args", []) if a.startswith("--")]
    assert cmd[-2:] == ["/usr/local/bin/stasis", "serve"], cmd
    for f in used:
        if f not in flags:
            errors.append(f"daemonset passes {f}, which `stasis serve` does not have")
    cm = yaml.safe_load(open(path.rsplit("/", 1)[0] + "/10-config.yaml")).get("data", {})
    names = [e["name"] for e in node.get("env", [])] + list(cm)
    for n in names:
        if n.startswith("STASIS_") and n not in envs:
            errors.append(f"{n} is set for the daemon, but `stasis serve` reads no such variable")
    if not errors:
        print(f"[deploy-validate] flags: {len(used)} flags and {sum(n.startswith('STASIS_') for n in names)} "
              f"STASIS_* variables exist in {binary} serve --help")
if errors:
    sys.exit("\n".join("[deploy-validate] ERROR: " + e for e in errors))
PY
log "ok"
