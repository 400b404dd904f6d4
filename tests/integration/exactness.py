"""A seeded, randomized workload over tables with hard types, written from sessions with
different text-form settings, and an equality check that does not trust the collection.

``Workload(seed)`` makes the same statements for the same seed; the seed is printed by the
tests (and taken from ``TABLESYNC_SEED`` when set) so that any failure can be replayed.
Equality is checked independently of ``pg_table_compare``: every row of both sides as
``row::text`` under one fixed session, sorted, compared as multisets.
"""
import os
import random

HARD_TYPES_DDL = '''
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a integer, b text);
CREATE TABLE public.hard (
    k timestamptz PRIMARY KEY,
    j jsonb, js json, arr int[], arr2 text[], comp pair, dom posint, en mood,
    r int4range, mr int4multirange, b bytea, n numeric, f4 real, f8 double precision,
    d date, ts timestamp, tstz timestamptz, iv interval, m money, bv bit varying(20),
    tsv tsvector, x xml, u uuid, ip inet, cid cidr, mac macaddr, pt point, bx box,
    ci circle, pth path, t text, c char(3), vc varchar(10), bo boolean, tm time, tmz timetz,
    big text
);
CREATE TABLE public.bag (v text, n numeric, j jsonb, f8 double precision);
CREATE TABLE public.part (id int, region text, payload jsonb, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE public.part_eu PARTITION OF public.part FOR VALUES IN ('eu');
CREATE TABLE public.part_us PARTITION OF public.part FOR VALUES IN ('us');
'''

TABLES = {'public.hard': 'k', 'public.bag': None, 'public.part': 'id, region'}

# Values as SQL literals (each a whole expression); NULL included for every column.
VALUES = {
    'j': ["'null'::jsonb", "'{\"a\": [1, null, \"x\"]}'::jsonb", "'\"s\"'::jsonb", "'1.50'::jsonb",
          "'[]'::jsonb", 'NULL'],
    'js': ["'{\"b\":1,   \"a\" : [1,2]}'::json", "'null'::json", "' [ ] '::json", 'NULL'],
    'arr': ["'[0:2]={1,2,3}'::int[]", "'{1,NULL,3}'::int[]", "'{}'::int[]", "'[-5:-4]={7,8}'::int[]",
            'NULL'],
    'arr2': ["'{{a,b},{c,NULL}}'::text[]", "'{\"x,y\",\"q\\\"z\"}'::text[]", 'NULL'],
    'comp': ["ROW(1, 'a,b')::public.pair", "ROW(NULL, NULL)::public.pair", "ROW(2, '')::public.pair", 'NULL'],
    'dom': ['1', '2147483647', 'NULL'],
    'en': ["'sad'", "'happy'", 'NULL'],
    'r': ["'[1,5)'::int4range", "'empty'::int4range", "'(,3]'::int4range", 'NULL'],
    'mr': ["'{[1,2), [5,9)}'::int4multirange", "'{}'::int4multirange", 'NULL'],
    'b': ["'\\x00ff5c27'::bytea", "''::bytea", 'NULL'],
    'n': ["'NaN'::numeric", "'Infinity'::numeric", "'-Infinity'::numeric", "'1.000'::numeric",
          "'-0.0000001'::numeric", "'123456789012345678901234567890.123456789'::numeric", 'NULL'],
    'f4': ["'-0'::real", "'3.4028235e38'::real", "'1.17549435e-38'::real", "'NaN'::real",
           "'0.1'::real", 'NULL'],
    'f8': ["'-0'::float8", "'1.7976931348623157e308'::float8", "'5e-324'::float8",
           "'-Infinity'::float8", "'0.1'::float8", "'1e100'::float8", 'NULL'],
    'd': ["'infinity'::date", "'-infinity'::date", "'4713-01-01 BC'::date", "'2024-02-29'::date",
          'NULL'],
    'ts': ["'infinity'::timestamp", "'1999-12-31 23:59:59.999999'::timestamp", 'NULL'],
    'tstz': ["'-infinity'::timestamptz", "'2024-03-31 02:30:00+02'::timestamptz",
             "'1883-11-18 12:00:00 America/New_York'::timestamptz", 'NULL'],
    'iv': ["'1 year -2 mons 3 days -04:05:06.000007'::interval", "'-1 day +1 hour'::interval",
           "'P1Y2M3DT4H5M6S'::interval", 'NULL'],
    'm': ["'1234.56'::money", "'-0.01'::money", 'NULL'],
    'bv': ["B'101'", "B''", 'NULL'],
    'tsv': ["'a:1A fat:2B,4C cat:5D'::tsvector", "''::tsvector", 'NULL'],
    'x': ["'<a b=\"1\">t&amp;x</a>'::xml", "'just text'::xml", 'NULL'],
    'u': ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", 'NULL'],
    'ip': ["'192.168.1.5/24'::inet", "'::1'::inet", "'10.0.0.1'::inet", 'NULL'],
    'cid': ["'10.0.0.0/8'::cidr", "'2001:db8::/32'::cidr", 'NULL'],
    'mac': ["'08:00:2b:01:02:03'::macaddr", 'NULL'],
    'pt': ["'(1.5,-2)'::point", "'(0.1,1e300)'::point", 'NULL'],
    'bx': ["'((0,0),(1,1))'::box", 'NULL'],
    'ci': ["'<(0,0),2.5>'::circle", 'NULL'],
    'pth': ["'[(0,0),(1,1),(2,0)]'::path", "'((0,0),(1,1))'::path", 'NULL'],
    't': ["E'quote'' dq\" back\\\\ nl\\n tab\\t'", "''", "'NULL'", "'ünïcødé ✓'", 'NULL'],
    'c': ["'ab'", "'abc'", 'NULL'],
    'vc': ["'x '", "''", 'NULL'],
    'bo': ['true', 'false', 'NULL'],
    'tm': ["'24:00:00'::time", "'00:00:00.000001'::time", 'NULL'],
    'tmz': ["'12:00:00-13:59'::timetz", 'NULL'],
    'big': ["repeat('toast ', 5000)", "md5('x')", 'NULL'],
}
BAG_VALUES = {
    'v': ["'dup'", "'x'", "''", 'NULL'],
    'n': ["'1.0'::numeric", "'1.00'::numeric", "'NaN'::numeric", 'NULL'],
    'j': ["'null'::jsonb", "'{}'::jsonb", 'NULL'],
    'f8': ["'-0'::float8", "'0'::float8", 'NULL'],
}

