# -*- coding: utf-8 -*-
# Copyright: (c) 2026, tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server's own proof that a query built around user SQL text is one statement.

Row filters (``where``) are the one place where the collection accepts SQL text; it is placed
verbatim inside ``WHERE (...)``. The lexer check in ``core.row_filter.check_row_filter`` refuses a
``;`` or a parenthesis closed early, but a lexer written in Python can disagree with
PostgreSQL's. So the query that embeds the text is first handed to the server *as a bound
value* of a temporary PL/pgSQL function that opens it as a cursor: PostgreSQL parses the whole
text and refuses more than one statement ("cannot open multi-query plan as cursor") before it
runs any of them. A text that passes is one statement in the same lexical context, wherever
the collection then places it.

The function lives in ``pg_temp`` (gone with the session); creating it needs the TEMPORARY
privilege on the database, which the collection's administrator login has. It keeps the
session's ``search_path``, so the text is parsed exactly as the statement that uses it later.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.connect()
    sql = None

PROBE_FUNCTION = 'tablesync_single_statement'

_CREATE = '''
CREATE OR REPLACE FUNCTION pg_temp.tablesync_single_statement(query text) RETURNS text
LANGUAGE plpgsql AS $probe$
DECLARE
    c refcursor;
    first text;
BEGIN
    -- a cursor takes exactly one statement: several are refused before any of them runs
    OPEN c NO SCROLL FOR EXECUTE query;
    FETCH c INTO first;
    CLOSE c;
    RETURN first;
END
$probe$'''


def probe_statement():
    """``SELECT pg_temp.tablesync_single_statement(%s)``: the query text is its one parameter,
    sent as a bound value, never as SQL."""
    return sql.SQL('SELECT pg_temp.{}(%s)').format(sql.Identifier(PROBE_FUNCTION))


def install(conn):
    """Create the probe function in the session's temporary schema and commit (a read-only
    transaction could not create it). Call once per connection, before the first probe."""
    with conn.cursor() as cur:
        cur.execute(_CREATE)
    conn.commit()


def run_probe(cur, query):
    """First column of the first row of ``query`` (None without rows), run as one statement
    or refused with the server's error (psycopg2.Error). ``cur`` is an open cursor of a
    connection passed to ``install`` before."""
    text = query.as_string(cur) if hasattr(query, 'as_string') else query
    cur.execute(probe_statement(), [text])
    return cur.fetchone()[0]
