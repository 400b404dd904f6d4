# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's periodic work scheduled in pg_cron (pg_cron_jobs): pure parts.

Where a server has no shell for a systemd timer (a database-only host, docs/managed.md) but has
pg_cron, as most managed services do, the periodic work of a sync set runs as a pg_cron job of
the connected login: the flush of a queued trigger set (``tablesync-flush-<set>``,
``CALL tablesync.flush('<set>')`` in its source database) and the refresh of an fdw set's local
copies (``tablesync-refresh-<set>``, ``REFRESH MATERIALIZED VIEW`` of each copy in the consumer
database). The jobs live in pg_cron's database (``cron.database_name``) and belong to the login
that schedules them (pg_cron runs a job as its owner; only a superuser may name another). Each
kind of job has its name prefix, managed by its own role: one never touches the other's jobs.

* ``cron_schedule(span)``: a systemd time span (the flush_interval of the roles) as a pg_cron
  schedule, or a PlanError naming the spans pg_cron can express.
* ``flush_job(set_name, database, interval)``, ``refresh_job(set_name, database, schedule,
  copies)``: the desired job of one set.
* ``history_job(prefix, database, days)``: pg_cron never deletes its run history
  (``cron.job_run_details``: a row per run, 2,880 a day for a flush every 30 seconds); a daily
  job deletes the rows of the login's jobs of that prefix older than ``days``. Its name cannot be
  a set's job name (set names have no ``-``).
* ``plan_jobs(desired, current)``: the statements that turn the login's current tablesync jobs
  into the desired ones (schedule the new, alter the changed or paused, unschedule the stale).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import parse_qualified
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import check_set_name
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Statement, render, sql)

FLUSH_PREFIX = 'tablesync-flush-'
REFRESH_PREFIX = 'tablesync-refresh-'
HISTORY_SUFFIX = 'history-purge'
HISTORY_SCHEDULE = '17 3 * * *'
# The interval form ('[1-59] seconds') came with pg_cron 1.5; schedule_in_database with 1.4.
SECONDS_VERSION = (1, 5)
MINIMUM_VERSION = (1, 4)

# CURRENT_USER's jobs named with one of the prefixes (cron.job has row security: a login that
# is not a superuser sees only its own; a superuser sees every job, hence the username filter).
JOBS_QUERY = """
SELECT j.jobid, j.jobname, j.schedule, j.command, j.database, j.active
  FROM cron.job j
 WHERE j.username = current_user
   AND EXISTS (SELECT 1 FROM pg_catalog.unnest(%(prefixes)s::text[]) p
                WHERE pg_catalog.left(j.jobname, pg_catalog.length(p)) = p)
 ORDER BY j.jobname
"""

# pg_cron in this database (its version) and whether the login may use it: USAGE on its schema
# and EXECUTE on cron.schedule_in_database, which pg_cron revokes from PUBLIC (the
# administrator decides who may schedule in other databases).
SCHEDULE_FUNCTION = 'cron.schedule_in_database(text,text,text,text,text,boolean)'
EXTENSION_QUERY = """
SELECT (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_cron') AS version,
       pg_catalog.current_database() AS database, current_user AS login,
       coalesce((SELECT pg_catalog.has_schema_privilege(n.oid, 'USAGE')
                   AND pg_catalog.has_function_privilege(
                         pg_catalog.to_regprocedure(%(function)s), 'EXECUTE')
                   FROM pg_catalog.pg_namespace n WHERE n.nspname = 'cron'), false) AS usable
"""

_UNITS = {'us': 1e-6, 'usec': 1e-6, 'ms': 1e-3, 'msec': 1e-3, 's': 1, 'sec': 1, 'second': 1,
          'seconds': 1, 'm': 60, 'min': 60, 'minute': 60, 'minutes': 60, 'h': 3600, 'hr': 3600,
          'hour': 3600, 'hours': 3600, 'd': 86400, 'day': 86400, 'days': 86400,
          'w': 604800, 'week': 604800, 'weeks': 604800}
