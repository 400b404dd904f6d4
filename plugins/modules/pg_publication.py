#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pg_publication
short_description: Create, change or drop a PostgreSQL logical replication publication
version_added: 0.1.0
author:
  - tablesync maintainers (@tablesync)
description:
  - Makes a publication in the database O(login_db) match the options, in one transaction.
  - Publishes all tables, a list of tables (each with an optional column list and row filter),
    whole schemas, or a mix of tables and schemas; manages the published operations,
    C(publish_via_partition_root), the owner and the comment.
  - Options that are not set are not managed and keep their current value (on creation,
    PostgreSQL's default). The exception is O(publish), which defaults to all four operations.
  - Checks before changing anything that every table and schema exists (naming all that are
    missing), that the server version supports the requested features, and that published tables
    can replicate C(UPDATE) and C(DELETE) (see O(check_replica_identity)).
  - A publication C(FOR ALL TABLES) cannot be altered into one with a list of tables or schemas
    and back; the module then drops and creates it again in the same transaction (owner and
    comment are kept) and returns RV(recreated=true). Subscribers keep working, but they should
    run C(ALTER SUBSCRIPTION ... REFRESH PUBLICATION) to see added tables, as after any change of
    the table list.
extends_documentation_fragment:
  - tablesync.postgresql.connection
attributes:
  check_mode:
    support: full
    description: Nothing is changed; RV(queries) lists what would run and RV(publication) is the
      predicted state. All checks are read-only queries (row filters are checked with C(EXPLAIN)),
      run in a read-only transaction.
  diff_mode:
    support: full
    description: RV(diff) holds the publication state before and after.
options:
  name:
    description:
      - Name of the publication, taken literally (case and spaces preserved, at most 63 bytes).
    type: str
    required: true
  state:
    description:
      - V(present) creates or changes the publication, V(absent) drops it (no change if missing).
    type: str
    choices: [present, absent]
    default: present
  all_tables:
    description:
      - V(true) publishes every table of the database, including tables created later
        (C(FOR ALL TABLES)). Cannot be combined with O(tables) or O(schemas).
      - V(false) turns a C(FOR ALL TABLES) publication into one publishing O(tables) and
        O(schemas) (empty when they are not set).
      - Unset, the publication keeps its kind, unless O(tables) or O(schemas) is set.
    type: bool
  tables:
    description:
      - The exact list of tables the publication publishes; tables not listed are removed from it.
        An empty list removes all tables. Unset, the tables are not managed.
      - Each item is either a string C(schema.table) or a dictionary.
      - A name is taken literally, case and spaces preserved, without SQL case folding; a name
        without a schema is in C(public); quote a part that contains a dot with double quotes
        (V("my.schema"."my table")).
      - Tables are published with C(ONLY); a table inheriting from a listed table (legacy
        inheritance) must be listed itself. Partitions of a listed partitioned table are published
        with it.
      - 'Dictionary keys: C(name) (required, as above); C(columns): list of column names (taken
        literally) to publish, the column list (PostgreSQL 15+); it is a set, shown in the
        table''s column order, and an empty list means all columns; C(where): row filter
        (PostgreSQL 15+), see below; C(replica_identity): V(default), V(full) or V(index:<name>),
        the replica identity this table must have (not for partitioned tables).'
      - 'C(where) is raw SQL: a boolean expression over the columns of that table, placed as
        C(WHERE (<expression>)) and evaluated by PostgreSQL for every change. It is the only place
        where the module accepts SQL text; it is refused if it is not a single expression
        (a C(;) outside string literals, an unbalanced parenthesis, an unterminated literal or
        comment). Write columns unqualified or qualified with the table name only. PostgreSQL
        only allows columns, constants, built-in operators and types and immutable built-in
        functions; check mode validates names and types with C(EXPLAIN), the remaining rules are
        checked when the statement runs.'
      - A changed C(where) or C(columns) of a published table is applied as C(DROP TABLE) and
        C(ADD TABLE) in the same transaction. Filters are compared as PostgreSQL parses them,
        so C(a > 5) matches the stored C((a > 5)).
    type: list
    elements: raw
  schemas:
    description:
      - Schemas whose tables are all published, including tables created later
        (C(FOR TABLES IN SCHEMA), PostgreSQL 15+). The exact list; unset, not managed.
      - PostgreSQL does not allow column lists in a publication that publishes schemas.
    type: list
    elements: str
  publish:
    description:
      - The operations published. An empty list publishes nothing.
    type: list
    elements: str
    choices: [insert, update, delete, truncate]
    default: [insert, update, delete, truncate]
  publish_via_partition_root:
    description:
      - Publish changes of partitions as changes of their partitioned table (PostgreSQL 13+).
        Required for column lists and row filters on partitioned tables.
      - Unset, not managed (PostgreSQL's default on creation is V(false)).
    type: bool
  publish_generated_columns:
    description:
      - V(stored) publishes the values of stored generated columns like those of other columns
        (PostgreSQL 18+), so a subscriber may hold them in plain columns (for example a target
        that is not PostgreSQL, or one without the generation function); V(none) (PostgreSQL's
        default) leaves them out, and each subscriber computes its own.
      - Tables with a column list publish the generated columns the list names, whatever this is.
      - Unset, not managed.
    type: str
    choices: [none, stored]
  owner:
    description:
      - Role that owns the publication. Unset, not managed (the creating role owns a new one).
    type: str
  comment:
    description:
      - Comment on the publication; V('') removes it. Unset, not managed.
    type: str
  cascade:
    description:
      - With O(state=absent), drop objects that depend on the publication (C(DROP ... CASCADE)).
    type: bool
    default: false
  replica_identity:
    description:
      - Replica identity to give published tables that cannot replicate C(UPDATE) and C(DELETE)
        (no primary key, C(REPLICA IDENTITY NOTHING), or a dropped identity index), applied only
        when V(update) or V(delete) is in O(publish). Tables with a usable identity are not
        touched; to set the identity of a particular table, use C(replica_identity) in its
        O(tables) item.
      - V(full) uses the whole row (C(REPLICA IDENTITY FULL)); it makes C(UPDATE) and C(DELETE)
        write the old row to the WAL and the subscriber may need a sequential scan per row.
        PostgreSQL allows no column list on such a table.
      - V(index:<name>) uses the unique index C(<name>) of each such table (it must be in the
        table's schema, unique, not partial, not deferrable, on C(NOT NULL) columns).
      - Applies to partitions of published partitioned tables and, with O(all_tables) or
        O(schemas), to every table published that way.
      - Unset, the module refuses such tables (see O(check_replica_identity)).
    type: str
  check_replica_identity:
    description:
      - When V(update) or V(delete) is published, refuse (listing every offending table) tables
        without a usable replica identity, column lists that do not contain every replica identity
        column (or any column list on a table with C(REPLICA IDENTITY FULL)), and row filters that
        use columns outside the replica identity. PostgreSQL accepts such publications but then
        fails every C(UPDATE)/C(DELETE) on those tables.
      - Set to V(false) for tables that only ever get C(INSERT).
    type: bool
    default: true
  changed_tables:
    description:
      - What to do with a published table whose C(where) or C(columns) changed (see
        RV(filter_changed)).
      - V(alter) changes the publication to the desired state, the changed tables with
        C(DROP TABLE) and C(ADD TABLE) in one transaction. Subscribers then receive changes
        chosen by the new filter, but keep the rows the old one chose - rows the new filter
        admits are missing there, rows it excludes stay.
      - V(drop) only takes the changed tables out of the publication and changes nothing
        else, the first step of copying them again; the subscribers drop them from their
        subscriptions (M(tablesync.postgresql.pg_subscription) with C(state=refreshed)), then
        a run with V(alter) adds them back and a second refresh copies them from scratch with
        the new filter and columns (with O(tablesync.postgresql.pg_subscription#module:empty_added_tables)).
        Writes continue meanwhile; the subscribers' copies of those tables are stale, then
        empty while they are copied again. C(playbooks/site.yml) does this for every sync set.
    type: str
    choices: [alter, drop]
    default: alter
notes:
  - All statements run in one transaction; an error (for example an invalid row filter) leaves the
    publication and the tables as they were.
  - The catalog is read with one query for the publication and one for the listed tables and
    schemas; each row filter is checked with an C(EXPLAIN) of a C(SELECT) on its table (no rows
    are read).
  - Adding tables to a publication does not make existing subscriptions replicate them; run
    C(ALTER SUBSCRIPTION ... REFRESH PUBLICATION) on the subscriber (for example with
    M(tablesync.postgresql.pg_subscription) and C(state=refreshed)).
seealso:
  - name: CREATE PUBLICATION
    description: PostgreSQL reference of the statement and of row filters and column lists.
    link: https://www.postgresql.org/docs/current/sql-createpublication.html
  - name: Replica identity
    description: What a table needs to replicate UPDATE and DELETE.
    link: https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-REPLICA-IDENTITY
'''

EXAMPLES = r'''
- name: Publish two tables, one with a column list and a row filter
  tablesync.postgresql.pg_publication:
    login_db: shop
    name: shop_sync
    tables:
      - sales.orders
      - name: sales.customers
        columns: [id, name, country]
        where: "country = 'DE'"

- name: Publish whole schemas, inserts and updates only
  tablesync.postgresql.pg_publication:
    login_db: shop
    name: shop_schemas
    schemas: [sales, billing]
    publish: [insert, update]

- name: Publish all tables; tables without primary key get REPLICA IDENTITY FULL
  tablesync.postgresql.pg_publication:
    login_db: shop
    name: everything
    all_tables: true
    replica_identity: full
    owner: replicator
    comment: Managed by Ansible

- name: Use a unique index as replica identity of one table
  tablesync.postgresql.pg_publication:
    login_db: shop
    name: shop_sync
    tables:
      - name: sales.events
        replica_identity: index:events_uuid_key

- name: Publish partitioned tables as their root table
  tablesync.postgresql.pg_publication:
    login_db: shop
    name: measurements
    tables: [metrics.measurement]
    publish_via_partition_root: true

- name: Drop the publication
  tablesync.postgresql.pg_publication:
    login_db: shop
    name: shop_sync
    state: absent
'''

RETURN = r'''
queries:
  description: Statements run (in check mode, that would run), in order.
  returned: always
  type: list
  elements: str
  sample:
    - ALTER PUBLICATION "shop_sync" DROP TABLE ONLY "sales"."customers"
    - ALTER PUBLICATION "shop_sync" ADD TABLE ONLY "sales"."customers" ("id", "name") WHERE (country = 'DE')
exists:
  description: Whether the publication exists after the task (in check mode, would exist).
  returned: always
  type: bool
  sample: true
recreated:
  description: The publication was (would be) dropped and created again, because it changed
    between C(FOR ALL TABLES) and a list of tables or schemas.
  returned: always
  type: bool
  sample: false
converged:
  description:
    - The publication already was as the options describe it, every option and replica
      identity included, so that the same call with O(changed_tables=alter) would change
      nothing. Also with O(changed_tables=drop), whatever that call dropped, so that a later
      step with the same options can be skipped (C(playbooks/site.yml) skips its second call
      for a set whose first call reported V(true)).
  returned: always
  type: bool
  sample: true
filter_changed:
  description: Published tables (C(schema.table)) whose row filter or column list differs from
    the desired one, so their subscribers hold rows chosen by the old ones (see
    O(changed_tables)). Filters are compared as PostgreSQL parses them.
  returned: always
  type: list
  elements: str
  sample: [sales.shipments]
replica_identity_changes:
  description: Tables whose replica identity was (would be) changed, with the new identity
    (V(full), V(default) or V(index:<name>)).
  returned: always
  type: list
  elements: dict
  sample:
    - table: public.audit_log
      replica_identity: full
publication:
  description: The publication after the task (in check mode, the predicted state; row filters
    not yet stored are shown as given). Empty when it does not exist.
  returned: always
  type: dict
  contains:
    name:
      description: Publication name.
      type: str
      returned: when the publication exists
    owner:
      description: Owning role.
      type: str
      returned: when the publication exists
    all_tables:
      description: Whether it is C(FOR ALL TABLES).
      type: bool
      returned: when the publication exists
    tables:
      description: Tables listed in the publication (not those published through O(schemas)
        or O(all_tables)), sorted.
      type: list
      elements: dict
      returned: when the publication exists
      contains:
        name:
          description: C(schema.table), in the form O(tables) accepts.
          type: str
        columns:
          description: Column list in table column order, V(null) for all columns.
          type: list
          elements: str
        where:
          description: Row filter as PostgreSQL shows it (C(pg_get_expr)), V(null) for none.
          type: str
    schemas:
      description: Schemas published with C(FOR TABLES IN SCHEMA), sorted.
      type: list
      elements: str
      returned: when the publication exists
    publish:
      description: Published operations.
      type: list
      elements: str
      returned: when the publication exists
    publish_via_partition_root:
      description: The option's value; V(null) before PostgreSQL 13.
      type: bool
      returned: when the publication exists
    publish_generated_columns:
      description: V(none) or V(stored); V(null) before PostgreSQL 18.
      type: str
      returned: when the publication exists
    comment:
      description: Comment, V(null) for none.
      type: str
      returned: when the publication exists
  sample:
    name: shop_sync
    owner: postgres
    all_tables: false
    tables:
      - name: sales.customers
        columns: [id, name, country]
        where: "(country = 'DE'::text)"
      - name: sales.orders
        columns: null
        where: null
    schemas: []
    publish: [insert, update, delete, truncate]
    publish_via_partition_root: false
    comment: null
diff:
  description: The publication state before and after (as in RV(publication)).
  returned: always
  type: dict
  contains:
    before:
      description: State before the task, empty if the publication did not exist.
      type: dict
    after:
      description: State after the task, empty if it does not exist.
      type: dict
'''

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, connection_secrets, redact_text, require_version,
    server_version)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import (
    Executor, apply)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import format_qualified
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.single_statement import (
    install as install_probe, run_probe)
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.publication import (
    PUBLISH_OPS, PublicationError, adopt_equivalent_filters, desired_from_params,
    filter_changes, filter_key_columns, merge_desired, missing_objects_message,
    needs_identity_facts, needs_recreate, order_columns, plan, plan_drop_changed, plan_identity,
    plan_replica_identity, public_state, state_from_catalog, structure_problems,
    table_identities, version_gates)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG10, PG11, PG13, PG15, PG18

try:
    import psycopg2
    import psycopg2.extras
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.connect()
    psycopg2 = None
    sql = None

UNDEFINED_COLUMN = '42703'


def _version_sql(server_version_num, minimum, new, old):
    """Pick a fixed SQL fragment by server version (catalog columns added over time)."""
    return sql.SQL(new if server_version_num >= minimum else old)


def read_query(version):
    """The one query reading a publication, its tables, schemas, options, owner and comment."""
    return sql.SQL('''
SELECT current_user AS login_role,
       p.oid IS NOT NULL AS exists,
       p.pubname AS name,
       pg_catalog.pg_get_userbyid(p.pubowner) AS owner,
       p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete,
       {pubtruncate} AS pubtruncate,
       {pubviaroot} AS pubviaroot,
       {pubgencols} AS pubgencols,
       pg_catalog.obj_description(p.oid, 'pg_publication') AS comment,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                   'schema', n.nspname, 'name', c.relname,
                   'columns', {columns}, 'where', {where})
                   ORDER BY n.nspname, c.relname)
          FROM pg_catalog.pg_publication_rel r
          JOIN pg_catalog.pg_class c ON c.oid = r.prrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE r.prpubid = p.oid) AS tables,
       {schemas} AS schemas
  FROM (SELECT 1) AS one
  LEFT JOIN pg_catalog.pg_publication p ON p.pubname = %(name)s
''').format(
        pubtruncate=_version_sql(version, PG11, 'p.pubtruncate', 'false'),
        pubviaroot=_version_sql(version, PG13, 'p.pubviaroot', 'NULL::boolean'),
        pubgencols=_version_sql(version, PG18, 'p.pubgencols::text', 'NULL::text'),
        columns=_version_sql(version, PG15, '''(
                   SELECT pg_catalog.json_agg(a.attname ORDER BY a.attnum)
                     FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = r.prrelid AND a.attnum = ANY (r.prattrs::pg_catalog.int2[]))''',
                             'NULL::json'),
        where=_version_sql(version, PG15, 'pg_catalog.pg_get_expr(r.prqual, r.prrelid)', 'NULL::text'),
        schemas=_version_sql(version, PG15, '''(
         SELECT pg_catalog.json_agg(n.nspname ORDER BY n.nspname)
           FROM pg_catalog.pg_publication_namespace pn
           JOIN pg_catalog.pg_namespace n ON n.oid = pn.pnnspid
          WHERE pn.pnpubid = p.oid)''', 'NULL::json'),
    )


def resolve_query(version):
    """One query: do the tables/schemas/owner exist, and the replica identity of every published
    leaf table (listed tables, partitions of listed partitioned tables, tables of the schemas,
    all tables for FOR ALL TABLES) with its primary key, identity index and usable unique indexes.
    """
    return sql.SQL('''
WITH RECURSIVE req AS (
    SELECT r.ord, r.nsp, r.rel, c.oid, c.relkind, c.relpersistence
      FROM unnest(%(tschemas)s::text[], %(tnames)s::text[]) WITH ORDINALITY AS r(nsp, rel, ord)
      LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = r.nsp
      LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = r.rel
), roots AS (
    SELECT oid, pg_catalog.json_build_array(nsp, rel) AS listed
      FROM req
     WHERE %(identity)s AND relkind IN ('r', 'p') AND relpersistence = 'p'
    UNION ALL
    SELECT c.oid, NULL
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE %(identity)s AND c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND c.oid >= 16384
       AND (n.nspname = ANY (%(schemas)s::text[])
            OR (%(all)s AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname !~ '^pg_toast'))
), tree(oid, listed, relkind) AS (
    SELECT r.oid, r.listed, c.relkind
      FROM roots r JOIN pg_catalog.pg_class c ON c.oid = r.oid
    UNION ALL
    SELECT i.inhrelid, t.listed, c.relkind
      FROM tree t
      JOIN pg_catalog.pg_inherits i ON i.inhparent = t.oid
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
     WHERE t.relkind = 'p'
), leaves AS (
    SELECT n.nspname AS schema, c.relname AS name, t.listed, c.relreplident AS replident,
           ix.pk, ix.ident_key, ix.ident_index, ix.unique_indexes
      FROM tree t
      JOIN pg_catalog.pg_class c ON c.oid = t.oid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN LATERAL (
          SELECT (pg_catalog.array_agg(k.cols) FILTER (WHERE i.indisprimary))[1] AS pk,
                 (pg_catalog.array_agg(k.cols) FILTER (WHERE i.indisreplident))[1] AS ident_key,
                 pg_catalog.max(ic.relname) FILTER (WHERE i.indisreplident) AS ident_index,
                 pg_catalog.json_object_agg(ic.relname, k.cols) FILTER (
                     WHERE i.indisunique AND i.indimmediate AND i.indpred IS NULL
                       AND i.indexprs IS NULL AND k.usable) AS unique_indexes
            FROM pg_catalog.pg_index i
            JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
           CROSS JOIN LATERAL (
               SELECT pg_catalog.json_agg(a.attname ORDER BY u.ord) AS cols,
                      pg_catalog.bool_and(a.attnum > 0 AND a.attnotnull) AS usable
                 FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS u(attnum, ord)
                 LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum
                WHERE u.ord <= i.{nkeyatts}) AS k
           WHERE i.indrelid = c.oid AND i.indisvalid) AS ix ON true
     WHERE t.relkind = 'r'
)
SELECT (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                   'schema', nsp, 'name', rel, 'kind', relkind, 'persistence', relpersistence,
                   'columns', (SELECT pg_catalog.json_agg(a.attname ORDER BY a.attnum)
                                 FROM pg_catalog.pg_attribute a
                                WHERE a.attrelid = req.oid AND a.attnum > 0 AND NOT a.attisdropped))
                   ORDER BY ord)
          FROM req) AS tables,
       (SELECT pg_catalog.json_agg(s.nsp ORDER BY s.ord)
          FROM pg_catalog.unnest(%(schemas)s::text[]) WITH ORDINALITY AS s(nsp, ord)
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = s.nsp)) AS missing_schemas,
       (%(owner)s::text IS NULL
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %(owner)s)) AS owner_exists,
       (SELECT pg_catalog.json_agg(pg_catalog.row_to_json(leaves)) FROM leaves) AS leaves
