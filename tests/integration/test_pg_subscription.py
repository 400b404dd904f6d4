"""pg_subscription against two real PostgreSQL clusters (publisher and subscriber).

Every test has its own databases and publication (created with plain SQL on the publisher) and
drops its subscriptions at the end, so no replication slot is left behind.
"""
import itertools
import json
import os
import re

import pytest
from psycopg2 import sql

from pgcluster import Cluster, wait_for
from runner import run_module, run_tasks

from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.subscription_status import (
    SYNC_ERRORS_TOLERATED)

MODULE = 'tablesync.postgresql.pg_subscription'
_serial = itertools.count(1)


def _tag():
    return '%d_%d' % (os.getpid() % 10000, next(_serial))


class SyncEnv(object):
    """A publisher database with a publication, a subscriber database, and module arguments."""

    def __init__(self, publisher, subscriber):
        tag = _tag()
        self.pub, self.sub = publisher, subscriber
        self.pubdb, self.subdb = 'pub_%s' % tag, 'sub_%s' % tag
        self.name = 'sub_%s' % tag
        self.publication = 'pub_%s' % tag
        self.cleaned = False
        self.pub.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(self.pubdb)))
        self.sub.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(self.subdb)))

    def create_table(self, table='t', rows=3, schema='public', subscriber_too=True):
        ident = sql.Identifier(schema, table)
        ddl = sql.SQL('CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {} (id int PRIMARY KEY, '
                      'v text)').format(sql.Identifier(schema), ident)
        self.pub_sql(ddl)
        if subscriber_too:
            self.sub_sql(ddl)
        self.pub_sql(sql.SQL("INSERT INTO {} SELECT g, 'row ' || g FROM "
                             'generate_series(1, {}) g').format(ident, sql.Literal(rows)))
        return ident

    def create_publication(self, *tables, **kw):
        name = kw.get('name', self.publication)
        self.pub_sql(sql.SQL('CREATE PUBLICATION {} FOR TABLE {}').format(
            sql.Identifier(name), sql.SQL(', ').join(tables)))
        return name

    def pub_sql(self, text, params=None):
        return self.pub.query(text, params, dbname=self.pubdb)

    def sub_sql(self, text, params=None):
        return self.sub.query(text, params, dbname=self.subdb)

    def publisher(self, **over):
        p = dict(host=self.pub.host, port=self.pub.port, dbname=self.pubdb,
                 user=self.pub.user, password=self.pub.password)
        p.update(over)
        return p

    def args(self, **kw):
        a = dict(self.sub.login(self.subdb), name=self.name, publications=[self.publication],
                 publisher=self.publisher())
        a.update(kw)
        return dict((k, v) for k, v in a.items() if v is not None)

    def run(self, check=False, diff=False, verbosity=0, **kw):
        return run_module(MODULE, self.args(**kw), check=check, diff=diff, verbosity=verbosity)

    def count(self, table='t'):
        return self.sub_sql(sql.SQL('SELECT count(*) FROM {}').format(sql.Identifier(table)))[0][0]

    def subscriptions(self):
        return [r[0] for r in self.sub_sql(
            'SELECT subname FROM pg_subscription WHERE subdbid = '
            '(SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1')]

    def slots(self, cluster=None):
        return [r[0] for r in (cluster or self.pub).query(
            'SELECT slot_name FROM pg_replication_slots WHERE database = %s ORDER BY 1',
            (self.pubdb,))]

    def catalog_snapshot(self):
        """Everything a subscription run could change, on both sides."""
        return (
            self.sub.query('SELECT row_to_json(s)::text FROM pg_subscription s ORDER BY oid'),
            self.sub.query('SELECT srsubid, srrelid::regclass::text, srsubstate FROM '
                           'pg_subscription_rel ORDER BY 1, 2', dbname=self.subdb),
            self.sub.query('SELECT objoid, description FROM pg_description WHERE classoid = '
                           "'pg_subscription'::regclass ORDER BY 1", dbname=self.subdb),
            self.pub.query('SELECT slot_name FROM pg_replication_slots ORDER BY 1'),
        )

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        for name in self.subscriptions():
            ident = sql.Identifier(name)
            try:
                self.sub_sql(sql.SQL('DROP SUBSCRIPTION {}').format(ident))
            except Exception:  # publisher gone: detach from the slot and drop
                self.sub_sql(sql.SQL('ALTER SUBSCRIPTION {} DISABLE').format(ident))
                self.sub_sql(sql.SQL('ALTER SUBSCRIPTION {} SET (slot_name = NONE)').format(ident))
                self.sub_sql(sql.SQL('DROP SUBSCRIPTION {}').format(ident))
        for cluster, db in ((self.sub, self.subdb), (self.pub, self.pubdb)):
            drop_slots(cluster, db)
            cluster.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(
                sql.Identifier(db)))


