#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_subscription
short_description: Manage PostgreSQL logical replication subscriptions
version_added: 0.1.0
description:
  - Creates, changes, refreshes and drops a logical replication subscription in the database the
    module connects to (the subscriber, O(login_db)).
  - The publisher is given as a dictionary (O(publisher)) from which the module builds the libpq
    connection string, quoting every value; nobody writes a connection string by hand. Its
    password is never shown, in C(queries), in the diff, in warnings or in error messages.
  - Existing subscriptions are changed in place. C(CONNECTION), the publication list, the options
    PostgreSQL can C(ALTER) on the server's version, C(ENABLE)/C(DISABLE), the owner and the
    comment are compared with the catalog and only differences are applied.
  - O(wait_for_sync=true) waits until every table of the subscription has finished its initial
    copy, and fails with the per-table states when that does not happen in time.
  - O(state=absent) also works when the publisher is down; the replication slot that then stays
    on the publisher is reported in RV(slot_left_behind).
extends_documentation_fragment:
  - tablesync.postgresql.connection
attributes:
  check_mode:
    description: Reads the catalog and reports the statements it would run; changes nothing.
    support: full
  diff_mode:
    description: Shows the subscription before and after, the publisher password masked.
    support: full
options:
  name:
    description:
      - Name of the subscription, taken literally (case and spaces preserved; at most 63 bytes).
      - Unless O(slot_name) is set, PostgreSQL names the replication slot after the subscription,
        which then must be a valid slot name (lower-case letters, digits, underscores).
    type: str
    required: true
  state:
    description:
      - V(present) creates the subscription or brings it to the given settings.
      - V(absent) drops it together with its replication slot on the publisher. When the publisher
        cannot be reached, the subscription is disabled, detached from its slot
        (C(slot_name = NONE)) and dropped; the slot left on the publisher is returned in
        RV(slot_left_behind) and in a warning (it retains WAL until it is dropped there).
      - V(refreshed) is V(present) followed by C(ALTER SUBSCRIPTION ... REFRESH PUBLICATION), which
        starts subscribing to tables added to the publications since the last refresh (with
        O(copy_data)) and stops for tables removed from them. The subscription must be enabled.
        The task reports a change only when the refresh added or removed tables (or something
        else changed); in check mode the refresh always counts as a change, as its effect
        depends on the publisher, which check mode does not involve.
    type: str
    choices: [present, absent, refreshed]
    default: present
  publications:
    description:
      - Names of the publications on the publisher, the complete list (order does not matter).
      - Required to create the subscription. When it differs from the current list, the module
        uses C(ADD PUBLICATION) or C(DROP PUBLICATION) (PostgreSQL 14 and later) or
        C(SET PUBLICATION), with O(refresh).
    type: list
    elements: str
  publisher:
    description:
      - How the subscriber connects to the publisher; becomes the subscription's C(CONNECTION).
      - Required to create the subscription. When given for an existing subscription, the stored
        connection string is parsed and compared key by key (password included) and replaced with
        C(ALTER SUBSCRIPTION ... CONNECTION) when anything differs. Keys not given are not part of
        the connection string (libpq defaults of the subscriber server apply).
      - The comparison needs to read C(pg_subscription.subconninfo), which PostgreSQL allows to
        superusers only unless granted with C(GRANT SELECT) on that column.
        Without that right the module warns and does not change the connection.
      - The connection string, password included, is stored in clear text in
        C(pg_subscription.subconninfo) and appears in the subscriber's server log when
        C(log_statement) logs DDL. Use O(publisher.passfile) to keep the password out of both.
    type: dict
    suboptions:
      host:
        description: Publisher host name or address (several, comma-separated, as libpq allows).
        type: str
      port:
        description: Publisher port.
        type: int
      dbname:
        description: Database on the publisher that holds the publications.
        type: str
      user:
        description: Role the subscriber connects as; needs the C(REPLICATION) attribute.
        type: str
      password:
        description:
          - Password of O(publisher.user). Never logged or returned.
          - A changed password is detected by comparing with the stored connection string and
            applied with C(ALTER SUBSCRIPTION ... CONNECTION).
        type: str
      sslmode:
        description: libpq C(sslmode) for the connection to the publisher.
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      sslrootcert:
        description: CA certificate file, a path on the subscriber server.
        type: str
      passfile:
        description: Password file, a path on the subscriber server (readable by its OS user).
        type: str
      application_name:
        description:
          - C(application_name) the publisher shows for the walsender; PostgreSQL uses the
            subscription name when unset.
        type: str
      connect_timeout:
        description: Seconds the subscriber waits for the connection to the publisher.
        type: int
      options:
        description:
          - Any other libpq connection parameters, as a dictionary of keyword and value
            (for example C(keepalives_idle), C(target_session_attrs), C(sslcert)).
          - Must not repeat a key given above, and must not contain C(password) or
            C(sslpassword) (use O(publisher.password), which is never logged).
        type: dict
  enabled:
    description:
      - Whether the subscription is enabled (replicating). Changed in place with
        C(ALTER SUBSCRIPTION ... ENABLE/DISABLE).
      - PostgreSQL's default on creation is V(true) (V(false) with O(connect=false)).
    type: bool
  slot_name:
    description:
      - Name of the replication slot on the publisher; PostgreSQL's default is the subscription
        name. Changed in place.
      - V(NONE) means no slot (needs O(enabled=false), and on creation O(create_slot=false) too).
      - Not compared when unset.
    type: str
  create_slot:
    description:
      - Create the replication slot on the publisher (PostgreSQL's default V(true)). Creation
        only, not compared with existing subscriptions.
    type: bool
  copy_data:
    description:
      - Copy the existing rows of the published tables. Used on creation, for the tables a
        publication change adds (with O(refresh=true)) and by O(state=refreshed).
        PostgreSQL's default is V(true). Not compared with existing subscriptions.
    type: bool
  connect:
    description:
      - Whether C(CREATE SUBSCRIPTION) connects to the publisher at all (PostgreSQL's default
        V(true)). V(false) also defaults O(enabled), O(create_slot) and O(copy_data) to false.
        Creation only.
    type: bool
  synchronous_commit:
    description:
      - C(synchronous_commit) of the apply workers; V(on) and V(off) may be given as booleans.
        PostgreSQL's default is V(off). Changed in place.
    type: raw
  binary:
    description: Request the binary transfer format (PostgreSQL 14 or later). Changed in place.
    type: bool
  streaming:
    description:
      - Streaming of in-progress transactions (PostgreSQL 14 or later), V(on), V(off) (booleans
        accepted) or V(parallel) (PostgreSQL 16 or later). Changed in place.
    type: raw
  two_phase:
    description:
      - Two-phase commit (PostgreSQL 15 or later).
      - Changed in place only on PostgreSQL 18 and later (the module disables the subscription for
        the change and enables it again); on older versions a difference fails the task, as the
        subscription must be re-created.
    type: bool
  disable_on_error:
    description:
      - Disable the subscription when a worker hits an error (PostgreSQL 15 or later). Changed in
        place.
    type: bool
  origin:
    description:
      - V(none) to receive only changes without a replication origin (no loops in
        bidirectional setups), V(any) for all (PostgreSQL 16 or later). Changed in place.
    type: str
    choices: [any, none]
  run_as_owner:
    description:
      - Apply changes as the subscription owner rather than as the table owners (PostgreSQL 16 or
        later). Changed in place.
    type: bool
  password_required:
    description:
      - Whether the connection must authenticate with a password (PostgreSQL 16 or later; only a
        superuser may set V(false)). Changed in place.
    type: bool
  failover:
    description:
      - Synchronise the replication slot to physical standbys of the publisher (PostgreSQL 17 or
        later). Changed in place; the module disables the subscription for the change and enables
        it again.
    type: bool
  owner:
    description: Owner of the subscription. Changed with C(ALTER SUBSCRIPTION ... OWNER TO).
    type: str
  comment:
    description:
      - Comment on the subscription (C(COMMENT ON SUBSCRIPTION)); an empty string removes it.
        Not compared when unset.
    type: str
  refresh:
    description:
      - Whether a change of O(publications) also refreshes the table list (C(refresh = true) in
        the C(WITH) clause), subscribing to the tables of added publications with O(copy_data).
      - Ignored for a subscription that is (to be) disabled, as PostgreSQL refuses it; the module
        warns that a O(state=refreshed) run is needed after enabling it.
    type: bool
    default: true
  wait_for_sync:
    description:
      - After the changes, wait until every table of the subscription is in the ready state
        (C(pg_subscription_rel.srsubstate = 'r')). The short C(s) (synchronized) state still
        counts as waiting.
      - Fails at once when the subscription is disabled, or when PostgreSQL 15 or later counts
        three new table synchronisation or apply worker errors in C(pg_stat_subscription_stats)
        without any table making progress in between (a lasting cause such as a conflicting row
        repeats every C(wal_retrieve_retry_interval); fewer errors, retried successfully by the
        workers, only give a warning); fails after O(wait_timeout) otherwise. The message lists every table with its state; the error
        text itself is only in the subscriber's server log.
      - Not done in check mode.
    type: bool
    default: false
  wait_timeout:
    description: Seconds O(wait_for_sync) waits at most.
    type: int
    default: 300
  skip_lsn:
    description:
      - Skip one remote transaction the apply worker keeps failing on (a conflict such as a
        duplicate key), with C(ALTER SUBSCRIPTION ... SKIP (lsn = ...)) (PostgreSQL 15 or
        later; PostgreSQL 15 allows it to superusers only).
      - The finish LSN of the failing transaction, as the subscriber's server log shows it in
        the error's C(CONTEXT) (C(... in transaction 740, finished at 0/14C0378)), and as
        M(tablesync.postgresql.pg_sync_info) returns it in
        RV(tablesync.postgresql.pg_sync_info#module:subscriptions[].last_apply_error.finish_lsn)
        when it may read the log.
      - Every change of that transaction is left out on this subscriber, also those that would
        not have conflicted; repair them by hand if needed.
      - V(NONE) clears a pending skip.
      - Idempotent - no change when the same LSN is already pending, or when the subscription has
        already applied or skipped past it (its replication origin's C(remote_lsn), readable by
        superusers, is at or beyond it).
      - Only for an existing subscription.
    type: str
  initial_copy:
    description:
      - How a subscription this task creates gets the rows that exist already (with
        O(copy_data) not V(false)).
      - V(tablesync) leaves it to PostgreSQL's table synchronisation workers (C(CREATE
        SUBSCRIPTION) with C(copy_data)), one C(COPY) per table into the target table with all
        its indexes maintained row by row.
      - V(snapshot) copies outside those workers, about twice as fast on large tables
        (C(docs/benchmarks-copy.md)). The module creates the subscription's replication slot
        on the publisher over a replication connection that exports its snapshot, copies
        every published table in that snapshot (O(copy_jobs) tables at a time,
        C(COPY (SELECT columns FROM table WHERE row filter) TO STDOUT) streamed into C(COPY
        ... FROM STDIN)). The subscription is created on that slot before the copy, with
        C(copy_data = false), disabled and with a marker as its comment; after the copy it gets
        its real comment and is enabled - the changes committed after the snapshot arrive
        through the slot, none lost, none applied twice.
      - The rows travel in C(COPY)'s binary format when both servers run the same major version
        and every copied column has the same built-in type on both (no text output and
        parsing), in text otherwise.
      - On the subscriber each table is copied in one transaction that drops its primary key,
        unique constraints and plain indexes, copies the rows and builds them again (kept and
        maintained instead - named in RV(initial_copy) - are indexes of partitions and
        partitioned tables, and indexes with a comment, a tablespace, a statistics target,
        replica identity, clustering or a foreign key that depends on them).
      - Needs PostgreSQL 15 or later on the publisher, every published table on the subscriber
        with the published columns and without rows (checked before anything is made; the task
        fails listing every problem), and the publisher role may connect for replication and
        read the published tables, as a subscription's role does. Not with O(two_phase). With
        O(failover) the copy's slot is created as a failover slot (PostgreSQL 17 or later on the
        publisher).
      - When the copy fails, the module cancels it, empties again the tables it had filled,
        drops the subscription and the slot, and fails saying so. A run killed during the copy
        leaves the disabled, marked subscription; the next run (with either O(initial_copy))
        empties its tables, drops it with its slot and creates it again (RV(recovered)).
        A session advisory lock on the subscriber keeps a second run from doing that while a
        copy is still going on.
      - Only for creation (also the re-creation of O(on_lost_slot=rebuild)); tables added later
        by a refresh are copied by the table synchronisation workers.
    type: str
    choices: [tablesync, snapshot]
    default: tablesync
  copy_jobs:
    description: With O(initial_copy=snapshot), how many tables are copied at the same time.
    type: int
    default: 2
  on_lost_slot:
    description:
      - What to do when the subscription's replication slot on the publisher has been
        invalidated (C(pg_replication_slots.wal_status = 'lost'), for example after
        C(max_slot_wal_keep_size) was exceeded while the subscriber was down) or no longer
        exists. Such a subscription can never resume; the changes it missed are gone.
      - V(ignore) does not look (the module does not connect to the publisher).
      - V(fail) connects to the publisher as the subscription does (read-only, also in check
        mode), and fails naming the slot when it is lost. When the publisher cannot be reached it
        warns and goes on.
      - V(rebuild) re-creates such a subscription - in one transaction on the subscriber it is
        disabled, detached from its slot and dropped, and its target tables (those of the
        subscription and those its publications publish that exist here) are emptied with
        C(TRUNCATE); then the dead slot is dropped on the publisher, and the subscription is
        created again with O(publisher) and O(publications), copying every row. Interrupted
        after the first step, the next run creates the subscription (and drops a lost slot
        of the same name that is in the way).
      - V(rebuild) needs O(publisher) and O(publications). C(TRUNCATE) fails (and nothing
        changes) when a table outside the set references a target table with a foreign key.
    type: str
    choices: [ignore, fail, rebuild]
    default: ignore
  empty_added_tables:
    description:
      - Before a refresh (O(state=refreshed), or a publication change with O(refresh)) starts
        copying tables newly published to an existing subscription, empty those of them that
        exist here with C(TRUNCATE) (one transaction, before the refresh), so each copy starts
        from an empty table and the target equals the source afterwards. Rows found there
        are leftovers of an earlier subscription of the table, for example of a table whose
        row filter changed (see O(tablesync.postgresql.pg_publication#module:changed_tables));
        copied onto them, a table with a key would fail its copy on the first duplicate and
        one without would hold both.
      - The module reads the publisher's C(pg_publication_tables) as the subscription connects
        (not in check mode). C(TRUNCATE) fails, and nothing changes, when a table outside the
        set references one of them with a foreign key.
      - V(false) leaves the tables as they are.
    type: bool
    default: false
notes:
  - "Options that can be changed in place: O(publisher), O(publications), O(enabled),
    O(slot_name), O(synchronous_commit), O(binary), O(streaming), O(disable_on_error),
    O(origin), O(run_as_owner), O(password_required), O(failover), O(owner), O(comment), and
    O(two_phase) from PostgreSQL 18. O(create_slot), O(copy_data) and O(connect) only act when
    the subscription is created (and O(copy_data) on refresh); they are never reported as
    differences."
  - Options are compared only when given; unset options keep their current value.
  - An option that differs but cannot be changed on the server's version (O(two_phase) before
    PostgreSQL 18) fails the task before anything is changed, naming the option, its current
    value and the version that can change it; re-create the subscription to change it.
  - Each option fails the task with the PostgreSQL version it needs when the server is older.
  - C(CREATE SUBSCRIPTION) that creates a slot, C(DROP SUBSCRIPTION) of a subscription with a slot,
    publication changes with refresh, C(REFRESH PUBLICATION) and C(SET) of O(failover) or O(two_phase) run
    outside a transaction block, as PostgreSQL requires; the other statements of a run are
    applied in one transaction.
  - The module never connects to the publisher itself, except with O(on_lost_slot=fail) or
    O(on_lost_slot=rebuild) (to read the slot, and to drop a dead one); the subscriber server
    does, when a statement needs it. In check mode no statement runs.
  - Recognising an unreachable publisher on O(state=absent) relies on PostgreSQL's English error
    text (C(could not connect to publisher)); with a translated C(lc_messages) the task fails
    with PostgreSQL's hint instead.
seealso:
  - name: CREATE SUBSCRIPTION
    description: PostgreSQL reference of the options.
    link: https://www.postgresql.org/docs/current/sql-createsubscription.html
  - name: ALTER SUBSCRIPTION
    description: What can be changed in place.
    link: https://www.postgresql.org/docs/current/sql-altersubscription.html
  - module: tablesync.postgresql.pg_publication
author:
  - tablesync maintainers (@tablesync)
'''

EXAMPLES = r'''
- name: Subscribe to the orders publication and wait for the initial copy
  tablesync.postgresql.pg_subscription:
    login_db: shop_replica
    name: tablesync_orders
    publications: [tablesync_orders]
    publisher:
      host: 10.0.0.10
      port: 5432
      dbname: shop
      user: tablesync_replication
      password: "{{ vault_tablesync_replication_password }}"
      sslmode: require
    wait_for_sync: true
    wait_timeout: 600

- name: Tune an existing subscription in place (PostgreSQL 16)
  tablesync.postgresql.pg_subscription:
    login_db: shop_replica
    name: tablesync_orders
    streaming: parallel
    binary: true
    disable_on_error: true
    origin: none
    comment: orders from the shop primary

- name: Subscribe to tables newly added to the publications
  tablesync.postgresql.pg_subscription:
    login_db: shop_replica
    name: tablesync_orders
    state: refreshed
    wait_for_sync: true
  register: refreshed

- name: Show the tables the refresh added
  ansible.builtin.debug:
    var: refreshed.tables_added

- name: Create the subscription without touching the publisher (slot made separately)
  tablesync.postgresql.pg_subscription:
    login_db: shop_replica
    name: tablesync_orders
    publications: [tablesync_orders]
    publisher:
      host: 10.0.0.10
      dbname: shop
      user: tablesync_replication
      passfile: /var/lib/postgresql/.pgpass
      options:
        keepalives_idle: 30
    connect: false

- name: Skip the transaction the apply worker fails on (finish LSN from the server log)
  tablesync.postgresql.pg_subscription:
    login_db: shop_replica
    name: tablesync_orders
    skip_lsn: 0/14C0378

- name: Subscribe and copy the existing rows in the slot's snapshot (large tables)
  tablesync.postgresql.pg_subscription:
    login_db: shop_replica
    name: tablesync_orders
    publications: [tablesync_orders]
    publisher:
      host: 10.0.0.10
      dbname: shop
      user: tablesync_replication
      password: "{{ vault_tablesync_replication_password }}"
    initial_copy: snapshot
    copy_jobs: 4
  register: created

- name: Show rows and seconds per table
  ansible.builtin.debug:
    var: created.initial_copy.tables

- name: Re-create the subscription when its slot was lost on the publisher
  tablesync.postgresql.pg_subscription:
    login_db: shop_replica
    name: tablesync_orders
    publications: [tablesync_orders]
    publisher:
      host: 10.0.0.10
      dbname: shop
      user: tablesync_replication
      password: "{{ vault_tablesync_replication_password }}"
    on_lost_slot: rebuild
    wait_for_sync: true

- name: Drop the subscription, also when the publisher is gone
  tablesync.postgresql.pg_subscription:
    login_db: shop_replica
    name: tablesync_orders
    state: absent
  register: dropped

- name: Remind to drop the slot left on the publisher
  ansible.builtin.debug:
    msg: "Drop slot {{ dropped.slot_left_behind.name }} on {{ dropped.slot_left_behind.host }}"
  when: dropped.slot_left_behind is not none
'''

RETURN = r'''
queries:
  description: Statements run (or, in check mode, that would run); the publisher password masked.
  returned: always
  type: list
  elements: str
  sample:
    - >-
      CREATE SUBSCRIPTION "tablesync_orders" CONNECTION 'dbname=shop host=10.0.0.10
      password=******** port=5432 user=tablesync_replication' PUBLICATION "tablesync_orders"
exists:
  description: Whether the subscription exists after the run (in check mode, would exist).
  returned: always
  type: bool
  sample: true
subscription:
  description:
    - The subscription as read from the catalog after the run (in check mode, the current one);
      empty when it does not exist.
  returned: always
  type: dict
  contains:
    name:
      description: Subscription name.
      type: str
    owner:
      description: Owning role.
      type: str
    comment:
      description: Comment, or null.
      type: str
    enabled:
      description: Whether it is enabled.
      type: bool
    slot_name:
      description: Replication slot on the publisher, C(NONE) for none.
      type: str
    publications:
      description: Publications, sorted.
      type: list
      elements: str
    publisher:
      description:
        - The stored connection parsed into keywords, password masked; null when the role may
          not read C(subconninfo) or it could not be parsed.
      type: dict
      sample: {host: 10.0.0.10, port: '5432', dbname: shop, user: repl, password: '********'}
    skip_lsn:
      description: >-
        The pending C(ALTER SUBSCRIPTION ... SKIP) LSN (PostgreSQL 15 or later), null when
        none.
      type: str
    options:
      description: The other options stored for the subscription on this server version.
      type: dict
      sample: {synchronous_commit: 'off', binary: false, streaming: 'off', two_phase: false,
               disable_on_error: false}
    tables:
      description: Tables of the subscription with their synchronisation state.
      type: list
      elements: dict
      contains:
        name:
          description: C(schema.table).
          type: str
        state:
          description: >-
            V(initialize), V(data copy), V(finished copy), V(synchronized) or V(ready).
          type: str
        state_code:
          description: C(srsubstate) as stored (C(i), C(d), C(f), C(s), C(r)).
          type: str
    workers:
      description: Running workers from C(pg_stat_subscription).
      type: list
      elements: dict
      contains:
        type:
          description: V(apply), V(parallel apply) or V(table synchronization).
          type: str
        pid:
          description: Process id.
          type: int
        table:
          description: Table of a table synchronization worker, else null.
          type: str
        received_lsn:
          description: Last WAL location received.
          type: str
        latest_end_lsn:
          description: Last WAL location reported to the publisher.
          type: str
    errors:
      description:
        - Row of C(pg_stat_subscription_stats) (PostgreSQL 15 or later, else null), with
          C(apply_error_count), C(sync_error_count), C(stats_reset) and, from 18, conflict counts.
      type: dict
slot_left_behind:
  description:
    - With O(state=absent), the replication slot left on an unreachable publisher, and where it
      is; drop it there with the function C(pg_drop_replication_slot). Null when nothing was left behind.
    - C(sync_slots_prefix) is set when tables were still synchronising; their table
      synchronisation slots (names starting with it) may be left too.
  returned: when O(state=absent)
  type: dict
  sample: {name: tablesync_orders, host: 10.0.0.10, port: '5432', dbname: shop,
           sync_slots_prefix: null}
rebuilt:
  description:
    - With O(on_lost_slot=rebuild), the subscription re-created because its slot was lost (in
      check mode, that would be) - the slot, V(lost) or V(missing), and the tables emptied
      before the copy. Null when nothing was rebuilt.
  returned: when O(state) is not V(absent)
  type: dict
  sample: {slot: tablesync_orders_1a2b3c4d, status: lost, tables_emptied: [sales.orders]}
recovered:
  description:
    - A subscription left disabled and marked by a snapshot copy that did not finish (the
      module was killed), which this run dropped with its slot before creating it again, and
      the tables it emptied. Null when there was none.
  returned: when O(state) is not V(absent)
  type: dict
  sample: {tables_emptied: [sales.orders]}
initial_copy:
  description:
    - With O(initial_copy=snapshot), the copy this run made before enabling the subscription -
      the slot, the LSN of its snapshot, and per table the rows copied, the seconds it took,
      how many indexes were dropped and built again, and the indexes kept (with why).
    - Null when no snapshot copy ran (also in check mode).
  returned: when O(state) is not V(absent)
  type: dict
  sample:
    slot: tablesync_orders
    consistent_lsn: 0/1A2B3C8
    tables:
      - {name: sales.orders, rows: 10000000, format: binary, seconds: 21.4, indexes_rebuilt: 3,
         indexes_kept: []}
tables_added:
  description: Tables the run added to the subscription (created it, changed publications, refresh).
  returned: when O(state) is not V(absent), not in check mode
  type: list
  elements: str
  sample: [sales.returns]
tables_emptied:
  description: Tables emptied before a refresh copied them (O(empty_added_tables)).
  returned: when O(state) is not V(absent)
  type: list
  elements: str
  sample: [sales.shipments]
tables_removed:
  description: Tables the run removed from the subscription.
  returned: when O(state) is not V(absent), not in check mode
  type: list
  elements: str
  sample: []
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, ensure_psycopg2, redact_text, remote_server_argument_spec,
    require_version, server_version)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.conninfo import (
    ConninfoError, secrets_of)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import (
    ExecutionError, Executor)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import NameError_
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.subscription import (
    SLOT_NONE, SubscriptionError, drop_statement, desired_from_params, invalidation_cause, lost_slot_status, plan,
    plan_detach_and_drop, plan_rebuild, refreshes_with_publication_change, refresh_skipped,
    required_versions, secret_variants, tables_to_empty, truncate_statement)
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.subscription_status import (
    SYNC_ERRORS_TOLERATED, catalog_query, classify_drop_error, current_from_row, diff_summaries,
    password_changed, predict, slot_left_behind, summarize, error_total, sync_failure_message,
    sync_status, table_progress)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.conninfo import build_conninfo
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.snapshot_copy import (
    LOCK_CLASS, LOCK_QUERY, METHODS as COPY_METHODS, SnapshotCopyError, check_copy_options,
    finish_statements, is_interrupted, recovery_statements, slot_command, snapshot_desired,
    uses_snapshot)
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.snapshot_copier import (
    ON_PUBLISHER, SnapshotCopier)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Statement, render)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG15

