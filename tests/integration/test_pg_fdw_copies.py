"""pg_foreign_table_copies against two real clusters: materialized-view copies of foreign tables,
unique key from the remote primary key, concurrent refresh, re-creation on remote changes."""
import threading

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
from psycopg2 import sql

from runner import run_tasks
from test_pg_fdw import FdwEnv, failed, ok, unchanged


def copies_task(env, refresh=False, state='present', maintain_role=None, **copy):
    spec = dict(name='local.orders', source='shop.orders')
    spec.update(copy)
    extra = {} if maintain_role is None else {'maintain_role': maintain_role}
    return env.task('pg_foreign_table_copies', copies=[spec], refresh=refresh, state=state, **extra)


def test_copy_created_refreshed_concurrently_and_recreated(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    run = run_tasks(env.setup_tasks(tables=['orders', 'audit'])
                    + [copies_task(env), copies_task(env)])
    assert run.rc == 0, run.output
    created = ok(run.results[3])
    assert created['created'] == ['local.orders']
    assert created['copies'] == [{'name': 'local.orders', 'source': 'shop.orders',
                                  'columns': ['id', 'note', 'amount'], 'unique_key': ['id'],
                                  'concurrently': True}]
    assert created['refresh_sql'] == ['REFRESH MATERIALIZED VIEW CONCURRENTLY "local"."orders"']
    unchanged(run.results[4])
    assert env.dst_sql('SELECT count(*) FROM local.orders') == [(10,)]

    env.src_sql("INSERT INTO sales.orders VALUES (11, 'new', 1)")
    # a reader in an open transaction does not block the concurrent refresh
    reader = subscriber.connect(env.dstdb, autocommit=False)
    safety = threading.Timer(120, reader.cancel)
    safety.start()
    try:
        with reader.cursor() as cur:
            cur.execute('SELECT count(*) FROM local.orders')
            assert cur.fetchone() == (10,)
        run = run_tasks([copies_task(env, refresh=True)])
        assert reader.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    finally:
        safety.cancel()
        reader.close()
    assert ok(run.results[0])['queries'] == [
        'REFRESH MATERIALIZED VIEW CONCURRENTLY "local"."orders"']
    assert env.dst_sql('SELECT count(*) FROM local.orders') == [(11,)]
    # the statement the timer runs works on its own too
    env.src_sql("INSERT INTO sales.orders VALUES (12, 'newer', 1)")
    env.dst_sql(created['refresh_sql'][0])
    assert env.dst_sql('SELECT count(*) FROM local.orders') == [(12,)]

    # the remote table gains a column: pg_foreign_tables follows, the copy is re-created
    env.src_sql('ALTER TABLE sales.orders ADD COLUMN discount int DEFAULT 3')
    check = run_tasks([env.tables_task(tables=['orders'], on_drift='update'),
                       copies_task(env)], check=True)
    assert ok(check.results[1])['queries'] == []  # the foreign table did not change (check)
    run = run_tasks([env.tables_task(tables=['orders'], on_drift='update'), copies_task(env)])
    assert ok(run.results[1])['recreated'] == ['local.orders']
    assert env.dst_sql('SELECT sum(discount) FROM local.orders') == [(36,)]
    run = run_tasks([copies_task(env, where='amount > 5', columns=['id', 'amount'],
                                 unique_key=[])])
    filtered = ok(run.results[0])
    assert filtered['refresh_sql'] == ['REFRESH MATERIALIZED VIEW "local"."orders"']
    assert env.dst_sql('SELECT count(*) FROM local.orders') == [(5,)]
    assert env.dst_sql("SELECT count(*) FROM pg_indexes WHERE schemaname = 'local'") == [(0,)]


def test_copy_check_mode_errors_and_absent(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    run = run_tasks(env.setup_tasks(tables=['orders', 'audit']))
    assert run.rc == 0, run.output
    check = ok(run_tasks([copies_task(env)], check=True).results[0])
    assert check['changed'] and check['created'] == ['local.orders']
    assert env.dst_sql("SELECT count(*) FROM pg_matviews WHERE matviewname = 'orders'") == [(0,)]

    env.dst_sql('CREATE TABLE public.taken (id int)')
    run = run_tasks([
        copies_task(env, source='shop.audit'),   # no primary key remotely: plain refresh
        copies_task(env, name='public.taken'),
        copies_task(env, source='shop.missing'),
        copies_task(env, columns=['id', 'nope']),
        copies_task(env, source='shop.audit', state='absent'),
        copies_task(env, source='shop.audit', state='absent'),
    ])
    no_key = ok(run.results[0])
    assert no_key['refresh_sql'] == ['REFRESH MATERIALIZED VIEW "local"."orders"']
    assert any('no primary key' in w for w in no_key['warnings'])
    failed(run.results[1], 'not a materialized view')
    failed(run.results[2], 'source shop.missing does not exist')
    failed(run.results[3], 'has no column(s) nope')
    assert ok(run.results[4])['queries'] == ['DROP MATERIALIZED VIEW "local"."orders"']
    unchanged(run.results[5])


def test_maintain_role_lets_a_login_refresh_without_owning(publisher, subscriber):
    """maintain_role: on 17+ MAINTAIN on the copy and USAGE on its schema for exactly that login,
    which can then refresh the copy (not read it); '' revokes it; before 17 the module fails
    naming 17 and makes nothing."""
    env = FdwEnv(publisher, subscriber)
    login = 'refresher_' + env.remote_user
    subscriber.execute(sql.SQL('CREATE ROLE {} LOGIN PASSWORD %s').format(sql.Identifier(login)),
                       ('Refresh-pw-1',))
    if subscriber.version() < 17:
        run = run_tasks(env.setup_tasks(tables=['orders'])
                        + [copies_task(env, maintain_role=login)])
        failed(run.results[-1], 'maintain_role needs PostgreSQL 17 or later')
        assert env.dst_sql("SELECT to_regclass('local.orders') IS NULL") == [(True,)]
        return
    run = run_tasks(env.setup_tasks(tables=['orders'])
                    + [copies_task(env, maintain_role=login), copies_task(env, maintain_role=login)])
    assert run.rc == 0, run.output
    assert ok(run.results[-2])['queries'][-2:] == [
        'GRANT MAINTAIN ON "local"."orders" TO "%s"' % login,
        'GRANT USAGE ON SCHEMA "local" TO "%s"' % login]
    unchanged(run.results[-1])
    env.src_sql("INSERT INTO sales.orders VALUES (11, 'new', 1)")
    conn = psycopg2.connect(host=subscriber.host, port=subscriber.port, user=login,
                            password='Refresh-pw-1', dbname=env.dstdb)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute('REFRESH MATERIALIZED VIEW CONCURRENTLY local.orders')
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute('SELECT count(*) FROM local.orders')
    finally:
        conn.close()
    assert env.dst_sql('SELECT count(*) FROM local.orders') == [(11,)]
    run = run_tasks([copies_task(env, maintain_role='')])
    assert ok(run.results[0])['queries'] == ['REVOKE MAINTAIN ON "local"."orders" FROM "%s"' % login]
