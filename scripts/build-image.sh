#!/usr/bin/env bash
# Builds the local systemd + PostgreSQL test image localhost/tablesync-pg:<suite> with
# debootstrap (no registry is reachable, so nothing is pulled) and `podman import`.
#
#   scripts/build-image.sh bookworm|trixie|sid [--force]
#
# bookworm: PostgreSQL 15, trixie: 17, sid: 18 (Debian has it only in sid; a pure sid rootfs
# does not boot here - its systemd refuses cgroup v1 and its Release file is past Valid-Until -
# so the sid image is trixie with PostgreSQL 18 and what it needs taken from sid, pinned low).
#
# Cached: the image carries a label with the hash of its recipe (this script plus the files
# listed in RECIPE_FILES); when an image with the same label exists, nothing is done (<1 s).
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
#              TABLESYNC_BUILD_DIR (default /var/tmp/tablesync-pg: rootfs, .deb cache, locks).
set -euo pipefail

SUITE="${1:-}"
FORCE="${2:-}"
BASE="$SUITE"           # the suite debootstrap installs
PG_PACKAGES=(postgresql)
case "$SUITE" in
  bookworm) PG_PACKAGES+=(postgresql-contrib) ;;  # contrib is a separate package up to PostgreSQL 15
  trixie)   ;;                                    # ... and part of `postgresql` from 16 on
  sid)      BASE=trixie; PG_PACKAGES=() ;;        # PostgreSQL 18 from sid, installed after debootstrap
  *) echo "usage: $0 bookworm|trixie|sid [--force]" >&2; exit 2 ;;
esac
# pg_cron: the flush scheduler of database-only hosts (docs/managed.md), as managed services offer it
SID_PACKAGES=(postgresql postgresql-18 postgresql-client-18 postgresql-common postgresql-client-common libpq5
              postgresql-18-cron)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/tests/containers/containers.conf}"

IMAGE="localhost/tablesync-pg:$SUITE"
LABEL="org.tablesync.recipe"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BUILD_DIR="${TABLESYNC_BUILD_DIR:-/var/tmp/tablesync-pg}"

# Everything that determines the image content. Add files here if the recipe grows.
RECIPE_FILES=("$HERE/build-image.sh")
RECIPE="$( { echo "$SUITE $MIRROR"; cat "${RECIPE_FILES[@]}"; } | sha256sum | cut -c1-32)"

current_recipe() {
  podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true
}

if [ "$FORCE" != "--force" ] && [ "$(current_recipe)" = "$RECIPE" ]; then
  echo "build-image: $IMAGE is up to date (recipe $RECIPE)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "build-image: debootstrap needs root" >&2; exit 1
fi

mkdir -p "$BUILD_DIR"
# Serialise builds of the same suite (several worktrees share podman's image store).
exec 9>"$BUILD_DIR/$SUITE.lock"
flock 9
if [ "$FORCE" != "--force" ] && [ "$(current_recipe)" = "$RECIPE" ]; then
  echo "build-image: $IMAGE was built meanwhile (recipe $RECIPE)"
  exit 0
fi

ROOTFS="$BUILD_DIR/$SUITE.rootfs"
DEBS="$BUILD_DIR/debs-$SUITE"   # kept between builds: a recipe change re-downloads nothing

# Remove a (possibly half-built) rootfs. debootstrap mounts /proc, /sys, ... inside it and a
# failed run may leave them mounted: unmount first, and never let rm cross a filesystem.
clean_rootfs() {
  [ -d "$ROOTFS" ] || return 0
  local m
  for m in $(findmnt -rn -o TARGET | grep -F "$ROOTFS/" | sort -r || true); do
    umount -l "$m" || true
  done
  rm -rf --one-file-system "$ROOTFS"
}
trap clean_rootfs EXIT
clean_rootfs
mkdir -p "$ROOTFS" "$DEBS"

start=$SECONDS
PACKAGES=(python3 python3-apt systemd systemd-sysv dbus sudo iproute2 procps
          ca-certificates locales "${PG_PACKAGES[@]}")
