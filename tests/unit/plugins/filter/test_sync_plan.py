# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import (
    IMPLEMENTED_METHODS,
    FilterModule, replication_settings, slot_name, sync_hosts, sync_model_errors, sync_plan, sync_plans,
    sync_cleanup, sync_report, sync_subscription_status)

INVENTORY = ['pub', 'sub1', 'sub2', 'other']
HOSTS = {  # hostvars
    'pub': {'ansible_host': '10.0.0.1'},
    'sub1': {'ansible_host': 'sub1.example.org', 'ansible_default_ipv4': {'address': '10.0.0.2'}},
    'sub2': {'tablesync_address': 'fd00::3', 'tablesync_port': 5433},
    'other': {'ansible_host': 'other.example.org'},
}
SETS = [
    {
        'name': 'orders',
        'source': {'host': 'pub', 'database': 'shop'},
        'targets': [{'host': 'sub1', 'database': 'shop'}, {'host': 'sub2', 'database': 'shop_copy'}],
        'tables': ['sales.orders', {'name': 'sales.customers', 'columns': ['id', 'name'],
                                    'where': "country = 'NL'"}, 'audit_log'],
        'publish': ['insert', 'update', 'delete'],
        'replica_identity': {'audit_log': 'full'},
    },
    {
        'name': 'stock',
        'source': {'host': 'pub', 'database': 'shop'},
        'targets': [{'host': 'sub1', 'database': 'shop'}],
        'tables': ['sales.stock'],
    },
    {
        'name': 'old',
        'state': 'absent',
        'source': {'host': 'pub', 'database': 'legacy'},
        'targets': [{'host': 'sub1', 'database': 'legacy'}],
        'tables': ['public.t'],
    },
    {
        'name': 'later',
        'method': 'fdw',
        'source': {'host': 'sub1', 'database': 'shop'},
        'targets': [{'host': 'sub2', 'database': 'x'}],
        'tables': ['sales.orders'],
    },
]


def errors_for(change):
    sets = copy.deepcopy(SETS)
    change(sets)
    return sync_model_errors(sets, INVENTORY)


def test_valid_model_has_no_errors():
    assert sync_model_errors(SETS, INVENTORY) == []
    assert sync_model_errors([], INVENTORY) == []
    assert sync_model_errors(None, INVENTORY) == []


def test_not_a_list():
    assert 'must be a list' in sync_model_errors({'name': 'x'}, INVENTORY)[0]


@pytest.mark.parametrize('change, expected', [
    (lambda s: s[0]['source'].update(host='ghost'), "source.host 'ghost' is not a host of this inventory"),
    (lambda s: s[0]['targets'][0].update(host='ghost'), "targets[0].host 'ghost' is not a host"),
    (lambda s: s[0]['tables'].append('sales.orders'), 'table sales.orders is listed twice'),
    (lambda s: s[0]['tables'].append('public.audit_log'), 'table public.audit_log is listed twice'),
    (lambda s: s[0]['tables'].append({'name': 'sales.orders', 'where': 'id > 1'}), 'listed twice'),
    (lambda s: s[0]['targets'].append({'host': 'pub', 'database': 'shop'}), 'is the source itself'),
    (lambda s: s[0]['targets'].append({'host': 'sub1', 'database': 'shop'}), 'listed twice'),
    (lambda s: s[0].update(method='pglogical'), "unknown method 'pglogical'"),
    (lambda s: s[0].update(name='Orders'), "name 'Orders' is not a valid set name"),
    (lambda s: s[0].update(name='a-b'), 'is not a valid set name'),
    (lambda s: s[0].update(name='1abc'), 'is not a valid set name'),
    (lambda s: s[0].update(name='x' * 45), 'at most 44 are allowed'),
    (lambda s: s[1].update(name='orders'), "sync set 'orders' is defined twice"),
    (lambda s: s[0].update(state='gone'), 'state must be present or absent'),
    (lambda s: s[0].update(target=[]), 'unknown keys target'),
    (lambda s: s[0].update(targets=[]), 'targets must be a non-empty list'),
    (lambda s: s[0].update(tables=[]), 'tables must be a non-empty list'),
    (lambda s: s[0].update(tables=[{'name': 'a.b', 'colums': ['x']}]), 'unknown key(s) colums'),
    (lambda s: s[0].update(tables=[{'name': 'a.b', 'columns': []}]), 'columns must be a non-empty list'),
    (lambda s: s[0].update(tables=['a.b.c']), 'not a valid schema.table name'),
    (lambda s: s[0].update(tables=[42]), 'a table is a "schema.table" string'),
    (lambda s: s[0].update(publish=['insert', 'upsert']), 'publish must be a non-empty list'),
    (lambda s: s[0].update(replica_identity='sometimes'), 'replica_identity must be one of'),
    (lambda s: s[0].update(replica_identity={'sales.nope': 'full'}), 'not in the set'),
    (lambda s: s[0]['source'].pop('database'), 'source.database is required'),
    # a second set may feed other tables of the same target database
    (lambda s: s[1]['targets'].append({'host': 'sub2', 'database': 'shop_copy'}), None),
])
def test_each_error_is_named(change, expected):
    errors = errors_for(change)
    if expected is None:
        assert errors == []
    else:
        assert any(expected in e for e in errors), errors


