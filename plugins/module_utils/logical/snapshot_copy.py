# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The initial copy of a new subscription done outside PostgreSQL's table synchronisation
workers (``pg_subscription initial_copy: snapshot``): the plan, as pure functions.

The run (``snapshot_copier.py``) creates the subscription's replication slot on the publisher
over a replication connection with an exported snapshot, copies every published table in that
snapshot with ``COPY (SELECT ...) TO STDOUT`` into ``COPY ... FROM STDIN`` on the subscriber,
and then creates the subscription on that slot with ``copy_data = false``: the changes
committed after the snapshot arrive through the slot, none twice, none missed.

On the subscriber each table is copied in one transaction that first drops the indexes it can
rebuild exactly (primary key, unique constraints, plain indexes) and builds them again after
the rows are in: one sort per index instead of an index maintained row by row. A failure rolls
the table back with its indexes; nothing is left without its primary key.

This file decides, from catalog rows read in one query per server:
- which tables and columns to copy, with which row filter (``merge_published``),
- whether every target table exists, has the columns and is empty (``plan_tables``),
- which indexes to drop and rebuild, and which to keep (``index_plan``),
- the statements, every identifier quoted with ``psycopg2.sql``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.subscription import (
    comment_statement, drop_statement, enable_statement, truncate_statement)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG12, PG15

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

# pg_publication_tables has the column lists and row filters from PostgreSQL 15
MIN_PUBLISHER_VERSION = PG15
METHODS = ('tablesync', 'snapshot')
# The comment of a subscription while its snapshot copy runs; a run that finds it knows the
# copy did not finish (the module was killed), drops the subscription and copies again.
COPY_MARKER = ('tablesync.postgresql: initial copy in progress (pg_subscription '
               'initial_copy=snapshot); a run that finds this re-creates the subscription')
# Session advisory lock (class id, hashtext(subscription name)) held by the run that copies,
# so that a second run does not take an unfinished copy for an interrupted one.
LOCK_CLASS = 1952539244
LOCK_QUERY = 'SELECT pg_catalog.pg_try_advisory_lock(%s, pg_catalog.hashtext(%s))'
_SLOT_NAME_RE = re.compile(r'^[a-z0-9_]{1,63}$')


class SnapshotCopyError(TablesyncError):
    pass


# ---- the publisher: what the publications publish --------------------------------------------

# One row per (publication, table): relkind tells a partitioned root (published with
# publish_via_partition_root) from a plain table or partition; attnames is the published column
# list (all columns when the publication has none), rowfilter the deparsed WHERE expression.
PUBLISHED_QUERY = (
    "SELECT p.pubname, p.schemaname, p.tablename, c.relkind, p.attnames, p.rowfilter, "
    "ARRAY(SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM "
    "unnest(p.attnames) WITH ORDINALITY AS u(name, ord) JOIN pg_catalog.pg_attribute a "
    "ON a.attrelid = c.oid AND a.attname = u.name ORDER BY u.ord) AS types, "
    "ARRAY(SELECT a.atttypid::int FROM "
    "unnest(p.attnames) WITH ORDINALITY AS u(name, ord) JOIN pg_catalog.pg_attribute a "
    "ON a.attrelid = c.oid AND a.attname = u.name ORDER BY u.ord) AS type_oids "
    "FROM pg_catalog.pg_publication_tables p "
    "JOIN pg_catalog.pg_namespace n ON n.nspname = p.schemaname "
    "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename "
    "WHERE p.pubname = ANY(%s) ORDER BY p.schemaname, p.tablename, p.pubname")

PUBLICATIONS_QUERY = "SELECT pubname FROM pg_catalog.pg_publication WHERE pubname = ANY(%s)"


SLOT_EXISTS_QUERY = ("SELECT slot_name, active FROM pg_catalog.pg_replication_slots "
                     "WHERE slot_name = %s")


def check_slot_free(slot, row):
    """The slot the copy creates must not exist yet (``row``: SLOT_EXISTS_QUERY's, or None)."""
    if row is None:
        return
    raise SnapshotCopyError(
        'replication slot %s already exists on the publisher (%s). Nothing was changed. If an '
        'interrupted snapshot copy of this subscription left it, drop it there (SELECT '
        "pg_drop_replication_slot('%s')) and empty the target tables it had filled; if another "
        'subscription uses it, give this one another slot_name.'
        % (slot, 'in use' if row['active'] else 'not in use', slot))


