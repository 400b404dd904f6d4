#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_scram_verifiers
short_description: Read the SCRAM-SHA-256 verifiers of login roles, to copy them to another server
version_added: 0.1.0
description:
  - Reads C(pg_authid.rolpassword) of the named roles and returns their SCRAM-SHA-256
    verifiers. Changes nothing.
  - For SCRAM pass-through (PostgreSQL 18 postgres_fdw and dblink, option
    C(use_scram_passthrough)), where the remote server must hold the very same verifier (same
    salt and iteration count) as the local login; set it there with
    M(tablesync.postgresql.pg_sync_role) O(tablesync.postgresql.pg_sync_role#module:password_verifier).
    No password is needed or seen.
  - A verifier is not a password (it cannot log in), but it allows an offline guessing attack
    on the password; put C(no_log) on the task and do not store the result.
  - Needs a superuser (only superusers may read C(pg_authid)).
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
  - tablesync.postgresql.read_only
options:
  roles:
    description:
      - The login roles, taken literally. The module fails naming every role that does not
        exist or has no SCRAM-SHA-256 password (none, or an MD5 one), since pass-through cannot
        work for it.
    type: list
    elements: str
    required: true
'''

EXAMPLES = r'''
- name: Read the verifier of the reporting login on the consumer
  tablesync.postgresql.pg_scram_verifiers:
    login_db: postgres
    roles: [reporting]
  register: consumer_logins
  no_log: true

- name: The same verifier for the same role on the source
  tablesync.postgresql.pg_sync_role:
    login_db: shop
    name: reporting
    password_verifier: "{{ consumer_logins.verifiers.reporting }}"
    select_tables: [sales.orders]
  delegate_to: shop-source
  no_log: true
'''

RETURN = r'''
verifiers:
  description: Role name -> its SCRAM-SHA-256 verifier as C(pg_authid) stores it.
  returned: success
  type: dict
  sample: {"reporting": "SCRAM-SHA-256$4096:c2FsdA==$...:..."}
server_version_num:
  description: C(server_version_num) of the server read.
  returned: success
  type: int
  sample: 180001
queries:
  description: The catalog reads made (no secret is part of them).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, server_version)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, check_identifier)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.scram import is_verifier

QUERY = """
    SELECT coalesce((SELECT pg_catalog.json_object_agg(a.rolname, a.rolpassword)
                      FROM pg_catalog.pg_authid a
                     WHERE a.rolname = ANY(%(roles)s::text[])), '{}'::json) AS passwords
"""
QUERY_TEXT = ' '.join(QUERY.split())


def unusable_roles(roles, stored):
    """Roles of ``roles`` without a SCRAM verifier in ``stored`` (name -> rolpassword), each
    with the reason, in input order."""
    problems = []
    for role in roles:
        if role not in stored:
            problems.append('%s (no such role)' % role)
        elif not is_verifier(stored[role]):
            problems.append('%s (%s)' % (role, 'no password' if not stored[role]
                                         else 'password not stored as SCRAM-SHA-256'))
    return problems


def argument_spec():
    spec = connection_argument_spec()
    spec.update(roles=dict(type='list', elements='str', required=True))
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    roles = module.params['roles']
    try:
        for role in roles:
            check_identifier(role, 'role')
    except NameError_ as e:
        module.fail_json(msg=str(e))
    conn = connect(module)
    version = server_version(conn)
    # pg_authid is readable by superusers only (the server reports it at connect time, no query)
    if conn.get_parameter_status('is_superuser') != 'on':
        conn.close()
        module.fail_json(msg='reading SCRAM verifiers needs a superuser (pg_authid); connect as '
                             'one (login_user)', queries=[])
    with conn.cursor() as cur:
        cur.execute(QUERY, {'roles': roles})
        stored = cur.fetchone()[0]
    conn.rollback()
    conn.close()
    problems = unusable_roles(roles, stored)
    if problems:
        module.fail_json(msg='no SCRAM-SHA-256 verifier to copy for: %s. Set a password with '
                             "password_encryption = 'scram-sha-256' (the default since "
                             'PostgreSQL 14).' % ', '.join(problems), queries=[QUERY_TEXT])
    module.exit_json(changed=False, verifiers=dict((r, stored[r]) for r in roles),
                     server_version_num=version, queries=[QUERY_TEXT])


if __name__ == '__main__':
    main()
