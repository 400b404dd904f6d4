#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_schema_follow
short_description: Make sync targets follow the source's column changes
version_added: 0.4.0
description:
  - Installs what makes every target of a logical sync set follow the source's C(ALTER TABLE)
    at exactly its place between row changes, without replaying any captured SQL text.
  - On the source (O(side=source)) - a queue table C(tablesync_ddl.<set>) and an event trigger
    on C(ddl_command_end) that writes into it, in the same transaction as each C(ALTER TABLE)
    of a table the set's publication C(tablesync_<set>) publishes, the table's columns after
    the command (attnum, name, type, C(NOT NULL), collation, and the value rows that existed
    before an C(ADD COLUMN ... DEFAULT) got). Publish the queue table with the set's tables.
    A first row per listed table (the baseline) is written at once.
  - On each target (O(side=target)) - the same queue table, filled by the subscription, with a
    trigger enabled C(ALWAYS) (it fires in the apply worker) that compares each row with the
    table's previous row and with the target table and alters the target - renames (a column
    keeps its attnum), drops, added columns (with the exact value of existing rows), lossless
    widening, C(NOT NULL) changes. Rows written before the command were applied before, rows
    after it find the new shape. What cannot be followed exactly (a narrowing or other type
    change, a column added with a volatile default or an array added with a default) raises an
    error naming the table, the column and the reason; the apply worker stops there and retries
    until the target is fixed by hand (docs/schema-changes.md).
  - Every function is C(SECURITY DEFINER) with a pinned C(search_path) and text forms, PUBLIC
    may not execute it, and the schema and queue are readable only by their owner (and
    O(replication_role) on the source). Run it as a superuser (event triggers need one).
  - Not followed - table renames, generated columns (not published), new tables (they join at
    the next C(site.yml) run); see docs/schema-changes.md.
  - Needs PostgreSQL 15 or later on the source (C(pg_publication_tables.attnames)) and 11 or
    later on the target.
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
attributes:
  check_mode:
    support: full
    description: Reads the database and reports the statements it would run.
  diff_mode:
    support: full
    description: Shows the objects present before and after.
options:
  set:
    description:
      - The sync set's name (its publication is C(tablesync_<set>)).
      - Required with O(side=source) and O(side=target); not used with O(side=trigger_target)
        (its function serves every trigger set of the database).
    type: str
  side:
    description: V(source) (capture), V(target) (apply) or V(trigger_target) (the trigger sets' target database).
    type: str
    required: true
    choices: [source, target, trigger_target]
  tables:
    description:
      - On the source, the set's tables (C(schema.table) strings or dicts with C(name) and
        optionally C(columns), the set's column list; C(where) and C(replica_identity) are
        accepted and ignored); those without a queue row get their baseline row, with the
        listed columns only. Ignored on the target.
    type: list
    elements: raw
    default: []
  replication_role:
    description: On the source, the role the subscriptions connect as; it may read the queue.
    type: str
  writer_role:
    description:
      - With O(side=trigger_target), the login the trigger sets' flush connects as (their
        target user); it gets C(USAGE) on the schema and C(EXECUTE) on C(follow_table).
    type: str
  state:
    description: V(absent) drops the set's queue, and the schema and event trigger with the last one.
    type: str
    default: present
    choices: [present, absent]
'''

EXAMPLES = r'''
- name: Capture the column changes of set shop on its source
  tablesync.postgresql.pg_schema_follow:
    login_db: shop
    set: shop
    side: source
    tables: [sales.orders, sales.customers]
    replication_role: tablesync_replication

- name: Apply them on a target, where the subscription delivers the queue
  tablesync.postgresql.pg_schema_follow:
    login_db: shop_copy
    set: shop
    side: target

- name: Let the flush of the trigger sets targeting this database alter its tables
  tablesync.postgresql.pg_schema_follow:
    login_db: reporting
    side: trigger_target
    writer_role: tablesync_writer
'''

RETURN = r'''
changes:
  description: The objects created, replaced or dropped (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: ["queue tablesync_ddl.shop", "event trigger tablesync_ddl_capture", "baseline of 2 table(s)"]
queries:
  description: The statements run (in check mode, that would be run), in order.
  returned: always
  type: list
  elements: str
diff:
  description: The objects present before and after.
  returned: always
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, connection_secrets, error_text)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import Executor, apply
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import check_set_name
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.tables import parse_table_refs
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG11, PG15, version_text
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.ddl_follow import FollowState, plan
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.ddl_follow_sql import (
    APPLY_TRIGGER, EVENT_TRIGGER, SCHEMA)

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = None
    sql = None

