#!/usr/bin/env bash
# Installs what nodewarden's tests use on a Debian machine (root, idempotent): the container runtime
# (Debian's docker.io, containerd, runc), busybox-static for the offline test image, and the tools the
# live tests drive (mkfs.ext4, losetup, fallocate, chattr, unshare, dmesg, ip and iptables for the conntrack
# tests' network namespaces, python3, gcc for the bench floor), and
# promtool (Debian's prometheus) for the alerting rules' tests, and Debian's chromium for the web view's
# browser tests (driven by playwright-core, which never downloads a browser).
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have dockerd || need+=(docker.io)
have containerd || need+=(containerd)
have runc || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
have mkfs.ext4 || need+=(e2fsprogs)
have chattr || need+=(e2fsprogs)
have losetup || need+=(util-linux)
have fallocate || need+=(util-linux)
have dmesg || need+=(util-linux)
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have python3 || need+=(python3)
have gcc || need+=(gcc)
have ps || need+=(procps)
have openssl || need+=(openssl)
have debootstrap || need+=(debootstrap)
[ -x /usr/bin/time ] || need+=(time)
have promtool || need+=(prometheus)
have chromium || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  echo "install-test-runtime: everything is already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-runtime: needs root to install: ${need[*]}" >&2
  exit 1
fi
echo "install-test-runtime: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the packages from trying to start services through an init system that is not there.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "install-test-runtime: done"
