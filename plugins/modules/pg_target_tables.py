#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_target_tables
short_description: Create the tables of a sync set on the target from the source's definitions
version_added: 0.1.0
description:
  - Logical replication copies rows, not DDL. This module creates on the target (the database
    the module connects to) the tables of a sync set that are missing there, from the
    definitions it reads on the source, in one call.
  - It reads the definitions of all listed tables from the source in one query and the state of
    the target in one query, checks everything, and then creates the missing schemas and tables
    in one transaction. Any problem (a table missing on the source, a type missing on the
    target, existing tables whose columns differ) fails the task before anything is changed.
  - Copied are the columns in the source's order with their types (as the C(format_type)
    function prints them, so type modifiers such as a numeric precision or a varchar length,
    and arrays, are kept),
    C(NOT NULL), a collation that is not the type's default, the primary key (with its
    constraint name) and the replica identity (C(FULL), or C(USING INDEX) with the unique index
    it names).
  - Generated columns are created generated, stored or (PostgreSQL 18+) virtual as on the
    source; a virtual one needs PostgreSQL 18 on the target (the task fails before any change
    otherwise).
  - Not copied are column defaults, identity and sequences (the target receives every value
    from the source; an identity column becomes a plain C(NOT NULL) column), check, unique
    (other than the replica identity index) and foreign key constraints, triggers, ownership,
    privileges and comments. Other indexes only with O(indexes=true).
  - With O(indexes=true) the source's secondary indexes (every index but the primary key's,
    unique ones and those of unique and exclusion constraints included, as plain indexes) that
    the target table lacks are created with the source's definition (C(pg_get_indexdef), that is the access
    method, operator classes, ordering, C(INCLUDE), storage parameters and partial-index predicate).
    An index the target table has under the same name counts as present (definitions are not
    compared); an invalid one (left by a failed C(CREATE INDEX CONCURRENTLY)) is dropped and
    built again.
  - With O(defer_indexes=true) (the default) a table this call creates gets
    its primary key and replica identity index at once, but its secondary indexes only from a
    later call that finds its initial copy finished. Maintaining indexes row by row during a
    bulk copy is several times slower than building them once afterwards, so run the module
    again after the subscription's initial copy (the C(logical_subscriber) role does, after
    M(tablesync.postgresql.pg_subscription) with O(tablesync.postgresql.pg_subscription#module:wait_for_sync=true)).
    A table a subscription of the target database is still copying (C(pg_subscription_rel)
    state C(i), C(d) or C(f)) keeps its indexes deferred too; any other table gets its missing
    indexes built, each in its own transaction, with a plain C(CREATE INDEX) (which lets reads
    continue but makes the apply worker wait for the build).
  - Deferral keeps no state of its own. What is missing is read from the catalogs each time, so
    a run that stopped between the initial copy and the index builds (or in the middle of them)
    is completed by the next run.
  - Stored generated columns are created as generated columns with the same expression on the
    target. Logical replication does not send generated columns, so the target computes them
    itself, exactly as the source does.
  - A partitioned table on the source is created as a plain table on the target (publish it
    with C(publish_via_partition_root) so its rows arrive under its own name). Partitions
    listed by name are created as plain tables too.
  - Existing tables are compared with the source's (columns missing on the target, extra on
    the target, type differs). What happens then is set by O(schema_changes) - fail naming each table
    and its differing columns, only report, or follow the source (see O(schema_changes) and
    C(docs/schema-changes.md)).
  - The source connection only reads (a read-only transaction), also in check mode.
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
  - tablesync.postgresql.remote_server
attributes:
  check_mode:
    support: full
    description: Reads source and target and reports the statements it would run.
  diff_mode:
    support: full
    description: Shows the listed tables present on the target before and after.
