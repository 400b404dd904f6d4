# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner of pg_sync_trigger: triggers + dblink sync of a set of tables to a remote database.

Pure (no database I/O): the module reads the catalog into the objects of
``sync_trigger_state``, builds a ``SetSpec`` from its options and calls ``plan(...)``, which
returns a ``Plan`` of ``Statement`` objects in the order they must run:

1. one transaction: the owner role, schema ``tablesync``, dblink, the upgrade of routines v1
   (their queue applied by themselves first), storage tables, routines (replaced when their
   versioned body differs), foreign server, the owner's user mapping, the set's row, then per
   table: lock and drain where queued changes must be applied first (removed tables, changed
   keys or targets, a switch from queued to immediate), config rows, capture functions and
   triggers, ``verify_target``;
2. one transaction per table to backfill (its current rows queued, the table locked);
3. one transaction switching backfilled tables of an immediate set from queued to immediate
   (tables locked, queue drained first);
4. the flush (``CALL tablesync.flush``, autocommit) when asked for, or after a backfill.

The SQL bodies are in ``sync_trigger_sql`` and ``sync_trigger_capture``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import csv
import io

from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (
    alter_options_statement, create_options_clause, option_changes)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    format_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Secret, Statement, bind)
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.capture import (
    BackfillStatement, capture_body, capture_name, capture_statement, capture_statements,
    drop_capture_statement)
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.state import (  # noqa: F401 pylint: disable=unused-import
    ENABLED_ORIGIN, MODES, OWNER_FORBIDDEN, ROW_TRIGGER_TYPE, TABLE_KINDS, TRUNCATE_TRIGGER_TYPE,
    ConfigTable, Environment, PlanError, RoutineState, SetSpec, SetState, SourceTable,
    TriggerState, check_set_name, default_server_name, parse_tables,
    row_trigger_name, server_options_from_target, truncate_trigger_name)
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import routines as q

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

# Predefined roles that would let the owner's routines read or write files or run programs.
OWNER_FORBIDDEN_MEMBERSHIPS = ('pg_read_all_data', 'pg_write_all_data', 'pg_read_server_files',
                               'pg_write_server_files', 'pg_execute_server_program')


def table_ident(schema, name):
    return sql.Identifier(schema, name)


def storage_ident(name):
    return sql.Identifier(q.SCHEMA, name)


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


# ---- the owner role, schema, dblink, storage, routines --------------------------------------

def check_version_gate(env):
    installed = env.installed_version
    if installed is not None and installed > q.VERSION:
        raise PlanError('the routines in schema %s were installed by a newer tablesync.postgresql '
                        '(sync_trigger v%d); this collection ships v%d and would downgrade them: '
                        'upgrade the collection on the controller'
                        % (q.SCHEMA, installed, q.VERSION))


def owner_statements(spec, env):
    """Create the NOLOGIN owner role, or refuse one that could do more than own the machinery."""
    if env.owner is None:
        return [Statement(sql.SQL('CREATE ROLE {} NOLOGIN').format(sql.Identifier(spec.owner)))]
    problems = [a.upper() for a in OWNER_FORBIDDEN if env.owner.get(a)]
    problems += ['membership in %s' % m for m in env.owner.get('members') or ()
                 if m in OWNER_FORBIDDEN_MEMBERSHIPS]
    if problems:
        raise PlanError('role %s owns the trigger sync routines, which run for every writer of a '
                        'synced table, so it must be a plain NOLOGIN role; it has %s: remove '
                        'that or choose another owner' % (spec.owner, ', '.join(problems)))
    return []


def _owned(kind, target, current_owner, owner):
    if current_owner == owner:
        return []
    return [Statement(sql.SQL('ALTER {} {} OWNER TO {}').format(
        sql.SQL(kind), target, sql.Identifier(owner)))]


