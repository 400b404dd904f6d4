# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's marked blocks of pg_hba.conf, as the postgresql_server role's discovery
read them (``postgresql_server_hba``: port, unix_socket, file, ssl, blocks, texts).

``hba_marker(title)`` -> the marker text of a role's block (what blockinfile writes after
``# BEGIN`` / ``# END``), spelled here once.

``hba_read(hba, port, unix_socket)`` -> the read when it is of the cluster at that port and
socket, else none (not read, or another cluster of the host).

``hba_block_absent(hba, title, port, unix_socket)`` -> true only when that read lists the
file's blocks and the block titled ``title`` is not among them; false whenever in doubt.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types
from ansible.module_utils.six.moves.collections_abc import Mapping

MARKER = 'tablesync.postgresql: %s (managed by Ansible, do not edit)'


def hba_marker(title):
    if not isinstance(title, string_types) or not title.strip():
        raise AnsibleFilterError('hba_marker: a block title is needed, got %r' % (title,))
    return MARKER % title


def hba_read(hba, port, unix_socket):
    if not isinstance(hba, Mapping):
        return None
    if hba.get('port') != str(port) or hba.get('unix_socket') != unix_socket:
        return None
    return hba


def hba_block_absent(hba, title, port, unix_socket):
    read = hba_read(hba, port, unix_socket)
    if read is None or read.get('blocks') is None:
        return False
    return hba_marker(title) not in read['blocks']


class FilterModule(object):
    def filters(self):
        return {'hba_marker': hba_marker, 'hba_read': hba_read,
                'hba_block_absent': hba_block_absent}
