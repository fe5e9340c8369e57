"""The model-based randomized test (tests/e2e/py/model) on a three-node cluster: every op
goes through a node the seed draws, and drains and kill -9s of nodes (with and without the
lease running out) happen between the ops, so files, commands, watches, secret processes,
volumes, snapshots, forks, code-interpreter kernels and both users are checked across
takeovers (model/cluster.py; run.sh runs it after test_cluster.py).

  CLUSTER_MODEL_SEEDS=1,2   the seeds (default 7,8); CLUSTER_MODEL_OPS (default 120)
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e", "py"))

from model.drive import config_from_env, report, run_ops  # noqa: E402
from model.server import preflight  # noqa: E402

SEEDS = [int(s) for s in os.environ.get("CLUSTER_MODEL_SEEDS", "7,8").split(",") if s.strip()]


@pytest.mark.parametrize("seed", SEEDS)
def test_cluster_model(seed, monkeypatch):
    why = preflight()
    if why:
        pytest.skip(why)
    monkeypatch.setenv("MODEL_CLUSTER", os.environ.get("MODEL_CLUSTER", "3"))
    cfg = config_from_env()
    cfg.ops = int(os.environ.get("CLUSTER_MODEL_OPS", "120"))
    if not os.environ.get("MODEL_SHRINK_SECS"):
        cfg.shrink_secs = 0  # a shrink reruns a whole cluster per candidate: replay by hand
    ops = cfg.generate(seed)
    res = run_ops(ops, cfg, label="cluster-model")
    if res.failure is None and not res.leaks:
        print(f"cluster model seed {seed}: {res.executed} ops ok ({res.skipped} skipped) in {res.seconds:.0f}s")
        return
    report(seed, ops, cfg, res, do_shrink=False, say=lambda line="": print(line, flush=True))
    f = res.failure
    pytest.fail(f"cluster model seed {seed}: " + (f"op #{f.index} {f.sig}: {f.message[:300]}" if f else f"leaks {res.leaks}"),
                pytrace=False)
