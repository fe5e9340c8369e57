# Inside a sandbox: inotify instances until the kernel refuses one; reports "count errno" to
# /tmp/TAG and holds them. Driven by limit.sh.
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
tag = sys.argv[1]; n = 0; err = 0; last = -1
while True:
    fd = libc.inotify_init1(0)
    if fd < 0:
        err = ctypes.get_errno(); break
    n += 1; last = fd
os.close(last)  # room for the report
open(f"/tmp/{tag}.tmp", "w").write(f"{n} {err}"); os.rename(f"/tmp/{tag}.tmp", f"/tmp/{tag}")
time.sleep(3600)