def routine_statements(env, owner):
    """Drop obsolete routines, create missing ones, replace those whose definition differs
    (body, SECURITY DEFINER, settings), own them, revoke PUBLIC's EXECUTE, set the comment."""
    check_version_gate(env)
    wanted = dict((r.key, r) for r in q.ROUTINES)
    statements = [Statement(sql.SQL('DROP ROUTINE {}({})').format(
        storage_ident(cur.name), sql.SQL(cur.identity)))
        for key, cur in sorted(env.routines.items()) if cur.ours and key not in wanted]
    schema = env.search_path_schema
    for routine in q.ROUTINES:
        cur = env.routines.get(routine.key)
        if cur is not None and cur.result != routine.result:
            statements.append(Statement(sql.SQL('DROP ROUTINE {}').format(routine.signature())))
            cur = None
        if cur is None or cur.source != routine.body(schema) or cur.definer != routine.definer \
                or cur.config != routine.settings():
            statements.append(Statement(routine.create_statement(schema)))
        statements.extend(_owned('ROUTINE', routine.signature(), cur and cur.owner, owner))
        if cur is None or cur.public_execute:
            statements.append(Statement(sql.SQL('REVOKE ALL ON ROUTINE {} FROM PUBLIC').format(
                routine.signature())))
        if routine.name in q.MONITORED and (cur is None or not cur.monitor_execute):
            statements.append(Statement(sql.SQL('GRANT EXECUTE ON ROUTINE {} TO {}').format(
                routine.signature(), sql.Identifier(q.MONITOR_ROLE))))
        if cur is None or cur.comment != q.COMMENT:
            statements.append(Statement(sql.SQL('COMMENT ON ROUTINE {} IS %s').format(
                routine.signature()), (q.COMMENT,)))
    return statements


def upgrade_statements(env, set_state, plan):
    """Routines v1 -> v2: with every synced table locked, the v1 queue is applied by the v1
    routines (so nothing captured by them is lost or re-read), their triggers dropped and the
    storage converted; the capture of every set is then rebuilt (see plan_present)."""
    if not env.upgrading:
        return []
    tables = sorted(set((schema, table) for schema, table, _name in env.legacy_triggers))
    statements = [lock_statement(tables)] if tables else []
    if set_state.queued:
        drain = FetchStatement(sql.SQL(
            'SELECT coalesce(sum(tablesync.drain(s.name)), 0)::bigint '
            'FROM tablesync.trigger_sets AS s'))
        plan.drains.append(drain)
        statements.append(drain)
    statements.extend(drop_trigger_statement(name, (schema, table))
                      for schema, table, name in env.legacy_triggers)
    statements.extend(Statement(sql.SQL(ddl)) for ddl in q.UPGRADE_V1)
    return statements


def infrastructure_statements(spec, env, set_state, plan):
    """Owner, schema, dblink, v1 upgrade, storage tables, routines, the commit trigger."""
    owner = spec.owner
    statements = owner_statements(spec, env)
    if not env.schema_exists:
        statements.append(Statement(sql.SQL('CREATE SCHEMA {} AUTHORIZATION {}').format(
            sql.Identifier(q.SCHEMA), sql.Identifier(owner))))
    else:
        statements.extend(_owned('SCHEMA', sql.Identifier(q.SCHEMA), env.schema_owner, owner))
    if not env.monitor_usage:  # to call queue_status(); no table or other routine is granted
        statements.append(Statement(sql.SQL('GRANT USAGE ON SCHEMA {} TO {}').format(
            sql.Identifier(q.SCHEMA), sql.Identifier(q.MONITOR_ROLE))))
    if env.dblink_schema is None:
        if not env.dblink_available:
            raise PlanError('the dblink extension is not available on this server: install the '
                            'PostgreSQL contrib package (Debian/Ubuntu: postgresql-contrib; '
                            'RHEL: postgresqlNN-contrib)')
        statements.append(Statement(sql.SQL('CREATE EXTENSION dblink SCHEMA {}').format(
            sql.Identifier(q.SCHEMA))))
    statements.extend(upgrade_statements(env, set_state, plan))
    storage = set(env.storage) - (set([q.COMMITS_TABLE]) if env.upgrading else set())
    for name, ddl in q.STORAGE:
        if name not in storage:
            statements.append(Statement(sql.SQL(ddl)))
        statements.extend(_owned('TABLE', storage_ident(name),
                                 env.owners.get(name) if name in storage else None, owner))
    routines = routine_statements(env, owner)
    plan.routines_changed = bool(routines)
    statements.extend(routines)
    if not env.commit_trigger or env.upgrading:
        statements.append(Statement(sql.SQL(q.COMMIT_TRIGGER_DDL)))
    return statements


