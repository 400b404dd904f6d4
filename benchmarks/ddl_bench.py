"""Schema following in the stream: ALTER on the source -> column on every target, and its DML cost.

Starts three throw-away PostgreSQL clusters (tests/integration/pgcluster.py): a source and two
targets, each target subscribed to the source's set (publication of the table and of the
queue, tablesync.postgresql.pg_schema_follow on both sides, as the roles install it). Then:

- latency: ``--alters`` times, ``ALTER TABLE t ADD COLUMN c_<i> int DEFAULT <i>`` on the source
  while a writer inserts rows; from the moment the ALTER's COMMIT returned until the column
  exists on both targets (polled every 2 ms); p50, p99 and max;
- DML cost: single-row INSERT transactions on the source table, with the event trigger disabled
  (the baseline) and enabled, measured round-robin in the same run (it fires on DDL only, so
  the expected ratio is 1.00).

    sudo .venv/bin/python benchmarks/ddl_bench.py                 # 200 ALTERs, 3 x 20,000 INSERTs
    sudo .venv/bin/python benchmarks/ddl_bench.py --quick --json /tmp/ddl.json
"""
import argparse
import os
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

from common import (add_standard_arguments, load_average, make_result, print_table, quiet,  # noqa: E402
                    setup_paths, write_json)

setup_paths()
from pgcluster import Cluster, cleanup, make_base, wait_for  # noqa: E402
from runner import run_module  # noqa: E402

DB = 'bench'
SET = 'bench'


def ok(result):
    assert not result.get('failed'), result.get('msg')


def setup(source, targets):
    for cluster in [source] + targets:
        quiet(cluster)
        cluster.execute('CREATE DATABASE %s' % DB)
    source.execute('CREATE TABLE t (id bigserial PRIMARY KEY, v text)', dbname=DB)
    ok(run_module('tablesync.postgresql.pg_schema_follow',
                  dict(source.login(DB), set=SET, side='source', tables=['public.t'])))
    source.execute('CREATE PUBLICATION tablesync_%s FOR TABLE t' % SET, dbname=DB)
    source.execute('CREATE PUBLICATION tablesync_%s_ddl FOR TABLE tablesync_ddl.%s' % (SET, SET), dbname=DB)
    for i, target in enumerate(targets):
        ok(run_module('tablesync.postgresql.pg_target_tables',
                      dict(target.login(DB), tables=['public.t'], source=dict(
                          host=source.host, port=source.port, dbname=DB, user=source.user,
                          password=source.password))))
        ok(run_module('tablesync.postgresql.pg_schema_follow', dict(target.login(DB), set=SET, side='target')))
        target.execute("CREATE SUBSCRIPTION s%d CONNECTION 'host=%s port=%s dbname=%s user=%s password=%s' "
                       'PUBLICATION tablesync_%s, tablesync_%s_ddl'
                       % (i, source.host, source.port, DB, source.user, source.password, SET, SET), dbname=DB)
    for target in targets:
        wait_for(lambda t=target: t.query("SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'",
                                          dbname=DB)[0][0] == 0, timeout=120, what='initial copy')


def has_column(conn, name):
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'public.t'::regclass "
                    'AND attname = %s AND NOT attisdropped)', (name,))
        return cur.fetchone()[0]


def latencies(source, targets, alters):
    stop = threading.Event()

    def write():
        conn = source.connect(DB)
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("INSERT INTO t (v) VALUES ('w')")
        conn.close()
    writer = threading.Thread(target=write)
    writer.start()
    src = source.connect(DB)
    dsts = [t.connect(DB) for t in targets]
    out = []
    try:
        for i in range(alters):
            name = 'c_%d' % i
            with src.cursor() as cur:
                cur.execute('ALTER TABLE t ADD COLUMN %s int DEFAULT %d' % (name, i))
            start = time.perf_counter()
            pending = list(dsts)
            while pending:
                pending = [d for d in pending if not has_column(d, name)]
                if pending:
                    time.sleep(0.002)
                if time.perf_counter() - start > 60:
                    raise AssertionError('column %s did not arrive within 60 s' % name)
            out.append(time.perf_counter() - start)
    finally:
        stop.set()
        writer.join()
        for conn in [src] + dsts:
            conn.close()
    return out


def inserts_per_second(source, rows):
    conn = source.connect(DB)
    try:
        start = time.perf_counter()
        with conn.cursor() as cur:
            for dummy in range(rows):
                cur.execute("INSERT INTO t (v) VALUES ('dml')")
        return rows / (time.perf_counter() - start)
    finally:
        conn.close()


def dml_cost(source, rows, repeat):
    rates = {'disabled': [], 'enabled': []}
    for dummy in range(repeat):
        for state in ('disabled', 'enabled'):
            source.execute('ALTER EVENT TRIGGER tablesync_ddl_capture %s' % ('DISABLE' if state == 'disabled' else 'ENABLE'),
                           dbname=DB)
            rates[state].append(inserts_per_second(source, rows))
    return dict((k, statistics.median(v)) for k, v in rates.items())


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    add_standard_arguments(parser)
    parser.add_argument('--alters', type=int, default=None, help='default 200 (20 with --quick)')
    parser.add_argument('--rows', type=int, default=None, help='INSERTs per round; default 20,000 (2,000 with --quick)')
    parser.add_argument('--repeat', type=int, default=None, help='rounds; default 3 (1 with --quick)')
    args = parser.parse_args()
    args.alters = args.alters or (20 if args.quick else 200)
    args.rows = args.rows or (2000 if args.quick else 20000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    base = make_base()
    clusters = []
    try:
        clusters = [Cluster(n, base).start() for n in ('source', 'target1', 'target2')]
        source, targets = clusters[0], clusters[1:]
        setup(source, targets)
        load_before = load_average()
        lat = latencies(source, targets, args.alters)
        rates = dml_cost(source, args.rows, args.repeat)
        errors = [t.query('SELECT apply_error_count FROM pg_stat_subscription_stats', dbname=DB)[0][0] for t in targets]
        load_after = load_average()
    finally:
        for cluster in clusters:
            cluster.stop('immediate')
        cleanup(base)
    ms = [x * 1000 for x in lat]
    ratio = rates['enabled'] / rates['disabled']
    rows = [
        ['ALTER TABLE ADD COLUMN -> column on both targets', 'p50 ms', round(percentile(ms, 50), 1), '-'],
        ['', 'p99 ms', round(percentile(ms, 99), 1), '-'],
        ['', 'max ms', round(max(ms), 1), '-'],
        ['single-row INSERTs, event trigger disabled (baseline)', 'rows/s', round(rates['disabled']), '1.00x'],
        ['single-row INSERTs, event trigger enabled', 'rows/s', round(rates['enabled']), '%.2fx' % ratio],
    ]
    result = make_result(
        'ddl', 'Schema following in the stream',
        'Time from an ALTER TABLE committing on the source to the column existing on both '
        'targets (%d ALTERs while a writer inserts), and the throughput of ordinary DML with the '
        'capture installed against the same cluster with the event trigger disabled (%d rounds '
        'of %d single-row INSERTs, round-robin, median).' % (args.alters, args.repeat, args.rows),
        ['case', 'unit', 'value', 'ratio to baseline'], rows,
        goal='DML with capture >= 0.95x without; columns on every target within a second (p99)',
        goal_met=ratio >= 0.95 and percentile(ms, 99) < 1000,
        notes=['apply errors on the targets during the run: %s (expected 0)' % errors,
               'load average (1/5/15 min) before: %s, after: %s' % (load_before, load_after)])
    print_table(result)
    write_json(args.json, result)


if __name__ == '__main__':
    main()