options:
  tables:
    description:
      - The tables of the sync set, each a C(schema.table) string or a dict with C(name) (a
        C(schema.table) string) and C(columns) (a list of column names).
      - Names are taken literally, case and spaces preserved; a name without a schema is in
        C(public); write a part containing a dot in double quotes (C("my.schema"."t")).
      - With C(columns), only those columns are created (in the source's column order). They
        must include the primary key and replica identity index columns.
    type: list
    elements: raw
    required: true
  create_schemas:
    description:
      - Create schemas of missing tables that the target does not have. With V(false), a
        missing schema fails the task.
    type: bool
    default: true
  check_columns:
    description:
      - Fail when an existing table's columns differ from the source's (missing on the target,
        extra on the target, type differs), naming each table and its differing columns, before
        any table is created.
      - With V(false), the differences are only returned in RV(differences).
    type: bool
    default: true
  schema_changes:
    description:
      - What to do with an existing table whose columns differ from the source's.
      - V(refuse) fails the task, naming each table and its differing columns, before anything
        is changed. V(ignore) only returns them in RV(differences).
      - V(follow) alters the target to the source's shape. At once, since the target then only
        accepts more than before - added columns (type, collation, C(NOT NULL), and for rows
        that existed before the source's C(ADD COLUMN ... DEFAULT) exactly the value the source
        gave them, read from C(pg_attribute.attmissingval)), lossless type widening (C(smallint)
        to C(integer) to C(bigint), integers to unconstrained C(numeric), C(real) to C(double
        precision), longer or unbounded C(varchar), C(varchar) to C(text), longer C(char),
        more C(numeric) precision with the same scale, more fractional seconds), C(DROP NOT
        NULL). Once every subscription of the table in this database confirmed (its slot's
        C(confirmed_flush_lsn) on the source) everything the source wrote before this call
        read it - since a change decoded before the source's C(DROP COLUMN) still carries the
        column - C(DROP COLUMN) and C(SET NOT NULL); until then they are returned as pending
        in RV(column_changes) and a later call applies them (see O(catch_up_timeout)).
      - Changes that cannot be followed exactly fail the task naming the table, the column and
        the reason, and nothing is changed - type narrowing or any other type change, a changed
        collation, generation expression or primary key, a column that looks renamed (a new
        column and a gone one of the same type, since the catalogs cannot tell a rename from a drop
        and an add), a column added with a volatile default or whose table was rewritten since
        (the value of the rows that existed then cannot be proven).
      - Default V(refuse) with O(check_columns=true), else V(ignore).
    type: str
    choices: [refuse, follow, ignore]
  catch_up_timeout:
    description:
      - With O(schema_changes=follow), how long (seconds) to wait for the subscriptions to
        confirm the source's current position before the changes that need it (C(DROP COLUMN),
        C(SET NOT NULL)) are left pending for a later call. V(0) does not wait. Check mode
        never waits.
    type: int
    default: 30
  indexes:
    description:
      - Create the source's secondary indexes that the target tables lack (see the description
        for which indexes and when).
      - Indexes needing columns that a table's C(columns) list leaves out, and the indexes of
        C(DEFERRABLE) unique constraints (an immediate unique index on the target could reject a
        transaction the source accepted), are skipped and listed in RV(indexes.skipped).
      - Expressions and predicates are taken as the source prints them, so the functions, operator
        classes and collations they use must exist on the target.
    type: bool
    default: false
  defer_indexes:
    description:
      - With O(indexes=true), leave the secondary indexes of tables created by this call, and of
        tables a subscription is still copying, for a later call (listed in
        RV(indexes.deferred)) instead of creating them before the rows arrive.
      - V(false) creates the indexes of new tables in the same transaction as the tables, and
        builds missing indexes of existing tables whatever their subscription state.
    type: bool
    default: true
  generated_columns:
    description:
      - V(compute) (default) creates stored generated columns as generated columns, so the
        target computes them (logical replication leaves them out unless the publication says
        otherwise).
      - V(copy) creates them as plain columns that receive the source's values, for a set
        whose publication has C(publish_generated_columns = stored) (PostgreSQL 18 publisher;
        PostgreSQL cannot replicate into a generated column). Virtual generated columns are
        never published and stay virtual.
    type: str
    default: compute
    choices: [compute, copy]
  definition:
    description:
      - V(replica) (default) creates what a target that only receives rows needs (see the
        description).
      - V(peer) is for a database that takes writes of its own (a peer of a bidirectional set);
        the tables this call creates also get the source's column defaults, the sequences those
        defaults use (same parameters, owned by the same column, starting at their C(START)
        value, never at the source's current value, so each peer can be given its own key range
        first), identity columns (same kind and sequence options), and check, unique, exclusion
        and foreign key constraints. A foreign key to a table outside O(tables) fails the task
        before any change.
      - A table the target has already (a one-way set made bidirectional) gets what it lacks of
        the same, in the same transaction. A default where its column has none, identity where
        its column has neither, and every constraint it has none of that name for (a unique index
        of that name becomes the constraint's index). Nothing it has is changed or dropped, except
        a plain index that an exclusion constraint of the same name replaces.
      - V(peer) needs PostgreSQL 12 or later on the source and the target.
    type: str
    default: replica
    choices: [replica, peer]
notes:
  - The source is the database whose table definitions are copied; O(source.user) needs only
    to read its catalog.
  - All tables are created in one transaction, which takes a few locks per table (table,
    primary key index, TOAST table and its index). Creating thousands of tables in one call may
    need a higher C(max_locks_per_transaction) on the target.
  - Types that are not built in (enums, domains, composite types, extension types) and
    non-default collations must exist on the target; the task fails naming the missing ones.
  - Type names and generated column expressions are taken as the source server prints them
    with only C(pg_catalog) in the search path (other schemas qualified), so both servers
    should run the same major version for the column comparison to be exact.
seealso:
  - module: tablesync.postgresql.pg_publication
  - module: tablesync.postgresql.pg_subscription
  - name: Logical replication restrictions
    description: The schema and DDL are not replicated.
    link: https://www.postgresql.org/docs/current/logical-replication-restrictions.html
'''

EXAMPLES = r'''
- name: Create the orders sync set's tables on the subscriber
  tablesync.postgresql.pg_target_tables:
    login_db: shop_replica
    source:
      host: 10.0.0.10
      dbname: shop
      user: tablesync_reader
      password: "{{ vault_tablesync_reader_password }}"
      sslmode: require
    tables:
      - sales.orders
      - sales.order_items
      - name: sales.customers
        columns: [id, name, country]

# Fast initial copy: tables first (secondary indexes deferred), the subscription's initial
# copy, then the same call again builds the deferred indexes.
- name: Create the tables, indexes deferred
  tablesync.postgresql.pg_target_tables: &orders_tables
    login_db: shop_replica
    source:
      host: 10.0.0.10
      dbname: shop
      user: tablesync_reader
      password: "{{ vault_tablesync_reader_password }}"
    tables: [sales.orders, sales.order_items]
    indexes: true

- name: Subscribe and wait for the initial copy
  tablesync.postgresql.pg_subscription:
    login_db: shop_replica
    name: tablesync_orders
    publications: [tablesync_orders]
    publisher:
      host: 10.0.0.10
      dbname: shop
      user: tablesync_replication
      password: "{{ vault_tablesync_replication_password }}"
    wait_for_sync: true

- name: Build the deferred indexes
  tablesync.postgresql.pg_target_tables: *orders_tables

- name: Only report what would be created and which existing tables differ
  tablesync.postgresql.pg_target_tables:
    login_db: shop_replica
    source:
      host: 10.0.0.10
      dbname: shop
    tables: "{{ tablesync_tables }}"
    check_columns: false
  check_mode: true
  register: target_tables
'''

RETURN = r'''
created:
  description: The tables created (or, in check mode, that would be created), as C(schema.table).
  returned: always
  type: list
  elements: str
  sample: [sales.orders, "Sales.Order Items"]
differences:
  description:
    - Existing tables whose columns differ from the source's, by C(schema.table). C(missing)
      lists columns missing on the target, C(extra) columns only the target has, and
      C(type_differs) columns whose type (or generation expression) differs.
  returned: always
  type: dict
  sample:
    sales.orders:
      missing: [discount]
      extra: [legacy_code]
      type_differs:
        - column: total
          source: numeric(10,2)
          target: integer
indexes:
  description: Secondary indexes (with O(indexes=true)); empty otherwise.
  returned: always
  type: dict
  contains:
    built:
      description: Indexes created (in check mode, that would be created), by C(schema.table).
      type: dict
      sample: {sales.orders: [orders_customer_idx]}
    deferred:
      description: Indexes left for a later call, by C(schema.table) (see O(defer_indexes)).
      type: dict
      sample: {sales.order_items: [order_items_order_idx]}
    skipped:
      description: Indexes that are not created, with the reason.
      type: list
      elements: dict
      sample:
        - table: sales.customers
          index: customers_email_idx
          reason: "it needs columns the column list leaves out: email"
column_changes:
  description:
    - With O(schema_changes=follow), the tables whose columns were followed, by
      C(schema.table) - C(changes) made (in check mode, that would be made), C(pending) the
      changes waiting for the subscriptions to catch up.
  returned: always
  type: dict
  sample:
    sales.orders:
      changes: ["add column discount with the value the source gave its existing rows", "widen column qty from integer to bigint"]
      pending: ["drop column legacy_code"]
queries:
  description: The statements run (in check mode, that would be run), in order.
  returned: always
  type: list
  elements: str
  sample:
    - CREATE SCHEMA "sales"
    - CREATE TABLE "sales"."orders" ("id" bigint NOT NULL, "total" numeric(10,2), CONSTRAINT "orders_pkey" PRIMARY KEY ("id"))
diff:
  description:
    - The listed tables present on the target before and after; with O(schema_changes=follow) also
      C(columns), the followed tables' column differences (before) and changes (after).
  returned: always
  type: dict
  sample:
    before: {tables: [sales.orders]}
    after: {tables: [sales.order_items, sales.orders]}
'''


import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, connection_secrets, error_text, remote_connection_params,
    remote_server_argument_spec, traceback_text)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import (
    ExecutionError, Executor, apply)
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.peer_defs import peer_from_catalog, peer_sql
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.target_tables import (
    PlanError, TargetState, needed_collations, needed_types, parse_table_specs, plan_changes,
    resolve_desired, table_from_catalog)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.text_forms import TEXT_FORM_SETTINGS
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG11, PG12, PG18, version_text

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = None
    sql = None

# Definitions of the requested tables, one row per request (kind NULL when missing).
# Version-dependent expressions are filled in by TableCatalog._definitions().
_DEFINITIONS_SQL = '''
SELECT req.ord, req.nsp AS schema, req.rel AS name, c.relkind AS kind,
       c.relreplident AS replica_identity, cols.columns, cols.dropped,
       pk.name AS pk_name, pk.columns AS pk_columns, ri.name AS ri_name, ri.columns AS ri_columns,
       idx.indexes
  FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS req(nsp, rel, ord)
  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = req.nsp
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = req.rel
  LEFT JOIN LATERAL (
       SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                  'name', a.attname,
                  'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                  'not_null', a.attnotnull,
                  'collation_schema', cn.nspname,
                  'collation', co.collname,
                  'generated', {generated},
                  'generated_kind', {generated_kind},
                  'has_default', {has_default},
                  'missing', {missing},
                  'attnum', a.attnum) ORDER BY a.attnum) AS columns,
              ARRAY(SELECT a.attnum FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND a.attisdropped) AS dropped
         FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_catalog.pg_collation co
                ON co.oid = a.attcollation AND a.attcollation <> t.typcollation
         LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
         LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) cols ON true
  LEFT JOIN LATERAL (
       SELECT con.conname AS name, pg_catalog.array_agg(a.attname::text ORDER BY k.ord) AS columns
         FROM pg_catalog.pg_constraint con
        CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
        WHERE con.conrelid = c.oid AND con.contype = 'p'
        GROUP BY con.conname) pk ON true
  LEFT JOIN LATERAL (
       SELECT ic.relname AS name, pg_catalog.array_agg(a.attname::text ORDER BY k.ord) AS columns
         FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        CROSS JOIN LATERAL unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisreplident AND k.ord <= {key_columns}
        GROUP BY ic.relname) ri ON true
  LEFT JOIN LATERAL (
       SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                  'name', ic.relname,
                  'unique', i.indisunique,
                  'immediate', i.indimmediate,
                  'valid', i.indisvalid,
                  'method', CASE WHEN pg_catalog.left(d.def, pg_catalog.length(d.prefix)) = d.prefix
                                 THEN pg_catalog.substr(d.def, pg_catalog.length(d.prefix) + 1) END,
                  'columns', ARRAY(
                      SELECT a.attname::text FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = i.indrelid AND a.attnum > 0
                         AND (a.attnum = ANY (i.indkey::pg_catalog.int2[])
                              OR a.attnum IN (SELECT dep.refobjsubid FROM pg_catalog.pg_depend dep
                                               WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                                 AND dep.objid = i.indexrelid
                                                 AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                                 AND dep.refobjid = i.indrelid))
                       ORDER BY a.attnum)) ORDER BY ic.relname) AS indexes
         FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        CROSS JOIN LATERAL (
              SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS def,
                     'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX '
                     || pg_catalog.quote_ident(ic.relname) || ' ON '
                     || CASE WHEN c.relkind = 'p' THEN 'ONLY ' ELSE '' END
                     || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
                     || ' USING ' AS prefix) d
        WHERE i.indrelid = c.oid AND NOT i.indisprimary AND i.indislive) idx ON true
