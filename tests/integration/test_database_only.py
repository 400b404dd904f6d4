# -*- coding: utf-8 -*-
"""Database-only hosts (tablesync_database_only, docs/managed.md): site.yml deploys a logical
sync set between two servers reached only over TCP, as an administrator login that is not a
superuser and has what a managed service gives (CREATEROLE, CREATEDB, REPLICATION on the
publisher, pg_create_subscription on the subscriber), from the controller (ansible_connection
local, no become): no socket, no file, no package, no restart.

Both servers' pg_hba.conf have no ``local`` line (any connection over the socket, the roles'
usual path, is refused), and the run must not change pg_hba.conf or postgresql.auto.conf.
The settings are verified, not set: the first run fails naming each parameter to change and
creates nothing; once "the provider" sets them, the set is deployed, rows are compared, a new
row arrives, and a second run changes nothing. On PostgreSQL 15, where a subscription needs a
superuser, the run fails naming 16, before anything is created.
"""
import os
import sys

import psycopg2
import pytest
from psycopg2 import sql

from hostile import (SITE_SOURCE_DDL, failures, run_site, server_files, site_sets, start_cluster,
                     task_results)
from pgcluster import wait_for
from runner import run_tasks
from test_pg_fdw_roles import changed_tasks

PLAYBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         'playbooks')
CHECK = os.path.join(PLAYBOOKS, 'check.yml')
CUTOVER = os.path.join(PLAYBOOKS, 'cutover.yml')
MODULE = 'tablesync.postgresql.pg_sync_trigger'
ADMIN = 'tadmin'
ADMIN_PW = "Adm-'pw' $x \\ ü"
REPL_PW = 'Dbonly-Repl-pw-1'
FDW_PW = 'Dbonly-Fdw-pw-1'
TRIGGER_PW = 'Dbonly-Trg-pw-1'

# A settings hook (postgresql_server_settings_hook) as a user writes one for a provider's API;
# here the "API" is the test servers' superuser and their restart command.
HOOK = """
- name: The provider sets the parameters
  tablesync.postgresql.pg_settings:
    login_host: "{{ tablesync_address }}"
    login_port: "{{ tablesync_port }}"
    login_user: postgres
    login_password: "{{ test_provider_password }}"
    settings: "{{ postgresql_server_settings_needed }}"
  register: test_provider_result

- name: The provider reboots the instance
  ansible.builtin.command: "{{ test_restart_command }}"
  changed_when: true
  when: postgresql_server_restart_needed | length > 0 or test_provider_result.restart_required
"""


def tcp_only(cluster):
    """pg_hba.conf without local lines: the socket refuses every role."""
    path = cluster.query('SHOW hba_file')[0][0]
    with open(path) as f:
        lines = [line for line in f if not line.lstrip().startswith('local')]
    with open(path, 'w') as f:
        f.writelines(lines)
    cluster.execute('SELECT pg_reload_conf()')


