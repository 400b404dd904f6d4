# -*- coding: utf-8 -*-
"""logical_subscriber through playbooks/site.yml: while a subscription's initial copy runs, the
run says how far it is (tables, rows, the publisher's estimate, time left) at the configured
interval; a copy that fails fails the run with the module's message; the rows arrive equal.

The target table has a trigger (ENABLE ALWAYS, so it fires in a replica session too) that
sleeps 2 ms per row: 10,000 rows take about 20 seconds to copy on any machine.
"""
import os

import pytest

from hostile import (failures, needs_host_python, run_logical_site, run_site, site_clusters,
                     site_inventory, site_sets, task_results)

pytestmark = needs_host_python

PASSWORD = dict(tablesync_replication_password='Prog-Repl-pw-1',
                tablesync_fdw_password='Prog-Fdw-pw-1', tablesync_trigger_password='Prog-Trg-pw-1')
ROWS = 10000
TARGET_DDL = '''
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id int PRIMARY KEY, note text);
CREATE FUNCTION public.slow_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.002);
    IF NEW.note = 'poison' THEN
        RAISE EXCEPTION 'poisoned row %', NEW.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER slow BEFORE INSERT ON sales.orders FOR EACH ROW EXECUTE FUNCTION public.slow_row();
ALTER TABLE sales.orders ENABLE ALWAYS TRIGGER slow;
'''
SAY = 'tablesync.postgresql.logical_subscriber : Say how far the initial copies are'
START = ('tablesync.postgresql.logical_subscriber : Subscriptions, one per sync set and target database'
         ' (each waits for its initial copy)')


@pytest.fixture(scope='module')
def site(pg_base):
    for src, dst in site_clusters('prog', pg_base):
        src.execute("INSERT INTO sales.orders SELECT g, 'order ' || g FROM generate_series(6, %d) g;"
                    " ANALYZE sales.orders" % ROWS, dbname='shop')
        dst.execute('CREATE DATABASE shop_rep')
        dst.execute(TARGET_DDL, dbname='shop_rep')
        yield src, dst


def run(site, **variables):
    return run_logical_site(site, dict(PASSWORD, **variables))


def said(data):
    """The progress messages of the run, one list of lines per report."""
    return [item['msg'] for _play, name, host, result in task_results(data) if name == SAY
            for item in result.get('results', []) if not item.get('skipped')]


def rows(cluster, db):
    return cluster.query('SELECT id, note FROM sales.orders ORDER BY id', dbname=db)


def test_progress_while_copying_then_equal_rows_and_a_quiet_rerun(site):
    src, dst = site
    rc, out, err, data = run(site, logical_subscriber_progress_interval=5)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    reports = said(data)
    assert reports, 'no progress was reported during a copy of about 20 seconds'
    first = reports[0]
    assert first[0] == 'orders -> shop_rep: snapshot copy, 1 copying now:', first
    assert first[1].startswith('sales.orders: ') and (' of ~%d rows (' % ROWS) in first[1], first
    assert first[1].endswith(' left'), first
    assert rows(dst, 'shop_rep') == rows(src, 'shop')
    # the background calls leave no status files behind (as the postgres OS user)
    jobs = [r['ansible_job_id'] for _play, name, host, result in task_results(data) if name == START
            for r in result.get('results', []) if 'ansible_job_id' in r]
    assert jobs, 'the subscription calls did not run in the background'
    async_dir = os.path.join(os.path.expanduser('~postgres'), '.ansible_async')
    assert [j for j in jobs if os.path.exists(os.path.join(async_dir, j))] == []

    # converged: nothing changes, nothing to report, the wait ends at the first look
    rc, out, err, data = run(site, logical_subscriber_progress_interval=5)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert said(data) == []
    changed = [(name, host) for _play, name, host, result in task_results(data)
               if result.get('changed') and 'logical_subscriber' in name]
    assert changed == []


