# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the check playbook's filters: what is read where, report rows, thresholds."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.tablesync.postgresql.plugins.filter.check_report import (
    THRESHOLDS, FilterModule, check_compare_items, check_databases, check_report,
    check_thresholds, format_table)
from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import slot_name

SETS = [
    {'name': 'orders', 'source': {'host': 'pub', 'database': 'shop'},
     'targets': [{'host': 'sub1', 'database': 'shop'}, {'host': 'sub2', 'database': 'copy'}],
     'tables': ['sales.orders', {'name': 'sales.customers', 'columns': ['id'], 'where': 'id > 0'}]},
    {'name': 'queue', 'method': 'trigger', 'source': {'host': 'pub', 'database': 'shop'},
     'targets': [{'host': 'sub1', 'database': 'dw'}], 'tables': ['sales.items']},
    {'name': 'remote', 'method': 'fdw', 'source': {'host': 'pub', 'database': 'shop'},
     'targets': [{'host': 'sub2', 'database': 'reports'}], 'tables': ['sales.items']},
    {'name': 'gone', 'state': 'absent', 'source': {'host': 'pub', 'database': 'old'},
     'targets': [{'host': 'sub1', 'database': 'old'}], 'tables': ['t']},
]

SLOT1 = slot_name('orders', 'sub1', 'shop')
SLOT2 = slot_name('orders', 'sub2', 'copy')


def subscription(**kw):
    sub = dict(name='tablesync_orders', enabled=True, worker_running=True, lag_bytes=0,
               lag_seconds=1.5, apply_error_count=0, sync_error_count=0,
               tables=[dict(name='sales.orders', state='ready')])
    sub.update(kw)
    return sub


def slot(name, **kw):
    s = dict(slot_name=name, active=True, lag_bytes=100, retained_bytes=200, wal_status='reserved',
             replay_lag_seconds=None)
    s.update(kw)
    return s


def info(database, **sections):
    result = dict(item={'database': database}, changed=False, unavailable=[])
    result.update(sections)
    return result


def healthy():
    return {
        'pub': {'tablesync_check_info': {'results': [
            info('shop', publications=[{'name': 'tablesync_orders'}],
                 slots=[slot(SLOT1), slot(SLOT2)],
                 trigger_queues=[dict(name='queue', mode='queued', depth=3,
                                      oldest_entry_age_seconds=2.0)])]},
                'ansible_host': '10.0.0.1'},
        'sub1': {'tablesync_check_info': {'results': [
            info('dw', subscriptions=[], fdw_servers=[]),
            info('shop', subscriptions=[subscription()], fdw_servers=[])]}},
        'sub2': {'tablesync_check_info': {'results': [
            info('copy', subscriptions=[subscription()], fdw_servers=[]),
            info('reports', subscriptions=[], fdw_servers=[
                dict(name='tablesync_remote', wrapper='postgres_fdw')])]},
            'tablesync_port': 5433},
    }


def rows_by_target(report):
    return dict(('%s:%s' % (r['set'], r['target']), r) for r in report['rows'])


def test_filters_are_registered():
    assert set(FilterModule().filters()) == set(['check_databases', 'check_compare_items',
                                                 'check_report', 'check_thresholds'])


def test_databases_per_host_and_sections():
    assert check_databases(SETS, 'pub') == [
        {'database': 'shop', 'gather': ['publications', 'slots', 'trigger_queues', 'schema_changes']}]
    assert check_databases(SETS, 'sub1') == [
        {'database': 'dw', 'gather': ['schema_changes', 'subscriptions', 'fdw_servers']},
        {'database': 'shop', 'gather': ['schema_changes', 'subscriptions', 'fdw_servers']}]
    assert check_databases(SETS, 'other') == []
    assert check_databases(None, 'pub') == []
    # a host that is source and target of the same database reads both sides at once
    both = [dict(SETS[0], targets=[{'host': 'pub', 'database': 'copy'}]),
            dict(SETS[0], name='x', source={'host': 'sub1', 'database': 'copy'},
                 targets=[{'host': 'pub', 'database': 'shop'}])]
    assert check_databases(both, 'pub') == [
        {'database': 'copy', 'gather': ['schema_changes', 'subscriptions', 'fdw_servers']},
        {'database': 'shop', 'gather': ['publications', 'slots', 'trigger_queues', 'schema_changes',
                                        'subscriptions', 'fdw_servers']}]


