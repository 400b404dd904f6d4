"""The trigger method keeps the target equal to the source, row by row, for hard types written
from sessions with different settings, keyless tables with duplicate rows, partitions, key
updates, TRUNCATE and rollbacks, in both modes (issue 12). Seeded: the seed is printed, and
TABLESYNC_SEED replays it."""
import pytest

from exactness import HARD_TYPES_DDL, TABLES, assert_equal, run_workload, seed_from_env
from test_pg_sync_trigger import make_pair, run, sync_args

TRANSACTIONS = 240


@pytest.mark.parametrize('mode', ['queued', 'immediate'])
def test_randomized_workload_arrives_exactly(publisher, subscriber, mode):
    seed = seed_from_env()
    print('TABLESYNC_SEED=%d (mode %s)' % (seed, mode))
    db = 'exact_%s' % mode
    make_pair(publisher, subscriber, db, HARD_TYPES_DDL)
    args = sync_args(publisher, subscriber, db, 'exact_%s' % mode, sorted(TABLES), mode=mode,
                     batch_size=7, backfill=True)
    # rows present before the triggers: copied by the backfill
    run_workload(lambda: publisher.connect(db), seed + 1, 20)
    first = run(args)
    assert first['changed'] and not first.get('failed'), first
    assert_equal(publisher, subscriber, db, seed + 1)

    half = TRANSACTIONS // 2
    run_workload(lambda: publisher.connect(db), seed, half)
    if mode == 'queued':
        flushed = run(dict(args, flush=True))
        assert not flushed.get('failed'), flushed
        assert flushed['backlog'] == 0
    assert_equal(publisher, subscriber, db, seed)
    run_workload(lambda: publisher.connect(db), seed + 2, TRANSACTIONS - half)
    if mode == 'queued':
        # several changes of one row in one batch, inserts and deletes of one key, key updates
        publisher.execute('CALL tablesync.flush()', dbname=db)
    assert_equal(publisher, subscriber, db, seed + 2)
    assert publisher.query('SELECT count(*) FROM tablesync.trigger_changes', dbname=db) == [(0,)]
    assert run(args)['changed'] is False


def test_identity_of_a_key_is_its_value_whatever_the_session(publisher, subscriber):
    """Issue 12 item 3: a timestamptz key written under two time zones is one row."""
    db = 'exact_tz'
    make_pair(publisher, subscriber, db,
              'CREATE TABLE t (k timestamptz PRIMARY KEY, v int)')
    args = sync_args(publisher, subscriber, db, 'tz', ['public.t'])
    assert not run(args).get('failed')
    conn = publisher.connect(db)
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = 'Asia/Tokyo'")
        cur.execute("INSERT INTO t VALUES ('2024-01-01 09:00:00+09', 1)")
        cur.execute("SET TimeZone = 'America/Lima'")
        cur.execute("UPDATE t SET v = 2 WHERE k = '2023-12-31 19:00:00-05'")
        cur.execute("UPDATE t SET v = 3 WHERE k = '2024-01-01 00:00:00+00'")
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute("INSERT INTO t VALUES ('2024-02-01 00:00:00+00', 9)")
        cur.execute("DELETE FROM t WHERE k = '2024-02-01 00:00:00+00'")
    conn.close()
    flushed = run(dict(args, flush=True))
    assert not flushed.get('failed') and flushed['flushed'] == 5, flushed
    assert_equal(publisher, subscriber, db, 0, tables=['public.t'])
    assert subscriber.query('SELECT v FROM t', dbname=db) == [(3,)]


def test_keyless_duplicates_delete_exactly_one(publisher, subscriber):
    """Issue 12 item 3: deleting one of two identical rows deletes exactly one on the target."""
    db = 'exact_dup'
    make_pair(publisher, subscriber, db, 'CREATE TABLE bag (v text, p point, j json)')
    args = sync_args(publisher, subscriber, db, 'dup', ['public.bag'], flush=True)
    first = run(args)
    assert not first.get('failed') and first['sync_set']['tables'][0]['keyless'], first
    publisher.execute("INSERT INTO bag VALUES ('a', '(1,2)', '{\"x\": 1}'), "
                      "('a', '(1,2)', '{\"x\": 1}'), ('a', '(1,2)', '{\"x\": 1}'), "
                      "(NULL, NULL, NULL), (NULL, NULL, NULL)", dbname=db)
    publisher.execute("DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE v = 'a' LIMIT 1)",
                      dbname=db)
    publisher.execute("UPDATE bag SET v = 'b' WHERE ctid = (SELECT ctid FROM bag WHERE v IS NULL "
                      "LIMIT 1)", dbname=db)
    assert not run(args).get('failed')
    assert subscriber.query("SELECT v, count(*) FROM bag GROUP BY v ORDER BY v", dbname=db) == [
        ('a', 2), ('b', 1), (None, 1)]
    assert_equal(publisher, subscriber, db, 0, tables=['public.bag'])


def test_target_divergence_stops_only_that_set_with_a_clear_error(publisher, subscriber):
    """Issue 12 item 2: a genuine target-side error names set, table and change, is recorded,
    is retried by later flushes, and the other sets keep flowing."""
    db = 'exact_err'
    make_pair(publisher, subscriber, db, 'CREATE TABLE a (id int PRIMARY KEY, v int); '
                                         'CREATE TABLE b (id int PRIMARY KEY, v int)')
    subscriber.execute('ALTER TABLE a ADD CONSTRAINT small CHECK (v < 100)', dbname=db)
    assert not run(sync_args(publisher, subscriber, db, 'sa', ['public.a'])).get('failed')
    assert not run(sync_args(publisher, subscriber, db, 'sb', ['public.b'])).get('failed')
    publisher.execute('INSERT INTO a VALUES (1, 1000); INSERT INTO b VALUES (1, 1000)', dbname=db)
    conn = publisher.connect(db)
    with pytest.raises(Exception) as failure:
        with conn.cursor() as cur:
            cur.execute('CALL tablesync.flush()')
    conn.close()
    message = str(failure.value)
    assert 'sync set(s) sa failed' in message and 'public.a' in message and 'small' in message
    assert subscriber.query('SELECT v FROM b', dbname=db) == [(1000,)]  # the other set flowed
    row = publisher.query("SELECT last_error, failed_change, error_count FROM "
                          "tablesync.trigger_sets WHERE name = 'sa'", dbname=db)[0]
    assert 'violates check constraint "small"' in row[0] and row[1] is not None and row[2] == 1
    assert publisher.query("SELECT count(*) FROM tablesync.trigger_changes WHERE set_name = 'sa'",
                           dbname=db) == [(1,)]
    subscriber.execute('ALTER TABLE a DROP CONSTRAINT small', dbname=db)
    publisher.execute('CALL tablesync.flush()', dbname=db)
    assert subscriber.query('SELECT v FROM a', dbname=db) == [(1000,)]
    assert publisher.query("SELECT last_error FROM tablesync.trigger_sets WHERE name = 'sa'",
                           dbname=db) == [(None,)]
