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

The SQL bodies are in ``routines`` (names and storage in ``schema``) and ``capture``; what is
installed once per database (owner, schema, routines, server, mapping) is planned in ``install``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    format_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.capture import (
    BackfillStatement, capture_body, capture_name, capture_statement, capture_statements, drop_capture_statement)
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.state import (
    ENABLED_ORIGIN, ROW_TRIGGER_TYPE, TABLE_KINDS, TRUNCATE_TRIGGER_TYPE, ConfigTable)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import row_trigger_name, truncate_trigger_name
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.install import (
    drop_trigger_statement, lock_statement, table_ident, storage_ident, FetchStatement,
    infrastructure_statements, server_statements, mapping_target, mapping_statements,
    replaced_server_statements)
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import schema as q
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.routines import CAPTURE_TRUNCATE
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.follow import EVENT_TRIGGER

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None


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
              (truncate_trigger_name(set_name), CAPTURE_TRUNCATE,
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
            'target_schema, target_table, key_columns, columns, numbers, follow) '
            'VALUES (%s, %s, %s, %s, %s, %s, %s::text[], %s::text[], %s::smallint[], %s)'),
            (desired.id, set_name, desired.source_schema, desired.source_table,
             desired.target_schema, desired.target_table, desired.key_columns, desired.columns,
             desired.numbers, desired.follow))
    if current.values() == desired.values():
        return None
    return Statement(sql.SQL(
        'UPDATE tablesync.trigger_tables SET target_schema = %s, target_table = %s, '
        'key_columns = %s::text[], columns = %s::text[], numbers = %s::smallint[], follow = %s '
        'WHERE id = %s'),
        (desired.target_schema, desired.target_table, desired.key_columns, desired.columns,
         desired.numbers, desired.follow, desired.id))


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
                create_trigger_statement(truncate, desired.source, CAPTURE_TRUNCATE,
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
    numbers = resolved.source_table.numbers
    return ConfigTable(table_id, resolved.source[0], resolved.source[1], resolved.target[0],
                       resolved.target[1], resolved.key_columns, resolved.columns,
                       backfilled=bool(current and current.backfilled),
                       numbers=[numbers[c] for c in resolved.columns],
                       follow=not resolved.spec.columns)


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

    # the commit trigger and the event trigger depend on routines, routines depend on the
    # rowtype of trigger_tables
    statements = drop_tables([q.COMMITS_TABLE])
    if env.event_trigger is not None:
        statements.append(Statement(sql.SQL('DROP EVENT TRIGGER {}').format(
            sql.Identifier(EVENT_TRIGGER))))
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
