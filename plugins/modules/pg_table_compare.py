#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_table_compare
short_description: Verify that tables hold the same rows on two PostgreSQL servers
version_added: 0.1.0
description:
  - Compares tables between the source (O(source)) and the target (the database the module
    connects to) without pulling their rows to the managed host, and names the keys of the rows
    that differ, for example to verify a logical replication or a copy before a cutover.
  - Each server computes row counts and checksums of key ranges itself. The module splits the
    key space into ranges (at the top level by a block sample of the keys on large tables,
    below by every n-th key of a range), compares the count and the sum of 64-bit row hashes of
    every range, and drills down only into ranges that differ, until they are small enough to
    compare row by row (keys and row hashes only). It then reports the keys missing on the
    target, extra on the target, and present on both with different column values.
  - Per level of the drill-down, one query on the side with more rows picks the split keys and
    one checksum query runs on each server, both servers working at the same time. Ranges are
    processed in key order in batches of bounded size, so the memory used does not grow with the
    table or with the number of differences; a table of tens of millions of rows that differs in
    a few rows costs about one full read of the table on each server plus a few index range scans.
    When most rows of a range differ, their keys and row hashes are compared in batches (still
    in bounded memory) so that every difference is counted, also beyond O(max_differences).
  - A row is hashed from the text form of its compared columns, with the same session settings
    (C(DateStyle), C(TimeZone), C(IntervalStyle), C(extra_float_digits), C(bytea_output),
    C(lc_monetary)) on both servers, so two rows are equal when every compared column reads the
    same. Columns whose types differ between the servers are equal when their text forms are;
    V(integer) and V(bigint) values are, but C(1.50) in a V(numeric) column of scale 2 and C(1.5)
    in an unconstrained V(numeric) column are not.
  - Never changes anything. Both connections are read-only.
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
  - tablesync.postgresql.remote_server
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
options:
  tables:
    description:
      - The tables to compare, each a C(schema.table) string or a dict (the C(tables) items of
        M(tablesync.postgresql.pg_publication) are accepted as they are) with
      - C(name), the table as C(schema.table). Names are taken literally, case and spaces
        preserved; a name without a schema is in C(public); write a part containing a dot in
        double quotes (C("my.schema"."t")).
      - C(columns), the columns to compare (the key columns are always compared). Default all
        columns of the source table, which must then all exist on the target; columns only the
        target has are never compared. Use it to verify a publication with a column list.
      - C(where), a row filter, for example the row filter of a publication. It is SQL, inserted
        as it is between parentheses in the C(WHERE) clause of the queries on both servers (the
        same trust as the rest of the playbook); a C(;) or unbalanced parentheses are refused.
      - C(target_where), the row filter on the target when it differs from C(where); an empty
        string compares all rows of the target with the filtered rows of the source, so target
        rows outside the filter are reported as extra.
      - C(key), the key columns, which must be unique and C(NOT NULL) on both servers. Default
        the primary key of the source table, else its replica identity index.
      - C(replica_identity) is ignored.
    type: list
    elements: raw
    required: true
  max_differences:
    description:
      - The most keys reported over all tables (in RV(tables.differences), in the order found).
        Differences beyond it are still counted in RV(tables.counts) and set RV(tables.truncated).
    type: int
    default: 100
  consistent:
    description:
      - Read each server in one C(REPEATABLE READ) read-only transaction for the whole call, so
        every query on a server sees the same snapshot (also across the listed tables).
      - This gives a consistent view B(per server); the two snapshots are not taken at the same
        point of the replication stream. It makes the result exact for a quiet source (writes
        stopped, the target caught up). With V(false), each query sees the data committed when it
        starts.
      - A long comparison holds back the removal of dead rows (vacuum) on both servers while it
        runs.
    type: bool
    default: false
  retries:
    description:
      - How often to re-check the key ranges where differences were found, after
        O(retry_delay) seconds each time, while differences remain. Only those ranges are read
        again (in new transactions), so rows that were still in flight on a live source drop out.
      - The differences of the last check are returned.
    type: int
    default: 0
  retry_delay:
    description: Seconds to wait before each retry.
    type: float
    default: 5
  checksum:
    description:
      - How a row's text form is hashed.
      - V(hashtext) uses C(hashtextextended) (PostgreSQL 11 or later), fast; its values are the
        same on all versions but differ between big-endian and little-endian machines, so both
        servers must have the same byte order (true for x86-64 and ARM64).
      - V(md5) uses the first 64 bits of C(md5), portable everywhere but about three times
        slower (and unavailable on servers in FIPS mode).
    type: str
    choices: [hashtext, md5]
    default: hashtext