def test_two_sets_feeding_one_target_table():
    def change(sets):
        sets[1]['tables'] = ['sales.orders']
    errors = errors_for(change)
    assert errors == ["table sales.orders in database shop on sub1 is a target of both sync sets "
                      "'orders' and 'stock'"]


def test_absent_set_does_not_conflict():
    def change(sets):
        sets[1]['tables'] = ['sales.orders']
        sets[1]['state'] = 'absent'
    assert errors_for(change) == []


def test_all_errors_at_once_and_inventory_optional():
    sets = [{'name': 'a', 'source': {'host': 'x', 'database': 'd'}, 'targets': [{'host': 'x', 'database': 'd'}],
             'tables': ['t', 't']}]
    errors = sync_model_errors(sets, ['y'])
    assert len(errors) == 3  # unknown source, unknown target, table twice
    assert len(sync_model_errors(sets)) == 2  # target == source, table twice


def test_sync_hosts_address_precedence():
    hostvars = {
        'a': {'tablesync_address': '192.0.2.10', 'ansible_host': '10.9.9.9'},
        'b': {'ansible_host': '10.0.0.5', 'ansible_default_ipv4': {'address': '10.1.1.1'}},
        'c': {'ansible_host': 'c.example.org', 'ansible_default_ipv4': {'address': '10.1.1.2'},
              'tablesync_port': '5433'},
        'd': {'ansible_host': 'd.example.org', 'ansible_facts': {'default_ipv4': {'address': '10.1.1.3'}}},
        'e': {},
    }
    assert sync_hosts(hostvars, ['a', 'b', 'c', 'd', 'e', 'f']) == {
        'a': {'address': '192.0.2.10', 'port': 5432},
        'b': {'address': '10.0.0.5', 'port': 5432},
        'c': {'address': '10.1.1.2', 'port': 5433},
        'd': {'address': '10.1.1.3', 'port': 5432},
        'e': {'address': None, 'port': 5432},
        'f': {'address': None, 'port': 5432},
    }
    with pytest.raises(AnsibleFilterError, match='tablesync_port of a'):
        sync_hosts({'a': {'tablesync_port': 'x'}}, ['a'])


@pytest.mark.parametrize('address', ['10.0.0.1\nhost all all 0.0.0.0/0 trust', '10.0.0.1 trust',
                                     'a..b', '-bad.example.org', 'x' * 64, 'db;rm', ''])
def test_sync_hosts_refuses_addresses_that_are_not_ip_cidr_or_host_names(address):
    if address == '':
        assert sync_hosts({'a': {'tablesync_address': address}}, ['a'])['a']['address'] is None
        return
    with pytest.raises(AnsibleFilterError, match='tablesync_address of a must be an IP'):
        sync_hosts({'a': {'tablesync_address': address}}, ['a'])


