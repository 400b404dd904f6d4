"""Logical replication lag under a sustained pgbench write load, deployed by playbooks/site.yml.

Two systemd containers (benchmarks/containers.py: localhost/tablesync-pg:bookworm, PostgreSQL
15 as the real service): the publisher holds a pgbench database (``pgbench -i``) and a heartbeat
table; ``playbooks/site.yml`` deploys one logical sync set publishing all of them to the
subscriber. Then, for each phase:

  idle        heartbeats only: the replication pipeline's own delay (walsender, network,
              apply worker) - the baseline
  max         pgbench without a rate limit (--clients, default 2) with the set replicating: the
              publisher's maximum TPS on this machine, measured in the same run; the lag of this
              phase shows what happens beyond the limit
  N% of max   the same heartbeats while pgbench runs its TPC-B-like script on the publisher at
              a fixed rate of N% of that maximum (``pgbench -R``; default 50% and 80%)
  N tps       the same at a fixed rate given with --rates

A heartbeat is a committed ``INSERT`` on the publisher every 100 ms carrying
``clock_timestamp()``; on the subscriber an ``ENABLE ALWAYS`` trigger (it fires in the apply
worker) records the time the row is applied. Publisher and subscriber share the host's kernel
clock (containers), so the difference is the lag of that change, with no clock skew. The phase
reports p50/p99/max of these lags, the ratio of its p50 to the idle p50, and pgbench's own
average transaction latency on the publisher (the commit latency a client sees there), and the
lag's growth: the slope of lag over the phase (ms of lag per second, a least-squares fit over
every heartbeat) and the time the subscriber needed after the phase to apply its last heartbeat.
A slope near 0 means the apply side keeps up (the lag is bounded); a positive one is the rate at
which it falls behind.

    .venv/bin/python benchmarks/lag_bench.py [--quick] [--duration 60] [--shares 50,80]
                                             [--clients 2] [--rates 100,250] [--json FILE]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import ROOT, add_standard_arguments, chart, load_average, machine_info  # noqa: E402
from common import make_result, print_table, write_json  # noqa: E402
from containers import BenchContainers, ansible_env, inventory_yaml  # noqa: E402

PUB, SUB = 'tablesync-bench-lagpub', 'tablesync-bench-lagsub'
DB = 'lagbench'
PASSWORD = 'bench-only-Lp7wK3nR9d'  # throw-away containers only
INTERVAL = 0.1
TABLES = ['public.pgbench_accounts', 'public.pgbench_branches', 'public.pgbench_tellers',
          'public.pgbench_history', 'public.lag_heartbeat']

HEARTBEAT_DDL = """CREATE TABLE lag_heartbeat (
  phase text NOT NULL, seq integer NOT NULL, sent_at timestamptz NOT NULL,
  PRIMARY KEY (phase, seq))"""

# On the subscriber: the apply worker fires ENABLE ALWAYS triggers; the arrival is kept in a
# local table that is not part of the sync set.
ARRIVAL_DDL = """CREATE TABLE lag_arrival (
  phase text NOT NULL, seq integer NOT NULL, sent_at timestamptz NOT NULL,
  applied_at timestamptz NOT NULL, PRIMARY KEY (phase, seq));
CREATE FUNCTION public.lag_arrival() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, public AS $$
BEGIN
  -- the apply worker runs with an empty search_path
  INSERT INTO public.lag_arrival VALUES (NEW.phase, NEW.seq, NEW.sent_at, clock_timestamp());
  RETURN NEW;
END $$;
CREATE TRIGGER lag_arrival AFTER INSERT ON lag_heartbeat
  FOR EACH ROW EXECUTE FUNCTION lag_arrival();
ALTER TABLE lag_heartbeat ENABLE ALWAYS TRIGGER lag_arrival;
"""

# One heartbeat every INTERVAL seconds, each committed on its own (COMMIT in a DO block: no
# client round trips, so the writer adds no network jitter of its own).
HEARTBEATS = """DO $$ BEGIN
  FOR i IN 1..%(count)d LOOP
    INSERT INTO lag_heartbeat VALUES ('%(phase)s', i, clock_timestamp());
    COMMIT;
    PERFORM pg_sleep(%(interval)s);
  END LOOP;