try:
    import psycopg2
    import psycopg2.extras
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by ensure_psycopg2()
    psycopg2 = None

POLL_INTERVAL = 0.5
# how long a rebuild waits for the dead slot to be released (the apply worker was just stopped)
SLOT_RELEASE_TIMEOUT = 30
PUBLISHER_CONNECT_TIMEOUT = 10

# On the publisher, as the subscription's own role: its slot, and the tables its publications
# publish (both views are readable by every role).
# Every column the server's view has (invalidation_reason is 17+), as one JSON object.
SLOT_QUERY = ("SELECT pg_catalog.to_jsonb(s) AS slot FROM pg_catalog.pg_replication_slots s "
              "WHERE slot_name = %s")
PUBLISHED_TABLES_QUERY = ("SELECT DISTINCT schemaname, tablename FROM pg_catalog.pg_publication_tables "
                          "WHERE pubname = ANY(%s) ORDER BY 1, 2")
# On the subscriber: the tables a rebuild empties (the subscription's and the published ones
# that exist here).
LOCAL_TABLES_QUERY = (
    "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND (c.oid IN (SELECT r.srrelid FROM "
    "pg_catalog.pg_subscription_rel r WHERE r.srsubid = %s) OR (n.nspname, c.relname) IN "
    "(SELECT * FROM unnest(%s::text[], %s::text[]))) ORDER BY 1, 2")


