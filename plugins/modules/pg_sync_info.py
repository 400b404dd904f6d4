#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_sync_info
short_description: Read the state of logical replication on a PostgreSQL server
version_added: 0.1.0
description:
  - Reads, in one connection and one read-only transaction, the publications and subscriptions
    of the connected database (with their lag, apply and sync errors and whether their worker
    runs), the replication slots of the server (with the WAL they retain and how far their
    consumer lags behind), the settings logical replication depends on, the queues of the
    trigger sync sets (M(tablesync.postgresql.pg_sync_trigger)), the foreign servers and the
    progress of the copies running now (a logical set's initial copy).
  - Never changes anything.
  - Uses a fixed number of queries (at most one per section and one probe), however many
    publications, subscriptions, tables and slots there are.
  - Works for a role without superuser rights, for example a member of C(pg_monitor). Fields
    the role may not read, and fields this server version does not have, are returned as
    V(null) and named in RV(unavailable) instead of failing the task.
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
options:
  name_prefix:
    description:
      - Return only publications, subscriptions and replication slots whose name starts with
        this text (taken literally; C(_) and C(%) are not wildcards), for example C(tablesync_).
      - Settings, trigger sync queues (whose sets are named without the prefix) and foreign
        servers are not filtered.
    type: str
  gather:
    description:
      - The sections to read. The server version is always returned.
    type: list
    elements: str
    choices: [publications, subscriptions, slots, settings, trigger_queues, fdw_servers, schema_changes, copy_progress]
    default: [publications, subscriptions, slots, settings, trigger_queues, fdw_servers, schema_changes, copy_progress]
  source:
    description:
      - The server the copies read from (a logical set's publisher), for RV(copy_progress) only - the
        module reads there, in one query, the planner's estimate of the rows of each table being
        copied, and returns with it the percentage done and the time left.
      - Not connected to when no copy runs. When it cannot be reached, the estimates are V(null)
        and C(copy_progress.rows_total_estimate) is listed in RV(unavailable).
    type: dict
    suboptions:
      host: {description: "Host name, IP address or Unix socket directory.", type: str}
      port: {description: Port., type: int}
      dbname: {description: Database., type: str}
      user: {description: Login role., type: str}
      password: {description: Password of O(source.user)., type: str}
      sslmode: {description: libpq C(sslmode)., type: str, choices: [disable, allow, prefer, require, verify-ca, verify-full]}
  server_log:
    description:
      - Also return the last apply error of each subscription from the server log
        (RV(subscriptions[].last_apply_error)) - the path of the log file on the managed host,
        or V(auto) to find it (the logging collector's current file, C(pg_current_logfile()),
        needs a superuser or C(pg_monitor); otherwise Debian's
        C(/var/log/postgresql/postgresql-<version>-<cluster>.log) named after C(cluster_name)).
      - The module reads the last 4 MiB of the file as the user it runs as (for example
        C(postgres) with C(become)); the plain-text (C(stderr)) log format only. When the file
        cannot be found or read, C(subscriptions.last_apply_error) is listed in RV(unavailable).
      - Not read when unset.
    type: str
  each_database:
    description:
      - Read the sections of a database (C(publications), C(subscriptions), C(trigger_queues)
        and C(fdw_servers)) in every database of the server that accepts connections (not the
        templates), in this one call - the module connects to each in turn with the same
        connection options. The server-wide sections (C(slots), C(settings)) are read once.
      - Each item of those sections then has a C(database) field, and RV(databases) lists the
        databases read.
      - The connecting role must be allowed to connect to every such database.
    type: bool
    default: false
notes:
  - Requires PostgreSQL 10 or later; RV(copy_progress) needs PostgreSQL 14 (C(pg_stat_progress_copy)),
    and is listed in RV(unavailable) on older servers.
  - The copy estimates are the source's C(pg_class.reltuples) (summed over partitions); a table never
    vacuumed or analysed has none, and a row filter makes the estimate an upper bound.
  - Publications and subscriptions are those of the database the module connects to
    (O(login_db)), or of every database with O(each_database); replication slots are those of
    the whole server.
  - The connection string of a subscription (RV(subscriptions[].publisher)) can only be read
    by a superuser; it is returned without its password.
  - The trigger sync queues are read from the schema C(tablesync) of the connected database; a
    monitoring role needs C(USAGE) on that schema and C(SELECT) on C(tablesync.trigger_sets),
    C(tablesync.trigger_tables) and C(tablesync.trigger_changes) (C(pg_monitor) alone does not
    grant it; the section is then listed in RV(unavailable)). Without that schema the section is
    empty.
  - C(pg_sync_trigger) keeps no history of its flushes, so RV(trigger_queues[].last_flush_time)
    is always V(null) and listed in RV(unavailable); the age of the oldest queued change
    (RV(trigger_queues[].oldest_entry_age_seconds)) tells whether flushes keep up.
  - Apply and sync error counts are cumulative since the subscription's statistics were last
    reset (with the function C(pg_stat_reset_subscription_stats) on the subscriber).
seealso:
  - module: tablesync.postgresql.pg_publication
  - module: tablesync.postgresql.pg_subscription
  - name: Monitoring logical replication
    description: The catalog views this module reads.
    link: https://www.postgresql.org/docs/current/logical-replication-monitoring.html
'''

EXAMPLES = r'''
- name: Read the sync state of the tablesync objects
  tablesync.postgresql.pg_sync_info:
    login_db: shop
    name_prefix: tablesync_
  register: sync

- name: Fail when a slot retains more than 10 GB of WAL
  ansible.builtin.assert:
    that: sync.slots | map(attribute='retained_bytes') | select('gt', 10 * 1024 ** 3) | list | length == 0

- name: Fail when a subscription's apply worker is down or a trigger queue is 5 minutes old
  ansible.builtin.assert:
    that:
      - sync.subscriptions | rejectattr('enabled') | list | length == 0
      - sync.subscriptions | rejectattr('worker_running') | list | length == 0
      - sync.trigger_queues | selectattr('oldest_entry_age_seconds', 'gt', 300) | list | length == 0

- name: The tablesync publications of every database and the slots, in one call
  tablesync.postgresql.pg_sync_info:
    login_db: postgres
    each_database: true
    gather: [publications, slots]
    name_prefix: tablesync_
  register: everywhere

- name: The initial copies running now, with the rows left and the time left
  tablesync.postgresql.pg_sync_info:
    login_db: shop
    gather: [copy_progress]
    source:
      host: 10.0.0.10
      dbname: shop
      user: tablesync_replication
      password: "{{ vault_replication_password }}"
  register: copies

- name: Say how far each copy is
  ansible.builtin.debug:
    msg: "{{ copies.copy_progress | map(attribute='summary') | list }}"

- name: Only the replication slots, as a monitoring role
  tablesync.postgresql.pg_sync_info:
    login_user: monitor
    login_password: "{{ vault_monitor_password }}"
    gather: [slots]
  register: slots
'''

RETURN = r'''
server_version:
  description: Version of the server.
  returned: always
  type: dict
  sample: {num: 150004, major: 15, minor: 4, full: "15.4 (Debian 15.4-1)"}
databases:
  description: The databases read, with O(each_database).
  returned: when O(each_database) is V(true)
  type: list
  elements: str
  sample: [postgres, shop]
unavailable:
  description:
    - Fields (C(section.field)) or whole sections that could not be read, because the role lacks
      the privilege or the server version does not have them. Their values are V(null).
  returned: always
  type: list
  elements: str
  sample: [subscriptions.publisher]
publications:
  description: Publications of the connected database, by name.
  returned: when V(publications) is in O(gather)
  type: list
  elements: dict
  contains:
    name: {description: Name of the publication., type: str}
    database: {description: Database of the publication (with O(each_database) only)., type: str}
    owner: {description: Owner of the publication., type: str}
    all_tables: {description: Whether it publishes all tables (C(FOR ALL TABLES))., type: bool}
    publish: {description: The operations published., type: list, elements: str, sample: [insert, update, delete, truncate]}
    via_root: {description: C(publish_via_partition_root) (PostgreSQL 13+)., type: bool}
    tables:
      description: The tables published, as C(schema.table), including those of C(FOR ALL TABLES) and schemas.
      type: list
      elements: str
  sample:
    - {name: tablesync_orders, owner: postgres, all_tables: false, publish: [insert, update, delete, truncate],
       via_root: false, tables: [sales.orders]}
subscriptions:
  description: Subscriptions of the connected database, by name.
  returned: when V(subscriptions) is in O(gather)
  type: list
  elements: dict
  contains:
    name: {description: Name of the subscription., type: str}
    database: {description: Database of the subscription (with O(each_database) only)., type: str}
    owner: {description: Owner of the subscription., type: str}
    enabled: {description: Whether the subscription is enabled., type: bool}
    publications: {description: Publications subscribed to., type: list, elements: str}
    slot_name: {description: Replication slot on the publisher., type: str}
    publisher:
      description: Connection options of the publisher (superusers only), without the password.
      type: dict
      sample: {host: 10.0.0.10, port: "5432", dbname: shop, user: tablesync}
    worker_pid: {description: "Process ID of the apply worker, V(null) when it does not run.", type: int}
    received_lsn: {description: Last WAL location received by the apply worker., type: str}
    latest_end_lsn: {description: Last WAL location reported to the publisher., type: str}
    last_msg_receipt_time: {description: Time the last message from the publisher arrived (ISO 8601)., type: str}
    latest_end_time:
      description: Time of the last WAL location reported to the publisher (publisher's clock, ISO 8601).
      type: str
    worker_running: {description: "Whether the apply worker runs (V(false) when disabled or failing).", type: bool}
    lag_bytes:
      description:
        - "Subscriber side: WAL received but not yet confirmed to the publisher,
          C(received_lsn) - C(latest_end_lsn), in bytes. V(null) when the worker does not run."
        - How far the subscriber is behind the publisher's current WAL is RV(slots[].lag_bytes)
          of its slot, read on the publisher.
      type: int
    lag_seconds:
      description:
        - Seconds since the last WAL location was reported to the publisher (C(now() - latest_end_time)),
          at most about C(wal_receiver_timeout) / 2 on a healthy idle link (the worker asks for a
          keepalive then). V(null) when the worker does not run.
      type: float
    last_msg_age_seconds:
      description: Seconds since the last message from the publisher arrived (C(now() - last_msg_receipt_time)).
      type: float
    apply_error_count: {description: Errors while applying changes (PostgreSQL 15+)., type: int}
    last_apply_error:
      description:
        - With O(server_log), the last apply error of the subscription the log holds (PostgreSQL
          15 or later, whose errors name the subscription's replication origin and the failed
          transaction's finish LSN), else V(null).
        - C(finish_lsn) is what M(tablesync.postgresql.pg_subscription) O(tablesync.postgresql.pg_subscription#module:skip_lsn)
          takes to skip the transaction. C(resolved) is V(true) once the subscription has applied
          or skipped past it (its replication origin is at or beyond C(finish_lsn); readable by
          superusers, else V(null)).
        - On PostgreSQL 18, C(conflict) names the conflict (V(insert_exists), V(update_missing), ...),
          and C(detail) keeps the key of the conflicting row but leaves out the whole rows the server
          log prints (its later lines joined with a newline).
      type: dict
      sample: {time: "2026-01-05 10:00:00.123 UTC", message: duplicate key value violates unique constraint "orders_pkey",
               detail: Key (id)=(5) already exists., conflict: null, message_type: INSERT, relation: sales.orders, column: null,
               transaction: 745, finish_lsn: 0/1A2B3C4, resolved: false}
    sync_error_count: {description: Errors during the initial table copy (PostgreSQL 15+)., type: int}
    tables:
      description:
        - Per-table state of the subscription (C(pg_subscription_rel)).
        - C(state) is one of V(init), V(data_copy), V(finished_copy), V(synchronized), V(ready).
      type: list
      elements: dict
      sample: [{name: sales.orders, state: ready, lsn: null}]
slots:
  description: Replication slots of the server, by name.
  returned: when V(slots) is in O(gather)
  type: list
  elements: dict
  contains:
    slot_name: {description: Name of the slot., type: str}
    slot_type: {description: V(logical) or V(physical)., type: str}
    plugin: {description: Output plugin of a logical slot., type: str}
    database: {description: Database of a logical slot., type: str}
    active: {description: Whether a consumer is connected., type: bool}
    active_pid: {description: Process ID of the consumer., type: int}
    wal_status: {description: Availability of the WAL the slot needs (PostgreSQL 13+)., type: str}
    invalidation_reason:
      description: 'Why the slot was invalidated (PostgreSQL 17+; 18 adds idle_timeout): wal_removed,
        rows_removed, wal_level_insufficient, idle_timeout.'
      type: str
    safe_wal_size: {description: Bytes that can still be written before the slot is lost (PostgreSQL 13+)., type: int}
    restart_lsn: {description: Oldest WAL location the slot needs., type: str}
    confirmed_flush_lsn: {description: Location up to which the consumer confirmed receipt., type: str}
    retained_bytes: {description: "WAL the slot retains: current WAL location - C(restart_lsn), in bytes.", type: int}
    lag_bytes: {description: "How far the consumer is behind: current WAL location - C(confirmed_flush_lsn), in bytes.", type: int}
    replay_lag_seconds:
      description: C(replay_lag) of the slot's walsender in seconds (V(null) when no consumer is connected or it is idle and caught up).
      type: float
settings:
  description:
    - The settings logical replication depends on, name to value as C(pg_settings.setting)
      shows it (in the setting's base unit).
    - C(max_slot_wal_keep_size) exists on PostgreSQL 13+ only.
  returned: when V(settings) is in O(gather)
  type: dict
  sample: {wal_level: logical, max_replication_slots: "10", max_wal_senders: "10",
           max_logical_replication_workers: "4", max_worker_processes: "8", max_slot_wal_keep_size: "-1"}
trigger_queues:
  description:
    - Trigger sync sets of the connected database (M(tablesync.postgresql.pg_sync_trigger)) and
      their queued changes (C(tablesync.trigger_changes)), by name. Empty without the schema
      C(tablesync).
  returned: when V(trigger_queues) is in O(gather)
  type: list
  elements: dict
  contains:
    name: {description: Name of the sync set., type: str}
    database: {description: Database of the sync set (with O(each_database) only)., type: str}
    mode: {description: V(queued) or V(immediate)., type: str}
    server: {description: Foreign server the set reaches its target through., type: str}
    batch_size: {description: Changes per remote transaction of a flush., type: int}
    tables: {description: Number of tables in the set., type: int}
    depth: {description: Changes queued and not yet applied on the target., type: int}
    oldest_entry_time: {description: "Time of the oldest queued change (ISO 8601), V(null) when the queue is empty.", type: str}
    newest_entry_time: {description: "Time of the newest queued change (ISO 8601), V(null) when the queue is empty.", type: str}
    oldest_entry_age_seconds: {description: "Age of the oldest queued change in seconds, V(0) when the queue is empty.", type: float}
    last_flush_time: {description: Not recorded by pg_sync_trigger; always V(null) (listed in RV(unavailable))., type: str}
    schema_changes_pending:
      description: "Column changes of the set's tables (C(ALTER TABLE) on the source) queued and not yet applied on the target."
      type: int
  sample:
    - {name: orders, mode: queued, server: tablesync_orders, batch_size: 1000, tables: 2, depth: 12,
       oldest_entry_time: "2026-01-05T10:00:00.120000+00:00", newest_entry_time: "2026-01-05T10:00:04.500000+00:00",
       oldest_entry_age_seconds: 4.9, last_flush_time: null}
schema_changes:
  description:
    - Column changes of the logical sync sets that follow them (M(tablesync.postgresql.pg_schema_follow)),
      per set and table - on a source the last one captured, on a target the last one applied there -
      with the table's own columns. Empty without the schema C(tablesync_ddl).
    - On a target, a table whose RV(schema_changes[].table_columns) differ from RV(schema_changes[].columns)
      has drifted from its source; a source's RV(schema_changes[].last_change) above the target's is not
      applied there yet (C(check.yml) compares both).
  returned: when V(schema_changes) is in O(gather)
  type: list
  elements: dict
  contains:
    set: {description: Name of the sync set., type: str}
    table: {description: The table (C(schema.table))., type: str}
    database: {description: Database (with O(each_database) only)., type: str}
    last_change: {description: Number of the table's last column change (rising on the source)., type: int}
    changed_at: {description: When it was captured on the source (ISO 8601)., type: str}
    columns: {description: "The table's columns after that change, as C([name, type]) pairs.", type: list}
    table_columns: {description: "The local table's columns as C([name, type]) pairs, V(null) when it does not exist.", type: list}
  sample:
    - {set: orders, table: sales.orders, last_change: 7, changed_at: "2026-12-05T10:00:00+00:00",
       columns: [[id, bigint], [total, "numeric(10,2)"]], table_columns: [[id, bigint], [total, "numeric(10,2)"]]}
copy_progress:
  description:
    - The copies (C(COPY)) running now in the connected database, one item per copying session - a
      logical set's initial copy (tablesync workers, or the snapshot copy of
      M(tablesync.postgresql.pg_subscription)) and any other C(COPY).
  returned: when V(copy_progress) is in O(gather)
  type: list
  elements: dict
  contains:
    pid: {description: Process of the copying session., type: int}
    command: {description: C(COPY FROM) (receiving) or C(COPY TO) (sending)., type: str}
    type: {description: "C(FILE), C(PROGRAM), C(PIPE) (a client such as the snapshot copy) or C(CALLBACK) (a tablesync worker).", type: str}
    table: {description: "The table (C(schema.table)), V(null) for C(COPY (query) TO).", type: str}
    database: {description: Database (with O(each_database) only)., type: str}
    rows_done: {description: Rows copied so far., type: int}
    rows_excluded: {description: Rows left out by a C(WHERE) of the copy., type: int}
    bytes_done: {description: Bytes of copy data received or sent so far., type: int}
    backend_type: {description: "The session's kind (C(client backend), C(logical replication tablesync worker), ...).", type: str}
    application_name: {description: The session's application name., type: str}
    started: {description: When the copy statement (or the tablesync worker) started (ISO 8601)., type: str}
    elapsed_seconds: {description: Seconds since then., type: float}
    rows_total_estimate: {description: "The source's estimate of the table's rows (with O(source)), V(null) when unknown.", type: int}
    percent: {description: Rows done of the estimate (at most 99.9 while the copy runs)., type: float}
    rows_per_second: {description: Average rate so far., type: float}
    eta_seconds: {description: Estimated seconds left at that rate (V(null) without an estimate)., type: int}
    summary: {description: The same as one line a person reads., type: str}
  sample:
    - {pid: 4242, command: COPY FROM, type: PIPE, table: public.orders, rows_done: 1200000, rows_excluded: 0,
       bytes_done: 98304000, backend_type: client backend, application_name: ansible-tablesync,
       started: "2026-12-06T10:00:00+00:00", elapsed_seconds: 30.2, rows_total_estimate: 5000000,
       percent: 24.0, rows_per_second: 39735.1, eta_seconds: 96,
       summary: "public.orders: 1200000 of ~5000000 rows (24.0%), 93.8 MB in 30 s, about 2 min left"}
fdw_servers:
  description: Foreign servers of the connected database, by name.
  returned: when V(fdw_servers) is in O(gather)
  type: list
  elements: dict
  contains:
    name: {description: Name of the server., type: str}
    database: {description: Database of the server (with O(each_database) only)., type: str}
    wrapper: {description: "Foreign-data wrapper (C(postgres_fdw), C(dblink_fdw), ...).", type: str}
    owner: {description: Owner of the server., type: str}
    options: {description: "Server options, without C(password) and C(sslpassword).", type: dict}
    user_mappings: {description: Number of user mappings of the server., type: int}
  sample: [{name: shop_source, wrapper: postgres_fdw, owner: postgres, options: {host: 10.0.0.10, dbname: shop}, user_mappings: 1}]
'''

import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, connection_kwargs, remote_connection_params,
    remote_server_argument_spec, require_version)
from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.copy_progress import (
    ESTIMATES_SQL, copy_tables, estimate_params, estimates_by_table, with_estimates)
from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.sync_info import SECTIONS, SyncInfo
from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.server_log import (
    last_apply_errors, log_file, read_tail, resolved)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG10

try:
    import psycopg2
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = None


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        name_prefix=dict(type='str'),
        gather=dict(type='list', elements='str', choices=list(SECTIONS), default=list(SECTIONS)),
        server_log=dict(type='str'),
        each_database=dict(type='bool', default=False),
        source=remote_server_argument_spec(required=False),
    )
    return spec


# The sections read per database; the others (slots, settings) are server-wide.
PER_DATABASE = ('publications', 'subscriptions', 'trigger_queues', 'fdw_servers', 'schema_changes',
                'copy_progress')
_DATABASES_SQL = ("SELECT datname FROM pg_catalog.pg_database "
                  "WHERE datallowconn AND NOT datistemplate ORDER BY datname")


# Where the log is and each subscription's origin and progress; restricted parts are NULL.
_LOG_SETTINGS_SQL = (
    "SELECT (SELECT pg_catalog.json_object_agg(name, setting) FROM pg_catalog.pg_settings "
    "WHERE name IN ('data_directory', 'cluster_name', 'logging_collector')) AS settings, "
    "CASE WHEN pg_catalog.has_function_privilege('pg_catalog.pg_current_logfile()', 'EXECUTE') "
    "THEN pg_catalog.pg_current_logfile() END AS current_logfile, "
    "pg_catalog.has_table_privilege('pg_catalog.pg_replication_origin_status', 'SELECT') "
    "AS origin_readable")
_ORIGINS_SQL = (
    "SELECT s.subname, 'pg_' || s.oid::text AS origin{progress} FROM pg_catalog.pg_subscription s "
    "WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d "
    "WHERE d.datname = pg_catalog.current_database())")
_PROGRESS = (", (SELECT os.remote_lsn::text FROM pg_catalog.pg_replication_origin_status os "
             "WHERE os.external_id = 'pg_' || s.oid::text) AS origin_lsn")


def add_apply_errors(conn, explicit, info):
    """subscriptions[].last_apply_error from the server log; unavailable when unreadable."""
    subscriptions = info.get('subscriptions') or []
    for sub in subscriptions:
        sub['last_apply_error'] = None
    if not subscriptions:
        return
    with conn.cursor() as cur:
        cur.execute(_LOG_SETTINGS_SQL)
        settings, current_logfile, origin_readable = cur.fetchone()
        cur.execute(_ORIGINS_SQL.format(progress=_PROGRESS if origin_readable else ''))
        origins = dict((row[0], row[1:]) for row in cur.fetchall())
    conn.rollback()
    path = log_file(explicit, settings or {}, current_logfile)
    try:
        lines = read_tail(path) if path else None
    except (IOError, OSError):
        lines = None
    if lines is None:
        info['unavailable'].append('subscriptions.last_apply_error')
        return
    errors = last_apply_errors(lines, [o[0] for o in origins.values()])
    for sub in subscriptions:
        origin = origins.get(sub['name'])
        error = errors.get(origin[0]) if origin else None
        if error is not None:
            error['resolved'] = resolved(error, origin[1] if len(origin) > 1 else None)
        sub['last_apply_error'] = error


def read_database(module, conn, gather):
    """The ``gather`` sections as seen from the connected database."""
    conn.set_session(readonly=True)
    info = SyncInfo(conn).read(gather, module.params['name_prefix'])
    if module.params['server_log'] and 'subscriptions' in gather:
        add_apply_errors(conn, module.params['server_log'], info)
    if 'copy_progress' in info:
        add_copy_estimates(module, info)
    return info


def read_estimates(module, tables):
    """{(schema, table): estimated rows} read on O(source), None when it cannot be reached."""
    try:
        kwargs = connection_kwargs(remote_connection_params(module.params, 'source'))
        kwargs.setdefault('application_name', 'ansible-tablesync')
        source = psycopg2.connect(**kwargs)
    except psycopg2.Error:
        return None
    try:
        source.set_session(readonly=True)
        with source.cursor() as cur:
            cur.execute(ESTIMATES_SQL, estimate_params(tables))
            return estimates_by_table(tables, cur.fetchall())
    except psycopg2.Error:
        return None
    finally:
        source.close()


def add_copy_estimates(module, info):
    """copy_progress with the source's estimates, percentages and times left."""
    copies = info['copy_progress']
    tables = copy_tables(copies)
    estimates = None
    if module.params['source'] and tables:
        estimates = read_estimates(module, tables)
        if estimates is None:
            info['unavailable'].append('copy_progress.rows_total_estimate')
    info['copy_progress'] = with_estimates(copies, estimates)


def read_each_database(module, conn):
    """Server-wide sections once, per-database sections from every database (one connection
    at a time), each item naming its database."""
    gather = module.params['gather']
    with conn.cursor() as cur:
        cur.execute(_DATABASES_SQL)
        databases = [row[0] for row in cur.fetchall()]
        cur.execute('SELECT pg_catalog.current_database()')
        current = cur.fetchone()[0]
    conn.rollback()
    info = read_database(module, conn, gather)
    per_database = [s for s in gather if s in PER_DATABASE]
    for section in per_database:
        for item in info[section]:
            item['database'] = current
    for database in databases:
        if database == current or not per_database:
            continue
        other = connect(module, dbname=database)
        try:
            part = read_database(module, other, per_database)
        finally:
            other.close()
        for section in per_database:
            for item in part[section]:
                item['database'] = database
            info[section].extend(part[section])
        info['unavailable'] = sorted(set(info['unavailable']) | set(part['unavailable']))
    info['databases'] = databases
    return info


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    conn = connect(module)
    try:
        require_version(module, conn, PG10, 'pg_sync_info')
        if module.params['each_database']:
            info = read_each_database(module, conn)
        else:
            info = read_database(module, conn, module.params['gather'])
    except psycopg2.Error as e:
        module.fail_json(msg='Cannot read the replication state: %s' % str(e).strip(),
                         exception=traceback.format_exc())
    finally:
        conn.close()
    module.exit_json(changed=False, **info)


if __name__ == '__main__':
    main()
