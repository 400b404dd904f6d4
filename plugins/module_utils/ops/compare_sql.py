# -*- coding: utf-8 -*-
# Copyright: tablesync.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_table_compare's SQL: the keyed, ordered checksum queries every comparison runs on both
servers (built with ``psycopg2.sql``), their fixed session, and the two sides that run them in
parallel. The drill-down that decides which ranges to query is ``table_compare.py``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading

from ansible_collections.tablesync.postgresql.plugins.module_utils.core.text_forms import (
    TEXT_FORM_SETTINGS)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.errors import TablesyncError
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.versions import PG11

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by connection.ensure_psycopg2()
    sql = None

# Session settings that fix the text form of every value on both servers.
SESSION_SETTINGS = TEXT_FORM_SETTINGS + (('default_transaction_read_only', 'on'),)


class CompareError(TablesyncError):
    pass


# --------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------

def _rel(t):
    return sql.SQL('{}.{}').format(sql.Identifier(t.schema), sql.Identifier(t.name))


def _key_parts(t):
    return [sql.SQL('{} COLLATE "C"').format(sql.Identifier(c)) if cc else sql.Identifier(c)
            for c, cc in zip(t.key, t.collate_c)]


def key_expr(t):
    """The key as one comparable expression: the column, or ROW(...) for a composite key."""
    parts = _key_parts(t)
    if len(parts) == 1:
        return parts[0]
    return sql.SQL('ROW({})').format(sql.SQL(', ').join(parts))


def key_literal(t, values):
    """Key text values as untyped literals, coerced by PostgreSQL to the key column types."""
    if len(values) != len(t.key):
        raise CompareError('key value %r does not match the key columns %s' % (values, ', '.join(t.key)))
    lits = [sql.Literal(v) for v in values]
    if len(lits) == 1:
        return lits[0]
    return sql.SQL('ROW({})').format(sql.SQL(', ').join(lits))


def key_order(t):
    return sql.SQL(', ').join(_key_parts(t))


def key_text(t):
    return sql.SQL('ARRAY[{}]::text[]').format(
        sql.SQL(', ').join(sql.SQL('{}::text').format(sql.Identifier(c)) for c in t.key))


def row_hash(t):
    """64-bit hash of the row's text form (compared columns in the source's order)."""
    row = sql.SQL('ROW({})::text').format(sql.SQL(', ').join(sql.Identifier(c) for c in t.columns))
    if t.checksum == 'md5':
        return sql.SQL("('x' || pg_catalog.left(pg_catalog.md5({}), 16))::bit(64)::bigint").format(row)
    return sql.SQL('pg_catalog.hashtextextended({}, 0)').format(row)


def range_conditions(t, rng):
    conds = []
    if t.where:
        conds.append(sql.SQL('(') + sql.SQL(t.where) + sql.SQL(')'))
    if rng.lo is not None:
        conds.append(sql.SQL('{} >= {}').format(key_expr(t), key_literal(t, rng.lo)))
    if rng.hi is not None:
        conds.append(sql.SQL('{} < {}').format(key_expr(t), key_literal(t, rng.hi)))
    return conds


def _where(conds):
    if not conds:
        return sql.SQL('')
    return sql.SQL(' WHERE ') + sql.SQL(' AND ').join(conds)


def bucket_expr(t, bounds):
    """Index 0..len(bounds) of the sub-range of the key: a binary search written as nested CASE."""
    if not bounds:
        return sql.SQL('0')
    key = key_expr(t)

    def tree(lo, hi):
        if lo == hi:
            return sql.SQL(str(lo))
        mid = (lo + hi + 1) // 2
        return sql.SQL('CASE WHEN {} < {} THEN {} ELSE {} END').format(
            key, key_literal(t, bounds[mid - 1]), tree(lo, mid - 1), tree(mid, hi))
    return tree(0, len(bounds))


def bounds_query(t, tasks):
    """Split keys of ranges: ``tasks`` is a list of (Range, fanout, sample_percent or None).

    Returns rows (task index, key text array): the first key of every n-th part after the first,
    in key order, from the rows in the range (a block sample of them when sample_percent is set).
    """
    branches = []
    for i, (rng, fanout, sample) in enumerate(tasks):
        tablesample = sql.SQL('')
        if sample and t.sample:
            tablesample = sql.SQL(' TABLESAMPLE SYSTEM ({}) REPEATABLE (0)').format(
                sql.SQL(repr(float(sample))))
        outs = [sql.SQL('{} AS {}').format(part, sql.Identifier('o%d' % j))
                for j, part in enumerate(_key_parts(t))]
        branches.append(sql.SQL('SELECT {} AS r, {} AS n, {} AS kt, {} FROM {}{}{}').format(
            sql.SQL(str(i)), sql.SQL(str(int(fanout))), key_text(t), sql.SQL(', ').join(outs),
            _rel(t), tablesample, _where(range_conditions(t, rng))))
    order = sql.SQL(', ').join(sql.Identifier('o%d' % j) for j in range(len(t.key)))
    return sql.SQL(
        'SELECT r, kt FROM ('
        'SELECT r, kt, n, pg_catalog.row_number() OVER (PARTITION BY r ORDER BY {order}) AS rn, '
        'pg_catalog.count(*) OVER (PARTITION BY r) AS cnt FROM ({union}) u) x '
        'WHERE rn > 1 AND (rn - 1) * n / cnt > (rn - 2) * n / cnt ORDER BY r, rn').format(
            order=order, union=sql.SQL(' UNION ALL ').join(branches))


