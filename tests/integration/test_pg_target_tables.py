"""pg_target_tables: the source is the ``publisher`` cluster, the target the ``subscriber``.

Every test has its own pair of databases. The last test proves that the created tables really
receive rows by logical replication (plain-SQL publication and subscription, dropped at the end).
"""
import time
from decimal import Decimal

import pytest
from psycopg2 import sql

from helpers import HOSTILE_SCHEMA, HOSTILE_TABLE, DatabasePair, quoted
from pgcluster import SUPERPASS, wait_for
from runner import run_module

MODULE = 'tablesync.postgresql.pg_target_tables'

LONG_SCHEMA = 's' * 63
LONG_TABLE = 'é' * 31 + 'x'  # 63 bytes


class Pair(DatabasePair):
    """A fresh source database on the publisher and target database on the subscriber."""

    def __init__(self, publisher, subscriber):
        super(Pair, self).__init__(publisher, subscriber, 'tt')

    def args(self, tables, **kw):
        return self.module_args(tables=tables, **kw)

    def run(self, tables, check=False, diff=False, **kw):
        return run_module(MODULE, self.args(tables, **kw), check=check, diff=diff)

    def target_tables(self):
        return sorted(self.target_sql(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%%'"))


@pytest.fixture
def pair(publisher, subscriber):
    p = Pair(publisher, subscriber)
    yield p
    p.drop()


COLUMNS_SQL = '''
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
       CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation::text END,
       a.attgenerated
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
'''

PK_SQL = '''
SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_constraint c
 CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
 WHERE c.conrelid = %s::regclass AND c.contype = 'p'
'''


def definition(query_fn, schema, table):
    """Columns and primary key of a table, read with query_fn (a cluster's query in the pair's db)."""
    name = quoted(schema, table)  # ::regclass input spelling
    return query_fn(COLUMNS_SQL, (name,)), query_fn(PK_SQL, (name,))


SOURCE_DDL = '''
CREATE SCHEMA {hs};
CREATE TABLE {ht} (
    id bigint GENERATED ALWAYS AS IDENTITY,
    "Line;No" integer NOT NULL,
    amount numeric(10,2) NOT NULL,
    created timestamptz DEFAULT now(),
    doc jsonb,
    raw bytea,
    tags text[],
    scores integer[],
    code varchar(12),
    label text COLLATE "C",
    double_amount numeric GENERATED ALWAYS AS (amount * 2) STORED,
    PRIMARY KEY (id, "Line;No"));
CREATE SCHEMA {ls};
CREATE TABLE {lt} ({lc} integer PRIMARY KEY, "MixedCase" text);
CREATE TABLE public.customers (id integer PRIMARY KEY, name text NOT NULL, country char(2),
                               secret text, note varchar(200));
CREATE TABLE public.events (id bigint NOT NULL, at date NOT NULL, payload jsonb,
                            PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.events_2024 PARTITION OF public.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.keyless (a integer NOT NULL, b text NOT NULL, c text);
CREATE UNIQUE INDEX keyless_ab ON public.keyless (a, b);
ALTER TABLE public.keyless REPLICA IDENTITY USING INDEX keyless_ab;
'''


def create_source_tables(pair):
    pair.source_sql(sql.SQL(SOURCE_DDL).format(
        hs=sql.Identifier(HOSTILE_SCHEMA), ht=sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE),
        ls=sql.Identifier(LONG_SCHEMA), lt=sql.Identifier(LONG_SCHEMA, LONG_TABLE),
        lc=sql.Identifier('c' * 63)))


ALL_TABLES = [quoted(HOSTILE_SCHEMA, HOSTILE_TABLE), quoted(LONG_SCHEMA, LONG_TABLE),
              'public.customers', 'events', 'public.keyless']


def test_creates_missing_tables_with_hostile_names_and_many_types(pair):
    create_source_tables(pair)
    r = pair.run(ALL_TABLES, diff=True)
    assert not r.get('failed'), r
    assert r['changed'] is True
    assert r['created'] == ['%s.%s' % (HOSTILE_SCHEMA, HOSTILE_TABLE),
                            '%s.%s' % (LONG_SCHEMA, LONG_TABLE),
                            'public.customers', 'public.events', 'public.keyless']
    assert r['differences'] == {}
    assert r['diff']['before'] == {'tables': []}
    assert sorted(r['diff']['after']['tables']) == sorted(r['created'])
    # the target's definitions equal the source's: names, types, NOT NULL, collation,
    # generation and primary key columns
    for schema, table in [(HOSTILE_SCHEMA, HOSTILE_TABLE), (LONG_SCHEMA, LONG_TABLE),
                          ('public', 'customers'), ('public', 'events'), ('public', 'keyless')]:
        assert definition(pair.target_sql, schema, table) == definition(pair.source_sql, schema, table)
    target_columns = definition(pair.target_sql, HOSTILE_SCHEMA, HOSTILE_TABLE)[0]
    assert [c[1] for c in target_columns] == [
        'bigint', 'integer', 'numeric(10,2)', 'timestamp with time zone', 'jsonb', 'bytea',
        'text[]', 'integer[]', 'character varying(12)', 'text', 'numeric']
    assert target_columns[9][3] == '"C"' and target_columns[10][4] == 's'
    # partitioned source -> plain table; replica identity index copied
    assert pair.target_sql("SELECT relkind, relreplident FROM pg_class WHERE oid = 'public.events'::regclass") == [('r', 'd')]
    assert pair.target_sql(
        "SELECT c.relreplident, i.indexrelid::regclass::text FROM pg_class c JOIN pg_index i"
        " ON i.indrelid = c.oid AND i.indisreplident WHERE c.oid = 'public.keyless'::regclass") == \
        [('i', 'keyless_ab')]
    # passwords never in the output
    assert SUPERPASS not in r['_run'].output

    again = pair.run(ALL_TABLES)
    assert not again.get('failed'), again
    assert again['changed'] is False
    assert again['queries'] == [] and again['created'] == [] and again['differences'] == {}


def test_column_subset(pair):
    create_source_tables(pair)
    tables = [{'name': 'public.customers', 'columns': ['name', 'id', 'country']}]
    r = pair.run(tables)
    assert not r.get('failed'), r
    assert pair.target_sql(COLUMNS_SQL, ('public.customers',)) == [
        ('id', 'integer', True, None, ''), ('name', 'text', True, None, ''),
        ('country', 'character(2)', False, None, '')]
    again = pair.run(tables)
    assert again['changed'] is False and again['queries'] == []
    # the other columns would be extra to the target when the whole table is asked for
    full = pair.run(['public.customers'])
    assert full.get('failed')
    assert full['differences'] == {'public.customers': {'missing': ['secret', 'note']}}


def test_differing_columns_fail_naming_them_and_nothing_is_created(pair):
    create_source_tables(pair)
    pair.target_sql('CREATE TABLE public.customers (id bigint PRIMARY KEY, name text, legacy int)')
    r = pair.run(ALL_TABLES)
    assert r.get('failed')
    assert r['differences'] == {'public.customers': {
        'missing': ['country', 'secret', 'note'], 'extra': ['legacy'],
        'type_differs': [{'column': 'id', 'source': 'integer', 'target': 'bigint'}]}}
    assert ('public.customers: missing on target: country, secret, note; extra on target: '
            'legacy; type differs: id (source integer, target bigint)') in r['msg']
    assert pair.target_tables() == [('public', 'customers')]

    # with check_columns=false the differences are reported and the other tables created
    r = pair.run(ALL_TABLES, check_columns=False)
    assert not r.get('failed'), r
    assert 'public.customers' not in r['created'] and len(r['created']) == 4
    assert r['differences']['public.customers']['extra'] == ['legacy']


def test_check_mode_creates_nothing(pair):
    create_source_tables(pair)
    r = pair.run(ALL_TABLES, check=True)
    assert not r.get('failed'), r
    assert r['changed'] is True and len(r['created']) == 5
    assert any(q.startswith('CREATE TABLE "public"."customers"') for q in r['queries'])
    assert pair.target_tables() == []
    assert pair.target_sql('SELECT count(*) FROM pg_namespace WHERE nspname = %s', (HOSTILE_SCHEMA,)) == [(0,)]


def test_source_problems_named_all_at_once(pair):
    create_source_tables(pair)
    pair.source_sql('CREATE VIEW public.v AS SELECT 1 AS x')
    r = pair.run(['public.customers', 'nope.gone', 'public.v', 'Public.Customers',
                  {'name': 'public.customers2', 'columns': ['x']}])
    assert r.get('failed')
    assert 'Tables missing on the source: nope.gone, Public.Customers, public.customers2.' in r['msg']
    assert 'public.v on the source is a view, not a table' in r['msg']
    assert pair.target_tables() == []


def test_missing_type_on_target_fails_clearly(pair):
    pair.source_sql("CREATE TYPE public.mood AS ENUM ('ok', 'sad');"
                    " CREATE TABLE public.moods (id int PRIMARY KEY, m public.mood, ms public.mood[])")
    r = pair.run(['public.moods'])
    assert r.get('failed')
    assert 'Cannot create public.moods: types missing on the target: public.mood, public.mood[]' in r['msg']
    assert pair.target_tables() == []
    pair.target_sql("CREATE TYPE public.mood AS ENUM ('ok', 'sad')")
    r = pair.run(['public.moods'])
    assert not r.get('failed'), r
    assert r['created'] == ['public.moods']


def test_create_schemas_false(pair):
    create_source_tables(pair)
    r = pair.run(['public.customers', ALL_TABLES[0]], create_schemas=False)
    assert r.get('failed')
    assert 'Schemas missing on the target (create_schemas is false): %s' % HOSTILE_SCHEMA in r['msg']
    assert pair.target_tables() == []


def test_thousand_tables_in_one_call(pair):
    pair.source_sql('''
        CREATE SCHEMA bulk;
        DO $$ BEGIN
          FOR i IN 1..1000 LOOP
            EXECUTE format('CREATE TABLE bulk.%I (id bigint PRIMARY KEY, v text, n numeric(12,3))',
                           't' || i);
          END LOOP;
        END $$''')
    tables = ['bulk.t%d' % i for i in range(1, 1001)]
    started = time.time()
    r = pair.run(tables)
    first = time.time() - started
    assert not r.get('failed'), r.get('msg')
    assert len(r['created']) == 1000 and len(r['queries']) == 1001
    assert pair.target_sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'bulk'") == [(1000,)]
    started = time.time()
    again = pair.run(tables)
    second = time.time() - started
    assert again['changed'] is False and again['queries'] == []
    print('1,000 tables: create %.1fs, second run %.1fs' % (first, second))


def test_replication_into_created_tables(pair):
    create_source_tables(pair)
    r = pair.run(ALL_TABLES)
    assert not r.get('failed'), r
    hostile = sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)
    long_name = sql.Identifier(LONG_SCHEMA, LONG_TABLE)
    pub = 'tt_pub'
    pair.source_sql(sql.SQL(
        'CREATE PUBLICATION {} FOR TABLE {}, {}, public.customers, public.events, public.keyless'
        ' WITH (publish_via_partition_root = true)').format(sql.Identifier(pub), hostile, long_name))
    conninfo = "host=%s port=%d dbname=%s user=%s password='%s'" % (
        pair.src.host, pair.src.port, pair.db, pair.src.user, SUPERPASS)
    pair.target_sql(sql.SQL('CREATE SUBSCRIPTION tt_sub CONNECTION {} PUBLICATION {}').format(
        sql.Literal(conninfo), sql.Identifier(pub)))
    try:
        pair.source_sql(sql.SQL(
            '''INSERT INTO {} ("Line;No", amount, doc, raw, tags, scores, code, label)
               VALUES (1, 12.34, '{{"a": [1, 2]}}', '\\x00ff', ARRAY['x', 'y'], ARRAY[1, 2], 'abc', 'L');
               INSERT INTO {} VALUES (7, 'seven');
               INSERT INTO public.events VALUES (1, '2024-05-01', '{{}}');
               INSERT INTO public.keyless VALUES (1, 'b', 'c');''').format(hostile, long_name))
        wait_for(lambda: pair.target_sql(sql.SQL(
            'SELECT (SELECT count(*) FROM {}) + (SELECT count(*) FROM {})'
            ' + (SELECT count(*) FROM public.events) + (SELECT count(*) FROM public.keyless)').format(
                hostile, long_name))[0][0] == 4, timeout=60, what='rows replicated into the created tables')
        assert pair.target_sql(sql.SQL('SELECT amount, double_amount, doc, tags, code, label FROM {}').format(
            hostile)) == [(Decimal('12.34'), Decimal('24.68'),
                           {'a': [1, 2]}, ['x', 'y'], 'abc', 'L')]
        # updates and deletes apply through the copied keys
        pair.source_sql("UPDATE public.keyless SET c = 'updated'; DELETE FROM public.events")
        wait_for(lambda: pair.target_sql(
            "SELECT (SELECT c FROM public.keyless), (SELECT count(*) FROM public.events)") == [('updated', 0)],
            timeout=60, what='update and delete replicated')
    finally:
        pair.target_sql('DROP SUBSCRIPTION tt_sub')


def test_copied_generated_columns_need_an_18_target(pair):
    """generated_columns=copy (a set publishing its generated columns): a subscriber before 18
    would copy the table without them, so the module refuses, naming the version, and creates
    nothing. (The clusters here are older than 18.)"""
    pair.source_sql('CREATE TABLE public.priced (id int PRIMARY KEY, net numeric, '
                    'gross numeric GENERATED ALWAYS AS (net * 2) STORED)')
    version = pair.target_sql('SHOW server_version_num')[0][0]
    r = pair.run(['public.priced'], generated_columns='copy')
    if int(version) >= 180000:
        assert not r.get('failed'), r
        assert pair.target_sql(COLUMNS_SQL, ('public.priced',))[2][4] == ''
        return
    assert r.get('failed') and 'generated_columns=copy needs PostgreSQL 18 or later on the target' in r['msg'], r
    assert pair.target_tables() == []
    computed = pair.run(['public.priced'])
    assert not computed.get('failed'), computed
    assert pair.target_sql(COLUMNS_SQL, ('public.priced',))[2][4] == 's'