echo "build-image: debootstrap $BASE (${PACKAGES[*]})"
# LC_ALL=C.UTF-8: postgresql-common creates the default cluster during debootstrap with the
# environment's locale; C.UTF-8 gives it UTF8 encoding instead of SQL_ASCII.
# The keyring is given explicitly: on Ubuntu debootstrap's default is Ubuntu's, which does
# not sign Debian's suites.
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || { echo "build-image: $KEYRING is missing: install debian-archive-keyring" >&2; exit 1; }
LC_ALL=C.UTF-8 LANG=C.UTF-8 debootstrap --variant=minbase --components=main --keyring="$KEYRING" \
  --cache-dir="$DEBS" --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  "$BASE" "$ROOTFS" "$MIRROR" >"$BUILD_DIR/$SUITE.debootstrap.log" 2>&1 \
  || { tail -n 30 "$BUILD_DIR/$SUITE.debootstrap.log" >&2; exit 1; }
echo "build-image: debootstrap done in $((SECONDS - start)) s"

in_root() { LC_ALL=C.UTF-8 chroot "$ROOTFS" "$@"; }

# apt sources: the full suite (updates + security), so roles can apt-get install inside.
cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $BASE main
deb $MIRROR $BASE-updates main
deb http://deb.debian.org/debian-security $BASE-security main
EOF
if [ "$SUITE" = sid ]; then
  # sid's Release file may be past its Valid-Until on the mirror; pinned at 50, apt takes from
  # sid only what trixie cannot give (PostgreSQL 18 and the libraries it needs)
  echo "deb [check-valid-until=no] $MIRROR sid main" >"$ROOTFS/etc/apt/sources.list.d/sid.list"
  printf 'Package: *\nPin: release n=sid\nPin-Priority: 50\n' >"$ROOTFS/etc/apt/preferences.d/sid"
fi
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# Fresh package lists in the image: `apt-get install python3-psycopg2` works without an update.
in_root apt-get -qq update
if [ "$SUITE" = sid ]; then
  # as during debootstrap: no service starts in the chroot, /proc for the maintainer scripts
  printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
  chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
  mount -t proc proc "$ROOTFS/proc"
  DEBIAN_FRONTEND=noninteractive in_root apt-get -qq -y -t sid install "${SID_PACKAGES[@]}" \
    >"$BUILD_DIR/$SUITE.apt.log" 2>&1 || { tail -n 30 "$BUILD_DIR/$SUITE.apt.log" >&2; exit 1; }
  umount "$ROOTFS/proc"
  rm -f "$ROOTFS/usr/sbin/policy-rc.d"
fi
in_root apt-get -qq clean
: >"$ROOTFS/etc/resolv.conf"   # podman provides its own at run time

# Root without a password (console login / su in tests); sudo is installed for become tests.
in_root passwd -dq root

# Locales: C.UTF-8 is built into glibc; en_US.UTF-8 is generated for tests that want one.
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' "$ROOTFS/etc/locale.gen"
in_root locale-gen >/dev/null
echo 'LANG=C.UTF-8' >"$ROOTFS/etc/default/locale"

# systemd in a container: units that need hardware/a real console or a writable kernel
# interface fail or hang; mask them so `systemctl is-system-running` can reach "running".
for unit in systemd-remount-fs.service getty.target console-getty.service \
            getty@.service serial-getty@.service systemd-udevd.service \
            systemd-udev-trigger.service systemd-firstboot.service \
            systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
            sys-kernel-tracing.mount sys-fs-fuse-connections.mount \
            systemd-sysctl.service systemd-hwdb-update.service \
            systemd-journald-audit.socket; do
  ln -sf /dev/null "$ROOTFS/etc/systemd/system/$unit"
done
# Empty machine-id: systemd generates one per container at boot.
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
echo "tablesync-pg-$SUITE" >"$ROOTFS/etc/hostname"

PG_VERSION="$(ls "$ROOTFS/etc/postgresql")"
[ -f "$ROOTFS/etc/postgresql/$PG_VERSION/main/postgresql.conf" ] \
  || { echo "build-image: no default PostgreSQL cluster in the rootfs" >&2; exit 1; }

echo "build-image: importing $IMAGE (PostgreSQL $PG_VERSION)"
old_id="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
tar -C "$ROOTFS" --numeric-owner -c . | podman import -q \
  --change 'CMD ["/sbin/init"]' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change "LABEL $LABEL=$RECIPE" \
  --change "LABEL org.tablesync.suite=$SUITE" \
  --change "LABEL org.tablesync.pg_version=$PG_VERSION" \
  - "$IMAGE" >/dev/null
# Drop the previous build if no container still uses it (ignore failure: then it stays).
if [ -n "$old_id" ] && [ "$old_id" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$old_id" >/dev/null 2>&1 || true
fi
echo "build-image: $IMAGE built in $((SECONDS - start)) s (recipe $RECIPE)"
