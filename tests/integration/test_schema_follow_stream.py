"""pg_schema_follow: column changes carried inside the replication stream, while a writer runs.

The source's ALTER TABLEs (ADD COLUMN with and without a default, DROP COLUMN, RENAME COLUMN,
int -> bigint, varchar widening) are applied on the target at their place between row changes:
no apply error at all, and the target equals the source row by row afterwards.
"""
import json
import os
import time

import pytest
from psycopg2 import sql

from pgcluster import wait_for
from runner import run_module
from test_pg_subscription import SyncEnv, assert_ok
from test_schema_follow import columns, errors, rows, writer

FOLLOW = 'tablesync.postgresql.pg_schema_follow'
TARGET_TABLES = 'tablesync.postgresql.pg_target_tables'
SET = 'flw'
WIDENING_CASES = [tuple(c) for c in json.load(open(os.path.join(
    os.path.dirname(__file__), '..', 'cases', 'widening.json')))]


def follow(env, side, check=False, **kw):
    cluster, db = (env.pub, env.pubdb) if side == 'source' else (env.sub, env.subdb)
    args = dict(cluster.login(db), set=SET, side=side, **kw)
    return run_module(FOLLOW, args, check=check, diff=check)


@pytest.fixture
def stream(publisher, subscriber):
    env = SyncEnv(publisher, subscriber)
    env.publication = 'tablesync_' + SET
    env.pub_sql("CREATE TABLE t (id int PRIMARY KEY, q int, s varchar(20), old text NOT NULL DEFAULT 'x', v text)")
    env.pub_sql("INSERT INTO t SELECT g, g, 's' || g, 'o' || g, 'v' || g FROM generate_series(1, 300) g")
    assert_ok(follow(env, 'source', tables=['public.t']), changed=True)
    env.create_publication(sql.Identifier('public', 't'), sql.Identifier('tablesync_ddl', SET))
    assert_ok(run_module(TARGET_TABLES, dict(env.sub.login(env.subdb), source=env.publisher(),
                                             tables=['public.t'])), changed=True)
    assert_ok(follow(env, 'target'), changed=True)
    assert_ok(env.run(wait_for_sync=True), changed=True)
    yield env
    env.cleanup()


def test_install_is_idempotent_and_check_mode_changes_nothing(stream):
    env = stream
    for side in ('source', 'target'):
        assert_ok(follow(env, side, tables=['public.t'] if side == 'source' else []), changed=False)
    baseline = env.sub_sql('SELECT table_name, jsonb_array_length(columns) FROM tablesync_ddl.%s' % SET)
    assert baseline == [('t', 5)]


def test_least_privilege(stream):
    env = stream
    for query in (env.pub_sql, env.sub_sql):
        public_exec = query("SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                            "WHERE n.nspname = 'tablesync_ddl' AND has_function_privilege('public', p.oid, 'EXECUTE')"
                            " UNION ALL SELECT 'not definer ' || p.proname FROM pg_proc p JOIN pg_namespace n "
                            "ON n.oid = p.pronamespace WHERE n.nspname = 'tablesync_ddl' AND NOT p.prosecdef"
                            " UNION ALL SELECT 'no search_path ' || p.proname FROM pg_proc p JOIN pg_namespace n "
                            "ON n.oid = p.pronamespace WHERE n.nspname = 'tablesync_ddl' "
                            "AND NOT 'search_path=pg_catalog, pg_temp' = ANY (p.proconfig)")
        assert public_exec == []
        assert query("SELECT has_schema_privilege('public', 'tablesync_ddl', 'USAGE'), "
                     "has_table_privilege('public', 'tablesync_ddl.%s', 'SELECT')" % SET) == [(False, False)]


def test_migrations_flow_in_the_stream_with_no_apply_error(stream):
    env = stream
    with writer(env):
        time.sleep(0.5)
        env.pub_sql("ALTER TABLE t ADD COLUMN discount numeric DEFAULT 0.5, ADD COLUMN note text, "
                    "ADD COLUMN region text NOT NULL DEFAULT 'eu', DROP COLUMN old")
        time.sleep(0.5)
        env.pub_sql("UPDATE t SET note = 'n' || id WHERE id % 3 = 0")
        env.pub_sql('ALTER TABLE t RENAME COLUMN note TO remark')
        env.pub_sql("UPDATE t SET remark = remark || '!' WHERE id % 6 = 0")
        env.pub_sql('ALTER TABLE t ALTER COLUMN q TYPE bigint, ALTER COLUMN s TYPE varchar(40)')
        env.pub_sql("UPDATE t SET s = repeat('w', 35) WHERE id = 5")
        env.pub_sql("BEGIN; ALTER TABLE t ADD COLUMN late int; UPDATE t SET late = id WHERE id < 50; COMMIT")
        time.sleep(1)
    wait_for(lambda: rows(env, 'target') == rows(env, 'source'), timeout=90,
             what='target rows equal to the source')
    assert columns(env, 'target') == columns(env, 'source')
    assert errors(env) == (0, 0)
    assert env.sub_sql('SELECT count(*) FROM t WHERE discount = 0.5 AND region = %s', ('eu',))[0][0] >= 290


def test_unfollowable_change_stops_the_apply_with_the_reason(stream):
    env = stream
    env.pub_sql('ALTER TABLE t ADD COLUMN r double precision DEFAULT random()')
    env.pub_sql("INSERT INTO t (id, q, s, v) VALUES (5000, 1, 's', 'after')")
    wait_for(lambda: errors(env)[0] > 0, timeout=60, what='the apply worker to stop on the change')
    assert env.sub_sql("SELECT count(*) FROM t WHERE id = 5000") == [(0,)]
    assert 'r' not in [c[0] for c in columns(env, 'target')]
    assert 'tablesync: cannot follow public.t: column r was added with a volatile default' in env.sub.log_text()


