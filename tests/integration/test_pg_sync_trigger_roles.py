"""The trigger_target and trigger_source roles on two inventory hosts backed by the two clusters.

Both "hosts" are this machine (local connection, become with su as root); each one's role vars
point at its cluster's socket and port. systemd is not running here, so the flush timers are
left to the Molecule scenario (trigger_source_manage_timers: false); the deploy-time flush
applies the queue instead.
"""
import json
import os
import subprocess
import tempfile

import pytest
import yaml

from runner import BINDIR, ansible_env

PASSWORD = 'Tr1gger-r0le-pw'
SYSTEM_PYTHON = '/usr/bin/python3'


def write_inventory(path, source, target):
    def host(cluster, prefix):
        # the venv's interpreter lives under /root: the postgres user runs the system one
        return {'ansible_connection': 'local', 'ansible_python_interpreter': SYSTEM_PYTHON,
                'ansible_become_method': 'su', 'tablesync_address': cluster.host,
                'tablesync_port': cluster.port,
                '%s_unix_socket' % prefix: cluster.sockdir}
    inventory = {'all': {'hosts': {'src': host(source, 'trigger_source'),
                                   'dst': host(target, 'trigger_target')}}}
    with open(path, 'w') as f:
        yaml.safe_dump(inventory, f)


def playbook(sets, **source_vars):
    common = {'tablesync_sync_sets': sets, 'tablesync_trigger_password': PASSWORD}
    return [
        {'name': 'targets', 'hosts': 'dst', 'gather_facts': False, 'vars': common,
         'roles': ['tablesync.postgresql.trigger_target']},
        {'name': 'sources', 'hosts': 'src', 'gather_facts': False,
         'vars': dict(common, trigger_source_manage_timers=False, **source_vars),
         'roles': ['tablesync.postgresql.trigger_source']},
    ]


def run_playbook(source, target, sets, check=False, **source_vars):
    with tempfile.TemporaryDirectory() as tmp:
        inventory = os.path.join(tmp, 'inventory.yml')
        path = os.path.join(tmp, 'site.yml')
        write_inventory(inventory, source, target)
        with open(path, 'w') as f:
            yaml.safe_dump(playbook(sets, **source_vars), f)
        env = ansible_env({'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
                           'ANSIBLE_PIPELINING': '1'})
        cmd = [os.path.join(BINDIR, 'ansible-playbook'), '-i', inventory, path]
        if check:
            cmd.append('--check')
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=600, check=False)
    out = proc.stdout
    data = json.loads(out[out.find('{'):]) if '{' in out else {}
    return proc.returncode, data.get('stats', {}), out + proc.stderr + '\n'.join(failures(data))


def failures(data):
    """The messages of the failed tasks (and loop items), to assert on and to show."""
    found = []
    for play in data.get('plays', []):
        for task in play.get('tasks', []):
            for result in task.get('hosts', {}).values():
                for item in [result] + result.get('results', []):
                    if item.get('failed'):
                        found.append('%s: %s' % (task['task']['name'], item.get('msg')))
    return found


@pytest.mark.skipif(subprocess.run([SYSTEM_PYTHON, '-c', 'import psycopg2'],
                                   check=False).returncode != 0,
                    reason='the system Python (run as postgres) has no psycopg2')
def test_roles_deploy_sync_and_stay_idempotent(publisher, subscriber):
    for cluster, db in ((publisher, 'trg_role_src'), (subscriber, 'trg_role_dst')):
        cluster.execute('CREATE DATABASE %s' % db)
        cluster.execute('CREATE TABLE orders (id int PRIMARY KEY, note text, total numeric);'
                        'CREATE TABLE other (id int PRIMARY KEY)', dbname=db)
    publisher.execute("INSERT INTO orders VALUES (1, 'before', 1.5)", dbname='trg_role_src')
    sets = [{'name': 'role_orders', 'method': 'trigger',
             'source': {'host': 'src', 'database': 'trg_role_src'},
             'targets': [{'host': 'dst', 'database': 'trg_role_dst'}],
             'tables': ['public.orders']}]

    rc, _stats, output = run_playbook(publisher, subscriber, sets, check=True)
    assert rc == 0, output
    assert publisher.query("SELECT to_regnamespace('tablesync')", dbname='trg_role_src') == [(None,)]

    rc, stats, output = run_playbook(publisher, subscriber, sets)
    assert rc == 0 and stats['src']['changed'] and stats['dst']['changed'], output
    assert PASSWORD not in output
    assert subscriber.query('SELECT * FROM orders', dbname='trg_role_dst') == [(1, 'before', 1.5)]
    hba = subscriber.query('SHOW hba_file')[0][0]
    with open(hba) as f:
        assert 'tablesync_trigger' in f.read()

    publisher.execute("INSERT INTO orders VALUES (2, 'after', 2); UPDATE orders SET total = 3 "
                      "WHERE id = 1", dbname='trg_role_src')
    rc, stats, output = run_playbook(publisher, subscriber, sets)
    assert rc == 0 and stats['src']['changed'] == 1 and stats['dst']['changed'] == 0, output
    assert subscriber.query('SELECT * FROM orders ORDER BY id', dbname='trg_role_dst') == \
        publisher.query('SELECT * FROM orders ORDER BY id', dbname='trg_role_src')

    rc, stats, output = run_playbook(publisher, subscriber, sets)
    assert rc == 0 and stats['src']['changed'] == 0 and stats['dst']['changed'] == 0, output

    subscriber.execute('CREATE DATABASE trg_role_dst2')
    subscriber.execute('CREATE TABLE orders (id int PRIMARY KEY)', dbname='trg_role_dst2')
    second = {'host': 'dst', 'database': 'trg_role_dst2'}
    two_targets = [dict(sets[0], targets=sets[0]['targets'] + [second])]
    rc, _stats, output = run_playbook(publisher, subscriber, two_targets)
    assert rc != 0 and 'a trigger set has exactly one target' in output

    gone = [dict(sets[0], state='absent')]
    rc, stats, output = run_playbook(publisher, subscriber, gone)
    assert rc == 0 and stats['src']['changed'], output
    assert publisher.query("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tablesync%%'",
                           dbname='trg_role_src') == [(0,)]
    with open(hba) as f:
        assert 'tablesync_trigger' not in f.read()
