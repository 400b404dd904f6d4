"""Planner of pg_sync_trigger: transitions between states, offline."""
import csv
import re

import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils import sync_trigger as st
from ansible_collections.tablesync.postgresql.plugins.module_utils import sync_trigger_sql as q
from ansible_collections.tablesync.postgresql.plugins.module_utils.statements import render

PASSWORD = "pa'ss,wo\"rd\nline2"
TARGET = {'host': 'db2', 'port': 5432, 'dbname': 'reporting', 'user': 'writer',
          'password': PASSWORD}
HOSTILE = [
    'plain',
    'Mixed Case',
    'with "quotes"',
    "semi;colon'; DROP TABLE x;--",
    'ünïcødé ✓',
    'x' * 63,
]


def spec(tables=('public.t',), **kw):
    kw.setdefault('target', dict(TARGET))
    return st.SetSpec('s1', tables=st.parse_tables(list(tables)), **kw)


def installed_routines(schema='tablesync'):
    return [st.RoutineState(r.name, r.identity, r.result, r.body, r.definer, r.settings(schema),
                            q.COMMENT) for r in q.ROUTINES]


def environment(installed=True, **kw):
    """A database where the set s1 (public.t, queued) is fully installed, unless installed=False."""
    if not installed:
        base = dict(role='postgres', dblink_schema=None)
    else:
        base = dict(
            role='postgres', dblink_schema='tablesync', schema_exists=True,
            storage=[name for name, _ddl in q.STORAGE], commit_trigger=True,
            routines=installed_routines(),
            server={'fdw': 'dblink_fdw', 'options': st.server_options_from_target(TARGET, 's1')},
            mapping={'user': 'writer', 'password': PASSWORD},
            set_triggers=[('public', 't', 'tablesync_s1'), ('public', 't', 'tablesync_s1_truncate')],
            dblink_servers=['tablesync_s1'])
    base.update(kw)
    return st.Environment(**base)


def triggers(mode='queued', table_id=1, keys=('id',)):
    return [st.TriggerState('tablesync_s1', 'tablesync', 'capture_row',
                            ['s1', mode, str(table_id)] + list(keys), st.ROW_TRIGGER_TYPE),
            st.TriggerState('tablesync_s1_truncate', 'tablesync', 'capture_truncate',
                            ['s1', mode, str(table_id)], st.TRUNCATE_TRIGGER_TYPE)]


def source(name='t', schema='public', installed=True, mode='queued', **kw):
    kw.setdefault('primary_key', ['id'])
    kw.setdefault('columns', ['id', 'v'])
    return st.SourceTable(schema, name, triggers=triggers(mode) if installed else (), **kw)


def set_state(installed=True, mode='queued', backlog=0, tables=None, **kw):
    if not installed:
        return st.SetState()
    row = {'name': 's1', 'server': 'tablesync_s1', 'server_managed': True, 'mode': mode,
           'batch_size': 1000}
    if tables is None:
        tables = [st.ConfigTable(1, 'public', 't', 'public', 't', ['id'], ['id', 'v'])]
    return st.SetState(row, tables, backlog=backlog, max_table_id=max([0] + [t.id for t in tables]),
                       **kw)


def shown(the_plan):
    return [render(s) for s in the_plan.statements]


def plan(spec_, env, state, sources=None):
    if sources is None:
        sources = {('public', 't'): source()}
    return st.plan(spec_, env, state, sources)


# ---- names and options ----------------------------------------------------------------------

@pytest.mark.parametrize('name', ['a', 'shop_reporting', 'x' + '1' * 43])
def test_valid_set_names(name):
    assert st.check_set_name(name) == name


@pytest.mark.parametrize('name', ['', 'Upper', '1abc', 'with-dash', 'x' * 45, 'spa ce', 'ü'])
def test_invalid_set_names(name):
    with pytest.raises(st.PlanError, match='not a valid sync set name'):
        st.check_set_name(name)


