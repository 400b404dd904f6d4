"""Trigger sets follow column changes between runs (routines v3, trigger/follow.py).

Application-style migrations run on the source while writers and a flusher keep going: the
capture picks up the new shape in the ALTER's own transaction, the target is altered when the
flush reaches the change, between the rows before and after it. Afterwards every table is
compared row by row and column by column, the flush recorded no error, and the module's next
run changes nothing (the capture function the event trigger wrote is the one it would write).
"""
import threading
import time

import psycopg2
import pytest
from psycopg2 import sql

from runner import run_module
from test_pg_sync_trigger import WRITER, make_pair, run, sync_args

FOLLOW = 'tablesync.postgresql.pg_schema_follow'

HOSTILE = 'Amount;--"x'
DDL = '''
CREATE TABLE public.t (id int PRIMARY KEY, q int, s varchar(20), old text NOT NULL DEFAULT 'x',
                       v text, "Amount;--""x" numeric);
CREATE TABLE public.k (a int, b text);
CREATE TABLE public.listed (id int PRIMARY KEY, keep text, other text);
INSERT INTO public.t SELECT g, g, 's' || g, 'o' || g, 'v' || g, g / 3.0 FROM generate_series(1, 300) g;
INSERT INTO public.k SELECT g % 7, 'b' || g FROM generate_series(1, 100) g;
INSERT INTO public.listed SELECT g, 'k' || g, 'o' || g FROM generate_series(1, 20) g;
'''
TABLES = ['public.t', 'public.k', {'name': 'public.listed', 'columns': ['id', 'keep']}]


def shape(cluster, db, table):
    return cluster.query(
        'SELECT attname::text, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute '
        'WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attname',
        (table,), dbname=db)


def table_rows(cluster, db, table, names):
    query = sql.SQL('SELECT {} FROM {}').format(
        sql.SQL(', ').join(sql.SQL('{}::text').format(sql.Identifier(n)) for n in names),
        sql.SQL(table))
    return sorted(cluster.query(query, dbname=db), key=lambda r: [(v is None, v or '') for v in r])


def assert_equal(source, target, db, table):
    assert shape(target, db, table) == shape(source, db, table)
    names = [r[0] for r in shape(source, db, table)]
    have, want = table_rows(target, db, table, names), table_rows(source, db, table, names)
    assert have == want, 'target differs from the source (%d vs %d rows)' % (len(have), len(want))


class Background(object):
    """Writes on the source (only columns every migration keeps) and flushes, until stopped."""

    def __init__(self, cluster, db, name):
        self.cluster, self.db, self.name = cluster, db, name
        self.stop, self.errors = threading.Event(), []
        self.threads = [threading.Thread(target=self.write), threading.Thread(target=self.flush)]

    def write(self):
        conn = self.cluster.connect(self.db)
        i = 1000
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute('INSERT INTO public.t (id, q, s, v) VALUES (%s, %s, %s, %s)', (i, i, 'w', 'new'))
                    cur.execute("UPDATE public.t SET v = v || '+' WHERE id = %s", (i % 300 + 1,))
                    cur.execute('DELETE FROM public.t WHERE id = %s', (i - 7,))
                    cur.execute("INSERT INTO public.k VALUES (%s, 'w')", (i % 7,))
                    cur.execute("UPDATE public.k SET b = b || '+' WHERE ctid = (SELECT ctid FROM public.k "
                                'WHERE a = %s LIMIT 1)', (i % 7,))
                    i += 1
        except Exception as e:  # pylint: disable=broad-except
            self.errors.append(e)
        finally:
            conn.close()

    def flush(self):
        conn = self.cluster.connect(self.db)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute('CALL tablesync.flush(%s)', (self.name,))
                    time.sleep(0.2)
        except Exception as e:  # pylint: disable=broad-except
            self.errors.append(e)
        finally:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()
        assert self.errors == [], [str(e)[:3000] for e in self.errors]


