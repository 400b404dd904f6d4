# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Catalog reads of pg_sync_info: publications, subscriptions, replication slots, settings,
trigger-sync queues (the change log of pg_sync_trigger) and foreign servers.

Each section is a declarative list of fields, each a fixed SQL expression with the catalog
columns and functions it needs. One probe query finds out which of them exist on this server
version and which the connected role may read; every section is then read in one query that
selects only those (the others are NULL and listed as ``unavailable``). So a role with just
``pg_monitor`` gets everything it may see, older servers get what they have, and the number of
queries is fixed (at most one per section plus the probe), whatever the number of objects.

No SQL is built from input: the expressions are constants of this file composed with
``psycopg2.sql``; the name prefix and the setting names are query parameters.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import decimal

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.conninfo import (
    SECRET_KEYS, ConninfoError, parse_conninfo)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import format_qualified
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.schema import (
    CHANGES_TABLE, SCHEMA as TRIGGER_SCHEMA, SETS_TABLE, TABLES_TABLE)

try:
    from psycopg2 import sql
    from psycopg2.extras import RealDictCursor
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None
    RealDictCursor = None

SECTIONS = ('publications', 'subscriptions', 'slots', 'settings', 'trigger_queues',
            'fdw_servers', 'schema_changes', 'copy_progress')

# Fields no server records: always null and listed in ``unavailable`` with their section.
# pg_sync_trigger deletes applied changes and keeps no flush history, so the time of the last
# successful flush of a trigger sync set is unknown.
NOT_RECORDED = {'trigger_queues': ('last_flush_time',)}

# Option names of foreign servers whose values are never returned.
SECRET_OPTIONS = SECRET_KEYS

SETTINGS = ('wal_level', 'max_replication_slots', 'max_wal_senders',
            'max_logical_replication_workers', 'max_worker_processes', 'max_slot_wal_keep_size')

# pg_subscription_rel.srsubstate
TABLE_STATES = {'i': 'init', 'd': 'data_copy', 'f': 'finished_copy', 's': 'synchronized',
                'r': 'ready'}

PUBLISH_FLAGS = ('insert', 'update', 'delete', 'truncate')


class Column(tuple):
    """Requirement: SELECT on a column of a catalog relation (or of ``schema.relation``)."""
    __slots__ = ()

    def __new__(cls, relation, column):
        if '.' not in relation:
            relation = 'pg_catalog.' + relation
        return tuple.__new__(cls, ('column', relation, column))


class Function(tuple):
    """Requirement: EXECUTE on a function, by signature (``pg_catalog`` unless qualified)."""
    __slots__ = ()

    def __new__(cls, signature):
        if '.' not in signature.split('(')[0]:
            signature = 'pg_catalog.' + signature
        return tuple.__new__(cls, ('function', signature, ''))


class Join(object):
    """A relation joined to a section's base relation, used when its requirements are met."""

    def __init__(self, text, needs):
        self.text = text
        self.needs = tuple(needs)


class Field(object):
    def __init__(self, key, expr, needs, join=None):
        self.key = key
        self.expr = expr
        self.needs = tuple(needs)
        self.join = join


class Section(object):
    """``base``: FROM clause; ``where``: fixed condition with its requirements ``where_needs``;
    ``name_expr``: what ``name_prefix`` filters (None: no filter); ``key``: the field without
    which the section cannot be read at all."""

    def __init__(self, name, base, fields, order_by, key='name', name_expr=None, where='true',
                 where_needs=(), optional=False):
        self.name = name
        # optional: the relations belong to another tool (e.g. pg_sync_trigger's schema); when
        # they do not exist the section is empty, not unavailable.
        self.optional = optional
        self.base = base
        self.fields = fields
        self.order_by = order_by
        self.key = key
        self.name_expr = name_expr
        self.where = where
        self.where_needs = tuple(where_needs)

    @property
    def joins(self):
        return _distinct_joins(f.join for f in self.fields if f.join is not None)

    def requirements(self):
        needs = list(self.where_needs)
        for join in self.joins:
            needs.extend(join.needs)
        for field in self.fields:
            needs.extend(field.needs)
        return needs