def drop_slots(cluster, dbname):
    def inactive():
        rows = cluster.query('SELECT slot_name, active FROM pg_replication_slots '
                             'WHERE database = %s', (dbname,))
        return all(not active for _slot, active in rows)
    wait_for(inactive, timeout=30, what='replication slots of %s to become inactive' % dbname)
    cluster.execute('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots '
                    'WHERE database = %s', (dbname,))


@pytest.fixture
def env(publisher, subscriber):
    e = SyncEnv(publisher, subscriber)
    yield e
    e.cleanup()


def assert_ok(result, changed=None):
    assert not result.get('failed'), result.get('msg')
    if changed is not None:
        assert result['changed'] is changed, result.get('queries')


def assert_never_shown(result_or_run, *secrets):
    """Neither the secrets nor their conninfo/SQL-quoted forms appear anywhere."""
    if isinstance(result_or_run, dict):
        run = result_or_run.get('_run')
        texts = [json.dumps(dict((k, v) for k, v in result_or_run.items() if k != '_run'))]
        if run is not None:
            texts.append(run.output)
    else:
        texts = [result_or_run.output]
    for secret in secrets:
        forms = {secret, secret.replace("'", "''"), secret.replace("'", "\\'"),
                 secret.replace('\\', '\\\\'), json.dumps(secret)[1:-1]}
        for text in texts:
            for form in forms:
                assert form not in text, 'secret %r shown' % form


# ---- creation, replication, idempotence ------------------------------------------------------

def test_create_waits_for_sync_and_replicates(env):
    t = env.create_table('t', rows=500)
    env.create_publication(t)
    result = env.run(wait_for_sync=True, wait_timeout=60, diff=True)
    assert_ok(result, changed=True)
    assert result['queries'][0].startswith('CREATE SUBSCRIPTION "%s" CONNECTION \'dbname=%s '
                                           % (env.name, env.pubdb))
    assert 'password=********' in result['queries'][0]
    assert result['exists'] is True
    state = result['subscription']
    assert state['tables'] == [{'name': 'public.t', 'state': 'ready', 'state_code': 'r'}]
    assert state['enabled'] is True and state['slot_name'] == env.name
    assert state['publisher']['password'] == '********'
    assert state['publisher']['port'] == str(env.pub.port)
    assert state['errors']['sync_error_count'] == 0
    assert [w['type'] for w in state['workers']] == ['apply']
    assert result['tables_added'] == ['public.t']
    assert result['diff']['before'] == {}
    assert result['diff']['after']['publications'] == [env.publication]
    assert env.count() == 500  # every row arrived before the task returned
    assert env.slots() == [env.name]
    assert_never_shown(result, env.pub.password)

    # changes flow: insert, update, delete
    env.pub_sql("INSERT INTO t VALUES (1000, 'new')")
    env.pub_sql("UPDATE t SET v = 'changed' WHERE id = 1")
    env.pub_sql('DELETE FROM t WHERE id = 2')
    wait_for(lambda: env.sub_sql('SELECT v FROM t WHERE id IN (1, 2, 1000) ORDER BY id') ==
             [('changed',), ('new',)], timeout=30, what='changes to replicate')

    again = env.run(wait_for_sync=True)
    assert_ok(again, changed=False)
    assert again['queries'] == []
    assert again['tables_added'] == [] and again['tables_removed'] == []


def test_check_mode_changes_nothing(env):
    env.create_publication(env.create_table())
    before = env.catalog_snapshot()
    result = env.run(check=True, diff=True, binary=True, wait_for_sync=True)
    assert_ok(result, changed=True)
    assert [q.split(' CONNECTION')[0] for q in result['queries']] == [
        'CREATE SUBSCRIPTION "%s"' % env.name]
    assert result['exists'] is True and result['subscription'] == {}
    assert result['diff']['after']['options']['binary'] is True
    assert result['diff']['after']['publisher']['password'] == '********'
    assert env.catalog_snapshot() == before

    assert_ok(env.run(wait_for_sync=True), changed=True)
    # the table sync finishes asynchronously ('s' -> 'r'); snapshot only a settled catalog
    wait_for(lambda: env.sub.query('SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> %s',
                                   ('r',), dbname=env.subdb) == [(0,)],
             timeout=30, what='table sync to reach ready')
    before = env.catalog_snapshot()
    changes = dict(enabled=False, binary=True, streaming=True, comment='c',
                   publications=[env.publication, 'other'],
                   publisher=env.publisher(application_name='check mode'))
    result = env.run(check=True, diff=True, **changes)
    assert_ok(result, changed=True)
    assert len(result['queries']) == 5
    assert result['diff']['before']['enabled'] is True
    assert result['diff']['after']['enabled'] is False
    assert result['diff']['after']['publisher']['application_name'] == 'check mode'
    assert result['subscription']['enabled'] is True  # nothing changed
    assert env.catalog_snapshot() == before

    result = env.run(check=True, state='absent')
    assert_ok(result, changed=True)
    assert result['queries'] == ['DROP SUBSCRIPTION "%s"' % env.name]
    assert result['exists'] is False
    assert env.catalog_snapshot() == before
    assert env.subscriptions() == [env.name] and env.slots() == [env.name]


