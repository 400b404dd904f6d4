# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner of pg_sync_trigger: triggers + dblink sync of a set of tables to a remote database.

Pure (no database I/O): the module reads the catalog into ``Environment``, ``SetState`` and
``SourceTable`` objects, builds a ``SetSpec`` from its options and calls ``plan(...)``, which
returns a ``Plan`` of ``Statement`` objects in the order they must run:

1. one transaction: schema ``tablesync``, dblink, storage tables, routines (replaced when their
   versioned body differs), foreign server, user mapping, the set's row, then per table: lock
   and drain where queued changes must be applied first (removed tables, changed keys or
   targets, a switch from queued to immediate), config rows and triggers, ``verify_target``;
2. one autocommit statement per table to backfill (its triggers are live and queue changes);
3. one transaction switching backfilled tables of an immediate set from queued to immediate
   (tables locked, queue drained first);
4. the flush (``CALL tablesync.flush``, autocommit) when asked for and there may be a backlog.

The SQL bodies are in ``sync_trigger_sql``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import csv
import io
import re

from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw_common import (
    alter_options_statement, create_options_clause, option_changes)
from ansible_collections.tablesync.postgresql.plugins.module_utils.identifiers import (
    NameError_, check_identifier, format_qualified, parse_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.statements import (
    Secret, Statement, bind)
from ansible_collections.tablesync.postgresql.plugins.module_utils import sync_trigger_sql as q

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

MODES = ('queued', 'immediate')
SET_NAME_RE = re.compile(r'^[a-z][a-z0-9_]*$')
# tablesync_<set>_truncate (trigger) must fit PostgreSQL's 63-byte identifiers.
SET_NAME_MAX = 63 - len('tablesync_') - len('_truncate')
TABLE_KEYS = ('name', 'target', 'key_columns', 'columns')
SERVER_OPTION_KEYS = ('host', 'port', 'dbname', 'sslmode', 'sslrootcert', 'connect_timeout',
                      'application_name')
TABLE_KINDS = ('r', 'p')
# pg_trigger.tgtype bits: ROW 1, INSERT 4, DELETE 8, UPDATE 16, TRUNCATE 32 (AFTER: no bit).
ROW_TRIGGER_TYPE = 1 | 4 | 8 | 16
TRUNCATE_TRIGGER_TYPE = 32
ENABLED_ORIGIN = 'O'
_VERSION_RE = re.compile(r'^%s v(\d+)$' % re.escape(q.MARKER))


class PlanError(Exception):
    """The desired state cannot be reached; ``messages`` name every problem found."""

    def __init__(self, messages):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super(PlanError, self).__init__('; '.join(self.messages))


# ---- names ----------------------------------------------------------------------------------

def check_set_name(name):
    if not SET_NAME_RE.match(name or '') or len(name) > SET_NAME_MAX:
        raise PlanError('name %r is not a valid sync set name: lower-case letters, digits and '
                        'underscores, starting with a letter, at most %d characters (it becomes '
                        'part of trigger and connection names)' % (name, SET_NAME_MAX))
    return name


def row_trigger_name(set_name):
    return 'tablesync_%s' % set_name


def truncate_trigger_name(set_name):
    return 'tablesync_%s_truncate' % set_name


def default_server_name(set_name):
    return 'tablesync_%s' % set_name


def table_ident(schema, name):
    return sql.Identifier(schema, name)


def storage_ident(name):
    return sql.Identifier(q.SCHEMA, name)


# ---- desired state --------------------------------------------------------------------------

class TableSpec(object):
    """One item of ``tables``: source and target as (schema, table), optional key/columns."""

    def __init__(self, source, target=None, key_columns=None, columns=None):
        self.source = source
        self.target = target or source
        self.key_columns = key_columns
        self.columns = columns

    @property
    def label(self):
        return format_qualified(*self.source)


def _name_list(value, what, label, errors):
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        errors.append('%s: %s must be a non-empty list of column names' % (label, what))
        return None
    try:
        names = [check_identifier(v, 'column name') for v in value]
    except NameError_ as e:
        errors.append('%s: %s' % (label, e))
        return None
    if len(set(names)) != len(names):
        errors.append('%s: %s lists a column more than once' % (label, what))
    return names


def _table_spec(item, errors):
    if isinstance(item, str):
        item = {'name': item}
    if not isinstance(item, dict):
        errors.append('tables: each item must be a "schema.table" string or a dict, got %r'
                      % (item,))
        return None
    unknown = sorted(set(item) - set(TABLE_KEYS))
    label = item.get('name')
    if unknown:
        errors.append('tables: %s has unknown keys %s (allowed: %s)'
                      % (label, ', '.join(unknown), ', '.join(TABLE_KEYS)))
    try:
        source = parse_qualified(label)
        target = parse_qualified(item['target']) if item.get('target') is not None else None
    except NameError_ as e:
        errors.append('tables: %s' % e)
        return None
    if source[0] == q.SCHEMA:
        errors.append('tables: %s is in schema %s, which holds the sync machinery itself'
                      % (label, q.SCHEMA))
    return TableSpec(source, target,
                     _name_list(item.get('key_columns'), 'key_columns', label, errors),
                     _name_list(item.get('columns'), 'columns', label, errors))


def parse_tables(items):
    """The ``tables`` option -> list of TableSpec; PlanError naming every bad item."""
    errors = []
    specs = []
    for item in items or ():
        spec = _table_spec(item, errors)
        if spec is not None:
            specs.append(spec)
    seen = set()
    for spec in specs:
        if spec.source in seen:
            errors.append('tables: %s is listed more than once' % spec.label)
        seen.add(spec.source)
    if errors:
        raise PlanError(errors)
    return specs


def server_options_from_target(target, set_name):
    """The foreign server options (strings) of a ``target`` dict; None when it names no host
    or database, i.e. the server is not managed by the module."""
    if not target or all(target.get(k) is None for k in ('host', 'port', 'dbname')):
        return None
    options = {'application_name': 'tablesync_%s' % set_name}
    for key in SERVER_OPTION_KEYS:
        if target.get(key) is not None:
            options[key] = str(target[key])
    return options


class SetSpec(object):
    """What the task asks for."""

    def __init__(self, name, state='present', tables=(), mode='queued', server=None, target=None,
                 batch_size=1000, backfill=False, flush=False, force=False, verify_target=True):
        self.name = check_set_name(name)
        self.state = state
        self.tables = list(tables)
        self.mode = mode
        self.server = server or default_server_name(name)
        target = target or {}
        self.server_options = server_options_from_target(target, name)
        self.user = target.get('user')
        self.password = target.get('password')
        self.batch_size = batch_size
        self.backfill = backfill
        self.flush = flush
        self.force = force
        self.verify_target = verify_target

    @property
    def server_managed(self):
        return self.server_options is not None


# ---- current state (filled by the module's catalog reader, or by tests) ---------------------

class RoutineState(object):
    def __init__(self, name, identity, result, source, definer=False, config=None, comment=None,
                 public_execute=False):
        self.name = name
        self.identity = identity
        self.result = result
        self.source = source
        self.definer = definer
        self.config = list(config or [])
        self.comment = comment
        self.public_execute = public_execute

    @property
    def key(self):
        return (self.name, self.identity)

    @property
    def ours(self):
        return (self.comment or '').startswith(q.MARKER)

    @property
    def version(self):
        match = _VERSION_RE.match(self.comment or '')
        return int(match.group(1)) if match else None


class Environment(object):
    """Database-wide facts: extension, schema, storage, routines, server and user mapping.

    ``search_path_schema``: the dblink schema (or ``tablesync`` when dblink is to be created) as
    ``quote_ident()`` prints it; ``mapping``: None (no mapping for the login role) or a dict of
    its options (None when they are not visible to the login role); ``set_triggers``: the set's
    triggers on any table, as (schema, table, trigger); ``dblink_servers``: names of foreign
    servers using dblink_fdw; ``schema_leftovers``: objects in schema tablesync that are not
    ours (nor dblink's).
    """

    def __init__(self, role, dblink_schema=None, dblink_available=True, schema_exists=False,
                 storage=(), commit_trigger=False, routines=(), server=None, mapping=None,
                 mapping_exists=False, search_path_schema=None, set_triggers=(),
                 dblink_servers=(), schema_leftovers=0):
        self.role = role
        self.dblink_schema = dblink_schema
        self.dblink_available = dblink_available
        self.schema_exists = schema_exists
        self.storage = set(storage)
        self.commit_trigger = commit_trigger
        self.routines = dict((r.key, r) for r in routines)
        self.server = server
        self.mapping = mapping
        self.mapping_exists = mapping_exists or mapping is not None
        self.search_path_schema = search_path_schema or dblink_schema or q.SCHEMA
        self.set_triggers = [tuple(t) for t in set_triggers]
        self.dblink_servers = list(dblink_servers)
        self.schema_leftovers = schema_leftovers

    @property
    def storage_complete(self):
        return all(name in self.storage for name, _ddl in q.STORAGE)

    @property
    def installed_version(self):
        versions = [r.version for r in self.routines.values() if r.version is not None]
        return max(versions) if versions else None


class TriggerState(object):
    def __init__(self, name, function_schema, function, args, type_, enabled=ENABLED_ORIGIN):
        self.name = name
        self.function_schema = function_schema
        self.function = function
        self.args = list(args)
        self.type = type_
        self.enabled = enabled

    @property
    def mode(self):
        return self.args[1] if len(self.args) > 1 else None


class SourceTable(object):
    def __init__(self, schema, name, exists=True, kind='r', partition=False, primary_key=(),
                 columns=(), generated=(), triggers=()):
        self.schema = schema
        self.name = name
        self.exists = exists
        self.kind = kind
        self.partition = partition
        self.primary_key = list(primary_key)
        self.columns = list(columns)
        self.generated = list(generated)
        self.triggers = dict((t.name, t) for t in triggers)

    @property
    def key(self):
        return (self.schema, self.name)


class ConfigTable(object):
    """A row of tablesync.trigger_tables."""

    FIELDS = ('target_schema', 'target_table', 'key_columns', 'columns')

    def __init__(self, id_, source_schema, source_table, target_schema, target_table, key_columns,
                 columns, backfilled=False):
        self.id = id_
        self.source_schema = source_schema
        self.source_table = source_table
        self.target_schema = target_schema
        self.target_table = target_table
        self.key_columns = list(key_columns)
        self.columns = list(columns)
        self.backfilled = backfilled

    @property
    def source(self):
        return (self.source_schema, self.source_table)

    @property
    def target(self):
        return (self.target_schema, self.target_table)

    def values(self):
        return dict((f, getattr(self, f)) for f in self.FIELDS)

    def as_dict(self):
        return {'name': format_qualified(*self.source), 'target': format_qualified(*self.target),
                'key_columns': list(self.key_columns), 'columns': list(self.columns),
                'backfilled': bool(self.backfilled)}


class SetState(object):
    """The set's rows in the storage tables (empty when the storage does not exist)."""

    def __init__(self, row=None, tables=(), backlog=0, other_sets=0, max_table_id=0):
        self.row = row
        self.tables = list(tables)
        self.backlog = backlog
        self.other_sets = other_sets
        self.max_table_id = max_table_id


# ---- statements that run themselves (see Executor._execute) ---------------------------------

class FetchStatement(Statement):
    """A statement whose single result value is kept in ``result`` (None until it ran)."""

    __slots__ = ('result',)

    def __init__(self, query, params=(), autocommit=False):
        Statement.__init__(self, query, params, autocommit)
        self.result = None

    def execute(self, cursor):
        cursor.execute(bind(self))
        row = cursor.fetchone()
        self.result = row[0] if row else None


class UserMappingStatement(Statement):
    """``CREATE USER MAPPING`` whose option values travel by COPY into a temporary table.

    The statement shown (``queries``) is the ordinary one with the password masked; the server
    runs a fixed ``DO`` block that reads the values, so the password reaches neither the server
    log (``log_statement``) nor ``pg_stat_activity``, for any role (no superuser needed).
    """

    __slots__ = ('role', 'server', 'options')

    def __init__(self, role, server, options):
        clause, params = create_options_clause(options)
        Statement.__init__(self, sql.SQL('CREATE USER MAPPING FOR {} SERVER {}{}').format(
            sql.Identifier(role), sql.Identifier(server), clause), params)
        self.role = role
        self.server = server
        self.options = dict(options)

    def copy_data(self):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator='\n')
        writer.writerow([0, 'role', self.role])
        writer.writerow([1, 'server', self.server])
        for n, key in enumerate(self.options, 2):
            writer.writerow([n, key, self.options[key]])
        buf.seek(0)
        return buf

    def execute(self, cursor):
        cursor.execute(q.SECRET_ARGS_DDL)
        cursor.copy_expert(q.SECRET_ARGS_COPY, self.copy_data())
        cursor.execute(q.CREATE_MAPPING_BLOCK)
        cursor.execute(q.SECRET_ARGS_DROP)


