"""pg_subscription initial_copy=snapshot against two real PostgreSQL clusters: the copy in the
slot's exported snapshot, the subscription on that slot, and the undo when anything fails."""
import threading
import time

from psycopg2 import sql

from pgcluster import wait_for
from test_pg_subscription import SyncEnv, assert_never_shown, assert_ok, env  # noqa: F401 pylint: disable=unused-import

ORDERS_DDL = ('CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, '
              'code text UNIQUE, note text)')
ORDERS_INDEX = 'CREATE INDEX orders_customer_idx ON orders (customer)'
CHECKSUM = 'SELECT count(*), COALESCE(sum(id), 0), COALESCE(sum(customer), 0) FROM orders'
INDEXES = ("SELECT array_agg(c.relname::text || ':' || i.indisvalid::text ORDER BY c.relname) "
           "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
           "WHERE i.indrelid = 'orders'::regclass")


def orders_env(env, rows):
    env.pub_sql(ORDERS_DDL)
    env.pub_sql(ORDERS_INDEX)
    env.sub_sql(ORDERS_DDL)
    env.sub_sql(ORDERS_INDEX)
    env.pub_sql("INSERT INTO orders SELECT g, g %% 1000, 'c' || g, 'note ' || g "
                "FROM generate_series(1, %s) g", (rows,))
    env.create_publication(sql.Identifier('orders'))


def test_snapshot_copy_under_writes_then_replicates(env):
    """Rows written on the publisher while the copy runs arrive exactly once: the copy sees the
    snapshot, the slot streams what was committed after it."""
    orders_env(env, 200000)
    stop = threading.Event()
    written = []

    def writer():
        conn = env.pub.connect(env.pubdb)
        n = 1000000
        with conn.cursor() as cur:
            while not stop.is_set():
                n += 1
                cur.execute("INSERT INTO orders VALUES (%s, 7, 'w' || %s, 'during')", (n, n))
                cur.execute('UPDATE orders SET customer = customer + 1 WHERE id = %s',
                            (n % 200000 + 1,))
                cur.execute('DELETE FROM orders WHERE id = %s', (n % 200000 + 100000,))
                written.append(n)
                time.sleep(0.002)
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        result = env.run(initial_copy='snapshot', wait_for_sync=True, wait_timeout=120)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert_ok(result, changed=True)
    assert len(written) > 50, 'the writer did not write during the copy'
    queries = result['queries']
    assert queries[0] == ('CREATE_REPLICATION_SLOT "%s" LOGICAL pgoutput EXPORT_SNAPSHOT'
                          '  -- on the publisher' % env.name)
    assert any(q.startswith('COPY (SELECT "id", "customer", "code", "note" FROM ONLY '
                            '"public"."orders") TO STDOUT') for q in queries)
    assert 'ALTER TABLE "public"."orders" DROP CONSTRAINT "orders_pkey"' in queries
    create = [q for q in queries if q.startswith('CREATE SUBSCRIPTION')]
    assert len(create) == 1 and "copy_data = false" in create[0] \
        and "create_slot = false" in create[0] and "slot_name = '%s'" % env.name in create[0]
    copy = result['initial_copy']
    assert copy['slot'] == env.name
    [table] = copy['tables']
    assert table['name'] == 'public.orders' and table['rows'] >= 200000
    assert table['format'] == 'binary'  # same version, same built-in types
    assert table['indexes_rebuilt'] == 3 and table['indexes_kept'] == []
    assert result['subscription']['tables'] == [
        {'name': 'public.orders', 'state': 'ready', 'state_code': 'r'}]
    assert_never_shown(result, env.pub.password)
    # every index back, valid, under its name
    assert env.sub_sql(INDEXES)[0][0] == ['orders_code_key:true', 'orders_customer_idx:true',
                                          'orders_pkey:true']
    expected = env.pub_sql(CHECKSUM)[0]
    wait_for(lambda: env.sub_sql(CHECKSUM)[0] == expected, timeout=60,
             what='the subscriber to match the publisher after the writes')
    # the subscription replicates on from there
    env.pub_sql("INSERT INTO orders VALUES (5000000, 1, 'after', NULL)")
    wait_for(lambda: env.sub_sql('SELECT count(*) FROM orders WHERE id = 5000000')[0][0] == 1,
             timeout=30, what='a row inserted after the run')
    assert env.slots() == [env.name]
    assert result['subscription']['enabled'] is True and result['subscription']['comment'] is None
    # ready from the start: no table synchronisation worker ran (it would record its LSN)
    assert env.sub_sql('SELECT srsubstate, srsublsn FROM pg_subscription_rel') == [('r', None)]

    again = env.run(initial_copy='snapshot', wait_for_sync=True)
    assert_ok(again, changed=False)
    assert again['queries'] == [] and again['initial_copy'] is None


