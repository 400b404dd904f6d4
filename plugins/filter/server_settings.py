# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server settings as the postgresql_server role's discovery read them, so that an
idempotent run does not call pg_settings again to find that nothing differs.

``settings_read_query(variable)`` -> pg_settings' own read (module_utils/server/settings.py)
for psql, the names taken from the psql variable ``variable``.

``settings_in_sync(read, desired, at_least)`` -> whether pg_settings would change nothing, by
pg_settings' own plan on that read (``read``: ``{rows, files_readable}``, or none when the
discovery did not read the settings). False whenever in doubt: the module is then called.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types
from ansible.module_utils.six.moves.collections_abc import Mapping

from ansible_collections.tablesync.postgresql.plugins.module_utils.server.settings import (
    psql_settings_query, settings_in_sync as _in_sync)


def settings_read_query(variable):
    if not isinstance(variable, string_types) or not variable.isidentifier():
        raise AnsibleFilterError('settings_read_query: a psql variable name is needed, got %r'
                                 % (variable,))
    return psql_settings_query(variable)


def settings_in_sync(read, desired, at_least=None):
    if not isinstance(desired, Mapping):
        raise AnsibleFilterError('settings_in_sync: the desired settings must be a dict')
    if not isinstance(read, Mapping) or not isinstance(read.get('rows'), list):
        return False
    return _in_sync(dict(desired), read['rows'], bool(read.get('files_readable')),
                    list(at_least or []))


class FilterModule(object):
    def filters(self):
        return {'settings_read_query': settings_read_query,
                'settings_in_sync': settings_in_sync}