def test_compare_items_reach_the_source_like_the_subscription():
    hv = healthy()
    items = check_compare_items(SETS, 'sub1', hv)
    assert items == [
        {'set': 'orders', 'method': 'logical', 'database': 'shop', 'source_database': 'shop',
         'source': {'host': '10.0.0.1', 'port': 5432, 'dbname': 'shop'},
         'target': {'host': 'sub1', 'port': 5432},
         # the row filter selects the source rows; the target holds exactly these
         'tables': ['sales.orders', {'name': 'sales.customers', 'columns': ['id'],
                                     'where': 'id > 0', 'target_where': ''}]}]
    # fdw sets are not verified (the target reads the source); unknown address: the host name
    items = check_compare_items(SETS, 'sub2', {'pub': {'tablesync_port': 6543}})
    assert [(i['set'], i['source']['host'], i['source']['port']) for i in items] == [
        ('orders', 'pub', 6543)]
    assert check_compare_items(SETS, 'pub', hv) == []


def test_trigger_sets_are_compared_from_their_source():
    hv = healthy()
    hv['sub1'] = dict(hv['sub1'], tablesync_address='10.0.0.2', tablesync_port=5440)
    assert check_compare_items(SETS, 'sub1', hv, 'source') == []
    assert check_compare_items(SETS, 'pub', hv, 'source') == [
        {'set': 'queue', 'method': 'trigger', 'database': 'dw', 'source_database': 'shop',
         'source': {'host': '10.0.0.1', 'port': 5432, 'dbname': 'shop'},
         'target': {'host': '10.0.0.2', 'port': 5440}, 'tables': ['sales.items']}]
    hv['pub']['tablesync_check_compare_trigger'] = {'results': [
        compare('queue', 'dw', equal=False, differing_tables=['sales.items'],
                tables={'sales.items': dict(counts=dict(missing=5, extra=0, changed=0))})]}
    # a logical result of the same name on the target is not the trigger set's
    hv['sub1']['tablesync_check_compare'] = {'results': [compare('queue', 'dw')]}
    row = rows_by_target(check_report(SETS, hv))['queue:sub1/dw']
    assert row['verify'] == '5 rows differ (sales.items)' and row['mismatching_rows'] == 5


def test_thresholds_defaults_and_validation():
    t = check_thresholds(None)
    assert t == dict((k, v[0]) for k, v in THRESHOLDS.items())
    assert check_thresholds({'max_lag_bytes': None})['max_lag_bytes'] is None
    with pytest.raises(AnsibleFilterError) as e:
        check_thresholds({'max_lag_byte': 1, 'inactive_slot': 'yes', 'max_lag_seconds': -1,
                          'max_queue_depth': True})
    msg = str(e.value)
    for part in ('unknown thresholds max_lag_byte', 'inactive_slot must be true or false',
                 'max_lag_seconds must be a number', 'max_queue_depth must be a number'):
        assert part in msg
    with pytest.raises(AnsibleFilterError):
        check_thresholds(['max_lag_bytes'])


def test_healthy_environment():
    report = check_report(SETS, healthy())
    assert report['ok'] and report['breaches'] == []
    rows = rows_by_target(report)
    assert sorted(rows) == ['orders:sub1/shop', 'orders:sub2/copy', 'queue:sub1/dw',
                            'remote:sub2/reports']
    row = rows['orders:sub1/shop']
    assert row['state'] == 'streaming' and row['method'] == 'logical'
    assert row['source'] == 'pub/shop'
    assert row['lag_bytes'] == 100  # the publisher's slot wins over the subscriber's view
    assert row['lag_seconds'] == 1.5 and row['errors'] == 0 and row['verify'] is None
    queue = rows['queue:sub1/dw']
    assert queue['state'] == 'queued' and queue['lag_seconds'] == 2.0
    assert queue['notes'] == ['3 changes queued']
    assert rows['remote:sub2/reports']['state'] == 'present'


def test_table_lines():
    report = check_report(SETS, healthy())
    lines = report['table']
    assert lines[0].split() == ['SET', 'METHOD', 'SOURCE', 'TARGET', 'STATE', 'LAG', 'BYTES',
                                'LAG', 'S', 'ERRORS', 'SCHEMA', 'VERIFY']
    assert len(lines) == 1 + len(report['rows'])
    assert lines[1].split()[:8] == ['orders', 'logical', 'pub/shop', 'sub1/shop', 'streaming',
                                    '100', '1.5', '0']
    # columns are aligned
    assert len(set(line.index('pub/shop') for line in lines[1:])) == 1
    empty = format_table([])
    assert empty[0].split() == lines[0].split() and empty[1:] == ['(no present sync sets)']


