"""Planner of pg_sync_trigger: transitions between states, offline."""
import csv
import re

import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import state as st
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import planner
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import schema as q
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.install import UserMappingStatement
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger.routines import MONITORED, ROUTINES
from ansible_collections.tablesync.postgresql.plugins.module_utils.trigger import capture as cap
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Statement)

OWNER = q.OWNER_DEFAULT
OUTPUTS = {'id': ('pg_catalog', 'int4out'), 'v': ('pg_catalog', 'textout'),
           'a': ('pg_catalog', 'int4out'), 'b': ('pg_catalog', 'int4out'),
           'c': ('pg_catalog', 'textout'), 'd': ('pg_catalog', 'textout'),
           'total': ('pg_catalog', 'numeric_out')}

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


def installed_routines(schema='tablesync', mode='queued'):
    shared = [st.RoutineState(r.name, r.identity, r.result, r.body(schema), r.definer,
                              r.settings(), q.COMMENT, False, OWNER, r.name in MONITORED)
              for r in ROUTINES]
    body = cap.capture_body('s1', mode, 1, ('public', 't'), ['id', 'v'], ['id'], OUTPUTS)
    return shared + [st.RoutineState('capture_1', '', 'trigger', body, True, q.pinned_settings(),
                                     cap.capture_comment(1), False, OWNER)]


def environment(installed=True, **kw):
    """A database where the set s1 (public.t, queued) is fully installed, unless installed=False."""
    if not installed:
        base = dict(role='postgres', dblink_schema=None)
    else:
        base = dict(
            role='postgres', dblink_schema='tablesync', schema_exists=True,
            storage=[name for name, _ddl in q.STORAGE], commit_trigger=True,
            routines=installed_routines(mode=kw.pop('mode', 'queued')), owner={},
            schema_owner=OWNER, owners=dict((name, OWNER) for name, _ddl in q.STORAGE),
            server_usage=True, monitor_usage=True,
            server={'fdw': 'dblink_fdw', 'options': st.server_options_from_target(TARGET, 's1')},
            mapping={'user': 'writer', 'password': PASSWORD},
            set_triggers=[('public', 't', 'tablesync_s1'), ('public', 't', 'tablesync_s1_truncate')],
            dblink_servers=['tablesync_s1'], schema_index=True,
            event_trigger={'enabled': 'O', 'function': '_follow_ddl', 'function_schema': 'tablesync'})
    base.update(kw)
    return st.Environment(**base)


def triggers(mode='queued', table_id=1):
    return [st.TriggerState('tablesync_s1', 'tablesync', 'capture_%d' % table_id, [],
                            st.ROW_TRIGGER_TYPE),
            st.TriggerState('tablesync_s1_truncate', 'tablesync', 'capture_truncate',
                            ['s1', mode, str(table_id)], st.TRUNCATE_TRIGGER_TYPE)]


def source(name='t', schema='public', installed=True, mode='queued', **kw):
    kw.setdefault('primary_key', ['id'])
    kw.setdefault('columns', ['id', 'v'])
    kw.setdefault('outputs', OUTPUTS)
    kw.setdefault('unique_keys', [kw['primary_key']] if kw['primary_key'] else [])
    return st.SourceTable(schema, name, triggers=triggers(mode) if installed else (), **kw)


def set_state(installed=True, mode='queued', backlog=0, tables=None, **kw):
    if not installed:
        return st.SetState()
    row = {'name': 's1', 'server': 'tablesync_s1', 'server_managed': True, 'mode': mode,
           'batch_size': 1000}
    if tables is None:
        tables = [st.ConfigTable(1, 'public', 't', 'public', 't', ['id'], ['id', 'v'],
                                 numbers=[1, 2], follow=True)]
    return st.SetState(row, tables, backlog=backlog, max_table_id=max([0] + [t.id for t in tables]),
                       **kw)


def render_query(query):
    return render(Statement(query))


def shown(the_plan):
    return [render(s) for s in the_plan.statements]


def plan(spec_, env, state, sources=None):
    if sources is None:
        sources = {('public', 't'): source()}
    return planner.plan(spec_, env, state, sources)


# ---- names and options ----------------------------------------------------------------------

@pytest.mark.parametrize('name', ['a', 'shop_reporting', 'x' + '1' * 43])
def test_valid_set_names(name):
    assert st.check_set_name(name) == name


@pytest.mark.parametrize('name', ['', 'Upper', '1abc', 'with-dash', 'x' * 45, 'spa ce', 'ü'])
def test_invalid_set_names(name):
    with pytest.raises(PlanError, match='not a valid sync set name'):
        st.check_set_name(name)


def test_parse_tables_strings_and_dicts():
    specs = st.parse_tables(['sales.orders', {'name': 'Ev ents', 'target': 'rep.ev',
                                              'key_columns': ['a', 'b'], 'columns': ['a', 'b', 'c']}])
    assert [s.key for s in specs] == [('sales', 'orders'), ('public', 'Ev ents')]
    assert specs[1].target == ('rep', 'ev') and specs[1].key_columns == ['a', 'b']
    assert specs[0].target is None and specs[0].key_columns is None  # target: the same name


