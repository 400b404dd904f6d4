#!/usr/bin/env bash
# Runs Molecule scenarios against the local systemd + PostgreSQL containers.
#
#   scripts/molecule.sh [scenario...]     default: every molecule/*/ except smoke, faults last
#   (faults is the fault suite of docs/faults.md; ./dev molecule faults runs it alone)
#   MOLECULE_COMMAND=converge scripts/molecule.sh sub   (any molecule subcommand; default test)
#
# Sets up everything Molecule needs so it works the same from a shell, make or CI:
#   - CONTAINERS_CONF: podman settings for this host (runc, ulimits), /etc is never touched;
#   - the collection under development, exposed as .cache/collections/ansible_collections/
#     tablesync/postgresql -> repo root, first on ANSIBLE_COLLECTIONS_PATH;
#   - ANSIBLE_HOME=.cache: Molecule's prerun installs a *copy* of the collection into
#     $ANSIBLE_HOME/collections unless it finds a symlink to the project there, which is
#     exactly our .cache/collections link; it also keeps Molecule's ephemeral files in .cache
#     instead of ~/.ansible (no stale copies outside the repo);
#   - both images (scripts/build-image.sh, ~0.1 s when cached).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
cd "$REPO"   # Molecule finds molecule/<scenario> and galaxy.yml relative to the cwd

export CONTAINERS_CONF="$REPO/tests/containers/containers.conf"

# The venv's molecule/ansible (scripts/bootstrap.sh creates it), unless one is active.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$REPO/.venv/bin/molecule" ]; then
  export VIRTUAL_ENV="$REPO/.venv"
  export PATH="$VIRTUAL_ENV/bin:$PATH"
fi

COLLECTIONS="$REPO/.cache/collections"
LINK="$COLLECTIONS/ansible_collections/tablesync/postgresql"
if [ ! -L "$LINK" ]; then
  if [ -e "$LINK" ]; then
    echo "molecule.sh: $LINK exists and is not a symlink; remove it" >&2; exit 1
  fi
  mkdir -p "$(dirname "$LINK")"
  ln -s "$REPO" "$LINK"
fi
# Only our collection dir; containers.podman & co. come from the venv's `ansible` package
# (found through sys.path), so nothing in ~/.ansible/collections can shadow them.
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS"
export ANSIBLE_HOME="$REPO/.cache"

for suite in bookworm trixie sid; do "$HERE/build-image.sh" "$suite"; done

if [ "$#" -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for d in molecule/*/; do
    s="$(basename "$d")"
    case "$s" in smoke|faults) continue ;; esac
    [ ! -f "$d/molecule.yml" ] || scenarios+=("$s")
  done
  [ ! -f molecule/faults/molecule.yml ] || scenarios+=(faults)
  if [ "${#scenarios[@]}" -eq 0 ]; then
    echo "molecule.sh: no scenario under molecule/ (besides smoke)"; exit 0
  fi
fi

rc=0
for s in "${scenarios[@]}"; do
  start=$SECONDS
  if molecule "${MOLECULE_COMMAND:-test}" -s "$s"; then
    echo "molecule.sh: $s passed in $((SECONDS - start)) s"
  else
    rc=1; echo "molecule.sh: $s FAILED after $((SECONDS - start)) s" >&2
  fi
done
exit "$rc"
