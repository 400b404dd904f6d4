# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of bidirectional sets in the sync model (validation, links, each peer's plan,
settings) and in the check report."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.tablesync.postgresql.plugins.filter.check_report import (
    check_compare_items, check_databases, check_report)
from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import (
    replication_settings, set_links, slot_name, sync_model_errors, sync_plan)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import (
    peer_subscription_name)

HOSTS = {'a': {'ansible_host': '10.0.0.1'}, 'b': {'ansible_host': '10.0.0.2'},
         'c': {'ansible_host': '10.0.0.3'}, 'd': {'ansible_host': '10.0.0.4'}}
LEDGER = {
    'name': 'ledger', 'bidirectional': True,
    'source': {'host': 'a', 'database': 'books'},
    'targets': [{'host': 'b', 'database': 'books'}, {'host': 'c', 'database': 'books2'}],
    'tables': ['public.entries', 'public.accounts'],
}


def sets(**change):
    item = copy.deepcopy(LEDGER)
    item.update(change)
    return [item]


def one_error(**change):
    errors = sync_model_errors(sets(**change), list(HOSTS))
    assert len(errors) == 1, errors
    return errors[0]


def test_links_every_peer_to_every_other_only_the_source_copies():
    item = sets()[0]
    links = set_links(item)
    pairs = sorted(('%s>%s' % (lk['publisher']['host'], lk['subscriber']['host']), lk['phase'], lk['copy_data'])
                   for lk in links)
    assert pairs == [('a>b', 'forward', True), ('a>c', 'forward', True),
                     ('b>a', 'return', False), ('b>c', 'return', False),
                     ('c>a', 'return', False), ('c>b', 'return', False)]
    assert set(lk['origin'] for lk in links) == set(['none'])
    # the link from the source keeps the one-way name: a one-way set can become bidirectional
    by_pair = dict(('%s>%s' % (lk['publisher']['host'], lk['subscriber']['host']), lk) for lk in links)
    assert by_pair['a>b']['subscription'] == 'tablesync_ledger'
    assert by_pair['c>b']['subscription'] == peer_subscription_name('ledger', 'c', 'books2')
    assert by_pair['c>b']['slot'] == slot_name('ledger', 'b', 'books')
    # unique per subscribing database and per publishing cluster
    for end in ('subscriber', 'publisher'):
        names = [(lk[end]['host'], lk['subscription' if end == 'subscriber' else 'slot']) for lk in links]
        assert len(names) == len(set(names))


def test_one_way_links_are_unchanged():
    item = dict(sets(bidirectional=False)[0])
    links = set_links(item)
    assert [(lk['subscriber']['host'], lk['subscription'], lk['copy_data'], lk['phase'], lk['origin'])
            for lk in links] == [('b', 'tablesync_ledger', True, 'forward', None),
                                 ('c', 'tablesync_ledger', True, 'forward', None)]


def test_valid_model_and_what_it_refuses():
    assert sync_model_errors(sets(), list(HOSTS)) == []
    assert 'bidirectional must be true or false' in one_error(bidirectional='yes')
    assert 'logical sets only' in one_error(method='fdw')
    assert 'has a row filter' in one_error(tables=[{'name': 'public.entries', 'where': 'id > 0'}])
    assert 'has a column list' in one_error(tables=[{'name': 'public.entries', 'columns': ['id']}])
    assert 'publishes every kind of change' in one_error(publish=['insert', 'update'])
    assert sync_model_errors(sets(publish=['truncate', 'delete', 'update', 'insert']), list(HOSTS)) == []
    assert 'schema_changes follow is not available' in one_error(schema_changes='follow')
    assert 'publish_generated_columns is not available' in one_error(publish_generated_columns=True)


def test_a_peer_table_fed_by_another_set_is_refused():
    other = {'name': 'feed', 'source': {'host': 'd', 'database': 'x'},
             'targets': [{'host': 'a', 'database': 'books'}], 'tables': ['public.entries']}
    errors = sync_model_errors(sets() + [other], list(HOSTS))
    assert errors == ["table public.entries in database books on a is a target of both sync sets "
                      "'ledger' and 'feed'"]


