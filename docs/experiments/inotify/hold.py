# Inside a sandbox: N inotify instances, then (after /tmp/TAG.go appears) W watches in each
# on /tmp/w/f0..W-1; reports to /tmp/TAG after each phase and holds them (docs/security.md,
# "Inotify counts"). Driven by charge.sh.
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
n, w, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.makedirs("/tmp/w", exist_ok=True)
for i in range(w):
    open(f"/tmp/w/f{i}", "a").close()
fds = []
def say(msg):
    open(f"/tmp/{tag}.tmp", "w").write(msg); os.rename(f"/tmp/{tag}.tmp", f"/tmp/{tag}")
input_wait = lambda name: [time.sleep(0.05) for _ in iter(lambda: not os.path.exists(name), False)]
for i in range(n):
    fd = libc.inotify_init1(0)
    if fd < 0:
        say(f"instances {len(fds)} errno {ctypes.get_errno()}"); break
    fds.append(fd)
else:
    say(f"instances {len(fds)}")
input_wait(f"/tmp/{tag}.go")
marks = 0; err = 0
for fd in fds:
    for i in range(w):
        if libc.inotify_add_watch(fd, f"/tmp/w/f{i}".encode(), 0x100 | 0x2) < 0:
            err = ctypes.get_errno(); break
        marks += 1
    if err: break
say(f"instances {len(fds)} watches {marks} errno {err}")
time.sleep(3600)