def test_snapshot_copy_row_filter_column_list_and_hostile_names(env):
    """Identifiers with quotes, spaces, mixed case and unicode; a row filter and a column list
    (the subscriber's extra column keeps its default); two tables copied by two jobs."""
    schema, table = 'Sch "ä"', 'Ta;ble "x" 🙂'
    ident = sql.Identifier(schema, table)
    for run in (env.pub_sql, env.sub_sql):
        run(sql.SQL('CREATE SCHEMA {}').format(sql.Identifier(schema)))
        run(sql.SQL('CREATE TABLE {} ("Id" int PRIMARY KEY, "Käse;" text, secret text)')
            .format(ident))
        run(sql.SQL('CREATE TABLE {}.plain (id int PRIMARY KEY)').format(sql.Identifier(schema)))
    env.sub_sql(sql.SQL("ALTER TABLE {} ADD COLUMN local text DEFAULT 'here'").format(ident))
    env.pub_sql(sql.SQL("INSERT INTO {} SELECT g, 'v''' || g, 'hidden' FROM "
                        "generate_series(1, 100) g").format(ident))
    env.pub_sql(sql.SQL('INSERT INTO {}.plain SELECT generate_series(1, 10)')
                .format(sql.Identifier(schema)))
    env.pub_sql(sql.SQL('CREATE PUBLICATION {} FOR TABLE {} ("Id", "Käse;") WHERE ("Id" > 60), '
                        '{}.plain').format(sql.Identifier(env.publication), ident,
                                           sql.Identifier(schema)))
    result = env.run(initial_copy='snapshot', copy_jobs=2, wait_for_sync=True)
    assert_ok(result, changed=True)
    rows = env.sub_sql(sql.SQL('SELECT count(*), min("Id"), count(secret), min(local), '
                               'min("Käse;") FROM {}').format(ident))
    assert rows == [(40, 61, 0, 'here', "v'100")]
    assert env.sub_sql(sql.SQL('SELECT count(*) FROM {}.plain').format(
        sql.Identifier(schema)))[0][0] == 10
    assert sorted(t['name'] for t in result['initial_copy']['tables']) == [
        '%s.%s' % (schema, table), '%s.plain' % schema]
    assert any(' WHERE (("Id" > 60))' in q for q in result['queries']), result['queries']
    # and the filter holds for what replicates afterwards
    env.pub_sql(sql.SQL("INSERT INTO {} VALUES (-5, 'no', 'x'), (500, 'yes', 'x')").format(ident))
    wait_for(lambda: env.sub_sql(sql.SQL('SELECT array_agg("Id" ORDER BY "Id") FROM {} WHERE '
                                         '"Id" IN (-5, 500)').format(ident))[0][0] == [500],
             timeout=30, what='the filtered insert')


