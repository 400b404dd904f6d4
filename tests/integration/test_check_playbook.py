"""playbooks/check.yml against the two test clusters: an inventory of two hosts, both reached with
the local connection, each with its own login port (tablesync_port) and TCP login options
(tablesync_check_login). The sync set is deployed with plain SQL under the names the roles use
(publication/subscription tablesync_<set>, slot from sync_plan.slot_name)."""
import json
import os
import subprocess
import sys
import time

import pytest
from psycopg2 import sql

from pgcluster import SUPERPASS, wait_for
from runner import ROOT, run_module, run_playbook

from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import slot_name

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'check.yml')
SET = 'chk_%d' % (os.getpid() % 100000)
DB = 'chk_%d' % (os.getpid() % 100000)
SUBSCRIPTION = 'tablesync_' + SET


def inventory(publisher, subscriber, thresholds=None):
    def host(cluster):
        return {
            'ansible_connection': 'local',
            'ansible_python_interpreter': sys.executable,
            'tablesync_address': cluster.host,
            'tablesync_port': cluster.port,
            'tablesync_check_become': False,
            'tablesync_check_login': {'login_host': cluster.host, 'login_user': cluster.user,
                                      'login_password': SUPERPASS},
        }
    variables = {
        'tablesync_replication_role': publisher.user,
        'tablesync_replication_password': SUPERPASS,
        'tablesync_sync_sets': [{
            'name': SET,
            'source': {'host': 'pub', 'database': DB},
            'targets': [{'host': 'sub', 'database': DB}],
            'tables': ['sales.orders', {'name': 'sales.customers', 'columns': ['id', 'name'],
                                        'where': "country = 'NL'"}],
        }],
    }
    if thresholds is not None:
        variables['tablesync_check_thresholds'] = thresholds
    return {'all': {'hosts': {'pub': host(publisher), 'sub': host(subscriber)},
                    'vars': variables}}


def run_check(inv, *extra):
    return run_playbook(PLAYBOOK, inv, *extra)


@pytest.fixture(scope='module')
def deployed(publisher, subscriber):
    ddl = ('CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, total numeric);'
           ' CREATE TABLE sales.customers (id int PRIMARY KEY, name text, country text)')
    for cluster in (publisher, subscriber):
        cluster.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(DB)))
    publisher.execute(ddl, dbname=DB)
    subscriber.execute('CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, '
                       'total numeric); CREATE TABLE sales.customers (id int PRIMARY KEY, '
                       'name text)', dbname=DB)
    publisher.execute("INSERT INTO sales.orders SELECT g, g * 1.5 FROM generate_series(1, 500) g;"
                      " INSERT INTO sales.customers SELECT g, 'c' || g,"
                      " CASE WHEN g % 2 = 0 THEN 'NL' ELSE 'DE' END FROM generate_series(1, 100) g;"
                      " CREATE PUBLICATION {pub} FOR TABLE sales.orders,"
                      " sales.customers (id, name) WHERE (country = 'NL')".format(pub=SUBSCRIPTION),
                      dbname=DB)
    conninfo = "host=%s port=%d dbname=%s user=%s password=%s" % (
        publisher.host, publisher.port, DB, publisher.user, SUPERPASS)
    subscriber.execute(sql.SQL('CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} '
                               'WITH (slot_name = {})').format(
        sql.Identifier(SUBSCRIPTION), sql.Literal(conninfo), sql.Identifier(SUBSCRIPTION),
        sql.Identifier(slot_name(SET, 'sub', DB))), dbname=DB)
    wait_for(lambda: subscriber.query(
        "SELECT count(*) FILTER (WHERE srsubstate = 'r') FROM pg_subscription_rel",
        dbname=DB)[0][0] == 2, timeout=90, what='tables ready')
    try:
        yield publisher, subscriber
    finally:
        subscriber.execute(sql.SQL('DROP SUBSCRIPTION IF EXISTS {}').format(
            sql.Identifier(SUBSCRIPTION)), dbname=DB)
        for cluster in (subscriber, publisher):
            cluster.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(
                sql.Identifier(DB)))


def table_line(output):
    lines = [line for line in output.splitlines() if SET in line and 'logical' in line]
    assert lines, output
    return lines[0]


