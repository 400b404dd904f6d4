"""pg_sync_info against a real subscription between the two clusters.

The publisher database has three tables and a publication, the subscriber database subscribes
to it (plain SQL). The subscription is dropped at the end, so no slot is left behind.
"""
import itertools
import os
import threading
import time

import pytest
from psycopg2 import sql

from pgcluster import SUPERPASS, wait_for
from runner import run_module

MODULE = 'tablesync.postgresql.pg_sync_info'
_serial = itertools.count(1)
TABLES = ['public.a', 'public.b', 'Mixed Schema.Ta ble']


class Sync(object):
    """Publisher and subscriber databases with a running subscription named ``<prefix>sub``."""

    def __init__(self, publisher, subscriber):
        self.pub, self.sub = publisher, subscriber
        tag = '%d_%d' % (os.getpid() % 10000, next(_serial))
        self.db = 'si_%s' % tag
        self.prefix = 'tsi_%s_' % tag
        self.subscription = self.prefix + 'sub'
        self.publication = self.prefix + 'pub'
        for cluster in (self.pub, self.sub):
            cluster.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(self.db)))
            cluster.query('CREATE SCHEMA "Mixed Schema"; CREATE TABLE "Mixed Schema"."Ta ble" '
                          '(id int PRIMARY KEY); CREATE TABLE public.a (id int PRIMARY KEY, v text);'
                          ' CREATE TABLE public.b (id int PRIMARY KEY)', dbname=self.db)
        self.pub_sql(sql.SQL('INSERT INTO public.a SELECT g, g::text FROM generate_series(1, 10) g;'
                             ' CREATE PUBLICATION {} FOR TABLE public.a, public.b, "Mixed Schema"."Ta ble";'
                             # same length, "_" in the prefix must not match this one
                             ' CREATE PUBLICATION {} FOR TABLE public.a').format(
            sql.Identifier(self.publication), sql.Identifier(self.prefix.replace('_', 'X') + 'pub')))
        conninfo = "host=%s port=%d dbname=%s user=%s password='%s'" % (
            self.pub.host, self.pub.port, self.db, self.pub.user, SUPERPASS)
        self.sub_sql(sql.SQL('CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {}').format(
            sql.Identifier(self.subscription), sql.Literal(conninfo), sql.Identifier(self.publication)))

    def pub_sql(self, text, params=None):
        return self.pub.query(text, params, dbname=self.db)

    def sub_sql(self, text, params=None):
        return self.sub.query(text, params, dbname=self.db)

    def info(self, cluster, **kw):
        args = dict(cluster.login(self.db), name_prefix=self.prefix)
        args.update(kw)
        r = run_module(MODULE, args)
        assert not r.get('failed'), r
        assert r['changed'] is False
        return r

    def wait_ready(self):
        wait_for(lambda: self.sub_sql(
            "SELECT count(*) FILTER (WHERE srsubstate = 'r') FROM pg_subscription_rel")[0][0] == 3,
            timeout=90, what='all tables ready')

    def drop(self):
        self.sub_sql(sql.SQL('DROP SUBSCRIPTION IF EXISTS {}').format(sql.Identifier(self.subscription)))
        for cluster in (self.sub, self.pub):
            cluster.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(
                sql.Identifier(self.db)))


@pytest.fixture
def sync(publisher, subscriber):
    s = Sync(publisher, subscriber)
    try:
        yield s
    finally:
        s.drop()


def by_name(items, key='name'):
    return dict((i[key], i) for i in items)


