#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pg_sync_trigger
short_description: Sync tables to a remote PostgreSQL database with triggers and dblink
version_added: 0.1.0
author:
  - tablesync maintainers (@tablesync)
description:
  - Installs, in the database O(login_db) (the source), the triggers that send every
    C(INSERT), C(UPDATE), C(DELETE) and C(TRUNCATE) of a set of tables to tables of a remote
    database (the target), through the C(dblink) extension. One task handles all tables of a
    sync set.
  - The target is reached through a foreign server (C(dblink_fdw)) and the user mapping of
    the owner role O(owner), created from O(target) or already present (O(server)). Connections
    use the server name, so no password is part of any function body (C(pg_proc)), of any
    statement the triggers run (C(pg_stat_activity)), or of the server log; the module itself
    sends the mapping's password by C(COPY), never in a statement's text.
  - B(Exact values.) Each table gets its own capture function C(tablesync.capture_<id>) that
    queues the synced columns only, each as its type's own text form (the type's output
    function, called directly) under pinned settings (C(DateStyle), C(IntervalStyle),
    C(TimeZone), C(extra_float_digits), C(bytea_output), C(lc_monetary)); the target session
    reads them back under the same settings with each column type's input function. So every
    type with text input and output arrives unchanged whatever the writing session's settings,
    including jsonb C(null), arrays with bounds and NULL elements, json with its exact text,
    numeric and float special values, C(-0), infinities, composites, domains, enums, ranges,
    money, xml, geometric types and TOASTed values.
  - B(Identity.) A row is identified by its key (the primary key, or C(key_columns) of O(tables)
    naming a unique index on NOT NULL columns) compared by value on the target, so one row has
    one identity whatever the session; inserts and updates are upserts on it. A table without
    a primary key is synced by B(whole-row identity) (as C(REPLICA IDENTITY FULL)); an UPDATE or
    DELETE changes exactly one target row whose synced columns have the old values, compared as
    text forms (so types without equality, such as json or point, work; duplicates are handled
    one for one; each such change scans the target table).
  - B(Order.) The changes are applied on the target in the order they were queued, one
    statement each (consecutive inserts of a table share one), so several changes of one row in
    one flush, key updates and TRUNCATE apply as on the source; a flush never fails on changes
    the source accepted. A genuine target-side error (a constraint only the target has, a
    missing column) stops that set's flush with a message naming the set, table, changes and
    statement, is recorded in C(tablesync.trigger_sets) (shown by M(tablesync.postgresql.pg_sync_info),
    C(check.yml) and the metrics), is retried by every later flush, and leaves other sets flowing.
  - B(Least privilege.) The schema C(tablesync), its tables and routines belong to O(owner), a
    NOLOGIN role that is not a superuser; routines that run as it pin C(search_path) and call no
    user-definable code (no casts, no C(to_jsonb)); nobody else may execute them or read the
    queue. Each remote call opens a new dblink connection under an unguessable name and closes
    it, so no session can reuse, skip or redirect it. See C(docs/security.md).
  - B(Column changes.) An event trigger (C(tablesync_trigger_follow), created when the login is
    a superuser, else a warning) follows each C(ALTER TABLE) of a synced table in its own
    transaction - synced columns by attnum (renames and drops; added columns too when the
    table's entry lists no C(columns)), a new capture function, and a queued column change
    that the flush applies on the target between the rows before and after it, by calling
    C(tablesync_ddl.follow_table) there (installed by M(tablesync.postgresql.pg_schema_follow)
    with C(side=trigger_target)). A key column cannot be dropped while its table is synced. See
    C(docs/schema-changes.md).
  - Routine bodies carry a version; a run after an upgrade of the collection replaces them
    (routines v1, which captured rows as jsonb, are upgraded in one transaction; their queue is
    applied by them first, every set's capture is rebuilt), and the module refuses to downgrade
    routines installed by a newer collection.
extends_documentation_fragment:
  - tablesync.postgresql.connection
attributes:
  check_mode:
    support: full
    description: Only the catalog is read (no temporary objects, no remote connection);
      RV(queries) lists what would run and RV(sync_set) is the predicted state.
  diff_mode:
    support: full
    description: RV(diff) holds the set before and after.
options:
  name:
    description:
      - Name of the sync set; lower-case letters, digits and C(_), starting with a letter, at
        most 44 characters. Triggers are named C(tablesync_<name>) and
        C(tablesync_<name>_truncate), the default foreign server C(tablesync_<name>).
    type: str
    required: true
  state:
    description:
      - V(present) installs or updates the set; V(absent) drains its queued changes to the target
        (unless O(force)), then removes its triggers, rows and (when the module created it) its
        foreign server and user mapping. When no set is left, the routines, the change log and
        the schema C(tablesync) are removed too (the schema only when nothing else is in it).
    type: str
    choices: [present, absent]
    default: present
  tables:
    description:
      - The tables of the set, in the source database; required with O(state=present). Tables of
        the set that are no longer listed are removed from it (their queued changes are applied
        first, or discarded with O(force)).
      - Each item is a string C(schema.table) (taken literally, case and spaces preserved; no
        schema means C(public); quote a part containing a dot with double quotes) or a
        dictionary with C(name) (as the string), C(target) (the target table, default the same
        name), C(key_columns) (columns that identify a row, the primary key or a unique index on
        NOT NULL columns; default the primary key; a table without one is synced by whole-row
        identity) and C(columns) (the columns to sync, the only ones that ever leave the source;
        default all columns except generated ones; must include the key columns).
      - List parent tables before child tables when the target has foreign keys between them
        (backfills run in list order).
    type: list
    elements: raw
  mode:
    description:
      - V(queued) (default) - the triggers append each change to the local change log
        C(tablesync.trigger_changes); the flush (the procedure C(tablesync.flush), called with the set name, or without
        arguments for every set; O(flush); or
        the C(trigger_source) role's timer) applies it to the target in id order, in batches of
        O(batch_size), one remote transaction per batch, and deletes entries only after the
        remote commit. Source writes never wait for the target and never fail because of it;
        during an outage changes accumulate and nothing is lost.
      - V(immediate) - each transaction's changes are applied on the target in one remote
        transaction when the source transaction commits (a deferred trigger, just before the
        local commit). B(A source transaction fails when the target is unreachable or rejects a
        change.) If the local commit fails after the remote one succeeded (a later deferred
        constraint, a crash) the target is ahead of the source for that transaction.
      - Switching from V(queued) to V(immediate) locks the set's tables and applies the backlog
        first, in the same transaction.
    type: str
    choices: [queued, immediate]
    default: queued
  target:
    description:
      - How to reach the target database. With C(host), C(port) or C(dbname), the module creates
        (or updates) the foreign server O(server) with these options; without them O(server) must
        exist.
      - With C(user), the module creates (or updates) the user mapping of the owner role
        O(owner) on that server and grants it USAGE on the server; without it the mapping must
        exist. The routines run as O(owner), through that mapping.
      - The owner is not a superuser, so dblink requires the target to authenticate it with the
        password (C(scram-sha-256) or C(md5) in the target's C(pg_hba.conf), not C(trust)).
    type: dict
    suboptions:
      host:
        description: Target host.
        type: str
      port:
        description: Target port.
        type: int
      dbname:
        description: Target database.
        type: str
        aliases: [database]
      user:
        description: Role to connect as on the target (it needs C(SELECT), C(INSERT), C(UPDATE),
          C(DELETE) and C(TRUNCATE) on the target tables).
        type: str
      password:
        description: Password of O(target.user). Stored only in the user mapping; never logged,
          never returned.
        type: str
      sslmode:
        description: libpq C(sslmode).
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      sslrootcert:
        description: CA certificate file on the source server's host (libpq C(sslrootcert)).
        type: str
      connect_timeout:
        description: Seconds to wait for a connection.
        type: int
      application_name:
        description: C(application_name) of the sync connections on the target; default
          C(tablesync_<name>) (set only on a server the module manages).
        type: str
  server:
    description:
      - Name of the foreign server (taken literally). Default C(tablesync_<name>).
      - When a set moves to another server name, the server the module had created for it
        (and the owner's mapping) is dropped.
    type: str
  owner:
    description:
      - The role that owns the schema C(tablesync), its tables and routines, and whose user
        mapping reaches the target. Created C(NOLOGIN) when missing (the login role needs
        C(CREATEROLE) for that). An existing role with C(LOGIN), C(SUPERUSER), C(CREATEROLE),
        C(CREATEDB), C(REPLICATION), C(BYPASSRLS) or membership in a role that reads or writes
        server files or runs programs is refused.
      - One owner per database; every set of the database uses it.
    type: str
    default: tablesync_trigger_owner
  flush_role:
    description:
      - The login a scheduler on another host calls C(CALL tablesync.flush('<set>')) as (the
        C(trigger_source) role passes C(trigger_source_scheduler_role) when its scheduler is
        C(host)). It gets
        C(EXECUTE) on C(tablesync.flush) and the definer helpers it calls, and C(USAGE) on the
        schema C(tablesync) - never the queue's tables, the capture or the user mapping.
      - Exactly this role holds these grants afterwards (besides the owner and C(pg_monitor));
        V('') revokes them from every other role; omitted, the grants are left as they are.
      - The grants are per database and shared by its sets, so give every set of a database the
        same value.
      - The role must exist and must not be O(owner).
    type: str
  batch_size:
    description:
      - Changes per remote transaction of a flush (a backfill's rows are flushed the same way).
    type: int
    default: 1000
  backfill:
    description:
      - Copy the rows already in each table that has not been backfilled yet, once, after its
        triggers are live (queued, also in immediate mode, which is switched on afterwards).
      - Per table, in one transaction with the table locked against writes (C(SHARE) mode,
        readers go on, writers wait while its rows are read), the table's queued changes are
        replaced by a C(TRUNCATE) of the target table followed by every row; the changes made
        afterwards follow in order. The target table then equals the source (keyless tables and
        duplicate rows included; rows that existed only on the target are removed). The queued
        rows are then flushed; until the flush ends the target table is incomplete.
    type: bool
    default: false
  flush:
    description:
      - After the changes (and backfills), apply the set's queued changes (the same as
        C(CALL tablesync.flush) with the set name). Fails when the target is unreachable; the changes stay
        queued.
    type: bool
    default: false
  force:
    description:
      - With O(state=absent), or for tables removed from O(tables), discard queued changes instead
        of applying them (for a target that is gone for good).
    type: bool
    default: false
  verify_target:
    description:
      - When tables, the target or the set change, check over dblink before committing that every
        target table exists, has the synced columns, a primary key or unique index on exactly the
        key columns, and that the target user may C(SELECT), C(INSERT), C(UPDATE), C(DELETE) and
        C(TRUNCATE) it. Set to V(false) to install while the target is unreachable.
    type: bool
    default: true
notes:
  - Requires PostgreSQL 12 or later and the C(dblink) extension (the module creates it in the
    schema C(tablesync) if it is missing; that needs a superuser, or create it beforehand).
  - The catalog is read with three queries whatever the number of tables.
  - Triggers do not fire for changes applied by logical replication or with
    C(session_replication_role = replica) on the source.
  - The flush must run outside a transaction block (C(CALL) in autocommit mode, as C(psql -c)
    does). Concurrent flushes of one set wait for each other; the C(trigger_source) role runs it
    from a systemd timer.
  - A flush applies the changes in the order they were queued; cross-table foreign keys on the
    target must be satisfiable in that order. Other unique constraints on the target may reject
    changes that swap values between rows (the flush then stops with the error and retries).
  - In immediate mode each committing transaction opens one dblink connection to the target and
    closes it before the commit returns (a few milliseconds per transaction); size the target's
    C(max_connections) for the source's concurrently committing sessions.
  - The owner of a synced table may drop or disable its triggers (it owns the table); nothing
    else a table, type or database owner or a writer can do runs code as O(owner).
seealso:
  - module: tablesync.postgresql.pg_sync_role
  - module: tablesync.postgresql.pg_target_tables
  - name: dblink
    description: The PostgreSQL extension used to reach the target.
    link: https://www.postgresql.org/docs/current/dblink.html
'''

EXAMPLES = r'''
- name: Queue the changes of two tables for the reporting database, copying existing rows once
  tablesync.postgresql.pg_sync_trigger:
    login_db: shop
    name: shop_reporting
    tables:
      - sales.orders
      - name: sales.order_lines
        target: reporting.order_lines
      - name: public.events
        key_columns: [event_uuid]
      - name: public.audit_log  # no primary key: synced by whole-row identity
        columns: [at, actor, action]
    target:
      host: reporting.example.com
      port: 5432
      dbname: reporting
      user: tablesync_writer
      password: "{{ vault_reporting_password }}"
      sslmode: verify-full
    backfill: true
    flush: true

- name: Apply changes on the target inside each source transaction
  tablesync.postgresql.pg_sync_trigger:
    login_db: shop
    name: shop_audit
    mode: immediate
    server: audit_server
    tables: [sales.payments]

- name: Apply the backlog now (the trigger_source role also runs it from a timer)
  tablesync.postgresql.pg_sync_trigger:
    login_db: shop
    name: shop_reporting
    tables: [sales.orders, {name: sales.order_lines, target: reporting.order_lines},
             {name: public.events, key_columns: [event_uuid]}]
    target: {host: reporting.example.com, dbname: reporting, user: tablesync_writer,
             password: "{{ vault_reporting_password }}"}
    flush: true

- name: Remove the set after applying what is queued
  tablesync.postgresql.pg_sync_trigger:
    login_db: shop
    name: shop_reporting
    state: absent
'''

RETURN = r'''
queries:
  description: Statements run (in check mode, that would run), in order; passwords masked.
    Routine bodies are shown in full.
  returned: always
  type: list
  elements: str
  sample:
    - >-
      CREATE USER MAPPING FOR "postgres" SERVER "tablesync_shop_reporting"
      OPTIONS ("user" 'tablesync_writer', "password" '********')
    - >-
      CREATE TRIGGER "tablesync_shop_reporting" AFTER INSERT OR UPDATE OR DELETE ON "sales"."orders"
      FOR EACH ROW EXECUTE FUNCTION "tablesync"."capture_1"()
exists:
  description: Whether the set exists after the task (in check mode, would exist).
  returned: always
  type: bool
  sample: true
sync_set:
  description: The set after the task (in check mode, the predicted state); empty when absent.
  returned: always
  type: dict
  contains:
    name:
      description: Set name.
      type: str
    mode:
      description: V(queued) or V(immediate).
      type: str
    server:
      description: Foreign server used to reach the target.
      type: str
    server_managed:
      description: Whether the module manages (and on removal drops) the server.
      type: bool
    batch_size:
      description: Changes per remote transaction.
      type: int
    tables:
      description: The set's tables.
      type: list
      elements: dict
      contains:
        name:
          description: Source table, C(schema.table).
          type: str
        target:
          description: Target table, C(schema.table).
          type: str
        key_columns:
          description: Columns identifying a row (empty for a keyless table).
          type: list
          elements: str
        keyless:
          description: Whether rows are identified by all their synced columns.
          type: bool
        columns:
          description: Columns synced.
          type: list
          elements: str
        backfilled:
          description: Whether the rows present before the triggers were copied.
          type: bool
  sample:
    name: shop_reporting
    mode: queued
    server: tablesync_shop_reporting
    server_managed: true
    batch_size: 1000
    tables:
      - name: sales.orders
        target: sales.orders
        key_columns: [id]
        columns: [id, customer_id, total, created_at]
        backfilled: true
backlog:
  description: Changes of the set waiting in the change log after the task.
  returned: always
  type: int
  sample: 0
flushed:
  description: Changes applied by O(flush) and by the drains the task needed.
  returned: always
  type: int
  sample: 120
backfilled:
  description: Rows copied per table by O(backfill) in this task.
  returned: always
  type: dict
  sample: {sales.orders: 10452}
routines_version:
  description: Version of the routines in schema C(tablesync) after the task (V(null) when none
    are installed).
  returned: always
  type: int
  sample: 2
diff:
  description: The set before and after (as in RV(sync_set)).
  returned: always
  type: dict
  contains:
    before:
      description: State before the task.
      type: dict
    after:
      description: State after the task.
      type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, require_version)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import (
    Executor, apply)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import parse_options
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.state import (
    ConfigTable, Environment, RoutineState, SetSpec, SetState, SourceTable, TriggerState,
    parse_tables)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.planner import plan
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import row_trigger_name, truncate_trigger_name
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import schema as q
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.follow import EVENT_TRIGGER, SCHEMA_INDEX
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG12

try:
    import psycopg2
except ImportError:  # pragma: no cover - reported by connection.connect()
    psycopg2 = None

MINIMUM_VERSION = PG12

ENVIRONMENT_QUERY = '''
SELECT current_user AS role,
       (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) AS superuser,
       pg_catalog.current_setting('server_version_num')::int AS version_num,
       EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
               WHERE c.relnamespace = ns.oid AND c.relname = 'trigger_tables'
                 AND a.attname = 'numbers' AND NOT a.attisdropped) AS follow_storage,
       EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c
               WHERE c.relnamespace = ns.oid AND c.relname = %(schema_index)s) AS schema_index,
       (SELECT pg_catalog.json_build_object('enabled', et.evtenabled, 'function', p.proname,
                                            'function_schema', pn.nspname)
          FROM pg_catalog.pg_event_trigger AS et
          JOIN pg_catalog.pg_proc AS p ON p.oid = et.evtfoid
          JOIN pg_catalog.pg_namespace AS pn ON pn.oid = p.pronamespace
         WHERE et.evtname = %(event_trigger)s) AS event_trigger,
       e.nspname AS dblink_schema,
       (SELECT pg_catalog.json_build_object(
                   'superuser', r.rolsuper, 'login', r.rolcanlogin, 'createrole', r.rolcreaterole,
                   'createdb', r.rolcreatedb, 'replication', r.rolreplication,
                   'bypassrls', r.rolbypassrls,
                   'members', ARRAY(SELECT g.rolname FROM pg_catalog.pg_auth_members AS m
                                      JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
                                     WHERE m.member = r.oid),
                   -- whether the connected role may make it an owner and act on what it
                   -- owns (SET ROLE to it on 16+, and its privileges)
                   'settable', pg_catalog.pg_has_role(current_user, r.oid, 'USAGE')
                               AND CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 160000
                                        THEN pg_catalog.pg_has_role(current_user, r.oid, 'SET')
                                        ELSE true END)
          FROM pg_catalog.pg_roles AS r WHERE r.rolname = %(owner)s) AS owner,
       pg_catalog.pg_get_userbyid(ns.nspowner) AS schema_owner,
       coalesce(pg_catalog.has_schema_privilege('pg_monitor', ns.oid, 'USAGE'), false)
         AS monitor_usage,
       ARRAY(SELECT m.rolname::text FROM pg_catalog.aclexplode(ns.nspacl) AS a
               JOIN pg_catalog.pg_roles AS m ON m.oid = a.grantee
              WHERE a.privilege_type = 'USAGE' AND a.grantee <> ns.nspowner
                AND m.rolname <> 'pg_monitor') AS schema_users,
       (SELECT pg_catalog.json_object_agg(c.relname, pg_catalog.pg_get_userbyid(c.relowner))
          FROM pg_catalog.pg_class AS c
         WHERE c.relnamespace = ns.oid AND c.relkind = 'r') AS owners,
       EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions
                WHERE name = 'dblink') AS dblink_available,
       ns.oid IS NOT NULL AS schema_exists,
       pg_catalog.quote_ident(coalesce(e.nspname, %(schema)s)) AS search_path_schema,
       ARRAY(SELECT c.relname::text FROM pg_catalog.pg_class AS c
              WHERE c.relnamespace = ns.oid AND c.relkind = 'r') AS storage,
       EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS t
                JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
               WHERE c.relnamespace = ns.oid AND c.relname = %(commits)s
                 AND t.tgname = %(commit_trigger)s) AS commit_trigger,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                   'name', p.proname,
                   'identity', pg_catalog.pg_get_function_identity_arguments(p.oid),
                   'result', pg_catalog.pg_get_function_result(p.oid),
                   'source', p.prosrc, 'definer', p.prosecdef, 'config', p.proconfig,
                   'owner', pg_catalog.pg_get_userbyid(p.proowner),
                   'comment', pg_catalog.obj_description(p.oid, 'pg_proc'),
                   'public_execute', p.proacl IS NULL OR EXISTS (
                       SELECT 1 FROM pg_catalog.aclexplode(p.proacl) AS a
                        WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'),
                   'monitor_execute', EXISTS (
                       SELECT 1 FROM pg_catalog.aclexplode(p.proacl) AS a
                        JOIN pg_catalog.pg_roles AS m ON m.oid = a.grantee
                        WHERE m.rolname = 'pg_monitor' AND a.privilege_type = 'EXECUTE'),
                   'executors', ARRAY(
                       SELECT m.rolname::text FROM pg_catalog.aclexplode(p.proacl) AS a
                         JOIN pg_catalog.pg_roles AS m ON m.oid = a.grantee
                        WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
                          AND m.rolname <> 'pg_monitor'))
                   ORDER BY p.proname)
          FROM pg_catalog.pg_proc AS p
         WHERE p.pronamespace = ns.oid
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS d
                            WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                              AND d.objid = p.oid AND d.deptype = 'e')) AS routines,
       (SELECT pg_catalog.json_build_object('fdw', w.fdwname, 'options', s.srvoptions)
          FROM pg_catalog.pg_foreign_server AS s
          JOIN pg_catalog.pg_foreign_data_wrapper AS w ON w.oid = s.srvfdw
         WHERE s.srvname = %(server)s) AS server,
       EXISTS (SELECT 1 FROM pg_catalog.pg_user_mappings AS um
                WHERE um.srvname = %(server)s AND um.usename = %(owner)s) AS mapping_exists,
       (SELECT um.umoptions FROM pg_catalog.pg_user_mappings AS um
         WHERE um.srvname = %(server)s AND um.usename = %(owner)s) AS mapping_options,
       EXISTS (SELECT 1 FROM pg_catalog.pg_user_mappings AS um
                WHERE um.srvname = %(server)s AND um.usename = current_user) AS login_mapping,
       coalesce((SELECT pg_catalog.has_server_privilege(r.oid, s.oid, 'USAGE')
                   FROM pg_catalog.pg_roles AS r, pg_catalog.pg_foreign_server AS s
                  WHERE r.rolname = %(owner)s AND s.srvname = %(server)s), false) AS server_usage,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(n.nspname, c.relname, t.tgname)
                                   ORDER BY n.nspname, c.relname, t.tgname)
          FROM pg_catalog.pg_trigger AS t
          JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
          JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
         WHERE p.pronamespace = ns.oid AND p.proname = 'capture_row'
           AND NOT c.relispartition) AS legacy_triggers,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(n.nspname, c.relname, t.tgname)
                                   ORDER BY n.nspname, c.relname, t.tgname)
          FROM pg_catalog.pg_trigger AS t
          JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
         WHERE t.tgname IN (%(row_trigger)s, %(truncate_trigger)s)
           AND NOT c.relispartition) AS set_triggers,
       ARRAY(SELECT s.srvname::text FROM pg_catalog.pg_foreign_server AS s
               JOIN pg_catalog.pg_foreign_data_wrapper AS w ON w.oid = s.srvfdw
              WHERE w.fdwname = 'dblink_fdw') AS dblink_servers,
       (SELECT count(*) FROM pg_catalog.pg_depend AS d
         WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
           AND d.refobjid = ns.oid AND d.deptype = 'n'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS x
                            WHERE x.classid = d.classid AND x.objid = d.objid AND x.deptype = 'e')
           AND NOT (d.classid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                    AND d.objid = (SELECT x.oid FROM pg_catalog.pg_extension AS x
                                    WHERE x.extname = 'dblink'))
           AND NOT (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c
                                 WHERE c.oid = d.objid AND c.relname = ANY (%(own_relations)s)))
           AND NOT (d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                    AND coalesce(pg_catalog.obj_description(d.objid, 'pg_proc'), '')
                        LIKE %(marker_like)s)) AS schema_leftovers
  FROM (SELECT 1) AS one
  LEFT JOIN pg_catalog.pg_namespace AS ns ON ns.nspname = %(schema)s
  LEFT JOIN LATERAL (SELECT n.nspname::text FROM pg_catalog.pg_extension AS x
                       JOIN pg_catalog.pg_namespace AS n ON n.oid = x.extnamespace
                      WHERE x.extname = 'dblink') AS e ON true
'''

TABLES_QUERY = '''
SELECT req.nspname AS schema, req.relname AS name, c.oid IS NOT NULL AS exists, c.relkind AS kind,
       coalesce(c.relispartition, false) AS partition,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_index AS i
               CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::pg_catalog.int2[])
                     WITH ORDINALITY AS k(attnum, position)
               JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = c.oid AND i.indisprimary AND k.position <= i.indnkeyatts
              ORDER BY k.position) AS primary_key,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attgenerated = '' ORDER BY a.attnum) AS columns,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attgenerated <> '' ORDER BY a.attnum) AS generated,
       (SELECT pg_catalog.json_object_agg(a.attname, a.attnum) FROM pg_catalog.pg_attribute AS a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS numbers,
       (SELECT pg_catalog.json_object_agg(a.attname, pg_catalog.json_build_array(fn.nspname, f.proname))
          FROM pg_catalog.pg_attribute AS a
          JOIN pg_catalog.pg_type AS ty ON ty.oid = a.atttypid
          JOIN pg_catalog.pg_proc AS f ON f.oid = ty.typoutput
          JOIN pg_catalog.pg_namespace AS fn ON fn.oid = f.pronamespace
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS outputs,
       (SELECT pg_catalog.json_agg(k.names ORDER BY k.names)
          FROM pg_catalog.pg_index AS i,
               LATERAL (SELECT pg_catalog.array_agg(a.attname::text ORDER BY x.position) AS names,
                               pg_catalog.bool_and(a.attnotnull) AS not_null
                          FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[])
                               WITH ORDINALITY AS x(attnum, position)
                          JOIN pg_catalog.pg_attribute AS a
                            ON a.attrelid = i.indrelid AND a.attnum = x.attnum
                         WHERE x.position <= i.indnkeyatts) AS k
         WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL
           AND i.indexprs IS NULL AND k.not_null) AS unique_keys,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                   'name', t.tgname, 'function_schema', pn.nspname, 'function', p.proname,
                   'args', pg_catalog.encode(t.tgargs, 'hex'), 'type', t.tgtype,
                   'enabled', t.tgenabled))
          FROM pg_catalog.pg_trigger AS t
          JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
          JOIN pg_catalog.pg_namespace AS pn ON pn.oid = p.pronamespace
         WHERE t.tgrelid = c.oid
           AND t.tgname IN (%(row_trigger)s, %(truncate_trigger)s)) AS triggers
  FROM ROWS FROM (pg_catalog.unnest(%(schemas)s::text[]), pg_catalog.unnest(%(names)s::text[]))
       WITH ORDINALITY
       AS req(nspname, relname, position)
  LEFT JOIN pg_catalog.pg_namespace AS n ON n.nspname = req.nspname
  LEFT JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid AND c.relname = req.relname
 ORDER BY req.position
'''

SET_QUERY = '''
SELECT (SELECT pg_catalog.row_to_json(s) FROM tablesync.trigger_sets AS s
         WHERE s.name = %(set)s) AS row,
       (SELECT pg_catalog.json_agg(pg_catalog.row_to_json(t) ORDER BY t.id)
          FROM tablesync.trigger_tables AS t WHERE t.set_name = %(set)s) AS tables,
       (SELECT count(*) FROM tablesync.trigger_changes AS c WHERE c.set_name = %(set)s) AS backlog,
       (SELECT count(*) FROM tablesync.trigger_sets AS s WHERE s.name <> %(set)s) AS other_sets,
       (SELECT coalesce(max(t.id), 0) FROM tablesync.trigger_tables AS t) AS max_table_id,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                   'id', t.id, 'set_name', t.set_name, 'mode', s.mode,
                   'source_schema', t.source_schema, 'source_table', t.source_table,
                   'target_schema', t.target_schema, 'target_table', t.target_table,
                   'key_columns', t.key_columns, 'columns', t.columns) ORDER BY t.id)
          FROM tablesync.trigger_tables AS t
          JOIN tablesync.trigger_sets AS s ON s.name = t.set_name
         WHERE t.set_name <> %(set)s) AS other_tables,
       (SELECT count(*) FROM tablesync.trigger_changes) AS queued
'''

BACKLOG_QUERY = '''
SELECT count(*) FROM tablesync.trigger_changes AS c WHERE c.set_name = %(set)s
'''


def decode_trigger_args(hex_text):
    """pg_trigger.tgargs (NUL-terminated strings, read as hex) -> list of str."""
    raw = bytes.fromhex(hex_text or '')
    return [part.decode('utf-8') for part in raw.split(b'\x00')[:-1]]


class SyncTriggerCatalog(object):
    """Reads what the planner compares, in three queries whatever the number of tables."""

    def __init__(self, conn, spec):
        self.conn = conn
        self.spec = spec

    def _fetch(self, query, params):
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            columns = [d[0] for d in cur.description]
            return [dict(zip(columns, row)) for row in cur.fetchall()]

    def _trigger_names(self):
        return {'row_trigger': row_trigger_name(self.spec.name),
                'truncate_trigger': truncate_trigger_name(self.spec.name)}

    def environment(self):
        params = dict(self._trigger_names(), schema=q.SCHEMA, server=self.spec.server,
                      owner=self.spec.owner,
                      commits=q.COMMITS_TABLE, commit_trigger=q.COMMIT_TRIGGER,
                      schema_index=SCHEMA_INDEX, event_trigger=EVENT_TRIGGER,
                      own_relations=[name for name, _ddl in q.STORAGE] + [q.CHANGES_SEQUENCE],
                      marker_like=q.MARKER.replace('_', '\\_') + '%')
        row = self._fetch(ENVIRONMENT_QUERY, params)[0]
        mapping = None
        if row['mapping_exists'] and row['mapping_options'] is not None:
            mapping = parse_options(row['mapping_options'])
        server = None
        if row['server'] is not None:
            server = {'fdw': row['server']['fdw'],
                      'options': parse_options(row['server']['options'])}
        return Environment(
            row['role'], dblink_schema=row['dblink_schema'],
            dblink_available=row['dblink_available'], schema_exists=row['schema_exists'],
            storage=row['storage'], commit_trigger=row['commit_trigger'],
            routines=[RoutineState(r['name'], r['identity'], r['result'], r['source'],
                                   r['definer'], r['config'], r['comment'], r['public_execute'],
                                   r['owner'], r['monitor_execute'], r['executors'])
                      for r in row['routines'] or ()],
            server=server, mapping=mapping, mapping_exists=row['mapping_exists'],
            search_path_schema=row['search_path_schema'], set_triggers=row['set_triggers'] or (),
            dblink_servers=row['dblink_servers'], schema_leftovers=row['schema_leftovers'],
            owner=row['owner'], schema_owner=row['schema_owner'], owners=row['owners'],
            server_usage=row['server_usage'], login_mapping=row['login_mapping'],
            legacy_triggers=row['legacy_triggers'] or (), monitor_usage=row['monitor_usage'],
            schema_users=row['schema_users'] or (),
            superuser=row['superuser'], version_num=row['version_num'],
            follow_storage=row['follow_storage'],
            schema_index=row['schema_index'], event_trigger=row['event_trigger'])

    def sources(self, names, set_name=None):
        """SourceTables of (schema, table) pairs, with the triggers of ``set_name`` (default:
        this set)."""
        if not names:
            return {}
        trigger_names = {'row_trigger': row_trigger_name(set_name or self.spec.name),
                         'truncate_trigger': truncate_trigger_name(set_name or self.spec.name)}
        params = dict(trigger_names, schemas=[n[0] for n in names], names=[n[1] for n in names])
        result = {}
        for row in self._fetch(TABLES_QUERY, params):
            triggers = [TriggerState(t['name'], t['function_schema'], t['function'],
                                     decode_trigger_args(t['args']), t['type'], t['enabled'])
                        for t in row['triggers'] or ()]
            result[(row['schema'], row['name'])] = SourceTable(
                row['schema'], row['name'], row['exists'], row['kind'], row['partition'],
                row['primary_key'], row['columns'], row['generated'], triggers,
                dict((k, tuple(v)) for k, v in (row['outputs'] or {}).items()),
                row['unique_keys'] or (), row['numbers'] or {})
        return result

    def set_state(self, env):
        if not env.storage_complete:
            return SetState()
        row = self._fetch(SET_QUERY, {'set': self.spec.name})[0]
        tables = [ConfigTable(t['id'], t['source_schema'], t['source_table'], t['target_schema'],
                              t['target_table'], t['key_columns'], t['columns'],
                              t['backfilled_at'] is not None, numbers=t.get('numbers'),
                              follow=t.get('follow'))
                  for t in row['tables'] or ()]
        others = [ConfigTable(t['id'], t['source_schema'], t['source_table'], t['target_schema'],
                              t['target_table'], t['key_columns'], t['columns'],
                              set_name=t['set_name'], mode=t['mode'])
                  for t in row['other_tables'] or ()]
        return SetState(row['row'], tables, row['backlog'], row['other_sets'],
                        row['max_table_id'], others, row['queued'])

    def backlog(self):
        return self._fetch(BACKLOG_QUERY, {'set': self.spec.name})[0]['count']


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        tables=dict(type='list', elements='raw'),
        mode=dict(type='str', default='queued', choices=['queued', 'immediate']),
        target=dict(type='dict', options=dict(
            host=dict(type='str'),
            port=dict(type='int'),
            dbname=dict(type='str', aliases=['database']),
            user=dict(type='str'),
            password=dict(type='str', no_log=True),
            sslmode=dict(type='str', choices=['disable', 'allow', 'prefer', 'require',
                                              'verify-ca', 'verify-full']),
            sslrootcert=dict(type='str'),
            connect_timeout=dict(type='int'),
            application_name=dict(type='str'),
        )),
        server=dict(type='str'),
        batch_size=dict(type='int', default=1000),
        backfill=dict(type='bool', default=False),
        flush=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
        verify_target=dict(type='bool', default=True),
        owner=dict(type='str', default=q.OWNER_DEFAULT),
        flush_role=dict(type='str'),
    )
    return spec


def spec_from_params(params):
    if params['batch_size'] < 1:
        raise PlanError('batch_size must be at least 1')
    if params['server'] is not None and not params['server']:
        raise PlanError('server must not be empty')
    if params['flush_role'] and params['flush_role'] == params['owner']:
        raise PlanError('flush_role %s is the owner role, which needs no grant: name the login '
                        'a scheduler flushes as, or leave flush_role out' % params['flush_role'])
    return SetSpec(params['name'], state=params['state'],
                   tables=parse_tables(params['tables']) if params['state'] == 'present' else (),
                   mode=params['mode'], server=params['server'], target=params['target'],
                   batch_size=params['batch_size'], backfill=params['backfill'],
                   flush=params['flush'], force=params['force'],
                   verify_target=params['verify_target'], owner=params['owner'],
                   flush_role=params['flush_role'])


def read_plan(module, conn, spec):
    """Read the catalog (read-only transaction) and plan; fail the module on errors."""
    catalog = SyncTriggerCatalog(conn, spec)
    try:
        with conn.cursor() as cur:
            cur.execute('SET TRANSACTION READ ONLY')
        env = catalog.environment()
        set_state = catalog.set_state(env)
        sources = catalog.sources([t.key for t in spec.tables])
        if env.upgrading:  # one query per other set, whatever its number of tables
            by_set = {}
            for config in set_state.other_tables:
                by_set.setdefault(config.set_name, []).append(config.source)
            for set_name, names in sorted(by_set.items()):
                sources.update(catalog.sources(names, set_name))
        the_plan = plan(spec, env, set_state, sources)
    except PlanError as e:
        module.fail_json(msg='; '.join(e.messages))
    except psycopg2.Error as e:
        module.fail_json(msg='Cannot read the catalog: %s' % str(e).strip())
    conn.rollback()
    return catalog, env, the_plan


def failure_message(error, the_plan):
    """The error, and what it means for the set, by the statement that failed."""
    failed = error.query
    if failed in [render(d) for d in the_plan.drains]:
        return ('%s. The set still has queued changes and its target must accept them first; '
                'retry when the target is back, or discard them with force: true.' % error.msg)
    if failed in [render(s) for _label, s in the_plan.backfills]:
        return ('%s. The triggers are installed and queue every change; the next run retries '
                'the backfill.' % error.msg)
    if the_plan.flush is not None and failed == render(the_plan.flush):
        return ('%s. The set is installed; its changes stay queued until a flush reaches the '
                'target.' % error.msg)
    shown = [render(s) for s in the_plan.statements]
    position = shown.index(failed) if failed in shown else 0
    if any(s.autocommit for s in the_plan.statements[:position]):
        return 'The set is installed and backfilled, but: %s' % error.msg
    return 'Nothing was changed: %s' % error.msg


def routines_version(the_plan, env, exists):
    if the_plan.torn_down or not (exists or env.installed_version):
        return None
    return q.VERSION if exists or the_plan.routines_changed else env.installed_version


def run(module):
    try:
        spec = spec_from_params(module.params)
    except PlanError as e:
        module.fail_json(msg='; '.join(e.messages))
    if spec.state == 'present' and not spec.tables:
        module.fail_json(msg='tables is required (a non-empty list) with state=present')
    conn = connect(module)
    require_version(module, conn, MINIMUM_VERSION, 'pg_sync_trigger')
    with conn.cursor() as cur:  # every name below is resolved in pg_catalog or qualified
        cur.execute('SET search_path = pg_catalog, pg_temp')
    conn.commit()
    catalog, env, the_plan = read_plan(module, conn, spec)

    executor = Executor(conn, module.check_mode)
    if env.mapping:
        executor.add_secrets(env.mapping.get('password'))
    for warning in the_plan.warnings:
        module.warn(warning)
    result = dict(changed=False, queries=executor.queries)
    apply(module, executor, the_plan.statements, lambda e: failure_message(e, the_plan), **result)

    after = the_plan.after
    exists = bool(after)
    readable = exists and (env.storage_complete or not module.check_mode)
    applied = the_plan.drains + ([the_plan.flush] if the_plan.flush else [])
    result.update(
        changed=executor.changed, exists=exists, sync_set=after,
        backlog=catalog.backlog() if readable else 0,
        flushed=sum(s.result or 0 for s in applied),
        backfilled=dict((label, s.result or 0) for label, s in the_plan.backfills),
        routines_version=routines_version(the_plan, env, exists),
        diff=dict(before=the_plan.before, after=after))
    conn.close()
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[('state', 'present', ['tables'])])
    run(module)


if __name__ == '__main__':
    main()