# ---- foreign server and user mapping ---------------------------------------------------------

def server_statements(spec, env):
    server = sql.Identifier(spec.server)
    grant = [] if env.server_usage and env.server is not None else [Statement(sql.SQL(
        'GRANT USAGE ON FOREIGN SERVER {} TO {}').format(server, sql.Identifier(spec.owner)))]
    if not spec.server_managed:
        if env.server is None:
            raise PlanError('foreign server %s does not exist: give target (host, port, dbname, '
                            'user, password) so that the module creates it, or name an existing '
                            'server with server' % spec.server)
        return grant
    if env.server is None:
        clause, params = create_options_clause(spec.server_options)
        return [Statement(sql.SQL('CREATE SERVER {} FOREIGN DATA WRAPPER dblink_fdw{}').format(
            server, clause), params)] + grant
    changes = option_changes(env.server.get('options') or {}, spec.server_options)
    statement = alter_options_statement(sql.SQL('ALTER SERVER {}').format(server), changes)
    return ([statement] if statement else []) + grant


def mapping_target(role, spec):
    return sql.SQL('USER MAPPING FOR {} SERVER {}').format(
        sql.Identifier(role), sql.Identifier(spec.server))


def mapping_statements(spec, env, warnings):
    """The owner role's user mapping: created, or its user/password brought up to date; the
    login role's mapping that routines v1 used is dropped from a server the module manages."""
    statements = []
    if env.login_mapping and env.role != spec.owner and spec.server_managed:
        statements.append(Statement(sql.SQL('DROP {}').format(mapping_target(env.role, spec))))
    if spec.user is None:
        if env.server is not None and not env.mapping_exists:
            raise PlanError('there is no user mapping for role %s (the owner of the sync '
                            'routines) on server %s: give target.user and target.password'
                            % (spec.owner, spec.server))
        if env.server is None:
            raise PlanError('target.user is required to create the user mapping of server %s'
                            % spec.server)
        return statements
    desired = {'user': spec.user}
    if spec.password is not None:
        desired['password'] = Secret(spec.password)
    if not env.mapping_exists:
        return statements + [UserMappingStatement(spec.owner, spec.server,
                                                  _real_options(desired))]
    if env.mapping is None:
        warnings.append('the options of the user mapping for %s on server %s are not visible to '
                        'this role; they were left unchanged' % (spec.owner, spec.server))
        return statements
    if spec.password is not None and env.mapping.get('password') != spec.password:
        return statements + [
            Statement(sql.SQL('DROP {}').format(mapping_target(spec.owner, spec))),
            UserMappingStatement(spec.owner, spec.server, _real_options(desired))]
    changes = option_changes(env.mapping, {'user': spec.user}, managed=set())
    statement = alter_options_statement(sql.SQL('ALTER {}').format(
        mapping_target(spec.owner, spec)), changes)
    return statements + ([statement] if statement else [])


