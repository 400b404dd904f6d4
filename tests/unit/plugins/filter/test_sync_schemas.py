# -*- coding: utf-8 -*-
"""Schema-wide sync sets: which sets a host lists, how their tables are completed, and how the
model validates them."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import sync_model_errors
from ansible_collections.tablesync.postgresql.plugins.filter.sync_schemas import (
    sync_expand_schemas, sync_schema_sources)

HOSTS = ['src', 'dst']


def schema_set(**kw):
    s = {'name': 'shop', 'method': 'logical', 'source': {'host': 'src', 'database': 'shop'},
         'targets': [{'host': 'dst', 'database': 'shop_rep'}], 'schemas': ['sales']}
    s.update(kw)
    return s


def listed(tables, missing=()):
    return {'src': {'sync_model_schema_tables': {'shop': {'tables': tables, 'missing': list(missing)}}}}


def test_sources_only_this_hosts_schema_sets():
    sets = [schema_set(), schema_set(name='other', source={'host': 'dst', 'database': 'x'}),
            {'name': 'plain', 'source': {'host': 'src', 'database': 'shop'}, 'tables': ['a.b']},
            schema_set(name='bad', schemas='sales')]
    assert sync_schema_sources(sets, 'src') == [{'name': 'shop', 'database': 'shop', 'schemas': ['sales']}]
    assert sync_schema_sources(None, 'src') == []


def test_expand_keeps_listed_entries_adds_the_rest_in_order_less_excluded():
    raw = schema_set(tables=[{'name': 'sales.orders', 'where': 'id > 0'}],
                     exclude_tables=['sales.log'])
    out = sync_expand_schemas([raw], listed([['sales', 'items'], ['sales', 'log'], ['sales', 'orders'],
                                             ['sales', 'my.table']]))
    assert out[0]['tables'] == [{'name': 'sales.orders', 'where': 'id > 0'}, 'sales.items',
                                'sales."my.table"']
    assert raw.get('tables') == [{'name': 'sales.orders', 'where': 'id > 0'}]  # input untouched
    assert sync_model_errors(out, HOSTS) == []


def test_expand_is_idempotent_and_leaves_other_sets():
    plain = {'name': 'plain', 'source': {'host': 'src', 'database': 'shop'},
             'targets': [{'host': 'dst', 'database': 'd'}], 'tables': ['a.b']}
    hv = listed([['sales', 'a'], ['sales', 'b']])
    once = sync_expand_schemas([schema_set(), plain], hv)
    assert sync_expand_schemas(once, hv) == once
    assert once[1] is plain


def test_not_listed_sets_stay_and_fail_validation_clearly():
    out = sync_expand_schemas([schema_set()], {})
    assert 'tables' not in out[0]
    errors = sync_model_errors(out, HOSTS)
    assert errors == ["sync set 'shop': no tables: its schemas hold none, or they were not listed "
                      "(the sync_model role lists them on the source host, which must be in the run)"]
    # an empty schema: the same message
    assert sync_model_errors(sync_expand_schemas([schema_set()], listed([])), HOSTS) == errors


def test_a_missing_schema_fails_naming_it():
    with pytest.raises(AnsibleFilterError, match="sync set 'shop': schema\\(s\\) nope do not exist "
                                                 "in database shop on src"):
        sync_expand_schemas([schema_set(schemas=['sales', 'nope'])], listed([['sales', 'a']], ['nope']))


@pytest.mark.parametrize('kw, message', [
    (dict(schemas='sales'), "schemas must be a non-empty list of schema names, got 'sales'"),
    (dict(schemas=[]), 'schemas must be a non-empty list of schema names, got []'),
    (dict(schemas=['']), "schemas must be a non-empty list of schema names, got ['']"),
    (dict(schemas=['sales'], exclude_tables='sales.a', tables=['sales.b']),
     "exclude_tables must be a list of table names, got 'sales.a'"),
    (dict(schemas=['sales'], exclude_tables=['a.b.c'], tables=['sales.b']), 'exclude_tables: '),
])
def test_validation_of_the_schema_keys(kw, message):
    errors = sync_model_errors([schema_set(**kw)], HOSTS)
    assert any(message in e for e in errors), errors


def test_exclude_tables_needs_schemas():
    raw = schema_set(tables=['sales.a'], exclude_tables=['sales.b'])
    del raw['schemas']
    assert sync_model_errors([raw], HOSTS) == ["sync set 'shop': exclude_tables needs schemas"]
