# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local copies of the fdw sets one consumer holds, in one pass (no task per table).

``fdw_copies(subscriber_parts, source_prefix)`` -> ``{set: [copy, ...]}`` where each copy is
what ``pg_foreign_table_copies`` takes: the table's name, the foreign table it is copied from
(the same name in the schema prefixed with ``source_prefix``) and the set's column list and row
filter of the table, when it has them.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six.moves.collections_abc import Mapping

COPIED_KEYS = ('columns', 'where')


def fdw_copies(parts, source_prefix):
    if not isinstance(parts, list):
        raise AnsibleFilterError('fdw_copies expects the list of subscriber parts of a sync plan')
    out = {}
    for part in parts:
        copies = out.setdefault(part['set'], [])
        for table in part['tables']:
            name = table['name'] if isinstance(table, Mapping) else table
            copy = {'name': name, 'source': source_prefix + name}
            if isinstance(table, Mapping):
                copy.update((k, table[k]) for k in COPIED_KEYS if k in table)
            copies.append(copy)
    return out


class FilterModule(object):
    def filters(self):
        return {'fdw_copies': fdw_copies}