def compare_query(t, items):
    """One query for a batch: ``items`` is a list of ('agg', Range, bounds) / ('leaf', Range) /
    ('list', Range, limit).

    Rows: (item index, sub-range index, count, hash sum, key text array): aggregates per
    sub-range for 'agg' (kt NULL), every row's hash and key for 'leaf', keys for 'list'.
    """
    branches = []
    for i, item in enumerate(items):
        kind, rng = item[0], item[1]
        where = _where(range_conditions(t, rng))
        if kind == 'agg':
            branches.append(sql.SQL(
                'SELECT {i} AS r, b, pg_catalog.count(*) AS n, pg_catalog.sum(h) AS s, '
                'NULL::text[] AS kt, NULL::bigint AS o '
                'FROM (SELECT {bucket} AS b, {hash} AS h FROM {rel}{where} OFFSET 0) a GROUP BY b').format(
                    i=sql.SQL(str(i)), bucket=bucket_expr(t, item[2]), hash=row_hash(t),
                    rel=_rel(t), where=where))
        elif kind == 'leaf':
            branches.append(sql.SQL(
                'SELECT {i} AS r, NULL::integer AS b, NULL::bigint AS n, ({hash})::numeric AS s, '
                '{kt} AS kt, pg_catalog.row_number() OVER (ORDER BY {order}) AS o FROM {rel}{where}').format(
                    i=sql.SQL(str(i)), hash=row_hash(t), kt=key_text(t), order=key_order(t),
                    rel=_rel(t), where=where))
        elif kind == 'list':
            branches.append(sql.SQL(
                '(SELECT {i} AS r, NULL::integer AS b, NULL::bigint AS n, NULL::numeric AS s, '
                '{kt} AS kt, pg_catalog.row_number() OVER (ORDER BY {order}) AS o FROM {rel}{where} '
                'ORDER BY {order} LIMIT {limit})').format(
                    i=sql.SQL(str(i)), kt=key_text(t), order=key_order(t), rel=_rel(t),
                    where=where, limit=sql.SQL(str(int(item[2])))))
        else:
            raise ValueError('unknown item kind %r' % (kind,))
    if not branches:
        return None
    return sql.SQL('SELECT r, b, n, s, kt FROM ({}) u ORDER BY r, b, o').format(
        sql.SQL(' UNION ALL ').join(branches))


def session_statements(server_version):
    """SET statements run once per connection before comparing."""
    stmts = [sql.SQL('SET {} = {}').format(sql.Identifier(name), sql.Literal(value))
             for name, value in SESSION_SETTINGS]
    if server_version >= PG11:
        stmts.append(sql.SQL('SET jit = off'))
    return stmts


# --------------------------------------------------------------------------------------------
# Sides: where the queries run
# --------------------------------------------------------------------------------------------

class SqlSide(object):
    """One server's side of a table comparison (an open psycopg2 connection)."""

    def __init__(self, conn, table):
        self.conn = conn
        self.table = table
        self.queries = 0

    def _fetch(self, query):
        self.queries += 1
        with self.conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall()

    def bounds(self, tasks):
        result = [[] for _task in tasks]
        if not tasks:
            return result
        for r, kt in self._fetch(bounds_query(self.table, tasks)):
            result[r].append(tuple(kt))
        return result

    def compare(self, items):
        result = [None] * len(items)
        for i, item in enumerate(items):
            result[i] = {} if item[0] == 'agg' else []
        query = compare_query(self.table, items)
        if query is None:
            return result
        for r, b, n, s, kt in self._fetch(query):
            kind = items[r][0]
            if kind == 'agg':
                result[r][b] = (n, s)
            elif kind == 'leaf':
                result[r].append((tuple(kt), s))
            else:
                result[r].append(tuple(kt))
        return result


def parallel(first, second):
    """Run two callables at the same time (psycopg2 releases the GIL while the server works)."""
    box = {}

    def run(name, fn):
        try:
            box[name] = (True, fn())
        except Exception as e:  # pylint: disable=broad-except
            box[name] = (False, e)

    thread = threading.Thread(target=run, args=('second', second))
    thread.start()
    run('first', first)
    thread.join()
    for name in ('first', 'second'):
        ok, value = box[name]
        if not ok:
            raise value
    return box['first'][1], box['second'][1]
