# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the publishers' physical standbys (failover slots): validation, each host's
part, its settings, and the publisher's capacity for them."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.tablesync.postgresql.plugins.filter.standbys import (
    FilterModule, pgpass_line, standby_errors, standby_plan, standby_settings)
from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import replication_settings, sync_plan
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.conninfo import parse_conninfo
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.names import standby_slot_name

HOSTS = ['pub', 'pub-standby', 'sub', 'spare']
HOSTVARS = {
    'pub': {'ansible_host': '10.0.0.1'},
    'pub-standby': {'ansible_host': '10.0.0.9', 'tablesync_standby_of': 'pub'},
    'sub': {'ansible_host': '10.0.0.2'},
    'spare': {'ansible_host': '10.0.0.3'},
}
SETS = [{'name': 'orders', 'source': {'host': 'pub', 'database': 'shop'},
         'targets': [{'host': 'sub', 'database': 'shop'}], 'tables': ['app.orders']}]


def with_vars(**per_host):
    out = dict((h, dict(v)) for h, v in HOSTVARS.items())
    for host, extra in per_host.items():
        out[host].update(extra)
    return out


def test_filters_are_registered():
    assert set(FilterModule().filters()) == set(['pgpass_line', 'standby_errors', 'standby_plan', 'standby_settings'])


def test_pgpass_line_escapes_what_libpq_reads_back():
    assert pgpass_line(['10.0.0.1', 5432, '*', 'repl', 'a:b\\c']) == '10.0.0.1:5432:*:repl:a\\:b\\\\c'
    with pytest.raises(AnsibleFilterError, match='takes host, port'):
        pgpass_line(['x'])


def test_each_side_of_a_standby():
    standby = standby_plan(HOSTVARS, 'pub-standby', HOSTS, SETS)
    assert standby == {'primary': {'host': 'pub', 'address': '10.0.0.1', 'port': 5432},
                       'slot': standby_slot_name('pub-standby'), 'standbys': []}
    primary = standby_plan(HOSTVARS, 'pub', HOSTS, SETS)
    assert primary == {'primary': None, 'slot': None, 'standbys': [
        {'host': 'pub-standby', 'address': '10.0.0.9', 'hba_address': '10.0.0.9/32',
         'slot': standby_slot_name('pub-standby')}]}
    assert standby_plan(HOSTVARS, 'sub', HOSTS, SETS) == {'primary': None, 'slot': None, 'standbys': []}
    assert standby_slot_name('pub-standby').startswith('tablesync_standby_')


@pytest.mark.parametrize('change, message', [
    ({'pub-standby': {'tablesync_standby_of': 'pub-standby'}}, 'names the host itself'),
    ({'pub-standby': {'tablesync_standby_of': 'nowhere'}}, "'nowhere' is not a host of this inventory"),
    ({'pub-standby': {'tablesync_standby_of': 'spare'}}, 'spare publishes no present logical sync set'),
    ({'pub-standby': {'tablesync_standby_of': 'sub'}}, 'sub publishes no present logical sync set'),
    ({'spare': {'tablesync_standby_of': 'pub-standby'}}, 'pub-standby is a standby itself'),
    ({'sub': {'tablesync_standby_of': 'pub'}}, 'sub takes part in sync sets itself'),
    ({'pub-standby': {'tablesync_standby_of': ['pub']}}, 'must be an inventory host name'),
])
def test_what_is_refused(change, message):
    errors = standby_errors(with_vars(**change), HOSTS, SETS)
    assert any(message in e for e in errors), errors
    with pytest.raises(AnsibleFilterError, match='standbys of this inventory are invalid'):
        standby_plan(with_vars(**change), 'pub', HOSTS, SETS)


def test_an_empty_value_is_no_standby():
    # -e tablesync_standby_of= after a failover: no host follows another any more
    hostvars = with_vars(**{'pub-standby': {'tablesync_standby_of': ''}})
    assert standby_errors(hostvars, HOSTS, SETS) == []
    assert standby_plan(hostvars, 'pub', HOSTS, SETS)['standbys'] == []


def test_an_unknown_address_is_named():
    hostvars = with_vars(**{'pub-standby': {'ansible_host': 'standby.example.org'}})
    del hostvars['pub-standby']['ansible_host']
    with pytest.raises(AnsibleFilterError, match=r'address of pub-standby \(a standby of pub\) is unknown'):
        standby_plan(hostvars, 'pub', HOSTS, SETS)


def test_settings_of_each_side():
    standby = standby_settings(standby_plan(HOSTVARS, 'pub-standby', HOSTS, SETS), 'tablesync_replicator',
                               '/var/lib/postgresql/.pass', 'require')
    conninfo = parse_conninfo(standby.pop('primary_conninfo'))
    assert conninfo == {'host': '10.0.0.1', 'port': '5432', 'user': 'tablesync_replicator',
                        'passfile': '/var/lib/postgresql/.pass', 'dbname': 'postgres', 'sslmode': 'require',
                        'application_name': standby_slot_name('pub-standby')}
    assert 'password' not in conninfo
    assert standby == {'primary_slot_name': standby_slot_name('pub-standby'), 'hot_standby_feedback': 'on',
                       'sync_replication_slots': 'on', 'wal_level': 'logical',
                       'synchronized_standby_slots': ''}
    primary = standby_settings(standby_plan(HOSTVARS, 'pub', HOSTS, SETS), 'r', '/p')
    assert primary == {'synchronized_standby_slots': standby_slot_name('pub-standby')}
    assert standby_settings(standby_plan(HOSTVARS, 'sub', HOSTS, SETS), 'r', '/p') == {}
    # a publisher without standbys (one removed from the inventory): the list is emptied
    assert standby_settings(standby_plan(HOSTVARS, 'sub', HOSTS, SETS), 'r', '/p', publisher=True) == \
        {'synchronized_standby_slots': ''}


def test_the_publisher_has_a_slot_and_a_walsender_per_standby():
    plan = sync_plan(SETS, 'pub', HOSTVARS)
    without = replication_settings(plan, step=1, headroom=0, minimums={'max_wal_senders': 0, 'max_replication_slots': 0})
    with_two = replication_settings(plan, step=1, headroom=0, standbys=2,
                                    minimums={'max_wal_senders': 0, 'max_replication_slots': 0})
    assert with_two['max_wal_senders'] == without['max_wal_senders'] + 2
    assert with_two['max_replication_slots'] == without['max_replication_slots'] + 2
