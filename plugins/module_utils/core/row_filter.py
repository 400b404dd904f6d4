# -*- coding: utf-8 -*-
# Copyright: (c) 2026, tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Row filters: the one place where the collection accepts SQL text from the user.

A row filter (``where`` of a publication table, an fdw local copy or a compared table) is
placed verbatim as ``WHERE (<text>)``. ``check_row_filter`` is the first of two checks: a lexer
that refuses a statement separator outside literals, a parenthesis closed early, and an open
literal or comment. The second is the server's own (``core.single_statement``): the query
around the text is opened as a cursor from a bound value, which PostgreSQL refuses for more
than one statement before running any.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError


class RowFilterError(TablesyncError):
    """The text is not a single SQL expression usable as ``WHERE (text)``."""


def _skip_quoted(text, start, quote, backslash_escapes=False):
    """Index just after the literal/identifier opened at ``start`` (``''``/``""`` doubling)."""
    i = start + 1
    while i < len(text):
        ch = text[i]
        if backslash_escapes and ch == '\\':
            i += 2
            continue
        if ch == quote:
            if text.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    raise RowFilterError('unterminated %s in row filter %r'
                         % ('string literal' if quote == "'" else 'quoted identifier', text))


def _ident_char(ch, dollar=True):
    """Whether PostgreSQL's lexer takes ch as part of an identifier: ASCII letters, digits, _,
    $ (not first), and every character outside ASCII (bytes >= 0x80 in the server's lexer)."""
    return (ord(ch) >= 0x80 or ('a' <= ch.lower() <= 'z') or ch.isdigit() and ch.isascii()
            or ch == '_' or (dollar and ch == '$'))


def _dollar_tag(text, i):
    """The dollar-quote tag (``$$``, ``$body$``) starting at i, or None."""
    if i > 0 and _ident_char(text[i - 1]):
        return None  # a $ inside an identifier such as a$b or €$x
    j = i + 1
    while j < len(text) and _ident_char(text[j], dollar=False):
        j += 1
    if j < len(text) and text[j] == '$' and not text[i + 1:j][:1].isdigit():
        return text[i:j + 1]
    return None


def _skip_comment(text, i):
    if text.startswith('--', i):
        end = text.find('\n', i)
        if end < 0:
            raise RowFilterError('a -- comment must not end the row filter %r (it would hide '
                                 'the closing parenthesis); end it with a newline' % text)
        return end + 1
    depth = 0
    while i < len(text):
        if text.startswith('/*', i):
            depth += 1
            i += 2
        elif text.startswith('*/', i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise RowFilterError('unterminated /* comment in row filter %r' % text)


def check_row_filter(text, standard_conforming_strings=True):
    """Refuse text that is not a single SQL expression usable as ``WHERE (text)``.

    The row filter is the one place where the module accepts SQL from the user. It is placed
    verbatim between parentheses, so it must not close them early, contain a statement
    separator outside literals, or end in an open literal or comment. This lexer knows string
    literals (also ``E''`` and dollar quotes), quoted identifiers and comments.
    """
    if '\x00' in text:
        raise RowFilterError('row filter %r contains a NUL character' % text)
    depth = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            escapes = not standard_conforming_strings or (
                i > 0 and text[i - 1] in 'eE' and (i < 2 or not _ident_char(text[i - 2])))
            i = _skip_quoted(text, i, "'", escapes)
            continue
        if ch == '"':
            i = _skip_quoted(text, i, '"')
            continue
        if ch == '$':
            tag = _dollar_tag(text, i)
            if tag:
                end = text.find(tag, i + len(tag))
                if end < 0:
                    raise RowFilterError('unterminated dollar-quoted string in row filter %r' % text)
                i = end + len(tag)
                continue
        if text.startswith('--', i) or text.startswith('/*', i):
            i = _skip_comment(text, i)
            continue
        if ch == ';':
            raise RowFilterError('row filter %r contains ";": it must be a single SQL expression' % text)
        if ch == '(':
            depth += 1
        elif ch == ')':
            depth -= 1
            if depth < 0:
                raise RowFilterError('row filter %r closes a parenthesis it did not open' % text)
        i += 1
    if depth:
        raise RowFilterError('row filter %r has an unclosed parenthesis' % text)
    return text
