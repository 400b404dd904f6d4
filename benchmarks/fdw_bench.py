"""postgres_fdw throughput on this machine: default vs tuned fetch_size / batch_size.

Starts two throw-away PostgreSQL clusters (tests/integration/pgcluster.py): a *source* with the
table, and a *consumer* with a postgres_fdw server, user mapping and foreign table pointing at
it, plus a local copy of the table (the physical limit: the same work without the network
hop). Then measures, from the consumer:

- read: every row of the table flows through the consumer's executor
  (``SELECT count(*), sum(id) FROM t WHERE random() >= 0``: random() is volatile, so postgres_fdw
  cannot push the filter or the aggregate down and fetches every row, in ``fetch_size`` batches);
- insert: ``INSERT INTO t SELECT ... FROM generate_series(...)`` (row by row over the network
  with the default ``batch_size`` 1, in batches otherwise).

Configurations are measured round-robin (``--repeat`` rounds, median reported) so a noisy
neighbour slows all of them alike; ratios are to the local baseline of the same run.

    sudo .venv/bin/python benchmarks/fdw_bench.py                 # 1,000,000 / 100,000 rows
    sudo .venv/bin/python benchmarks/fdw_bench.py --read-rows 100000 --insert-rows 10000 --repeat 1
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

from psycopg2 import sql

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
sys.path.insert(0, os.path.join(ROOT, '.cache', 'collections'))

from pgcluster import Cluster, cleanup, make_base  # noqa: E402
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw_common import (  # noqa: E402
    alter_options_statement, option_changes)
from ansible_collections.tablesync.postgresql.plugins.module_utils.statements import bind  # noqa: E402

DB = 'bench'
SERVER = 'bench_source'
READ_FETCH_SIZES = (100, 1000, 10000, 50000)   # 100 is postgres_fdw's default
INSERT_BATCH_SIZES = (1, 100, 1000, 10000)     # 1 is postgres_fdw's default
# Settings for a fair measurement: no per-statement logging (the test clusters log everything),
# buffers large enough to hold the table. fsync stays off as in the test clusters.
BENCH_SETTINGS = (('log_statement', 'none'), ('log_min_messages', 'warning'),
                  ('shared_buffers', '512MB'))

TABLE_DDL = ('CREATE TABLE {} (id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, '
             'note text NOT NULL, created timestamptz NOT NULL)')
FILL = ("INSERT INTO {} SELECT g, g * 0.01, 'order number ' || g || ' for a customer', "
        "timestamptz '2024-01-01' + g * interval '1 second' FROM generate_series(1, %s) g")
INSERT = ("INSERT INTO {} SELECT g, g * 0.01, 'inserted row ' || g, now() "
          'FROM generate_series(1, %s) g')
READ = 'SELECT count(*), sum(id) FROM {} WHERE random() >= 0'


def ident(*parts):
    return sql.Identifier(*parts)


def run(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else None


def timed(conn, query, params=None):
    start = time.perf_counter()
    run(conn, query, params)
    return time.perf_counter() - start


def start_clusters(base):
    clusters = [Cluster('source', base).start(), Cluster('consumer', base).start()]
    for cluster in clusters:
        for name, value in BENCH_SETTINGS:
            cluster.execute(sql.SQL('ALTER SYSTEM SET {} = %s').format(ident(name)), (value,))
        cluster.restart()
        cluster.execute(sql.SQL('CREATE DATABASE {}').format(ident(DB)))
    return clusters


def prepare(source, consumer, read_rows):
    src = source.connect(DB)
    run(src, sql.SQL(TABLE_DDL).format(ident('big')))
    run(src, sql.SQL(TABLE_DDL).format(ident('inbox')))
    run(src, sql.SQL(FILL).format(ident('big')), (read_rows,))
    run(src, 'VACUUM ANALYZE big')
    dst = consumer.connect(DB)
    run(dst, sql.SQL(TABLE_DDL).format(ident('local_big')))
    run(dst, sql.SQL(TABLE_DDL).format(ident('local_inbox')))
    run(dst, sql.SQL(FILL).format(ident('local_big')), (read_rows,))
    run(dst, 'VACUUM ANALYZE local_big')
    run(dst, 'CREATE EXTENSION postgres_fdw')
    run(dst, sql.SQL('CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw OPTIONS '
                     '(host %s, port %s, dbname %s)').format(ident(SERVER)),
        (source.host, str(source.port), DB))
    run(dst, sql.SQL('CREATE USER MAPPING FOR CURRENT_USER SERVER {} OPTIONS '
                     '(user %s, password %s)').format(ident(SERVER)),
        (source.user, source.password))
    run(dst, sql.SQL('IMPORT FOREIGN SCHEMA public LIMIT TO (big, inbox) FROM SERVER {} '
                     'INTO public').format(ident(SERVER)))
    return src, dst


def set_server_options(dst, current, desired):
    """ALTER SERVER ... OPTIONS with the collection's own planner; returns the new options."""
    statement = alter_options_statement(sql.SQL('ALTER SERVER {}').format(ident(SERVER)),
                                        option_changes(current, desired))
    if statement is not None:
        run(dst, bind(statement))
    return dict(desired)