def publisher_argument_spec():
    """The shared remote-server suboptions, with the libpq keywords a subscription also stores."""
    spec = remote_server_argument_spec(required=False)
    spec['options'].update(
        sslrootcert=dict(type='str'),
        passfile=dict(type='str', no_log=False),
        application_name=dict(type='str'),
        connect_timeout=dict(type='int'),
        options=dict(type='dict'),
    )
    return spec


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent', 'refreshed']),
        publications=dict(type='list', elements='str'),
        publisher=publisher_argument_spec(),
        enabled=dict(type='bool'),
        slot_name=dict(type='str'),
        create_slot=dict(type='bool'),
        copy_data=dict(type='bool'),
        connect=dict(type='bool'),
        synchronous_commit=dict(type='raw'),
        binary=dict(type='bool'),
        streaming=dict(type='raw'),
        two_phase=dict(type='bool'),
        disable_on_error=dict(type='bool'),
        origin=dict(type='str', choices=['any', 'none']),
        run_as_owner=dict(type='bool'),
        password_required=dict(type='bool', no_log=False),
        failover=dict(type='bool'),
        owner=dict(type='str'),
        comment=dict(type='str'),
        refresh=dict(type='bool', default=True),
        wait_for_sync=dict(type='bool', default=False),
        wait_timeout=dict(type='int', default=300),
        skip_lsn=dict(type='str'),
        on_lost_slot=dict(type='str', default='ignore', choices=['ignore', 'fail', 'rebuild']),
        initial_copy=dict(type='str', default='tablesync', choices=list(COPY_METHODS)),
        copy_jobs=dict(type='int', default=2),
        empty_added_tables=dict(type='bool', default=False),
    )
    return spec


