"""playbooks/cutover.yml against the two test clusters: an inventory of two hosts reached with the
local connection, each with its own port (tablesync_port) and TCP login (tablesync_cutover_login),
as in test_check_playbook.py. A logical set (a sequence-backed table and a table with a column
list and a row filter) is deployed with plain SQL under the names the roles use, a queued trigger
set with pg_sync_trigger; an fdw set is only part of the model (report only).

The stop-writes hook of the test makes one last write on the source (a new order, which takes a
sequence value) and records the sets it was given: the cutover must see that write arrive, verify
it and move the target's sequence past it."""
import json
import os
import sys

import pytest
import yaml
from psycopg2 import sql

from pgcluster import SUPERPASS, wait_for
from runner import ROOT, run_module, run_playbook

from ansible_collections.tablesync.postgresql.plugins.filter.sync_plan import slot_name

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'cutover.yml')
SET = 'cut_%d' % (os.getpid() % 100000)
TSET = 'q' + SET
FSET = 'f' + SET
XSET = 'x' + SET  # a logical set of the model that was never deployed
DB = 'cut_%d' % (os.getpid() % 100000)
SUBSCRIPTION = 'tablesync_' + SET
READER = 'cut_reader_%d' % (os.getpid() % 100000)  # SELECT on the published tables only


def inventory(publisher, subscriber, **extra):
    def host(cluster):
        return {
            'ansible_connection': 'local',
            'ansible_python_interpreter': sys.executable,
            'tablesync_address': cluster.host,
            'tablesync_port': cluster.port,
            'tablesync_cutover_become': False,
            'tablesync_cutover_login': {'login_host': cluster.host, 'login_user': cluster.user,
                                        'login_password': SUPERPASS},
        }
    variables = {
        'tablesync_replication_role': publisher.user,
        'tablesync_replication_password': SUPERPASS,
        'tablesync_trigger_role': subscriber.user,
        'tablesync_trigger_password': SUPERPASS,
        'tablesync_cutover_wait_delay': 0.5,
        'tablesync_cutover_wait_timeout': 30,
        'tablesync_sync_sets': [
            {'name': SET,
             'source': {'host': 'pub', 'database': DB},
             'targets': [{'host': 'sub', 'database': DB}],
             'tables': ['sales.orders', {'name': 'sales.customers', 'columns': ['id', 'name'],
                                         'where': "country = 'NL'"}]},
            {'name': TSET, 'method': 'trigger',
             'source': {'host': 'pub', 'database': DB},
             'targets': [{'host': 'sub', 'database': DB}],
             'tables': ['sales.items']},
            {'name': XSET,
             'source': {'host': 'pub', 'database': DB},
             'targets': [{'host': 'sub', 'database': DB}],
             'tables': ['sales.extra']},
            {'name': FSET, 'method': 'fdw',
             'source': {'host': 'pub', 'database': DB},
             'targets': [{'host': 'sub', 'database': DB}],
             'tables': ['sales.prices']},
        ],
    }
    variables.update(extra)
    return {'all': {'hosts': {'pub': host(publisher), 'sub': host(subscriber)},
                    'vars': variables}}


def run_cutover(inv, *extra):
    return run_playbook(PLAYBOOK, inv, *extra, timeout=300)