def test_alter_every_option_the_server_can_alter(env):
    t = env.create_table()
    env.create_publication(t)
    env.create_publication(t, name='second_pub')
    owner = 'Owner ' + env.name
    # PostgreSQL 15: the owner must be a superuser, and the apply worker logs in as it
    env.sub.execute(sql.SQL('CREATE ROLE {} SUPERUSER LOGIN').format(sql.Identifier(owner)))
    name, pub = env.name, env.publication
    changes = dict(synchronous_commit='remote_apply', binary=True, streaming=True,
                   disable_on_error=True, comment='the comment', owner=owner)
    steps = [
        # (task arguments, expected queries; None: the task fails)
        (dict(wait_for_sync=True), ['CREATE SUBSCRIPTION']),
        (changes, [
            'ALTER SUBSCRIPTION "%s" SET (synchronous_commit = \'remote_apply\', binary = true, '
            "streaming = 'on', disable_on_error = true)" % name,
            'ALTER SUBSCRIPTION "%s" OWNER TO "%s"' % (name, owner),
            'COMMENT ON SUBSCRIPTION "%s" IS \'the comment\'' % name]),
        (changes, []),
        # YAML booleans for the on/off options
        (dict(synchronous_commit=False, streaming=False),
         ['ALTER SUBSCRIPTION "%s" SET (synchronous_commit = \'off\', streaming = \'off\')'
          % name]),
        # disable and move to another slot name, then back and enable
        (dict(enabled=False, slot_name='other_slot'), [
            'ALTER SUBSCRIPTION "%s" DISABLE' % name,
            'ALTER SUBSCRIPTION "%s" SET (slot_name = \'other_slot\')' % name]),
        (dict(enabled=True, slot_name=name), [
            'ALTER SUBSCRIPTION "%s" SET (slot_name = \'%s\')' % (name, name),
            'ALTER SUBSCRIPTION "%s" ENABLE' % name]),
        # publications: add, drop, replace, each refreshed outside a transaction
        (dict(publications=[pub, 'second_pub']), [
            'ALTER SUBSCRIPTION "%s" ADD PUBLICATION "second_pub" WITH (refresh = true)' % name]),
        (dict(publications=['second_pub']), [
            'ALTER SUBSCRIPTION "%s" DROP PUBLICATION "%s" WITH (refresh = true)' % (name, pub)]),
        (dict(publications=[pub], copy_data=False), [
            'ALTER SUBSCRIPTION "%s" SET PUBLICATION "%s" WITH (refresh = true, copy_data = false)'
            % (name, pub)]),
        # an option PostgreSQL 15 cannot change in place
        (dict(two_phase=True), None),
        (dict(comment=''), ['COMMENT ON SUBSCRIPTION "%s" IS NULL' % name]),
        (dict(comment=''), []),
    ]
    try:
        run = run_tasks([{'name': 'step %d' % i, MODULE: env.args(**args), 'ignore_errors': True}
                         for i, (args, _q) in enumerate(steps)], diff=True)
        results = run.results
        assert len(results) == len(steps), run.output
        for (args, expected), result in zip(steps, results):
            if expected is None:
                continue
            assert_ok(result, changed=bool(expected))
            queries = result['queries']
            if expected == ['CREATE SUBSCRIPTION']:
                queries = [q.split(' ')[0] + ' ' + q.split(' ')[1] for q in queries]
            assert queries == expected, (args, queries)

        after_changes = results[1]
        assert after_changes['diff']['before']['options']['binary'] is False
        assert after_changes['diff']['after']['options']['binary'] is True
        assert after_changes['subscription']['owner'] == owner
        assert after_changes['subscription']['comment'] == 'the comment'
        options = {'synchronous_commit': 'remote_apply', 'binary': True, 'streaming': 'on',
                   'disable_on_error': True, 'two_phase': False}
        version = env.sub.version()
        if version >= 16:
            options.update(origin='any', password_required=True, run_as_owner=False)
        if version >= 17:
            options.update(failover=False)
        assert after_changes['subscription']['options'] == options
        assert results[4]['subscription']['enabled'] is False
        assert results[4]['subscription']['slot_name'] == 'other_slot'
        assert results[8]['subscription']['publications'] == [pub]

        two_phase = results[9]
        if version >= 18:
            # changed in place: disabled, its workers waited for, changed, enabled again
            assert_ok(two_phase, changed=True)
            assert two_phase['queries'] == [
                'ALTER SUBSCRIPTION "%s" DISABLE' % name,
                "SELECT count(*) FROM pg_catalog.pg_stat_subscription WHERE subname = '%s' "
                'AND pid IS NOT NULL' % name,
                'ALTER SUBSCRIPTION "%s" SET (two_phase = true)' % name,
                'ALTER SUBSCRIPTION "%s" ENABLE' % name]
        else:
            assert two_phase['failed'] and two_phase['changed'] is False
            assert two_phase['queries'] == []
            assert 'two_phase of subscription %s is false and cannot be changed in place on ' \
                   'PostgreSQL %d' % (name, version) in two_phase['msg']
            assert 'drop and re-create' in two_phase['msg']

        assert env.sub_sql(
            'SELECT subenabled, subslotname, subsynccommit, subbinary, substream, '
            'subdisableonerr, subpublications, pg_get_userbyid(subowner), '
            'obj_description(oid, %s) FROM pg_subscription WHERE subname = %s',
            ('pg_subscription', name)) == [
            (True, name, 'off', True, 'f' if version >= 16 else False, True, [pub], owner, None)]
        env.pub_sql("INSERT INTO t VALUES (77, 'still replicating')")
        wait_for(lambda: env.sub_sql('SELECT v FROM t WHERE id = 77'), timeout=30,
                 what='replication after all the changes')
    finally:
        env.cleanup()
        env.sub.execute(sql.SQL('DROP ROLE {}').format(sql.Identifier(owner)))