def test_healthy_then_induced_apply_failure(deployed):
    publisher, subscriber = deployed
    inv = inventory(publisher, subscriber)

    rc, out = run_check(inv, '-e', 'tablesync_check_verify=true')
    assert rc == 0, out
    line = table_line(out)
    assert 'pub/%s' % DB in line and 'sub/%s' % DB in line and 'streaming' in line, line
    assert 'equal' in line, line
    assert 'within the thresholds' in out
    assert SUPERPASS not in out

    # a row on the subscriber that conflicts with a replicated INSERT stops apply
    subscriber.execute('INSERT INTO sales.orders VALUES (1000, 0)', dbname=DB)
    publisher.execute('INSERT INTO sales.orders VALUES (1000, 99)', dbname=DB)
    wait_for(lambda: subscriber.query(
        'SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = %s',
        (SUBSCRIPTION,), dbname=DB)[0][0] > 0, timeout=60, what='apply error')
    rc, out = run_check(inv, '-e', 'tablesync_check_verify=true',
                        '-e', 'tablesync_check_verify_retries=0')
    assert rc != 0, out
    assert 'thresholds crossed' in out
    assert 'apply errors (threshold 0' in out
    assert '1 rows differ (sales.orders)' in out  # row 1000 differs: total 0 vs 99
    assert 'verification found 1 rows differ' in out
    if subscriber.version() >= 18:  # the same failure is counted as a conflict too
        assert 'conflicts (insert_exists ' in out, out
    line = table_line(out)
    assert 'breach' in line

    # thresholds from the inventory: errors and mismatches tolerated, the worker may flap
    relaxed = inventory(publisher, subscriber, {
        'max_apply_errors': None, 'max_conflicts': None, 'worker_not_running': False,
        'inactive_slot': False, 'max_mismatching_rows': 5})
    rc, out = run_check(relaxed, '-e', 'tablesync_check_verify=true',
                        '-e', 'tablesync_check_verify_retries=0')
    assert rc == 0, out

    # repair, reset the counters: healthy again
    subscriber.execute('DELETE FROM sales.orders WHERE id = 1000', dbname=DB)
    wait_for(lambda: subscriber.query('SELECT total FROM sales.orders WHERE id = 1000',
                                      dbname=DB) == [(99,)], timeout=60, what='apply resumed')
    subscriber.execute("SELECT pg_stat_reset_subscription_stats(oid) FROM pg_subscription "
                       "WHERE subname = %s", (SUBSCRIPTION,), dbname=DB)
    rc, out = run_check(inv)
    assert rc == 0, out


def test_unreachable_database_and_bad_thresholds(deployed):
    publisher, subscriber = deployed
    inv = inventory(publisher, subscriber)
    inv['all']['hosts']['sub']['tablesync_port'] = 1  # nothing listens there
    rc, out = run_check(inv)
    assert rc != 0
    assert 'cannot read sub/%s: Unable to connect to PostgreSQL' % DB in out, out

    rc, out = run_check(inventory(publisher, subscriber, {'max_lag': 1}))
    assert rc != 0 and 'unknown thresholds max_lag' in out, out

    # an unreachable host is a finding of the report, the other hosts are still read
    inv = inventory(publisher, subscriber)
    inv['all']['hosts']['sub'].update(ansible_connection='ssh', ansible_host='127.0.0.1',
                                      ansible_port=1)
    rc, out = run_check(inv)
    assert rc != 0
    assert 'host sub is unreachable' in out, out
    assert 'unreadable' in table_line(out)


EXPORTER = os.path.join(ROOT, 'roles', 'sync_monitoring', 'files', 'tablesync_exporter.py')


def run_exporter(cluster, tmpdir, databases):
    config = os.path.join(tmpdir, 'exporter-%d.json' % cluster.port)
    with open(config, 'w') as f:
        json.dump({'databases': databases, 'host': cluster.sockdir, 'port': cluster.port,
                   'user': cluster.user, 'prefix': 'tablesync_',
                   'output': os.path.join(tmpdir, 'tablesync.prom')}, f)
    proc = subprocess.run([sys.executable, EXPORTER, '--config', config], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=60,
                          check=False)
    with open(os.path.join(tmpdir, 'tablesync.prom')) as f:
        return proc.returncode, proc.stdout, f.read().splitlines()


