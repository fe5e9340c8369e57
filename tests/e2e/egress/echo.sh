#!/usr/bin/env bash
# An HTTPS echo server in a network namespace of its own, for the SDK tests of the egress
# proxy (js/egress.test.mjs, py/test_egress.py): its certificate (for api.egress.test and
# plain.egress.test) is signed by a test CA made here, which `stasis serve` is given with
# --egress-extra-root. The echo answers with a SHA-256 of the X-Api-Key header it got,
# never the header, so a sandbox never holds a secret's value.
#
#   echo.sh start DIR   # prints: ADDR CIDR NAMESPACE (the CA is DIR/ca.pem)
#   echo.sh stop DIR
# Loopback-only in spirit: the namespace and its veth are made here, on this host.
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

stop() {
  [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
  if [ -f "$dir/net" ]; then
    read -r ns hi <"$dir/net"
    ip link del "$hi" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case "$cmd" in
stop) stop; exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac

mkdir -p "$dir"
# A /30 of 10.97.R.0 not in use on this host.
for r in $(seq 20 250); do
  ip -4 addr show | grep -q "10\.97\.$r\." || break
done
ns="stasise2eegr$r" hi="se2eg$r"
echo "$ns $hi" >"$dir/net"
(
  cd "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj '/CN=Stasis e2e egress test CA'
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr \
    -subj '/CN=api.egress.test'
  printf 'subjectAltName=DNS:api.egress.test,DNS:plain.egress.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext
  openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext
) >/dev/null 2>&1
ip netns add "$ns"
ip link add "$hi" type veth peer name eth0 netns "$ns"
ip addr add "10.97.$r.1/30" dev "$hi"
ip link set "$hi" up
ip -n "$ns" addr add "10.97.$r.2/30" dev eth0
ip -n "$ns" link set eth0 up
ip -n "$ns" link set lo up
ip -n "$ns" route add default via "10.97.$r.1"
ip netns exec "$ns" /usr/bin/python3 "$HERE/echo.py" "10.97.$r.2" "$dir" >/dev/null 2>&1 &
echo $! >"$dir/pid"
for _ in $(seq 1 100); do
  if python3 -c "import socket,sys; socket.create_connection(('10.97.$r.2', 443), timeout=0.2)" 2>/dev/null; then
    echo "10.97.$r.2 10.97.$r.0/30 $ns"
    exit 0
  fi
  sleep 0.1
done
echo "echo.sh: the echo server did not listen" >&2
stop
exit 1