def test_parse_tables_names_every_problem():
    with pytest.raises(PlanError) as e:
        st.parse_tables(['a.t', 'a.t', {'name': 'b', 'keys': ['x']}, 'tablesync.trigger_changes',
                         {'name': 'c', 'key_columns': []}, 42, 'x.y.z'])
    text = str(e.value)
    for part in ('a.t is listed more than once', 'unknown key(s) keys', 'holds the sync machinery',
                 'key_columns must be a non-empty list', 'got 42', 'not a valid schema.table'):
        assert part in text


def test_server_options_only_with_connection_keys():
    assert st.server_options_from_target({'user': 'u', 'password': 'p'}, 's1') is None
    assert st.server_options_from_target(TARGET, 's1') == {
        'application_name': 'tablesync_s1', 'host': 'db2', 'port': '5432', 'dbname': 'reporting'}


# ---- first installation ---------------------------------------------------------------------

@pytest.mark.parametrize('version, grant', [
    (160000, 'GRANT "%s" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE' % OWNER),
    (150000, 'GRANT "%s" TO CURRENT_USER' % OWNER)])
def test_administrator_without_superuser_grants_itself_the_owner(version, grant):
    """A CREATEROLE login (a managed service's administrator) may hand objects only to a role
    it can SET ROLE to: it grants itself the new owner; a superuser never does."""
    fresh = shown(plan(spec(), environment(installed=False, superuser=False, version_num=version),
                       set_state(installed=False), {('public', 't'): source(installed=False)}))
    assert fresh[:3] == ['CREATE ROLE "%s" NOLOGIN' % OWNER, grant,
                         'CREATE SCHEMA "tablesync" AUTHORIZATION "%s"' % OWNER]
    # an existing owner it cannot act as yet: the grant alone; once it can, nothing
    assert grant in shown(plan(spec(), environment(superuser=False, version_num=version, owner={}),
                               set_state(), {('public', 't'): source()}))
    assert shown(plan(spec(), environment(superuser=False, version_num=version,
                                          owner={'settable': True}),
                      set_state(), {('public', 't'): source()})) == []
    assert not [t for t in shown(plan(spec(), environment(installed=False), set_state(installed=False),
                                      {('public', 't'): source(installed=False)}))
                if t.startswith('GRANT "%s"' % OWNER)]


def test_fresh_install_in_order_with_masked_password():
    the_plan = plan(spec(), environment(installed=False), set_state(installed=False),
                    {('public', 't'): source(installed=False)})
    text = shown(the_plan)
    assert text[0] == 'CREATE ROLE "%s" NOLOGIN' % OWNER
    assert text[1] == 'CREATE SCHEMA "tablesync" AUTHORIZATION "%s"' % OWNER
    assert text[2] == 'GRANT USAGE ON SCHEMA "tablesync" TO "pg_monitor"'
    text = text[:2] + text[3:]
    assert text[2] == 'CREATE EXTENSION dblink SCHEMA "tablesync"'
    assert 'GRANT EXECUTE ON ROUTINE "tablesync"."queue_status"() TO "pg_monitor"' in text
    assert [t.split(' (')[0] for t in text[3:11:2]] == [
        'CREATE TABLE tablesync.trigger_sets', 'CREATE TABLE tablesync.trigger_tables',
        'CREATE TABLE tablesync.trigger_changes', 'CREATE TABLE tablesync.trigger_commits']
    assert text[4] == 'ALTER TABLE "tablesync"."trigger_sets" OWNER TO "%s"' % OWNER
    creates = [t for t in text if t.startswith('CREATE OR REPLACE')]
    assert len(creates) == len(ROUTINES) + 1  # and the table's capture function
    assert sum(t.startswith('REVOKE ALL ON ROUTINE') for t in text) == len(ROUTINES)
    assert sum(t.startswith('ALTER ROUTINE') and t.endswith('OWNER TO "%s"' % OWNER)
               for t in text) == len(ROUTINES)
    start = text.index([t for t in text if t.startswith('CREATE CONSTRAINT TRIGGER')][0])
    tail = text[start:]
    assert tail[1] == ('CREATE EVENT TRIGGER tablesync_trigger_follow ON ddl_command_end '
                       "WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION tablesync._follow_ddl()")
    assert text[11] == ('CREATE INDEX IF NOT EXISTS trigger_changes_schema ON '
                        "tablesync.trigger_changes (table_id, id) WHERE op = 'S'")
    tail = tail[:1] + tail[2:]
    assert tail[1] == ('CREATE SERVER "tablesync_s1" FOREIGN DATA WRAPPER dblink_fdw OPTIONS '
                       '("application_name" \'tablesync_s1\', "host" \'db2\', "port" \'5432\', '
                       '"dbname" \'reporting\')')
    assert tail[2] == 'GRANT USAGE ON FOREIGN SERVER "tablesync_s1" TO "%s"' % OWNER
    assert tail[3] == ('CREATE USER MAPPING FOR "%s" SERVER "tablesync_s1" OPTIONS '
                       '("user" \'writer\', "password" \'********\')' % OWNER)
    assert tail[4].startswith('INSERT INTO tablesync.trigger_sets')
    assert tail[5] == ("INSERT INTO tablesync.trigger_tables (id, set_name, source_schema, "
                       "source_table, target_schema, target_table, key_columns, columns, numbers, "
                       "follow) VALUES (1, 's1', 'public', 't', 'public', 't', ARRAY['id']::text[], "
                       "ARRAY['id', 'v']::text[], ARRAY[1, 2]::smallint[], true)")
    assert tail[6].startswith('CREATE OR REPLACE FUNCTION "tablesync"."capture_1"() RETURNS '
                              'trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = '
                              'pg_catalog, pg_temp SET "DateStyle" = \'ISO, YMD\'')
    assert tail[7] == 'ALTER FUNCTION "tablesync"."capture_1"() OWNER TO "%s"' % OWNER
    assert tail[8] == 'REVOKE ALL ON FUNCTION "tablesync"."capture_1"() FROM PUBLIC'
    assert tail[9].startswith('COMMENT ON FUNCTION "tablesync"."capture_1"()')
    assert tail[10] == ('CREATE TRIGGER "tablesync_s1" AFTER INSERT OR UPDATE OR DELETE ON '
                        '"public"."t" FOR EACH ROW EXECUTE FUNCTION "tablesync"."capture_1"()')
    assert tail[11] == ('CREATE TRIGGER "tablesync_s1_truncate" AFTER TRUNCATE ON "public"."t" '
                        'FOR EACH STATEMENT EXECUTE FUNCTION "tablesync"."capture_truncate"'
                        "('s1', 'queued', '1')")
    assert tail[12:] == ["SELECT tablesync.verify_target('s1')"]
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