def test_subscriber_side(sync):
    sync.wait_ready()
    wait_for(lambda: sync.sub_sql('SELECT count(*) FROM public.a') == [(10,)], what='initial copy')
    log_start = len(sync.sub.log_text())
    r = sync.info(sync.sub)
    statements = [line.split('statement: ', 1)[1] for line in sync.sub.log_text()[log_start:].splitlines()
                  if 'statement: ' in line]
    queries = [s for s in statements if not s.startswith(('BEGIN', 'ROLLBACK'))]
    # probe + one per section, whatever the number of objects (the trigger queues are not
    # queried: the database has no schema tablesync)
    assert len(queries) == 7 and all(q.startswith('SELECT ') for q in queries), statements
    # read by what the server has: invalidation_reason is PostgreSQL 17+
    assert r['unavailable'] == ([] if r['server_version']['num'] >= 170000 else ['slots.invalidation_reason'])
    assert r['trigger_queues'] == [] and r['fdw_servers'] == []
    major = sync.sub.version()
    assert r['server_version']['major'] == major and r['server_version']['num'] >= major * 10000
    assert r['settings']['wal_level'] == 'logical'
    assert set(r['settings']) == set(['wal_level', 'max_replication_slots', 'max_wal_senders',
                                      'max_logical_replication_workers', 'max_worker_processes',
                                      'max_slot_wal_keep_size'])
    assert r['publications'] == [] and r['slots'] == []
    (sub,) = r['subscriptions']
    assert sub['name'] == sync.subscription
    assert sub['enabled'] is True and sub['publications'] == [sync.publication]
    assert sub['slot_name'] == sync.subscription
    assert isinstance(sub['worker_pid'], int)
    assert sub['received_lsn'] and sub['latest_end_lsn'] and sub['last_msg_receipt_time']
    assert sub['apply_error_count'] == 0 and sub['sync_error_count'] == 0
    assert sub['worker_running'] is True and sub['latest_end_time']
    assert isinstance(sub['lag_bytes'], int) and sub['lag_bytes'] >= 0
    assert isinstance(sub['lag_seconds'], float) and 0 <= sub['lag_seconds'] < 120
    assert isinstance(sub['last_msg_age_seconds'], float) and 0 <= sub['last_msg_age_seconds'] < 120
    assert sorted((t['name'], t['state']) for t in sub['tables']) == sorted((t, 'ready') for t in TABLES)
    assert sub['publisher'] == dict(host=sync.pub.host, port=str(sync.pub.port), dbname=sync.db,
                                    user=sync.pub.user)
    assert SUPERPASS not in r['_run'].output


def test_publisher_side_and_slot_lag_when_disabled(sync):
    sync.wait_ready()
    r = sync.info(sync.pub)
    assert r['subscriptions'] == []
    # the prefix is taken literally: the "X" publication does not match "_"
    assert [p['name'] for p in r['publications']] == [sync.publication]
    (pub,) = r['publications']
    assert pub['tables'] == ['Mixed Schema.Ta ble', 'public.a', 'public.b']
    assert pub['all_tables'] is False and pub['via_root'] is False
    assert pub['publish'] == ['insert', 'update', 'delete', 'truncate']
    slots = by_name(r['slots'], 'slot_name')
    slot = slots[sync.subscription]
    assert slot['plugin'] == 'pgoutput' and slot['slot_type'] == 'logical'
    assert slot['database'] == sync.db and slot['wal_status'] in ('reserved', 'extended')

    sync.sub_sql(sql.SQL('ALTER SUBSCRIPTION {} DISABLE').format(sql.Identifier(sync.subscription)))
    wait_for(lambda: not by_name(sync.info(sync.pub, gather=['slots'])['slots'], 'slot_name')
             [sync.subscription]['active'], what='slot inactive')
    sync.pub_sql("INSERT INTO public.a SELECT g, repeat('x', 100) FROM generate_series(11, 1000) g")
    r = sync.info(sync.pub, gather=['slots'])
    assert set(r) >= set(['slots', 'unavailable', 'server_version'])
    assert not set(r) & set(['publications', 'subscriptions', 'settings'])
    slot = by_name(r['slots'], 'slot_name')[sync.subscription]
    assert slot['active'] is False and slot['active_pid'] is None
    assert slot['lag_bytes'] > 0 and slot['retained_bytes'] >= slot['lag_bytes']
    assert slot['replay_lag_seconds'] is None
    assert isinstance(slot['safe_wal_size'], (int, type(None)))  # NULL: max_slot_wal_keep_size = -1

    sub = sync.info(sync.sub, gather=['subscriptions'])['subscriptions'][0]
    assert sub['enabled'] is False and sub['worker_pid'] is None
    assert sub['worker_running'] is False
    assert sub['lag_bytes'] is None and sub['lag_seconds'] is None


