"""Logical replication deployed by playbooks/site.yml: publisher PG18 -> subscribers PG15 and PG17."""

import pytest

from helpers import connect, hosts, pg_version, psql, run_site, wait_for

testinfra_hosts = [f"podman://{name}" for name in hosts()]

PUB, SUB15, SUB17 = "logical-pub", "logical-sub15", "logical-sub17"
# (host, database) of each subscriber of the 'shop' set
TARGETS = [(SUB15, "shop"), (SUB17, "shop_copy")]
ROLE = "tablesync_replicator"


@pytest.fixture(scope="module")
def pub():
    return connect(PUB)


@pytest.fixture(scope="module")
def subs():
    return [(connect(name), db) for name, db in TARGETS]


def _name(host):
    return host.backend.get_hostname()


def _pg_version(host):
    return pg_version(host)


def test_server_started_exactly_once_since_prepare(host):
    """The settings needing a restart were applied with one restart; idempotence added none."""
    log = f"/var/log/postgresql/postgresql-{_pg_version(host)}-main.log"
    mark = int(host.file("/var/tmp/tablesync-log-mark").content_string.strip())
    lines = host.file(log).content_string.splitlines()[mark:]
    starts = [line for line in lines if "database system is ready to accept connections" in line]
    assert len(starts) == 1, "\n".join(starts)
    assert host.service(f"postgresql@{_pg_version(host)}-main").is_running


# What a rollout may log at WARNING or above, with why (issue 16: PostgreSQL 18 audit).
EXPECTED_LOG = (
)


def test_rollout_logged_nothing_at_warning_or_above(host):
    """Converge and idempotence (site.yml twice) on PostgreSQL 15, 17 and 18: no WARNING, ERROR,
    FATAL or PANIC in the server log since prepare, except the documented ones."""
    log = f"/var/log/postgresql/postgresql-{_pg_version(host)}-main.log"
    mark = int(host.file("/var/tmp/tablesync-log-mark").content_string.strip())
    lines = host.file(log).content_string.splitlines()[mark:]
    found = [line for line in lines if any(f" {level}:  " in line for level in ("WARNING", "ERROR", "FATAL", "PANIC"))
             and not any(expected in line for expected in EXPECTED_LOG)]
    assert found == [], "\n".join(found[:40])