def last_error(cluster, db, name):
    return cluster.query('SELECT last_error FROM tablesync.trigger_sets WHERE name = %s', (name,),
                         dbname=db)[0][0]


@pytest.fixture
def pair(publisher, subscriber, request):
    db = 'trg_follow_%s' % request.node.name.split('[')[0][-20:].lower()
    make_pair(publisher, subscriber, db, DDL)
    installed = run_module(FOLLOW, dict(subscriber.login(db), side='trigger_target', writer_role=WRITER))
    assert installed['changed'] and not installed.get('failed'), installed
    assert run_module(FOLLOW, dict(subscriber.login(db), side='trigger_target', writer_role=WRITER))['changed'] is False
    mode = getattr(request, 'param', 'queued')
    args = sync_args(publisher, subscriber, db, 'flw', TABLES, backfill=True, flush=True, mode=mode)
    first = run(args)
    assert first['changed'] and not first.get('failed'), first
    yield db, args
    for cluster in (publisher, subscriber):
        cluster.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)


def test_migrations_while_writing_are_followed_exactly(publisher, subscriber, pair):
    db, args = pair
    with Background(publisher, db, 'flw'):
        time.sleep(0.5)
        publisher.execute("ALTER TABLE public.t ADD COLUMN discount numeric DEFAULT 0.5, ADD COLUMN note text, "
                          "ADD COLUMN region text NOT NULL DEFAULT 'eu', DROP COLUMN old", dbname=db)
        time.sleep(0.5)
        publisher.execute("UPDATE public.t SET note = 'n' || id WHERE id % 3 = 0", dbname=db)
        publisher.execute('ALTER TABLE public.t RENAME COLUMN note TO remark', dbname=db)
        publisher.execute('ALTER TABLE public.t RENAME COLUMN "Amount;--""x" TO "Total ""€"""', dbname=db)
        publisher.execute("UPDATE public.t SET remark = remark || '!' WHERE id % 6 = 0", dbname=db)
        publisher.execute('ALTER TABLE public.t ALTER COLUMN q TYPE bigint, ALTER COLUMN s TYPE varchar(40)',
                          dbname=db)
        publisher.execute("UPDATE public.t SET s = repeat('w', 35), q = 5000000000 WHERE id = 5", dbname=db)
        publisher.execute('BEGIN; ALTER TABLE public.t ADD COLUMN late int; '
                          'UPDATE public.t SET late = id WHERE id < 50; COMMIT', dbname=db)
        publisher.execute("ALTER TABLE public.k ADD COLUMN c date DEFAULT '2024-02-29'", dbname=db)
        publisher.execute("ALTER TABLE public.listed ADD COLUMN extra int DEFAULT 1", dbname=db)
        publisher.execute("ALTER TABLE public.listed RENAME COLUMN keep TO kept", dbname=db)
        publisher.execute("UPDATE public.listed SET kept = kept || '!' WHERE id < 5", dbname=db)
        time.sleep(1)
    assert last_error(publisher, db, 'flw') is None
    publisher.execute("CALL tablesync.flush('flw')", dbname=db)
    assert publisher.query('SELECT count(*) FROM tablesync.trigger_changes', dbname=db) == [(0,)]
    for table in ('public.t', 'public.k'):
        assert_equal(publisher, subscriber, db, table)
    assert subscriber.query('SELECT count(*) FROM public.t WHERE discount = 0.5 AND region = %s', ('eu',),
                            dbname=db)[0][0] >= 290
    # a table synced with listed columns follows renames, never gains columns
    assert [r[0] for r in shape(subscriber, db, 'public.listed')] == ['id', 'kept', 'other']
    assert table_rows(subscriber, db, 'public.listed', ['id', 'kept']) == \
        table_rows(publisher, db, 'public.listed', ['id', 'kept'])
    # the inventory still names the old column of the listed table: refused, naming it
    stale = run(args)
    assert stale.get('failed') and 'table public.listed has no column(s) keep' in stale['msg'], stale
    fixed = dict(args, tables=TABLES[:2] + [{'name': 'public.listed', 'columns': ['id', 'kept']}])
    idle = run(fixed)
    assert idle['changed'] is False and idle['queries'] == [], idle