def _distinct_joins(joins):
    seen, result = set(), []
    for join in joins:
        if id(join) not in seen:
            seen.add(id(join))
            result.append(join)
    return result


def _flags(alias, relation, prefix, columns, key_prefix):
    return [Field(key_prefix + c, '%s.%s%s' % (alias, prefix, c), [Column(relation, prefix + c)])
            for c in columns]


# ---- publications ---------------------------------------------------------------------------

_PUBLICATIONS = Section(
    'publications', 'pg_catalog.pg_publication p',
    [Field('name', 'p.pubname', [Column('pg_publication', 'pubname')]),
     Field('owner', 'pg_catalog.pg_get_userbyid(p.pubowner)', [Column('pg_publication', 'pubowner')]),
     Field('all_tables', 'p.puballtables', [Column('pg_publication', 'puballtables')])]
    + _flags('p', 'pg_publication', 'pub', PUBLISH_FLAGS, 'publish_')
    + [Field('via_root', 'p.pubviaroot', [Column('pg_publication', 'pubviaroot')]),
       Field('tables',
             '(SELECT pg_catalog.json_agg(pg_catalog.json_build_array(pt.schemaname, pt.tablename)'
             ' ORDER BY pt.schemaname, pt.tablename)'
             ' FROM pg_catalog.pg_publication_tables pt WHERE pt.pubname = p.pubname)',
             [Column('pg_publication_tables', c) for c in ('pubname', 'schemaname', 'tablename')])],
    order_by='p.pubname', name_expr='p.pubname')

# ---- subscriptions --------------------------------------------------------------------------

# The apply worker of each subscription (tablesync workers have a relid, parallel apply workers
# of PostgreSQL 16+ a leader_pid; to_jsonb() reads leader_pid only where the column exists).
_APPLY_WORKER = Join(
    'LEFT JOIN LATERAL (SELECT w.* FROM pg_catalog.pg_stat_subscription w'
    ' WHERE w.subid = s.oid AND w.relid IS NULL'
    " AND (pg_catalog.to_jsonb(w) ->> 'leader_pid') IS NULL LIMIT 1) w ON true",
    [Column('pg_stat_subscription', 'subid'), Column('pg_stat_subscription', 'relid')])

_SUBSCRIPTION_STATS = Join(
    'LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid = s.oid',
    [Column('pg_stat_subscription_stats', 'subid')])


def _age(expr):
    """Seconds from a timestamp to the start of the transaction, never negative (clock skew)."""
    return ('(CASE WHEN %s IS NOT NULL THEN GREATEST(0, pg_catalog.date_part(\'epoch\','
            ' pg_catalog.now() - %s)) END)::float8' % (expr, expr))


def _worker(key, column, join=_APPLY_WORKER, relation='pg_stat_subscription', alias='w'):
    return Field(key, '%s.%s' % (alias, column), [Column(relation, column)], join)


def _stats(key):
    return _worker(key, key, _SUBSCRIPTION_STATS, 'pg_stat_subscription_stats', 'st')


