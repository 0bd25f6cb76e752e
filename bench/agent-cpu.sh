#!/bin/bash
# The agent's CPU beside a bare idle node (this machine's floor), by two clocks:
# - its own cpuacct cgroup (cgroup v1) when this machine has one we may write: exact (ns), and counts
#   every thread and child, also those that ended during the window (as kubelet and cAdvisor count a
#   container's CPU);
# - /proc/PID/task/*/schedstat (ns): exact per thread, but only for threads still alive at each read.
# utime/stime are not used: this VM samples them at the tick.
# Usage: bash bench/agent-cpu.sh [SECONDS] [extra agent flags...]   (run from a built checkout: npm run build)
# SECONDS defaults to 180: the immutable sweep runs about every 90 s, so a minute usually sees one.
# Hold the tests' lock if tests may run: flock /tmp/nw-runtime.lock bash bench/agent-cpu.sh 180
set -u
SECS=${1:-180}; shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=$((20000 + RANDOM % 20000))
CG=/sys/fs/cgroup/cpuacct
clock() { local t=0 ns; for f in /proc/$1/task/*/schedstat; do read -r ns _ < "$f" 2>/dev/null && t=$((t + ns)); done; echo "$t"; }
# A cgroup of our own for one measured process, or nothing when cpuacct cannot be written here.
group() {
  local g="$CG/nodewarden-bench-$$-$1"
  [ -w "$CG" ] && mkdir -p "$g" 2>/dev/null && echo "$g"
}
measure() { # NAME PID CGROUP
  sleep 5
  local a b ga=0 gb=0
  a=$(clock "$2"); [ -n "$3" ] && ga=$(cat "$3/cpuacct.usage")
  sleep "$SECS"
  b=$(clock "$2"); [ -n "$3" ] && gb=$(cat "$3/cpuacct.usage")
  kill "$2"; wait "$2" 2>/dev/null
  local line="$1: schedstat $(( (b - a) / 1000000 )) ms of CPU in $SECS s = $(( (b - a) / 1000 / SECS / 1000 )) millicores"
  if [ -n "$3" ]; then
    line="$line; cgroup $(( (gb - ga) / 1000000 )) ms = $(( (gb - ga) / 1000 / SECS / 1000 )) millicores"
    rmdir "$3" 2>/dev/null
  fi
  echo "$line"
}
# Starts "$@" inside cgroup $1 (if any) from its first instruction, so its children are counted too.
launch() { local g=$1; shift; exec sh -c 'if [ -n "$0" ]; then echo $$ > "$0/cgroup.procs"; fi; exec "$@"' "$g" "$@"; }
g=$(group bare); launch "$g" node -e 'setInterval(() => {}, 1000)' & measure "bare idle node (this machine's floor)" $! "$g"
g=$(group agent); launch "$g" node "$ROOT/dist/cli/main.js" agent --listen "127.0.0.1:$PORT" --set logLevel=warn "$@" >/dev/null 2>&1 & measure "nodewarden agent $*" $! "$g"