def test_snapshot_copy_refuses_missing_and_nonempty_tables_before_making_anything(env):
    orders_env(env, 10)
    env.pub_sql('CREATE TABLE extra (id int PRIMARY KEY, v text)')
    env.pub_sql('CREATE TABLE gone (id int PRIMARY KEY)')
    env.pub_sql('ALTER PUBLICATION %s ADD TABLE extra, gone' % env.publication)
    env.sub_sql('CREATE TABLE extra (id int PRIMARY KEY)')  # lacks v
    env.sub_sql("INSERT INTO orders VALUES (1, 1, 'x', NULL)")
    result = env.run(initial_copy='snapshot')
    assert result['failed']
    msg = result['msg']
    assert 'public.gone does not exist on the subscriber' in msg
    assert 'public.extra on the subscriber lacks the published column(s) v' in msg
    assert 'public.orders on the subscriber is not empty' in msg
    assert 'Nothing was changed' in msg
    assert env.slots() == [] and env.subscriptions() == []
    assert env.sub_sql('SELECT count(*) FROM orders')[0][0] == 1


def test_snapshot_copy_failure_is_undone(env):
    """The second table's copy fails (a CHECK constraint on the subscriber rejects a row): the
    first table, already committed, is emptied again, the slot dropped, no subscription made,
    and the failed table keeps its primary key."""
    for name in ('a_first', 'b_second'):
        env.pub_sql('CREATE TABLE %s (id int PRIMARY KEY, v int)' % name)
        env.pub_sql('INSERT INTO %s SELECT g, g FROM generate_series(1, 1000) g' % name)
        env.sub_sql('CREATE TABLE %s (id int PRIMARY KEY, v int)' % name)
    env.sub_sql('ALTER TABLE b_second ADD CONSTRAINT small CHECK (v < 900)')
    env.create_publication(sql.Identifier('a_first'), sql.Identifier('b_second'))
    result = env.run(initial_copy='snapshot', copy_jobs=1)
    assert result['failed']
    msg = result['msg']
    assert 'violates check constraint "small"' in msg, msg
    assert 'the 1 table(s) already copied were emptied again' in msg, msg
    assert 'subscription %s was dropped with its slot' % env.name in msg, msg
    assert env.subscriptions() == []
    wait_for(lambda: env.slots() == [], timeout=30, what='the slot to be gone')
    assert env.sub_sql('SELECT (SELECT count(*) FROM a_first), (SELECT count(*) FROM b_second)') \
        == [(0, 0)]
    assert env.sub_sql("SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid IN "
                       "('a_first'::regclass, 'b_second'::regclass)")[0][0] == 2
    assert_never_shown(result, env.pub.password)

    # fixed, the next run copies and subscribes
    env.sub_sql('ALTER TABLE b_second DROP CONSTRAINT small')
    again = env.run(initial_copy='snapshot', wait_for_sync=True)
    assert_ok(again, changed=True)
    assert env.sub_sql('SELECT (SELECT count(*) FROM a_first), (SELECT count(*) FROM b_second)') \
        == [(1000, 1000)]


def test_snapshot_copy_check_mode_changes_nothing(env):
    orders_env(env, 100)
    before = env.catalog_snapshot()
    result = env.run(initial_copy='snapshot', check=True, diff=True)
    assert_ok(result, changed=True)
    assert result['queries'][0].startswith('CREATE_REPLICATION_SLOT')
    assert any(q.startswith('CREATE SUBSCRIPTION') for q in result['queries'])
    assert result['initial_copy'] is None
    assert env.catalog_snapshot() == before
    assert env.sub_sql('SELECT count(*) FROM orders')[0][0] == 0


def test_snapshot_copy_refuses_options_it_cannot_honour(env):
    orders_env(env, 1)
    result = env.run(initial_copy='snapshot', two_phase=True)
    assert result['failed']
    assert 'does not support two_phase: true; use initial_copy=tablesync' in result['msg']
    result = env.run(initial_copy='snapshot', copy_jobs=0)
    assert result['failed'] and 'copy_jobs must be at least 1' in result['msg']
    result = env.run(initial_copy='snapshot', name='Not A Slot')
    assert result['failed'] and 'is not a valid slot name' in result['msg']
    assert env.slots() == [] and env.subscriptions() == []


