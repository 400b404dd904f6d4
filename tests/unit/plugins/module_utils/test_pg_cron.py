"""pg_cron scheduling of the flushes (pg_cron_jobs): schedules from time spans, the job of a
set, the version and grant checks, and the plan from the login's current jobs."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render_all
from ansible_collections.tablesync.postgresql.plugins.module_utils.schedule.pg_cron import (
    check_schedule, cron_schedule, flush_job, history_job, paused_jobs, plan_jobs, refresh_job, span_seconds,
    version_problem)


@pytest.mark.parametrize('span,seconds', [('30s', 30), ('45', 45), ('1min 30s', 90), ('5 min', 300),
                                          ('2h', 7200), ('1d', 86400), ('500ms', 0.5)])
def test_time_spans(span, seconds):
    assert span_seconds(span) == seconds


@pytest.mark.parametrize('span', ['', 'soon', '5 fortnights', '-5s', '1.5s'])
def test_what_is_not_a_time_span(span):
    with pytest.raises(PlanError):
        span_seconds(span)


@pytest.mark.parametrize('span,schedule', [
    ('1s', '1 seconds'), ('30s', '30 seconds'), ('59s', '59 seconds'), ('60s', '* * * * *'),
    ('1min', '* * * * *'), ('5min', '*/5 * * * *'), ('30min', '*/30 * * * *'),
    ('1h', '0 * * * *'), ('6h', '0 */6 * * *'), ('24h', '0 0 * * *'), ('1d', '0 0 * * *')])
def test_schedules(span, schedule):
    assert cron_schedule(span) == schedule


@pytest.mark.parametrize('span', ['90s', '7min', '45min', '5h', '2d', '500ms', '0s'])
def test_spans_pg_cron_cannot_express_are_refused_naming_what_it_can(span):
    with pytest.raises(PlanError) as e:
        cron_schedule(span)
    assert 'has no pg_cron schedule' in str(e.value) and '1 to 59 seconds' in str(e.value)


def test_the_job_of_a_set():
    job = flush_job('orders_2', 'shop', '10s')
    assert job == {'name': 'tablesync-flush-orders_2', 'database': 'shop', 'schedule': '10 seconds',
                   'command': "CALL tablesync.flush('orders_2')"}


@pytest.mark.parametrize('name', ["o'rders", 'history-purge', 'Orders', ''])
def test_a_name_that_is_no_set_name_is_refused(name):
    with pytest.raises(PlanError) as e:
        flush_job(name, 'shop', '10s')
    assert 'not a valid sync set name' in str(e.value)


def test_the_history_purge_job_deletes_only_old_runs_of_the_flush_jobs():
    job = history_job('tablesync-flush-', 'postgres', 7)
    assert job['name'] == 'tablesync-flush-history-purge' and job['database'] == 'postgres'
    assert job['schedule'] == '17 3 * * *'
    assert job['command'] == (
        "DELETE FROM cron.job_run_details d USING cron.job j WHERE d.jobid = j.jobid "
        "AND j.username = current_user AND pg_catalog.left(j.jobname, 16) = 'tablesync-flush-' "
        "AND d.end_time < pg_catalog.now() - pg_catalog.make_interval(days => 7)")


def test_version_and_grant_problems():
    jobs = [flush_job('orders', 'shop', '30s')]
    assert version_problem([], None, 'postgres', 'admin', False) is None
    assert 'pg_cron is not installed in database postgres' in version_problem(jobs, None, 'postgres', 'admin', True)
    assert 'requires pg_cron 1.4' in version_problem(jobs, '1.3', 'postgres', 'admin', True)
    assert 'requires pg_cron 1.5' in version_problem(jobs, '1.4', 'postgres', 'admin', True)
    assert version_problem([flush_job('orders', 'shop', '1min')], '1.4', 'postgres', 'admin', True) is None
    assert 'GRANT USAGE ON SCHEMA cron TO admin; GRANT EXECUTE ON FUNCTION cron.schedule_in_database(' \
        in version_problem(jobs, '1.6', 'postgres', 'admin', False)
    assert version_problem(jobs, '1.6', 'postgres', 'admin', True) is None


def current(name, **changes):
    job = dict(jobid=7, jobname='tablesync-flush-' + name, schedule='30 seconds',
               command="CALL tablesync.flush('%s')" % name, database='shop', active=True)
    job.update(changes)
    return job


def test_plan_schedules_the_new_and_leaves_the_equal():
    desired = [flush_job('orders', 'shop', '30s'), flush_job('returns', 'shop', '1min')]
    assert render_all(plan_jobs(desired, [current('orders')])) == [
        "SELECT cron.schedule_in_database('tablesync-flush-returns', '* * * * *', "
        "'CALL tablesync.flush(''returns'')', 'shop')"]
    assert plan_jobs(desired[:1], [current('orders')]) == []


@pytest.mark.parametrize('change', [dict(schedule='* * * * *'), dict(database='shop_old'),
                                    dict(command='SELECT 1')])
def test_plan_updates_a_changed_job_in_place(change):
    out = render_all(plan_jobs([flush_job('orders', 'shop', '30s')], [current('orders', **change)]))
    assert out == ["SELECT cron.schedule_in_database('tablesync-flush-orders', '30 seconds', "
                   "'CALL tablesync.flush(''orders'')', 'shop')"]


def test_a_paused_job_stays_paused_and_is_named():
    desired = [flush_job('orders', 'shop', '30s')]
    paused = [current('orders', active=False), current('old', active=False)]
    assert render_all(plan_jobs(desired, paused)) == [
        "SELECT cron.unschedule(job_name := 'tablesync-flush-old')"]
    assert paused_jobs(desired, paused) == ['tablesync-flush-orders']


def test_plan_unschedules_the_jobs_no_set_wants():
    out = render_all(plan_jobs([], [current('orders'), current('old', jobid=9)]))
    assert out == ["SELECT cron.unschedule(job_name := 'tablesync-flush-old')",
                   "SELECT cron.unschedule(job_name := 'tablesync-flush-orders')"]


def test_the_refresh_job_of_an_fdw_set_quotes_each_copy():
    job = refresh_job('stock', 'shop_live', '*/15 * * * *',
                      [{'name': 'sales.stock', 'concurrently': True},
                       {'name': '"odd.schema".Items', 'concurrently': False}])
    assert job == {'name': 'tablesync-refresh-stock', 'database': 'shop_live', 'schedule': '*/15 * * * *',
                   'command': 'REFRESH MATERIALIZED VIEW CONCURRENTLY "sales"."stock"; '
                              'REFRESH MATERIALIZED VIEW "odd.schema"."Items"'}
    assert history_job('tablesync-refresh-', 'postgres', 3)['name'] == 'tablesync-refresh-history-purge'
    with pytest.raises(PlanError):
        refresh_job('stock', 'shop_live', '*/15 * * * *', [])


@pytest.mark.parametrize('schedule', ['*/15 * * * *', '0 3 * * 1', '30 seconds', '1 second', '@hourly'])
def test_cron_schedules_pass(schedule):
    assert check_schedule(schedule) == schedule


@pytest.mark.parametrize('schedule', ['*:0/15', 'hourly', '60 seconds', '* * * *'])
def test_what_pg_cron_does_not_read_is_refused(schedule):
    with pytest.raises(PlanError) as e:
        check_schedule(schedule)
    assert 'is not a pg_cron schedule' in str(e.value)