# The writing sessions' settings: each changes a text form the capture must not depend on.
SESSIONS = [
    {},
    {'DateStyle': 'SQL, DMY', 'TimeZone': 'America/St_Johns', 'IntervalStyle': 'sql_standard',
     'extra_float_digits': '-15', 'bytea_output': 'escape', 'search_path': 'pg_catalog'},
    {'DateStyle': 'German', 'TimeZone': 'Asia/Kathmandu', 'IntervalStyle': 'iso_8601',
     'extra_float_digits': '0', 'search_path': 'public, pg_catalog'},
    {'DateStyle': 'Postgres, MDY', 'TimeZone': 'Pacific/Chatham',
     'IntervalStyle': 'postgres_verbose', 'extra_float_digits': '1'},
]

KEY_CHOICES = ["'2024-01-01 00:00:00+00'", "'2024-01-01 01:00:00+01'", "'1999-12-31 23:00:00-05'",
               "'2000-01-01 00:00:00+00'", "'infinity'", "'-infinity'",
               "'2010-06-01 12:34:56.789+05:45'", "'2030-01-01 00:00:00+14'"]


def seed_from_env():
    value = os.environ.get('TABLESYNC_SEED')
    return int(value) if value else random.randrange(1 << 30)


class Workload(object):
    """Batches of statements, each batch a transaction of one session."""

    def __init__(self, seed, keyless_exact_values=False):
        self.rnd = random.Random(seed)
        # without values that are equal but print differently (for REPLICA IDENTITY FULL)
        self.bag_values = dict(BAG_VALUES)
        if keyless_exact_values:
            self.bag_values.update(n=["'1.0'::numeric", "'NaN'::numeric", 'NULL'],
                                   f8=["'0'::float8", "'2.5'::float8", 'NULL'])

    def _row(self, key_literal):
        cols = ['k'] + sorted(VALUES)
        values = [key_literal + '::timestamptz'] + [self.rnd.choice(VALUES[c]) for c in sorted(VALUES)]
        return cols, values

    def hard_statement(self):
        rnd = self.rnd
        key = rnd.choice(KEY_CHOICES)
        kind = rnd.random()
        if kind < 0.45:
            cols, values = self._row(key)
            assignments = ', '.join('%s = EXCLUDED.%s' % (c, c) for c in cols[1:])
            return ('INSERT INTO public.hard (%s) VALUES (%s) ON CONFLICT (k) DO UPDATE SET %s'
                    % (', '.join(cols), ', '.join(values), assignments))
        if kind < 0.75:
            col = rnd.choice(sorted(VALUES))
            return ('UPDATE public.hard SET %s = %s WHERE k = %s::timestamptz'
                    % (col, rnd.choice(VALUES[col]), key))
        if kind < 0.85:  # key update (to a free key, or a no-op on conflict)
            new = rnd.choice(KEY_CHOICES)
            return ('UPDATE public.hard SET k = %s::timestamptz WHERE k = %s::timestamptz AND NOT '
                    'EXISTS (SELECT 1 FROM public.hard WHERE k = %s::timestamptz)' % (new, key, new))
        return 'DELETE FROM public.hard WHERE k = %s::timestamptz' % key

    def bag_statement(self):
        rnd = self.rnd
        kind = rnd.random()
        values = [rnd.choice(self.bag_values[c]) for c in ('v', 'n', 'j', 'f8')]
        if kind < 0.55:
            return 'INSERT INTO public.bag (v, n, j, f8) VALUES (%s)' % ', '.join(values)
        if kind < 0.8:  # one of possibly several identical rows
            return ("DELETE FROM public.bag WHERE ctid = (SELECT ctid FROM public.bag WHERE v IS "
                    "NOT DISTINCT FROM %s LIMIT 1)" % values[0])
        return ("UPDATE public.bag SET f8 = %s, j = %s WHERE ctid = (SELECT ctid FROM public.bag "
                "WHERE v IS NOT DISTINCT FROM %s LIMIT 1)" % (values[3], values[2], values[0]))

    def part_statement(self):
        rnd = self.rnd
        key = rnd.randrange(20)
        region = rnd.choice(['eu', 'us'])
        kind = rnd.random()
        if kind < 0.5:
            return ("INSERT INTO public.part VALUES (%d, '%s', %s) ON CONFLICT (id, region) DO UPDATE "
                    "SET payload = EXCLUDED.payload" % (key, region, rnd.choice(VALUES['j'])))
        if kind < 0.8:  # moves the row to the other partition when free
            other = 'us' if region == 'eu' else 'eu'
            return ("UPDATE public.part SET region = '%s' WHERE id = %d AND region = '%s' AND NOT "
                    "EXISTS (SELECT 1 FROM public.part WHERE id = %d AND region = '%s')"
                    % (other, key, region, key, other))
        return "DELETE FROM public.part WHERE id = %d AND region = '%s'" % (key, region)

    def transaction(self):
        """(settings, statements, commit): one transaction of one session."""
        rnd = self.rnd
        statements = []
        for _unused in range(rnd.randint(1, 6)):
            pick = rnd.random()
            statements.append(self.hard_statement() if pick < 0.5 else
                              self.bag_statement() if pick < 0.8 else self.part_statement())
        if rnd.random() < 0.02:
            statements.append(rnd.choice(['TRUNCATE public.bag', 'TRUNCATE public.part',
                                          'TRUNCATE public.hard']))
        return rnd.choice(SESSIONS), statements, rnd.random() > 0.1


