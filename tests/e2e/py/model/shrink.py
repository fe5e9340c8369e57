"""Shrinking a failing sequence to a short one that fails the same way.

Every candidate runs on a fresh server with fresh sandboxes. A candidate "fails the same
way" when its failure has the same signature (`<op kind>:<exception type>` or
`<op kind>:mismatch:<check>`); it is then cut after its failing op. Steps, each kept
only if it still fails the same way:
  1. reproduce the failing prefix (ops up to and including the failing one);
  2. keep only the ops of the failing sandbox and the sandboxes it came from (snapshot /
     fork sources), plus daemon restarts;
  3. drop every op that changes nothing (reads, lists, exists, echo, queries, ...);
  4. delta debugging (ddmin, complements) over the rest, the failing op kept last.
Ops that stop making sense once others are gone (a write to a sandbox whose create was
dropped) are skipped by the runner, so every candidate is runnable.
"""
import time

from .ops import describe

PURE = {"read", "exists", "list", "run_echo", "run_cat", "secret_query", "sdk_list", "pause_again", "watch_stop", "set_timeout",
        "egress_check"}


class OutOfBudget(Exception):
    pass


def op_slots(op):
    out = set()
    if "s" in op:
        out.add(op["s"])
    out.update(op.get("new", []))
    return out


def lineage(ops, slot):
    """`slot` and the sandboxes it was made from (snapshot sources, fork sources)."""
    snap_src = {op["snap"]: op["s"] for op in ops if op["op"] == "snapshot"}
    made_from = {}
    for op in ops:
        if op["op"] == "from_snapshot" and op["snap"] in snap_src:
            made_from[op["s"]] = snap_src[op["snap"]]
        if op["op"] == "fork":
            for n in op["new"]:
                made_from[n] = op["s"]
    out = set()
    todo = [slot]
    while todo:
        s = todo.pop()
        if s in out:
            continue
        out.add(s)
        if s in made_from:
            todo.append(made_from[s])
    return out


def shrink(ops, failure, run_candidate, budget_s, say=print):
    """Returns (shortest failing ops, reproduced?, runs)."""
    sig = failure.sig
    deadline = time.monotonic() + budget_s
    runs = [0]

    def fails(cand):
        if time.monotonic() > deadline:
            raise OutOfBudget()
        runs[0] += 1
        t = time.monotonic()
        res = run_candidate(cand)
        f = res.failure
        same = f is not None and f.sig == sig
        say(f"  shrink run {runs[0]}: {len(cand)} ops -> "
            + ("fails the same way" if same else (f"fails differently ({f.sig})" if f else "passes"))
            + f" [{time.monotonic() - t:.1f}s]")
        return cand[: f.index + 1] if same else None

    best = list(ops[: failure.index + 1])
    try:
        got = fails(best) or fails(best)
        if got is None:
            say("  the failing prefix did not fail again (twice): not reproducible, not shrunk")
            return best, False, runs[0]
        best = got

        # 2. Only the failing sandbox's lineage (+ restarts).
        last = best[-1]
        keep = set()
        for s in op_slots(last) or set():
            keep |= lineage(best, s)
        if keep:
            snaps = {op["snap"] for op in best if op["op"] == "snapshot" and op["s"] in keep}
            cand = [op for op in best[:-1]
                    if op["op"] == "restart"
                    or (op_slots(op) and op_slots(op) <= keep)
                    or (op["op"] == "delete_snapshot" and op["snap"] in snaps)] + [last]
            if len(cand) < len(best):
                best = fails(cand) or best

        # 3. Without the ops that change nothing.
        cand = [op for op in best[:-1] if op["op"] not in PURE] + [best[-1]]
        if len(cand) < len(best):
            best = fails(cand) or best

        # 4. ddmin over everything but the failing op.
        n = 2
        while len(best) > 1:
            body, last = best[:-1], best[-1]
            n = min(n, len(body))
            size = -(-len(body) // n)
            chunks = [body[i:i + size] for i in range(0, len(body), size)]
            reduced = False
            for i in range(len(chunks)):
                cand = [op for j, c in enumerate(chunks) if j != i for op in c] + [last]
                got = fails(cand)
                if got is not None:
                    best = got
                    n = max(n - 1, 2)
                    reduced = True
                    break
            if not reduced:
                if n >= len(body):
                    break
                n = min(2 * n, len(body))
    except OutOfBudget:
        say(f"  shrink budget of {budget_s:.0f}s used up: the sequence below is the shortest found so far")
    return best, True, runs[0]


def render(ops):
    return "\n".join(f"  {i:>3}. {describe(op)}" for i, op in enumerate(ops))
