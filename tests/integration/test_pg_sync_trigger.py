"""pg_sync_trigger on real clusters: publisher = source, subscriber (or a throw-away cluster that
the test stops) = target. Every test works in its own databases."""
import random
import threading
import time

import psycopg2
import pytest

from pgcluster import Cluster
from runner import run_tasks

MODULE = 'tablesync.postgresql.pg_sync_trigger'
WRITER = 'tablesync_writer'
WRITER_PASSWORD = 'Wr1ter-Tr1gger-pw'

TYPES_DDL = '''
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.items (
    id integer,
    region text,
    label text,
    amount numeric(12, 4),
    at timestamptz,
    doc jsonb,
    blob bytea,
    tags text[],
    grid integer[],
    feeling mood,
    ratio double precision,
    PRIMARY KEY (id, region)
);
'''

TYPES_ROWS = [
    (1, 'eu', "it's a \"quote\" and a \\ backslash", '12.3400', '2024-02-29 23:59:59.123456+05:30',
     '{"a": [1, null, "x"], "b": {"c": "d\'e"}}', b'\x00\x01\xff\\', ['a', None, 'b"c', "d'e"],
     [[1, 2], [3, 4]], 'happy', 0.1),
    (2, 'us', None, None, None, None, None, None, None, None, None),
    (3, 'eu', '', '-0.0001', 'infinity', '[]', b'', [], [], 'sad', float('inf')),
    (4, 'ap', 'ünïcødé ✓ \t tab\nnewline', '99999999.9999', '1970-01-01 00:00:00+00',
     '"just a string"', b'bytes', ['NULL', 'null', ''], [None], 'ok', -1.5e-300),
]


@pytest.fixture(scope='module')
def spare(pg_base):
    """A target cluster the tests may stop and start."""
    c = Cluster('trigger_target', pg_base).start()
    yield c
    c.stop('immediate')


def _quiet_superuser_conn(cluster, dbname='postgres'):
    conn = cluster.connect(dbname)
    with conn.cursor() as cur:
        cur.execute("SET log_statement = 'none'")
    return conn


def ensure_writer(cluster):
    """The target role the triggers connect as (created without logging its password)."""
    conn = _quiet_superuser_conn(cluster)
    with conn.cursor() as cur:
        cur.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (WRITER,))
        if not cur.fetchone():
            cur.execute('CREATE ROLE %s LOGIN PASSWORD %%s' % WRITER, (WRITER_PASSWORD,))
    conn.close()


def make_db(cluster, db, ddl, writer_schemas=None):
    cluster.execute('CREATE DATABASE "%s"' % db)
    conn = cluster.connect(db)
    with conn.cursor() as cur:
        cur.execute(ddl)
        for schema in writer_schemas or ():
            cur.execute('GRANT USAGE ON SCHEMA "%s" TO %s' % (schema.replace('"', '""'), WRITER))
            cur.execute('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA '
                        '"%s" TO %s' % (schema.replace('"', '""'), WRITER))
    conn.close()


def make_pair(source, target, db, ddl, schemas=('public',)):
    ensure_writer(target)
    make_db(source, db, ddl)
    make_db(target, db, ddl, schemas)


def sync_args(source, target, db, name, tables, **extra):
    args = dict(source.login(db), name=name, tables=tables,
                target=dict(host=target.host, port=target.port, dbname=db, user=WRITER,
                            password=WRITER_PASSWORD))
    args.update(extra)
    return args


def run(args, **kw):
    result = run_tasks([{'name': 'sync', MODULE: args, 'ignore_errors': True}], **kw)
    assert result.results, result.output
    return result.results[0]


def rows(cluster, db, table, order):
    return cluster.query('SELECT t::text FROM %s AS t ORDER BY %s' % (table, order), dbname=db)


def assert_same(source, target, db, table, order):
    have, want = rows(target, db, table, order), rows(source, db, table, order)
    assert have == want, 'target differs:\nsource %r\ntarget %r' % (want[:20], have[:20])


def backlog(cluster, db, name):
    return cluster.query('SELECT count(*) FROM tablesync.trigger_changes WHERE set_name = %s',
                         (name,), dbname=db)[0][0]