def test_existing_dblink_elsewhere_is_qualified_and_never_on_the_search_path():
    env = environment(installed=False, dblink_schema='Ext Schema',
                      search_path_schema='"Ext Schema"')
    text = shown(plan(spec(), env, set_state(installed=False),
                      {('public', 't'): source(installed=False)}))
    assert not any(t.startswith('CREATE EXTENSION') for t in text)
    apply = [t for t in text if '"_apply_entries"(p_set text' in t][0]
    assert 'SECURITY DEFINER SET search_path = pg_catalog, pg_temp' in apply
    assert '"Ext Schema".dblink_exec(v_conn, v_sql)' in apply
    assert '@dblink@' not in ''.join(text)


def test_existing_owner_role_with_powers_is_refused():
    for owner in ({'login': True}, {'superuser': True}, {'createrole': True, 'bypassrls': True},
                  {'members': ['pg_execute_server_program']}):
        with pytest.raises(PlanError, match='must be a plain NOLOGIN role'):
            plan(spec(), environment(owner=owner), set_state())
    assert shown(plan(spec(), environment(owner={'members': ['pg_monitor']}), set_state())) == []


def test_objects_of_another_owner_are_given_to_the_owner_role():
    env = environment(schema_owner='postgres', owners={'trigger_sets': 'postgres'},
                      server_usage=False)
    text = shown(plan(spec(), env, set_state()))
    assert text[0] == 'ALTER SCHEMA "tablesync" OWNER TO "%s"' % OWNER
    assert 'ALTER TABLE "tablesync"."trigger_changes" OWNER TO "%s"' % OWNER in text
    assert 'GRANT USAGE ON FOREIGN SERVER "tablesync_s1" TO "%s"' % OWNER in text


def test_missing_dblink_package_is_a_clear_error():
    with pytest.raises(PlanError, match='postgresql-contrib'):
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
    old = _routines_with('drain', source='-- tablesync.postgresql sync_trigger v0\nBEGIN END',
                         comment='tablesync.postgresql sync_trigger v0')
    the_plan = plan(spec(), environment(routines=old), set_state())
    text = shown(the_plan)
    assert len(text) == 2 and the_plan.routines_changed
    assert text[0].startswith('CREATE OR REPLACE FUNCTION "tablesync"."drain"(p_set text) RETURNS '
                              'bigint LANGUAGE plpgsql SECURITY DEFINER')
    assert text[1] == ('COMMENT ON ROUTINE "tablesync"."drain"(p_set text) IS '
                       "'tablesync.postgresql sync_trigger v%d'" % q.VERSION)


def test_changed_capture_body_is_replaced():
    routines = _routines_with('capture_1', source='-- old\nBEGIN END')
    text = shown(plan(spec(), environment(routines=routines), set_state()))
    assert text[0].startswith('CREATE OR REPLACE FUNCTION "tablesync"."capture_1"()')
    assert text[1:] == ["SELECT tablesync.verify_target('s1')"]


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
    routines = _routines_with('_backlog_ends', result='SETOF record')
    routines.append(st.RoutineState('old_helper', 'p_x integer', 'void', 'BEGIN END',
                                    comment='tablesync.postgresql sync_trigger v2'))
    routines.append(st.RoutineState('dba_own', '', 'void', 'BEGIN END', comment='mine'))
    text = shown(plan(spec(), environment(routines=routines), set_state()))
    assert text[0] == 'DROP ROUTINE "tablesync"."old_helper"(p_x integer)'
    assert text[1] == 'DROP ROUTINE "tablesync"."_backlog_ends"(p_set text)'
    assert text[2].startswith('CREATE OR REPLACE FUNCTION "tablesync"."_backlog_ends"')
    assert not any('dba_own' in t for t in text)