def test_each_peer_publishes_and_subscribes_to_every_other():
    plan = sync_plan(sets(), 'b', HOSTS)
    [pub] = plan['publisher_sets']
    assert pub['database'] == 'books' and pub['peers'] == ['a', 'b', 'c']
    assert sorted((s['host'], s['subscription'], s['slot']) for s in pub['subscribers']) == [
        ('a', peer_subscription_name('ledger', 'b', 'books'), slot_name('ledger', 'a', 'books')),
        ('c', peer_subscription_name('ledger', 'b', 'books'), slot_name('ledger', 'c', 'books2'))]
    parts = dict((p['publisher']['host'], p) for p in plan['subscriber_parts'])
    assert parts['a']['subscription'] == 'tablesync_ledger' and parts['a']['phase'] == 'forward'
    assert parts['a']['copy_data'] is True and parts['a']['origin'] == 'none'
    assert parts['c']['phase'] == 'return' and parts['c']['copy_data'] is False
    assert parts['c']['key'] == 'books/' + peer_subscription_name('ledger', 'c', 'books2')
    assert parts['c']['publisher']['address'] == '10.0.0.3'
    # schema changes are reported, not followed: no queue, no queue publication
    assert parts['a']['publications'] == ['tablesync_ledger'] and pub['ddl_publication'] is None
    assert plan['hba_entries'] == [{'database': 'books', 'address': '10.0.0.1/32', 'sets': ['ledger']},
                                   {'database': 'books', 'address': '10.0.0.3/32', 'sets': ['ledger']}]
    # granted once this run's forward link created the tables (after_tables)
    assert plan['select_tables'] == [{'database': 'books', 'tables': ['public.entries', 'public.accounts'],
                                      'after_tables': True}]
    assert sync_plan(sets(), 'a', HOSTS)['select_tables'][0]['after_tables'] is False
    assert plan['counts'] == {'publications': 1, 'subscriptions_served': 2, 'subscriptions_held': 2}
    assert plan['bidirectional'] is True


def test_the_source_holds_only_return_links():
    plan = sync_plan(sets(), 'a', HOSTS)
    assert set(p['phase'] for p in plan['subscriber_parts']) == set(['return'])
    assert not any(p['copy_data'] for p in plan['subscriber_parts'])


def test_peers_get_commit_timestamps_and_sizes_for_both_sides():
    settings = replication_settings(sync_plan(sets(), 'b', HOSTS))
    assert settings['track_commit_timestamp'] == 'on'
    assert settings['wal_level'] == 'logical'
    one_way = replication_settings(sync_plan(sets(bidirectional=False), 'b', HOSTS))
    assert 'track_commit_timestamp' not in one_way and 'wal_level' not in one_way
    absent = replication_settings(sync_plan(sets(state='absent'), 'b', HOSTS))
    assert 'track_commit_timestamp' not in absent


def test_check_reads_both_sides_on_every_peer_and_reports_every_link():
    model = sets()
    assert check_databases(model, 'c') == [{'database': 'books2', 'gather': [
        'publications', 'slots', 'trigger_queues', 'schema_changes', 'subscriptions', 'fdw_servers']}]
    # verified once per peer, against the source
    assert [(i['database'], i['source']['host']) for i in check_compare_items(model, 'b', HOSTS)] == \
        [('books', '10.0.0.1')]
    assert check_compare_items(model, 'a', HOSTS) == []
    report = check_report(model, {})
    assert sorted((r['source'], r['target']) for r in report['rows']) == [
        ('a/books', 'b/books'), ('a/books', 'c/books2'), ('b/books', 'a/books'),
        ('b/books', 'c/books2'), ('c/books2', 'a/books'), ('c/books2', 'b/books')]


def test_check_finds_each_link_by_its_own_names():
    model = sets(targets=[{'host': 'b', 'database': 'books'}])
    sub = dict(enabled=True, worker_running=True, lag_bytes=0, lag_seconds=0.1,
               apply_error_count=0, sync_error_count=0, tables=[])

    def infos(db, subscription, slot, **extra):
        return {'tablesync_check_info': {'results': [dict(
            item={'database': db}, unavailable=[], publications=[{'name': 'tablesync_ledger'}],
            subscriptions=[dict(sub, name=subscription, **extra)],
            slots=[dict(slot_name=slot, active=True, lag_bytes=0, wal_status='reserved')])]}}
    hostvars = {
        'a': infos('books', peer_subscription_name('ledger', 'b', 'books'), slot_name('ledger', 'b', 'books'),
                   conflicts={'update_origin_differs': 2}),
        'b': infos('books', 'tablesync_ledger', slot_name('ledger', 'a', 'books')),
    }
    report = check_report(model, hostvars)
    assert report['breaches'] == [
        'sync set ledger, b/books -> a/books: 2 conflicts (update_origin_differs 2; threshold 0; '
        'rows written on two peers: verify and repair, docs/bidirectional.md)']


def test_a_plan_needs_every_peer_address():
    with pytest.raises(AnsibleFilterError, match='the address of c is unknown'):
        sync_plan(sets(), 'b', {'a': HOSTS['a'], 'b': HOSTS['b']})
