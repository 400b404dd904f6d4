# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database-only hosts (docs/managed.md): the connection options of the collection's modules.

``login_options(host_vars, unix_socket, port)`` -> the ``module_defaults`` of the group
``tablesync.postgresql.postgresql``: the Unix socket for an ordinary host (the modules run there
as the local ``postgres`` user), or, for a host with ``tablesync_database_only: true``, its TCP
address and administrator login (``tablesync_admin_user``, ``tablesync_admin_password``,
``tablesync_admin_sslmode``); the modules then run where the host's connection variables point
(the controller with ``ansible_connection: local``, or a runner host), never on the database
server.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError


def is_database_only(host_vars):
    value = (host_vars or {}).get('tablesync_database_only', False)
    if not isinstance(value, bool):
        raise AnsibleFilterError('tablesync_database_only must be true or false, not %r' % (value,))
    return value


def login_options(host_vars, unix_socket, port):
    if not is_database_only(host_vars):
        return {'login_unix_socket': unix_socket, 'login_port': int(port)}
    missing = [name for name in ('tablesync_address', 'tablesync_admin_user', 'tablesync_admin_password')
               if not host_vars.get(name)]
    if missing:
        raise AnsibleFilterError('a database-only host (tablesync_database_only: true) needs %s'
                                 % ', '.join(missing))
    return {'login_host': host_vars['tablesync_address'], 'login_port': int(port),
            'login_user': host_vars['tablesync_admin_user'],
            'login_password': host_vars['tablesync_admin_password'],
            'ssl_mode': host_vars.get('tablesync_admin_sslmode') or 'require'}


class FilterModule(object):
    def filters(self):
        return {'login_options': login_options}
