# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # The O(source) option of the modules that read one server (the source) and act on or
    # compare with another (the target, given by the shared connection options).
    # Argument spec: connection.remote_server_argument_spec().
    DOCUMENTATION = r'''
options:
  source:
    description:
      - Connection to the source database, the server that is read from; the shared connection
        options (O(login_host), O(login_db)...) are the target's.
      - Options left unset fall back to the libpq environment of the managed host and then to
        the libpq defaults, as for the target's connection options. O(connect_timeout) applies
        to both connections.
      - The privileges O(source.user) needs are given in the module's notes.
    type: dict
    required: true
    suboptions:
      host:
        description: Host of the source server (a value starting with C(/) is a socket directory).
        type: str
      port:
        description: Port of the source server.
        type: int
      dbname:
        description: Database on the source server.
        type: str
      user:
        description: Role to connect as on the source.
        type: str
      password:
        description: Password of O(source.user). Never logged, never returned.
        type: str
      sslmode:
        description: libpq C(sslmode) for the source connection.
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
'''
