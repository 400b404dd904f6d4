# -*- coding: utf-8 -*-
"""Schema-wide sync sets through playbooks/site.yml and check.yml: a logical set with
`schemas` gets every table of its schema (a partitioned table by its root; unlogged and
excluded tables left out), a table created there joins at the next run with its rows, a re-run
changes nothing, check.yml verifies every table row by row, and a schema that does not exist
fails before anything changes.
"""
import os
import time

import pytest

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


def schema_set(schemas=('inv',)):
    return [{'name': 'inventory', 'method': 'logical', 'source': {'host': 'src', 'database': 'shop'},
             'targets': [{'host': 'dst', 'database': 'shop_rep'}], 'schemas': list(schemas),
             'exclude_tables': ['inv.audit_log']}]


@pytest.fixture(scope='module')
def site(pg_base):
    src = start_cluster('sch_src', pg_base)
    dst = start_cluster('sch_dst', pg_base)
    src.execute('CREATE DATABASE shop')
    src.execute(SOURCE_DDL, dbname='shop')
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


def equal(src, dst, table, order='1'):
    query = 'SELECT * FROM %s ORDER BY %s' % (table, order)
    assert dst.query(query, dbname='shop_rep') == src.query(query, dbname='shop'), table


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

    # a migration creates a table in the schema, writes go on: it joins at the next run
    src.execute("CREATE TABLE inv.suppliers (id bigint PRIMARY KEY, name text NOT NULL);"
                " INSERT INTO inv.suppliers SELECT g, 'supplier ' || g FROM generate_series(1, 30) g;"
                " INSERT INTO inv.items SELECT g, 'item ' || g FROM generate_series(51, 60) g", dbname='shop')
    rc, out, err, data = run(site)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert 'inv.suppliers' in target_tables(dst)
    src.execute("UPDATE inv.suppliers SET name = name || '!' WHERE id <= 3; DELETE FROM inv.items WHERE id = 1",
                dbname='shop')
    wait_rows(dst, 'inv.items', 59)
    for table in ('inv.items', 'inv.suppliers'):
        equal(src, dst, table)
    equal(src, dst, 'inv.moves', '1, 2')

    # converged: nothing changes
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
    assert tables == ['inv.items', 'inv.moves', 'inv.suppliers'], compared
    assert all(r['tables'][name]['equal'] for r in compared for name in r['tables']), compared


def test_missing_schema_fails_before_anything_changes(site):
    src, dst = site
    rc, out, err, data = run(site, sets=schema_set(schemas=('inv', 'nope')))
    assert rc != 0
    assert "schema(s) nope do not exist in database shop on src" in out + err, out[-3000:] + err[-2000:]