# ---- secrets ---------------------------------------------------------------------------------

def test_password_change_detected_applied_and_never_shown(env):
    role = 'repl_' + env.name
    first, second = "Fir5t pass 'w' \\ %s", 'Sec0nd "pa ss" \\\\ wörd\''
    env.pub_sql(sql.SQL('CREATE ROLE {} LOGIN REPLICATION PASSWORD %s').format(
        sql.Identifier(role)), (first,))
    t = env.create_table()
    env.pub_sql(sql.SQL('GRANT SELECT ON t TO {}').format(sql.Identifier(role)))
    env.create_publication(t)
    try:
        result = env.run(publisher=env.publisher(user=role, password=first), wait_for_sync=True,
                         verbosity=3, diff=True)
        assert_ok(result, changed=True)
        assert_never_shown(result, first)

        env.pub.execute(sql.SQL('ALTER ROLE {} PASSWORD %s').format(sql.Identifier(role)),
                        (second,))
        result = env.run(publisher=env.publisher(user=role, password=second), diff=True,
                         verbosity=3)
        assert_ok(result, changed=True)
        assert result['queries'] == [
            "ALTER SUBSCRIPTION \"%s\" CONNECTION 'dbname=%s host=127.0.0.1 password=******** "
            "port=%d user=%s'" % (env.name, env.pubdb, env.pub.port, role)]
        assert result['diff']['before']['publisher']['password'] == '********'
        assert result['diff']['after']['publisher']['password'] == '******** (changed)'
        assert_never_shown(result, first, second)

        # the new password works: restart the apply worker on it and replicate a row
        env.pub.execute('SELECT pg_terminate_backend(pid) FROM pg_stat_replication '
                        'WHERE usename = %s', (role,))
        env.pub_sql("INSERT INTO t VALUES (99, 'after password change')")
        wait_for(lambda: env.sub_sql('SELECT v FROM t WHERE id = 99'), timeout=30,
                 what='row after the password change')

        same = env.run(publisher=env.publisher(user=role, password=second), diff=True)
        assert_ok(same, changed=False)
        assert same['queries'] == []

        # human-readable -vvv output with diff, as an operator would run it
        run = run_tasks([{'name': 'subscription', MODULE: env.args(
            publisher=env.publisher(user=role, password=first))}],
            diff=True, verbosity=3, callback=None)
        assert run.rc == 0, run.output
        assert 'CONNECTION' in run.output and 'password=********' in run.output
        assert_never_shown(run, first, second)

        # a wrong password: the server's error is shown, the password is not
        bad = env.run(name=env.name + '_bad', slot_name=None,
                      publisher=env.publisher(user=role, password=second + 'x'))
        assert bad['failed'] and 'password authentication failed' in bad['msg']
        assert_never_shown(bad, first, second, second + 'x')
        assert env.subscriptions() == [env.name]

        # the subscriber logs every statement (log_statement = all), but the module runs the
        # statements carrying the password with logging switched off for them
        sub_log = env.sub.log_text()
        assert 'FROM pg_subscription' in sub_log  # statements are logged at all
        for fragment in ('Fir5t pass', 'Sec0nd'):
            assert fragment not in sub_log
    finally:
        env.cleanup()
        env.pub.execute(sql.SQL('DROP ROLE IF EXISTS {}').format(sql.Identifier(role)))


