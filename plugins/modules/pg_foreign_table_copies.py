#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_foreign_table_copies
short_description: Local copies of postgres_fdw foreign tables as materialized views
version_added: 0.1.0
description:
  - For consumers that cannot afford a network round trip per query, keeps a materialized view
    per foreign table (C(SELECT <columns> FROM <foreign table> [WHERE ...])), in one call.
  - A unique index on the key (by default the remote table's primary key, read through the
    foreign server in a transaction that is rolled back) allows
    C(REFRESH MATERIALIZED VIEW CONCURRENTLY), which does not block readers.
  - A fingerprint of the definition is kept in the view's comment. When it changes (the foreign
    table gained or lost a column, other O(copies[].columns) or O(copies[].where)), the copy is
    dropped and created again with its data.
  - RV(refresh_sql) returns the refresh statement of every copy, for a scheduler (the
    C(tablesync.postgresql.fdw_consumer) role runs them from a systemd timer).
options:
  copies:
    description:
      - The copies.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The materialized view, C(schema.name) (taken literally; quote a part that contains
            a dot). Its schema is created when missing.
        type: str
        required: true
      source:
        description:
          - The foreign table to copy, C(schema.name) (see
            M(tablesync.postgresql.pg_foreign_tables)).
        type: str
        required: true
      columns:
        description:
          - Columns to copy. Default all columns of the foreign table.
        type: list
        elements: str
      where:
        description:
          - Row filter, an SQL condition on the source's columns (as in a C(WHERE) clause).
          - It is inserted as it is between parentheses; a C(;) or unbalanced parentheses are
            refused.
        type: str
      unique_key:
        description:
          - Columns of the unique index that allows C(REFRESH ... CONCURRENTLY).
          - Unset uses the remote table's primary key when it is among the copied columns.
            V([]) creates no index (every refresh then locks the copy against readers).
        type: list
        elements: str
  state:
    description:
      - V(absent) drops the copies. Only materialized views made by this module are dropped;
        another relation with the name (for example a foreign table) is left alone.
    type: str
    choices: [present, absent]
    default: present
  refresh:
    description:
      - Refresh the copies that already existed (new copies are filled when created).
    type: bool
    default: false
  cascade:
    description:
      - Drop objects depending on a copy when it is dropped or re-created (C(CASCADE)).
    type: bool
    default: false
  maintain_role:
    description:
      - A role that may refresh the copies without owning them (a scheduler host's login).
        It gets C(MAINTAIN) on each copy, as the only role besides the owner (V('') revokes it
        from every other role; omitted, the grants are left alone), and C(USAGE) on the copies'
        schemas (never revoked, as it opens no table). A copy created again is granted again.
      - Needs PostgreSQL 17 or later (the C(MAINTAIN) privilege); the module fails naming it
        on an older server. The refresh still reads the source through the owner's user mapping.
    type: str
extends_documentation_fragment:
  - tablesync.postgresql.connection
attributes:
  check_mode:
    description: Nothing is changed in check mode; RV(queries) shows what would run.
    support: full
  diff_mode:
    description: Returns the copies before and after.
    support: full
notes:
  - In check mode, a source that does not exist yet (imported by an earlier task that only ran
    in check mode) is shown as C(SELECT *) with a warning.
  - Use a plain foreign table when every query may go to the source (always current data, no
    storage); use a copy when queries must not depend on the network or the source's load, and
    data as old as the refresh interval is acceptable.
seealso:
  - module: tablesync.postgresql.pg_foreign_tables
author:
  - tablesync maintainers (@tablesync)
'''

EXAMPLES = r'''
- name: Local copies of two foreign tables, refreshed concurrently on their primary keys
  tablesync.postgresql.pg_foreign_table_copies:
    login_db: reporting
    copies:
      - name: shop.orders
        source: shop_fdw.orders
      - name: shop.dutch_customers
        source: shop_fdw.customers
        columns: [id, name]
        where: "country = 'NL'"

- name: Refresh a copy now (a scheduler would run the statements in refresh_sql instead)
  tablesync.postgresql.pg_foreign_table_copies:
    login_db: reporting
    copies:
      - name: shop.orders
        source: shop_fdw.orders
    refresh: true
'''

RETURN = r'''
created:
  description: Copies created.
  returned: always
  type: list
  elements: str
  sample: [shop.orders]
recreated:
  description: Copies dropped and created again because their definition changed.
  returned: always
  type: list
  elements: str
  sample: []
dropped:
  description: Copies dropped (O(state=absent)).
  returned: always
  type: list
  elements: str
  sample: []
refreshed:
  description: Copies refreshed (O(refresh=true)).
  returned: always
  type: list
  elements: str
  sample: []
refresh_sql:
  description: The refresh statement of each copy (C(CONCURRENTLY) where a unique index allows).
  returned: always
  type: list
  elements: str
  sample: ['REFRESH MATERIALIZED VIEW CONCURRENTLY "shop"."orders"']
copies:
  description: Each copy with its source, columns, unique key and whether it refreshes
    concurrently.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: shop.orders, source: shop_fdw.orders, columns: [id, amount], unique_key: [id],
       concurrently: true}
