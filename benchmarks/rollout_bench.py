"""Time of an idempotent re-run of playbooks/site.yml as a sync set grows (10 -> 1000 tables).

Three systemd containers (benchmarks/containers.py: localhost/tablesync-pg:bookworm, PostgreSQL
15 as the real service, reached with the containers.podman.podman connection) hold one logical
sync set: a publisher and two subscribers. For each size the set is rolled out once (untimed
except for the record), then re-run with nothing to change, several times, interleaved with:

  floor   a playbook with one ``ansible.builtin.ping`` task on the same 3 hosts: Ansible's
          start-up, inventory, one connection to each container (Ansible's fixed cost)
  ours    ``playbooks/site.yml`` (preflight, settings, pg_hba.conf, replication role and its
          grants, target tables, publication, subscriptions, cleanup, report)
  theirs  the publication/subscription work with community.postgresql (postgresql_alter_system,
          pg_hba.conf block, postgresql_user, postgresql_privs, postgresql_publication,
          postgresql_subscription) in an equivalent playbook on its own copy of the tables

Every time is reported minus the floor of the same round; each figure is the median of the
rounds. Every timed run must report changed=0 on every host, or the benchmark fails.

    .venv/bin/python benchmarks/rollout_bench.py [--quick] [--sizes 10,100,1000] [--rounds 3]
                                                [--json FILE]
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

HOSTS = ['pub', 'sub1', 'sub2']
PUB, SUBS = 'tablesync-bench-pub', ['tablesync-bench-sub1', 'tablesync-bench-sub2']
PASSWORD = 'bench-only-Qm4vX8rT2k'  # throw-away containers only
GOAL_RATIO = 1.2
# issue 17: the idempotent re-run no slower than the community.postgresql playbook
GOAL_VS_COMMUNITY = 1.0

FLOOR_PLAYBOOK = """---
- name: Ansible's floor - one task on every host
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""

# community.postgresql doing the same publication/subscription work: server setting, pg_hba.conf
# access for the replication role, the role with SELECT on the tables, the publication, one
# subscription per subscriber. No module there creates the subscribers' tables from the
# publisher's definitions: the benchmark creates them beforehand (outside the timed runs).
THEIRS_PLAYBOOK = """---
- name: Publisher
  hosts: tablesync-bench-pub
  gather_facts: false
  become: true
  become_user: postgres
  handlers:
    - name: Reload
      community.postgresql.postgresql_query:
        query: SELECT pg_reload_conf()
  tasks:
    - name: Logical WAL
      community.postgresql.postgresql_alter_system:
        param: wal_level
        value: logical
    - name: Replication access in pg_hba.conf
      become_user: root
      ansible.builtin.blockinfile:
        path: /etc/postgresql/15/main/pg_hba.conf
        marker: "# {mark} community.postgresql benchmark"
        insertbefore: BOF
        block: |-
          {% for ip in cp_subscriber_ips %}
          host {{ cp_db }} cp_replicator {{ ip }}/32 scram-sha-256
          {% endfor %}
      notify: Reload
    - name: Replication role
      community.postgresql.postgresql_user:
        name: cp_replicator
        password: "{{ cp_password }}"
        role_attr_flags: LOGIN,REPLICATION
        login_db: "{{ cp_db }}"
      no_log: true
    - name: USAGE on the tables' schema
      community.postgresql.postgresql_privs:
        login_db: "{{ cp_db }}"
        type: schema
        objs: bench
        privs: USAGE
        roles: cp_replicator
    - name: SELECT on the published tables
      community.postgresql.postgresql_privs:
        login_db: "{{ cp_db }}"
        type: table
        schema: bench
        objs: "{{ cp_tables | map('regex_replace', '^bench[.]', '') | join(',') }}"
        privs: SELECT
        roles: cp_replicator
    - name: Publication
      community.postgresql.postgresql_publication:
        name: "{{ cp_db }}"
        login_db: "{{ cp_db }}"
        tables: "{{ cp_tables }}"

- name: Subscribers
  hosts: tablesync-bench-sub1:tablesync-bench-sub2
  gather_facts: false
  become: true
  become_user: postgres
  tasks:
    - name: Subscription
      community.postgresql.postgresql_subscription:
        name: "{{ cp_db }}_{{ inventory_hostname | regex_replace('^tablesync-bench-', '') }}"
        login_db: "{{ cp_db }}"
        publications: ["{{ cp_db }}"]
        connparams:
          host: "{{ cp_publisher_ip }}"
          port: 5432
          user: cp_replicator
          password: "{{ cp_password }}"
          dbname: "{{ cp_db }}"
        state: present
"""