def test_parse_tables_strings_and_dicts():
    specs = st.parse_tables(['sales.orders', {'name': 'Ev ents', 'target': 'rep.ev',
                                              'key_columns': ['a', 'b'], 'columns': ['a', 'b', 'c']}])
    assert [s.source for s in specs] == [('sales', 'orders'), ('public', 'Ev ents')]
    assert specs[1].target == ('rep', 'ev') and specs[1].key_columns == ['a', 'b']
    assert specs[0].target == ('sales', 'orders') and specs[0].key_columns is None


def test_parse_tables_names_every_problem():
    with pytest.raises(st.PlanError) as e:
        st.parse_tables(['a.t', 'a.t', {'name': 'b', 'keys': ['x']}, 'tablesync.trigger_changes',
                         {'name': 'c', 'key_columns': []}, 42, 'x.y.z'])
    text = str(e.value)
    for part in ('a.t is listed more than once', 'unknown keys keys', 'holds the sync machinery',
                 'key_columns must be a non-empty list', 'got 42', 'not a valid schema.table'):
        assert part in text


def test_server_options_only_with_connection_keys():
    assert st.server_options_from_target({'user': 'u', 'password': 'p'}, 's1') is None
    assert st.server_options_from_target(TARGET, 's1') == {
        'application_name': 'tablesync_s1', 'host': 'db2', 'port': '5432', 'dbname': 'reporting'}


# ---- first installation ---------------------------------------------------------------------

def test_fresh_install_in_order_with_masked_password():
    the_plan = plan(spec(), environment(installed=False), set_state(installed=False),
                    {('public', 't'): source(installed=False)})
    text = shown(the_plan)
    assert text[0] == 'CREATE SCHEMA "tablesync"'
    assert text[1] == 'CREATE EXTENSION dblink SCHEMA "tablesync"'
    assert [t.split(' (')[0] for t in text[2:6]] == [
        'CREATE TABLE tablesync.trigger_sets', 'CREATE TABLE tablesync.trigger_tables',
        'CREATE TABLE tablesync.trigger_changes', 'CREATE TABLE tablesync.trigger_commits']
    creates = [t for t in text if t.startswith('CREATE OR REPLACE')]
    assert len(creates) == len(q.ROUTINES)
    assert sum(t.startswith('REVOKE ALL ON ROUTINE') for t in text) == len(q.ROUTINES)
    tail = text[-8:]
    assert tail[0].startswith('CREATE CONSTRAINT TRIGGER commit_immediate')
    assert tail[1] == ('CREATE SERVER "tablesync_s1" FOREIGN DATA WRAPPER dblink_fdw OPTIONS '
                       '("application_name" \'tablesync_s1\', "host" \'db2\', "port" \'5432\', '
                       '"dbname" \'reporting\')')
    assert tail[2] == ('CREATE USER MAPPING FOR "postgres" SERVER "tablesync_s1" OPTIONS '
                       '("user" \'writer\', "password" \'********\')')
    assert tail[3].startswith('INSERT INTO tablesync.trigger_sets')
    assert tail[4] == ("INSERT INTO tablesync.trigger_tables (id, set_name, source_schema, "
                       "source_table, target_schema, target_table, key_columns, columns) VALUES "
                       "(1, 's1', 'public', 't', 'public', 't', ARRAY['id']::text[], "
                       "ARRAY['id', 'v']::text[])")
    assert tail[5] == ('CREATE TRIGGER "tablesync_s1" AFTER INSERT OR UPDATE OR DELETE ON '
                       '"public"."t" FOR EACH ROW EXECUTE FUNCTION "tablesync"."capture_row"'
                       "('s1', 'queued', '1', 'id')")
    assert tail[6] == ('CREATE TRIGGER "tablesync_s1_truncate" AFTER TRUNCATE ON "public"."t" '
                       'FOR EACH STATEMENT EXECUTE FUNCTION "tablesync"."capture_truncate"'
                       "('s1', 'queued', '1')")
    assert tail[7] == "SELECT tablesync.verify_target('s1')"
    assert all(PASSWORD not in t for t in text)
    assert the_plan.after['tables'][0]['key_columns'] == ['id'] and the_plan.before == {}
    assert not any(s.autocommit for s in the_plan.statements)


