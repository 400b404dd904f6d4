#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_fdw_server
short_description: Manage the postgres_fdw extension and a foreign server
version_added: 0.1.0
description:
  - Ensures the C(postgres_fdw) extension (optionally in a chosen schema) and a foreign server that
    points at another PostgreSQL database.
  - Server options are changed in place with C(ALTER SERVER ... OPTIONS (ADD/SET/DROP)); the
    server keeps its user mappings and foreign tables.
  - User mappings are managed by M(tablesync.postgresql.pg_fdw_user_mappings), foreign tables by
    M(tablesync.postgresql.pg_foreign_tables).
options:
  name:
    description:
      - Name of the foreign server (taken literally, case preserved).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the server (and the extension when missing).
      - V(absent) drops the server. The extension stays (other servers may use it).
    type: str
    choices: [present, absent]
    default: present
  options:
    description:
      - The complete set of server options, as the C(OPTIONS) clause of C(CREATE SERVER) takes
        them, libpq connection options (C(host), C(port), C(dbname), C(sslmode), ...) and
        postgres_fdw options (C(fetch_size), C(batch_size), C(async_capable),
        C(use_remote_estimate), C(extensions), C(keep_connections), C(updatable),
        C(parallel_commit), ...).
      - Options of the server that are not listed here are dropped.
      - Values may be strings, numbers or booleans; booleans are stored as C(true)/C(false).
      - C(user) and C(password) belong to a user mapping, not to the server, and are refused.
      - Options newer than the server are refused with a message naming the version they need
        (C(batch_size), C(async_capable), C(keep_connections), C(truncatable) need
        PostgreSQL 14, C(parallel_commit) 15, C(parallel_abort) and C(analyze_sampling) 16).
    type: dict
    default: {}
  owner:
    description:
      - Role that owns the server. Unset leaves the owner as it is (the connecting role for a new
        server).
    type: str
  comment:
    description:
      - Comment on the server. An empty string removes it; unset leaves it as it is.
    type: str
  extension_schema:
    description:
      - Schema for the C(postgres_fdw) extension. It is created when missing, and an extension
        installed elsewhere is moved there (C(ALTER EXTENSION ... SET SCHEMA)).
      - Unset installs the extension in the default creation schema when missing and never
        moves it.
    type: str
  cascade:
    description:
      - With O(state=absent), also drop the user mappings and foreign tables of the server
        (C(DROP SERVER ... CASCADE)). Without it, a server that still has any fails with a
        message counting them.
    type: bool
    default: false
extends_documentation_fragment:
  - tablesync.postgresql.connection
attributes:
  check_mode:
    description: Nothing is changed in check mode; RV(queries) shows what would run.
    support: full
  diff_mode:
    description: Returns the server before and after.
    support: full
notes:
  - Creating the extension needs a superuser (C(postgres_fdw) is not a trusted extension);
    creating a server needs C(USAGE) on the foreign-data wrapper.
seealso:
  - module: tablesync.postgresql.pg_fdw_user_mappings
  - module: tablesync.postgresql.pg_foreign_tables
  - name: postgres_fdw
    description: Options of postgres_fdw servers and foreign tables.
    link: https://www.postgresql.org/docs/current/postgres-fdw.html
author:
  - tablesync maintainers (@tablesync)
'''

EXAMPLES = r'''
- name: Foreign server for the shop database, tuned for bulk reads and writes
  tablesync.postgresql.pg_fdw_server:
    login_db: reporting
    name: shop_source
    extension_schema: fdw
    options:
      host: 10.0.0.10
      port: 5432
      dbname: shop
      sslmode: require
      fetch_size: 10000
      batch_size: 1000
      async_capable: true
    comment: Orders and customers of the shop (tablesync fdw set)

- name: Remove the server with its user mappings and foreign tables
  tablesync.postgresql.pg_fdw_server:
    login_db: reporting
    name: shop_source
    state: absent
    cascade: true