def test_role_that_cannot_read_conninfo_gets_a_warning_not_a_change(env):
    env.create_publication(env.create_table())
    assert_ok(env.run(), changed=True)
    reader, password = 'reader_' + env.name, 'Reader pw 1'
    env.sub.execute(sql.SQL('CREATE ROLE {} LOGIN PASSWORD %s').format(sql.Identifier(reader)),
                    (password,))
    try:
        args = dict(login_user=reader, login_password=password,
                    publisher=env.publisher(password='would be new'))
        result = env.run(**args)
        assert_ok(result, changed=False)
        assert result['queries'] == []
        assert any('may not read pg_subscription.subconninfo' in w for w in result['warnings'])
        assert result['subscription']['publisher'] is None
        assert result['subscription']['publications'] == [env.publication]
        assert_never_shown(result, env.pub.password, 'would be new')
    finally:
        env.sub.execute(sql.SQL('DROP ROLE {}').format(sql.Identifier(reader)))


# ---- refresh ---------------------------------------------------------------------------------

def test_refreshed_reports_tables_added(env):
    env.create_publication(env.create_table('t1'))
    assert_ok(env.run(wait_for_sync=True), changed=True)
    t2 = env.create_table('t2', rows=7)
    env.pub_sql(sql.SQL('ALTER PUBLICATION {} ADD TABLE {}').format(
        sql.Identifier(env.publication), t2))

    result = env.run(state='refreshed', wait_for_sync=True, wait_timeout=60)
    assert_ok(result, changed=True)
    assert result['queries'] == ['ALTER SUBSCRIPTION "%s" REFRESH PUBLICATION' % env.name]
    assert result['tables_added'] == ['public.t2']
    assert result['tables_removed'] == []
    assert [t['state'] for t in result['subscription']['tables']] == ['ready', 'ready']
    assert env.count('t2') == 7

    again = env.run(state='refreshed')
    assert_ok(again, changed=False)
    assert again['tables_added'] == []
    assert_ok(env.run(), changed=False)

    env.pub_sql(sql.SQL('ALTER PUBLICATION {} DROP TABLE t1').format(
        sql.Identifier(env.publication)))
    result = env.run(state='refreshed', copy_data=False)
    assert_ok(result, changed=True)
    assert result['queries'] == ['ALTER SUBSCRIPTION "%s" REFRESH PUBLICATION WITH '
                                 '(copy_data = false)' % env.name]
    assert result['tables_removed'] == ['public.t1']

    result = env.run(state='refreshed', enabled=False)
    assert result['failed'] and 'needs an enabled subscription' in result['msg']


# ---- absent ----------------------------------------------------------------------------------

def test_absent_drops_subscription_and_slot(env):
    env.create_publication(env.create_table())
    assert_ok(env.run(), changed=True)
    assert env.slots() == [env.name]
    result = env.run(state='absent', diff=True)
    assert_ok(result, changed=True)
    assert result['queries'] == ['DROP SUBSCRIPTION "%s"' % env.name]
    assert result['slot_left_behind'] is None
    assert result['diff']['after'] == {} and result['diff']['before']['name'] == env.name
    assert env.subscriptions() == [] and env.slots() == []
    again = env.run(state='absent')
    assert_ok(again, changed=False)
    assert again['queries'] == [] and again['exists'] is False


def test_absent_with_publisher_stopped_leaves_slot_reported(env, pg_base):
    extra = Cluster('extra_' + env.name, pg_base).start()
    try:
        extra.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(env.pubdb)))
        extra.execute('CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t',
                      dbname=env.pubdb)
        env.sub_sql('CREATE TABLE t (id int PRIMARY KEY)')
        publisher = dict(host=extra.host, port=extra.port, dbname=env.pubdb, user=extra.user,
                         password=extra.password)
        assert_ok(env.run(publications=['p'], publisher=publisher, wait_for_sync=True),
                  changed=True)
        extra.stop('fast')

        result = env.run(state='absent', publications=None, publisher=None)
        assert_ok(result, changed=True)
        assert result['queries'] == [
            'DROP SUBSCRIPTION "%s"' % env.name,
            'ALTER SUBSCRIPTION "%s" DISABLE' % env.name,
            'ALTER SUBSCRIPTION "%s" SET (slot_name = NONE)' % env.name,
            'DROP SUBSCRIPTION "%s"' % env.name]
        assert result['slot_left_behind'] == {
            'name': env.name, 'host': extra.host, 'port': str(extra.port),
            'dbname': env.pubdb, 'sync_slots_prefix': None}
        assert any('slot %s was left' % env.name in w for w in result['warnings'])
        assert env.subscriptions() == []
        assert_never_shown(result, extra.password)

        extra.restart()
        assert env.slots(extra) == [env.name]  # really left behind, as reported
        drop_slots(extra, env.pubdb)
    finally:
        extra.stop('immediate')


def test_absent_when_slot_already_gone(env):
    env.create_publication(env.create_table())
    assert_ok(env.run(wait_for_sync=True), changed=True)
    env.sub_sql(sql.SQL('ALTER SUBSCRIPTION {} DISABLE').format(sql.Identifier(env.name)))
    drop_slots(env.pub, env.pubdb)
    result = env.run(state='absent')
    assert_ok(result, changed=True)
    assert result['slot_left_behind'] is None
    assert any('did not exist on the publisher' in w for w in result['warnings'])
    assert env.subscriptions() == []


