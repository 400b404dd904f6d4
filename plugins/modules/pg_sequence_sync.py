#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_sequence_sync
short_description: Copy sequence positions from a source database, never moving one backwards
version_added: 0.1.0
description:
  - Logical replication does not carry sequence values. Before a cutover or a fail-over to the
    target (the database the module connects to), its sequences must be moved past the values
    the source has handed out, or new rows would collide with replicated ones. This module does
    that for the sequences of the synced tables (O(tables)) and any listed sequences
    (O(sequences)).
  - A sequence's position is the last value it handed out. A target sequence is set (with
    C(setval)) to the source's position plus O(margin) only when that is ahead of its own
    position, so it never moves backwards, however often the task runs. Descending sequences
    move down in the same way.
  - The source is read with one catalog query and one query for the sequence values, the
    target likewise; all changes run in one transaction on the target. Each C(setval) re-checks
    the target's position in the same statement, so a target sequence that moved ahead after it
    was read (an application already writing) is left alone.
  - Any problem (a table or sequence missing, a sequence without a counterpart, a value outside
    the target sequence's range) fails the task before anything is changed.
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
  - tablesync.postgresql.remote_server
attributes:
  check_mode:
    support: full
    description: Reads both servers and reports the positions it would set.
  diff_mode:
    support: full
    description: Shows the target sequences' positions before and after.
options:
  tables:
    description:
      - Tables (C(schema.table)) whose sequences are copied, those owned by a column (C(serial),
        identity columns, C(OWNED BY)) and those a column default calls C(nextval) on.
      - A source sequence goes to the sequence the same column uses on the target, else to the
        target sequence of the same name.
      - Names are taken literally, case and spaces preserved; a name without a schema is in
        C(public); write a part containing a dot in double quotes (C("my.schema"."t")).
    type: list
    elements: str
    default: []
  sequences:
    description:
      - Further sequences to copy, each a C(schema.sequence) name (the same on both servers)
        or a dict with C(name) (on the source) and C(target) (its name on the target).
    type: list
    elements: raw
    default: []
  margin:
    description:
      - Added to the source's position (subtracted for a descending sequence), as headroom for
        values the source may still hand out after it was read.
    type: int
    default: 0
notes:
  - The source is the database whose sequence positions are copied; O(source.user) needs
    C(SELECT) on the sequences there.
  - Requires PostgreSQL 10 or later on both servers.
  - The role on the target needs C(UPDATE) on the sequences it sets (or to own them).
  - At least one of O(tables) and O(sequences) must be given.
seealso:
  - module: tablesync.postgresql.pg_table_compare
  - module: tablesync.postgresql.pg_target_tables
  - name: Logical replication restrictions
    description: Sequence data is not replicated.
    link: https://www.postgresql.org/docs/current/logical-replication-restrictions.html
'''

EXAMPLES = r'''
- name: Move the subscriber's sequences past the publisher's at cutover
  tablesync.postgresql.pg_sequence_sync:
    login_db: shop_replica
    source:
      host: 10.0.0.10
      dbname: shop
      user: tablesync_admin
      password: "{{ vault_tablesync_admin_password }}"
      sslmode: require
    tables:
      - sales.orders
      - sales.order_items
    margin: 1000

- name: A sequence with another name on the target, in check mode
  tablesync.postgresql.pg_sequence_sync:
    login_db: shop_replica
    source:
      host: 10.0.0.10
      dbname: shop
    sequences:
      - sales.invoice_no
      - name: public.legacy_seq
        target: sales.legacy_seq
  check_mode: true
  register: sequences
'''

RETURN = r'''
sequences:
  description: Every copied sequence pair, in the order of O(tables) then O(sequences).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The target sequence, as C(schema.sequence).
      type: str
    source:
      description: The source sequence, as C(schema.sequence).
      type: str
    table:
      description: The table (C(schema.table)) whose column uses the sequence, or null.
      type: str
    column:
      description: The column that uses the sequence, or null.
      type: str
    source_value:
      description: The source's position (the last value it handed out).
      type: int
    target_value:
      description: The target's position before the task.
      type: int
    new_value:
      description: The position set on the target (in check mode, that would be set), or null.
      type: int
    changed:
      description: Whether the target sequence was (or would be) moved.
      type: bool
  sample:
    - name: sales.orders_id_seq
      source: sales.orders_id_seq
      table: sales.orders
      column: id
      source_value: 10500
      target_value: 1
      new_value: 11500
      changed: true
queries:
  description: The statements run (in check mode, that would be run), in order.
  returned: always
  type: list
  elements: str
  sample:
    - >-
      SELECT pg_catalog.setval('"sales"."orders_id_seq"'::regclass, 11500, true)
      FROM "sales"."orders_id_seq" WHERE CASE WHEN is_called THEN last_value
      ELSE last_value - 1 END < 11500
diff:
  description: The target sequences' positions before and after.
  returned: always
  type: dict
  sample:
    before: {sequences: {sales.orders_id_seq: 1}}
    after: {sequences: {sales.orders_id_seq: 11500}}
'''


from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, connection_secrets, error_text, remote_connection_params,
    remote_server_argument_spec, traceback_text, require_version)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import (
    Executor, apply)
from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.sequence_sync import (
    Link, SequenceError, SequenceState, diff, parse_sequences, parse_tables, plan, resolve_pairs,
    values_query)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG10

try:
    import psycopg2
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = None

# The requested tables that exist, the sequences their columns use (owned by the column, identity,
# or called by its default), and the sequences (requested or linked) with their parameters.
_CATALOG_SQL = '''
WITH tabs AS (
  SELECT c.oid, n.nspname AS nsp, c.relname AS rel, req.ord
    FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS req(nsp, rel, ord)
    JOIN pg_catalog.pg_namespace n ON n.nspname = req.nsp
    JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = req.rel
     AND c.relkind IN ('r', 'p')
), links AS (
  SELECT t.ord, t.nsp, t.rel, a.attnum, a.attname, d.objid AS seq
    FROM tabs t
    JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND d.refobjid = t.oid AND d.refobjsubid > 0 AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND d.deptype IN ('a', 'i')
    JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
  UNION
  SELECT t.ord, t.nsp, t.rel, a.attnum, a.attname, d.refobjid
    FROM tabs t
    JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = t.oid
    JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = ad.adnum
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
     AND d.objid = ad.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'n'
), seqs AS (
  SELECT c.oid, n.nspname AS nsp, c.relname AS rel
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'S'
     AND (c.oid IN (SELECT l.seq FROM links l)
          OR (n.nspname, c.relname) IN (SELECT * FROM unnest(%(seq_schemas)s::text[], %(seq_names)s::text[])))
)
SELECT ARRAY(SELECT pg_catalog.json_build_array(nsp, rel) FROM tabs),
       ARRAY(SELECT pg_catalog.json_build_array(l.nsp, l.rel, l.attname, sn.nspname, s.relname)
               FROM links l JOIN pg_catalog.pg_class s ON s.oid = l.seq AND s.relkind = 'S'
               JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
              ORDER BY l.ord, l.attnum),
       ARRAY(SELECT pg_catalog.json_build_array(s.nsp, s.rel, q.seqincrement, q.seqmin, q.seqmax)
               FROM seqs s JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid)
'''


class SequenceCatalog(object):
    """Reads, on one server, the tables' sequence links and the sequences' positions."""

    def __init__(self, conn):
        self.conn = conn

    def read(self, tables, sequence_keys):
        params = dict(schemas=[t[0] for t in tables], names=[t[1] for t in tables],
                      seq_schemas=[s[0] for s in sequence_keys], seq_names=[s[1] for s in sequence_keys])
        try:
            with self.conn.cursor() as cur:
                cur.execute("SET LOCAL search_path = pg_catalog")
                cur.execute(_CATALOG_SQL, params)
                found_tables, links, seqs = cur.fetchone()
                found_tables = [tuple(t) for t in found_tables]
                links = [Link((l[0], l[1]), l[2], (l[3], l[4])) for l in links]
                params = dict(((s[0], s[1]), s[2:]) for s in seqs)
                keys = sorted(params)
                states = {}
                query = values_query(keys)
                if query is not None:
                    cur.execute(query)
                    for i, last_value, is_called in cur.fetchall():
                        increment, minimum, maximum = params[keys[i]]
                        states[keys[i]] = SequenceState(keys[i], last_value, is_called,
                                                        increment, minimum, maximum)
        finally:
            self.conn.rollback()
        return found_tables, links, states


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        source=remote_server_argument_spec(),
        tables=dict(type='list', elements='str', default=[]),
        sequences=dict(type='list', elements='raw', default=[]),
        margin=dict(type='int', default=0),
    )
    return spec


def source_connection_params(params):
    """The source suboptions as shared connection options, for connection.connect()."""
    return remote_connection_params(params, 'source')


def fail(module, msg, **kw):
    kw.setdefault('queries', [])
    module.fail_json(msg=msg, sequences=[], **kw)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    try:
        tables = parse_tables(p['tables'])
        requested = parse_sequences(p['sequences'])
        if not tables and not requested:
            raise SequenceError('give the tables whose sequences to copy, or sequences, or both')
        if p['margin'] < 0:
            raise SequenceError('margin must not be negative')
    except SequenceError as e:
        fail(module, str(e))

    source_conn = connect(module, params=source_connection_params(p))
    try:
        require_version(module, source_conn, PG10, 'pg_sequence_sync (source server)')
        source_conn.set_session(readonly=True)
        src_tables, src_links, src_states = SequenceCatalog(source_conn).read(
            tables, [s for s, _t in requested])
    except psycopg2.Error as e:
        fail(module, 'Cannot read the sequences on the source: %s' % error_text(e, module.params),
             exception=traceback_text(module.params))
    finally:
        source_conn.close()

    conn = connect(module)
    try:
        require_version(module, conn, PG10, 'pg_sequence_sync (target server)')
        wanted = [t for _s, t in requested] + [l.sequence for l in src_links]
        try:
            _t, dst_links, dst_states = SequenceCatalog(conn).read(tables, wanted)
        except psycopg2.Error as e:
            fail(module, 'Cannot read the sequences on the target: %s' % error_text(e, module.params),
                 exception=traceback_text(module.params))
        try:
            pairs = resolve_pairs(tables, requested, src_tables, src_links, dst_links, set(dst_states))
            results, statements = plan(pairs, src_states, dst_states, p['margin'])
        except SequenceError as e:
            fail(module, str(e))
        executor = Executor(conn, module.check_mode)
        executor.add_secrets(*connection_secrets(p))
        apply(module, executor, statements, 'Setting the sequences failed, none was changed: %s')
    finally:
        conn.close()

    module.exit_json(changed=executor.changed, sequences=results, queries=executor.queries,
                     diff=diff(results))


if __name__ == '__main__':
    main()
