"""Attacks on the trigger method by roles that own or write synced tables (issue 13, findings
1 to 5): each test performs the attack as the role that could, and asserts it fails."""
import psycopg2
import pytest

from test_pg_sync_trigger import make_pair, run, sync_args

MALLORY = 'tablesync_mallory'
MALLORY_PASSWORD = 'M4llory-pw'


def ensure_mallory(cluster):
    conn = cluster.connect()
    with conn.cursor() as cur:
        cur.execute("SET log_statement = 'none'")
        cur.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (MALLORY,))
        if not cur.fetchone():
            cur.execute('CREATE ROLE %s LOGIN PASSWORD %%s' % MALLORY, (MALLORY_PASSWORD,))
    conn.close()


def as_mallory(cluster, db):
    conn = psycopg2.connect(host=cluster.host, port=cluster.port, user=MALLORY,
                            password=MALLORY_PASSWORD, dbname=db)
    conn.autocommit = True
    return conn


def mallory_is_superuser(cluster):
    return cluster.query('SELECT rolsuper FROM pg_roles WHERE rolname = %s', (MALLORY,))[0][0]


EVIL = '''
CREATE TABLE mallory_log (who text, what text);
GRANT INSERT ON mallory_log TO PUBLIC;
CREATE FUNCTION evil_log(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.mallory_log VALUES (current_user, what);
  BEGIN
    EXECUTE 'ALTER ROLE tablesync_mallory SUPERUSER';
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
END $$;
'''


def test_type_and_table_owner_cannot_run_code_as_the_capture(publisher, subscriber):
    """Finding 1: casts to json/text on a column type or the table's row type, defined by their
    owner, are never called by the capture or the backfill."""
    db = 'sec_cast'
    ensure_mallory(publisher)
    make_pair(publisher, subscriber, db,
              'CREATE TYPE pt2 AS (a int); CREATE TABLE t (id int PRIMARY KEY, p pt2)')
    publisher.execute('ALTER TYPE pt2 OWNER TO %s; ALTER TABLE t OWNER TO %s; '
                      'GRANT CREATE ON SCHEMA public TO %s' % (MALLORY, MALLORY, MALLORY),
                      dbname=db)
    conn = as_mallory(publisher, db)
    with conn.cursor() as cur:
        cur.execute(EVIL)
        for source, target in (('pt2', 'json'), ('pt2', 'text'), ('t', 'json'), ('t', 'jsonb'),
                               ('t', 'text')):
            cur.execute('CREATE FUNCTION evil_%s_%s(v %s) RETURNS %s LANGUAGE plpgsql AS $$ BEGIN '
                        "PERFORM public.evil_log('cast %s to %s'); RETURN NULL; END $$"
                        % (source, target, source, target, source, target))
            cur.execute('CREATE CAST (%s AS %s) WITH FUNCTION evil_%s_%s(%s)'
                        % (source, target, source, target, source))
        cur.execute('INSERT INTO t VALUES (1, ROW(1))')
    conn.close()
    args = sync_args(publisher, subscriber, db, 'cast', ['public.t'], backfill=True, flush=True)
    assert not run(args).get('failed')
    conn = as_mallory(publisher, db)
    with conn.cursor() as cur:
        cur.execute('INSERT INTO t VALUES (2, ROW(2)); UPDATE t SET p = ROW(3) WHERE id = 1')
        cur.execute('DELETE FROM t WHERE id = 2')
    conn.close()
    assert not run(args).get('failed')
    assert subscriber.query('SELECT id, p::text FROM t ORDER BY id', dbname=db) == [(1, '(3)')]
    assert publisher.query('SELECT * FROM mallory_log', dbname=db) == []
    assert mallory_is_superuser(publisher) is False