# ---- wait_for_sync failures ------------------------------------------------------------------

def test_wait_for_sync_fails_fast_on_failing_initial_copy(env):
    env.create_publication(env.create_table('ok'), env.create_table('clash'))
    env.sub_sql("INSERT INTO clash VALUES (1, 'already here')")  # unique violation on copy
    result = env.run(wait_for_sync=True, wait_timeout=120)
    assert result['failed'] and result['changed'] is True
    msg = result['msg']
    assert 'Subscription %s did not finish its initial synchronisation' % env.name in msg
    # three errors without progress (the baseline moves on when the other table gets ready)
    assert re.search(r'a table synchronization worker failed \(sync_error_count rose from '
                     r'(\d+) to (\d+)\)', msg), msg
    low, high = map(int, re.search(r'rose from (\d+) to (\d+)', msg).groups())
    assert high - low > SYNC_ERRORS_TOLERATED
    assert 'public.clash: ' in msg and 'public.ok: ' in msg
    assert "only in the subscriber's server log" in msg
    assert result['queries'][0].startswith('CREATE SUBSCRIPTION')
    states = dict((t['name'], t['state_code']) for t in result['subscription']['tables'])
    assert states['public.clash'] != 'r'
    assert result['subscription']['errors']['sync_error_count'] >= 1
    assert 'duplicate key value' in env.sub.log_text()  # where the message says it is


def test_wait_for_sync_times_out_with_table_states(env, subscriber):
    env.create_publication(env.create_table())
    blocker = subscriber.connect(env.subdb, autocommit=False)
    try:
        with blocker.cursor() as cur:  # blocks the initial COPY, not CREATE SUBSCRIPTION
            cur.execute('LOCK TABLE t IN SHARE MODE')
        result = env.run(wait_for_sync=True, wait_timeout=3)
    finally:
        blocker.rollback()
        blocker.close()
    assert result['failed'] and result['changed'] is True
    assert 'did not finish its initial synchronisation after 3s: timed out (1 of 1 tables not ' \
           'ready)' in result['msg']
    assert 'Tables: public.t: ' in result['msg']
    assert 'sync_error_count=0, apply_error_count=0' in result['msg']
    assert_ok(env.run(wait_for_sync=True, wait_timeout=60), changed=False)


# ---- version gates and bad input -------------------------------------------------------------

def test_version_gates_on_pg15(env):
    if env.sub.version() > 15:
        pytest.skip('the gated options exist from PostgreSQL 16 and 17 on')
    env.create_publication(env.create_table())
    gated = [('failover', True, '17'), ('origin', 'none', '16'), ('run_as_owner', True, '16'),
             ('password_required', True, '16'), ('streaming', 'parallel', '16')]
    tasks = [{'name': option, MODULE: env.args(**{option: value}), 'ignore_errors': True}
             for option, value, _v in gated]
    run = run_tasks(tasks)
    for (option, value, version), result in zip(gated, run.results):
        assert result['failed'], option
        feature = option if option != 'streaming' else 'streaming = parallel'
        assert result['msg'] == ('Subscription option %s requires PostgreSQL %s or later; the '
                                 'server runs PostgreSQL 15.' % (feature, version))
    assert env.subscriptions() == [] and env.slots() == []


@pytest.mark.parametrize('args, message', [
    ({'publisher': None}, 'cannot be created without publisher'),
    ({'publications': None}, 'cannot be created without publications'),
    ({'name': 'n' * 64}, 'longer than 63 bytes'),
    ({'slot_name': 'Bad-Slot'}, 'not a valid replication slot name'),
    ({'name': 'Upper Case'}, 'set slot_name'),
    ({'publisher': {'host': '127.0.0.1', 'options': {'password': 'x'}}},
     'publisher.options must not contain password'),
    ({'synchronous_commit': 'sometimes'}, 'synchronous_commit must be one of'),
    ({'connect': False, 'enabled': True}, 'connect: false cannot be combined with enabled'),
])
def test_bad_input_fails_before_any_change(env, args, message):
    result = env.run(**args)
    assert result['failed'] and message in result['msg'], result['msg']
    assert result.get('queries', []) == []
    assert env.subscriptions() == []


def test_unknown_publication_at_publisher(env):
    env.create_publication(env.create_table())
    result = env.run(publications=['no_such_publication'])
    # PostgreSQL 15 creates the subscription and warns; the module passes the warning on
    assert_ok(result, changed=True)
    assert any('no_such_publication' in w and 'does not exist' in w
               for w in result.get('warnings', [])), result.get('warnings')
    assert result['subscription']['tables'] == []


# ---- hostile names ---------------------------------------------------------------------------

