#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_fdw_user_mappings
short_description: Manage the user mappings of a postgres_fdw foreign server
version_added: 0.1.0
description:
  - Creates, changes (C(ALTER USER MAPPING ... OPTIONS (ADD/SET/DROP))) and removes the user
    mappings of one foreign server in one call (which remote user, with which password, a local
    role or C(PUBLIC) connects as).
  - A changed remote password is detected by comparing it with the stored one in memory; the
    password is never returned, shown in the diff or in RV(queries) (it appears as
    C('********')).
options:
  server:
    description:
      - Name of the foreign server (see M(tablesync.postgresql.pg_fdw_server)).
    type: str
    required: true
  mappings:
    description:
      - The user mappings to manage.
    type: list
    elements: dict
    default: []
    suboptions:
      role:
        description:
          - Local role the mapping is for. V(PUBLIC) (any case) maps every role that has no
            mapping of its own.
        type: str
        required: true
      user:
        description:
          - Remote user to connect as. Unset leaves the mapping's remote user as it is.
        type: str
      password:
        description:
          - Password of the remote user. Unset leaves the stored password as it is.
        type: str
      scram_passthrough:
        description:
          - Connect with the SCRAM keys the local session authenticated with (option
            C(use_scram_passthrough)) instead of a stored password, which is removed when
            there is one. Needs PostgreSQL 18 on this server (the module fails naming the
            version otherwise) and cannot be combined with O(mappings[].password) or C(PUBLIC).
          - Works only for sessions that logged in to this server with SCRAM-SHA-256 (over
            TCP or a socket with C(scram-sha-256) in C(pg_hba.conf)), and only when the
            remote user has the same SCRAM verifier (same salt and iteration count, not merely
            the same password) as the local login; copy it with
            M(tablesync.postgresql.pg_scram_verifiers) and
            M(tablesync.postgresql.pg_sync_role) O(tablesync.postgresql.pg_sync_role#module:password_verifier).
        type: bool
        default: false
      options:
        description:
          - Further user mapping options (C(sslcert), C(sslkey), C(password_required), ...).
            Options of the mapping that are not listed here, other than C(user) and
            C(password), are dropped.
        type: dict
        default: {}
      state:
        description:
          - V(absent) removes the mapping.
        type: str
        choices: [present, absent]
        default: present
  exclusive:
    description:
      - Remove the mappings of the server whose role is not in O(mappings).
    type: bool
    default: false
extends_documentation_fragment:
  - tablesync.postgresql.connection
attributes:
  check_mode:
    description: Nothing is changed in check mode; RV(queries) shows what would run.
    support: full
  diff_mode:
    description: Returns the mappings before and after, without passwords.
    support: full
notes:
  - Reading the stored options of a mapping (to compare the password) needs a superuser, the
    server owner (for C(PUBLIC) mappings) or the mapped role itself; mappings whose options are
    not visible are reported with a warning and left unchanged.
  - When the module connects as a superuser, the statements carrying a password run with
    C(log_statement), C(log_min_duration_statement) and C(log_min_error_statement) switched off
    for their transaction, so the password does not reach the server log.
  - In check mode, a server that does not exist yet (created by an earlier task that only ran
    in check mode) is treated as a server without mappings, with a warning.
seealso:
  - module: tablesync.postgresql.pg_fdw_server
  - module: tablesync.postgresql.pg_foreign_tables
author:
  - tablesync maintainers (@tablesync)
'''

EXAMPLES = r'''
- name: The reporting role reads the shop as tablesync_fdw; nobody else has a mapping
  tablesync.postgresql.pg_fdw_user_mappings:
    login_db: reporting
    server: shop_source
    mappings:
      - role: reporting
        user: tablesync_fdw
        password: "{{ vault_tablesync_fdw_password }}"
    exclusive: true

- name: PostgreSQL 18 - reporting logs in with SCRAM and reads as itself, no password stored
  tablesync.postgresql.pg_fdw_user_mappings:
    login_db: reporting
    server: shop_source
    mappings:
      - role: reporting
        scram_passthrough: true

- name: Drop the PUBLIC mapping
  tablesync.postgresql.pg_fdw_user_mappings:
    login_db: reporting
    server: shop_source
    mappings:
      - role: PUBLIC
        state: absent
'''

RETURN = r'''
user_mappings:
  description: The mappings of the server after the run (predicted in check mode), without
    passwords.
  returned: always
  type: list
  elements: dict
  sample:
    - role: reporting
      user: tablesync_fdw
      password_set: true
      options: {}
password_changed:
  description: Roles whose stored remote password differed from O(mappings[].password) and
    was (or in check mode would be) replaced.
  returned: always
  type: list
  elements: str
  sample: [reporting]
queries:
  description: Statements run (or that would run in check mode), passwords shown as
    C('********').
  returned: always
  type: list
  elements: str
  sample: ['ALTER USER MAPPING FOR "reporting" SERVER "shop_source" OPTIONS (SET "password" ''********'')']
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (
    PlanError, apply_statements, fail_on_old_server, parse_options)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, check_identifier)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.user_mappings import (
    PUBLIC, MappingSpec, MappingState, mappings_as_list, plan_mappings)