def test_installed_set_is_left_alone():
    the_plan = plan(spec(flush=True), environment(), set_state())
    assert shown(the_plan) == [] and the_plan.flush is None
    assert the_plan.before == the_plan.after


def test_flush_only_when_something_is_queued():
    the_plan = plan(spec(flush=True), environment(), set_state(backlog=3))
    assert shown(the_plan) == ["CALL tablesync.flush('s1')"]
    assert the_plan.flush.autocommit


def test_existing_dblink_elsewhere_is_used_in_search_path():
    env = environment(installed=False, dblink_schema='Ext Schema',
                      search_path_schema='"Ext Schema"')
    text = shown(plan(spec(), env, set_state(installed=False),
                      {('public', 't'): source(installed=False)}))
    assert not any(t.startswith('CREATE EXTENSION') for t in text)
    drain = [t for t in text if '"drain"(p_set text) RETURNS bigint' in t][0]
    assert 'SECURITY DEFINER SET search_path = pg_catalog, "Ext Schema", pg_temp' in drain
    capture = [t for t in text if '"capture_row"() RETURNS trigger' in t][0]
    assert 'SECURITY DEFINER AS' in capture  # per row: qualified body instead of SET


def test_missing_dblink_package_is_a_clear_error():
    with pytest.raises(st.PlanError, match='postgresql-contrib'):
        plan(spec(), environment(installed=False, dblink_available=False),
             set_state(installed=False), {('public', 't'): source(installed=False)})


# ---- versioned routines ---------------------------------------------------------------------

def _routines_with(name, **changes):
    routines = installed_routines()
    for r in routines:
        if r.name == name:
            for key, value in changes.items():
                setattr(r, key, value)
    return routines


def test_outdated_body_is_replaced_and_comment_updated():
    old = _routines_with('capture_row', source='-- tablesync.postgresql sync_trigger v0\nBEGIN END',
                         comment='tablesync.postgresql sync_trigger v0')
    the_plan = plan(spec(), environment(routines=old), set_state())
    text = shown(the_plan)
    assert len(text) == 2 and the_plan.routines_changed
    assert text[0].startswith('CREATE OR REPLACE FUNCTION "tablesync"."capture_row"() RETURNS '
                              'trigger LANGUAGE plpgsql SECURITY DEFINER')
    assert text[1] == ('COMMENT ON ROUTINE "tablesync"."capture_row"() IS '
                       "'tablesync.postgresql sync_trigger v1'")


def test_changed_settings_or_security_are_replaced():
    for changes in ({'config': ['search_path=public']}, {'definer': False}):
        text = shown(plan(spec(), environment(routines=_routines_with('drain', **changes)),
                          set_state()))
        assert len(text) == 1 and text[0].startswith('CREATE OR REPLACE FUNCTION "tablesync"."drain"')


def test_public_execute_is_revoked():
    text = shown(plan(spec(), environment(routines=_routines_with('flush', public_execute=True)),
                      set_state()))
    assert text == ['REVOKE ALL ON ROUTINE "tablesync"."flush"(IN p_set text, INOUT applied '
                    'bigint) FROM PUBLIC']


def test_changed_result_type_drops_first_and_obsolete_routines_go():
    routines = _routines_with('_segments', result='SETOF record')
    routines.append(st.RoutineState('old_helper', 'p_x integer', 'void', 'BEGIN END',
                                    comment='tablesync.postgresql sync_trigger v1'))
    routines.append(st.RoutineState('dba_own', '', 'void', 'BEGIN END', comment='mine'))
    text = shown(plan(spec(), environment(routines=routines), set_state()))
    assert text[0] == 'DROP ROUTINE "tablesync"."old_helper"(p_x integer)'
    assert text[1] == 'DROP ROUTINE "tablesync"."_segments"(p_ids bigint[])'
    assert text[2].startswith('CREATE OR REPLACE FUNCTION "tablesync"."_segments"')
    assert not any('dba_own' in t for t in text)


