"""Failover slots (docs/failover.md): a publisher with a standby built by site.yml, a subscription
on a failover slot the standby synchronises, then the publisher crashes while a writer writes,
the standby is promoted, and the next site.yml run points the subscriber at it: the
subscription continues from the synchronised slot (not created again, no copy) and the
subscriber ends up equal to the new primary, row by row."""

import subprocess
import threading
import time

import pytest

from helpers import connect, failures, pg_unit, psql, run_site, wait_for

PUB, STANDBY, SUB = "failover-pub", "failover-standby", "failover-sub"
DB = "shop"
ORDERS = "SELECT id, customer_id, amount, note FROM app.orders ORDER BY id"
CUSTOMERS = "SELECT id, name FROM app.customers ORDER BY id"
AFTER_FAILOVER = ["-e", f"molecule_source={STANDBY}", "-e", "tablesync_standby_of=",
                  "--limit", f"{STANDBY},{SUB}"]


@pytest.fixture(scope="module")
def pub():
    return connect(PUB)


@pytest.fixture(scope="module")
def standby():
    return connect(STANDBY)


@pytest.fixture(scope="module")
def sub():
    return connect(SUB)


def _slot(pub):
    return psql(pub, DB, "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'tablesync\\_orders\\_%'")


def _address(host):
    return host.check_output("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1")


def _equal(a, b):
    return all(psql(a, DB, q) == psql(b, DB, q) for q in (ORDERS, CUSTOMERS))


def test_site_built_a_streaming_standby_through_its_slot(pub, standby):
    assert psql(standby, "postgres", "SELECT pg_is_in_recovery()") == "t"
    row = psql(pub, "postgres", "SELECT slot_name || ' ' || slot_type || ' ' || active FROM pg_replication_slots "
                                "WHERE slot_name LIKE 'tablesync\\_standby\\_%'")
    slot, kind, active = row.split()
    assert (kind, active) == ("physical", "true"), row
    assert wait_for(lambda: psql(pub, "postgres", "SELECT state FROM pg_stat_replication "
                                                  f"WHERE application_name = '{slot}'") == "streaming", timeout=60)
    assert psql(pub, "postgres", "SHOW synchronized_standby_slots") == slot
    for setting, value in (("sync_replication_slots", "on"), ("hot_standby_feedback", "on"),
                           ("primary_slot_name", slot)):
        assert psql(standby, "postgres", f"SHOW {setting}") == value
    # the password is in a 0600 file, never in the setting
    conninfo = psql(standby, "postgres", "SHOW primary_conninfo")
    assert "password" not in conninfo and "passfile=" in conninfo and "dbname=postgres" in conninfo
    passfile = standby.file("/var/lib/postgresql/.tablesync-standby.pgpass")
    assert passfile.mode == 0o600 and passfile.user == "postgres"


def test_the_subscription_uses_a_failover_slot_the_standby_synchronises(pub, standby, sub):
    assert psql(sub, DB, "SELECT subfailover FROM pg_subscription WHERE subname = 'tablesync_orders'") == "t"
    slot = _slot(pub)
    assert psql(pub, DB, f"SELECT failover FROM pg_replication_slots WHERE slot_name = '{slot}'") == "t"
    assert wait_for(lambda: psql(standby, "postgres", "SELECT synced AND NOT temporary FROM pg_replication_slots "
                                                      f"WHERE slot_name = '{slot}'") == "t", timeout=120), \
        psql(standby, "postgres", "SELECT * FROM pg_replication_slots")


def test_rows_copied_to_the_subscriber(pub, sub):
    assert psql(sub, DB, "SELECT count(*) FROM app.orders") == "1000"
    assert _equal(pub, sub)


class Writer(threading.Thread):
    """Inserts orders on the publisher, one transaction each, until the server is gone."""

    def __init__(self):
        super().__init__(daemon=True)
        self.ids, self.error = [], None

    def run(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            proc = subprocess.run(
                ["podman", "exec", PUB, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", DB,
                 "-c", "INSERT INTO app.orders (customer_id, amount, note) VALUES (7, 1.50, 'during the failover') "
                       "RETURNING id"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
            if proc.returncode != 0:
                self.error = proc.stdout.strip()
                return
            self.ids.append(int(proc.stdout.strip()))


def test_failover_while_writing_then_site_points_the_subscriber_at_the_promoted_standby(pub, standby, sub):
    oid = psql(sub, DB, "SELECT oid FROM pg_subscription WHERE subname = 'tablesync_orders'")
    slot = _slot(pub)
    writer = Writer()
    writer.start()
    assert wait_for(lambda: len(writer.ids) >= 20, timeout=60), writer.error
    # the publisher fails (an immediate stop: no shutdown checkpoint, like a crash)
    version, cluster = pg_unit(pub).split("@")[1].split("-", 1)
    pub.check_output("pg_ctlcluster %s %s stop -m immediate", version, cluster)
    writer.join(timeout=60)
    assert writer.error is not None and len(writer.ids) >= 20

    standby.check_output("runuser -u postgres -- psql -XAtq -c 'SELECT pg_promote()'")
    assert wait_for(lambda: psql(standby, "postgres", "SELECT pg_is_in_recovery()") == "f", timeout=60)

    # the inventory now names the promoted standby as the set's source; the old primary is left out
    rc, out, _recap = run_site(*AFTER_FAILOVER)
    assert rc == 0, failures(out)
    conninfo = psql(sub, DB, "SELECT subconninfo FROM pg_subscription WHERE subname = 'tablesync_orders'")
    assert f"host={_address(standby)}" in conninfo, conninfo
    # the same subscription, continuing on the synchronised slot: nothing copied again
    assert psql(sub, DB, "SELECT oid FROM pg_subscription WHERE subname = 'tablesync_orders'") == oid
    assert wait_for(lambda: psql(standby, "postgres", "SELECT state FROM pg_stat_replication "
                                                      f"WHERE application_name = '{slot}'") == "streaming", timeout=60)

    # writes on the new primary arrive; the subscriber equals it row by row: every row the old
    # primary sent to the subscriber reached the standby first (synchronized_standby_slots)
    psql(standby, DB, "INSERT INTO app.orders (customer_id, amount, note) "
                      "SELECT 9, g, 'after the failover' FROM generate_series(1, 25) g")
    assert wait_for(lambda: _equal(standby, sub), timeout=90), (
        psql(standby, DB, "SELECT count(*), max(id) FROM app.orders"),
        psql(sub, DB, "SELECT count(*), max(id) FROM app.orders"))
    during = int(psql(standby, DB, "SELECT count(*) FROM app.orders WHERE note = 'during the failover'"))
    # at most the last few acknowledged writes may be lost with the old primary (asynchronous
    # standby); most of them reached the standby and the subscriber
    assert 0 < during <= len(writer.ids), (during, len(writer.ids))
    assert psql(sub, DB, "SELECT count(*) FROM app.orders WHERE note = 'after the failover'") == "25"


def test_a_second_run_after_the_failover_changes_nothing():
    rc, out, recap = run_site(*AFTER_FAILOVER)
    assert rc == 0, failures(out)
    assert all(stats["changed"] == 0 for stats in recap.values()), out[-8000:]
