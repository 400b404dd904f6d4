# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``own_timers(timers, prefix, systemd_dir, host)``: the collection's systemd timers of one
kind (``prefix``, for example ``tablesync-trigger-flush-``) that belong to ``host``, from the
postgresql_server role's listing (``postgresql_server_timers``: ``dir``, ``units`` of
``{unit, source}``; ``source`` is empty on a unit older than its marker line, which is then
this host's own). None when that listing is not of ``systemd_dir`` or was not made: the
calling role then looks for its timers itself.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types
from ansible.module_utils.six.moves.collections_abc import Mapping


def own_timers(timers, prefix, systemd_dir, host):
    if not isinstance(prefix, string_types) or not prefix:
        raise AnsibleFilterError('own_timers: a unit name prefix is needed, got %r' % (prefix,))
    if not isinstance(timers, Mapping) or timers.get('dir') != systemd_dir:
        return None
    return [t['unit'] for t in timers.get('units') or []
            if t['unit'].startswith(prefix) and t.get('source', '') in ('', host)]


class FilterModule(object):
    def filters(self):
        return {'own_timers': own_timers}