notes:
  - The source is the database whose rows the target should hold; O(source.user) needs
    C(SELECT) on the tables there.
  - Requires PostgreSQL 9.5 or later (11 or later with O(checksum=hashtext)) on both servers.
  - "How to verify a live source: writes arriving during the comparison show up as differences
    that are really in flight. Either set O(retries) with a O(retry_delay) a bit longer than the
    replication lag, so that only the differing ranges are re-read after the target caught up
    and what remains is real; or compare up to a point of the replication stream: stop the writes
    (or the writes to these tables), wait until the subscriber has confirmed the source's
    C(pg_current_wal_lsn()) (M(tablesync.postgresql.pg_sync_info) reports the lag), then compare
    with O(consistent=true)."
  - The key ranges are ordered with each key column's collation. When a key column's collation
    differs between the servers, the C("C") order is used on both, which cannot use the key's
    index (slower). Two servers whose collation of the same name sorts differently (different C
    library or ICU versions) may report such keys as both missing and extra.
  - The key's index is used for range scans; a C(key) in O(tables) without an index costs one full
    read of the table per level of the drill-down (a few).
  - Keys are returned as their values for integer and boolean key columns and as their text
    forms otherwise; a composite key as a list in key column order.
seealso:
  - module: tablesync.postgresql.pg_sync_info
  - module: tablesync.postgresql.pg_sequence_sync
  - module: tablesync.postgresql.pg_publication
'''

EXAMPLES = r'''
- name: Verify the orders sync set after the initial copy
  tablesync.postgresql.pg_table_compare:
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
  register: verify
  failed_when: not verify.equal

- name: Verify a filtered, column-listed publication on a live source
  tablesync.postgresql.pg_table_compare:
    login_db: shop_replica
    source:
      host: 10.0.0.10
      dbname: shop
    tables:
      - name: sales.customers
        columns: [id, name, country]
        where: "country IN ('DE', 'AT')"
    retries: 3
    retry_delay: 10
    max_differences: 20
  register: verify

- name: Show the differing keys
  ansible.builtin.debug:
    var: verify.tables['sales.customers'].differences
  when: not verify.equal

- name: Exact comparison at cutover (writes stopped, lag zero)
  tablesync.postgresql.pg_table_compare:
    login_db: shop_replica
    source:
      host: 10.0.0.10
      dbname: shop
    tables: "{{ tablesync_tables }}"
    consistent: true
'''

RETURN = r'''
equal:
  description: Whether every listed table holds the same rows on both servers.
  returned: always
  type: bool
  sample: false
differing_tables:
  description: The tables that differ, as C(schema.table).
  returned: always
  type: list
  elements: str
  sample: [sales.orders]
tables:
  description: The result per table, by C(schema.table).
  returned: always
  type: dict
  contains:
    equal:
      description: Whether the table holds the same rows on both servers.
      type: bool
    key:
      description: The key columns.
      type: list
      elements: str
    columns:
      description: The compared columns, in the source's column order.
      type: list
      elements: str
    source_rows:
      description: Rows on the source (matching the row filter).
      type: int
    target_rows:
      description: Rows on the target (matching its row filter).
      type: int
    differences:
      description:
        - Keys of the differing rows, C(missing) on the target, C(extra) on the target, and
          C(changed) (present on both, different values); at most O(max_differences) over all
          tables. A key is a value, or a list of values for a composite key.
      type: dict
    counts:
      description: The number of C(missing), C(extra) and C(changed) rows, also beyond the cap.
      type: dict
    truncated:
      description: Whether more rows differ than RV(tables.differences) lists.
      type: bool
    ranges_checked:
      description: How many key ranges were compared by checksum or row by row.
      type: int
    attempts:
      description: How many times the table was checked (1 plus the retries used).
      type: int
    seconds:
      description: Time taken for the table, in seconds.
      type: float
    query_count:
      description: Queries run on the two servers together for the table.
      type: int
    notes:
      description: Remarks on how the table was compared (for example a collation fallback).
      type: list
      elements: str
  sample:
    sales.orders:
      equal: false
      key: [id]
      columns: [id, customer_id, total]
      source_rows: 1000000
      target_rows: 999999
      differences: {missing: [4711], extra: [], changed: [815]}
      counts: {missing: 1, extra: 0, changed: 1}
      truncated: false
      ranges_checked: 312
      attempts: 1
      seconds: 2.41
      query_count: 9
      notes: []
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, error_text, remote_connection_params,
    remote_server_argument_spec, traceback_text, require_version)