def base_options(source):
    return {'host': source.host, 'port': str(source.port), 'dbname': DB}


def read_cases():
    cases = [('read', 'local table', 'local_big', None)]
    for size in READ_FETCH_SIZES:
        label = 'fdw fetch_size %d%s' % (size, ' (default)' if size == 100 else '')
        cases.append(('read', label, 'big', {'fetch_size': str(size)}))
    return cases


def insert_cases():
    cases = [('insert', 'local table', 'local_inbox', None)]
    for size in INSERT_BATCH_SIZES:
        label = 'fdw batch_size %d%s' % (size, ' (default)' if size == 1 else '')
        cases.append(('insert', label, 'inbox', {'batch_size': str(size)}))
    return cases


def measure(src, dst, source, args):
    cases = read_cases() + insert_cases()
    times = dict((case[:2], []) for case in cases)
    options = base_options(source)
    for round_no in range(args.repeat + 1):  # round 0 warms caches and connections
        for kind, label, table, extra in cases:
            if extra is not None:
                options = set_server_options(dst, options, dict(base_options(source), **extra))
            if kind == 'read':
                elapsed = timed(dst, sql.SQL(READ).format(ident(table)))
            else:
                truncate(src, dst, table)
                elapsed = timed(dst, sql.SQL(INSERT).format(ident(table)), (args.insert_rows,))
            if round_no:
                times[(kind, label)].append(elapsed)
            print('  round %d %-6s %-28s %7.3fs' % (round_no, kind, label, elapsed),
                  file=sys.stderr)
    return cases, times


def truncate(src, dst, table):
    if table == 'local_inbox':
        run(dst, 'TRUNCATE local_inbox')
    else:
        run(src, 'TRUNCATE inbox')


def load_average():
    try:
        return ' / '.join('%.1f' % v for v in os.getloadavg())
    except OSError:
        return 'n/a'


def machine_description(source):
    cpu = 'unknown CPU'
    try:
        out = subprocess.run(['lscpu'], stdout=subprocess.PIPE, universal_newlines=True,
                             check=False).stdout
        fields = dict(line.split(':', 1) for line in out.splitlines() if ':' in line)
        cpu = '%s, %s CPU(s)' % (fields.get('Model name', '?').strip(),
                                 fields.get('CPU(s)', '?').strip())
        if fields.get('Hypervisor vendor'):
            cpu += ', %s guest' % fields['Hypervisor vendor'].strip()
    except (OSError, ValueError):
        pass
    mem_gb = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024.0 ** 3
    version = source.query('SHOW server_version')[0][0]
    return ['CPU: %s' % cpu, 'RAM: %.0f GiB' % mem_gb,
            'OS: %s %s' % (platform.system(), platform.release()),
            'PostgreSQL %s, both clusters on this machine, connected over 127.0.0.1 (TCP)'
            % version,
            'cluster settings: fsync=off, synchronous_commit=off, full_page_writes=off, '
            'shared_buffers=512MB, log_statement=none']


def table(cases, times, args):
    lines = ['| workload | configuration | median time (s) | min - max (s) | ratio to local |',
             '|---|---|---:|---:|---:|']
    baseline = {}
    for kind, label, _table, _extra in cases:
        median = statistics.median(times[(kind, label)])
        if label == 'local table':
            baseline[kind] = median
        what = ('read %s rows' % format(args.read_rows, ',') if kind == 'read'
                else 'insert %s rows' % format(args.insert_rows, ','))
        runs = times[(kind, label)]
        lines.append('| %s | %s | %.3f | %.3f - %.3f | %.1fx |'
                     % (what, label, median, min(runs), max(runs), median / baseline[kind]))
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--read-rows', type=int, default=1000000)
    parser.add_argument('--insert-rows', type=int, default=100000)
    parser.add_argument('--repeat', type=int, default=3, help='measured rounds (median)')
    args = parser.parse_args()
    base = make_base()
    clusters = []
    try:
        print('starting clusters and loading %d rows...' % args.read_rows, file=sys.stderr)
        clusters = start_clusters(base)
        source, consumer = clusters
        src, dst = prepare(source, consumer, args.read_rows)
        load_before = load_average()
        cases, times = measure(src, dst, source, args)
        print('\n'.join(machine_description(source)))
        print('load average (1/5/15 min) before: %s, after: %s' % (load_before, load_average()))
        print('%d measured rounds per configuration (after one warm-up round), run round-robin'
              % args.repeat)
        print()
        print('\n'.join(table(cases, times, args)))
    finally:
        for cluster in clusters:
            cluster.stop('immediate')
        cleanup(base)


if __name__ == '__main__':
    main()
