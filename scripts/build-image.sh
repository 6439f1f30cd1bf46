#!/usr/bin/env bash
# Build the test host image (Debian 12, systemd as PID 1, sshd, python3).
# Rebuilt only when images/testhost/ changes: the image carries a hash of its definition.
# Uses the Dockerfile when a registry answers, otherwise debootstrap + `docker import`.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${TESTHOST_IMAGE:-togglemaster-testhost:bookworm}"
defdir=images/testhost
hash=$(cat "$defdir"/Dockerfile "$defdir"/packages.txt "$defdir"/prepare.sh | sha256sum | cut -c1-16)

current=$(docker image inspect -f '{{ index .Config.Labels "togglemaster.definition" }}' "$image" 2>/dev/null || true)
if [ "$current" = "$hash" ]; then
    echo "build-image: $image is up to date ($hash)"
    exit 0
fi

if timeout 20 docker pull -q debian:bookworm >/dev/null 2>&1; then
    echo "build-image: building $image from the Dockerfile"
    docker build --label "togglemaster.definition=$hash" -t "$image" "$defdir"
    exit 0
fi

echo "build-image: no registry answers; building $image with debootstrap (about a minute)"
command -v debootstrap >/dev/null || { echo "build-image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d /var/tmp/testhost-root.XXXXXX)
trap 'rm -rf "$root"' EXIT
packages=$(paste -sd, "$defdir/packages.txt")
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >/tmp/testhost-debootstrap.log 2>&1 \
    || { echo "build-image: debootstrap failed, see /tmp/testhost-debootstrap.log" >&2; tail -20 /tmp/testhost-debootstrap.log >&2; exit 1; }
cp "$defdir/prepare.sh" "$root/tmp/prepare.sh"
chroot "$root" /bin/sh /tmp/prepare.sh
rm -f "$root/tmp/prepare.sh"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' \
    -c "LABEL togglemaster.definition=$hash" \
    - "$image" >/dev/null
echo "build-image: built $image ($hash)"
