# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner of pg_fdw_server: the postgres_fdw extension and one foreign server.

``plan_server(desired, current)`` compares a ``ServerSpec`` (what the task asks for) with a
``ServerState`` (what the catalog holds) and returns the ``Statement`` list that gets from one
to the other. Pure: no database, unit-tested offline.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (
    FDW_NAME, PlanError, alter_options_statement, comment_statement, create_options_clause,
    option_changes, redacted_options)


class ServerSpec(object):
    """The desired server. ``None`` for owner/comment/extension_schema means "leave as is"."""

    def __init__(self, name, state='present', options=None, owner=None, comment=None,
                 extension_schema=None, cascade=False):
        self.name = name
        self.state = state
        self.options = dict(options or {})
        self.owner = owner
        self.comment = comment
        self.extension_schema = extension_schema
        self.cascade = cascade


class ServerState(object):
    """What the catalog says (filled by the module's reader, or by tests)."""

    def __init__(self, exists=False, fdw=None, options=None, owner=None, comment=None,
                 extension_schema=None, schema_exists=True, current_user=None,
                 mapping_count=0, table_count=0):
        self.exists = exists
        self.fdw = fdw
        self.options = dict(options or {})
        self.owner = owner
        self.comment = comment
        self.extension_schema = extension_schema  # None: extension not installed
        self.schema_exists = schema_exists  # whether the desired extension_schema exists
        self.current_user = current_user
        self.mapping_count = mapping_count
        self.table_count = table_count

    def as_dict(self, name):
        """Returned to the user (and used as diff): no secrets in server options anyway."""
        if not self.exists:
            return {'name': name, 'exists': False}
        return {'name': name, 'exists': True, 'owner': self.owner, 'comment': self.comment,
                'options': redacted_options(self.options),
                'extension_schema': self.extension_schema}


def server_ident(name):
    return sql.SQL('SERVER {}').format(sql.Identifier(name))


def plan_extension(desired, current):
    """CREATE EXTENSION / ALTER EXTENSION ... SET SCHEMA for postgres_fdw."""
    statements = []
    wanted = desired.extension_schema
    if wanted and not current.schema_exists:
        statements.append(Statement(sql.SQL('CREATE SCHEMA {}').format(sql.Identifier(wanted))))
    if current.extension_schema is None:
        query = sql.SQL('CREATE EXTENSION {}').format(sql.Identifier(FDW_NAME))
        if wanted:
            query = sql.SQL('{} SCHEMA {}').format(query, sql.Identifier(wanted))
        statements.append(Statement(query))
    elif wanted and current.extension_schema != wanted:
        statements.append(Statement(sql.SQL('ALTER EXTENSION {} SET SCHEMA {}').format(
            sql.Identifier(FDW_NAME), sql.Identifier(wanted))))
    return statements


def plan_create(desired):
    clause, params = create_options_clause(desired.options)
    return Statement(sql.SQL('CREATE SERVER {} FOREIGN DATA WRAPPER {}{}').format(
        sql.Identifier(desired.name), sql.Identifier(FDW_NAME), clause), params)


def plan_owner(desired, current_owner):
    if desired.owner is None or desired.owner == current_owner:
        return []
    return [Statement(sql.SQL('ALTER SERVER {} OWNER TO {}').format(
        sql.Identifier(desired.name), sql.Identifier(desired.owner)))]


def plan_drop(desired, current):
    if not current.exists:
        return []
    dependents = []
    if current.mapping_count:
        dependents.append('%d user mapping(s)' % current.mapping_count)
    if current.table_count:
        dependents.append('%d foreign table(s)' % current.table_count)
    if dependents and not desired.cascade:
        raise PlanError('server %s has %s; set cascade: true to drop them with the server'
                        % (desired.name, ' and '.join(dependents)))
    query = sql.SQL('DROP SERVER {}').format(sql.Identifier(desired.name))
    if desired.cascade:
        query = sql.SQL('{} CASCADE').format(query)
    return [Statement(query)]


def check_wrapper(desired, current):
    if current.exists and current.fdw != FDW_NAME:
        raise PlanError('server %s exists but uses the foreign-data wrapper %s, not %s; drop it '
                        'first (state: absent) or choose another name'
                        % (desired.name, current.fdw, FDW_NAME))


def plan_server(desired, current):
    """Statements that bring the extension and the server to the desired state."""
    if desired.state == 'absent':
        return plan_drop(desired, current)
    check_wrapper(desired, current)
    statements = plan_extension(desired, current)
    if not current.exists:
        statements.append(plan_create(desired))
        statements.extend(plan_owner(desired, current.current_user))
    else:
        altered = alter_options_statement(
            sql.SQL('ALTER SERVER {}').format(sql.Identifier(desired.name)),
            option_changes(current.options, desired.options))
        if altered:
            statements.append(altered)
        statements.extend(plan_owner(desired, current.owner))
    comment = comment_statement(server_ident(desired.name),
                                current.comment if current.exists else None, desired.comment)
    if comment:
        statements.append(comment)
    return statements


def predicted_state(desired, current):
    """The state after a successful run (for check mode and diff)."""
    if desired.state == 'absent':
        return ServerState(exists=False)
    after = ServerState(exists=True, fdw=FDW_NAME, options=desired.options,
                        owner=desired.owner or (current.owner if current.exists
                                                else current.current_user),
                        comment=current.comment if desired.comment is None
                        else (desired.comment or None),
                        extension_schema=desired.extension_schema or current.extension_schema)
    return after
