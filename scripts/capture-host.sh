#!/usr/bin/env bash
# Captures the host files nodewarden reads into DEST, as a tree that `nodewarden check --host-root DEST`
# and the parser tests can read: sockstat, TCP sysctls, mountinfo, and for the given pids (default: the
# 20 biggest socket holders) comm, cmdline, cgroup, limits and fd symlinks (recreated, not followed).
# Usage: scripts/capture-host.sh DEST [PID...]
set -euo pipefail
dest=${1:?usage: capture-host.sh DEST [PID...]}
shift
mkdir -p "$dest/proc/net" "$dest/proc/sys/net/ipv4" "$dest/proc/sys/kernel" "$dest/proc/1" "$dest/proc/self" "$dest/etc"
copy() { [ -r "$1" ] && cat "$1" > "$dest$1" 2>/dev/null || true; }
for f in /proc/net/sockstat /proc/net/sockstat6 /proc/sys/net/ipv4/tcp_max_orphans /proc/sys/net/ipv4/tcp_max_tw_buckets \
         /proc/sys/net/ipv4/tcp_mem /proc/sys/kernel/hostname /proc/sys/kernel/osrelease /proc/1/mountinfo /etc/os-release; do
  copy "$f"
done
cat /proc/self/auxv > "$dest/proc/self/auxv"
if [ $# -eq 0 ]; then
  mapfile -t pids < <(for p in /proc/[0-9]*; do n=$(find "$p/fd" -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l); [ "$n" -gt 0 ] && echo "$n ${p#/proc/}"; done | sort -rn | head -20 | awk '{print $2}')
  set -- "${pids[@]}"
fi
for pid in "$@"; do
  [ -d "/proc/$pid" ] || continue
  mkdir -p "$dest/proc/$pid/fd"
  for f in comm cmdline cgroup limits; do cat "/proc/$pid/$f" > "$dest/proc/$pid/$f" 2>/dev/null || true; done
  for fd in /proc/$pid/fd/*; do
    target=$(readlink "$fd" 2>/dev/null) || continue
    ln -sfn "$target" "$dest/proc/$pid/fd/${fd##*/}"
  done
done
echo "captured $(find "$dest" -type f -o -type l | wc -l) files into $dest"