def test_settings_are_live(host):
    show = {name: psql(host, "postgres", f"SHOW {name}") for name in (
        "wal_level", "max_replication_slots", "max_wal_senders", "max_logical_replication_workers",
        "max_worker_processes", "max_slot_wal_keep_size", "listen_addresses")}
    assert psql(host, "postgres", "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"
    if _name(host) == PUB:
        assert show["wal_level"] == "logical"
        assert show["max_slot_wal_keep_size"] == "10GB"
        assert show["listen_addresses"] == "*"
        assert int(show["max_wal_senders"]) >= 10
    else:
        assert show["wal_level"] == "replica"  # subscribers need no logical decoding
        # per subscription an apply, 2 table-sync and 2 parallel apply workers, plus 4, by tens
        workers = {SUB15: "10", SUB17: "20"}[_name(host)]  # 1 and 2 subscriptions
        assert show["max_logical_replication_workers"] == workers
        assert show["max_worker_processes"] == str(int(workers) + 8)


def test_replication_role_is_least_privilege(pub):
    attrs = psql(pub, "postgres", f"SELECT rolsuper, rolreplication, rolcanlogin FROM pg_roles "
                                  f"WHERE rolname = '{ROLE}'")
    assert attrs == "f|t|t"
    granted = psql(pub, "shop", f"""
        SELECT string_agg(c.oid::regclass::text, ',' ORDER BY c.oid::regclass::text)
        FROM pg_class c WHERE c.relkind = 'r'
          AND c.relnamespace::regnamespace::text IN ('sales', 'audit')
          AND has_table_privilege('{ROLE}', c.oid, 'SELECT')""")
    assert granted.split(",") == sorted(["audit.log", "sales.customers", "sales.order_notes",
                                         "sales.orders", "sales.shipments"])


def test_pg_hba_admits_the_subscribers_only(pub):
    rules = psql(pub, "postgres", f"""
        SELECT string_agg(format('%s %s %s %s', type, array_to_string(database, ','),
                                 address, auth_method), E'\\n' ORDER BY address)
        FROM pg_hba_file_rules WHERE '{ROLE}' = ANY (user_name)""").splitlines()
    addresses = sorted(connect(name).interface("eth0").addresses[0] for name in (SUB15, SUB17))
    # the server has TLS on (Debian's snakeoil certificate): TLS-only lines by default
    assert sorted(rules) == sorted(f"hostssl shop {a} scram-sha-256" for a in addresses)
    assert psql(pub, "postgres", "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"


def test_subscriptions_stream_over_tls(pub):
    """sslmode=require by default where the publisher has TLS: every walsender of a tablesync
    slot runs over TLS."""
    assert wait_for(lambda: psql(pub, "postgres", """
        SELECT count(*) = 3 AND bool_and(s.ssl)
        FROM pg_stat_replication AS r JOIN pg_stat_ssl AS s USING (pid)
        WHERE r.application_name LIKE 'tablesync_%'""") == "t", timeout=60)


def test_publications_and_slots(pub):
    pubs = psql(pub, "shop", "SELECT string_agg(format('%s:%s%s%s', pubname, pubinsert::int, pubupdate::int, "
                             "pubdelete::int), ',' ORDER BY pubname) FROM pg_publication")
    # each set's own publication, and the one of its queue of column changes (schema_changes
    # follow, the default: docs/schema-changes.md)
    assert pubs == "tablesync_audit:100,tablesync_audit_ddl:100,tablesync_shop:111,tablesync_shop_ddl:100"
    tables = psql(pub, "shop", "SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY schemaname, tablename) "
                               "FROM pg_publication_tables WHERE pubname = 'tablesync_shop'")
    assert tables == "sales.customers,sales.order_notes,sales.orders,sales.shipments"
    assert psql(pub, "shop", "SELECT relreplident FROM pg_class WHERE oid = 'sales.order_notes'::regclass") == "f"

    def slots():
        return psql(pub, "postgres", "SELECT string_agg(slot_name || ':' || active, ',' ORDER BY slot_name) "
                                     "FROM pg_replication_slots WHERE slot_name LIKE 'tablesync%'").split(",")
    assert wait_for(lambda: len(slots()) == 3 and all(s.endswith(":true") for s in slots()), timeout=30), slots()
    assert sorted(s.split("_")[1] for s in slots()) == ["audit", "shop", "shop"]


def test_initial_copy(subs):
    for sub, db in subs:
        assert psql(sub, db, "SELECT count(*) FROM sales.orders") == "100"
        assert psql(sub, db, "SELECT count(*) FROM sales.customers") == "20"
        assert psql(sub, db, "SELECT count(*) FROM sales.order_notes") == "10"
        # row filter: only the NL shipments
        assert psql(sub, db, "SELECT string_agg(DISTINCT country, ',') || count(*) FROM sales.shipments") == "NL10"
        assert psql(sub, db, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'") == "0"
        # copied by pg_subscription's snapshot copy (logical_subscriber_initial_copy default):
        # the tables were ready from the start, no table synchronisation worker recorded an LSN
        assert psql(sub, db, "SELECT count(*) || ':' || count(srsublsn) FROM pg_subscription_rel r "
                             "JOIN pg_subscription s ON s.oid = r.srsubid "
                             "WHERE s.subname = 'tablesync_shop'") == "5:0"  # 4 tables and the queue
        # the subscription is enabled, its copy marker replaced (no comment)
        assert psql(sub, db, "SELECT string_agg(subenabled::text || ':' || "
                             "coalesce(obj_description(oid, 'pg_subscription'), '-'), ',') "
                             "FROM pg_subscription WHERE subname = 'tablesync_shop'") == "true:-"
        # not part of any set
        assert psql(sub, db, "SELECT to_regclass('sales.not_synced') IS NULL") == "t"


def test_column_list_respected(subs):
    for sub, db in subs:
        columns = psql(sub, db, "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
                                "WHERE attrelid = 'sales.customers'::regclass AND attnum > 0 AND NOT attisdropped")
        assert columns == "id,name,country"


def test_second_set_only_on_its_target(subs):
    (sub15, db15), (sub17, db17) = subs
    assert psql(sub17, db17, "SELECT count(*) FROM audit.log") == "5"
    assert psql(sub15, db15, "SELECT to_regclass('audit.log') IS NULL") == "t"
    assert psql(sub17, db17, "SELECT string_agg(subname, ',' ORDER BY subname) FROM pg_subscription") == \
        "tablesync_audit,tablesync_shop"


def test_changes_reach_both_subscribers(pub, subs):
    psql(pub, "shop", """
        INSERT INTO sales.orders VALUES (1001, 1, 99.95, 'new');
        UPDATE sales.orders SET status = 'paid', amount = 12.34 WHERE id = 1;
        DELETE FROM sales.orders WHERE id = 2;
        UPDATE sales.customers SET name = 'renamed', email = 'x@example.org' WHERE id = 3;
        UPDATE sales.order_notes SET note = 'edited' WHERE order_id = 4;
        DELETE FROM sales.order_notes WHERE order_id = 5;
        INSERT INTO sales.shipments (id, country) VALUES (101, 'NL'), (102, 'DE');
        DELETE FROM sales.shipments WHERE id = 1 AND country = 'NL';""")
    expected = {
        "SELECT count(*) FROM sales.orders": "100",
        "SELECT status || ' ' || amount FROM sales.orders WHERE id = 1": "paid 12.34",
        "SELECT count(*) FROM sales.orders WHERE id IN (2, 1001)": "1",
        "SELECT name FROM sales.customers WHERE id = 3": "renamed",
        "SELECT note FROM sales.order_notes WHERE order_id = 4": "edited",
        "SELECT count(*) FROM sales.order_notes": "9",
        "SELECT string_agg(id || country, ',' ORDER BY id) FROM sales.shipments WHERE id IN (1, 101, 102)": "101NL",
    }
    for sub, db in subs:
        def state():
            return {sql: psql(sub, db, sql) for sql in expected}
        assert wait_for(lambda: state() == expected, timeout=60), state()


def test_publish_insert_only_set(pub, subs):
    sub17, db = subs[1]
    psql(pub, "shop", "UPDATE audit.log SET message = 'changed' WHERE id = 1; "
                      "INSERT INTO audit.log (message) VALUES ('late event')")
    assert wait_for(lambda: psql(sub17, db, "SELECT count(*) FROM audit.log") == "6", timeout=60)
    assert psql(sub17, db, "SELECT message FROM audit.log WHERE id = 1") == "event 1"


def test_check_mode_after_converge_changes_nothing():
    rc, out, recap = run_site("--check", "--diff")
    assert rc == 0, out[-5000:]
    assert set(recap) == {PUB, SUB15, SUB17}, out[-3000:]
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), out[-8000:]
