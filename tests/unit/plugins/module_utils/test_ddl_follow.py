# -*- coding: utf-8 -*-
"""Planner of pg_schema_follow (objects wanted vs present -> statements), offline."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render_all
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.ddl_follow import FollowState, plan
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.ddl_follow_sql import FUNCTIONS, SIDES


def installed(side, **kw):
    functions = dict((n, (FUNCTIONS[n][4], True, False)) for n in SIDES[side])
    values = dict(schema=True, functions=functions, queue=True, queues=['shop'], monitor_ok=True,
                  event_trigger='O' if side == 'source' else None, apply_trigger='A' if side == 'target' else None)
    values.update(kw)
    return FollowState(**values)


def test_fresh_source_gets_everything_least_privilege_first():
    statements, changes = plan('source', 'shop', 'present',
                               FollowState(unbaselined=[('sales', 'orders')], role_can_read=False), 'repl')
    text = render_all(statements)
    assert text[:2] == ['CREATE SCHEMA "tablesync_ddl"', 'REVOKE ALL ON SCHEMA "tablesync_ddl" FROM PUBLIC']
    for name in SIDES['source']:
        create = [t for t in text if t.startswith('CREATE OR REPLACE FUNCTION "tablesync_ddl"."%s"' % name)]
        assert len(create) == 1 and 'SECURITY DEFINER SET search_path = pg_catalog, pg_temp' in create[0]
        assert 'REVOKE ALL ON FUNCTION "tablesync_ddl"."%s" FROM PUBLIC' % name in text
    assert any('GENERATED ALWAYS AS IDENTITY' in t for t in text)
    assert 'REVOKE ALL ON TABLE "tablesync_ddl"."shop" FROM PUBLIC' in text
    assert any(t.startswith('CREATE EVENT TRIGGER "tablesync_ddl_capture" ON ddl_command_end') for t in text)
    assert 'GRANT SELECT ON TABLE "tablesync_ddl"."shop" TO "repl"' in text
    assert "ARRAY['sales']" in text[-1] and "'tablesync_shop'" in text[-1]
    assert changes[-1] == 'baseline of 1 table(s)'


def test_installed_source_and_target_need_nothing():
    for side in ('source', 'target'):
        assert plan(side, 'shop', 'present', installed(side)) == ([], [])


def test_changed_body_and_public_execute_are_repaired():
    state = installed('target')
    state.functions['apply'] = ('old body', True, False)
    state.functions['widening'] = (FUNCTIONS['widening'][4], True, True)
    text = render_all(plan('target', 'shop', 'present', state)[0])
    assert [t.split('(')[0] for t in text if t.startswith('CREATE')] == [
        'CREATE OR REPLACE FUNCTION "tablesync_ddl"."widening"', 'CREATE OR REPLACE FUNCTION "tablesync_ddl"."apply"']


def test_target_trigger_fires_in_the_apply_worker():
    text = render_all(plan('target', 'shop', 'present', installed('target', apply_trigger=None))[0])
    assert text == ['CREATE TRIGGER "tablesync_ddl_apply" AFTER INSERT ON "tablesync_ddl"."shop" FOR EACH ROW '
                    'EXECUTE FUNCTION "tablesync_ddl"."apply"()',
                    'ALTER TABLE "tablesync_ddl"."shop" ENABLE ALWAYS TRIGGER "tablesync_ddl_apply"']
    assert render_all(plan('target', 'shop', 'present', installed('target', apply_trigger='O'))[0]) == text[1:]


def test_absent_keeps_shared_objects_while_another_set_uses_them():
    shared = installed('source', queues=['shop', 'other'])
    assert render_all(plan('source', 'shop', 'absent', shared)[0]) == ['DROP TABLE "tablesync_ddl"."shop"']
    last = render_all(plan('source', 'shop', 'absent', installed('source'))[0])
    assert last == ['DROP TABLE "tablesync_ddl"."shop"', 'DROP EVENT TRIGGER "tablesync_ddl_capture"',
                    'DROP SCHEMA "tablesync_ddl" CASCADE']
    assert plan('source', 'shop', 'absent', FollowState()) == ([], [])


def test_bodies_spell_the_names_of_core_names():
    from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import DDL_SCHEMA, PREFIX
    assert DDL_SCHEMA == 'tablesync_ddl' and PREFIX == 'tablesync_'
    assert "pt.pubname = 'tablesync_' || q.relname" in FUNCTIONS['capture'][4]


def test_trigger_target_gets_the_functions_and_a_grant_but_no_queue():
    statements, changes = plan('trigger_target', None, 'present', FollowState(role_can_read=False), 'writer')
    text = render_all(statements)
    created = [t.split('(')[0] for t in text if t.startswith('CREATE OR REPLACE FUNCTION')]
    assert created == ['CREATE OR REPLACE FUNCTION "tablesync_ddl"."%s"' % n for n in SIDES['trigger_target']]
    assert 'follow_table' in SIDES['trigger_target'] and 'apply' not in SIDES['trigger_target']
    assert not any('CREATE TABLE' in t or 'TRIGGER' in t for t in text)
    assert text[-2:] == ['GRANT USAGE ON SCHEMA "tablesync_ddl" TO "writer"',
                         'GRANT EXECUTE ON FUNCTION "tablesync_ddl"."follow_table"(text, jsonb, jsonb) TO "writer"']
    assert changes[-1] == 'EXECUTE on tablesync_ddl.follow_table for writer'
    done = installed('trigger_target', queue=False, queues=[], apply_trigger=None)
    assert plan('trigger_target', None, 'present', done, 'writer') == ([], [])


def test_the_logical_apply_and_the_trigger_flush_share_one_follow_function():
    from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.ddl_follow_sql import APPLY, FOLLOW_TABLE
    assert 'PERFORM tablesync_ddl.follow(rel, prev, NEW.columns)' in APPLY
    assert 'PERFORM tablesync_ddl.follow(rel, p_prev, p_columns)' in FOLLOW_TABLE
    assert "has_table_privilege(session_user, rel, 'INSERT')" in FOLLOW_TABLE