def replaced_server_statements(spec, env, set_state):
    """Drop the server (and the owner's mapping) the module created for the set under another
    name, once the set uses the new one (after the drain, which still used it)."""
    row = set_state.row
    if row is None or not row.get('server_managed') or row['server'] == spec.server:
        return []
    old = sql.Identifier(row['server'])
    mapping = sql.SQL('DROP USER MAPPING IF EXISTS FOR {} SERVER {}').format(
        sql.Identifier(spec.owner), old)
    return [Statement(mapping), Statement(sql.SQL('DROP SERVER IF EXISTS {}').format(old))]


def _real_options(options):
    return dict((k, v.value if isinstance(v, Secret) else v) for k, v in options.items())


# ---- the set's tables ------------------------------------------------------------------------

class ResolvedTable(object):
    """A TableRef (``core.tables``) checked against its source table: the key (empty:
    keyless) and columns."""

    def __init__(self, spec, source, key_columns, columns):
        self.spec = spec
        self.source_table = source
        self.key_columns = key_columns
        self.columns = columns

    @property
    def source(self):
        return self.spec.key

    @property
    def target(self):
        return self.spec.target or self.spec.key


def _resolve_key(spec, source, label, errors):
    if spec.key_columns:
        if set(spec.key_columns) not in [set(k) for k in source.unique_keys]:
            errors.append('key_columns (%s) of table %s are neither its primary key nor a unique '
                          'index on NOT NULL columns: two rows could share a key and the target '
                          'would merge them; name such an index, or leave key_columns out to '
                          'sync the table by whole-row identity'
                          % (', '.join(spec.key_columns), label))
        return list(spec.key_columns)
    return list(source.primary_key)


def _resolve_one(spec, source, errors):
    label = spec.shown
    if source is None or not source.exists:
        errors.append('table %s does not exist' % label)
        return None
    if source.kind not in TABLE_KINDS:
        errors.append('%s is not a table (relkind %s)' % (label, source.kind))
        return None
    if source.partition:
        errors.append('%s is a partition: list its partitioned table instead' % label)
        return None
    key_columns = _resolve_key(spec, source, label, errors)
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
    return ResolvedTable(spec, source, key_columns, list(columns))


def resolve_tables(specs, sources):
    """TableRefs checked against the catalog; PlanError naming every problem at once."""
    errors = []
    resolved = [_resolve_one(spec, sources.get(spec.key), errors) for spec in specs]
    if errors:
        raise PlanError(errors)
    return resolved


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


class Capture(object):
    """What one table's capture needs: its config row, source table and mode."""

    def __init__(self, set_name, config, source, mode):
        self.set_name = set_name
        self.config = config
        self.source = source
        self.mode = mode

    def body(self):
        return capture_body(self.set_name, self.mode, self.config.id, self.config.source,
                            self.config.columns, self.config.key_columns, self.source.outputs)


def capture_and_trigger_statements(capture, env, owner, current_triggers):
    """The capture function and the row and truncate triggers of one table, as needed."""
    config, set_name = capture.config, capture.set_name
    statements = capture_statements(config.id, capture.body(),
                                    env.captures.get(config.id), owner)
    wanted = ((row_trigger_name(set_name), capture_name(config.id), [], ROW_TRIGGER_TYPE, True),
              (truncate_trigger_name(set_name), q.CAPTURE_TRUNCATE,
               truncate_trigger_args(set_name, capture.mode, config.id), TRUNCATE_TRIGGER_TYPE,
               False))
    for name, function, args, type_, row in wanted:
        current = current_triggers.get(name)
        if trigger_matches(current, function, args, type_):
            continue
        if current is not None:
            statements.append(drop_trigger_statement(name, config.source))
        statements.append(create_trigger_statement(name, config.source, function, args, row))
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


