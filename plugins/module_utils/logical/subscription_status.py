# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical replication subscriptions as they are: the catalog read (``catalog_query``,
``current_from_row``), their display (``summarize``, ``predict``, diffs), the wait for the
initial synchronisation (``sync_status``) and dropping with an unreachable publisher. Pure,
no I/O; the planner is ``subscription.py``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.conninfo import (
    MASK, SECRET_KEYS, ConninfoError)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import format_qualified
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG15
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.subscription import (
    Conninfo, OPTION_BY_NAME, SKIP_NONE, SLOT_NONE, STORED_OPTIONS, TABLE_STATES, _DECODERS, defaults, format_lsn, parse_lsn, skip_change)

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None


# ---- current state from the catalog ----------------------------------------------------------

def catalog_columns(server_version):
    """pg_subscription columns of the options this server version has."""
    return [o.column for o in STORED_OPTIONS if o.since <= server_version]


def catalog_query(server_version, conninfo_readable, origin_readable=False):
    """One query: the subscription, its owner and comment, per-table states, workers, errors.

    Parameter: the subscription name. Only columns that exist on ``server_version`` are read;
    ``subconninfo`` only when the role may read it (superuser, or a column grant). From
    PostgreSQL 15 the pending skip LSN (``subskiplsn``) and, when the role may read
    ``pg_replication_origin_status`` (superusers), how far the subscription has applied the
    publisher's WAL (the ``remote_lsn`` of its replication origin ``pg_<oid>``).
    """
    columns = [sql.SQL('s.{} AS {}').format(sql.Identifier(c), sql.Identifier(c))
               for c in catalog_columns(server_version) + ['subpublications']]
    if conninfo_readable:
        columns.append(sql.SQL('s.subconninfo AS subconninfo'))
    if server_version >= PG15:
        columns.append(sql.SQL('s.subskiplsn::text AS subskiplsn'))
        if origin_readable:
            columns.append(sql.SQL(
                "(SELECT os.remote_lsn::text FROM pg_catalog.pg_replication_origin_status os "
                "WHERE os.external_id = 'pg_' || s.oid::text) AS origin_lsn"))
    if server_version >= PG15:
        stats = sql.SQL(
            '(SELECT pg_catalog.row_to_json(st) FROM pg_catalog.pg_stat_subscription_stats st '
            'WHERE st.subid = s.oid)')
    else:
        stats = sql.SQL('NULL::json')
    return sql.SQL(
        'SELECT s.oid AS oid, s.subname AS subname, '
        'pg_catalog.pg_get_userbyid(s.subowner) AS owner, '
        "pg_catalog.obj_description(s.oid, 'pg_subscription') AS comment, {columns}, "
        '(SELECT pg_catalog.json_agg(pg_catalog.json_build_object('
        "'schema', n.nspname, 'table', c.relname, 'state', r.srsubstate) "
        'ORDER BY n.nspname, c.relname) '
        'FROM pg_catalog.pg_subscription_rel r '
        'JOIN pg_catalog.pg_class c ON c.oid = r.srrelid '
        'JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace '
        'WHERE r.srsubid = s.oid) AS tables, '
        '(SELECT pg_catalog.json_agg(pg_catalog.json_build_object('
        "'stat', pg_catalog.row_to_json(w), 'schema', wn.nspname, 'table', wc.relname) "
        'ORDER BY w.pid) '
        'FROM pg_catalog.pg_stat_subscription w '
        'LEFT JOIN pg_catalog.pg_class wc ON wc.oid = w.relid '
        'LEFT JOIN pg_catalog.pg_namespace wn ON wn.oid = wc.relnamespace '
        'WHERE w.subid = s.oid) AS workers, '
        '{stats} AS errors '
        'FROM pg_catalog.pg_subscription s '
        'WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d '
        'WHERE d.datname = pg_catalog.current_database()) '
        'AND s.subname = %s').format(columns=sql.SQL(', ').join(columns), stats=stats)


def _table_entry(item):
    code = item['state']
    return {'name': format_qualified(item['schema'], item['table']),
            'state': TABLE_STATES.get(code, code), 'state_code': code}


_WORKER_FIELDS = ('pid', 'leader_pid', 'received_lsn', 'last_msg_send_time',
                  'last_msg_receipt_time', 'latest_end_lsn', 'latest_end_time')


