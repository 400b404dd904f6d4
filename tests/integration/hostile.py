# -*- coding: utf-8 -*-
"""Shared pieces of the hostile-input and secrets integration tests.

``NAMES`` are identifiers that break naive quoting (double quotes, single quotes, statement
separators, spaces, mixed case, unicode, dollar quotes and backslashes, exactly 63 bytes) and
``TOO_LONG`` is 64 bytes, which PostgreSQL would silently truncate. ``canary`` tables prove
that nothing the user did not ask for was executed (the injection attempts drop them).
"""
import json
import os
import subprocess
import tempfile

import pytest
import yaml
from psycopg2 import sql

from pgcluster import Cluster
from runner import BINDIR, ansible_env

CANARY = 'canary'

# id -> identifier. Every one of them must be created with exactly this name or refused.
NAMES = [
    ('dquote', 'Ta"ble'),
    ('squote', "O'Brien"),
    ('inject_ident', 'x"; DROP TABLE canary; --'),
    ('inject_literal', "x'); DROP TABLE canary; --"),
    ('space', 'Order Items'),
    ('mixedcase', 'MixedCase'),
    ('unicode', u'Zürich ✓ 東京'),
    ('dollar', 'a$$b$f$'),
    ('backslash', 'back\\slash'),
    ('max63', u'ü' * 31 + 'x'),
]
TOO_LONG = ('too64', u'ü' * 32)
ALL_NAMES = NAMES + [TOO_LONG]
KEYS = [key for key, _name in NAMES]
ALL_KEYS = KEYS + [TOO_LONG[0]]
NAME = dict(ALL_NAMES)

# A value that ends a string literal and a parenthesis, then runs a statement.
SQL_VALUE = "'); DROP TABLE canary; -- /* x */"

assert len(NAME['max63'].encode('utf-8')) == 63 and len(TOO_LONG[1].encode('utf-8')) == 64


def password(key):
    """A distinctive password per key, with quotes, a backslash, a space and SQL in it."""
    return "Pw-%s-'; DROP TABLE canary; -- \"q\" \\ $$ ü" % key


def ident(*parts):
    return sql.Identifier(*parts)


def quoted_ident(*parts):
    """"schema"."name" as SQL text (for ::regclass parameters)."""
    return '.'.join('"%s"' % part.replace('"', '""') for part in parts)


def start_cluster(name, base, password=None, **conf):
    """A throw-away cluster with extra settings (appended to postgresql.auto.conf, restarted)
    and optionally its own superuser password."""
    cluster = Cluster(name, base)
    if password:
        cluster.password = password
    cluster.start()
    if conf:
        with open(os.path.join(cluster.datadir, 'postgresql.auto.conf'), 'a') as f:
            for k, v in conf.items():
                f.write('%s = %s\n' % (k, v))
        cluster.restart()
    return cluster


def create_db(cluster, db):
    cluster.execute(sql.SQL('CREATE DATABASE {}').format(ident(db)))
    cluster.execute(sql.SQL('CREATE TABLE public.{} (id int)').format(ident(CANARY)), dbname=db)


def databases(cluster):
    return [r[0] for r in cluster.query(
        'SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1')]


def missing_canaries(*clusters):
    """Databases (of the given clusters) whose canary table is gone."""
    gone = []
    for cluster in clusters:
        for db in databases(cluster):
            if db == 'template1':
                continue
            if cluster.query("SELECT to_regclass('public.canary') IS NULL", dbname=db)[0][0]:
                gone.append('%s/%s' % (cluster.name, db))
    return gone


def plant_canary(cluster, db='postgres'):
    cluster.execute('CREATE TABLE IF NOT EXISTS public.canary (id int)', dbname=db)


