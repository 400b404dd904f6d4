#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_settings
short_description: Set PostgreSQL server settings with ALTER SYSTEM, report needed restarts
version_added: 0.1.0
description:
  - Sets server configuration parameters with C(ALTER SYSTEM), which writes them to
    C(postgresql.auto.conf), reloads the configuration when something changed, and reports the
    settings that wait for a server restart (for example C(wal_level)).
  - Values are compared the way PostgreSQL reads them, so a task is idempotent whatever the
    spelling - units (C(10GB) equals a C(min_wal_size) of C(10240) MB, C(1GB) equals a
    C(shared_buffers) of C(131072) 8kB blocks), booleans (C(on), C(true), C(yes), C(1)), enum
    values in any case, list values element by element.
  - A setting is compared with the value the server will use after a reload or restart (its
    entry in the configuration files, from C(pg_file_settings)), so a second run after a change
    that waits for a restart reports C(changed=false) and still RV(restart_required=true).
  - All values are validated before anything is written (type, unit, range, enum choices); a
    value the server still refuses makes the module restore the settings it already wrote.
    Either all settings are written or none.
  - The module never restarts the server; act on RV(restart_required) (for example with a
    handler).
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
options:
  settings:
    description:
      - Setting name to value, as PostgreSQL accepts them in C(postgresql.conf). Units are
        allowed (C('10GB'), C('5min')); booleans may be YAML booleans.
      - A value written postgresql.conf-style in single quotes (C("'*'")) is unquoted.
      - List settings (C(shared_preload_libraries), C(search_path), C(listen_addresses), ...)
        take a YAML list or a comma-separated string; elements are taken literally (case is
        preserved), double quotes around an element are removed.
      - V(null) removes the setting from C(postgresql.auto.conf) (C(ALTER SYSTEM RESET)), so
        C(postgresql.conf) or the built-in default applies again.
      - Setting names are case-insensitive; unknown names make the module fail, naming all of
        them.
    type: dict
    required: true
  at_least:
    description:
      - Names of integer settings in O(settings) whose value is a lower bound, not an exact
        value - a value the server has or is configured to that is at or above it is kept
        (no change, no restart). For capacity limits (C(max_wal_senders),
        C(max_replication_slots), worker counts) that must never be lowered by a restart.
      - Naming a setting that is not an integer fails the task.
    type: list
    elements: str
    default: []
  state:
    description:
      - Only V(present) is supported; use a V(null) value to remove a setting.
    type: str
    choices: [present]
    default: present
attributes:
  check_mode:
    support: full
    description: Nothing is written or reloaded; RV(restart_required) predicts whether the
      changes would need a restart (a differing setting of context C(postmaster)).
  diff_mode:
    support: full
    description: Shows each managed setting before and after (as configured, else as
      running) and the settings waiting for a restart.
notes:
  - Needs a superuser, or on PostgreSQL 15 and later a role granted C(ALTER SYSTEM) on the
    parameters. Reading the configured values (C(pg_file_settings)) needs a superuser or
    C(pg_read_all_settings); without it the running values are compared, so a change waiting
    for a restart is written again on every run, and a warning says so.
  - C(ALTER SYSTEM) cannot run in a transaction; when the server refuses a value after other
    settings were already written, those are restored to their previous
    C(postgresql.auto.conf) entries before the module fails.
  - Real (floating point) values are compared with the six significant digits PostgreSQL
    shows.
seealso:
  - name: ALTER SYSTEM
    description: The PostgreSQL command the module runs.
    link: https://www.postgresql.org/docs/current/sql-altersystem.html
  - name: pg_settings
    description: Setting types, units, contexts and the pending_restart flag.
    link: https://www.postgresql.org/docs/current/view-pg-settings.html
'''

EXAMPLES = r'''
- name: Logical replication prerequisites
  tablesync.postgresql.pg_settings:
    settings:
      wal_level: logical
      max_replication_slots: 10
      max_wal_senders: 10
      max_slot_wal_keep_size: 10GB
  register: pg_conf

- name: Restart now when a setting waits for it
  ansible.builtin.service:
    name: postgresql
    state: restarted
  when: pg_conf.restart_required

- name: Lists, booleans and units
  tablesync.postgresql.pg_settings:
    login_host: db1.example.com
    login_user: postgres
    login_password: "{{ vault_pg_password }}"
    settings:
      listen_addresses: '*'
      shared_preload_libraries: [pg_stat_statements, auto_explain]
      log_connections: true
      checkpoint_timeout: 15min

- name: Remove a setting from postgresql.auto.conf again
  tablesync.postgresql.pg_settings:
    settings:
      work_mem: null
'''

RETURN = r'''
settings:
  description: The effective (running) value of each managed setting as C(SHOW) shows it,
    keyed as in O(settings). In check mode the values before any change.
  returned: success
  type: dict
  sample: {"wal_level": "replica", "max_slot_wal_keep_size": "10GB", "work_mem": "4MB"}
restart_required:
  description: Whether a managed setting waits for a server restart to take effect, including
    one changed by an earlier run or by someone else and never restarted. In check mode, the
    prediction.
  returned: success
  type: bool
  sample: true
pending_restart:
  description: Names (as in O(settings)) of the managed settings that wait for a restart.
  returned: success
  type: list
  elements: str
  sample: [wal_level]
queries:
  description: Statements run (in check mode, that would run), in order.
  returned: success
  type: list
  elements: str
  sample: ["ALTER SYSTEM SET \"wal_level\" = 'logical'", "SELECT pg_catalog.pg_reload_conf()"]
