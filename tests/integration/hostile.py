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
KEYS = [k for k, _ in NAMES]
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


def start_cluster(name, base, **conf):
    """A throw-away cluster with extra settings (appended to postgresql.auto.conf, restarted)."""
    cluster = Cluster(name, base).start()
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
