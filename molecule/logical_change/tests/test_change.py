"""The subscribers follow a changed sync model (added/dropped table, new row filter, removed sets)."""

import pytest

from helpers import connect, psql, run_site, wait_for

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
    assert tables == "sales.customers,sales.orders,sales.shipments"
    assert psql(pub, "shop", "SELECT rowfilter FROM pg_publication_tables "
                             "WHERE pubname = 'tablesync_orders' AND tablename = 'shipments'") == "(country = 'DE'::text)"


def test_subscription_was_refreshed(sub):
    rel = psql(sub, "shop", "SELECT string_agg(format('%s:%s', srrelid::regclass, srsubstate), ',' ORDER BY srrelid::regclass::text) "
                            "FROM pg_subscription_rel")
    assert rel == "sales.customers:r,sales.orders:r,sales.shipments:r"
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
                             "WHERE id >= 100") == "101DE"


def test_absent_and_removed_sets_are_gone(pub, sub):
    subs = psql(sub, "postgres", "SELECT string_agg(subname, ',' ORDER BY subname) FROM pg_subscription")
    assert subs == "tablesync_orders"
    pubs = psql(pub, "shop", "SELECT string_agg(pubname, ',' ORDER BY pubname) FROM pg_publication")
    assert pubs == "tablesync_orders"
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
