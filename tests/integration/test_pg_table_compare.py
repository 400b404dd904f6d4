# -*- coding: utf-8 -*-
"""pg_table_compare on two real clusters: the source is ``publisher``, the target ``subscriber``.

Every test has its own pair of databases. The big-table test uses 200,000 rows by default;
set TABLESYNC_COMPARE_ROWS (for example 10000000) for a larger run. Times are printed (-s).
"""
import os
import threading
import time

import pytest
from psycopg2 import sql

from helpers import HOSTILE_SCHEMA, HOSTILE_TABLE, LONG_NAME as LONG_TABLE, DatabasePair, quoted
from pgcluster import SUPERPASS
from runner import run_module

MODULE = 'tablesync.postgresql.pg_table_compare'

KEY_A = 'Región "A";'
KEY_B = 'b' * 63


class Pair(DatabasePair):
    def __init__(self, publisher, subscriber):
        super(Pair, self).__init__(publisher, subscriber, 'tc')

    def args(self, tables, **kw):
        return self.module_args(tables=tables, **kw)

    def run(self, tables, check=False, **kw):
        return run_module(MODULE, self.args(tables, **kw), check=check)


@pytest.fixture
def pair(publisher, subscriber):
    p = Pair(publisher, subscriber)
    yield p
    p.drop()


ORDERS_DDL = '''
CREATE TABLE public.orders (id bigint PRIMARY KEY, customer text NOT NULL, total numeric(12,2),
                            created timestamptz, tags text[], doc jsonb, raw bytea, ratio float8);
INSERT INTO public.orders
SELECT g, 'customer ' || (g % 97), g * 1.25, '2024-01-01 00:00+00'::timestamptz + g * interval '1 minute',
       ARRAY['t' || (g % 5)], jsonb_build_object('n', g), decode(md5(g::text), 'hex'), g / 7.0
  FROM generate_series(1, {rows}) g;
ANALYZE public.orders;
'''


def make_orders(pair, rows):
    pair.both(ORDERS_DDL.replace('{rows}', str(int(rows))))


def ok(result):
    assert not result.get('failed'), result.get('msg', result)
    assert result['changed'] is False
    return result


def test_equal_tables_and_check_mode(pair):
    make_orders(pair, 5000)
    r = ok(pair.run(['orders']))
    assert r['equal'] is True and r['differing_tables'] == []
    t = r['tables']['public.orders']
    assert (t['source_rows'], t['target_rows']) == (5000, 5000)
    assert t['counts'] == {'missing': 0, 'extra': 0, 'changed': 0}
    assert t['differences'] == {'missing': [], 'extra': [], 'changed': []}
    assert t['key'] == ['id'] and t['columns'][:3] == ['id', 'customer', 'total']
    assert t['ranges_checked'] >= 1 and t['truncated'] is False and t['attempts'] == 1
    # the password of either server never shows
    assert SUPERPASS not in r['_run'].output

    c = ok(pair.run(['orders'], check=True, checksum='md5'))
    assert c['equal'] is True and c['tables']['public.orders']['source_rows'] == 5000


def test_corrupted_missing_and_extra_rows_are_named_by_key(pair):
    make_orders(pair, 5000)
    pair.target_sql("UPDATE public.orders SET total = total + 0.01 WHERE id = 4242")
    pair.target_sql("UPDATE public.orders SET doc = '{\"n\": 0}' WHERE id = 17")
    pair.target_sql("DELETE FROM public.orders WHERE id IN (1, 2500, 5000)")
    pair.target_sql("INSERT INTO public.orders (id, customer) VALUES (0, 'x'), (777777, 'y')")
    r = ok(pair.run(['orders']))
    assert r['equal'] is False and r['differing_tables'] == ['public.orders']
    t = r['tables']['public.orders']
    assert t['differences'] == {'missing': [1, 2500, 5000], 'extra': [0, 777777], 'changed': [17, 4242]}
    assert t['counts'] == {'missing': 3, 'extra': 2, 'changed': 2}
    assert (t['source_rows'], t['target_rows']) == (5000, 4999)