class TableChange(object):
    """The plan for one listed table."""

    def __init__(self, resolved, current, desired, spec, env, upgrading):
        self.resolved = resolved
        self.current = current
        self.desired = desired
        self.needs_backfill = spec.backfill and not desired.backfilled
        self.trigger_mode = 'queued' if self.needs_backfill else spec.mode
        triggers = dict(resolved.source_table.triggers)
        if upgrading:
            triggers.pop(row_trigger_name(spec.name), None)  # dropped by the upgrade
        source = resolved.source_table
        self.trigger_statements = capture_and_trigger_statements(
            Capture(spec.name, desired, source, self.trigger_mode), env, spec.owner, triggers)
        self.config_statement = config_statement(current, desired, spec.name)
        self.final_statements = []
        if self.needs_backfill and spec.mode != self.trigger_mode:
            final = Capture(spec.name, desired, source, spec.mode)
            truncate = truncate_trigger_name(spec.name)
            self.final_statements = [
                capture_statement(desired.id, final.body()),
                drop_trigger_statement(truncate, desired.source),
                create_trigger_statement(truncate, desired.source, q.CAPTURE_TRUNCATE,
                                         truncate_trigger_args(spec.name, spec.mode, desired.id),
                                         False)]
        truncate_now = triggers.get(truncate_trigger_name(spec.name))
        switching = (truncate_now is not None and truncate_now.mode == 'queued'
                     and self.trigger_mode == 'immediate')
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


def table_changes(spec, resolved_tables, set_state, env):
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
                                   spec, env, env.upgrading))
    return changes


def other_sets_statements(spec, env, set_state, sources):
    """On an upgrade, the capture of every table of the other sets is rebuilt as well."""
    if not env.upgrading:
        return []
    statements = []
    for config in set_state.other_tables:
        source = sources.get(config.source)
        if source is None or not source.exists:
            raise PlanError('table %s of sync set %s no longer exists: the upgrade of the trigger '
                            'routines needs every synced table; remove it from its set first'
                            % (format_qualified(*config.source), config.set_name))
        triggers = dict((n, t) for n, t in source.triggers.items()
                        if n != row_trigger_name(config.set_name))
        statements.extend(capture_and_trigger_statements(
            Capture(config.set_name, config, source, config.mode), env, spec.owner,
            triggers))
    return statements


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
    legacy = set(env.legacy_triggers) if env.upgrading else set()
    statements = [drop_trigger_statement(name, (schema, table))
                  for schema, table, name in sorted(env.set_triggers)
                  if (schema, table) in triggered and (schema, table, name) not in legacy]
    statements.extend(drop_capture_statement(c.id) for c in configs)
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


def flush_statement(set_name):
    return FetchStatement(sql.SQL('CALL tablesync.flush(%s)'), (set_name,), autocommit=True)


def verify_statement(set_name):
    return Statement(sql.SQL('SELECT tablesync.verify_target(%s)'), (set_name,))


# ---- the plan --------------------------------------------------------------------------------

class Plan(object):
    def __init__(self):
        self.statements = []
        self.backfills = []  # (label, BackfillStatement)
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


def _main_transaction(spec, env, set_state, sources, changes, configs, triggered, plan):
    statements = plan.statements
    statements.extend(infrastructure_statements(spec, env, set_state, plan))
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
    statements.extend(other_sets_statements(spec, env, set_state, sources))
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


def _backfills(spec, changes, plan):
    for change in changes:
        if not change.needs_backfill:
            continue
        source = change.resolved.source_table
        statement = BackfillStatement(spec.name, change.desired.id, change.resolved.source,
                                      source.kind == 'p', change.desired.columns, source.outputs)
        plan.backfills.append((format_qualified(*change.resolved.source), statement))
        plan.statements.append(statement)


def plan_present(spec, env, set_state, sources):
    resolved = resolve_tables(spec.tables, sources)
    plan = Plan()
    plan.before = public_state(spec.name, set_state.row, set_state.tables)
    changes = table_changes(spec, resolved, set_state, env)
    configs, triggered = removed_tables(spec, resolved, set_state, env)
    _main_transaction(spec, env, set_state, sources, changes, configs, triggered, plan)
    _backfills(spec, changes, plan)
    _switch_transaction(spec, changes, plan)
    may_have_backlog = set_state.backlog > 0 or plan.backfills
    if (spec.flush and may_have_backlog) or (plan.backfills and spec.mode == 'queued'):
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