queries:
  description: Statements run (or that would run in check mode).
  returned: always
  type: list
  elements: str
  sample: ['CREATE MATERIALIZED VIEW "shop"."orders" AS SELECT "id", "amount" FROM "shop_fdw"."orders" WITH DATA']
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, parse_qualified)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Statement, bind)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (
    PlanError, apply_statements, parse_options)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.row_filter import RowFilterError, check_row_filter
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.copies import (
    CopySpec, Relation, definition, plan_copies)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.single_statement import (
    install as install_probe, run_probe)

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = sql = None

# Remote catalog tables read through a server (only the columns needed).
REMOTE_CATALOG = (
    ('pg_index', 'indrelid oid, indisprimary bool, indkey int2vector'),
    ('pg_class', 'oid oid, relname name, relnamespace oid'),
    ('pg_namespace', 'oid oid, nspname name'),
    ('pg_attribute', 'attrelid oid, attnum int2, attname name'),
)

REMOTE_KEYS_QUERY = """
    SELECT n.nspname::text, c.relname::text, a.attname::text
      FROM {index} i
      JOIN {class} c ON c.oid = i.indrelid
      JOIN {namespace} n ON n.oid = c.relnamespace
      JOIN {attribute} a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
     WHERE i.indisprimary AND n.nspname = ANY (%(schemas)s::name[])
       AND c.relname = ANY (%(tables)s::name[])
     ORDER BY 1, 2, pg_catalog.array_position(i.indkey::int2[], a.attnum)
"""


class Relations(object):
    """Sources and copies as the catalog holds them, in one parameterised query."""

    QUERY = """
        SELECT w.schema, w.name, n.oid IS NOT NULL AS schema_exists, c.relkind, s.srvname,
               ft.ftoptions, pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
               c.relispopulated,
               (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(a.attname,
                        a.attfdwoptions) ORDER BY a.attnum)
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
               (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(ic.relname, (
                         SELECT pg_catalog.json_agg(a.attname ORDER BY k.ord)
                           FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                           JOIN pg_catalog.pg_attribute a
                             ON a.attrelid = c.oid AND a.attnum = k.attnum)))
                  FROM pg_catalog.pg_index i
                  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                 WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL
                   AND i.indexprs IS NULL AND 0 <> ALL (i.indkey)) AS unique_indexes,
               ARRAY(SELECT r.rolname::text FROM pg_catalog.aclexplode(c.relacl) AS a
                       JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee
                      WHERE a.privilege_type = 'MAINTAIN' AND a.grantee <> c.relowner)
                 AS maintainers
          FROM ROWS FROM (pg_catalog.unnest(%(schemas)s::text[]),
                          pg_catalog.unnest(%(names)s::text[])) AS w(schema, name)
          LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema
          LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.name
          LEFT JOIN pg_catalog.pg_foreign_table ft ON ft.ftrelid = c.oid
          LEFT JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver
    """

    def __init__(self, conn):
        self.conn = conn

    def read(self, pairs):
        pairs = sorted(set(pairs))
        with self.conn.cursor() as cur:
            cur.execute(self.QUERY, {'schemas': [p[0] for p in pairs],
                                     'names': [p[1] for p in pairs]})
            rows = cur.fetchall()
        self.conn.rollback()
        return dict(((row[0], row[1]), relation_from_row(row)) for row in rows)

    def remote_keys(self, wanted):
        """Primary keys of remote tables, per server: {(schema, table): [columns]}.

        ``wanted``: {server: set of (remote schema, remote table)}. Reads the remote catalog
        through temporary foreign tables, in a transaction that is rolled back; a server that
        cannot be read yields no keys.
        """
        keys = {}
        try:
            with self.conn.cursor() as cur:
                for number, (server, tables) in enumerate(sorted(wanted.items())):
                    keys.update(self._keys_of(cur, number, server, tables))
        finally:
            self.conn.rollback()
        return keys

    def _keys_of(self, cur, number, server, tables):
        names = {}
        cur.execute('SAVEPOINT tablesync_keys')
        try:
            for catalog, columns in REMOTE_CATALOG:
                names[catalog.replace('pg_', '')] = sql.Identifier(
                    'pg_temp', 'tablesync_r%d_%s' % (number, catalog))
                cur.execute(bind(Statement(
                    sql.SQL('CREATE FOREIGN TABLE {} ({}) SERVER {} '
                            'OPTIONS (schema_name %s, table_name %s)').format(
                        names[catalog.replace('pg_', '')], sql.SQL(columns),
                        sql.Identifier(server)),
                    ('pg_catalog', catalog))))
            cur.execute(sql.SQL(REMOTE_KEYS_QUERY).format(**names),
                        {'schemas': sorted(set(t[0] for t in tables)),
                         'tables': sorted(set(t[1] for t in tables))})
            rows = cur.fetchall()
        except psycopg2.Error:
            cur.execute('ROLLBACK TO SAVEPOINT tablesync_keys')
            return {}
        keys = {}
        for schema, table, column in rows:
            if (schema, table) in tables:
                keys.setdefault((schema, table), []).append(column)
        return keys