END $$;"""

LAGS = """SELECT count(*),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
  percentile_cont(0.99) WITHIN GROUP (ORDER BY ms),
  max(ms),
  coalesce(regr_slope(ms, s), 0),
  extract(epoch FROM max(applied_at) - max(sent_at))
FROM (SELECT extract(epoch FROM applied_at - sent_at) * 1000 AS ms, extract(epoch FROM sent_at) AS s,
             applied_at, sent_at
      FROM lag_arrival WHERE phase = '%s') l"""
# the lag growth under which a phase counts as keeping up (ms of lag per second of load)
BOUNDED_SLOPE = 1.0
GOAL_P99_MS = 1000.0


def log(msg):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), msg), file=sys.stderr)
    sys.stderr.flush()


def deploy(hosts, workdir):
    """pgbench tables and the heartbeat on the publisher, then site.yml for one sync set."""
    hosts.psql('lagpub', 'CREATE DATABASE %s' % DB)
    hosts.exec('lagpub', ['pgbench', '-i', '-q', '-s', '1', DB], user='postgres')
    hosts.psql('lagpub', HEARTBEAT_DDL, dbname=DB)
    inventory = os.path.join(workdir, 'inventory.yml')
    with open(inventory, 'w') as f:
        f.write(inventory_yaml(hosts, {
            'tablesync_replication_role': 'tablesync_replicator',
            'tablesync_replication_password': PASSWORD,
            'tablesync_sync_sets': [{
                'name': 'lag',
                'method': 'logical',
                'source': {'host': PUB, 'database': DB},
                'targets': [{'host': SUB, 'database': DB}],
                'tables': TABLES,
                # pgbench_history has no primary key; pgbench only inserts into it
                'replica_identity': {'public.pgbench_history': 'full'},
            }],
        }))
    for _attempt in range(3):
        proc = subprocess.run(['ansible-playbook', '-i', inventory,
                               os.path.join(ROOT, 'playbooks', 'site.yml')],
                              cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, check=False)
        # podman exec fails now and then on an overloaded machine (UNREACHABLE): run again
        if not re.search(r'unreachable=[1-9]', proc.stdout):
            break
        log('site.yml lost a host (podman exec failed), running it again')
    with open(os.path.join(workdir, 'site.log'), 'w') as f:
        f.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError('site.yml failed:\n' + proc.stdout[-6000:])
    hosts.psql('lagsub', ARRIVAL_DDL, dbname=DB)


def pgbench(hosts, rate, duration, clients=2):
    """Start pgbench on the publisher (unix socket) at ``rate`` TPS (None: as fast as it can);
    returns the process."""
    limit = ['-R', str(rate)] if rate else []
    return subprocess.Popen(
        ['podman', 'exec', '--user', 'postgres', hosts.container('lagpub'),
         'pgbench', '-n', '-c', str(clients), '-j', str(min(clients, 2)), '-T', str(duration)] + limit + [DB],
        env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True)


def parse_pgbench(out):
    def num(pattern):
        m = re.search(pattern, out)
        return float(m.group(1)) if m else None
    failed = num(r'number of failed transactions: (\d+)')
    if failed:
        raise RuntimeError('pgbench reported failed transactions:\n' + out)
    # with -R, pgbench's latency counts from the scheduled start: take its schedule lag out
    latency = num(r'latency average = ([0-9.]+) ms')
    schedule_lag = num(r'rate limit schedule lag: avg ([0-9.]+)') or 0.0
    return {'tps': num(r'tps = ([0-9.]+)'),
            'latency': None if latency is None else latency - schedule_lag,
            'schedule_lag': schedule_lag}


def wait_applied(hosts, phase, count, timeout=900):
    deadline = time.time() + timeout
    while True:
        got = int(hosts.psql('lagsub', "SELECT count(*) FROM lag_arrival WHERE phase = '%s'"
                             % phase, dbname=DB)[0])
        if got >= count:
            return
        if time.time() > deadline:
            raise RuntimeError('%s: only %d of %d heartbeats arrived' % (phase, got, count))
        time.sleep(1)


def run_phase(hosts, phase, rate, duration, load=True, clients=2):
    """One phase: heartbeats for ``duration`` seconds, with pgbench at ``rate`` TPS (None: no
    rate limit) when ``load``."""
    count = int(duration / INTERVAL)
    bench = pgbench(hosts, rate, duration + 2, clients) if load else None
    if bench:
        time.sleep(1)  # the load runs before the first heartbeat and after the last
    hosts.psql('lagpub', HEARTBEATS % {'count': count, 'phase': phase, 'interval': INTERVAL},
               dbname=DB)
    load = None
    if bench:
        out = bench.communicate()[0]
        if bench.returncode != 0:
            raise RuntimeError('pgbench failed:\n' + out)
        load = parse_pgbench(out)
    wait_applied(hosts, phase, count)
    n, p50, p99, worst, slope, tail = hosts.psql('lagsub', LAGS % phase, dbname=DB)[0].split('|')
    result = {'phase': phase, 'rate': rate, 'samples': int(n), 'p50': float(p50),
              'p99': float(p99), 'max': float(worst), 'slope': float(slope),
              'catch_up': float(tail), 'load': load}
    log('%s: %d heartbeats, lag p50 %.1f ms, p99 %.1f ms, max %.1f ms, growth %.2f ms/s%s (load %s)' % (
        phase, result['samples'], result['p50'], result['p99'], result['max'], result['slope'],
        ', pgbench %.0f tps, latency %.2f ms' % (load['tps'], load['latency']) if load else '',
        load_average()))
    return result


def report(args, phases, version):
    idle = phases[0]
    rows = []
    for r in phases:
        load = r['load'] or {}
        rows.append([r['phase'], r['samples'],
                     None if load.get('tps') is None else round(load['tps']),
                     None if load.get('latency') is None else round(load['latency'], 2),
                     round(r['p50'], 1), round(r['p99'], 1), round(r['max'], 1),
                     round(r['slope'], 2), round(r['catch_up'], 1),
                     round(r['p50'] / idle['p50'], 2), round(r['p99'] / idle['p99'], 2)])
    info = machine_info()
    description = (
        'Logical replication lag of a sync set deployed by `playbooks/site.yml` (publisher and '
        'subscriber in two systemd containers from `localhost/tablesync-pg:bookworm`, '
        'PostgreSQL %s, default server settings as the roles leave them) while pgbench runs its '
        'TPC-B-like script on the publisher, first with no rate limit (`max`: the publisher\'s '
        'maximum TPS with the set replicating, measured in this run, half as long as the other '
        'phases), then at fixed shares of that maximum (`pgbench -R`, %d clients, %d s per '
        'phase; all four pgbench tables are in the set). Lag growth is the least-squares slope '
        'of lag over the phase (ms of lag per second of load; near 0: the apply side keeps up). Lag is measured per change: every '
        '%d ms the publisher commits a heartbeat row stamped with `clock_timestamp()`, and an '
        '`ENABLE ALWAYS` trigger on the subscriber records when the apply worker applies it '
        '(both containers read the same kernel clock: no skew). Baseline: the same heartbeats '
        'with no load (`idle`, measured in the same run), i.e. the pipeline\'s own delay '
        '(commit, walsender, bridge network, apply); the ratios are each phase\'s percentile '
        'over the idle one. pgbench\'s average transaction latency on the publisher is the '
        'commit latency a client sees there, for scale (pgbench\'s rate-limit schedule lag taken out). Machine: %s, %s cores, %s RAM, shared '
        'with other jobs (load average at the end %s).' % (
            version, args.clients, args.duration, int(INTERVAL * 1000), info['cpu'], info['cores'],
            info['ram'], load_average()))
    loaded = phases[1:]
    notes = ['%s: pgbench ran behind its schedule by %.0f ms on average: the machine could not '
             'keep the rate' % (r['phase'], r['load']['schedule_lag'])
             for r in phases[1:] if r['load']['schedule_lag'] > 100]
    notes += ['%s: lag p50 %.1f ms, p99 %.1f ms = %.2fx / %.2fx idle; pgbench %.0f tps at %.2f ms '
              'average latency' % (r['phase'], r['p50'], r['p99'], r['p50'] / idle['p50'],
                                   r['p99'] / idle['p99'], r['load']['tps'], r['load']['latency'])
              for r in loaded]
    labels = [r['phase'] for r in phases]
    goal, goal_met = None, None
    half = [r for r in phases if r['phase'].startswith('50% of max')]
    if half:
        goal = 'lag p99 under %.0f s at 50%% of the publisher\'s maximum TPS' % (GOAL_P99_MS / 1000)
        goal_met = half[0]['p99'] < GOAL_P99_MS
    for r in phases[1:]:
        if r['rate'] is None or r['phase'].startswith('max'):
            continue
        if r['slope'] < BOUNDED_SLOPE:
            notes.append('%s: the lag stays bounded (growth %.2f ms per second of load)' % (r['phase'], r['slope']))
        else:
            notes.append('%s: one apply worker falls behind: the lag grows by %.1f ms per second of '
                         'load; the last heartbeat was applied %.1f s after it was sent'
                         % (r['phase'], r['slope'], r['catch_up']))
    return make_result(
        'lag', 'Logical replication lag under a pgbench write load', description,
        ['phase', 'heartbeats', 'pgbench tps', 'pgbench latency ms', 'lag p50 ms',
         'lag p99 ms', 'lag max ms', 'lag growth ms/s', 'last heartbeat applied after s',
         'p50 vs idle', 'p99 vs idle'],
        rows, goal=goal, goal_met=goal_met,
        charts=[chart('lag.png', 'Replication lag per phase', labels,
                      {'p50': [r['p50'] for r in phases], 'p99': [r['p99'] for r in phases]},
                      ylabel='milliseconds')],
        notes=notes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    add_standard_arguments(parser)
    parser.add_argument('--duration', type=int, help='seconds per phase (default 60; quick: 10)')
    parser.add_argument('--shares', help='rates as percentages of the measured maximum TPS, '
                        'comma-separated (default 50,80)')
    parser.add_argument('--clients', type=int, default=2, help='pgbench clients of the loaded phases '
                        '(default 2; at pgbench scale 1 every client updates the one branch row, so more clients contend: 8 gave 853 tps against 1231 with 2)')
    parser.add_argument('--rates', help='fixed pgbench rates in tps, comma-separated (default '
                        'none; quick: 100)')
    args = parser.parse_args()
    args.duration = args.duration or (10 if args.quick else 60)
    rates = [int(r) for r in (args.rates or ('100' if args.quick else '')).split(',') if r]
    shares = [int(r) for r in (args.shares or '50,80').split(',') if r]

    workdir = tempfile.mkdtemp(prefix='lag-bench-')
    with BenchContainers(['lagpub', 'lagsub'], log_dir=workdir) as hosts:
        version = hosts.server_version('lagpub')
        log('containers up; deploying with site.yml (output in %s)' % workdir)
        deploy(hosts, workdir)
        phases = [run_phase(hosts, 'idle', None, args.duration, load=False)]
        for rate in rates:
            phases.append(run_phase(hosts, '%d tps' % rate, rate, args.duration, clients=args.clients))
        if shares:
            top = run_phase(hosts, 'max (no rate limit)', None, max(10, args.duration // 2), clients=args.clients)
            phases.append(top)
            for share in shares:
                rate = max(1, int(top['load']['tps'] * share / 100))
                phases.append(run_phase(hosts, '%d%% of max (%d tps)' % (share, rate), rate, args.duration,
                                        clients=args.clients))
    result = report(args, phases, version)
    print_table(result)
    write_json(args.json, result)


if __name__ == '__main__':
    main()
