#!/usr/bin/env python3
"""Pause and resume with the object store next to local disk only (issue 17, item 2).

For each size, a sandbox touches that much memory (random bytes, so nothing compresses
or dedups), then is paused and resumed through `stasis runtime`, three ways:

  local     checkpoint on this host's disk only (the default)
  s3        --object-store: the pause returns once the images are uploaded; the resume
            finds the local copy (the common case on one node)
  s3-cold   as s3, but the local copy is deleted before the resume (a resume on another
            node): the images are fetched, verified, then restored

The S3 server is moto's (tests/objstore/s3_server.py) on 127.0.0.1, started here with its
own data dir: a Python server on the same (shared, busy) host, so the figures are a floor
for what a real store costs, not a ceiling. The load average is printed with the table.

    sudo python3 bench/objstore.py                      # 256 MiB and 1 GiB, 2 runs each
    sudo python3 bench/objstore.py --sizes 256 --runs 1

Needs: a built `stasis` ($STASIS_BIN, default target/release/stasis), the static agent
($STASIS_AGENT), the S3 server's venv (scripts/s3-test-server-env.sh; $STASIS_TEST_S3_PYTHON).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_TEMPLATE = "/var/lib/stasis/templates/base"
BUCKET = "stasis-bench"


def start_s3(root):
    py = os.environ.get("STASIS_TEST_S3_PYTHON", "/var/cache/stasis/s3-server/bin/python")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    log = open(os.path.join(root, "s3.log"), "w")
    proc = subprocess.Popen(
        [py, os.path.join(REPO, "tests/objstore/s3_server.py"), str(port), BUCKET, os.path.join(root, "s3")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    info = json.loads(proc.stdout.readline())
    return proc, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,1024", help="MiB of memory touched, comma-separated")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    stasis = os.environ.get("STASIS_BIN", os.path.join(REPO, "target/release/stasis"))
    root = f"/var/lib/stasis-test/bench-objstore-{os.getpid()}"
    os.makedirs(os.path.join(root, "data/templates"))
    os.symlink(os.path.join(BASE_TEMPLATE), os.path.join(root, "data/templates/base"))
    proc, s3 = start_s3(root)
    base_env = dict(os.environ, STASIS_DATA_DIR=os.path.join(root, "data"))
    s3_env = dict(base_env,
                  STASIS_OBJECT_STORE=f"s3://{BUCKET}/bench?endpoint={s3['endpoint']}&region=us-east-1",
                  AWS_ACCESS_KEY_ID=s3["accessKeyId"], AWS_SECRET_ACCESS_KEY=s3["secretAccessKey"])
    load_start = os.getloadavg()

    def rt(env, *a):
        out = subprocess.run([stasis, "runtime", *a], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"stasis runtime {a} failed: {out.stderr}")
        return out.stdout

    results = []  # (size, mode, pause_s, upload_s, resume_s)
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            for mode in ["local", "s3", "s3-cold"]:
                for run in range(args.runs):
                    env = base_env if mode == "local" else s3_env
                    sid = f"bos{size}{mode.replace('-', '')}{run}"
                    rt(env, "create", sid, "--memory-mb", str(size + 512), "--disk-mb", "1024")
                    n = size << 20
                    rt(env, "exec", sid, "nohup python3 -c 'import os,time\nb=bytearray(%d)\nfor i in range(0,%d,1<<20): b[i:i+(1<<20)]=os.urandom(1<<20)\nopen(\"/tmp/ready\",\"w\").close()\ntime.sleep(1e9)' >/dev/null 2>&1 &" % (n, n))
                    while rt(env, "exec", sid, "test -e /tmp/ready && echo yes || true").strip() != "yes":
                        time.sleep(0.2)
                    t0 = time.monotonic()
                    stats = json.loads(rt(env, "pause", sid))
                    pause_s = time.monotonic() - t0
                    if mode == "s3-cold":
                        ck = os.path.join(root, "data/sandboxes", sid, "checkpoints")
                        for g in os.listdir(ck):
                            shutil.rmtree(os.path.join(ck, g))
                    t0 = time.monotonic()
                    rt(env, "resume", sid)
                    resume_s = time.monotonic() - t0
                    rt(env, "kill", sid)
                    results.append((size, mode, pause_s, stats.get("uploadMs", 0) / 1000, resume_s))
                    print(f"  {size} MiB {mode:8} run {run}: pause {pause_s:.2f} s (upload {results[-1][3]:.2f} s), resume {resume_s:.2f} s", file=sys.stderr)
    finally:
        # A run that failed half-way leaves its sandbox: killed before its dir goes.
        sandboxes = os.path.join(root, "data/sandboxes")
        for sid in os.listdir(sandboxes) if os.path.isdir(sandboxes) else []:
            subprocess.run([stasis, "runtime", "kill", sid], env=base_env, capture_output=True)
        proc.kill()
        proc.wait()
        subprocess.run(["umount", "-R", root], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    load_end = os.getloadavg()
    print(f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, "
          f"at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f} ({os.cpu_count()} CPUs); median of {args.runs}")
    print(f"| memory | where | pause (s) | of which upload (s) | resume (s) |")
    print(f"|---|---|---|---|---|")
    for size in sorted({r[0] for r in results}):
        for mode in ["local", "s3", "s3-cold"]:
            rs = [r for r in results if r[0] == size and r[1] == mode]
            med = lambda i: statistics.median(r[i] for r in rs)
            label = f"{size} MiB" if size < 1024 else f"{size // 1024} GiB"
            print(f"| {label} | {mode} | {med(2):.2f} | {med(3):.2f} | {med(4):.2f} |")


if __name__ == "__main__":
    main()