def insert_items(cluster, db, items):
    conn = cluster.connect(db)
    with conn.cursor() as cur:
        for item in items:
            blob = psycopg2.Binary(item[6]) if item[6] is not None else None
            cur.execute('INSERT INTO public.items VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '
                        '%s)', item[:6] + (blob,) + item[7:])
    conn.close()


def test_check_mode_then_all_operations_and_types_arrive_unchanged(publisher, subscriber):
    db = 'trg_types'
    make_pair(publisher, subscriber, db, TYPES_DDL)
    insert_items(publisher, db, TYPES_ROWS[:1])
    args = sync_args(publisher, subscriber, db, 'types', ['public.items'], backfill=True)

    checked = run(args, check=True, diff=True)
    assert checked['changed'] and not checked.get('failed'), checked
    assert checked['sync_set']['tables'][0]['key_columns'] == ['id', 'region']
    assert publisher.query("SELECT to_regnamespace('tablesync')", dbname=db) == [(None,)]

    first = run(args, diff=True)
    assert first['changed'] and not first.get('failed'), first
    assert first['backfilled'] == {'public.items': 1}
    assert first['diff']['before'] == {} and first['diff']['after']['mode'] == 'queued'

    insert_items(publisher, db, TYPES_ROWS[1:])
    publisher.execute("UPDATE public.items SET label = label || ' (edited)', ratio = 2.5 "
                      "WHERE id IN (1, 2)", dbname=db)
    publisher.execute("UPDATE public.items SET region = 'moved' WHERE id = 3", dbname=db)
    publisher.execute("DELETE FROM public.items WHERE id = 4", dbname=db)
    publisher.execute("INSERT INTO public.items (id, region, label) VALUES (4, 'ap', 'again')",
                      dbname=db)
    flushed = run(dict(args, flush=True))
    assert flushed['changed'] and flushed['flushed'] > 0 and flushed['backlog'] == 0, flushed
    assert_same(publisher, subscriber, db, 'public.items', 'id, region')

    publisher.execute("TRUNCATE public.items", dbname=db)
    insert_items(publisher, db, TYPES_ROWS[2:3])
    again = run(dict(args, flush=True))
    assert again['flushed'] == 2
    assert_same(publisher, subscriber, db, 'public.items', 'id, region')

    idle = run(dict(args, flush=True))
    assert idle['changed'] is False and idle['queries'] == [], idle


def test_hostile_names_key_columns_and_no_primary_key(publisher, subscriber):
    db = 'trg_names'
    schema = 'Sales; "DROP"'
    table = 'Ordér Items ' + 'x' * 50
    assert len(table.encode('utf-8')) == 63
    key = 'Kéy "id"'
    column = 'Amount;--"'
    qs, qt, qk, qc = ('"%s"' % n.replace('"', '""') for n in (schema, table, key, column))
    ddl = ('CREATE SCHEMA %s; CREATE TABLE %s.%s (%s bigint PRIMARY KEY, %s text);'
           'CREATE TABLE public.nokey (code text NOT NULL, n int);' % (qs, qs, qt, qk, qc))
    make_pair(publisher, subscriber, db, ddl, schemas=(schema, 'public'))
    subscriber.execute('CREATE UNIQUE INDEX ON public.nokey (code)', dbname=db)
    source_name = '"%s"."%s"' % (schema.replace('"', '""'), table)

    refused = run(sync_args(publisher, subscriber, db, 'names',
                            [source_name, {'name': 'public.nokey', 'key_columns': ['code']}]))
    assert refused.get('failed') and 'key_columns (code) of table public.nokey are neither' \
        in refused['msg'], refused
    assert publisher.query("SELECT to_regnamespace('tablesync')", dbname=db) == [(None,)]
    publisher.execute('CREATE UNIQUE INDEX ON public.nokey (code)', dbname=db)

    args = sync_args(publisher, subscriber, db, 'names',
                     [source_name, {'name': 'public.nokey', 'key_columns': ['code']}],
                     server='Srv "odd"; name', flush=True)
    first = run(args)
    assert first['changed'] and not first.get('failed'), first
    publisher.execute('INSERT INTO %s.%s VALUES (1, %%s), (2, NULL)' % (qs, qt), ("a'b;c",),
                      dbname=db)
    publisher.execute("UPDATE %s.%s SET %s = 'changed' WHERE %s = 2" % (qs, qt, qc, qk), dbname=db)
    publisher.execute("INSERT INTO public.nokey VALUES ('k1', 1), ('k2', 2)", dbname=db)
    publisher.execute("UPDATE public.nokey SET code = 'k3' WHERE code = 'k1'", dbname=db)
    assert run(args)['flushed'] == 6
    assert_same(publisher, subscriber, db, '%s.%s' % (qs, qt), qk)
    assert_same(publisher, subscriber, db, 'public.nokey', 'code')
    assert run(args)['changed'] is False


