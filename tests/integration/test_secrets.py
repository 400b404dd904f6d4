# -*- coding: utf-8 -*-
"""Passwords never show: an automated scan of everything a run leaves behind.

Two own clusters (their superuser has a distinctive login password) log every statement
(``log_statement = all``) and the statement of every error (``log_min_error_statement``).
The modules run with distinctive passwords (login, replication, fdw, trigger, wrong ones) in a
play at ``-vvv --diff``, again with the JSON callback (results with ``queries``, ``diff``,
``invocation``), including statements that fail on the server while carrying a secret; then
playbooks/site.yml runs the roles with their own passwords at ``-vvv --diff``. While this
happens, threads sample ``ps -eo args`` and the query texts of pg_stat_activity of both
clusters. Afterwards none of the passwords may be found in: the outputs, the results, both
server logs, the bodies of all functions (``prosrc``) of every database, the sampled query
texts and process arguments.

Passwords legitimately stored by PostgreSQL (user mapping options, subscription conninfo,
role verifiers as SCRAM) are not scanned: that is where they must be.

Each password has an alphanumeric core that survives any quoting/escaping, followed by quote
characters and a backslash: a leak is found whatever escaping it went through.
"""
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from hostile import (host_python_ready, prepare_site, run_playbook, run_site, site_inventory,
                     start_cluster, task_results)

P = 'tablesync.postgresql.'
SUFFIX = "-'q\" \\x"
CORES = {
    'login': 'tsLOGINcore7Qk',
    'repl': 'tsREPLcore3Vx',
    'repl2': 'tsREPLtwo9Hj',
    'fdw': 'tsFDWcore8Lm',
    'fdw2': 'tsFDWtwo4Gz',
    'trig': 'tsTRIGcore5Np',
    'trig2': 'tsTRIGtwo6Cw',
    'wrong': 'tsWRONGcore2Hd',
    'role_repl': 'tsROLEreplR1t',
    'role_fdw': 'tsROLEfdwF7s',
    'role_trig': 'tsROLEtrigT3u',
}
PW = dict((k, v + SUFFIX) for k, v in CORES.items())


def leaks(text, what):
    """'<what> holds the <key> password: ...context...' for every password found in text."""
    text = text or ''
    found = []
    for key, core in sorted(CORES.items()):
        at = text.find(core)
        if at >= 0:
            found.append('%s holds the %s password: ...%s...' % (
                what, key, text[max(0, at - 300):at + 60]))
    return found


class Sampler(threading.Thread):
    """Samples process arguments and pg_stat_activity query texts until stopped."""

    def __init__(self, clusters):
        super(Sampler, self).__init__(daemon=True)
        self.clusters = clusters
        self.stop_event = threading.Event()
        self.args = set()
        self.queries = set()
        self.samples = 0
        self.error = None

    def _connect(self, cluster):
        conn = cluster.connect()
        with conn.cursor() as cur:
            cur.execute("SET log_statement = 'none'")
        return conn

    def run(self):
        conns = dict((c.name, None) for c in self.clusters)
        try:
            while not self.stop_event.is_set():
                out = subprocess.run(['ps', '-eo', 'args'], stdout=subprocess.PIPE,
                                     universal_newlines=True, check=False).stdout
                self.args.update(out.splitlines())
                for cluster in self.clusters:
                    # the roles restart the clusters: reconnect after a lost connection
                    try:
                        conns[cluster.name] = conns[cluster.name] or self._connect(cluster)
                        with conns[cluster.name].cursor() as cur:
                            cur.execute('SELECT query FROM pg_stat_activity '
                                        'WHERE pid <> pg_backend_pid()')
                            self.queries.update(r[0] for r in cur.fetchall() if r[0])
                    except psycopg2.OperationalError:
                        if conns[cluster.name] is not None:
                            conns[cluster.name].close()
                        conns[cluster.name] = None
                self.samples += 1
                time.sleep(0.05)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            for conn in conns.values():
                if conn is not None:
                    conn.close()

    def stop(self):
        self.stop_event.set()
        self.join(30)


@pytest.fixture(scope='module')
def clusters(pg_base):
    conf = dict(log_statement="'all'", log_min_error_statement="'error'",
                log_min_messages="'info'", log_connections='on')
    src = start_cluster('secrets_src', pg_base, password=PW['login'], **conf)
    dst = start_cluster('secrets_dst', pg_base, password=PW['login'], **conf)
    yield src, dst
    dst.stop('immediate')
    src.stop('immediate')


def secret(key):
    """The playbook spelling of a password: a variable (from the inventory), as in real use.
    (Passwords written literally in a playbook would be shown by ansible-playbook itself: on
    a failed task it prints the playbook lines around the task.)"""
    return '{{ secrets.%s }}' % key