'''

RETURN = r'''
server:
  description: The server after the run (predicted in check mode).
  returned: always
  type: dict
  sample:
    name: shop_source
    exists: true
    owner: postgres
    comment: null
    extension_schema: fdw
    options: {host: 10.0.0.10, port: '5432', dbname: shop, fetch_size: '10000'}
exists:
  description: Whether the server exists after the run.
  returned: always
  type: bool
  sample: true
queries:
  description: Statements run (or that would run in check mode), secrets redacted.
  returned: always
  type: list
  elements: str
  sample: ['ALTER SERVER "shop_source" OPTIONS (SET "fetch_size" ''10000'')']
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (
    FDW_NAME, PlanError, apply_statements, fail_on_old_server, normalize_options, parse_options)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, check_identifier)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.server import (
    ServerSpec, ServerState, plan_server, predicted_state)


class FdwServer(object):
    """The foreign server and the postgres_fdw extension as the catalog holds them."""

    QUERY = """
        SELECT s.oid IS NOT NULL AS exists,
               w.fdwname AS fdw,
               s.srvoptions AS options,
               pg_catalog.pg_get_userbyid(s.srvowner) AS owner,
               pg_catalog.obj_description(s.oid, 'pg_foreign_server') AS comment,
               (SELECT n.nspname FROM pg_catalog.pg_extension e
                  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                 WHERE e.extname = %(fdw)s) AS extension_schema,
               (%(schema)s::text IS NULL OR EXISTS (
                  SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s))
                 AS schema_exists,
               current_user AS current_user,
               (SELECT count(*) FROM pg_catalog.pg_user_mappings um
                 WHERE um.srvid = s.oid) AS mapping_count,
               (SELECT count(*) FROM pg_catalog.pg_foreign_table ft
                 WHERE ft.ftserver = s.oid) AS table_count
          FROM (SELECT 1) AS one
          LEFT JOIN pg_catalog.pg_foreign_server s ON s.srvname = %(name)s
          LEFT JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
    """

    def __init__(self, conn, name, extension_schema=None):
        self.conn = conn
        self.name = name
        self.extension_schema = extension_schema

    def read(self):
        with self.conn.cursor() as cur:
            cur.execute(self.QUERY, {'name': self.name, 'fdw': FDW_NAME,
                                     'schema': self.extension_schema})
            row = cur.fetchone()
            columns = [d[0] for d in cur.description]
        self.conn.rollback()
        data = dict(zip(columns, row))
        data['options'] = parse_options(data['options'])
        return ServerState(**data)


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        options=dict(type='dict', default={}),
        owner=dict(type='str'),
        comment=dict(type='str'),
        extension_schema=dict(type='str'),
        cascade=dict(type='bool', default=False),
    )
    return spec


def desired_server(params):
    for what in ('name', 'owner', 'extension_schema'):
        if params[what] is not None:
            try:
                check_identifier(params[what], what)
            except NameError_ as e:
                raise PlanError(str(e))
    return ServerSpec(name=params['name'], state=params['state'],
                      options=normalize_options(params['options'], 'server'),
                      owner=params['owner'], comment=params['comment'],
                      extension_schema=params['extension_schema'], cascade=params['cascade'])


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        desired = desired_server(module.params)
    except PlanError as e:
        module.fail_json(msg=str(e))
    conn = connect(module)
    fail_on_old_server(module, conn, desired.options, 'server')
    reader = FdwServer(conn, desired.name, desired.extension_schema)
    before = reader.read()
    try:
        statements = plan_server(desired, before)
    except PlanError as e:
        module.fail_json(msg=str(e))
    executor = apply_statements(module, conn, statements)
    if module.check_mode or not statements:
        after = predicted_state(desired, before) if statements else before
    else:
        after = reader.read()
    conn.close()
    module.exit_json(changed=executor.changed, queries=executor.queries,
                     server=after.as_dict(desired.name), exists=after.exists,
                     diff=dict(before=before.as_dict(desired.name),
                               after=after.as_dict(desired.name)))


if __name__ == '__main__':
    main()
