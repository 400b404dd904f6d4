# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options shared by every module of the collection.
    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - Host running the database. A value starting with C(/) is a Unix socket directory.
      - When unset, C(PGHOST) from the environment of the managed host is used, as libpq does;
        when that is unset too, the Unix socket (see O(login_unix_socket)) is used.
    type: str
    aliases: [host]
  login_port:
    description:
      - Database port. Defaults to C(PGPORT) from the environment, else C(5432).
    type: int
    aliases: [port]
  login_user:
    description:
      - Role to connect as. Defaults to C(PGUSER) from the environment, else C(postgres).
    type: str
    aliases: [login]
  login_password:
    description:
      - Password of O(login_user). Defaults to C(PGPASSWORD) from the environment; libpq also
        honours C(PGPASSFILE) and C(~/.pgpass) when no password is given.
      - Never logged, never returned.
    type: str
  login_unix_socket:
    description:
      - Directory of the Unix socket, used when O(login_host) is unset.
    type: str
  login_db:
    description:
      - Database to connect to. Defaults to C(PGDATABASE) from the environment, else C(postgres).
    type: str
    aliases: [db, database]
  ssl_mode:
    description:
      - libpq C(sslmode). Defaults to C(PGSSLMODE) from the environment, else C(prefer).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file (libpq C(sslrootcert)); defaults to C(PGSSLROOTCERT).
    type: path
    aliases: [ssl_rootcert]
  ssl_cert:
    description:
      - Client certificate file (libpq C(sslcert)); defaults to C(PGSSLCERT).
    type: path
  ssl_key:
    description:
      - Client private key file (libpq C(sslkey)); defaults to C(PGSSLKEY).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for the connection; defaults to C(PGCONNECT_TIMEOUT), else C(10).
    type: int
  session_role:
    description:
      - Switch to this role after connecting (C(SET ROLE)); all work is done with its privileges.
    type: str
notes:
  - Requires C(psycopg2) on the managed host (Debian/Ubuntu C(python3-psycopg2), or
    C(pip install psycopg2-binary)).
  - Every option that is not set falls back to the libpq environment variable of the managed host
    (C(PGHOST), C(PGPORT), C(PGUSER), C(PGPASSWORD), C(PGDATABASE), C(PGSSLMODE), C(PGSSLROOTCERT),
    C(PGSSLCERT), C(PGSSLKEY), C(PGCONNECT_TIMEOUT)), as libpq itself does.
requirements:
  - psycopg2 >= 2.8
'''
