#!/usr/bin/env bash
# Captures the host files nodewarden reads into DEST, as a tree that `nodewarden check --host-root DEST`
# and the parser tests can read: sockstat, TCP sysctls, mountinfo, and for the given pids (default: the
# 20 biggest socket holders) comm, cmdline, cgroup, limits and fd symlinks (recreated, not followed).
# Where kubelet runs, also its root dir's layout (directories, etc-hosts; never volume contents) and the
# kubepods cgroup tree's directories (cgroup v1 memory or v2), which is how the agent finds pods.
# Usage: scripts/capture-host.sh DEST [PID...]   (KUBELET_ROOT overrides /var/lib/kubelet)
set -euo pipefail
dest=${1:?usage: capture-host.sh DEST [PID...]}
shift
mkdir -p "$dest/proc/net" "$dest/proc/sys/net/ipv4" "$dest/proc/sys/kernel" "$dest/proc/1" "$dest/proc/self" "$dest/etc"
dest=$(cd "$dest" && pwd)  # absolute: the kubelet and cgroup copies below run from /
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
kubelet=${KUBELET_ROOT:-/var/lib/kubelet}
if [ -d "$kubelet" ]; then
  (cd / && find "${kubelet#/}" -maxdepth 6 -type d -print0 | while IFS= read -r -d '' d; do mkdir -p "$dest/$d"; done)
  for h in "$kubelet"/pods/*/etc-hosts; do [ -f "$h" ] && cat "$h" > "$dest$h"; done
fi
for cg in /sys/fs/cgroup/kubepods /sys/fs/cgroup/kubepods.slice /sys/fs/cgroup/memory/kubepods /sys/fs/cgroup/memory/kubepods.slice; do
  [ -d "$cg" ] || continue
  (cd / && find "${cg#/}" -maxdepth 3 -type d -print0 | while IFS= read -r -d '' d; do mkdir -p "$dest/$d"; done)
done
find "$dest" -type d -empty -exec touch {}/.keep \;  # git keeps no empty directory
echo "captured $(find "$dest" -type f -o -type l | wc -l) files into $dest"
