"""User-written names are taken literally; quoting is only needed for dots inside a part."""
import pytest

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.identifiers import (
    NameError_, format_qualified, parse_qualified, split_name)


@pytest.mark.parametrize('text,expected', [
    ('orders', ('public', 'orders')),
    ('sales.orders', ('sales', 'orders')),
    ('Sales.Order Items', ('Sales', 'Order Items')),
    ('"my.schema"."t.1"', ('my.schema', 't.1')),
    ('"a""b".c', ('a"b', 'c')),
    ("s.semi;colon'; DROP TABLE x;--", ('s', "semi;colon'; DROP TABLE x;--")),
    ('ünï.cødé', ('ünï', 'cødé')),
    ('s.' + 'x' * 63, ('s', 'x' * 63)),
])
def test_parse_qualified(text, expected):
    assert parse_qualified(text) == expected


@pytest.mark.parametrize('text', ['a.b.c', '', 's.', '.t', '"unterminated', '"a"b.c',
                                  's.' + 'x' * 64, 's.' + 'é' * 32])
def test_parse_qualified_rejects(text):
    with pytest.raises(NameError_):
        parse_qualified(text)


def test_default_schema():
    assert parse_qualified('t', default_schema='app') == ('app', 't')


@pytest.mark.parametrize('parts', [('public', 't'), ('my.schema', 't.1'), ('"q"', 'x'), ('A B', 'c;d')])
def test_format_round_trip(parts):
    assert parse_qualified(format_qualified(*parts)) == parts


def test_split_keeps_case_and_spaces():
    assert split_name('Big Schema.Some Table') == ['Big Schema', 'Some Table']
