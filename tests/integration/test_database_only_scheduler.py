# -*- coding: utf-8 -*-
"""Database-only servers without pg_cron whose queued trigger set is flushed, and whose fdw
set's local copies are refreshed, from a scheduler host (tablesync_scheduler: host,
docs/managed.md): the servers are reached only over TCP as an administrator login that is not a
superuser; the scheduler host is a real systemd container (the sid test image booted with
/sbin/init, its own PostgreSQL masked, on the host's network so it reaches the loopback
servers), reached through the podman connection and never in the play's hosts.

site.yml creates the scheduler's login on the source and on the consumer (LOGIN only; EXECUTE
on the flush routines, MAINTAIN on the copies, nothing on the queue or the data), writes a
service and a timer per set on the scheduler host that connect with a password file only their
system user reads, and the rows arrive through those timers. No password is in any output or
unit; nothing is written on the database servers; a second run changes nothing; once the
trigger set is immediate its units go and the consumer's stay (two hosts share the scheduler
host), and once the fdw set has no copies the scheduler host keeps nothing. A scheduler host
in the play without a part in a sync set is refused before anything runs, and a check-mode run
makes nothing on the servers or the scheduler host.
"""
import atexit
import subprocess
import time

import psycopg2
import pytest
from psycopg2 import sql

from hostile import SITE_SOURCE_DDL, failures, run_site, server_files
from pgcluster import IMAGE, wait_for
from test_database_only import (ADMIN, ADMIN_PW, CHECK, as_admin, database_only_servers,
                                inventory)
from test_database_only_methods import FDW_PW, admin_rows, trigger_databases
from test_pg_fdw_roles import changed_tasks

TRIGGER_PW = 'Dbonly-Trg-pw-2'
# libpq's password file needs : and \ escaped
SCHED_PW = 'Sched:pw\\2 ü'
SCHED_ROLE = 'tablesync_scheduler'
UNIT = 'tablesync-trigger-flush-trg_orders'
REFRESH_UNIT = 'tablesync-fdw-refresh-stock'
STOCK = 'SELECT id, qty FROM sales.stock ORDER BY id'
# the settings the provider set (test_database_only.py has the run that names them)
PROVIDER = {'max_logical_replication_workers': '10', 'max_slot_wal_keep_size': "'10GB'",
            'idle_replication_slot_timeout': "'7d'"}