def test_hostile_names(env):
    schema, table = 'My Schema', "Tbl ü 'q' %s"
    publication = 'Pub \'x\' "y" 100%; DROP'
    name = 'Sub "x"; DROP TABLE t;-- ü'
    ident = env.create_table(table, schema=schema, rows=4)
    env.create_publication(ident, name=publication)
    args = dict(name=name, publications=[publication], slot_name='hostile_' + env.name,
                comment="it's 100% \\ hostile", wait_for_sync=True)
    result = env.run(**args)
    assert_ok(result, changed=True)
    assert result['queries'][0].startswith('CREATE SUBSCRIPTION "Sub ""x""; DROP TABLE t;-- ü"')
    assert result['subscription']['name'] == name
    assert result['subscription']['publications'] == [publication]
    assert result['subscription']['comment'] == "it's 100% \\ hostile"
    assert result['subscription']['tables'] == [
        {'name': "My Schema.Tbl ü 'q' %s", 'state': 'ready', 'state_code': 'r'}]
    assert env.sub_sql(sql.SQL('SELECT count(*) FROM {}').format(ident)) == [(4,)]
    assert_ok(env.run(**args), changed=False)
    result = env.run(name=name, state='absent')
    assert_ok(result, changed=True)
    assert env.subscriptions() == [] and env.slots() == []


# ---- faults: an apply conflict skipped, a slot lost on the publisher --------------------------

def _last_apply_error(env):
    result = run_module('tablesync.postgresql.pg_sync_info',
                        dict(env.sub.login(env.subdb), gather=['subscriptions'],
                             server_log=env.sub.logfile))
    assert_ok(result)
    return [s for s in result['subscriptions'] if s['name'] == env.name][0]['last_apply_error']


def test_skip_lsn_skips_the_failing_transaction(env):
    t = env.create_table('t', rows=3)
    env.create_publication(t)
    assert_ok(env.run(wait_for_sync=True, wait_timeout=120), changed=True)
    env.sub_sql("INSERT INTO t VALUES (100, 'already here')")
    env.pub_sql("INSERT INTO t VALUES (100, 'already here')")  # duplicate key on apply
    wait_for(lambda: 'Key (id)=(100)' in ((_last_apply_error(env) or {}).get('detail') or ''),
             timeout=60, what='the apply error in the server log')
    error = _last_apply_error(env)
    assert error['resolved'] is False and error['relation'] == 'public.t', error
    if env.sub.version() >= 18:  # logged as a conflict, the key on the detail's last line
        assert error['conflict'] == 'insert_exists', error
        assert error['detail'].startswith('Key already exists in unique index "t_pkey"'), error
    else:
        assert error['detail'] == 'Key (id)=(100) already exists.', error
    lsn = error['finish_lsn']

    before = env.catalog_snapshot()
    checked = env.run(check=True, skip_lsn=lsn.lower())
    assert_ok(checked, changed=True)
    assert checked['queries'] == ["ALTER SUBSCRIPTION \"%s\" SKIP (lsn = '%s')" % (env.name, lsn)]
    assert env.catalog_snapshot() == before
    assert_ok(env.run(skip_lsn=lsn), changed=True)
    env.pub_sql("INSERT INTO t VALUES (101, 'after the skipped one')")
    wait_for(lambda: env.count() == 5, timeout=60, what='the apply to go on')
    assert _last_apply_error(env)['resolved'] is True
    # done: the subscription is past the LSN, the same task changes nothing
    assert_ok(env.run(skip_lsn=lsn), changed=False)
    assert env.sub_sql('SELECT subskiplsn::text FROM pg_subscription WHERE subname = %s',
                       (env.name,)) == [('0/0',)]


@pytest.mark.parametrize('initial_copy', ['tablesync', 'snapshot'])
def test_on_lost_slot_fail_then_rebuild(env, initial_copy):
    t = env.create_table('t', rows=20)
    env.create_publication(t)
    assert_ok(env.run(wait_for_sync=True, wait_timeout=120), changed=True)
    # the slot disappears on the publisher (as after pg_drop_replication_slot by hand); the
    # subscriber also holds a row the publisher never had
    env.sub_sql(sql.SQL('ALTER SUBSCRIPTION {} DISABLE').format(sql.Identifier(env.name)))
    drop_slots(env.pub, env.pubdb)
    env.sub_sql(sql.SQL('ALTER SUBSCRIPTION {} ENABLE').format(sql.Identifier(env.name)))
    env.sub_sql("INSERT INTO t VALUES (999, 'stray')")
    assert env.slots() == []

    assert_ok(env.run(on_lost_slot='ignore'), changed=False)
    failed = env.run(on_lost_slot='fail')
    assert failed['failed'] and failed['changed'] is False
    assert 'The replication slot %s of subscription %s does not exist on the publisher' % (
        env.name, env.name) in failed['msg']
    assert 'on_lost_slot=rebuild' in failed['msg']
    assert_never_shown(failed, env.pub.password)

    before = env.catalog_snapshot()
    checked = env.run(check=True, on_lost_slot='rebuild', initial_copy=initial_copy)
    assert_ok(checked, changed=True)
    assert env.catalog_snapshot() == before and env.count() == 21
    assert checked['rebuilt'] == {'slot': env.name, 'status': 'missing', 'tables_emptied': ['public.t']}
    assert checked['queries'][:4] == [
        'ALTER SUBSCRIPTION "%s" DISABLE' % env.name,
        'ALTER SUBSCRIPTION "%s" SET (slot_name = NONE)' % env.name,
        'DROP SUBSCRIPTION "%s"' % env.name,
        'TRUNCATE "public"."t"']
    assert checked['queries'][4].startswith(
        'CREATE_REPLICATION_SLOT' if initial_copy == 'snapshot' else 'CREATE SUBSCRIPTION')

    rebuilt = env.run(on_lost_slot='rebuild', wait_for_sync=True, wait_timeout=120,
                      initial_copy=initial_copy)
    assert_ok(rebuilt, changed=True)
    assert (rebuilt['initial_copy'] is not None) is (initial_copy == 'snapshot')
    assert_never_shown(rebuilt, env.pub.password)
    assert env.count() == 20  # the stray row is gone, every publisher row copied once
    assert env.slots() == [env.name]
    assert_ok(env.run(on_lost_slot='rebuild', wait_for_sync=True, initial_copy=initial_copy),
              changed=False)
    env.pub_sql("INSERT INTO t VALUES (21, 'replicated again')")
    wait_for(lambda: env.count() == 21, timeout=60, what='replication after the rebuild')