_STATE_SQL = '''
SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s),
       (SELECT pg_catalog.json_object_agg(p.proname, pg_catalog.json_build_array(
                   p.prosrc, p.prosecdef,
                   p.proacl IS NULL OR EXISTS (SELECT FROM pg_catalog.aclexplode(p.proacl) x
                                                WHERE x.grantee = 0 AND x.privilege_type = 'EXECUTE')))
          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = %(schema)s),
       ARRAY(SELECT c.relname::text FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = %(schema)s AND c.relkind = 'r'),
       (SELECT evtenabled::text FROM pg_catalog.pg_event_trigger WHERE evtname = %(event_trigger)s),
       (SELECT t.tgenabled::text FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s AND c.relname = %(set)s AND t.tgname = %(apply_trigger)s),
       CASE WHEN %(role)s::text IS NULL OR NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = %(role)s)
            THEN true
            WHEN %(side)s = 'trigger_target'
            THEN pg_catalog.to_regprocedure(pg_catalog.format('%%I.follow_table(text, jsonb, jsonb)', %(schema)s)) IS NOT NULL
                 AND pg_catalog.has_function_privilege(%(role)s, pg_catalog.to_regprocedure(
                     pg_catalog.format('%%I.follow_table(text, jsonb, jsonb)', %(schema)s)), 'EXECUTE')
                 AND pg_catalog.has_schema_privilege(%(role)s, %(schema)s, 'USAGE')
            WHEN pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s, %(set)s)) IS NULL THEN false
            ELSE pg_catalog.has_table_privilege(%(role)s, pg_catalog.format('%%I.%%I', %(schema)s, %(set)s), 'SELECT')
                 AND pg_catalog.has_schema_privilege(%(role)s, %(schema)s, 'USAGE') END,
       coalesce(pg_catalog.to_regprocedure(pg_catalog.format('%%I.status()', %(schema)s)) IS NOT NULL
                AND pg_catalog.has_function_privilege('pg_monitor', pg_catalog.to_regprocedure(
                    pg_catalog.format('%%I.status()', %(schema)s)), 'EXECUTE')
                AND pg_catalog.has_schema_privilege('pg_monitor', %(schema)s, 'USAGE'), false)
'''

_BASELINED_SQL = 'SELECT DISTINCT table_schema, table_name FROM {}'


def read_state(conn, set_name, side, tables, role):
    params = dict(schema=SCHEMA, set=set_name, event_trigger=EVENT_TRIGGER, apply_trigger=APPLY_TRIGGER, role=role,
                  side=side)
    with conn.cursor() as cur:
        cur.execute(_STATE_SQL, params)
        schema, functions, queues, event_trigger, apply_trigger, role_can_read, monitor_ok = cur.fetchone()
        baselined = set()
        if set_name in queues:
            cur.execute(sql.SQL(_BASELINED_SQL).format(sql.Identifier(SCHEMA, set_name)))
            baselined = set(tuple(r) for r in cur.fetchall())
    conn.rollback()
    functions = dict((k, (v[0], v[1], v[2])) for k, v in (functions or {}).items())
    return FollowState(schema, functions, set_name in queues, queues,
                       event_trigger if side == 'source' else None, apply_trigger,
                       [t for t in tables if t[:2] not in baselined] if side == 'source' else (),
                       role_can_read, monitor_ok)


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        set=dict(type='str'),
        side=dict(type='str', required=True, choices=['source', 'target', 'trigger_target']),
        tables=dict(type='list', elements='raw', default=[]),
        replication_role=dict(type='str'),
        writer_role=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[('side', 'source', ('set',)), ('side', 'target', ('set',))])
    p = module.params
    set_name = None
    if p['side'] != 'trigger_target':
        try:
            set_name = check_set_name(p['set'])
        except (PlanError, ValueError) as e:
            module.fail_json(msg=str(e))
    role = p['writer_role'] if p['side'] == 'trigger_target' else p['replication_role']
    refs, errors = parse_table_refs(p['tables'], ('name', 'columns', 'where', 'replica_identity'))
    if errors:
        module.fail_json(msg='Invalid entry in tables: %s' % '; '.join(errors))
    conn = connect(module)
    needed = PG15 if p['side'] == 'source' else PG11
    if conn.server_version < needed and p['state'] == 'present':
        module.fail_json(msg='pg_schema_follow side=%s needs PostgreSQL %s or later; this server is %s'
                         % (p['side'], version_text(needed), version_text(conn.server_version)))
    try:
        current = read_state(conn, set_name, p['side'], [r.key + (tuple(r.columns or ()),) for r in refs], role)
    except psycopg2.Error as e:
        module.fail_json(msg='Cannot read the schema-follow objects: %s' % error_text(e, p))
    statements, changes = plan(p['side'], set_name, p['state'], current, role)
    executor = Executor(conn, module.check_mode)
    executor.add_secrets(*connection_secrets(p))
    try:
        apply(module, executor, statements, 'Installing schema following failed, nothing was changed: %s',
              changes=[])
    finally:
        conn.close()
    before = dict(queue=current.queue, schema=current.schema)
    after = dict(queue=p['state'] == 'present' and p['side'] != 'trigger_target',
                 schema=p['state'] == 'present' or bool(current.queues - set([set_name])))
    module.exit_json(changed=executor.changed, queries=executor.queries, changes=changes,
                     diff=dict(before=before, after=after))


if __name__ == '__main__':
    main()