def test_verify_target_names_every_problem(publisher, subscriber):
    db = 'trg_verify'
    make_pair(publisher, subscriber, db,
              'CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY)')
    subscriber.execute('DROP TABLE b; ALTER TABLE a DROP COLUMN v', dbname=db)
    failed = run(sync_args(publisher, subscriber, db, 'verify', ['public.a', 'public.b']))
    assert failed.get('failed'), failed
    assert 'target table public.a has no column(s) v' in failed['msg']
    assert 'target table public.b does not exist' in failed['msg']
    assert publisher.query("SELECT to_regnamespace('tablesync')", dbname=db) == [(None,)]


def _writer(cluster, db, stop, errors, seed, start_id=100000):
    """Random inserts, updates (also of the key) and deletes until stop is set."""
    rnd = random.Random(seed)
    conn = cluster.connect(db)
    next_id = start_id
    try:
        with conn.cursor() as cur:
            while not stop.is_set():
                action = rnd.random()
                if action < 0.5:
                    cur.execute('INSERT INTO t (id, v) VALUES (%s, %s)', (next_id, 'new'))
                    next_id += 1
                elif action < 0.8:
                    cur.execute('UPDATE t SET v = v || %s WHERE id = %s',
                                ('+', rnd.randrange(0, next_id)))
                elif action < 0.9:
                    cur.execute('UPDATE t SET id = id + 1000000 WHERE id = %s',
                                (rnd.randrange(0, 20000),))
                else:
                    cur.execute('DELETE FROM t WHERE id = %s', (rnd.randrange(0, next_id),))
    except psycopg2.Error as e:  # pragma: no cover - reported by the test
        errors.append(e)
    finally:
        conn.close()


def start_writer(cluster, db, seed):
    stop, errors = threading.Event(), []
    thread = threading.Thread(target=_writer, args=(cluster, db, stop, errors, seed))
    thread.start()
    return stop, errors, thread


def test_backfill_under_concurrent_writes(publisher, subscriber):
    db = 'trg_backfill'
    make_pair(publisher, subscriber, db, 'CREATE TABLE t (id bigint PRIMARY KEY, v text)')
    publisher.execute("INSERT INTO t SELECT g, 'old' FROM generate_series(0, 39999) g", dbname=db)
    stop, errors, thread = start_writer(publisher, db, 1)
    try:
        time.sleep(0.5)
        first = run(sync_args(publisher, subscriber, db, 'backfill', ['public.t'], backfill=True,
                              batch_size=500))
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert not errors and first['changed'] and not first.get('failed'), (errors, first)
    assert first['backfilled']['public.t'] > 30000
    final = run(sync_args(publisher, subscriber, db, 'backfill', ['public.t'], backfill=True,
                          flush=True))
    assert final['backlog'] == 0 and not final['backfilled'], final
    assert_same(publisher, subscriber, db, 't', 'id')


def test_queued_target_outage_loses_nothing(publisher, spare):
    db = 'trg_outage'
    make_pair(publisher, spare, db, 'CREATE TABLE t (id bigint PRIMARY KEY, v text)')
    publisher.execute("INSERT INTO t SELECT g, 'old' FROM generate_series(0, 19999) g", dbname=db)
    args = sync_args(publisher, spare, db, 'outage', ['public.t'], backfill=True, flush=True)
    assert not run(args).get('failed')
    stop, errors, thread = start_writer(publisher, db, 2)
    try:
        time.sleep(0.3)
        spare.stop('immediate')
        time.sleep(1.0)
        down = run(args)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors  # source writes never failed
    assert down.get('failed'), down
    assert 'could not apply' in down['msg'] and 'stay queued' in down['msg'], down['msg']
    assert backlog(publisher, db, 'outage') > 0
    spare.restart()
    up = run(args)
    assert not up.get('failed') and up['backlog'] == 0 and up['flushed'] > 0, up
    assert_same(publisher, spare, db, 't', 'id')


