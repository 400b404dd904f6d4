"""tablesync.postgresql.pg_cron_jobs against a server running pg_cron (the sid image has
postgresql-18-cron; elsewhere the tests skip), as a login that is not a superuser: what is
missing is named before anything is scheduled, check mode schedules nothing, jobs are
scheduled, updated in place and unscheduled, a paused job stays paused, and each kind of job
is left alone by the other."""
import os

import pytest
from psycopg2 import sql

from hostile import start_cluster
from runner import run_module

MODULE = 'tablesync.postgresql.pg_cron_jobs'
LOGIN = 'cronadmin'
PASSWORD = 'Cron-admin-pw-1'
FLUSH = [{'set': 'orders', 'database': 'shop', 'interval': '1h'}]
REFRESH = [{'set': 'stock', 'database': 'shop', 'schedule': '@daily',
            'copies': [{'name': 'sales.stock', 'concurrently': True}]}]


@pytest.fixture(scope='module')
def cron(pg_base):
    cluster = start_cluster('pgcron', pg_base)
    try:
        if cluster.query("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_cron'") == [(0,)]:
            pytest.skip('pg_cron is not installed for this server (the sid image has it)')
        with open(os.path.join(cluster.datadir, 'postgresql.auto.conf'), 'a') as f:
            f.write("shared_preload_libraries = 'pg_cron'\ncron.use_background_workers = on\n")
        cluster.restart()
        cluster.execute(sql.SQL('CREATE ROLE {} LOGIN CREATEDB PASSWORD %s').format(sql.Identifier(LOGIN)),
                        (PASSWORD,))
        cluster.execute('CREATE DATABASE shop')
        yield cluster
    finally:
        cluster.stop('immediate')


def run(cluster, check=False, diff=False, **args):
    login = dict(login_host=cluster.host, login_port=cluster.port, login_user=LOGIN,
                 login_password=PASSWORD, login_db='postgres')
    return run_module(MODULE, dict(login, **args), check=check, diff=diff)


def jobs(cluster):
    return cluster.query('SELECT jobid, jobname, schedule, database, username, active FROM cron.job '
                         'ORDER BY jobname')


def test_pg_cron_jobs_lifecycle(cron):
    # no extension: nothing to unschedule is no error; something to schedule fails naming it
    result = run(cron, flushes=[])
    assert not result.get('failed') and result['changed'] is False and result['pg_cron_version'] is None
    result = run(cron, flushes=FLUSH)
    assert result['failed'] and 'pg_cron is not installed in database postgres' in result['msg']

    # installed, but the login may not schedule in other databases yet: both grants named
    cron.execute('CREATE EXTENSION pg_cron')
    result = run(cron, flushes=FLUSH)
    assert result['failed'] and 'GRANT USAGE ON SCHEMA cron TO cronadmin' in result['msg'] \
        and 'GRANT EXECUTE ON FUNCTION cron.schedule_in_database(' in result['msg'], result['msg']
    cron.execute(sql.SQL('GRANT USAGE ON SCHEMA cron TO {0}; GRANT EXECUTE ON FUNCTION '
                         'cron.schedule_in_database(text,text,text,text,text,boolean) TO {0}')
                 .format(sql.Identifier(LOGIN)))
    result = run(cron, flushes=[{'set': 'orders', 'database': 'shop', 'interval': '7min'}])
    assert result['failed'] and 'has no pg_cron schedule' in result['msg'] and jobs(cron) == []

    # check mode plans and schedules nothing
    result = run(cron, check=True, diff=True, flushes=FLUSH)
    assert result['changed'] and len(result['queries']) == 2 and jobs(cron) == []
    assert result['diff']['before'] == {'jobs': {}}
    assert sorted(result['diff']['after']['jobs']) == ['tablesync-flush-history-purge', 'tablesync-flush-orders']

    result = run(cron, flushes=FLUSH, refreshes=REFRESH)
    assert result['changed'] and not result.get('failed'), result.get('msg')
    scheduled = jobs(cron)
    assert [(j[1], j[2], j[3], j[4]) for j in scheduled] == [
        ('tablesync-flush-history-purge', '17 3 * * *', 'postgres', LOGIN),
        ('tablesync-flush-orders', '0 * * * *', 'shop', LOGIN),
        ('tablesync-refresh-history-purge', '17 3 * * *', 'postgres', LOGIN),
        ('tablesync-refresh-stock', '@daily', 'shop', LOGIN)]
    assert cron.query("SELECT command FROM cron.job WHERE jobname = 'tablesync-refresh-stock'") == [
        ('REFRESH MATERIALIZED VIEW CONCURRENTLY "sales"."stock"',)]
    result = run(cron, flushes=FLUSH, refreshes=REFRESH)
    assert result['changed'] is False and result['queries'] == []

    # a new interval: the same job, updated in place
    orders_id = [j[0] for j in scheduled if j[1] == 'tablesync-flush-orders'][0]
    result = run(cron, flushes=[dict(FLUSH[0], interval='30s')])
    assert result['changed']
    assert cron.query("SELECT jobid, schedule FROM cron.job WHERE jobname = 'tablesync-flush-orders'") \
        == [(orders_id, '30 seconds')]

    # an operator paused it: it stays paused, named in a warning
    cron.execute('SELECT cron.alter_job(%s, active := false)', (orders_id,))
    result = run(cron, flushes=[dict(FLUSH[0], interval='30s')])
    assert result['changed'] is False and 'tablesync-flush-orders is paused' in ' '.join(result['warnings'])
    assert cron.query('SELECT active FROM cron.job WHERE jobid = %s', (orders_id,)) == [(False,)]

    # no flush wanted: the flush jobs go, the refresh jobs stay (another role's)
    result = run(cron, flushes=[])
    assert result['changed']
    assert [j[1] for j in jobs(cron)] == ['tablesync-refresh-history-purge', 'tablesync-refresh-stock']
    # a set name that is no set name is refused before anything is read
    result = run(cron, flushes=[{'set': 'Orders; DROP', 'database': 'shop'}])
    assert result['failed'] and 'not a valid sync set name' in result['msg']