@pytest.mark.parametrize('address', ['10.0.0.0/8', '2001:db8::1', 'db-1.example.org', 'pub'])
def test_sync_hosts_accepts_ip_cidr_and_host_names(address):
    assert sync_hosts({'a': {'tablesync_address': address}}, ['a'])['a']['address'] == address


@pytest.mark.parametrize('database', ['shop\nExecStartPre=+/bin/sh', 'a"b', 'a%b', 'a\\b',
                                      'x' * 64])
def test_unsafe_database_names_are_refused(database):
    sets = copy.deepcopy(SETS)
    sets[0]['source']['database'] = database
    errors = sync_model_errors(sets, INVENTORY)
    assert any('is not a usable database name' in e for e in errors), errors


def test_publisher_part():
    plan = sync_plan(SETS, 'pub', HOSTS)
    assert [s['name'] for s in plan['publisher_sets']] == ['orders', 'stock', 'old']
    orders = plan['publisher_sets'][0]
    assert orders['publication'] == 'tablesync_orders'
    assert orders['database'] == 'shop'
    assert orders['table_names'] == ['sales.orders', 'sales.customers', 'public.audit_log']
    assert orders['tables'][1] == {'name': 'sales.customers', 'columns': ['id', 'name'],
                                   'where': "country = 'NL'"}
    # the per-table identity goes into the table's entry, as pg_publication takes it
    assert orders['tables'][2] == {'name': 'public.audit_log', 'replica_identity': 'full'}
    assert orders['tables'][0] == 'sales.orders'
    assert orders['publish'] == ['insert', 'update', 'delete']
    assert orders['replica_identity'] is None
    assert [(s['host'], s['database'], s['address']) for s in orders['subscribers']] == [
        ('sub1', 'shop', '10.0.0.2'), ('sub2', 'shop_copy', 'fd00::3')]
    assert orders['subscribers'][0]['slot'] == slot_name('orders', 'sub1', 'shop')
    assert plan['subscriber_parts'] == []
    assert plan['hba_entries'] == [
        {'database': 'shop', 'address': '10.0.0.2/32', 'sets': ['orders', 'stock']},
        {'database': 'shop', 'address': 'fd00::3/128', 'sets': ['orders']},
    ]
    assert plan['select_tables'] == [
        {'database': 'legacy', 'tables': [], 'after_tables': False},  # the absent set's grants are revoked
        {'database': 'shop', 'tables': ['sales.orders', 'sales.customers', 'public.audit_log',
                                        'tablesync_ddl.orders', 'sales.stock', 'tablesync_ddl.stock'],
         'after_tables': False},
    ]
    assert plan['publications'] == {'shop': ['tablesync_orders', 'tablesync_stock'], 'legacy': []}
    assert len(plan['slots']) == 3
    assert plan['counts'] == {'publications': 2, 'subscriptions_served': 3, 'subscriptions_held': 0}
    assert plan['is_publisher'] and not plan['is_subscriber']


def test_subscriber_part():
    # the logical roles plan with methods=['logical']: 'later' (fdw) is ignored there
    plan = sync_plan(SETS, 'sub1', HOSTS, methods=['logical'])
    assert plan['publisher_sets'] == []  # 'later' is an fdw set: not the logical roles' business
    assert plan['ignored_sets'] == [{'name': 'later', 'method': 'fdw'}]
    parts = plan['subscriber_parts']
    assert [(p['set'], p['state'], p['database']) for p in parts] == [
        ('orders', 'present', 'shop'), ('stock', 'present', 'shop'), ('old', 'absent', 'legacy')]
    assert parts[0]['publisher'] == {'host': 'pub', 'address': '10.0.0.1', 'port': 5432,
                                     'database': 'shop'}
    assert parts[0]['subscription'] == 'tablesync_orders'
    assert parts[0]['key'] == 'shop/tablesync_orders'
    assert parts[0]['target_tables'] == ['sales.orders', {'name': 'sales.customers', 'columns': ['id', 'name']},
                                         'public.audit_log']
    sets = copy.deepcopy(SETS)
    sets[1]['tables'] = [{'name': 'sales.stock', 'where': 'qty > 0'}]
    assert sync_plan(sets, 'sub1', HOSTS)['subscriber_parts'][1]['target_tables'] == ['sales.stock']
    assert parts[0]['publication'] == 'tablesync_orders'
    assert parts[0]['slot'] == slot_name('orders', 'sub1', 'shop')
    assert plan['subscriptions'] == {'shop': ['tablesync_orders', 'tablesync_stock'], 'legacy': []}
    assert plan['hba_entries'] == []
    assert plan['counts']['subscriptions_held'] == 2
    assert plan['is_subscriber'] and not plan['is_publisher']


