# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner of pg_fdw_user_mappings: the user mappings of one foreign server.

A mapping is keyed by its local role; ``PUBLIC`` (any case) is the PUBLIC pseudo-role, kept as
``None`` internally so it never collides with a role that is really named "PUBLIC".

The remote password is an option of the mapping (``pg_user_mapping.umoptions``). It is
compared with the desired one here, in memory, and only ever leaves as a ``Secret`` statement
parameter (shown as ``'********'``): no returned value, diff or message contains it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import Statement
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (
    PlanError, alter_options_statement, create_options_clause, normalize_options,
    option_changes, redacted_options)

PUBLIC = None
PUBLIC_NAME = 'PUBLIC'

# Options carried by their own module parameters, not by ``options``.
CREDENTIAL_KEYS = ('user', 'password')

# Sent before statements that carry a password when the session may change these settings
# (superuser): the statement text is then kept out of the server log.
QUIET_LOG_SETTINGS = (('log_statement', 'none'), ('log_min_duration_statement', '-1'),
                      ('log_min_error_statement', 'panic'))


def role_key(role):
    """Module input -> mapping key (None for PUBLIC)."""
    if role is None or role.upper() == PUBLIC_NAME:
        return PUBLIC
    return role


def role_label(key):
    return PUBLIC_NAME if key is PUBLIC else key


def key_order(key):
    """Sort key of mapping keys: PUBLIC first, then roles by name."""
    return (key is not PUBLIC, key or '')


PASSTHROUGH_OPTION = 'use_scram_passthrough'


class MappingSpec(object):
    """One desired mapping. ``user``/``password`` None: left as they are.

    ``scram_passthrough``: the mapping authenticates with the SCRAM keys of the local session's
    login (PostgreSQL 18): option use_scram_passthrough on, and no stored password (one that is
    there is dropped)."""

    def __init__(self, role, user=None, password=None, options=None, state='present',
                 scram_passthrough=False):
        self.key = role_key(role)
        self.user = user
        self.password = password
        self.options = normalize_options(options, 'user mapping')
        self.state = state
        self.scram_passthrough = scram_passthrough
        if scram_passthrough:
            if password is not None:
                raise PlanError('user mapping for %s: scram_passthrough stores no password; '
                                'remove password' % role_label(self.key))
            if self.key is PUBLIC:
                raise PlanError('user mapping for PUBLIC cannot use scram_passthrough: the '
                                'remote role must have the SCRAM verifier of each local login, '
                                'so map each login role by name')
            self.options[PASSTHROUGH_OPTION] = 'true'

    def desired_options(self):
        options = dict(self.options)
        if self.user is not None:
            options['user'] = self.user
        if self.password is not None:
            options['password'] = self.password
        return options

    def managed_keys(self, current_keys):
        """Current option keys this spec decides about (unset user/password excluded; with
        scram_passthrough the password is managed: it goes)."""
        unmanaged = set(k for k in CREDENTIAL_KEYS if getattr(self, k) is None
                        and not (k == 'password' and self.scram_passthrough))
        return set(current_keys) - unmanaged


class MappingState(object):
    """A mapping as the catalog holds it. ``options`` None: not visible to this session."""

    def __init__(self, key, options=None):
        self.key = key
        self.options = options

    @property
    def visible(self):
        return self.options is not None

    def as_dict(self):
        """Safe to return: the password never, only whether one is set."""
        result = {'role': role_label(self.key)}
        if not self.visible:
            result['options_visible'] = False
            return result
        others = dict((k, v) for k, v in self.options.items() if k not in CREDENTIAL_KEYS)
        result.update(user=self.options.get('user'),
                      password_set=bool(self.options.get('password')),
                      options=redacted_options(others))
        return result


class MappingPlan(object):
    def __init__(self):
        self.statements = []
        self.warnings = []
        self.password_changed = []
        self.after = {}


def mapping_target(key, server):
    role = sql.SQL(PUBLIC_NAME) if key is PUBLIC else sql.Identifier(key)
    return sql.SQL('USER MAPPING FOR {} SERVER {}').format(role, sql.Identifier(server))


def check_specs(specs, existing_roles):
    seen = set()
    for spec in specs:
        if spec.key in seen:
            raise PlanError('user mapping for %s is listed more than once' % role_label(spec.key))
        seen.add(spec.key)
        if spec.state == 'present' and spec.key is not PUBLIC and spec.key not in existing_roles:
            raise PlanError('role %s does not exist (create it first, or map PUBLIC)' % spec.key)


def password_differs(spec, current_options):
    return spec.password is not None and current_options.get('password') != spec.password


def plan_present(server, spec, current, plan):
    target = mapping_target(spec.key, server)
    if current is None:
        clause, params = create_options_clause(spec.desired_options())
        plan.statements.append(Statement(sql.SQL('CREATE {}{}').format(target, clause), params))
        plan.after[spec.key] = MappingState(spec.key, spec.desired_options())
        return
    if not current.visible:
        plan.warnings.append(
            'the options of the user mapping for %s on server %s are not visible to this role '
            '(connect as a superuser or the server owner); they were left unchanged'
            % (role_label(spec.key), server))
        plan.after[spec.key] = current
        return
    changes = option_changes(current.options, spec.desired_options(),
                             spec.managed_keys(current.options))
    statement = alter_options_statement(sql.SQL('ALTER {}').format(target), changes)
    if statement:
        plan.statements.append(statement)
    if password_differs(spec, current.options):
        plan.password_changed.append(role_label(spec.key))
    after = dict((k, v) for k, v in current.options.items()
                 if k not in spec.managed_keys(current.options))
    after.update(spec.desired_options())
    plan.after[spec.key] = MappingState(spec.key, after)


def drop_statement(server, key):
    return Statement(sql.SQL('DROP {}').format(mapping_target(key, server)))


def quiet_log_statement():
    """set_config(..., is_local => true) for each QUIET_LOG_SETTINGS, in one statement."""
    calls = [sql.SQL('pg_catalog.set_config({}, {}, true)').format(sql.Literal(name),
                                                                   sql.Literal(value))
             for name, value in QUIET_LOG_SETTINGS]
    return Statement(sql.SQL('SELECT {}').format(sql.SQL(', ').join(calls)))


def carries_secret(statements):
    return any(s.secrets() for s in statements)


def plan_mappings(server, specs, current, existing_roles, exclusive=False, can_quiet_log=False):
    """Statements for the desired mappings.

    ``current``: dict key -> MappingState for every mapping of the server;
    ``existing_roles``: the desired roles that exist; ``exclusive``: drop mappings not listed;
    ``can_quiet_log``: the session may keep the password statements out of the server log.
    """
    check_specs(specs, existing_roles)
    plan = MappingPlan()
    plan.after = dict(current)
    listed = set()
    for spec in specs:
        listed.add(spec.key)
        if spec.state == 'absent':
            if spec.key in current:
                plan.statements.append(drop_statement(server, spec.key))
                del plan.after[spec.key]
            continue
        plan_present(server, spec, current.get(spec.key), plan)
    if exclusive:
        for key in sorted((k for k in current if k not in listed), key=key_order):
            plan.statements.append(drop_statement(server, key))
            del plan.after[key]
    if can_quiet_log and carries_secret(plan.statements):
        plan.statements.insert(0, quiet_log_statement())
    return plan


def mappings_as_list(states):
    """Mappings in a stable order (PUBLIC first) for return values and diff."""
    return [states[k].as_dict() for k in sorted(states, key=key_order)]