def test_a_failed_copy_fails_the_run_with_its_message(site):
    src, dst = site
    # a new set whose copy fails on its last row: the error comes back through the wait
    src.execute("CREATE TABLE sales.bad (LIKE sales.orders INCLUDING ALL);"
                " INSERT INTO sales.bad SELECT g, CASE WHEN g = 300 THEN 'poison' ELSE 'ok' END"
                " FROM generate_series(1, 300) g", dbname='shop')
    dst.execute('CREATE DATABASE shop_bad')
    dst.execute(TARGET_DDL.replace('sales.orders', 'sales.bad'), dbname='shop_bad')
    sets = [s for s in site_sets() if s['method'] == 'logical'] + [
        {'name': 'bad', 'method': 'logical', 'source': {'host': 'src', 'database': 'shop'},
         'targets': [{'host': 'dst', 'database': 'shop_bad'}], 'tables': ['sales.bad']}]
    rc, out, err, data = run_site(site_inventory(src, dst, sets, **PASSWORD))
    assert rc != 0
    found = failures(data)
    assert 'poisoned row 300' in str(found), found
    # the failed call's status file stays for a later look, without any password in it
    async_dir = os.path.join(os.path.expanduser('~postgres'), '.ansible_async')
    for name in os.listdir(async_dir) if os.path.isdir(async_dir) else []:
        with open(os.path.join(async_dir, name)) as f:
            text = f.read()
        assert not any(p in text for p in PASSWORD.values()), name
    # the failed copy left nothing half-made: no rows, no subscription, no slot
    assert dst.query('SELECT count(*) FROM sales.bad', dbname='shop_bad') == [(0,)]
    assert dst.query("SELECT count(*) FROM pg_subscription WHERE subname = 'tablesync_bad'") == [(0,)]
    assert src.query("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%bad%'") == [(0,)]
    # the other set is untouched and still equal
    assert rows(dst, 'shop_rep') == rows(src, 'shop')


def test_progress_of_postgresqls_table_synchronisation(site):
    """initial_copy=tablesync: PostgreSQL's tablesync worker copies; the report counts the
    subscription's tables ready and the worker's copy."""
    src, dst = site
    src.execute("INSERT INTO sales.customers SELECT g, 'customer ' || g FROM generate_series(6, %d) g;"
                " ANALYZE sales.customers" % ROWS, dbname='shop')
    dst.execute('CREATE DATABASE shop_ts')
    dst.execute(TARGET_DDL.replace('sales.orders', 'sales.customers').replace('note', 'name'),
                dbname='shop_ts')
    sets = [s for s in site_sets() if s['method'] == 'logical'] + [
        {'name': 'tsync', 'method': 'logical', 'source': {'host': 'src', 'database': 'shop'},
         'targets': [{'host': 'dst', 'database': 'shop_ts'}], 'tables': ['sales.customers']}]
    rc, out, err, data = run_site(site_inventory(src, dst, sets, logical_subscriber_initial_copy='tablesync',
                                                 logical_subscriber_progress_interval=5, **PASSWORD))
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    reports = [r for r in said(data) if r[0].startswith('tsync -> shop_ts: ')]
    copying = [r for r in reports if r[0].endswith(' copying now:')]
    assert copying, reports
    assert ' tables ready, 1 copying now:' in copying[0][0], copying
    assert copying[0][1].startswith('sales.customers: ') and (' of ~%d rows (' % ROWS) in copying[0][1], copying
    assert (dst.query('SELECT id, name FROM sales.customers ORDER BY id', dbname='shop_ts')
            == src.query('SELECT id, name FROM sales.customers ORDER BY id', dbname='shop'))


def test_progress_of_a_table_added_to_a_set(site):
    """A table joins an existing set: the refresh copies it (tablesync worker) in the
    background and the run reports that copy the same way."""
    src, dst = site
    src.execute("CREATE TABLE sales.more (id int PRIMARY KEY, note text);"
                " INSERT INTO sales.more SELECT g, 'more ' || g FROM generate_series(1, %d) g;"
                " ANALYZE sales.more" % ROWS, dbname='shop')
    dst.execute(TARGET_DDL.replace('CREATE SCHEMA sales;', '').replace('sales.orders', 'sales.more')
                .replace('CREATE FUNCTION public.slow_row', 'CREATE OR REPLACE FUNCTION public.slow_row'),
                dbname='shop_rep')
    sets = [s for s in site_sets(logical_tables=('sales.orders', 'sales.more')) if s['method'] == 'logical']
    rc, out, err, data = run_site(site_inventory(src, dst, sets, logical_subscriber_progress_interval=5,
                                                 **PASSWORD))
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    copying = [r for r in said(data) if r[0].endswith(' copying now:')]
    assert copying, said(data)
    assert copying[0][0].startswith('orders -> shop_rep: ') and ' tables ready, 1 copying now:' in copying[0][0]
    assert copying[0][1].startswith('sales.more: ') and (' of ~%d rows (' % ROWS) in copying[0][1], copying
    for table in ('sales.orders', 'sales.more'):
        query = 'SELECT id, note FROM %s ORDER BY id' % table
        assert dst.query(query, dbname='shop_rep') == src.query(query, dbname='shop')