RECAP = re.compile(r'^(\S+)\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)',
                   re.M)
PROFILE = re.compile(r'^(.+?) -+ (\d+\.\d+)s\s*$', re.M)  # long names get few dashes


def table_names(n):
    return ['bench.t%04d' % i for i in range(1, n + 1)]


def tables_sql(n, rows):
    # a COMMIT every 100 tables: 1000 tables in one transaction would need more locks than the
    # default lock table holds
    return """CREATE SCHEMA bench;
DO $$ BEGIN
  FOR i IN 1..%d LOOP
    EXECUTE format('CREATE TABLE bench.t%%s (id int PRIMARY KEY, v text NOT NULL)',
                   lpad(i::text, 4, '0'));
    IF %s THEN
      EXECUTE format('INSERT INTO bench.t%%s VALUES (1, %%L)', lpad(i::text, 4, '0'), 'row ' || i);
    END IF;
    IF i %% 100 = 0 THEN COMMIT; END IF;
  END LOOP;
END $$;
""" % (n, 'true' if rows else 'false')


class _Unreachable(Exception):
    pass


class Runner:
    def __init__(self, hosts, workdir):
        self.hosts = hosts
        self.workdir = workdir
        self.env = ansible_env({
            'ANSIBLE_CALLBACKS_ENABLED': 'ansible.posix.profile_tasks',
            'PROFILE_TASKS_TASK_OUTPUT_LIMIT': 'all',
            'PROFILE_TASKS_SORT_ORDER': 'none',
        })
        self.floor = self._write('floor.yml', FLOOR_PLAYBOOK)
        self.theirs = self._write('theirs.yml', THEIRS_PLAYBOOK)
        self.site = os.path.join(ROOT, 'playbooks', 'site.yml')
        self.log = open(os.path.join(workdir, 'ansible.log'), 'w')
        self.retries = []

    def _write(self, name, text):
        path = os.path.join(self.workdir, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def inventory(self, size):
        """One inventory for the size: our sync set and the variables of the other playbook."""
        tables = table_names(size)
        variables = {
            'tablesync_replication_role': 'tablesync_replicator',
            'tablesync_replication_password': PASSWORD,
            # room for the other playbook's subscriptions on the same servers
            'sync_model_limit_headroom': 10,
            'logical_subscriber_wait_timeout': 1800,
            'tablesync_sync_sets': [{
                'name': 'bench',
                'method': 'logical',
                'source': {'host': PUB, 'database': 'bench_n%d' % size},
                'targets': [{'host': s, 'database': 'bench_n%d' % size} for s in SUBS],
                'tables': tables,
            }],
            'cp_db': 'cpbench_n%d' % size,
            'cp_tables': tables,
            'cp_password': PASSWORD,
            'cp_publisher_ip': self.hosts.ip('pub'),
            'cp_subscriber_ips': [self.hosts.ip(h) for h in ('sub1', 'sub2')],
        }
        return self._write('inventory_n%d.yml' % size, inventory_yaml(self.hosts, variables))

    def play(self, playbook, inventory, what, expect_unchanged=True, attempts=3):
        """Run a playbook; returns (seconds, {task: seconds}). Fails on failure, and on any
        change when ``expect_unchanged``. A run that lost a host (``podman exec`` exits 255 on
        an overloaded machine: UNREACHABLE) is run again, up to ``attempts`` times in all."""
        for attempt in range(1, attempts + 1):
            try:
                return self._play(playbook, inventory, what, expect_unchanged)
            except _Unreachable:
                if attempt == attempts:
                    raise
                self.retries.append(what)
                log('%s: a host was unreachable (podman exec failed), running it again' % what)
        raise AssertionError('not reached')

    def first_rollout(self, inventory, what, attempts=3):
        """The untimed first site.yml run, run again when it fails: on an overloaded machine
        PostgreSQL's table synchronization workers fail now and then (for example "replication
        slot ... already exists" after a worker restart) and retry by themselves, while
        pg_subscription's wait_for_sync stops at the first worker error. Returns the seconds of
        all attempts together."""
        total = 0.0
        for attempt in range(1, attempts + 1):
            start = time.perf_counter()
            try:
                self.play(self.site, inventory, what, expect_unchanged=False)
                return total + time.perf_counter() - start
            except RuntimeError as exc:
                total += time.perf_counter() - start
                if attempt == attempts:
                    raise
                self.retries.append(what)
                log('%s failed, running it again: %s' % (what, str(exc).splitlines()[0]))
        raise AssertionError('not reached')

    def _play(self, playbook, inventory, what, expect_unchanged):
        start = time.perf_counter()
        proc = subprocess.run(['ansible-playbook', '-i', inventory, playbook], cwd=ROOT,
                              env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)
        elapsed = time.perf_counter() - start
        self.log.write('=== %s (%.2f s, rc %d)\n%s\n'
                       % (what, elapsed, proc.returncode, proc.stdout))
        self.log.flush()
        recap = RECAP.findall(proc.stdout)
        if proc.returncode == 4 and any(int(u) for _h, _o, _c, u, _f in recap):
            raise _Unreachable(what)
        if proc.returncode != 0 or not recap:
            raise RuntimeError('%s failed (rc %d):\n%s'
                               % (what, proc.returncode, proc.stdout[-6000:]))
        changed = dict((host, int(c)) for host, _ok, c, _u, _f in recap if int(c))
        if expect_unchanged and changed:
            raise RuntimeError('%s was not idempotent (changed: %s); see %s'
                               % (what, changed, self.log.name))
        profile = {}
        tail = proc.stdout[proc.stdout.rfind('PLAY RECAP'):]
        for name, secs in PROFILE.findall(tail):
            profile[name.strip()] = profile.get(name.strip(), 0.0) + float(secs)
        return elapsed, profile


def prepare_size(hosts, size, rows):
    db, cpdb = 'bench_n%d' % size, 'cpbench_n%d' % size
    for dbname in (db, cpdb):
        hosts.psql('pub', 'CREATE DATABASE %s' % dbname)
        hosts.psql('pub', tables_sql(size, rows), dbname=dbname)
    # the other playbook's target tables (ours are created by site.yml from the publisher's)
    for sub in ('sub1', 'sub2'):
        hosts.psql(sub, 'CREATE DATABASE %s' % cpdb)
        hosts.psql(sub, tables_sql(size, False), dbname=cpdb)


def wait_synced(hosts, size, timeout=900):
    """community.postgresql's subscription does not wait for the initial copy: wait here."""
    deadline = time.time() + timeout
    cpdb = 'cpbench_n%d' % size
    for sub in ('sub1', 'sub2'):
        while True:
            left = hosts.psql(sub, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'",
                              dbname=cpdb)[0]
            total = hosts.psql(sub, 'SELECT count(*) FROM pg_subscription_rel', dbname=cpdb)[0]
            if left == '0' and total == str(size):
                break
            if time.time() > deadline:
                raise RuntimeError('%s: %s of %s tables not synced (see its server log)'
                                   % (sub, left, total))
            time.sleep(2)


def drop_size(hosts, size):
    """Drop both subscriptions (and their slots), then the size's databases."""
    for sub in ('sub1', 'sub2'):
        for dbname in ('bench_n%d' % size, 'cpbench_n%d' % size):
            for name in hosts.psql(sub, 'SELECT subname FROM pg_subscription s JOIN pg_database d '
                                   'ON d.oid = s.subdbid WHERE d.datname = current_database()',
                                   dbname=dbname):
                hosts.psql(sub, 'DROP SUBSCRIPTION "%s"' % name, dbname=dbname)
            hosts.psql(sub, 'DROP DATABASE %s' % dbname)
    for dbname in ('bench_n%d' % size, 'cpbench_n%d' % size):
        hosts.psql('pub', 'DROP DATABASE %s' % dbname)


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0


def log(msg):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), msg), file=sys.stderr)
    sys.stderr.flush()