def check_publisher_version(version):
    if version < MIN_PUBLISHER_VERSION:
        raise SnapshotCopyError(
            'initial_copy=snapshot requires PostgreSQL 15 or later on the publisher (it reads the '
            'column lists and row filters of pg_publication_tables); the publisher runs '
            'PostgreSQL %d. Use initial_copy=tablesync.' % (version // 10000))


def check_publications(wanted, found):
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise SnapshotCopyError('publication(s) %s do not exist on the publisher'
                                % ', '.join(missing))


def merge_published(rows):
    """Catalog rows (dicts of PUBLISHED_QUERY) -> [{schema, table, partitioned, columns, filters}]
    with one entry per table, as the table synchronisation worker combines publications:

    - the row filters of the publications are OR-ed; one publication without a filter means
      no filter (``filters`` is then empty);
    - the column lists must be the same in every publication (PostgreSQL refuses to combine
      different ones too).
    """
    tables = []
    by_key = {}
    for row in rows:
        key = (row['schemaname'], row['tablename'])
        entry = by_key.get(key)
        columns = list(row['attnames'] or [])
        if entry is None:
            entry = dict(schema=key[0], table=key[1], partitioned=row['relkind'] == 'p',
                         columns=columns, filters=[], unfiltered=False,
                         publications=[], types=list(row.get('types') or []),
                         type_oids=list(row.get('type_oids') or []))
            by_key[key] = entry
            tables.append(entry)
        elif entry['columns'] != columns:
            raise SnapshotCopyError(
                'table %s.%s is published with different column lists (%s: %s; %s: %s); '
                'PostgreSQL cannot combine them either' % (
                    key[0], key[1], entry['publications'][0], ', '.join(entry['columns']),
                    row['pubname'], ', '.join(columns)))
        entry['publications'].append(row['pubname'])
        if row['rowfilter'] is None:
            entry['unfiltered'] = True
        elif row['rowfilter'] not in entry['filters']:
            entry['filters'].append(row['rowfilter'])
    for entry in tables:
        if entry.pop('unfiltered'):
            entry['filters'] = []
    return tables


# ---- the subscriber: target tables, their columns, indexes and rows -------------------------

def target_query(version):
    """One row per wanted table (unnest of two text arrays: schemas, names): whether it exists,
    its kind, its copyable columns, and its indexes with what keeps one from being rebuilt."""
    generated = "AND a.attgenerated = ''" if version >= PG12 else ''
    return (
        "SELECT w.schema, w.name, c.oid IS NOT NULL AS exists, c.relkind, "
        "COALESCE(c.relispartition, false) AS relispartition, "
        "ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid "
        "AND a.attnum > 0 AND NOT a.attisdropped " + generated + " ORDER BY a.attnum) AS columns, "
        "ARRAY(SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
        "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped " + generated + " "
        "ORDER BY a.attnum) AS types, "
        "ARRAY(SELECT a.atttypid::int FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid "
        "AND a.attnum > 0 AND NOT a.attisdropped " + generated + " ORDER BY a.attnum) AS type_oids, "
        "COALESCE((SELECT json_agg(json_build_object("
        "'name', ic.relname, 'schema', ins.nspname, "
        "'definition', pg_catalog.pg_get_indexdef(i.indexrelid), "
        "'constraint', con.conname, 'contype', con.contype, "
        "'constraint_definition', CASE WHEN con.oid IS NOT NULL "
        "THEN pg_catalog.pg_get_constraintdef(con.oid) END, "
        "'keep', CASE "
        "WHEN NOT i.indisvalid THEN 'it is not valid' "
        "WHEN i.indisreplident THEN 'it is the replica identity' "
        "WHEN i.indisclustered THEN 'the table is clustered on it' "
        "WHEN con.contype = 'x' THEN 'it enforces an exclusion constraint' "
        "WHEN ic.reltablespace <> 0 THEN 'it is in its own tablespace' "
        "WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_constraint f WHERE f.contype = 'f' "
        "AND f.conindid = i.indexrelid) THEN 'a foreign key references it' "
        "WHEN pg_catalog.obj_description(i.indexrelid, 'pg_class') IS NOT NULL "
        "OR (con.oid IS NOT NULL AND pg_catalog.obj_description(con.oid, 'pg_constraint') "
        "IS NOT NULL) THEN 'it has a comment' "
        "WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_attribute ia WHERE ia.attrelid = i.indexrelid "
        "AND ia.attstattarget IS NOT NULL AND ia.attstattarget <> -1) "
        "THEN 'it has a statistics target' "
        "END) ORDER BY ic.relname) "
        "FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_catalog.pg_namespace ins ON ins.oid = ic.relnamespace "
        "LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid "
        "AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x') "
        "WHERE i.indrelid = c.oid), '[]'::json) AS indexes "
        "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS w(schema, name, ord) "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema "
        "LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.name "
        "AND c.relkind IN ('r', 'p') "
        "ORDER BY w.ord")


def table_ident(schema, table):
    return sql.Identifier(schema, table)


def nonempty_query(tables):
    """One query returning the positions (in ``tables``: [(schema, table, partitioned)]) of
    the tables that have at least one row; rows of inheritance children are not counted
    (logical replication writes into the named table itself)."""
    parts = []
    for position, (schema, table, partitioned) in enumerate(tables):
        parts.append(sql.SQL('SELECT {} AS position WHERE EXISTS (SELECT FROM {}{})').format(
            sql.Literal(position), sql.SQL('' if partitioned else 'ONLY '),
            table_ident(schema, table)))
    return sql.SQL(' UNION ALL ').join(parts)


def index_plan(schema, table, indexes, rebuildable=True):
    """(drop statements, rebuild statements, kept [{index, reason}]) for one target table.

    Only what PostgreSQL's own definition text rebuilds exactly is dropped: primary keys and
    unique constraints (``ALTER TABLE ... ADD CONSTRAINT`` with ``pg_get_constraintdef``) and
    plain indexes (``pg_get_indexdef``). Indexes of partitions and partitioned tables, and any
    index with something the definition does not carry (replica identity, clustering, a
    foreign key depending on it, a tablespace, a comment, a statistics target) are kept and
    maintained during the copy.
    """
    drops, rebuilds, kept = [], [], []
    target = table_ident(schema, table)
    for index in indexes:
        reason = index.get('keep')
        if reason is None and not rebuildable:
            reason = 'the table is a partition or partitioned'
        if reason is not None:
            kept.append(dict(index=index['name'], reason=reason))
            continue
        if index.get('constraint'):
            drops.append(Statement(sql.SQL('ALTER TABLE {} DROP CONSTRAINT {}').format(
                target, sql.Identifier(index['constraint']))))
            # the definition text is the server's own deparse of the catalog (as pg_dump uses)
            rebuilds.append(Statement(sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} {}').format(
                target, sql.Identifier(index['constraint']),
                sql.SQL(index['constraint_definition']))))
        else:
            drops.append(Statement(sql.SQL('DROP INDEX {}').format(
                sql.Identifier(index['schema'], index['name']))))
            rebuilds.append(Statement(sql.SQL(index['definition'])))
    return drops, rebuilds, kept