def test_composite_hostile_key_names_and_values(pair):
    ddl = sql.SQL('''
        CREATE SCHEMA {s};
        CREATE TABLE {t} ({a} text NOT NULL, {b} integer NOT NULL, "va lue" text, PRIMARY KEY ({a}, {b}));
        INSERT INTO {t} SELECT CASE g % 4 WHEN 0 THEN 'it''s' WHEN 1 THEN 'Ünï; "q"' WHEN 2 THEN 'a b'
                                ELSE 'Zed' END, g, 'v' || g FROM generate_series(1, 3000) g;
        CREATE TABLE {s}.{l} (id integer PRIMARY KEY, v text);
        INSERT INTO {s}.{l} SELECT g, 'x' FROM generate_series(1, 50) g;
    ''').format(s=sql.Identifier(HOSTILE_SCHEMA), t=sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE),
                a=sql.Identifier(KEY_A), b=sql.Identifier(KEY_B), l=sql.Identifier(LONG_TABLE))
    pair.both(ddl)
    tq = sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)
    pair.target_sql(sql.SQL('UPDATE {} SET "va lue" = NULL WHERE {} = 1001').format(tq, sql.Identifier(KEY_B)))
    pair.target_sql(sql.SQL('DELETE FROM {} WHERE {} = 1002').format(tq, sql.Identifier(KEY_B)))
    pair.target_sql(sql.SQL("INSERT INTO {} VALUES ('it''s', 0, 'new')").format(tq))
    name = quoted(HOSTILE_SCHEMA, HOSTILE_TABLE)
    r = ok(pair.run([name, quoted(HOSTILE_SCHEMA, LONG_TABLE)]))
    shown = '%s.%s' % (HOSTILE_SCHEMA, HOSTILE_TABLE)
    t = r['tables'][shown]
    assert t['key'] == [KEY_A, KEY_B]
    assert t['differences'] == {'missing': [['a b', 1002]], 'extra': [["it's", 0]],
                                'changed': [['Ünï; "q"', 1001]]}
    assert r['tables']['%s.%s' % (HOSTILE_SCHEMA, LONG_TABLE)]['equal'] is True
    assert r['differing_tables'] == [shown]


def test_row_filter_and_column_subset(pair):
    pair.source_sql('''
        CREATE TABLE public.customers (id integer PRIMARY KEY, name text, country char(2), secret text);
        INSERT INTO public.customers SELECT g, 'c' || g, CASE WHEN g % 3 = 0 THEN 'DE' ELSE 'FR' END, 's'
          FROM generate_series(1, 3000) g;''')
    # the subscriber got only German customers and no secret column
    pair.target_sql('''
        CREATE TABLE public.customers (country char(2), id integer PRIMARY KEY, name text, local_note text);
        INSERT INTO public.customers SELECT 'DE', g, 'c' || g, 'n' FROM generate_series(3, 3000, 3) g;''')
    spec = {'name': 'public.customers', 'columns': ['name', 'country'], 'where': "country = 'DE'"}
    r = ok(pair.run([spec]))
    t = r['tables']['public.customers']
    assert r['equal'] is True and t['columns'] == ['id', 'name', 'country']
    assert (t['source_rows'], t['target_rows']) == (1000, 1000)
    # a row that does not match the filter on the target is extra when the target is not filtered
    pair.target_sql("INSERT INTO public.customers VALUES ('FR', 1, 'c1', 'n')")
    pair.target_sql("UPDATE public.customers SET name = 'changed' WHERE id = 300")
    r = ok(pair.run([dict(spec, target_where='')]))
    t = r['tables']['public.customers']
    assert t['differences'] == {'missing': [], 'extra': [1], 'changed': [300]}
    assert (t['source_rows'], t['target_rows']) == (1000, 1001)
    # without a column list the source's secret column is missing on the target
    r = pair.run(['public.customers'])
    assert r.get('failed') and 'secret missing on the target' in r['msg']


def test_cap_counts_beyond_it_and_is_shared_by_tables(pair):
    make_orders(pair, 3000)
    pair.both('CREATE TABLE public.small (id int PRIMARY KEY, v int); '
              'INSERT INTO public.small SELECT g, g FROM generate_series(1, 100) g')
    pair.target_sql('UPDATE public.orders SET customer = customer || \'!\' WHERE id % 50 = 0')
    pair.target_sql('DELETE FROM public.small WHERE id > 90')
    r = ok(pair.run(['orders', 'small'], max_differences=10))
    t = r['tables']['public.orders']
    assert t['counts']['changed'] == 60 and t['truncated'] is True
    assert t['differences']['changed'] == list(range(50, 501, 50))
    s = r['tables']['public.small']
    assert s['counts']['missing'] == 10 and s['differences']['missing'] == [] and s['truncated']
    assert r['differing_tables'] == ['public.orders', 'public.small']


