# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner of pg_foreign_tables: the foreign tables of one server in one local schema.

Two kinds of desired tables:

- imported: ``IMPORT FOREIGN SCHEMA`` (all tables of a remote schema, ``LIMIT TO`` a list or
  ``EXCEPT`` a list). The remote definitions come from a *probe*: the module imports the same
  tables into ``pg_temp`` in a transaction it rolls back, and reads them with the same catalog
  query as the local schema, so any number of tables costs one remote round trip. A local table
  whose columns differ from the probe has *drifted* (the remote table gained, lost or changed a
  column); drift is reported, fixed with ALTER FOREIGN TABLE, or fails the task.
- explicit: CREATE FOREIGN TABLE with the columns the user lists (types canonicalized by the
  server, see ``Probe.types``), kept as declared.

``plan_foreign_tables(spec, current, probe)`` is pure (no database) and unit-tested offline.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

from ansible.module_utils.six import string_types

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, check_identifier, format_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (
    PlanError, create_options_clause, normalize_options, option_changes, options_clause,
    parse_options)

DRIFT_ACTIONS = ('report', 'update', 'fail')
TABLE_KEYS = frozenset(['name', 'remote_name', 'remote_schema', 'columns', 'options'])
COLUMN_KEYS = frozenset(['name', 'type', 'not_null', 'remote_name'])
KIND_NAMES = {'r': 'table', 'p': 'partitioned table', 'v': 'view', 'm': 'materialized view',
              'f': 'foreign table', 'S': 'sequence', 'i': 'index', 'I': 'partitioned index',
              'c': 'composite type', 't': 'TOAST table'}


# ---- the objects --------------------------------------------------------------------------

class Column(object):
    """A column of a foreign table: local name, type (format_type text), NOT NULL, options."""

    __slots__ = ('name', 'type', 'not_null', 'options')

    def __init__(self, name, type, not_null=False, options=None):
        self.name = name
        self.type = type
        self.not_null = bool(not_null)
        self.options = dict(options or {})

    @classmethod
    def from_catalog(cls, item):
        return cls(item['name'], item['type'], item['not_null'], parse_options(item['options']))

    @property
    def remote_name(self):
        return self.options.get('column_name', self.name)

    def as_dict(self):
        return {'name': self.name, 'type': self.type, 'not_null': self.not_null,
                'remote_name': self.remote_name}


class Relation(object):
    """A relation of the local schema (or of pg_temp for the probe) as the catalog holds it."""

    def __init__(self, name, kind='f', server=None, columns=(), options=None):
        self.name = name
        self.kind = kind
        self.server = server
        self.columns = list(columns)
        self.options = dict(options or {})

    @classmethod
    def from_catalog(cls, item):
        return cls(item['name'], item['kind'], item['server'],
                   [Column.from_catalog(c) for c in item['columns'] or ()],
                   parse_options(item['options']))

    def is_foreign_on(self, server):
        return self.kind == 'f' and self.server == server

    def describe(self):
        what = KIND_NAMES.get(self.kind, 'relation')
        if self.kind == 'f':
            what += ' of server %s' % self.server
        return what

    def remote_schema(self, local_schema):
        """postgres_fdw's default for schema_name is the local schema name."""
        return self.options.get('schema_name', local_schema)


class ImportSpec(object):
    """IMPORT FOREIGN SCHEMA remote_schema: ``tables`` None means all, minus ``exclude``."""

    def __init__(self, remote_schema, tables=None, exclude=(), options=None):
        self.remote_schema = remote_schema
        self.tables = None if tables is None else list(tables)
        self.exclude = list(exclude or ())
        self.options = normalize_options(options, 'IMPORT FOREIGN SCHEMA')

    @property
    def imports_all(self):
        return self.tables is None