# ---- infrastructure: schema, dblink, storage, routines --------------------------------------

def check_version_gate(env):
    installed = env.installed_version
    if installed is not None and installed > q.VERSION:
        raise PlanError('the routines in schema %s were installed by a newer tablesync.postgresql '
                        '(sync_trigger v%d); this collection ships v%d and would downgrade them: '
                        'upgrade the collection on the controller'
                        % (q.SCHEMA, installed, q.VERSION))


def routine_statements(env):
    """Drop obsolete routines, create missing ones, replace those whose definition differs
    (body, SECURITY DEFINER, settings), revoke PUBLIC's EXECUTE, set the versioned comment."""
    check_version_gate(env)
    wanted = dict((r.key, r) for r in q.ROUTINES)
    statements = [Statement(sql.SQL('DROP ROUTINE {}({})').format(
        storage_ident(cur.name), sql.SQL(cur.identity)))
        for key, cur in sorted(env.routines.items()) if cur.ours and key not in wanted]
    for routine in q.ROUTINES:
        cur = env.routines.get(routine.key)
        if cur is not None and cur.result != routine.result:
            statements.append(Statement(sql.SQL('DROP ROUTINE {}').format(routine.signature())))
            cur = None
        if cur is None or cur.source != routine.body or cur.definer != routine.definer \
                or cur.config != routine.settings(env.search_path_schema):
            statements.append(Statement(routine.create_statement(env.dblink_schema or q.SCHEMA)))
        if cur is None or cur.public_execute:
            statements.append(Statement(sql.SQL('REVOKE ALL ON ROUTINE {} FROM PUBLIC').format(
                routine.signature())))
        if cur is None or cur.comment != q.COMMENT:
            statements.append(Statement(sql.SQL('COMMENT ON ROUTINE {} IS %s').format(
                routine.signature()), (q.COMMENT,)))
    return statements


