#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pg_cron_jobs
short_description: Schedule the flushes of trigger sync sets and the refreshes of fdw local copies in pg_cron
version_added: 0.1.0
description:
  - Makes the connected login's pg_cron jobs of each given kind those asked for - for
    O(flushes), the jobs C(tablesync-flush-<set>) that run C(CALL tablesync.flush('<set>')) in
    a queued trigger set's source database; for O(refreshes), the jobs C(tablesync-refresh-<set>)
    that run C(REFRESH MATERIALIZED VIEW) of each local copy of an fdw set in its consumer
    database - scheduling the new ones, changing the changed ones and unscheduling the others of
    that kind. A kind whose option is not given is not
    touched, nor is any job with another name.
  - This is the scheduler where a host has no shell for a systemd timer but its server has
    pg_cron (a database-only host, as on managed services; docs/managed.md). pg_cron runs a job
    as the login that scheduled it, so no password is stored anywhere.
  - Connect to the database pg_cron keeps its jobs in (C(cron.database_name), C(postgres) by
    default) with O(login_db). When nothing is to be scheduled, a server without pg_cron is not
    an error (there is nothing to unschedule).
  - Needs pg_cron 1.4 or later (C(cron.schedule_in_database)), 1.5 or later for schedules under
    a minute, and for the login C(USAGE) on the schema C(cron) and C(EXECUTE) on
    C(cron.schedule_in_database), which pg_cron revokes from C(PUBLIC); fails naming the version
    or the grants, before it changes anything.
  - A job an operator paused (C(cron.alter_job(job_id, active := false))) stays paused, with a
    warning; changed jobs are updated in place (same job id).
author:
  - tablesync maintainers (@tablesync)
extends_documentation_fragment:
  - tablesync.postgresql.connection
