"""The server-side proof that a row filter is one expression (issue 13, finding 6): the query
that embeds it is opened as a cursor, which PostgreSQL refuses for several statements before
running any of them, whatever a Python lexer thinks of the text."""
import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.single_statement import (
    install, run_probe)


@pytest.fixture
def conn(publisher):
    publisher.execute('DROP TABLE IF EXISTS probe_pwned')
    c = publisher.connect(autocommit=False)
    install(c)
    yield c
    c.close()


def test_one_statement_runs_and_returns_its_first_value(conn):
    with conn.cursor() as cur:
        assert run_probe(cur, sql.SQL('SELECT {} FROM generate_series(7, 9)').format(
            sql.Identifier('generate_series'))) == '7'
        assert run_probe(cur, 'SELECT 1 WHERE false') is None


@pytest.mark.parametrize('text', [
    'SELECT 1 WHERE (true); CREATE TABLE probe_pwned ()',
    'SELECT 1; CREATE TABLE probe_pwned (); SELECT (1)',
    # what the old lexer mistook for a dollar quote: PostgreSQL reads €$x$ as an identifier
    'SELECT 1 AS a€$x$; CREATE TABLE probe_pwned (); SELECT $x$ $x$',
])
def test_a_second_statement_is_refused_unrun(publisher, conn, text):
    with conn.cursor() as cur:
        with pytest.raises(psycopg2.Error) as err:
            run_probe(cur, text)
    assert 'cannot open multi-query plan as cursor' in str(err.value), err.value
    conn.rollback()
    assert publisher.query("SELECT to_regclass('probe_pwned') IS NULL") == [(True,)]


def test_explain_of_a_filter_is_read_without_rows(conn):
    with conn.cursor() as cur:
        cur.execute('CREATE TEMP TABLE t (a int)')
        plan = run_probe(cur, 'EXPLAIN (VERBOSE, COSTS OFF, FORMAT JSON) SELECT (a > 5) FROM t WHERE (a > 5)')
    assert '"Output"' in plan and '(t.a > 5)' in plan