def infrastructure_statements(env, routines):
    """Schema, dblink, storage tables, the given routine statements, the commit trigger."""
    statements = []
    if not env.schema_exists:
        statements.append(Statement(sql.SQL('CREATE SCHEMA {}').format(sql.Identifier(q.SCHEMA))))
    if env.dblink_schema is None:
        if not env.dblink_available:
            raise PlanError('the dblink extension is not available on this server: install the '
                            'PostgreSQL contrib package (Debian/Ubuntu: postgresql-contrib; '
                            'RHEL: postgresqlNN-contrib)')
        statements.append(Statement(sql.SQL('CREATE EXTENSION dblink SCHEMA {}').format(
            sql.Identifier(q.SCHEMA))))
    statements.extend(Statement(sql.SQL(ddl)) for name, ddl in q.STORAGE
                      if name not in env.storage)
    statements.extend(routines)
    if not env.commit_trigger:
        statements.append(Statement(sql.SQL(q.COMMIT_TRIGGER_DDL)))
    return statements


# ---- foreign server and user mapping ---------------------------------------------------------

def server_statements(spec, env):
    server = sql.Identifier(spec.server)
    if not spec.server_managed:
        if env.server is None:
            raise PlanError('foreign server %s does not exist: give target (host, port, dbname, '
                            'user, password) so that the module creates it, or name an existing '
                            'server with server' % spec.server)
        return []
    if env.server is None:
        clause, params = create_options_clause(spec.server_options)
        return [Statement(sql.SQL('CREATE SERVER {} FOREIGN DATA WRAPPER dblink_fdw{}').format(
            server, clause), params)]
    changes = option_changes(env.server.get('options') or {}, spec.server_options)
    statement = alter_options_statement(sql.SQL('ALTER SERVER {}').format(server), changes)
    return [statement] if statement else []