def run_playbook(plays, inventory, check=False, diff=False, verbosity=0, callback=None,
                 extra_env=None, timeout=900):
    """ansible-playbook on a written inventory and playbook; (rc, stdout, stderr, json-or-None)."""
    with tempfile.TemporaryDirectory() as tmp:
        inv = os.path.join(tmp, 'inventory.yml')
        book = os.path.join(tmp, 'site.yml')
        with open(inv, 'w') as f:
            yaml.safe_dump(inventory, f, sort_keys=False, allow_unicode=True)
        with open(book, 'w') as f:
            yaml.safe_dump(plays, f, sort_keys=False, allow_unicode=True)
        cmd = [os.path.join(BINDIR, 'ansible-playbook'), '-i', inv, book]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        if verbosity:
            cmd.append('-' + 'v' * verbosity)
        env = dict(extra_env or {})
        env['ANSIBLE_STDOUT_CALLBACK'] = callback or 'ansible.posix.json'
        proc = subprocess.run(cmd, env=ansible_env(env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout,
                              check=False)
    data = None
    if callback in (None, 'ansible.posix.json') and '{' in proc.stdout:
        data = json.loads(proc.stdout[proc.stdout.find('{'):])
    return proc.returncode, proc.stdout, proc.stderr, data


def task_results(data):
    """[(play, task name, host, result)] of a json-callback run."""
    found = []
    for play in (data or {}).get('plays', []):
        for task in play.get('tasks', []):
            for host, result in task.get('hosts', {}).items():
                found.append((play['play']['name'], task['task']['name'], host, result))
    return found


def failures(data):
    found = []
    for _play, name, host, result in task_results(data):
        for item in [result] + list(result.get('results', [])):
            if item.get('failed') or item.get('unreachable'):
                found.append('%s %s: %s' % (host, name, item.get('msg') or item))
    return '\n'.join(found)


# ---- playbooks/site.yml against two local clusters --------------------------------------------

SITE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    'playbooks', 'site.yml')
# The roles become the postgres OS user, which cannot run the test venv's interpreter (under
# /root): the "hosts" use the system Python with Debian's python3-psycopg2, as real hosts do.
HOST_PYTHON = '/usr/bin/python3'
ROLE_PREFIXES = ('postgresql_server', 'logical_publisher', 'logical_subscriber', 'fdw_source',
                 'fdw_consumer', 'trigger_source', 'trigger_target', 'sync_monitoring', 'sync_model')


def host_python_ready():
    return os.path.exists(HOST_PYTHON) and subprocess.run(
        [HOST_PYTHON, '-c', 'import psycopg2'], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, check=False).returncode == 0


# Skip marker of the site.yml tests: the roles run modules as the postgres OS user with the
# host's /usr/bin/python3, which needs psycopg2.
needs_host_python = pytest.mark.skipif(
    not host_python_ready(), reason='the roles run modules as the postgres OS user with '
    '/usr/bin/python3, which needs psycopg2 (apt-get install python3-psycopg2)')


def site_host(cluster):
    """Inventory variables of a host whose cluster is ``cluster`` (socket, port, restart)."""
    restart = cluster.restart_command()
    host = {'ansible_connection': 'local', 'ansible_python_interpreter': HOST_PYTHON,
            'ansible_become_method': 'su', 'tablesync_address': cluster.host,
            'tablesync_port': cluster.port, 'postgresql_server_restart_command': restart,
            'postgresql_server_listen_addresses': cluster.host}
    for prefix in ROLE_PREFIXES:
        host['%s_unix_socket' % prefix] = cluster.sockdir
    return host


def site_sets(src_db='shop', rep_db='shop_rep', live_db='shop_live', ret_db='shop_ret',
              logical_tables=('sales.orders',)):
    """One sync set per method from host src to host dst."""
    return [
        {'name': 'orders', 'method': 'logical', 'source': {'host': 'src', 'database': src_db},
         'targets': [{'host': 'dst', 'database': rep_db}], 'tables': list(logical_tables)},
        {'name': 'stock', 'method': 'fdw', 'source': {'host': 'src', 'database': src_db},
         'targets': [{'host': 'dst', 'database': live_db}], 'tables': ['sales.stock']},
        {'name': 'returns', 'method': 'trigger', 'source': {'host': 'src', 'database': src_db},
         'targets': [{'host': 'dst', 'database': ret_db}], 'tables': ['sales.returns']},
    ]