_SUBSCRIPTIONS = Section(
    'subscriptions', 'pg_catalog.pg_subscription s',
    [Field('name', 's.subname', [Column('pg_subscription', 'subname')]),
     Field('owner', 'pg_catalog.pg_get_userbyid(s.subowner)', [Column('pg_subscription', 'subowner')]),
     Field('enabled', 's.subenabled', [Column('pg_subscription', 'subenabled')]),
     Field('publications', 's.subpublications', [Column('pg_subscription', 'subpublications')]),
     Field('slot_name', 's.subslotname', [Column('pg_subscription', 'subslotname')]),
     Field('publisher', 's.subconninfo', [Column('pg_subscription', 'subconninfo')]),
     _worker('worker_pid', 'pid'),
     _worker('received_lsn', 'received_lsn'),
     _worker('latest_end_lsn', 'latest_end_lsn'),
     _worker('last_msg_receipt_time', 'last_msg_receipt_time'),
     _worker('latest_end_time', 'latest_end_time'),
     Field('worker_running', 'w.pid IS NOT NULL', [Column('pg_stat_subscription', 'pid')],
           _APPLY_WORKER),
     Field('lag_bytes', 'pg_catalog.pg_wal_lsn_diff(w.received_lsn, w.latest_end_lsn)',
           [Column('pg_stat_subscription', 'received_lsn'),
            Column('pg_stat_subscription', 'latest_end_lsn'),
            Function('pg_wal_lsn_diff(pg_lsn,pg_lsn)')], _APPLY_WORKER),
     Field('lag_seconds', _age('w.latest_end_time'),
           [Column('pg_stat_subscription', 'latest_end_time')], _APPLY_WORKER),
     Field('last_msg_age_seconds', _age('w.last_msg_receipt_time'),
           [Column('pg_stat_subscription', 'last_msg_receipt_time')], _APPLY_WORKER),
     _stats('apply_error_count'),
     # by the columns the server has: sync_table_error_count from PostgreSQL 19 on
     Field('sync_error_count', "COALESCE(pg_catalog.to_jsonb(st) ->> 'sync_error_count', "
           "pg_catalog.to_jsonb(st) ->> 'sync_table_error_count')::bigint",
           [Column('pg_stat_subscription_stats', 'subid')], _SUBSCRIPTION_STATS),
     # PostgreSQL 18+: confl_insert_exists ... as {insert_exists: n, ...}; NULL before
     Field('conflicts', "(SELECT pg_catalog.json_object_agg(pg_catalog.substr(e.key, 7), e.value::bigint)"
           " FROM pg_catalog.jsonb_each_text(pg_catalog.to_jsonb(st)) e WHERE e.key LIKE 'confl\\_%%')",
           [Column('pg_stat_subscription_stats', 'subid')], _SUBSCRIPTION_STATS),
     Field('tables',
           "(SELECT pg_catalog.json_agg(pg_catalog.json_build_object("
           "'schema', n.nspname, 'name', c.relname, 'state', sr.srsubstate, 'lsn', sr.srsublsn)"
           " ORDER BY n.nspname, c.relname)"
           " FROM pg_catalog.pg_subscription_rel sr"
           " JOIN pg_catalog.pg_class c ON c.oid = sr.srrelid"
           " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
           " WHERE sr.srsubid = s.oid)",
           [Column('pg_subscription_rel', c) for c in ('srsubid', 'srrelid', 'srsubstate', 'srsublsn')]
           + [Column('pg_class', 'relname'), Column('pg_class', 'relnamespace'),
              Column('pg_namespace', 'nspname')])],
    order_by='s.subname', name_expr='s.subname',
    # subscriptions of the connected database only, like publications
    where='s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d'
          ' WHERE d.datname = pg_catalog.current_database())',
    where_needs=[Column('pg_subscription', 'subdbid'), Column('pg_subscription', 'oid')])

# ---- replication slots ----------------------------------------------------------------------

_CURRENT_LSN = ('CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()'
                ' ELSE pg_catalog.pg_current_wal_lsn() END')
_LSN_FUNCTIONS = [Function('pg_is_in_recovery()'), Function('pg_last_wal_replay_lsn()'),
                  Function('pg_current_wal_lsn()'), Function('pg_wal_lsn_diff(pg_lsn,pg_lsn)')]


def _slot(key, column=None):
    column = column or key
    return Field(key, 'r.' + column, [Column('pg_replication_slots', column)])


def _bytes_behind(key, column):
    return Field(key, 'pg_catalog.pg_wal_lsn_diff(%s, r.%s)' % (_CURRENT_LSN, column),
                 [Column('pg_replication_slots', column)] + _LSN_FUNCTIONS)


