"""An existing deployment of the trigger method's routines v1 (jsonb queue) is upgraded in place
by the current module (issue 12 item 4): the changes v1 captured and left queued are applied in
order, then capture goes on with the new routines, and the target equals the source.

The v1 state comes from fixtures/trigger_v1_*.sql: pg_dump of a source database (routines,
queue with 14 captured changes) and of its target, made by the module of commit e8c6355^ with
a set v1set of public.items and public.notes, backfilled and flushed, then written to.
"""
import os
import subprocess

from test_pg_sync_trigger import assert_same, ensure_writer, run, sync_args, WRITER

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


def restore(cluster, db, name, strip=()):
    with open(os.path.join(FIXTURES, name)) as f:
        text = f.read()
    for line in strip:
        text = text.replace(line, '')
    cluster.execute('CREATE DATABASE %s' % db)
    proc = subprocess.run(['runuser', '-u', 'postgres', '--', os.path.join(cluster.client_bindir, 'psql'),
                           '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', cluster.sockdir,
                           '-p', str(cluster.port), '-U', cluster.user, '-d', db],
                          input=text, universal_newlines=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    assert proc.returncode == 0, proc.stderr


def test_v1_queue_is_applied_and_capture_goes_on(publisher, subscriber):
    db = 'v1_upgrade'
    ensure_writer(subscriber)
    restore(publisher, db, 'trigger_v1_source.sql')
    restore(subscriber, db, 'trigger_v1_target.sql', strip=('CREATE SCHEMA public;',))
    subscriber.execute('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA '
                       'public TO %s' % WRITER, dbname=db)
    # the deployment's foreign server points to its target: here, this run's target cluster
    publisher.execute("ALTER SERVER tablesync_v1set OPTIONS (SET host '%s', SET port '%s', SET dbname '%s')"
                      % (subscriber.host, subscriber.port, db), dbname=db)
    queued = publisher.query('SELECT count(*) FROM tablesync.trigger_changes', dbname=db)[0][0]
    assert queued == 14
    # the target is behind: the v1 queue holds what it lacks
    assert subscriber.query('SELECT count(*) FROM items WHERE id IN (21, 100)', dbname=db) == [(0,)]

    args = sync_args(publisher, subscriber, db, 'v1set', ['public.items', 'public.notes'], flush=True)
    result = run(args)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True
    assert publisher.query('SELECT count(*) FROM tablesync.trigger_changes', dbname=db) == [(0,)]
    assert publisher.query("SELECT count(*) FROM pg_proc WHERE proname = 'capture_row' "
                           "AND pronamespace = 'tablesync'::regnamespace", dbname=db) == [(0,)]
    assert_same(publisher, subscriber, db, 'items', 'id')
    assert_same(publisher, subscriber, db, 'notes', 'id')

    # capture goes on with the new routines: the next changes are queued as text and flushed
    publisher.execute("INSERT INTO items VALUES (200, 'after', 'NaN', '-infinity'); "
                      "UPDATE notes SET id = 60 WHERE id = 6; DELETE FROM items WHERE id = 100",
                      dbname=db)
    publisher.execute('CALL tablesync.flush()', dbname=db)
    assert_same(publisher, subscriber, db, 'items', 'id')
    assert_same(publisher, subscriber, db, 'notes', 'id')
    again = run(args)
    assert not again.get('failed') and again['changed'] is False, again.get('queries')
