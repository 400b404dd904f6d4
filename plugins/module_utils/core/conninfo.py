# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libpq connection strings built from and parsed into dicts, quoting values as libpq does.

The user never writes a conninfo string: modules take a dict and call ``build_conninfo``.
``parse_conninfo`` reads one back (from pg_subscription.subconninfo) with the full libpq
grammar: keyword/value strings (single-quoted values, backslash escapes, spaces around ``=``)
and ``postgresql://`` URIs (percent-encoding, several hosts, query parameters).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError

import re

_KEY_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')

SECRET_KEYS = frozenset(['password', 'sslpassword'])

MASK = '********'

# libpq splits on C isspace() in the server's byte-oriented parser: ASCII whitespace only.
_SPACES = frozenset(' \t\n\r\f\v')

_URI_PREFIXES = ('postgresql://', 'postgres://')


class ConninfoError(TablesyncError):
    pass


def _needs_quotes(value):
    return value == '' or any(ch in _SPACES or ch in "'\\" or ch.isspace() for ch in value)


def quote_value(value):
    """Quote a conninfo value the way libpq reads it back.

    Plain values are written as they are (``host=db1``); empty values and values containing
    whitespace, a single quote or a backslash are single-quoted with ``\\`` and ``'``
    backslash-escaped. Booleans become ``1``/``0``.
    """
    if isinstance(value, bool):
        value = '1' if value else '0'
    value = str(value)
    if not _needs_quotes(value):
        return value
    return "'%s'" % value.replace('\\', '\\\\').replace("'", "\\'")


def check_key(key):
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ConninfoError('invalid connection option name %r' % (key,))
    return key


def build_conninfo(params):
    """Build a conninfo string from a dict; keys sorted, None values left out."""
    items = []
    for key in sorted(params):
        value = params[key]
        if value is None:
            continue
        check_key(key)
        if '\x00' in str(value):
            raise ConninfoError('connection option %s contains a NUL character' % key)
        items.append('%s=%s' % (key, quote_value(value)))
    return ' '.join(items)


def parse_conninfo(text):
    """Parse a conninfo string (keyword/value or URI) into a dict of strings."""
    if text.startswith(_URI_PREFIXES):
        return _parse_uri(text)
    return _parse_keywords(text)


def _skip_spaces(text, i):
    while i < len(text) and text[i] in _SPACES:
        i += 1
    return i


def _read_key(text, i):
    start = i
    while i < len(text) and text[i] != '=' and text[i] not in _SPACES:
        i += 1
    key = text[start:i]
    i = _skip_spaces(text, i)
    if i >= len(text) or text[i] != '=':
        raise ConninfoError('missing "=" after "%s" in connection info string' % key)
    if not key:
        raise ConninfoError('empty option name in connection info string')
    return key, i + 1


def _read_quoted(text, i):
    """Value after an opening quote at text[i]; returns (value, index after closing quote)."""
    buf = []
    i += 1
    while True:
        if i >= len(text):
            raise ConninfoError('unterminated quoted string in connection info string')
        ch = text[i]
        if ch == '\\':
            if i + 1 >= len(text):
                raise ConninfoError('unterminated quoted string in connection info string')
            buf.append(text[i + 1])
            i += 2
        elif ch == "'":
            return ''.join(buf), i + 1
        else:
            buf.append(ch)
            i += 1


def _read_plain(text, i):
    """Unquoted value: up to the next whitespace; a backslash escapes the next character."""
    buf = []
    while i < len(text) and text[i] not in _SPACES:
        if text[i] == '\\':
            if i + 1 < len(text):
                buf.append(text[i + 1])
            i += 2
            continue
        buf.append(text[i])
        i += 1
    return ''.join(buf), i


def _parse_keywords(text):
    result = {}
    i = _skip_spaces(text, 0)
    while i < len(text):
        key, i = _read_key(text, i)
        i = _skip_spaces(text, i)
        if i < len(text) and text[i] == "'":
            value, i = _read_quoted(text, i)
        else:
            value, i = _read_plain(text, i)
        result[key] = value
        i = _skip_spaces(text, i)
    return result


def _percent_decode(text):
    out = bytearray()
    i = 0
    raw = text.encode('utf-8')
    while i < len(raw):
        if raw[i:i + 1] == b'%':
            hexpart = raw[i + 1:i + 3]
            if len(hexpart) != 2 or not re.match(br'^[0-9A-Fa-f]{2}$', hexpart):
                raise ConninfoError('invalid percent-encoded token in URI: "%s"' % text)
            if hexpart == b'00':
                raise ConninfoError('forbidden value %%00 in percent-encoded value: "%s"' % text)
            out.append(int(hexpart, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    try:
        return out.decode('utf-8')
    except UnicodeDecodeError:
        raise ConninfoError('percent-encoded value in URI is not valid UTF-8')


def _split_host_port(hostspec):
    if hostspec.startswith('['):
        end = hostspec.find(']')
        if end < 0:
            raise ConninfoError('missing "]" in IPv6 host address in URI')
        host, rest = hostspec[1:end], hostspec[end + 1:]
        if rest and not rest.startswith(':'):
            raise ConninfoError('unexpected character after IPv6 host address in URI')
        return host, rest[1:] if rest else ''
    host, _sep, port = hostspec.partition(':')
    return _percent_decode(host), port


def _parse_uri(text):
    rest = text.split('://', 1)[1]
    rest, _sep, query = rest.partition('?')
    authority, slash, path = rest.partition('/')
    result = {}
    if '@' in authority:
        userinfo, authority = authority.split('@', 1)
        user, colon, password = userinfo.partition(':')
        if user:
            result['user'] = _percent_decode(user)
        if colon:
            result['password'] = _percent_decode(password)
    if authority:
        pairs = [_split_host_port(h) for h in authority.split(',')]
        if any(host for host, _port in pairs):
            result['host'] = ','.join(host for host, _port in pairs)
        if any(port for _host, port in pairs):
            result['port'] = ','.join(port for _host, port in pairs)
    if slash and path:
        result['dbname'] = _percent_decode(path)
    for item in query.split('&') if query else ():
        key, eq, value = item.partition('=')
        if not eq:
            raise ConninfoError('missing key/value separator "=" in URI query parameter')
        key, value = _percent_decode(key), _percent_decode(value)
        if key == 'ssl' and value == 'true':
            key, value = 'sslmode', 'require'
        result[key] = value
    return result


def redact_conninfo(params, mask=MASK):
    """Copy of a conninfo dict with secret values masked."""
    return dict((k, mask if k in SECRET_KEYS and v else v) for k, v in params.items())


def secrets_of(params):
    """The secret values of a conninfo dict (non-empty), for redaction."""
    return [v for k, v in params.items() if k in SECRET_KEYS and v]
