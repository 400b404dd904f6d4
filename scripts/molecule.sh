#!/usr/bin/env bash
# Runs Molecule scenarios against the local systemd + PostgreSQL containers.
#
#   scripts/molecule.sh [scenario...]     default: every molecule/*/ except smoke
#   (faults is the fault suite of docs/faults.md; ./dev molecule faults runs it alone)
#   MOLECULE_LANES=1 scripts/molecule.sh   one scenario after the other (default: 2 lanes)
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
# Pipelining into the containers: the short name `podman` of Molecule's inventories resolves to
# tests/containers/connection_plugins/podman.py (containers.podman's plugin with `podman exec -i`),
# one podman process per task instead of about six. The scenarios named in MOLECULE_UNPIPELINED
# (default: methods) run the stock plugin without pipelining, Ansible's default, so the path
# where modules are copied to the host and run as postgres through become stays tested.
UNPIPELINED=" ${MOLECULE_UNPIPELINED-methods} "

for suite in bookworm trixie sid; do "$HERE/build-image.sh" "$suite"; done

if [ "$#" -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for d in molecule/*/; do
    s="$(basename "$d")"
    [ "$s" != smoke ] || continue
    [ ! -f "$d/molecule.yml" ] || scenarios+=("$s")
  done
  if [ "${#scenarios[@]}" -eq 0 ]; then
    echo "molecule.sh: no scenario under molecule/ (besides smoke)"; exit 0
  fi
fi

# One scenario: its whole output goes to a log file, printed in one piece when it ends (under a
# lock), so the scenarios of parallel lanes do not interleave in the output.
LOGS="$REPO/.cache/molecule-logs"
mkdir -p "$LOGS"
run_one() {
  local s="$1" start=$SECONDS rc=0
  local connection=(ANSIBLE_PIPELINING=True ANSIBLE_CONNECTION_PLUGINS="$REPO/tests/containers/connection_plugins")
  : > "$LOGS/$s.log"
  if [[ "$UNPIPELINED" == *" $s "* ]]; then
    connection=()
    echo "molecule.sh: $s runs the stock podman connection, without pipelining" > "$LOGS/$s.log"
  fi
  env "${connection[@]}" molecule "${MOLECULE_COMMAND:-test}" -s "$s" >> "$LOGS/$s.log" 2>&1 || rc=$?
  {
    flock 9
    cat "$LOGS/$s.log"
    if [ "$rc" -eq 0 ]; then echo "molecule.sh: $s passed in $((SECONDS - start)) s"
    else echo "molecule.sh: $s FAILED after $((SECONDS - start)) s" >&2; fi
  } 9> "$LOGS/.print.lock"
  return "$rc"
}

# Lanes: the scenarios run in MOLECULE_LANES parallel lanes (default 2; each scenario has its
# own containers and podman network). A scenario goes to the lane with the least expected time
# (seconds measured on the 2-core CI machine), longest first.
declare -A COST=([logical]=900 [faults]=700 [logical_change]=370 [failover]=300 [methods]=260)
LANES="${MOLECULE_LANES:-2}"
[ "${#scenarios[@]}" -gt 1 ] || LANES=1
mapfile -t ordered < <(for s in "${scenarios[@]}"; do echo "${COST[$s]:-300} $s"; done | sort -rn | cut -d' ' -f2)
declare -a load lane_of
for ((i = 0; i < LANES; i++)); do load[i]=0; done
for s in "${ordered[@]}"; do
  best=0
  for ((i = 1; i < LANES; i++)); do [ "${load[i]}" -ge "${load[best]}" ] || best=$i; done
  load[best]=$(( load[best] + ${COST[$s]:-300} ))
  lane_of[best]="${lane_of[best]:-} $s"
done

pids=()
for ((i = 0; i < LANES; i++)); do
  echo "molecule.sh: lane $((i + 1)):${lane_of[i]:-}"
  (
    lane_rc=0
    for s in ${lane_of[i]:-}; do run_one "$s" || lane_rc=1; done
    exit "$lane_rc"
  ) &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
exit "$rc"