from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.compare_sql import CompareError, SqlSide, session_statements
from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.table_compare import (
    Comparison, Tuning, parse_table_specs, resolve_table, retry_tasks, table_result, top_level_task)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG11, PG95

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = None
    sql = None

# The listed tables, one row per request (kind NULL when missing); read with only pg_catalog
# in the search path so format_type() qualifies types outside it.
_CATALOG_SQL = '''
SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
         'schema', req.nsp, 'name', req.rel, 'kind', c.relkind,
         'reltuples', c.reltuples, 'relpages', c.relpages,
         'pages', CASE WHEN c.relkind IN ('r', 'm') THEN pg_catalog.pg_relation_size(c.oid)
                       / pg_catalog.current_setting('block_size')::int END,
         'columns', cols.columns, 'pk', pk.columns, 'ri', ri.columns) ORDER BY req.ord)
  FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS req(nsp, rel, ord)
  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = req.nsp
  LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = req.rel
       AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  LEFT JOIN LATERAL (
       SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                  'name', a.attname,
                  'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                  'not_null', a.attnotnull,
                  'collation', CASE
                      WHEN a.attcollation = 0 THEN NULL
                      WHEN a.attcollation = 100 THEN (
                          SELECT pg_catalog.concat_ws('/', 'default', j->>'datlocprovider',
                                 j->>'datcollate', j->>'daticulocale', j->>'datlocale')
                            FROM (SELECT pg_catalog.to_jsonb(d) AS j FROM pg_catalog.pg_database d
                                   WHERE d.datname = pg_catalog.current_database()) db)
                      ELSE pg_catalog.concat_ws('/', cn.nspname, co.collname,
                           pg_catalog.to_jsonb(co)->>'collprovider', pg_catalog.to_jsonb(co)->>'collcollate',
                           pg_catalog.to_jsonb(co)->>'colliculocale', pg_catalog.to_jsonb(co)->>'colllocale')
                  END) ORDER BY a.attnum) AS columns
         FROM pg_catalog.pg_attribute a
         LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
         LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) cols ON true
  LEFT JOIN LATERAL (
       SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.ord) AS columns
         FROM pg_catalog.pg_constraint con
        CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
        WHERE con.conrelid = c.oid AND con.contype = 'p') pk ON true
  LEFT JOIN LATERAL (
       SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.ord) AS columns
         FROM pg_catalog.pg_index i
        CROSS JOIN LATERAL unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisreplident AND k.ord <= {key_columns}) ri ON true
'''


def read_catalog(conn, specs):
    """Catalog rows of the listed tables (dicts, ``kind`` None when missing), one query."""
    query = sql.SQL(_CATALOG_SQL).format(
        key_columns=sql.SQL('i.indnkeyatts' if conn.server_version >= PG11 else 'i.indnatts'))
    params = dict(schemas=[s.schema for s in specs], names=[s.name for s in specs])
    with conn.cursor() as cur:
        cur.execute("SET LOCAL search_path = pg_catalog")
        cur.execute(query, params)
        (rows,) = cur.fetchone()
    conn.rollback()
    return rows or []


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        source=remote_server_argument_spec(),
        tables=dict(type='list', elements='raw', required=True),
        max_differences=dict(type='int', default=100),
        consistent=dict(type='bool', default=False),
        retries=dict(type='int', default=0),
        retry_delay=dict(type='float', default=5),
        checksum=dict(type='str', choices=['hashtext', 'md5'], default='hashtext'),
    )
    return spec


def source_connection_params(params):
    """The source suboptions as shared connection options, for connection.connect()."""
    return remote_connection_params(params, 'source')