def test_immediate_mode_applies_at_commit_and_fails_when_target_down(publisher, spare):
    db = 'trg_immediate'
    make_pair(publisher, spare, db, 'CREATE TABLE t (id int PRIMARY KEY, v text)')
    publisher.execute("INSERT INTO t VALUES (1, 'queued before')", dbname=db)
    args = sync_args(publisher, spare, db, 'imm', ['public.t'], mode='immediate', backfill=True)
    first = run(args)
    assert first['changed'] and not first.get('failed'), first
    assert first['sync_set']['mode'] == 'immediate'
    assert rows(spare, db, 't', 'id') == [('(1,"queued before")',)]

    conn = publisher.connect(db, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (2, 'in tx')")
        cur.execute("SAVEPOINT s")
        cur.execute("INSERT INTO t VALUES (3, 'rolled back')")
        cur.execute("ROLLBACK TO SAVEPOINT s")
        assert rows(spare, db, 't', 'id') == [('(1,"queued before")',)]  # not before commit
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (4, 'aborted')")
    conn.rollback()
    assert_same(publisher, spare, db, 't', 'id')
    assert backlog(publisher, db, 'imm') == 0

    spare.stop('fast')
    try:
        with pytest.raises(psycopg2.Error) as failure:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO t VALUES (5, 'target down')")
            conn.commit()
        conn.rollback()
        message = str(failure.value)
        assert 'could not apply 1 change(s) of sync set "imm"' in message, message
        assert 'mode immediate' in failure.value.diag.message_hint
        assert publisher.query('SELECT count(*) FROM t WHERE id = 5', dbname=db) == [(0,)]
    finally:
        conn.close()
        spare.restart()
    publisher.execute("INSERT INTO t VALUES (6, 'back')", dbname=db)
    assert_same(publisher, spare, db, 't', 'id')
    assert run(args)['changed'] is False


def test_mode_switch_and_table_removal_drain_first(publisher, subscriber):
    db = 'trg_switch'
    make_pair(publisher, subscriber, db, 'CREATE TABLE a (id int PRIMARY KEY, v text);'
                                         'CREATE TABLE b (id int PRIMARY KEY, v text)')
    queued = sync_args(publisher, subscriber, db, 'switch', ['public.a', 'public.b'])
    assert not run(queued).get('failed')
    publisher.execute("INSERT INTO a VALUES (1, 'x'); INSERT INTO b VALUES (1, 'y')", dbname=db)
    switched = run(dict(queued, mode='immediate', tables=['public.a']))
    assert switched['changed'] and switched['flushed'] == 2 and switched['backlog'] == 0, switched
    assert publisher.query("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'b'::regclass "
                           "AND tgname LIKE 'tablesync%%'", dbname=db) == [(0,)]
    publisher.execute("UPDATE a SET v = 'now' WHERE id = 1; INSERT INTO b VALUES (2, 'no')",
                      dbname=db)
    assert_same(publisher, subscriber, db, 'a', 'id')
    assert rows(subscriber, db, 'b', 'id') == [('(1,y)',)]


def test_absent_drains_refuses_when_target_down_and_force_discards(publisher, spare):
    db = 'trg_absent'
    make_pair(publisher, spare, db, 'CREATE TABLE t (id int PRIMARY KEY, v text)')
    args = sync_args(publisher, spare, db, 'gone', ['public.t'])
    assert not run(args).get('failed')
    publisher.execute("INSERT INTO t VALUES (1, 'a')", dbname=db)
    absent = dict(publisher.login(db), name='gone', state='absent')
    spare.stop('fast')
    try:
        refused = run(absent)
        assert refused.get('failed') and 'force: true' in refused['msg'], refused.get('msg')
        assert backlog(publisher, db, 'gone') == 1
        checked = run(dict(absent, force=True), check=True)
        assert checked['changed'] and backlog(publisher, db, 'gone') == 1
    finally:
        spare.restart()
    removed = run(absent)
    assert removed['changed'] and removed['flushed'] == 1 and not removed['exists'], removed.get('msg')
    assert rows(spare, db, 't', 'id') == [('(1,a)',)]
    leftovers = publisher.query(
        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tablesync%%'), "
        "to_regnamespace('tablesync'), (SELECT count(*) FROM pg_foreign_server), "
        "(SELECT count(*) FROM pg_extension WHERE extname = 'dblink')", dbname=db)
    assert leftovers == [(0, None, 0, 0)]
    assert run(absent)['changed'] is False

    assert not run(args).get('failed')
    publisher.execute("INSERT INTO t VALUES (2, 'b')", dbname=db)
    spare.stop('fast')
    try:
        forced = run(dict(absent, force=True))
    finally:
        spare.restart()
    assert forced['changed'] and not forced.get('failed'), forced
    assert rows(spare, db, 't', 'id') == [('(1,a)',)]


def test_outdated_routine_is_replaced_and_newer_routines_are_refused(publisher, subscriber):
    db = 'trg_upgrade'
    make_pair(publisher, subscriber, db, 'CREATE TABLE t (id int PRIMARY KEY)')
    args = sync_args(publisher, subscriber, db, 'upg', ['public.t'])
    assert not run(args).get('failed')
    publisher.execute("CREATE OR REPLACE FUNCTION tablesync._failure_hint(p_immediate boolean) "
                      "RETURNS text LANGUAGE sql AS $$SELECT 'old'$$; "
                      "COMMENT ON FUNCTION tablesync._failure_hint(boolean) IS "
                      "'tablesync.postgresql sync_trigger v0'", dbname=db)
    upgraded = run(args)
    assert upgraded['changed'], upgraded
    assert any('"_failure_hint"' in q and q.startswith('CREATE OR REPLACE') for q in upgraded['queries'])
    assert run(args)['changed'] is False
    publisher.execute("COMMENT ON PROCEDURE tablesync.flush(text, bigint) IS "
                      "'tablesync.postgresql sync_trigger v99'", dbname=db)
    refused = run(args)
    assert refused.get('failed') and 'newer tablesync.postgresql (sync_trigger v99)' in refused['msg']


def test_password_never_exposed(publisher, subscriber):
    db = 'trg_secret'
    make_pair(publisher, subscriber, db, 'CREATE TABLE t (id int PRIMARY KEY, v text)')
    args = sync_args(publisher, subscriber, db, 'secret', ['public.t'], mode='immediate')
    playbook = run_tasks([{'name': 'sync', MODULE: args}], verbosity=3, callback=None, diff=True)
    assert playbook.rc == 0, playbook.output
    conn = publisher.connect(db)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1, 'x')")  # keeps its dblink connection open
        for cluster, dbname in ((publisher, db), (subscriber, 'postgres')):
            activity = cluster.query('SELECT coalesce(string_agg(query, chr(10)), %s) '
                                     'FROM pg_stat_activity', ('',), dbname=dbname)[0][0]
            assert WRITER_PASSWORD not in activity
        cur.execute('SELECT string_agg(prosrc, chr(10)) FROM pg_proc')
        assert WRITER_PASSWORD not in cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM tablesync.trigger_changes")
    conn.close()
    new_password = WRITER_PASSWORD + '2'
    quiet = _quiet_superuser_conn(subscriber)
    with quiet.cursor() as cur:
        cur.execute('ALTER ROLE %s PASSWORD %%s' % WRITER, (new_password,))
    changed_password = run(dict(args, target=dict(args['target'], password=new_password)))
    with quiet.cursor() as cur:
        cur.execute('ALTER ROLE %s PASSWORD %%s' % WRITER, (WRITER_PASSWORD,))
    quiet.close()
    assert changed_password['changed'], changed_password
    assert any("'********'" in q for q in changed_password['queries'])
    for text in (playbook.output, str(changed_password), publisher.log_text(),
                 subscriber.log_text()):
        assert WRITER_PASSWORD not in text
