#!/bin/bash
# Whether the memory cgroup bounds a sandbox's inotify (docs/security.md, "Inotify counts"): a
# 64 MiB sandbox, five processes each taking instances until refused. Needs fs.inotify.max_user_*
# raised. The memcg OOM kills show in dmesg (oom_memcg=/stasis/ID).
#   flock /tmp/stasis-e2e.lock ./limit.sh
set -u
B=${STASIS_BIN:-/usr/local/bin/stasis}
export STASIS_DATA_DIR=/var/lib/stasis-test/inotify-lim-$$ STASIS_AGENT=${STASIS_AGENT:-/usr/local/lib/stasis/stasis-agent}
mkdir -p $STASIS_DATA_DIR/templates; ln -s /var/lib/stasis/templates/base $STASIS_DATA_DIR/templates/base
id=inolim$$
$B runtime create --memory-mb 64 $id >/dev/null || exit 1
cp "$(dirname "$0")/grab.py" $STASIS_DATA_DIR/sandboxes/$id/rootfs/tmp/grab.py; $B runtime exec $id "ls -la /tmp/grab.py"
M=/sys/fs/cgroup/memory/stasis/$id
echo "before: usage $(cat $M/memory.usage_in_bytes) kmem $(cat $M/memory.kmem.usage_in_bytes)"
for i in 1 2 3 4 5; do $B runtime exec $id "nohup python3 /tmp/grab.py g$i >/tmp/g$i.log 2>&1 &" >/dev/null; done
sleep 20
echo "reports: $($B runtime exec $id 'tail -3 /tmp/g1.log; for f in /tmp/g?; do echo -n "$f: $(cat $f); "; done; ps -e -o comm= | grep -c python')"
echo "after: usage $(cat $M/memory.usage_in_bytes) kmem $(cat $M/memory.kmem.usage_in_bytes) max $(cat $M/memory.max_usage_in_bytes) failcnt $(cat $M/memory.failcnt) limit $(cat $M/memory.limit_in_bytes)"
grep -E "oom_kill|under_oom" $M/memory.oom_control
echo "host root can still: $(python3 -c 'import ctypes; print(ctypes.CDLL(None).inotify_init())')"
$B runtime exec $id "echo agent-ok; python3 -c 'import ctypes; print(ctypes.CDLL(None).inotify_init())'" 2>&1 | tr '\n' ' '; echo
time $B runtime kill $id; rm -rf $STASIS_DATA_DIR
