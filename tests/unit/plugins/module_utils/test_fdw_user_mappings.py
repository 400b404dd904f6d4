"""pg_fdw_user_mappings planner: create/alter/drop, PUBLIC, password change never shown."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.user_mappings import (
    PUBLIC, MappingSpec, MappingState, mappings_as_list, plan_mappings, role_key)
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import PlanError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import render_all

SECRET = "pa'ss; DROP ROLE x --"
QUIET = ("SELECT pg_catalog.set_config('log_statement', 'none', true), "
         "pg_catalog.set_config('log_min_duration_statement', '-1', true), "
         "pg_catalog.set_config('log_min_error_statement', 'panic', true)")


def plan(specs, current=None, roles=('app', 'other'), **kw):
    return plan_mappings('src', specs, current or {}, set(roles), **kw)


def shown(p):
    text = '\n'.join(render_all(p.statements)) + repr(mappings_as_list(p.after)) + repr(p.warnings)
    assert SECRET not in text
    return render_all(p.statements)


def test_role_key():
    assert role_key('PUBLIC') is PUBLIC and role_key('public') is PUBLIC
    assert role_key('Public Role') == 'Public Role'


def test_create_for_role_and_public_password_masked():
    p = plan([MappingSpec('app', 'remote', SECRET), MappingSpec('PUBLIC', 'ro')])
    assert shown(p) == [
        'CREATE USER MAPPING FOR "app" SERVER "src" OPTIONS ("user" \'remote\', '
        '"password" \'********\')',
        'CREATE USER MAPPING FOR PUBLIC SERVER "src" OPTIONS ("user" \'ro\')',
    ]
    assert p.statements[0].real_params() == ('remote', SECRET)
    assert mappings_as_list(p.after) == [
        {'role': 'PUBLIC', 'user': 'ro', 'password_set': False, 'options': {}},
        {'role': 'app', 'user': 'remote', 'password_set': True, 'options': {}}]


def test_quiet_log_statement_first_when_a_password_is_sent_and_allowed():
    p = plan([MappingSpec('app', 'remote', SECRET)], can_quiet_log=True)
    assert shown(p)[0] == QUIET
    p = plan([MappingSpec('app', 'remote')], can_quiet_log=True)
    assert QUIET not in shown(p)


def test_unchanged_password_is_no_change():
    current = {'app': MappingState('app', {'user': 'remote', 'password': SECRET})}
    p = plan([MappingSpec('app', 'remote', SECRET)], current, can_quiet_log=True)
    assert p.statements == [] and p.password_changed == []


def test_changed_password_detected_and_set_without_showing_it():
    current = {'app': MappingState('app', {'user': 'remote', 'password': 'old'})}
    p = plan([MappingSpec('app', 'remote', SECRET)], current)
    assert shown(p) == [
        'ALTER USER MAPPING FOR "app" SERVER "src" OPTIONS (SET "password" \'********\')']
    assert p.password_changed == ['app']
    assert p.statements[0].secrets() == [SECRET]


def test_unset_user_and_password_are_left_alone_other_options_are_declarative():
    current = {'app': MappingState('app', {'user': 'remote', 'password': 'p',
                                           'sslcert': '/a', 'sslkey': '/k'})}
    p = plan([MappingSpec('app', options={'sslcert': '/b'})], current)
    assert shown(p) == [
        'ALTER USER MAPPING FOR "app" SERVER "src" OPTIONS (SET "sslcert" \'/b\', '
        'DROP "sslkey")']
    assert mappings_as_list(p.after) == [{'role': 'app', 'user': 'remote', 'password_set': True,
                                          'options': {'sslcert': '/b'}}]


def test_absent_and_exclusive():
    current = {'app': MappingState('app', {}), PUBLIC: MappingState(PUBLIC, {}),
               'old': MappingState('old', {})}
    p = plan([MappingSpec('app', state='absent')], current)
    assert shown(p) == ['DROP USER MAPPING FOR "app" SERVER "src"']
    p = plan([MappingSpec('app')], current, exclusive=True)
    assert shown(p) == ['DROP USER MAPPING FOR PUBLIC SERVER "src"',
                        'DROP USER MAPPING FOR "old" SERVER "src"']
    assert plan([MappingSpec('gone', state='absent')], current, roles=()).statements == []


def test_invisible_options_warn_and_change_nothing():
    p = plan([MappingSpec('app', 'u', 'p')], {'app': MappingState('app', None)})
    assert p.statements == []
    assert 'not visible' in p.warnings[0]
    assert mappings_as_list(p.after) == [{'role': 'app', 'options_visible': False}]


def test_errors():
    with pytest.raises(PlanError, match='role nobody does not exist'):
        plan([MappingSpec('nobody', 'u')])
    with pytest.raises(PlanError, match='listed more than once'):
        plan([MappingSpec('app'), MappingSpec('app')])
    with pytest.raises(PlanError, match="'password' is not allowed"):
        MappingSpec('app', options={'password': 'x'})


@pytest.mark.parametrize('name', ['Mixed Case', 'with "quotes"', "semi;colon'; x", 'ünï ✓',
                                  'r' * 63])
def test_hostile_role_names(name):
    p = plan_mappings(name, [MappingSpec(name, name)], {}, {name})
    quoted = '"%s"' % name.replace('"', '""')
    assert shown(p) == ['CREATE USER MAPPING FOR %s SERVER %s OPTIONS ("user" \'%s\')'
                        % (quoted, quoted, name.replace("'", "''"))]


# ---- scram_passthrough (PostgreSQL 18) ---------------------------------------------------------

def test_passthrough_sets_the_option_and_drops_a_stored_password():
    p = plan([MappingSpec('app', 'app', scram_passthrough=True)])
    assert shown(p) == ['CREATE USER MAPPING FOR "app" SERVER "src" OPTIONS '
                        '("use_scram_passthrough" \'true\', "user" \'app\')']
    current = {'app': MappingState('app', {'user': 'app', 'password': SECRET})}
    p = plan([MappingSpec('app', 'app', scram_passthrough=True)], current)
    assert shown(p) == ['ALTER USER MAPPING FOR "app" SERVER "src" OPTIONS '
                        '(ADD "use_scram_passthrough" \'true\', DROP "password")']
    assert mappings_as_list(p.after) == [{'role': 'app', 'user': 'app', 'password_set': False,
                                          'options': {'use_scram_passthrough': 'true'}}]
    done = {'app': MappingState('app', {'user': 'app', 'use_scram_passthrough': 'on'})}
    assert plan([MappingSpec('app', 'app', scram_passthrough=True)], done).statements == []


def test_passthrough_refuses_a_password_and_public():
    with pytest.raises(PlanError, match='stores no password'):
        MappingSpec('app', 'app', SECRET, scram_passthrough=True)
    with pytest.raises(PlanError, match='PUBLIC cannot use scram_passthrough'):
        MappingSpec('PUBLIC', 'app', scram_passthrough=True)


def test_leaving_passthrough_keeps_an_unmentioned_password_rule():
    # without scram_passthrough an unset password is left as it is (the option goes)
    current = {'app': MappingState('app', {'user': 'app', 'use_scram_passthrough': 'true',
                                           'password': SECRET})}
    assert shown(plan([MappingSpec('app', 'app')], current)) == [
        'ALTER USER MAPPING FOR "app" SERVER "src" OPTIONS (DROP "use_scram_passthrough")']
