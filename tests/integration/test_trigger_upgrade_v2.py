"""An existing deployment of the trigger method's routines v2 is upgraded in place to v3 (column
changes followed): the changes v2 captured and left queued are applied in order, the storage
gains the attnums of the synced columns, the event trigger is installed, and a migration after
the upgrade reaches the target.

The v2 state comes from fixtures/trigger_v2_*.sql: pg_dump of a source database (routines v2
owned by tablesync_trigger_owner, 10 queued changes) and of its target, made by the module of
commit d89688e with a set v2set of public.items and public.notes (keyless), backfilled and
flushed, then written to (inserts, updates, a key update, deletes, duplicate keyless rows), and
dumped with owners and privileges.
"""
from test_pg_sync_trigger import WRITER, assert_same, ensure_writer, run, sync_args
from test_trigger_follow import FOLLOW, shape
from test_trigger_upgrade_v1 import restore
from runner import run_module


def test_v2_queue_is_applied_and_column_changes_are_followed_after(publisher, subscriber):
    db = 'v2_upgrade'
    ensure_writer(subscriber)
    publisher.execute("DO $$ BEGIN CREATE ROLE tablesync_trigger_owner NOLOGIN; "
                      "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    restore(publisher, db, 'trigger_v2_source.sql')
    restore(subscriber, db, 'trigger_v2_target.sql', strip=('CREATE SCHEMA public;',))
    publisher.execute("ALTER SERVER tablesync_v2set OPTIONS (SET host '%s', SET port '%s', SET dbname '%s')"
                      % (subscriber.host, subscriber.port, db), dbname=db)
    assert publisher.query('SELECT count(*) FROM tablesync.trigger_changes', dbname=db) == [(10,)]
    assert subscriber.query('SELECT count(*) FROM items WHERE id IN (21, 100)', dbname=db) == [(0,)]
    installed = run_module(FOLLOW, dict(subscriber.login(db), side='trigger_target', writer_role=WRITER))
    assert not installed.get('failed'), installed

    args = sync_args(publisher, subscriber, db, 'v2set', ['public.items', 'public.notes'], flush=True)
    result = run(args)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True
    assert publisher.query('SELECT count(*) FROM tablesync.trigger_changes', dbname=db) == [(0,)]
    assert publisher.query("SELECT obj_description('tablesync.flush(text,bigint)'::regprocedure)",
                           dbname=db) == [('tablesync.postgresql sync_trigger v3',)]
    assert publisher.query('SELECT source_table, numbers, follow FROM tablesync.trigger_tables ORDER BY id',
                           dbname=db) == [('items', [1, 2, 3, 4], True), ('notes', [1, 2], True)]
    assert_same(publisher, subscriber, db, 'items', 'id')
    assert_same(publisher, subscriber, db, 'notes', 'id, body')
    assert run(args)['changed'] is False

    # after the upgrade, a migration is followed by the capture and the flush
    publisher.execute("ALTER TABLE items ADD COLUMN note text DEFAULT 'n'; "
                      "INSERT INTO items VALUES (300, 'after', 1, NULL, 'migrated')", dbname=db)
    publisher.execute('CALL tablesync.flush()', dbname=db)
    assert shape(subscriber, db, 'public.items') == shape(publisher, db, 'public.items')
    assert_same(publisher, subscriber, db, 'items', 'id')
    assert run(args)['changed'] is False
