# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.tablesync.postgresql.plugins.filter.fdw_copies import (
    FilterModule, fdw_copies)
from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import sync_plan

SETS = [
    {'name': 'ref', 'method': 'fdw',
     'source': {'host': 'pub', 'database': 'shop'},
     'targets': [{'host': 'sub', 'database': 'reports'}],
     'tables': ['sales.orders',
                {'name': 'sales.customers', 'columns': ['id', 'name'], 'where': 'active'},
                {'name': 'stock.items', 'where': 'qty > 0'}]},
    {'name': 'other', 'method': 'fdw',
     'source': {'host': 'pub', 'database': 'shop'},
     'targets': [{'host': 'sub', 'database': 'reports'}],
     'tables': ['sales.refunds']},
]
HOSTVARS = {'pub': {'ansible_host': '10.0.0.1'}, 'sub': {'ansible_host': '10.0.0.2'}}


def test_one_list_per_set_in_table_order_with_columns_and_filters():
    parts = sync_plan(SETS, 'sub', HOSTVARS, methods=['fdw'])['subscriber_parts']
    assert fdw_copies(parts, 'remote_') == {
        'ref': [
            {'name': 'sales.orders', 'source': 'remote_sales.orders'},
            {'name': 'sales.customers', 'source': 'remote_sales.customers',
             'columns': ['id', 'name'], 'where': 'active'},
            {'name': 'stock.items', 'source': 'remote_stock.items', 'where': 'qty > 0'},
        ],
        'other': [{'name': 'sales.refunds', 'source': 'remote_sales.refunds'}],
    }


def test_no_parts_no_copies():
    assert fdw_copies([], 'remote_') == {}


def test_a_thousand_tables_in_one_call():
    sets = [dict(SETS[1], tables=['s.t%04d' % i for i in range(1000)])]
    parts = sync_plan(sets, 'sub', HOSTVARS, methods=['fdw'])['subscriber_parts']
    copies = fdw_copies(parts, 'r_')['other']
    assert len(copies) == 1000
    assert copies[-1] == {'name': 's.t0999', 'source': 'r_s.t0999'}


def test_refuses_what_is_not_a_plan():
    with pytest.raises(AnsibleFilterError, match='subscriber parts'):
        fdw_copies({'set': 'x'}, 'remote_')


def test_registered():
    assert FilterModule().filters()['fdw_copies'] is fdw_copies