# The walsender serving a slot (its consumer's lag as PostgreSQL measures it).
_WALSENDER = Join('LEFT JOIN pg_catalog.pg_stat_replication sr ON sr.pid = r.active_pid',
                  [Column('pg_stat_replication', 'pid'), Column('pg_replication_slots', 'active_pid')])

_SLOTS = Section(
    'slots', 'pg_catalog.pg_replication_slots r',
    [_slot('slot_name'), _slot('slot_type'), _slot('plugin'), _slot('database'), _slot('active'),
     _slot('active_pid'), _slot('wal_status'), _slot('invalidation_reason'), _slot('safe_wal_size'),
     _slot('restart_lsn'),
     _slot('confirmed_flush_lsn'),
     _bytes_behind('retained_bytes', 'restart_lsn'),
     _bytes_behind('lag_bytes', 'confirmed_flush_lsn'),
     Field('replay_lag_seconds', 'pg_catalog.date_part(\'epoch\', sr.replay_lag)::float8',
           [Column('pg_stat_replication', 'replay_lag')], _WALSENDER)],
    order_by='r.slot_name', key='slot_name', name_expr='r.slot_name')

# ---- settings -------------------------------------------------------------------------------

_SETTINGS = Section(
    'settings', 'pg_catalog.pg_settings g',
    [Field('name', 'g.name', [Column('pg_settings', 'name')]),
     Field('value', 'g.setting', [Column('pg_settings', 'setting')])],
    order_by='g.name', where='g.name = ANY(%(settings)s)')


# ---- trigger-sync queues (pg_sync_trigger's change log) -------------------------------------

def _trigger(relation):
    return '%s.%s' % (TRIGGER_SCHEMA, relation)


_QUEUE = Join(
    'LEFT JOIN (SELECT c.set_name, pg_catalog.count(*) AS depth, pg_catalog.min(c.ts) AS oldest_ts,'
    " pg_catalog.max(c.ts) AS newest_ts, pg_catalog.count(*) FILTER (WHERE c.op = 'S') AS schema_pending"
    ' FROM %s c GROUP BY c.set_name) q ON q.set_name = t.name'
    % _trigger(CHANGES_TABLE),
    [Column(_trigger(CHANGES_TABLE), c) for c in ('set_name', 'ts', 'op')])


def _queue(key, expr):
    return Field(key, expr, [Column(_trigger(CHANGES_TABLE), 'ts')], _QUEUE)


_TRIGGER_QUEUES = Section(
    'trigger_queues', '%s t' % _trigger(SETS_TABLE),
    [Field('name', 't.name', [Column(_trigger(SETS_TABLE), 'name')]),
     Field('mode', 't.mode', [Column(_trigger(SETS_TABLE), 'mode')]),
     Field('server', 't.server', [Column(_trigger(SETS_TABLE), 'server')]),
     Field('batch_size', 't.batch_size', [Column(_trigger(SETS_TABLE), 'batch_size')]),
     Field('tables', '(SELECT pg_catalog.count(*) FROM %s tt WHERE tt.set_name = t.name)'
           % _trigger(TABLES_TABLE), [Column(_trigger(TABLES_TABLE), 'set_name')]),
     _queue('depth', 'COALESCE(q.depth, 0)'),
     _queue('oldest_entry_time', 'q.oldest_ts'),
     _queue('newest_entry_time', 'q.newest_ts'),
     _queue('oldest_entry_age_seconds', 'COALESCE(%s, 0)' % _age('q.oldest_ts')),
     Field('last_flush_time', 'NULL::timestamptz', []),
     Field('last_error', 't.last_error', [Column(_trigger(SETS_TABLE), 'last_error')]),
     Field('last_error_time', 't.last_error_at', [Column(_trigger(SETS_TABLE), 'last_error_at')]),
     Field('failed_change', 't.failed_change', [Column(_trigger(SETS_TABLE), 'failed_change')]),
     Field('flush_errors', 't.error_count', [Column(_trigger(SETS_TABLE), 'error_count')]),
     # column changes of the set's tables the flush has not applied on the target yet (routines v3)
     _queue('schema_changes_pending', 'COALESCE(q.schema_pending, 0)')],
    order_by='t.name', optional=True)

