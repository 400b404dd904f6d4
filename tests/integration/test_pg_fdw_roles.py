"""The fdw_source and fdw_consumer roles against two real clusters.

Two inventory hosts on this machine: ``src`` (the publisher fixture) and ``dst`` (the
subscriber fixture), connected locally, reaching their clusters through the Unix socket as the
postgres OS user (become via su). The systemd timers are not managed here (no systemd in the
test environment); their statements are checked by running them.
"""
import json
import os
import subprocess
import tempfile

import pytest
import yaml
from psycopg2 import sql

from runner import BINDIR, ansible_env
from test_pg_fdw import HOSTILE_TABLE, FdwEnv

# The roles become the postgres OS user, which cannot run the test venv's interpreter (under
# /root): the managed "hosts" use the system Python with Debian's python3-psycopg2, as the
# real database hosts do (the postgresql_server role installs it there).
HOST_PYTHON = '/usr/bin/python3'


def _host_python_ready():
    return subprocess.run([HOST_PYTHON, '-c', 'import psycopg2'], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode == 0


pytestmark = pytest.mark.skipif(
    not os.path.exists(HOST_PYTHON) or not _host_python_ready(),
    reason='the roles run modules as the postgres OS user with %s, which needs psycopg2 '
           '(apt-get install python3-psycopg2)' % HOST_PYTHON)

PLAYBOOK = [
    {'name': 'fdw sources', 'hosts': 'all', 'gather_facts': False,
     'roles': [{'role': 'tablesync.postgresql.fdw_source'}]},
    {'name': 'fdw consumers', 'hosts': 'all', 'gather_facts': False,
     'roles': [{'role': 'tablesync.postgresql.fdw_consumer'}]},
]


def sync_sets(env, copyset_state='present'):
    source = {'host': 'src', 'database': env.srcdb}
    targets = [{'host': 'dst', 'database': env.dstdb}]
    return [
        {'name': 'shop', 'method': 'fdw', 'source': source, 'targets': targets,
         'tables': ['sales.orders']},
        {'name': 'copyset', 'method': 'fdw', 'state': copyset_state, 'source': source,
         'targets': targets,
         'tables': ['sales.' + HOSTILE_TABLE, {'name': 'sales.audit', 'columns': ['id']}]},
    ]


def inventory(env, publisher, subscriber, **extra):
    common = {'ansible_connection': 'local', 'ansible_python_interpreter': HOST_PYTHON,
              'ansible_become_method': 'su', 'tablesync_address': '127.0.0.1'}
    hosts = {
        'src': dict(common, tablesync_port=publisher.port, fdw_source_unix_socket=publisher.sockdir,
                    fdw_consumer_unix_socket=publisher.sockdir),
        'dst': dict(common, tablesync_port=subscriber.port,
                    fdw_source_unix_socket=subscriber.sockdir,
                    fdw_consumer_unix_socket=subscriber.sockdir),
    }
    variables = {
        'tablesync_sync_sets': sync_sets(env),
        'tablesync_fdw_role': env.remote_user + '_role',
        'tablesync_fdw_password': env.password,
        'tablesync_fdw_writable_sets': ['shop'],
        'fdw_consumer_local_copies': {'copyset': {'on_calendar': '*:0/5'}},
        'fdw_consumer_manage_timers': False,
        'ansible_shell_allow_world_readable_temp': True,
    }
    variables.update(extra)
    return {'all': {'hosts': hosts, 'vars': variables}}


def run_playbook(env, publisher, subscriber, check=False, expect_ok=True, **extra):
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, content in (('inventory.yml', inventory(env, publisher, subscriber, **extra)),
                              ('site.yml', PLAYBOOK)):
            paths[name] = os.path.join(tmp, name)
            with open(paths[name], 'w') as f:
                yaml.safe_dump(content, f, sort_keys=False, allow_unicode=True)
        cmd = [os.path.join(BINDIR, 'ansible-playbook'), '-i', paths['inventory.yml'],
               paths['site.yml']] + (['--check', '--diff'] if check else [])
        env_vars = ansible_env({'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json'})
        proc = subprocess.run(cmd, env=env_vars, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=900, check=False)
    data = json.loads(proc.stdout[proc.stdout.find('{'):])
    if expect_ok:
        assert proc.returncode == 0, failures(data) or proc.stdout[-5000:] + proc.stderr[-3000:]
    else:
        assert proc.returncode != 0, 'the run was expected to fail'
    return data


def failures(data):
    found = []
    for play in data.get('plays', []):
        for task in play['tasks']:
            for host, result in task['hosts'].items():
                if result.get('failed') or result.get('unreachable'):
                    found.append('%s %s: %s' % (host, task['task']['name'],
                                                result.get('msg') or result))
    return '\n'.join(found)


def changed_tasks(data):
    return sorted(set('%s: %s' % (host, task['task']['name'])
                      for play in data['plays'] for task in play['tasks']
                      for host, result in task['hosts'].items() if result.get('changed')))


def test_roles_deploy_read_write_copies_idempotent_check_mode_and_removal(publisher, subscriber):
    env = FdwEnv(publisher, subscriber)
    role = env.remote_user + '_role'
    first = run_playbook(env, publisher, subscriber)
    assert changed_tasks(first)

    # source: a least-privilege login role and the pg_hba entry for the consumer
    assert env.src_sql('SELECT rolcanlogin, rolsuper, rolreplication FROM pg_roles '
                       'WHERE rolname = %s', (role,)) == [(True, False, False)]
    assert env.src_sql(
        "SELECT has_table_privilege(%s, 'sales.orders', 'INSERT'), "
        "has_table_privilege(%s, 'sales.audit', 'SELECT'), "
        "has_table_privilege(%s, 'sales.audit', 'INSERT')", (role,) * 3) == [(True, True, False)]
    hba = open(publisher.query('SHOW hba_file')[0][0]).read()
    assert 'fdw access' in hba and '"%s"' % env.srcdb in hba and '127.0.0.1/32' in hba

    # consumer: tuned server options, the plain set reads and writes under the tables' names
    options = dict(o.split('=', 1) for o in env.dst_sql(
        "SELECT srvoptions FROM pg_foreign_server WHERE srvname = 'tablesync_shop'")[0][0])
    assert options['fetch_size'] == '10000' and options['batch_size'] == '1000'
    assert 'updatable' not in options
    assert env.dst_sql('SELECT count(*) FROM sales.orders') == [(10,)]
    env.dst_sql("INSERT INTO sales.orders VALUES (50, 'from the consumer', 5)")
    assert env.src_sql('SELECT note FROM sales.orders WHERE id = 50') == [('from the consumer',)]

    # the copy set: materialized views under the tables' names, foreign tables aside, read-only
    hostile = sql.Identifier('sales', HOSTILE_TABLE)
    env.src_sql(sql.SQL('INSERT INTO {} VALUES (1), (2)').format(hostile))
    assert env.dst_sql(
        "SELECT matviewname FROM pg_matviews WHERE schemaname = 'sales' ORDER BY 1") == [
        (HOSTILE_TABLE,), ('audit',)]
    assert env.foreign_tables('tablesync_fdw_sales') == [HOSTILE_TABLE, 'audit']
    assert env.dst_sql(sql.SQL('SELECT count(*) FROM {}').format(hostile)) == [(0,)]
    copies = [t for play in first['plays'] for t in play['tasks']
              if t['task']['name'].endswith('Local copies of the copy sets (filled when created)')]
    refresh_sql = copies[0]['hosts']['dst']['results'][0]['refresh_sql']
    assert refresh_sql[0].startswith('REFRESH MATERIALIZED VIEW CONCURRENTLY "sales"."Order')
    for statement in refresh_sql:  # what the timer runs
        env.dst_sql(statement)
    assert env.dst_sql(sql.SQL('SELECT count(*) FROM {}').format(hostile)) == [(2,)]
    writes = 'INSERT INTO tablesync_fdw_sales.audit VALUES (1)'
    try:
        env.dst_sql(writes)
        raise AssertionError('a read-only set accepted a write')
    except Exception as e:  # noqa: BLE001 - psycopg2 error class depends on the check
        assert 'does not allow inserts' in str(e)

    # second run: nothing changes
    assert changed_tasks(run_playbook(env, publisher, subscriber)) == []

    # check mode of a layout switch (shop gets a local copy): the catalog does not change
    check = run_playbook(env, publisher, subscriber, check=True,
                         fdw_consumer_local_copies={'copyset': {}, 'shop': {}})
    assert any('Drop foreign tables left' in t for t in changed_tasks(check))
    assert env.foreign_tables('sales') == ['orders']
    assert env.dst_sql("SELECT count(*) FROM pg_matviews WHERE matviewname = 'orders'") == [(0,)]

    # the switch for real, then back: the data stays reachable under the same name
    run_playbook(env, publisher, subscriber, fdw_consumer_local_copies={'copyset': {}, 'shop': {}})
    assert env.dst_sql("SELECT count(*) FROM pg_matviews WHERE matviewname = 'orders'") == [(1,)]
    assert env.dst_sql('SELECT count(*) FROM sales.orders') == [(11,)]
    run_playbook(env, publisher, subscriber)
    assert env.foreign_tables('sales') == ['orders']
    assert env.dst_sql('SELECT count(*) FROM sales.orders') == [(11,)]

    # the copy set is removed: copies, server, mappings, foreign tables go; grants are revoked
    run_playbook(env, publisher, subscriber,
                 tablesync_sync_sets=sync_sets(env, copyset_state='absent'))
    assert env.dst_sql("SELECT count(*) FROM pg_foreign_server WHERE srvname = "
                       "'tablesync_copyset'") == [(0,)]
    assert env.dst_sql("SELECT count(*) FROM pg_matviews WHERE schemaname = 'sales'") == [(0,)]
    assert env.foreign_tables('tablesync_fdw_sales') == []
    assert env.src_sql("SELECT has_table_privilege(%s, 'sales.audit', 'SELECT')",
                       (role,)) == [(False,)]
