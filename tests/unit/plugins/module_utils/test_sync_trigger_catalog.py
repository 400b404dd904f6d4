"""pg_sync_trigger's catalog helpers and option checks (no database)."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.modules import pg_sync_trigger as m
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError


def test_trigger_arguments_are_decoded_from_tgargs_hex():
    raw = b's1\x00queued\x001\x00K\xc3\xa9y "id"\x00'
    assert m.decode_trigger_args(raw.hex()) == ['s1', 'queued', '1', 'Kéy "id"']
    assert m.decode_trigger_args('') == []


def params(**kw):
    base = dict((k, None) for k in m.argument_spec())
    base.update(name='s1', state='present', tables=['t'], mode='queued', batch_size=1000,
                backfill=False, flush=False, force=False, verify_target=True)
    base.update(kw)
    return base


def test_options_are_checked_before_connecting():
    with pytest.raises(PlanError, match='batch_size must be at least 1'):
        m.spec_from_params(params(batch_size=0))
    with pytest.raises(PlanError, match='not a valid sync set name'):
        m.spec_from_params(params(name='Bad-Name'))
    spec = m.spec_from_params(params(state='absent', tables=['not.a.valid.name']))
    assert spec.tables == [] and spec.server == 'tablesync_s1'


def test_catalog_queries_take_parameters_only():
    for query in (m.ENVIRONMENT_QUERY, m.TABLES_QUERY, m.SET_QUERY, m.BACKLOG_QUERY):
        assert '%(' in query and "'%s'" not in query


def _plan_with_backfill():
    from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import planner as st
    from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.capture import BackfillStatement
    the_plan = st.Plan()
    first = st.verify_statement('s1')
    backfill = BackfillStatement('s1', 1, ('public', 't'), False, ['id'],
                                 {'id': ('pg_catalog', 'int4out')})
    drain = st.drain_statement('s1')
    the_plan.statements = [first, backfill, drain]
    the_plan.backfills = [('public.t', backfill)]
    the_plan.drains = [drain]
    return the_plan, first, backfill, drain


def test_failure_messages_say_what_state_the_set_is_in():
    from ansible_collections.tablesync.postgresql.plugins.module_utils.core.executor import ExecutionError
    from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render
    the_plan, first, backfill, drain = _plan_with_backfill()

    def message(statement):
        return m.failure_message(ExecutionError('boom', render(statement)), the_plan)

    assert message(first) == 'Nothing was changed: boom'
    assert 'next run retries the backfill' in message(backfill)
    assert 'discard them with force: true' in message(drain)