def _worker_entry(item):
    stat = item['stat']
    entry = dict((k, stat.get(k)) for k in _WORKER_FIELDS if k in stat)
    if stat.get('worker_type'):
        entry['type'] = stat['worker_type']
    elif stat.get('relid'):
        entry['type'] = 'table synchronization'
    elif stat.get('leader_pid'):
        entry['type'] = 'parallel apply'
    else:
        entry['type'] = 'apply'
    entry['table'] = format_qualified(item['schema'], item['table']) if item.get('table') else None
    return entry


def _error_counts(stats):
    if stats is None:
        return None
    return dict((k, v) for k, v in stats.items() if k not in ('subid', 'subname'))


def current_from_row(row, server_version):
    """Normalise a catalog_query() row (a dict) into the current-state dict used by plan().

    ``publisher`` is a Conninfo, or None when subconninfo could not be read or parsed
    (``conninfo_status`` says which: ``ok``, ``unreadable``, ``unparseable``). The raw
    connection string never leaves this function except inside the Conninfo.
    """
    if row is None:
        return None
    options = {}
    for option in STORED_OPTIONS:
        if option.since <= server_version and option.column in row:
            options[option.name] = _DECODERS.get(option.column, lambda v: v)(row[option.column])
    current = {
        'oid': row['oid'],
        'name': row['subname'],
        'owner': row['owner'],
        'comment': row['comment'],
        'publications': sorted(row['subpublications'] or []),
        'options': options,
        'publisher': None,
        'conninfo_status': 'unreadable',
        'tables': [_table_entry(t) for t in row.get('tables') or []],
        'workers': [_worker_entry(w) for w in row.get('workers') or []],
        'errors': _error_counts(row.get('errors')),
        # PostgreSQL 15+: pending ALTER SUBSCRIPTION ... SKIP (None: none), and the publisher
        # LSN applied so far (None: unknown); both as integers
        'skip_lsn': parse_lsn(row.get('subskiplsn')),
        'origin_lsn': parse_lsn(row.get('origin_lsn')),
    }
    if row.get('subconninfo') is not None:
        try:
            current['publisher'] = Conninfo.from_text(row['subconninfo'])
            current['conninfo_status'] = 'ok'
        except ConninfoError:
            current['conninfo_status'] = 'unparseable'
    return current


# ---- display ---------------------------------------------------------------------------------

def summarize(current):
    """Display form of a current-state dict (for diff and the returned ``subscription``)."""
    if current is None:
        return {}
    options = dict(current['options'])
    publisher = current['publisher']
    return {
        'name': current['name'],
        'owner': current['owner'],
        'comment': current['comment'],
        'enabled': options.pop('enabled', None),
        'slot_name': options.pop('slot_name', None),
        'publications': list(current['publications']),
        'publisher': publisher.redacted if publisher is not None else None,
        'options': options,
        'skip_lsn': format_lsn(current['skip_lsn']) if current.get('skip_lsn') else None,
    }


def predict(desired, current, server_version, session_user=None):
    """The current-state dict the plan leads to (check-mode diff); None for absent."""
    if desired['state'] == 'absent':
        return None
    if current is None:
        options = defaults(server_version)
        options['slot_name'] = desired['name']  # PostgreSQL's default; slot_name overrides it
        if desired['options'].get('connect') is False:
            options['enabled'] = False
        base = {'name': desired['name'], 'owner': session_user, 'comment': None,
                'publications': [], 'publisher': None, 'conninfo_status': 'ok',
                'options': options}
    else:
        base = dict(current)
        base['options'] = dict(current['options'])
    for option, value in desired['options'].items():
        if option in base['options'] or (current is None and OPTION_BY_NAME[option].column):
            base['options'][option] = value
    if desired['publications'] is not None:
        base['publications'] = list(desired['publications'])
    if desired['publisher'] is not None and base['conninfo_status'] != 'unreadable':
        base['publisher'] = desired['publisher']
    if desired['owner']:
        base['owner'] = desired['owner']
    if desired['comment'] is not None:
        base['comment'] = desired['comment'] or None
    skip = skip_change(desired, current)
    if skip is not None:
        base['skip_lsn'] = None if skip == SKIP_NONE else parse_lsn(skip)
    return base


def diff_summaries(before, after, mark_password):
    """before/after display dicts; a changed password shows as such (never its value)."""
    before_s, after_s = summarize(before), summarize(after)
    if mark_password and after_s.get('publisher'):
        after_s['publisher'] = dict(after_s['publisher'])
        after_s['publisher']['password'] = MASK + ' (changed)'
    return before_s, after_s