@pytest.mark.parametrize('pair', ['immediate'], indirect=True)
def test_immediate_mode_alters_the_target_before_the_commit(publisher, subscriber, pair):
    db, _args = pair
    publisher.execute("BEGIN; ALTER TABLE public.t ADD COLUMN flag boolean DEFAULT true; "
                      "INSERT INTO public.t (id, q, flag) VALUES (9001, 1, false); COMMIT", dbname=db)
    assert subscriber.query('SELECT flag FROM public.t WHERE id IN (1, 9001) ORDER BY id', dbname=db) == \
        [(True,), (False,)]
    assert_equal(publisher, subscriber, db, 'public.t')


def test_unfollowable_change_stops_the_flush_with_the_reason(publisher, subscriber, pair):
    db, args = pair
    publisher.execute('ALTER TABLE public.t ALTER COLUMN q TYPE smallint', dbname=db)
    publisher.execute("INSERT INTO public.t (id, q, v) VALUES (5000, 1, 'after')", dbname=db)
    failed = run(args)
    assert failed.get('failed') or failed.get('flush_error') or last_error(publisher, db, 'flw'), failed
    message = last_error(publisher, db, 'flw')
    assert 'cannot follow public.t: column q changed from integer to smallint, which is not a lossless ' \
        'widening' in message, message
    assert subscriber.query('SELECT count(*) FROM public.t WHERE id = 5000', dbname=db) == [(0,)]
    # the source keeps working; a hand fix of the target lets the queue through in order
    publisher.execute("UPDATE public.t SET v = 'still' WHERE id = 1", dbname=db)
    subscriber.execute('ALTER TABLE public.t ALTER COLUMN q TYPE smallint', dbname=db)
    fixed = run(args)
    assert not fixed.get('failed') and fixed['backlog'] == 0, fixed
    assert_equal(publisher, subscriber, db, 'public.t')


def test_the_target_login_alters_only_tables_it_may_write(publisher, subscriber, pair):
    db, args = pair
    subscriber.execute('REVOKE DELETE ON public.k FROM %s' % WRITER, dbname=db)
    publisher.execute('ALTER TABLE public.k ADD COLUMN c int', dbname=db)
    assert run(args).get('failed')
    message = last_error(publisher, db, 'flw')
    assert 'cannot follow public.k: tablesync_writer may not write it, so it may not alter it' in message, message
    assert [r[0] for r in shape(subscriber, db, 'public.k')] == ['a', 'b']


def test_a_key_column_cannot_leave_the_set(publisher, pair):
    db, _args = pair
    with pytest.raises(psycopg2.Error, match='column id of table public.t identifies the rows of trigger sync set flw'):
        publisher.execute('ALTER TABLE public.t DROP COLUMN id', dbname=db)
    publisher.execute('ALTER TABLE public.t RENAME COLUMN id TO ident', dbname=db)
    publisher.execute("UPDATE public.t SET v = 'renamed key' WHERE ident = 2", dbname=db)
    publisher.execute('CALL tablesync.flush()', dbname=db)
    assert last_error(publisher, db, 'flw') is None


def test_follow_routines_are_least_privilege(publisher, pair):
    db, _args = pair
    assert publisher.query(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'tablesync' AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid "
        "AND d.deptype = 'e') AND (has_function_privilege('public', p.oid, 'EXECUTE') "
        "OR (p.prosecdef AND NOT 'search_path=pg_catalog, pg_temp' = ANY (p.proconfig)))", dbname=db) == []
    assert publisher.query("SELECT evtenabled, evtfoid::regproc::text FROM pg_event_trigger "
                           "WHERE evtname = 'tablesync_trigger_follow'", dbname=db) == \
        [('O', 'tablesync._follow_ddl')]
