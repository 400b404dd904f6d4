#!/usr/bin/env bash
# Installs everything the demo and the test suite need on a fresh Debian/Ubuntu machine:
# Debian packages (PostgreSQL for throw-away clusters, podman/runc/debootstrap for the
# container images) and the Python virtualenv in .venv. Idempotent: re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# debian-archive-keyring: Debian's signing keys, which debootstrap needs to check the Debian
# suites of the images; Debian has it already, Ubuntu installs it from its universe component.
DEB_PACKAGES=(podman runc debootstrap debian-archive-keyring uidmap slirp4netns fuse-overlayfs
              postgresql postgresql-contrib python3-venv python3-dev gcc make git
              rsync iproute2 ca-certificates shellcheck python3-psycopg2)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian's postgresql package starts a cluster on 5432; the tests use their own clusters.
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ] || ! cmp -s requirements-dev.txt .venv/.requirements-dev.txt; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  cp requirements-dev.txt .venv/.requirements-dev.txt
fi
echo "bootstrap: ready"
