# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the trigger method installs once per database, before any set: the owner role, the
schema and dblink, the storage tables (and the v1 upgrade), the routines, the foreign server and
the user mapping. Pure planning; ``planner.py`` puts these statements first in a set's plan.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import csv
import io

from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (
    alter_options_statement, create_options_clause, option_changes)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Secret, Statement, bind, exact_grantees)
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.state import OWNER_FORBIDDEN
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import follow
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import schema as q
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.routines import FLUSH_API, MONITORED, MONITOR_ROLE, ROUTINES

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
    """Create the NOLOGIN owner role, or refuse one that could do more than own the machinery.

    A connected role without superuser (a managed service's administrator, CREATEROLE) may only
    hand objects to a role it can SET ROLE to, and grant on them as a member of their owner: it
    grants itself that membership (the owner gains nothing from it; the administrator already
    controls the role it created)."""
    if env.owner is None:
        return [Statement(sql.SQL('CREATE ROLE {} NOLOGIN').format(sql.Identifier(spec.owner)))] \
            + self_grant(spec, env)
    problems = [a.upper() for a in OWNER_FORBIDDEN if env.owner.get(a)]
    problems += ['membership in %s' % m for m in env.owner.get('members') or ()
                 if m in OWNER_FORBIDDEN_MEMBERSHIPS]
    if problems:
        raise PlanError('role %s owns the trigger sync routines, which run for every writer of a '
                        'synced table, so it must be a plain NOLOGIN role; it has %s: remove '
                        'that or choose another owner' % (spec.owner, ', '.join(problems)))
    return [] if env.owner.get('settable') else self_grant(spec, env)


def self_grant(spec, env):
    if env.superuser:
        return []
    options = ' WITH INHERIT TRUE, SET TRUE' if env.version_num >= 160000 else ''
    return [Statement(sql.SQL('GRANT {} TO CURRENT_USER' + options).format(sql.Identifier(spec.owner)))]


def _owned(kind, target, current_owner, owner):
    if current_owner == owner:
        return []
    return [Statement(sql.SQL('ALTER {} {} OWNER TO {}').format(
        sql.SQL(kind), target, sql.Identifier(owner)))]


def routine_statements(env, owner):
    """Drop obsolete routines, create missing ones, replace those whose definition differs
    (body, SECURITY DEFINER, settings), own them, revoke PUBLIC's EXECUTE, set the comment."""
    check_version_gate(env)
    wanted = dict((r.key, r) for r in ROUTINES)
    statements = [Statement(sql.SQL('DROP ROUTINE {}({})').format(
        storage_ident(cur.name), sql.SQL(cur.identity)))
        for key, cur in sorted(env.routines.items()) if cur.ours and key not in wanted]
    schema = env.search_path_schema
    for routine in ROUTINES:
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
        if routine.name in MONITORED and (cur is None or not cur.monitor_execute):
            statements.append(Statement(sql.SQL('GRANT EXECUTE ON ROUTINE {} TO {}').format(
                routine.signature(), sql.Identifier(MONITOR_ROLE))))
        if cur is None or cur.comment != q.COMMENT:
            statements.append(Statement(sql.SQL('COMMENT ON ROUTINE {} IS %s').format(
                routine.signature()), (q.COMMENT,)))
    return statements


def flush_grant_statements(spec, env):
    """EXECUTE on the flush API (FLUSH_API) and USAGE on the schema for exactly the scheduler's
    login ``spec.flush_role`` ('' for none: an earlier one loses them; None: left alone). A
    routine routine_statements drops and creates again (its result changed) has lost its
    grants."""
    if spec.flush_role is None:
        return []
    wanted = [spec.flush_role] if spec.flush_role else []
    statements = []
    for routine in ROUTINES:
        if routine.name not in FLUSH_API:
            continue
        cur = env.routines.get(routine.key)
        fresh = cur is None or cur.result != routine.result
        statements.extend(exact_grantees('EXECUTE', sql.SQL('ROUTINE {}').format(routine.signature()),
                                         wanted, () if fresh else cur.executors))
    statements.extend(exact_grantees('USAGE', sql.SQL('SCHEMA {}').format(sql.Identifier(q.SCHEMA)),
                                     wanted, env.schema_users if env.schema_exists else ()))
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
            sql.Identifier(q.SCHEMA), sql.Identifier(MONITOR_ROLE))))
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
    if q.TABLES_TABLE in storage and not env.follow_storage:
        statements.extend(Statement(sql.SQL(ddl)) for ddl in follow.UPGRADE_V2)
    if not env.schema_index:
        statements.append(Statement(sql.SQL(follow.SCHEMA_INDEX_DDL)))
    routines = routine_statements(env, owner)
    plan.routines_changed = bool(routines)
    statements.extend(routines)
    statements.extend(flush_grant_statements(spec, env))
    if not env.commit_trigger or env.upgrading:
        statements.append(Statement(sql.SQL(q.COMMIT_TRIGGER_DDL)))
    statements.extend(event_trigger_statements(env, plan))
    return statements


def event_trigger_statements(env, plan):
    """The event trigger that follows column changes (follow.py); it needs a superuser."""
    current = env.event_trigger
    wanted = {'enabled': 'O', 'function': follow.EVENT_FUNCTION, 'function_schema': q.SCHEMA}
    if current == wanted:
        return []
    if not env.superuser:
        plan.warnings.append(
            'column changes of the synced tables are not followed: creating the event trigger %s '
            'needs a superuser; after an ALTER TABLE of a synced table run this module again '
            '(docs/schema-changes.md)' % follow.EVENT_TRIGGER)
        return []
    trigger = sql.Identifier(follow.EVENT_TRIGGER)
    statements = []
    if current is not None:
        statements.append(Statement(sql.SQL('DROP EVENT TRIGGER {}').format(trigger)))
    statements.append(Statement(sql.SQL(follow.EVENT_TRIGGER_DDL)))
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


def drop_trigger_statement(name, table):
    return Statement(sql.SQL('DROP TRIGGER {} ON {}').format(
        sql.Identifier(name), table_ident(*table)))


def lock_statement(tables):
    return Statement(sql.SQL('LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE').format(
        sql.SQL(', ').join(table_ident(*t) for t in tables)))