def test_database_owner_cannot_hijack_the_flush_through_search_path(publisher, subscriber):
    """Finding 2: the flush procedure runs as the caller (the timer runs it as a superuser) and
    cannot pin search_path; its operators are qualified, so a database owner's operators in
    public are never called."""
    db = 'sec_flush'
    ensure_mallory(publisher)
    make_pair(publisher, subscriber, db, 'CREATE TABLE t (id int PRIMARY KEY, v text)')
    publisher.execute('ALTER DATABASE %s OWNER TO %s' % (db, MALLORY))
    publisher.execute('ALTER SCHEMA public OWNER TO %s' % MALLORY, dbname=db)
    args = sync_args(publisher, subscriber, db, 'flushset', ['public.t'])
    assert not run(args).get('failed')
    conn = as_mallory(publisher, db)
    with conn.cursor() as cur:
        cur.execute(EVIL)
        for left, right in (('bigint', 'bigint'), ('bigint', 'integer'), ('integer', 'integer')):
            for op, name in (('+', 'plus'), ('<', 'lt'), ('<=', 'le'), ('=', 'eq'), ('>', 'gt')):
                cur.execute('CREATE FUNCTION evil_%s_%s_%s(a %s, b %s) RETURNS %s LANGUAGE plpgsql '
                            "AS $$ BEGIN PERFORM public.evil_log('operator'); RETURN NULL; END $$"
                            % (name, left, right, left, right,
                               'bigint' if op == '+' else 'boolean'))
                cur.execute('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = '
                            'evil_%s_%s_%s)' % (op, left, right, name, left, right))
        cur.execute('CREATE FUNCTION public.cardinality(anyarray) RETURNS integer LANGUAGE sql '
                    "AS $$ SELECT 1 FROM public.evil_log('cardinality') $$")
        cur.execute('ALTER DATABASE %s SET search_path = public, pg_catalog' % db)
    conn.close()
    publisher.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')", dbname=db)
    publisher.execute('CALL tablesync.flush()', dbname=db)  # as the superuser, like the timer
    assert subscriber.query('SELECT count(*) FROM t', dbname=db) == [(2,)]
    assert publisher.query('SELECT * FROM mallory_log', dbname=db) == []
    assert mallory_is_superuser(publisher) is False


def test_writer_cannot_reuse_skip_or_redirect_the_immediate_connection(publisher, subscriber):
    """Findings 3 and 4: no dblink connection survives the writer's commit; a custom setting
    cannot skip the apply; a connection the writer opened under the set's name is not used."""
    db = 'sec_imm'
    ensure_mallory(publisher)
    make_pair(publisher, subscriber, db,
              'CREATE EXTENSION dblink SCHEMA public; '
              'CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE decoy (id int, v text)')
    publisher.execute('GRANT SELECT, INSERT, UPDATE, DELETE ON t TO %s' % MALLORY, dbname=db)
    args = sync_args(publisher, subscriber, db, 'imm', ['public.t'], mode='immediate')
    assert not run(args).get('failed')
    conn = as_mallory(publisher, db)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1, 'one')")
        cur.execute('SELECT public.dblink_get_connections()')
        assert cur.fetchone()[0] is None  # nothing left open in the writer's session
        cur.execute("SET tablesync.pending_imm = '1'")
        cur.execute("SET tablesync.pending_1 = '1'")
        cur.execute("INSERT INTO t VALUES (2, 'two')")
        cur.execute("SELECT public.dblink_connect('tablesync_imm', 'dbname=%s user=%s password=%s "
                    "host=%s port=%s')" % (db, MALLORY, MALLORY_PASSWORD, publisher.host,
                                           publisher.port))
        cur.execute("INSERT INTO t VALUES (3, 'three')")
        cur.execute('SELECT public.dblink_get_connections()')
        assert cur.fetchone()[0] == ['tablesync_imm']  # only the writer's own
        with pytest.raises(psycopg2.Error):
            cur.execute('SELECT * FROM tablesync.trigger_changes')
        with pytest.raises(psycopg2.Error):
            cur.execute("SELECT tablesync._remote_open('imm')")
    conn.close()
    assert subscriber.query('SELECT id, v FROM t ORDER BY id', dbname=db) == [
        (1, 'one'), (2, 'two'), (3, 'three')]
    assert publisher.query('SELECT count(*) FROM decoy', dbname=db) == [(0,)]
    assert publisher.query('SELECT count(*) FROM tablesync.trigger_changes', dbname=db) == [(0,)]


