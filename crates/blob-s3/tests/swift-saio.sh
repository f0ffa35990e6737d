#!/usr/bin/env bash
# A single-node OpenStack Swift ("Swift All In One") under one directory, for tests.
#
#   swift-saio.sh <dir>        sets it up, starts it, prints the proxy's port
#   swift-saio.sh <dir> stop   stops the servers started in <dir> (their PID files)
#
# SAIO_TOKEN_LIFE=<seconds> sets the life of TempAuth's tokens (a day by default).
# With SAIO_WATCH_PID=<pid>, the servers are stopped when that process ends (and <dir>
# removed too with SAIO_WATCH_CLEAN=1): how the tests start it.
#
# Everything lives in <dir>: configuration and rings in <dir>/etc, the device (a plain
# directory, `mount_check = false`) in <dir>/srv/d1, logs in <dir>/log, PID files in
# <dir>/run. Nothing is written to /etc or /srv and nothing is mounted; it runs as root
# or not. It needs Debian's packages `swift swift-proxy swift-account swift-container
# swift-object` (nothing else: TempAuth, and an in-process token cache instead of
# memcached). Four servers on free loopback ports: account, container, object (rings of
# one replica, one device) and a proxy with TempAuth, whose account is
# `test:tester` / `testing` (`GET http://127.0.0.1:<port>/auth/v1.0` with `X-Auth-User`
# and `X-Auth-Key` gives `X-Storage-Url` and `X-Auth-Token`).
set -euo pipefail

dir=${1:?usage: swift-saio.sh <dir> [stop]}
action=${2:-start}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
py=/usr/bin/python3

