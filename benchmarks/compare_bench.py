"""pg_table_compare on a large table: time against one full read of the table, and memory.

Starts two throw-away PostgreSQL clusters (tests/integration/pgcluster.py: loopback, fsync off,
statement logging switched off here), loads the same ``--rows``-row table into both and measures

  baseline           one full sequential scan per server, both at the same time:
                     ``SELECT count(*), sum(hashtextextended(ROW(id, amount, note, created)::text, 0))
                     FROM bench``: every row read and hashed once, the same row hash the module
                     computes (what any row-comparing tool must do at least)
  module process     the pg_table_compare module run directly as a Python process (startup,
                     connections, catalog reads, the comparison); its peak RSS
  ansible-playbook   the same module as a task of a one-task playbook (what a user runs);
                     peak RSS of the largest process of the run (controller, worker or module)
  serial             baseline and module process again with max_parallel_workers_per_gather=0
                     on both servers (the baseline's plan is parallel, the comparison's
                     grouping by key range cannot aggregate in the workers)

first with identical tables, then after 10 scattered differences on the target (3 rows deleted
= missing, 3 inserted = extra, 4 updated = changed), each checked for the right answer. Cases run
round-robin (``--repeat`` rounds, median reported) so a noisy neighbour slows all alike; ratios
are to the baseline of the same phase of the same run.

    .venv/bin/python benchmarks/compare_bench.py                   # 10,000,000 rows
    .venv/bin/python benchmarks/compare_bench.py --quick           # 100,000 rows, 1 round
    .venv/bin/python benchmarks/compare_bench.py --rows 1000000 --json /tmp/compare.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from common import (add_standard_arguments, chart, load_average, machine_info, make_result,
                    print_table, quiet, setup_paths, write_json)

setup_paths()

from pgcluster import Cluster, cleanup, make_base  # noqa: E402
from runner import ansible_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_PATH = os.path.join(ROOT, 'plugins', 'modules', 'pg_table_compare.py')
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
sys.path.insert(0, COLLECTIONS)
from ansible_collections.tablesync.postgresql.plugins.module_utils.ops.compare_sql import parallel  # noqa: E402
DB = 'bench'
SETTINGS = (('shared_buffers', '512MB'),)
GOAL_RATIO = 2.0
# The same cases without parallel query workers (both the baseline and the module)
SERIAL_OPTIONS = '-c max_parallel_workers_per_gather=0'
GOAL_RSS_MB = 100.0

TABLE_DDL = ('CREATE TABLE bench (id bigint NOT NULL, amount numeric(12,2) NOT NULL, '
             'note text NOT NULL, created timestamptz NOT NULL)')
# ids are multiples of 10: the gaps leave room for extra rows anywhere in the key space
FILL = ("INSERT INTO bench SELECT g * 10, g * 0.01, 'order number ' || g || ' for a customer', "
        "timestamptz '2024-01-01' + g * interval '1 second' FROM generate_series(1, %s) g")
# the row hash pg_table_compare computes (the text form of the compared columns), no grouping
BASELINE = ('SELECT count(*), sum(hashtextextended(ROW(id, amount, note, created)::text, 0)) '
            'FROM bench')


def positions(rows, count):
    """``count`` existing ids spread evenly over the key space."""
    return [((i * 2 + 1) * rows // (2 * count)) * 10 for i in range(count)]


def differences(rows):
    """Statements making the target differ in 10 scattered rows, and the expected counts."""
    ids = positions(rows, 10)
    missing = [ids[0], ids[3], ids[6]]
    changed = [ids[1], ids[4], ids[7], ids[9]]
    extra = [ids[2] + 5, ids[5] + 5, ids[8] + 5]
    stmts = [('DELETE FROM bench WHERE id = ANY(%s)', (missing,)),
             ("UPDATE bench SET note = note || ' (changed)' WHERE id = ANY(%s)", (changed,)),
             ("INSERT INTO bench SELECT i, 1, 'extra row', now() FROM unnest(%s::bigint[]) i",
              (extra,))]
    return stmts, {'missing': sorted(missing), 'extra': sorted(extra), 'changed': sorted(changed)}


def start_clusters(base):
    clusters = [Cluster('cmp_source', base).start(), Cluster('cmp_target', base).start()]
    for cluster in clusters:
        quiet(cluster, SETTINGS)
        cluster.restart()
        cluster.execute('CREATE DATABASE %s' % DB)
    return clusters


def load(cluster, rows):
    conn = cluster.connect(DB)
    with conn.cursor() as cur:
        cur.execute(TABLE_DDL)
        cur.execute(FILL, (rows,))
        cur.execute('ALTER TABLE bench ADD PRIMARY KEY (id)')
        cur.execute('VACUUM (FREEZE, ANALYZE) bench')
        cur.execute('CHECKPOINT')
    conn.close()


def baseline(conns):
    def scan(conn):
        with conn.cursor() as cur:
            cur.execute(BASELINE)
            return cur.fetchone()
    start = time.perf_counter()
    result = parallel(lambda: scan(conns[0]), lambda: scan(conns[1]))
    return time.perf_counter() - start, result


def module_args(source, target):
    return dict(login_host=target.host, login_port=target.port, login_user=target.user,
                login_password=target.password, login_db=DB,
                source=dict(host=source.host, port=source.port, user=source.user,
                            password=source.password, dbname=DB),
                tables=['public.bench'], max_differences=100)


def run_measured(cmd, env, stdin_text=None):
    """Run a command; (seconds, peak RSS in MB of its largest process, stdout, stderr, rc).

    The peak RSS comes from wait4(): Linux reports the largest maximum resident set of the
    child and of every descendant it waited for (ansible-playbook's workers and module)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        def pump(src, dst):
            for chunk in iter(lambda: src.read(65536), ''):
                dst.write(chunk)
        threads = [threading.Thread(target=pump, args=(proc.stdout, out)),
                   threading.Thread(target=pump, args=(proc.stderr, err))]
        for t in threads:
            t.start()
        if stdin_text is not None:
            proc.stdin.write(stdin_text)
        proc.stdin.close()
        for t in threads:
            t.join()
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return elapsed, usage.ru_maxrss / 1024.0, out.read(), err.read(), proc.returncode


def run_module_process(args, serial=False):
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    if serial:  # libpq sends it as a session setting of both connections
        env['PGOPTIONS'] = SERIAL_OPTIONS
    payload = json.dumps({'ANSIBLE_MODULE_ARGS': args})
    elapsed, rss, out, err, rc = run_measured([sys.executable, MODULE_PATH], env, payload)
    try:
        result = json.loads(out[out.index('{'):])
    except ValueError:
        raise RuntimeError('module run failed (rc %s):\n%s\n%s' % (rc, out[-2000:], err[-2000:]))
    if result.get('failed') or rc:
        raise RuntimeError('module failed: %s' % result.get('msg', result))
    return elapsed, rss, result


def run_playbook(args, workdir):
    play = [{'name': 'compare', 'hosts': 'localhost', 'connection': 'local',
             'gather_facts': False, 'vars': {'ansible_python_interpreter': sys.executable},
             'tasks': [{'name': 'compare', 'tablesync.postgresql.pg_table_compare': args}]}]
    path = os.path.join(workdir, 'compare.yml')
    with open(path, 'w') as f:
        json.dump(play, f)  # JSON is YAML
    env = ansible_env({'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json'})
    cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,',
           path]
    elapsed, rss, out, err, rc = run_measured(cmd, env)
    try:
        data = json.loads(out[out.index('{'):])
        result = data['plays'][0]['tasks'][0]['hosts']['localhost']
    except (ValueError, KeyError, IndexError):
        raise RuntimeError('ansible-playbook failed (rc %s):\n%s\n%s' % (rc, out[-2000:], err[-2000:]))
    if result.get('failed') or rc:
        raise RuntimeError('pg_table_compare task failed: %s' % result.get('msg', result))
    return elapsed, rss, result