'''

# stored ('s', 12+) and virtual ('v', 18+) generated columns
_GENERATED_EXPR = "CASE WHEN a.attgenerated IN ('s', 'v') THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END"
# A default, not a generation expression (attgenerated is 12+).
_HAS_DEFAULT_EXPR = {True: "a.atthasdef AND a.attgenerated = ''", False: 'a.atthasdef'}
# The value rows that existed before ADD COLUMN ... DEFAULT got (11+), as array text.
_MISSING_EXPR = "CASE WHEN a.atthasmissing THEN a.attmissingval::text END"

_SOURCE_SQL = '''
WITH defs AS ({definitions})
SELECT pg_catalog.json_agg(defs ORDER BY defs.ord) FROM defs
'''

_TARGET_SQL = '''
WITH defs AS ({definitions})
SELECT (SELECT pg_catalog.json_agg(defs ORDER BY defs.ord) FROM defs WHERE defs.kind IS NOT NULL),
       ARRAY(SELECT s FROM unnest(%(schemas)s::text[]) AS s
              WHERE EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = s)),
       ARRAY(SELECT t FROM unnest(%(types)s::text[]) AS t
              WHERE pg_catalog.to_regtype(t) IS NULL),
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(x.nsp, x.coll))
          FROM unnest(%(coll_schemas)s::text[], %(coll_names)s::text[]) AS x(nsp, coll)
         WHERE NOT EXISTS (
               SELECT FROM pg_catalog.pg_collation co
                 JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                WHERE cn.nspname = x.nsp AND co.collname = x.coll
                  AND co.collencoding IN (-1, pg_catalog.pg_char_to_encoding(pg_catalog.getdatabaseencoding())))),
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(n.nspname, c.relname))
          FROM pg_catalog.pg_subscription_rel r
          JOIN pg_catalog.pg_class c ON c.oid = r.srrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE r.srsubstate IN ('i', 'd', 'f'))
