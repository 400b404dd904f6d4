"""The subscribers follow a changed sync model (added/dropped table, new row filter, removed sets)."""

import pytest

from helpers import connect, psql, run_playbook, run_site, task_messages, wait_for

PUB, SUB = "change-pub", "change-sub"


@pytest.fixture(scope="module")
def pub():
    return connect(PUB)


@pytest.fixture(scope="module")
def sub():
    return connect(SUB)


def test_publication_follows_the_set(pub):
    tables = psql(pub, "shop", "SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY schemaname, tablename) "
                               "FROM pg_publication_tables WHERE pubname = 'tablesync_orders'")
    assert tables == "sales.customers,sales.events,sales.orders,sales.shipments"
    assert psql(pub, "shop", "SELECT pubviaroot FROM pg_publication WHERE pubname = 'tablesync_orders'") == "t"
    assert psql(pub, "shop", "SELECT rowfilter FROM pg_publication_tables "
                             "WHERE pubname = 'tablesync_orders' AND tablename = 'shipments'") == "(country = 'DE'::text)"


def test_subscription_was_refreshed(sub):
    rel = psql(sub, "shop", "SELECT string_agg(format('%s:%s', srrelid::regclass, srsubstate), ',' ORDER BY srrelid::regclass::text) "
                            "FROM pg_subscription_rel")
    assert rel == "sales.customers:r,sales.events:r,sales.orders:r,sales.shipments:r,tablesync_ddl.orders:r"
    # the added table was created and copied
    assert psql(sub, "shop", "SELECT count(*) FROM sales.customers") == "7"


def test_changes_follow_the_new_model(pub, sub):
    psql(pub, "shop", """
        INSERT INTO sales.customers VALUES (100, 'new customer');
        INSERT INTO sales.returns VALUES (100, 1);
        INSERT INTO sales.shipments VALUES (100, 'NL'), (101, 'DE');
        INSERT INTO sales.orders VALUES (100, 1);""")
    # orders is the marker: once it arrived, the rest of the transaction has been applied
    assert wait_for(lambda: psql(sub, "shop", "SELECT count(*) FROM sales.orders WHERE id = 100") == "1")
    assert psql(sub, "shop", "SELECT name FROM sales.customers WHERE id = 100") == "new customer"
    # dropped from the set: the table stays on the subscriber but receives nothing more
    assert psql(sub, "shop", "SELECT count(*) FROM sales.returns") == "5"
    # new row filter: DE arrives, NL no longer
    assert psql(sub, "shop", "SELECT string_agg(id || country, ',' ORDER BY id) FROM sales.shipments "
                             "WHERE id BETWEEN 100 AND 101") == "101DE"


def test_absent_and_removed_sets_are_gone(pub, sub):
    subs = psql(sub, "postgres", "SELECT string_agg(subname, ',' ORDER BY subname) FROM pg_subscription")
    assert subs == "tablesync_orders"
    pubs = psql(pub, "shop", "SELECT string_agg(pubname, ',' ORDER BY pubname) FROM pg_publication")
    assert pubs == "tablesync_orders,tablesync_orders_ddl"
    slots = psql(pub, "postgres", "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots")
    assert slots.startswith("tablesync_orders_") and "," not in slots  # orphan, legacy and gone slots dropped
    # the replication role may read exactly the tables of the remaining set
    granted = psql(pub, "shop", """
        SELECT string_agg(c.oid::regclass::text, ',' ORDER BY c.oid::regclass::text) FROM pg_class c
        WHERE c.relkind = 'r' AND c.relnamespace::regnamespace::text IN ('sales', 'legacy', 'gone')
          AND has_table_privilege('tablesync_replicator', c.oid, 'SELECT')""")
    assert granted == "sales.customers,sales.orders,sales.shipments"


def test_check_mode_on_the_changed_model_changes_nothing():
    rc, out, recap = run_site("--check", "--diff", "-e", "change_phase=changed")
    assert rc == 0, out[-5000:]
    assert set(recap) == {PUB, SUB}, out[-3000:]
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), out[-8000:]


def test_changed_model_rollout_has_no_apply_error(sub):
    assert psql(sub, "shop", "SELECT apply_error_count || '/' || sync_error_count "
                             "FROM pg_stat_subscription_stats WHERE subname = 'tablesync_orders'") == "0/0"


def _keys(host, sql):
    return set(psql(host, "shop", sql).splitlines())


