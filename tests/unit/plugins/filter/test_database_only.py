"""login_options: the modules' connection options on an ordinary and a database-only host."""
import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.tablesync.postgresql.plugins.filter.database_only import login_options

DB_ONLY = {'tablesync_database_only': True, 'tablesync_address': 'db1.example.net',
           'tablesync_admin_user': 'admin', 'tablesync_admin_password': 'pw'}


def test_ordinary_host_uses_the_socket():
    assert login_options({}, '/run/pg', '5433') == {'login_unix_socket': '/run/pg', 'login_port': 5433}
    assert login_options({'tablesync_database_only': False}, '/s', 5432)['login_unix_socket'] == '/s'


def test_database_only_host_uses_tcp_and_its_administrator_login():
    assert login_options(DB_ONLY, '/run/pg', 6432) == {
        'login_host': 'db1.example.net', 'login_port': 6432, 'login_user': 'admin',
        'login_password': 'pw', 'ssl_mode': 'require'}
    assert login_options(dict(DB_ONLY, tablesync_admin_sslmode='verify-full'), '/s', 1)['ssl_mode'] == 'verify-full'


def test_missing_login_and_bad_flag_named():
    with pytest.raises(AnsibleFilterError, match='tablesync_admin_user, tablesync_admin_password'):
        login_options({'tablesync_database_only': True, 'tablesync_address': 'x'}, '/s', 1)
    with pytest.raises(AnsibleFilterError, match='true or false'):
        login_options({'tablesync_database_only': 'yes'}, '/s', 1)
