#!/bin/bash
# The agent's CPU by the scheduler's own clock (/proc/PID/schedstat, ns, all threads), which is exact
# where utime/stime are sampled at the tick; beside a bare idle node as the floor of this machine.
# Usage: bash bench/agent-cpu.sh [SECONDS] [extra agent flags...]   (run from a built checkout: npm run build)
# Hold the tests' lock if tests may run: flock /tmp/nw-runtime.lock bash bench/agent-cpu.sh 60
set -u
SECS=${1:-60}; shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=$((20000 + RANDOM % 20000))
clock() { local t=0 ns; for f in /proc/$1/task/*/schedstat; do read -r ns _ < "$f" 2>/dev/null && t=$((t + ns)); done; echo "$t"; }
measure() { # NAME PID
  sleep 5
  local a b; a=$(clock "$2"); sleep "$SECS"; b=$(clock "$2")
  kill "$2"; wait "$2" 2>/dev/null
  echo "$1: $(( (b - a) / 1000000 )) ms of CPU in $SECS s = $(( (b - a) / 1000 / SECS / 1000 )) millicores"
}
node -e 'setInterval(() => {}, 1000)' & measure "bare idle node (this machine's floor)" $!
node "$ROOT/dist/cli/main.js" agent --listen "127.0.0.1:$PORT" --set logLevel=warn "$@" >/dev/null 2>&1 & measure "nodewarden agent $*" $!