def test_each_database_in_one_call(sync):
    """each_database: the publications of every database (here the sync's database and a
    second one), each naming its database, the slots once, from a call made to postgres."""
    other = sync.db + '_other'
    sync.pub.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(other)))
    try:
        sync.pub.query(sql.SQL('CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION {} FOR TABLE t')
                       .format(sql.Identifier(sync.prefix + 'elsewhere')), dbname=other)
        args = dict(sync.pub.login('postgres'), name_prefix=sync.prefix, each_database=True,
                    gather=['publications', 'slots'])
        r = run_module(MODULE, args)
        assert not r.get('failed'), r
        assert r['changed'] is False
        assert {sync.db, other, 'postgres'} <= set(r['databases'])
        assert 'template0' not in r['databases'] and 'template1' not in r['databases']
        assert sorted((p['database'], p['name']) for p in r['publications']) == [
            (sync.db, sync.publication), (other, sync.prefix + 'elsewhere')]
        # server-wide: read once, not once per database
        assert [s['slot_name'] for s in r['slots']].count(sync.subscription) == 1
        # the same call without each_database sees only its own database
        only = sync.info(sync.pub, gather=['publications'])
        assert [p['name'] for p in only['publications']] == [sync.publication]
        assert 'databases' not in only and 'database' not in only['publications'][0]
    finally:
        sync.pub.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(
            sql.Identifier(other)))


def test_pg_monitor_role_sees_what_it_can(sync):
    sync.wait_ready()
    role, password = sync.prefix + 'mon', 'Mon-pw-0k'
    sync.sub.execute(sql.SQL('CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_monitor').format(
        sql.Identifier(role), sql.Literal(password)))
    try:
        r = sync.info(sync.sub, login_user=role, login_password=password)
        assert r['unavailable'] == ['subscriptions.publisher'] + (
            [] if r['server_version']['num'] >= 170000 else ['slots.invalidation_reason'])
        (sub,) = r['subscriptions']
        assert sub['publisher'] is None
        assert sub['enabled'] is True and isinstance(sub['worker_pid'], int)
        assert sorted(t['state'] for t in sub['tables']) == ['ready'] * 3
        assert r['settings']['wal_level'] == 'logical'
        assert SUPERPASS not in r['_run'].output
    finally:
        sync.sub.execute(sql.SQL('DROP ROLE {}').format(sql.Identifier(role)))


def test_induced_apply_failure_is_reported(sync):
    """A row on the subscriber that conflicts with a replicated INSERT stops apply."""
    sync.wait_ready()
    sync.sub_sql('INSERT INTO public.b VALUES (42)')
    sync.pub_sql('INSERT INTO public.b VALUES (42)')

    def failing():
        sub = sync.info(sync.sub, gather=['subscriptions'])['subscriptions'][0]
        return sub if sub['apply_error_count'] > 0 else None
    sub = wait_for(failing, timeout=60, what='apply_error_count > 0')
    assert sub['enabled'] is True and sub['sync_error_count'] == 0

    # the failing transaction is never confirmed: the publisher's slot stays behind
    sync.pub_sql('INSERT INTO public.a SELECT g, g::text FROM generate_series(2000, 2100) g')
    slot = by_name(sync.info(sync.pub, gather=['slots'])['slots'], 'slot_name')[sync.subscription]
    assert slot['lag_bytes'] > 0

    # with disable_on_error the worker stops for good: disabled, not running
    sync.sub_sql(sql.SQL('ALTER SUBSCRIPTION {} SET (disable_on_error = true)').format(
        sql.Identifier(sync.subscription)))

    def stopped():
        sub = sync.info(sync.sub, gather=['subscriptions'])['subscriptions'][0]
        return sub if not sub['enabled'] and not sub['worker_running'] else None
    sub = wait_for(stopped, timeout=60, what='subscription disabled by the apply error')
    assert sub['worker_pid'] is None and sub['apply_error_count'] >= 1

    # repair: remove the conflicting row and enable again; apply resumes
    sync.sub_sql('DELETE FROM public.b WHERE id = 42')
    sync.sub_sql(sql.SQL('ALTER SUBSCRIPTION {} ENABLE').format(sql.Identifier(sync.subscription)))
    wait_for(lambda: sync.sub_sql('SELECT count(*) FROM public.a WHERE id >= 2000') == [(101,)],
             what='apply resumed')
    sub = sync.info(sync.sub, gather=['subscriptions'])['subscriptions'][0]
    assert sub['enabled'] is True


