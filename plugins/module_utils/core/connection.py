# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one connection layer every module of the collection uses.

``connection_argument_spec()`` is merged into each module's argument spec (the options are
documented once in the ``connection`` doc fragment); ``connect(module)`` returns an open
psycopg2 connection with autocommit off, honouring libpq environment defaults.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import traceback

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import requirement_message

PSYCOPG2_IMPORT_ERROR = None
try:
    import psycopg2
    import psycopg2.extras  # noqa: F401 pylint: disable=unused-import
    from psycopg2 import sql  # noqa: F401 pylint: disable=unused-import
    HAS_PSYCOPG2 = True
except ImportError:
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

# option name -> (libpq keyword, environment variable)
_LIBPQ_OPTIONS = (
    ('login_host', 'host', 'PGHOST'),
    ('login_port', 'port', 'PGPORT'),
    ('login_user', 'user', 'PGUSER'),
    ('login_password', 'password', 'PGPASSWORD'),
    ('login_db', 'dbname', 'PGDATABASE'),
    ('ssl_mode', 'sslmode', 'PGSSLMODE'),
    ('ca_cert', 'sslrootcert', 'PGSSLROOTCERT'),
    ('ssl_cert', 'sslcert', 'PGSSLCERT'),
    ('ssl_key', 'sslkey', 'PGSSLKEY'),
    ('connect_timeout', 'connect_timeout', 'PGCONNECT_TIMEOUT'),
)

_DEFAULTS = {'user': 'postgres', 'dbname': 'postgres', 'connect_timeout': 10}


def connection_argument_spec():
    """Argument spec of the shared connection options (documented in the connection fragment)."""
    return dict(
        login_host=dict(type='str', aliases=['host']),
        login_port=dict(type='int', aliases=['port']),
        login_user=dict(type='str', aliases=['login']),
        login_password=dict(type='str', no_log=True),
        login_unix_socket=dict(type='str'),
        login_db=dict(type='str', aliases=['db', 'database']),
        ssl_mode=dict(type='str', choices=['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']),
        ca_cert=dict(type='path', aliases=['ssl_rootcert']),
        ssl_cert=dict(type='path'),
        ssl_key=dict(type='path'),
        connect_timeout=dict(type='int'),
        session_role=dict(type='str'),
    )


def connection_kwargs(params, environ=None):
    """Map module parameters to psycopg2.connect() keywords, libpq environment as fallback.

    Pure function (no I/O): ``environ`` defaults to os.environ.
    """
    environ = os.environ if environ is None else environ
    kwargs = {}
    for option, keyword, env in _LIBPQ_OPTIONS:
        value = params.get(option)
        if value is None or value == '':
            value = environ.get(env) or None
        if value is None:
            value = _DEFAULTS.get(keyword)
        if value is not None:
            kwargs[keyword] = value
    if 'host' not in kwargs and params.get('login_unix_socket'):
        kwargs['host'] = params['login_unix_socket']
    if 'port' in kwargs:
        kwargs['port'] = int(kwargs['port'])
    if 'connect_timeout' in kwargs:
        kwargs['connect_timeout'] = int(kwargs['connect_timeout'])
    return kwargs


def ensure_psycopg2(module):
    if not HAS_PSYCOPG2:
        module.fail_json(
            msg=missing_required_lib(
                'psycopg2',
                reason='to talk to PostgreSQL (Debian/Ubuntu: apt-get install python3-psycopg2; '
                       'RHEL: dnf install python3-psycopg2; or pip install psycopg2-binary)'),
            exception=PSYCOPG2_IMPORT_ERROR)


def connect(module, dbname=None, params=None):
    """Open a connection (autocommit off) or fail the module with a clear message.

    ``params`` (default ``module.params``): the connection options to use, e.g. those of a
    second server built from a module's own suboptions (same keys as the shared options).
    The password is passed to libpq as a keyword, never through a DSN string, so it cannot
    appear in error messages.
    """
    ensure_psycopg2(module)
    params = module.params if params is None else params
    kwargs = connection_kwargs(params)
    if dbname:
        kwargs['dbname'] = dbname
    kwargs.setdefault('application_name', 'ansible-tablesync')
    try:
        conn = psycopg2.connect(**kwargs)
    except psycopg2.Error as e:
        shown = dict((k, v) for k, v in kwargs.items() if k != 'password')
        module.fail_json(msg='Unable to connect to PostgreSQL (%s): %s'
                         % (', '.join('%s=%s' % kv for kv in sorted(shown.items())),
                            redact_text(str(e).strip(), [kwargs.get('password')])))
    conn.autocommit = False
    role = params.get('session_role')
    if role:
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL('SET ROLE {}').format(sql.Identifier(role)))
            conn.commit()
        except psycopg2.Error as e:
            module.fail_json(msg='Unable to SET ROLE %s: %s' % (role, str(e).strip()))
    return conn


def server_version(conn):
    """Server version as an integer, e.g. 150004 for 15.4, 170002 for 17.2."""
    return conn.server_version


def require_version(module, conn, minimum, feature):
    """Fail with a message naming the feature and the PostgreSQL version it needs."""
    have = server_version(conn)
    if have < minimum:
        module.fail_json(msg=requirement_message(feature, minimum, have))


def redact_text(text, secrets, mask='********'):
    """Replace every non-empty secret in text by mask."""
    for secret in secrets or ():
        if secret:
            text = text.replace(secret, mask)
    return text


def remote_server_argument_spec(required=True):
    """Argument spec of a second server given as a dict option (e.g. ``source``): the modules
    that read from one server and act on another share it, and connect with
    ``connect(module, params=remote_connection_params(module.params, 'source'))``."""
    return dict(type='dict', required=required, options=dict(
        host=dict(type='str'),
        port=dict(type='int'),
        dbname=dict(type='str'),
        user=dict(type='str'),
        password=dict(type='str', no_log=True),
        sslmode=dict(type='str', choices=['disable', 'allow', 'prefer', 'require',
                                          'verify-ca', 'verify-full']),
    ))


def remote_connection_params(params, option='source'):
    """The suboptions of the dict option ``option`` as shared connection options, for
    connect(); O(connect_timeout) of the module applies to the second server too."""
    server = params[option] or {}
    return dict(login_host=server.get('host'), login_port=server.get('port'),
                login_user=server.get('user'), login_password=server.get('password'),
                login_db=server.get('dbname'), ssl_mode=server.get('sslmode'),
                connect_timeout=params.get('connect_timeout'))


def connection_secrets(params, options=('source',)):
    """The passwords of the module's connections: login_password and those of the dict
    options ``options`` (remote servers)."""
    secrets = [params.get('login_password')]
    secrets.extend((params.get(option) or {}).get('password') for option in options)
    return [s for s in secrets if s]


def error_text(error, params, options=('source',)):
    """The text of an exception with every password of the module's connections masked
    (psycopg2 errors can echo connection strings)."""
    return redact_text(str(error).strip(), connection_secrets(params, options))


def traceback_text(params, options=('source',)):
    """The traceback of the exception being handled, passwords masked as by error_text()."""
    return redact_text(traceback.format_exc(), connection_secrets(params, options))