def check_answer(result, expected, rows):
    t = result['tables']['public.bench']
    got = dict((k, sorted(v)) for k, v in t['differences'].items())
    want_rows = (rows, rows - len(expected['missing']) + len(expected['extra']))
    if got != expected or (t['source_rows'], t['target_rows']) != want_rows:
        raise RuntimeError('wrong comparison result: differences %r (expected %r), rows %r '
                           '(expected %r)' % (got, expected, (t['source_rows'], t['target_rows']),
                                              want_rows))
    return t


def measure_phase(label, conns, serial_conns, args_, expected, rows, repeat, workdir):
    """Round-robin: baseline, module process, ansible-playbook, then the serial baseline and
    module process; round 0 warms caches and is not counted."""
    runs = dict((k, []) for k in ('baseline', 'module', 'playbook', 'serial baseline',
                                  'serial module'))
    for round_no in range(repeat + 1):
        seconds, _res = baseline(conns)
        m_seconds, m_rss, m_result = run_module_process(args_)
        p_seconds, p_rss, p_result = run_playbook(args_, workdir)
        s_seconds, _res = baseline(serial_conns)
        sm_seconds, sm_rss, sm_result = run_module_process(args_, serial=True)
        m_table = check_answer(m_result, expected, rows)
        p_table = check_answer(p_result, expected, rows)
        sm_table = check_answer(sm_result, expected, rows)
        print('  %s round %d: baseline %.2fs, module %.2fs (inside %.2fs, %.0f MB), '
              'ansible-playbook %.2fs (%.0f MB); serial: baseline %.2fs, module %.2fs; load %s'
              % (label, round_no, seconds, m_seconds, m_table['seconds'], m_rss, p_seconds,
                 p_rss, s_seconds, sm_seconds, load_average()), file=sys.stderr)
        if round_no:
            runs['baseline'].append(seconds)
            runs['module'].append((m_seconds, m_rss, m_table))
            runs['playbook'].append((p_seconds, p_rss, p_table))
            runs['serial baseline'].append(s_seconds)
            runs['serial module'].append((sm_seconds, sm_rss, sm_table))
    return runs


