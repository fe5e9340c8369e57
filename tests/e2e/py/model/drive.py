"""Running seeds, reporting failures (seed, op index, full log, server log, shrunk
sequence with the command to replay it), and soaking."""
import json
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .ops import AS_CHOICES, DEFAULT_WEIGHTS, EGRESS_KINDS, KINDS, NODE_KINDS, describe, generate, parse_weights
from .runner import Result, Runner
from .shrink import render, shrink

OUT_DIR = os.environ.get("MODEL_OUT", "/tmp/stasis-model")


@dataclass
class Config:
    ops: int = 300
    shrink_secs: float = 300.0
    weights: Optional[Dict[str, int]] = None
    as_choices: tuple = AS_CHOICES
    verbose: bool = False
    cluster: int = 0  # MODEL_CLUSTER: that many nodes (model/cluster.py), 0: one server

    def generate(self, seed):
        return generate(seed, self.ops, self.weights, self.as_choices, self.cluster)


@dataclass
class Report:
    seed: Optional[int]
    result: Result
    shrunk: Optional[List[dict]] = None
    shrunk_file: Optional[str] = None
    reproduced: Optional[bool] = None
    text: List[str] = field(default_factory=list)

    @property
    def ok(self):
        return self.result.failure is None and not self.result.leaks


# The weights a cluster run changes (MODEL_WEIGHTS still overrides each). A run's restarts
# are node kills there (node_kill restarts the node it killed).
CLUSTER_WEIGHTS = {"restart": 0,
                   "node_drain": 4, "node_kill": 4}


def config_from_env(**over) -> Config:
    c = Config()
    if os.environ.get("MODEL_OPS"):
        c.ops = int(os.environ["MODEL_OPS"])
    if os.environ.get("MODEL_SHRINK_SECS"):
        c.shrink_secs = float(os.environ["MODEL_SHRINK_SECS"])
    if os.environ.get("MODEL_WEIGHTS"):
        c.weights = parse_weights(os.environ["MODEL_WEIGHTS"])
    if os.environ.get("MODEL_USERS"):
        c.as_choices = tuple(u.strip() for u in os.environ["MODEL_USERS"].split(",") if u.strip())
    c.verbose = os.environ.get("MODEL_VERBOSE", "") == "1"
    c.cluster = int(os.environ.get("MODEL_CLUSTER") or 0)
    c.weights = dict(c.weights or DEFAULT_WEIGHTS)
    if c.cluster:
        # Restarts are per node there (node_kill); custom templates are built on the node
        # that receives the build and live there only (docs/architecture.md "Cluster").
        for kind, w in CLUSTER_WEIGHTS.items():
            if not os.environ.get("MODEL_WEIGHTS") or f"{kind}=" not in os.environ["MODEL_WEIGHTS"]:
                c.weights[kind] = w
    else:
        for kind in NODE_KINDS:
            c.weights[kind] = 0
    if not os.environ.get("E2E_EGRESS_ADDR"):
        # The egress ops need run.sh's HTTPS echo (tests/e2e/egress): without it they are off.
        c.weights = dict(c.weights or DEFAULT_WEIGHTS)
        for kind in EGRESS_KINDS:
            c.weights[kind] = 0
    for k, v in over.items():
        if v is not None:
            setattr(c, k, v)
    return c


def _tag():
    return "m" + secrets.token_hex(5)


def run_ops(ops, cfg: Config, label="model", keep=True, deadline=None) -> Result:
    """Runs `ops` on a fresh server; its data dir and log are kept on a failure when `keep`."""
    return Runner(_tag(), label=label, verbose=cfg.verbose, nodes=cfg.cluster).run(ops, keep_server_on_failure=keep,
                                                                                    deadline=deadline)