class TableSpec(object):
    """An explicit foreign table."""

    def __init__(self, name, remote_schema, remote_name=None, columns=(), options=None):
        self.name = name
        self.remote_schema = remote_schema
        self.remote_name = remote_name or name
        self.columns = list(columns)
        self.options = normalize_options(options, 'foreign table')

    def desired_options(self):
        options = {'schema_name': self.remote_schema, 'table_name': self.remote_name}
        options.update(self.options)
        return options


class ForeignTablesSpec(object):
    def __init__(self, server, schema, state='present', import_spec=None, tables=(),
                 on_drift='report', exclusive=False, cascade=False, create_schema=True):
        self.server = server
        self.schema = schema
        self.state = state
        self.import_spec = import_spec
        self.tables = list(tables)
        self.on_drift = on_drift
        self.exclusive = exclusive
        self.cascade = cascade
        self.create_schema = create_schema

    def explicit_names(self):
        return [t.name for t in self.tables]

    def column_types(self):
        """The distinct column types the user wrote, for the server to validate/canonicalize."""
        types = []
        for table in self.tables:
            for column in table.columns:
                if column.type not in types:
                    types.append(column.type)
        return types


class CatalogState(object):
    def __init__(self, schema_exists=True, relations=None):
        self.schema_exists = schema_exists
        self.relations = dict(relations or {})

    def foreign_tables_of(self, server):
        return dict((n, r) for n, r in self.relations.items() if r.is_foreign_on(server))


class Probe(object):
    """What the server says about the desired tables.

    ``tables``: name -> Relation as IMPORT FOREIGN SCHEMA creates it, or None when the remote
    side could not be read (``error`` says why); ``types``: user type text -> format_type text.
    """

    def __init__(self, tables=None, types=None, error=None):
        self.tables = tables
        self.types = dict(types or {})
        self.error = error


class Drift(object):
    def __init__(self, table, added=(), removed=(), changed=(), missing_remotely=False):
        self.table = table
        self.added = list(added)
        self.removed = list(removed)
        self.changed = list(changed)
        self.missing_remotely = missing_remotely

    def __bool__(self):
        return bool(self.added or self.removed or self.changed or self.missing_remotely)

    __nonzero__ = __bool__

    def as_dict(self):
        if self.missing_remotely:
            return {'missing_remotely': True}
        return {'added': [c.name for c in self.added],
                'removed': [c.name for c in self.removed],
                'changed': [{'column': local.name, 'local': describe_column(local),
                             'remote': describe_column(remote)}
                            for local, remote in self.changed]}

    def summary(self):
        if self.missing_remotely:
            return 'the remote table no longer exists'
        parts = []
        if self.added:
            parts.append('remote columns not here: %s' % ', '.join(c.name for c in self.added))
        if self.removed:
            parts.append('columns gone remotely: %s' % ', '.join(c.name for c in self.removed))
        for local, remote in self.changed:
            parts.append('%s is %s here but %s remotely'
                         % (local.name, describe_column(local), describe_column(remote)))
        return '; '.join(parts)


class TablesPlan(object):
    def __init__(self):
        self.statements = []
        self.imported = []
        self.created = []
        self.altered = []
        self.dropped = []
        self.dropped_names = set()
        self.drift = {}
        self.warnings = []
        self.after = {}  # name -> Relation: the schema's relations after the run

    def drop(self, schema, names, cascade):
        self.statements.append(drop_tables_statement(schema, names, cascade))
        self.dropped.extend(format_qualified(schema, n) for n in names)
        self.dropped_names.update(names)
        for name in names:
            self.after.pop(name, None)

    def result(self):
        return {'imported': self.imported, 'created': self.created, 'altered': self.altered,
                'dropped': self.dropped, 'drift': self.drift}


def describe_column(column):
    return column.type + (' NOT NULL' if column.not_null else '')


# ---- module input -------------------------------------------------------------------------

def _name(value, what):
    if not isinstance(value, string_types):
        raise PlanError('%s must be a string, got %r' % (what, value))
    try:
        return check_identifier(value, what)
    except NameError_ as e:
        raise PlanError(str(e))