def test_replica_identity_forms():
    sets = copy.deepcopy(SETS[1:2])
    sets[0]['replica_identity'] = 'full'
    sets[0]['tables'] = ['sales.stock', {'name': 'sales.notes', 'replica_identity': 'index:notes_uq',
                                         'where': 'x > 1'}]
    pub = sync_plan(sets, 'pub', HOSTS)['publisher_sets'][0]
    assert pub['replica_identity'] == 'full'
    assert pub['tables'] == ['sales.stock', {'name': 'sales.notes', 'replica_identity': 'index:notes_uq',
                                             'where': 'x > 1'}]
    assert sync_plan(sets, 'sub1', HOSTS)['subscriber_parts'][0]['target_tables'] == ['sales.stock', 'sales.notes']
    sets[0]['tables'][1]['replica_identity'] = 'nothing'
    assert "replica_identity of table sales.notes must be 'full', 'default' or index:" in sync_model_errors(sets)[0]
    sets[0]['tables'][1]['replica_identity'] = 'index:'
    assert sync_model_errors(sets)
    sets[0]['tables'][1]['replica_identity'] = 'index:u'
    sets[0]['replica_identity'] = {'sales.stock': ['full']}
    assert 'must be a string' in sync_model_errors(sets)[0]


def test_uninvolved_host_has_an_empty_part():
    plan = sync_plan(SETS, 'other', HOSTS)
    assert plan['publisher_sets'] == plan['subscriber_parts'] == plan['hba_entries'] == []
    assert not plan['is_publisher'] and not plan['is_subscriber']
    assert replication_settings(plan) == {}


def test_slot_names_are_stable_unique_and_short():
    a = slot_name('orders', 'sub1', 'shop')
    assert a == slot_name('orders', 'sub1', 'shop')
    assert a.startswith('tablesync_orders_') and len(a) == len('tablesync_orders_') + 8
    assert a != slot_name('orders', 'sub2', 'shop') != slot_name('orders', 'sub1', 'shop2')
    assert len(slot_name('x' * 44, 'h', 'd')) == 63


def test_missing_address_is_reported():
    hosts = dict(HOSTS, sub1={'ansible_host': 'sub1.example.org'})
    with pytest.raises(AnsibleFilterError, match='the address of sub1 is unknown'):
        sync_plan(SETS, 'pub', hosts)
    with pytest.raises(AnsibleFilterError, match='the address of pub is unknown'):
        sync_plan(SETS, 'sub1', dict(HOSTS, pub={}))
    # sub2's logical sets only need pub's address: fine
    assert sync_plan(SETS, 'sub2', hosts, methods=['logical'])['subscriber_parts'][0]['publisher']['port'] == 5432


def test_invalid_model_raises():
    with pytest.raises(AnsibleFilterError, match='tablesync_sync_sets is invalid'):
        sync_plan([{'name': 'x'}], 'pub', HOSTS)


