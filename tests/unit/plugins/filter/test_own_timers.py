"""own_timers: a role's timers of one kind from the server role's listing, only when that
listing is of the role's systemd directory."""
import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.tablesync.postgresql.plugins.filter.own_timers import own_timers

LISTING = {'dir': '/etc/systemd/system', 'units': [
    {'unit': 'tablesync-trigger-flush-orders.timer', 'source': 'src'},
    {'unit': 'tablesync-trigger-flush-legacy.timer', 'source': ''},      # before the marker
    {'unit': 'tablesync-trigger-flush-other.timer', 'source': 'src2'},   # another host's
    {'unit': 'tablesync-fdw-refresh-stock.timer', 'source': 'src'},      # another kind
]}


def test_the_hosts_own_of_one_kind():
    assert own_timers(LISTING, 'tablesync-trigger-flush-', '/etc/systemd/system', 'src') == [
        'tablesync-trigger-flush-orders.timer', 'tablesync-trigger-flush-legacy.timer']
    assert own_timers(LISTING, 'tablesync-fdw-refresh-', '/etc/systemd/system', 'dst') == []


@pytest.mark.parametrize('listing', [None, dict(LISTING, dir='/run/systemd/system')])
def test_no_answer_without_a_listing_of_that_directory(listing):
    assert own_timers(listing, 'tablesync-fdw-refresh-', '/etc/systemd/system', 'src') is None


def test_a_prefix_is_needed():
    with pytest.raises(AnsibleFilterError):
        own_timers(LISTING, '', '/etc/systemd/system', 'src')
