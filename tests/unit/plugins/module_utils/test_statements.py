"""Statements render offline exactly as PostgreSQL would read them, secrets masked."""
import pytest
from psycopg2 import sql

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import (
    Secret, Statement, quote_ident, quote_literal, render)

HOSTILE = [
    'plain',
    'Mixed Case',
    'with "quotes"',
    "semi;colon'; DROP TABLE x;--",
    'ünïcødé ✓',
    'x' * 63,
]


@pytest.mark.parametrize('name', HOSTILE)
def test_identifier_round_trip(name):
    shown = render(Statement(sql.SQL('DROP PUBLICATION {}').format(sql.Identifier(name))))
    assert shown == 'DROP PUBLICATION "%s"' % name.replace('"', '""')


def test_qualified_identifier():
    s = Statement(sql.SQL('SELECT 1 FROM {}').format(sql.Identifier('My Schema', 't"1')))
    assert render(s) == 'SELECT 1 FROM "My Schema"."t""1"'


def test_placeholders_render_params_and_mask_secrets():
    s = Statement(sql.SQL('ALTER ROLE {} PASSWORD %s VALID UNTIL %s').format(sql.Identifier('r')),
                  (Secret('hunter2'), 'infinity'))
    assert render(s) == "ALTER ROLE \"r\" PASSWORD '********' VALID UNTIL 'infinity'"
    assert 'hunter2' not in repr(s)
    assert s.real_params() == ('hunter2', 'infinity')
    assert s.secrets() == ['hunter2']


def test_literals():
    assert quote_literal("it's") == "'it''s'"
    assert quote_literal(None) == 'NULL'
    assert quote_literal(True) == 'true'
    assert quote_literal(42) == '42'
    assert quote_literal(['a', 'b']) == "ARRAY['a', 'b']"
    assert render(Statement(sql.SQL('SELECT {}').format(sql.Literal("a'b")))) == "SELECT 'a''b'"


def test_percent_escape():
    assert render(Statement(sql.SQL("SELECT '100%%' || %s"), ('x',))) == "SELECT '100%' || 'x'"


def test_quote_ident_doubles_quotes():
    assert quote_ident('a"b') == '"a""b"'


def test_statements_compare_by_rendered_text_and_mode():
    a = Statement(sql.SQL('X {}').format(sql.Identifier('a')))
    b = Statement(sql.SQL('X {}').format(sql.Identifier('a')))
    c = Statement(sql.SQL('X {}').format(sql.Identifier('a')), autocommit=True)
    assert a == b and a != c
