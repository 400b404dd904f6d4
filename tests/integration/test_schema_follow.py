"""pg_target_tables schema_changes=follow on a live logical subscription, while a writer runs.

Application-style migrations on the source (ADD COLUMN with and without a default, DROP COLUMN,
int -> bigint, varchar widening, SET/DROP NOT NULL); after each, pg_target_tables follows and the
subscription goes on and the target equals the source row by row. Between the source's DDL and
the follow call the apply worker stops at the first change carrying a new column and retries
(counted in apply_error_count; no change is lost); after the follow call no error is added.
Refusals (narrowing, a rename, a value that cannot be proven) fail and change nothing.
"""
import time

import pytest
from psycopg2 import sql

from helpers import BackgroundWriter
from pgcluster import wait_for
from runner import run_module
from test_pg_subscription import SyncEnv, assert_ok

TARGET_TABLES = 'tablesync.postgresql.pg_target_tables'


@pytest.fixture
def live(publisher, subscriber):
    env = SyncEnv(publisher, subscriber)
    env.pub_sql("CREATE TABLE t (id int PRIMARY KEY, q int, s varchar(20), old text NOT NULL DEFAULT 'x', v text)")
    env.pub_sql("INSERT INTO t SELECT g, g, 's' || g, 'o' || g, 'v' || g FROM generate_series(1, 300) g")
    env.create_publication(sql.Identifier('public', 't'))
    assert_ok(follow(env), changed=True)
    assert_ok(env.run(wait_for_sync=True), changed=True)
    yield env
    env.cleanup()


def follow(env, check=False, **kw):
    args = dict(env.sub.login(env.subdb), source=env.publisher(), tables=['public.t'],
                schema_changes='follow', catch_up_timeout=60)
    args.update(kw)
    return run_module(TARGET_TABLES, args, check=check, diff=check)


def writer(env):
    """Inserts, updates and deletes on the source until stopped; only columns every migration keeps."""
    def step(cur, n):
        i = 1000 + n
        cur.execute("INSERT INTO t (id, q, s, v) VALUES (%s, %s, 'w', 'new')", (i, i))
        cur.execute("UPDATE t SET v = v || '+' WHERE id = %s", (i % 300 + 1,))
        cur.execute('DELETE FROM t WHERE id = %s', (i - 7,))
    return BackgroundWriter(lambda: env.pub.connect(env.pubdb), step)


def rows(env, side):
    cols = [r[0] for r in env.pub_sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 "
        'AND NOT attisdropped ORDER BY attnum')]
    query = sql.SQL('SELECT {} FROM t ORDER BY id').format(sql.SQL(', ').join(map(sql.Identifier, cols)))
    return (env.pub_sql if side == 'source' else env.sub_sql)(query)


def columns(env, side):
    return (env.pub_sql if side == 'source' else env.sub_sql)(
        'SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute '
        "WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attname")


def errors(env):
    return env.sub_sql('SELECT apply_error_count, sync_error_count FROM pg_stat_subscription_stats '
                       'WHERE subname = %s', (env.name,))[0]


def assert_equal(env):
    wait_for(lambda: rows(env, 'target') == rows(env, 'source'), timeout=90,
             what='target rows equal to the source after the migration')
    assert columns(env, 'target') == columns(env, 'source')


def test_migrations_are_followed_while_writes_go_on(live):
    env = live
    with writer(env):
        # release 1: new columns (a fast default, a plain one, one NOT NULL with a default), an
        # old one dropped
        env.pub_sql("ALTER TABLE t ADD COLUMN discount numeric DEFAULT 0.5, ADD COLUMN note text, "
                    "ADD COLUMN region text NOT NULL DEFAULT 'eu', DROP COLUMN old")
        planned = follow(env, check=True)
        assert_ok(planned, changed=True)
        assert any('ADD COLUMN "discount" numeric DEFAULT' in q for q in planned['queries'])
        assert 'drop column old' in planned['column_changes']['public.t']['pending']
        done = follow(env)
        assert_ok(done, changed=True)
        assert done['column_changes']['public.t']['pending'] == []
        assert 'drop column old' in done['column_changes']['public.t']['changes']
        env.pub_sql("UPDATE t SET note = 'n' || id WHERE id % 3 = 0")
        # release 2: widen types (a table rewrite on both sides), require a column
        env.pub_sql('ALTER TABLE t ALTER COLUMN q TYPE bigint, ALTER COLUMN s TYPE varchar(40)')
        env.pub_sql("UPDATE t SET s = repeat('w', 35) WHERE id = 5")
        assert_ok(follow(env), changed=True)
        env.pub_sql("UPDATE t SET q = 0 WHERE q IS NULL")
        env.pub_sql('ALTER TABLE t ALTER COLUMN q SET NOT NULL')
        assert_ok(follow(env), changed=True)
        settled = errors(env)
        time.sleep(3)   # the writer goes on against the followed table
    assert_equal(env)
    assert errors(env) == settled
    assert env.sub_sql('SELECT count(*) FROM t WHERE discount = 0.5')[0][0] >= 290
    again = follow(env)
    assert_ok(again, changed=False)
    assert again['differences'] == {}


@pytest.mark.parametrize('ddl, message', [
    ('ALTER TABLE t ALTER COLUMN s TYPE varchar(10)', 'column s changed from character varying(20) to character varying(10)'),
    ('ALTER TABLE t RENAME COLUMN v TO w', 'looks like a rename'),
    ('ALTER TABLE t ADD COLUMN r double precision DEFAULT random()', 'cannot be read from the catalogs'),
])
def test_refusals_change_nothing(live, ddl, message):
    env = live
    before = columns(env, 'target')
    env.pub_sql(ddl)
    env.pub_sql("ALTER TABLE t ADD COLUMN harmless text")   # followable, but in the same failing call
    result = follow(env)
    assert result.get('failed') and message in result['msg'], result.get('msg')
    assert columns(env, 'target') == before