class Servers(object):
    """The two read-only connections, prepared for comparing (settings, isolation)."""

    def __init__(self, module):
        self.module = module
        self.consistent = module.params['consistent']
        self.conns = {}
        self.conns['source'] = connect(module, params=source_connection_params(module.params))
        self.conns['target'] = connect(module)
        minimum = PG11 if module.params['checksum'] == 'hashtext' else PG95
        for side, conn in self.conns.items():
            require_version(module, conn, minimum, 'pg_table_compare (%s server, checksum=%s)'
                            % (side, module.params['checksum']))
            with conn.cursor() as cur:
                for stmt in session_statements(conn.server_version):
                    cur.execute(stmt)
            conn.commit()
            conn.set_session(readonly=True,
                             isolation_level='REPEATABLE READ' if self.consistent else 'READ COMMITTED')

    def new_snapshot(self):
        """End the open transactions: the next query starts new ones (new snapshots)."""
        for conn in self.conns.values():
            conn.rollback()

    def close(self):
        for conn in self.conns.values():
            if not conn.closed:
                conn.close()


def compare_table(resolved, servers, budget, tuning, retries, retry_delay):
    """Compare one table (with retries of the differing ranges); returns its result dict."""
    started = time.time()
    sides = (SqlSide(servers.conns['source'], resolved.source),
             SqlSide(servers.conns['target'], resolved.target))

    def new_comparison():
        return Comparison(sides[0], sides[1], budget, tuning, key_value=resolved.key_value)

    comparison = new_comparison().run([top_level_task(resolved, tuning)])
    source_rows, target_rows = comparison.root_rows
    ranges_checked = comparison.ranges_checked
    attempts = 1
    while comparison.total and attempts <= retries:
        time.sleep(retry_delay)
        servers.new_snapshot()
        attempts += 1
        previous = comparison
        comparison = new_comparison()
        if previous.diff_ranges_overflow:
            comparison.run([top_level_task(resolved, tuning)])
            source_rows, target_rows = comparison.root_rows
        else:
            comparison.run(retry_tasks(previous))
            source_rows += comparison.root_rows[0] - sum(c[0] for _r, c in previous.diff_ranges)
            target_rows += comparison.root_rows[1] - sum(c[1] for _r, c in previous.diff_ranges)
        ranges_checked += comparison.ranges_checked
    comparison.ranges_checked = ranges_checked
    return table_result(resolved, comparison, source_rows, target_rows, attempts,
                        time.time() - started, sides[0].queries + sides[1].queries)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    for option in ('max_differences', 'retries'):
        if p[option] < 0:
            module.fail_json(msg='%s must not be negative' % option)
    if p['retry_delay'] < 0:
        module.fail_json(msg='retry_delay must not be negative')
    try:
        specs = parse_table_specs(p['tables'])
    except CompareError as e:
        module.fail_json(msg=str(e))

    try:
        servers = Servers(module)
    except psycopg2.Error as e:
        module.fail_json(msg='Cannot prepare the sessions for comparing: %s' % error_text(e, module.params),
                         exception=traceback_text(module.params))
    try:
        try:
            infos = dict((side, read_catalog(conn, specs)) for side, conn in servers.conns.items())
            resolved = [resolve_table(spec, s_info, t_info, p['checksum'])
                        for spec, s_info, t_info in zip(specs, infos['source'], infos['target'])]
        except CompareError as e:
            module.fail_json(msg=str(e))
        except psycopg2.Error as e:
            module.fail_json(msg='Cannot read the tables in the catalogs: %s' % error_text(e, module.params),
                             exception=traceback_text(module.params))
        tuning = Tuning()
        results = {}
        budget = p['max_differences']
        for table in resolved:
            try:
                result = compare_table(table, servers, budget, tuning, p['retries'], p['retry_delay'])
            except CompareError as e:
                module.fail_json(msg='Cannot compare table %s: %s' % (table.shown, e), tables=results)
            except psycopg2.Error as e:
                module.fail_json(msg='Comparing table %s failed: %s' % (table.shown, error_text(e, module.params)),
                                 tables=results, exception=traceback_text(module.params))
            budget -= sum(len(v) for v in result['differences'].values())
            results[table.shown] = result
    finally:
        servers.close()

    differing = [t.shown for t in resolved if not results[t.shown]['equal']]
    module.exit_json(changed=False, equal=not differing, differing_tables=differing, tables=results)


if __name__ == '__main__':
    main()