def mapping_target(env, spec):
    return sql.SQL('USER MAPPING FOR {} SERVER {}').format(
        sql.Identifier(env.role), sql.Identifier(spec.server))


def mapping_statements(spec, env, warnings):
    """The login role's user mapping: created, or its user/password brought up to date."""
    if spec.user is None:
        if env.server is not None and not env.mapping_exists:
            raise PlanError('there is no user mapping for role %s on server %s: give target.user '
                            'and target.password' % (env.role, spec.server))
        if env.server is None:
            raise PlanError('target.user is required to create the user mapping of server %s'
                            % spec.server)
        return []
    desired = {'user': spec.user}
    if spec.password is not None:
        desired['password'] = Secret(spec.password)
    if not env.mapping_exists:
        return [UserMappingStatement(env.role, spec.server, _real_options(desired))]
    if env.mapping is None:
        warnings.append('the options of the user mapping for %s on server %s are not visible to '
                        'this role; they were left unchanged' % (env.role, spec.server))
        return []
    if spec.password is not None and env.mapping.get('password') != spec.password:
        return [Statement(sql.SQL('DROP {}').format(mapping_target(env, spec))),
                UserMappingStatement(env.role, spec.server, _real_options(desired))]
    changes = option_changes(env.mapping, {'user': spec.user}, managed=set())
    statement = alter_options_statement(sql.SQL('ALTER {}').format(mapping_target(env, spec)),
                                        changes)
    return [statement] if statement else []