def test_trigger_queue_and_fdw_servers(sync):
    """A queued trigger sync set (never flushed) on the publisher's database: depth and age of its
    change log; its foreign server without password; a pg_monitor role cannot read the queue."""
    name = 'q' + sync.prefix.replace('tsi_', '').rstrip('_')
    r = run_module('tablesync.postgresql.pg_sync_trigger', dict(
        sync.pub.login(sync.db), name=name, tables=['public.a'], mode='queued',
        verify_target=False,
        target=dict(host=sync.sub.host, port=sync.sub.port, dbname=sync.db, user=sync.sub.user,
                    password=SUPERPASS)))
    assert not r.get('failed'), r
    try:
        r = sync.info(sync.pub, gather=['trigger_queues', 'fdw_servers'])
        assert r['unavailable'] == ['trigger_queues.last_flush_time']
        (queue,) = r['trigger_queues']
        assert queue['name'] == name and queue['mode'] == 'queued' and queue['tables'] == 1
        assert queue['depth'] == 0 and queue['oldest_entry_age_seconds'] == 0
        assert queue['oldest_entry_time'] is None and queue['last_flush_time'] is None

        sync.pub_sql("INSERT INTO public.a SELECT g, 'q' FROM generate_series(500, 509) g")
        sync.pub_sql("UPDATE public.a SET v = 'u' WHERE id = 500")
        time.sleep(1.2)
        r = sync.info(sync.pub, gather=['trigger_queues', 'fdw_servers'])
        (queue,) = r['trigger_queues']
        assert queue['depth'] == 11
        assert queue['oldest_entry_age_seconds'] >= 1.0
        assert queue['oldest_entry_time'] <= queue['newest_entry_time']
        servers = by_name(r['fdw_servers'])
        server = servers[queue['server']]
        assert server['wrapper'] == 'dblink_fdw' and server['user_mappings'] == 1
        assert server['options']['host'] == sync.sub.host and 'password' not in server['options']
        assert SUPERPASS not in r['_run'].output

        role, password = sync.prefix + 'qmon', 'Mon-pw-0k'
        sync.pub.execute(sql.SQL('CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_monitor').format(
            sql.Identifier(role), sql.Literal(password)))
        try:
            r = sync.info(sync.pub, login_user=role, login_password=password,
                          gather=['trigger_queues', 'fdw_servers'])
            assert r['unavailable'] == ['trigger_queues'] and r['trigger_queues'] == []
            assert [s['name'] for s in r['fdw_servers']] == [queue['server']]
        finally:
            sync.pub_sql(sql.SQL('DROP OWNED BY {}').format(sql.Identifier(role)))
            sync.pub.execute(sql.SQL('DROP ROLE {}').format(sql.Identifier(role)))
    finally:
        run_module('tablesync.postgresql.pg_sync_trigger', dict(
            sync.pub.login(sync.db), name=name, state='absent', force=True))