stop() {
    local pidfile pids=()
    for pidfile in "$dir"/run/*.pid; do
        [ -e "$pidfile" ] || continue
        pids+=("$(cat "$pidfile")")
        rm -f "$pidfile"
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    kill "${pids[@]}" 2>/dev/null || true
    local pid alive
    for _ in $(seq 30); do
        alive=()
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
        done
        [ ${#alive[@]} -gt 0 ] || return 0
        sleep 0.1
    done
    kill -9 "${alive[@]}" 2>/dev/null || true
}

if [ "$action" = stop ]; then
    stop
    exit 0
fi
[ "$action" = start ] || { echo "unknown action $action (start or stop)" >&2; exit 2; }

for b in swift-ring-builder swift-proxy-server swift-account-server swift-container-server swift-object-server; do
    command -v "$b" >/dev/null || {
        echo "$b is missing: apt-get install swift swift-proxy swift-account swift-container swift-object" >&2
        exit 3
    }
done

stop
etc=$dir/etc
mkdir -p "$etc" "$dir/srv/d1" "$dir/log" "$dir/run" "$dir/cache"
user=$(id -un)

# Four free ports (a port found free may be taken before its server binds it: the
# caller tries again then).
read -r p_account p_container p_object p_proxy < <("$py" -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')

cat >"$etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = hearth-test-suffix
swift_hash_path_prefix = hearth-test-prefix

[storage-policy:0]
name = Policy-0
default = yes
EOF

# The token cache TempAuth needs (Swift's `cache` filter talks to memcached): a dict
# in the proxy's one process.
cat >"$dir/cache/hearth_swift_cache.py" <<'EOF'
import time


class DictCache(object):
    def __init__(self):
        self.store = {}

    def get(self, key, *args, **kwargs):
        value, expires = self.store.get(key, (None, 0))
        if expires and expires < time.time():
            self.store.pop(key, None)
            return None
        return value

    def set(self, key, value, serialize=True, time=0, *args, **kwargs):
        import time as t
        expires = 0
        if time:
            expires = time if time > 30 * 24 * 3600 else t.time() + time
        self.store[key] = (value, expires)
        return True

    def incr(self, key, delta=1, time=0, *args, **kwargs):
        value = int(self.get(key) or 0) + delta
        self.set(key, value, time=time)
        return value

    def decr(self, key, delta=1, time=0, *args, **kwargs):
        return self.incr(key, -delta, time=time)

    def delete(self, key, *args, **kwargs):
        self.store.pop(key, None)

    def get_multi(self, keys, server_key, *args, **kwargs):
        return [self.get(k) for k in keys]

    def set_multi(self, mapping, server_key, serialize=True, time=0, *args, **kwargs):
        for k, v in mapping.items():
            self.set(k, v, time=time)


def filter_factory(global_conf, **local_conf):
    cache = DictCache()

    def make(app):
        def middleware(env, start_response):
            env['swift.cache'] = cache
            return app(env, start_response)
        return middleware
    return make
EOF

common() {
    cat <<EOF
[DEFAULT]
devices = $dir/srv
mount_check = false
disable_fallocate = true
bind_ip = 127.0.0.1
bind_port = $1
workers = 0
user = $user
swift_dir = $etc
log_name = $2
log_level = INFO
EOF
}

{ common "$p_account" account-server; cat <<EOF

[pipeline:main]
pipeline = account-server

[app:account-server]
use = egg:swift#account
EOF
} >"$etc/account-server.conf"

{ common "$p_container" container-server; cat <<EOF

[pipeline:main]
pipeline = container-server

[app:container-server]
use = egg:swift#container
EOF
} >"$etc/container-server.conf"

{ common "$p_object" object-server; cat <<EOF

[pipeline:main]
pipeline = object-server

[app:object-server]
use = egg:swift#object
EOF
} >"$etc/object-server.conf"

cat >"$etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $p_proxy
workers = 0
user = $user
swift_dir = $etc
log_name = proxy-server
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper proxy-logging cache listing_formats bulk tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
token_life = ${SAIO_TOKEN_LIFE:-86400}

[filter:cache]
paste.filter_factory = hearth_swift_cache:filter_factory

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
EOF

# Rings: 2^6 partitions, one replica, one device.
for ring in account:$p_account container:$p_container object:$p_object; do
    name=${ring%%:*}
    port=${ring##*:}
    rm -f "$etc/$name.builder" "$etc/$name.ring.gz"
    swift-ring-builder "$etc/$name.builder" create 6 1 1 >/dev/null
    swift-ring-builder "$etc/$name.builder" add "r1z1-127.0.0.1:$port/d1" 1 >/dev/null
    swift-ring-builder "$etc/$name.builder" rebalance >/dev/null
done

start() {
    local name=$1
    shift
    PYTHONPATH="$dir/cache${PYTHONPATH:+:$PYTHONPATH}" nohup "$@" -v \
        >"$dir/log/$name.log" 2>&1 </dev/null &
    echo $! >"$dir/run/$name.pid"
}
start account swift-account-server "$etc/account-server.conf"
start container swift-container-server "$etc/container-server.conf"
start object swift-object-server "$etc/object-server.conf"
start proxy swift-proxy-server "$etc/proxy-server.conf"

# Ready when the proxy hands out a token and the account answers (its servers up).
ready() {
    "$py" - "$p_proxy" <<'EOF'
import sys, urllib.request
port = sys.argv[1]
req = urllib.request.Request("http://127.0.0.1:%s/auth/v1.0" % port,
                             headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})
with urllib.request.urlopen(req, timeout=2) as r:
    url, token = r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]
req = urllib.request.Request(url, method="HEAD", headers={"X-Auth-Token": token})
with urllib.request.urlopen(req, timeout=2) as r:
    assert r.status in (200, 204), r.status
EOF
}
for _ in $(seq 300); do
    if ready 2>/dev/null; then
        if [ -n "${SAIO_WATCH_PID:-}" ]; then
            # Stopped (and with SAIO_WATCH_CLEAN=1 removed) once that process is gone.
            (
                while kill -0 "$SAIO_WATCH_PID" 2>/dev/null; do sleep 1; done
                stop
                if [ "${SAIO_WATCH_CLEAN:-}" = 1 ]; then rm -rf "$dir"; fi
            ) >/dev/null 2>&1 </dev/null &
        fi
        echo "$p_proxy"
        exit 0
    fi
    for name in account container object proxy; do
        if ! kill -0 "$(cat "$dir/run/$name.pid")" 2>/dev/null; then
            echo "the $name server stopped; its log ($dir/log/$name.log):" >&2
            tail -n 30 "$dir/log/$name.log" >&2
            stop
            exit 1
        fi
    done
    sleep 0.1
done
echo "Swift did not answer within 30 s; the proxy's log:" >&2
tail -n 30 "$dir/log/proxy.log" >&2
stop
exit 1