def replaced_server_statements(spec, env, set_state):
    """Drop the server (and the login role's mapping) the module created for the set under
    another name, once the set uses the new one (after the drain, which still used it)."""
    row = set_state.row
    if row is None or not row.get('server_managed') or row['server'] == spec.server:
        return []
    old = sql.Identifier(row['server'])
    mapping = sql.SQL('DROP USER MAPPING IF EXISTS FOR {} SERVER {}').format(
        sql.Identifier(env.role), old)
    return [Statement(mapping), Statement(sql.SQL('DROP SERVER IF EXISTS {}').format(old))]


def _real_options(options):
    return dict((k, v.value if isinstance(v, Secret) else v) for k, v in options.items())


# ---- the set's tables ------------------------------------------------------------------------

class ResolvedTable(object):
    """A TableSpec checked against its source table: the key and synced columns to use."""

    def __init__(self, spec, source, key_columns, columns):
        self.spec = spec
        self.source_table = source
        self.key_columns = key_columns
        self.columns = columns

    @property
    def source(self):
        return self.spec.source

    @property
    def target(self):
        return self.spec.target


def _resolve_one(spec, source, errors):
    label = spec.label
    if source is None or not source.exists:
        errors.append('table %s does not exist' % label)
        return None
    if source.kind not in TABLE_KINDS:
        errors.append('%s is not a table (relkind %s)' % (label, source.kind))
        return None
    if source.partition:
        errors.append('%s is a partition: list its partitioned table instead' % label)
        return None
    key_columns = spec.key_columns or source.primary_key
    if not key_columns:
        errors.append('table %s has no primary key: set key_columns to columns that identify a '
                      'row (they need a primary key or unique index on the target)' % label)
        return None
    columns = spec.columns or source.columns
    for what, names in (('key_columns', key_columns), ('columns', columns)):
        generated = [c for c in names if c in source.generated]
        unknown = [c for c in names if c not in source.columns and c not in source.generated]
        if unknown:
            errors.append('table %s has no column(s) %s (%s)' % (label, ', '.join(unknown), what))
        if generated:
            errors.append('%s of table %s: %s generated (the target computes them)'
                          % (what, label, ', '.join(generated)))
    missing_keys = [c for c in key_columns if c not in columns]
    if missing_keys:
        errors.append('columns of table %s must include the key column(s) %s'
                      % (label, ', '.join(missing_keys)))
    return ResolvedTable(spec, source, list(key_columns), list(columns))


def resolve_tables(specs, sources):
    """TableSpecs checked against the catalog; PlanError naming every problem at once."""
    errors = []
    resolved = [_resolve_one(spec, sources.get(spec.source), errors) for spec in specs]
    if errors:
        raise PlanError(errors)
    return resolved


def row_trigger_args(set_name, mode, table_id, key_columns):
    return [set_name, mode, str(table_id)] + list(key_columns)


def truncate_trigger_args(set_name, mode, table_id):
    return [set_name, mode, str(table_id)]


def trigger_matches(current, function, args, type_):
    return (current is not None and current.function_schema == q.SCHEMA
            and current.function == function and current.args == args
            and current.type == type_ and current.enabled == ENABLED_ORIGIN)


def create_trigger_statement(name, table, function, args, row):
    template = ('CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW '
                'EXECUTE FUNCTION {}({})' if row else
                'CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT '
                'EXECUTE FUNCTION {}({})')
    return Statement(sql.SQL(template).format(
        sql.Identifier(name), table_ident(*table), storage_ident(function),
        sql.SQL(', ').join(sql.Literal(a) for a in args)))


def drop_trigger_statement(name, table):
    return Statement(sql.SQL('DROP TRIGGER {} ON {}').format(
        sql.Identifier(name), table_ident(*table)))


def lock_statement(tables):
    return Statement(sql.SQL('LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE').format(
        sql.SQL(', ').join(table_ident(*t) for t in tables)))


def drain_statement(set_name):
    return FetchStatement(sql.SQL('SELECT tablesync.drain(%s)'), (set_name,))


def trigger_statements(set_name, table, current_triggers, table_id, mode, key_columns):
    """Create, or drop and create, the row and truncate triggers of one table."""
    statements = []
    wanted = ((row_trigger_name(set_name), q.CAPTURE_ROW,
               row_trigger_args(set_name, mode, table_id, key_columns), ROW_TRIGGER_TYPE, True),
              (truncate_trigger_name(set_name), q.CAPTURE_TRUNCATE,
               truncate_trigger_args(set_name, mode, table_id), TRUNCATE_TRIGGER_TYPE, False))
    for name, function, args, type_, row in wanted:
        current = current_triggers.get(name)
        if trigger_matches(current, function, args, type_):
            continue
        if current is not None:
            statements.append(drop_trigger_statement(name, table))
        statements.append(create_trigger_statement(name, table, function, args, row))
    return statements