# ---- column changes followed by logical sets (pg_schema_follow) ------------------------------

_STATUS = Function('tablesync_ddl.status()')
_SCHEMA_CHANGES = Section(
    'schema_changes', 'tablesync_ddl.status() s',
    [Field('set', 's.set_name', [_STATUS]),
     Field('table', "s.table_schema || '.' || s.table_name", [_STATUS]),
     Field('last_change', 's.last_change', [_STATUS]),
     Field('changed_at', 's.changed_at', [_STATUS]),
     Field('columns', 's.columns', [_STATUS]),
     Field('table_columns', 's.table_columns', [_STATUS])],
    order_by='s.set_name, s.table_schema, s.table_name', key='set', optional=True)

# ---- foreign servers ----------------------------------------------------------------------

_FDW_SERVERS = Section(
    'fdw_servers', 'pg_catalog.pg_foreign_server f',
    [Field('name', 'f.srvname', [Column('pg_foreign_server', 'srvname')]),
     Field('wrapper', '(SELECT w.fdwname FROM pg_catalog.pg_foreign_data_wrapper w'
                      ' WHERE w.oid = f.srvfdw)',
           [Column('pg_foreign_server', 'srvfdw'), Column('pg_foreign_data_wrapper', 'fdwname')]),
     Field('owner', 'pg_catalog.pg_get_userbyid(f.srvowner)', [Column('pg_foreign_server', 'srvowner')]),
     Field('options', 'f.srvoptions', [Column('pg_foreign_server', 'srvoptions')]),
     Field('user_mappings', '(SELECT pg_catalog.count(*) FROM pg_catalog.pg_user_mappings um'
                            ' WHERE um.srvid = f.oid)',
           [Column('pg_user_mappings', 'srvid')])],
    order_by='f.srvname')

# ---- copies running now (PostgreSQL 14+) --------------------------------------------------

# the copying session: its start (the COPY statement's, or the worker's for a tablesync worker)
_COPY_SESSION = Join('LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = p.pid',
                     [Column('pg_stat_activity', c) for c in ('pid', 'query_start', 'backend_start')])
_COPY_RELATION = Join('LEFT JOIN pg_catalog.pg_class c ON c.oid = p.relid'
                      ' LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace',
                      [Column('pg_class', 'relname'), Column('pg_namespace', 'nspname')])


def _copy(key, column):
    return Field(key, 'p.' + column, [Column('pg_stat_progress_copy', column)])


_COPY_PROGRESS = Section(
    'copy_progress', 'pg_catalog.pg_stat_progress_copy p',
    [_copy('pid', 'pid'), _copy('command', 'command'), _copy('type', 'type'),
     Field('schema', 'n.nspname', [], _COPY_RELATION),
     Field('relation', 'c.relname', [], _COPY_RELATION),
     _copy('rows_done', 'tuples_processed'), _copy('rows_excluded', 'tuples_excluded'),
     _copy('bytes_done', 'bytes_processed'),
     Field('backend_type', 'a.backend_type', [Column('pg_stat_activity', 'backend_type')], _COPY_SESSION),
     Field('application_name', 'a.application_name',
           [Column('pg_stat_activity', 'application_name')], _COPY_SESSION),
     Field('started', 'COALESCE(a.query_start, a.backend_start)', [], _COPY_SESSION),
     Field('elapsed_seconds', _age('COALESCE(a.query_start, a.backend_start)'), [], _COPY_SESSION)],
    where='p.datname = pg_catalog.current_database()',
    where_needs=[Column('pg_stat_progress_copy', 'datname')], order_by='p.pid', key='pid')

