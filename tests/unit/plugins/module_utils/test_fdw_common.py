"""Generic OPTIONS handling of the postgres_fdw planners: parsing, normalizing, ADD/SET/DROP."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (
    PlanError, alter_options_statement, comment_statement, create_options_clause,
    normalize_options, option_changes, parse_options, redacted_options, same_value,
    version_requirements)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Statement, render)
from psycopg2 import sql


def test_parse_options_splits_on_first_equals_sign():
    assert parse_options(['host=db1', 'options=-c a=b', 'empty=']) == {
        'host': 'db1', 'options': '-c a=b', 'empty': ''}
    assert parse_options(None) == {}


def test_normalize_turns_yaml_values_into_stored_text():
    assert normalize_options({'port': 5432, 'updatable': False, 'async_capable': True,
                              'fdw_tuple_cost': 0.05, 'host': 'db1'}, 'server') == {
        'port': '5432', 'updatable': 'false', 'async_capable': 'true',
        'fdw_tuple_cost': '0.05', 'host': 'db1'}


@pytest.mark.parametrize('kind,key', [('server', 'user'), ('server', 'password'),
                                      ('user mapping', 'password'),
                                      ('foreign table', 'table_name')])
def test_misplaced_options_are_refused_with_a_hint(kind, key):
    with pytest.raises(PlanError, match="option '%s' is not allowed here" % key):
        normalize_options({key: 'x'}, kind)


def test_none_value_is_refused():
    with pytest.raises(PlanError, match='has no value'):
        normalize_options({'host': None}, 'server')


def test_booleans_compare_by_meaning_other_options_exactly():
    assert same_value('updatable', 'on', 'true')
    assert same_value('keep_connections', 'OFF', 'false')
    assert not same_value('updatable', 'on', 'false')
    assert not same_value('host', 'DB1', 'db1')


def test_changes_add_set_drop_in_a_stable_order():
    changes = option_changes({'host': 'a', 'port': '5432', 'zz': '1', 'aa': '2'},
                             {'host': 'b', 'port': '5432', 'fetch_size': '100'})
    assert changes == [('SET', 'host', 'b'), ('ADD', 'fetch_size', '100'),
                       ('DROP', 'aa', None), ('DROP', 'zz', None)]


def test_unmanaged_keys_are_never_dropped():
    assert option_changes({'user': 'u', 'password': 'p'}, {'user': 'u'}, managed={'user'}) == []


def test_alter_statement_binds_values_and_masks_passwords():
    stmt = alter_options_statement(
        sql.SQL('ALTER USER MAPPING FOR {} SERVER {}').format(sql.Identifier('r'),
                                                              sql.Identifier('s')),
        [('SET', 'password', "it's secret"), ('ADD', 'sslmode', 'require'), ('DROP', 'x', None)])
    assert render(stmt) == ('ALTER USER MAPPING FOR "r" SERVER "s" OPTIONS '
                            '(SET "password" \'********\', ADD "sslmode" \'require\', DROP "x")')
    assert stmt.real_params() == ("it's secret", 'require')
    assert stmt.secrets() == ["it's secret"]
    assert alter_options_statement(sql.SQL('ALTER SERVER x'), []) is None


@pytest.mark.parametrize('value', ["it's", "a'; DROP TABLE t; --", "back\\slash", '100%', 'ünï ✓'])
def test_option_values_with_quotes_are_literals(value):
    clause, params = create_options_clause({'application_name': value})
    shown = render(Statement(sql.SQL('CREATE SERVER s FOREIGN DATA WRAPPER w{}').format(clause),
                             params))
    assert shown.endswith("OPTIONS (\"application_name\" '%s')" % value.replace("'", "''"))
    assert params == [value]


def test_empty_create_options():
    clause, params = create_options_clause({})
    assert render(Statement(clause)) == '' and params == []


def test_version_requirements_name_the_version():
    opts = {'batch_size': '1', 'parallel_commit': 'true', 'fetch_size': '1', 'host': 'x'}
    assert version_requirements(opts, 'server', 130000) == [
        ('batch_size', 140000), ('parallel_commit', 150000)]
    assert version_requirements(opts, 'server', 140000) == [('parallel_commit', 150000)]
    assert version_requirements(opts, 'server', 150000) == []
    assert version_requirements({'password_required': 'false'}, 'user mapping', 120000) == [
        ('password_required', 130000)]


def test_redacted_options():
    assert redacted_options({'user': 'u', 'password': 'p'}) == {'user': 'u',
                                                                'password': '********'}


def test_comment_statement():
    obj = sql.SQL('SERVER {}').format(sql.Identifier('s'))
    assert comment_statement(obj, 'a', None) is None
    assert comment_statement(obj, 'a', 'a') is None
    assert comment_statement(obj, None, '') is None
    assert render(comment_statement(obj, 'a', '')) == 'COMMENT ON SERVER "s" IS NULL'
    assert render(comment_statement(obj, None, "it's")) == "COMMENT ON SERVER \"s\" IS 'it''s'"