def _check_keys(item, allowed, what):
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise PlanError('%s: unknown key(s) %s (allowed: %s)'
                        % (what, ', '.join(unknown), ', '.join(sorted(allowed))))


def parse_column(item, table):
    if not isinstance(item, dict):
        raise PlanError('column of table %s must be a dict with name and type, got %r'
                        % (table, item))
    _check_keys(item, COLUMN_KEYS, 'column of table %s' % table)
    name = _name(item.get('name'), 'column name of table %s' % table)
    column_type = item.get('type')
    if not isinstance(column_type, string_types) or not column_type.strip():
        raise PlanError('column %s of table %s needs a type' % (name, table))
    options = {}
    if item.get('remote_name'):
        options['column_name'] = _name(item['remote_name'], 'remote_name of column %s' % name)
    return Column(name, column_type.strip(), item.get('not_null') or False, options)


def parse_table_item(item, remote_schema):
    """One ``tables`` entry -> a name to import, or a TableSpec (explicit table)."""
    if isinstance(item, string_types):
        return _name(item, 'table name'), None
    if not isinstance(item, dict):
        raise PlanError('tables entries are names or dicts, got %r' % (item,))
    _check_keys(item, TABLE_KEYS, 'table %s' % item.get('name'))
    name = _name(item.get('name'), 'table name')
    if not item.get('columns'):
        if item.get('remote_name') or item.get('remote_schema') or item.get('options'):
            raise PlanError('table %s: remote_name, remote_schema and options need columns '
                            '(a table without columns is imported from remote_schema under '
                            'its remote name)' % name)
        return name, None
    remote = item.get('remote_schema') or remote_schema
    return None, TableSpec(name, _name(remote, 'remote_schema of table %s' % name),
                           item.get('remote_name') and _name(item['remote_name'], 'remote_name'),
                           [parse_column(c, name) for c in item['columns']],
                           item.get('options'))


def parse_tables(tables, exclude, remote_schema, import_options):
    """``tables`` option (None: the whole remote schema) -> (ImportSpec or None, [TableSpec])."""
    remote_schema = _name(remote_schema, 'remote_schema')
    excluded = [_name(n, 'exclude_tables entry') for n in exclude or ()]
    if tables is None:
        return ImportSpec(remote_schema, None, excluded, import_options), []
    names, explicit = [], []
    for item in tables:
        name, table = parse_table_item(item, remote_schema)
        if name is not None:
            names.append(name)
        else:
            explicit.append(table)
    listed = names + [t.name for t in explicit]
    duplicates = sorted(set(n for n in listed if listed.count(n) > 1))
    if duplicates:
        raise PlanError('tables listed more than once: %s' % ', '.join(duplicates))
    import_spec = ImportSpec(remote_schema, names, (), import_options) if names else None
    return import_spec, explicit


# ---- statements ---------------------------------------------------------------------------

def table_ident(schema, name):
    return sql.Identifier(schema, name)


def identifiers(names):
    return sql.SQL(', ').join(sql.Identifier(n) for n in names)


def import_statement(import_spec, server, into, limit_to=None, except_=None):
    """IMPORT FOREIGN SCHEMA with LIMIT TO or EXCEPT (names) and the import options."""
    parts = [sql.SQL('IMPORT FOREIGN SCHEMA {}').format(sql.Identifier(import_spec.remote_schema))]
    if limit_to is not None:
        parts.append(sql.SQL('LIMIT TO ({})').format(identifiers(limit_to)))
    elif except_:
        parts.append(sql.SQL('EXCEPT ({})').format(identifiers(except_)))
    parts.append(sql.SQL('FROM SERVER {} INTO {}').format(sql.Identifier(server),
                                                          sql.Identifier(into)))
    clause, params = create_options_clause(import_spec.options)
    return Statement(sql.SQL('{}{}').format(sql.SQL(' ').join(parts), clause), params)