@pytest.fixture(scope='module')
def deployed(publisher, subscriber, tmp_path_factory):
    ddl = ('CREATE SCHEMA sales;'
           ' CREATE TABLE sales.orders (id serial PRIMARY KEY, total numeric);'
           ' CREATE TABLE sales.items (id int PRIMARY KEY, v text);'
           ' CREATE TABLE sales.extra (id int PRIMARY KEY)')
    for cluster in (publisher, subscriber):
        cluster.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(DB)))
        cluster.execute(ddl, dbname=DB)
    publisher.execute('CREATE TABLE sales.customers (id int PRIMARY KEY, name text, country text)',
                      dbname=DB)
    subscriber.execute('CREATE TABLE sales.customers (id int PRIMARY KEY, name text)', dbname=DB)
    publisher.execute("INSERT INTO sales.orders (total) SELECT g * 1.5 FROM generate_series(1, 200) g;"
                      " INSERT INTO sales.customers SELECT g, 'c' || g,"
                      " CASE WHEN g % 2 = 0 THEN 'NL' ELSE 'DE' END FROM generate_series(1, 50) g;"
                      " CREATE PUBLICATION {pub} FOR TABLE sales.orders,"
                      " sales.customers (id, name) WHERE (country = 'NL')".format(pub=SUBSCRIPTION),
                      dbname=DB)
    conninfo = "host=%s port=%d dbname=%s user=%s password=%s" % (
        publisher.host, publisher.port, DB, publisher.user, SUPERPASS)
    subscriber.execute(sql.SQL('CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} '
                               'WITH (slot_name = {})').format(
        sql.Identifier(SUBSCRIPTION), sql.Literal(conninfo), sql.Identifier(SUBSCRIPTION),
        sql.Identifier(slot_name(SET, 'sub', DB))), dbname=DB)
    publisher.execute(sql.SQL('CREATE ROLE {r} LOGIN PASSWORD {p}; GRANT USAGE ON SCHEMA sales TO {r};'
                              ' GRANT SELECT ON sales.orders, sales.customers TO {r}').format(
        r=sql.Identifier(READER), p=sql.Literal(SUPERPASS)), dbname=DB)
    r = run_module('tablesync.postgresql.pg_sync_trigger', dict(
        publisher.login(DB), name=TSET, tables=['sales.items'], mode='queued', verify_target=False,
        target=dict(host=subscriber.host, port=subscriber.port, dbname=DB, user=subscriber.user,
                    password=SUPERPASS)))
    assert not r.get('failed'), r
    wait_for(lambda: subscriber.query(
        "SELECT count(*) FILTER (WHERE srsubstate = 'r') FROM pg_subscription_rel",
        dbname=DB)[0][0] == 2, timeout=90, what='tables ready')

    # The stop-writes hook: one last write on the source, and a record of the sets it was given.
    hookdir = tmp_path_factory.mktemp('cutover-hook')
    marker = str(hookdir / 'stopped.json')
    hook = str(hookdir / 'stop_writes.yml')
    with open(hook, 'w') as f:
        yaml.safe_dump([
            {'name': 'Last write of the application',
             'ansible.builtin.command': {'argv': [
                 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--host=' + publisher.sockdir,
                 '--port=%d' % publisher.port, '--username=postgres', '--dbname=' + DB,
                 '--command=INSERT INTO sales.orders (total) VALUES (4242)']},
             'changed_when': True},
            {'name': 'Record the sets',
             'ansible.builtin.copy': {
                 'dest': marker, 'mode': '0600',
                 'content': "{{ sync_cutover_stop_writes_sets | map(attribute='name') | list"
                            " | sort | to_json }}"}},
        ], f)
    try:
        yield publisher, subscriber, hook, marker
    finally:
        subscriber.execute(sql.SQL('DROP SUBSCRIPTION IF EXISTS {}').format(
            sql.Identifier(SUBSCRIPTION)), dbname=DB)
        run_module('tablesync.postgresql.pg_sync_trigger', dict(
            publisher.login(DB), name=TSET, state='absent', force=True))
        for cluster in (subscriber, publisher):
            cluster.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(
                sql.Identifier(DB)))
        publisher.execute(sql.SQL('DROP ROLE IF EXISTS {}').format(sql.Identifier(READER)))


def sequence(cluster):
    """(last_value, is_called) of the orders sequence."""
    return cluster.query('SELECT last_value, is_called FROM sales.orders_id_seq', dbname=DB)[0]


def queue_depth(publisher):
    return publisher.query('SELECT count(*) FROM tablesync.trigger_changes', dbname=DB)[0][0]


