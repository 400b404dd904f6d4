# -*- coding: utf-8 -*-
"""fdw and trigger sync sets between database-only hosts (docs/managed.md): servers reached only
over TCP, an administrator login that is not a superuser, Ansible on the controller without
become (the setting up is test_database_only.py's, the logical sets are tested there).

The fdw set is read through its foreign tables; the trigger capture installs as the
administrator; a trigger set runs in mode immediate, then in mode queued with its flush
scheduled by pg_cron in the source server (tablesync_scheduler: pg_cron, where the server has
pg_cron as managed services offer it): the job belongs to the administrator login, rows arrive
through it, a second run changes nothing, and back in mode immediate the job is gone. The
source runs pg_cron on PostgreSQL 16 or later (the sid image has postgresql-18-cron).
"""
import os

import psycopg2
import pytest
from psycopg2 import sql

from hostile import SITE_SOURCE_DDL, failures, run_site, server_files, site_sets
from pgcluster import wait_for
from runner import run_tasks
from test_database_only import (ADMIN, ADMIN_PW, PLAYBOOKS, as_admin, database_only_servers,
                                inventory)
from test_pg_fdw_roles import changed_tasks

MODULE = 'tablesync.postgresql.pg_sync_trigger'
CHECK = os.path.join(PLAYBOOKS, 'check.yml')
CUTOVER = os.path.join(PLAYBOOKS, 'cutover.yml')
FDW_PW = 'Dbonly-Fdw-pw-1'
TRIGGER_PW = 'Dbonly-Trg-pw-1'
# pg_cron as a provider runs it: jobs in background workers (no connection, no password); and
# the settings the sync sets need, as the provider set them (test_database_only.py has the
# run that names them and the hook that sets them)
PG_CRON = {'shared_preload_libraries': "'pg_cron'", 'cron.database_name': "'postgres'",
           'cron.use_background_workers': 'on', 'max_worker_processes': '18',
           'max_logical_replication_workers': '10', 'max_slot_wal_keep_size': "'10GB'",
           'idle_replication_slot_timeout': "'7d'"}


def provider_installs_pg_cron(cluster):
    """The provider's part: pg_cron in cron.database_name, usable by the administrator login
    (pg_cron revokes scheduling in other databases from PUBLIC)."""
    cluster.execute('CREATE EXTENSION pg_cron')
    cluster.execute(sql.SQL('GRANT USAGE ON SCHEMA cron TO {0}; GRANT EXECUTE ON FUNCTION '
                            'cron.schedule_in_database(text,text,text,text,text,boolean) TO {0}')
                    .format(sql.Identifier(ADMIN)))