def probe_import_statement(import_spec, server):
    """The same import into pg_temp (run in a transaction that is rolled back)."""
    if import_spec.imports_all:
        return import_statement(import_spec, server, 'pg_temp', except_=import_spec.exclude)
    return import_statement(import_spec, server, 'pg_temp', limit_to=import_spec.tables)


def column_definition(column):
    """``"name" type [OPTIONS (column_name %s)] [NOT NULL]`` (the type is format_type text)."""
    clause, params = create_options_clause(column.options)
    query = sql.SQL('{} {}{}').format(sql.Identifier(column.name), sql.SQL(column.type), clause)
    if column.not_null:
        query = sql.SQL('{} NOT NULL').format(query)
    return query, params


def create_table_statement(schema, table, server):
    definitions, params = [], []
    for column in table.columns:
        query, column_params = column_definition(column)
        definitions.append(query)
        params.extend(column_params)
    clause, option_params = create_options_clause(table.desired_options())
    query = sql.SQL('CREATE FOREIGN TABLE {} ({}) SERVER {}{}').format(
        table_ident(schema, table.name), sql.SQL(', ').join(definitions),
        sql.Identifier(server), clause)
    return Statement(query, params + option_params)


def drop_tables_statement(schema, names, cascade):
    query = sql.SQL('DROP FOREIGN TABLE {}').format(
        sql.SQL(', ').join(table_ident(schema, n) for n in names))
    if cascade:
        query = sql.SQL('{} CASCADE').format(query)
    return Statement(query)


def column_actions(current, desired, cascade=False):
    """ALTER FOREIGN TABLE actions (composable, params) turning current columns into desired.

    Columns are matched by local name: imported tables use the remote names, so for them this
    is the same as matching by remote name.
    """
    actions = []
    have = dict((c.name, c) for c in current)
    want = dict((c.name, c) for c in desired)
    for column in current:
        if column.name not in want:
            drop = sql.SQL('DROP COLUMN {}').format(sql.Identifier(column.name))
            actions.append((sql.SQL('{} CASCADE').format(drop) if cascade else drop, []))
    for column in desired:
        old = have.get(column.name)
        if old is None:
            query, params = column_definition(column)
            actions.append((sql.SQL('ADD COLUMN {}').format(query), params))
            continue
        actions.extend(alter_column_actions(old, column))
    return actions


def alter_column_actions(old, new):
    prefix = sql.SQL('ALTER COLUMN {}').format(sql.Identifier(new.name))
    actions = []
    if old.type != new.type:
        actions.append((sql.SQL('{} TYPE {}').format(prefix, sql.SQL(new.type)), []))
    if old.not_null != new.not_null:
        actions.append((sql.SQL('{} {} NOT NULL').format(
            prefix, sql.SQL('SET' if new.not_null else 'DROP')), []))
    changes = option_changes(old.options, new.options)
    if changes:
        clause, params = options_clause(changes)
        actions.append((sql.SQL('{} {}').format(prefix, clause), params))
    return actions


def alter_table_statement(schema, name, actions):
    if not actions:
        return None
    params = []
    for _query, action_params in actions:
        params.extend(action_params)
    query = sql.SQL('ALTER FOREIGN TABLE {} {}').format(
        table_ident(schema, name), sql.SQL(', ').join(q for q, _p in actions))
    return Statement(query, params)


# ---- drift --------------------------------------------------------------------------------

def compare_columns(label, local, remote):
    """Drift of a local imported table against the probe's definition of it."""
    have = dict((c.name, c) for c in local.columns)
    want = dict((c.name, c) for c in remote.columns)
    changed = [(have[c.name], c) for c in remote.columns if c.name in have
               and (have[c.name].type != c.type or have[c.name].not_null != c.not_null
                    or have[c.name].remote_name != c.remote_name)]
    return Drift(label,
                 added=[c for c in remote.columns if c.name not in have],
                 removed=[c for c in local.columns if c.name not in want],
                 changed=changed)