def test_snapshot_copy_keeps_what_it_cannot_rebuild(env):
    """A commented index and the replica identity index stay in place (maintained during the
    copy); the rest is rebuilt."""
    orders_env(env, 500)
    env.sub_sql("COMMENT ON INDEX orders_customer_idx IS 'keep me'")
    env.sub_sql('ALTER TABLE orders ALTER COLUMN code SET NOT NULL')
    env.sub_sql('ALTER TABLE orders REPLICA IDENTITY USING INDEX orders_code_key')
    result = env.run(initial_copy='snapshot', wait_for_sync=True)
    assert_ok(result, changed=True)
    [table] = result['initial_copy']['tables']
    assert table['indexes_rebuilt'] == 1
    assert sorted((k['index'], k['reason']) for k in table['indexes_kept']) == [
        ('orders_code_key', 'it is the replica identity'),
        ('orders_customer_idx', 'it has a comment')]
    assert env.sub_sql("SELECT obj_description('orders_customer_idx'::regclass, 'pg_class'), "
                       "(SELECT indisreplident FROM pg_index WHERE indexrelid = "
                       "'orders_code_key'::regclass), count(*) FROM orders") == \
        [('keep me', True, 500)]


def test_interrupted_copy_is_recovered_by_the_next_run(env):
    """The state a run killed during the copy leaves (the slot, the subscription on it disabled
    and marked, one table half filled) is emptied, dropped and copied again by the next run;
    while another session holds the copy lock, a run refuses to touch it."""
    from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.snapshot_copy import (
        COPY_MARKER, LOCK_CLASS)
    orders_env(env, 1000)
    env.sub_sql(sql.SQL(
        "CREATE SUBSCRIPTION {} CONNECTION %s PUBLICATION {} WITH (enabled = false, "
        "copy_data = false)").format(sql.Identifier(env.name), sql.Identifier(env.publication)),
        ('host=%s port=%d dbname=%s user=%s password=%s' % (
            env.pub.host, env.pub.port, env.pubdb, env.pub.user, env.pub.password),))
    env.sub_sql(sql.SQL('COMMENT ON SUBSCRIPTION {} IS %s').format(sql.Identifier(env.name)),
                (COPY_MARKER,))
    env.sub_sql("INSERT INTO orders SELECT g, 1, 'half' || g FROM generate_series(1, 400) g")
    assert env.slots() == [env.name]

    holder = env.sub.connect(env.subdb)
    with holder.cursor() as cur:
        cur.execute('SELECT pg_advisory_lock(%s, hashtext(%s))', (LOCK_CLASS, env.name))
    try:
        busy = env.run(initial_copy='snapshot')
    finally:
        holder.close()
    assert busy['failed'] and 'Another run is copying the tables of subscription' in busy['msg']
    assert env.sub_sql('SELECT count(*) FROM orders')[0][0] == 400

    result = env.run(initial_copy='snapshot', wait_for_sync=True)
    assert_ok(result, changed=True)
    assert result['recovered'] == {'tables_emptied': ['public.orders']}
    assert any('did not finish' in w for w in result.get('warnings', []))
    assert result['queries'][:2] == ['TRUNCATE "public"."orders"',
                                     'DROP SUBSCRIPTION "%s"' % env.name]
    assert result['initial_copy']['tables'][0]['rows'] == 1000
    assert env.sub_sql(CHECKSUM)[0] == env.pub_sql(CHECKSUM)[0]
    assert result['subscription']['enabled'] is True and result['subscription']['comment'] is None
    again = env.run(initial_copy='snapshot')
    assert_ok(again, changed=False)
    assert again['recovered'] is None