def test_newer_routines_are_never_downgraded():
    newer = _routines_with('flush', comment='tablesync.postgresql sync_trigger v%d' % (q.VERSION + 1))
    with pytest.raises(st.PlanError, match=r'newer tablesync.postgresql \(sync_trigger v2\).*ships v1'):
        plan(spec(), environment(routines=newer), set_state())


def test_routine_version_parsing():
    assert st.RoutineState('f', '', 'void', '', comment='tablesync.postgresql sync_trigger v12').version == 12
    assert st.RoutineState('f', '', 'void', '', comment='something else').version is None
    assert not st.RoutineState('f', '', 'void', '', comment=None).ours


def unqualified_names(body):
    """Functions, types and operators a caller's search_path could capture."""
    code = '\n'.join(line.split('--')[0] for line in body.splitlines())
    code = re.sub(r"'[^']*'", "''", code)
    names = re.findall(r'(?<![.\w"])(to_jsonb|jsonb_build_object|left|jsonb|text|int4|"char")\b', code)
    operators = re.findall(r'\s(=|<>|->|-|\+|\|\|)\s', code)
    return names + operators


def test_unqualified_names_are_found():
    assert unqualified_names("x := to_jsonb(NEW); IF a = 'b' THEN y := 1 - 2") == ['to_jsonb', '=', '-']
    assert unqualified_names("x := pg_catalog.to_jsonb(NEW) OPERATOR(pg_catalog.=) '-- a = b'") == []


def test_every_body_carries_the_version_and_builds_sql_without_concatenation():
    for routine in q.ROUTINES:
        assert routine.body.startswith(q.HEADER)
        assert 'sync_trigger v%d' % q.VERSION in routine.body
        assert '||' not in routine.body, routine.name
        assert 'password' not in routine.body.lower()
        if routine.definer and not routine.pinned:
            assert routine.settings('x') == [] and not unqualified_names(routine.body)
    assert q.COMMENT == 'tablesync.postgresql sync_trigger v%d' % q.VERSION
    assert len(set(r.key for r in q.ROUTINES)) == len(q.ROUTINES)


# ---- server and user mapping ----------------------------------------------------------------

def test_changed_server_options_are_altered():
    text = shown(plan(spec(target=dict(TARGET, host='db3', sslmode='require')), environment(),
                      set_state()))
    assert text[0] == ('ALTER SERVER "tablesync_s1" OPTIONS (SET "host" \'db3\', '
                       'ADD "sslmode" \'require\')')
    assert text[-1] == "SELECT tablesync.verify_target('s1')"


def test_changed_password_recreates_the_mapping_masked():
    the_plan = plan(spec(target=dict(TARGET, password='new')), environment(), set_state())
    text = shown(the_plan)
    assert text[:2] == ['DROP USER MAPPING FOR "postgres" SERVER "tablesync_s1"',
                        'CREATE USER MAPPING FOR "postgres" SERVER "tablesync_s1" OPTIONS '
                        '("user" \'writer\', "password" \'********\')']
    assert isinstance(the_plan.statements[1], st.UserMappingStatement)


def test_changed_user_only_is_altered_and_unset_password_kept():
    target = dict(TARGET, user='other')
    del target['password']
    text = shown(plan(spec(target=target), environment(), set_state()))
    assert text[0] == 'ALTER USER MAPPING FOR "postgres" SERVER "tablesync_s1" OPTIONS (SET "user" \'other\')'


def test_existing_server_without_target():
    env = environment(server={'fdw': 'postgres_fdw', 'options': {'host': 'x'}})
    row = set_state()
    row.row['server_managed'] = False
    assert shown(plan(spec(target=None), env, row)) == []
    with pytest.raises(st.PlanError, match='foreign server tablesync_s1 does not exist'):
        plan(spec(target=None), environment(server=None, mapping=None), row)
    with pytest.raises(st.PlanError, match='no user mapping for role postgres'):
        plan(spec(target=None), environment(mapping=None, mapping_exists=False), row)


