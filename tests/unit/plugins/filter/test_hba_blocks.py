"""hba_blocks filters: the marker text once, the server role's read only for its own cluster,
and "absent" only when the read says so."""
import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.tablesync.postgresql.plugins.filter.hba_blocks import (
    hba_block_absent, hba_marker, hba_read)

READ = dict(port='5432', unix_socket='/var/run/postgresql', file='/etc/pg_hba.conf', ssl=False,
            blocks=['tablesync.postgresql: replication access (managed by Ansible, do not edit)'],
            texts={})


def test_marker_is_what_blockinfile_writes_after_begin():
    assert hba_marker('fdw access') == \
        'tablesync.postgresql: fdw access (managed by Ansible, do not edit)'
    with pytest.raises(AnsibleFilterError):
        hba_marker(' ')


@pytest.mark.parametrize('hba, port, socket, expected', [
    (READ, 5432, '/var/run/postgresql', READ),       # the port as an int, as roles pass it
    (READ, '5432', '/var/run/postgresql', READ),
    (READ, 5433, '/var/run/postgresql', None),       # another cluster of the host
    (READ, 5432, '/tmp', None),
    (None, 5432, '/var/run/postgresql', None),       # the server role did not run
])
def test_read_only_for_its_own_cluster(hba, port, socket, expected):
    assert hba_read(hba, port, socket) == expected


@pytest.mark.parametrize('hba, title, port, expected', [
    (READ, 'fdw access', 5432, True),
    (READ, 'replication access', 5432, False),          # present
    (dict(READ, blocks=None), 'fdw access', 5432, False),  # blocks not readable: in doubt
    (READ, 'fdw access', 5433, False),                  # another cluster: in doubt
    (None, 'fdw access', 5432, False),
])
def test_absent_only_when_the_read_says_so(hba, title, port, expected):
    assert hba_block_absent(hba, title, port, '/var/run/postgresql') is expected
