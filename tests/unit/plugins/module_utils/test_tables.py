# -*- coding: utf-8 -*-
"""core.tables: the one table model and its parser, shared by every module and the sync model."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.tables import (
    KEYS, TableRef, parse_table_refs)


def test_strings_and_dicts_with_the_allowed_keys():
    refs, errors = parse_table_refs(
        ['sales.orders', 'plain', {'name': 'Sales.Order Items', 'columns': ['a', 'B c'],
                                   'key_columns': ['a'], 'where': " region = 'EU' ",
                                   'target_where': '', 'target': 'rep.items',
                                   'replica_identity': 'index:items_uq'}], KEYS)
    assert errors == []
    assert [r.key for r in refs] == [('sales', 'orders'), ('public', 'plain'), ('Sales', 'Order Items')]
    full = refs[2]
    assert (full.columns, full.key_columns, full.where, full.target_where, full.target,
            full.replica_identity) == (['a', 'B c'], ['a'], "region = 'EU'", '', ('rep', 'items'),
                                       ('index', 'items_uq'))
    assert full.shown == 'Sales.Order Items' and refs[0].columns is None and refs[0].target is None


def test_every_problem_is_collected_at_once():
    refs, errors = parse_table_refs(
        ['a.t', 'a.t', {'name': 'b', 'where': 'x'}, {'name': 'c', 'columns': []}, 42, 'x.y.z',
         {'name': 'd', 'where': 'true); DROP TABLE t; --'}, {'columns': ['a']},
         {'name': 'e', 'replica_identity': 'nothing'}, 'ok.table'], ('name', 'columns', 'replica_identity'))
    assert [r.shown for r in refs] == ['a.t', 'ok.table']
    assert len(errors) == 8, errors
    for part in ('a.t is listed more than once', 'unknown key(s) where', 'non-empty list of column names',
                 'got 42', 'not a valid schema.table', 'has no name', "must be 'full', 'default'"):
        assert any(part in e for e in errors), (part, errors)


def test_a_where_must_be_one_expression():
    refs, errors = parse_table_refs([{'name': 't', 'where': 'a > 1; DELETE FROM t'}], ('name', 'where'))
    assert refs == [] and 'contains ";"' in errors[0]


def test_not_a_list():
    assert parse_table_refs('sales.orders')[1] == ["tables must be a list, got 'sales.orders'"]
    assert parse_table_refs(None) == ([], [])
    assert repr(TableRef('a', 'b')) == 'TableRef(a.b)'