def test_invisible_mapping_options_are_a_warning():
    the_plan = plan(spec(), environment(mapping=None, mapping_exists=True), set_state())
    assert shown(the_plan) == [] and 'not visible' in the_plan.warnings[0]


@pytest.mark.parametrize('password', [PASSWORD, 'plain', "quote'", 'comma,semi;', '\\back'])
def test_mapping_values_travel_by_copy(password):
    statement = st.UserMappingStatement('Röle "x"', 'srv; x', {'user': 'u', 'password': password})
    rows = list(csv.reader(statement.copy_data()))
    assert rows == [['0', 'role', 'Röle "x"'], ['1', 'server', 'srv; x'], ['2', 'user', 'u'],
                    ['3', 'password', password]]
    assert password not in render(statement) or password == 'u'


def test_mapping_statement_runs_copy_and_a_fixed_block():
    class Cursor(object):
        def __init__(self):
            self.calls = []

        def execute(self, text):
            self.calls.append(text)

        def copy_expert(self, text, data):
            self.calls.append((text, data.read()))

    cursor = Cursor()
    st.UserMappingStatement('r', 's', {'user': 'u', 'password': 'secret'}).execute(cursor)
    assert cursor.calls[0] == q.SECRET_ARGS_DDL
    assert cursor.calls[1][0] == q.SECRET_ARGS_COPY and 'secret' in cursor.calls[1][1]
    assert cursor.calls[2] == q.CREATE_MAPPING_BLOCK and 'secret' not in cursor.calls[2]
    assert cursor.calls[3] == q.SECRET_ARGS_DROP


def test_fetch_statement_keeps_its_result():
    class Cursor(object):
        def execute(self, query):
            self.query = query

        def fetchone(self):
            return (42,)

    statement = st.flush_statement('s1')
    statement.execute(Cursor())
    assert statement.result == 42


# ---- tables ---------------------------------------------------------------------------------

def test_table_without_primary_key_is_refused_unless_key_columns():
    sources = {('public', 't'): source(installed=False, primary_key=[])}
    with pytest.raises(st.PlanError, match='public.t has no primary key: set key_columns'):
        plan(spec(), environment(installed=False), set_state(installed=False), sources)
    text = shown(plan(spec([{'name': 'public.t', 'key_columns': ['v']}]),
                      environment(installed=False), set_state(installed=False), sources))
    assert any("capture_row\"('s1', 'queued', '1', 'v')" in t for t in text)


def test_table_problems_are_reported_together():
    sources = {('public', 'v'): source('v', installed=False, kind='v'),
               ('public', 'p'): source('p', installed=False, partition=True),
               ('public', 'g'): source('g', installed=False, generated=['total'])}
    tables = ['public.missing', 'public.v', 'public.p',
              {'name': 'public.g', 'key_columns': ['nope'], 'columns': ['v', 'total']}]
    with pytest.raises(st.PlanError) as e:
        plan(spec(tables), environment(installed=False), set_state(installed=False), sources)
    messages = e.value.messages
    assert 'table public.missing does not exist' in messages
    assert 'public.v is not a table (relkind v)' in messages
    assert 'public.p is a partition: list its partitioned table instead' in messages
    assert 'table public.g has no column(s) nope (key_columns)' in messages
    assert 'columns of table public.g: total generated (the target computes them)' in messages
    assert 'columns of table public.g must include the key column(s) nope' in messages


def test_composite_key_and_column_subset():
    sources = {('public', 't'): source(installed=False, primary_key=['a', 'b'],
                                       columns=['a', 'b', 'c', 'd'])}
    the_plan = plan(spec([{'name': 'public.t', 'columns': ['a', 'b', 'd']}]),
                    environment(installed=False), set_state(installed=False), sources)
    text = shown(the_plan)
    assert any("capture_row\"('s1', 'queued', '1', 'a', 'b')" in t for t in text)
    assert any("ARRAY['a', 'b']::text[], ARRAY['a', 'b', 'd']::text[]" in t for t in text)