def teardown_statements(env, server_dropped, dropped_captures=()):
    """Everything in schema tablesync, when no set is left."""
    def drop_tables(names):
        return [Statement(sql.SQL('DROP TABLE {}').format(storage_ident(name)))
                for name in names if name in env.storage]

    # the commit trigger depends on a routine, routines depend on the rowtype of trigger_tables
    statements = drop_tables([q.COMMITS_TABLE])
    statements.extend(Statement(sql.SQL('DROP ROUTINE {}({})').format(
        storage_ident(r.name), sql.SQL(r.identity)))
        for _key, r in sorted(env.routines.items()) if r.ours)
    statements.extend(drop_capture_statement(table_id) for table_id in sorted(env.captures)
                      if table_id not in dropped_captures)
    statements.extend(drop_tables(name for name, _ddl in reversed(q.STORAGE)
                                  if name != q.COMMITS_TABLE))
    dblink_here = env.dblink_schema == q.SCHEMA
    other_servers = [s for s in env.dblink_servers if s != server_dropped]
    if dblink_here and not other_servers:
        statements.append(Statement(sql.SQL('DROP EXTENSION dblink')))
    if env.schema_exists and env.schema_leftovers == 0 and (not dblink_here or not other_servers):
        statements.append(Statement(sql.SQL('DROP SCHEMA {}').format(sql.Identifier(q.SCHEMA))))
    return statements


def plan_absent(spec, env, set_state, sources=None):
    plan = Plan()
    row = set_state.row
    plan.before = public_state(spec.name, row, set_state.tables)
    statements = plan.statements
    if row is not None:
        if not spec.force:
            statements.extend(infrastructure_statements(spec, env, set_state, plan))
            statements.extend(other_sets_statements(spec, env, set_state, sources or {}))
        tables = sorted(set((schema, table) for schema, table, _name in env.set_triggers))
        if tables:
            statements.append(lock_statement(tables))
        if spec.force:
            statements.append(discard_statement(spec.name))
        else:
            drain = drain_statement(spec.name)
            plan.drains.append(drain)
            statements.append(drain)
    legacy = set(env.legacy_triggers) if env.upgrading and not spec.force else set()
    statements.extend(drop_trigger_statement(name, (schema, table))
                      for schema, table, name in sorted(env.set_triggers)
                      if (schema, table, name) not in legacy)
    statements.extend(drop_capture_statement(c.id) for c in set_state.tables)
    if set_state.tables:
        statements.append(Statement(sql.SQL(
            'DELETE FROM tablesync.trigger_tables WHERE set_name = %s'), (spec.name,)))
    server_dropped = None
    if row is not None:
        statements.append(Statement(sql.SQL('DELETE FROM tablesync.trigger_sets WHERE name = %s'),
                                    (spec.name,)))
        if row.get('server_managed') and env.server is not None:
            if env.mapping_exists:
                statements.append(Statement(sql.SQL('DROP {}').format(
                    mapping_target(spec.owner, spec))))
            if env.login_mapping and env.role != spec.owner:
                statements.append(Statement(sql.SQL('DROP {}').format(
                    mapping_target(env.role, spec))))
            statements.append(Statement(sql.SQL('DROP SERVER {}').format(
                sql.Identifier(row['server']))))
            server_dropped = row['server']
    if env.storage and set_state.other_sets == 0:
        statements.extend(teardown_statements(env, server_dropped,
                                              set(c.id for c in set_state.tables)))
        plan.torn_down = True
    return plan


def plan(spec, env, set_state, sources=None):
    """Statements for a SetSpec; raises PlanError before anything runs."""
    if spec.state == 'absent':
        return plan_absent(spec, env, set_state, sources)
    return plan_present(spec, env, set_state, sources or {})