def test_replication_settings_publisher_and_subscriber():
    pub = sync_plan(SETS, 'pub', HOSTS, methods=['logical'])
    assert replication_settings(pub) == {
        'wal_level': 'logical',
        'max_wal_senders': 20,  # 3 subscriptions * 3 + 4 -> 13 -> 20
        'max_replication_slots': 20,
    }
    sub = sync_plan(SETS, 'sub1', HOSTS, methods=['logical'])
    assert replication_settings(sub) == {
        'max_logical_replication_workers': 20,  # 2 * (1 + 2 sync + 2 parallel apply) + 4
        'max_worker_processes': 28,
        'max_sync_workers_per_subscription': 2,
        'max_replication_slots': 10,
        'max_active_replication_origins': 10,  # PostgreSQL 18+: 2 subscriptions + 4, default 10
    }
    assert replication_settings(sub, parallel_apply_workers=0)['max_logical_replication_workers'] == 10
    many = {'is_subscriber': True, 'counts': {'subscriptions_held': 15}}
    assert replication_settings(many)['max_active_replication_origins'] == 20
    small = sync_plan(SETS[1:2], 'pub', HOSTS)
    assert replication_settings(small, step=1)['max_wal_senders'] == 10  # never below the default
    assert replication_settings(small, step=1, minimums={'max_wal_senders': 1})['max_wal_senders'] == 7
    assert replication_settings(pub, extra={'max_wal_senders': 50, 'wal_level': None,
                                            'max_slot_wal_keep_size': '10GB'}) == {
        'max_wal_senders': 50, 'max_replication_slots': 20, 'max_slot_wal_keep_size': '10GB'}


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {'sync_model_errors', 'sync_hosts', 'sync_plan', 'sync_plans',
                                             'replication_settings', 'sync_subscription_status',
                                             'sync_cleanup', 'sync_report'}


def test_subscription_status_prefers_the_refresh_result():
    part = sync_plan(SETS, 'sub1', HOSTS)['subscriber_parts'][0]
    first = {'item': part, 'exists': True, 'changed': False, 'subscription': {
        'enabled': True, 'tables': [{'name': 'sales.orders', 'state': 'ready'}]}}
    skipped = {'item': sync_plan(SETS, 'sub1', HOSTS)['subscriber_parts'][1], 'skipped': True}
    refreshed = {'item': first, 'exists': True, 'subscription': {'enabled': True, 'tables': [
        {'name': 'sales.orders', 'state': 'ready'}, {'name': 'sales.customers', 'state': 'data copy'}]}}
    assert sync_subscription_status([first, skipped], [refreshed, {'item': first, 'skipped': True}]) == {
        'shop/tablesync_orders': {'set': 'orders', 'database': 'shop', 'subscription': 'tablesync_orders',
                                  'exists': True, 'enabled': True, 'tables': 2, 'ready': 1,
                                  'waiting': ['sales.customers (data copy)']}}
    assert sync_subscription_status(None) == {}


def _info(database, publications=(), slots=()):
    return {'item': database, 'changed': False, 'publications': list(publications), 'slots': list(slots)}


def test_cleanup_finds_unknown_publications_and_unused_slots():
    plan = sync_plan(SETS, 'pub', HOSTS)
    wanted = plan['slots']
    slots = [
        {'slot_name': wanted[0], 'active': False, 'slot_type': 'logical'},       # wanted, down: kept
        {'slot_name': 'tablesync_gone_1234abcd', 'active': False, 'slot_type': 'logical'},
        {'slot_name': 'tablesync_busy_1234abcd', 'active': True, 'slot_type': 'logical'},
        {'slot_name': 'tablesync_phys', 'active': False, 'slot_type': 'physical'},
        {'slot_name': 'other_slot', 'active': False, 'slot_type': 'logical'},
    ]
    infos = {'results': [
        _info('shop', [{'name': 'tablesync_orders'}, {'name': 'tablesync_stock'},
                       {'name': 'tablesync_removed'}, {'name': 'mine'}], slots),
        _info('legacy', [{'name': 'tablesync_old'}], slots),   # absent set: its own task drops it
        _info('other', [{'name': 'tablesync_orders'}], slots),  # same name, other database
        {'item': 'skipped', 'skipped': True},
    ]}
    assert sync_cleanup(infos, plan['publisher_sets'], wanted) == {
        'publications': [{'database': 'shop', 'name': 'tablesync_removed'},
                         {'database': 'other', 'name': 'tablesync_orders'}],
        'slots': ['tablesync_gone_1234abcd'],
    }
    assert sync_cleanup([], [], []) == {'publications': [], 'slots': []}