SECTION_DEFS = dict((s.name, s) for s in (_PUBLICATIONS, _SUBSCRIPTIONS, _SLOTS, _SETTINGS,
                                          _TRIGGER_QUEUES, _FDW_SERVERS, _SCHEMA_CHANGES,
                                          _COPY_PROGRESS))

# Status of each requirement: 'ok', 'denied' (exists, not readable) or 'missing'. The schema is
# checked first: naming a relation of a schema without USAGE would raise an error.
_PROBE_SQL = '''
SELECT x.kind, x.obj, x.col,
       CASE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_namespace n
                              WHERE n.nspname = pg_catalog.split_part(x.obj, '.', 1)) THEN 'missing'
            WHEN NOT pg_catalog.has_schema_privilege(pg_catalog.split_part(x.obj, '.', 1), 'USAGE')
                 THEN 'denied'
            WHEN x.kind = 'function' THEN
                 CASE WHEN pg_catalog.to_regprocedure(x.obj) IS NULL THEN 'missing'
                      WHEN pg_catalog.has_function_privilege(pg_catalog.to_regprocedure(x.obj),
                                                             'EXECUTE') THEN 'ok'
                      ELSE 'denied' END
            WHEN pg_catalog.to_regclass(x.obj) IS NULL THEN 'missing'
            WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                              WHERE a.attrelid = pg_catalog.to_regclass(x.obj)
                                AND a.attname = x.col AND NOT a.attisdropped) THEN 'missing'
            WHEN pg_catalog.has_column_privilege(pg_catalog.to_regclass(x.obj), x.col, 'SELECT')
                 THEN 'ok'
            ELSE 'denied'
       END AS status
  FROM unnest(%s::text[], %s::text[], %s::text[]) AS x(kind, obj, col)
'''


# ---- pure helpers (unit-tested) -------------------------------------------------------------

def like_prefix(prefix):
    """LIKE pattern matching names that start with prefix literally (escape character \\)."""
    if not prefix:
        return '%'
    return prefix.replace('\\', '\\\\').replace('%', '\\%').replace('_', '\\_') + '%'


def requirements(sections):
    """Distinct requirements of the sections, in a stable order."""
    seen, result = set(), []
    for section in sections:
        for need in section.requirements():
            if need not in seen:
                seen.add(need)
                result.append(need)
    return result


def readable_fields(section, available):
    """(fields that can be read, names of those that cannot); None when the section cannot be read."""
    if not all(n in available for n in section.where_needs):
        return None
    joins_ok = dict((id(j), all(n in available for n in j.needs)) for j in section.joins)
    readable, missing = [], []
    for field in section.fields:
        ok = all(n in available for n in field.needs) and (field.join is None or joins_ok[id(field.join)])
        (readable if ok else missing).append(field)
    if section.key in [f.key for f in missing]:
        return None
    return readable, [f.key for f in missing]


def section_query(section, readable):
    """The SELECT of a section, NULL for the fields that cannot be read."""
    readable_keys = set(f.key for f in readable)
    select = sql.SQL(', ').join(
        sql.SQL('{} AS {}').format(sql.SQL(f.expr if f.key in readable_keys else 'NULL'),
                                   sql.Identifier(f.key))
        for f in section.fields)
    joins = [sql.SQL(j.text) for j in _distinct_joins(f.join for f in readable if f.join is not None)]
    where = [sql.SQL(section.where)]
    if section.name_expr:
        where.append(sql.SQL("{} LIKE %(pattern)s ESCAPE '\\'").format(sql.SQL(section.name_expr)))
    return sql.SQL('SELECT {} FROM {} {} WHERE {} ORDER BY {}').format(
        select, sql.SQL(section.base), sql.SQL(' ').join(joins),
        sql.SQL(' AND ').join(where), sql.SQL(section.order_by))


def section_missing(section, missing):
    """True when an optional section's own relations do not exist (the tool is not installed)."""
    if not section.optional:
        return False
    key_field = [f for f in section.fields if f.key == section.key][0]
    return any(n in missing for n in tuple(section.where_needs) + key_field.needs)


