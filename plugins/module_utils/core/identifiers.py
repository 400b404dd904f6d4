# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsing of the object names users write in playbooks.

Names are taken literally: ``Sales.Order Items`` means schema ``Sales`` and table
``Order Items``, case and spaces preserved (no SQL case folding). A part may be written in
double quotes to contain a dot (``"my.schema"."t"``; a doubled ``""`` is one quote). A name
without a schema is in ``public``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError

NAMEDATALEN = 64  # identifiers longer than NAMEDATALEN - 1 bytes are truncated by PostgreSQL


class NameError_(TablesyncError):
    pass


def split_name(name):
    """Split a possibly quoted dotted name into its parts."""
    parts = []
    current = []
    i = 0
    quoted_part = False
    while i < len(name):
        ch = name[i]
        if ch == '"' and not current and not quoted_part:
            # quoted part: read to the closing quote
            j = i + 1
            buf = []
            while True:
                if j >= len(name):
                    raise NameError_('unterminated double quote in name %r' % name)
                if name[j] == '"':
                    if j + 1 < len(name) and name[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(name[j])
                j += 1
            current = buf
            quoted_part = True
            i = j + 1
            if i < len(name) and name[i] != '.':
                raise NameError_('unexpected text after closing quote in name %r' % name)
            continue
        if ch == '.':
            parts.append(''.join(current))
            current = []
            quoted_part = False
        else:
            if quoted_part:
                raise NameError_('unexpected text after closing quote in name %r' % name)
            current.append(ch)
        i += 1
    parts.append(''.join(current))
    return parts


def check_identifier(part, what='name'):
    if part == '':
        raise NameError_('empty %s' % what)
    if '\x00' in part:
        raise NameError_('%s %r contains a NUL character' % (what, part))
    if len(part.encode('utf-8')) > NAMEDATALEN - 1:
        raise NameError_('%s %r is longer than %d bytes; PostgreSQL would truncate it'
                         % (what, part, NAMEDATALEN - 1))
    return part


def parse_qualified(name, default_schema='public'):
    """``'schema.table'`` -> ``('schema', 'table')``; ``'table'`` -> ``(default_schema, 'table')``.

    Raises NameError_ with a clear message on malformed input.
    """
    if not isinstance(name, str):
        raise NameError_('expected a name as a string, got %r' % (name,))
    parts = split_name(name)
    if len(parts) == 1:
        parts = [default_schema] + parts
    if len(parts) != 2:
        raise NameError_('%r is not a valid schema.table name (quote a part that contains a dot: '
                         '"my.schema"."table")' % name)
    return (check_identifier(parts[0], 'schema name'), check_identifier(parts[1], 'table name'))


def format_qualified(schema, name):
    """Display form that parse_qualified() reads back to the same tuple."""
    def part(p):
        if '.' in p or p.startswith('"'):
            return '"%s"' % p.replace('"', '""')
        return p
    return '%s.%s' % (part(schema), part(name))