def relation_from_row(row):
    (_schema, _name, schema_exists, kind, server, ftoptions, comment, populated, columns,
     unique_indexes, maintainers) = row
    options = parse_options(ftoptions)
    cols = [(name, parse_options(opts).get('column_name', name)) for name, opts in columns or ()]
    return Relation(exists=kind is not None, kind=kind, server=server, columns=cols,
                    options=options, comment=comment, populated=bool(populated),
                    unique_indexes=list(unique_indexes or ()),
                    schema_exists=schema_exists, maintainers=maintainers or ())


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        copies=dict(type='list', elements='dict', required=True, options=dict(
            name=dict(type='str', required=True),
            source=dict(type='str', required=True),
            columns=dict(type='list', elements='str'),
            where=dict(type='str'),
            unique_key=dict(type='list', elements='str', no_log=False),
        )),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        refresh=dict(type='bool', default=False),
        cascade=dict(type='bool', default=False),
        maintain_role=dict(type='str'),
    )
    return spec


def _row_filter(copy):
    # SQL placed verbatim in WHERE (...): refuse anything but one expression (no ";", no
    # parenthesis closed early), as the publication row filters
    where = (copy['where'] or '').strip()
    if not where:
        return None
    try:
        return check_row_filter(where)
    except RowFilterError as e:
        raise PlanError('copy %s: %s' % (copy['name'], e))


def desired_copies(params):
    try:
        return [CopySpec(parse_qualified(c['name']), parse_qualified(c['source']), c['columns'],
                         _row_filter(c), c['unique_key']) for c in params['copies']]
    except NameError_ as e:
        raise PlanError(str(e))


def probe_filters(conn, specs, relations):
    """Have the server confirm that each copy's query with its row filter is one statement
    (EXPLAIN, through module_utils.core.single_statement; nothing is read). Raises PlanError naming
    the copy; the probe's transaction is rolled back."""
    try:
        install_probe(conn)
        with conn.cursor() as cur:
            for spec in specs:
                if not spec.where or not relations[spec.source].exists:
                    continue
                query = definition(spec, relations[spec.source])[0]
                try:
                    run_probe(cur, sql.SQL('EXPLAIN {}').format(query))
                except psycopg2.Error as e:
                    raise PlanError('copy %s: invalid where: %s'
                                    % (spec.label, str(e).strip().splitlines()[0]))
    finally:
        conn.rollback()


def schemas_usable(conn, role, specs):
    """The copies' schemas where ``role`` has USAGE (none when it does not exist yet)."""
    if not role:
        return []
    with conn.cursor() as cur:
        cur.execute('SELECT n.nspname FROM pg_catalog.pg_namespace AS n '
                    'WHERE n.nspname = ANY(%(schemas)s) AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles '
                    'WHERE rolname = %(role)s) AND pg_catalog.has_schema_privilege(%(role)s, n.oid, '
                    "'USAGE')", {'schemas': sorted(set(s.name[0] for s in specs)), 'role': role})
        rows = [r[0] for r in cur.fetchall()]
    conn.rollback()
    return rows


def keys_wanted(specs, sources):
    """{server: {(remote schema, remote table)}} for copies that use the remote primary key."""
    wanted = {}
    for spec in specs:
        source = sources[spec.source]
        if spec.unique_key is None and source.exists and source.server:
            wanted.setdefault(source.server, set()).add(source.remote_table(*spec.source))
    return wanted


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        specs = desired_copies(params)
    except PlanError as e:
        module.fail_json(msg=str(e))
    conn = connect(module)
    reader = Relations(conn)
    relations = reader.read([s.name for s in specs] + [s.source for s in specs])
    remote_keys = {}
    if params['state'] == 'present':
        remote_keys = reader.remote_keys(keys_wanted(specs, relations))
    try:
        if params['state'] == 'present':
            probe_filters(conn, specs, relations)
        plan = plan_copies(specs, relations, relations, remote_keys, params['state'],
                           params['cascade'], params['refresh'], module.check_mode,
                           params['maintain_role'], conn.server_version,
                           schemas_usable(conn, params['maintain_role'], specs))
    except PlanError as e:
        module.fail_json(msg=str(e))
    for warning in plan.warnings:
        module.warn(warning)
    executor = apply_statements(module, conn, plan.statements)
    conn.close()
    before = sorted(s.label for s in specs if relations[s.name].exists)
    after = [] if params['state'] == 'absent' else sorted(s.label for s in specs)
    module.exit_json(changed=executor.changed, queries=executor.queries,
                     diff=dict(before=dict(copies=before), after=dict(copies=after)),
                     **plan.result())


if __name__ == '__main__':
    main()