def _replay_lines(seed, n_ops, shrunk_file, cfg: Config):
    lines = []
    binenv = "".join(f" {v}={os.environ[v]}" for v in ("STASIS_BIN", "STASIS_AGENT") if os.environ.get(v))
    if cfg.cluster:
        binenv += f" MODEL_CLUSTER={cfg.cluster}"
    if shrunk_file:
        lines.append(f"  replay the shrunk sequence: cd tests/e2e/py && sudo{binenv} ../.venv/bin/python -m model --replay {shrunk_file}")
    if seed is not None:
        extra = binenv
        if os.environ.get("MODEL_WEIGHTS"):
            extra += f" MODEL_WEIGHTS='{os.environ['MODEL_WEIGHTS']}'"
        if os.environ.get("MODEL_USERS"):
            extra += f" MODEL_USERS='{os.environ['MODEL_USERS']}'"
        lines.append(f"  replay the unshrunk run:    cd tests/e2e/py && sudo{extra} MODEL_SEED={seed} MODEL_OPS={n_ops} ../.venv/bin/python -m model")
    return lines


def report(seed, ops, cfg: Config, res: Result, do_shrink=True, say=print) -> Report:
    rep = Report(seed, res)
    f = res.failure

    def out(line=""):
        rep.text.append(line)
        say(line)

    if f is None:
        if res.leaks:
            out(f"MODEL LEAK seed={seed}: {res.leaks}")
        return rep
    out("")
    out(f"MODEL FAILURE seed={seed} op #{f.index} ({describe(f.op) if f.op.get('op') != 'server' else 'server'})")
    out(f"  signature: {f.sig}")
    out(f"  {f.message}")
    out(f"--- operation log (seed {seed}, {len(ops)} ops planned, {res.executed} run, {res.skipped} skipped)")
    for ln in res.lines:
        out("  " + ln)
    out("--- traceback")
    for ln in f.trace.rstrip().splitlines()[-12:]:
        out("  " + ln)
    out("--- sandbox ids: " + ", ".join(f"s{k}={v}" for k, v in sorted(res.ids.items())))
    out("--- server log (lines naming the run's sandboxes, warnings, errors, restarts; last 30)")
    for ln in res.server_log.rstrip().splitlines():
        out("  " + ln)
    if res.kept:
        out(f"  kept: {res.kept}")
    if do_shrink and f.op.get("op") != "server":
        out(f"--- shrinking (budget {cfg.shrink_secs:.0f}s; each run on a fresh server)")
        best, reproduced, runs = shrink(ops, f, lambda cand: run_ops(cand, cfg, label="model-shrink", keep=False), cfg.shrink_secs, say=out)
        rep.shrunk, rep.reproduced = best, reproduced
        os.makedirs(OUT_DIR, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"seed{seed}-" if seed is not None else "replay-", suffix=".json", dir=OUT_DIR)
        with os.fdopen(fd, "w") as fh:
            json.dump({"seed": seed, "signature": f.sig, "ops": best}, fh, indent=1)
        os.chmod(path, 0o644)
        rep.shrunk_file = path
        if reproduced:
            out(f"--- shortest failing sequence ({len(best)} ops, {runs} shrink runs; signature {f.sig}):")
            out(render(best))
            out("  as JSON: " + json.dumps(best, separators=(",", ":")))
        else:
            out(f"--- not reproduced: the failing prefix ({len(best)} ops, the log above) passed twice on a fresh server")
    for ln in _replay_lines(seed, f.index + 1, rep.shrunk_file, cfg):
        out(ln)
    return rep


def run_seed(seed: int, cfg: Config, do_shrink=True, say=print) -> Report:
    ops = cfg.generate(seed)
    res = run_ops(ops, cfg)
    rep = report(seed, ops, cfg, res, do_shrink, say)
    if rep.ok:
        say(f"model seed {seed}: {res.executed} ops ok in {res.seconds:.0f}s ({_kinds(res.counts)})")
    return rep


def replay(ops, cfg: Config, do_shrink=True, say=print) -> Report:
    res = run_ops(ops, cfg)
    rep = report(None, ops, cfg, res, do_shrink, say)
    if rep.ok:
        say(f"model replay: {res.executed} ops ok ({res.skipped} skipped) in {res.seconds:.0f}s")
    return rep