def test_newer_routines_are_never_downgraded():
    newer = _routines_with('flush', comment='tablesync.postgresql sync_trigger v%d' % (q.VERSION + 1))
    with pytest.raises(PlanError, match=r'newer tablesync.postgresql \(sync_trigger v%d\).*ships v%d'
                       % (q.VERSION + 1, q.VERSION)):
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


def test_every_body_carries_the_version_and_no_secret():
    for routine in ROUTINES:
        body = routine.body('tablesync')
        assert body.startswith(q.HEADER)
        assert 'sync_trigger v%d' % q.VERSION in body
        assert 'password' not in body.lower()
        assert 'to_jsonb' not in body and 'to_json(' not in body
        if not routine.definer:  # cannot pin search_path: everything qualified
            assert routine.settings() == []
            if routine.language == 'plpgsql':
                assert not unqualified_names(body), routine.name
    assert q.COMMENT == 'tablesync.postgresql sync_trigger v%d' % q.VERSION
    assert len(set(r.key for r in ROUTINES)) == len(ROUTINES)
    assert [r.name for r in ROUTINES if not r.definer and r.language == 'plpgsql'] == ['flush']


def test_definer_routines_pin_search_path_and_every_text_form_setting():
    assert q.pinned_settings() == [
        'search_path=pg_catalog, pg_temp', 'DateStyle=ISO, YMD', 'IntervalStyle=postgres',
        'TimeZone=UTC', 'extra_float_digits=3', 'bytea_output=hex', 'lc_monetary=C']
    assert "SET DateStyle = 'ISO, YMD'" in q.remote_settings_sql()
    assert q.remote_settings_sql().endswith('; BEGIN')


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
    assert text[:2] == ['DROP USER MAPPING FOR "%s" SERVER "tablesync_s1"' % OWNER,
                        'CREATE USER MAPPING FOR "%s" SERVER "tablesync_s1" OPTIONS '
                        '("user" \'writer\', "password" \'********\')' % OWNER]
    assert isinstance(the_plan.statements[1], UserMappingStatement)


def test_login_mapping_of_routines_v1_is_dropped():
    text = shown(plan(spec(), environment(login_mapping=True), set_state()))
    assert text[0] == 'DROP USER MAPPING FOR "postgres" SERVER "tablesync_s1"'


def test_changed_user_only_is_altered_and_unset_password_kept():
    target = dict(TARGET, user='other')
    del target['password']
    text = shown(plan(spec(target=target), environment(), set_state()))
    assert text[0] == ('ALTER USER MAPPING FOR "%s" SERVER "tablesync_s1" OPTIONS '
                       '(SET "user" \'other\')' % OWNER)


def test_existing_server_without_target():
    env = environment(server={'fdw': 'postgres_fdw', 'options': {'host': 'x'}})
    row = set_state()
    row.row['server_managed'] = False
    assert shown(plan(spec(target=None), env, row)) == []
    with pytest.raises(PlanError, match='foreign server tablesync_s1 does not exist'):
        plan(spec(target=None), environment(server=None, mapping=None), row)
    with pytest.raises(PlanError, match='no user mapping for role %s' % OWNER):
        plan(spec(target=None), environment(mapping=None, mapping_exists=False), row)


def test_invisible_mapping_options_are_a_warning():
    the_plan = plan(spec(), environment(mapping=None, mapping_exists=True), set_state())
    assert shown(the_plan) == [] and 'not visible' in the_plan.warnings[0]


@pytest.mark.parametrize('password', [PASSWORD, 'plain', "quote'", 'comma,semi;', '\\back'])
def test_mapping_values_travel_by_copy(password):
    statement = UserMappingStatement('Röle "x"', 'srv; x', {'user': 'u', 'password': password})
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
    UserMappingStatement('r', 's', {'user': 'u', 'password': 'secret'}).execute(cursor)
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

    statement = planner.flush_statement('s1')
    statement.execute(Cursor())
    assert statement.result == 42


# ---- tables ---------------------------------------------------------------------------------

def test_table_without_primary_key_is_synced_keyless():
    sources = {('public', 't'): source(installed=False, primary_key=[])}
    the_plan = plan(spec(), environment(installed=False), set_state(installed=False), sources)
    assert the_plan.after['tables'][0]['keyless'] is True
    assert the_plan.after['tables'][0]['key_columns'] == []
    capture = [t for t in shown(the_plan) if '"capture_1"() RETURNS trigger' in t][0]
    assert 'keyless' in capture


def test_key_columns_must_be_a_unique_not_null_index():
    sources = {('public', 't'): source(installed=False, primary_key=[], unique_keys=[['v']])}
    with pytest.raises(PlanError, match=r'key_columns \(id\) of table public.t are neither'):
        plan(spec([{'name': 'public.t', 'key_columns': ['id']}]), environment(installed=False),
             set_state(installed=False), sources)
    the_plan = plan(spec([{'name': 'public.t', 'key_columns': ['v']}]),
                    environment(installed=False), set_state(installed=False), sources)
    assert the_plan.after['tables'][0]['key_columns'] == ['v']