def test_changed_row_filter_is_copied_again_while_writes_go_on(env):
    """The four steps site.yml runs for a changed row filter: pg_publication changed_tables=drop,
    a refresh (the table leaves the subscription), pg_publication with the new filter, a refresh
    with empty_added_tables (emptied, copied anew). A writer moves rows in and out of the filter
    throughout; afterwards the target holds exactly the rows the new filter admits."""
    import threading
    t = env.create_table('t', rows=40)
    env.pub_sql(sql.SQL("UPDATE {} SET v = CASE WHEN id % 2 = 0 THEN 'even' ELSE 'odd' END").format(t))
    pub_args = dict(env.pub.login(env.pubdb), name=env.publication, check_replica_identity=True)
    old = dict(pub_args, tables=[{'name': 'public.t', 'where': "v = 'even'", 'replica_identity': 'full'}])
    new = dict(pub_args, tables=[{'name': 'public.t', 'where': "v = 'odd'", 'replica_identity': 'full'}])
    assert_ok(run_module('tablesync.postgresql.pg_publication', old), changed=True)
    assert_ok(env.run(wait_for_sync=True), changed=True)
    assert env.count('t') == 20

    stop = threading.Event()

    def write():
        conn = env.pub.connect(env.pubdb)
        i = 100
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("INSERT INTO t VALUES (%s, CASE WHEN %s %% 2 = 0 THEN 'even' ELSE 'odd' END)", (i, i))
                cur.execute("UPDATE t SET v = CASE v WHEN 'even' THEN 'odd' ELSE 'even' END WHERE id = %s", (i // 2,))
                cur.execute('DELETE FROM t WHERE id = %s', (i // 3 + 1,))
                i += 1
        conn.close()
    writer = threading.Thread(target=write)
    writer.start()
    try:
        first = run_module('tablesync.postgresql.pg_publication', dict(new, changed_tables='drop'))
        assert_ok(first, changed=True)
        assert first['filter_changed'] == ['public.t']
        assert first['queries'] == ['ALTER PUBLICATION "%s" DROP TABLE ONLY "public"."t"' % env.publication]
        left = env.run(state='refreshed', empty_added_tables=True)
        assert_ok(left, changed=True)
        assert left['tables_removed'] == ['public.t'] and left['tables_emptied'] == []
        back = run_module('tablesync.postgresql.pg_publication', new)
        assert_ok(back, changed=True)
        assert back['filter_changed'] == []
        copied = env.run(state='refreshed', empty_added_tables=True, wait_for_sync=True, wait_timeout=120)
        assert_ok(copied, changed=True)
        assert copied['tables_emptied'] == ['public.t'] and copied['tables_added'] == ['public.t']
    finally:
        stop.set()
        writer.join()
    source = 'SELECT id, v FROM t WHERE v = %s ORDER BY id'
    wait_for(lambda: env.sub_sql('SELECT id, v FROM t ORDER BY id') == env.pub_sql(source, ('odd',)),
             timeout=60, what='target equal to the rows of the new filter')
    stats = env.sub.query('SELECT apply_error_count, sync_error_count FROM pg_stat_subscription_stats '
                          'WHERE subname = %s', (env.name,), dbname=env.subdb)
    assert stats == [(0, 0)], stats
    again = run_module('tablesync.postgresql.pg_publication', dict(new, changed_tables='drop'))
    assert_ok(again, changed=False)
    assert_ok(env.run(state='refreshed', empty_added_tables=True), changed=False)