def password_changed(desired, current):
    if current is None or desired['publisher'] is None or current['publisher'] is None:
        return False
    return _secret_items(desired['publisher'].params) != _secret_items(current['publisher'].params)


def _secret_items(params):
    return dict((k, v) for k, v in params.items() if k in SECRET_KEYS)


# ---- waiting for the initial synchronisation -------------------------------------------------

def describe_tables(tables):
    if not tables:
        return 'no tables'
    return ', '.join('%s: %s (%s)' % (t['name'], t['state'], t['state_code']) for t in tables)


# wait_for_sync: worker errors counted without any table making progress in between before the
# wait gives up. Table synchronisation workers fail transiently on a loaded publisher (for
# example "replication slot ... already exists" from a retried sync slot) and succeed on the
# next attempt; a lasting cause (a conflicting row, a missing privilege) repeats every
# wal_retrieve_retry_interval and is reported after the third error.
SYNC_ERRORS_TOLERATED = 2


def table_progress(current):
    """What counts as progress of an initial synchronisation: the per-table states."""
    if current is None:
        return None
    return tuple(sorted((t['name'], t['state_code']) for t in current['tables']))


def error_total(errors):
    """Table synchronisation plus apply worker errors counted (0 when unknown)."""
    errors = errors or {}
    return (errors.get('sync_error_count') or 0) + (errors.get('apply_error_count') or 0)


def sync_status(current, baseline_errors, tolerated=0):
    """('done' | 'waiting' | 'failed', reason) for wait_for_sync.

    Done when every table is ready (``r``); ``s`` (synchronized) is a short hand-over to the
    apply worker and still counts as waiting. Failed when the subscription is gone or disabled
    (disable_on_error) or when more than ``tolerated`` worker errors were counted since
    ``baseline_errors`` (the caller moves the baseline when tables make progress).
    """
    if current is None:
        return 'failed', 'the subscription no longer exists'
    if not current['options'].get('enabled'):
        return 'failed', 'the subscription is disabled (enable it, or see disable_on_error)'
    errors = current.get('errors') or {}
    base = baseline_errors or {}
    for counter, worker in (('sync_error_count', 'table synchronization'),
                            ('apply_error_count', 'apply')):
        if (errors.get(counter) or 0) > (base.get(counter) or 0) + tolerated:
            return 'failed', 'a %s worker failed (%s rose from %s to %s)' % (
                worker, counter, base.get(counter) or 0, errors.get(counter))
    pending = [t for t in current['tables'] if t['state_code'] != 'r']
    if pending:
        return 'waiting', '%d of %d tables not ready' % (len(pending), len(current['tables']))
    return 'done', 'all %d tables ready' % len(current['tables'])


def sync_failure_message(name, current, reason, waited):
    parts = ['Subscription %s did not finish its initial synchronisation after %ds: %s.'
             % (name, waited, reason)]
    if current is not None:
        parts.append('Tables: %s.' % describe_tables(current['tables']))
        errors = current.get('errors')
        if errors is not None:
            parts.append('Worker errors so far (pg_stat_subscription_stats): sync_error_count=%s, '
                         'apply_error_count=%s.' % (errors.get('sync_error_count'),
                                                    errors.get('apply_error_count')))
        if not current.get('workers'):
            parts.append('No replication worker is running for it.')
    parts.append('PostgreSQL keeps the error text only in the subscriber\'s server log '
                 '(look for "logical replication" errors there); the workers keep retrying.')
    return ' '.join(parts)


# ---- dropping when the publisher is unreachable ----------------------------------------------

def classify_drop_error(message):
    """'slot_missing', 'unreachable' or None for an error of DROP SUBSCRIPTION."""
    text = message or ''
    if 'replication slot' in text and 'does not exist' in text:
        return 'slot_missing'
    if 'could not connect to publisher' in text or 'could not connect to the publisher' in text:
        return 'unreachable'
    return None


def slot_left_behind(current):
    """What stays on the publisher after a detached drop: the slot and where it is."""
    slot = current['options'].get('slot_name')
    if slot in (None, SLOT_NONE):
        return None
    params = current['publisher'].params if current['publisher'] is not None else {}
    pending = [t['name'] for t in current['tables'] if t['state_code'] not in ('r', 's')]
    return {
        'name': slot,
        'host': params.get('host'),
        'port': params.get('port'),
        'dbname': params.get('dbname'),
        # table sync slots are named pg_<subscription oid>_sync_<table oid>_<system id>
        'sync_slots_prefix': 'pg_%s_sync_' % current['oid'] if pending else None,
    }