@pytest.mark.parametrize('source, target, ok', WIDENING_CASES)
def test_sql_widening_rules_equal_the_python_ones(subscriber, source, target, ok):
    from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.ddl_follow_sql import WIDENING
    body = sql.SQL('CREATE FUNCTION pg_temp.w(s text, t text) RETURNS boolean LANGUAGE plpgsql AS {}').format(
        sql.Literal(WIDENING))
    conn = subscriber.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(body)
            cur.execute('SELECT pg_temp.w(%s, %s)', (source, target))
            assert cur.fetchone()[0] is ok
    finally:
        conn.close()


@pytest.mark.parametrize('initial_copy', ['tablesync', 'snapshot'])
def test_a_new_target_does_not_replay_the_history(stream, initial_copy):
    """The queue's earlier rows (here: a column dropped since) reach a target created later by
    its initial copy: they are history, skipped; the target has the source's current shape."""
    env = stream
    env.pub_sql('ALTER TABLE t DROP COLUMN old')
    env.pub_sql("ALTER TABLE t ADD COLUMN fresh text NOT NULL DEFAULT 'f'")
    late_db, late_sub = env.subdb + '_late', env.name + '_late'
    env.sub.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(late_db)))
    try:
        assert_ok(run_module(TARGET_TABLES, dict(env.sub.login(late_db), source=env.publisher(),
                                                 tables=['public.t'])), changed=True)
        assert_ok(run_module(FOLLOW, dict(env.sub.login(late_db), set=SET, side='target')), changed=True)
        assert_ok(run_module('tablesync.postgresql.pg_subscription', dict(
            env.sub.login(late_db), name=late_sub, publications=[env.publication],
            publisher=env.publisher(), initial_copy=initial_copy, wait_for_sync=True)), changed=True)
        env.pub_sql("INSERT INTO t (id, q, s, v) VALUES (7000, 1, 's', 'late')")
        wait_for(lambda: env.sub.query('SELECT count(*) FROM t WHERE id = 7000', dbname=late_db) == [(1,)],
                 timeout=60, what='a row after the copy')
        late = env.sub.query("SELECT attname FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 "
                             'AND NOT attisdropped ORDER BY attname', dbname=late_db)
        assert late == env.pub_sql("SELECT attname FROM pg_attribute WHERE attrelid = 't'::regclass "
                                   'AND attnum > 0 AND NOT attisdropped ORDER BY attname')
        assert env.sub.query('SELECT apply_error_count, sync_error_count FROM pg_stat_subscription_stats '
                             'WHERE subname = %s', (late_sub,), dbname=late_db) == [(0, 0)]
    finally:
        env.sub.execute(sql.SQL('DROP SUBSCRIPTION IF EXISTS {}').format(sql.Identifier(late_sub)), dbname=late_db)
        env.sub.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(sql.Identifier(late_db)))


def test_drift_is_visible_in_pg_sync_info_and_the_metrics(stream, tmp_path):
    """Both sides' last column change per table (pg_sync_info section schema_changes): equal
    once applied; a target changed by hand drifts, and the exporter counts its columns."""
    from test_check_playbook import run_exporter
    env = stream
    env.pub_sql('ALTER TABLE t ADD COLUMN extra int')
    wait_for(lambda: 'extra' in [c[0] for c in columns(env, 'target')], timeout=60, what='the column on the target')

    def info(side):
        cluster, db = (env.pub, env.pubdb) if side == 'source' else (env.sub, env.subdb)
        result = run_module('tablesync.postgresql.pg_sync_info', dict(cluster.login(db), gather=['schema_changes']))
        assert not result.get('failed'), result.get('msg')
        return dict((r['table'], r) for r in result['schema_changes'] if r['set'] == SET)
    source, target = info('source')['public.t'], info('target')['public.t']
    assert target['last_change'] == source['last_change'] > 1
    assert ['extra', 'integer'] in source['columns']
    assert target['table_columns'] == target['columns'] == source['columns']

    env.sub_sql('ALTER TABLE t ALTER COLUMN extra TYPE bigint')  # drift by hand
    assert info('target')['public.t']['table_columns'] != source['columns']
    env.sub_sql(sql.SQL('ALTER SUBSCRIPTION {} RENAME TO {}').format(sql.Identifier(env.name),
                                                                     sql.Identifier('tablesync_' + SET)))
    try:
        rc, err, lines = run_exporter(env.sub, str(tmp_path), [env.subdb])
    finally:
        env.sub_sql(sql.SQL('ALTER SUBSCRIPTION {} RENAME TO {}').format(sql.Identifier('tablesync_' + SET),
                                                                         sql.Identifier(env.name)))
    assert rc == 0, err
    labels = '{database="%s",set="%s",table="public.t"}' % (env.subdb, SET)
    assert 'tablesync_schema_drift_columns%s 2' % labels in lines  # extra integer vs extra bigint, both ways
    assert 'tablesync_schema_last_change%s %d' % (labels, source['last_change']) in lines


def test_baseline_holds_the_column_list_before_the_table_is_published(stream):
    """The roles install the capture before the publication has a table: its first queue row
    holds the set's column list, not every column (else check.yml would see drift)."""
    env = stream
    env.pub_sql('CREATE TABLE listed (id int PRIMARY KEY, shown text, secret text)')
    listed = {'name': 'public.listed', 'columns': ['id', 'shown'], 'where': 'id > 0'}
    result = follow(env, 'source', tables=['public.t', listed])
    assert_ok(result, changed=True)
    cols = env.pub_sql("SELECT columns FROM tablesync_ddl.%s WHERE table_name = 'listed'" % SET)[0][0]
    assert [c['name'] for c in cols] == ['id', 'shown']