def server_options(options):
    """``srvoptions`` (``['k=v', ...]``) as a dict, secret values left out."""
    if options is None:
        return None
    out = {}
    for item in options:
        key, _sep, value = item.partition('=')
        if key not in SECRET_OPTIONS:
            out[key] = value
    return out


def plain(value):
    """Catalog values as Ansible returns them: numbers as int, times as ISO 8601 text."""
    if isinstance(value, decimal.Decimal):
        return int(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 3)
    return value


def publisher_info(conninfo):
    """The subscription's connection string as a dict, without password material."""
    if conninfo is None:
        return None
    try:
        params = parse_conninfo(conninfo)
    except ConninfoError:
        return {}
    return dict((k, v) for k, v in params.items() if k not in SECRET_KEYS)


def shape_publication(row):
    flags = [f for f in PUBLISH_FLAGS if row.pop('publish_' + f, None)]
    row['publish'] = flags
    if row.get('tables') is not None:
        row['tables'] = [format_qualified(s, t) for s, t in row['tables']]
    return row


def shape_subscription(row):
    row['publisher'] = publisher_info(row.get('publisher'))
    if row.get('tables') is not None:
        row['tables'] = [dict(name=format_qualified(t['schema'], t['name']),
                              state=TABLE_STATES.get(t['state'], t['state']), lsn=t['lsn'])
                         for t in row['tables']]
    return row


def shape_rows(section, rows):
    rows = [dict((k, plain(v)) for k, v in r.items()) for r in rows]
    if section == 'publications':
        return [shape_publication(r) for r in rows]
    if section == 'subscriptions':
        return [shape_subscription(r) for r in rows]
    if section == 'settings':
        return dict((r['name'], r['value']) for r in rows)
    if section == 'fdw_servers':
        for r in rows:
            r['options'] = server_options(r.get('options'))
    return rows


def server_version_info(conn):
    """PostgreSQL 10+ numbering: 150004 -> major 15, minor 4."""
    num = conn.server_version
    return dict(num=num, major=num // 10000, minor=num % 10000,
                full=conn.get_parameter_status('server_version') or '')


# ---- the reader -----------------------------------------------------------------------------

class SyncInfo(object):
    """Reads the gathered sections in one read-only transaction with a fixed number of queries."""

    def __init__(self, conn):
        self.conn = conn

    def read(self, gather, name_prefix=None):
        sections = [SECTION_DEFS[name] for name in SECTIONS if name in gather]
        params = dict(pattern=like_prefix(name_prefix), settings=list(SETTINGS))
        result = dict(server_version=server_version_info(self.conn), unavailable=[])
        try:
            available, missing = self._probe(requirements(sections))
            for section in sections:
                if section_missing(section, missing):
                    result[section.name] = []
                    continue
                result[section.name] = self._read_section(section, available, params,
                                                          result['unavailable'])
        finally:
            self.conn.rollback()
        return result

    def _probe(self, needs):
        with self.conn.cursor() as cur:
            kinds, objects, columns = zip(*needs) if needs else ((), (), ())
            cur.execute(_PROBE_SQL.strip(), (list(kinds), list(objects), list(columns)))
            rows = cur.fetchall()
        available = set((k, o, c) for k, o, c, status in rows if status == 'ok')
        missing = set((k, o, c) for k, o, c, status in rows if status == 'missing')
        return available, missing

    def _read_section(self, section, available, params, unavailable):
        fields = readable_fields(section, available)
        if fields is None:
            unavailable.append(section.name)
            return {} if section.name == 'settings' else []
        readable, missing = fields
        missing = missing + [k for k in NOT_RECORDED.get(section.name, ()) if k not in missing]
        unavailable.extend('%s.%s' % (section.name, key) for key in missing)
        with self.conn.cursor(cursor_factory=RealDictCursor) as cur:
            cur.execute(section_query(section, readable), params)
            return shape_rows(section.name, cur.fetchall())
