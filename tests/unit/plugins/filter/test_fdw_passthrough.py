"""fdw_passthrough filters: source databases, grants, definitions index, pg_hba lines."""
import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.tablesync.postgresql.plugins.filter.fdw_passthrough import (
    fdw_definitions_index, fdw_passthrough_grants, fdw_passthrough_hba, fdw_source_databases)


def part(name, host, db, tables, state='present'):
    return {'set': name, 'state': state, 'table_names': tables,
            'publisher': {'host': host, 'port': 5432, 'database': db}}


PARTS = [part('a', 'src1', 'shop', ['sales.orders', 'sales.items']),
         part('b', 'src1', 'shop', ['sales.orders', 'hr.staff']),
         part('c', 'src2', 'crm', ['public.leads']),
         part('gone', 'src3', 'old', ['public.x'], state='absent')]


def test_one_entry_per_source_database_with_the_union_of_tables():
    assert fdw_source_databases(PARTS) == [
        {'host': 'src1', 'port': 5432, 'database': 'shop', 'sets': ['a', 'b'],
         'tables': ['hr.staff', 'sales.items', 'sales.orders']},
        {'host': 'src2', 'port': 5432, 'database': 'crm', 'sets': ['c'],
         'tables': ['public.leads']}]


def test_grants_per_source_database_and_login():
    grants = fdw_passthrough_grants(PARTS, ['reporting', 'analyst'])
    assert [(g['host'], g['database'], g['role']) for g in grants] == [
        ('src1', 'shop', 'reporting'), ('src1', 'shop', 'analyst'),
        ('src2', 'crm', 'reporting'), ('src2', 'crm', 'analyst')]
    assert fdw_passthrough_grants(PARTS, []) == []
    with pytest.raises(AnsibleFilterError, match='list of role names'):
        fdw_passthrough_grants(PARTS, 'reporting')


def test_definitions_index_by_source_database_and_table():
    results = {'results': [
        {'item': {'host': 'src1', 'database': 'shop'},
         'tables': [{'name': 'sales.orders', 'foreign_table': {'name': 'orders'}}]},
        {'skipped': True, 'item': {'host': 'src2', 'database': 'crm'}}]}
    assert fdw_definitions_index(results) == {'src1/shop': {'sales.orders': {'name': 'orders'}}}
    assert fdw_definitions_index({}) == {}


def test_hba_lines_for_the_logins_each_consumer_names():
    c1 = {'host': 'c1', 'address': '10.0.0.5'}
    c2 = {'host': 'c2', 'address': 'fd00::7'}
    sets = [{'name': 'a', 'state': 'present', 'database': 'shop', 'subscribers': [c1, c2]},
            {'name': 'b', 'state': 'present', 'database': 'shop', 'subscribers': [c1]},
            {'name': 'old', 'state': 'absent', 'database': 'shop',
             'subscribers': [{'host': 'c1', 'address': None}]}]
    hostvars = {'c1': {'v': ['reporting']}, 'c2': {}}
    assert fdw_passthrough_hba(sets, hostvars, 'v') == [
        {'database': 'shop', 'address': '10.0.0.5/32', 'user': 'reporting',
         'comment': 'fdw scram pass-through: a, b'}]
    hostvars['c2'] = {'v': ['analyst']}
    assert [line['address'] for line in fdw_passthrough_hba(sets, hostvars, 'v')] \
        == ['10.0.0.5/32', 'fd00::7/128']
