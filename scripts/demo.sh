#!/usr/bin/env bash
# The demo: a real rollout on a local default.
#
# Starts two systemd containers from the locally built images, a publisher (Debian 12,
# PostgreSQL 15) and a subscriber (Debian 13, PostgreSQL 17), creates a small shop database on
# the publisher, runs playbooks/site.yml against them with a generated inventory, then writes a
# row on the publisher, shows it arriving on the subscriber and prints the lag report.
# The containers stay up afterwards so you can look around; `scripts/demo.sh clean` removes them.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$ROOT/.venv/bin:$PATH"
export CONTAINERS_CONF="$ROOT/tests/containers/containers.conf"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.cache/collections"
export ANSIBLE_HOME="$ROOT/.cache/ansible-home"
NET=tablesync-demo
PUB=tablesync-demo-pub
SUB=tablesync-demo-sub
WORK="$ROOT/.cache/demo"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

clean() {
  podman rm -f -t 5 "$PUB" "$SUB" >/dev/null 2>&1 || true
  podman network rm "$NET" >/dev/null 2>&1 || true
}

if [ "${1:-}" = clean ]; then clean; echo "demo containers removed"; exit 0; fi

say "Images (built with debootstrap on first use, then cached)"
"$ROOT/scripts/build-image.sh" bookworm
"$ROOT/scripts/build-image.sh" trixie

say "Containers: $PUB (PostgreSQL 15) and $SUB (PostgreSQL 17)"
clean
podman network create "$NET" >/dev/null
podman run -d --name "$PUB" --hostname "$PUB" --network "$NET" --systemd=always \
  localhost/tablesync-pg:bookworm /sbin/init >/dev/null
podman run -d --name "$SUB" --hostname "$SUB" --network "$NET" --systemd=always \
  localhost/tablesync-pg:trixie /sbin/init >/dev/null
for c in "$PUB" "$SUB"; do
  podman exec "$c" systemctl is-system-running --wait >/dev/null || true
  podman exec "$c" pg_isready -q -t 60
done

psql_in() {  # psql_in CONTAINER DB SQL
  podman exec -i -u postgres "$1" psql -X -q -v ON_ERROR_STOP=1 -d "$2" -c "$3"
}

say "Source data on the publisher: shop.sales.orders"
podman exec -u postgres "$PUB" createdb shop
psql_in "$PUB" shop "CREATE SCHEMA sales;
  CREATE TABLE sales.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer text NOT NULL, amount numeric(10,2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
  INSERT INTO sales.orders (customer, amount) SELECT 'customer ' || g, g * 1.25 FROM generate_series(1, 1000) g;"

# A random password for this demo only, kept in a 0600 file (never on a command line).
mkdir -p "$WORK"
umask 077
[ -s "$WORK/password" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$WORK/password"
cat > "$WORK/inventory.yml" <<INV
all:
  vars:
    ansible_connection: containers.podman.podman
    ansible_python_interpreter: /usr/bin/python3
    tablesync_replication_role: tablesync_replicator
    tablesync_replication_password: "{{ lookup('ansible.builtin.file', '$WORK/password') }}"
    tablesync_sync_sets:
      - name: orders
        method: logical
        source: {host: $PUB, database: shop}
        targets:
          - {host: $SUB, database: shop_replica}
        tables: [sales.orders]
  children:
    postgresql:
      hosts:
        $PUB: {}
        $SUB: {}
INV
umask 022

say "ansible-playbook -i $WORK/inventory.yml playbooks/site.yml"
ansible-playbook -i "$WORK/inventory.yml" "$ROOT/playbooks/site.yml"

say "A row written on the publisher ..."
psql_in "$PUB" shop "INSERT INTO sales.orders (customer, amount) VALUES ('demo customer', 42.00) RETURNING *;"
echo "... waiting for it on the subscriber"
for _ in $(seq 1 60); do
  n="$(podman exec -u postgres "$SUB" psql -X -At -d shop_replica \
       -c "SELECT count(*) FROM sales.orders WHERE customer = 'demo customer'" 2>/dev/null || echo 0)"
  [ "$n" = 1 ] && break
  sleep 1
done
psql_in "$SUB" shop_replica "SELECT * FROM sales.orders WHERE customer = 'demo customer';"
[ "$n" = 1 ] || { echo "the row did not arrive within 60 s" >&2; exit 1; }
psql_in "$SUB" shop_replica "SELECT count(*) AS rows_on_subscriber FROM sales.orders;"

say "Lag report (publisher's replication slots)"
psql_in "$PUB" shop "SELECT slot_name, active, wal_status,
    pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) AS lag
  FROM pg_replication_slots ORDER BY slot_name;"

say "Done. Containers $PUB and $SUB keep running; remove them with: scripts/demo.sh clean"