def test_queued_to_immediate_drains_under_lock():
    the_plan = plan(spec(mode='immediate'), environment(), set_state())
    assert shown(the_plan) == [
        "UPDATE tablesync.trigger_sets SET server = 'tablesync_s1', server_managed = true, "
        "mode = 'immediate', batch_size = 1000 WHERE name = 's1'",
        'LOCK TABLE "public"."t" IN SHARE ROW EXCLUSIVE MODE',
        "SELECT tablesync.drain('s1')",
        'DROP TRIGGER "tablesync_s1" ON "public"."t"',
        'CREATE TRIGGER "tablesync_s1" AFTER INSERT OR UPDATE OR DELETE ON "public"."t" FOR EACH '
        "ROW EXECUTE FUNCTION \"tablesync\".\"capture_row\"('s1', 'immediate', '1', 'id')",
        'DROP TRIGGER "tablesync_s1_truncate" ON "public"."t"',
        'CREATE TRIGGER "tablesync_s1_truncate" AFTER TRUNCATE ON "public"."t" FOR EACH STATEMENT '
        "EXECUTE FUNCTION \"tablesync\".\"capture_truncate\"('s1', 'immediate', '1')",
        "SELECT tablesync.verify_target('s1')"]
    assert len(the_plan.drains) == 1


def test_immediate_to_queued_needs_no_drain():
    text = shown(plan(spec(), environment(), set_state(mode='immediate'),
                      {('public', 't'): source(mode='immediate')}))
    assert not any('drain' in t or t.startswith('LOCK') for t in text)
    assert sum(t.startswith('CREATE TRIGGER') for t in text) == 2


def test_changed_key_drains_before_the_new_key_is_used():
    sources = {('public', 't'): source(primary_key=['id'], columns=['id', 'v'])}
    text = shown(plan(spec([{'name': 'public.t', 'key_columns': ['v']}]), environment(),
                      set_state(), sources))
    assert text[:2] == ['LOCK TABLE "public"."t" IN SHARE ROW EXCLUSIVE MODE',
                        "SELECT tablesync.drain('s1')"]
    assert text[2].startswith('UPDATE tablesync.trigger_tables SET')


def test_changed_target_only_updates_config_after_drain():
    text = shown(plan(spec([{'name': 'public.t', 'target': 'rep.t'}]), environment(), set_state()))
    assert text == ['LOCK TABLE "public"."t" IN SHARE ROW EXCLUSIVE MODE',
                    "SELECT tablesync.drain('s1')",
                    "UPDATE tablesync.trigger_tables SET target_schema = 'rep', target_table = 't', "
                    "key_columns = ARRAY['id']::text[], columns = ARRAY['id', 'v']::text[] "
                    "WHERE id = 1",
                    "SELECT tablesync.verify_target('s1')"]


def test_disabled_trigger_is_recreated():
    current = source()
    current.triggers['tablesync_s1'].enabled = 'D'
    text = shown(plan(spec(), environment(), set_state(), {('public', 't'): current}))
    assert text[:2] == ['DROP TRIGGER "tablesync_s1" ON "public"."t"',
                        'CREATE TRIGGER "tablesync_s1" AFTER INSERT OR UPDATE OR DELETE ON '
                        '"public"."t" FOR EACH ROW EXECUTE FUNCTION "tablesync"."capture_row"'
                        "('s1', 'queued', '1', 'id')"]