def test_table_problems_are_reported_together():
    sources = {('public', 'v'): source('v', installed=False, kind='v'),
               ('public', 'p'): source('p', installed=False, partition=True),
               ('public', 'g'): source('g', installed=False, generated=['total'])}
    tables = ['public.missing', 'public.v', 'public.p',
              {'name': 'public.g', 'key_columns': ['nope'], 'columns': ['v', 'total']}]
    with pytest.raises(PlanError) as e:
        plan(spec(tables), environment(installed=False), set_state(installed=False), sources)
    messages = e.value.messages
    assert 'table public.missing does not exist' in messages
    assert 'public.v is not a table (relkind v)' in messages
    assert 'public.p is a partition: list its partitioned table instead' in messages
    assert 'table public.g has no column(s) nope (key_columns)' in messages
    assert 'columns of table public.g: total generated (the target computes them)' in messages
    assert 'columns of table public.g must include the key column(s) nope' in messages


def test_composite_key_and_column_subset_capture_only_synced_columns():
    sources = {('public', 't'): source(installed=False, primary_key=['a', 'b'],
                                       columns=['a', 'b', 'c', 'd'])}
    the_plan = plan(spec([{'name': 'public.t', 'columns': ['a', 'b', 'd']}]),
                    environment(installed=False), set_state(installed=False), sources)
    text = shown(the_plan)
    assert any("ARRAY['a', 'b']::text[], ARRAY['a', 'b', 'd']::text[]" in t for t in text)
    capture = [t for t in text if '"capture_1"() RETURNS trigger' in t][0]
    assert '."c"' not in capture and 'NEW."d"' in capture and 'OLD."b"' in capture
    assert 'OLD."d"' not in capture  # the old row's key only


def test_queued_to_immediate_drains_under_lock():
    the_plan = plan(spec(mode='immediate'), environment(), set_state())
    text = shown(the_plan)
    assert text[:3] == [
        "UPDATE tablesync.trigger_sets SET server = 'tablesync_s1', server_managed = true, "
        "mode = 'immediate', batch_size = 1000 WHERE name = 's1'",
        'LOCK TABLE "public"."t" IN SHARE ROW EXCLUSIVE MODE',
        "SELECT tablesync.drain('s1')"]
    assert text[3].startswith('CREATE OR REPLACE FUNCTION "tablesync"."capture_1"()')
    assert 'tablesync._register_commit' in text[3]
    assert text[4:] == [
        'DROP TRIGGER "tablesync_s1_truncate" ON "public"."t"',
        'CREATE TRIGGER "tablesync_s1_truncate" AFTER TRUNCATE ON "public"."t" FOR EACH STATEMENT '
        "EXECUTE FUNCTION \"tablesync\".\"capture_truncate\"('s1', 'immediate', '1')",
        "SELECT tablesync.verify_target('s1')"]
    assert len(the_plan.drains) == 1


def test_immediate_to_queued_needs_no_drain():
    text = shown(plan(spec(), environment(mode='immediate'), set_state(mode='immediate'),
                      {('public', 't'): source(mode='immediate')}))
    assert not any('drain' in t or t.startswith('LOCK') for t in text)
    assert sum(t.startswith('CREATE TRIGGER') for t in text) == 1
    assert sum(t.startswith('CREATE OR REPLACE FUNCTION "tablesync"."capture_1"') for t in text) == 1


def test_changed_key_drains_before_the_new_key_is_used():
    sources = {('public', 't'): source(primary_key=['id'], columns=['id', 'v'],
                                       unique_keys=[['id'], ['v']])}
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
                    "key_columns = ARRAY['id']::text[], columns = ARRAY['id', 'v']::text[], "
                    "numbers = ARRAY[1, 2]::smallint[], follow = true WHERE id = 1",
                    "SELECT tablesync.verify_target('s1')"]


def test_disabled_trigger_is_recreated():
    current = source()
    current.triggers['tablesync_s1'].enabled = 'D'
    text = shown(plan(spec(), environment(), set_state(), {('public', 't'): current}))
    assert text[:2] == ['DROP TRIGGER "tablesync_s1" ON "public"."t"',
                        'CREATE TRIGGER "tablesync_s1" AFTER INSERT OR UPDATE OR DELETE ON '
                        '"public"."t" FOR EACH ROW EXECUTE FUNCTION "tablesync"."capture_1"()']


def test_new_table_gets_next_id_and_removed_table_drains():
    env = environment(set_triggers=[('public', 'old', 'tablesync_s1'),
                                    ('public', 'old', 'tablesync_s1_truncate')])
    state = set_state(tables=[st.ConfigTable(4, 'public', 'old', 'public', 'old', ['id'], ['id'])])
    sources = {('public', 't'): source(installed=False)}
    text = shown(plan(spec(), env, state, sources))
    assert text[:6] == ['LOCK TABLE "public"."old" IN SHARE ROW EXCLUSIVE MODE',
                        "SELECT tablesync.drain('s1')",
                        'DROP TRIGGER "tablesync_s1" ON "public"."old"',
                        'DROP TRIGGER "tablesync_s1_truncate" ON "public"."old"',
                        'DROP FUNCTION IF EXISTS "tablesync"."capture_4"()',
                        'DELETE FROM tablesync.trigger_tables WHERE id = ANY (ARRAY[4]::integer[])']
    assert "VALUES (5, 's1', 'public', 't'" in text[6]
    assert text[7].startswith('CREATE OR REPLACE FUNCTION "tablesync"."capture_5"()')


