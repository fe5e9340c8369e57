#!/usr/bin/python3
"""Shift the ownership of every file under a root filesystem by a fixed offset.

Sandboxes run in a user namespace that maps in-sandbox uid/gid 0..65535 to
host 100000..165535, so a template rootfs must be owned by host ids shifted
by 100000 for root-owned files to look root-owned inside the sandbox.

    shift-owner.py ROOTFS [--shift 100000] [--marker FILE] [--dry-run]

What it does, for every entry under ROOTFS (ROOTFS included), without ever
following a symlink or crossing into another file system:
  * uid -> uid + SHIFT and gid -> gid + SHIFT with lchown;
  * chown(2) clears setuid/setgid, and file capabilities, so for every
    non-symlink the original mode bits (incl. setuid/setgid/sticky) are put
    back with chmod, and a security.capability xattr is restored.

Safety / idempotence:
  * a marker (default: ROOTFS + ".uid-shift", a sibling of the rootfs, so the
    sandbox never sees it) is written when the shift completed; if it exists
    the script refuses to run (exit 3);
  * ids already >= SHIFT are left alone, so an interrupted run can simply be
    run again and hard-linked files (seen several times) are shifted once;
  * ids in SHIFT-65536 .. SHIFT-1 cannot be shifted into the sandbox range:
    the script fails (exit 4) rather than produce an unmappable owner.

Standard library only.
"""

import argparse
import json
import os
import stat
import sys
import time

ID_RANGE = 65536
CAP_XATTR = "security.capability"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rootfs")
    p.add_argument("--shift", type=int, default=100000)
    p.add_argument("--marker", help="marker file (default: ROOTFS.uid-shift)")
    p.add_argument("--dry-run", action="store_true")
    return p.parse_args(argv)


def new_id(old, shift, path, kind):
    if old >= shift:
        return old  # already shifted (re-run or hard link)
    if old >= ID_RANGE:
        raise SystemExit(
            f"shift-owner: {path}: {kind} {old} is outside 0..{ID_RANGE - 1}; "
            "it cannot be mapped into the sandbox"
        )
    return old + shift


def shift_entry(path, st, shift, dry_run, stats):
    uid = new_id(st.st_uid, shift, path, "uid")
    gid = new_id(st.st_gid, shift, path, "gid")
    if uid == st.st_uid and gid == st.st_gid:
        stats["skipped"] += 1
        return
    stats["shifted"] += 1
    if dry_run:
        return
    is_link = stat.S_ISLNK(st.st_mode)
    caps = None
    if stat.S_ISREG(st.st_mode):
        try:
            caps = os.getxattr(path, CAP_XATTR, follow_symlinks=False)
        except OSError:
            caps = None
    os.chown(path, uid, gid, follow_symlinks=False)
    if not is_link:
        mode = stat.S_IMODE(st.st_mode)
        os.chmod(path, mode)  # chown dropped setuid/setgid: put them back
        if mode & (stat.S_ISUID | stat.S_ISGID):
            stats["setid"] += 1
    if caps is not None:
        os.setxattr(path, CAP_XATTR, caps, follow_symlinks=False)
        stats["caps"] += 1


def main(argv):
    args = parse_args(argv)
    root = os.path.abspath(args.rootfs)
    marker = args.marker or root.rstrip("/") + ".uid-shift"
    if args.shift < ID_RANGE:
        raise SystemExit(f"shift-owner: --shift must be >= {ID_RANGE}")

    if os.path.lexists(marker):
        print(f"shift-owner: {marker} exists: {root} is already shifted; refusing",
              file=sys.stderr)
        return 3
    root_st = os.lstat(root)
    if not stat.S_ISDIR(root_st.st_mode):
        raise SystemExit(f"shift-owner: {root} is not a directory")

    stats = {"shifted": 0, "skipped": 0, "setid": 0, "caps": 0, "other_fs": 0}
    t0 = time.monotonic()
    try:
        shift_entry(root, root_st, args.shift, args.dry_run, stats)
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            keep = []
            for name in dirnames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                if st.st_dev != root_st.st_dev:
                    # a mount point (e.g. a leftover /proc): do not descend
                    print(f"shift-owner: skipping mount point {p}", file=sys.stderr)
                    stats["other_fs"] += 1
                    continue
                shift_entry(p, st, args.shift, args.dry_run, stats)
                if not stat.S_ISLNK(st.st_mode):
                    keep.append(name)
            dirnames[:] = keep
            for name in filenames:
                p = os.path.join(dirpath, name)
                shift_entry(p, os.lstat(p), args.shift, args.dry_run, stats)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 4

    if stats["other_fs"]:
        print("shift-owner: mount points found under the rootfs; not marking it done",
              file=sys.stderr)
        return 5
    if not args.dry_run:
        tmp = marker + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"uidShift": args.shift, "gidShift": args.shift,
                       "shiftedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       **stats}, f)
            f.write("\n")
        os.replace(tmp, marker)
    print("shift-owner: {} entries shifted by {} ({} already shifted, {} setuid/setgid "
          "modes restored, {} file caps restored) in {:.1f}s".format(
              stats["shifted"], args.shift, stats["skipped"], stats["setid"],
              stats["caps"], time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
