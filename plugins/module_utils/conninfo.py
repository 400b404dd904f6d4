# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libpq connection strings built from and parsed into dicts, quoting values as libpq does.

The user never writes a conninfo string: modules take a dict and call ``build_conninfo``.
``parse_conninfo`` reads one back (from pg_subscription.subconninfo) with the full libpq
keyword/value grammar: single-quoted values, backslash escapes, spaces around ``=``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

_KEY_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')

SECRET_KEYS = frozenset(['password', 'sslpassword'])


class ConninfoError(ValueError):
    pass


def quote_value(value):
    """Quote a conninfo value: always single quotes, with \\ and ' backslash-escaped."""
    if isinstance(value, bool):
        value = '1' if value else '0'
    value = str(value)
    return "'%s'" % value.replace('\\', '\\\\').replace("'", "\\'")


def build_conninfo(params):
    """Build a conninfo string from a dict; keys sorted, None values left out."""
    items = []
    for key in sorted(params):
        value = params[key]
        if value is None:
            continue
        if not _KEY_RE.match(key):
            raise ConninfoError('invalid connection option name %r' % key)
        items.append('%s=%s' % (key, quote_value(value)))
    return ' '.join(items)


def parse_conninfo(text):
    """Parse a keyword/value conninfo string into a dict (URIs are not accepted)."""
    result = {}
    i = 0
    n = len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return result
        start = i
        while i < n and text[i] not in '=' and not text[i].isspace():
            i += 1
        key = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != '=' or not key:
            raise ConninfoError('missing "=" after %r in connection info string' % key)
        i += 1
        while i < n and text[i].isspace():
            i += 1
        buf = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise ConninfoError('unterminated quoted string in connection info string')
                ch = text[i]
                if ch == '\\' and i + 1 < n:
                    buf.append(text[i + 1])
                    i += 2
                    continue
                if ch == "'":
                    i += 1
                    break
                buf.append(ch)
                i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == '\\' and i + 1 < n:
                    buf.append(text[i + 1])
                    i += 2
                    continue
                buf.append(text[i])
                i += 1
        result[key] = ''.join(buf)


def redact_conninfo(params):
    """Copy of a conninfo dict with secret values masked."""
    return dict((k, '********' if k in SECRET_KEYS and v else v) for k, v in params.items())