diff:
  description: The managed settings before and after (as configured, else as running), and the
    settings waiting for a restart.
  returned: success
  type: dict
  contains:
    before:
      description: State before the task.
      type: dict
      returned: success
    after:
      description: State after the task (predicted in check mode).
      type: dict
      returned: success
  sample:
    before: {"settings": {"wal_level": "replica"}, "pending_restart": []}
    after: {"settings": {"wal_level": "logical"}, "pending_restart": ["wal_level"]}
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec, error_text)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import (
    ExecutionError, Executor)
from ansible_collections.tablesync.postgresql.plugins.module_utils.server.settings import (
    FILES, NO_FILES, SETTINGS_QUERY, Setting, SettingsError, plan_settings, reload_statement,
    waits_for_restart)

try:
    import psycopg2
    import psycopg2.errors  # noqa: F401 pylint: disable=unused-import
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = sql = None

RELOAD_WAIT_SECONDS = 10


class ServerSettings(object):
    """The managed settings as the server has them (pg_settings + pg_file_settings), read in
    one parameterised query. ``settings``: name as given -> Setting, or None when unknown."""

    def __init__(self, conn, names):
        self.conn = conn
        self.names = list(names)
        self.settings = {}
        self.files_readable = True
        self.conf_load_time = None

    def read(self):
        try:
            rows = self._fetch(FILES)
        except psycopg2.errors.InsufficientPrivilege:
            self.conn.rollback()
            self.files_readable = False
            rows = self._fetch(NO_FILES)
        self.conn.rollback()  # read-only; end the transaction
        self.settings = dict((row['key'], Setting.from_row(row)) for row in rows)
        if rows:
            self.conf_load_time = rows[0]['conf_load_time']
        return self

    def _fetch(self, files):
        query = sql.SQL(SETTINGS_QUERY).format(files=sql.SQL(files))
        with self.conn.cursor() as cur:
            cur.execute(query, {'names': self.names})
            columns = [d[0] for d in cur.description]
            return [dict(zip(columns, row)) for row in cur.fetchall()]

    def shown(self):
        return dict((key, s.shown) for key, s in self.settings.items())

    def displayed(self):
        return dict((key, s.display) for key, s in self.settings.items())

    def waiting_for_restart(self):
        return [key for key, s in self.settings.items() if waits_for_restart(s)]


def wait_for_reload(conn, since, timeout=RELOAD_WAIT_SECONDS):
    """Wait until this session has re-read the configuration files after pg_reload_conf()
    (each statement boundary processes the pending SIGHUP), so pg_settings shows the result."""
    deadline = time.time() + timeout
    while True:
        with conn.cursor() as cur:
            cur.execute('SELECT pg_catalog.pg_conf_load_time() > %s', (since,))
            reloaded = cur.fetchone()[0]
        conn.rollback()
        if reloaded or time.time() > deadline:
            return bool(reloaded)
        time.sleep(0.05)


def undo(executor, applied):
    """Restore the settings already written, newest first; the names that could not be."""
    failed = []
    for change in reversed(applied):
        try:
            executor.run([change.restore])
        except ExecutionError:
            failed.append(change.key)
    return failed


def apply(module, executor, plan):
    applied = []
    try:
        for change in plan.changes:
            executor.run([change.statement])
            applied.append(change)
        if plan.reload_needed:
            executor.run([reload_statement()])
            executor.commit()
    except ExecutionError as e:
        failed = undo(executor, applied)
        restored = [c.key for c in applied if c.key not in failed]
        msg = 'Could not change the settings: %s.' % e.msg.rstrip('.')
        if restored:
            msg += ' Restored the settings already written (%s).' % ', '.join(restored)
        if failed:
            msg += ' Could NOT restore %s: check postgresql.auto.conf.' % ', '.join(failed)
        module.fail_json(msg=msg, queries=executor.queries)


def warn_about(module, server):
    if not server.files_readable:
        module.warn('login_user cannot read pg_file_settings (needs superuser or '
                    'pg_read_all_settings): the running values are compared, so a change that '
                    'waits for a restart is written again on every run.')
    for key, setting in server.settings.items():
        if setting is not None and setting.source == 'command line':
            module.warn('%s is set on the server command line, which overrides ALTER SYSTEM.'
                        % key)


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        settings=dict(type='dict', required=True),
        at_least=dict(type='list', elements='str', default=[]),
        state=dict(type='str', default='present', choices=['present']),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    desired = module.params['settings']
    conn = connect(module)
    try:
        before = ServerSettings(conn, desired).read()
        warn_about(module, before)
        try:
            plan = plan_settings(desired, before.settings, before.files_readable,
                                 module.params['at_least'])
        except SettingsError as e:
            module.fail_json(msg=str(e), problems=e.problems)
        executor = Executor(conn, module.check_mode)
        apply(module, executor, plan)
        if module.check_mode or not plan.reload_needed:
            after_values, pending = plan.predicted()
            shown = before.shown()
        else:
            if not wait_for_reload(conn, before.conf_load_time):
                module.warn('The server did not confirm the configuration reload within %d '
                            'seconds; the values returned may be outdated.'
                            % RELOAD_WAIT_SECONDS)
            # a new session shows backend-context settings (log_connections...) as well
            conn.close()
            conn = connect(module)
            after = ServerSettings(conn, desired).read()
            after_values, pending, shown = after.displayed(), after.waiting_for_restart(), \
                after.shown()
    except psycopg2.Error as e:  # catalog reads; statements fail through the executor
        module.fail_json(msg='Cannot read the settings: %s' % error_text(e, module.params, ()))
    finally:
        conn.close()
    module.exit_json(
        changed=executor.changed,
        settings=shown,
        restart_required=bool(pending),
        pending_restart=pending,
        queries=executor.queries,
        diff=dict(before=dict(settings=before.displayed(),
                              pending_restart=before.waiting_for_restart()),
                  after=dict(settings=after_values, pending_restart=pending)),
    )


if __name__ == '__main__':
    main()