def config_statement(current, desired, set_name):
    """INSERT or UPDATE of the table's row in tablesync.trigger_tables (None: unchanged)."""
    if current is None:
        return Statement(sql.SQL(
            'INSERT INTO tablesync.trigger_tables (id, set_name, source_schema, source_table, '
            'target_schema, target_table, key_columns, columns) '
            'VALUES (%s, %s, %s, %s, %s, %s, %s::text[], %s::text[])'),
            (desired.id, set_name, desired.source_schema, desired.source_table,
             desired.target_schema, desired.target_table, desired.key_columns, desired.columns))
    if current.values() == desired.values():
        return None
    return Statement(sql.SQL(
        'UPDATE tablesync.trigger_tables SET target_schema = %s, target_table = %s, '
        'key_columns = %s::text[], columns = %s::text[] WHERE id = %s'),
        (desired.target_schema, desired.target_table, desired.key_columns, desired.columns,
         desired.id))


def queued_triggers(set_name, config):
    """The triggers of a table as the first transaction leaves them for a backfill."""
    row, truncate = row_trigger_name(set_name), truncate_trigger_name(set_name)
    row_args = row_trigger_args(set_name, 'queued', config.id, config.key_columns)
    truncate_args = truncate_trigger_args(set_name, 'queued', config.id)
    return {row: TriggerState(row, q.SCHEMA, q.CAPTURE_ROW, row_args, ROW_TRIGGER_TYPE),
            truncate: TriggerState(truncate, q.SCHEMA, q.CAPTURE_TRUNCATE, truncate_args,
                                   TRUNCATE_TRIGGER_TYPE)}


class TableChange(object):
    """The plan for one listed table."""

    def __init__(self, resolved, current, desired, set_name, mode, backfill):
        self.resolved = resolved
        self.current = current
        self.desired = desired
        self.needs_backfill = backfill and not desired.backfilled
        self.trigger_mode = 'queued' if self.needs_backfill else mode
        triggers = resolved.source_table.triggers
        self.trigger_statements = trigger_statements(
            set_name, resolved.source, triggers, desired.id, self.trigger_mode,
            desired.key_columns)
        self.config_statement = config_statement(current, desired, set_name)
        self.final_statements = []
        if self.needs_backfill and mode != self.trigger_mode:
            self.final_statements = trigger_statements(
                set_name, resolved.source, queued_triggers(set_name, desired), desired.id, mode,
                desired.key_columns)
        row = triggers.get(row_trigger_name(set_name))
        switching = row is not None and row.mode == 'queued' and self.trigger_mode == 'immediate'
        moved = current is not None and (current.key_columns != desired.key_columns
                                         or current.target != desired.target)
        self.needs_drain = bool(self.trigger_statements and switching) or moved

    @property
    def changed(self):
        return bool(self.trigger_statements or self.config_statement)


def desired_config(resolved, current, table_id):
    return ConfigTable(table_id, resolved.source[0], resolved.source[1], resolved.target[0],
                       resolved.target[1], resolved.key_columns, resolved.columns,
                       backfilled=bool(current and current.backfilled))


def table_changes(spec, resolved_tables, set_state):
    by_source = dict((c.source, c) for c in set_state.tables)
    next_id = set_state.max_table_id + 1
    changes = []
    for resolved in resolved_tables:
        current = by_source.get(resolved.source)
        if current is None:
            table_id, next_id = next_id, next_id + 1
        else:
            table_id = current.id
        changes.append(TableChange(resolved, current, desired_config(resolved, current, table_id),
                                   spec.name, spec.mode, spec.backfill))
    return changes


def set_row_statement(spec, set_state):
    desired = {'server': spec.server, 'server_managed': spec.server_managed, 'mode': spec.mode,
               'batch_size': spec.batch_size}
    row = set_state.row
    if row is None:
        return Statement(sql.SQL(
            'INSERT INTO tablesync.trigger_sets (name, server, server_managed, mode, batch_size) '
            'VALUES (%s, %s, %s, %s, %s)'),
            (spec.name, spec.server, spec.server_managed, spec.mode, spec.batch_size))
    if all(row.get(k) == v for k, v in desired.items()):
        return None
    return Statement(sql.SQL(
        'UPDATE tablesync.trigger_sets SET server = %s, server_managed = %s, mode = %s, '
        'batch_size = %s WHERE name = %s'),
        (spec.server, spec.server_managed, spec.mode, spec.batch_size, spec.name))