_PART = re.compile(r'\s*([0-9]+)\s*([a-z]*)\s*')


def span_seconds(span):
    """A systemd time span ('30s', '5min', '1h 30min', '45' = seconds) in seconds."""
    text = str(span).strip().lower()
    total = 0.0
    pos = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m or m.end() == pos or (m.group(2) and m.group(2) not in _UNITS):
            raise PlanError('%r is not a time span (such as 30s, 5min or 1h)' % (span,))
        total += int(m.group(1)) * _UNITS[m.group(2) or 's']
        pos = m.end()
    if not text:
        raise PlanError('an empty time span')
    return total


def cron_schedule(span):
    """The pg_cron schedule that runs every ``span``: 1-59 seconds as pg_cron's interval form,
    minutes that divide an hour, hours that divide a day, or one day."""
    seconds = span_seconds(span)
    if seconds >= 1 and seconds == int(seconds):
        seconds = int(seconds)
        if 1 <= seconds <= 59:
            return '%d seconds' % seconds
        if seconds % 60 == 0 and 60 % (seconds // 60) == 0 and seconds < 3600:
            minutes = seconds // 60
            return '* * * * *' if minutes == 1 else '*/%d * * * *' % minutes
        if seconds % 3600 == 0 and 24 % (seconds // 3600) == 0 and seconds < 86400:
            hours = seconds // 3600
            return '0 * * * *' if hours == 1 else '0 */%d * * *' % hours
        if seconds == 86400:
            return '0 0 * * *'
    raise PlanError('the interval %r has no pg_cron schedule: use 1 to 59 seconds, a number of '
                    'minutes that divides an hour, of hours that divides a day, or 1d' % (span,))


def flush_command(set_name):
    """The command of a set's flush job (the set name as a literal, never spliced)."""
    return render(Statement(sql.SQL('CALL tablesync.flush({})').format(sql.Literal(set_name))))


def flush_job(set_name, database, interval):
    return dict(name=FLUSH_PREFIX + check_set_name(set_name), database=database,
                schedule=cron_schedule(interval), command=flush_command(set_name))


def refresh_command(copies):
    """REFRESH MATERIALIZED VIEW [CONCURRENTLY] of each copy ({name: 'schema.table',
    concurrently}), identifiers quoted: pg_cron runs them in one transaction."""
    parts = []
    for copy in copies:
        schema, name = parse_qualified(copy['name'])
        parts.append(sql.SQL('REFRESH MATERIALIZED VIEW {}{}').format(
            sql.SQL('CONCURRENTLY ' if copy.get('concurrently') else ''), sql.Identifier(schema, name)))
    if not parts:
        raise PlanError('a refresh job needs at least one copy')
    return render(Statement(sql.SQL('; ').join(parts)))


def check_schedule(schedule):
    """A cron schedule as pg_cron reads it (five fields, or '[1-59] seconds'), or PlanError."""
    text = str(schedule).strip()
    if re.match(r'^([1-9]|[1-5][0-9]) seconds?$', text) or len(text.split()) == 5 \
            or re.match(r'^@(yearly|annually|monthly|weekly|daily|hourly)$', text):
        return text
    raise PlanError('%r is not a pg_cron schedule: five cron fields (minute hour day month '
                    'weekday, such as */15 * * * *), @hourly or @daily, or 1 to 59 seconds'
                    % (schedule,))


def refresh_job(set_name, database, schedule, copies):
    return dict(name=REFRESH_PREFIX + check_set_name(set_name), database=database,
                schedule=check_schedule(schedule), command=refresh_command(copies))


def history_job(prefix, database, days):
    """The daily purge of the run history of the login's jobs named with ``prefix`` older than
    ``days`` (in pg_cron's database, as the login: row security lets it see and delete only
    its own runs)."""
    command = render(Statement(sql.SQL(
        'DELETE FROM cron.job_run_details d USING cron.job j WHERE d.jobid = j.jobid '
        'AND j.username = current_user AND pg_catalog.left(j.jobname, {}) = {} '
        'AND d.end_time < pg_catalog.now() - pg_catalog.make_interval(days => {})').format(
            sql.Literal(len(prefix)), sql.Literal(prefix), sql.Literal(int(days)))))
    return dict(name=prefix + HISTORY_SUFFIX, database=database, schedule=HISTORY_SCHEDULE,
                command=command)


def parse_version(text):
    """'1.6' -> (1, 6); None (pg_cron absent) -> None."""
    if text is None:
        return None
    return tuple(int(p) for p in re.findall(r'[0-9]+', text)[:2])


def version_problem(desired, version_text, database, login, usable):
    """Why the desired jobs cannot be scheduled here (None when they can, or when nothing is
    desired and so nothing must be read)."""
    if not desired:
        return None
    version = parse_version(version_text)
    if version is None:
        return ('pg_cron is not installed in database %s (the database pg_cron keeps its jobs in, '
                'cron.database_name): the provider installs it (shared_preload_libraries = '
                'pg_cron, then CREATE EXTENSION pg_cron there); when cron.database_name names '
                'another database, connect to that one (login_db)' % database)
    if version < MINIMUM_VERSION:
        return 'scheduling a job in another database requires pg_cron 1.4 or later; %s has %s' % (
            database, version_text)
    seconds = sorted(j['schedule'] for j in desired if 'second' in j['schedule'])
    if seconds and version < SECONDS_VERSION:
        return ('the schedule %r requires pg_cron 1.5 or later (%s has %s); use an interval '
                'of whole minutes' % (seconds[0], database, version_text))
    if not usable:
        return ('%s may not schedule pg_cron jobs in other databases: the provider grants it '
                '(GRANT USAGE ON SCHEMA cron TO %s; GRANT EXECUTE ON FUNCTION %s TO %s)'
                % (login, login, SCHEDULE_FUNCTION, login))
    return None


def plan_jobs(desired, current):
    """Statements that make ``current`` (the login's jobs named with the prefixes: dicts with
    jobid, jobname, schedule, command, database, active) equal ``desired`` (dicts with name,
    schedule, command, database). cron.schedule_in_database updates the job of the same name
    and login in place (it keeps its id and whether it is active: a job an operator paused stays
    paused, see paused_jobs); the jobs not desired are unscheduled."""
    by_name = dict((j['jobname'], j) for j in current)
    wanted = set()
    statements = []
    for job in sorted(desired, key=lambda j: j['name']):
        wanted.add(job['name'])
        have = by_name.get(job['name'])
        if have is None:
            statements.append(Statement(
                sql.SQL('SELECT cron.schedule_in_database(%s, %s, %s, %s)'),
                (job['name'], job['schedule'], job['command'], job['database'])))
        elif any(have[k] != job[k] for k in ('schedule', 'command', 'database')):
            statements.append(Statement(
                sql.SQL('SELECT cron.schedule_in_database(%s, %s, %s, %s)'),
                (job['name'], job['schedule'], job['command'], job['database'])))
    for name in sorted(set(by_name) - wanted):
        statements.append(Statement(sql.SQL('SELECT cron.unschedule(job_name := %s)'), (name,)))
    return statements


def paused_jobs(desired, current):
    """The desired jobs that exist paused (cron.job.active false): left so, and named."""
    wanted = set(j['name'] for j in desired)
    return sorted(j['jobname'] for j in current if j['jobname'] in wanted and not j['active'])


def job_view(jobs):
    """Jobs as the diff and the return value show them (name -> schedule, database, command)."""
    return dict((j.get('name', j.get('jobname')), dict(
        schedule=j['schedule'], database=j['database'], command=j['command'],
        active=j.get('active', True))) for j in jobs)