def _kinds(counts):
    return ", ".join(f"{k} {counts[k]}" for k in KINDS if counts.get(k))


def load_ops(spec: str) -> List[dict]:
    """A replay list: a JSON file written by a failure report, or inline JSON."""
    text = spec
    if not spec.lstrip().startswith(("[", "{")):
        with open(spec) as fh:
            text = fh.read()
    data = json.loads(text)
    return data["ops"] if isinstance(data, dict) else data


def parse_duration(s: str) -> float:
    s = s.strip()
    mult = {"s": 1, "m": 60, "h": 3600}
    if s[-1] in mult:
        return float(s[:-1]) * mult[s[-1]]
    return float(s)


def soak(seconds: float, cfg: Config, say=print) -> int:
    """Fresh seeds until the time is up; each seed on its own server. Returns the number of
    failing seeds. A failure signature is shrunk the first time it is seen."""
    start = time.monotonic()
    end = start + seconds
    totals: Dict[str, int] = {}
    seeds = []
    failures = []
    shrunk_sigs = set()
    executed = 0
    while time.monotonic() < end:
        seed = int.from_bytes(os.urandom(4), "big")
        ops = cfg.generate(seed)
        left = end - time.monotonic()
        say(f"== soak: seed {seed} ({cfg.ops} ops; {left:.0f}s left)")
        # A seed still running when the time is up stops between two ops.
        res = run_ops(ops, cfg, deadline=end)
        for k, v in res.counts.items():
            totals[k] = totals.get(k, 0) + v
        executed += res.executed
        f = res.failure
        # Shrink a failure the first time its signature is seen (even past the end: the
        # short sequence is the most useful output of a soak).
        do_shrink = f is not None and f.sig not in shrunk_sigs
        rep = report(seed, ops, cfg, res, do_shrink, say)
        if f is not None:
            shrunk_sigs.add(f.sig)
            failures.append((seed, f, rep))
            seeds.append((seed, f"FAILED at #{f.index} {f.sig}"))
        elif res.leaks:
            failures.append((seed, None, rep))
            seeds.append((seed, f"leak: {res.leaks}"))
        else:
            cut = " (stopped: time is up)" if res.executed + res.skipped < len(ops) else ""
            seeds.append((seed, f"{res.executed} ops ok in {res.seconds:.0f}s{cut}"))
            say(f"   seed {seed}: {res.executed} ops ok in {res.seconds:.0f}s{cut}")
    took = time.monotonic() - start
    say("")
    say(f"== soak summary: {took:.0f}s, {len(seeds)} seeds, {executed} ops, {len(failures)} failing seeds")
    say(f"   stasis: {os.environ.get('STASIS_BIN', '/usr/local/bin/stasis')}, ops per seed: {cfg.ops}, "
        f"users: {','.join(cfg.as_choices)}" + (f", weights: {os.environ.get('MODEL_WEIGHTS')}" if os.environ.get("MODEL_WEIGHTS") else ""))
    say("   ops per kind: " + _kinds(totals))
    say("   seeds:")
    for seed, what in seeds:
        say(f"     {seed}: {what}")
    if failures:
        say("   failures:")
        for seed, f, rep in failures:
            if f is None:
                say(f"     seed {seed}: leaks {rep.result.leaks}")
                continue
            if rep.shrunk and rep.reproduced:
                tail = f"; shrunk to {len(rep.shrunk)} ops: {rep.shrunk_file}"
            elif rep.shrunk:
                tail = "; NOT reproduced by two replays of its prefix (timing-dependent)"
            else:
                tail = " (same signature as an earlier failure: not shrunk again)"
            say(f"     seed {seed} op #{f.index} {f.sig}: {f.message[:200]}{tail}")
    sys.stdout.flush()
    return len(failures)