def test_columns_left_out_never_leave_the_source(publisher, subscriber):
    """Finding 5: only synced columns are queued and sent, also in a failing statement."""
    db = 'sec_cols'
    secret = 'SSN-078-05-1120'
    make_pair(publisher, subscriber, db,
              'CREATE TABLE person (id int PRIMARY KEY, name text, ssn text)')
    subscriber.execute('ALTER TABLE person ADD CONSTRAINT no_bob CHECK (name <> \'bob\')',
                       dbname=db)
    args = sync_args(publisher, subscriber, db, 'cols',
                     [{'name': 'public.person', 'columns': ['id', 'name']}])
    assert not run(args).get('failed')
    publisher.execute("INSERT INTO person VALUES (1, 'ann', %s), (2, 'bob', %s)",
                      (secret, secret), dbname=db)
    queued = publisher.query('SELECT row::text FROM tablesync.trigger_changes ORDER BY id',
                             dbname=db)
    assert queued == [('{1,ann}',), ('{2,bob}',)]
    failed = run(dict(args, flush=True))
    assert failed.get('failed') and 'no_bob' in failed['msg'], failed
    assert secret not in failed['msg']
    assert secret not in subscriber.log_text()
    subscriber.execute('ALTER TABLE person DROP CONSTRAINT no_bob', dbname=db)
    assert not run(dict(args, flush=True)).get('failed')
    assert subscriber.query('SELECT id, name, ssn FROM person ORDER BY id', dbname=db) == [
        (1, 'ann', None), (2, 'bob', None)]


def test_machinery_is_owned_by_a_nologin_role_and_closed_to_public(publisher, subscriber):
    db = 'sec_owner'
    make_pair(publisher, subscriber, db, 'CREATE TABLE t (id int PRIMARY KEY)')
    assert not run(sync_args(publisher, subscriber, db, 'own', ['public.t'])).get('failed')
    owner = publisher.query("SELECT rolsuper, rolcanlogin, rolcreaterole, rolbypassrls FROM "
                            "pg_roles WHERE rolname = 'tablesync_trigger_owner'")
    assert owner == [(False, False, False, False)]
    owners = publisher.query(
        "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'tablesync' AND c.relkind IN ('r', 'S') "
        "UNION SELECT DISTINCT pg_get_userbyid(p.proowner) FROM pg_proc p JOIN pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = 'tablesync' AND NOT EXISTS (SELECT 1 FROM "
        "pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')", dbname=db)
    assert owners == [('tablesync_trigger_owner',)]
    public = publisher.query(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'tablesync' AND has_function_privilege('public', p.oid, 'EXECUTE') "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')",
        dbname=db)
    assert public == []
    readable = publisher.query(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
        "n.nspname = 'tablesync' AND c.relkind = 'r' AND c.relacl IS NOT NULL", dbname=db)
    assert readable == []
    bodies = publisher.query("SELECT string_agg(p.prosrc, ' ') FROM pg_proc p JOIN pg_namespace n "
                             "ON n.oid = p.pronamespace WHERE n.nspname = 'tablesync'", dbname=db)
    assert 'Wr1ter-Tr1gger-pw' not in bodies[0][0]


def test_exporter_reads_trigger_queues_as_a_pg_monitor_role(publisher, subscriber, tmp_path):
    """Finding 2: the exporter needs no superuser; its role reads the figures through
    tablesync.queue_status() and still cannot read the queue's rows."""
    import json
    import os
    import subprocess
    import sys
    db = 'sec_monitor'
    make_pair(publisher, subscriber, db, 'CREATE TABLE t (id int PRIMARY KEY)')
    assert not run(sync_args(publisher, subscriber, db, 'mon', ['public.t'])).get('failed')
    publisher.execute('INSERT INTO t VALUES (1), (2)', dbname=db)
    publisher.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
                      "'tablesync_exporter_it') THEN CREATE ROLE tablesync_exporter_it LOGIN IN "
                      "ROLE pg_monitor; END IF; END $$")
    exporter = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), 'roles', 'sync_monitoring', 'files', 'tablesync_exporter.py')
    config = tmp_path / 'exporter.json'
    config.write_text(json.dumps({'databases': [db], 'host': publisher.sockdir,
                                  'port': publisher.port, 'user': 'tablesync_exporter_it',
                                  'output': str(tmp_path / 'out.prom')}))
    proc = subprocess.run([sys.executable, exporter, '--config', str(config), '--stdout'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'tablesync_exporter_up{database="%s"} 1' % db in proc.stdout, proc.stderr
    assert 'tablesync_trigger_queue_depth{database="%s",set="mon"} 2' % db in proc.stdout
    assert 'tablesync_trigger_flush_failing{database="%s",set="mon"} 0' % db in proc.stdout
    conn = psycopg2.connect(host=publisher.sockdir, port=publisher.port,
                            user='tablesync_exporter_it', dbname=db)
    with pytest.raises(psycopg2.Error):
        with conn.cursor() as cur:
            cur.execute('SELECT * FROM tablesync.trigger_changes')
    conn.close()
