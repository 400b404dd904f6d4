# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the postgres_fdw modules share: generic OPTIONS lists and their version gates.

PostgreSQL stores the OPTIONS of servers, user mappings, foreign tables and their columns as
``text[]`` of ``key=value`` strings. ``parse_options`` reads that form, ``normalize_options``
turns module input (YAML booleans, integers) into the strings PostgreSQL stores, and
``options_clause`` builds the ``OPTIONS (ADD k 'v', SET k 'v', DROP k)`` clause that brings the
current options to the desired ones, values always as bound parameters (``Secret`` for
passwords), names always as identifiers. All functions are pure (no database).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    require_version, server_version)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import (
    Executor, apply)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Secret, Statement)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG13, PG14, PG15, PG16, PG18

FDW_NAME = 'postgres_fdw'

SECRET_OPTIONS = frozenset(['password', 'sslpassword'])

# postgres_fdw options that take a boolean: compared by meaning ('on' == 'true').
BOOLEAN_OPTIONS = frozenset([
    'use_remote_estimate', 'updatable', 'truncatable', 'async_capable', 'keep_connections',
    'parallel_commit', 'parallel_abort', 'password_required', 'import_collate',
    'import_default', 'import_generated', 'import_not_null', 'use_scram_passthrough',
])

_TRUE = frozenset(['true', 'on', 'yes', '1', 't', 'y'])
_FALSE = frozenset(['false', 'off', 'no', '0', 'f', 'n'])

# Minimum PostgreSQL version of each postgres_fdw option, per object kind. Options not listed
# exist in every supported version (or are libpq options, checked by the server itself).
OPTION_VERSIONS = {
    'server': {
        'truncatable': PG14, 'batch_size': PG14, 'async_capable': PG14,
        'keep_connections': PG14, 'parallel_commit': PG15, 'parallel_abort': PG16,
        'analyze_sampling': PG16, 'use_scram_passthrough': PG18,
    },
    'user mapping': {
        'password_required': PG13, 'sslcert': PG13, 'sslkey': PG13,
        'use_scram_passthrough': PG18,
    },
    'foreign table': {
        'truncatable': PG14, 'batch_size': PG14, 'async_capable': PG14,
        'analyze_sampling': PG16,
    },
    'IMPORT FOREIGN SCHEMA': {
        'import_generated': PG13,
    },
}

# Options that belong to another object: a clear message instead of PostgreSQL's long hint.
MISPLACED_OPTIONS = {
    'server': {
        'user': 'set the remote user in the user mapping (pg_fdw_user_mappings), not the server',
        'password': 'set the password in the user mapping (pg_fdw_user_mappings), not the server',
    },
    'user mapping': {
        'user': 'use the user option of the mapping, not options',
        'password': 'use the password option of the mapping, not options',
    },
    'foreign table': {
        'schema_name': 'use remote_schema, not options',
        'table_name': 'use remote_name, not options',
    },
}


def parse_options(values):
    """``['host=db1', 'port=5432']`` (a catalog text[]) -> ``{'host': 'db1', 'port': '5432'}``."""
    result = {}
    for item in values or ():
        key, _sep, value = item.partition('=')
        result[key] = value
    return result


def option_text(value):
    """The text PostgreSQL stores for a module value: True -> 'true', 5432 -> '5432'."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def normalize_options(options, kind):
    """Module input dict -> dict of strings; raises PlanError for None values or misplaced keys."""
    result = {}
    for key, value in (options or {}).items():
        hint = MISPLACED_OPTIONS.get(kind, {}).get(key)
        if hint:
            raise PlanError('%s option %r is not allowed here: %s' % (kind, key, hint))
        if value is None:
            raise PlanError('%s option %r has no value (remove it to drop the option)'
                            % (kind, key))
        result[str(key)] = option_text(value)
    return result


def same_value(key, current, desired):
    """True when the stored and the desired option value mean the same."""
    if current == desired:
        return True
    if key in BOOLEAN_OPTIONS and current is not None and desired is not None:
        for words in (_TRUE, _FALSE):
            if current.lower() in words and desired.lower() in words:
                return True
    return False


def version_requirements(options, kind, server_version):
    """``[(option, minimum_version)]`` for options the server is too old for, sorted by name."""
    table = OPTION_VERSIONS.get(kind, {})
    return sorted((key, table[key]) for key in options
                  if key in table and server_version < table[key])


def _value_param(key, value):
    return Secret(value) if key in SECRET_OPTIONS else value


def option_changes(current, desired, managed=None):
    """``[(action, key, value)]`` turning current options into desired ones.

    ``managed``: keys this call manages (default: all). Keys outside it are left as they are,
    so an option the user did not mention (e.g. an unspecified password) is never dropped.
    Order: ADD/SET in the desired order, then DROP in name order.
    """
    changes = []
    for key, value in desired.items():
        if key not in current:
            changes.append(('ADD', key, value))
        elif not same_value(key, current[key], value):
            changes.append(('SET', key, value))
    for key in sorted(current):
        if key not in desired and (managed is None or key in managed):
            changes.append(('DROP', key, None))
    return changes


def options_clause(changes):
    """``(composable, params)`` for ``OPTIONS (ADD "k" %s, SET "k" %s, DROP "k")``."""
    parts = []
    params = []
    for action, key, value in changes:
        if action == 'DROP':
            parts.append(sql.SQL('DROP {}').format(sql.Identifier(key)))
        else:
            parts.append(sql.SQL(action + ' {} %s').format(sql.Identifier(key)))
            params.append(_value_param(key, value))
    return sql.SQL('OPTIONS ({})').format(sql.SQL(', ').join(parts)), params


def create_options_clause(options):
    """``(composable, params)`` for ``OPTIONS ("k" %s, ...)``; empty SQL when no options."""
    if not options:
        return sql.SQL(''), []
    parts = [sql.SQL('{} %s').format(sql.Identifier(key)) for key in options]
    params = [_value_param(key, value) for key, value in options.items()]
    return sql.SQL(' OPTIONS ({})').format(sql.SQL(', ').join(parts)), params


def alter_options_statement(prefix, changes):
    """``<prefix> OPTIONS (...)`` as a Statement, or None when there is nothing to change."""
    if not changes:
        return None
    clause, params = options_clause(changes)
    return Statement(sql.SQL('{} {}').format(prefix, clause), params)


def redacted_options(options):
    """Copy of an options dict safe to return: secret values masked."""
    return dict((k, '********' if k in SECRET_OPTIONS else v) for k, v in options.items())


def comment_statement(object_sql, current, desired):
    """COMMENT ON ... IS %s when the desired comment differs ('' removes it); None otherwise."""
    if desired is None or (current or '') == desired:
        return None
    if desired == '':
        return Statement(sql.SQL('COMMENT ON {} IS NULL').format(object_sql))
    return Statement(sql.SQL('COMMENT ON {} IS %s').format(object_sql), (desired,))


def apply_statements(module, conn, statements, secrets=()):
    """Run statements with the shared Executor (nothing in check mode) and commit.

    Fails the module with the redacted error on a database error. Returns the Executor, whose
    ``queries`` (redacted) the module returns.
    """
    executor = Executor(conn, module.check_mode)
    executor.add_secrets(*secrets)
    return apply(module, executor, statements, '%s')


def fail_on_old_server(module, conn, options, kind):
    """Fail naming the first option the local PostgreSQL version does not support."""
    for key, minimum in version_requirements(options, kind, server_version(conn)):
        require_version(module, conn, minimum, 'postgres_fdw %s option %s' % (kind, key))
