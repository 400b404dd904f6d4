# -*- coding: utf-8 -*-
"""Schema-wide sync sets through playbooks/site.yml and check.yml: a logical and a trigger set
with `schemas` get every table of their schema (a partitioned table by its root; unlogged and
excluded tables left out); a table created there while a writer keeps writing joins at the
next run with its rows; zero apply errors; a re-run changes nothing; check.yml verifies every
table row by row; a schema that does not exist fails before anything changes.
"""
import os
import time

import pytest

from helpers import BackgroundWriter
from hostile import (failures, needs_host_python, run_site, site_inventory, start_cluster,
                     task_results)

pytestmark = needs_host_python

PASSWORD = dict(tablesync_replication_password='Sch-Repl-pw-1',
                tablesync_fdw_password='Sch-Fdw-pw-1', tablesync_trigger_password='Sch-Trg-pw-1')
CHECK = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     'playbooks', 'check.yml')
SOURCE_DDL = '''
CREATE SCHEMA inv;
CREATE TABLE inv.items (id int PRIMARY KEY, name text);
CREATE TABLE inv.moves (id int, at date NOT NULL, qty int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE inv.moves_2025 PARTITION OF inv.moves FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE inv.moves_2026 PARTITION OF inv.moves FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE UNLOGGED TABLE inv.scratch (id int PRIMARY KEY);
CREATE TABLE inv.audit_log (id int PRIMARY KEY, line text);
CREATE TABLE public.elsewhere (id int PRIMARY KEY);
INSERT INTO inv.items SELECT g, 'item ' || g FROM generate_series(1, 50) g;
INSERT INTO inv.moves SELECT g, DATE '2025-06-01' + g * 3, g FROM generate_series(1, 100) g;
INSERT INTO inv.audit_log SELECT g, 'line' FROM generate_series(1, 5) g;
'''


PUSH_DDL = '''
CREATE SCHEMA push;
CREATE TABLE push.orders (id int PRIMARY KEY, total numeric(10,2));
'''


def schema_set(schemas=('inv',)):
    return [{'name': 'inventory', 'method': 'logical', 'source': {'host': 'src', 'database': 'shop'},
             'targets': [{'host': 'dst', 'database': 'shop_rep'}], 'schemas': list(schemas),
             'exclude_tables': ['inv.audit_log']},
            # a trigger set's target tables are the user's to create (as for any trigger set)
            {'name': 'pushed', 'method': 'trigger', 'source': {'host': 'src', 'database': 'shop'},
             'targets': [{'host': 'dst', 'database': 'shop_push'}], 'schemas': ['push']}]


def writer(src):
    """Inserts into a table of each set, one row per transaction, until stopped."""
    def step(cur, n):
        cur.execute("INSERT INTO inv.items VALUES (%s, 'written during the run')", (1001 + n,))
        cur.execute('INSERT INTO push.orders VALUES (%s, %s)', (1001 + n, n + 1))
    return BackgroundWriter(lambda: src.connect('shop'), step, pause=0.02)


@pytest.fixture(scope='module')
def site(pg_base):
    src = start_cluster('sch_src', pg_base)
    dst = start_cluster('sch_dst', pg_base)
    src.execute('CREATE DATABASE shop')
    src.execute(SOURCE_DDL + PUSH_DDL, dbname='shop')
    src.execute("INSERT INTO push.orders SELECT g, g FROM generate_series(1, 20) g", dbname='shop')
    dst.execute('CREATE DATABASE shop_push')
    dst.execute(PUSH_DDL, dbname='shop_push')
    yield src, dst
    dst.stop('immediate')
    src.stop('immediate')


def run(site, playbook=None, sets=None, **variables):
    src, dst = site
    inventory = site_inventory(src, dst, sets or schema_set(), **dict(PASSWORD, **variables))
    for name, cluster in (('src', src), ('dst', dst)):
        inventory['all']['hosts'][name]['tablesync_check_unix_socket'] = cluster.sockdir
    return run_site(inventory, playbook)


