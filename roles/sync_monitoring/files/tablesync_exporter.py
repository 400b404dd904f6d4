# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tablesync exporter: the sync figures of pg_sync_info as node_exporter textfile metrics.

Installed by the tablesync.postgresql.sync_monitoring role and run by its systemd timer as the
cluster's OS user (peer authentication over the Unix socket). For every configured database it
reads, with one query each, the subscriptions of that database and the trigger-sync queues
(pg_sync_trigger's change log, when the schema ``tablesync`` exists), and once per cluster the
replication slots; then it writes all metrics to ``<output>`` atomically (temporary file in the
same directory, fsync, rename), so node_exporter never reads half a file.

Usage: python3 tablesync_exporter.py --config /etc/tablesync/exporter.json [--stdout]

Standard library and psycopg2 only. The formatting functions are pure and unit-tested.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time

PREFIX = 'tablesync_'  # as core/names.py (this script runs on hosts without the collection)
SLOT_SUFFIX = re.compile(r'_[0-9a-f]{8}$')

# name -> (type, help)
FAMILIES = (
    ('tablesync_exporter_up', 'gauge',
     'Whether the exporter could read the database (1) or not (0).'),
    ('tablesync_exporter_last_run_timestamp_seconds', 'gauge',
     'Unix time the exporter last wrote the metrics.'),
    ('tablesync_exporter_duration_seconds', 'gauge',
     'Seconds the exporter took to read every database.'),
    ('tablesync_subscription_enabled', 'gauge',
     'Whether the subscription is enabled (1) or disabled (0).'),
    ('tablesync_subscription_worker_running', 'gauge',
     'Whether the apply worker of the subscription runs (1) or not (0).'),
    ('tablesync_subscription_lag_bytes', 'gauge',
     'WAL received by the subscriber but not yet confirmed to the publisher, in bytes.'),
    ('tablesync_subscription_lag_seconds', 'gauge',
     'Seconds since the subscriber last reported its WAL position to the publisher.'),
    ('tablesync_subscription_last_message_age_seconds', 'gauge',
     'Seconds since the last message from the publisher arrived.'),
    ('tablesync_subscription_tables_not_ready', 'gauge',
     'Tables of the subscription whose initial copy is not finished.'),
    ('tablesync_apply_errors_total', 'counter',
     'Errors while applying replicated changes (PostgreSQL 15+).'),
    ('tablesync_sync_errors_total', 'counter',
     'Errors during the initial copy of tables (PostgreSQL 15+).'),
    ('tablesync_subscription_conflicts_total', 'counter',
     'Conflicts the apply worker met, by type (PostgreSQL 18+: insert_exists, update_missing, ...).'),
    ('tablesync_slot_active', 'gauge',
     'Whether a consumer is connected to the replication slot (1) or not (0).'),
    ('tablesync_slot_retained_bytes', 'gauge',
     'WAL the replication slot retains (current WAL location - restart_lsn), in bytes.'),
    ('tablesync_slot_lag_bytes', 'gauge',
     'How far the consumer of the slot is behind (current WAL location - confirmed_flush_lsn).'),
    ('tablesync_slot_safe_wal_size_bytes', 'gauge',
     'Bytes of WAL that can still be written before the slot is lost (PostgreSQL 13+).'),
    ('tablesync_slot_wal_status', 'gauge',
     'Availability of the WAL the slot needs: 1 for the current status label.'),
    ('tablesync_trigger_queue_depth', 'gauge',
     'Changes of a trigger sync set queued and not yet applied on the target.'),
    ('tablesync_trigger_queue_oldest_age_seconds', 'gauge',
     'Age of the oldest queued change of a trigger sync set (0 when the queue is empty).'),
    ('tablesync_trigger_flush_failing', 'gauge',
     '1 while the flush of a trigger sync set fails (its last batch hit an error), else 0.'),
    ('tablesync_trigger_flush_errors_total', 'counter',
     'Failed flush batches of a trigger sync set since it was created.'),
    ('tablesync_trigger_schema_changes_pending', 'gauge',
     'Column changes of the source tables of a trigger sync set not yet applied on the target.'),
    ('tablesync_schema_last_change', 'gauge',
     'Number of the last column change of a table of a logical set: captured (source) or applied '
     '(target); a target below its source has changes to apply.'),
    ('tablesync_schema_drift_columns', 'gauge',
     'Columns of a target table that differ from its source (missing, other type or extra), '
     'as of the last column change applied there.'),
)
FAMILY_NAMES = tuple(f[0] for f in FAMILIES)

_LABEL_NAME = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')

# ---- queries (constants; the prefix is a parameter) ------------------------------------------

SUBSCRIPTIONS_SQL = """
SELECT s.subname AS name, s.subenabled AS enabled, w.pid IS NOT NULL AS worker_running,
       pg_catalog.pg_wal_lsn_diff(w.received_lsn, w.latest_end_lsn) AS lag_bytes,
       CASE WHEN w.latest_end_time IS NOT NULL THEN GREATEST(0, pg_catalog.date_part('epoch',
            pg_catalog.now() - w.latest_end_time)) END::float8 AS lag_seconds,
       CASE WHEN w.last_msg_receipt_time IS NOT NULL THEN GREATEST(0, pg_catalog.date_part('epoch',
            pg_catalog.now() - w.last_msg_receipt_time)) END::float8 AS last_message_age_seconds,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_subscription_rel r
         WHERE r.srsubid = s.oid AND r.srsubstate <> 'r') AS tables_not_ready,
       {stats}
  FROM pg_catalog.pg_subscription s
  LEFT JOIN LATERAL (SELECT x.* FROM pg_catalog.pg_stat_subscription x
                      WHERE x.subid = s.oid AND x.relid IS NULL
                        AND (pg_catalog.to_jsonb(x) ->> 'leader_pid') IS NULL LIMIT 1) w ON true
 WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d
                     WHERE d.datname = pg_catalog.current_database())
   AND pg_catalog.starts_with(s.subname, %(prefix)s)
 ORDER BY s.subname
"""
# Read by the columns the server has, not by its version: sync_error_count is
# sync_table_error_count from PostgreSQL 19 on, and the confl_* counters are 18+.
STATS_15 = ("(SELECT (pg_catalog.to_jsonb(st) ->> 'apply_error_count')::bigint"
            ' FROM pg_catalog.pg_stat_subscription_stats st WHERE st.subid = s.oid) AS apply_errors,'
            " (SELECT COALESCE(pg_catalog.to_jsonb(st) ->> 'sync_error_count',"
            " pg_catalog.to_jsonb(st) ->> 'sync_table_error_count')::bigint"
            ' FROM pg_catalog.pg_stat_subscription_stats st WHERE st.subid = s.oid) AS sync_errors,'
            ' (SELECT pg_catalog.json_object_agg(pg_catalog.substr(e.key, 7), e.value::bigint)'
            ' FROM pg_catalog.pg_stat_subscription_stats st,'
            ' pg_catalog.jsonb_each_text(pg_catalog.to_jsonb(st)) e'
            " WHERE st.subid = s.oid AND e.key LIKE 'confl\\_%%') AS conflicts")
STATS_OLD = 'NULL::bigint AS apply_errors, NULL::bigint AS sync_errors, NULL::json AS conflicts'

SLOTS_SQL = """
SELECT r.slot_name, r.database, r.active,
       pg_catalog.pg_wal_lsn_diff({lsn}, r.restart_lsn) AS retained_bytes,
       pg_catalog.pg_wal_lsn_diff({lsn}, r.confirmed_flush_lsn) AS lag_bytes,
       {wal}
  FROM pg_catalog.pg_replication_slots r
 WHERE pg_catalog.starts_with(r.slot_name, %(prefix)s)
 ORDER BY r.slot_name
"""
CURRENT_LSN = ('CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()'
               ' ELSE pg_catalog.pg_current_wal_lsn() END')
WAL_13 = 'r.safe_wal_size, r.wal_status'
WAL_OLD = 'NULL::bigint AS safe_wal_size, NULL::text AS wal_status'

# Routines v2 of pg_sync_trigger offer the figures through a function that pg_monitor may call
# (the queue itself is readable by its owner only); older ones only to a superuser, directly.
QUEUES_SQL = """
SELECT q.name, q.depth,
       COALESCE(GREATEST(0, pg_catalog.date_part('epoch', pg_catalog.now() - q.oldest_ts)), 0)::float8
         AS oldest_age_seconds,
       CASE WHEN q.failed THEN 1 ELSE 0 END AS flush_failing, q.error_count AS flush_errors,
       (pg_catalog.to_jsonb(q) ->> 'schema_changes_pending')::bigint AS schema_changes_pending
  FROM tablesync.queue_status() AS q
 ORDER BY q.name
"""
QUEUES_SQL_V1 = """
SELECT t.name, COALESCE(q.depth, 0) AS depth,
       COALESCE(GREATEST(0, pg_catalog.date_part('epoch', pg_catalog.now() - q.oldest_ts)), 0)::float8
         AS oldest_age_seconds, 0 AS flush_failing, 0 AS flush_errors
  FROM tablesync.trigger_sets t
  LEFT JOIN (SELECT c.set_name, pg_catalog.count(*) AS depth, pg_catalog.min(c.ts) AS oldest_ts
               FROM tablesync.trigger_changes c GROUP BY c.set_name) q ON q.set_name = t.name
 ORDER BY t.name
"""
HAS_QUEUES_SQL = """
SELECT CASE WHEN pg_catalog.to_regprocedure('tablesync.queue_status()') IS NOT NULL THEN 2
            WHEN pg_catalog.to_regclass('tablesync.trigger_changes') IS NOT NULL THEN 1
            ELSE 0 END
"""

# Column changes followed by logical sets (pg_schema_follow): the drift is counted on targets only
# (the database has the set's subscription); a source table may have unpublished columns.
SCHEMA_SQL = """
SELECT s.set_name, s.table_schema || '.' || s.table_name AS table_name, s.last_change,
       CASE WHEN s.table_columns IS NOT NULL AND EXISTS (
                 SELECT FROM pg_catalog.pg_subscription x
                  WHERE x.subname = %(prefix)s || s.set_name
                    AND x.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d
                                      WHERE d.datname = pg_catalog.current_database()))
            THEN (SELECT pg_catalog.count(*) FROM (
                    (SELECT pg_catalog.jsonb_array_elements(s.columns)
                     EXCEPT SELECT pg_catalog.jsonb_array_elements(s.table_columns))
                    UNION ALL
                    (SELECT pg_catalog.jsonb_array_elements(s.table_columns)
                     EXCEPT SELECT pg_catalog.jsonb_array_elements(s.columns))) AS d) END AS drift_columns
  FROM tablesync_ddl.status() AS s
 ORDER BY 1, 2
"""
# the schema first: naming a function of a schema without USAGE is an error (a trigger target's
# tablesync_ddl holds follow_table only, for the writer role)
HAS_SCHEMA_SQL = """
SELECT CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = 'tablesync_ddl'
                          AND pg_catalog.has_schema_privilege(n.oid, 'USAGE'))
            THEN pg_catalog.to_regprocedure('tablesync_ddl.status()') IS NOT NULL ELSE false END
"""


# ---- pure formatting (unit-tested) ------------------------------------------------------------

def escape_label_value(value):
    """Label value as the text exposition format wants it: \\ " and newline escaped."""
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def format_labels(labels):
    if not labels:
        return ''
    for name in labels:
        if not _LABEL_NAME.match(name):
            raise ValueError('invalid label name %r' % (name,))
    return '{%s}' % ','.join('%s="%s"' % (name, escape_label_value(labels[name]))
                             for name in sorted(labels))


def format_value(value):
    """A sample value: booleans as 1/0, integers exactly, floats shortest, NaN and infinities."""
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def set_of(name, kind):
    """The sync set a collection object belongs to: ``tablesync_<set>`` for subscriptions,
    ``tablesync_<set>_<8 hex>`` for slots; '' for other names."""
    if not name.startswith(PREFIX):
        return ''
    rest = name[len(PREFIX):]
    if kind == 'slot':
        rest = SLOT_SUFFIX.sub('', rest)
    return rest


class Metrics(object):
    """Samples by family; ``render()`` writes every family that has samples, in FAMILIES order,
    each with its HELP and TYPE lines once, samples sorted by labels."""

    def __init__(self):
        self.samples = dict((name, {}) for name in FAMILY_NAMES)

    def add(self, name, labels, value):
        if name not in self.samples:
            raise KeyError('unknown metric family %s' % name)
        if value is None:
            return  # unknown (older server, worker not running): no sample rather than a lie
        self.samples[name][format_labels(labels)] = value

    def render(self):
        lines = []
        for name, kind, help_text in FAMILIES:
            samples = self.samples[name]
            if not samples:
                continue
            lines.append('# HELP %s %s' % (name, help_text.replace('\\', '\\\\').replace('\n', '\\n')))
            lines.append('# TYPE %s %s' % (name, kind))
            for labels in sorted(samples):
                lines.append('%s%s %s' % (name, labels, format_value(samples[labels])))
        return '\n'.join(lines) + '\n' if lines else ''


def add_database(metrics, database, data):
    """Samples of one database's rows (``data``: {subscriptions, trigger_queues} lists of
    dicts, as the queries return them; a missing key: not read)."""
    for sub in data.get('subscriptions') or []:
        labels = {'database': database, 'subscription': sub['name'],
                  'set': set_of(sub['name'], 'subscription')}
        metrics.add('tablesync_subscription_enabled', labels, bool(sub.get('enabled')))
        metrics.add('tablesync_subscription_worker_running', labels, bool(sub.get('worker_running')))
        metrics.add('tablesync_subscription_lag_bytes', labels, sub.get('lag_bytes'))
        metrics.add('tablesync_subscription_lag_seconds', labels, sub.get('lag_seconds'))
        metrics.add('tablesync_subscription_last_message_age_seconds', labels,
                    sub.get('last_message_age_seconds'))
        metrics.add('tablesync_subscription_tables_not_ready', labels, sub.get('tables_not_ready'))
        metrics.add('tablesync_apply_errors_total', labels, sub.get('apply_errors'))
        metrics.add('tablesync_sync_errors_total', labels, sub.get('sync_errors'))
        for kind, count in sorted((sub.get('conflicts') or {}).items()):
            metrics.add('tablesync_subscription_conflicts_total', dict(labels, type=kind), count)
    for queue in data.get('trigger_queues') or []:
        labels = {'database': database, 'set': queue['name']}
        metrics.add('tablesync_trigger_queue_depth', labels, queue.get('depth'))
        metrics.add('tablesync_trigger_queue_oldest_age_seconds', labels,
                    queue.get('oldest_age_seconds'))
        metrics.add('tablesync_trigger_flush_failing', labels, queue.get('flush_failing', 0))
        metrics.add('tablesync_trigger_flush_errors_total', labels, queue.get('flush_errors', 0))
        metrics.add('tablesync_trigger_schema_changes_pending', labels, queue.get('schema_changes_pending'))
    for table in data.get('schema_changes') or []:
        labels = {'database': database, 'set': table['set_name'], 'table': table['table_name']}
        metrics.add('tablesync_schema_last_change', labels, table.get('last_change'))
        metrics.add('tablesync_schema_drift_columns', labels, table.get('drift_columns'))


def add_slots(metrics, slots):
    for slot in slots or []:
        labels = {'slot': slot['slot_name'], 'database': slot.get('database') or '',
                  'set': set_of(slot['slot_name'], 'slot')}
        metrics.add('tablesync_slot_active', labels, bool(slot.get('active')))
        metrics.add('tablesync_slot_retained_bytes', labels, slot.get('retained_bytes'))
        metrics.add('tablesync_slot_lag_bytes', labels, slot.get('lag_bytes'))
        metrics.add('tablesync_slot_safe_wal_size_bytes', labels, slot.get('safe_wal_size'))
        if slot.get('wal_status'):
            status = dict(labels, status=slot['wal_status'])
            metrics.add('tablesync_slot_wal_status', status, 1)


def build_metrics(results, slots, now, duration):
    """All samples: ``results`` maps each database to its data or to None (unreadable)."""
    metrics = Metrics()
    for database in sorted(results):
        data = results[database]
        metrics.add('tablesync_exporter_up', {'database': database}, data is not None)
        if data is not None:
            add_database(metrics, database, data)
    add_slots(metrics, slots)
    metrics.add('tablesync_exporter_last_run_timestamp_seconds', {}, round(now, 3))
    metrics.add('tablesync_exporter_duration_seconds', {}, round(duration, 3))
    return metrics


def write_atomic(path, text, mode=0o644):
    """Write text to path through a temporary file in the same directory, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path), suffix='.tmp')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---- reading (psycopg2) -----------------------------------------------------------------------

def _rows(cur, query, params=None):
    cur.execute(query, params)
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        item = {}
        for name, value in zip(names, row):
            # json columns (the PostgreSQL 18 conflict counters) come back as dicts
            if value is not None and not isinstance(value, (bool, int, float, str, dict, list)):
                value = float(value)  # numeric (Decimal)
                if value == int(value):
                    value = int(value)
            item[name] = value
        out.append(item)
    return out


def read_database(psycopg2, config, database, want_slots):
    """(data, slots or None) of one database, in one read-only transaction."""
    # search_path pinned: no name in the queries below can resolve to an object that a database
    # or schema owner created (the queries also qualify everything).
    kwargs = dict(dbname=database, connect_timeout=int(config.get('connect_timeout', 5)),
                  application_name='tablesync-exporter',
                  options='-c search_path=pg_catalog,pg_temp -c default_transaction_read_only=on')
    for key in ('host', 'port', 'user'):
        if config.get(key) not in (None, ''):
            kwargs[key] = config[key]
    conn = psycopg2.connect(**kwargs)
    try:
        conn.set_session(readonly=True)
        version = conn.server_version
        prefix = config.get('prefix', PREFIX)
        with conn.cursor() as cur:
            data = {'subscriptions': _rows(cur, SUBSCRIPTIONS_SQL.format(
                stats=STATS_15 if version >= 150000 else STATS_OLD), {'prefix': prefix})}
            cur.execute(HAS_QUEUES_SQL)
            queues = cur.fetchone()[0]
            data['trigger_queues'] = (_rows(cur, QUEUES_SQL) if queues == 2 else
                                      _rows(cur, QUEUES_SQL_V1) if queues == 1 else [])
            cur.execute(HAS_SCHEMA_SQL)
            data['schema_changes'] = (_rows(cur, SCHEMA_SQL, {'prefix': prefix})
                                      if cur.fetchone()[0] else [])
            slots = None
            if want_slots:
                slots = _rows(cur, SLOTS_SQL.format(lsn=CURRENT_LSN, wal=WAL_13 if version >= 130000
                                                    else WAL_OLD), {'prefix': prefix})
        conn.rollback()
        return data, slots
    finally:
        conn.close()


def collect(config, psycopg2=None, clock=time.time):
    if psycopg2 is None:
        import psycopg2  # pylint: disable=import-outside-toplevel
    start = clock()
    results, slots, errors = {}, None, []
    for database in config.get('databases') or ['postgres']:
        try:
            results[database], read_slots = read_database(psycopg2, config, database, slots is None)
            if read_slots is not None:
                slots = read_slots
        except psycopg2.Error as e:
            results[database] = None
            errors.append('%s: %s' % (database, str(e).strip()))
    end = clock()
    return build_metrics(results, slots, end, end - start), errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--config', default='/etc/tablesync/exporter.json')
    parser.add_argument('--stdout', action='store_true', help='print instead of writing the file')
    args = parser.parse_args(argv)
    with open(args.config) as f:
        config = json.load(f)
    metrics, errors = collect(config)
    for error in errors:
        sys.stderr.write('tablesync-exporter: cannot read %s\n' % error)
    text = metrics.render()
    if args.stdout:
        sys.stdout.write(text)
    else:
        write_atomic(config['output'], text)
    return 1 if errors and len(errors) == len(config.get('databases') or ['postgres']) else 0


if __name__ == '__main__':
    sys.exit(main())
