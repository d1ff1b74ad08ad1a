#!/usr/bin/env bash
# Build the local base image (default labspace/base:bookworm) from Debian
# packages with debootstrap, for hosts that reach a Debian mirror but no
# container registry. Skips when the image exists (FORCE=1 rebuilds).
#
#   images/base/build.sh                  # needs root, debootstrap and docker
#   MIRROR=http://mirror.example/debian images/base/build.sh
set -euo pipefail

IMAGE=${IMAGE:-labspace/base:bookworm}
SUITE=${SUITE:-bookworm}
PACKAGES=python3,python3-venv,ca-certificates,tini

# the mirror apt already uses on this host, else Debian's CDN
default_mirror() {
  local found
  found=$(grep -hs -m1 -oE '^(URIs:|deb)[[:space:]]+[^ ]+/debian/?' \
            /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
            /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $NF}' || true)
  echo "${found:-http://deb.debian.org/debian}"
}
MIRROR=${MIRROR:-$(default_mirror)}

if [ -z "${FORCE:-}" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base: $IMAGE exists (FORCE=1 rebuilds it)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "base: building $IMAGE needs root (debootstrap); run as root or with sudo" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  echo "base: debootstrap not found (apt install debootstrap)" >&2
  exit 1
}

rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/labspace-base.XXXXXX")
cleanup() {
  # debootstrap may leave /proc or /sys mounted in the chroot if it fails
  for m in proc sys dev/pts dev; do
    mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m" || true
  done
  rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

echo "base: debootstrap $SUITE from $MIRROR into $rootfs"
start=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
  > "$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# apt inside derived images: the same mirror plus updates and security
cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian*}/debian-security $SUITE-security main
SOURCES
# small and reproducible: no package lists, caches, logs or docs
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
       "$rootfs"/var/log/*.log "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
       "$rootfs"/tmp/* "$rootfs"/root/.cache
: > "$rootfs/etc/machine-id"

tar --numeric-owner -C "$rootfs" -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE" >/dev/null
echo "base: built $IMAGE in $(( $(date +%s) - start ))s" \
     "($(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec))"