def test_removed_table_with_force_discards_its_changes():
    state = set_state(tables=[st.ConfigTable(1, 'public', 't', 'public', 't', ['id'], ['id', 'v'],
                                             numbers=[1, 2], follow=True),
                              st.ConfigTable(2, 'public', 'gone', 'public', 'gone', ['id'], ['id'])])
    text = shown(plan(spec(force=True), environment(), state))
    assert text == ["DELETE FROM tablesync.trigger_changes WHERE set_name = 's1' AND table_id = "
                    "ANY (ARRAY[2]::integer[])",
                    'DROP FUNCTION IF EXISTS "tablesync"."capture_2"()',
                    'DELETE FROM tablesync.trigger_tables WHERE id = ANY (ARRAY[2]::integer[])']


def test_backfill_once_then_switch_to_immediate():
    the_plan = plan(spec(mode='immediate', backfill=True), environment(installed=False),
                    set_state(installed=False), {('public', 't'): source(installed=False)})
    text = shown(the_plan)
    start = [i for i, s in enumerate(the_plan.statements)
             if isinstance(s, cap.BackfillStatement)][0]
    backfill = text[start]
    assert backfill.startswith('SET LOCAL "DateStyle" = \'ISO, YMD\'')
    assert 'LOCK TABLE "public"."t" IN SHARE MODE' in backfill
    assert ("DELETE FROM tablesync.trigger_changes WHERE set_name = 's1' AND table_id = 1"
            in backfill)
    assert ('SELECT \'s1\', 1, \'I\', ARRAY[pg_catalog.textin("pg_catalog"."int4out"(s."id")), '
            'pg_catalog.textin("pg_catalog"."textout"(s."v"))]::pg_catalog.text[] FROM ONLY '
            '"public"."t" AS s') in backfill
    assert the_plan.statements[start].autocommit
    assert 'tablesync._register_commit' not in text[start - 4]  # queued while copying
    assert text[start + 1:start + 3] == ['LOCK TABLE "public"."t" IN SHARE ROW EXCLUSIVE MODE',
                                         "SELECT tablesync.drain('s1')"]
    assert 'tablesync._register_commit' in text[start + 3]
    assert text[start + 4:] == [
        'DROP TRIGGER "tablesync_s1_truncate" ON "public"."t"',
        'CREATE TRIGGER "tablesync_s1_truncate" AFTER TRUNCATE ON "public"."t" FOR EACH STATEMENT '
        "EXECUTE FUNCTION \"tablesync\".\"capture_truncate\"('s1', 'immediate', '1')"]
    assert the_plan.after['tables'][0]['backfilled'] is True
    assert [label for label, _s in the_plan.backfills] == ['public.t']


def test_backfilled_table_is_not_copied_again_and_flush_follows_backfill():
    state = set_state()
    state.tables[0].backfilled = True
    assert shown(plan(spec(backfill=True, flush=True), environment(), state)) == []
    fresh = plan(spec(backfill=True), environment(), set_state())
    assert isinstance(fresh.statements[0], cap.BackfillStatement)
    assert shown(fresh)[1:] == ["CALL tablesync.flush('s1')"]


def test_backfill_statement_runs_in_its_own_transaction_and_counts_rows():
    class Cursor(object):
        def __init__(self, fail_at=None):
            self.calls = []
            self.rowcount = 7
            self.fail_at = fail_at

        def execute(self, query):
            text = query if isinstance(query, str) else render_query(query)
            self.calls.append(text)
            if self.fail_at and self.fail_at in text:
                raise RuntimeError('boom')

    statement = cap.BackfillStatement('s1', 3, ('public', 't'), True, ['id'], OUTPUTS)
    cursor = Cursor()
    statement.execute(cursor)
    assert cursor.calls[0] == 'BEGIN' and cursor.calls[-1] == 'COMMIT'
    assert statement.result == 7
    assert any('FROM "public"."t" AS s' in c for c in cursor.calls)  # partitioned: no ONLY
    failing = Cursor(fail_at='LOCK TABLE')
    with pytest.raises(RuntimeError):
        statement.execute(failing)
    assert failing.calls[-1] == 'ROLLBACK'


@pytest.mark.parametrize('name', HOSTILE)
def test_hostile_names_are_always_quoted(name):
    table = {'name': '"%s"."%s"' % (name.replace('"', '""'), name.replace('"', '""')),
             'target': '"%s"."t"' % name.replace('"', '""'), 'key_columns': [name]}
    sources = {(name, name): st.SourceTable(
        name, name, columns=[name, 'v'], unique_keys=[[name]],
        outputs={name: (name, name), 'v': ('pg_catalog', 'textout')})}
    the_plan = plan(spec([table], server=name), environment(installed=False),
                    set_state(installed=False), sources)
    text = shown(the_plan)
    ident = '"%s"' % name.replace('"', '""')
    literal = "'%s'" % name.replace("'", "''")
    assert any(t.startswith('CREATE SERVER %s FOREIGN DATA WRAPPER' % ident) for t in text)
    assert ('CREATE TRIGGER "tablesync_s1" AFTER INSERT OR UPDATE OR DELETE ON %s.%s FOR EACH ROW '
            'EXECUTE FUNCTION "tablesync"."capture_1"()' % (ident, ident)) in text
    assert any("VALUES (1, 's1', %s, %s, %s, 't', ARRAY[%s]::text[]" % (literal, literal, literal,
                                                                        literal) in t for t in text)
    body = cap.capture_body('s1', 'queued', 1, (name, name), [name, 'v'], [name],
                            {name: (name, name), 'v': ('pg_catalog', 'textout')})
    assert 'pg_catalog.textin(%s.%s(NEW.%s))' % (ident, ident, ident) in body


