#!/usr/bin/env bash
# Starts containerd and dockerd for the tests if they are not answering, and waits until both answer.
# dockerd gets no bridge and no iptables rules: nothing the tests run reaches beyond loopback.
# Logs and pids go to $NW_RUNTIME_DIR (default /var/run/nodewarden-test).
# With the argument "containerd" only containerd is started (a test restarts it while dockerd is frozen).
set -euo pipefail
only=${1:-}
# Tests run under `flock /tmp/nw-runtime.lock`: a daemon started from here must not inherit the lock's
# descriptor, or it would hold the shared lock for as long as it lives.
for fd in /proc/$$/fd/*; do
  n=${fd##*/}
  case "$(readlink "$fd" 2>/dev/null)" in *nw-runtime.lock) eval "exec $n>&-" ;; esac
done
dir=${NW_RUNTIME_DIR:-/var/run/nodewarden-test}
mkdir -p "$dir"
ctr_sock=/run/containerd/containerd.sock
docker_sock=/var/run/docker.sock

containerd_ok() { timeout 5 ctr --address "$ctr_sock" version >/dev/null 2>&1; }
docker_ok() { timeout 5 /usr/bin/docker -H "unix://$docker_sock" version >/dev/null 2>&1; }
wait_for() { # name check-function seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do "$2" && return 0; sleep 0.1; done
  echo "start-test-runtime: $1 did not answer within $3 s; its log:" >&2
  tail -n 30 "$dir/$1.log" >&2 || true
  return 1
}

if containerd_ok; then
  echo "start-test-runtime: containerd already answering"
else
  setsid containerd --address "$ctr_sock" >"$dir/containerd.log" 2>&1 < /dev/null &
  echo $! > "$dir/containerd.pid"
  wait_for containerd containerd_ok 30
  echo "start-test-runtime: containerd started (pid $(cat "$dir/containerd.pid"))"
fi

if [ "$only" = containerd ]; then
  exit 0
elif docker_ok; then
  echo "start-test-runtime: dockerd already answering"
else
  setsid dockerd --containerd="$ctr_sock" --host="unix://$docker_sock" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    --pidfile="$dir/dockerd.pidfile" >"$dir/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$dir/dockerd.pid"
  wait_for dockerd docker_ok 60
  echo "start-test-runtime: dockerd started (pid $(cat "$dir/dockerd.pid"))"
fi
