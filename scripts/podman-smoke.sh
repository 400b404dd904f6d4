#!/usr/bin/env bash
# Quick diagnostic for the container test infrastructure: builds (or reuses) both images,
# boots one systemd container from each on a private network and checks that
#   - systemd reaches PID 1 and postgresql@<ver>-main is active,
#   - `apt-get install python3-psycopg2` works inside (Debian mirror reachable),
#   - container -> container TCP on 5432 works once listen_addresses is opened (both ways).
# Everything it creates is removed on exit. Takes ~20 s with cached images.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
export CONTAINERS_CONF="$REPO/tests/containers/containers.conf"

NET="tablesync-smoke-$$"
declare -A PGVER=([bookworm]=15 [trixie]=17)
SUITES=(bookworm trixie)
name() { echo "tablesync-smoke-$1-$$"; }

cleanup() {
  for s in "${SUITES[@]}"; do podman rm -f -t 0 "$(name "$s")" >/dev/null 2>&1 || true; done
  podman network rm "$NET" >/dev/null 2>&1 || true
}
trap cleanup EXIT

for s in "${SUITES[@]}"; do "$HERE/build-image.sh" "$s"; done

start=$SECONDS
podman network create "$NET" >/dev/null
for s in "${SUITES[@]}"; do
  podman run -d --name "$(name "$s")" --hostname "$s" --network "$NET" --systemd=always \
    "localhost/tablesync-pg:$s" /sbin/init >/dev/null
done

for s in "${SUITES[@]}"; do
  c="$(name "$s")"; unit="postgresql@${PGVER[$s]}-main"
  # `is-system-running --wait` blocks until boot finished (running or degraded).
  state="$(timeout 60 podman exec "$c" systemctl is-system-running --wait || true)"
  podman exec "$c" systemctl is-active --quiet "$unit" \
    || { echo "FAIL $s: $unit not active (system: $state)"; podman exec "$c" systemctl --failed; exit 1; }
  echo "ok   $s: systemd $state, $unit active"
done

# Install the driver in both containers at once (the roles will do this themselves).
pids=()
for s in "${SUITES[@]}"; do
  podman exec -e DEBIAN_FRONTEND=noninteractive "$(name "$s")" \
    sh -c 'apt-get install -y -qq python3-psycopg2 >/dev/null 2>&1 && python3 -c "import psycopg2"' &
  pids+=($!)
done
for i in "${!SUITES[@]}"; do
  wait "${pids[$i]}" || { echo "FAIL ${SUITES[$i]}: apt-get install python3-psycopg2"; exit 1; }
  echo "ok   ${SUITES[$i]}: apt-get install python3-psycopg2"
done

# Open each server to the network (by hand, only here: the roles own this configuration).
for s in "${SUITES[@]}"; do
  podman exec "$(name "$s")" sh -ec "
    su postgres -c \"psql -qc \\\"ALTER SYSTEM SET listen_addresses = '*'\\\" \
                       -c \\\"ALTER USER postgres PASSWORD 'smoke'\\\"\"
    echo 'host all all samenet scram-sha-256' >>/etc/postgresql/${PGVER[$s]}/main/pg_hba.conf
    systemctl restart postgresql@${PGVER[$s]}-main"
done

ip() { podman inspect -f "{{ (index .NetworkSettings.Networks \"$NET\").IPAddress }}" "$(name "$1")"; }
check_tcp() {  # $1 client suite, $2 server suite: psql over TCP with psycopg2 from the client
  local addr; addr="$(ip "$2")"
  podman exec "$(name "$1")" python3 -c "
import psycopg2
c = psycopg2.connect(host='$addr', port=5432, user='postgres', password='smoke', dbname='postgres', connect_timeout=5)
print(c.server_version)" >/dev/null \
    || { echo "FAIL $1 -> $2 ($addr:5432)"; exit 1; }
  echo "ok   $1 -> $2 ($addr:5432) over TCP"
}
check_tcp bookworm trixie
check_tcp trixie bookworm
echo "podman-smoke: all checks passed in $((SECONDS - start)) s"