def test_new_table_gets_next_id_and_removed_table_drains():
    env = environment(set_triggers=[('public', 'old', 'tablesync_s1'),
                                    ('public', 'old', 'tablesync_s1_truncate')])
    state = set_state(tables=[st.ConfigTable(4, 'public', 'old', 'public', 'old', ['id'], ['id'])])
    sources = {('public', 't'): source(installed=False)}
    text = shown(plan(spec(), env, state, sources))
    assert text[:5] == ['LOCK TABLE "public"."old" IN SHARE ROW EXCLUSIVE MODE',
                        "SELECT tablesync.drain('s1')",
                        'DROP TRIGGER "tablesync_s1" ON "public"."old"',
                        'DROP TRIGGER "tablesync_s1_truncate" ON "public"."old"',
                        'DELETE FROM tablesync.trigger_tables WHERE id = ANY (ARRAY[4]::integer[])']
    assert "VALUES (5, 's1', 'public', 't'" in text[5]


def test_removed_table_with_force_discards_its_changes():
    state = set_state(tables=[st.ConfigTable(1, 'public', 't', 'public', 't', ['id'], ['id', 'v']),
                              st.ConfigTable(2, 'public', 'gone', 'public', 'gone', ['id'], ['id'])])
    text = shown(plan(spec(force=True), environment(), state))
    assert text == ["DELETE FROM tablesync.trigger_changes WHERE set_name = 's1' AND table_id = "
                    "ANY (ARRAY[2]::integer[])",
                    'DELETE FROM tablesync.trigger_tables WHERE id = ANY (ARRAY[2]::integer[])']


def test_backfill_once_then_switch_to_immediate():
    the_plan = plan(spec(mode='immediate', backfill=True), environment(installed=False),
                    set_state(installed=False), {('public', 't'): source(installed=False)})
    text = shown(the_plan)
    start = text.index("SELECT tablesync.backfill('s1', 1)")
    assert "capture_row\"('s1', 'queued', '1', 'id')" in text[start - 3]
    assert the_plan.statements[start].autocommit
    assert text[start + 1:] == [
        'LOCK TABLE "public"."t" IN SHARE ROW EXCLUSIVE MODE',
        "SELECT tablesync.drain('s1')",
        'DROP TRIGGER "tablesync_s1" ON "public"."t"',
        'CREATE TRIGGER "tablesync_s1" AFTER INSERT OR UPDATE OR DELETE ON "public"."t" FOR EACH '
        "ROW EXECUTE FUNCTION \"tablesync\".\"capture_row\"('s1', 'immediate', '1', 'id')",
        'DROP TRIGGER "tablesync_s1_truncate" ON "public"."t"',
        'CREATE TRIGGER "tablesync_s1_truncate" AFTER TRUNCATE ON "public"."t" FOR EACH STATEMENT '
        "EXECUTE FUNCTION \"tablesync\".\"capture_truncate\"('s1', 'immediate', '1')"]
    assert the_plan.after['tables'][0]['backfilled'] is True
    assert [label for label, _s in the_plan.backfills] == ['public.t']


def test_backfilled_table_is_not_copied_again_and_flush_follows_backfill():
    state = set_state()
    state.tables[0].backfilled = True
    assert shown(plan(spec(backfill=True, flush=True), environment(), state)) == []
    fresh = plan(spec(backfill=True, flush=True), environment(), set_state())
    assert shown(fresh) == ["SELECT tablesync.backfill('s1', 1)", "CALL tablesync.flush('s1')"]


@pytest.mark.parametrize('name', HOSTILE)
def test_hostile_names_are_always_quoted(name):
    table = {'name': '"%s"."%s"' % (name.replace('"', '""'), name.replace('"', '""')),
             'target': '"%s"."t"' % name.replace('"', '""'), 'key_columns': [name]}
    sources = {(name, name): st.SourceTable(name, name, columns=[name, 'v'])}
    the_plan = plan(spec([table], server=name), environment(installed=False),
                    set_state(installed=False), sources)
    text = shown(the_plan)
    ident = '"%s"' % name.replace('"', '""')
    literal = "'%s'" % name.replace("'", "''")
    assert any(t.startswith('CREATE SERVER %s FOREIGN DATA WRAPPER' % ident) for t in text)
    assert ('CREATE TRIGGER "tablesync_s1" AFTER INSERT OR UPDATE OR DELETE ON %s.%s FOR EACH ROW '
            "EXECUTE FUNCTION \"tablesync\".\"capture_row\"('s1', 'queued', '1', %s)"
            % (ident, ident, literal)) in text
    assert any("VALUES (1, 's1', %s, %s, %s, 't', ARRAY[%s]::text[]" % (literal, literal, literal,
                                                                        literal) in t for t in text)