def _wait_equal(pub, sub, source_sql, target_sql):
    source = target = None

    def same():
        nonlocal source, target
        source, target = _keys(pub, source_sql), _keys(sub, target_sql)
        return source == target
    if not wait_for(same):
        raise AssertionError("differ: only on the source %s, only on the target %s"
                             % (sorted(source - target)[:20], sorted(target - source)[:20]))


def test_changed_row_filter_copied_the_table_again(pub, sub):
    """The new filter (DE) chose the rows: the table was copied again while the side effect's
    writer moved rows in and out of the filter; the target holds exactly the DE rows."""
    _wait_equal(pub, sub, "SELECT id || country FROM sales.shipments WHERE country = 'DE'",
                "SELECT id || country FROM sales.shipments")
    assert psql(sub, "shop", "SELECT count(*) FROM sales.shipments WHERE id > 1000") != "0"
    assert psql(sub, "shop", "SELECT count(*) FROM sales.shipments WHERE country <> 'DE'") == "0"


def test_check_playbook_follows_the_changed_model(pub, sub):
    """check.yml on the changed model: only the present set is reported, and it is healthy."""
    rc, out = run_playbook("check.yml", "-e", "change_phase=changed")
    assert rc == 0, out[-6000:]
    table = task_messages(out, "Show every sync set")
    assert len(table) == 2, table  # header + the one present set and target
    assert table[1].split()[:5] == ["orders", "logical", "change-pub/shop", "change-sub/shop", "streaming"], table
    assert not [line for line in table if "legacy" in line or "gone" in line], table


def test_check_verify_covers_the_added_table_and_the_changed_filter(pub, sub):
    """Verification compares the added table and the table copied again under its new filter:
    equal after the rollout, and a row missing on the target is found."""
    rc, out = run_playbook("check.yml", "-e", "change_phase=changed", "-e", "tablesync_check_verify=true")
    assert rc == 0, out[-6000:]
    psql(sub, "shop", "DELETE FROM sales.customers WHERE id = 100")  # a row missing in the added table
    try:
        rc, out = run_playbook("check.yml", "-e", "change_phase=changed", "-e", "tablesync_check_verify=true")
        assert rc != 0, out[-6000:]
        table = task_messages(out, "Show every sync set")
        assert len(table) == 2, table
        assert "1 rows differ (sales.customers)" in table[1], table
        breaches = task_messages(out, "Fail when a threshold is crossed")
        assert breaches == ["1 thresholds crossed:",
                            "sync set orders, change-pub/shop -> change-sub/shop: verification found "
                            "1 rows differ (sales.customers) (threshold 0)"], breaches
    finally:
        psql(sub, "shop", "INSERT INTO sales.customers VALUES (100, 'new customer') ON CONFLICT DO NOTHING")


COLUMNS = ("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attname) "
           "FROM pg_attribute WHERE attrelid = '{}'::regclass AND attnum > 0 AND NOT attisdropped")


def test_migration_during_writes_reached_the_target(pub, sub):
    """The side effect's migration (add with a default, rename, widen, add and fill) ran while
    the writer wrote: the target has the source's columns and rows, with no apply error."""
    for table in ("sales.orders", "sales.shipments"):
        assert psql(sub, "shop", COLUMNS.format(table)) == psql(pub, "shop", COLUMNS.format(table)), table
    assert psql(sub, "shop", COLUMNS.format("sales.orders")) == "discount numeric, id bigint, total numeric(10,2)"
    _wait_equal(pub, sub, "SELECT concat_ws('|', id, total, discount) FROM sales.orders",
                "SELECT concat_ws('|', id, total, discount) FROM sales.orders")
    _wait_equal(pub, sub, "SELECT concat_ws('|', id, country, note) FROM sales.shipments WHERE country = 'DE'",
                "SELECT concat_ws('|', id, country, note) FROM sales.shipments")


def test_partitioned_table_and_its_new_partition_reach_the_target(pub, sub):
    """sales.events is partitioned on the source, one plain table on the target (published via
    its root); the partition attached during the writes and the column added to the partitioned
    table reached the target, rows moved between partitions included."""
    assert psql(sub, "shop", "SELECT relkind FROM pg_class WHERE oid = 'sales.events'::regclass") == "r"
    assert psql(sub, "shop", COLUMNS.format("sales.events")) == psql(pub, "shop", COLUMNS.format("sales.events"))
    _wait_equal(pub, sub, "SELECT concat_ws('|', id, at, kind, note) FROM sales.events",
                "SELECT concat_ws('|', id, at, kind, note) FROM sales.events")
    assert psql(sub, "shop", "SELECT count(*) FROM sales.events WHERE at >= '2027-01-01'") != "0"