def test_cleanup_from_one_read_of_every_database():
    """pg_sync_info each_database: one result, each publication names its database."""
    plan = sync_plan(SETS, 'pub', HOSTS)
    publications = [
        {'database': 'legacy', 'name': 'tablesync_old'},
        {'database': 'other', 'name': 'tablesync_orders'},
        {'database': 'shop', 'name': 'tablesync_orders'},
        {'database': 'shop', 'name': 'tablesync_removed'},
    ]
    slots = [{'slot_name': 'tablesync_gone_1234abcd', 'active': False, 'slot_type': 'logical'}]
    info = {'changed': False, 'databases': ['legacy', 'other', 'shop'],
            'publications': publications, 'slots': slots}
    assert sync_cleanup(info, plan['publisher_sets'], plan['slots']) == {
        'publications': [{'database': 'other', 'name': 'tablesync_orders'},
                         {'database': 'shop', 'name': 'tablesync_removed'}],
        'slots': ['tablesync_gone_1234abcd'],
    }
    # the read skipped (no psycopg2 yet in check mode): nothing to drop
    assert sync_cleanup({'skipped': True}, plan['publisher_sets'], plan['slots']) == \
        {'publications': [], 'slots': []}


def test_report_per_set():
    plan = sync_plan(SETS, 'pub', HOSTS)
    orders = plan['publisher_sets'][0]
    slot1, slot2 = [s['slot'] for s in orders['subscribers']]
    infos = [_info('shop', [{'name': 'tablesync_orders', 'tables': ['a.b', 'c.d', 'e.f'],
                             'publish': ['insert']}],
                   [{'slot_name': slot1, 'active': True, 'lag_bytes': 56, 'retained_bytes': 100,
                     'wal_status': 'reserved'}])]
    hostvars = {'sub1': {'logical_subscriber_status': {'shop/tablesync_orders': {
        'enabled': True, 'tables': 3, 'ready': 2, 'waiting': ['sales.customers (data copy)']}}},
        'sub2': {}}
    report = sync_report(plan['publisher_sets'], infos, hostvars)
    assert [r['set'] for r in report] == ['orders', 'stock']  # absent sets are not reported
    assert report[0]['publication'] == 'tablesync_orders in shop (exists)'
    assert report[0]['tables'] == 3 and report[0]['tables_published'] == 3
    assert report[0]['targets'][0] == {
        'target': 'sub1/shop', 'slot': slot1, 'slot_active': True, 'lag_bytes': 56,
        'retained_bytes': 100, 'wal_status': 'reserved', 'subscription': 'enabled',
        'tables_ready': '2/3', 'tables_waiting': ['sales.customers (data copy)']}
    assert report[0]['targets'][1]['subscription'] == 'missing'
    assert report[0]['targets'][1]['slot'] == slot2
    assert report[1]['publication'] == 'tablesync_stock in shop (missing)'
    # the same from one read of every database (the cleanup's, which the report reuses): a
    # publication of the same name in another database is not this set's
    every = {'changed': False, 'databases': ['other', 'shop'],
             'publications': [dict(infos[0]['publications'][0], database='shop'),
                              {'name': 'tablesync_stock', 'database': 'other', 'tables': []}],
             'slots': infos[0]['slots']}
    assert sync_report(plan['publisher_sets'], every, hostvars) == report
    # a database the read did not reach: the set's publication and slots are unknown, not taken
    # from another database
    lone = dict(every, databases=['other'])
    assert sync_report(plan['publisher_sets'], lone, hostvars)[0]['publication'] == \
        'tablesync_orders in shop (missing)'