# types of PostgreSQL itself have the same OID on every server (user-defined ones start here)
FIRST_USER_OID = 16384
_BINARY = ' (FORMAT binary)'


def binary_copyable(entry, target, same_major):
    """Whether the rows can travel in COPY's binary format (no text output and parsing): the
    same major version on both sides, and every copied column of the same built-in type
    (same OID and type modifier) on both."""
    if not same_major or not entry['types'] or len(entry['types']) != len(entry['columns']):
        return False
    have = dict(zip(target['columns'], zip(target.get('types') or [],
                                           target.get('type_oids') or [])))
    for name, type_name, oid in zip(entry['columns'], entry['types'], entry['type_oids']):
        if oid >= FIRST_USER_OID or have.get(name) != (type_name, oid):
            return False
    return True


def copy_out_statement(entry, columns, binary=False):
    """``COPY (SELECT cols FROM [ONLY] t [WHERE (f1) OR (f2)]) TO STDOUT`` on the publisher."""
    query = sql.SQL('SELECT {} FROM {}{}').format(
        sql.SQL(', ').join(sql.Identifier(c) for c in columns),
        sql.SQL('' if entry['partitioned'] else 'ONLY '),
        table_ident(entry['schema'], entry['table']))
    if entry['filters']:
        # the row filters as the publisher deparses them from its catalog
        query += sql.SQL(' WHERE {}').format(sql.SQL(' OR ').join(
            sql.SQL('({})').format(sql.SQL(f)) for f in entry['filters']))
    return Statement(sql.SQL('COPY ({}) TO STDOUT{}').format(
        query, sql.SQL(_BINARY if binary else '')))


def copy_in_statement(entry, columns, binary=False):
    return Statement(sql.SQL('COPY {} ({}) FROM STDIN{}').format(
        table_ident(entry['schema'], entry['table']),
        sql.SQL(', ').join(sql.Identifier(c) for c in columns),
        sql.SQL(_BINARY if binary else '')))


