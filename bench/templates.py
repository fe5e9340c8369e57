#!/usr/bin/env python3
"""Custom template benchmark (issue 16).

Starts its own `stasis serve` on 127.0.0.1 with the `base` template, then with PyPI
`e2b` (tests/e2e/.venv) builds a template from base: COPY of a 20 MiB context,
a RUN writing 50 MiB, ENV, WORKDIR, and a start command (`python3 -m http.server`) with
`wait_for_port`; and measures:

  - build time: first build, rebuild with no change (cache), rebuild with the last
    RUN changed;
  - disk: the template's own layers, a second template on the same base (one more RUN),
    the warm snapshot, against the base rootfs it stands on (not copied);
  - create from the template (service up) + first proxied GET, and `echo` from base.

    sudo tests/e2e/.venv/bin/python bench/templates.py [--runs 10]

Everything it starts is removed at exit.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the harness: server start)


def stats(xs):
    return f"{statistics.median(xs):.3f} | {min(xs):.3f} | {max(xs):.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stasis", default=os.path.join(bench.REPO, "target/release/stasis"))
    ap.add_argument("--agent", default=os.path.join(bench.REPO, "target/x86_64-unknown-linux-gnu/release/stasis-agent"))
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    try:
        from e2b import Sandbox, Template, wait_for_port
    except ImportError:
        sys.exit("run with tests/e2e/.venv/bin/python (made by tests/e2e/run.sh): it has the SDK")

    os.makedirs("/var/lib/stasis-bench", exist_ok=True)
    work = tempfile.mkdtemp(prefix="tpl-", dir="/var/lib/stasis-bench")
    ctx = tempfile.mkdtemp(prefix="ctx-")
    os.makedirs(os.path.join(ctx, "site"))
    for i in range(20):
        with open(os.path.join(ctx, "site", f"blob{i}.bin"), "wb") as f:
            f.write(os.urandom(1 << 20))
    with open(os.path.join(ctx, "site", "index.html"), "w") as f:
        f.write("bench\n")
    st = bench.Stasis(args.stasis, args.agent, work)
    made = []

    def tpl(last="echo v1 > /opt/version"):
        return (
            Template(file_context_path=ctx)
            .from_template("base")
            .copy("site", "/srv/site/")
            .run_cmd("head -c 52428800 /dev/urandom > /opt/data.bin")
            .set_envs({"MODE": "bench"})
            .set_workdir("/srv/site")
            .run_cmd(last)
            .set_start_cmd("python3 -m http.server 8000", wait_for_port(8000))
        )

    def build(t, name):
        t0 = time.perf_counter()
        Template.build(t, name)
        return time.perf_counter() - t0

    try:
        st.start()
        url = f"http://127.0.0.1:{st.port}"
        os.environ.update(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=bench.API_KEY)
        load = os.getloadavg()[0]
        snaps = os.path.join(work, "snapshots")

        first = build(tpl(), "app")
        layers_app = {d for d in os.listdir(snaps) if d.startswith("lyr")}
        cached = build(tpl(), "app")
        changed = build(tpl("echo v2 > /opt/version"), "app")
        before = {d for d in os.listdir(snaps) if d.startswith("lyr")}

        own = sum(bench.dir_mib(os.path.join(snaps, d)) for d in layers_app)
        changed_cost = sum(bench.dir_mib(os.path.join(snaps, d)) for d in before - layers_app)
        warm = [d for d in os.listdir(snaps) if d.startswith("tpl")]
        warm_mib = sum(bench.dir_mib(os.path.join(snaps, d)) for d in warm)
        base_mib = bench.dir_mib(os.path.realpath(os.path.join(bench.BASE_TEMPLATE, "rootfs")))

        creates, gets = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            sbx = Sandbox.create("app", timeout=600)
            t1 = time.perf_counter()
            made.append(sbx.sandbox_id)
            req = urllib.request.Request(f"{url}/index.html", headers={"E2b-Sandbox-Id": sbx.sandbox_id, "E2b-Sandbox-Port": "8000"})
            assert urllib.request.urlopen(req, timeout=10).read() == b"bench\n"
            gets.append(time.perf_counter() - t0)
            creates.append(t1 - t0)
            Sandbox.kill(sbx.sandbox_id)
        base = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            sbx = Sandbox.create(timeout=600)
            made.append(sbx.sandbox_id)
            assert sbx.commands.run("echo hi").stdout == "hi\n"
            base.append(time.perf_counter() - t0)
            Sandbox.kill(sbx.sandbox_id)

        print(f"Load average at start: {load:.2f}; {args.runs} runs each; PyPI e2b {args.stasis}.\n")
        print("| what | unit | median | min | max |")
        print("|---|---|---|---|---|")
        print(f"| first build (COPY 20 MiB, RUN 50 MiB, ENV, WORKDIR, RUN, start + waitForPort: warm and capture) | s | {first:.2f} | | |")
        print(f"| rebuild, no change (every step from the cache; the published version and its warm snapshot kept) | s | {cached:.2f} | | |")
        print(f"| rebuild, last RUN changed (that step, then warm and capture) | s | {changed:.2f} | | |")
        print(f"| create from the template (service running) answered | s | {stats(creates)} |")
        print(f"| create from the template + first proxied GET to its service | s | {stats(gets)} |")
        print(f"| create from base + `echo` (reference) | s | {stats(base)} |")
        print(f"| template's own layers on disk ({len(layers_app)} layers) | MiB | {own:.1f} | | |")
        print(f"| a rebuild with the last RUN changed costs (its new layer) | KiB | {changed_cost * 1024:.0f} | | |")
        print(f"| base rootfs it stands on (shared, not copied) | MiB | {base_mib:.0f} | | |")
        print(f"| warm snapshots ({len(warm)}: memory images + layer) | MiB | {warm_mib:.1f} | | |")
    finally:
        for sid in made:
            try:
                Sandbox.kill(sid)
            except Exception:  # noqa: BLE001
                pass
        st.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ctx, ignore_errors=True)


if __name__ == "__main__":
    main()
