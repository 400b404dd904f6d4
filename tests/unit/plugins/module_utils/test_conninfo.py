"""conninfo strings: what build_conninfo writes, libpq reads back unchanged; parse_conninfo reads
what libpq reads (libpq's own parser, via psycopg2's parse_dsn, is the oracle)."""
import pytest
from psycopg2.extensions import parse_dsn

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.conninfo import (
    ConninfoError, build_conninfo, parse_conninfo, quote_value, redact_conninfo, secrets_of)

HOSTILE_VALUES = [
    'plain',
    'with space',
    "it's",
    'back\\slash',
    'trailing\\',
    "\\'",
    "''",
    'a=b',
    '=',
    ' leading and trailing ',
    'tab\there',
    'new\nline',
    'ünïcødé ✓',
    'non\u00a0breaking',
    "p'w\\ \"x\" ; DROP SUBSCRIPTION s; --",
    '$1 %s %% {}',
    '',
]


@pytest.mark.parametrize('value', HOSTILE_VALUES)
def test_round_trip_through_libpq(value):
    params = {'host': 'db1', 'dbname': 'shop', 'application_name': value, 'password': value}
    text = build_conninfo(params)
    assert parse_dsn(text) == params
    assert parse_conninfo(text) == params


@pytest.mark.parametrize('value', HOSTILE_VALUES)
def test_quote_value_is_read_back_by_libpq(value):
    assert parse_dsn('host=%s' % quote_value(value))['host'] == value


def test_plain_values_unquoted_and_keys_sorted():
    assert build_conninfo({'user': 'u', 'host': 'h', 'port': 5432, 'x': None}) == \
        'host=h port=5432 user=u'


def test_quoting_only_when_needed():
    assert quote_value('abc') == 'abc'
    assert quote_value('') == "''"
    assert quote_value('a b') == "'a b'"
    assert quote_value("a'b") == "'a\\'b'"
    assert quote_value('a\\b') == "'a\\\\b'"
    assert quote_value(True) == '1'
    assert quote_value(False) == '0'
    assert quote_value(30) == '30'


def test_invalid_keys_and_nul_refused():
    for key in ('', 'a b', 'a=b', "x'", '1abc', 'ü'):
        with pytest.raises(ConninfoError):
            build_conninfo({key: 'v'})
    with pytest.raises(ConninfoError):
        build_conninfo({'host': 'a\x00b'})


@pytest.mark.parametrize('text', [
    "host=h   port = 5432\tdbname='my db'",
    "host='h' port='5432' dbname = 'my db' ",
    "  host=h port=5432 dbname=my\\ db",
    "host=h port=5432 dbname='my db'user=x",
    "dbname='my \\'quoted\\' db' host=h",
    "host=h dbname=a\\\\b",
    "host=h dbname=''",
    "host=h dbname=x=y",
    "host=h host=second",
])
def test_parse_matches_libpq(text):
    assert parse_conninfo(text) == parse_dsn(text)


def test_trailing_backslash_of_plain_value_dropped_like_libpq():
    assert parse_conninfo('host=h dbname=x\\') == parse_dsn('host=h dbname=x\\') == \
        {'host': 'h', 'dbname': 'x'}


def test_unicode_whitespace_is_not_a_separator():
    text = 'host=h dbname=a\u00a0b'
    assert parse_conninfo(text) == {'host': 'h', 'dbname': 'a\u00a0b'}


@pytest.mark.parametrize('text', [
    'host',
    'host=h port',
    "host='unterminated",
    "host='ends with backslash\\",
    '=value',
])
def test_malformed_strings_refused(text):
    with pytest.raises(ConninfoError):
        parse_conninfo(text)
    with pytest.raises(Exception):
        parse_dsn(text)


@pytest.mark.parametrize('uri', [
    'postgresql://',
    'postgresql://host',
    'postgresql://user:p%40ss%20w@db.example:5433/my%20db?sslmode=require&application_name=a%26b',
    'postgres://u@h1:5432,h2:5433/d',
    'postgresql://[::1]:5432/d',
    'postgresql://u@/d?host=/var/run/postgresql',
    'postgresql://%C3%BC@h/d',
])
def test_uri_matches_libpq(uri):
    assert parse_conninfo(uri) == parse_dsn(uri)


def test_uri_ssl_true_means_require():
    assert parse_conninfo('postgresql://h/d?ssl=true') == parse_dsn('postgresql://h/d?ssl=true')


@pytest.mark.parametrize('uri', ['postgresql://h/%zz', 'postgresql://h/%00', 'postgresql://h/d?x'])
def test_bad_uris_refused(uri):
    with pytest.raises(ConninfoError):
        parse_conninfo(uri)


def test_redaction_masks_only_secrets():
    params = {'host': 'h', 'password': 's3cret', 'sslpassword': 'k', 'user': 'u'}
    redacted = redact_conninfo(params)
    assert redacted == {'host': 'h', 'password': '********', 'sslpassword': '********',
                        'user': 'u'}
    assert 's3cret' not in build_conninfo(redacted)
    assert sorted(secrets_of(params)) == ['k', 's3cret']
    assert redact_conninfo({'password': ''}) == {'password': ''}