def target_tables(dst):
    return [r[0] for r in dst.query(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'inv' AND c.relkind IN ('r', 'p') ORDER BY 1", dbname='shop_rep')]


def equal(src, dst, table, order='1', db='shop_rep'):
    query = 'SELECT * FROM %s ORDER BY %s' % (table, order)
    assert dst.query(query, dbname=db) == src.query(query, dbname='shop'), table


def apply_errors(dst):
    return dst.query('SELECT COALESCE(sum(apply_error_count + sync_error_count), 0)::int'
                     ' FROM pg_stat_subscription_stats', dbname='shop_rep')[0][0]


def wait_rows(dst, table, count):
    deadline = time.time() + 60
    while time.time() < deadline:
        if dst.query('SELECT count(*) FROM %s' % table, dbname='shop_rep') == [(count,)]:
            return
        time.sleep(0.5)
    raise AssertionError('%s never reached %d rows' % (table, count))


def test_schema_set_rollout_new_table_rerun_and_check(site):
    src, dst = site
    rc, out, err, data = run(site)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    # the root of the partitioned table, not its partitions, not unlogged or excluded tables
    assert src.query("SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY tablename)"
                     " FROM pg_publication_tables WHERE pubname = 'tablesync_inventory'",
                     dbname='shop') == [('inv.items,inv.moves',)]
    assert 'inv.items' in target_tables(dst) and 'inv.moves' in target_tables(dst)
    assert 'inv.scratch' not in target_tables(dst) and 'inv.audit_log' not in target_tables(dst)
    equal(src, dst, 'inv.items')
    equal(src, dst, 'inv.moves', '1, 2')

    equal(src, dst, 'push.orders', db='shop_push')

    # a migration creates a table in each schema while a writer keeps writing: both join at the
    # next run (the trigger set's target table made by hand first, as for any trigger set)
    with writer(src) as written:
        src.execute("CREATE TABLE inv.suppliers (id bigint PRIMARY KEY, name text NOT NULL);"
                    " INSERT INTO inv.suppliers SELECT g, 'supplier ' || g FROM generate_series(1, 30) g;"
                    " INSERT INTO inv.items SELECT g, 'item ' || g FROM generate_series(51, 60) g;"
                    " CREATE TABLE push.lines (id int PRIMARY KEY, qty int);"
                    " INSERT INTO push.lines SELECT g, g * 2 FROM generate_series(1, 25) g", dbname='shop')
        dst.execute('CREATE TABLE push.lines (id int PRIMARY KEY, qty int)', dbname='shop_push')
        rc, out, err, data = run(site)
        assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
        src.execute("UPDATE inv.suppliers SET name = name || '!' WHERE id <= 3; DELETE FROM inv.items WHERE id = 1;"
                    " UPDATE push.lines SET qty = 0 WHERE id = 5; DELETE FROM push.lines WHERE id = 6", dbname='shop')
    assert written.steps > 10, written.steps
    assert 'inv.suppliers' in target_tables(dst)
    wait_rows(dst, 'inv.items', 59 + written.steps)
    for table in ('inv.items', 'inv.suppliers'):
        equal(src, dst, table)
    equal(src, dst, 'inv.moves', '1, 2')
    assert apply_errors(dst) == 0
    # the trigger set: what the writer queued and the new table's rows, applied by the next run
    rc, out, err, data = run(site)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    for table in ('push.orders', 'push.lines'):
        equal(src, dst, table, db='shop_push')

    # converged: nothing changes (the trigger queue is empty, so the flush applies nothing)
    rc, out, err, data = run(site)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    changed = sorted(set(name for _play, name, host, result in task_results(data) if result.get('changed')))
    assert changed == [], changed

    # check.yml completes the set the same way and verifies every table row by row
    rc, out, err, data = run(site, CHECK, tablesync_check_verify=True)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    compared = [r for _play, name, host, result in task_results(data) if 'pg_table_compare' in name
                for r in result.get('results', []) if not r.get('skipped')]
    tables = sorted(name for r in compared for name in r.get('tables', {}))
    assert tables == ['inv.items', 'inv.moves', 'inv.suppliers', 'push.lines', 'push.orders'], compared
    assert all(r['tables'][name]['equal'] for r in compared for name in r['tables']), compared


def test_missing_schema_fails_before_anything_changes(site):
    src, dst = site
    rc, out, err, data = run(site, sets=schema_set(schemas=('inv', 'nope')))
    assert rc != 0
    assert "schema(s) nope do not exist in database shop on src" in out + err, out[-3000:] + err[-2000:]