# ---- removal --------------------------------------------------------------------------------

def test_absent_drains_drops_and_tears_down_the_last_set():
    the_plan = planner.plan(spec(state='absent'), environment(), set_state())
    text = shown(the_plan)
    assert text[:5] == ['LOCK TABLE "public"."t" IN SHARE ROW EXCLUSIVE MODE',
                        "SELECT tablesync.drain('s1')",
                        'DROP TRIGGER "tablesync_s1" ON "public"."t"',
                        'DROP TRIGGER "tablesync_s1_truncate" ON "public"."t"',
                        'DROP FUNCTION IF EXISTS "tablesync"."capture_1"()']
    assert text[5:9] == ["DELETE FROM tablesync.trigger_tables WHERE set_name = 's1'",
                         "DELETE FROM tablesync.trigger_sets WHERE name = 's1'",
                         'DROP USER MAPPING FOR "%s" SERVER "tablesync_s1"' % OWNER,
                         'DROP SERVER "tablesync_s1"']
    assert text[9] == 'DROP TABLE "tablesync"."trigger_commits"'
    assert sum(t.startswith('DROP ROUTINE') for t in text) == len(ROUTINES)
    assert text[-5:] == ['DROP TABLE "tablesync"."trigger_changes"',
                         'DROP TABLE "tablesync"."trigger_tables"',
                         'DROP TABLE "tablesync"."trigger_sets"',
                         'DROP EXTENSION dblink', 'DROP SCHEMA "tablesync"']
    assert the_plan.torn_down and the_plan.after == {}


def test_absent_keeps_shared_objects_for_other_sets_and_discards_with_force():
    the_plan = planner.plan(spec(state='absent', force=True), environment(), set_state(other_sets=1))
    text = shown(the_plan)
    assert text[:2] == ['LOCK TABLE "public"."t" IN SHARE ROW EXCLUSIVE MODE',
                        "DELETE FROM tablesync.trigger_changes WHERE set_name = 's1'"]
    assert not any(t.startswith(('DROP ROUTINE', 'DROP TABLE', 'DROP SCHEMA')) for t in text)
    assert not the_plan.drains and not the_plan.torn_down


def test_absent_keeps_dblink_used_by_other_servers_and_foreign_objects():
    env = environment(dblink_servers=['tablesync_s1', 'someone_else'], schema_leftovers=0)
    text = shown(planner.plan(spec(state='absent'), env, set_state()))
    assert 'DROP EXTENSION dblink' not in text and 'DROP SCHEMA "tablesync"' not in text
    env = environment(dblink_schema='public', schema_leftovers=2)
    text = shown(planner.plan(spec(state='absent'), env, set_state()))
    assert 'DROP EXTENSION dblink' not in text and 'DROP SCHEMA "tablesync"' not in text


def test_absent_of_unknown_set_does_nothing():
    env = environment(installed=False)
    assert shown(planner.plan(spec(state='absent'), env, set_state(installed=False))) == []


def test_renamed_server_replaces_the_one_the_module_created():
    env = environment(server=None, mapping=None, mapping_exists=False)
    text = shown(plan(spec(server='new_srv'), env, set_state()))
    assert text[0].startswith('CREATE SERVER "new_srv" FOREIGN DATA WRAPPER dblink_fdw')
    assert text[1] == 'GRANT USAGE ON FOREIGN SERVER "new_srv" TO "%s"' % OWNER
    assert text[2].startswith('CREATE USER MAPPING FOR "%s" SERVER "new_srv"' % OWNER)
    assert text[-3:] == ['DROP USER MAPPING IF EXISTS FOR "%s" SERVER "tablesync_s1"' % OWNER,
                         'DROP SERVER IF EXISTS "tablesync_s1"',
                         "SELECT tablesync.verify_target('s1')"]


# ---- upgrade from routines v1 ----------------------------------------------------------------