def measure(args, hosts, runner):
    results = []
    for size in args.sizes:
        log('size %d: preparing' % size)
        prepare_size(hosts, size, rows=True)
        inventory = runner.inventory(size)
        first_ours = runner.first_rollout(inventory, 'site.yml first run n=%d' % size)
        first_theirs, _p = runner.play(runner.theirs, inventory, 'theirs first run n=%d' % size,
                                       expect_unchanged=False)
        wait_synced(hosts, size)
        log('size %d: rolled out (site.yml %.1f s, community %.1f s)' % (size, first_ours,
                                                                         first_theirs))
        runs = {'floor': [], 'ours': [], 'theirs': [], 'ours_net': [], 'theirs_net': [],
                'profiles': [], 'theirs_profiles': []}
        for rnd in range(args.rounds):
            floor, _p = runner.play(runner.floor, inventory, 'floor n=%d round %d' % (size, rnd))
            ours, profile = runner.play(runner.site, inventory, 'site.yml n=%d round %d'
                                        % (size, rnd))
            theirs, theirs_profile = runner.play(runner.theirs, inventory, 'theirs n=%d round %d'
                                                 % (size, rnd))
            runs['floor'].append(floor)
            runs['ours'].append(ours)
            runs['theirs'].append(theirs)
            runs['ours_net'].append(ours - floor)
            runs['theirs_net'].append(theirs - floor)
            runs['profiles'].append(profile)
            runs['theirs_profiles'].append(theirs_profile)
            log('size %d round %d: floor %.2f s, site.yml %.2f s, community %.2f s (load %s)'
                % (size, rnd, floor, ours, theirs, load_average()))
        mid = sorted(range(args.rounds), key=lambda i: runs['ours_net'][i])[(args.rounds - 1) // 2]
        results.append({'size': size, 'first_ours': first_ours, 'first_theirs': first_theirs,
                        'floor': median(runs['floor']), 'ours': median(runs['ours_net']),
                        'theirs': median(runs['theirs_net']),
                        'ours_all': runs['ours_net'], 'theirs_all': runs['theirs_net'],
                        'profile': runs['profiles'][mid],
                        'theirs_profile': runs['theirs_profiles'][mid]})
        drop_size(hosts, size)
    return results


def task_growth(small, big, limit=5):
    """The tasks whose time grew most between the smallest and the largest size."""
    growth = []
    for task, secs in big['profile'].items():
        growth.append((secs - small['profile'].get(task, 0.0), task, small['profile'].get(task),
                       secs))
    growth.sort(reverse=True)
    return growth[:limit]


def report(args, results, version):
    small, big = results[0], results[-1]
    rows = []
    for r in results:
        rows.append([r['size'], round(r['floor'], 2), round(r['ours'], 2),
                     round(r['ours'] / small['ours'], 2), round(r['theirs'], 2),
                     round(r['theirs'] / small['theirs'], 2), round(r['ours'] / r['theirs'], 2),
                     round(r['first_ours'], 1)])
    ours_ratio = big['ours'] / small['ours']
    worst_vs_theirs = max(r['ours'] / r['theirs'] for r in results)
    theirs_ratio = big['theirs'] / small['theirs']
    per_table_ms = (big['ours'] - small['ours']) * 1000.0 / (big['size'] - small['size'])
    theirs_per_table_ms = (big['theirs'] - small['theirs']) * 1000.0 / (big['size'] - small['size'])
    info = machine_info()
    description = (
        'Wall time of an idempotent re-run (nothing to change) of `playbooks/site.yml` for one '
        'logical sync set - a publisher and two subscribers, three systemd containers from '
        '`localhost/tablesync-pg:bookworm` (PostgreSQL %s) reached with the '
        '`containers.podman.podman` connection - as the set grows from %d to %d tables. '
        'Baseline: the same run at %d tables (the goal is scale-independence), and next to it '
        'the same publication/subscription work done with community.postgresql '
        '(`postgresql_alter_system` wal_level, a pg_hba.conf block, `postgresql_user`, '
        '`postgresql_privs`, `postgresql_publication`, `postgresql_subscription`) in an '
        'equivalent playbook on its own copy of the tables (its subscribers\' tables are created '
        'by the benchmark: no community module creates them from the publisher\'s definitions; '
        'site.yml also runs preflight checks, the cleanup of removed sets and a status report). '
        'Every time is minus Ansible\'s floor measured in the same round (a playbook with one '
        '`ping` task on the same 3 hosts); figures are medians of %d interleaved rounds, and '
        'every timed run reported changed=0 on every host. Machine: %s, %s cores, %s RAM; '
        'load average at the end %s.' % (
            version, small['size'], big['size'], small['size'],
            args.rounds, info['cpu'], info['cores'], info['ram'], load_average()))
    notes = [
        'ours %d/%d tables: %.2fx; community.postgresql %d/%d tables: %.2fx; ours vs '
        'community.postgresql at %d tables: %.2fx' % (
            big['size'], small['size'], ours_ratio, big['size'], small['size'], theirs_ratio,
            big['size'], big['ours'] / big['theirs']),
        'marginal cost per table of an idempotent re-run: ours %.2f ms, community.postgresql '
        '%.2f ms (difference of the medians between %d and %d tables)' % (
            per_table_ms, theirs_per_table_ms, small['size'], big['size']),
        'per-round net seconds: ' + '; '.join(
            'n=%d ours %s, community %s' % (r['size'], ' '.join('%.2f' % v for v in r['ours_all']),
                                            ' '.join('%.2f' % v for v in r['theirs_all']))
            for r in results),
    ]
    notes.append('site.yml / community.postgresql, worst size: %.2fx (goal %.1fx); distinct '
                 'task names (run or skipped) in the median round at %d tables: site.yml %d, '
                 'community.postgresql %d' % (
                     worst_vs_theirs, GOAL_VS_COMMUNITY, small['size'], len(small['profile']),
                     len(small.get('theirs_profile') or {})))
    growth = task_growth(small, big)
    notes.append('site.yml tasks that grew most from %d to %d tables (profile_tasks, median '
                 'round): ' % (small['size'], big['size']) + '; '.join(
                     '%s: %s -> %.2f s' % (task, '-' if s is None else '%.2f' % s, b)
                     for _g, task, s, b in growth))
    labels = [str(r['size']) for r in results]
    result = make_result(
        'rollout', 'Idempotent site.yml re-run vs sync set size',
        description,
        ['tables', 'floor s', 'site.yml s (net)', 'site.yml vs smallest',
         'community.postgresql s (net)', 'community vs smallest', 'site.yml / community',
         'first rollout s'],
        rows,
        goal='site.yml re-run <= %.1fx the community.postgresql playbook at every size, and at '
             '%d tables within %.1fx of %d tables' % (
                 GOAL_VS_COMMUNITY, big['size'], GOAL_RATIO, small['size']),
        goal_met=ours_ratio <= GOAL_RATIO and worst_vs_theirs <= GOAL_VS_COMMUNITY,
        charts=[chart('rollout.png', 'Idempotent re-run, net of Ansible\'s floor', labels,
                      {'site.yml': [r['ours'] for r in results],
                       'community.postgresql': [r['theirs'] for r in results]},
                      ylabel='seconds', kind='line')],
        notes=notes)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    add_standard_arguments(parser)
    parser.add_argument('--sizes', help='table counts, comma-separated (default 10,100,1000; '
                        'quick: 2,20)')
    parser.add_argument('--rounds', type=int, help='timed rounds per size (default 3; quick: 1)')
    parser.add_argument('--keep-log', action='store_true',
                        help='print where the ansible-playbook output is kept')
    args = parser.parse_args()
    args.sizes = [int(s) for s in (args.sizes or ('2,20' if args.quick else '10,100,1000'))
                  .split(',')]
    args.rounds = args.rounds or (1 if args.quick else 3)
    if len(args.sizes) < 2:
        parser.error('--sizes needs at least two sizes')

    workdir = tempfile.mkdtemp(prefix='rollout-bench-')
    with BenchContainers(HOSTS, log_dir=workdir) as hosts:
        version = hosts.server_version('pub')
        runner = Runner(hosts, workdir)
        log('containers up: %s; ansible output in %s' % (
            ', '.join('%s %s' % (h, hosts.ip(h)) for h in HOSTS), runner.log.name))
        results = measure(args, hosts, runner)
    result = report(args, results, version)
    if runner.retries:
        result['notes'].append('runs repeated after a host was unreachable (podman exec failed '
                               'under load; the repeated run counts): ' + ', '.join(runner.retries))
    print_table(result)
    write_json(args.json, result)
    if args.keep_log:
        print('ansible-playbook output: %s' % runner.log.name)


if __name__ == '__main__':
    main()