def plan_tables(published, targets, nonempty, same_major=False):
    """The copy plan, or SnapshotCopyError listing every problem at once.

    ``published``: merge_published(); ``targets``: rows of target_query() in the same order;
    ``nonempty``: display names of target tables that have rows; ``same_major``: both servers
    run the same major version (binary COPY only then).
    Returns [{name, key: (schema, table, partitioned on the subscriber), format, copy_out,
    copy_in, drops, rebuilds, kept}].
    """
    problems = []
    plans = []
    for entry, target in zip(published, targets):
        name = '%s.%s' % (entry['schema'], entry['table'])
        if not target['exists']:
            problems.append('%s does not exist on the subscriber' % name)
            continue
        have = target['columns']
        missing = [c for c in entry['columns'] if c not in have]
        if missing:
            problems.append('%s on the subscriber lacks the published column(s) %s (or they '
                            'are generated there)' % (name, ', '.join(missing)))
            continue
        if name in nonempty:
            problems.append('%s on the subscriber is not empty' % name)
            continue
        columns = entry['columns'] or have
        rebuildable = target['relkind'] == 'r' and not target['relispartition']
        drops, rebuilds, kept = index_plan(entry['schema'], entry['table'], target['indexes'],
                                           rebuildable)
        binary = binary_copyable(entry, target, same_major)
        plans.append(dict(name=name, key=(entry['schema'], entry['table'],
                                          target['relkind'] == 'p'),
                          format='binary' if binary else 'text',
                          copy_out=copy_out_statement(entry, columns, binary),
                          copy_in=copy_in_statement(entry, columns, binary), drops=drops,
                          rebuilds=rebuilds, kept=kept))
    if problems:
        raise SnapshotCopyError(
            'initial_copy=snapshot cannot copy into the subscriber: %s. Nothing was changed. '
            'It needs every published table to exist with the published columns, and to be '
            'empty (use initial_copy=tablesync to copy into tables that already have rows).'
            % '; '.join(problems))
    return plans


# ---- the replication slot ---------------------------------------------------------------------

FAILOVER_PUBLISHER_VERSION = 170000


def slot_command(slot, failover=False):
    """The replication command creating the subscription's slot with an exported snapshot.

    The pre-15 option syntax (EXPORT_SNAPSHOT) is accepted by every version that has logical
    replication; a failover slot (synchronised to the publisher's standbys, PostgreSQL 17+)
    needs the option list syntax. ``slot`` is a checked slot name (lower-case letters, digits,
    underscores).
    """
    if failover:
        return sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER)").format(
            sql.Identifier(slot))
    return sql.SQL('CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT').format(
        sql.Identifier(slot))


def check_failover_publisher(version):
    if version < FAILOVER_PUBLISHER_VERSION:
        raise SnapshotCopyError(
            'failover: true needs PostgreSQL 17 or later on the publisher (failover slots, '
            'synchronised to its standbys); the publisher runs PostgreSQL %d' % (version // 10000))


def check_copy_options(options, jobs):
    """Options a snapshot copy cannot honour, refused before anything runs."""
    if jobs < 1:
        raise SnapshotCopyError('copy_jobs must be at least 1, got %d' % jobs)
    if options.get('two_phase') is True:
        raise SnapshotCopyError(
            'initial_copy=snapshot creates the replication slot itself and does not support '
            'two_phase: true; use initial_copy=tablesync')


def uses_snapshot(method, options):
    """Whether a subscription to be created copies with a snapshot: asked for, and the
    creation would copy data through a slot it creates."""
    return (method == 'snapshot' and options.get('copy_data') is not False
            and options.get('connect') is not False and options.get('create_slot') is not False
            and options.get('slot_name') != 'NONE')


def snapshot_desired(desired):
    """The subscription created before the copy: on the slot the copy created, without a copy
    of its own, disabled, and marked with COPY_MARKER as its comment until the copy is done
    (finish_statements() then enables it and sets its comment). The slot name is the
    subscription's unless given, and must be valid."""
    slot = desired['options'].get('slot_name', desired['name'])
    if not _SLOT_NAME_RE.match(slot or ''):
        raise SnapshotCopyError(
            'the replication slot is named after the subscription by default, and %r is not a '
            'valid slot name (lower-case letters, digits and underscores only): set slot_name'
            % slot)
    created = dict(desired)
    created['options'] = dict(desired['options'], slot_name=slot, create_slot=False,
                              copy_data=False, enabled=False)
    created['comment'] = COPY_MARKER
    return created


def finish_statements(desired):
    """After the copy, in one transaction: the comment the user wants (or none) instead of the
    marker, and the subscription enabled unless it is to stay disabled."""
    statements = [comment_statement(desired['name'], desired.get('comment') or '')]
    if desired['options'].get('enabled') is not False:
        statements.append(enable_statement(desired['name'], True))
    return statements


def is_interrupted(current):
    """A subscription a snapshot copy created and did not finish (its marker is still there)."""
    return current is not None and current.get('comment') == COPY_MARKER


def recovery_statements(name, current, tables):
    """Empty the tables of an interrupted copy's subscription (committed first: a run stopped
    in between still finds the marker), then drop it with its slot on the publisher."""
    statements = [truncate_statement(tables)] if tables else []
    statements.append(drop_statement(name, current['options'].get('slot_name') != 'NONE'))
    return statements