def removed_tables(spec, resolved_tables, set_state, env):
    """Config rows and trigger-carrying tables of the set that are no longer listed."""
    listed = set(r.source for r in resolved_tables)
    configs = [c for c in set_state.tables if c.source not in listed]
    triggered = sorted(set((schema, table) for schema, table, _name in env.set_triggers
                           if (schema, table) not in listed))
    return configs, triggered


def removal_statements(configs, triggered, env):
    triggered = set(triggered)
    statements = [drop_trigger_statement(name, (schema, table))
                  for schema, table, name in sorted(env.set_triggers)
                  if (schema, table) in triggered]
    if configs:
        statements.append(Statement(sql.SQL(
            'DELETE FROM tablesync.trigger_tables WHERE id = ANY (%s::integer[])'),
            (sorted(c.id for c in configs),)))
    return statements


def discard_statement(set_name, table_ids=None):
    if table_ids is None:
        return Statement(sql.SQL('DELETE FROM tablesync.trigger_changes WHERE set_name = %s'),
                         (set_name,))
    return Statement(sql.SQL('DELETE FROM tablesync.trigger_changes WHERE set_name = %s '
                             'AND table_id = ANY (%s::integer[])'), (set_name, sorted(table_ids)))


def backfill_statement(set_name, table_id):
    return FetchStatement(sql.SQL('SELECT tablesync.backfill(%s, %s)'), (set_name, table_id),
                          autocommit=True)


def flush_statement(set_name):
    return FetchStatement(sql.SQL('CALL tablesync.flush(%s)'), (set_name,), autocommit=True)


def verify_statement(set_name):
    return Statement(sql.SQL('SELECT tablesync.verify_target(%s)'), (set_name,))


# ---- the plan --------------------------------------------------------------------------------

class Plan(object):
    def __init__(self):
        self.statements = []
        self.backfills = []  # (label, FetchStatement)
        self.flush = None
        self.drains = []
        self.warnings = []
        self.before = {}
        self.after = {}
        self.routines_changed = False
        self.torn_down = False


def public_state(name, row, tables):
    """The set as returned (and diffed): no secrets."""
    if row is None:
        return {}
    return {'name': name, 'mode': row['mode'], 'server': row['server'],
            'server_managed': bool(row.get('server_managed')), 'batch_size': row['batch_size'],
            'tables': [t.as_dict() for t in tables]}


def _drain_statements(spec, set_state, changes, configs, triggered, plan):
    """Lock the tables whose queued changes must reach the target first, then drain the set
    (removed tables' changes are discarded instead with ``force``)."""
    if set_state.row is None:
        return []
    drained = [c.resolved.source for c in changes if c.needs_drain]
    need_drain = bool(drained) or bool(configs and not spec.force)
    locked = drained + [t for t in triggered if t not in drained]
    statements = [lock_statement(locked)] if locked and (need_drain or spec.force) else []
    if spec.force and configs:
        statements.append(discard_statement(spec.name, [c.id for c in configs]))
    if need_drain:
        drain = drain_statement(spec.name)
        plan.drains.append(drain)
        statements.append(drain)
    return statements


def _main_transaction(spec, env, set_state, changes, configs, triggered, plan):
    statements = plan.statements
    routines = routine_statements(env)
    plan.routines_changed = bool(routines)
    statements.extend(infrastructure_statements(env, routines))
    target = server_statements(spec, env) + mapping_statements(spec, env, plan.warnings)
    statements.extend(target)
    set_row = set_row_statement(spec, set_state)
    if set_row is not None:
        statements.append(set_row)
    statements.extend(_drain_statements(spec, set_state, changes, configs, triggered, plan))
    statements.extend(removal_statements(configs, triggered, env))
    for change in changes:
        if change.config_statement is not None:
            statements.append(change.config_statement)
        statements.extend(change.trigger_statements)
    statements.extend(replaced_server_statements(spec, env, set_state))
    tables_changed = any(c.changed for c in changes)
    if spec.verify_target and changes and (tables_changed or target or set_row is not None):
        statements.append(verify_statement(spec.name))


def _switch_transaction(spec, changes, plan):
    switching = [c for c in changes if c.final_statements]
    if not switching:
        return
    plan.statements.append(lock_statement([c.resolved.source for c in switching]))
    drain = drain_statement(spec.name)
    plan.drains.append(drain)
    plan.statements.append(drain)
    for change in switching:
        plan.statements.extend(change.final_statements)