def as_admin(cluster, text, dbname):
    conn = psycopg2.connect(host=cluster.host, port=cluster.port, user=ADMIN, password=ADMIN_PW,
                            dbname=dbname, connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(text)
    finally:
        conn.close()


@pytest.fixture(scope='module')
def site(pg_base):
    src = start_cluster('dbo_src', pg_base)
    dst = start_cluster('dbo_dst', pg_base)
    try:
        # what a managed service's administrator login has, no superuser
        src.execute(sql.SQL('CREATE ROLE {} LOGIN CREATEROLE CREATEDB REPLICATION PASSWORD %s')
                    .format(sql.Identifier(ADMIN)), (ADMIN_PW,))
        src.execute(sql.SQL('CREATE DATABASE shop OWNER {}').format(sql.Identifier(ADMIN)))
        as_admin(src, SITE_SOURCE_DDL, 'shop')
        dst.execute(sql.SQL('CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD %s')
                    .format(sql.Identifier(ADMIN)), (ADMIN_PW,))
        if dst.version() >= 16:
            dst.execute(sql.SQL('GRANT pg_create_subscription TO {}').format(sql.Identifier(ADMIN)))
        dst.execute(sql.SQL('CREATE DATABASE shop_rep OWNER {}').format(sql.Identifier(ADMIN)))
        tcp_only(src)
        tcp_only(dst)
        yield src, dst
    finally:
        dst.stop('immediate')
        src.stop('immediate')


def inventory(src, dst):
    def host(cluster):
        return {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable,
                'ansible_become': False, 'tablesync_database_only': True,
                'tablesync_address': cluster.host, 'tablesync_port': cluster.port,
                'tablesync_admin_user': ADMIN, 'tablesync_admin_password': ADMIN_PW,
                'tablesync_admin_sslmode': 'prefer'}
    # following column changes needs an event trigger, which needs a superuser
    sets = [dict(s, schema_changes='report') for s in site_sets() if s['method'] == 'logical']
    return {'all': {'hosts': {'src': host(src), 'dst': host(dst)}, 'vars': {
        'tablesync_sync_sets': sets, 'tablesync_replication_role': 'tablesync_replicator',
        'tablesync_replication_password': REPL_PW}}}


def rows(cluster, dbname):
    return cluster.query('SELECT id, note FROM sales.orders ORDER BY id', dbname=dbname)


def nothing_made(src, dst):
    assert src.query("SELECT count(*) FROM pg_roles WHERE rolname = 'tablesync_replicator'") == [(0,)]
    assert src.query('SELECT count(*) FROM pg_publication', dbname='shop') == [(0,)]
    assert src.query('SELECT count(*) FROM pg_replication_slots') == [(0,)]
    assert dst.query('SELECT count(*) FROM pg_subscription') == [(0,)]
    assert dst.query("SELECT to_regclass('sales.orders') IS NULL", dbname='shop_rep') == [(True,)]


def test_logical_set_between_database_only_hosts(site):
    src, dst = site
    before = {'src': server_files(src), 'dst': server_files(dst)}
    inv = inventory(src, dst)

    if dst.version() < 16:
        rc, out, err, data = run_site(inv)
        assert rc != 0
        assert 'need PostgreSQL 16 or later' in failures(data), failures(data)
        nothing_made(src, dst)
        return

    # the settings are the provider's: the run names what to change and creates nothing
    rc, out, err, data = run_site(inv)
    assert rc != 0
    found = failures(data)
    assert 'a database-only host' in found and 'max_slot_wal_keep_size = 10GB' in found, found
    nothing_made(src, dst)
    assert {'src': server_files(src), 'dst': server_files(dst)} == before

    # the subscriber's login lacks pg_create_subscription: the run fails on that host alone,
    # naming the grant, and the publisher is left untouched too (a failed server preparation
    # ends the rollout)
    assert 'max_logical_replication_workers = 10 (now 8, at least)' in found, found
    dst.execute(sql.SQL('REVOKE pg_create_subscription FROM {}').format(sql.Identifier(ADMIN)))
    rc, out, err, data = run_site(inv)
    assert rc != 0
    found = failures(data)
    assert found.startswith('dst ') and 'GRANT pg_create_subscription TO %s' % ADMIN in found \
        and 'src ' not in found, found
    nothing_made(src, dst)
    dst.execute(sql.SQL('GRANT pg_create_subscription TO {}').format(sql.Identifier(ADMIN)))

    # the settings hook stands for the provider's API: it sets what differs and reboots
    hook = os.path.join(os.path.dirname(src.datadir), 'settings_hook.yml')
    with open(hook, 'w') as f:
        f.write(HOOK)
    for name, cluster in (('src', src), ('dst', dst)):
        inv['all']['hosts'][name]['test_restart_command'] = cluster.restart_command()
        inv['all']['hosts'][name]['test_provider_password'] = cluster.password
    inv['all']['vars']['tablesync_settings_hook'] = hook
    before_hook = {'src': server_files(src), 'dst': server_files(dst)}
    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    hooked = sorted(host for _play, name, host, result in task_results(data)
                    if name.endswith('The provider sets the parameters') and result.get('changed'))
    assert hooked == ['dst', 'src'], hooked
    assert src.query("SHOW max_slot_wal_keep_size") == [('10GB',)]
    assert dst.query("SHOW max_logical_replication_workers") == [('10',)]
    # (kept for the runs below: with nothing to change, the hook is not run)
    # the hook (the provider) changed postgresql.auto.conf; the run itself writes no file
    assert server_files(src)['pg_hba.conf'] == before_hook['src']['pg_hba.conf']
    before = {'src': server_files(src), 'dst': server_files(dst)}
    assert ADMIN_PW not in out + err and REPL_PW not in out + err
    # the subscription is owned by the administrator login, which is no superuser
    assert dst.query('SELECT r.rolname, r.rolsuper, s.subpasswordrequired FROM pg_subscription s '
                     'JOIN pg_roles r ON r.oid = s.subowner') == [(ADMIN, False, True)]
    assert src.query("SELECT rolsuper, rolreplication, rolcreaterole FROM pg_roles "
                     "WHERE rolname = 'tablesync_replicator'") == [(False, True, False)]
    assert rows(dst, 'shop_rep') == rows(src, 'shop') and len(rows(src, 'shop')) == 5

    src.execute("INSERT INTO sales.orders VALUES (6, 'order 6'); "
                "UPDATE sales.orders SET note = 'changed' WHERE id = 2", dbname='shop')
    wait_for(lambda: rows(dst, 'shop_rep') == rows(src, 'shop'), what='changes applied')

    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert changed_tasks(data) == []
    assert {'src': server_files(src), 'dst': server_files(dst)} == before

    # check.yml with verify and a cutover, over the same logins (no socket, no become)
    rc, out, err, _data = run_site(dict(inv, all=dict(inv['all'], vars=dict(
        inv['all']['vars'], tablesync_check_verify=True))), playbook=CHECK, callback='default')
    assert rc == 0, out[-4000:] + err[-2000:]
    assert 'equal' in out and 'within the thresholds' in out, out[-4000:]
    rc, out, err, _data = run_site(dict(inv, all=dict(inv['all'], vars=dict(
        inv['all']['vars'], tablesync_cutover_sets=['orders'], tablesync_cutover_confirm=True,
        tablesync_cutover_wait_timeout=60))), playbook=CUTOVER, callback='default', verbosity=3)
    assert rc == 0, out[-4000:] + err[-2000:]
    assert ': clean' in out and 'applied up to' in out and '1 table equal, 6 rows' in out, out[-4000:]
    assert ADMIN_PW not in out + err and REPL_PW not in out + err


def test_what_needs_a_shell_or_a_superuser_is_refused_before_anything_runs(site):
    src, dst = site
    inv = inventory(src, dst)
    inv['all']['vars']['tablesync_sync_sets'] = site_sets()   # logical (follow), fdw, trigger
    rc, out, err, data = run_site(inv)
    assert rc != 0
    found = failures(data)
    assert 'Database-only hosts (tablesync_database_only) cannot take part in' in found, found
    for name in ('returns (method trigger, source src): mode queued', 'orders (source src): schema_changes follow'):
        assert name in found, found
    assert dst.query("SELECT count(*) FROM pg_database WHERE datname IN ('shop_live', 'shop_ret')") == [(0,)]


def test_fdw_set_between_database_only_hosts(site):
    """An fdw set read through its foreign tables: the source's login role made by the
    administrator login (no pg_hba.conf), the consumer's foreign server, user mapping (with the
    password non-superusers need) and foreign tables owned by the administrator login."""
    src, dst = site
    if dst.version() < 16:
        pytest.skip('the database-only fixture deploys on PostgreSQL 16 or later')
    # what the provider allows: the extension created for the administrator, who may use it
    dst.execute(sql.SQL('CREATE DATABASE shop_live OWNER {}').format(sql.Identifier(ADMIN)))
    dst.execute('CREATE EXTENSION postgres_fdw', dbname='shop_live')
    dst.execute(sql.SQL('GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO {}')
                .format(sql.Identifier(ADMIN)), dbname='shop_live')
    inv = inventory(src, dst)
    fdw = [s for s in site_sets() if s['method'] == 'fdw']
    inv['all']['vars'].update(tablesync_sync_sets=inv['all']['vars']['tablesync_sync_sets'] + fdw,
                              tablesync_fdw_role='tablesync_fdw', tablesync_fdw_password=FDW_PW,
                              fdw_consumer_mapping_roles=[ADMIN])
    before = {'src': server_files(src), 'dst': server_files(dst)}
    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert FDW_PW not in out + err and ADMIN_PW not in out + err
    assert {'src': server_files(src), 'dst': server_files(dst)} == before
    assert src.query("SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = 'tablesync_fdw'") \
        == [(False, False)]
    src.execute('INSERT INTO sales.stock VALUES (6, 60)', dbname='shop')
    source_rows = src.query('SELECT id, qty FROM sales.stock ORDER BY id', dbname='shop')
    conn = psycopg2.connect(host=dst.host, port=dst.port, user=ADMIN, password=ADMIN_PW,
                            dbname='shop_live', connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT id, qty FROM sales.stock ORDER BY id')
            assert cur.fetchall() == source_rows
    finally:
        conn.close()
    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert changed_tasks(data) == []


def trigger_databases(src, dst, source_db, target_db):
    """The provider's part of a trigger set (dblink in the source database, usable by the
    administrator) and the target database and table, owned by the administrator."""
    src.execute('CREATE EXTENSION IF NOT EXISTS dblink', dbname=source_db)
    src.execute(sql.SQL('GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO {}').format(
        sql.Identifier(ADMIN)), dbname=source_db)
    dst.execute(sql.SQL('CREATE DATABASE {} OWNER {}').format(sql.Identifier(target_db),
                                                              sql.Identifier(ADMIN)))
    as_admin(dst, 'CREATE SCHEMA sales; CREATE TABLE sales.returns (id int PRIMARY KEY, reason text)',
             target_db)


def test_trigger_capture_installs_as_an_administrator_without_superuser(site):
    """pg_sync_trigger as a CREATEROLE administrator (what the trigger roles would do on a
    database-only source): the NOLOGIN owner of the routines is created and the login grants
    itself the membership it needs to hand objects to it (SET ROLE, on 16+); the capture,
    a flush and a second, unchanged run work. dblink is the provider's part."""
    src, dst = site
    trigger_databases(src, dst, 'shop', 'shop_ret')
    args = dict(login_host=src.host, login_port=src.port, login_user=ADMIN, login_password=ADMIN_PW,
                login_db='shop', name='returns', tables=[{'name': 'sales.returns'}], mode='queued',
                backfill=True, target=dict(host=dst.host, port=dst.port, dbname='shop_ret',
                                           user=ADMIN, password=ADMIN_PW))
    first, second = run_tasks([{'name': 'install', MODULE: args, 'ignore_errors': True},
                               {'name': 'again', MODULE: args, 'ignore_errors': True}]).results
    assert first['changed'] and not first.get('failed'), first.get('msg')
    assert second['changed'] is False and not second.get('failed'), second.get('msg')
    if src.version() >= 16:
        assert 'GRANT "tablesync_trigger_owner" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE' \
            in first['queries']
    as_admin(src, "INSERT INTO sales.returns VALUES (6, 'reason 6'); "
                  "UPDATE sales.returns SET reason = 'changed' WHERE id = 2", 'shop')
    as_admin(src, "CALL tablesync.flush('returns')", 'shop')   # its own transactions
    query = 'SELECT id, reason FROM sales.returns ORDER BY id'
    assert dst.query(query, dbname='shop_ret') == src.query(query, dbname='shop')
    assert src.query("SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = 'tablesync_trigger_owner'") \
        == [(False, False)]


def test_trigger_set_in_immediate_mode_between_database_only_hosts(site):
    """A trigger set whose source is database-only, in mode immediate (no flush to schedule):
    site.yml installs the capture as the administrator login and the target's login role;
    each source commit is applied on the target; a second run changes nothing. (Mode queued
    is refused there: its flush needs a scheduler.)"""
    src, dst = site
    if dst.version() < 16:
        pytest.skip('the database-only fixture deploys on PostgreSQL 16 or later')
    src.execute(sql.SQL('CREATE DATABASE trg OWNER {}').format(sql.Identifier(ADMIN)))
    as_admin(src, SITE_SOURCE_DDL, 'trg')
    trigger_databases(src, dst, 'trg', 'trg_ret')
    inv = inventory(src, dst)
    trigger = {'name': 'trg_returns', 'method': 'trigger', 'source': {'host': 'src', 'database': 'trg'},
               'targets': [{'host': 'dst', 'database': 'trg_ret'}], 'tables': ['sales.returns']}
    fdw = [s for s in site_sets() if s['method'] == 'fdw']
    inv['all']['vars'].update(
        tablesync_sync_sets=inv['all']['vars']['tablesync_sync_sets'] + fdw + [trigger],
        tablesync_fdw_role='tablesync_fdw', tablesync_fdw_password=FDW_PW,
        fdw_consumer_mapping_roles=[ADMIN], tablesync_trigger_role='tablesync_trigger',
        tablesync_trigger_password=TRIGGER_PW)
    rc, out, err, data = run_site(inv)
    assert rc != 0 and 'mode queued needs a flush scheduler' in failures(data), failures(data)

    inv['all']['hosts']['src']['trigger_source_mode'] = 'immediate'
    before = {'src': server_files(src), 'dst': server_files(dst)}
    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert TRIGGER_PW not in out + err and ADMIN_PW not in out + err
    assert {'src': server_files(src), 'dst': server_files(dst)} == before
    as_admin(src, "INSERT INTO sales.returns VALUES (6, 'reason 6'); "
                  "UPDATE sales.returns SET reason = 'changed' WHERE id = 2; "
                  "DELETE FROM sales.returns WHERE id = 3", 'trg')
    query = 'SELECT id, reason FROM sales.returns ORDER BY id'
    assert dst.query(query, dbname='trg_ret') == src.query(query, dbname='trg')
    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert changed_tasks(data) == []
