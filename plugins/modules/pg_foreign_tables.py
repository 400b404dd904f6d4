#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_foreign_tables
short_description: Import and manage postgres_fdw foreign tables in a local schema
version_added: 0.1.0
description:
  - Ensures the foreign tables of one foreign server in one local schema, in one call,
    imported with C(IMPORT FOREIGN SCHEMA) (the whole remote schema, C(LIMIT TO) a list, or
    C(EXCEPT) a list; all missing tables in one statement), and/or created explicitly with the
    columns you list.
  - The remote definitions of imported tables are read by importing them into C(pg_temp) in a
    transaction that is rolled back, so the number of queries does not grow with the number of
    tables. A local table whose columns differ from the remote table (the remote table gained,
    lost or changed a column) has drifted; O(on_drift) decides whether that is reported, fixed
    with C(ALTER FOREIGN TABLE), or fails the task.
options:
  server:
    description:
      - Foreign server the tables read from (see M(tablesync.postgresql.pg_fdw_server)).
    type: str
    required: true
  schema:
    description:
      - Local schema that holds the foreign tables.
    type: str
    required: true
  remote_schema:
    description:
      - Remote schema the tables are imported from (and the default remote schema of explicit
        tables). Defaults to O(schema).
    type: str
  tables:
    description:
      - Unset imports every table, view and materialized view of O(remote_schema) (except
        O(exclude_tables)).
      - A name (or a dict with only C(name)) imports that remote table under its own name
        (C(IMPORT FOREIGN SCHEMA ... LIMIT TO)). Names are taken literally (case, dots and spaces
        preserved).
      - A dict with C(columns) is an explicit foreign table, kept as declared. Keys C(name)
        (local name), C(columns) (list of dicts with C(name), C(type), optional C(not_null)
        and C(remote_name)), optional C(remote_name), C(remote_schema) and C(options)
        (foreign table options such as C(fetch_size), C(batch_size), C(updatable)).
    type: list
    elements: raw
  exclude_tables:
    description:
      - Remote tables not to import when O(tables) is unset (C(IMPORT FOREIGN SCHEMA ... EXCEPT)).
    type: list
    elements: str
    default: []
  import_options:
    description:
      - Options of C(IMPORT FOREIGN SCHEMA) (C(import_default), C(import_collate),
        C(import_not_null), C(import_generated)); also used to read the remote definitions.
    type: dict
    default: {}
  on_drift:
    description:
      - What to do when an imported table differs from its remote table.
      - V(report) warns and returns the differences in RV(drift), changing nothing.
      - V(update) adds, drops and alters the columns (C(ALTER FOREIGN TABLE)), and drops local
        tables whose remote table is gone (when the whole remote schema is imported).
      - V(fail) fails the task naming each table and difference.
    type: str
    choices: [report, update, fail]
    default: report
  exclusive:
    description:
      - Drop the foreign tables of O(server) in O(schema) that are not desired.
    type: bool
    default: false
  create_schema:
    description:
      - Create O(schema) when it is missing.
    type: bool
    default: true
  state:
    description:
      - V(absent) drops the desired foreign tables (only foreign tables of O(server); with
        O(tables) unset, those imported from O(remote_schema)). The schema stays.
    type: str
    choices: [present, absent]
    default: present
  cascade:
    description:
      - Drop objects that depend on dropped tables or columns (views, materialized views) too
        (C(CASCADE)). Without it such a drop fails and nothing is changed.
    type: bool
    default: false
extends_documentation_fragment:
  - tablesync.postgresql.connection
attributes:
  check_mode:
    description: Nothing is changed in check mode; RV(queries) shows what would run.
    support: full
  diff_mode:
    description: Returns the foreign tables before and after.
    support: full
notes:
  - The connecting role needs C(USAGE) on the server, a user mapping, C(TEMP) on the database
    (to read remote definitions) and C(CREATE) on O(schema).
  - In check mode, when the server or its user mapping does not exist yet (created by an earlier
    task that only ran in check mode), the remote side cannot be read; the module then plans the
    import of the tables missing locally and warns that drift was not checked.
seealso:
  - module: tablesync.postgresql.pg_fdw_server
  - module: tablesync.postgresql.pg_fdw_user_mappings
author:
  - tablesync maintainers (@tablesync)
'''

EXAMPLES = r'''
- name: Import two tables of the remote schema sales into the local schema shop
  tablesync.postgresql.pg_foreign_tables:
    login_db: reporting
    server: shop_source
    schema: shop
    remote_schema: sales
    tables: [orders, customers]

- name: Import the whole remote schema but its audit table; follow remote column changes
  tablesync.postgresql.pg_foreign_tables:
    login_db: reporting
    server: shop_source
    schema: shop_all
    remote_schema: sales
    exclude_tables: [audit_log]
    on_drift: update