def plan_present(spec, env, set_state, sources):
    resolved = resolve_tables(spec.tables, sources)
    plan = Plan()
    plan.before = public_state(spec.name, set_state.row, set_state.tables)
    changes = table_changes(spec, resolved, set_state)
    configs, triggered = removed_tables(spec, resolved, set_state, env)
    _main_transaction(spec, env, set_state, changes, configs, triggered, plan)
    for change in changes:
        if change.needs_backfill:
            statement = backfill_statement(spec.name, change.desired.id)
            plan.backfills.append((format_qualified(*change.resolved.source), statement))
            plan.statements.append(statement)
    _switch_transaction(spec, changes, plan)
    may_have_backlog = set_state.backlog > 0 or plan.backfills
    if spec.flush and may_have_backlog:
        plan.flush = flush_statement(spec.name)
        plan.statements.append(plan.flush)
    row = {'mode': spec.mode, 'server': spec.server, 'server_managed': spec.server_managed,
           'batch_size': spec.batch_size}
    after_tables = []
    for change in changes:
        table = change.desired
        if change.needs_backfill:
            table = ConfigTable(table.id, table.source_schema, table.source_table,
                                table.target_schema, table.target_table, table.key_columns,
                                table.columns, backfilled=True)
        after_tables.append(table)
    plan.after = public_state(spec.name, row, after_tables)
    return plan


def teardown_statements(env, server_dropped):
    """Everything in schema tablesync, when no set is left."""
    def drop_tables(names):
        return [Statement(sql.SQL('DROP TABLE {}').format(storage_ident(name)))
                for name in names if name in env.storage]

    # the commit trigger depends on a routine, routines depend on the rowtype of trigger_tables
    statements = drop_tables([q.COMMITS_TABLE])
    statements.extend(Statement(sql.SQL('DROP ROUTINE {}({})').format(
        storage_ident(r.name), sql.SQL(r.identity)))
        for _key, r in sorted(env.routines.items()) if r.ours)
    statements.extend(drop_tables(name for name, _ddl in reversed(q.STORAGE)
                                  if name != q.COMMITS_TABLE))
    dblink_here = env.dblink_schema == q.SCHEMA
    other_servers = [s for s in env.dblink_servers if s != server_dropped]
    if dblink_here and not other_servers:
        statements.append(Statement(sql.SQL('DROP EXTENSION dblink')))
    if env.schema_exists and env.schema_leftovers == 0 and (not dblink_here or not other_servers):
        statements.append(Statement(sql.SQL('DROP SCHEMA {}').format(sql.Identifier(q.SCHEMA))))
    return statements


def plan_absent(spec, env, set_state):
    plan = Plan()
    row = set_state.row
    plan.before = public_state(spec.name, row, set_state.tables)
    statements = plan.statements
    if row is not None:
        if not spec.force:
            statements.extend(infrastructure_statements(env, routine_statements(env)))
        tables = sorted(set((schema, table) for schema, table, _name in env.set_triggers))
        if tables:
            statements.append(lock_statement(tables))
        if spec.force:
            statements.append(discard_statement(spec.name))
        else:
            drain = drain_statement(spec.name)
            plan.drains.append(drain)
            statements.append(drain)
    statements.extend(drop_trigger_statement(name, (schema, table))
                      for schema, table, name in sorted(env.set_triggers))
    if set_state.tables:
        statements.append(Statement(sql.SQL(
            'DELETE FROM tablesync.trigger_tables WHERE set_name = %s'), (spec.name,)))
    server_dropped = None
    if row is not None:
        statements.append(Statement(sql.SQL('DELETE FROM tablesync.trigger_sets WHERE name = %s'),
                                    (spec.name,)))
        if row.get('server_managed') and env.server is not None:
            if env.mapping_exists:
                statements.append(Statement(sql.SQL('DROP {}').format(mapping_target(env, spec))))
            statements.append(Statement(sql.SQL('DROP SERVER {}').format(
                sql.Identifier(row['server']))))
            server_dropped = row['server']
    if env.storage and set_state.other_sets == 0:
        statements.extend(teardown_statements(env, server_dropped))
        plan.torn_down = True
    return plan


def plan(spec, env, set_state, sources=None):
    """Statements for a SetSpec; raises PlanError before anything runs."""
    if spec.state == 'absent':
        return plan_absent(spec, env, set_state)
    return plan_present(spec, env, set_state, sources or {})
