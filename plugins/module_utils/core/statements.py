# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQL statements as data.

Planning functions ("desired vs current -> statements") return lists of ``Statement``: a
``psycopg2.sql`` composable with ``%s`` placeholders, its parameters, and flags telling the
executor how to run it. Parameters wrapped in ``Secret`` are sent to the server but shown as
``'********'`` everywhere a statement is displayed (``queries``, diff, errors).

``render()`` turns a statement into display text without a database connection, with the same
quoting rules PostgreSQL uses (identifiers always double-quoted, literals single-quoted), so the
planners can be unit-tested offline.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

REDACTED = '********'


class Secret(object):
    """A parameter value that must never be displayed.

    ``display`` is what ``render()`` shows instead of the value (default ``'********'``), e.g. a
    connection string with only its password masked. ``sensitive`` lists further strings (parts
    of the value, such as the password itself in its quoted forms) that the executor redacts
    from error messages besides the whole value.
    """

    __slots__ = ('value', 'display', 'sensitive')

    def __init__(self, value, display=None, sensitive=()):
        self.value = value
        self.display = REDACTED if display is None else display
        self.sensitive = tuple(s for s in sensitive if s)

    def secrets(self):
        return [s for s in (self.value,) + self.sensitive if s]

    def __repr__(self):
        return 'Secret(%s)' % REDACTED

    def __eq__(self, other):
        return isinstance(other, Secret) and other.value == self.value \
            and other.display == self.display

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(('Secret', self.value, self.display))


def exact_grantees(privilege, target, wanted, have):
    """GRANT/REVOKE so that exactly the roles ``wanted`` hold ``privilege`` (an SQL keyword,
    e.g. 'EXECUTE') on ``target`` (a composable such as ``ROUTINE "s"."f"(int)``), given the
    roles that ``have`` it now: grants first, then revokes, each in name order."""
    wanted, have = set(wanted), set(have)
    keyword = sql.SQL(privilege)
    return ([Statement(sql.SQL('GRANT {} ON {} TO {}').format(keyword, target, sql.Identifier(role)))
             for role in sorted(wanted - have)]
            + [Statement(sql.SQL('REVOKE {} ON {} FROM {}').format(keyword, target, sql.Identifier(role)))
               for role in sorted(have - wanted)])


class Statement(object):
    """One SQL statement to run.

    ``autocommit``: PostgreSQL refuses to run it inside a transaction block (CREATE SUBSCRIPTION
    that creates a slot, DROP SUBSCRIPTION with a slot, REFRESH PUBLICATION...).
    """

    __slots__ = ('query', 'params', 'autocommit')

    def __init__(self, query, params=(), autocommit=False):
        self.query = query
        self.params = tuple(params)
        self.autocommit = autocommit

    def real_params(self):
        return tuple(p.value if isinstance(p, Secret) else p for p in self.params)

    def display_params(self):
        return tuple(p.display if isinstance(p, Secret) else p for p in self.params)

    def secrets(self):
        found = []
        for p in self.params:
            if isinstance(p, Secret):
                found.extend(p.secrets())
        return found

    def __repr__(self):
        return 'Statement(%r)' % render(self)

    def __eq__(self, other):
        return isinstance(other, Statement) and render(self) == render(other) \
            and self.autocommit == other.autocommit

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(render(self))


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def quote_literal(value):
    if value is None:
        return 'NULL'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return 'ARRAY[%s]' % ', '.join(quote_literal(v) for v in value)
    return "'%s'" % str(value).replace("'", "''")


def _render_composable(obj, params):
    """Render a psycopg2.sql composable; ``params`` is an iterator over display parameters."""
    if isinstance(obj, sql.Composed):
        return ''.join(_render_composable(part, params) for part in obj)
    if isinstance(obj, sql.Identifier):
        return '.'.join(quote_ident(s) for s in obj.strings)
    if isinstance(obj, sql.Literal):
        return quote_literal(obj.wrapped)
    if isinstance(obj, sql.Placeholder):
        return quote_literal(next(params))
    if isinstance(obj, sql.SQL):
        text = obj.string
        if params is None:  # a statement without parameters is executed verbatim (see bind())
            return text
        out = []
        i = 0
        while i < len(text):
            if text.startswith('%%', i):
                out.append('%')
                i += 2
            elif text.startswith('%s', i):
                out.append(quote_literal(next(params)))
                i += 2
            else:
                out.append(text[i])
                i += 1
        return ''.join(out)
    raise TypeError('cannot render %r' % (obj,))


def _bind_composable(obj, params):
    """Copy of a composable with every placeholder replaced by ``sql.Literal(next(params))``."""
    if isinstance(obj, sql.Composed):
        return sql.Composed([_bind_composable(part, params) for part in obj])
    if isinstance(obj, sql.Placeholder):
        return sql.Literal(next(params))
    if isinstance(obj, sql.SQL):
        parts = []
        text = obj.string
        start = i = 0
        while i < len(text):
            if text.startswith('%%', i) or text.startswith('%s', i):
                parts.append(sql.SQL(text[start:i]))
                parts.append(sql.SQL('%') if text[i + 1] == '%' else sql.Literal(next(params)))
                i += 2
                start = i
            else:
                i += 1
        parts.append(sql.SQL(text[start:]))
        return sql.Composed(parts)
    return obj


def bind(statement):
    """The composable to execute: parameters (real values) inlined as literals.

    Executing this without a parameter tuple avoids psycopg2's ``%`` interpolation over the
    whole composed text, which breaks on identifiers or literals containing ``%``.
    """
    query = statement.query
    if isinstance(query, str):
        query = sql.SQL(query)
    if not statement.params:
        return query
    return _bind_composable(query, iter(statement.real_params()))


def render(statement):
    """Display text of a Statement (secrets redacted), without a connection."""
    query = statement.query
    if isinstance(query, str):
        query = sql.SQL(query)
    params = statement.display_params()
    return _render_composable(query, iter(params) if params else None)


def render_all(statements):
    return [render(s) for s in statements]