class SubscriptionCatalog(object):
    """Reads one subscription with catalog_query() on the module's connection.

    Every read ends its transaction, so each poll of wait_for_sync sees fresh statistics.
    """

    PRIVILEGES = ("SELECT pg_catalog.has_column_privilege('pg_catalog.pg_subscription', "
                  "'subconninfo', 'SELECT') AS conninfo_readable, "
                  "pg_catalog.has_table_privilege('pg_catalog.pg_replication_origin_status', "
                  "'SELECT') AS origin_readable, current_user AS session_user")

    def __init__(self, conn, version):
        self.conn = conn
        self.version = version
        row = self._fetch_one(sql.SQL(self.PRIVILEGES))
        self.conninfo_readable = row['conninfo_readable']
        self.origin_readable = row['origin_readable']
        self.session_user = row['session_user']

    def read(self, name):
        """The current-state dict of subscription ``name`` in this database, or None."""
        row = self._fetch_one(catalog_query(self.version, self.conninfo_readable,
                                            self.origin_readable), (name,))
        return current_from_row(row, self.version)

    def local_tables(self, oid, published):
        """[(schema, table)] of the subscription (by oid, may be None) and of ``published``
        that exist in this database."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(LOCAL_TABLES_QUERY, (oid, [p[0] for p in published],
                                                 [p[1] for p in published]))
                return [tuple(r) for r in cur.fetchall()]
        finally:
            self.conn.rollback()

    def _fetch_one(self, query, params=None):
        try:
            with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(query, params)
                return cur.fetchone()
        finally:
            self.conn.rollback()


class SubscriptionTask(object):
    """One run of the module: read, plan, execute, wait, report."""

    def __init__(self, module, conn, version, desired):
        self.module = module
        self.version = version
        self.desired = desired
        self.name = desired['name']
        self.conn = conn
        self.catalog = SubscriptionCatalog(conn, version)
        self.executor = Executor(conn, module.check_mode)
        if desired['publisher'] is not None:
            self.executor.add_secrets(*desired['publisher'].secrets)
        self.result = {}
        self.planned = []
        self.refresh_appended = False
        # a subscription this run creates copies its rows in the slot's snapshot
        self.snapshot = desired['state'] != 'absent' and uses_snapshot(
            module.params['initial_copy'], desired['options'])

    # -- helpers ------------------------------------------------------------------------------
    def fail(self, msg, **extra):
        result = dict(changed=self.executor.changed, queries=self.executor.queries)
        result.update(extra)
        self.module.fail_json(msg=self.executor.redact(msg), **result)

    def warn(self, msg):
        self.module.warn(self.executor.redact(msg))

    def read(self):
        current = self.catalog.read(self.name)
        if current is not None and current['publisher'] is not None:
            self.executor.add_secrets(*secret_variants(secrets_of(current['publisher'].params)))
        return current

    def execute(self, statements):
        notices_before = len(self.conn.notices)
        self.executor.run(statements)
        self.executor.commit()
        for notice in self.conn.notices[notices_before:]:
            if notice.startswith('WARNING'):
                self.warn('PostgreSQL: %s' % notice.strip())

    # -- the run ------------------------------------------------------------------------------
    def run(self):
        current = original = self.read()
        self.check_conninfo_readable(current)
        self.result['recovered'] = None
        if self.desired['state'] != 'absent' and is_interrupted(current):
            self.recover_interrupted(current)
            current = None
        lost = None
        if self.desired['state'] != 'absent' and self.desired['on_lost_slot'] != 'ignore':
            lost = self.check_slot(current)
        first = []
        try:
            if lost is not None:
                tables = self.catalog.local_tables(current['oid'] if current else None,
                                                   lost['published'])
                first, self.planned = plan_rebuild(self.desired, current, tables) \
                    if current is not None else ([], plan(self.desired, None, self.version))
                lost['tables_emptied'] = ['%s.%s' % t for t in tables] if current else []
                if self.snapshot:
                    self.planned = plan(snapshot_desired(self.desired), None, self.version)
            elif current is None and self.snapshot:
                self.planned = plan(snapshot_desired(self.desired), None, self.version)
            else:
                self.planned = plan(self.desired, current, self.version)
        except (SubscriptionError, SnapshotCopyError) as e:
            self.fail(str(e))
        self.refresh_appended = (lost is None and self.desired['state'] == 'refreshed'
                                 and current is not None
                                 and not refreshes_with_publication_change(self.desired, current))
        if self.desired['state'] == 'absent':
            self.drop(current, self.planned)
            final = None
        elif lost is not None:
            self.rebuild(lost, first)
            final = self.settle(None)
        else:
            self.apply(current, self.planned)
            final = self.settle(current)
        self.result.setdefault('initial_copy', None)
        self.result.setdefault('tables_emptied', [])
        self.result['rebuilt'] = None if lost is None else dict(
            (k, lost[k]) for k in ('slot', 'status', 'tables_emptied'))
        self.report(original, final)
        return self.result

    # -- a replication slot the publisher has lost ---------------------------------------------
    def publisher_connection(self, current):
        """A connection to the publisher as the subscription connects, or (None, why)."""
        conninfo = self.desired['publisher'] or (current or {}).get('publisher')
        if conninfo is None:
            return None, 'the publisher connection is not known (give publisher, or read ' \
                         'pg_subscription.subconninfo as a superuser)'
        params = dict(conninfo.params)
        params.setdefault('connect_timeout', PUBLISHER_CONNECT_TIMEOUT)
        params['application_name'] = 'tablesync.postgresql pg_subscription'
        try:
            conn = psycopg2.connect(build_conninfo(params))
        except psycopg2.Error as e:
            return None, 'could not connect to the publisher: %s' % str(e).strip()
        conn.autocommit = True
        return conn, None

    def check_slot(self, current):
        """None when the slot is usable (or cannot be checked: a warning says why); else
        {slot, status: lost | missing, published: [(schema, table)]}; on_lost_slot=fail fails.

        Without a subscription only a lost slot of the name it would use counts (a leftover
        of an interrupted rebuild, in the way of CREATE SUBSCRIPTION)."""
        mode = self.desired['on_lost_slot']
        if current is None:
            if mode != 'rebuild':
                return None
            slot = self.desired['options'].get('slot_name', self.name)
        else:
            slot = current['options'].get('slot_name')
        if slot in (None, SLOT_NONE):
            return None
        conn, problem = self.publisher_connection(current)
        if conn is None:
            msg = 'Could not check replication slot %s of subscription %s: %s' % (slot, self.name, problem)
            if mode == 'rebuild':
                self.fail(msg)
            self.warn(msg)
            return None
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(SLOT_QUERY, (slot,))
                row = cur.fetchone()
                row = row['slot'] if row else None
                status = lost_slot_status(row)
                if current is None and status != 'lost':
                    return None
                publications = self.desired['publications'] or (current or {}).get('publications') or []
                cur.execute(PUBLISHED_TABLES_QUERY, (list(publications),))
                published = [(r['schemaname'], r['tablename']) for r in cur.fetchall()]
        except psycopg2.Error as e:
            self.fail('Could not read replication slot %s on the publisher of subscription %s: %s'
                      % (slot, self.name, str(e).strip()))
        finally:
            conn.close()
        if status is None:
            return None
        what = ('was invalidated (%s)' % invalidation_cause(row) if status == 'lost' else 'does not exist')
        if mode == 'fail':
            self.fail('The replication slot %s of subscription %s %s on the publisher: the '
                      'subscription has missed changes and cannot resume. Re-create it with '
                      'on_lost_slot=rebuild (role logical_subscriber: -e '
                      'logical_subscriber_on_lost_slot=rebuild), which empties its target tables '
                      'and copies them again.' % (slot, self.name, what),
                      lost_slot={'slot': slot, 'status': status,
                                 'reason': (row or {}).get('invalidation_reason')})
        self.warn('The replication slot %s of subscription %s %s on the publisher: the '
                  'subscription is re-created and its tables copied again (on_lost_slot=rebuild).'
                  % (slot, self.name, what))
        return {'slot': slot, 'status': status, 'published': published, 'tables_emptied': []}

    def rebuild(self, lost, first):
        """Drop the subscription and empty its tables (one transaction), drop the dead slot on
        the publisher, create the subscription again."""
        try:
            self.execute(first)
        except ExecutionError as e:
            self.fail('Could not drop subscription %s to rebuild it: %s' % (self.name, e.msg))
        if lost['status'] == 'lost':
            self.drop_publisher_slot(lost['slot'])
        if self.snapshot:
            self.create_with_snapshot(self.planned)
            return
        try:
            self.execute(self.planned)
        except ExecutionError as e:
            self.fail('Subscription %s was dropped and its tables emptied, but creating it again '
                      'failed: %s (run again to retry)' % (self.name, e.msg))

    # -- the initial copy in the slot's snapshot --------------------------------------------------
    def failover_slot(self):
        """The copy's slot is the subscription's: a failover slot when the subscription is one."""
        return self.desired['options'].get('failover') is True

    def create_with_snapshot(self, statements):
        """Slot with an exported snapshot; the subscription on it, disabled and marked; the copy
        in the snapshot; then enabled with its real comment (``statements``: planned with
        snapshot_desired()). A failure is undone; a run killed midway leaves the marker, which
        the next run finds (recover_interrupted)."""
        slot = self.planned_slot()
        finish = finish_statements(self.desired)
        if self.module.check_mode:
            self.executor.queries.append(render(Statement(slot_command(slot, self.failover_slot()))) + ON_PUBLISHER)
            self.executor.run(statements)
            self.executor.queries.append('-- COPY of every published table in the snapshot of '
                                         'slot %s' % slot)
            self.executor.run(finish)
            return
        copier = SnapshotCopier(self.desired['publisher'].params, self.conn,
                                lambda: connect(self.module), self.version,
                                self.executor.queries.append, self.executor.redact)
        jobs = self.module.params['copy_jobs']
        try:
            plans = copier.plan(self.desired['publications'], slot)
        except SnapshotCopyError as e:
            self.fail('Could not create subscription %s: %s' % (self.name, e))
        self.lock_copy()
        try:
            copier.create_slot(slot, jobs, len(plans), self.failover_slot())
        except SnapshotCopyError as e:
            self.fail('Could not create subscription %s: %s' % (self.name, copier.undo(str(e))))
        try:
            self.execute(statements)
        except ExecutionError as e:
            copier.release()
            self.fail(copier.undo('Could not create subscription %s on the copy\'s slot: %s'
                                  % (self.name, e.msg)))
        copier.slot_owned_by_subscription()
        try:
            self.result['initial_copy'] = copier.copy_tables(plans)
        except SnapshotCopyError as e:
            self.fail(self.drop_after_failed_copy(copier.undo(
                'Could not copy the tables of subscription %s: %s' % (self.name, e))))
        try:
            self.execute(finish)
        except ExecutionError as e:
            self.fail('Subscription %s: the copy is complete, but enabling the subscription '
                      'failed: %s (it stays marked as copying: the next run drops it, empties '
                      'its tables and copies again)' % (self.name, e.msg))

    def lock_copy(self):
        """Only one run copies a subscription: a session advisory lock, released when the
        module's connection closes (also when the process is killed)."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(LOCK_QUERY, (LOCK_CLASS, self.name))
                acquired = cur.fetchone()[0]
            self.conn.commit()
        except psycopg2.Error as e:
            self.fail('Could not take the copy lock of subscription %s: %s'
                      % (self.name, str(e).strip()))
        if not acquired:
            self.fail('Another run is copying the tables of subscription %s right now (it holds '
                      'advisory lock (%d, hashtext(%r)) on the subscriber); try again when it '
                      'has finished.' % (self.name, LOCK_CLASS, self.name))

    def drop_after_failed_copy(self, message):
        """DROP SUBSCRIPTION (and its slot) after a failed copy; the message, completed."""
        deadline = time.time() + SLOT_RELEASE_TIMEOUT
        while True:
            try:
                self.execute([drop_statement(self.name, True)])
                return message.rstrip('.') + '; subscription %s was dropped with its slot.' \
                    % self.name
            except ExecutionError as e:
                # the walsender of the closed replication connection may hold the slot a moment
                if 'is active' in e.msg and time.time() < deadline:
                    time.sleep(POLL_INTERVAL)
                    continue
                return message.rstrip('.') + ('; subscription %s could NOT be dropped (%s): it '
                                              'stays disabled and marked, and the next run drops '
                                              'it, empties its tables and copies again.'
                                              % (self.name, e.msg))

    def recover_interrupted(self, current):
        """A subscription left by a snapshot copy that never finished: empty its tables, drop it
        with its slot; the caller then creates it again."""
        self.lock_copy()
        tables = self.catalog.local_tables(current['oid'], [])
        self.warn('Subscription %s was left disabled by a snapshot copy that did not finish: it '
                  'is dropped with its replication slot, its tables (%s) are emptied, and it is '
                  'created again.' % (self.name, ', '.join('%s.%s' % t for t in tables) or
                                      'none'))
        self.result['recovered'] = dict(tables_emptied=['%s.%s' % t for t in tables])
        try:
            self.execute(recovery_statements(self.name, current, tables))
        except ExecutionError as e:
            self.fail('Could not drop subscription %s, left by an interrupted snapshot copy: %s'
                      % (self.name, e.msg))

    def planned_slot(self):
        return self.desired['options'].get('slot_name', self.name)

    def drop_publisher_slot(self, slot):
        # slot names are lower-case letters, digits and underscores: safe to show quoted
        self.executor.queries.append("SELECT pg_catalog.pg_drop_replication_slot('%s')  -- on the "
                                     "publisher" % slot)
        if self.module.check_mode:
            return
        conn, problem = self.publisher_connection(None)
        if conn is None:
            self.fail('Subscription %s was dropped and its tables emptied, but its dead slot %s '
                      'could not be dropped on the publisher: %s (run again to retry)'
                      % (self.name, slot, problem))
        deadline = time.time() + SLOT_RELEASE_TIMEOUT
        try:
            while True:
                try:
                    with conn.cursor() as cur:
                        cur.execute('SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM '
                                    'pg_catalog.pg_replication_slots WHERE slot_name = %s', (slot,))
                    return
                except psycopg2.Error as e:
                    # the walsender of the stopped apply worker may still hold it a moment
                    if 'is active' not in str(e) or time.time() > deadline:
                        self.fail('Could not drop the dead replication slot %s on the publisher '
                                  'of subscription %s: %s' % (slot, self.name, str(e).strip()))
                    time.sleep(POLL_INTERVAL)
        finally:
            conn.close()

    def check_conninfo_readable(self, current):
        status = current['conninfo_status'] if current is not None else 'ok'
        managed = self.desired['publisher'] is not None
        if status == 'unreadable' and managed:
            self.warn('Role %s may not read pg_subscription.subconninfo, so the publisher '
                      'connection of subscription %s cannot be compared and was not changed '
                      '(connect as a superuser, or GRANT SELECT (subconninfo) ON '
                      'pg_catalog.pg_subscription).' % (self.catalog.session_user, self.name))
        elif status == 'unparseable':
            self.warn('The stored connection string of subscription %s could not be parsed%s.'
                      % (self.name, '; it is replaced by the one built from publisher'
                         if managed else ''))

    def apply(self, current, statements):
        if current is None and self.snapshot:
            self.create_with_snapshot(statements)
            return
        if refresh_skipped(self.desired, current):
            self.warn('Subscription %s is disabled, so its table list was not refreshed after the '
                      'publication change; enable it and run with state=refreshed.' % self.name)
        self.result['tables_emptied'] = []
        if (current is not None and self.module.params['empty_added_tables']
                and not self.module.check_mode
                and (self.refresh_appended or refreshes_with_publication_change(self.desired, current))):
            self.empty_added(current)
        try:
            self.execute(statements)
        except ExecutionError as e:
            self.fail('Could not change subscription %s: %s' % (self.name, e.msg))

    def empty_added(self, current):
        """TRUNCATE the local tables that the coming refresh will start to copy (published, not
        yet subscribed), in one transaction before it (empty_added_tables)."""
        conn, problem = self.publisher_connection(current)
        if conn is None:
            self.fail('Subscription %s: cannot tell which tables the refresh will copy: %s'
                      % (self.name, problem))
        publications = self.desired['publications'] or current['publications']
        try:
            with conn.cursor() as cur:
                cur.execute(PUBLISHED_TABLES_QUERY, (list(publications),))
                published = [tuple(r) for r in cur.fetchall()]
        except psycopg2.Error as e:
            self.fail('Subscription %s: could not read the published tables on the publisher: %s'
                      % (self.name, str(e).strip()))
        finally:
            conn.close()
        added = tables_to_empty(published, current['tables'])
        local = set(self.catalog.local_tables(None, added)) if added else set()
        tables = [t for t in added if t in local]
        if not tables:
            return
        try:
            self.execute([truncate_statement(tables)])
        except ExecutionError as e:
            self.fail('Subscription %s: nothing was changed; emptying the tables the refresh '
                      'will copy failed: %s' % (self.name, e.msg))
        self.result['tables_emptied'] = ['%s.%s' % t for t in tables]

    def drop(self, current, statements):
        """DROP SUBSCRIPTION; without the slot when the publisher is unreachable or lost it."""
        self.result['slot_left_behind'] = None
        try:
            self.execute(statements)
        except ExecutionError as e:
            kind = classify_drop_error(e.msg)
            if kind is None:
                self.fail('Could not drop subscription %s: %s' % (self.name, e.msg))
            self.drop_detached(current, kind, e.msg)

    def drop_detached(self, current, kind, first_error):
        try:
            self.execute(plan_detach_and_drop(self.name, current))
        except ExecutionError as e:
            self.fail('Could not drop subscription %s without its slot: %s (first attempt: %s)'
                      % (self.name, e.msg, first_error))
        if kind == 'unreachable':
            left = slot_left_behind(current)
            self.result['slot_left_behind'] = left
            if left:
                self.warn('The publisher of subscription %s was unreachable, so replication slot '
                          '%s was left on it (host %s, port %s, database %s) and keeps WAL there '
                          'until it is dropped: SELECT pg_drop_replication_slot(%r).'
                          % (self.name, left['name'], left['host'], left['port'], left['dbname'],
                             left['name']))
        else:
            self.warn('The replication slot of subscription %s did not exist on the publisher; '
                      'the subscription was dropped without it.' % self.name)

    def settle(self, current):
        """The state after the changes: waited for when asked, re-read unless in check mode."""
        if self.module.check_mode:
            return predict(self.desired, current, self.version, self.catalog.session_user)
        baseline = current['errors'] if current is not None else None
        if self.module.params['wait_for_sync']:
            return self.wait_for_sync(baseline)
        return self.read()

    def wait_for_sync(self, baseline):
        timeout = self.module.params['wait_timeout']
        start = time.time()
        progress = None
        transient = 0
        while True:
            current = self.read()
            if table_progress(current) != progress:
                # tables moved on: errors counted so far were transient (the workers retried)
                if progress is not None and current is not None:
                    transient += error_total(current['errors']) - error_total(baseline)
                    baseline = current['errors']
                progress = table_progress(current)
            status, reason = sync_status(current, baseline, SYNC_ERRORS_TOLERATED)
            if status == 'done':
                if transient > 0:
                    self.warn('Subscription %s synchronised after %d transient worker error(s) '
                              '(pg_stat_subscription_stats; the text is in the subscriber\'s '
                              'server log).' % (self.name, transient))
                return current
            waited = time.time() - start
            if status == 'failed' or waited >= timeout:
                if status != 'failed':
                    reason = 'timed out (%s)' % reason
                self.fail(sync_failure_message(self.name, current, reason, waited),
                          subscription=self.public_state(current), exists=current is not None)
            time.sleep(min(POLL_INTERVAL, max(timeout - waited, 0.05)))

    @staticmethod
    def public_state(current):
        """The returned ``subscription``: the display summary plus tables, workers, errors."""
        if current is None:
            return {}
        state = summarize(current)
        state['tables'] = current['tables']
        state['workers'] = current['workers']
        state['errors'] = current['errors']
        return state

    def report(self, current, final):
        before, after = diff_summaries(current, final,
                                       password_changed(self.desired, current)
                                       and self.executor.changed)
        self.result.update(
            changed=self.changed(current, final),
            queries=self.executor.queries,
            exists=final is not None,
            diff=dict(before=before, after=after),
            subscription=self.public_state(current if self.module.check_mode else final),
        )
        if self.desired['state'] != 'absent' and not self.module.check_mode:
            had = set(t['name'] for t in (current or {}).get('tables', []))
            has = set(t['name'] for t in final['tables'])
            self.result['tables_added'] = sorted(has - had)
            self.result['tables_removed'] = sorted(had - has)
            self.check_created_with_tables(current, final)

    def check_created_with_tables(self, current, final):
        """PostgreSQL 15 and later warn about missing publications themselves."""
        if current is None and not final['tables'] and self.version < PG15 \
                and self.desired['options'].get('connect') is not False:
            self.warn('Subscription %s has no tables: its publications publish none, or do not '
                      'exist on the publisher.' % self.name)

    def changed(self, current, final):
        """A refresh on its own is a change only when it added or removed tables."""
        if not self.refresh_appended or self.module.check_mode:
            return self.executor.changed
        tables_before = set(t['name'] for t in current['tables'])
        tables_after = set(t['name'] for t in final['tables'])
        return len(self.planned) > 1 or tables_before != tables_after


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    ensure_psycopg2(module)
    try:
        desired = desired_from_params(module.params)
        if module.params['initial_copy'] == 'snapshot':
            check_copy_options(desired['options'], module.params['copy_jobs'])
    except (SubscriptionError, NameError_, ConninfoError, SnapshotCopyError) as e:
        module.fail_json(msg=str(e))
    conn = connect(module)
    try:
        version = server_version(conn)
        gates = required_versions(desired)
        if desired['state'] == 'absent':
            gates = gates[:1]
        for minimum, feature in gates:
            require_version(module, conn, minimum, feature)
        try:
            result = SubscriptionTask(module, conn, version, desired).run()
        except psycopg2.Error as e:
            # catalog reads only: statements fail through the executor, with secrets redacted
            secrets = [module.params.get('login_password')]
            if desired['publisher'] is not None:
                secrets.extend(desired['publisher'].secrets)
            module.fail_json(msg='Could not read subscription %s: %s'
                             % (desired['name'], redact_text(str(e).strip(), secrets)))
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
