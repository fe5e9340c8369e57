#!/usr/bin/env python3
"""Code interpreter benchmark (issue 15).

Starts its own `stasis serve` on 127.0.0.1 with the `base` and `code-interpreter-v1`
templates, then times what a user of PyPI `e2b-code-interpreter` sees:

  - the template's one-time warm (boot + kernels ready + capture), via the first create;
  - `Sandbox.create()` + the first `run_code("1+1")`, N times (the target: < 0.5 s);
  - the same from `base` with the plain e2b SDK + `commands.run("echo hi")`, for reference;
  - an idle interpreter sandbox's host memory (cgroup usage, PSS of its processes);
  - the template's size on disk and its warm snapshot's size.

    sudo tests/e2e/.venv/bin/python bench/interpreter.py [--runs 10]

The SDKs come from tests/e2e/.venv (made by tests/e2e/run.sh). Everything it starts is
removed at exit.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the harness: server start, host memory)

INTERPRETER_TEMPLATE = "/var/lib/stasis/templates/code-interpreter-v1"


def stats(xs):
    return f"{statistics.median(xs):.3f} | {min(xs):.3f} | {max(xs):.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stasis", default=os.path.join(bench.REPO, "target/release/stasis"))
    ap.add_argument("--agent", default=os.path.join(bench.REPO, "target/x86_64-unknown-linux-gnu/release/stasis-agent"))
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    try:
        from e2b import Sandbox as PlainSandbox
        from e2b_code_interpreter import Sandbox
    except ImportError:
        sys.exit("run with tests/e2e/.venv/bin/python (made by tests/e2e/run.sh): it has the SDKs")
    if not os.path.exists(os.path.join(INTERPRETER_TEMPLATE, "template.json")):
        sys.exit(f"{INTERPRETER_TEMPLATE} missing: run scripts/setup.sh")

    os.makedirs("/var/lib/stasis-bench", exist_ok=True)
    work = tempfile.mkdtemp(prefix="interp-", dir="/var/lib/stasis-bench")
    st = bench.Stasis(args.stasis, args.agent, work)
    os.makedirs(os.path.join(work, "templates"), exist_ok=True)
    os.symlink(INTERPRETER_TEMPLATE, os.path.join(work, "templates/code-interpreter-v1"))
    made = []
    try:
        st.start()
        url = f"http://127.0.0.1:{st.port}"
        os.environ.update(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=bench.API_KEY)
        load = os.getloadavg()[0]

        t0 = time.perf_counter()
        first = Sandbox.create(timeout=600, request_timeout=600)
        made.append(first.sandbox_id)
        assert first.run_code("1+1").text == "2"
        warm = time.perf_counter() - t0
        bench.log(f"first create (warm included): {warm:.2f}s")
        Sandbox.kill(first.sandbox_id)

        ci, ci_create = [], []
        for i in range(args.runs):
            t0 = time.perf_counter()
            sbx = Sandbox.create(timeout=600)
            t1 = time.perf_counter()
            made.append(sbx.sandbox_id)
            assert sbx.run_code("1+1").text == "2"
            ci.append(time.perf_counter() - t0)
            ci_create.append(t1 - t0)
            bench.log(f"interpreter create + runCode #{i}: {ci[-1]:.3f}s (create {t1 - t0:.3f}s)")
            if i == args.runs - 1:
                time.sleep(2.0)
                idle = bench.host_mem(*st.cg(sbx.sandbox_id))
            Sandbox.kill(sbx.sandbox_id)

        base = []
        for i in range(args.runs):
            t0 = time.perf_counter()
            sbx = PlainSandbox.create(timeout=600)
            made.append(sbx.sandbox_id)
            assert sbx.commands.run("echo hi").stdout == "hi\n"
            base.append(time.perf_counter() - t0)
            PlainSandbox.kill(sbx.sandbox_id)

        tpl = os.path.realpath(INTERPRETER_TEMPLATE)
        snaps = [d for d in os.listdir(os.path.join(work, "snapshots")) if d.startswith("tpl")]
        print(f"Load average at start: {load:.2f}; {args.runs} runs each; PyPI e2b-code-interpreter / e2b SDK clients.\n")
        print("| what | unit | median | min | max | target |")
        print("|---|---|---|---|---|---|")
        print(f"| code-interpreter-v1: `Sandbox.create()` + first `run_code('1+1')` | s | {stats(ci)} | <= 0.5 |")
        print(f"|   of which: `Sandbox.create()` answered | s | {stats(ci_create)} | |")
        print(f"| base: `Sandbox.create()` + `commands.run('echo hi')` (same SDK family) | s | {stats(base)} | |")
        print(f"| first create of the template after a start (warm: boot, kernels ready, capture) | s | {warm:.2f} | | | once |")
        print(f"| idle interpreter sandbox: host memory (cgroup usage) | MiB | {idle.get('cg_usage', 0):.1f} | | | |")
        print(f"| idle interpreter sandbox: PSS of its {idle['procs']} processes | MiB | {idle['pss']:.1f} | | | |")
        print(f"| template on disk ({os.path.basename(tpl)}) | MiB | {bench.dir_mib(tpl):.0f} | | | |")
        for s in snaps:
            print(f"| warm snapshot on disk (memory images + layer) | MiB | {bench.dir_mib(os.path.join(work, 'snapshots', s)):.0f} | | | |")
    finally:
        for sid in made:
            try:
                Sandbox.kill(sid)
            except Exception:  # noqa: BLE001
                pass
        st.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