class SchedulerHost(object):
    """A systemd container on the host's network (the scheduler host)."""

    def __init__(self, image):
        self.name = 'tablesync-it-sched-%d' % id(self)
        self.remove()
        # its own PostgreSQL would listen on the host's loopback: masked (a unit that is /dev/null)
        subprocess.run(['podman', 'run', '-d', '--name', self.name, '--network', 'host',
                        '--systemd', 'always', '-v', '/dev/null:/etc/systemd/system/postgresql@.service',
                        image, '/sbin/init'], check=True, stdout=subprocess.DEVNULL)
        atexit.register(self.remove)
        deadline = time.time() + 120
        while self.run(['systemctl', 'is-system-running'], check=False).strip() not in (
                'running', 'degraded'):
            assert time.time() < deadline, 'the scheduler container did not boot'
            time.sleep(1)

    def run(self, cmd, check=True):
        return subprocess.run(['podman', 'exec', self.name] + cmd, check=check,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True).stdout

    def remove(self):
        subprocess.run(['podman', 'rm', '-f', '-t', '0', self.name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)

    def host_vars(self):
        return {'ansible_connection': 'containers.podman.podman', 'ansible_host': self.name,
                'ansible_python_interpreter': '/usr/bin/python3'}


@pytest.fixture(scope='module')
def site(pg_base):
    if not IMAGE:
        pytest.skip('the scheduler host is a container of the test image (TABLESYNC_IT_IMAGE)')
    sched = SchedulerHost(IMAGE)
    try:
        for servers in database_only_servers(pg_base, 'dbs', conf=PROVIDER):
            yield servers + (sched,)
    finally:
        sched.remove()


def scheduler_inventory(src, dst, sched):
    inv = inventory(src, dst)
    inv['all']['hosts']['sched'] = sched.host_vars()
    inv['all']['vars'].update(
        tablesync_sync_sets=[{'name': 'trg_orders', 'method': 'trigger',
                              'source': {'host': 'src', 'database': 'trg'},
                              'targets': [{'host': 'dst', 'database': 'trg_copy'}],
                              'tables': ['sales.returns']},
                             {'name': 'stock', 'method': 'fdw', 'source': {'host': 'src', 'database': 'shop'},
                              'targets': [{'host': 'dst', 'database': 'shop_live'}],
                              'tables': ['sales.stock']}],
        tablesync_trigger_role='tablesync_trigger', tablesync_trigger_password=TRIGGER_PW,
        tablesync_fdw_role='tablesync_fdw', tablesync_fdw_password=FDW_PW,
        fdw_consumer_mapping_roles=[ADMIN], tablesync_scheduler_host='sched',
        tablesync_scheduler_password=SCHED_PW)
    inv['all']['hosts']['dst'].update(
        tablesync_scheduler='host', fdw_consumer_local_copies={'stock': {'on_calendar': '*:*:0/2'}})
    inv['all']['hosts']['src'].update(
        trigger_source_mode='queued', tablesync_scheduler='host', trigger_source_flush_interval='2s',
        trigger_source_flush_boot_delay='1s')
    return inv


SERVERS = {'tablesync_hosts': 'src,dst'}
QUERY = 'SELECT id, reason FROM sales.returns ORDER BY id'


def test_queued_trigger_set_flushed_from_a_scheduler_host(site):
    src, dst, sched = site
    if src.version() < 16:
        pytest.skip('the database-only fixture deploys on PostgreSQL 16 or later')
    src.execute(sql.SQL('CREATE DATABASE trg OWNER {}').format(sql.Identifier(ADMIN)))
    as_admin(src, SITE_SOURCE_DDL, 'trg')
    trigger_databases(src, dst, 'trg', 'trg_copy')
    # the provider's part of the fdw set: postgres_fdw, usable by the administrator
    dst.execute(sql.SQL('CREATE DATABASE shop_live OWNER {}').format(sql.Identifier(ADMIN)))
    dst.execute('CREATE EXTENSION postgres_fdw', dbname='shop_live')
    dst.execute(sql.SQL('GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO {}')
                .format(sql.Identifier(ADMIN)), dbname='shop_live')
    inv = scheduler_inventory(src, dst, sched)
    before = {'src': server_files(src), 'dst': server_files(dst)}

    # the scheduler host in the play, with no part in a sync set: refused before anything runs
    rc, out, err, data = run_site(inv)
    assert rc != 0 and 'named by tablesync_scheduler_host but in no sync set' in failures(data), \
        failures(data) or (out[-3000:] + err[-3000:])
    for server in (src, dst):
        assert server.query("SELECT count(*) FROM pg_roles WHERE rolname = %s", (SCHED_ROLE,)) == [(0,)]

    # check mode: nothing made on the servers or on the scheduler host
    rc, out, err, data = run_site(inv, extra_vars=SERVERS, check=True, diff=True)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert SCHED_PW not in out + err
    for server in (src, dst):
        assert server.query("SELECT count(*) FROM pg_roles WHERE rolname = %s", (SCHED_ROLE,)) == [(0,)]
    assert sched.run(['ls', '/etc/systemd/system']).split().count(UNIT + '.service') == 0
    assert sched.run(['test', '-e', '/etc/tablesync'], check=False) == ''
    assert sched.run(['id', 'tablesync-scheduler'], check=False).startswith('id:')

    rc, out, err, data = run_site(inv, extra_vars=SERVERS)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert SCHED_PW not in out + err and TRIGGER_PW not in out + err and ADMIN_PW not in out + err
    assert {'src': server_files(src), 'dst': server_files(dst)} == before

    # the scheduler's login: LOGIN only, the flush and nothing of the queue or the capture
    assert src.query('SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, '
                     'rolbypassrls FROM pg_roles WHERE rolname = %s', (SCHED_ROLE,)) \
        == [(True, False, False, False, False, False)]
    privileges = src.query(
        "SELECT has_function_privilege(%(r)s, 'tablesync.flush(text, bigint)', 'EXECUTE'), "
        "has_function_privilege(%(r)s, 'tablesync._flush_batch(text, bigint)', 'EXECUTE'), "
        "has_function_privilege(%(r)s, 'tablesync.drain(text)', 'EXECUTE'), "
        "has_table_privilege(%(r)s, 'tablesync.trigger_changes', 'SELECT'), "
        "has_table_privilege(%(r)s, 'sales.returns', 'SELECT'), "
        "pg_has_role(%(r)s, 'tablesync_trigger_owner', 'MEMBER')", {'r': SCHED_ROLE}, dbname='trg')
    assert privileges == [(True, False, False, False, False, False)]

    # on the consumer: MAINTAIN on the copy (it refreshes it), not even SELECT
    assert dst.query("SELECT c.relkind, has_table_privilege(%(r)s, c.oid, 'MAINTAIN'), "
                     "has_table_privilege(%(r)s, c.oid, 'SELECT'), rolcanlogin, rolsuper "
                     "FROM pg_class AS c, pg_roles WHERE c.oid = 'sales.stock'::regclass "
                     "AND rolname = %(r)s", {'r': SCHED_ROLE}, dbname='shop_live') \
        == [('m', True, False, True, False)]
    refresh = sched.run(['cat', '/etc/tablesync/scheduler/%s.sql' % REFRESH_UNIT])
    assert 'REFRESH MATERIALIZED VIEW CONCURRENTLY "sales"."stock";' in refresh
    assert sched.run(['systemctl', 'is-active', REFRESH_UNIT + '.timer']).strip() == 'active'

    # the units on the scheduler host: TCP as that login, the password in a file of its own user
    unit = sched.run(['systemctl', 'cat', UNIT + '.service'])
    assert 'User=tablesync-scheduler' in unit and '--host=%s' % src.host in unit
    assert '--port=%d' % src.port in unit and '--username=%s' % SCHED_ROLE in unit
    assert SCHED_PW not in unit and 'PGPASSWORD' not in unit
    assert sched.run(['systemctl', 'is-active', UNIT + '.timer']).strip() == 'active'
    assert sched.run(['stat', '-c', '%U %a', '/etc/tablesync/scheduler/src-trigger-flush.pgpass']).split() \
        == ['tablesync-scheduler', '600']
    assert sched.run(['stat', '-c', '%U %a', '/etc/tablesync/scheduler']).split() \
        == ['tablesync-scheduler', '700']

    # the password the server has is the one in the file (as libpq reads it back)
    psycopg2.connect(host=src.host, port=src.port, user=SCHED_ROLE, password=SCHED_PW,
                     dbname='trg', connect_timeout=10).close()
    assert sched.run(['cat', '/etc/tablesync/scheduler/src-trigger-flush.pgpass']) == '%s:%d:*:%s:%s\n' % (
        src.host, src.port, SCHED_ROLE, SCHED_PW.replace('\\', '\\\\').replace(':', '\\:'))

    # changes stay queued until the scheduler host's timer flushes them
    as_admin(src, "INSERT INTO sales.returns VALUES (6, 'reason 6'); "
                  "UPDATE sales.returns SET reason = 'queued' WHERE id = 2; "
                  "DELETE FROM sales.returns WHERE id = 3", 'trg')
    try:
        wait_for(lambda: dst.query(QUERY, dbname='trg_copy') == src.query(QUERY, dbname='trg'),
                 timeout=60, what='the changes applied by the scheduler host')
    finally:
        runs = sched.run(['journalctl', '-u', UNIT + '.service', '--no-pager', '-o', 'cat'],
                         check=False)
        print(runs[-3000:])
    assert 'Finished' in runs or 'Deactivated successfully' in runs, runs[-2000:]
    assert 'applied' not in runs   # the procedure's result is not written to the journal
    assert src.query('SELECT count(*) FROM tablesync.trigger_changes', dbname='trg') == [(0,)]
    # the copy, refreshed by the scheduler host's timer (within its randomized delay of 30 s)
    src.execute('INSERT INTO sales.stock VALUES (7, 70); UPDATE sales.stock SET qty = 0 WHERE id = 1',
                dbname='shop')
    try:
        wait_for(lambda: admin_rows(dst, 'shop_live', STOCK) == src.query(STOCK, dbname='shop'),
                 timeout=120, what='the copy refreshed by the scheduler host')
    finally:
        print(sched.run(['journalctl', '-u', REFRESH_UNIT + '.service', '--no-pager', '-o', 'cat'],
                        check=False)[-3000:])

    rc, out, err, data = run_site(inv, extra_vars=SERVERS)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert changed_tasks(data) == []
    # -vvv shows no password either
    rc, out, err, _data = run_site(inv, extra_vars=SERVERS, callback='default', verbosity=3)
    assert rc == 0, out[-4000:] + err[-2000:]
    assert SCHED_PW not in out + err and SCHED_PW.replace('\\', '\\\\') not in out + err

    # check.yml with verify, on every inventory host (the scheduler host has nothing to read)
    rc, out, err, _data = run_site(dict(inv, all=dict(inv['all'], vars=dict(
        inv['all']['vars'], tablesync_check_verify=True))), playbook=CHECK, callback='default')
    assert rc == 0, out[-4000:] + err[-2000:]
    assert 'trg_orders' in out and 'equal' in out and 'within the thresholds' in out, out[-4000:]
    assert SCHED_PW not in out + err

    # the source's set in mode immediate: its units and password file go from the scheduler
    # host, the consumer's (another host sharing it) stay and keep running
    inv['all']['hosts']['src']['trigger_source_mode'] = 'immediate'
    rc, out, err, data = run_site(inv, extra_vars=SERVERS)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    units = sched.run(['ls', '/etc/systemd/system']).split()
    assert UNIT + '.timer' not in units and UNIT + '.service' not in units
    assert sorted(sched.run(['ls', '/etc/tablesync/scheduler']).split()) == [
        'dst-fdw-refresh.pgpass', REFRESH_UNIT + '.sql']
    assert sched.run(['systemctl', 'is-active', REFRESH_UNIT + '.timer']).strip() == 'active'

    # no copies either: the scheduler host keeps nothing of either host, the copy goes
    inv['all']['hosts']['dst']['fdw_consumer_local_copies'] = {}
    rc, out, err, data = run_site(inv, extra_vars=SERVERS)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    units = sched.run(['ls', '/etc/systemd/system']).split()
    assert UNIT + '.timer' not in units and REFRESH_UNIT + '.timer' not in units
    assert sched.run(['ls', '/etc/tablesync/scheduler']).split() == []
    as_admin(src, "INSERT INTO sales.returns VALUES (7, 'reason 7')", 'trg')
    assert dst.query(QUERY, dbname='trg_copy') == src.query(QUERY, dbname='trg')
    assert dst.query("SELECT relkind FROM pg_class WHERE oid = 'sales.stock'::regclass", dbname='shop_live') \
        == [('f',)]
