# -*- coding: utf-8 -*-
"""Unit tests of pg_sync_info's pure helpers: requirements, readable fields, query text, shaping."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import decimal

import pytest
from psycopg2 import sql

from ansible_collections.tablesync.postgresql.plugins.module_utils.ops import sync_info as si
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement, render


def text(composable):
    return render(Statement(composable))


def all_available(sections):
    return set(si.requirements(sections))


def test_like_prefix_is_literal():
    assert si.like_prefix(None) == '%'
    assert si.like_prefix('') == '%'
    assert si.like_prefix('tablesync_') == 'tablesync\\_%'
    assert si.like_prefix('a%b\\c') == 'a\\%b\\\\c%'


def test_sections_cover_the_gather_choices():
    assert set(si.SECTION_DEFS) == set(si.SECTIONS)
    assert si.SECTIONS[-4:] == ('trigger_queues', 'fdw_servers', 'schema_changes', 'copy_progress')


def test_column_requirement_defaults_to_pg_catalog():
    assert si.Column('pg_class', 'relname') == ('column', 'pg_catalog.pg_class', 'relname')
    assert si.Column('tablesync.trigger_changes', 'ts') == ('column', 'tablesync.trigger_changes', 'ts')
    assert si.Function('now()') == ('function', 'pg_catalog.now()', '')


def test_requirements_are_distinct_and_stable():
    sections = [si.SECTION_DEFS[n] for n in si.SECTIONS]
    needs = si.requirements(sections)
    assert len(needs) == len(set(needs))
    assert needs == si.requirements(sections)
    assert ('column', 'tablesync.trigger_changes', 'ts') in needs
    assert ('column', 'pg_catalog.pg_stat_subscription', 'latest_end_time') in needs


@pytest.mark.parametrize('name', si.SECTIONS)
def test_everything_readable(name):
    section = si.SECTION_DEFS[name]
    readable, missing = si.readable_fields(section, all_available([section]))
    assert missing == []
    assert [f.key for f in readable] == [f.key for f in section.fields]


def test_subscription_fields_of_the_issue():
    keys = [f.key for f in si.SECTION_DEFS['subscriptions'].fields]
    for key in ('enabled', 'worker_running', 'lag_bytes', 'lag_seconds', 'last_msg_age_seconds',
                'latest_end_time', 'apply_error_count', 'sync_error_count'):
        assert key in keys
    slot_keys = [f.key for f in si.SECTION_DEFS['slots'].fields]
    for key in ('safe_wal_size', 'wal_status', 'active', 'retained_bytes', 'lag_bytes',
                'replay_lag_seconds'):
        assert key in slot_keys


def test_old_server_without_subscription_stats():
    section = si.SECTION_DEFS['subscriptions']
    available = all_available([section]) - set([si.Column('pg_stat_subscription_stats', 'subid')])
    readable, missing = si.readable_fields(section, available)
    assert missing == ['apply_error_count', 'sync_error_count', 'conflicts']
    query = text(si.section_query(section, readable))
    assert 'pg_stat_subscription_stats' not in query
    assert 'NULL AS "apply_error_count"' in query


def test_worker_fields_need_the_worker_view():
    section = si.SECTION_DEFS['subscriptions']
    available = all_available([section]) - set([si.Column('pg_stat_subscription', 'relid')])
    readable, missing = si.readable_fields(section, available)
    assert set(missing) >= set(['worker_pid', 'worker_running', 'lag_bytes', 'lag_seconds'])
    assert 'pg_stat_subscription w' not in text(si.section_query(section, readable))


def test_section_without_its_key_is_unreadable():
    section = si.SECTION_DEFS['slots']
    available = all_available([section]) - set([si.Column('pg_replication_slots', 'slot_name')])
    assert si.readable_fields(section, available) is None


def test_where_requirements():
    section = si.SECTION_DEFS['subscriptions']
    available = all_available([section]) - set([si.Column('pg_subscription', 'subdbid')])
    assert si.readable_fields(section, available) is None


def test_trigger_queue_query_reads_the_change_log_once():
    section = si.SECTION_DEFS['trigger_queues']
    readable, _missing = si.readable_fields(section, all_available([section]))
    query = text(si.section_query(section, readable))
    assert query.count('tablesync.trigger_changes') == 1
    assert 'GROUP BY c.set_name' in query
    assert 'LIKE' not in query  # sets are named without the prefix: never filtered
    assert '"oldest_entry_age_seconds"' in query and 'NULL::timestamptz AS "last_flush_time"' in query


def test_trigger_queue_denied_change_log():
    section = si.SECTION_DEFS['trigger_queues']
    available = set(n for n in all_available([section]) if n[1] != 'tablesync.trigger_changes')
    readable, missing = si.readable_fields(section, available)
    assert missing == ['depth', 'oldest_entry_time', 'newest_entry_time', 'oldest_entry_age_seconds',
                       'schema_changes_pending']
    assert 'trigger_changes' not in text(si.section_query(section, readable))


def test_optional_section_missing_only_when_its_relations_do_not_exist():
    queues = si.SECTION_DEFS['trigger_queues']
    assert si.section_missing(queues, set([si.Column('tablesync.trigger_sets', 'name')]))
    assert not si.section_missing(queues, set())
    # only the change log missing: read what exists
    assert not si.section_missing(queues, set([si.Column('tablesync.trigger_changes', 'ts')]))
    # catalog sections are never "missing": an absent column means an old server
    assert not si.section_missing(si.SECTION_DEFS['slots'],
                                  set([si.Column('pg_replication_slots', 'slot_name')]))


def test_name_prefix_filters_only_named_sections():
    for name, filtered in (('publications', True), ('subscriptions', True), ('slots', True),
                           ('settings', False), ('trigger_queues', False), ('fdw_servers', False)):
        section = si.SECTION_DEFS[name]
        readable, _missing = si.readable_fields(section, all_available([section]))
        query = si.section_query(section, readable)
        shown = ''.join(part.string for part in _flatten(query) if isinstance(part, sql.SQL))
        assert ('LIKE %(pattern)s' in shown) == filtered


def _flatten(composable):
    if isinstance(composable, sql.Composed):
        for part in composable:
            yield from _flatten(part)
    else:
        yield composable


def test_section_query_is_a_single_select():
    section = si.SECTION_DEFS['slots']
    readable, _missing = si.readable_fields(section, all_available([section]))
    query = si.section_query(section, readable)
    assert isinstance(query, sql.Composed)
    shown = text(query)
    assert shown.startswith('SELECT ') and shown.count('SELECT') == 1
    assert 'pg_stat_replication sr ON sr.pid = r.active_pid' in shown
    assert shown.endswith('ORDER BY r.slot_name')


def test_server_options_without_secrets():
    assert si.server_options(None) is None
    assert si.server_options([]) == {}
    assert si.server_options(['host=db1', 'port=5432', 'password=s3cret', 'sslpassword=x',
                              'options=-c a=b']) == {'host': 'db1', 'port': '5432',
                                                     'options': '-c a=b'}


def test_plain_values():
    assert si.plain(decimal.Decimal('1234')) == 1234 and isinstance(si.plain(decimal.Decimal(7)), int)
    assert si.plain(1.23456) == 1.235
    assert si.plain(datetime.datetime(2026, 1, 2, 3, 4, 5)) == '2026-01-02T03:04:05'
    assert si.plain('x') == 'x' and si.plain(None) is None and si.plain(True) is True


def test_publisher_info_strips_password():
    assert si.publisher_info(None) is None
    assert si.publisher_info("host=h port=5432 password='p w' user=u") == dict(
        host='h', port='5432', user='u')
    assert si.publisher_info("host='unterminated") == {}


def test_shape_rows():
    pubs = si.shape_rows('publications', [dict(name='p', publish_insert=True, publish_update=False,
                                               publish_delete=True, publish_truncate=None,
                                               tables=[['public', 'a'], ['My S', 'T.x']])])
    assert pubs == [dict(name='p', publish=['insert', 'delete'], tables=['public.a', 'My S."T.x"'])]

    subs = si.shape_rows('subscriptions', [dict(
        name='s', publisher="host=h password=x", lag_bytes=decimal.Decimal(10), lag_seconds=0.12345,
        tables=[dict(schema='public', name='a', state='r', lsn=None),
                dict(schema='public', name='b', state='d', lsn='0/1')])])
    assert subs == [dict(name='s', publisher=dict(host='h'), lag_bytes=10, lag_seconds=0.123,
                         tables=[dict(name='public.a', state='ready', lsn=None),
                                 dict(name='public.b', state='data_copy', lsn='0/1')])]

    assert si.shape_rows('settings', [dict(name='wal_level', value='logical')]) == {'wal_level': 'logical'}
    fdw = si.shape_rows('fdw_servers', [dict(name='s', options=['host=a', 'password=b'])])
    assert fdw == [dict(name='s', options=dict(host='a'))]
    queues = si.shape_rows('trigger_queues', [dict(name='orders', depth=3, oldest_entry_age_seconds=1.5)])
    assert queues == [dict(name='orders', depth=3, oldest_entry_age_seconds=1.5)]


def test_not_recorded_fields():
    assert si.NOT_RECORDED == {'trigger_queues': ('last_flush_time',)}


class FakeCursor(object):
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=None):
        self.conn.executed.append(query)
        self.result = self.conn.answer(query, params)

    def fetchall(self):
        return self.result


class FakeConn(object):
    """Answers the probe from ``statuses`` ({requirement: status}, default 'ok') and every
    section query with no rows."""
    server_version = 150004

    def __init__(self, statuses=None):
        self.statuses = statuses or {}
        self.executed = []
        self.rolled_back = False

    def get_parameter_status(self, name):
        return '15.4'

    def cursor(self, cursor_factory=None):
        return FakeCursor(self)

    def rollback(self):
        self.rolled_back = True

    def answer(self, query, params):
        if isinstance(query, str):  # the probe
            kinds, objects, columns = params
            return [(k, o, c, self.statuses.get((k, o, c), 'ok'))
                    for k, o, c in zip(kinds, objects, columns)]
        return []


def test_reader_fixed_query_count_and_unavailable():
    conn = FakeConn()
    result = si.SyncInfo(conn).read(list(si.SECTIONS), 'tablesync_')
    assert len(conn.executed) == 1 + len(si.SECTIONS)
    assert conn.rolled_back
    assert result['unavailable'] == ['trigger_queues.last_flush_time']
    assert result['settings'] == {} and result['trigger_queues'] == [] and result['fdw_servers'] == []


def test_reader_skips_missing_trigger_schema_and_reports_denied():
    missing = dict((n, 'missing') for n in si.SECTION_DEFS['trigger_queues'].requirements()
                   if n[1].startswith('tablesync.'))
    conn = FakeConn(missing)
    result = si.SyncInfo(conn).read(['trigger_queues', 'slots'])
    assert result['unavailable'] == [] and result['trigger_queues'] == []
    assert len(conn.executed) == 2  # probe + slots

    denied = dict((k, 'denied') for k in missing)
    denied[si.Column('pg_subscription', 'subconninfo')] = 'denied'
    result = si.SyncInfo(FakeConn(denied)).read(['trigger_queues', 'subscriptions'])
    assert result['unavailable'] == ['subscriptions.publisher', 'trigger_queues']
