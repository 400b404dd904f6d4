#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_table_definitions
short_description: Read the column definitions of tables, in one query
version_added: 0.1.0
description:
  - Returns the columns of the named tables (name, type as C(format_type) prints it with only
    C(pg_catalog) in the search path, C(NOT NULL)), in column order. Changes nothing.
  - Made for declaring foreign tables without a connection through the foreign server;
    M(tablesync.postgresql.pg_foreign_tables) takes the result as explicit tables. The
    fdw_consumer role uses it for SCRAM pass-through sets, where the role's own session has no
    SCRAM keys to pass on and so cannot run C(IMPORT FOREIGN SCHEMA).
  - One catalog query whatever the number of tables; the module fails naming every table that
    does not exist.
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
  - tablesync.postgresql.read_only
options:
  tables:
    description:
      - Tables, views, materialized views, partitioned or foreign tables of O(login_db), as
        C(schema.table) (C(table) alone is in C(public)); quote a part that contains a dot.
    type: list
    elements: str
    required: true
'''

EXAMPLES = r'''
- name: Columns of the shop's tables, read on the source
  tablesync.postgresql.pg_table_definitions:
    login_db: shop
    tables: [sales.orders, sales.customers]
  register: shop_tables

- name: Declare them as foreign tables on the consumer
  tablesync.postgresql.pg_foreign_tables:
    login_db: reporting
    server: tablesync_shop
    schema: sales
    tables: "{{ shop_tables.tables | map(attribute='foreign_table') | list }}"
  delegate_to: reporting-db
'''

RETURN = r'''
tables:
  description: The tables in input order.
  returned: success
  type: list
  elements: dict
  contains:
    name: {description: "C(schema.table), as given.", type: str}
    schema: {description: Schema., type: str}
    table: {description: Table name., type: str}
    columns:
      description: Columns in order (dropped columns left out).
      type: list
      elements: dict
      sample: [{name: id, type: integer, not_null: true}, {name: amount, type: "numeric(10,2)", not_null: false}]
    foreign_table:
      description: The table as M(tablesync.postgresql.pg_foreign_tables) takes an explicit table
        (C(name), C(remote_schema), C(columns)).
      type: dict
  sample: [{name: sales.orders, schema: sales, table: orders, columns: [{name: id, type: integer, not_null: true}]}]
queries:
  description: The catalog read made.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, parse_qualified)

QUERY = """
    SELECT w.schema, w.name,
           coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                        'name', a.attname,
                        'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                        'not_null', a.attnotnull) ORDER BY a.attnum)
                       FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                    '[]'::json) AS columns,
           c.oid IS NOT NULL AS found
      FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS w(schema, name, i)
      LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema
      LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.name
                                      AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
     ORDER BY w.i
"""
QUERY_TEXT = ' '.join(QUERY.split())


def definitions(given, rows):
    """Module result from the query rows (one per given name, in order); ([], missing) when
    tables are missing."""
    tables, missing = [], []
    for name, (schema, table, columns, found) in zip(given, rows):
        if not found:
            missing.append(name)
            continue
        tables.append({'name': name, 'schema': schema, 'table': table, 'columns': columns,
                       'foreign_table': {'name': table, 'remote_schema': schema,
                                         'columns': columns}})
    return tables, missing


def argument_spec():
    spec = connection_argument_spec()
    spec.update(tables=dict(type='list', elements='str', required=True))
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    given = module.params['tables']
    try:
        keys = [parse_qualified(name) for name in given]
    except NameError_ as e:
        module.fail_json(msg=str(e), queries=[])
    conn = connect(module)
    with conn.cursor() as cur:
        # type names qualified unless they are in pg_catalog, whatever the login's search_path
        cur.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
        cur.execute(QUERY, {'schemas': [k[0] for k in keys], 'names': [k[1] for k in keys]})
        rows = cur.fetchall()
    conn.rollback()
    conn.close()
    tables, missing = definitions(given, rows)
    if missing:
        module.fail_json(msg='Table%s not found in database %s: %s.'
                         % ('s' if len(missing) > 1 else '', module.params['login_db'],
                            ', '.join(missing)), missing_tables=missing, queries=[QUERY_TEXT])
    module.exit_json(changed=False, tables=tables, queries=[QUERY_TEXT])


if __name__ == '__main__':
    main()
