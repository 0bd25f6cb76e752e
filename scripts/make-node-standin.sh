#!/usr/bin/env bash
# Makes a local stand-in for the node:20-slim base image, offline: a Debian bookworm rootfs from Debian's
# packages (debootstrap, plus python3, make and g++ for the native module) with this machine's own Node.js
# (the files of the installed nodejs package), imported into dockerd. For tests on machines that cannot
# pull from Docker Hub. Usage: scripts/make-node-standin.sh [TAG]   (default nodewarden-test/node:20-slim)
set -euo pipefail
tag=${1:-nodewarden-test/node:20-slim}
docker=${DOCKER:-/usr/bin/docker}
if "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "make-node-standin: $tag already exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "make-node-standin: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d /tmp/nw-standin.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "make-node-standin: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,make,g++,ca-certificates bookworm "$root" "$mirror" > "$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# This machine's Node.js: the files of the nodejs package (node, the headers node-gyp builds against), and
# npm's directory as it is on disk (npm may have upgraded itself since the package was installed).
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
dpkg -L nodejs | grep -v "^$npm_dir" | while read -r f; do if [ -f "$f" ] || [ -L "$f" ]; then printf '%s\n' "$f"; fi; done | tar -cf - -T - 2>/dev/null | tar -C "$root" -xf -
tar -C / -cf - "${npm_dir#/}" | tar -C "$root" -xf -
ln -sf "$npm_dir/bin/npm-cli.js" "$root/usr/bin/npm"
ln -sf "$npm_dir/bin/npx-cli.js" "$root/usr/bin/npx"
# This machine's trust store, so npm in a build reaches the registry the way this machine does (through
# whatever TLS proxy it trusts).
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$docker" import --change 'CMD ["node"]' - "$tag" >/dev/null
echo "make-node-standin: $tag ready (node $("$docker" run --rm --network none "$tag" node --version))"
