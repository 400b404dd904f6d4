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
superuser, the run fails naming 16, before anything is created. (The fdw and trigger sets
between such hosts: test_database_only_methods.py.)
"""
import os
import sys

import psycopg2
import pytest
from psycopg2 import sql

from hostile import (SITE_SOURCE_DDL, failures, run_site, server_files, site_sets, start_cluster,
                     task_results)
from pgcluster import wait_for
from test_pg_fdw_roles import changed_tasks

PLAYBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         'playbooks')
CHECK = os.path.join(PLAYBOOKS, 'check.yml')
CUTOVER = os.path.join(PLAYBOOKS, 'cutover.yml')
ADMIN = 'tadmin'
ADMIN_PW = "Adm-'pw' $x \\ ü"
REPL_PW = 'Dbonly-Repl-pw-1'

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


def database_only_servers(pg_base, prefix, conf=None):
    """Two servers reached only over TCP, each with the administrator login a managed service
    gives (and a database ``shop`` with the test tables on the source): a generator for the
    module fixtures. ``conf``: settings of both servers (PostgreSQL 16 or later only; those
    the server does not have are left out, except an extension's, named with a dot)."""
    src = start_cluster(prefix + '_src', pg_base)
    dst = start_cluster(prefix + '_dst', pg_base)
    try:
        for cluster in (src, dst):
            if conf and cluster.version() >= 16:
                known = set(r[0] for r in cluster.query('SELECT name FROM pg_settings'))
                with open(os.path.join(cluster.datadir, 'postgresql.auto.conf'), 'a') as f:
                    f.writelines('%s = %s\n' % (k, v) for k, v in sorted(conf.items())
                                 if k in known or '.' in k)
                cluster.restart()
        # what a managed service's administrator login has, no superuser
        src.execute(sql.SQL('CREATE ROLE {} LOGIN CREATEROLE CREATEDB REPLICATION PASSWORD %s')
                    .format(sql.Identifier(ADMIN)), (ADMIN_PW,))
        src.execute(sql.SQL('CREATE DATABASE shop OWNER {}').format(sql.Identifier(ADMIN)))
        as_admin(src, SITE_SOURCE_DDL, 'shop')
        dst.execute(sql.SQL('CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD %s')
                    .format(sql.Identifier(ADMIN)), (ADMIN_PW,))
        if dst.version() >= 16:
            dst.execute(sql.SQL('GRANT pg_create_subscription TO {}').format(sql.Identifier(ADMIN)))
        tcp_only(src)
        tcp_only(dst)
        yield src, dst
    finally:
        dst.stop('immediate')
        src.stop('immediate')


@pytest.fixture(scope='module')
def site(pg_base):
    yield from database_only_servers(pg_base, 'dbo')


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
    assert dst.query("SELECT count(*) FROM pg_database WHERE datname = 'shop_rep'") == [(0,)]


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
    # the target database was created by the administrator login (CREATEDB), and the
    # subscription is owned by it, which is no superuser
    assert dst.query("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop_rep'") == [(ADMIN,)]
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