# ---- removal --------------------------------------------------------------------------------

def test_absent_drains_drops_and_tears_down_the_last_set():
    the_plan = st.plan(spec(state='absent'), environment(), set_state())
    text = shown(the_plan)
    assert text[:4] == ['LOCK TABLE "public"."t" IN SHARE ROW EXCLUSIVE MODE',
                        "SELECT tablesync.drain('s1')",
                        'DROP TRIGGER "tablesync_s1" ON "public"."t"',
                        'DROP TRIGGER "tablesync_s1_truncate" ON "public"."t"']
    assert text[4:8] == ["DELETE FROM tablesync.trigger_tables WHERE set_name = 's1'",
                         "DELETE FROM tablesync.trigger_sets WHERE name = 's1'",
                         'DROP USER MAPPING FOR "postgres" SERVER "tablesync_s1"',
                         'DROP SERVER "tablesync_s1"']
    assert text[8] == 'DROP TABLE "tablesync"."trigger_commits"'
    assert sum(t.startswith('DROP ROUTINE') for t in text) == len(q.ROUTINES)
    assert text[-5:] == ['DROP TABLE "tablesync"."trigger_changes"',
                         'DROP TABLE "tablesync"."trigger_tables"',
                         'DROP TABLE "tablesync"."trigger_sets"',
                         'DROP EXTENSION dblink', 'DROP SCHEMA "tablesync"']
    assert the_plan.torn_down and the_plan.after == {}


def test_absent_keeps_shared_objects_for_other_sets_and_discards_with_force():
    the_plan = st.plan(spec(state='absent', force=True), environment(), set_state(other_sets=1))
    text = shown(the_plan)
    assert text[:2] == ['LOCK TABLE "public"."t" IN SHARE ROW EXCLUSIVE MODE',
                        "DELETE FROM tablesync.trigger_changes WHERE set_name = 's1'"]
    assert not any(t.startswith(('DROP ROUTINE', 'DROP TABLE', 'DROP SCHEMA')) for t in text)
    assert not the_plan.drains and not the_plan.torn_down


def test_absent_keeps_dblink_used_by_other_servers_and_foreign_objects():
    env = environment(dblink_servers=['tablesync_s1', 'someone_else'], schema_leftovers=0)
    text = shown(st.plan(spec(state='absent'), env, set_state()))
    assert 'DROP EXTENSION dblink' not in text and 'DROP SCHEMA "tablesync"' not in text
    env = environment(dblink_schema='public', schema_leftovers=2)
    text = shown(st.plan(spec(state='absent'), env, set_state()))
    assert 'DROP EXTENSION dblink' not in text and 'DROP SCHEMA "tablesync"' not in text


def test_absent_of_unknown_set_does_nothing():
    env = environment(installed=False)
    assert shown(st.plan(spec(state='absent'), env, set_state(installed=False))) == []


def test_renamed_server_replaces_the_one_the_module_created():
    env = environment(server=None, mapping=None, mapping_exists=False)
    text = shown(plan(spec(server='new_srv'), env, set_state()))
    assert text[0].startswith('CREATE SERVER "new_srv" FOREIGN DATA WRAPPER dblink_fdw')
    assert text[1].startswith('CREATE USER MAPPING FOR "postgres" SERVER "new_srv"')
    assert text[-3:] == ['DROP USER MAPPING IF EXISTS FOR "postgres" SERVER "tablesync_s1"',
                         'DROP SERVER IF EXISTS "tablesync_s1"',
                         "SELECT tablesync.verify_target('s1')"]