def test_errors_name_the_problem(pair):
    pair.source_sql('CREATE TABLE public.nokey (a int, b text)')
    pair.target_sql('CREATE TABLE public.nokey (a int, b text)')
    r = pair.run(['public.nokey'])
    assert r.get('failed') and 'no primary key or replica identity index' in r['msg']
    r = pair.run(['public.absent'])
    assert r.get('failed') and 'public.absent does not exist on the source and the target' in r['msg']
    r = pair.run([{'name': 'public.nokey', 'key': ['a']}])
    assert r.get('failed') and 'may be NULL' in r['msg']
    r = pair.run([{'name': 'public.nokey', 'key': ['a'], 'where': 'a > 0); DROP TABLE x; --'}])
    assert r.get('failed') and 'closes a parenthesis' in r['msg']
    assert SUPERPASS not in r['_run'].output


def test_collation_difference_and_consistent_retries(pair):
    pair.source_sql('CREATE TABLE public.words (w text COLLATE "en-x-icu" PRIMARY KEY, n int)')
    pair.target_sql('CREATE TABLE public.words (w text COLLATE "C" PRIMARY KEY, n int)')
    words = "SELECT chr(65 + g % 26) || chr(97 + (g / 26) % 26) || g, g FROM generate_series(1, 2000) g"
    pair.both('INSERT INTO public.words ' + words)
    pair.both("INSERT INTO public.words VALUES ('a', 1), ('B', 2), ('b', 3)")
    pair.target_sql("UPDATE public.words SET n = -1 WHERE w = 'B'")
    # the change "in flight" arrives on the target while the module waits to retry: its
    # consistent snapshot stays open (idle in transaction) during retry_delay
    waiting = '''SELECT count(*) FROM pg_stat_activity WHERE datname = %s
                  AND application_name = 'ansible-tablesync' AND state = 'idle in transaction'
                  AND now() - state_change > interval '1 second' '''

    def arrive():
        deadline = time.time() + 120
        while time.time() < deadline and not pair.dst.query(waiting, (pair.db,))[0][0]:
            time.sleep(0.2)
        pair.target_sql("UPDATE public.words SET n = 2 WHERE w = 'B'")
    thread = threading.Thread(target=arrive)
    thread.start()
    try:
        r = ok(pair.run(['words'], consistent=True, retries=2, retry_delay=5))
    finally:
        thread.join()
    t = r['tables']['public.words']
    assert r['equal'] is True and t['attempts'] == 2
    assert 'ranges use the "C" order' in t['notes'][0]
    pair.target_sql("DELETE FROM public.words WHERE w IN ('a', 'Zz')")
    r = ok(pair.run(['words']))
    assert r['tables']['public.words']['differences']['missing'] == ['a']


def test_big_table_in_bounded_time(pair, capsys):
    rows = int(os.environ.get('TABLESYNC_COMPARE_ROWS', '200000'))
    started = time.time()
    make_orders(pair, rows)
    built = time.time() - started
    r = ok(pair.run(['orders']))
    t = r['tables']['public.orders']
    assert r['equal'] is True and t['source_rows'] == rows
    equal_seconds = t['seconds']
    step = rows // 10
    keys = list(range(step // 2, rows, step))
    pair.target_sql('UPDATE public.orders SET ratio = -1 WHERE id = ANY(%s)', (keys,))
    r = ok(pair.run(['orders']))
    t = r['tables']['public.orders']
    assert t['differences']['changed'] == keys and t['counts']['changed'] == len(keys)
    scan = time.time()
    pair.source_sql('SELECT count(*), sum(length(o::text)) FROM public.orders o')
    scan = time.time() - scan
    with capsys.disabled():
        print('\npg_table_compare %d rows (built in %.1fs): equal %.2fs, %d differences %.2fs '
              '(%d queries, %d ranges); one full read of the source %.2fs'
              % (rows, built, equal_seconds, len(keys), t['seconds'], t['query_count'],
                 t['ranges_checked'], scan))
    assert equal_seconds < max(60, rows / 20000.0)
