"""Issue 12: the model-based randomized test, bounded (3 fixed seeds x MODEL_OPS ops).

Each seed runs on its own `stasis serve` (own data dir and port, started and restarted by
the test: the sequence SIGTERMs and SIGKILLs it), not on run.sh's server. A failure prints
the seed, the failing op, the whole op log, the server's log lines, and a shrunk
sequence with the command lines to replay it (model/__init__.py, tests/e2e/README.md).

  MODEL_SEEDS=1,2,3   the seeds (default 11,22,33); MODEL_SEED=N runs only N
  MODEL_OPS=300       ops per seed
  MODEL_SHRINK_SECS   shrink budget per distinct failure (default 180 here)
"""
import os

import pytest

from model.drive import config_from_env, report, run_ops
from model.server import preflight

if os.environ.get("MODEL_SEED"):
    SEEDS = [int(os.environ["MODEL_SEED"])]
else:
    SEEDS = [int(s) for s in os.environ.get("MODEL_SEEDS", "11,22,33").split(",") if s.strip()]

# One shrink per distinct failure signature in a session: the seeds often hit the same bug.
_shrunk = set()


@pytest.mark.parametrize("seed", SEEDS)
def test_model(seed):
    why = preflight()
    if why:
        pytest.skip(why)
    cfg = config_from_env()
    if not os.environ.get("MODEL_OPS"):
        cfg.ops = 300
    if not os.environ.get("MODEL_SHRINK_SECS"):
        cfg.shrink_secs = 180
    def say(line=""):
        print(line, flush=True)

    ops = cfg.generate(seed)
    res = run_ops(ops, cfg)
    f = res.failure
    if f is None and not res.leaks:
        print(f"model seed {seed}: {res.executed} ops ok in {res.seconds:.0f}s")
        return
    shrink_it = f is not None and f.sig not in _shrunk
    if f is not None:
        _shrunk.add(f.sig)
    report(seed, ops, cfg, res, do_shrink=shrink_it, say=say)
    if f is not None and not shrink_it:
        say(f"(not shrunk: an earlier seed of this session already shrank signature {f.sig})")
    pytest.fail(f"model seed {seed}: " + (f"op #{f.index} {f.sig}: {f.message[:300]}" if f else f"leaks {res.leaks}"),
                pytrace=False)
