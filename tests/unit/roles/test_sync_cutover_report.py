# -*- coding: utf-8 -*-
"""Unit tests of the sync_cutover role's report (templates/report.json.j2), rendered by
ansible-playbook on the controller from results laid out as the role's tasks register them
(given here as host variables): the failure paths the integration test does not reach (a
subscriber that does not catch up, a failed flush, differences the publish list makes expected,
local fdw copies, many moved sequences) and check mode. No database is involved."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TEMPLATE = os.path.join(ROOT, 'roles', 'sync_cutover', 'templates', 'report.json.j2')
BINDIR = os.path.dirname(sys.executable)

SETS = [
    {'name': 'lagging', 'source': {'host': 'pub', 'database': 'shop'},
     'targets': [{'host': 'sub', 'database': 'shop'}], 'tables': ['s.a']},
    {'name': 'nodelete', 'publish': ['insert', 'update'], 'source': {'host': 'pub', 'database': 'shop'},
     'targets': [{'host': 'sub', 'database': 'shop'}], 'tables': ['s.b']},
    {'name': 'stock', 'method': 'trigger', 'source': {'host': 'pub', 'database': 'shop'},
     'targets': [{'host': 'sub', 'database': 'shop'}], 'tables': ['s.c']},
    {'name': 'lookup', 'method': 'fdw', 'source': {'host': 'pub', 'database': 'shop'},
     'targets': [{'host': 'sub', 'database': 'shop'}], 'tables': ['s.d']},
]

# 1/0 as a number: 4294967296
PUB = {
    'sync_cutover_writes_stopped': {'ok': True, 'text': 'hook stop.yml ran on pub'},
    'sync_cutover_slot_items': [
        {'set': 'lagging', 'database': 'shop', 'target': 'sub', 'target_database': 'shop',
         'slot': 'tablesync_lagging_1'},
        {'set': 'nodelete', 'database': 'shop', 'target': 'sub', 'target_database': 'shop',
         'slot': 'tablesync_nodelete_1'}],
    'sync_cutover_wal_start': {'slots': [
        {'slot_name': 'tablesync_lagging_1', 'confirmed_flush_lsn': '0/FFFFFF00', 'lag_bytes': 512},
        {'slot_name': 'tablesync_nodelete_1', 'confirmed_flush_lsn': '1/0', 'lag_bytes': 256}]},
    'sync_cutover_wal_targets': {'tablesync_lagging_1': 4294967296 + 256,
                                 'tablesync_nodelete_1': 4294967296 + 256},
    'sync_cutover_wal_wait': {'failed': True, 'attempts': 16, 'slots': [
        {'slot_name': 'tablesync_lagging_1', 'confirmed_flush_lsn': '1/80', 'active': False},
        {'slot_name': 'tablesync_nodelete_1', 'confirmed_flush_lsn': '1/100', 'active': True}]},
    'sync_cutover_flush': {'results': [
        {'item': {'name': 'stock', 'database': 'shop'}, 'failed': True, 'rc': 3, 'stdout': '',
         'msg': 'non-zero return code',
         'stderr': 'psql: error: tablesync: flush of sync set "stock" failed: could not connect'}]},
    'sync_cutover_queues': {'results': [
        {'item': 'shop', 'trigger_queues': [{'name': 'stock', 'mode': 'queued', 'depth': 7}]}]},
    'sync_cutover_compare_trigger': {'results': [
        {'item': {'set': 'stock', 'database': 'shop'}, 'equal': False, 'differing_tables': ['s.c'],
         'tables': {'s.c': {'counts': {'missing': 7, 'extra': 0, 'changed': 0}, 'source_rows': 7,
                            'differences': {'missing': [1, 2, 3, 4, 5, 6, 7]}}}}]},
    'sync_cutover_sequence_results_trigger': {'results': [
        {'item': {'set': 'stock', 'database': 'shop'}, 'failed': True,
         'msg': 'Cannot change the sequences on the target: permission denied for sequence c_id_seq'}]},
}
SUB = {
    'fdw_consumer_local_copies': {'lookup': {}},
    'sync_cutover_compare': {'results': [
        {'item': {'set': 'lagging', 'database': 'shop'}, 'equal': True,
         'tables': {'s.a': {'counts': {'missing': 0, 'extra': 0, 'changed': 0}, 'source_rows': 10}}},
        {'item': {'set': 'nodelete', 'database': 'shop'}, 'equal': False, 'differing_tables': ['s.b'],
         'tables': {'s.b': {'counts': {'missing': 0, 'extra': 2, 'changed': 0}, 'source_rows': 5,
                            'differences': {'extra': [[1, 'x'], [2, 'y']]}}}}]},
    'sync_cutover_sequence_results': {'results': [
        {'item': {'set': 'lagging', 'database': 'shop'}, 'sequences': [
            {'name': 's.q%d' % i, 'target_value': 0, 'new_value': 10 + i, 'changed': True}
            for i in range(7)] + [{'name': 's.z', 'target_value': 99, 'new_value': None,
                                   'changed': False}]},
        {'item': {'set': 'nodelete', 'database': 'shop'}, 'sequences': []}]},
}


def render(tmp_path, check=False):
    out = str(tmp_path / 'report.json')
    inventory = {'all': {
        'hosts': {'pub': dict(PUB, ansible_connection='local'),
                  'sub': dict(SUB, ansible_connection='local')},
        'vars': {'ansible_python_interpreter': sys.executable, 'sync_cutover_selected': SETS,
                 'sync_cutover_verify': True, 'sync_cutover_sequences': True,
                 'sync_cutover_wait_timeout': 30, 'sync_cutover_source_user': 'tablesync_replicator',
                 'sync_cutover_trigger_user': 'tablesync_trigger'}}}
    play = [{'hosts': 'pub', 'gather_facts': False, 'tasks': [
        {'name': 'render', 'ansible.builtin.copy': {
            'content': "{{ lookup('ansible.builtin.template', '%s') }}" % TEMPLATE, 'dest': out},
         'check_mode': False}]}]
    (tmp_path / 'inventory.yml').write_text(yaml.safe_dump(inventory))
    (tmp_path / 'play.yml').write_text(yaml.safe_dump(play))
    cmd = [os.path.join(BINDIR, 'ansible-playbook'), '-i', str(tmp_path / 'inventory.yml'),
           str(tmp_path / 'play.yml')] + (['--check'] if check else [])
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='false')
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout
    with open(out) as f:
        report = json.load(f)
    return report, dict((row['set'], row) for row in report['rows'])


def step(row, name):
    return [s for s in row['steps'] if s['step'] == name][0]


@pytest.fixture(scope='module')
def real(tmp_path_factory):
    return render(tmp_path_factory.mktemp('real'))


def test_subscriber_not_caught_up(real):
    report, rows = real
    row = rows['lagging']
    assert not row['clean']
    catch_up = step(row, 'catch up')
    assert catch_up['status'] == 'FAIL'
    assert catch_up['detail'] == (
        'not caught up after 30 s: slot tablesync_lagging_1 confirmed 1/80, needs 1/100 (128 bytes '
        'behind; slot NOT active: is the subscription enabled and its worker running?)')
    assert step(row, 'verify') == {'step': 'verify', 'status': 'ok',
                                   'detail': '1 table equal, 10 rows (consistent snapshots)'}
    assert step(row, 'sequences')['detail'] == (
        '8 sequences: 7 moved (s.q0 0 -> 10, s.q1 0 -> 11, s.q2 0 -> 12, s.q3 0 -> 13, '
        's.q4 0 -> 14, ...), 1 already at or past the source')
    assert row['lines'][0] == 'sync set lagging (logical): pub/shop -> sub/shop: NOT CLEAN'
    assert row['lines'][1].split() == ['STEP', 'STATUS', 'DETAIL']


def test_differences_the_publish_list_expects(real):
    report, rows = real
    row = rows['nodelete']
    assert row['clean'], row
    assert step(row, 'catch up')['detail'].startswith('applied up to 1/100, the WAL position of pub '
                                                      'read after the writes stopped')
    assert step(row, 'verify')['detail'] == (
        '1 table equal, 5 rows (consistent snapshots) (expected, publish lacks delete, truncate: '
        's.b: 2 extra (key (1, x), (2, y)))')
    assert step(row, 'sequences')['detail'] == 'no sequences used by the tables'


def test_failed_flush_and_missing_privilege(real):
    report, rows = real
    row = rows['stock']
    assert step(row, 'catch up') == {
        'step': 'catch up', 'status': 'FAIL',
        'detail': 'the flush failed: psql: error: tablesync: flush of sync set "stock" failed: could '
                  'not connect; 7 changes still queued'}
    assert step(row, 'verify')['detail'] == 'rows differ: s.c: 7 missing (key 1, 2, 3, 4, 5, ...)'
    assert step(row, 'sequences')['detail'] == (
        'pg_sequence_sync failed: Cannot change the sequences on the target: permission denied for '
        'sequence c_id_seq (tablesync_trigger needs UPDATE on the target\'s sequences: GRANT it or '
        'set tablesync_cutover_trigger_user)')
    assert len([p for p in report['problems'] if p.startswith('sync set stock (trigger)')]) == 3


def test_fdw_local_copies_and_verdict(real):
    report, rows = real
    row = rows['lookup']
    assert row['clean']
    assert step(row, 'catch up')['status'] == 'note'
    assert 'systemctl start tablesync-fdw-refresh-lookup' in step(row, 'catch up')['detail']
    assert not report['clean']
    assert len(report['problems']) == 4


def test_check_mode_warns_where_a_real_run_would_settle_it(tmp_path):
    report, rows = render(tmp_path, check=True)
    assert step(rows['lagging'], 'catch up')['status'] == 'warn'
    assert step(rows['stock'], 'verify')['status'] == 'warn'
    # what would fail a real cutover as well still fails
    assert step(rows['stock'], 'sequences')['status'] == 'FAIL'
    assert rows['lagging']['lines'][0].endswith('no blocker (check mode: nothing changed, writes '
                                                'not stopped)')
    assert '7 would move' in step(rows['lagging'], 'sequences')['detail']
    assert step(rows['lagging'], 'stop writes')['status'] == 'skip'