# ---- planning -----------------------------------------------------------------------------

def check_conflict(spec, relation):
    if relation is not None and not relation.is_foreign_on(spec.server):
        raise PlanError('%s already exists as a %s; choose another schema or rename it'
                        % (format_qualified(spec.schema, relation.name), relation.describe()))


def plan_schema(spec, current, plan):
    if current.schema_exists:
        return
    if not spec.create_schema:
        raise PlanError('schema %s does not exist (set create_schema: true to create it)'
                        % spec.schema)
    plan.statements.append(Statement(sql.SQL('CREATE SCHEMA {}').format(
        sql.Identifier(spec.schema))))


def imported_locally(spec, current):
    """Local foreign tables of the server that come from the imported remote schema."""
    remote_schema = spec.import_spec.remote_schema
    return dict((n, r) for n, r in current.foreign_tables_of(spec.server).items()
                if r.remote_schema(spec.schema) == remote_schema
                and n not in spec.explicit_names())


def plan_import_without_probe(spec, current, plan):
    """The remote side is not readable (check mode before the server exists): import what is
    missing locally, without drift detection."""
    imp = spec.import_spec
    local = current.foreign_tables_of(spec.server)
    if imp.imports_all:
        skip = imp.exclude + sorted(n for n in local if n not in imp.exclude)
        plan.statements.append(import_statement(imp, spec.server, spec.schema, except_=skip))
        plan.imported.append('(all tables of %s)' % imp.remote_schema)
        return
    for name in imp.tables:
        check_conflict(spec, current.relations.get(name))
    missing = [n for n in imp.tables if n not in local]
    if missing:
        plan.statements.append(import_statement(imp, spec.server, spec.schema, limit_to=missing))
        plan.imported.extend(format_qualified(spec.schema, n) for n in missing)


def check_found_remotely(spec, probe_tables):
    imp = spec.import_spec
    if imp.imports_all:
        return
    absent = [n for n in imp.tables if n not in probe_tables]
    if absent:
        raise PlanError('not found in remote schema %s through server %s: %s'
                        % (imp.remote_schema, spec.server, ', '.join(absent)))


def collect_drift(spec, current, probe_tables, plan):
    """Drift per local imported table (and tables gone remotely when importing all)."""
    drifts = []
    for name in sorted(probe_tables):
        local = current.relations.get(name)
        if local is not None:
            drift = compare_columns(format_qualified(spec.schema, name), local, probe_tables[name])
            if drift:
                drifts.append((name, drift))
    if spec.import_spec.imports_all:
        for name in sorted(imported_locally(spec, current)):
            if name not in probe_tables and name not in spec.import_spec.exclude:
                drifts.append((name, Drift(format_qualified(spec.schema, name),
                                           missing_remotely=True)))
    for _name, drift in drifts:
        plan.drift[drift.table] = drift.as_dict()
    return drifts


def apply_drift(spec, current, probe_tables, drifts, plan):
    if not drifts:
        return
    if spec.on_drift == 'fail':
        raise PlanError('foreign tables differ from their remote tables (on_drift: fail): %s'
                        % '; '.join('%s: %s' % (d.table, d.summary()) for _n, d in drifts))
    if spec.on_drift == 'report':
        for _name, drift in drifts:
            plan.warnings.append('foreign table %s differs from its remote table (%s); set '
                                 'on_drift: update to bring it up to date'
                                 % (drift.table, drift.summary()))
        return
    gone = [name for name, drift in drifts if drift.missing_remotely]
    for name, drift in drifts:
        if drift.missing_remotely:
            continue
        statement = alter_table_statement(spec.schema, name, column_actions(
            current.relations[name].columns, probe_tables[name].columns, spec.cascade))
        plan.statements.append(statement)
        plan.altered.append(drift.table)
        plan.after[name] = probe_tables[name]
    if gone:
        plan.drop(spec.schema, gone, spec.cascade)