def module_tasks(src, dst, generation):
    """Every module with a secret; generation 2 changes the passwords."""
    two = '2' if generation == 2 else ''
    repl, fdw, trig = secret('repl' + two), secret('fdw' + two), secret('trig' + two)
    s, d = [dict(c.login('sec'), login_password=secret('login')) for c in (src, dst)]
    source = dict(host=src.host, port=src.port, dbname='sec', user=src.user,
                  password=secret('login'))
    publisher = dict(host=src.host, port=src.port, dbname='sec', user='sec_repl', password=repl)
    target = dict(host=dst.host, port=dst.port, dbname='sec', user='sec_trig', password=trig)

    def t(name, module, args, fails=False):
        return {'name': name, P + module: args, 'ignore_errors': fails}

    return [
        t('replication role', 'pg_sync_role', dict(s, name='sec_repl', password=repl,
                                                   replication=True, select_tables=['public.t'])),
        t('publication', 'pg_publication', dict(s, name='sec_pub', tables=['public.t'])),
        t('target tables', 'pg_target_tables', dict(d, source=source, tables=['public.t'])),
        t('subscription', 'pg_subscription', dict(d, name='sec_sub', publications=['sec_pub'],
                                                  publisher=publisher, wait_for_sync=True)),
        t('fdw remote role', 'pg_sync_role', dict(s, name='sec_fdw', password=fdw,
                                                  select_tables=['public.t'])),
        t('fdw server', 'pg_fdw_server', dict(d, name='sec_srv', options=dict(
            host=src.host, port=src.port, dbname='sec'))),
        t('fdw mapping', 'pg_fdw_user_mappings', dict(d, server='sec_srv', mappings=[
            dict(role='postgres', user='sec_fdw', password=fdw)])),
        t('foreign tables', 'pg_foreign_tables', dict(d, server='sec_srv', schema='fdw',
                                                      remote_schema='public', tables=['t'])),
        t('trigger role', 'pg_sync_role', dict(d, name='sec_trig', password=trig,
                                               insert_update_delete_tables=['public.q'])),
        t('trigger set', 'pg_sync_trigger', dict(s, name='sec_set', tables=['public.q'],
                                                 target=target, backfill=True, flush=True)),
        t('compare', 'pg_table_compare', dict(d, source=source, tables=['public.t'])),
        t('sequences', 'pg_sequence_sync', dict(d, source=source, tables=['public.q'])),
        t('info', 'pg_sync_info', dict(d)),
        t('settings', 'pg_settings', dict(d, settings={'work_mem': '5MB'})),
        # statements that fail on a server while carrying a password
        t('subscription onto a taken slot', 'pg_subscription', dict(
            d, name='sec_fail', publications=['sec_pub'], publisher=publisher,
            slot_name='sec_taken'), fails=True),
        t('subscription with a wrong password', 'pg_subscription', dict(
            d, name='sec_wrong', publications=['sec_pub'],
            publisher=dict(publisher, password=secret('wrong'))), fails=True),
        t('trigger set with a wrong password', 'pg_sync_trigger', dict(
            s, name='sec_wrong', tables=['public.q'], target=dict(target, password=secret('wrong'))),
            fails=True),
        t('sequences with a wrong source password', 'pg_sequence_sync', dict(
            d, source=dict(source, password=secret('wrong')), tables=['public.q']), fails=True),
        t('mapping of a missing server', 'pg_fdw_user_mappings', dict(
            d, server='sec_missing', mappings=[dict(role='postgres', user='x',
                                                    password=secret('wrong'))]), fails=True),
    ]


INVENTORY = {'all': {'hosts': {'localhost': {'ansible_connection': 'local',
                                             'ansible_python_interpreter': sys.executable}},
                     'vars': {'secrets': PW}}}