class FdwUserMappings(object):
    """The server's user mappings, and the desired roles that exist, in one query."""

    QUERY = """
        SELECT s.oid IS NOT NULL AS server_exists,
               pg_catalog.current_setting('is_superuser') = 'on' AS superuser,
               ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r
                      WHERE r.rolname = ANY(%(roles)s::text[])) AS existing_roles,
               coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                          'role', CASE WHEN um.umuser = 0 THEN NULL ELSE um.usename END,
                          'options', um.umoptions,
                          'visible', um.umoptions IS NOT NULL
                              OR (um.umuser <> 0 AND um.usename = current_user
                                  AND (pg_catalog.pg_has_role(s.srvowner, 'USAGE')
                                       OR pg_catalog.has_server_privilege(s.oid, 'USAGE')))
                              OR (um.umuser = 0 AND pg_catalog.pg_has_role(s.srvowner, 'USAGE'))
                              OR pg_catalog.current_setting('is_superuser') = 'on'))
                       FROM pg_catalog.pg_user_mappings um
                      WHERE um.srvid = s.oid), '[]'::json) AS mappings
          FROM (SELECT 1) AS one
          LEFT JOIN pg_catalog.pg_foreign_server s ON s.srvname = %(server)s
    """

    def __init__(self, conn, server, roles):
        self.conn = conn
        self.server = server
        self.roles = [r for r in roles if r is not PUBLIC]
        self.server_exists = False
        self.superuser = False
        self.existing_roles = set()
        self.mappings = {}

    def read(self):
        with self.conn.cursor() as cur:
            cur.execute(self.QUERY, {'server': self.server, 'roles': self.roles})
            row = cur.fetchone()
        self.conn.rollback()
        self.server_exists, self.superuser, existing, mappings = row
        self.existing_roles = set(existing)
        self.mappings = {}
        for item in mappings:
            options = parse_options(item['options']) if item['visible'] else None
            self.mappings[item['role']] = MappingState(item['role'], options)
        return self

    def stored_passwords(self):
        """For redaction of error messages only."""
        return [m.options.get('password') for m in self.mappings.values() if m.visible]


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        server=dict(type='str', required=True),
        mappings=dict(type='list', elements='dict', default=[], options=dict(
            role=dict(type='str', required=True),
            user=dict(type='str'),
            password=dict(type='str', no_log=True),
            scram_passthrough=dict(type='bool', default=False),
            options=dict(type='dict', default={}),
            state=dict(type='str', default='present', choices=['present', 'absent']),
        )),
        exclusive=dict(type='bool', default=False),
    )
    return spec


def desired_mappings(params):
    try:
        check_identifier(params['server'], 'server')
        for m in params['mappings']:
            check_identifier(m['role'], 'role')
    except NameError_ as e:
        raise PlanError(str(e))
    return [MappingSpec(m['role'], m['user'], m['password'], m['options'], m['state'],
                        scram_passthrough=m['scram_passthrough'])
            for m in params['mappings']]


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        specs = desired_mappings(module.params)
    except PlanError as e:
        module.fail_json(msg=str(e))
    conn = connect(module)
    for spec in specs:
        fail_on_old_server(module, conn, spec.options, 'user mapping')
    current = FdwUserMappings(conn, module.params['server'], [s.key for s in specs]).read()
    before = mappings_as_list(current.mappings)
    if not current.server_exists:
        missing = ('foreign server %s does not exist (create it with '
                   'tablesync.postgresql.pg_fdw_server first)' % module.params['server'])
        if not module.check_mode:
            module.fail_json(msg=missing)
        module.warn(missing + '; planned as if it had no user mappings')
    try:
        plan = plan_mappings(module.params['server'], specs, current.mappings,
                             current.existing_roles, module.params['exclusive'],
                             can_quiet_log=current.superuser)
    except PlanError as e:
        module.fail_json(msg=str(e))
    for warning in plan.warnings:
        module.warn(warning)
    executor = apply_statements(module, conn, plan.statements, current.stored_passwords())
    after = plan.after
    if plan.statements and not module.check_mode:
        after = current.read().mappings
    conn.close()
    module.exit_json(changed=executor.changed, queries=executor.queries,
                     user_mappings=mappings_as_list(after),
                     password_changed=plan.password_changed,
                     diff=dict(before=dict(user_mappings=before),
                               after=dict(user_mappings=mappings_as_list(after))))


if __name__ == '__main__':
    main()