def test_every_breach_is_listed():
    hv = healthy()
    results = hv['sub1']['tablesync_check_info']['results']
    results[1]['subscriptions'] = [subscription(enabled=False, worker_running=False, lag_bytes=None,
                                                lag_seconds=None, apply_error_count=2)]
    pub = hv['pub']['tablesync_check_info']['results'][0]
    pub['slots'] = [slot(SLOT1, active=False, lag_bytes=5 * 1024 ** 3),
                    slot(SLOT2, wal_status='lost', retained_bytes=10)]
    pub['trigger_queues'][0].update(depth=50, oldest_entry_age_seconds=900.0)
    hv['sub2']['tablesync_check_info']['results'][0]['subscriptions'] = [
        subscription(worker_running=False, lag_seconds=400.0, sync_error_count=1)]
    report = check_report(SETS, hv, {'max_queue_depth': 10, 'max_retained_bytes': 5})
    assert not report['ok']
    text = '\n'.join(report['breaches'])
    for part in ('orders, pub/shop -> sub1/shop: subscription tablesync_orders is disabled',
                 'sub1/shop: 2 apply errors (threshold 0',
                 'sub1/shop: replication slot %s is not active' % SLOT1,
                 'sub1/shop: lag 5368709120 bytes (threshold 1073741824)',
                 'sub2/copy: the apply worker of subscription tablesync_orders is not running',
                 'sub2/copy: 1 table sync errors',
                 'sub2/copy: replication slot %s was invalidated (wal_status lost: the WAL it needed was removed' % SLOT2,
                 'sub2/copy: slot %s retains 10 bytes of WAL (threshold 5)' % SLOT2,
                 'sub2/copy: lag 400.0 seconds (threshold 300)',
                 'queue, pub/shop -> sub1/dw: the oldest queued change is 900.0 seconds old',
                 'sub1/dw: 50 changes queued (threshold 10)'):
        assert part in text, part
    rows = rows_by_target(report)
    assert rows['orders:sub1/shop']['state'] == 'disabled'
    assert rows['orders:sub2/copy']['state'] == 'failing'
    assert rows['orders:sub2/copy']['errors'] == 1
    assert '5 breaches' in report['table'][1]


def test_thresholds_can_be_disabled():
    hv = healthy()
    hv['sub1']['tablesync_check_info']['results'][1]['subscriptions'] = [
        subscription(enabled=False, apply_error_count=3)]
    hv['pub']['tablesync_check_info']['results'][0]['slots'][0]['active'] = False
    report = check_report(SETS, hv, {'disabled_subscription': False, 'inactive_slot': False,
                                     'max_apply_errors': None})
    assert report['ok'], report['breaches']


def test_missing_objects_and_unreadable_hosts():
    hv = healthy()
    hv['sub1']['tablesync_check_info']['results'][1]['subscriptions'] = []
    hv['pub']['tablesync_check_info']['results'][0]['slots'] = []
    hv['pub']['tablesync_check_info']['results'][0]['trigger_queues'] = []
    hv['sub2'] = {'tablesync_check_info': {'unreachable': True, 'msg': 'ssh: timeout'}}
    report = check_report(SETS, hv)
    text = '\n'.join(report['breaches'])
    assert 'sub1/shop: subscription tablesync_orders does not exist in sub1/shop' in text
    assert 'replication slot %s does not exist on pub' % SLOT1 in text
    assert 'sub2/copy: host sub2 is unreachable: ssh: timeout' in text
    rows = rows_by_target(report)
    assert rows['orders:sub2/copy']['state'] == 'unreadable'
    assert rows['orders:sub1/shop']['state'] == 'missing'
    # trigger sets are deployed by this version: a missing queue is a breach
    assert rows['queue:sub1/dw']['state'] == 'missing'
    assert rows['queue:sub1/dw']['breaches']
    assert rows['remote:sub2/reports']['state'] == 'unreadable'


def test_failed_read_and_host_not_in_run():
    hv = healthy()
    hv['pub']['tablesync_check_info']['results'][0] = dict(
        item={'database': 'shop'}, failed=True, msg='Unable to connect to PostgreSQL (...)')
    del hv['sub1']
    report = check_report(SETS, hv)
    text = '\n'.join(report['breaches'])
    assert 'cannot read pub/shop: Unable to connect to PostgreSQL' in text
    assert 'host sub1 was not part of this run' in text