def test_snapshot_copy_in_text_when_types_differ(env):
    """A column of another type on the subscriber (integer for bigint) and a domain: the rows
    travel as text, which the subscriber parses into its types."""
    env.pub_sql('CREATE DOMAIN positive AS int CHECK (VALUE > 0)')
    env.sub_sql('CREATE DOMAIN positive AS int CHECK (VALUE > 0)')
    env.pub_sql('CREATE TABLE a (id bigint PRIMARY KEY, v numeric(10,2))')
    env.sub_sql('CREATE TABLE a (id integer PRIMARY KEY, v numeric(10,2))')
    env.pub_sql('CREATE TABLE b (id int PRIMARY KEY, p positive)')
    env.sub_sql('CREATE TABLE b (id int PRIMARY KEY, p positive)')
    env.pub_sql('INSERT INTO a SELECT g, g / 3.0 FROM generate_series(1, 50) g')
    env.pub_sql('INSERT INTO b SELECT g, g FROM generate_series(1, 50) g')
    env.create_publication(sql.Identifier('a'), sql.Identifier('b'))
    result = env.run(initial_copy='snapshot', wait_for_sync=True)
    assert_ok(result, changed=True)
    assert [(t['name'], t['format'], t['rows']) for t in result['initial_copy']['tables']] == [
        ('public.a', 'text', 50), ('public.b', 'text', 50)]
    assert env.sub_sql('SELECT sum(id), sum(v) FROM a') == env.pub_sql('SELECT sum(id), sum(v) FROM a')


def test_run_killed_during_the_copy_is_recovered_by_the_next(env, tmp_path):
    """ansible-playbook (and with it the module) killed with SIGKILL while the rows are being
    copied: the disabled, marked subscription it leaves is found by the next run, which
    empties the table, drops the subscription with its slot and copies again."""
    import os
    import signal
    import subprocess
    import sys

    import yaml

    from runner import BINDIR, ansible_env
    from ansible_collections.tablesync.postgresql.plugins.module_utils.logical.snapshot_copy import (
        COPY_MARKER)

    for run in (env.pub_sql, env.sub_sql):
        run('CREATE TABLE big (id bigint PRIMARY KEY, v text)')
    env.pub_sql("INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g")
    env.create_publication(sql.Identifier('big'))
    playbook = tmp_path / 'copy.yml'
    playbook.write_text(yaml.safe_dump([{
        'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
        'vars': {'ansible_python_interpreter': sys.executable},
        'tasks': [{'tablesync.postgresql.pg_subscription': env.args(
            initial_copy='snapshot', copy_jobs=1)}]}]))
    proc = subprocess.Popen([os.path.join(BINDIR, 'ansible-playbook'), '-i', 'localhost,',
                             str(playbook)], env=ansible_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def copying():
        return env.sub.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                             "query LIKE 'COPY %%FROM STDIN%%' AND state = 'active'",
                             (env.subdb,))[0][0] > 0
    try:
        wait_for(copying, timeout=120, interval=0.05, what='the copy to start')
    finally:
        # the whole tree, the module's process included (it is not always in the group)
        for pid in [proc.pid] + _descendants(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=60)
    wait_for(lambda: not copying(), timeout=60, what='the killed copy to end')
    assert env.sub_sql("SELECT subenabled, obj_description(oid, 'pg_subscription') "
                       "FROM pg_subscription WHERE subname = %s", (env.name,)) == \
        [(False, COPY_MARKER)]
    # the table's transaction died with the module, or (killed just after) had committed
    assert env.sub_sql('SELECT count(*) FROM big')[0][0] in (0, 1000000)

    result = env.run(initial_copy='snapshot', wait_for_sync=True, wait_timeout=120)
    assert_ok(result, changed=True)
    assert result['recovered'] == {'tables_emptied': ['public.big']}
    assert result['initial_copy']['tables'][0]['rows'] == 1000000
    assert env.sub_sql('SELECT count(*), sum(id) FROM big') == env.pub_sql(
        'SELECT count(*), sum(id) FROM big')
    wait_for(lambda: env.slots() == [env.name], timeout=30, what='one slot, the subscription\'s')


def _descendants(root):
    """Process ids below ``root`` (from /proc), children before their own children."""
    import os
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(')', 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found