def test_fdw_and_trigger_are_implemented():
    assert set(IMPLEMENTED_METHODS) == {'logical', 'fdw', 'trigger'}
    plan = sync_plan(SETS, 'sub1', HOSTS)  # every implemented method
    assert plan['ignored_sets'] == []
    assert [s['name'] for s in plan['publisher_sets']] == ['later']
    assert sync_plan(SETS, 'sub1', HOSTS, methods=['fdw'])['is_publisher']
    assert not sync_plan(SETS, 'sub1', HOSTS, methods=['trigger'])['is_publisher']


def test_sync_plans_is_every_method_from_one_validation():
    plans = sync_plans(SETS, 'sub1', HOSTS)
    assert sorted(plans) == sorted(list(IMPLEMENTED_METHODS) + ['ignored_sets'])
    for method in IMPLEMENTED_METHODS:
        assert plans[method] == sync_plan(SETS, 'sub1', HOSTS, methods=[method]), method
    assert plans['ignored_sets'] == sync_plan(SETS, 'sub1', HOSTS)['ignored_sets']
    with pytest.raises(AnsibleFilterError):
        sync_plans([{'name': 'bad name'}], 'sub1', HOSTS)


def test_schema_changes_follow_by_default_and_carry_a_queue_publication():
    pub = sync_plan(SETS, 'pub', HOSTS)['publisher_sets'][0]
    assert pub['schema_changes'] == 'follow'
    assert pub['ddl_publication'] == 'tablesync_orders_ddl' and pub['ddl_queue'] == 'tablesync_ddl.orders'
    part = sync_plan(SETS, 'sub1', HOSTS, methods=['logical'])['subscriber_parts'][0]
    assert part['publications'] == ['tablesync_orders', 'tablesync_orders_ddl']
    assert part['subscribed_names'] == part['table_names'] + ['tablesync_ddl.orders']
    sets = copy.deepcopy(SETS)
    sets[0]['schema_changes'] = 'report'
    part = sync_plan(sets, 'sub1', HOSTS, methods=['logical'])['subscriber_parts'][0]
    assert part['publications'] == ['tablesync_orders'] and part['subscribed_names'] == part['table_names']
    assert sync_plan(sets, 'pub', HOSTS)['publisher_sets'][0]['ddl_publication'] is None


@pytest.mark.parametrize('change, expected', [
    (lambda s: s[0].update(schema_changes='always'), "schema_changes must be one of follow, report, refuse"),
    (lambda s: s[3].update(schema_changes='follow'), 'schema_changes applies to logical sets only'),
])
def test_schema_changes_errors(change, expected):
    assert any(expected in e for e in errors_for(change))


def test_publish_generated_columns_reaches_publisher_and_subscriber():
    assert sync_plan(SETS, 'pub', HOSTS)['publisher_sets'][0]['publish_generated_columns'] is False
    sets = copy.deepcopy(SETS)
    sets[0]['publish_generated_columns'] = True
    assert sync_plan(sets, 'pub', HOSTS)['publisher_sets'][0]['publish_generated_columns'] is True
    part = sync_plan(sets, 'sub1', HOSTS, methods=['logical'])['subscriber_parts'][0]
    assert part['publish_generated_columns'] is True


@pytest.mark.parametrize('change, expected', [
    (lambda s: s[0].update(publish_generated_columns='yes'), 'publish_generated_columns must be true or false'),
    (lambda s: s[3].update(publish_generated_columns=True), 'publish_generated_columns applies to logical sets only'),
])
def test_publish_generated_columns_errors(change, expected):
    assert any(expected in e for e in errors_for(change))


def test_cleanup_keeps_the_queue_publication_of_following_sets_only():
    sets = sync_plan(SETS, 'pub', HOSTS)['publisher_sets']
    infos = {'results': [{'item': 'shop', 'publications': [
        {'name': 'tablesync_orders_ddl'}, {'name': 'tablesync_stock_ddl'}, {'name': 'tablesync_orders'}]}]}
    sets[1]['ddl_publication'] = None   # stock no longer follows
    assert sync_cleanup(infos, sets)['publications'] == [{'database': 'shop', 'name': 'tablesync_stock_ddl'}]