def set_session(cur, settings):
    for name, value in sorted(settings.items()):
        cur.execute('SELECT pg_catalog.set_config(%s, %s, false)', (name, value))


def run_workload(conn_factory, seed, transactions, keyless_exact_values=False):
    """Runs the workload on the source; returns the number of committed transactions."""
    workload = Workload(seed, keyless_exact_values)
    committed = 0
    conns = [conn_factory() for _session in SESSIONS]
    try:
        for _unused in range(transactions):
            settings, statements, commit = workload.transaction()
            conn = conns[SESSIONS.index(settings)]
            with conn.cursor() as cur:
                cur.execute('RESET ALL')
                set_session(cur, settings)
                cur.execute('BEGIN')
                for statement in statements:
                    cur.execute(statement)
                cur.execute('COMMIT' if commit else 'ROLLBACK')
            committed += commit
    finally:
        for conn in conns:
            conn.close()
    return committed


def snapshot(cluster, db, table):
    """Sorted row::text of a table under a fixed session (the independent check)."""
    conn = cluster.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET extra_float_digits = 3;"
                        "SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'")
            cur.execute('SELECT pg_catalog.textin(pg_catalog.record_out(whole_row)) '
                        'FROM %s AS whole_row' % table)
            return sorted(r[0] for r in cur.fetchall())
    finally:
        conn.close()


def assert_equal(source, target, db, seed, tables=None, dbs=None, target_tables=None):
    """``target_tables``: {source table: the relation to read on the target} where it differs."""
    source_db, target_db = dbs or (db, db)
    for table in tables or TABLES:
        target_table = (target_tables or {}).get(table, table)
        want, have = snapshot(source, source_db, table), snapshot(target, target_db, target_table)
        if want != have:
            missing = [r for r in want if r not in have][:5]
            extra = [r for r in have if r not in want][:5]
            raise AssertionError('seed %d: %s differs from %s (source %d rows, target %d rows)\n'
                                 'only on the source: %r\nonly on the target: %r'
                                 % (seed, target_table, table, len(want), len(have), missing, extra))