def admin_rows(cluster, dbname, query):
    """Rows as the administrator login reads them (the owner of the consumer's objects)."""
    conn = psycopg2.connect(host=cluster.host, port=cluster.port, user=ADMIN, password=ADMIN_PW,
                            dbname=dbname, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall()
    finally:
        conn.close()


def with_vars(inv, **extra):
    return dict(inv, all=dict(inv['all'], vars=dict(inv['all']['vars'], **extra)))


@pytest.fixture(scope='module')
def site(pg_base):
    yield from database_only_servers(pg_base, 'dbm', conf=PG_CRON)


def test_fdw_set_between_database_only_hosts(site):
    """An fdw set read through its foreign tables: the source's login role made by the
    administrator login (no pg_hba.conf), the consumer's foreign server, user mapping (with the
    password non-superusers need) and foreign tables owned by the administrator login. Then as
    local copies: refused without a scheduler; with pg_cron, refreshed by a job of the
    administrator login in the consumer's server."""
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
    stock = 'SELECT id, qty FROM sales.stock ORDER BY id'
    assert admin_rows(dst, 'shop_live', stock) == src.query(stock, dbname='shop')
    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert changed_tasks(data) == []

    # local copies without a scheduler are refused; with pg_cron in the consumer's server (the
    # provider's part), the set switches to copies refreshed by a job of the administrator
    inv['all']['hosts']['dst']['fdw_consumer_local_copies'] = {'stock': {'cron': '2 seconds'}}
    rc, out, err, data = run_site(inv)
    assert rc != 0 and 'local copies need a refresh scheduler' in failures(data), failures(data)
    provider_installs_pg_cron(dst)
    inv['all']['hosts']['dst']['tablesync_scheduler'] = 'pg_cron'
    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert dst.query("SELECT relkind FROM pg_class WHERE oid = 'sales.stock'::regclass", dbname='shop_live') \
        == [('m',)]
    assert dst.query("SELECT jobname, schedule, command, database, username FROM cron.job "
                     "WHERE jobname = 'tablesync-refresh-stock'") == [
        ('tablesync-refresh-stock', '2 seconds', 'REFRESH MATERIALIZED VIEW CONCURRENTLY "sales"."stock"',
         'shop_live', ADMIN)]
    src.execute('INSERT INTO sales.stock VALUES (7, 70); UPDATE sales.stock SET qty = 0 WHERE id = 1',
                dbname='shop')
    wait_for(lambda: admin_rows(dst, 'shop_live', stock) == src.query(stock, dbname='shop'),
             timeout=60, what='the copy refreshed by pg_cron')
    assert {'src': server_files(src), 'dst': server_files(dst)} == before
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


def test_trigger_set_between_database_only_hosts_immediate_then_queued_with_pg_cron(site):
    """A trigger set whose source is database-only. Mode queued without a scheduler is refused.
    In mode immediate, site.yml installs the capture as the administrator login and the
    target's login role, each source commit is applied on the target and a second run changes
    nothing. In mode queued with pg_cron (tablesync_scheduler), the flush is a pg_cron job of
    the administrator login, the rows arrive through it, a second run changes nothing; back in
    mode immediate the job is unscheduled."""
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

    # mode queued, flushed by pg_cron: the provider has installed pg_cron (in cron.database_name,
    # postgres) and lets the administrator use it
    provider_installs_pg_cron(src)
    inv['all']['hosts']['src'].update(trigger_source_mode='queued', tablesync_scheduler='pg_cron',
                                      trigger_source_flush_interval='2s')
    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert TRIGGER_PW not in out + err and ADMIN_PW not in out + err
    assert src.query('SELECT jobname, schedule, command, database, username, active FROM cron.job '
                     'ORDER BY jobname')[1:] == [
        ('tablesync-flush-trg_returns', '2 seconds', "CALL tablesync.flush('trg_returns')", 'trg', ADMIN, True)]
    # with the daily purge of the flush runs' history (pg_cron keeps every run otherwise)
    assert src.query('SELECT jobname, database, username FROM cron.job ORDER BY jobname')[0] == (
        'tablesync-flush-history-purge', 'postgres', ADMIN)
    as_admin(src, "INSERT INTO sales.returns VALUES (7, 'reason 7'); "
                  "UPDATE sales.returns SET reason = 'queued' WHERE id = 4; "
                  "DELETE FROM sales.returns WHERE id = 5", 'trg')
    assert src.query('SELECT count(*) FROM tablesync.trigger_changes', dbname='trg') != [(0,)]
    wait_for(lambda: dst.query(query, dbname='trg_ret') == src.query(query, dbname='trg'),
             timeout=60, what='the changes applied by the pg_cron flush')
    assert src.query("SELECT count(*) > 0 FROM cron.job_run_details WHERE status = 'succeeded'") == [(True,)]
    # the purge job's command, run as the administrator: the flush runs older than 7 days go
    src.execute("UPDATE cron.job_run_details SET end_time = now() - interval '8 days' "
                "WHERE runid = (SELECT min(runid) FROM cron.job_run_details)")
    runs = src.query('SELECT count(*) FROM cron.job_run_details')[0][0]
    purge = src.query("SELECT command FROM cron.job WHERE jobname = 'tablesync-flush-history-purge'")[0][0]
    as_admin(src, purge, 'postgres')
    assert src.query("SELECT count(*) FROM cron.job_run_details WHERE end_time < now() - interval '7 days'") \
        == [(0,)] and src.query('SELECT count(*) FROM cron.job_run_details')[0][0] >= runs - 1
    assert {'src': server_files(src)['pg_hba.conf']} == {'src': before['src']['pg_hba.conf']}
    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert changed_tasks(data) == []

    # check.yml with verify and a cutover of the trigger and fdw sets, over the same logins
    rc, out, err, _data = run_site(with_vars(inv, tablesync_check_verify=True), playbook=CHECK,
                                   callback='default')
    assert rc == 0, out[-4000:] + err[-2000:]
    assert 'trg_returns' in out and 'equal' in out and 'within the thresholds' in out, out[-4000:]
    as_admin(src, "INSERT INTO sales.returns VALUES (8, 'reason 8')", 'trg')
    rc, out, err, _data = run_site(with_vars(
        inv, tablesync_cutover_sets=['trg_returns', 'stock'], tablesync_cutover_confirm=True,
        tablesync_cutover_wait_timeout=60), playbook=CUTOVER, callback='default', verbosity=3)
    assert rc == 0, out[-4000:] + err[-2000:]
    assert ': clean' in out and 'trg_returns' in out and 'stock' in out, out[-4000:]
    assert dst.query(query, dbname='trg_ret') == src.query(query, dbname='trg')
    assert TRIGGER_PW not in out + err and ADMIN_PW not in out + err

    # back to mode immediate: the set's job is unscheduled
    inv['all']['hosts']['src']['trigger_source_mode'] = 'immediate'
    rc, out, err, data = run_site(inv)
    assert rc == 0, failures(data) or (out[-4000:] + err[-3000:])
    assert src.query('SELECT count(*) FROM cron.job') == [(0,)]