def run_modules(tasks, **kw):
    """One play of the tasks on localhost; (output, [result with '_task'])."""
    play = [{'name': 'modules', 'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]
    rc, out, err, data = run_playbook(play, INVENTORY, **kw)
    results = []
    for _play, name, _host, result in task_results(data):
        result = dict(result)
        result['_task'] = name
        results.append(result)
    return rc, out + err, results


def prepare_modules(src, dst):
    for cluster in (src, dst):
        cluster.execute('CREATE DATABASE sec')
        cluster.execute('CREATE TABLE public.q (id serial PRIMARY KEY, v text)', dbname='sec')
    src.execute("CREATE TABLE public.t (id int PRIMARY KEY, v text); INSERT INTO public.t "
                "SELECT g, 'row ' || g FROM generate_series(1, 20) g; "
                "INSERT INTO public.q (v) VALUES ('a'), ('b')", dbname='sec')
    src.execute("SELECT pg_create_logical_replication_slot('sec_taken', 'pgoutput')", dbname='sec')


def functions_text(cluster):
    texts = []
    for (db,) in cluster.query("SELECT datname FROM pg_database WHERE datallowconn"):
        texts += [r[0] for r in cluster.query(
            "SELECT p.oid::regprocedure::text || ': ' || coalesce(prosrc, '') || "
            "coalesce(array_to_string(proconfig, ','), '') FROM pg_proc p", dbname=db)]
    return texts


@pytest.fixture(scope='module')
def runs(clusters):
    """Run everything once while sampling; returns what the scans look at."""
    src, dst = clusters
    prepare_modules(src, dst)
    sampler = Sampler([src, dst])
    sampler.start()
    found = {'outputs': [], 'results': []}
    try:
        # 1. the modules at -vvv --diff (default callback: what a user sees)
        _rc, output, _results = run_modules(module_tasks(src, dst, 1), diff=True, verbosity=3,
                                            callback='ansible.builtin.default')
        found['outputs'].append(('modules -vvv --diff', output))
        # 2. again with changed passwords, results as JSON
        _rc, output, found['results'] = run_modules(module_tasks(src, dst, 2), diff=True)
        found['outputs'].append(('modules json', output))
        # 3. the roles through site.yml at -vvv --diff
        if host_python_ready():
            prepare_site(src, dst)
            inventory = site_inventory(src, dst, tablesync_replication_password=PW['role_repl'],
                                       tablesync_fdw_password=PW['role_fdw'],
                                       tablesync_trigger_password=PW['role_trig'])
            rc, out, err, _data = run_site(inventory, diff=True, verbosity=3,
                                           callback='ansible.builtin.default')
            found['outputs'].append(('site.yml -vvv --diff', out + err))
            found['site_rc'] = rc
    finally:
        sampler.stop()
    assert sampler.error is None, sampler.error
    found['sampler'] = sampler
    found['logs'] = [(c.name, c.log_text()) for c in (src, dst)]
    found['functions'] = functions_text(src) + functions_text(dst)
    return found


def test_the_runs_did_what_they_should(runs, clusters):
    src, dst = clusters
    by_name = dict((r['_task'], r) for r in runs['results'])
    for name, result in by_name.items():
        if 'wrong' in name or 'taken' in name or 'missing' in name:
            assert result.get('failed'), (name, result)
        else:
            assert not result.get('failed'), (name, result.get('msg'))
    # the failing statement reached the server and was logged with its error
    log = dict(runs['logs'])['secrets_dst']
    assert 'replication slot "sec_taken" already exists' in log
    assert 'CREATE PUBLICATION' in dict(runs['logs'])['secrets_src']
    assert dst.query('SELECT count(*) FROM public.t', dbname='sec') == [(20,)]
    # the password change of generation 2 was applied: the new password logs in
    conn = psycopg2.connect(host=src.host, port=src.port, user='sec_fdw', password=PW['fdw2'],
                            dbname='sec')
    conn.close()
    assert runs['sampler'].samples > 20
    if 'site_rc' in runs:
        assert runs['site_rc'] == 0, runs['outputs'][-1][1][-5000:]


def test_no_password_in_outputs(runs):
    found = []
    for what, text in runs['outputs']:
        found += leaks(text, what)
    assert found == []


def test_no_password_in_results_queries_diff_invocation(runs):
    found = []
    for result in runs['results']:
        for key in ('queries', 'diff', 'invocation', 'msg'):
            found += leaks(repr(result.get(key)), '%s %s' % (result['_task'], key))
        found += leaks(repr(result), result['_task'])
    assert any(r.get('queries') for r in runs['results'])
    assert any(r.get('diff') for r in runs['results'])
    assert all('invocation' in r for r in runs['results'] if not r.get('skipped'))
    assert found == []


def test_no_password_in_server_logs(runs):
    found = []
    for name, text in runs['logs']:
        found += leaks(text, name + ' log')
    assert found == []


def test_no_password_in_function_bodies(runs):
    assert len(runs['functions']) > 1000
    assert any('tablesync' in f for f in runs['functions'])  # the trigger set's routines
    found = []
    for text in runs['functions']:
        found += leaks(text, 'function ' + text.split(':')[0])
    assert found == []


def test_no_password_in_activity_or_process_arguments(runs):
    sampler = runs['sampler']
    assert any('ansible' in a for a in sampler.args)
    assert sampler.queries
    found = []
    for text in sampler.queries:
        found += leaks(text, 'pg_stat_activity query %r' % text[:80])
    for text in sampler.args:
        found += leaks(text, 'process %r' % text[:80])
    assert found == []
