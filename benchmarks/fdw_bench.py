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
    sudo .venv/bin/python benchmarks/fdw_bench.py --quick --json /tmp/fdw.json  # 100,000 / 10,000
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
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

from common import add_standard_arguments, chart, make_result, print_table, write_json  # noqa: E402
from pgcluster import Cluster, cleanup, make_base  # noqa: E402
from ansible_collections.tablesync.postgresql.plugins.module_utils.fdw.common import (  # noqa: E402
    alter_options_statement, option_changes)
from ansible_collections.tablesync.postgresql.plugins.module_utils.core.statements import bind  # noqa: E402

DB = 'bench'
SERVER = 'bench_source'
READ_FETCH_SIZES = (100, 1000, 10000, 50000)   # 100 is postgres_fdw's default
INSERT_BATCH_SIZES = (1, 100, 1000, 10000)     # 1 is postgres_fdw's default
# the fdw_consumer role's defaults (roles/fdw_consumer/defaults/main.yml)
TUNED = {'read': 'fdw fetch_size 10000', 'insert': 'fdw batch_size 1000'}
DEFAULT = {'read': 'fdw fetch_size 100 (default)', 'insert': 'fdw batch_size 1 (default)'}
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
    """(columns, rows, ratios by (kind, label)) of the medians; ratios to the local table."""
    columns = ['workload', 'configuration', 'median time (s)', 'min - max (s)', 'ratio to local']
    rows = []
    ratios = {}
    baseline = {}
    for kind, label, _table, _extra in cases:
        median = statistics.median(times[(kind, label)])
        if label == 'local table':
            baseline[kind] = median
        what = ('read %s rows' % format(args.read_rows, ',') if kind == 'read'
                else 'insert %s rows' % format(args.insert_rows, ','))
        runs = times[(kind, label)]
        ratios[(kind, label)] = median / baseline[kind]
        rows.append([what, label, '%.3f' % median, '%.3f - %.3f' % (min(runs), max(runs)),
                     '%.1fx' % ratios[(kind, label)]])
    return columns, rows, ratios


def result_json(cases, times, args, machine, load_note):
    columns, rows, ratios = table(cases, times, args)
    goal_met = all(ratios[(k, TUNED[k])] < ratios[(k, DEFAULT[k])] for k in ('read', 'insert'))
    charts = []
    for kind, what in (('read', 'read %s rows: time / local table' % format(args.read_rows, ',')),
                       ('insert', 'insert %s rows: time / local table'
                        % format(args.insert_rows, ','))):
        labels = [label for k, label, _t, _e in cases if k == kind]
        charts.append(chart('fdw-%s.png' % kind, 'postgres_fdw ' + what, labels,
                            {'ratio to local': [ratios[(kind, label)] for label in labels]}))
    description = (
        'postgres_fdw between two PostgreSQL clusters on this machine: a *source* holding the '
        'table and a *consumer* with a foreign server, user mapping and foreign table. '
        '**read**: `%s` (`random()` is volatile, so every row crosses the connection in '
        '`fetch_size` batches); **insert**: `INSERT INTO t SELECT ... FROM generate_series(...)` '
        '(a round trip per `batch_size` rows). **Baseline**: the same statement on a local copy '
        'of the table in the consumer\'s database (the work without the network hop), measured '
        'in the same run. %d measured round(s) after a warm-up round, configurations '
        'round-robin, median reported.' % (READ.format('t'), args.repeat))
    return make_result(
        'fdw', 'postgres_fdw: default vs tuned fetch_size / batch_size', description, columns,
        rows, goal='the fdw_consumer role\'s defaults (fetch_size 10000, batch_size 1000) are '
                   'faster than postgres_fdw\'s (100, 1)',
        goal_met=goal_met, charts=charts, notes=list(machine) + [load_note])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    add_standard_arguments(parser)
    parser.add_argument('--read-rows', type=int, default=None,
                        help='default 1,000,000 (100,000 with --quick)')
    parser.add_argument('--insert-rows', type=int, default=None,
                        help='default 100,000 (10,000 with --quick)')
    parser.add_argument('--repeat', type=int, default=None,
                        help='measured rounds (median); default 3 (1 with --quick)')
    args = parser.parse_args()
    args.read_rows = args.read_rows or (100000 if args.quick else 1000000)
    args.insert_rows = args.insert_rows or (10000 if args.quick else 100000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    base = make_base()
    clusters = []
    try:
        print('starting clusters and loading %d rows...' % args.read_rows, file=sys.stderr)
        clusters = start_clusters(base)
        source, consumer = clusters
        src, dst = prepare(source, consumer, args.read_rows)
        load_before = load_average()
        cases, times = measure(src, dst, source, args)
        machine = machine_description(source)
        load_note = ('load average (1/5/15 min) before: %s, after: %s'
                     % (load_before, load_average()))
    finally:
        for cluster in clusters:
            cluster.stop('immediate')
        cleanup(base)
    result = result_json(cases, times, args, machine, load_note)
    print_table(result)
    write_json(args.json, result)


if __name__ == '__main__':
    main()