def phase_rows(label, runs):
    base = statistics.median(runs['baseline'])
    module = statistics.median(r[0] for r in runs['module'])
    inside = statistics.median(r[2]['seconds'] for r in runs['module'])
    playbook = statistics.median(r[0] for r in runs['playbook'])
    s_base = statistics.median(runs['serial baseline'])
    s_module = statistics.median(r[0] for r in runs['serial module'])
    m_rss = max(r[1] for r in runs['module'] + runs['serial module'])
    p_rss = max(r[1] for r in runs['playbook'])
    table = runs['module'][-1][2]
    found = '%d missing, %d extra, %d changed; %d queries, %d ranges' % (
        table['counts']['missing'], table['counts']['extra'], table['counts']['changed'],
        table['query_count'], table['ranges_checked'])
    rows = [
        [label, 'baseline: one full scan per server (parallel)', round(base, 3), '1.00x', '-', '-'],
        [label, 'pg_table_compare (comparison inside the module)', round(inside, 3),
         '%.2fx' % (inside / base), '-', found],
        [label, 'pg_table_compare module process', round(module, 3), '%.2fx' % (module / base),
         '%.0f' % max(r[1] for r in runs['module']), 'python start, connect, catalog, compare'],
        [label, 'pg_table_compare via ansible-playbook', round(playbook, 3),
         '%.2fx' % (playbook / base), '%.0f' % p_rss, 'largest process of the run'],
        [label, 'serial baseline (no parallel workers)', round(s_base, 3), '1.00x', '-',
         'max_parallel_workers_per_gather=0'],
        [label, 'serial pg_table_compare module process', round(s_module, 3),
         '%.2fx' % (s_module / s_base), '%.0f' % max(r[1] for r in runs['serial module']),
         'ratio to the serial baseline'],
    ]
    ratios = {'inside': inside / base, 'module': module / base, 'playbook': playbook / base,
              'serial module': s_module / s_base}
    return rows, ratios, m_rss, p_rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    add_standard_arguments(parser)
    parser.add_argument('--rows', type=int, default=None, help='table rows (default 10,000,000; '
                        '100,000 with --quick)')
    parser.add_argument('--repeat', type=int, default=None,
                        help='measured rounds per case, median reported (default 3; 1 with --quick)')
    args = parser.parse_args()
    rows = args.rows or (100000 if args.quick else 10000000)
    repeat = args.repeat or (1 if args.quick else 3)

    base = make_base()
    workdir = tempfile.mkdtemp(prefix='compare-bench-')
    clusters = []
    conns = []
    serial_conns = []
    try:
        print('starting clusters, loading %s rows into each...' % format(rows, ','), file=sys.stderr)
        clusters = start_clusters(base)
        source, target = clusters
        parallel(lambda: load(source, rows), lambda: load(target, rows))
        version = source.query('SHOW server_version')[0][0]
        size = source.query("SELECT pg_size_pretty(pg_table_size('bench')), "
                            "pg_size_pretty(pg_indexes_size('bench'))", dbname=DB)[0]
        conns = [source.connect(DB), target.connect(DB)]
        serial_conns = [source.connect(DB), target.connect(DB)]
        for conn in conns + serial_conns:
            with conn.cursor() as cur:
                cur.execute('SET jit = off')
                if conn in serial_conns:
                    cur.execute('SET max_parallel_workers_per_gather = 0')
        args_ = module_args(source, target)
        load_before = load_average()

        none = {'missing': [], 'extra': [], 'changed': []}
        equal_runs = measure_phase('identical', conns, serial_conns, args_, none, rows, repeat,
                                   workdir)
        stmts, expected = differences(rows)
        with conns[1].cursor() as cur:
            for stmt, params in stmts:
                cur.execute(stmt, params)
            cur.execute('VACUUM ANALYZE bench')
        diff_runs = measure_phase('10 differences', conns, serial_conns, args_, expected, rows,
                                  repeat, workdir)
        load_after = load_average()
    finally:
        for conn in conns + serial_conns:
            conn.close()
        for cluster in clusters:
            cluster.stop('immediate')
        cleanup(base)
        subprocess.run(['rm', '-rf', workdir], check=False)

    table_rows = []
    ratios = {}
    rss = []
    for label, runs in (('identical', equal_runs), ('10 differences', diff_runs)):
        r, ratio, m_rss, p_rss = phase_rows(label, runs)
        table_rows.extend(r)
        ratios[label] = ratio
        rss.extend([m_rss, p_rss])
    worst_module = max(r['module'] for r in ratios.values())
    worst_rss = max(rss)
    goal_met = worst_module <= GOAL_RATIO and worst_rss < GOAL_RSS_MB
    machine = machine_info()
    description = (
        'pg_table_compare on a table of %s rows (%s heap, %s index; `id bigint` primary key, '
        'numeric, text and timestamptz columns) between two PostgreSQL %s clusters on this '
        'machine (loopback TCP, fsync off, shared_buffers 512MB). **Baseline**: one full '
        'sequential scan per server at the same time, `%s`, measured in the same run. The module '
        'is timed as its own process (Python start, connections, catalog reads, comparison) and '
        'through `ansible-playbook`; "inside" is the `seconds` the module reports for the table. '
        'Peak RSS is the largest maximum resident set of the process tree (wait4). '
        'The *serial* rows repeat the baseline and the module process with '
        '`max_parallel_workers_per_gather=0` on both servers (PGOPTIONS for the module): the '
        'baseline is a parallel plan (partial aggregates in the workers), the comparison\'s '
        'grouping by key range is not (its workers scan and hash, the leader aggregates), so the '
        'serial pair shows the cost of the comparison queries themselves. '
        'Median of %d round(s) after a warm-up round, cases round-robin.'
        % (format(rows, ','), size[0], size[1], version, BASELINE, repeat))
    labels = ['identical', '10 differences']
    result = make_result(
        'compare', 'pg_table_compare: %s-row table vs one full scan' % format(rows, ','),
        description,
        ['phase', 'case', 'seconds (median)', 'ratio to baseline', 'peak RSS (MB)', 'notes'],
        table_rows,
        goal='module process <= %.0fx the baseline and peak RSS < %.0f MB (10M rows)'
             % (GOAL_RATIO, GOAL_RSS_MB),
        goal_met=goal_met if not args.quick and rows >= 10000000 else None,
        charts=[chart('compare.png', 'pg_table_compare, %s rows: time / one full scan'
                      % format(rows, ','), labels,
                      {'comparison inside the module': [ratios[x]['inside'] for x in labels],
                       'module process': [ratios[x]['module'] for x in labels],
                       'ansible-playbook': [ratios[x]['playbook'] for x in labels],
                       'module process, serial (to the serial baseline)':
                           [ratios[x]['serial module'] for x in labels]})],
        notes=['machine: %s, %s cores, %s RAM, %s; load average before %s, after %s'
               % (machine['cpu'], machine['cores'], machine['ram'], machine['kernel'],
                  load_before, load_after),
               'worst module-process ratio %.2fx, largest peak RSS %.0f MB' % (worst_module,
                                                                               worst_rss)])
    if goal_met is not None and result['goal_met'] is None:
        result['notes'].append('goal not judged: %s rows (the goal is for 10,000,000)'
                               % format(rows, ','))
    print_table(result)
    write_json(args.json, result)


if __name__ == '__main__':
    main()
