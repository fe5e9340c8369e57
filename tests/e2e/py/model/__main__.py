"""python -m model (cwd tests/e2e/py, as root, with the venv's python):

  python -m model                         # MODEL_SEED (default: random) x MODEL_OPS (300)
  python -m model --seed 7 --ops 120
  python -m model --replay FILE.json      # or inline JSON; a list printed by a failure
  python -m model --soak 30m              # fresh seeds until the time is up, then a summary
  python -m model --plan --seed 7 --ops 40   # only print the sequence a seed generates

Env: MODEL_SEED, MODEL_OPS, MODEL_CLUSTER (N: on N nodes of a local cluster, model/cluster.py), MODEL_SHRINK_SECS (300), MODEL_WEIGHTS ("kind=w,..."; 0
disables a kind), MODEL_USERS ("default,user,root"), MODEL_VERBOSE=1 (print each op as it
runs), MODEL_OUT (where shrunk sequences are written, /tmp/stasis-model), STASIS_BIN,
STASIS_AGENT. Exit status: 0 all passed, 1 a failure, 2 cannot run here.
"""
import argparse
import os
import sys

from .drive import config_from_env, load_ops, parse_duration, replay, run_seed, soak
from .ops import describe
from .server import preflight


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m model", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--ops", type=int, default=None)
    ap.add_argument("--replay", default=os.environ.get("MODEL_REPLAY") or None)
    ap.add_argument("--soak", default=None, help="duration: 30m, 1h, 600s")
    ap.add_argument("--shrink-secs", type=float, default=None)
    ap.add_argument("--no-shrink", action="store_true")
    ap.add_argument("--plan", action="store_true", help="print the generated sequence and exit")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    cfg = config_from_env(ops=a.ops, shrink_secs=a.shrink_secs, verbose=True if a.verbose else None)
    seed = a.seed if a.seed is not None else (int(os.environ["MODEL_SEED"]) if os.environ.get("MODEL_SEED") else None)

    if a.plan:
        s = seed if seed is not None else 1
        for i, op in enumerate(cfg.generate(s)):
            print(f"{i:>4}. {describe(op)}")
        return 0
    why = preflight()
    if why:
        print(f"model: cannot run: {why}", file=sys.stderr)
        return 2
    if a.soak:
        return 1 if soak(parse_duration(a.soak), cfg) else 0
    if a.replay:
        rep = replay(load_ops(a.replay), cfg, do_shrink=not a.no_shrink)
        return 0 if rep.ok else 1
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
    print(f"model: seed {seed}, {cfg.ops} ops (replay: MODEL_SEED={seed} MODEL_OPS={cfg.ops})", flush=True)
    rep = run_seed(seed, cfg, do_shrink=not a.no_shrink)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
