"""connection_kwargs(): module options first, then the libpq environment, then defaults."""
from ansible_collections.tablesync.postgresql.plugins.module_utils.core import connection as c


def params(**kw):
    base = dict((k, None) for k in c.connection_argument_spec())
    base.update(kw)
    return base


def test_defaults_without_environment():
    kw = c.connection_kwargs(params(), environ={})
    assert kw == {'user': 'postgres', 'dbname': 'postgres', 'connect_timeout': 10}


def test_environment_is_honoured_like_libpq():
    env = {'PGHOST': 'db1', 'PGPORT': '6432', 'PGUSER': 'app', 'PGPASSWORD': 'pw',
           'PGDATABASE': 'sales', 'PGSSLMODE': 'verify-full', 'PGSSLROOTCERT': '/ca.pem',
           'PGCONNECT_TIMEOUT': '3'}
    kw = c.connection_kwargs(params(), environ=env)
    assert kw == {'host': 'db1', 'port': 6432, 'user': 'app', 'password': 'pw', 'dbname': 'sales',
                  'sslmode': 'verify-full', 'sslrootcert': '/ca.pem', 'connect_timeout': 3}


def test_options_override_environment():
    env = {'PGHOST': 'db1', 'PGPORT': '6432', 'PGUSER': 'app'}
    kw = c.connection_kwargs(params(login_host='db2', login_port=5433, login_user='u'), environ=env)
    assert (kw['host'], kw['port'], kw['user']) == ('db2', 5433, 'u')


def test_unix_socket_used_only_without_host():
    kw = c.connection_kwargs(params(login_unix_socket='/run/pg'), environ={})
    assert kw['host'] == '/run/pg'
    kw = c.connection_kwargs(params(login_unix_socket='/run/pg', login_host='h'), environ={})
    assert kw['host'] == 'h'
    kw = c.connection_kwargs(params(login_unix_socket='/run/pg'), environ={'PGHOST': 'envhost'})
    assert kw['host'] == 'envhost'


def test_ssl_files_map_to_libpq_keywords():
    kw = c.connection_kwargs(params(ssl_mode='require', ca_cert='/a', ssl_cert='/b', ssl_key='/c'),
                             environ={})
    assert (kw['sslmode'], kw['sslrootcert'], kw['sslcert'], kw['sslkey']) == ('require', '/a', '/b', '/c')


def test_empty_string_option_falls_back_to_environment():
    kw = c.connection_kwargs(params(login_host=''), environ={'PGHOST': 'envhost'})
    assert kw['host'] == 'envhost'


def test_password_is_no_log_in_spec():
    assert c.connection_argument_spec()['login_password']['no_log'] is True


def test_version_text():
    from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import version_text
    assert version_text(150004) == '15'
    assert version_text(170000) == '17'
    assert version_text(90624) == '9.6'


def test_redact_text_masks_every_secret():
    assert c.redact_text("password='s3cr' again s3cr", ['s3cr', None, '']) == \
        "password='********' again ********"


def test_remote_server_spec_hides_the_password():
    spec = c.remote_server_argument_spec()
    assert spec['options']['password']['no_log'] is True
    assert spec['required'] is True
    assert c.remote_server_argument_spec(required=False)['required'] is False


def test_remote_connection_params_maps_suboptions():
    params = dict(connect_timeout=7, source=dict(host='src', port=5433, dbname='shop', user='u',
                                                 password='pw', sslmode='require'))
    assert c.remote_connection_params(params) == dict(
        login_host='src', login_port=5433, login_user='u', login_password='pw', login_db='shop',
        ssl_mode='require', connect_timeout=7)


def test_error_text_masks_every_connection_password():
    params = dict(login_password='target-secret', source=dict(password='source-secret'))
    error = Exception('  could not connect: password=source-secret and target-secret  \n')
    assert c.error_text(error, params) == 'could not connect: password=******** and ********'
    assert c.connection_secrets(dict(login_password=None, source=None)) == []


def test_traceback_text_masks_passwords():
    params = dict(login_password=None, source=dict(password='s3cr3t'))
    text = None
    try:
        raise ValueError('dsn password=s3cr3t')
    except ValueError:
        text = c.traceback_text(params)
    assert 's3cr3t' not in text and 'password=********' in text