'''


class TableCatalog(object):
    """Reads table definitions (and, on the target, what creating them needs) in one query.

    Every read runs with only pg_catalog in the search path, so format_type() and pg_get_expr() print
    schema-qualified names that mean the same on the other server.
    """

    def __init__(self, conn):
        self.conn = conn

    def source_tables(self, keys):
        """TableDefs of the requested (schema, name) keys; ``kind`` None for missing ones."""
        (rows,) = self._query(_SOURCE_SQL, self._key_params(keys))
        return [table_from_catalog(r) for r in rows or ()]

    def target_state(self, desired):
        """TargetState for the desired TableDefs: their schemas, tables, missing types/collations."""
        params = self._key_params([t.key for t in desired])
        collations = needed_collations(desired)
        params.update(types=[str(t) for t in needed_types(desired)],
                      coll_schemas=[c[0] for c in collations],
                      coll_names=[c[1] for c in collations])
        tables, schemas, missing_types, missing_collations, copying = self._query(_TARGET_SQL, params)
        return TargetState(schemas, [table_from_catalog(r) for r in tables or ()],
                           missing_types, missing_collations or (), copying or (),
                           self.conn.server_version)

    @staticmethod
    def _key_params(keys):
        return dict(schemas=[k[0] for k in keys], names=[k[1] for k in keys])

    def _definitions(self):
        version = self.conn.server_version
        return sql.SQL(_DEFINITIONS_SQL).format(
            generated=sql.SQL(_GENERATED_EXPR if version >= PG12 else 'NULL::text'),
            has_default=sql.SQL(_HAS_DEFAULT_EXPR[version >= PG12]),
            generated_kind=sql.SQL("NULLIF(a.attgenerated, '')" if version >= PG12 else 'NULL::text'),
            missing=sql.SQL(_MISSING_EXPR if version >= PG11 else 'NULL::text'),
            key_columns=sql.SQL('i.indnkeyatts' if version >= PG11 else 'i.indnatts'))

    def peer_definitions(self, keys):
        """{key: PeerDef}: what a peer's tables need beyond a replica's (``peer_defs``)."""
        if not keys:
            return {}
        (rows,) = self._query(None, self._key_params(keys), peer_sql())
        return dict((p.key, p) for p in (peer_from_catalog(r) for r in rows or ()))

    def _query(self, template, params, query=None):
        if query is None:
            query = sql.SQL(template).format(definitions=self._definitions())
        try:
            with self.conn.cursor() as cur:
                cur.execute("SET LOCAL search_path = pg_catalog")
                for name, value in TEXT_FORM_SETTINGS:
                    cur.execute(sql.SQL('SET LOCAL {} = {}').format(sql.Identifier(name), sql.Literal(value)))
                cur.execute(query, params)
                return cur.fetchone()
        finally:
            self.conn.rollback()


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        source=remote_server_argument_spec(),
        tables=dict(type='list', elements='raw', required=True),
        create_schemas=dict(type='bool', default=True),
        check_columns=dict(type='bool', default=True),
        schema_changes=dict(type='str', choices=['refuse', 'follow', 'ignore']),
        catch_up_timeout=dict(type='int', default=30),
        indexes=dict(type='bool', default=False),
        defer_indexes=dict(type='bool', default=True),
        generated_columns=dict(type='str', default='compute', choices=['compute', 'copy']),
        definition=dict(type='str', default='replica', choices=['replica', 'peer']),
    )
    return spec


def source_connection_params(params):
    """The source suboptions as shared connection options, for connection.connect()."""
    return remote_connection_params(params, 'source')


def read_source(module, specs):
    """(source connection, TableDefs, the source's WAL position after reading them, and for
    definition=peer {key: PeerDef}, else None)."""
    conn = connect(module, params=source_connection_params(module.params))
    conn.set_session(readonly=True)
    catalog = TableCatalog(conn)
    tables = catalog.source_tables([s.key for s in specs])
    peers = None
    if module.params['definition'] == 'peer':
        need_peer_version(module, conn, 'source')
        peers = catalog.peer_definitions([t.key for t in tables if t.kind is not None])
    with conn.cursor() as cur:
        cur.execute('SELECT pg_catalog.pg_current_wal_lsn()::text')
        (lsn,) = cur.fetchone()
    conn.rollback()
    return conn, tables, lsn, peers


def need_peer_version(module, conn, side):
    if conn.server_version < PG12:
        version = conn.server_version
        conn.close()
        module.fail_json(msg='definition=peer needs PostgreSQL %s or later on the %s (this server is %s)'
                             % (version_text(PG12), side, version_text(version)))


# The slots of this database's subscriptions that replicate any of the given tables.
_SLOTS_SQL = """
SELECT DISTINCT s.subslotname
  FROM pg_catalog.pg_subscription s
  JOIN pg_catalog.pg_subscription_rel r ON r.srsubid = s.oid
  JOIN pg_catalog.pg_class c ON c.oid = r.srrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN unnest(%(schemas)s::text[], %(names)s::text[]) AS t(nsp, rel) ON t.nsp = n.nspname AND t.rel = c.relname
 WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
"""

# Whether every one of the slots confirmed the position (a missing slot never does).
_CONFIRMED_SQL = """
SELECT pg_catalog.count(*) = pg_catalog.cardinality(%(slots)s::text[])
  FROM pg_catalog.pg_replication_slots
 WHERE slot_name = ANY (%(slots)s::text[]) AND confirmed_flush_lsn >= %(lsn)s::pg_lsn
"""


def caught_up(target_conn, source_conn, keys, lsn, timeout):
    """Whether every subscription replicating ``keys`` here applied what the source wrote
    before ``lsn``, waiting up to ``timeout`` seconds."""
    with target_conn.cursor() as cur:
        cur.execute(_SLOTS_SQL, TableCatalog._key_params(keys))
        slots = [r[0] for r in cur.fetchall() if r[0]]
    target_conn.rollback()
    deadline = time.monotonic() + max(timeout, 0)
    while True:
        with source_conn.cursor() as cur:
            cur.execute(_CONFIRMED_SQL, dict(slots=slots, lsn=lsn))
            (done,) = cur.fetchone()
        source_conn.rollback()
        if done or time.monotonic() >= deadline:
            return bool(done)
        time.sleep(0.5)


def empty_index_report():
    return dict(built={}, deferred={}, skipped=[])


def fail_plan(module, error, **result):
    module.fail_json(msg=' '.join(error.messages), differences=error.differences, created=[],
                     queries=[], indexes=empty_index_report(), column_changes={}, **result)


def plan_target(module, conn, desired, caught_up=False, peers=None):
    p = module.params
    catalog = TableCatalog(conn)
    target = catalog.target_state(desired)
    if peers is not None:
        target.peers = catalog.peer_definitions(sorted(target.tables))
    return plan_changes(desired, target, p['create_schemas'], p['check_columns'], p['indexes'],
                        p['defer_indexes'], p['schema_changes'], caught_up, peers)


def apply_plan(module, executor, plan):
    apply(module, executor, plan.statements, 'Changing the tables failed, nothing was changed: %s',
          created=[], differences=plan.differences, indexes=empty_index_report(), column_changes={})


def catch_up(module, conn, source_conn, desired, plan, lsn, executor, peers=None):
    """The followed changes that wait for the subscriptions (DROP COLUMN, SET NOT NULL): once
    the subscriptions, unblocked by the changes just made, confirmed the source's position, plan
    again with them and apply; else the plan stays, reporting them pending."""
    if not plan.pending or module.check_mode:
        return plan
    keys = [t.key for t in desired if t.display in plan.column_changes]
    if not caught_up(conn, source_conn, keys, lsn, module.params['catch_up_timeout']):
        return plan
    later = plan_target(module, conn, desired, caught_up=True, peers=peers)
    apply_plan(module, executor, later)
    for table, report in later.column_changes.items():
        done = plan.column_changes.setdefault(table, dict(changes=[], pending=[]))
        done['changes'] = done['changes'] + [c for c in report['changes'] if c not in done['changes']]
        done['pending'] = []
    return plan


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    try:
        specs = parse_table_specs(p['tables'])
    except PlanError as e:
        fail_plan(module, e)
    source_conn = None
    try:
        source_conn, source_tables, lsn, peers = read_source(module, specs)
        desired = resolve_desired(specs, source_tables, p['generated_columns'])
    except PlanError as e:
        fail_plan(module, e)
    except (psycopg2.Error, ValueError) as e:
        module.fail_json(msg='Cannot read the table definitions on the source: %s' % error_text(e, module.params),
                         exception=traceback_text(module.params))

    conn = connect(module)
    if peers is not None:
        need_peer_version(module, conn, 'target')
    if p['generated_columns'] == 'copy' and conn.server_version < PG18:
        conn.close()
        # a subscriber before 18 leaves generated columns out of its initial copy
        module.fail_json(msg='generated_columns=copy needs PostgreSQL %s or later on the target (this '
                             'server is %s): an older subscriber copies a table without its generated '
                             'columns, so they would stay NULL in the rows the initial copy brings'
                             % (version_text(PG18), version_text(conn.server_version)))
    try:
        executor = Executor(conn, module.check_mode)
        executor.add_secrets(*connection_secrets(p))
        try:
            plan = plan_target(module, conn, desired, peers=peers)
            apply_plan(module, executor, plan)
            plan = catch_up(module, conn, source_conn, desired, plan, lsn, executor, peers)
        except PlanError as e:
            fail_plan(module, e)
        except (psycopg2.Error, ValueError) as e:
            module.fail_json(msg='Cannot read the tables on the target: %s' % error_text(e, module.params),
                             exception=traceback_text(module.params))
        try:
            executor.run(plan.index_statements)
        except ExecutionError as e:
            module.fail_json(
                msg='Building an index failed (the tables and the indexes built before it stay; '
                    'a re-run builds the missing ones): %s' % e.msg,
                changed=len(executor.queries) > 1, queries=executor.queries, created=plan.created,
                differences=plan.differences, indexes=plan.indexes, column_changes=plan.column_changes)
    finally:
        conn.close()
        if source_conn is not None:
            source_conn.close()

    module.exit_json(
        changed=executor.changed, created=plan.created, differences=plan.differences,
        queries=executor.queries, indexes=plan.indexes, column_changes=plan.column_changes,
        diff=dict(before=_diff_side(plan, 'before'), after=_diff_side(plan, 'after')))


def _diff_side(plan, side):
    """For --diff: the listed tables present, and the followed tables' differences (before)
    and changes (after)."""
    if side == 'before':
        shown = dict(tables=sorted(plan.existing))
        columns = dict((t, plan.differences.get(t, {})) for t in plan.column_changes)
    else:
        shown = dict(tables=sorted(plan.existing + plan.created))
        columns = dict((t, c['changes']) for t, c in plan.column_changes.items())
    if columns:
        shown['columns'] = columns
    return shown


if __name__ == '__main__':
    main()
