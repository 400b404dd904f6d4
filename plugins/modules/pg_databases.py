#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_databases
short_description: Create the sync sets' target databases that do not exist yet
version_added: 0.1.0
description:
  - Creates each database of O(names) that does not exist, with C(CREATE DATABASE) (from the
    server's C(template1), its default encoding and locale), owned by O(owner) or by the
    connected login. Never drops or alters a database.
  - Needs a superuser or a login with C(CREATEDB) (and membership of O(owner) when that is
    another role) - the administrator login of a managed service has it, so this serves
    database-only hosts (docs/managed.md) as well as the local superuser.
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
options:
  names:
    description: The databases that must exist.
    type: list
    elements: str
    required: true
  owner:
    description: Owner of the databases this run creates (existing ones are left as they are).
    type: str
attributes:
  check_mode:
    support: full
    description: The missing databases are listed in RV(created) and RV(queries); nothing is created.
  diff_mode:
    support: full
    description: Shows which of O(names) exist before and after.
'''

EXAMPLES = r'''
- name: Create the reporting databases of the sync sets on a managed server
  tablesync.postgresql.pg_databases:
    login_host: reporting-db.example.net
    login_user: tablesync_admin
    login_password: "{{ vault_reporting_admin_password }}"
    ssl_mode: require
    names: [shop_rep, shop_live]
'''

RETURN = r'''
created:
  description: The databases created (to be created, in check mode).
  returned: always
  type: list
  elements: str
  sample: [shop_rep]
queries:
  description: The statements run (planned in check mode).
  returned: always
  type: list
  elements: str
  sample: ['CREATE DATABASE "shop_rep"']
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import Executor
from ansible_collections.tablesync.postgresql.plugins.module_utils.server.databases import (
    DATABASES_QUERY, plan_databases)


def argument_spec():
    spec = connection_argument_spec()
    spec.update(names=dict(type='list', elements='str', required=True),
                owner=dict(type='str'))
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    result = dict(changed=False, created=[], queries=[])
    conn = connect(module)
    with conn.cursor() as cur:
        cur.execute(DATABASES_QUERY, (p['names'],))
        existing = sorted(row[0] for row in cur.fetchall())
    conn.rollback()
    try:
        statements = plan_databases(p['names'], existing, p['owner'])
    except TablesyncError as e:
        conn.close()
        module.fail_json(msg=str(e), **result)
    executor = Executor(conn, module.check_mode)
    created = [n for n in dict.fromkeys(p['names']) if n not in existing]
    try:
        executor.run(statements)
    except TablesyncError as e:
        module.fail_json(msg=str(e), queries=executor.queries, created=created[:len(executor.queries) - 1])
    finally:
        conn.close()
    result.update(changed=executor.changed, created=created, queries=executor.queries)
    if module._diff:
        result['diff'] = dict(before=dict(existing=existing), after=dict(existing=sorted(set(existing) | set(created))))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