def test_trigger_queue_not_readable():
    hv = healthy()
    pub = hv['pub']['tablesync_check_info']['results'][0]
    pub['unavailable'] = ['trigger_queues']
    pub['trigger_queues'] = []
    rows = rows_by_target(check_report(SETS, hv))
    assert rows['queue:sub1/dw']['state'] == 'unreadable'
    assert 'cannot be read' in rows['queue:sub1/dw']['breaches'][0]


def test_syncing_subscription_is_not_a_breach():
    hv = healthy()
    hv['sub1']['tablesync_check_info']['results'][1]['subscriptions'] = [subscription(
        tables=[dict(name='a', state='ready'), dict(name='b', state='data_copy')])]
    report = check_report(SETS, hv)
    row = rows_by_target(report)['orders:sub1/shop']
    assert row['state'] == 'syncing' and row['notes'] == ['1 of 2 tables not ready']
    assert report['ok']


def compare(set_name, database, **kw):
    result = dict(item={'set': set_name, 'database': database}, equal=True, differing_tables=[],
                  tables={'sales.orders': dict(counts=dict(missing=0, extra=0, changed=0))})
    result.update(kw)
    return result


def test_verification_results():
    hv = healthy()
    hv['sub1']['tablesync_check_compare'] = {'results': [
        compare('orders', 'shop', equal=False, differing_tables=['sales.orders'],
                tables={'sales.orders': dict(counts=dict(missing=1, extra=0, changed=2)),
                        'sales.customers': dict(counts=dict(missing=0, extra=0, changed=0))})]}
    hv['pub']['tablesync_check_compare_trigger'] = {'results': [
        compare('queue', 'dw', failed=True, msg='permission denied for table items\nLINE 1: ...')]}
    hv['sub2']['tablesync_check_compare'] = {'results': [compare('orders', 'copy')]}
    report = check_report(SETS, hv)
    rows = rows_by_target(report)
    assert rows['orders:sub1/shop']['verify'] == '3 rows differ (sales.orders)'
    assert rows['orders:sub1/shop']['mismatching_rows'] == 3
    assert rows['orders:sub2/copy']['verify'] == 'equal'
    assert rows['queue:sub1/dw']['verify'] == 'error: permission denied for table items'
    text = '\n'.join(report['breaches'])
    assert 'sub1/shop: verification found 3 rows differ (sales.orders) (threshold 0)' in text
    assert 'sub1/dw: verification failed: permission denied for table items' in text
    assert len(report['breaches']) == 2
    ok = check_report(SETS, copy.deepcopy(hv), {'max_mismatching_rows': 5})
    assert len(ok['breaches']) == 1


def test_verification_differences_the_publish_list_explains():
    sets = copy.deepcopy(SETS)
    sets[0]['publish'] = ['insert', 'update']
    hv = healthy()
    hv['sub1']['tablesync_check_compare'] = {'results': [
        compare('orders', 'shop', equal=False, differing_tables=['sales.orders'],
                tables={'sales.orders': dict(counts=dict(missing=0, extra=4, changed=0))})]}
    hv['sub2']['tablesync_check_compare'] = {'results': [
        compare('orders', 'copy', equal=False, differing_tables=['sales.orders'],
                tables={'sales.orders': dict(counts=dict(missing=1, extra=2, changed=0))})]}
    report = check_report(sets, hv)
    rows = rows_by_target(report)
    assert rows['orders:sub1/shop']['verify'] == 'equal (+4 expected: publish lacks delete, truncate)'
    assert rows['orders:sub1/shop']['mismatching_rows'] == 0
    assert rows['orders:sub2/copy']['verify'] == \
        '1 rows differ (sales.orders) (+2 expected: publish lacks delete, truncate)'
    assert len(report['breaches']) == 1


def test_verification_differing_without_counts_is_not_equal():
    hv = healthy()
    hv['sub1']['tablesync_check_compare'] = {'results': [
        dict(item={'set': 'orders', 'database': 'shop'}, equal=False,
             differing_tables=['sales.orders'], tables={})]}
    row = rows_by_target(check_report(SETS, hv))['orders:sub1/shop']
    assert row['verify'] == '1 rows differ (sales.orders)' and row['breaches']


def test_verification_skipped_when_not_asked():
    hv = healthy()
    hv['sub1']['tablesync_check_compare'] = {'results': [
        dict(item={'set': 'orders', 'database': 'shop'}, skipped=True)], 'skipped': True}
    rows = rows_by_target(check_report(SETS, hv))
    assert rows['orders:sub1/shop']['verify'] is None
    assert '  -' in check_report(SETS, hv)['table'][1]