SITE_SOURCE_DDL = '''
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id int PRIMARY KEY, note text);
CREATE TABLE sales.customers (id int PRIMARY KEY, name text);
CREATE TABLE sales.stock (id int PRIMARY KEY, qty int);
CREATE TABLE sales.returns (id int PRIMARY KEY, reason text);
INSERT INTO sales.orders SELECT g, 'order ' || g FROM generate_series(1, 5) g;
INSERT INTO sales.customers SELECT g, 'customer ' || g FROM generate_series(1, 5) g;
INSERT INTO sales.stock SELECT g, g FROM generate_series(1, 5) g;
INSERT INTO sales.returns SELECT g, 'reason ' || g FROM generate_series(1, 5) g;
'''


def prepare_site(src, dst):
    """The source database and the trigger set's target table (no role creates those)."""
    src.execute('CREATE DATABASE shop')
    src.execute(SITE_SOURCE_DDL, dbname='shop')
    dst.execute('CREATE DATABASE shop_live')
    dst.execute('CREATE DATABASE shop_ret')
    dst.execute('CREATE SCHEMA sales; CREATE TABLE sales.returns (id int PRIMARY KEY, reason text)',
                dbname='shop_ret')


def site_inventory(src, dst, sets=None, **variables):
    all_vars = {
        'tablesync_sync_sets': sets if sets is not None else site_sets(),
        'tablesync_replication_role': 'tablesync_replicator',
        'tablesync_fdw_role': 'tablesync_fdw',
        'tablesync_trigger_role': 'tablesync_trigger',
        'fdw_consumer_manage_timers': False,
        'trigger_source_manage_timers': False,
        'ansible_shell_allow_world_readable_temp': True,
    }
    all_vars.update(variables)
    return {'all': {'hosts': {'src': site_host(src), 'dst': site_host(dst)}, 'vars': all_vars}}


def run_site(inventory, playbook=None, **kw):
    """playbooks/site.yml (or the given plays) on the inventory; see run_playbook."""
    with tempfile.TemporaryDirectory() as tmp:
        inv = os.path.join(tmp, 'inventory.yml')
        with open(inv, 'w') as f:
            yaml.safe_dump(inventory, f, sort_keys=False, allow_unicode=True)
        cmd = [os.path.join(BINDIR, 'ansible-playbook'), '-i', inv, playbook or SITE]
        if kw.get('check'):
            cmd.append('--check')
        if kw.get('diff'):
            cmd.append('--diff')
        if kw.get('verbosity'):
            cmd.append('-' + 'v' * kw['verbosity'])
        if kw.get('extra_vars'):
            cmd += ['-e', json.dumps(kw['extra_vars'])]
        callback = kw.get('callback') or 'ansible.posix.json'
        env = {'ANSIBLE_STDOUT_CALLBACK': callback, 'ANSIBLE_PIPELINING': '1'}
        env.update(kw.get('extra_env') or {})
        proc = subprocess.run(cmd, env=ansible_env(env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=kw.get('timeout', 1200), check=False)
    data = None
    if callback == 'ansible.posix.json' and '{' in proc.stdout:
        data = json.loads(proc.stdout[proc.stdout.find('{'):])
    return proc.returncode, proc.stdout, proc.stderr, data


def site_clusters(name, base):
    """Fixture body: a source and a target cluster (``<name>_src``, ``<name>_dst``) with the
    site's source database and trigger target (prepare_site); yields (src, dst), stops both."""
    src = start_cluster(name + '_src', base)
    dst = start_cluster(name + '_dst', base)
    prepare_site(src, dst)
    try:
        yield src, dst
    finally:
        dst.stop('immediate')
        src.stop('immediate')


def server_files(cluster):
    """The server's postgresql.auto.conf and pg_hba.conf, to tell whether a run wrote them."""
    out = {}
    for name in ('postgresql.auto.conf', 'pg_hba.conf'):
        with open(os.path.join(cluster.datadir, name)) as f:
            out[name] = f.read()
    return out


def run_logical_site(site, variables):
    """site.yml with the site's logical set only; ``variables``: inventory variables."""
    src, dst = site
    sets = [s for s in site_sets() if s['method'] == 'logical']
    return run_site(site_inventory(src, dst, sets, **variables))