def report(output, name):
    """The report table of a set: its header line and step lines."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if ('sync set %s (' % name) in line and '"' in line:
            return '\n'.join(lines[i:i + 6])
    raise AssertionError('no report for %s in:\n%s' % (name, output))


def test_refused_before_anything(deployed):
    publisher, subscriber, hook, marker = deployed
    publisher.execute("INSERT INTO sales.items SELECT g, 'x' || g FROM generate_series(1, 5) g",
                      dbname=DB)
    inv = inventory(publisher, subscriber, tablesync_cutover_stop_writes_tasks=hook)
    before = (sequence(subscriber), queue_depth(publisher))

    rc, out = run_cutover(inv)
    assert rc != 0
    assert 'Name the sync sets to cut over' in out, out

    rc, out = run_cutover(inv, '-e', 'tablesync_cutover_sets=%s,nosuch' % SET,
                          '-e', 'tablesync_cutover_confirm=true')
    assert rc != 0
    assert 'does not define: nosuch' in out, out

    rc, out = run_cutover(inv, '-e', 'tablesync_cutover_sets=%s,%s' % (SET, TSET))
    assert rc != 0
    assert 'Nothing was done' in out and 'tablesync_cutover_confirm=true' in out, out
    assert 'Stop the writes' not in out and 'pg_table_compare' not in out, out
    assert not os.path.exists(marker)
    assert (sequence(subscriber), queue_depth(publisher)) == before == ((1, False), 5)

    # a hook that fails ends the run before anything else happens
    failing = os.path.join(os.path.dirname(hook), 'failing_hook.yml')
    with open(failing, 'w') as f:
        yaml.safe_dump([{'name': 'Stop the application',
                         'ansible.builtin.fail': {'msg': 'the application did not stop'}}], f)
    inv = inventory(publisher, subscriber, tablesync_cutover_stop_writes_tasks=failing)
    rc, out = run_cutover(inv, '-e', 'tablesync_cutover_sets=%s,%s' % (SET, TSET),
                          '-e', 'tablesync_cutover_confirm=true')
    assert rc != 0
    assert 'The stop-writes hook did not complete; nothing else was done' in out, out
    assert 'failing_hook.yml failed on pub (task Stop the application): the application did ' \
        'not stop' in out, out
    assert "Read the publisher's WAL position" not in out, out
    assert 'Apply the queued changes' not in out, out
    assert (sequence(subscriber), queue_depth(publisher)) == before


def test_check_mode_changes_nothing(deployed):
    publisher, subscriber, hook, marker = deployed
    inv = inventory(publisher, subscriber, tablesync_cutover_stop_writes_tasks=hook)
    source_sequence = sequence(publisher)
    rc, out = run_cutover(inv, '--check', '-e', json.dumps({'tablesync_cutover_sets': [SET, TSET, FSET]}))
    assert rc == 0, out
    logical = report(out, SET)
    assert 'no blocker (check mode' in logical, logical
    assert 'not stopped (check mode' in logical, logical
    assert 'applied up to' in logical, logical
    assert '2 tables equal, 225 rows' in logical, logical  # 200 orders, 25 filtered customers
    assert '1 sequence: 1 would move (sales.orders_id_seq 0 -> %d)' % source_sequence[0] \
        in logical, logical
    trigger = report(out, TSET)
    assert '5 changes queued (check mode: not flushed)' in trigger, trigger
    assert 'rows differ: sales.items: 5 missing' in trigger, trigger
    assert 'nothing to wait for' in report(out, FSET)
    assert 'show no blocker' in out
    # nothing changed: no hook, no flush, no sequence moved
    assert not os.path.exists(marker)
    assert queue_depth(publisher) == 5
    assert sequence(subscriber) == (1, False)
    assert sequence(publisher) == source_sequence
    assert SUPERPASS not in out


def test_cutover_clean(deployed):
    publisher, subscriber, hook, marker = deployed
    publisher.execute('INSERT INTO sales.orders (total) SELECT 7 FROM generate_series(1, 20);'
                      " INSERT INTO sales.customers VALUES (1001, 'new', 'NL'), (1002, 'new', 'DE')", dbname=DB)
    inv = inventory(publisher, subscriber, tablesync_cutover_stop_writes_tasks=hook)
    # -vvv: the passwords (login, source, trigger role; psql's password file) never show
    rc, out = run_cutover(inv, '-e', 'tablesync_cutover_sets=[%s,%s,%s]' % (SET, TSET, FSET),
                          '-e', 'tablesync_cutover_confirm=true', '-vvv')
    assert rc == 0, out
    with open(marker) as f:
        assert json.load(f) == sorted([SET, TSET, FSET])
    # the hook's write (after which nothing was written) arrived and was verified
    assert subscriber.query('SELECT count(*) FROM sales.orders WHERE total = 4242',
                            dbname=DB) == [(1,)]
    logical = report(out, SET)
    assert ': clean' in logical and 'ran on pub' in logical, logical
    assert 'applied up to' in logical and '2 tables equal, 247 rows' in logical, logical
    source_value = sequence(publisher)[0]
    assert source_value == 221
    assert sequence(subscriber) == (source_value, True)
    assert '1 moved (sales.orders_id_seq 0 -> %d)' % source_value in logical, logical
    trigger = report(out, TSET)
    assert ': clean' in trigger and 'queue empty (queued mode, the flush applied 5 changes)' \
        in trigger, trigger
    assert '1 table equal, 5 rows' in trigger and 'no sequences used by the tables' in trigger, trigger
    assert queue_depth(publisher) == 0
    assert subscriber.query('SELECT count(*) FROM sales.items', dbname=DB) == [(5,)]
    assert 'are clean' in out
    assert SUPERPASS not in out


def test_differing_row_fails_then_disable(deployed):
    """Production-like privileges: the targets read the source as a role with SELECT on the
    published tables only (as the replication role of the roles)."""
    publisher, subscriber, hook, marker = deployed
    # no hook: the operator stopped the writes
    inv = inventory(publisher, subscriber, tablesync_cutover_source_user=READER)
    subscriber.execute('UPDATE sales.orders SET total = -1 WHERE id = 3', dbname=DB)
    rc, out = run_cutover(inv, '-e', 'tablesync_cutover_sets=%s,%s' % (SET, XSET),
                          '-e', 'tablesync_cutover_confirm=true',
                          '-e', 'tablesync_cutover_disable_subscriptions=true')
    assert rc != 0, out
    undeployed = report(out, XSET)
    assert 'NOT CLEAN' in undeployed, undeployed
    assert 'permission denied for table extra (%s needs SELECT on the source tables' % READER \
        in undeployed, undeployed
    assert 'replication slot %s on pub does not exist (subscription not deployed?)' \
        % slot_name(XSET, 'sub', DB) in undeployed, undeployed
    logical = report(out, SET)
    assert 'NOT CLEAN' in logical and 'stopped by the operator' in logical, logical
    assert 'rows differ: sales.orders: 1 changed (key 3)' in logical, logical
    assert 'permission denied for sequence orders_id_seq (%s needs SELECT on the source\'s ' \
        'sequences: GRANT it or set tablesync_cutover_source_user)' % READER in logical, logical
    assert 'The cutover is not clean (4 problems)' in out
    # not clean: the subscription keeps replicating
    assert subscriber.query('SELECT subenabled FROM pg_subscription WHERE subname = %s',
                            (SUBSCRIPTION,), dbname=DB) == [(True,)]

    # repaired: the row, the privilege; an application already took sequence values on the
    # target, which never move backwards
    subscriber.execute('UPDATE sales.orders SET total = 4.5 WHERE id = 3;'
                       " SELECT setval('sales.orders_id_seq', 1000)", dbname=DB)
    publisher.execute(sql.SQL('GRANT SELECT ON SEQUENCE sales.orders_id_seq TO {}').format(
        sql.Identifier(READER)), dbname=DB)
    rc, out = run_cutover(inv, '-e', 'tablesync_cutover_sets=%s' % SET,
                          '-e', 'tablesync_cutover_confirm=true',
                          '-e', 'tablesync_cutover_disable_subscriptions=true')
    assert rc == 0, out
    assert '1 sequence: 0 moved, 1 already at or past the source' in report(out, SET)
    assert sequence(subscriber) == (1000, True)
    assert 'are clean, subscriptions disabled' in out
    assert subscriber.query('SELECT subenabled FROM pg_subscription WHERE subname = %s',
                            (SUBSCRIPTION,), dbname=DB) == [(False,)]