def test_monitoring_exporter_on_the_same_clusters(deployed, tmp_path):
    """The sync_monitoring role's exporter, run as the timer would, against both sides."""
    publisher, subscriber = deployed
    slot = slot_name(SET, 'sub', DB)
    labels = '{database="%s",set="%s",subscription="%s"}' % (DB, SET, SUBSCRIPTION)
    rc, err, lines = run_exporter(subscriber, str(tmp_path), [DB, 'no_such_db'])
    assert rc == 0, err
    assert 'cannot read no_such_db' in err
    assert 'tablesync_exporter_up{database="%s"} 1' % DB in lines
    assert 'tablesync_exporter_up{database="no_such_db"} 0' in lines
    assert 'tablesync_subscription_enabled%s 1' % labels in lines
    assert 'tablesync_subscription_worker_running%s 1' % labels in lines
    assert 'tablesync_subscription_tables_not_ready%s 0' % labels in lines
    assert any(l.startswith('tablesync_apply_errors_total%s ' % labels) for l in lines)
    assert any(l.startswith('tablesync_subscription_lag_bytes%s ' % labels) for l in lines)
    assert '# TYPE tablesync_apply_errors_total counter' in lines

    rc, err, lines = run_exporter(publisher, str(tmp_path), [DB])
    assert rc == 0, err
    slot_labels = '{database="%s",set="%s",slot="%s"}' % (DB, SET, slot)
    assert 'tablesync_slot_active%s 1' % slot_labels in lines
    assert any(l.startswith('tablesync_slot_retained_bytes%s ' % slot_labels) for l in lines)
    assert 'tablesync_slot_wal_status{database="%s",set="%s",slot="%s",status="reserved"} 1' % (
        DB, SET, slot) in lines
    assert not [l for l in lines if l.startswith('tablesync_trigger_queue')]
    assert sorted(os.listdir(str(tmp_path))) == sorted(
        ['tablesync.prom', 'exporter-%d.json' % subscriber.port, 'exporter-%d.json' % publisher.port])


def test_trigger_queue_age_threshold(deployed):
    """A queued trigger sync set: check.yml shows its queue and fails on the age of its oldest
    change; verification (run from the source) finds the rows still queued, and none after a
    flush."""
    publisher, subscriber = deployed
    name = 'q' + SET
    for cluster in (publisher, subscriber):
        cluster.execute('CREATE TABLE sales.items (id int PRIMARY KEY, v text)', dbname=DB)
    r = run_module('tablesync.postgresql.pg_sync_trigger', dict(
        publisher.login(DB), name=name, tables=['sales.items'], mode='queued', verify_target=False,
        target=dict(host=subscriber.host, port=subscriber.port, dbname=DB, user=subscriber.user,
                    password=SUPERPASS)))
    assert not r.get('failed'), r
    try:
        inv = inventory(publisher, subscriber, {'max_queue_age_seconds': 1, 'max_queue_depth': 100})
        inv['all']['vars'].update(tablesync_trigger_role=subscriber.user,
                                  tablesync_trigger_password=SUPERPASS)
        inv['all']['vars']['tablesync_sync_sets'].append({
            'name': name, 'method': 'trigger', 'source': {'host': 'pub', 'database': DB},
            'targets': [{'host': 'sub', 'database': DB}], 'tables': ['sales.items']})
        rc, out = run_check(inv)
        assert rc == 0, out
        line = [l for l in out.splitlines() if name in l and 'trigger' in l][0]
        assert 'queued' in line and '0 changes queued' in line, line

        publisher.execute("INSERT INTO sales.items SELECT g, 'x' FROM generate_series(1, 5) g",
                          dbname=DB)
        time.sleep(1.5)
        rc, out = run_check(inv)
        assert rc != 0, out
        assert 'sync set %s, pub/%s -> sub/%s: the oldest queued change is' % (name, DB, DB) in out
        line = [l for l in out.splitlines() if name in l and 'trigger' in l][0]
        assert '5 changes queued' in line, line

        rc, out = run_check(inv, '-e', 'tablesync_check_verify=true',
                            '-e', 'tablesync_check_verify_retries=0')
        assert rc != 0
        line = [l for l in out.splitlines() if name in l and 'trigger' in l][0]
        assert '5 rows differ (sales.items)' in line, line

        publisher.execute('CALL tablesync.flush()', dbname=DB)
        rc, out = run_check(inv, '-e', 'tablesync_check_verify=true')
        assert rc == 0, out
        line = [l for l in out.splitlines() if name in l and 'trigger' in l][0]
        assert 'equal' in line and '0 changes queued' in line, line
        assert SUPERPASS not in out
    finally:
        run_module('tablesync.postgresql.pg_sync_trigger', dict(
            publisher.login(DB), name=name, state='absent', force=True))
