#!/usr/bin/env bash
# A Docker registry (Debian's docker-registry, distribution v2) on a free loopback port,
# for the template tests:
#
#   tests/oci/registry.sh start DIR [USER:PASSWORD]   # prints 127.0.0.1:PORT
#   tests/oci/registry.sh push DIR LAYOUT:TAG NAME:TAG [USER:PASSWORD]
#   tests/oci/registry.sh stop DIR
#
# DIR holds its config, storage, log and pid. With USER:PASSWORD it requires them
# (htpasswd, bcrypt). It listens on 127.0.0.1 only.
set -euo pipefail
cmd=${1:?usage: registry.sh start|push|stop DIR ...}
DIR=${2:?DIR}
case "$cmd" in
start)
    creds=${3:-}
    mkdir -p "$DIR/data"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
    {
        printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n'
        printf 'storage:\n  filesystem:\n    rootdirectory: %s\n' "$DIR/data"
        printf 'http:\n  addr: 127.0.0.1:%s\n  secret: %s\n' "$port" "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        if [ -n "$creds" ]; then
            htpasswd -Bbn "${creds%%:*}" "${creds#*:}" >"$DIR/htpasswd"
            printf 'auth:\n  htpasswd:\n    realm: stasis-test\n    path: %s\n' "$DIR/htpasswd"
        fi
    } >"$DIR/config.yml"
    setsid docker-registry serve "$DIR/config.yml" >"$DIR/log" 2>&1 </dev/null &
    echo $! >"$DIR/pid"
    for _ in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" 2>/dev/null) || code=000
        case "$code" in 200|401) echo "127.0.0.1:$port"; exit 0 ;; esac
        sleep 0.1
    done
    cat "$DIR/log" >&2
    echo "registry.sh: the registry did not answer on 127.0.0.1:$port" >&2
    exit 1
    ;;
push)
    src=${3:?LAYOUT:TAG} dest=${4:?HOST:PORT/NAME:TAG} creds=${5:-}
    skopeo copy --quiet --dest-tls-verify=false ${creds:+--dest-creds "$creds"} "oci:$src" "docker://$dest"
    ;;
stop)
    if [ -f "$DIR/pid" ]; then
        pid=$(cat "$DIR/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$DIR/pid"
    fi
    ;;
*) echo "registry.sh: unknown command $cmd" >&2; exit 2 ;;
esac