options:
  flushes:
    description:
      - The queued trigger sets whose flush pg_cron runs (set names as the collection takes
        them - lower-case letters, digits and underscores). Omitted - the flush jobs are left
        as they are.
    type: list
    elements: dict
    suboptions:
      set:
        description: The sync set's name (as given to M(tablesync.postgresql.pg_sync_trigger)).
        type: str
        required: true
      database:
        description: The set's source database, where the job runs.
        type: str
        required: true
      interval:
        description:
          - Time between two flushes, a systemd time span (V(30s), V(5min), V(1h)). pg_cron
            expresses 1 to 59 seconds, minutes that divide an hour, hours that divide a day, and
            one day; another span fails naming these.
        type: str
        default: 30s
  refreshes:
    description:
      - The fdw sets whose local copies pg_cron refreshes, all copies of a set in one
        transaction. Omitted - the refresh jobs are left as they are.
    type: list
    elements: dict
    suboptions:
      set:
        description: The sync set's name.
        type: str
        required: true
      database:
        description: The consumer database of the copies, where the job runs.
        type: str
        required: true
      schedule:
        description: A pg_cron schedule - five cron fields (V(*/15 * * * *)) or V(1-59 seconds).
        type: str
        default: "*/15 * * * *"
      copies:
        description:
          - The set's copies, as M(tablesync.postgresql.pg_foreign_table_copies) returns them in
            RV(tablesync.postgresql.pg_foreign_table_copies#module:copies) - C(name)
            (C(schema.table)) and C(concurrently) (a unique index allows
            C(REFRESH ... CONCURRENTLY)).
        type: list
        elements: dict
        required: true
  history_days:
    description:
      - pg_cron keeps a row per job run in C(cron.job_run_details) and never deletes it (a flush
        every 30 seconds adds 2,880 rows a day). For each kind with jobs, a daily job
        C(tablesync-flush-history-purge) or C(tablesync-refresh-history-purge) of the login
        deletes that kind's runs older than this many days (not the runs of other jobs).
        V(0) - no purge job.
    type: int
    default: 7
attributes:
  check_mode:
    support: full
    description: The statements are planned and returned in RV(queries); nothing is scheduled.
  diff_mode:
    support: full
    description: Shows the login's jobs of the managed kinds before and after.
notes:
  - The jobs run as the login that schedules them (pg_cron allows only a superuser to name
    another), so that login must be able to run the flush (the trigger roles make it a member of
    the routines' owner role) or own the copies.
  - A job's failures are in C(cron.job_run_details); the flush also records its last error per
    set in C(tablesync.trigger_sets), which M(tablesync.postgresql.pg_sync_info) reports.
'''

EXAMPLES = r'''
- name: Flush the queued set orders every 30 seconds with pg_cron, as the administrator login
  tablesync.postgresql.pg_cron_jobs:
    login_host: shop-db.example.net
    login_user: tablesync_admin
    login_password: "{{ vault_tablesync_admin_password }}"
    login_db: postgres
    ssl_mode: require
    flushes:
      - set: orders
        database: shop
        interval: 30s

- name: Refresh the local copies of the fdw set stock every 15 minutes
  tablesync.postgresql.pg_cron_jobs:
    login_db: postgres
    refreshes:
      - set: stock
        database: reporting
        schedule: "*/15 * * * *"
        copies:
          - {name: sales.stock, concurrently: true}

- name: Unschedule every flush job of this login (no queued set left)
  tablesync.postgresql.pg_cron_jobs:
    login_db: postgres
    flushes: []
'''

RETURN = r'''
jobs:
  description: The login's jobs of the managed kinds after the run (as planned in check mode), by job name.
  returned: success
  type: dict
  sample: {"tablesync-flush-orders": {"schedule": "30 seconds", "database": "shop",
           "command": "CALL tablesync.flush('orders')", "active": true}}
pg_cron_version:
  description: The C(pg_cron) extension's version in O(login_db), or null when it is not installed there.
  returned: success
  type: str
  sample: "1.6"
queries:
  description: The statements run (planned in check mode); they carry no secret.
  returned: always
  type: list
  elements: str
  sample: ["SELECT cron.schedule_in_database('tablesync-flush-orders', '30 seconds', 'CALL tablesync.flush(''orders'')', 'shop')"]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.connection import (
    connect, connection_argument_spec)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import Executor
from ansible_collections.tablesync.postgresql.plugins.module_utils.schedule.pg_cron import (
    EXTENSION_QUERY, FLUSH_PREFIX, JOBS_QUERY, REFRESH_PREFIX, SCHEDULE_FUNCTION, flush_job,
    history_job, job_view, paused_jobs, plan_jobs, refresh_job, version_problem)


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        flushes=dict(type='list', elements='dict', options=dict(
            set=dict(type='str', required=True),
            database=dict(type='str', required=True),
            interval=dict(type='str', default='30s'))),
        refreshes=dict(type='list', elements='dict', options=dict(
            set=dict(type='str', required=True),
            database=dict(type='str', required=True),
            schedule=dict(type='str', default='*/15 * * * *'),
            copies=dict(type='list', elements='dict', required=True))),
        history_days=dict(type='int', default=7))
    return spec


def desired_jobs(params):
    """prefix -> the desired jobs of that kind (only the kinds given), without history jobs."""
    kinds = {}
    if params['flushes'] is not None:
        kinds[FLUSH_PREFIX] = [flush_job(f['set'], f['database'], f['interval'])
                               for f in params['flushes']]
    if params['refreshes'] is not None:
        kinds[REFRESH_PREFIX] = [refresh_job(r['set'], r['database'], r['schedule'], r['copies'])
                                 for r in params['refreshes']]
    return kinds


class CronJobs(object):
    """The login's pg_cron jobs of some name prefixes in the connected database."""

    def __init__(self, conn, prefixes):
        self.conn = conn
        self.prefixes = sorted(prefixes)

    def extension(self):
        with self.conn.cursor() as cur:
            cur.execute(EXTENSION_QUERY, {'function': SCHEDULE_FUNCTION})
            names = [d[0] for d in cur.description]
            return dict(zip(names, cur.fetchone()))

    def current(self):
        with self.conn.cursor() as cur:
            cur.execute(JOBS_QUERY, {'prefixes': self.prefixes})
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[('flushes', 'refreshes')])
    p = module.params
    result = dict(changed=False, queries=[])
    if p['history_days'] < 0:
        module.fail_json(msg='history_days must be 0 (no purge) or more', **result)
    try:
        kinds = desired_jobs(p)
    except TablesyncError as e:
        module.fail_json(msg=str(e), **result)
    for jobs in kinds.values():
        if len(set(j['name'] for j in jobs)) != len(jobs):
            module.fail_json(msg='a set is named more than once', **result)
    conn = connect(module)
    cron = CronJobs(conn, kinds)
    ext = cron.extension()
    result['pg_cron_version'] = ext['version']
    desired = []
    for prefix, jobs in sorted(kinds.items()):
        desired.extend(jobs)
        if jobs and p['history_days'] > 0:
            desired.append(history_job(prefix, ext['database'], p['history_days']))
    problem = version_problem(desired, ext['version'], ext['database'], ext['login'], ext['usable'])
    if problem:
        conn.close()
        module.fail_json(msg=problem, **result)
    current = cron.current() if ext['version'] is not None and ext['usable'] else []
    conn.rollback()
    executor = Executor(conn, module.check_mode)
    try:
        executor.run(plan_jobs(desired, current))
        executor.commit()
    except TablesyncError as e:
        result['queries'] = executor.queries
        module.fail_json(msg=str(e), **result)
    finally:
        conn.close()
    before, after = job_view(current), job_view(desired)
    for name in paused_jobs(desired, current):
        after[name]['active'] = False
        module.warn('pg_cron job %s is paused (cron.job.active is false) and stays so: resume it '
                    'with SELECT cron.alter_job(job_id, active := true) as its login' % name)
    result.update(changed=executor.changed, queries=executor.queries, jobs=after)
    if module._diff:
        result['diff'] = dict(before=dict(jobs=before), after=dict(jobs=after))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