def plan_import(spec, current, probe, plan):
    if spec.import_spec is None:
        return
    if probe.tables is None:
        plan_import_without_probe(spec, current, plan)
        return
    check_found_remotely(spec, probe.tables)
    for name in sorted(probe.tables):
        check_conflict(spec, current.relations.get(name))
    missing = [n for n in sorted(probe.tables) if n not in current.relations]
    if missing:
        plan.statements.append(import_statement(spec.import_spec, spec.server, spec.schema,
                                                limit_to=missing))
        plan.imported.extend(format_qualified(spec.schema, n) for n in missing)
        plan.after.update((n, probe.tables[n]) for n in missing)
    drifts = collect_drift(spec, current, probe.tables, plan)
    apply_drift(spec, current, probe.tables, drifts, plan)


def canonical_table(table, types):
    """The TableSpec with every column type as the server writes it (format_type)."""
    columns = [Column(c.name, types.get(c.type, c.type), c.not_null, c.options)
               for c in table.columns]
    return TableSpec(table.name, table.remote_schema, table.remote_name, columns,
                     table.options)


def plan_explicit(spec, current, probe, plan):
    for table in spec.tables:
        table = canonical_table(table, probe.types)
        label = format_qualified(spec.schema, table.name)
        local = current.relations.get(table.name)
        check_conflict(spec, local)
        plan.after[table.name] = Relation(table.name, 'f', spec.server, table.columns,
                                          table.desired_options())
        if local is None:
            plan.statements.append(create_table_statement(spec.schema, table, spec.server))
            plan.created.append(label)
            continue
        actions = column_actions(local.columns, table.columns, spec.cascade)
        changes = option_changes(local.options, table.desired_options())
        if changes:
            clause, params = options_clause(changes)
            actions.append((clause, params))
        statement = alter_table_statement(spec.schema, table.name, actions)
        if statement:
            plan.statements.append(statement)
            plan.altered.append(label)


def desired_names(spec, probe):
    names = set(spec.explicit_names())
    if spec.import_spec is not None:
        if spec.import_spec.imports_all:
            names.update(probe.tables or ())
        else:
            names.update(spec.import_spec.tables)
    return names


def plan_exclusive(spec, current, probe, plan):
    if not spec.exclusive:
        return
    if spec.import_spec is not None and spec.import_spec.imports_all and probe.tables is None:
        plan.warnings.append('exclusive: the remote schema could not be read, so no foreign '
                             'table was removed')
        return
    keep = desired_names(spec, probe)
    extra = sorted(n for n in current.foreign_tables_of(spec.server) if n not in keep
                   and n not in plan.dropped_names)
    if extra:
        plan.drop(spec.schema, extra, spec.cascade)


def plan_absent(spec, current, plan):
    """Drop the desired foreign tables of this server (never other relations)."""
    local = current.foreign_tables_of(spec.server)
    names = set(spec.explicit_names())
    imp = spec.import_spec
    if imp is not None:
        if imp.imports_all:
            names.update(n for n in imported_locally(spec, current) if n not in imp.exclude)
        else:
            names.update(imp.tables)
    doomed = sorted(n for n in names if n in local)
    if doomed:
        plan.drop(spec.schema, doomed, spec.cascade)


def plan_foreign_tables(spec, current, probe):
    """Statements (and report) that bring the schema's foreign tables to the desired state."""
    plan = TablesPlan()
    plan.after = dict(current.relations)
    if spec.state == 'absent':
        if current.schema_exists:
            plan_absent(spec, current, plan)
        return plan
    plan_schema(spec, current, plan)
    plan_import(spec, current, probe, plan)
    plan_explicit(spec, current, probe, plan)
    plan_exclusive(spec, current, probe, plan)
    return plan
