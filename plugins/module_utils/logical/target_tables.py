# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner of pg_target_tables: the tables of a sync set, created on the target from the source.

Pure functions, no database I/O:

* ``parse_table_specs(tables)`` reads the ``tables`` option into ``core.tables.TableRef`` objects.
* ``table_from_catalog(row)`` turns one row of the module's catalog query into a ``TableDef``,
  validating every SQL text the catalog produced (type names from ``format_type()``).
* ``resolve_desired(specs, source)`` picks the source definitions (column subsets applied) and
  raises ``PlanError`` naming every missing table, non-table and unknown column at once.
* ``plan_changes(desired, target, ...)`` compares with the target and returns a ``Plan``: the
  statements to create missing schemas and tables, the tables created and the column
  differences of the existing ones, or raises ``PlanError`` before anything is changed.
  With ``indexes``, the plan also holds the builds of the source's secondary indexes the target
  lacks (``index_statements``, one transaction each), except those of tables whose rows are
  still to be copied (created by this plan, or in a subscription's initial copy), which are
  deferred when ``defer_indexes`` is set: building an index once after the bulk copy is several
  times faster than maintaining it row by row during the copy.

Only SQL text read from a catalog (``CatalogSQL``) is ever inserted with ``sql.SQL``; names are
always ``sql.Identifier``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import format_qualified
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.tables import parse_table_refs
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.column_changes import plan_column_changes
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.peer_defs import (
    after_tables, column_extras, complete_existing, peer_problems, sequences_before, without_constraint_indexes)
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.table_defs import (
    OTHER_KINDS, CatalogSQL, Column, Index, TableDef, identifier_list, catalog_sql,
    catalog_type_name, column_definition)

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None


class TargetState(object):
    """What the target has of what the plan needs."""

    def __init__(self, schemas=(), tables=(), missing_types=(), missing_collations=(), copying=(),
                 server_version=None, peers=None):
        # definition=peer: {key: peer_defs.PeerDef} of the existing tables as the target has them
        self.peers = peers or {}
        self.server_version = server_version   # server_version_num (None: not known)
        self.schemas = set(schemas)
        self.tables = dict((t.key, t) for t in tables)
        self.missing_types = set(missing_types)
        self.missing_collations = set(tuple(c) for c in missing_collations)
        # (schema, name) of tables a subscription of the target database is still copying
        # (pg_subscription_rel.srsubstate i, d or f)
        self.copying = set(tuple(k) for k in copying)


class Plan(object):
    def __init__(self, statements, created, existing, differences, index_statements=(),
                 indexes=None, column_changes=None):
        self.statements = statements
        self.created = created        # display names of the tables the statements create
        self.existing = existing      # display names of the listed tables the target has
        self.differences = differences
        # one CREATE INDEX per statement, each in its own transaction, after ``statements``
        self.index_statements = list(index_statements)
        # {'built': {table: [index]}, 'deferred': {...}, 'skipped': [{table, index, reason}]}
        self.indexes = indexes or dict(built={}, deferred={}, skipped=[])
        # {table: {changes: [...], pending: [...]}} of the tables whose columns were followed
        self.column_changes = column_changes or {}

    @property
    def pending(self):
        """Whether some followed change waits for the subscription to catch up."""
        return any(c['pending'] for c in self.column_changes.values())


# ---- reading the option and the catalog -----------------------------------------------------

def parse_table_specs(tables):
    """The ``tables`` option -> list of TableRef (``core.tables``: name, columns). Raises
    PlanError naming every bad entry."""
    specs, errors = parse_table_refs(tables, ('name', 'columns'))
    errors = ['Invalid entry in tables: %s.' % e for e in errors]
    if not specs and not errors:
        errors.append('tables must list at least one table.')
    if errors:
        raise PlanError(errors, separator=' ')
    return specs


def table_from_catalog(row):
    """A row of the catalog query (dict) -> TableDef; ``kind`` is None when it does not exist."""
    primary_key = None
    if row.get('pk_name'):
        primary_key = (row['pk_name'], list(row['pk_columns']))
    replica_index = None
    if row.get('ri_name'):
        replica_index = (row['ri_name'], list(row['ri_columns']))
    return TableDef(row['schema'], row['name'], row.get('kind'),
                    [_column_from_catalog(c) for c in row.get('columns') or ()],
                    primary_key, row.get('replica_identity') or 'd', replica_index,
                    [_index_from_catalog(i) for i in row.get('indexes') or ()], row.get('dropped') or ())


def _index_from_catalog(item):
    method = item.get('method')
    return Index(item['name'], bool(item.get('unique')),
                 CatalogSQL(method) if method else None, item.get('columns') or (),
                 item.get('immediate', True) is not False, item.get('valid', True) is not False)


def _column_from_catalog(col):
    collation = None
    if col.get('collation'):
        collation = (col['collation_schema'], col['collation'])
    generated = CatalogSQL(col['generated']) if col.get('generated') else None
    # attmissingval as array text ('{5}'), read under the pinned text forms; only ever sent as a
    # literal (column_changes)
    missing = col.get('missing')
    return Column(col['name'], catalog_type_name(col['type']), bool(col.get('not_null')),
                  collation, generated, bool(col.get('has_default')),
                  missing, col.get('attnum'), col.get('generated_kind') == 'v')


# ---- source side ----------------------------------------------------------------------------

def resolve_desired(specs, source_tables, generated_columns='compute'):
    """The definitions to create: the source's, with each spec's column subset applied;
    ``generated_columns='copy'``: stored generated columns as plain ones (their values are
    published).

    ``source_tables``: TableDefs read from the source for the specs (``kind`` None = missing).
    Raises PlanError naming all missing tables, non-tables, unknown columns and subsets that
    leave out key columns.
    """
    by_key = dict((t.key, t) for t in source_tables)
    missing, errors, desired = [], [], []
    for spec in specs:
        table = by_key.get(spec.key)
        if table is None or table.kind is None:
            missing.append(spec.shown)
            continue
        if not table.is_table:
            errors.append('%s on the source is a %s, not a table.'
                          % (spec.shown, OTHER_KINDS.get(table.kind, 'relation of kind %r' % table.kind)))
            continue
        if generated_columns == 'copy':
            table = table.stored_as_plain()
        if spec.columns is None:
            desired.append(table)
            continue
        problem = _subset_problem(table, spec.columns)
        if problem:
            errors.append(problem)
        else:
            desired.append(table.subset(spec.columns))
    if missing:
        errors.insert(0, 'Tables missing on the source: %s.' % ', '.join(missing))
    if errors:
        raise PlanError(errors, separator=' ')
    return desired


def _subset_problem(table, columns):
    have = table.column_names()
    unknown = [c for c in columns if c not in have]
    if unknown:
        return 'Columns of %s not on the source: %s.' % (table.display, ', '.join(unknown))
    for what, key in (('primary key', table.primary_key), ('replica identity index', table.replica_index)):
        left_out = [c for c in (key[1] if key else ()) if c not in columns]
        if left_out:
            return ('The columns of %s leave out its %s columns %s; list them too (replication '
                    'needs them to apply updates and deletes).'
                    % (table.display, what, ', '.join(left_out)))
    return None


# ---- target side ----------------------------------------------------------------------------

def plan_changes(desired, target, create_schemas=True, check_columns=True, indexes=False,
                 defer_indexes=True, schema_changes=None, caught_up=False, peers=None):
    """Compare the desired tables with the target -> Plan, or PlanError before any change.

    ``schema_changes``: what to do with an existing table whose columns differ: ``refuse``
    (PlanError, nothing changed), ``ignore`` (report only) or ``follow`` (alter the target,
    ``column_changes``; the changes that wait for the subscription to catch up are planned only
    when ``caught_up``). None means ``refuse`` with ``check_columns``, else ``ignore``.
    With ``indexes``, the source's secondary indexes missing on the target are planned too (see
    ``plan_indexes``).
    ``peers``: {key: ``peer_defs.PeerDef``} for a target that takes writes of its own (a peer of
    a bidirectional set): the tables created get the rest of their definition (``peer_defs``).
    """
    if peers is not None:
        desired = [without_constraint_indexes(t, peers[t.key]) if t.key in peers else t for t in desired]
    if schema_changes is None:
        schema_changes = 'refuse' if check_columns else 'ignore'
    existing, to_create, errors = [], [], []
    for table in desired:
        actual = target.tables.get(table.key)
        if actual is None:
            to_create.append(table)
        elif not actual.is_table:
            errors.append('%s exists on the target as a %s, not a table.'
                          % (table.display, OTHER_KINDS.get(actual.kind, 'relation')))
        else:
            existing.append((table, actual))
    differences, followed = {}, []
    for table, actual in existing:
        diff = column_differences(table, actual)
        if diff:
            differences[table.display] = diff
        if schema_changes == 'follow':
            column_plan = plan_column_changes(table, actual)   # also NOT NULL changes
            if not column_plan.empty:
                followed.append(column_plan)
    missing_schemas = _missing_schemas(to_create, target)
    errors.extend(_creation_problems(to_create, target, missing_schemas, create_schemas))
    if peers is not None:
        errors.extend(peer_problems(to_create + [t for t, dummy in existing], peers,
                                    set(t.key for t in desired), target.peers))
    if differences and schema_changes == 'refuse':
        errors.append('Columns differ between source and target (nothing was changed; set '
                      'check_columns=false to skip existing tables anyway, or follow the source '
                      'with schema_changes=follow): %s.' % describe_differences(differences))
    for column_plan in followed:
        errors.extend('Cannot follow the source: %s.' % e for e in column_plan.errors)
    if errors:
        raise PlanError(errors, differences, separator=' ')
    statements = [create_schema(s) for s in missing_schemas]
    statements.extend(sequences_before(to_create, peers or {}))
    for table in to_create:
        statements.extend(create_table(table, column_extras((peers or {}).get(table.key))))
    statements.extend(after_tables(to_create, peers or {}))
    if peers is not None:
        statements.extend(complete_existing(existing, peers, target.peers))
    for column_plan in followed:
        statements.extend(column_plan.statements(caught_up))
    index_statements, index_report = [], None
    if indexes:
        created_now, index_statements, index_report = plan_indexes(
            desired, target, set(t.key for t in to_create), defer_indexes)
        statements.extend(created_now)
    return Plan(statements, [t.display for t in to_create], [t.display for t, dummy in existing],
                differences, index_statements, index_report,
                dict((p.table, p.report(caught_up)) for p in followed))


def plan_indexes(desired, target, created, defer_indexes=True):
    """The source's secondary indexes the target lacks -> (with_tables, builds, report).

    ``created``: keys of the tables this plan creates. Their indexes are deferred with
    ``defer_indexes`` (the initial copy fills them next), else created with them, in the same
    transaction (``with_tables``). Indexes of an existing table are built now (``builds``, one
    statement each), unless a subscription is still copying it and ``defer_indexes`` is set.
    An index the target has under that name counts as present (definitions are not compared);
    an invalid one (left by a failed concurrent build) is dropped and built again.
    Skipped (reported): indexes needing columns a column subset leaves out, and the indexes of
    DEFERRABLE unique constraints (an immediate unique index could reject changes the source
    accepted inside a transaction).
    """
    with_tables, builds = [], []
    report = dict(built={}, deferred={}, skipped=[])
    for table in desired:
        actual = target.tables.get(table.key)
        have = dict((i.name, i) for i in (actual.indexes if actual is not None else ()))
        new = table.key in created
        pending = defer_indexes and (new or table.key in target.copying)
        columns = set(table.column_names())
        for index in table.indexes:
            if _is_key_index(table, index.name):
                continue
            reason = _index_skip_reason(index, columns)
            if reason:
                report['skipped'].append(dict(table=table.display, index=index.name, reason=reason))
                continue
            existing = have.get(index.name)
            if existing is not None and existing.valid:
                continue
            if pending:
                report['deferred'].setdefault(table.display, []).append(index.name)
                continue
            report['built'].setdefault(table.display, []).append(index.name)
            if new:
                with_tables.append(create_index(table, index))
                continue
            if existing is not None:
                builds.append(drop_index(table, index))
            builds.append(create_index(table, index, autocommit=True))
    return with_tables, builds, report


def _is_key_index(table, name):
    """The primary key's and the replica identity's index are created with the table."""
    return any(key and key[0] == name for key in (table.primary_key, table.replica_index))


def _index_skip_reason(index, columns):
    if index.method is None:
        return 'its definition could not be read from the source'
    left_out = [c for c in index.columns if c not in columns]
    if left_out:
        return 'it needs columns the column list leaves out: %s' % ', '.join(left_out)
    if not index.immediate:
        return ('it enforces a DEFERRABLE unique constraint (an immediate unique index on the '
                'target could reject changes the source accepted)')
    return None


def column_differences(desired, actual):
    """{missing, extra, type_differs} of an existing table, or {} when the columns match."""
    actual_by_name = dict((c.name, c) for c in actual.columns)
    wanted = set(desired.column_names())
    result = {}
    missing = [c.name for c in desired.columns if c.name not in actual_by_name]
    extra = [c.name for c in actual.columns if c.name not in wanted]
    differs = [dict(column=c.name, source=c.signature(), target=actual_by_name[c.name].signature())
               for c in desired.columns
               if c.name in actual_by_name and c.signature() != actual_by_name[c.name].signature()]
    for key, value in (('missing', missing), ('extra', extra), ('type_differs', differs)):
        if value:
            result[key] = value
    return result


def describe_differences(differences):
    """One line per table: 'sales.orders: missing on target: a; type differs: b (...)'."""
    parts = []
    for table in sorted(differences):
        diff = differences[table]
        items = []
        if diff.get('missing'):
            items.append('missing on target: %s' % ', '.join(diff['missing']))
        if diff.get('extra'):
            items.append('extra on target: %s' % ', '.join(diff['extra']))
        if diff.get('type_differs'):
            items.append('type differs: %s' % ', '.join(
                '%s (source %s, target %s)' % (d['column'], d['source'], d['target'])
                for d in diff['type_differs']))
        parts.append('%s: %s' % (table, '; '.join(items)))
    return ' | '.join(parts)


def needed_types(tables):
    """Distinct type names (catalog text) the tables' columns use, in first-use order."""
    return _distinct(c.type for t in tables for c in t.columns)


def needed_collations(tables):
    return _distinct(c.collation for t in tables for c in t.columns if c.collation)


def _distinct(values):
    seen, result = set(), []
    for v in values:
        if v not in seen:
            seen.add(v)
            result.append(v)
    return result


def _missing_schemas(to_create, target):
    return _distinct(t.schema for t in to_create if t.schema not in target.schemas)


def _creation_problems(to_create, target, missing_schemas, create_schemas):
    problems = []
    if missing_schemas and not create_schemas:
        problems.append('Schemas missing on the target (create_schemas is false): %s.'
                        % ', '.join(missing_schemas))
    for table in to_create:
        types = [t for t in needed_types([table]) if t in target.missing_types]
        if types:
            problems.append('Cannot create %s: types missing on the target: %s (create them '
                            'first, e.g. the enum or domain, or the extension providing them).'
                            % (table.display, ', '.join(types)))
        virtual = [c.name for c in table.columns if c.virtual]
        if virtual and target.server_version is not None and target.server_version < 180000:
            problems.append('Cannot create %s: %s %s virtual generated on the source, which needs '
                            'PostgreSQL 18 on the target (this one is %d); make them stored on the '
                            'source or upgrade the target.'
                            % (table.display, ', '.join(virtual), 'is' if len(virtual) == 1 else 'are',
                               target.server_version // 10000))
        collations = [c for c in needed_collations([table]) if c in target.missing_collations]
        if collations:
            problems.append('Cannot create %s: collations missing on the target: %s.'
                            % (table.display, ', '.join(format_qualified(*c) for c in collations)))
    return problems


# ---- statements -----------------------------------------------------------------------------

def create_schema(schema):
    return Statement(sql.SQL('CREATE SCHEMA {}').format(sql.Identifier(schema)))


def create_table(table, extras=None):
    """CREATE TABLE with columns, NOT NULL and primary key, then the replica identity.
    ``extras``: {column: a peer's DEFAULT or identity clause} (``peer_defs.column_extras``)."""
    ident = sql.Identifier(table.schema, table.name)
    extras = extras or {}
    elements = [column_definition(c, extras.get(c.name)) for c in table.columns]
    if table.primary_key:
        name, columns = table.primary_key
        elements.append(sql.SQL('CONSTRAINT {} PRIMARY KEY ({})').format(
            sql.Identifier(name), identifier_list(columns)))
    statements = [Statement(sql.SQL('CREATE TABLE {} ({})').format(
        ident, sql.SQL(', ').join(elements)))]
    statements.extend(replica_identity(table))
    return statements


def replica_identity(table):
    """FULL and USING INDEX are copied (the index is the primary key's or a unique index created
    here); DEFAULT (the primary key) and NOTHING need no statement."""
    ident = sql.Identifier(table.schema, table.name)
    if table.replica_identity == 'f':
        return [Statement(sql.SQL('ALTER TABLE {} REPLICA IDENTITY FULL').format(ident))]
    if table.replica_identity != 'i' or not table.replica_index:
        return []
    name, columns = table.replica_index
    statements = []
    if not table.primary_key or table.primary_key[0] != name:
        statements.append(Statement(sql.SQL('CREATE UNIQUE INDEX {} ON {} ({})').format(
            sql.Identifier(name), ident, identifier_list(columns))))
    statements.append(Statement(sql.SQL('ALTER TABLE {} REPLICA IDENTITY USING INDEX {}').format(
        ident, sql.Identifier(name))))
    return statements


def create_index(table, index, autocommit=False):
    """CREATE [UNIQUE] INDEX name ON schema.table USING <the source's definition>."""
    return Statement(sql.SQL('CREATE {}INDEX {} ON {} USING {}').format(
        sql.SQL('UNIQUE ' if index.unique else ''), sql.Identifier(index.name),
        sql.Identifier(table.schema, table.name), catalog_sql(index.method)),
        autocommit=autocommit)


def drop_index(table, index):
    return Statement(sql.SQL('DROP INDEX {}').format(sql.Identifier(table.schema, index.name)),
                     autocommit=True)