''').format(nkeyatts=_version_sql(version, PG11, 'indnkeyatts', 'indnatts'))


class PublicationCatalog(object):
    """Catalog reads and read-only checks for one publication.

    The caller runs them in a read-only transaction and rolls it back before changing anything.
    """

    def __init__(self, conn, version):
        self.conn = conn
        self.version = version
        self.login_role = None
        self.row = None

    def _query(self, query, params=None):
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(query, params)
            return cur.fetchone()

    def read(self, name):
        """The current state (see publication.state_from_catalog), or None if missing."""
        self.row = self._query(read_query(self.version), {'name': name})
        self.login_role = self.row['login_role']
        return state_from_catalog(self.row)

    def resolve(self, state, owner, identity):
        """Existence and replica identity facts for a complete desired state."""
        keys = list(state['tables'])  # as listed, so errors name tables in the user's order
        return self._query(resolve_query(self.version), {
            'tschemas': [k[0] for k in keys],
            'tnames': [k[1] for k in keys],
            'schemas': list(state['schemas']),
            'all': bool(state['all_tables']),
            'owner': owner,
            'identity': bool(identity),
        })

    def _probe(self, query):
        """Run a read-only query in a savepoint: ``(first column of the first row, None)`` or
        ``(None, psycopg2.Error)``; an error does not abort the surrounding transaction."""
        with self.conn.cursor() as cur:
            cur.execute('SAVEPOINT pg_publication_probe')
            try:
                # the server parses the query as one statement or refuses it unrun
                result = run_probe(cur, query)
            except psycopg2.Error as e:
                cur.execute('ROLLBACK TO SAVEPOINT pg_publication_probe')
                return None, e
            cur.execute('RELEASE SAVEPOINT pg_publication_probe')
            return result, None

    def explain_filters(self, key, desired, current=None):
        """EXPLAIN a SELECT using the desired row filter as WHERE clause and both filters as
        output expressions: validates the filter (columns, types, boolean result) without
        reading a row, and returns how PostgreSQL prints each filter after parsing, so equal
        expressions compare equal whatever their spelling. Raises PublicationError."""
        exprs = [sql.SQL('({})').format(sql.SQL(text)) for text in (desired, current) if text]
        query = sql.SQL('EXPLAIN (VERBOSE, COSTS OFF, FORMAT JSON) SELECT {exprs} '
                        'FROM ONLY {table} AS {alias} WHERE ({where})').format(
            exprs=sql.SQL(', ').join(exprs), table=sql.Identifier(*key),
            alias=sql.Identifier(key[1]), where=sql.SQL(desired))
        result, error = self._probe(query)
        if error is not None:
            raise PublicationError('invalid row filter for %s: %s'
                                   % (format_qualified(*key), _pg_message(error)))
        if isinstance(result, str):
            result = json.loads(result)
        return result[0]['Plan']['Output']

    def filter_outside_identity(self, key, where, allowed):
        """Message if the filter uses a column outside ``allowed`` (the replica identity), else
        None: the filter is parsed against a subquery exposing only those columns."""
        query = sql.SQL('EXPLAIN (COSTS OFF) SELECT 1 FROM (SELECT {cols} FROM ONLY {table}) '
                        'AS {alias} WHERE ({where})').format(
            cols=sql.SQL(', ').join(sql.Identifier(c) for c in allowed),
            table=sql.Identifier(*key), alias=sql.Identifier(key[1]), where=sql.SQL(where))
        dummy, error = self._probe(query)
        if error is None:
            return None
        if error.pgcode == UNDEFINED_COLUMN:
            return '%s (replica identity columns: %s; with only those, PostgreSQL says: %s)' % (
                format_qualified(*key), ', '.join(allowed) or 'none', _pg_message(error))
        return '%s: %s' % (format_qualified(*key), _pg_message(error))

    def check_filters(self, state, current, allowed):
        """Validate every row filter (one EXPLAIN per filtered table), adopt the catalog's text
        for filters PostgreSQL parses to the same expression as the stored one, and refuse
        filters using columns outside ``allowed`` (replica identity). Each failure message names
        every offending table."""
        invalid = []
        equivalent = set()
        had = dict((k, s.get('where')) for k, s in ((current or {}).get('tables') or {}).items())
        for key, spec in sorted(state['tables'].items()):
            if not spec.get('where'):
                continue
            compare = had.get(key) if had.get(key) not in (None, spec['where']) else None
            try:
                output = self.explain_filters(key, spec['where'], compare)
            except PublicationError as e:
                invalid.append(str(e))
                continue
            if compare and output[0] == output[1]:
                equivalent.add(key)
        if invalid:
            raise PublicationError('Cannot publish: %s.' % '; '.join(invalid))
        state = adopt_equivalent_filters(state, current, lambda key, d, c: key in equivalent)
        outside = [self.filter_outside_identity(key, state['tables'][key]['where'], cols)
                   for key, cols in sorted(allowed.items())]
        outside = [m for m in outside if m]
        if outside:
            raise PublicationError(
                'With update or delete published, a row filter may only use replica identity '
                'columns, or PostgreSQL refuses UPDATE/DELETE on the table: %s. Change the '
                'filter, give the table a suitable replica identity (for example replica_identity: '
                'full in its tables item), or leave update and delete out of publish.'
                % '; '.join(outside))
        return state


def _pg_message(error):
    diag = getattr(error, 'diag', None)
    primary = getattr(diag, 'message_primary', None) if diag else None
    detail = getattr(diag, 'message_detail', None) if diag else None
    text = primary or str(error).strip().splitlines()[0]
    return '%s (%s)' % (text, detail) if detail else text


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        all_tables=dict(type='bool'),
        tables=dict(type='list', elements='raw'),
        schemas=dict(type='list', elements='str'),
        publish=dict(type='list', elements='str', choices=list(PUBLISH_OPS), default=list(PUBLISH_OPS)),
        publish_via_partition_root=dict(type='bool'),
        publish_generated_columns=dict(type='str', choices=['none', 'stored']),
        owner=dict(type='str'),
        comment=dict(type='str'),
        cascade=dict(type='bool', default=False),
        replica_identity=dict(type='str'),
        check_replica_identity=dict(type='bool', default=True),
        changed_tables=dict(type='str', default='alter', choices=['alter', 'drop']),
    )
    return spec


def _standard_conforming_strings(conn):
    with conn.cursor() as cur:
        cur.execute('SHOW standard_conforming_strings')
        return cur.fetchone()[0] == 'on'


def _identity_text(wanted):
    return wanted[0] if wanted[0] != 'index' else 'index:%s' % wanted[1]


class Planner(object):
    """Turns the module's options into statements, reading what it needs from the catalog."""

    def __init__(self, module, conn, catalog, version):
        self.module = module
        self.conn = conn
        self.catalog = catalog
        self.version = version
        self.recreated = False
        self.fixes = []

    def present(self, desired, current):
        """(statements, predicted complete state) for state=present."""
        final = merge_desired(desired, current)
        for minimum, feature in version_gates(final):
            require_version(self.module, self.conn, minimum, feature)
        per_table = table_identities(desired)
        resolved = self.resolve(final, desired, per_table)
        final = order_columns(final, resolved)
        structure_problems(final, resolved, per_table)
        check = desired['check_replica_identity']
        self.fixes, identity = plan_identity(final, resolved, desired['replica_identity'], per_table, check)
        final = self.catalog.check_filters(
            final, current, filter_key_columns(final, resolved, identity, check))
        self.recreated = needs_recreate(final, current)
        return plan_replica_identity(self.fixes) + plan(final, current, self.version), final

    def drop_changed(self, final, current):
        """(statements, predicted state) for changed_tables=drop: only the tables whose filter
        or column list changed leave the publication; no replica identity is touched."""
        self.fixes, self.recreated = [], False
        if not current:
            return [], None
        kept = dict(current)
        gone = set(filter_changes(final, current))
        kept['tables'] = dict((k, v) for k, v in current['tables'].items() if k not in gone)
        return plan_drop_changed(final, current), kept

    def resolve(self, final, desired, per_table):
        """Catalog facts for the final state; fails naming every missing object."""
        resolved = self.catalog.resolve(final, desired['owner'],
                                        needs_identity_facts(final, desired, per_table))
        message = missing_objects_message(resolved)
        if message:
            raise PublicationError(message)
        if not resolved['owner_exists']:
            raise PublicationError('Role %s (owner) does not exist.' % desired['owner'])
        return resolved


def run(module):
    conn = connect(module)
    version = server_version(conn)
    require_version(module, conn, PG10, 'Logical replication publications')
    catalog = PublicationCatalog(conn, version)
    planner = Planner(module, conn, catalog, version)
    try:
        install_probe(conn)
        with conn.cursor() as cur:
            cur.execute('SET TRANSACTION READ ONLY')
        desired = desired_from_params(module.params, _standard_conforming_strings(conn))
        current = catalog.read(desired['name'])
        changed = []
        if desired['state'] == 'absent':
            statements, final = plan(desired, current, version), None
            converged = not statements
        else:
            statements, final = planner.present(desired, current)
            changed = filter_changes(final, current)
            # the whole desired state, before changed_tables=drop narrows the statements
            converged = not statements
            if module.params['changed_tables'] == 'drop':
                statements, final = planner.drop_changed(final, current)
    except PublicationError as e:
        module.fail_json(msg=str(e))
    except psycopg2.Error as e:
        module.fail_json(msg='Cannot read the catalog: %s'
                         % redact_text(_pg_message(e), connection_secrets(module.params, ())))
    conn.rollback()  # end the read-only transaction

    executor = Executor(conn, module.check_mode)
    result = dict(changed=False, queries=executor.queries, recreated=planner.recreated,
                  converged=converged,
                  filter_changed=[format_qualified(*k) for k in changed],
                  replica_identity_changes=[
                      dict(table=format_qualified(s, t), replica_identity=_identity_text(w))
                      for s, t, w in planner.fixes])
    apply(module, executor, statements, 'Nothing was changed: %s', **result)

    before = public_state(current, version)
    after = public_state(final, version, catalog.login_role)
    if executor.changed and not module.check_mode and final is not None:
        try:
            after = public_state(catalog.read(desired['name']), version)
        except psycopg2.Error as e:
            result['changed'] = True
            module.fail_json(msg='The changes were made, but the publication could not be read '
                                 'back: %s' % redact_text(_pg_message(e),
                                                          connection_secrets(module.params, ())),
                             **result)
        conn.rollback()
    result.update(changed=executor.changed, exists=bool(after), publication=after,
                  diff=dict(before=before, after=after))
    conn.close()
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run(module)


if __name__ == '__main__':
    main()