- name: An explicit foreign table with its own name and a write batch size
  tablesync.postgresql.pg_foreign_tables:
    login_db: reporting
    server: shop_source
    schema: shop
    tables:
      - name: order_inbox
        remote_schema: sales
        remote_name: orders
        columns:
          - {name: id, type: bigint, not_null: true}
          - {name: amount, type: "numeric(12,2)"}
        options:
          batch_size: 1000
'''

RETURN = r'''
imported:
  description: Tables imported (or that would be) by this run, as C(schema.table).
  returned: always
  type: list
  elements: str
  sample: [shop.orders]
created:
  description: Explicit foreign tables created.
  returned: always
  type: list
  elements: str
  sample: [shop.order_inbox]
altered:
  description: Foreign tables altered (explicit tables changed, or drift fixed).
  returned: always
  type: list
  elements: str
  sample: []
dropped:
  description: Foreign tables dropped.
  returned: always
  type: list
  elements: str
  sample: []
drift:
  description:
    - Imported tables that differ from their remote tables, as found before the run. Per
      table C(added) (remote columns missing here), C(removed) (columns gone remotely),
      C(changed) (C(column), C(local) and C(remote) type), or C(missing_remotely).
  returned: always
  type: dict
  sample: {shop.orders: {added: [discount], removed: [], changed: []}}
tables:
  description: The foreign tables of O(server) in O(schema) after the run (predicted in
    check mode), with their columns.
  returned: always
  type: list
  elements: dict
  sample:
    - name: shop.orders
      options: {schema_name: sales, table_name: orders}
      columns: [{name: id, type: bigint, not_null: true, remote_name: id}]
queries:
  description: Statements run (or that would run in check mode).
  returned: always
  type: list
  elements: str
  sample: ['IMPORT FOREIGN SCHEMA "sales" LIMIT TO ("orders") FROM SERVER "shop_source" INTO "shop"']
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    format_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import bind
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (
    PlanError, apply_statements, fail_on_old_server)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.foreign_tables import (
    DRIFT_ACTIONS, CatalogState, ForeignTablesSpec, Probe, Relation, parse_tables,
    plan_foreign_tables, probe_import_statement)

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = sql = None

TYPES_TABLE = 'tablesync_fdw_column_types'


class ForeignTables(object):
    """The relations of a schema (or of this session's pg_temp) in one parameterised query.

    ``names``: relations to return besides the foreign tables (for name conflicts);
    ``all_relations``: return every relation of the schema; ``types``: user-written column
    types, validated by the server (to_regtype) in the same query.
    """

    QUERY = """
        SELECT n.oid IS NOT NULL AS schema_exists,
               coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                   'name', c.relname, 'kind', c.relkind, 'server', s.srvname,
                   'options', ft.ftoptions,
                   'columns', CASE WHEN c.relkind = 'f' OR %(temp)s THEN (
                       SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                                'name', a.attname,
                                'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                                'not_null', a.attnotnull,
                                'options', a.attfdwoptions) ORDER BY a.attnum)
                         FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
                     END) ORDER BY c.relname)
                  FROM pg_catalog.pg_class c
                  LEFT JOIN pg_catalog.pg_foreign_table ft ON ft.ftrelid = c.oid
                  LEFT JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver
                 WHERE c.relnamespace = n.oid
                   AND (%(all)s OR c.relkind = 'f' OR c.relname = ANY(%(names)s::text[]))),
                 '[]'::json) AS relations,
               ARRAY(SELECT t FROM pg_catalog.unnest(%(types)s::text[]) AS t
                      WHERE pg_catalog.to_regtype(t) IS NULL) AS unknown_types
          FROM (SELECT 1) AS one
          LEFT JOIN pg_catalog.pg_namespace n
            ON n.oid = CASE WHEN %(temp)s THEN pg_catalog.pg_my_temp_schema()
                            ELSE (SELECT oid FROM pg_catalog.pg_namespace
                                   WHERE nspname = %(schema)s) END
    """

    def __init__(self, conn, spec):
        self.conn = conn
        self.spec = spec

    def _query(self, cur, temp, names=(), all_relations=False, types=()):
        cur.execute(self.QUERY, {'temp': temp, 'schema': self.spec.schema, 'names': list(names),
                                 'all': all_relations, 'types': list(types)})
        schema_exists, relations, unknown_types = cur.fetchone()
        found = dict((r['name'], Relation.from_catalog(r)) for r in relations)
        return schema_exists, found, unknown_types

    def read_local(self):
        """The local schema; fails (PlanError) on column types the server does not know."""
        spec = self.spec
        names = spec.explicit_names()
        if spec.import_spec is not None and not spec.import_spec.imports_all:
            names = names + spec.import_spec.tables
        all_relations = spec.import_spec is not None and spec.import_spec.imports_all
        try:
            with self.conn.cursor() as cur:
                schema_exists, found, unknown = self._query(
                    cur, False, names, all_relations, spec.column_types())
        except psycopg2.Error as e:
            raise PlanError('invalid column type: %s' % str(e).strip())
        finally:
            self.conn.rollback()
        if unknown:
            raise PlanError('unknown column type(s): %s' % ', '.join(unknown))
        return CatalogState(schema_exists, found)

    def probe(self, want_import, check_mode):
        """Remote definitions and canonical column types, in a transaction rolled back."""
        spec = self.spec
        types = spec.column_types()
        error = None
        try:
            with self.conn.cursor() as cur:
                if types:
                    cur.execute(types_table_statement(types))
                if want_import:
                    error = self._import_into_temp(cur)
                _exists, found, _unknown = self._query(cur, True, all_relations=True)
        finally:
            self.conn.rollback()
        types_table = found.pop(TYPES_TABLE, None)
        canonical = dict(zip(types, [c.type for c in types_table.columns])) if types else {}
        tables = None if error or not want_import else found
        if error and not check_mode:
            raise PlanError('cannot read remote schema %s through server %s: %s'
                            % (spec.import_spec.remote_schema, spec.server, error))
        return Probe(tables, canonical, error)

    def _import_into_temp(self, cur):
        cur.execute('SAVEPOINT tablesync_probe')
        try:
            cur.execute(bind(probe_import_statement(self.spec.import_spec, self.spec.server)))
        except psycopg2.Error as e:
            cur.execute('ROLLBACK TO SAVEPOINT tablesync_probe')
            return str(e).strip()
        return None


