"""Initial copy of a large table: a new subscription versus a plain COPY pipe.

Starts two throw-away PostgreSQL clusters (tests/integration/pgcluster.py: loopback, fsync off,
statement logging switched off here) and fills one table on the source: ``orders`` with a
primary key, two secondary indexes (``customer_id``: random order, ``created``: ascending) and
columns of a few types. Each case then brings the same table, with the same three indexes, into a
fresh target database and is timed until the target has all rows and all indexes:

  pipe, indexes first   ``psql -c 'COPY orders TO STDOUT' | psql -c 'COPY orders FROM STDIN'``
                        into a table that already has its three indexes
  pipe, indexes after   the same pipe into a table without any index, then the primary key and
                        the two indexes built (the physical limit: the fastest plain way to the
                        same end state; the ratios are to this case)
  pipe, binary          the same in COPY's binary format (for reference: the collection's
                        snapshot copy uses it when both sides have the same types)
  native subscription   the target table created by hand with its three indexes, then a plain
                        CREATE SUBSCRIPTION, until every table is ready (srsubstate 'r')
  collection            one ansible-playbook run of the collection's modules, as the
                        logical_subscriber role runs them with initial_copy=snapshot:
                        pg_target_tables (creates the table with its primary key; the
                        secondary indexes are deferred because the table is new),
                        pg_subscription with initial_copy=snapshot (slot with an exported
                        snapshot, COPY in it with the primary key dropped and rebuilt in the
                        same transaction, subscription with copy_data=false; wait_for_sync),
                        pg_target_tables again (builds the deferred indexes)
  collection, tablesync the same with initial_copy=tablesync (PostgreSQL's table
                        synchronisation worker copies, the primary key maintained row by row)
  collection, no defer  initial_copy=tablesync and ``defer_indexes: false`` (indexes created
                        with the table)

The row counts and a checksum are compared with the source after every case. Cases are run
round-robin (``--repeat``); the median is reported.

    .venv/bin/python benchmarks/copy_bench.py                   # 10,000,000 rows
    .venv/bin/python benchmarks/copy_bench.py --rows 1000000 --cases pipe_after,native
    .venv/bin/python benchmarks/copy_bench.py --quick --json /tmp/copy.json
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from common import (  # noqa: E402 pylint: disable=import-error
    add_standard_arguments, chart, load_average, machine_info, make_result, print_table,
    quiet, ratio, setup_paths, write_json)

setup_paths()

from pgcluster import Cluster, cleanup, make_base  # noqa: E402 pylint: disable=import-error,wrong-import-position
from runner import run_tasks  # noqa: E402 pylint: disable=import-error,wrong-import-position

SOURCE_DB = 'shop'
PUBLICATION = 'bench_orders'
TABLE_DDL = '''CREATE TABLE orders (
    id bigint NOT NULL,
    customer_id integer NOT NULL,
    created timestamptz NOT NULL,
    amount numeric(12,2) NOT NULL,
    status text NOT NULL,
    note text)'''
PK_DDL = 'ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id)'
INDEX_DDL = ('CREATE INDEX orders_customer_idx ON orders (customer_id)',
             'CREATE INDEX orders_created_idx ON orders (created)')
FILL = '''INSERT INTO orders
SELECT g, (hashint4(g::int) & 1048575) + 1,
       timestamptz '2020-01-01' + g * interval '3 seconds',
       round((random() * 1000)::numeric, 2),
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g %% 4],
       CASE WHEN g %% 5 = 0 THEN NULL ELSE 'order ' || g || ' placed by the web shop' END
  FROM generate_series(1, %s) g'''
CHECKSUM = ("SELECT count(*), sum(id), sum(customer_id), sum(amount), "
            "sum(length(coalesce(note, ''))) FROM orders")
INDEXES = ("SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_index i "
           "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'orders'::regclass "
           "AND i.indisvalid")
EXPECTED_INDEXES = ['orders_created_idx', 'orders_customer_idx', 'orders_pkey']
# Bulk-load settings of both clusters (applied with a restart); everything else is the
# default of the server, wal_retrieve_retry_interval included (pgcluster lowers it for tests).
BENCH_SETTINGS = (('shared_buffers', '1GB'), ('max_wal_size', '4GB'),
                  ('checkpoint_timeout', '15min'))

CASES = (
    ('pipe_first', 'pipe, indexes first'),
    ('pipe_after', 'pipe, indexes after (baseline)'),
    ('pipe_binary', 'pipe in binary format, indexes after'),
    ('native', 'native subscription'),
    ('collection', 'collection (initial_copy=snapshot)'),
    ('collection_tablesync', 'collection (initial_copy=tablesync, deferred indexes)'),
    ('collection_nodefer', 'collection (tablesync, defer_indexes off)'),
)
BASELINE = 'pipe_after'
GOAL_ROWS = 10000000


def psql(cluster, db, command):
    return [os.path.join(cluster.bindir, 'psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
            '-h', cluster.host, '-p', str(cluster.port), '-U', cluster.user, '-d', db,
            '-c', command]


def env_for(cluster):
    env = dict(os.environ)
    env['PGPASSWORD'] = cluster.password
    return env


def pipe(source, target, db, binary=False):
    """COPY TO STDOUT | COPY FROM STDIN between the two servers (text format, as psql does;
    or binary)."""
    fmt = ' (FORMAT binary)' if binary else ''
    producer = subprocess.Popen(psql(source, SOURCE_DB, 'COPY orders TO STDOUT' + fmt),
                                stdout=subprocess.PIPE, env=env_for(source))
    consumer = subprocess.run(psql(target, db, 'COPY orders FROM STDIN' + fmt), stdin=producer.stdout,
                              env=env_for(target), check=True)
    producer.stdout.close()
    if producer.wait() != 0 or consumer.returncode != 0:
        raise RuntimeError('COPY pipe failed')


def conninfo(source):
    return 'host=%s port=%d dbname=%s user=%s password=%s' % (
        source.host, source.port, SOURCE_DB, source.user, source.password)


def table_states(target, db):
    return [r[0] for r in target.query('SELECT srsubstate FROM pg_subscription_rel', dbname=db)]


def fresh_target(target, db):
    drop_target(target, db)
    target.execute('CREATE DATABASE %s' % db)


def drop_target(target, db):
    for (name,) in target.query('SELECT s.subname FROM pg_subscription s JOIN pg_database d '
                                'ON d.oid = s.subdbid WHERE d.datname = %s', (db,)):
        target.execute('DROP SUBSCRIPTION %s' % name, dbname=db)
    target.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % db)


def run_pipe_first(source, target, db):
    target.execute(TABLE_DDL, dbname=db)
    for ddl in (PK_DDL,) + INDEX_DDL:
        target.execute(ddl, dbname=db)
    start = time.perf_counter()
    pipe(source, target, db)
    return {'total': time.perf_counter() - start}


def run_pipe_after(source, target, db, binary=False):
    target.execute(TABLE_DDL, dbname=db)
    start = time.perf_counter()
    pipe(source, target, db, binary)
    copied = time.perf_counter() - start
    for ddl in (PK_DDL,) + INDEX_DDL:
        target.execute(ddl, dbname=db)
    return {'total': time.perf_counter() - start, 'copied': copied}


def run_native(source, target, db):
    target.execute(TABLE_DDL, dbname=db)
    for ddl in (PK_DDL,) + INDEX_DDL:
        target.execute(ddl, dbname=db)
    start = time.perf_counter()
    target.execute("CREATE SUBSCRIPTION bench_native CONNECTION '%s' PUBLICATION %s "
                   "WITH (slot_name = 'bench_native_%s')" % (conninfo(source), PUBLICATION, db),
                   dbname=db)
    copied = None
    while True:
        states = table_states(target, db)
        now = time.perf_counter() - start
        if copied is None and states and all(s in 'sr' for s in states):
            copied = now
        if states and all(s == 'r' for s in states):
            return {'total': now, 'copied': copied}
        if now > 7200:
            raise RuntimeError('native subscription did not become ready: %s' % states)
        time.sleep(0.2)


def collection_tasks(source, target, db, defer, method):
    login = dict(login_host=target.host, login_port=target.port, login_user=target.user,
                 login_password=target.password, login_db=db)
    publisher = dict(host=source.host, port=source.port, dbname=SOURCE_DB, user=source.user,
                     password=source.password)
    tables = dict(login, source=publisher, tables=['public.orders'], indexes=True)
    if not defer:
        tables['defer_indexes'] = False
    module_tables = 'tablesync.postgresql.pg_target_tables'
    tasks = [
        {'name': 'tables', module_tables: tables},
        {'name': 'subscription', 'tablesync.postgresql.pg_subscription': dict(
            login, name='bench_collection', publications=[PUBLICATION], publisher=publisher,
            slot_name='bench_collection_%s' % db, wait_for_sync=True, wait_timeout=7200,
            initial_copy=method)},
    ]
    if defer:
        tasks.append({'name': 'deferred indexes', module_tables: tables})
    return tasks


def run_collection(source, target, db, defer=True, method='snapshot'):
    tasks = collection_tasks(source, target, db, defer, method)
    start = time.perf_counter()
    run = run_tasks(tasks, timeout=7200)
    total = time.perf_counter() - start
    failed = [r for r in run.results if r.get('failed')]
    if run.rc != 0 or failed or len(run.results) != len(tasks):
        raise RuntimeError('collection playbook failed:\n%s\n%s' % (run.stdout[-4000:], run.stderr[-4000:]))
    return {'total': total}


RUNNERS = {
    'pipe_first': run_pipe_first,
    'pipe_after': run_pipe_after,
    'pipe_binary': lambda s, t, db: run_pipe_after(s, t, db, binary=True),
    'native': run_native,
    'collection': run_collection,
    'collection_tablesync': lambda s, t, db: run_collection(s, t, db, method='tablesync'),
    'collection_nodefer': lambda s, t, db: run_collection(s, t, db, defer=False,
                                                          method='tablesync'),
}


def prepare_source(source, rows):
    source.execute('CREATE DATABASE %s' % SOURCE_DB)
    source.execute(TABLE_DDL, dbname=SOURCE_DB)
    source.execute(FILL, (rows,), dbname=SOURCE_DB)
    for ddl in (PK_DDL,) + INDEX_DDL:
        source.execute(ddl, dbname=SOURCE_DB)
    source.execute('VACUUM ANALYZE orders', dbname=SOURCE_DB)
    source.execute('CREATE PUBLICATION %s FOR TABLE orders' % PUBLICATION, dbname=SOURCE_DB)
    size = source.query("SELECT pg_size_pretty(pg_table_size('orders')), "
                        "pg_size_pretty(pg_indexes_size('orders'))", dbname=SOURCE_DB)[0]
    return source.query(CHECKSUM, dbname=SOURCE_DB)[0], size


def start_clusters(base):
    clusters = []
    for name in ('source', 'target'):
        cluster = Cluster(name, base).start()
        clusters.append(cluster)
        quiet(cluster, BENCH_SETTINGS)
        cluster.execute('ALTER SYSTEM RESET wal_retrieve_retry_interval')
        cluster.restart()
    return clusters


def measure(source, target, cases, expected, repeat):
    times = dict((key, []) for key in cases)
    extra = dict((key, []) for key in cases)
    for round_no in range(1, repeat + 1):
        for number, key in enumerate(cases):
            db = 'target_%d_%d' % (round_no, number)
            fresh_target(target, db)
            target.execute('CHECKPOINT')
            source.execute('CHECKPOINT')
            result = RUNNERS[key](source, target, db)
            got = target.query(CHECKSUM, dbname=db)[0]
            indexes = target.query(INDEXES, dbname=db)[0][0]
            if got != expected or sorted(indexes or []) != EXPECTED_INDEXES:
                raise RuntimeError('%s: target differs from the source: %r / %r vs %r'
                                   % (key, got, indexes, expected))
            drop_target(target, db)
            times[key].append(result['total'])
            extra[key].append(result.get('copied'))
            print('  round %d %-20s %8.2fs%s' % (
                round_no, key, result['total'],
                '' if result.get('copied') is None else ' (rows copied after %.2fs)' % result['copied']),
                file=sys.stderr)
    return times, extra


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    add_standard_arguments(parser)
    parser.add_argument('--rows', type=int, default=None, help='rows (default 10,000,000; '
                        '100,000 with --quick)')
    parser.add_argument('--repeat', type=int, default=1, help='measured rounds (median)')
    parser.add_argument('--cases', default=','.join(k for k, _l in CASES),
                        help='comma-separated subset of: %s' % ', '.join(k for k, _l in CASES))
    args = parser.parse_args()
    rows = args.rows or (100000 if args.quick else 10000000)
    cases = [c.strip() for c in args.cases.split(',') if c.strip()]
    unknown = [c for c in cases if c not in RUNNERS]
    if unknown or BASELINE not in cases:
        parser.error('unknown cases %s (the baseline %s must be included)' % (unknown, BASELINE))
    base = make_base()
    clusters = []
    try:
        print('starting clusters and loading %d rows...' % rows, file=sys.stderr)
        clusters = start_clusters(base)
        source, target = clusters
        expected, size = prepare_source(source, rows)
        load_before = load_average()
        times, extra = measure(source, target, cases, expected, args.repeat)
        load_after = load_average()
        version = source.query('SHOW server_version')[0][0]
    finally:
        for cluster in clusters:
            cluster.stop('immediate')
        cleanup(base)

    labels = dict(CASES)
    medians = dict((k, statistics.median(v)) for k, v in times.items())
    baseline = medians[BASELINE]
    rows_out = []
    for key in cases:
        copied = [c for c in extra[key] if c is not None]
        rows_out.append([labels[key], round(medians[key], 2),
                         round(statistics.median(copied), 2) if copied else None,
                         round(ratio(medians[key], baseline), 2)])
    # The goal is about a large table: below it the fixed cost of ansible-playbook and three
    # module runs (seconds) dominates, and the result is reported but not judged.
    goal_met = None
    if 'collection' in cases and rows >= GOAL_ROWS:
        goal_met = ratio(medians['collection'], baseline) <= 1.2
    info = machine_info()
    result = make_result(
        'copy', 'Initial copy of %s rows: subscription vs COPY pipe' % format(rows, ','),
        'Time until a fresh target database has every row of `orders` (%s of table, %s of '
        'indexes on the source) and its primary key and two secondary indexes. Baseline: '
        '`COPY TO STDOUT | COPY FROM STDIN` through psql into an index-less table, then the three '
        'indexes built (the physical limit). Each "collection" case is one ansible-playbook run '
        'of pg_target_tables, pg_subscription (wait_for_sync) and pg_target_tables again, '
        'ansible start-up included; "collection (initial_copy=snapshot)" copies in the '
        'snapshot of the slot it creates, with the primary key rebuilt after the rows.' % size,
        ['case', 'seconds (median)', 'rows copied after (s)', 'ratio to baseline'], rows_out,
        goal='collection <= 1.2x the COPY pipe with indexes built after, at %s rows (judged '
             'only at that size: the fixed Ansible cost dominates small runs)' % format(GOAL_ROWS, ','),
        goal_met=goal_met,
        charts=[chart('copy.png', 'Initial copy of %s rows' % format(rows, ','),
                      [labels[k] for k in cases],
                      {'ratio to baseline': [ratio(medians[k], baseline) for k in cases]})],
        notes=['PostgreSQL %s, both clusters on this machine over 127.0.0.1 (TCP); %s, %s cores, '
               '%s RAM; %s' % (version, info['cpu'], info['cores'], info['ram'], info['date']),
               'cluster settings: fsync=off, synchronous_commit=off, full_page_writes=off, '
               'shared_buffers=1GB, max_wal_size=4GB, other settings (maintenance_work_mem, '
               'wal_retrieve_retry_interval, max_parallel_maintenance_workers) at their defaults',
               'load average (1/5/15 min) before: %s, after: %s; %d round(s)'
               % (load_before, load_after, args.repeat)])
    print_table(result)
    write_json(args.json, result)


if __name__ == '__main__':
    main()