def test_absent_sets_are_not_reported():
    report = check_report(SETS, healthy())
    assert 'gone' not in [r['set'] for r in report['rows']]


def test_compare_items_take_the_key_of_keyless_tables():
    keys = {'sales.orders': ['id', 'line'], 'sales.customers': ['id'], 'other.table': ['x']}
    items = check_compare_items(SETS, 'sub1', healthy(), 'target', keys)
    assert items[0]['tables'] == [
        {'name': 'sales.orders', 'key': ['id', 'line']},
        {'name': 'sales.customers', 'columns': ['id'], 'where': 'id > 0', 'target_where': '',
         'key': ['id']}]
    # the sets themselves are left alone
    assert SETS[0]['tables'][0] == 'sales.orders'
    with pytest.raises(AnsibleFilterError, match='keys must be a dict'):
        check_compare_items(SETS, 'sub1', healthy(), 'target', ['id'])


def test_conflicts_of_postgresql_18_are_a_breach_with_their_kinds():
    hv = healthy()
    hv['sub1']['tablesync_check_info']['results'][1]['subscriptions'] = [subscription(
        conflicts={'insert_exists': 0, 'update_missing': 2, 'delete_missing': 1})]
    report = check_report(SETS, hv)
    row = rows_by_target(report)['orders:sub1/shop']
    assert row['conflicts'] == 3
    assert ('sync set orders, pub/shop -> sub1/shop: 3 conflicts (delete_missing 1, update_missing 2; '
            'threshold 0;') in '\n'.join(report['breaches'])
    # older servers: no counters, nothing said
    assert rows_by_target(check_report(SETS, healthy()))['orders:sub1/shop']['conflicts'] is None


def _with_schema(source_rows, target_rows):
    hostvars = healthy()
    hostvars['pub']['tablesync_check_info']['results'][0]['schema_changes'] = source_rows
    hostvars['sub1']['tablesync_check_info']['results'][1]['schema_changes'] = target_rows
    return hostvars


def _change(table, last, columns, table_columns=None):
    return {'set': 'orders', 'table': table, 'last_change': last, 'columns': columns,
            'table_columns': table_columns if table_columns is not None else columns}


def test_schema_drift_of_a_following_logical_set():
    cols = [['id', 'bigint'], ['total', 'numeric(10,2)']]
    same = check_report(SETS, _with_schema([_change('sales.orders', 4, cols)],
                                           [_change('sales.orders', 4, cols)]))
    row = rows_by_target(same)['orders:sub1/shop']
    assert row['schema'] == 'same' and row['breaches'] == [] and same['ok']

    pending = check_report(SETS, _with_schema([_change('sales.orders', 5, cols)],
                                              [_change('sales.orders', 4, cols[:1])]))
    row = rows_by_target(pending)['orders:sub1/shop']
    assert row['schema'] == 'pending:1' and row['breaches'] == []
    assert 'column changes of sales.orders not applied yet' in row['notes']

    drifted = check_report(SETS, _with_schema(
        [_change('sales.orders', 5, cols)],
        [_change('sales.orders', 5, cols, [['id', 'integer'], ['note', 'text']])]))
    row = rows_by_target(drifted)['orders:sub1/shop']
    assert row['schema'] == 'drifted:1' and not drifted['ok']
    assert row['breaches'] == ['sync set orders, pub/shop -> sub1/shop: target tables differ from the source: '
                               'sales.orders (total missing, id is integer, not bigint, note only on the target) '
                               '(docs/schema-changes.md)']
    quiet = check_report(SETS, _with_schema([_change('sales.orders', 5, cols)],
                                            [_change('sales.orders', 5, cols, cols[:1])]),
                         {'schema_drift': False})
    assert rows_by_target(quiet)['orders:sub1/shop']['schema'] == 'drifted:1' and quiet['ok']


def test_trigger_set_column_changes_waiting_for_a_failing_flush():
    hostvars = healthy()
    queue = hostvars['pub']['tablesync_check_info']['results'][0]['trigger_queues'][0]
    queue.update(schema_changes_pending=1, last_error='cannot follow public.t: column q changed',
                 failed_change=7, flush_errors=3)
    rows = [r for r in check_report(SETS, hostvars)['rows'] if r['method'] == 'trigger']
    assert rows and rows[0]['schema'] == 'pending:1'
    assert any('1 column change(s) of the source wait for the flush' in b for b in rows[0]['breaches'])