def types_table_statement(types):
    """CREATE TEMP TABLE with one column per type (types already validated by to_regtype)."""
    columns = [sql.SQL('{} {}').format(sql.Identifier('c%d' % i), sql.SQL(t))
               for i, t in enumerate(types)]
    return sql.SQL('CREATE TEMP TABLE {} ({})').format(
        sql.Identifier(TYPES_TABLE), sql.SQL(', ').join(columns))


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        server=dict(type='str', required=True),
        schema=dict(type='str', required=True),
        remote_schema=dict(type='str'),
        tables=dict(type='list', elements='raw'),
        exclude_tables=dict(type='list', elements='str', default=[]),
        import_options=dict(type='dict', default={}),
        on_drift=dict(type='str', default='report', choices=list(DRIFT_ACTIONS)),
        exclusive=dict(type='bool', default=False),
        create_schema=dict(type='bool', default=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        cascade=dict(type='bool', default=False),
    )
    return spec


def desired_tables(params):
    if params['tables'] is not None and params['exclude_tables']:
        raise PlanError('exclude_tables only applies when tables is unset (the whole remote '
                        'schema is imported)')
    import_spec, explicit = parse_tables(params['tables'], params['exclude_tables'],
                                         params['remote_schema'] or params['schema'],
                                         params['import_options'])
    return ForeignTablesSpec(params['server'], params['schema'], params['state'], import_spec,
                             explicit, params['on_drift'], params['exclusive'],
                             params['cascade'], params['create_schema'])


def tables_as_list(spec, state):
    return [{'name': format_qualified(spec.schema, name),
             'options': relation.options,
             'columns': [c.as_dict() for c in relation.columns]}
            for name, relation in sorted(state.foreign_tables_of(spec.server).items())]


def check_versions(module, conn, spec):
    for table in spec.tables:
        fail_on_old_server(module, conn, table.options, 'foreign table')
    if spec.import_spec is not None:
        fail_on_old_server(module, conn, spec.import_spec.options, 'IMPORT FOREIGN SCHEMA')


def plan(module, conn, spec):
    reader = ForeignTables(conn, spec)
    current = reader.read_local()
    probe = Probe()
    if spec.state == 'present':
        probe = reader.probe(spec.import_spec is not None, module.check_mode)
        if probe.error:
            module.warn('the remote tables could not be read (%s); drift was not checked'
                        % probe.error)
    return reader, current, plan_foreign_tables(spec, current, probe)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        spec = desired_tables(module.params)
    except PlanError as e:
        module.fail_json(msg=str(e))
    conn = connect(module)
    check_versions(module, conn, spec)
    try:
        reader, before, result = plan(module, conn, spec)
    except PlanError as e:
        module.fail_json(msg=str(e))
    for warning in result.warnings:
        module.warn(warning)
    executor = apply_statements(module, conn, result.statements)
    after = CatalogState(True, result.after)
    if result.statements and not module.check_mode:
        after = reader.read_local()
    conn.close()
    module.exit_json(changed=executor.changed, queries=executor.queries,
                     tables=tables_as_list(spec, after),
                     diff=dict(before=dict(tables=tables_as_list(spec, before)),
                               after=dict(tables=tables_as_list(spec, after))),
                     **result.result())


if __name__ == '__main__':
    main()