def test_fails_clearly_on_bad_gather(sync):
    r = run_module(MODULE, dict(sync.sub.login(sync.db), gather=['slots', 'wal']))
    assert r.get('failed') and 'gather' in r['msg']


class SlowRows(object):
    """A COPY input that sends ``first`` rows, then waits for ``release`` before the rest."""

    def __init__(self, first, total):
        self.lines = ['%d\trow %d\n' % (i, i) for i in range(1, total + 1)]
        self.first = first
        self.sent = 0
        self.release = threading.Event()

    def read(self, size=8192):
        if self.sent >= self.first and not self.release.wait(timeout=120):
            raise RuntimeError('never released')
        chunk = ''.join(self.lines[self.sent:self.sent + 500])
        self.sent += 500
        return chunk

    readline = read


def test_copy_progress_with_the_sources_estimate(sync):
    """A COPY into the subscriber held open halfway: pg_sync_info names the table, the rows done
    so far, the source's estimate (a partitioned table: summed over its partitions), the
    percentage and the time left; an unreachable source leaves the estimate out, listed."""
    sync.pub_sql('CREATE TABLE public.big (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);'
                 ' CREATE TABLE public.big_1 PARTITION OF public.big FOR VALUES FROM (1) TO (10001);'
                 ' CREATE TABLE public.big_2 PARTITION OF public.big FOR VALUES FROM (10001) TO (20001);'
                 " INSERT INTO public.big SELECT g, 'row ' || g FROM generate_series(1, 20000) g;"
                 ' ANALYZE public.big_1, public.big_2')
    sync.sub_sql('CREATE TABLE public.big (id int PRIMARY KEY, v text)')
    rows = SlowRows(first=5000, total=20000)
    failures = []

    def copy():
        conn = sync.sub.connect(sync.db)
        try:
            with conn.cursor() as cur:
                cur.copy_expert('COPY public.big FROM STDIN', rows)
        except Exception as e:  # pylint: disable=broad-except
            failures.append(e)
        finally:
            conn.close()

    thread = threading.Thread(target=copy)
    thread.start()
    try:
        source = dict(host=sync.pub.host, port=sync.pub.port, dbname=sync.db, user=sync.pub.user,
                      password=SUPERPASS)
        wait_for(lambda: [c['rows_done'] for c in sync.info(sync.sub, gather=['copy_progress'])
                          ['copy_progress']] == [5000], timeout=60, what='the first rows copied')
        time.sleep(1.1)
        r = sync.info(sync.sub, gather=['copy_progress'], source=source)
        (item,) = r['copy_progress']
        assert item['table'] == 'public.big' and item['command'] == 'COPY FROM' and item['type'] == 'PIPE'
        assert item['backend_type'] == 'client backend' and item['elapsed_seconds'] >= 1
        assert item['rows_done'] == 5000 and item['bytes_done'] > 0
        assert item['rows_total_estimate'] == 20000 and item['percent'] == 25.0
        assert item['rows_per_second'] > 0 and item['eta_seconds'] >= 1
        assert item['summary'].startswith('public.big: 5000 of ~20000 rows (25.0%), ')
        assert item['summary'].endswith(' left')
        assert r['unavailable'] == [] and SUPERPASS not in r['_run'].output
        # without the source: the figures of the subscriber alone
        r = sync.info(sync.sub, gather=['copy_progress'], source=dict(source, password='wrong'))
        assert r['copy_progress'][0]['rows_total_estimate'] is None
        assert r['copy_progress'][0]['summary'].endswith('total unknown')
        assert r['unavailable'] == ['copy_progress.rows_total_estimate']
        assert 'wrong' not in r['_run'].output
    finally:
        rows.release.set()
        thread.join(timeout=60)
    assert not failures, failures
    assert sync.sub_sql('SELECT count(*) FROM public.big') == [(20000,)]
    assert sync.info(sync.sub, gather=['copy_progress'], source=source)['copy_progress'] == []
