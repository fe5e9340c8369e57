#!/bin/bash
# What a sandbox's inotify instances and watches cost its memory cgroup (docs/security.md,
# "Inotify counts"): a real sandbox (`stasis runtime`), N instances then W watches in each,
# the cgroup's usage and kernel memory before and after. Needs fs.inotify.max_user_* raised.
#   N=10000 W=10 flock /tmp/stasis-e2e.lock ./charge.sh
set -u
B=${STASIS_BIN:-/usr/local/bin/stasis}
export STASIS_DATA_DIR=/var/lib/stasis-test/inotify-exp-$$ STASIS_AGENT=${STASIS_AGENT:-/usr/local/lib/stasis/stasis-agent}
mkdir -p $STASIS_DATA_DIR/templates; ln -s /var/lib/stasis/templates/base $STASIS_DATA_DIR/templates/base
id=inoexp$$
N=${N:-10000} W=${W:-10}
$B runtime create --memory-mb ${MEM:-512} $id >/dev/null || exit 1
cp "$(dirname "$0")/hold.py" $STASIS_DATA_DIR/sandboxes/$id/rootfs/tmp/hold.py
M=/sys/fs/cgroup/memory/stasis/$id
show() { echo "$1: usage $(cat $M/memory.usage_in_bytes) kmem $(cat $M/memory.kmem.usage_in_bytes) failcnt $(cat $M/memory.failcnt) limit $(cat $M/memory.limit_in_bytes)"; }
echo "in sandbox: user/max_inotify_instances=$($B runtime exec $id 'cat /proc/sys/user/max_inotify_instances') watches=$($B runtime exec $id 'cat /proc/sys/user/max_inotify_watches') nofile=$($B runtime exec $id 'ulimit -n') uid_map=$($B runtime exec $id 'cat /proc/self/uid_map')"
show before
$B runtime exec $id "nohup python3 /tmp/hold.py $N $W p1 >/tmp/p1.log 2>&1 &" >/dev/null
for i in $(seq 600); do r=$($B runtime exec $id 'cat /tmp/p1 2>/dev/null'); [ -n "$r" ] && break; sleep 0.2; done
echo "p1: $r"; show "after $N instances"
$B runtime exec $id "touch /tmp/p1.go" >/dev/null
for i in $(seq 600); do r=$($B runtime exec $id 'cat /tmp/p1 2>/dev/null'); case "$r" in *watches*) break;; esac; sleep 0.2; done
echo "p1: $r"; show "after watches"
echo "host root can still: $(python3 -c 'import ctypes; print(ctypes.CDLL(None).inotify_init())')"
$B runtime exec $id "pkill -f 'hold[.]py'" >/dev/null; sleep 5
show "after exit"
[ -n "${KEEP:-}" ] || { $B runtime kill $id >/dev/null; rm -rf $STASIS_DATA_DIR; }
