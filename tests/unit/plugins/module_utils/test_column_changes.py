# -*- coding: utf-8 -*-
"""Following the source's column changes (pg_target_tables schema_changes=follow), offline."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render_all
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.column_changes import widening
from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.target_tables import (
    PlanError, TargetState, plan_changes, table_from_catalog)


def col(name, type_='integer', not_null=False, has_default=False, missing=None, collation=None):
    return {'name': name, 'type': type_, 'not_null': not_null, 'has_default': has_default,
            'missing': missing, 'collation_schema': collation and collation[0],
            'collation': collation and collation[1]}


def table(columns, pk=('t_pkey', ['id'])):
    return table_from_catalog({'schema': 'app', 'name': 'T x', 'kind': 'r', 'columns': columns,
                               'pk_name': pk and pk[0], 'pk_columns': pk and pk[1]})


ID = col('id', 'bigint', True)


def follow(source_cols, target_cols, caught_up=False, source_pk=('t_pkey', ['id'])):
    desired = [table(source_cols, source_pk)]
    return plan_changes(desired, TargetState(['app'], [table(target_cols)]),
                        schema_changes='follow', caught_up=caught_up)


def test_added_column_without_default_is_added_nullable():
    p = follow([ID, col('v'), col('n', 'numeric(12,2)')], [ID, col('v')])
    assert render_all(p.statements) == ['ALTER TABLE "app"."T x" ADD COLUMN "n" numeric(12,2)']
    assert p.column_changes == {'app.T x': {'changes': ['add column n'], 'pending': []}}


def test_added_column_with_default_gets_the_exact_value_of_existing_rows():
    p = follow([ID, col('d', 'timestamp with time zone', True, True, '{"2026-12-05 20:00:00+00"}')], [ID])
    text = render_all(p.statements)
    assert "SET LOCAL \"TimeZone\" = 'UTC'" in text
    assert text[-2:] == [
        'ALTER TABLE "app"."T x" ADD COLUMN "d" timestamp with time zone NOT NULL DEFAULT '
        '(CAST(\'{"2026-12-05 20:00:00+00"}\' AS timestamp with time zone[]))[1]',
        'ALTER TABLE "app"."T x" ALTER COLUMN "d" DROP DEFAULT']


@pytest.mark.parametrize('column, reason', [
    (col('r', 'double precision', False, True, None), 'volatile default'),
    (col('a', 'integer[]', False, True, '{"{1,2}"}'), 'is an array added with a default'),
])
def test_unprovable_added_values_are_refused(column, reason):
    with pytest.raises(PlanError) as e:
        follow([ID, column], [ID])
    assert reason in str(e.value) and column['name'] in str(e.value)


def test_dropped_column_waits_for_the_catch_up_but_loses_not_null_at_once():
    source, target = [ID], [ID, col('old', 'text', True)]
    waiting = follow(source, target)
    assert render_all(waiting.statements) == ['ALTER TABLE "app"."T x" ALTER COLUMN "old" DROP NOT NULL']
    assert waiting.pending and waiting.column_changes['app.T x']['pending'] == ['drop column old']
    done = follow(source, target, caught_up=True)
    assert render_all(done.statements)[-1] == 'ALTER TABLE "app"."T x" DROP COLUMN "old"'
    assert not done.pending


def test_set_not_null_waits_drop_not_null_does_not():
    assert render_all(follow([ID, col('v', not_null=True)], [ID, col('v')]).statements) == []
    assert render_all(follow([ID, col('v', not_null=True)], [ID, col('v')], True).statements) == [
        'ALTER TABLE "app"."T x" ALTER COLUMN "v" SET NOT NULL']
    assert render_all(follow([ID, col('v')], [ID, col('v', not_null=True)]).statements) == [
        'ALTER TABLE "app"."T x" ALTER COLUMN "v" DROP NOT NULL']


def test_widening_is_followed():
    p = follow([ID, col('q', 'bigint'), col('s', 'character varying(40)')],
               [ID, col('q', 'integer'), col('s', 'character varying(20)')])
    assert render_all(p.statements) == [
        'ALTER TABLE "app"."T x" ALTER COLUMN "q" TYPE bigint',
        'ALTER TABLE "app"."T x" ALTER COLUMN "s" TYPE character varying(40)']


# shared with the integration test of the same rules in SQL (test_schema_follow_stream.py)
WIDENING_CASES = [tuple(c) for c in json.load(open(os.path.join(
    os.path.dirname(__file__), '..', '..', '..', 'cases', 'widening.json')))]


@pytest.mark.parametrize('source, target, ok', WIDENING_CASES)
def test_widening_rules(source, target, ok):
    assert widening(source, target) is ok


def test_refusals_name_table_column_and_reason_and_change_nothing():
    with pytest.raises(PlanError) as e:
        follow([ID, col('q', 'integer'), col('n', 'text')], [ID, col('q', 'bigint')])
    assert 'app.T x: column q changed from bigint to integer' in str(e.value)
    assert 'not a lossless widening' in str(e.value)


def test_a_rename_is_refused_not_dropped_and_added():
    with pytest.raises(PlanError) as e:
        follow([ID, col('new_name', 'text')], [ID, col('old_name', 'text')])
    assert 'looks like a rename' in str(e.value) and 'new_name' in str(e.value)


def test_changed_primary_key_is_refused():
    with pytest.raises(PlanError) as e:
        follow([ID, col('k', 'integer', True), col('x')], [ID, col('k', 'integer', True)],
               source_pk=('t_pkey', ['id', 'k']))
    assert 'primary key differs (source (id, k), target (id))' in str(e.value)


def test_refuse_and_ignore_keep_todays_behaviour():
    desired = [table([ID, col('n')])]
    target = TargetState(['app'], [table([ID])])
    with pytest.raises(PlanError):
        plan_changes(desired, target)
    p = plan_changes(desired, target, schema_changes='ignore')
    assert p.statements == [] and p.differences and p.column_changes == {}