def test_upgrade_from_v1_applies_the_old_queue_then_rebuilds_every_set():
    v1 = [st.RoutineState('capture_row', '', 'trigger', 'x', True, [],
                          'tablesync.postgresql sync_trigger v1', False, 'postgres'),
          st.RoutineState('drain', 'p_set text', 'bigint', 'x', True, [],
                          'tablesync.postgresql sync_trigger v1', False, 'postgres')]
    legacy = [('public', 't', 'tablesync_s1'), ('other', 'u', 'tablesync_s2')]
    env = environment(routines=v1, legacy_triggers=legacy, schema_owner='postgres')
    other = st.ConfigTable(2, 'other', 'u', 'other', 'u', [], ['id'], set_name='s2',
                           mode='immediate')
    state = set_state(other_tables=[other], queued=5)
    sources = {('public', 't'): source(),
               ('other', 'u'): source('u', 'other', primary_key=[], columns=['id'])}
    the_plan = plan(spec(), env, state, sources)
    text = shown(the_plan)
    start = text.index('LOCK TABLE "other"."u", "public"."t" IN SHARE ROW EXCLUSIVE MODE')
    assert text[start + 1] == ('SELECT coalesce(sum(tablesync.drain(s.name)), 0)::bigint FROM '
                               'tablesync.trigger_sets AS s')
    assert text[start + 2:start + 4] == ['DROP TRIGGER "tablesync_s1" ON "public"."t"',
                                         'DROP TRIGGER "tablesync_s2" ON "other"."u"']
    assert text[start + 4].startswith('ALTER TABLE tablesync.trigger_sets ADD COLUMN')
    assert 'DROP ROUTINE "tablesync"."capture_row"()' in text
    assert text.index('DROP ROUTINE "tablesync"."capture_row"()') > start + 3
    assert any(t.startswith('CREATE OR REPLACE FUNCTION "tablesync"."capture_2"()')
               and 'keyless' in t and '_register_commit' in t for t in text)
    assert ('CREATE TRIGGER "tablesync_s2" AFTER INSERT OR UPDATE OR DELETE ON "other"."u" FOR '
            'EACH ROW EXECUTE FUNCTION "tablesync"."capture_2"()') in text
    assert ('CREATE TRIGGER "tablesync_s1" AFTER INSERT OR UPDATE OR DELETE ON "public"."t" FOR '
            'EACH ROW EXECUTE FUNCTION "tablesync"."capture_1"()') in text
    assert 'CREATE CONSTRAINT TRIGGER commit_immediate' in ' '.join(text)
    assert len(the_plan.drains) == 1


def test_upgrade_needs_every_synced_table():
    v1 = [st.RoutineState('drain', 'p_set text', 'bigint', 'x', True, [],
                          'tablesync.postgresql sync_trigger v1')]
    other = st.ConfigTable(2, 'other', 'u', 'other', 'u', [], ['id'], set_name='s2',
                           mode='queued')
    with pytest.raises(PlanError, match='table other.u of sync set s2 no longer exists'):
        plan(spec(), environment(routines=v1), set_state(other_tables=[other]))


# ---- the scheduler's login (flush_role) -------------------------------------------------------

FLUSH_API_SIGNATURES = ['"tablesync"."flush"(IN p_set text, INOUT applied bigint)',
                        '"tablesync"."_backlog_ends"(p_set text)',
                        '"tablesync"."_flush_step"(p_set text, p_last_id bigint)',
                        '"tablesync"."_last_error"(p_set text)']


def with_executors(env, roles):
    for key, routine in env.routines.items():
        if routine.name in ('flush', '_backlog_ends', '_flush_step', '_last_error'):
            env.routines[key].executors = list(roles)
    env.schema_users = list(roles)
    return env


def test_flush_role_left_alone_when_not_given():
    env = with_executors(environment(), ['someone'])
    assert shown(plan(spec(), env, set_state())) == []


def test_flush_role_gets_the_flush_api_and_the_schema_only():
    text = shown(plan(spec(flush_role='sched "login"'), environment(), set_state()))
    role = '"sched ""login"""'
    assert sorted(text) == sorted(['GRANT EXECUTE ON ROUTINE %s TO %s' % (sig, role)
                                   for sig in FLUSH_API_SIGNATURES]
                                  + ['GRANT USAGE ON SCHEMA "tablesync" TO %s' % role])
    # nothing on the queue's tables, the capture or the server
    assert not [t for t in text if 'trigger_changes' in t or 'SERVER' in t or 'capture' in t]
    env = with_executors(environment(), ['sched "login"'])
    assert shown(plan(spec(flush_role='sched "login"'), env, set_state())) == []


def test_flush_role_replaced_and_revoked():
    env = with_executors(environment(), ['old'])
    text = shown(plan(spec(flush_role='new'), env, set_state()))
    assert 'REVOKE EXECUTE ON ROUTINE "tablesync"."flush"(IN p_set text, INOUT applied bigint) FROM "old"' in text
    assert 'GRANT EXECUTE ON ROUTINE "tablesync"."flush"(IN p_set text, INOUT applied bigint) TO "new"' in text
    assert 'REVOKE USAGE ON SCHEMA "tablesync" FROM "old"' in text
    env = with_executors(environment(), ['old'])
    text = shown(plan(spec(flush_role=''), env, set_state()))
    assert len(text) == 5 and all(t.startswith('REVOKE') and t.endswith('FROM "old"') for t in text)


def test_flush_role_granted_on_a_fresh_install():
    text = shown(plan(spec(flush_role='sched'), environment(installed=False), set_state(installed=False),
                      {('public', 't'): source(installed=False)}))
    grants = [t for t in text if t.endswith('TO "sched"')]
    assert len(grants) == 5
    # after the routines exist
    creates = [i for i, t in enumerate(text) if t.startswith('CREATE OR REPLACE FUNCTION') or
               t.startswith('CREATE OR REPLACE PROCEDURE')]
    assert min(text.index(g) for g in grants) > max(creates[:len(ROUTINES)])
